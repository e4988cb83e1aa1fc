# SPDX-License-Identifier: Apache-2.0
"""The VFIO container (/dev/vfio/vfio): API version, IOMMU type."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Sequence

from . import _check, uapi
from ._sys import ioctl, open_node
from .caps import IommuInfo, parse_iommu_info
from .dma import check_iova_span, check_map_args
from .errors import ClosedError, OutOfRangeError, UnsupportedError, VfioError, explain_overlap

CONTAINER_PATH = "/dev/vfio/vfio"
C_INT_MAX = (1 << 31) - 1  # an ioctl's int argument


class Container:
    """An open VFIO container; groups are attached to it, then the IOMMU is set.

    ``path`` is the container node (str or pathlib.Path).
    """

    def __init__(self, path: str = CONTAINER_PATH) -> None:
        path = _check.path(path, "path", device=None, operation="open container")
        #: The container node it opened.
        self.path = path
        self._fd = open_node(
            path,
            device=path,
            operation="open container",
            hint="load the vfio module (modprobe vfio-pci)",
        )
        #: The IOMMU model :meth:`set_iommu` selected (VFIO_TYPE1v2_IOMMU ...),
        #: None before.
        self.iommu_type: int | None = None
        try:
            version = ioctl(
                self._fd,
                uapi.VFIO_GET_API_VERSION,
                0,
                device=path,
                operation="VFIO_GET_API_VERSION",
            )
            if version != uapi.VFIO_API_VERSION:
                raise UnsupportedError(
                    f"unknown VFIO API version {version}", device=path, operation="open container"
                )
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def fd(self) -> int:
        """The container's fd; ClosedError once closed."""
        if self._fd < 0:
            raise ClosedError("container is closed", device=self.path, operation="use")
        return self._fd

    def check_extension(self, extension: int) -> bool:
        """VFIO_CHECK_EXTENSION: ``extension`` an int (pyvfio.uapi.VFIO_TYPE1v2_IOMMU ...)."""
        extension = _check.integer(
            extension,
            "extension",
            device=self.path,
            operation="VFIO_CHECK_EXTENSION",
            high=C_INT_MAX,
        )
        return (
            ioctl(
                self.fd,
                uapi.VFIO_CHECK_EXTENSION,
                extension,
                device=self.path,
                operation="VFIO_CHECK_EXTENSION",
            )
            > 0
        )

    def set_iommu(self, iommu_type: int = uapi.VFIO_TYPE1v2_IOMMU) -> None:
        """Select the IOMMU model (an int, pyvfio.uapi.VFIO_*_IOMMU); needs at
        least one group attached first."""
        iommu_type = _check.integer(
            iommu_type, "iommu_type", device=self.path, operation="VFIO_SET_IOMMU", high=C_INT_MAX
        )
        if self.iommu_type is not None:
            return
        if not self.check_extension(iommu_type):
            raise UnsupportedError(
                f"IOMMU type {iommu_type} not offered",
                device=self.path,
                operation="VFIO_SET_IOMMU",
                hint="load vfio_iommu_type1 and boot with the IOMMU on",
            )
        ioctl(
            self.fd, uapi.VFIO_SET_IOMMU, iommu_type, device=self.path, operation="VFIO_SET_IOMMU"
        )
        self.iommu_type = iommu_type

    @property
    def name(self) -> str:
        """What errors call it: its path."""
        return self.path

    def iommu_info(self) -> IommuInfo:
        """VFIO_IOMMU_GET_INFO with its capabilities (IOVA ranges, DMA mappings left)."""
        size = ctypes.sizeof(uapi.vfio_iommu_type1_info)
        while True:
            buf = bytearray(size)
            struct.pack_into("<I", buf, 0, size)
            ioctl(
                self.fd,
                uapi.VFIO_IOMMU_GET_INFO,
                buf,
                device=self.path,
                operation="VFIO_IOMMU_GET_INFO",
            )
            argsz, flags, pgsizes, cap_offset = struct.unpack_from("<IIQI", buf, 0)
            if argsz <= size:
                break
            size = argsz
        first = cap_offset if flags & uapi.VFIO_IOMMU_INFO_CAPS else 0
        return parse_iommu_info(bytes(buf[:argsz]), pgsizes, first)

    def iova_ranges(self) -> Sequence[tuple[int, int]]:
        """Usable IOVA ranges, inclusive (start, end), from :meth:`iommu_info`;
        the whole 64-bit space where the kernel does not say."""
        ranges = self.iommu_info().iova_ranges
        # Kernels without the capability accept the whole 64-bit space.
        return ranges or ((0, (1 << 64) - 1),)

    def map_dma(
        self, vaddr: int, iova: int, size: int, *, readable: bool = True, writable: bool = True
    ) -> None:
        """Map ``size`` bytes of this process at ``vaddr`` to ``iova`` (ints, size
        > 0, the span below 2**64); ``readable``/``writable`` by the device, True or False."""
        vaddr, iova, size, readable, writable = check_map_args(
            vaddr, iova, size, readable, writable, device=self.path, operation="VFIO_IOMMU_MAP_DMA"
        )
        flags = (uapi.VFIO_DMA_MAP_FLAG_READ if readable else 0) | (
            uapi.VFIO_DMA_MAP_FLAG_WRITE if writable else 0
        )
        arg = uapi.vfio_iommu_type1_dma_map(
            argsz=ctypes.sizeof(uapi.vfio_iommu_type1_dma_map),
            flags=flags,
            vaddr=vaddr,
            iova=iova,
            size=size,
        )
        try:
            ioctl(
                self.fd,
                uapi.VFIO_IOMMU_MAP_DMA,
                arg,
                device=self.path,
                operation=f"VFIO_IOMMU_MAP_DMA(iova={iova:#x}, size={size:#x})",
            )
        except VfioError as exc:
            explain_overlap(exc)
            raise

    def unmap_dma(self, iova: int, size: int) -> None:
        """Unmap what was mapped at ``iova``, ``size`` bytes (ints, as map_dma() takes them)."""
        iova, size = check_iova_span(iova, size, device=self.path, operation="VFIO_IOMMU_UNMAP_DMA")
        arg = uapi.vfio_iommu_type1_dma_unmap(
            argsz=ctypes.sizeof(uapi.vfio_iommu_type1_dma_unmap), iova=iova, size=size
        )
        ioctl(
            self.fd,
            uapi.VFIO_IOMMU_UNMAP_DMA,
            arg,
            device=self.path,
            operation=f"VFIO_IOMMU_UNMAP_DMA(iova={iova:#x})",
        )
        if arg.size != size:
            raise OutOfRangeError(
                f"unmapped {arg.size:#x} of {size:#x} bytes",
                device=self.path,
                operation="VFIO_IOMMU_UNMAP_DMA",
            )

    def close(self) -> None:
        """Close the container; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
