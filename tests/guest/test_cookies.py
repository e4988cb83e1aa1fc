# SPDX-License-Identifier: Apache-2.0
"""mmap cookies on the real kernel: memory types as PAT records them.

Every claim about a memory type is read back from
/sys/kernel/debug/x86/pat_memtype_list, the kernel's own record, never from
the module's word alone.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import resource
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

from pyvfio import (
    BusyError,
    Device,
    InvalidArgumentError,
    Sysfs,
    UnsupportedError,
    VfioError,
    kmod,
    uapi,
)
from pyvfio.cookie import Cookie, MemoryAttr, MemoryType, live_cookies, supported_attrs
from pyvfio.mmio import Mapping

from . import forked
from .kernel_maps import ioremap_guard, module_ioremaps, module_kernel_maps, pat_types
from .kver import VMA_HOLDS_PAT_RECORD
from .libc import MAP_FAILED, libc

PAGE = 4096


def bar_start(sysfs: Sysfs, bdf: str, index: int) -> int:
    return next(b.start for b in sysfs.device(bdf).bars if b.index == index)


def kinds(start: int, end: int) -> set[str]:
    return {kind for *_, kind in pat_types(start, end)}


def wc_records(start: int, end: int) -> list[tuple[int, int, str]]:
    return [r for r in pat_types(start, end) if r[2] == "write-combining"]


@pytest.mark.parametrize("device", ["wc_ivshmem", "wc_nvme"])
def test_wc_cookie_pages_are_write_combining(
    device: str, request: pytest.FixtureRequest, sysfs: Sysfs
) -> None:
    bdf = request.getfixturevalue(device)
    base = bar_start(sysfs, bdf, 2) + 4 * PAGE
    with Device.open(bdf) as dev:
        assert supported_attrs(dev, 2) == {MemoryAttr.UC, MemoryAttr.WC}
        # the whole BAR is recorded uncached-minus by the core's own mapping
        # (7.3 makes it at open, 6.1 and 6.12 at first use)
        dev.region(2).read(0, 4)
        assert kinds(base, base + 2 * PAGE) == {"uncached-minus"}
        wc = dev.region(2).map(4 * PAGE, 2 * PAGE, wc=True)
        wc.write64(0, 0x1122334455667788)
        wc.write_barrier()
        assert wc.read64(0) == 0x1122334455667788
        assert wc.memory_type is MemoryType.WC
        # exactly the pages asked are write-combining; their neighbours stay uncached
        wc_range = (base, base + 2 * PAGE, "write-combining")
        assert pat_types(base, base + 2 * PAGE) == [wc_range]  # the cookie's; faults add none
        assert kinds(base - PAGE, base) == {"uncached-minus"}
        assert kinds(base + 2 * PAGE, base + 3 * PAGE) == {"uncached-minus"}
        assert dev.region(2).read(4 * PAGE, 8) == (0x1122334455667788).to_bytes(8, "little")
    assert pat_types(base, base + 2 * PAGE) == []  # all gone with the device


@pytest.mark.parametrize("wc_first", [True, False], ids=["wc-first", "legacy-first"])
def test_legacy_and_uc_stay_uncached_beside_wc(
    wc_ivshmem: str, sysfs: Sysfs, wc_first: bool
) -> None:
    base = bar_start(sysfs, wc_ivshmem, 2)
    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        maps: dict[str, Mapping] = {}
        order = ["wc", "legacy", "uc"] if wc_first else ["legacy", "uc", "wc"]
        for what in order:
            if what == "wc":
                if VMA_HOLDS_PAT_RECORD and not wc_first:
                    with pytest.raises(BusyError):  # 6.1: the BAR has a legacy mmap
                        bar2.map(0, PAGE, wc=True)
                    maps["legacy"].close()
                maps[what] = bar2.map(0, PAGE, wc=True)
            elif what == "legacy":
                if VMA_HOLDS_PAT_RECORD and wc_first:
                    with pytest.raises(BusyError):  # 6.1: the BAR has a WC cookie
                        bar2.map(PAGE, PAGE)
                    continue
                maps[what] = bar2.map(PAGE, PAGE)
            else:
                maps[what] = bar2.map(2 * PAGE, PAGE, attr=MemoryAttr.UC)
        for m in maps.values():
            if not m.closed:
                m.write32(0, 0xA5A5A5A5)
                assert m.read32(0) == 0xA5A5A5A5
        assert kinds(base, base + PAGE) == {"write-combining"}
        assert kinds(base + PAGE, base + 3 * PAGE) == {"uncached-minus"}
        assert maps["uc"].memory_type is MemoryType.UC_MINUS
        assert repr(maps["uc"]).endswith("BAR2+0x2000 UC size=0x1000>")  # says what it is


def test_conflicting_types_are_refused_not_coerced(wc_ivshmem: str, sysfs: Sysfs) -> None:
    base = bar_start(sysfs, wc_ivshmem, 2)
    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        uc = bar2.map(0, 2 * PAGE, attr=MemoryAttr.UC)
        with pytest.raises(BusyError, match="another memory type"):
            bar2.map(PAGE, PAGE, wc=True)  # a page the UC cookie holds
        wc = bar2.map(4 * PAGE, PAGE, wc=True)
        with pytest.raises(BusyError):
            bar2.map(4 * PAGE, PAGE, attr=MemoryAttr.UC)
        with pytest.raises(BusyError):
            bar2.map(3 * PAGE, 2 * PAGE, attr=MemoryAttr.UC)  # overlaps by one page
        assert bar2.map(4 * PAGE, PAGE, wc=True).memory_type is MemoryType.WC  # same type: fine
        assert kinds(base, base + 2 * PAGE) == {"uncached-minus"}
        assert kinds(base + 4 * PAGE, base + 5 * PAGE) == {"write-combining"}
        uc.close()
        wc.close()


def _pat_kind(start: int, end: int) -> str:
    """The one type PAT's record gives physical [start, end)."""
    found = kinds(start, end)
    assert len(found) == 1, found
    return found.pop()


