# SPDX-License-Identifier: Apache-2.0
"""Capability chains parsed from byte strings shaped as the kernel writes them."""

import struct

import pytest

from pyvfio import uapi
from pyvfio.caps import (
    MsixMappableCap,
    SparseMmapCap,
    TypeCap,
    UnknownCap,
    parse_iommu_info,
    parse_region_caps,
    walk_chain,
)
from pyvfio.errors import InvalidArgumentError
from pyvfio.region import RegionInfo

INFO_HEADER = 32  # sizeof(struct vfio_region_info)


def cap(cap_id: int, next_offset: int, body: bytes, version: int = 1) -> bytes:
    return struct.pack("<HHI", cap_id, version, next_offset) + body


def sparse(areas: list[tuple[int, int]], next_offset: int = 0) -> bytes:
    body = struct.pack("<II", len(areas), 0) + b"".join(struct.pack("<QQ", *a) for a in areas)
    return cap(uapi.VFIO_REGION_INFO_CAP_SPARSE_MMAP, next_offset, body)


def info_with(*caps: bytes) -> bytes:
    return bytes(INFO_HEADER) + b"".join(caps)


def test_sparse_mmap_areas() -> None:
    # vfio-pci without MSI-X mappability: the BAR around the MSI-X table page
    info = info_with(sparse([(0, 0x2000), (0x3000, 0x1000)]))
    (parsed,) = parse_region_caps(info, INFO_HEADER)
    assert parsed == SparseMmapCap(((0, 0x2000), (0x3000, 0x1000)))


def test_chain_of_type_msix_and_unknown_keeps_order_and_raw_bytes() -> None:
    first = INFO_HEADER
    second = first + 16
    third = second + 8
    info = info_with(
        cap(uapi.VFIO_REGION_INFO_CAP_TYPE, second, struct.pack("<II", 0x80008086, 1)),
        cap(uapi.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, third, b""),
        cap(0x7777, 0, b"\x01\x02\x03\x04", version=3),
    )
    assert parse_region_caps(info, first) == (
        TypeCap(0x80008086, 1),
        MsixMappableCap(),
        UnknownCap(0x7777, 3, b"\x01\x02\x03\x04"),
    )


def test_looping_chain_is_an_error_not_a_hang() -> None:
    info = info_with(cap(uapi.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, INFO_HEADER, b""))
    with pytest.raises(InvalidArgumentError, match="malformed capability chain"):
        walk_chain(info, INFO_HEADER)


@pytest.mark.parametrize("first", [INFO_HEADER + 100, -8, 3])
def test_out_of_bounds_chain_is_an_error(first: int) -> None:
    with pytest.raises(InvalidArgumentError):
        walk_chain(info_with(sparse([(0, 0x1000)])), first)


def test_sparse_count_larger_than_body_is_an_error() -> None:
    body = struct.pack("<II", 5, 0) + struct.pack("<QQ", 0, 0x1000)
    info = info_with(cap(uapi.VFIO_REGION_INFO_CAP_SPARSE_MMAP, 0, body))
    with pytest.raises(InvalidArgumentError, match="sparse mmap areas"):
        parse_region_caps(info, INFO_HEADER)


def test_iommu_info_iova_ranges_and_dma_avail() -> None:
    ranges = [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 39) - 1)]
    body = struct.pack("<II", 2, 0) + b"".join(struct.pack("<QQ", *r) for r in ranges)
    first = 24
    second = first + 8 + len(body)
    info = (
        bytes(first)
        + cap(uapi.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, second, body)
        + cap(uapi.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 0, struct.pack("<I", 65535))
    )
    parsed = parse_iommu_info(info, 0x40201000, first)
    assert parsed.iova_ranges == tuple(ranges)
    assert parsed.dma_avail == 65535
    assert parsed.page_sizes == 0x40201000


def _region(flags: int, caps: tuple[object, ...] = ()) -> RegionInfo:
    return RegionInfo(index=0, flags=flags, size=0x4000, offset=0, caps=caps)  # type: ignore[arg-type]


RWM = (
    uapi.VFIO_REGION_INFO_FLAG_READ
    | uapi.VFIO_REGION_INFO_FLAG_WRITE
    | uapi.VFIO_REGION_INFO_FLAG_MMAP
)


def test_mmap_areas_shapes() -> None:
    assert _region(RWM).mmap_areas == ((0, 0x4000),)
    assert _region(RWM & ~uapi.VFIO_REGION_INFO_FLAG_MMAP).mmap_areas == ()
    sparse_cap = SparseMmapCap(((0, 0x2000),))
    assert _region(RWM, (sparse_cap,)).mmap_areas == ((0, 0x2000),)
    assert _region(RWM, (MsixMappableCap(),)).msix_mappable
