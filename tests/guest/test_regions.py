# SPDX-License-Identifier: Apache-2.0
"""Regions, config space and MMIO on the emulated devices, as the kernel serves them."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from pyvfio import (
    ClosedError,
    Device,
    InvalidArgumentError,
    OutOfRangeError,
    Sysfs,
    UnsupportedError,
)
from pyvfio.caps import MsixMappableCap, SparseMmapCap
from pyvfio.mmio import Mapping, _PyWindow
from pyvfio.uapi import VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ROM_REGION_INDEX

EDU_IDENT = 0x010000ED


def test_bar_regions_match_sysfs(any_device: str, sysfs: Sysfs) -> None:
    pci = sysfs.device(any_device)
    with Device.open(any_device) as dev:
        assert dev.info.is_pci and dev.info.num_regions == 9
        for bar in range(6):
            info = dev.region(bar).info
            expected = next((b.size for b in pci.bars if b.index == bar), 0)
            assert info.size == expected, f"BAR{bar}"
            if expected:
                assert info.readable and info.writable and info.mappable


def test_config_space_identity_and_capabilities(any_device: str, sysfs: Sysfs) -> None:
    pci = sysfs.device(any_device)
    with Device.open(any_device) as dev:
        assert dev.config.read16(0) == pci.vendor
        assert dev.config.read16(2) == pci.device
        assert dev.config.read32(8) >> 8 == pci.class_code
        names = [c.name for c in dev.config.capabilities()]
    expected = {0x1234: ["MSI"], 0x1AF4: [], 0x1B36: ["MSI-X", "PCI Express", "Power Management"]}[
        pci.vendor
    ]
    assert names == expected


def test_nvme_bar0_reports_msix_mappable_not_sparse(nvme: str) -> None:
    # 6.1 with interrupt remapping lets userspace map the MSI-X table page.
    with Device.open(nvme) as dev:
        info = dev.region(0).info
        assert any(isinstance(c, MsixMappableCap) for c in info.caps)
        assert not any(isinstance(c, SparseMmapCap) for c in info.caps)
        assert info.mmap_areas == ((0, info.size),)
        with dev.region(0).map() as bar0:
            assert bar0.read32(0x08) == 0x00010400  # NVMe VS: 1.4


def test_mmio_widths_are_exact_on_a_real_register(edu: str) -> None:
    # edu answers only 32-bit accesses below 0x80 (others read as 0 / are
    # dropped) and accepts 64-bit ones from 0x80 on; so a split or widened
    # access would show.
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        for window in (bar0, _PyWindow(mmap.mmap(dev.fd, 4096, offset=0), "py")):
            assert window.read32(0) == EDU_IDENT
            assert window.read16(0) == 0, "16-bit read was widened"
            assert window.read64(0) == 0xFFFFFFFFFFFFFFFF, "64-bit read was split"
            window.write32(0x04, 0x11)
            window.write16(0x04, 0x22)  # edu drops it; a widened write would land
            assert window.read32(0x04) == ~0x11 & 0xFFFFFFFF
            window.write64(0x80, 0x0123456789ABC000)
            assert window.read64(0x80) == 0x0123456789ABC000, "64-bit write was split"
            window.write32(0x80, 0x1000)
            window.write32(0x84, 0x5)  # two halves: edu keeps only the low one
            assert window.read64(0x80) == 0x1000


def test_bulk_copies_use_wide_accesses(edu: str) -> None:
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        bar0.write_bytes(0x80, (0x0123456789ABCDEF).to_bytes(8, "little"))
        assert bar0.read64(0x80) == 0x0123456789ABCDEF
        bar0.write_barrier()
        assert bar0.read_bytes(0, 4) == EDU_IDENT.to_bytes(4, "little")


def test_pread_pwrite_and_mmap_agree(ivshmem: str) -> None:
    with Device.open(ivshmem) as dev:
        bar2 = dev.region(2)
        mapping = bar2.map(0x1000, 0x1000)
        assert mapping.region_offset == 0x1000
        bar2.write(0x1010, b"pyvfio!!")
        assert mapping.read64(0x10) == int.from_bytes(b"pyvfio!!", "little")
        mapping.write32(0x20, 0xCAFEF00D)
        assert bar2.read(0x1020, 4) == (0xCAFEF00D).to_bytes(4, "little")


@pytest.mark.parametrize(("offset", "length"), [(-1, 4), (0x400000, 1), (0x3FFFFC, 8)])
def test_out_of_range_region_access(ivshmem: str, offset: int, length: int) -> None:
    with Device.open(ivshmem) as dev:
        bar2 = dev.region(2)
        with pytest.raises(OutOfRangeError, match=rf"{ivshmem}: read BAR2"):
            bar2.read(offset, length)
        with pytest.raises(OutOfRangeError):
            bar2.write(offset, bytes(length))


def test_mapping_what_the_kernel_forbids(edu: str) -> None:
    with Device.open(edu) as dev:
        with pytest.raises(UnsupportedError, match="config: region cannot be mmapped"):
            dev.region(VFIO_PCI_CONFIG_REGION_INDEX).map()
        with pytest.raises(UnsupportedError, match="cannot be mmapped"):
            dev.region(VFIO_PCI_ROM_REGION_INDEX).map()  # edu has no ROM
        with pytest.raises(OutOfRangeError, match="page aligned"):
            dev.region(0).map(0x10, 0x1000)
        with pytest.raises(OutOfRangeError, match="outside BAR0"):
            dev.region(0).map(0, 0x200000)
        with pytest.raises(UnsupportedError, match="region 9 does not exist"):
            dev.region(9)


def test_closed_device_and_mapping_refuse_use(edu: str) -> None:
    dev = Device.open(edu)
    bar0: Mapping = dev.region(0).map()
    dev.close()
    dev.close()  # harmless twice
    with pytest.raises(ClosedError, match="mapping is closed"):
        bar0.read32(0)
    with pytest.raises(ClosedError, match=rf"{edu}: use: device is closed"):
        dev.region(0).read(0, 4)
    with pytest.raises(ClosedError):
        dev.reset()


def test_reset_where_the_device_offers_one(edu: str, nvme: str) -> None:
    with Device.open(nvme) as dev:
        bar0 = dev.region(0).map()
        assert dev.info.can_reset
        dev.reset()
        assert bar0.read32(0x08) == 0x00010400  # registers answer after the reset
    with Device.open(edu) as dev, pytest.raises(UnsupportedError, match="offers no reset"):
        dev.reset()


def test_reset_by_a_method_the_kernel_offers(nvme: str) -> None:
    attribute = Path("/sys/bus/pci/devices", nvme, "reset_method")
    before = attribute.read_text()
    with Device.open(nvme) as dev:
        offered = dev.reset_methods()
        assert offered == tuple(before.split())
        assert "flr" in offered  # QEMU's nvme: a PCIe function-level reset
        bar0 = dev.region(0).map()
        cc = 0x14  # controller configuration: a reset clears it
        bar0.write32(cc, 6 << 16)  # IOSQES, with the controller disabled
        assert bar0.read32(cc) == 6 << 16
        dev.reset(method="flr")
        assert bar0.read32(cc) == 0
        assert attribute.read_text() == before  # the kernel's own choice is back
        other = next(m for m in ("bus", "pm", "acpi", "flr") if m not in offered)
        with pytest.raises(InvalidArgumentError, match=rf"'{other}' is not offered.*offers flr"):
            dev.reset(method=other)
        assert attribute.read_text() == before
