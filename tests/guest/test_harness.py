# SPDX-License-Identifier: Apache-2.0
"""The harness is real: a real kernel, real VFIO, real emulated devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyvfio import Device, DriverError, Sysfs
from pyvfio.uapi import VFIO_PCI_CONFIG_REGION_INDEX

EDU_IDENT = 0x010000ED  # edu spec: BAR0+0x00, major 1, minor 0, 0xed
EDU_LIVENESS = 0x04  # reads back the bitwise inverse of what was written


def test_guest_kernel_is_the_distribution_kernel() -> None:
    release = os.uname().release
    assert Path(f"/lib/modules/{release}/kernel/drivers/vfio").is_dir()
    # debugfs is mounted: later tests read the PAT memtype list from it
    assert Path("/sys/kernel/debug/x86/pat_memtype_list").exists()


def test_the_guest_caches_the_hosts_root() -> None:
    # Without a cache every lookup is a 9p round trip: Python starts about
    # twice as slowly, and so does each boot of this suite.
    (options,) = [
        line.split()[3]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1] == "/"
    ]
    flags = options.split(",")
    # 6.1 names the mode; later kernels show its bits (loose is 0xf)
    assert "loose" in flags or "cache=0xf" in flags, options


def test_edu_ident_through_vfio_mmap(edu: str, sysfs: Sysfs, vfio_driver: str) -> None:
    assert sysfs.device(edu).driver == vfio_driver
    assert Path("/dev/vfio", str(sysfs.device(edu).iommu_group)).exists()
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        assert bar0.read32(0) == EDU_IDENT


def test_edu_liveness_register(edu: str) -> None:
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        for value in (0, 1, 0x12345678, 0xDEADBEEF, 0xFFFFFFFF):
            bar0.write32(EDU_LIVENESS, value)
            assert bar0.read32(EDU_LIVENESS) == ~value & 0xFFFFFFFF


def test_mmap_and_pread_see_the_same_device(edu: str) -> None:
    with Device.open(edu) as dev:
        bar0 = dev.region(0)
        assert int.from_bytes(bar0.read(0, 4), "little") == EDU_IDENT
        config = dev.region(VFIO_PCI_CONFIG_REGION_INDEX)
        assert int.from_bytes(config.read(0, 4), "little") == 0x11E81234


def test_bind_restores_the_previous_driver(sysfs: Sysfs, nvme_id: tuple[int, int]) -> None:
    (nvme,) = sysfs.find(*nvme_id)
    assert nvme.driver == "nvme"
    assert sysfs.bind(nvme.bdf) == "nvme"
    assert sysfs.device(nvme.bdf).driver == "vfio-pci"
    assert sysfs.unbind(nvme.bdf) == "nvme"
    assert sysfs.device(nvme.bdf).driver_override is None


def test_opening_a_device_not_on_vfio_says_what_to_do(
    sysfs: Sysfs, nvme_id: tuple[int, int]
) -> None:
    (nvme,) = sysfs.find(*nvme_id)
    with pytest.raises(DriverError, match=rf"bound to nvme.*pyvfio bind {nvme.bdf}"):
        Device.open(nvme.bdf)
