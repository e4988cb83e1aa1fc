# SPDX-License-Identifier: Apache-2.0
"""VFIO info capability chains, parsed into typed objects.

Region info and IOMMU info may be followed by a chain of capabilities, each
starting with ``struct vfio_info_cap_header`` whose ``next`` is an offset from
the start of the info struct.  Unknown capabilities are kept as raw bytes so
a newer kernel never makes an older pyvfio fail.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from . import uapi
from ._check import CheckedRecord
from .errors import InvalidArgumentError

_HEADER = ctypes.sizeof(uapi.vfio_info_cap_header)


@dataclass(frozen=True)
class RawCap:
    """One capability as found: its id, version and body (after the header)."""

    id: int
    version: int
    offset: int
    body: bytes


def walk_chain(info: bytes, first: int) -> list[RawCap]:
    """Split the capability chain of ``info`` starting at offset ``first``.

    Raises InvalidArgumentError on a malformed chain (out of bounds or looping)
    rather than reading garbage or spinning.
    """
    caps: list[RawCap] = []
    seen: set[int] = set()
    offset = first
    while offset:
        if offset in seen or offset < 0 or offset % 4 or offset + _HEADER > len(info):
            raise InvalidArgumentError(
                f"malformed capability chain: offset {offset:#x} in a {len(info)}-byte info",
                operation="parse capabilities",
            )
        seen.add(offset)
        cap_id, version, next_offset = struct.unpack_from("<HHI", info, offset)
        end = next_offset if next_offset > offset else len(info)
        caps.append(RawCap(cap_id, version, offset, bytes(info[offset + _HEADER : end])))
        offset = next_offset
    return caps


def _counted_pairs(raw: RawCap, what: str) -> tuple[tuple[int, int], ...]:
    """A body of ``__u32 count; __u32 reserved;`` then ``count`` pairs of __u64."""
    count = struct.unpack_from("<I", raw.body, 0)[0] if len(raw.body) >= 8 else -1
    if count < 0 or 8 + 16 * count > len(raw.body):
        raise InvalidArgumentError(
            f"capability {raw.id} claims more {what} than its {len(raw.body)} bytes hold",
            operation="parse capabilities",
        )
    return tuple(struct.unpack_from("<QQ", raw.body, 8 + 16 * i) for i in range(count))


@dataclass(frozen=True)
class SparseMmapCap(CheckedRecord):
    """Only these (offset, size) areas of the region may be mmapped."""

    #: (offset, size) pairs, in the region.
    areas: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TypeCap(CheckedRecord):
    """A device-specific region: its type and subtype."""

    #: VFIO_REGION_TYPE_* (a vendor's PCI ID with bit 31 set for vendor types).
    type: int
    #: What the type means by it (VFIO_REGION_SUBTYPE_*).
    subtype: int


@dataclass(frozen=True)
class MsixMappableCap(CheckedRecord):
    """The MSI-X table in this BAR may be mmapped (kernel virtualises it)."""


@dataclass(frozen=True)
class UnknownCap(CheckedRecord):
    """A capability pyvfio does not decode, kept as it came."""

    #: Its ID in the chain.
    id: int
    #: Its version.
    version: int
    #: Its bytes after the header.
    data: bytes


RegionCap = SparseMmapCap | TypeCap | MsixMappableCap | UnknownCap


def parse_region_caps(info: bytes, first: int) -> tuple[RegionCap, ...]:
    caps: list[RegionCap] = []
    for raw in walk_chain(info, first):
        if raw.id == uapi.VFIO_REGION_INFO_CAP_SPARSE_MMAP:
            caps.append(SparseMmapCap(_counted_pairs(raw, "sparse mmap areas")))
        elif raw.id == uapi.VFIO_REGION_INFO_CAP_TYPE and len(raw.body) >= 8:
            caps.append(TypeCap(*struct.unpack_from("<II", raw.body, 0)))
        elif raw.id == uapi.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
            caps.append(MsixMappableCap())
        else:
            caps.append(UnknownCap(raw.id, raw.version, raw.body))
    return tuple(caps)


@dataclass(frozen=True)
class IommuInfo(CheckedRecord):
    """What VFIO_IOMMU_GET_INFO reports for a type1 container."""

    #: The IOMMU page sizes, a bit per size (bit 12: 4 KiB).
    page_sizes: int
    #: The usable IOVA ranges, inclusive (start, end); empty: the kernel
    #: did not say (then the whole 64-bit space is usable).
    iova_ranges: tuple[tuple[int, int], ...]
    #: How many more DMA mappings the container takes, or None if not said.
    dma_avail: int | None
    #: Capabilities of the info that pyvfio does not decode.
    unknown: tuple[UnknownCap, ...]


def parse_iommu_info(info: bytes, page_sizes: int, first: int) -> IommuInfo:
    ranges: tuple[tuple[int, int], ...] = ()
    avail: int | None = None
    unknown: list[UnknownCap] = []
    for raw in walk_chain(info, first):
        if raw.id == uapi.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
            ranges = _counted_pairs(raw, "IOVA ranges")
        elif raw.id == uapi.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL and len(raw.body) >= 4:
            (avail,) = struct.unpack_from("<I", raw.body, 0)
        else:
            unknown.append(UnknownCap(raw.id, raw.version, raw.body))
    return IommuInfo(page_sizes, ranges, avail, tuple(unknown))
