# SPDX-License-Identifier: Apache-2.0
"""Devices a boot adds to the built-in set (`vm run --device`, `--large-bar`),
driven through VFIO.  make test's clients boot adds them (tools/test.sh):
`--device pci-testdev --large-bar 1G --large-bar 64G`."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pyvfio import Device, Mapping, Sysfs
from pyvfio.vm import IVSHMEM_ID, PCI_TESTDEV_ID

GiB = 1 << 30
PAGE = 4096

# pci-testdev's BAR0: writing N to byte 0 starts MMIO test N, whose header
# then reads back a byte per access: width (1), the offset and the data that
# count as a hit (4, 8), hits so far (12), its name (16, NUL-terminated).
TEST, WIDTH, OFFSET, DATA, COUNT, NAME = 0, 1, 4, 8, 12, 16


def _read_bytes(bar: Mapping, offset: int, n: int) -> bytes:
    return bytes(bar.read8(offset + i) for i in range(n))


def _read_u32(bar: Mapping, offset: int) -> int:
    value: int = struct.unpack("<I", _read_bytes(bar, offset, 4))[0]
    return value


def test_an_added_pci_testdev_counts_the_writes_it_is_sent(sysfs: Sysfs) -> None:
    (testdev,) = sysfs.find(*PCI_TESTDEV_ID)
    with (
        sysfs.bound(testdev.bdf, "vfio-pci"),
        Device.open(testdev.bdf) as dev,
        dev.region(0).map() as bar,
    ):
        bar.write8(TEST, 0)  # the first MMIO test
        name = _read_bytes(bar, NAME, 32).split(b"\0", 1)[0].decode()
        assert name.endswith("eventfd"), name
        width = bar.read8(WIDTH)
        offset, data = _read_u32(bar, OFFSET), _read_u32(bar, DATA)
        before = _read_u32(bar, COUNT)
        write = {1: bar.write8, 2: bar.write16, 4: bar.write32}[width]
        for _ in range(3):
            write(offset, data)
        assert _read_u32(bar, COUNT) == before + 3


def test_a_large_bar_is_the_sparse_file_on_the_host(sysfs: Sysfs) -> None:
    sizes = {d.bdf: bar.size for d in sysfs.find(*IVSHMEM_ID) for bar in d.bars if bar.index == 2}
    large = sorted((size, bdf) for bdf, size in sizes.items() if size >= GiB)
    assert [size for size, _ in large] == [1 * GiB, 64 * GiB], sizes
    size, bdf = large[-1]
    # --large-bar's files are numbered in order: the 64 GiB one is the second.
    image = Path(os.environ["PYVFIO_VM_RUNDIR"]) / "bar1.img"
    pattern = 0x5AFE_0000_0000_0064
    with sysfs.bound(bdf, "vfio-pci"), Device.open(bdf) as dev:
        region = dev.region(2)
        assert region.size == 64 * GiB
        with region.map(size - PAGE, PAGE) as last_page:
            last_page.write64(PAGE - 8, pattern)
            assert last_page.read64(PAGE - 8) == pattern
    with image.open("rb") as backing:
        backing.seek(size - 8)
        assert struct.unpack("<Q", backing.read(8))[0] == pattern
    # and no more of it was written: the file stays sparse
    assert image.stat().st_blocks * 512 <= 64 << 20
