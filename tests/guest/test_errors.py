# SPDX-License-Identifier: Apache-2.0
"""Every wrong input goes through the error tree, says what to do, and changes
nothing: one table of the mistakes users made (issue 11), on a real device."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pyvfio import (
    ArgumentTypeError,
    BusyError,
    Device,
    InvalidArgumentError,
    Mapping,
    OutOfRangeError,
    UnsupportedError,
    VfioError,
)
from pyvfio.irq import Interrupts, IrqIndex

EDU_ID_REGISTER = 0x010000ED  # edu's BAR0 word 0: what a working device answers


@dataclass
class Open:
    dev: Device
    bar0: Mapping
    msi: Interrupts


@dataclass(frozen=True)
class Mistake:
    call: Callable[[Open], object]
    error: type[VfioError]
    message: str  # a regex the message must match
    hint: str | None = None  # a substring the hint must contain
    errno: int | None = None
    names_the_iommu: bool = False  # called on dev.iommu, the error names it


def overlapping_dma_map(o: Open) -> None:
    buf = o.dev.dma_buffer(4096)
    o.dev.iommu.map_dma(buf.vaddr, buf.iova, 4096, readable=True, writable=True)


MISTAKES = {
    # A wrong type is a TypeError (issue 24): these were DeviceNotFoundError
    # and InvalidArgumentError before.
    "open(None)": Mistake(
        lambda o: Device.open(None),  # type: ignore[arg-type]
        ArgumentTypeError,
        r"bdf must be a PCI address \(str\), not None",
        "pyvfio list",
    ),
    "region('0')": Mistake(
        lambda o: o.dev.region("0"),  # type: ignore[arg-type]
        ArgumentTypeError,
        "index must be an int, not '0'",
        "0-5 for the BARs",
    ),
    "region(99)": Mistake(lambda o: o.dev.region(99), UnsupportedError, "region 99 does not exist"),
    "write32(4, -1)": Mistake(
        lambda o: o.bar0.write32(4, -1), OutOfRangeError, "write32: value -1"
    ),
    "write32(4, 1 << 32)": Mistake(
        lambda o: o.bar0.write32(4, 1 << 32), OutOfRangeError, "does not fit in 32 bits"
    ),
    "read32(1 << 64)": Mistake(
        lambda o: o.bar0.read32(1 << 64), OutOfRangeError, "offset 18446744073709551616"
    ),
    "read32(size)": Mistake(
        lambda o: o.bar0.read32(o.bar0.size), OutOfRangeError, "outside the 1048576-byte mapping"
    ),
    "map(wc=True, attr=0)": Mistake(
        lambda o: o.dev.region(0).map(wc=True, attr=0),  # type: ignore[arg-type]
        InvalidArgumentError,
        "wc=True contradicts attr=0",
        "not both",
    ),
    "map(unaligned)": Mistake(
        lambda o: o.dev.region(0).map(1, 4096), OutOfRangeError, "must be page aligned"
    ),
    "dma_buffer(-1)": Mistake(
        lambda o: o.dev.dma_buffer(-1),
        OutOfRangeError,
        "a DMA buffer of -1 bytes",
        "ask for a positive size",
    ),
    "INTx while MSI": Mistake(
        lambda o: o.dev.enable_irq(IrqIndex.INTX),
        BusyError,
        "MSI is enabled",
        "close() the MSI",
    ),
    "unmask MSI": Mistake(
        lambda o: o.msi.unmask(), UnsupportedError, "MSI is not maskable", "INTx only"
    ),
    "vector out of range": Mistake(
        lambda o: o.msi.trigger(1), OutOfRangeError, r"vector 1 not enabled \(0..0\)"
    ),
    "REQ by hand": Mistake(
        lambda o: o.dev.enable_irq(IrqIndex.REQ),
        BusyError,
        "answers the request interrupt",
        "on_release_request",
    ),
    "overlapping DMA map": Mistake(
        overlapping_dma_map,
        VfioError,
        "failed",
        "already mapped",
        errno.EEXIST,
        names_the_iommu=True,
    ),
}


@pytest.fixture
def opened(edu: str) -> Iterator[Open]:
    with Device.open(edu) as dev:
        dev.config.enable_bus_master()
        with dev.enable_irq(IrqIndex.MSI) as msi:
            yield Open(dev, dev.region(0).map(), msi)


@pytest.mark.parametrize("name", MISTAKES)
def test_a_mistake_is_explained_and_changes_nothing(opened: Open, name: str) -> None:
    mistake = MISTAKES[name]
    with pytest.raises(mistake.error, match=mistake.message) as info:
        mistake.call(opened)
    error = info.value
    if name != "open(None)":  # there is no device yet to name
        named = opened.dev.iommu.name if mistake.names_the_iommu else opened.dev.bdf
        assert str(error).startswith(named), str(error)
    if mistake.hint is not None:
        assert mistake.hint in (error.hint or ""), str(error)
    assert error.errno == mistake.errno
    # Nothing was left half-done: registers, interrupts and the device work on.
    assert opened.bar0.read32(0) == EDU_ID_REGISTER
    opened.msi.trigger()
    assert opened.msi.wait(5) == [0]
