# SPDX-License-Identifier: Apache-2.0
"""Old userspace must see no change: the same legacy probes on vfio-pci and the module.

Each probe is what an existing VFIO user does with a plain BAR mapping or the
device fd, with no cookie in sight.  They run on both drivers with one
expected answer: vfio-pci's.  Where today's module answers otherwise (the
review behind issue #10, item 7), the probe is a strict xfail on the module
only, so it turns into a failure the day the module is fixed and the marker
must go.
"""

from __future__ import annotations

import ctypes
import faulthandler
import mmap
import os
import struct
import time

import pytest

from pyvfio import Device, VfioError
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.uapi import (
    VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
    VFIO_DEVICE_FEATURE_SET,
)

PAGE = mmap.PAGESIZE
IVSHMEM_RAM_BAR = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
]
MAP_FAILED = ctypes.c_void_p(-1).value
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2


def module_defect(request: pytest.FixtureRequest, driver: str, what: str) -> None:
    """Mark the running probe a known defect of today's module (not of vfio-pci)."""
    if driver == COOKIE_DRIVER:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"issue #10: {what}"))


def map_raw(fd: int, offset: int, length: int) -> int:
    """mmap through libc, so the test can split and move what it maps."""
    addr = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, offset)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    assert isinstance(addr, int)
    return addr


def syscall_errno(result: int) -> int:
    return 0 if result == 0 else ctypes.get_errno()


def test_a_forked_child_reads_an_inherited_bar_mapping(
    ivshmem: str, vfio_driver: str, request: pytest.FixtureRequest
) -> None:
    module_defect(request, vfio_driver, "legacy BAR mmaps are VM_DONTCOPY: the child faults")
    with Device.open(ivshmem) as dev:
        ram = dev.region(IVSHMEM_RAM_BAR).map(0, PAGE)
        ram.write32(0, 0x5A5A1234)
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if it reads what the parent wrote
            faulthandler.disable()  # a SIGSEGV here is the answer, not a crash to dump
            os._exit(0 if ram.read32(0) == 0x5A5A1234 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_part_of_a_bar_mapping_can_be_unmapped(
    ivshmem: str, vfio_driver: str, request: pytest.FixtureRequest
) -> None:
    module_defect(request, vfio_driver, "partial munmap of a legacy mapping is EINVAL")
    with Device.open(ivshmem) as dev:
        region = dev.region(IVSHMEM_RAM_BAR)
        region.write(PAGE, struct.pack("<I", 0xC0FFEE))
        addr = map_raw(dev.fd, region.info.offset, 2 * PAGE)
        try:
            assert syscall_errno(_libc.munmap(addr, PAGE)) == 0
            # the second page is still mapped and still the device's
            assert ctypes.c_uint32.from_address(addr + PAGE).value == 0xC0FFEE
        finally:
            _libc.munmap(addr, 2 * PAGE)


def test_an_untouched_bar_mapping_can_be_moved(
    ivshmem: str, vfio_driver: str, request: pytest.FixtureRequest
) -> None:
    # Moved before any fault: moving a populated PFN mapping WARNs in 6.1's
    # untrack_pfn on vfio-pci itself (issue #10, item 8).
    module_defect(request, vfio_driver, "mremap of a legacy mapping is refused")
    with Device.open(ivshmem) as dev:
        region = dev.region(IVSHMEM_RAM_BAR)
        region.write(0, struct.pack("<I", 0xFEED))
        addr = map_raw(dev.fd, region.info.offset, PAGE)
        # a free address to move to: a fresh anonymous page, replaced by the move
        anonymous = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        target = _libc.mmap(None, PAGE, 0, anonymous, -1, 0)  # PROT_NONE
        moved = _libc.mremap(addr, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        try:
            assert moved not in (None, MAP_FAILED), os.strerror(ctypes.get_errno())
            assert moved is not None
            assert ctypes.c_uint32.from_address(moved).value == 0xFEED
        finally:
            _libc.munmap(addr if moved in (None, MAP_FAILED) else moved, PAGE)


def test_pread_wakes_a_device_in_low_power(
    nvme: str, vfio_driver: str, request: pytest.FixtureRequest
) -> None:
    # nvme has a PM capability, so low power really takes it to D3hot.
    module_defect(request, vfio_driver, "BAR read/write skip runtime PM: EIO in low power")
    with Device.open(nvme) as dev:
        cap = dev.region(0).read(0, 8)
        dev.feature(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, VFIO_DEVICE_FEATURE_SET)
        time.sleep(0.2)  # let runtime PM suspend it
        try:
            in_low_power = dev.region(0).read(0, 8)
        except VfioError as exc:
            pytest.fail(f"pread in low power: {exc}")
        assert in_low_power == cap