def _foreign_wc(bdf: str, fd: int, offset: int) -> mmap.mmap | None:
    """A root mmap of sysfs resource2_wc at ``offset``, touched; None where a
    claimed BAR refuses it (CONFIG_IO_STRICT_DEVMEM: Debian's kernels)."""
    try:
        m = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, offset=offset)
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
        return None
    m[:4] = b"abcd"
    return m


def _assert_uc_truthful(m: Mapping, phys: int) -> None:
    """A UC cookie mapping: QUERY and PAT's record of its pages both say UC-."""
    assert m.cookie is not None
    assert m.cookie.query().memory_type is MemoryType.UC_MINUS
    assert _pat_kind(phys, phys + m.size) == "uncached-minus"


def test_a_type_recorded_outside_the_device_is_reported_not_inherited(
    wc_ivshmem: str, sysfs: Sysfs
) -> None:
    # Root mmaps of sysfs resource2_wc record their pages write-combining.
    # Made before open, 7.3 keeps that record while the device is open (6.1
    # and 6.12 drop it when vfio claims the BAR): an uncached reservation
    # over it would be handed WC, and so would every UC cookie mapped there.
    # Made while open (kernels without IO_STRICT_DEVMEM: the debug kernel),
    # one over pages of a WC cookie is WC and outlives the cookie.
    base = bar_start(sysfs, wc_ivshmem, 2)
    fd = os.open(f"/sys/bus/pci/devices/{wc_ivshmem}/resource2_wc", os.O_RDWR)
    foreign: list[mmap.mmap | None] = []
    try:
        foreign.append(mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED))
        foreign[0][:4] = b"abcd"  # type: ignore[index]
        with Device.open(wc_ivshmem) as dev:
            bar2 = dev.region(2)
            bar2.read(PAGE, 4)  # the core claims the BAR's region: at open (7.3) or first use
            if _pat_kind(base, base + PAGE) == "write-combining":
                with pytest.raises(BusyError, match="resourceN_wc"):
                    bar2.map(0, PAGE, attr=MemoryAttr.UC)
                with pytest.raises(BusyError):
                    bar2.map(3 * PAGE, 2 * PAGE, attr=MemoryAttr.UC)  # one page of it
                wc = bar2.map(PAGE, PAGE, wc=True)  # WC over WC: what it says
                assert wc.memory_type is MemoryType.WC
                wc.close()
                with pytest.raises(BusyError):  # the record outlives our WC cookie
                    bar2.map(PAGE, PAGE, attr=MemoryAttr.UC)
            else:
                assert _pat_kind(base, base + PAGE) == "uncached-minus"
            # Pages the record does not hold stay uncached, and say so.
            uc = bar2.map(4 * PAGE, PAGE, attr=MemoryAttr.UC)
            _assert_uc_truthful(uc, base + 4 * PAGE)
            uc.write32(0, 0x600DF00D)
            assert uc.read32(0) == 0x600DF00D
            # While open: over our uncached cover a WC request is made UC-, ...
            foreign.append(_foreign_wc(wc_ivshmem, fd, 8 * PAGE))
            assert _pat_kind(base + 8 * PAGE, base + 9 * PAGE) == "uncached-minus"
            _assert_uc_truthful(bar2.map(8 * PAGE, PAGE, attr=MemoryAttr.UC), base + 8 * PAGE)
            if foreign[-1] is not None:
                # Gone before the next case: PAT refuses (and logs) a probe over
                # records of two types, which docs/uapi.md lists as a limit.
                foreign.pop().close()  # type: ignore[union-attr]
            # ... over a WC cookie's pages it is WC, and stays after the cookie.
            wc = bar2.map(12 * PAGE, PAGE, wc=True)
            foreign.append(_foreign_wc(wc_ivshmem, fd, 12 * PAGE))
            wc.close()
            if foreign[-1] is not None:
                assert _pat_kind(base + 12 * PAGE, base + 13 * PAGE) == "write-combining"
                with pytest.raises(BusyError):
                    bar2.map(12 * PAGE, PAGE, attr=MemoryAttr.UC)
            # Records go with their mappings: the pages are asked again.
            for m in foreign:
                if m is not None:
                    m.close()
            assert wc_records(base, base + 16 * PAGE) == []
            for offset in (0, 12 * PAGE):
                _assert_uc_truthful(bar2.map(offset, PAGE, attr=MemoryAttr.UC), base + offset)
            _assert_uc_truthful(uc, base + 4 * PAGE)
    finally:
        for m in foreign:
            if m is not None:
                m.close()
        os.close(fd)
    assert pat_types(base, base + 16 * PAGE) == []  # nothing of ours is left


