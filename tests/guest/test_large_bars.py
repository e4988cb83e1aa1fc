# SPDX-License-Identifier: Apache-2.0
"""The module on 1 and 64 GiB BARs (`vm run --large-bar`: ivshmem-plain on a
sparse file), against vfio-pci in the same boot.  make test adds both to
every guest boot (tools/test.sh); the costs in time are bench/large.py's.

The module's own map of a BAR costs kernel page tables in proportion to its
size (2 MiB per GiB), so a BAR is left on the core's map, at vfio-pci's
cost, until it gets a WC cookie (docs/uapi.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import Device, Sysfs
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.cookie import MemoryAttr, MemoryType
from pyvfio.vm import IVSHMEM_ID

from .kver import VMA_HOLDS_PAT_RECORD

GiB = 1 << 30
MiB = 1 << 20
PAGE = 4096
_PAT_LINE = re.compile(r"PAT: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\S+)")
_MODULE_AREA = re.compile(r"0x[0-9a-f]+-0x[0-9a-f]+\s+(\d+) .*\[vfio_pci_cookie\]")
_IOREMAP = re.compile(r"0x[0-9a-f]+-0x[0-9a-f]+\s+(\d+) (.*) phys=0x([0-9a-f]+) ioremap")


def _large_bar(sysfs: Sysfs, size: int) -> tuple[str, int]:
    """(BDF, BAR2's address) of the added ivshmem whose BAR2 is ``size``."""
    for dev in sysfs.find(*IVSHMEM_ID):
        bar2 = next(b for b in sysfs.device(dev.bdf).bars if b.index == 2)
        if bar2.size == size:
            return dev.bdf, bar2.start
    pytest.skip(f"this boot has no {size // GiB} GiB BAR (vm run --large-bar {size // GiB}G)")


@pytest.fixture(params=[1, 64], ids=["1G", "64G"])
def large(
    request: pytest.FixtureRequest, sysfs: Sysfs, cookie_module: None
) -> Iterator[tuple[str, int, int]]:
    size = request.param * GiB
    bdf, start = _large_bar(sysfs, size)
    with sysfs.bound(bdf, COOKIE_DRIVER):
        yield bdf, start, size


def _module_maps() -> int:
    """Bytes of kernel mappings the module holds (/proc/vmallocinfo)."""
    text = Path("/proc/vmallocinfo").read_text()
    return sum(int(m.group(1)) for m in _MODULE_AREA.finditer(text))


def _page_tables() -> int:
    """Kernel and user page tables, in bytes (6.1 counts only user ones)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("PageTables:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no PageTables in /proc/meminfo")


def _ioremaps() -> list[tuple[int, int, str]]:
    """(phys, area size, caller) of every ioremap() in /proc/vmallocinfo."""
    text = Path("/proc/vmallocinfo").read_text()
    return [(int(m[3], 16), int(m[1]), m[2]) for m in _IOREMAP.finditer(text)]


def _pat(start: int, end: int) -> list[tuple[int, int, str]]:
    found = []
    for line in Path("/sys/kernel/debug/x86/pat_memtype_list").read_text().splitlines():
        m = _PAT_LINE.match(line)
        if m and int(m.group(1), 16) < end and int(m.group(2), 16) > start:
            found.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    return found


def _open_read_close(bdf: str, uc_cookie: bool) -> tuple[int, int]:
    """Page tables and module mappings gained by opening ``bdf`` and reading
    its BAR2 once, while open."""
    tables, maps = _page_tables(), _module_maps()
    with Device.open(bdf) as dev:
        os.pread(dev.fd, 4, dev.region(2).info.offset + PAGE)
        gained = _page_tables() - tables, _module_maps() - maps
        if uc_cookie:  # needs no map of the module's either
            uc = dev.region(2).map(PAGE, PAGE, attr=MemoryAttr.UC)
            assert uc.memory_type is MemoryType.UC_MINUS
            assert _module_maps() == maps
    return gained


def test_opening_and_reading_a_large_bar_costs_what_vfio_pci_does(
    large: tuple[str, int, int], sysfs: Sysfs
) -> None:
    bdf, _, size = large
    _open_read_close(bdf, uc_cookie=True)  # a boot's first opens set things up
    tables, maps = _open_read_close(bdf, uc_cookie=True)
    with sysfs.bound(bdf, "vfio-pci"):
        _open_read_close(bdf, uc_cookie=False)
        core_tables, _ = _open_read_close(bdf, uc_cookie=False)
    assert maps == 0
    # Module v2 held 2 MiB of page tables per GiB from open (128 MiB at 64 GiB).
    assert tables <= core_tables + 256 * 1024, (tables, core_tables, size)


def test_a_wc_cookie_off_a_2m_boundary_on_a_large_bar(large: tuple[str, int, int]) -> None:
    bdf, start, size = large
    offset = size // 2 + 2 * MiB + PAGE  # in the middle, off every huge boundary
    with Device.open(bdf) as dev:
        bar2 = dev.region(2)
        bar2.write(offset, b"core")
        # the core's own map of the BAR: what an area's size adds to its length
        (guard,) = {size_ - size for phys, size_, _ in _ioremaps() if phys == start}
        wc = bar2.map(offset, PAGE, wc=True)
        assert wc.read_bytes(0, 4) == b"core"
        wc.write_bytes(4, b"wc!!")
        wc.write_barrier()
        assert bar2.read(offset + 4, 4) == b"wc!!"
        assert wc.memory_type is MemoryType.WC
        phys = start + offset
        assert [r for r in _pat(start, start + size) if r[2] == "write-combining"] == [
            (phys, phys + PAGE, "write-combining")
        ]
        assert {r[2] for r in _pat(phys - PAGE, phys)} == {"uncached-minus"}
        assert {r[2] for r in _pat(phys + PAGE, phys + 2 * PAGE)} == {"uncached-minus"}
        assert _module_maps() >= size  # the BAR is the module's now
        # Its uncached records never cross a 1 GiB boundary: a change
        # re-reserves the blocks next to it, not the BAR.
        pieces = [
            (phys, area - guard)
            for phys, area, caller in _ioremaps()
            if "[vfio_pci_cookie]" in caller and start <= phys < start + size
        ]
        assert sum(length for _, length in pieces) == size - PAGE
        assert all(phys // GiB == (phys + length - 1) // GiB for phys, length in pieces)
        if not VMA_HOLDS_PAT_RECORD:
            legacy = bar2.map(0, PAGE)  # old users' mmaps of other pages go on
            assert legacy.read_bytes(0, 4) == bar2.read(0, 4)
            legacy.close()
        wc.close()
    assert _module_maps() == 0
    assert _pat(start, start + size) == []
