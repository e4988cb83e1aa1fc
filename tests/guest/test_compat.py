# SPDX-License-Identifier: Apache-2.0
"""Old userspace must see no change: the same legacy probes on vfio-pci and the module.

Each probe is what an existing VFIO user does with a plain BAR mapping or the
device fd, with no cookie in sight.  They run on both drivers with one
expected answer: vfio-pci's.  The first module failed four of them (issue
#10, item 7); the second serves every legacy offset through vfio-pci-core.
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
from pyvfio.uapi import (
    VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
    VFIO_DEVICE_FEATURE_SET,
)

from .libc import MAP_FAILED, MREMAP_FIXED, MREMAP_MAYMOVE, libc

PAGE = mmap.PAGESIZE
IVSHMEM_RAM_BAR = 2


def map_raw(fd: int, offset: int, length: int) -> int:
    """mmap through libc, so the test can split and move what it maps."""
    addr = libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, offset)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    assert isinstance(addr, int)
    return addr


def syscall_errno(result: int) -> int:
    return 0 if result == 0 else ctypes.get_errno()


def test_a_forked_child_reads_an_inherited_bar_mapping(ivshmem: str, vfio_driver: str) -> None:
    with Device.open(ivshmem) as dev:
        ram = dev.region(IVSHMEM_RAM_BAR).map(0, PAGE)
        ram.write32(0, 0x5A5A1234)
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if it reads what the parent wrote
            faulthandler.disable()  # a SIGSEGV here is the answer, not a crash to dump
            os._exit(0 if ram.read32(0) == 0x5A5A1234 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_part_of_a_bar_mapping_can_be_unmapped(ivshmem: str, vfio_driver: str) -> None:
    with Device.open(ivshmem) as dev:
        region = dev.region(IVSHMEM_RAM_BAR)
        region.write(PAGE, struct.pack("<I", 0xC0FFEE))
        addr = map_raw(dev.fd, region.info.offset, 2 * PAGE)
        try:
            assert syscall_errno(libc.munmap(addr, PAGE)) == 0
            # the second page is still mapped and still the device's
            assert ctypes.c_uint32.from_address(addr + PAGE).value == 0xC0FFEE
        finally:
            libc.munmap(addr, 2 * PAGE)


def test_an_untouched_bar_mapping_can_be_moved(ivshmem: str, vfio_driver: str) -> None:
    # Moved before any fault: moving a populated PFN mapping WARNs in 6.1's
    # untrack_pfn on vfio-pci itself (issue #10, item 8).
    with Device.open(ivshmem) as dev:
        region = dev.region(IVSHMEM_RAM_BAR)
        region.write(0, struct.pack("<I", 0xFEED))
        addr = map_raw(dev.fd, region.info.offset, PAGE)
        # a free address to move to: a fresh anonymous page, replaced by the move
        anonymous = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        target = libc.mmap(None, PAGE, 0, anonymous, -1, 0)  # PROT_NONE
        moved = libc.mremap(addr, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        try:
            assert moved not in (None, MAP_FAILED), os.strerror(ctypes.get_errno())
            assert moved is not None
            assert ctypes.c_uint32.from_address(moved).value == 0xFEED
        finally:
            libc.munmap(addr if moved in (None, MAP_FAILED) else moved, PAGE)


def test_pread_wakes_a_device_in_low_power(nvme: str, vfio_driver: str) -> None:
    # nvme has a PM capability, so low power really takes it to D3hot.
    with Device.open(nvme) as dev:
        cap = dev.region(0).read(0, 8)
        dev.feature(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, VFIO_DEVICE_FEATURE_SET)
        time.sleep(0.2)  # let runtime PM suspend it
        try:
            in_low_power = dev.region(0).read(0, 8)
        except VfioError as exc:
            pytest.fail(f"pread in low power: {exc}")
        assert in_low_power == cap


def test_read_advances_the_file_position(edu: str, vfio_driver: str) -> None:
    # Device fds do not seek, so read() walks region 0 (edu's BAR0) from 0.
    with Device.open(edu) as dev:
        dev.region(0).write(4, struct.pack("<I", 0x12345678))  # liveness: reads back inverted
        assert os.read(dev.fd, 4) == dev.region(0).read(0, 4)  # identification
        assert os.read(dev.fd, 4) == struct.pack("<I", ~0x12345678 & 0xFFFFFFFF)
