# SPDX-License-Identifier: Apache-2.0
"""Device regions: info, pread/pwrite access and mmap."""

from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import uapi
from ._sys import ioctl
from .errors import OutOfRangeError, UnsupportedError, from_oserror
from .mmio import Mapping

if TYPE_CHECKING:
    from .device import Device


@dataclass(frozen=True)
class RegionInfo:
    index: int
    flags: int
    size: int
    offset: int
    caps: bytes  # raw capability chain; parsed by later layers

    @property
    def readable(self) -> bool:
        return bool(self.flags & uapi.VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & uapi.VFIO_REGION_INFO_FLAG_WRITE)

    @property
    def mappable(self) -> bool:
        return bool(self.flags & uapi.VFIO_REGION_INFO_FLAG_MMAP)


def query_region_info(fd: int, index: int, device: str) -> RegionInfo:
    """VFIO_DEVICE_GET_REGION_INFO, growing the buffer once if caps follow."""
    size = ctypes.sizeof(uapi.vfio_region_info)
    while True:
        buf = bytearray(size)
        info = uapi.vfio_region_info.from_buffer(buf)
        info.argsz = size
        info.index = index
        ioctl(
            fd,
            uapi.VFIO_DEVICE_GET_REGION_INFO,
            buf,
            device=device,
            operation=f"VFIO_DEVICE_GET_REGION_INFO({index})",
        )
        if info.argsz <= size:
            break
        size = info.argsz
    has_caps = info.flags & uapi.VFIO_REGION_INFO_FLAG_CAPS and info.cap_offset
    caps = bytes(buf[info.cap_offset : info.argsz]) if has_caps else b""
    result = RegionInfo(
        index=index, flags=info.flags, size=info.size, offset=info.offset, caps=caps
    )
    del info  # release the export of buf
    return result


class Region:
    """One region of an open device."""

    def __init__(self, device: Device, index: int) -> None:
        self._device = device
        self.index = index
        self.info = query_region_info(device.fd, index, device.bdf)
        self._mappings: list[Mapping] = []

    @property
    def size(self) -> int:
        return self.info.size

    def _check_range(self, offset: int, length: int, operation: str) -> None:
        if offset < 0 or length < 0 or offset + length > self.info.size:
            raise OutOfRangeError(
                f"[{offset:#x}, {offset + length:#x}) is outside region {self.index} "
                f"of size {self.info.size:#x}",
                device=self._device.bdf,
                operation=operation,
            )

    def read(self, offset: int, length: int) -> bytes:
        """Read through the kernel (pread on the device fd)."""
        self._check_range(offset, length, f"read region {self.index}")
        if not self.info.readable:
            raise UnsupportedError(
                f"region {self.index} is not readable", device=self._device.bdf, operation="read"
            )
        try:
            return os.pread(self._device.fd, length, self.info.offset + offset)
        except OSError as exc:
            raise from_oserror(
                exc, device=self._device.bdf, operation=f"read region {self.index} at {offset:#x}"
            ) from exc

    def write(self, offset: int, data: bytes) -> None:
        """Write through the kernel (pwrite on the device fd)."""
        self._check_range(offset, len(data), f"write region {self.index}")
        if not self.info.writable:
            raise UnsupportedError(
                f"region {self.index} is not writable", device=self._device.bdf, operation="write"
            )
        try:
            done = os.pwrite(self._device.fd, data, self.info.offset + offset)
        except OSError as exc:
            raise from_oserror(
                exc, device=self._device.bdf, operation=f"write region {self.index} at {offset:#x}"
            ) from exc
        if done != len(data):
            raise OutOfRangeError(
                f"short write: {done} of {len(data)} bytes",
                device=self._device.bdf,
                operation="write",
            )

    def map(self, offset: int = 0, length: int | None = None) -> Mapping:
        """mmap ``length`` bytes of the region from ``offset`` (page aligned)."""
        bdf = self._device.bdf
        if not self.info.mappable:
            raise UnsupportedError(
                f"region {self.index} cannot be mmapped",
                device=bdf,
                operation="map",
                hint="use read()/write() instead",
            )
        if length is None:
            length = self.info.size - offset
        self._check_range(offset, length, f"map region {self.index}")
        if offset % mmap.PAGESIZE or length == 0:
            raise OutOfRangeError(
                f"offset {offset:#x} must be page aligned and length non-zero",
                device=bdf,
                operation=f"map region {self.index}",
            )
        prot = (mmap.PROT_READ if self.info.readable else 0) | (
            mmap.PROT_WRITE if self.info.writable else 0
        )
        try:
            mm = mmap.mmap(
                self._device.fd,
                length,
                flags=mmap.MAP_SHARED,
                prot=prot,
                offset=self.info.offset + offset,
            )
        except OSError as exc:
            raise from_oserror(
                exc,
                device=bdf,
                operation=f"mmap region {self.index}",
                hint="the kernel refuses parts of some regions (e.g. the MSI-X table)",
            ) from exc
        mapping = Mapping(mm, name=f"{bdf} region {self.index}+{offset:#x}")
        self._mappings.append(mapping)
        return mapping

    def close(self) -> None:
        for mapping in self._mappings:
            mapping.close()
        self._mappings.clear()
