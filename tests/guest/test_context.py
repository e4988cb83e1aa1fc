# SPDX-License-Identifier: Apache-2.0
"""An IOMMU context shared by devices (issue 23): one DMA address space, and a
buffer in it that each of its devices reaches at the same IOVA.

edu and nvme sit in IOMMU groups of their own: on the legacy backend the
context is one container with both groups, on iommufd one IOAS with both
cdevs.  NVMe's IDENTIFY writes a page into a buffer, and edu copies that
page out of the same buffer by DMA: both went through one address space.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import (
    BusyError,
    ClosedError,
    Device,
    InvalidArgumentError,
    IommuContext,
    OutOfRangeError,
    Sysfs,
    UnsupportedError,
)
from pyvfio.dma import DmaBuffer
from pyvfio.vm import EDU_ID, IVSHMEM_ID, NVME_ID

from .example_drivers import QEMU_NVME_MODEL, read_by_edu
from .example_drivers import edu as edu_example
from .example_drivers import nvme as nvme_example

PAGE = mmap.PAGESIZE


# On vfio-pci only: what a context does is the same on every VFIO driver, and
# the suite's time is better spent elsewhere.
@pytest.fixture
def edu(sysfs: Sysfs) -> Iterator[str]:
    found = sysfs.find(*EDU_ID)[0]  # on the root bus: first
    with sysfs.bound(found.bdf):
        yield found.bdf


@pytest.fixture
def nvme(sysfs: Sysfs) -> Iterator[str]:
    (found,) = sysfs.find(*NVME_ID)
    with sysfs.bound(found.bdf):
        yield found.bdf


def _identify_into(nvme: Device, buf: DmaBuffer) -> None:
    """The controller writes its IDENTIFY page into ``buf`` by DMA."""
    ctrl = nvme_example.Controller(nvme)
    try:
        ctrl.command(ctrl.admin, "IDENTIFY controller", nvme_example.IDENTIFY, 0, buf.iova, 1)
    finally:
        ctrl.disable()


def test_what_one_device_writes_another_reads_from_the_same_buffer(edu: str, nvme: str) -> None:
    with IommuContext() as context:
        nvme_dev = context.open(nvme)
        edu_dev = context.open(edu)
        assert context.devices == [nvme_dev, edu_dev]
        assert nvme_dev.context is edu_dev.context is context
        assert nvme_dev.iommu is edu_dev.iommu is context.iommu
        assert nvme_dev.backend == edu_dev.backend == context.backend
        shared = context.dma_buffer(PAGE, limit=edu_example.EDU_DMA_LIMIT)
        assert edu_dev.dma is nvme_dev.dma is context.dma
        _identify_into(nvme_dev, shared)
        written = bytes(shared.view[: edu_example.EDU_DMA_SAFE])
        assert QEMU_NVME_MODEL in written
        assert read_by_edu(edu_dev, shared.iova, len(written)) == written
    assert nvme_dev.closed and edu_dev.closed and shared.closed


def test_a_device_closed_leaves_the_others_and_the_buffers(edu: str, nvme: str) -> None:
    text = b"mapped once, for every device"
    with IommuContext() as context:
        nvme_dev = context.open(nvme)
        edu_dev = context.open(edu)
        shared = context.dma_buffer(PAGE, limit=edu_example.EDU_DMA_LIMIT)
        shared.view[: len(text)] = text
        nvme_dev.close()
        assert context.devices == [edu_dev] and not shared.closed
        # Its group (legacy) or cdev is let go: it opens elsewhere.
        with Device.open(nvme) as alone:
            assert alone.context is not context
        assert read_by_edu(edu_dev, shared.iova, len(text)) == text
        # The last device closed, the buffers stay mapped for the next one.
        edu_dev.close()
        assert context.devices == [] and not shared.closed
        edu_dev = context.open(edu)
        assert read_by_edu(edu_dev, shared.iova, len(text)) == text
    assert edu_dev.closed and shared.closed


def test_a_device_opens_once_per_context_and_a_closed_context_refuses(edu: str) -> None:
    context = IommuContext()
    dev = context.open(edu)
    with pytest.raises(BusyError, match="already open in this IOMMU context"):
        context.open(edu)
    assert context.devices == [dev]
    context.close()
    assert dev.closed and context.closed
    with pytest.raises(ClosedError, match="IOMMU context is closed"):
        context.open(edu)
    context.close()  # twice is fine
    with Device.open(edu) as again:  # nothing of the context holds it
        assert again.info.num_regions > 0


def test_device_open_makes_a_context_of_its_own_that_closes_with_it(edu: str) -> None:
    dev = Device.open(edu)
    context = dev.context
    assert context is not None and context.devices == [dev]
    with pytest.raises(UnsupportedError, match="the device's own"):
        context.open(edu)  # it takes no other device: it closes with this one
    buf = dev.dma_buffer(PAGE)
    assert context.dma.buffers == [buf]
    dev.close()
    assert context.closed and buf.closed


def test_a_group_kept_as_the_last_goes_when_another_joins(edu: str, nvme: str) -> None:
    with IommuContext() as context:
        context.open(edu).close()  # its group stays: the container's last (legacy)
        nvme_dev = context.open(nvme)
        with Device.open(edu) as alone:  # its group is free again
            assert alone.context is not context
        assert context.devices == [nvme_dev]


@pytest.fixture
def ivshmem(sysfs: Sysfs) -> Iterator[str]:
    found = sysfs.find(*IVSHMEM_ID)[0]  # the built-in one: BAR2 is 4 MiB of RAM
    with sysfs.bound(found.bdf):
        yield found.bdf


def test_a_device_dmas_into_another_devices_bar(edu: str, ivshmem: str) -> None:
    # Peer-to-peer through the IOMMU: edu copies into ivshmem's BAR2, and
    # the bytes are read back through BAR2's own mapping.
    with IommuContext() as context:
        edu_dev = context.open(edu)
        shared = context.open(ivshmem)
        bar2 = shared.region(2).map()
        bar2.write_bytes(0, bytes(PAGE))
        # edu reaches 28 address bits: the allocator keeps the BAR below them.
        peer = context.dma_map_peer(shared, 2, offset=PAGE, size=PAGE, limit=1 << 28)
        assert peer.iova + peer.size <= 1 << 28
        driver = edu_example.Edu(edu_dev)
        try:
            with context.dma_buffer(PAGE, limit=1 << 28) as source:
                source.view[:16] = b"peer-to-peer ok!"
                driver.dma(source.iova, edu_example.EDU_DMA_MEMORY, 16, 0)
                driver.dma(edu_example.EDU_DMA_MEMORY, peer.iova + 64, 16, edu_example.DMA_TO_RAM)
        finally:
            driver.msi.close()
        assert bar2.read_bytes(PAGE + 64, 16) == b"peer-to-peer ok!"
        assert bar2.read_bytes(0, PAGE) == bytes(PAGE)  # outside the peer range: untouched
        # edu reads the BAR too, and gets what BAR2 holds.
        bar2.write_bytes(PAGE + 512, b"read from a BAR")
        assert read_by_edu(edu_dev, peer.iova + 512, 15) == b"read from a BAR"
        peer.close()
        peer.close()  # harmless twice
        assert peer.closed
        # A device of another context, and a range off the BAR, are refused.
        with pytest.raises(OutOfRangeError, match="whole pages"):
            context.dma_map_peer(shared, 2, offset=1)
        with pytest.raises(OutOfRangeError, match="whole pages"):
            context.dma_map_peer(shared, 2, offset=0, size=8 << 20)
        with (
            IommuContext() as other,
            pytest.raises(InvalidArgumentError, match="not open in this IOMMU context"),
        ):
            other.dma_map_peer(shared, 2)
        # Left mapped: the context unmaps it before closing the device.
        context.dma_map_peer(shared, 2)


def _pinned_kib() -> int:
    """What this process has pinned for DMA: the legacy backend counts it in
    locked_vm (VmLck, what RLIMIT_MEMLOCK limits), iommufd in pinned_vm
    (VmPin) as well as in the user's locked_vm."""
    status = Path("/proc/self/status").read_text()
    total = 0
    for field in ("VmLck", "VmPin"):
        found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
        assert found, field
        total += int(found.group(1))
    return total


def test_memory_mapped_for_dma_is_pinned_once_per_context(edu: str, nvme: str) -> None:
    memory = mmap.mmap(-1, 64 * PAGE)
    with IommuContext() as context:
        context.open(nvme)
        context.open(edu)
        before = _pinned_kib()
        with context.dma_map(memory):
            shared = _pinned_kib() - before
        assert _pinned_kib() == before  # unpinned with the mapping
    assert shared == 64 * PAGE // 1024  # once, for two devices
    # A context each: the same memory pinned, and counted, once per context.
    with Device.open(nvme) as first, Device.open(edu) as second:
        before = _pinned_kib()
        with first.dma_map(memory), second.dma_map(memory):
            separate = _pinned_kib() - before
    assert separate == 2 * shared
