# SPDX-License-Identifier: Apache-2.0
"""The module on 1 and 64 GiB BARs (`vm run --large-bar`: ivshmem-plain on a
sparse file), against vfio-pci in the same boot.  make test adds both to
every guest boot (tools/test.sh); the costs in time are bench/large.py's.

A BAR is left on the core's map, at vfio-pci's cost, until it gets a WC
cookie; from then on the module's records of its pages, in pieces with huge
pages where aligned, also serve its pread and pwrite (docs/uapi.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import Device, Sysfs
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.cookie import MemoryAttr, MemoryType
from pyvfio.vm import IVSHMEM_ID

from .kernel_maps import (
    ioremap_guard,
    module_ioremaps,
    module_kernel_maps,
    module_vmaps,
    pat_types,
)
from .kver import VMA_HOLDS_PAT_RECORD

GiB = 1 << 30
MiB = 1 << 20
PAGE = 4096


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


def _page_tables() -> int:
    """Kernel and user page tables, in bytes (6.1 counts only user ones)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("PageTables:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no PageTables in /proc/meminfo")


def _open_read_close(bdf: str, uc_cookie: bool) -> tuple[int, int]:
    """Page tables and module mappings gained by opening ``bdf`` and reading
    its BAR2 once, while open."""
    tables, maps = _page_tables(), module_kernel_maps()
    with Device.open(bdf) as dev:
        os.pread(dev.fd, 4, dev.region(2).info.offset + PAGE)
        gained = _page_tables() - tables, module_kernel_maps() - maps
        if uc_cookie:  # needs no map of the module's either
            uc = dev.region(2).map(PAGE, PAGE, attr=MemoryAttr.UC)
            assert uc.memory_type is MemoryType.UC_MINUS
            assert module_kernel_maps() == maps
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


def test_the_first_wc_cookie_maps_no_more_than_the_core_did(
    large: tuple[str, int, int],
) -> None:
    # Module v2 gave the core an untracked map of the whole BAR at its
    # first WC cookie, 4 KiB pages throughout (128 MiB of page tables at
    # 64 GiB, kept after close).  Now the records' pieces serve pread and
    # pwrite, with huge pages: the BAR's page tables do not grow with it.
    bdf, _, size = large
    offset = size // 2 + 2 * MiB + PAGE
    with Device.open(bdf) as dev:
        bar2 = dev.region(2)
        bar2.write(offset - 8, b"12345678abcdefgh")
        tables = _page_tables()
        wc = bar2.map(offset, PAGE, wc=True)
        gained = _page_tables() - tables
        assert module_vmaps() == 0
        assert module_kernel_maps() >= size
        # 6.1 counts no kernel page tables in PageTables: 0 there either way
        assert gained <= 2 * MiB, gained
        # a read across the WC page's edge, and one across the BAR's end
        assert bar2.read(offset - 8, 16) == b"12345678abcdefgh"
        bar2.write(offset - 2, b"WXYZ")
        assert wc.read_bytes(0, 2) == b"YZ"
        assert bar2.read(offset - 4, 8) == b"56WXYZcd"
        bar2.write(size - 4, b"last")
        # clipped at the BAR's end, as the core does
        assert os.pread(dev.fd, 8, bar2.info.offset + size - 4) == b"last"
        # WC cookies over most of the BAR, overlapping: no kernel mapping
        # of their own (one each would be 4x the BAR's virtual space here)
        mapped = module_kernel_maps()
        wide = [bar2.map(PAGE, size - k * PAGE, wc=True) for k in range(2, 6)]
        assert module_kernel_maps() <= mapped
        assert bar2.read(offset - 4, 8) == b"56WXYZcd"  # through the WC pages
        for cookie in wide:
            cookie.close()
        wc.close()


def test_a_wc_cookie_off_a_2m_boundary_on_a_large_bar(large: tuple[str, int, int]) -> None:
    bdf, start, size = large
    offset = size // 2 + 2 * MiB + PAGE  # in the middle, off every huge boundary
    with Device.open(bdf) as dev:
        bar2 = dev.region(2)
        bar2.write(offset, b"core")
        # the core's own map of the BAR: what an area's size adds to its length
        guard = ioremap_guard(start, size)
        wc = bar2.map(offset, PAGE, wc=True)
        assert wc.read_bytes(0, 4) == b"core"
        wc.write_bytes(4, b"wc!!")
        wc.write_barrier()
        assert bar2.read(offset + 4, 4) == b"wc!!"
        assert wc.memory_type is MemoryType.WC
        phys = start + offset
        assert [r for r in pat_types(start, start + size) if r[2] == "write-combining"] == [
            (phys, phys + PAGE, "write-combining")
        ]
        assert {r[2] for r in pat_types(phys - PAGE, phys)} == {"uncached-minus"}
        assert {r[2] for r in pat_types(phys + PAGE, phys + 2 * PAGE)} == {"uncached-minus"}
        assert module_kernel_maps() >= size  # the BAR is the module's now
        # Its uncached records never cross a 1 GiB boundary: a change
        # re-reserves the blocks next to it, not the BAR.
        pieces = module_ioremaps(start, size, guard)
        assert sum(length for _, length in pieces) == size - PAGE  # the WC page has none
        assert all(p // GiB == (p + length - 1) // GiB for p, length in pieces)
        if not VMA_HOLDS_PAT_RECORD:
            legacy = bar2.map(0, PAGE)  # old users' mmaps of other pages go on
            assert legacy.read_bytes(0, 4) == bar2.read(0, 4)
            legacy.close()
        wc.close()
    assert module_kernel_maps() == 0
    assert pat_types(start, start + size) == []