def test_a_large_outside_record_costs_bounded_probes_and_no_uc_cookie_its_type(
    wc_ivshmem: str, sysfs: Sysfs
) -> None:
    # 100 pages recorded WC outside the device: more than the driver probes
    # one by one, so it marks the rest of a run foreign as a whole, except
    # the pages of UC cookies, which must keep their uncached record.
    base = bar_start(sysfs, wc_ivshmem, 2)
    fd = os.open(f"/sys/bus/pci/devices/{wc_ivshmem}/resource2_wc", os.O_RDWR)
    try:
        with mmap.mmap(fd, 100 * PAGE, mmap.MAP_SHARED) as foreign:
            foreign[:4] = b"abcd"
            with Device.open(wc_ivshmem) as dev:
                bar2 = dev.region(2)
                bar2.read(200 * PAGE, 4)  # the core claims the BAR's region
                kept = _pat_kind(base + 99 * PAGE, base + 100 * PAGE) == "write-combining"
                uc = bar2.map(150 * PAGE, PAGE, attr=MemoryAttr.UC)
                wc = bar2.map(149 * PAGE, PAGE, wc=True)
                wc.close()  # covered again in one run with foreign pages and the UC page
                _assert_uc_truthful(uc, base + 150 * PAGE)
                uc_near = bar2.map(100 * PAGE, PAGE, attr=MemoryAttr.UC)  # next to the record
                _assert_uc_truthful(uc_near, base + 100 * PAGE)
                _assert_uc_truthful(uc, base + 150 * PAGE)
                if kept:
                    for page in (0, 50, 99):
                        with pytest.raises(BusyError):
                            bar2.map(page * PAGE, PAGE, attr=MemoryAttr.UC)
                bar2.map(200 * PAGE, PAGE, attr=MemoryAttr.UC).close()
    finally:
        os.close(fd)


@pytest.mark.skipif(VMA_HOLDS_PAT_RECORD, reason="6.1 keeps legacy mmaps and WC apart")
def test_a_legacy_mapping_follows_the_type_of_its_pages(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        legacy = bar2.map(0, 2 * PAGE)
        legacy.write32(PAGE, 0x5A5A5A5A)
        wc = bar2.map(PAGE, PAGE, wc=True)  # the legacy PTE is zapped, not left UC-
        assert wc.read32(0) == 0x5A5A5A5A
        assert legacy.read32(PAGE) == 0x5A5A5A5A  # refaults
        wc.close()
        assert legacy.read32(PAGE) == 0x5A5A5A5A
        legacy.close()


@pytest.mark.skipif(not VMA_HOLDS_PAT_RECORD, reason="the 6.1 shim's rule")
def test_on_6_1_legacy_mmaps_and_wc_use_different_bars(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        legacy = bar2.map(0, PAGE)
        maps = module_kernel_maps()
        with pytest.raises(BusyError):
            bar2.map(4 * PAGE, PAGE, wc=True)
        assert module_kernel_maps() == maps  # refused before the BAR is taken
        legacy.close()
        wc = bar2.map(4 * PAGE, PAGE, wc=True)
        with pytest.raises(BusyError):
            bar2.map(0, PAGE)
        wc.close()
        bar2.map(0, PAGE).close()


def test_a_bar_costs_what_it_costs_on_vfio_pci_until_its_first_wc_cookie(
    wc_ivshmem: str, sysfs: Sysfs
) -> None:
    # The module's own map of a BAR costs page tables in proportion to its
    # size (2 MiB per GiB): only a BAR with a WC cookie needs it.  Until
    # then opening, reading and UC cookies use the core's map, as vfio-pci.
    base = bar_start(sysfs, wc_ivshmem, 2)
    size = next(b.size for b in sysfs.device(wc_ivshmem).bars if b.index == 2)
    before = module_kernel_maps()
    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        bar2.write(PAGE, b"core")
        uc = bar2.map(4 * PAGE, PAGE, attr=MemoryAttr.UC)
        _assert_uc_truthful(uc, base + 4 * PAGE)
        assert module_kernel_maps() == before
        wc = bar2.map(8 * PAGE, PAGE, wc=True)  # takes the BAR from the core's map
        assert module_kernel_maps() >= before + size
        _assert_uc_truthful(uc, base + 4 * PAGE)
        assert bar2.read(PAGE, 4) == b"core"  # the new map reads the same pages
        assert wc.memory_type is MemoryType.WC
    assert module_kernel_maps() == before


_2M = 2 << 20


def test_uncached_records_beside_a_cookie_off_a_2m_boundary_keep_huge_pages(
    wc_nvme: str, sysfs: Sysfs
) -> None:
    # ioremap() aligns only the virtual address, so one uncached record
    # from a page off a 2 MiB boundary to the end of the BAR would map all
    # of it with 4 KiB pages (2 MiB of page tables per GiB).  Cut at the
    # boundaries, only the part before the first one maps that way.
    bar = next(b for b in sysfs.device(wc_nvme).bars if b.index == 2)
    with Device.open(wc_nvme) as dev:
        dev.region(2).read(0, 4)  # the core's own map of the BAR, at open or first use
        guard = ioremap_guard(bar.start, bar.size)
        wc = dev.region(2).map(PAGE, PAGE, wc=True)
        ours = module_ioremaps(bar.start, bar.size, guard)
        assert sum(length for _, length in ours) == bar.size - PAGE  # every other page
        for phys, length in ours:
            whole_blocks = phys % _2M == 0 and length % _2M == 0
            assert whole_blocks or phys // _2M == (phys + length - 1) // _2M, (hex(phys), length)
        assert len([p for p, length in ours if length >= _2M]) == 1
        wc.close()


def _ioeventfd(dev: Device, offset: int, data: int, fd: int) -> None:
    """Have the kernel write 4 bytes of ``data`` at BAR2 ``offset`` when ``fd``
    is signalled (-1: stop)."""
    req = uapi.vfio_device_ioeventfd(
        argsz=ctypes.sizeof(uapi.vfio_device_ioeventfd),
        flags=uapi.VFIO_DEVICE_IOEVENTFD_32,
        offset=dev.region(2).info.offset + offset,
        data=data,
        fd=fd,
    )
    fcntl.ioctl(dev.fd, uapi.VFIO_DEVICE_IOEVENTFD, req)


def _signalled(dev: Device, efd: int, offset: int, data: int) -> None:
    dev.region(2).write(offset, b"\0" * 4)
    os.eventfd_write(efd, 1)
    deadline = time.monotonic() + 5
    while dev.region(2).read(offset, 4) != data.to_bytes(4, "little"):
        assert time.monotonic() < deadline, "the ioeventfd did not write"
        time.sleep(0.01)


def test_ioeventfds_keep_their_writes_and_a_bars_first_wc_cookie_waits(
    wc_ivshmem: str,
) -> None:
    # An ioeventfd holds an address in the core's BAR map, which a BAR's
    # first WC cookie replaces: that cookie is refused while one exists.
    efd = os.eventfd(0)
    try:
        with Device.open(wc_ivshmem) as dev:
            _ioeventfd(dev, 0x100, 0x600DCAFE, efd)
            with pytest.raises(BusyError, match="ioeventfd"):
                dev.region(2).map(8 * PAGE, PAGE, wc=True)
            _signalled(dev, efd, 0x100, 0x600DCAFE)
            dev.region(2).map(8 * PAGE, PAGE, attr=MemoryAttr.UC).close()  # UC needs no new map
            _ioeventfd(dev, 0x100, 0x600DCAFE, -1)
            wc = dev.region(2).map(8 * PAGE, PAGE, wc=True)
            _ioeventfd(dev, 0x200, 0x0DDBA11, efd)  # into the new map, until close
            wc.close()
            _signalled(dev, efd, 0x200, 0x0DDBA11)
            dev.region(2).map(12 * PAGE, PAGE, wc=True).close()
    finally:
        os.close(efd)


def test_reads_racing_a_bars_first_wc_cookie_read_through(wc_ivshmem: str) -> None:
    # pread takes an address in the BAR map before it reads: the map it
    # took must outlive the read while the first WC cookie replaces it.
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(dev: Device) -> None:
        try:
            while not stop.is_set():
                assert dev.region(2).read(PAGE, 4) == b"seen"
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(20):
        with Device.open(wc_ivshmem) as dev:
            dev.region(2).write(PAGE, b"seen")
            stop.clear()
            thread = threading.Thread(target=reader, args=(dev,))
            thread.start()
            try:
                time.sleep(0.01)
                dev.region(2).map(8 * PAGE, PAGE, wc=True).close()
            finally:
                stop.set()
                thread.join()
        assert not errors, errors


def test_reads_and_writes_of_pages_whose_type_changes_see_their_bytes(wc_ivshmem: str) -> None:
    # A taken BAR's pread and pwrite reach each page through whatever holds
    # its record at that moment (a cover's piece, a one-page WC map); WC
    # creates and destroys over the same pages swap those under them.
    pattern = bytes(range(256)) * (6 * PAGE // 256)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(dev: Device) -> None:
        try:
            while not stop.is_set():
                assert (
                    dev.region(2).read(4 * PAGE - 3, 3 * PAGE) == pattern[PAGE - 3 : 4 * PAGE - 3]
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    def writer(dev: Device) -> None:
        try:
            while not stop.is_set():
                dev.region(2).write(5 * PAGE + 5, pattern[2 * PAGE + 5 : 3 * PAGE + 300])
        except BaseException as exc:
            errors.append(exc)

    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        bar2.map(0, PAGE, wc=True).close()  # the BAR is the module's from here
        bar2.write(3 * PAGE, pattern)
        threads = [threading.Thread(target=f, args=(dev,)) for f in (reader, writer)]
        for thread in threads:
            thread.start()
        try:
            for i in range(60):
                wc = bar2.map((4 + i % 3) * PAGE, (1 + i % 2) * PAGE, wc=True)
                uc = bar2.map(8 * PAGE, PAGE, attr=MemoryAttr.UC)
                wc.close()
                uc.close()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not errors, errors
        assert bar2.read(3 * PAGE, len(pattern)) == pattern


def test_pread_pwrite_work_and_change_no_type(wc_nvme: str, sysfs: Sysfs) -> None:
    base = bar_start(sysfs, wc_nvme, 2)
    with Device.open(wc_nvme) as dev:
        bar2 = dev.region(2)
        wc = bar2.map(0, 4 * PAGE, wc=True)
        wc.read32(0)
        before = pat_types(base, base + 16 * PAGE)
        bar2.write(PAGE + 8, b"through-kernel!!")
        assert wc.read_bytes(PAGE + 8, 16) == b"through-kernel!!"
        wc.write_bytes(2 * PAGE, b"from-wc-mapping!")
        wc.write_barrier()
        assert bar2.read(2 * PAGE, 16) == b"from-wc-mapping!"
        bar2.write(12 * PAGE, b"\xff" * 4)  # a page nobody maps
        assert pat_types(base, base + 16 * PAGE) == before
        assert wc.memory_type is MemoryType.WC


def test_a_taken_bar_reads_and_writes_as_the_core_does(wc_nvme: str) -> None:
    # From a BAR's first WC cookie the module serves its pread and pwrite
    # itself (docs/uapi.md): the MSI-X table still reads as all ones and
    # drops writes, and memory decode off still fails them, as in the core.
    with Device.open(wc_nvme) as dev:
        msix = next(c for c in dev.config.capabilities() if c.name == "MSI-X")
        table = dev.config.read32(msix.offset + 4)
        bar, at = table & 7, table & ~7
        region = dev.region(bar)
        core_view = region.read(at, 32)
        page = 0 if at >= PAGE else region.info.size - PAGE  # a page beside the table
        wc = region.map(page, PAGE, wc=True)  # the module's from here
        assert wc.memory_type is MemoryType.WC
        region.write(at, b"\0" * 16)  # dropped
        assert region.read(at, 32) == core_view == b"\xff" * 32
        # nothing asked, nothing checked: past the end too, as the core
        assert os.pread(dev.fd, 0, region.info.offset + region.info.size + PAGE) == b""
        cmd = dev.config.read16(4)
        dev.config.write16(4, cmd & ~2)  # memory decode off
        try:
            with pytest.raises(VfioError) as failed:
                region.read(page, 4)
            assert failed.value.errno == errno.EIO
            with pytest.raises(VfioError):
                region.write(page, b"\0\0\0\0")
        finally:
            dev.config.write16(4, cmd)
        region.read(page, 4)


def test_cookie_lifecycle(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        cookie = Cookie(dev, 2, 0, 100, MemoryAttr.WC)
        assert cookie.mmap_length == PAGE  # rounded up to pages
        info = cookie.query()
        assert (info.index, info.offset, info.length, info.attr, info.mapped) == (
            2,
            0,
            PAGE,
            MemoryAttr.WC,
            False,
        )
        mapping = dev.region(2).map(0, PAGE, wc=True)
        assert mapping.cookie is not None and mapping.cookie.query().mapped
        # destroyed while mapped: the mapping stays valid, the value stays taken
        mapping.cookie.destroy()
        mapping.write32(0, 7)
        assert mapping.read32(0) == 7
        taken = {cookie.value, mapping.cookie.value}
        fresh = [Cookie(dev, 2, 8 * PAGE, PAGE, MemoryAttr.UC) for _ in range(8)]
        assert not taken & {c.value for c in fresh}
        with pytest.raises(InvalidArgumentError):
            mapping.cookie.query()
        cookie.destroy()
        cookie.destroy()  # idempotent in Python; the kernel said EINVAL once
        for c in fresh:
            c.destroy()


def test_bad_cookie_requests(wc_ivshmem: str, sysfs: Sysfs) -> None:
    size = 4 << 20
    with Device.open(wc_ivshmem) as dev:
        for index, offset, length, attr, err in [
            (0, 0, 256, MemoryAttr.WC, None),  # BAR0 (256 B): the whole sub-page BAR
            (0, 0, 257, MemoryAttr.WC, errno.ERANGE),  # a byte past it
            (0, 0, PAGE, MemoryAttr.UC, errno.ERANGE),  # the rounded page is not asked
            (2, size - PAGE, PAGE + 1, MemoryAttr.UC, errno.ERANGE),
            (2, 0, 0, MemoryAttr.WC, errno.EINVAL),
            (2, 100, PAGE, MemoryAttr.WC, errno.EINVAL),
            (2, size, PAGE, MemoryAttr.WC, errno.ERANGE),
            (2, size - PAGE, 2 * PAGE, MemoryAttr.WC, errno.ERANGE),
            (1, 0, PAGE, MemoryAttr.WC, errno.EINVAL),  # no BAR1
            (7, 0, PAGE, MemoryAttr.UC, errno.EINVAL),  # config space
        ]:
            if err is None:
                Cookie(dev, index, offset, length, attr).destroy()
                continue
            with pytest.raises(Exception) as exc:
                Cookie(dev, index, offset, length, attr)
            assert getattr(exc.value, "errno", None) == err, (index, offset, length)
        raw = uapi.vfio_device_feature_mmap_cookie_create(index=2, attr=5, length=PAGE)
        with pytest.raises(InvalidArgumentError):
            dev.feature(
                uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE,
                uapi.VFIO_DEVICE_FEATURE_SET,
                bytes(raw),
            )
        sub_page = Cookie(dev, 0, 0, 100, MemoryAttr.UC)
        assert sub_page.mmap_length == PAGE  # mapped as its page
        with mmap.mmap(dev.fd, PAGE, offset=sub_page.value) as bar0:
            assert len(bar0) == PAGE
        sub_page.destroy()
        cookie = Cookie(dev, 2, 0, 2 * PAGE, MemoryAttr.WC)
        with pytest.raises(OSError) as oserr:
            mmap.mmap(dev.fd, PAGE, offset=cookie.value)  # wrong length
        assert oserr.value.errno == errno.EINVAL
        with pytest.raises(OSError):
            mmap.mmap(dev.fd, 2 * PAGE, offset=cookie.value + PAGE)  # not its start
        cookie.destroy()


def _refused(dev: Device, value: int) -> None:
    """mmap() of ``value`` on ``dev`` is EINVAL: it names no live cookie there."""
    with pytest.raises(OSError) as exc:
        mmap.mmap(dev.fd, PAGE, offset=value)
    assert exc.value.errno == errno.EINVAL


def test_cookie_values_are_not_reused_and_near_misses_name_nothing(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        seen = set()
        for _ in range(300):  # dense ids came back lowest-first: one value, 300 times
            cookie = Cookie(dev, 2, 0, PAGE, MemoryAttr.UC)
            seen.add(cookie.value)
            cookie.destroy()
        assert len(seen) == 300
        assert live_cookies(dev) == 0
        live = [Cookie(dev, 2, n * PAGE, PAGE, MemoryAttr.UC) for n in range(8)]
        assert live_cookies(dev) == 8
        values = {c.value for c in live}
        for c in live:
            for near in (c.value - 2 * PAGE, c.value - PAGE, c.value + PAGE, c.value + 2 * PAGE):
                if near not in values and near >= 0:
                    _refused(dev, near)
            assert c.value < 1 << 63 and c.value % PAGE == 0
            with mmap.mmap(dev.fd, PAGE, offset=c.value) as m:
                m[:4] = b"live"
        with mmap.mmap(dev.fd, PAGE, offset=live[0].value):
            live[0].destroy()
            assert live_cookies(dev) == 8  # destroyed but mapped: still held
        assert live_cookies(dev) == 7


def test_cookies_mean_nothing_on_another_device_or_after_close(
    wc_ivshmem: str, wc_nvme: str
) -> None:
    with Device.open(wc_ivshmem) as a, Device.open(wc_nvme) as b:
        cookie = Cookie(a, 2, 0, PAGE, MemoryAttr.WC)
        live = Cookie(b, 2, 0, PAGE, MemoryAttr.WC)  # the same request, first on b too
        _refused(b, cookie.value)
        mmap.mmap(b.fd, PAGE, offset=live.value).close()
        value = cookie.value
    with Device.open(wc_ivshmem) as a:
        again = Cookie(a, 2, 0, PAGE, MemoryAttr.WC)  # first of the new open
        _refused(a, value)
        assert again.value != value


def test_plain_vfio_pci_says_what_to_do(sysfs: Sysfs) -> None:
    bdf = sysfs.find(0x1AF4, 0x1110)[0].bdf
    sysfs.bind(bdf, "vfio-pci")
    try:
        with Device.open(bdf) as dev:
            assert supported_attrs(dev, 2) == frozenset()
            with pytest.raises(
                UnsupportedError,
                match=r"vfio-pci offers no mmap cookies.*"
                r"--driver vfio_pci_cookie",
            ):
                dev.region(2).map(0, PAGE, wc=True)
    finally:
        sysfs.unbind(bdf)


# ---- revocation ---------------------------------------------------------------


def _faults(touch: Callable[[], object]) -> int:
    """Page faults taken by ``touch()``: 0 while the mapping is populated."""
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    touch()
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def _populated(mapping: Mapping) -> bool:
    # pagemap and smaps skip PFN mappings; a fault count does not.
    return min(_faults(lambda: mapping.read32(0)) for _ in range(3)) == 0


class _AlignedMap:
    """A raw legacy mmap of a whole region at a 2 MiB-aligned address (what a
    huge fault needs), touched a page at a time through ctypes."""

    BLOCK = 2 << 20

    def __init__(self, dev: Device, index: int) -> None:
        info = dev.region(index).info
        self.size = info.size
        self.span = info.size + self.BLOCK
        anon = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        self.reserved = libc.mmap(None, self.span, 0, anon, -1, 0)
        assert self.reserved not in (None, MAP_FAILED)
        self.addr = (self.reserved + self.BLOCK - 1) & ~(self.BLOCK - 1)
        rw, fixed = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | 0x10  # MAP_FIXED
        got = libc.mmap(self.addr, self.size, rw, fixed, dev.fd, info.offset)
        assert got == self.addr, os.strerror(ctypes.get_errno())

    def faults_touching_block(self, block: int) -> int:
        start = self.addr + block * self.BLOCK
        return _faults(
            lambda: [
                ctypes.c_uint32.from_address(start + page).value
                for page in range(0, self.BLOCK, PAGE)
            ]
        )

    def close(self) -> None:
        libc.munmap(self.reserved, self.span)


@pytest.mark.skipif(VMA_HOLDS_PAT_RECORD, reason="6.1's vfio-pci has no huge faults")
def test_only_blocks_with_wc_pages_lose_their_huge_mappings(wc_ivshmem: str) -> None:
    per_page = _AlignedMap.BLOCK // PAGE
    huge = 8  # faults for a whole block mapped at once: 1, and Python's own noise
    with Device.open(wc_ivshmem) as dev:  # BAR2: 4 MiB, two 2 MiB blocks
        legacy = _AlignedMap(dev, 2)
        try:
            assert all(legacy.faults_touching_block(b) <= huge for b in (0, 1))
            wc = dev.region(2).map(0, PAGE, wc=True)  # a WC page in block 0 zaps it
            assert legacy.faults_touching_block(0) >= per_page // 2  # refaulted page by page
            assert legacy.faults_touching_block(1) <= huge  # untouched
        finally:
            legacy.close()
        again = _AlignedMap(dev, 2)  # fresh faults while the WC page exists
        try:
            assert again.faults_touching_block(1) <= huge  # still huge: no WC page in it
            assert again.faults_touching_block(0) >= per_page // 2
        finally:
            again.close()
        wc.close()


def test_reset_zaps_cookie_mappings(wc_nvme: str) -> None:
    with Device.open(wc_nvme) as dev:
        wc = dev.region(2).map(0, PAGE, wc=True)
        wc.write32(0, 1)
        assert _populated(wc)
        dev.reset()  # VFIO_DEVICE_RESET: FLR on QEMU's nvme
        assert _faults(lambda: wc.read32(0)) >= 1  # the vma's PTEs were gone
        wc.write32(0, 2)  # faults back in: memory is enabled again
        assert _populated(wc) and wc.read32(0) == 2


def test_d3_zaps_and_d0_restores(wc_nvme: str) -> None:
    with Device.open(wc_nvme) as dev:
        pm = next(c for c in dev.config.capabilities() if c.name == "Power Management")
        wc = dev.region(2).map(0, PAGE, wc=True)
        wc.write32(0, 3)
        assert _populated(wc)
        dev.config.write16(pm.offset + 4, 3)  # PMCSR: D3hot
        dev.config.write16(pm.offset + 4, 0)  # D0
        assert _faults(lambda: wc.read32(0)) >= 1  # D3 zapped the PTEs
        assert wc.read32(0) == 3 and _populated(wc)


_SIGBUS_CHILD = textwrap.dedent("""
    import sys
    from pyvfio import Device
    with Device.open(sys.argv[1]) as dev:
        wc = dev.region(2).map(0, 4096, wc=True)
        wc.write32(0, 0xC0FFEE)
        cmd = dev.config.read16(4)
        dev.config.write16(4, cmd & ~2)      # memory decode off: mappings revoked
        dev.config.write16(4, cmd)           # back on: faults work again
        assert wc.read32(0) == 0xC0FFEE
        dev.config.write16(4, cmd & ~2)
        print("decode off", flush=True)
        wc.read32(0)                         # must die of SIGBUS here
        print("read with decode off", flush=True)
""")


def _run_sigbus_child(bdf: str, script: str) -> None:
    child = forked.python(script, bdf)
    try:
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert out == "decode off\n", err
    assert child.returncode == -7, err  # SIGBUS


def test_decode_off_gives_sigbus_on_wc_mappings(wc_ivshmem: str) -> None:
    _run_sigbus_child(wc_ivshmem, _SIGBUS_CHILD)


def test_decode_off_gives_sigbus_on_legacy_mappings(ivshmem: str) -> None:
    # on both drivers: the variant driver keeps vfio-pci's behaviour
    _run_sigbus_child(ivshmem, _SIGBUS_CHILD.replace(", wc=True", ""))


def test_rmmod_after_close_leaves_no_pat_entries(sysfs: Sysfs, cookie_module: None) -> None:
    bdf = sysfs.find(0x1AF4, 0x1110)[0].bdf
    base = bar_start(sysfs, bdf, 2)
    sysfs.bind(bdf, "vfio_pci_cookie")
    with Device.open(bdf) as dev:
        dev.region(2).map(0, PAGE, wc=True).write32(0, 1)
        dev.region(2).map(PAGE, PAGE, attr=MemoryAttr.UC).write32(0, 1)
        dev.region(0).map(0, 256).read32(0)  # a legacy mapping (BAR0 is 256 bytes)
        dev.region(2).read(0, 4)
    sysfs.unbind(bdf)
    assert pat_types(base, base + (4 << 20)) == []
    kmod.unload()
    assert not kmod.is_loaded()
    kmod.load()
