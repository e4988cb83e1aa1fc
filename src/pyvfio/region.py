# SPDX-License-Identifier: Apache-2.0
"""Device regions: info with capabilities, pread/pwrite access and mmap."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass

from . import _check, uapi
from ._check import CheckedRecord
from ._sys import ioctl
from .caps import MsixMappableCap, RegionCap, SparseMmapCap, TypeCap, parse_region_caps
from .cookie import Cookie, MemoryAttr, check_attr, check_device
from .devfd import DeviceFd
from .errors import InvalidArgumentError, OutOfRangeError, UnsupportedError, from_oserror
from .mmio import Mapping

REGION_NAMES = {
    0: "BAR0",
    1: "BAR1",
    2: "BAR2",
    3: "BAR3",
    4: "BAR4",
    5: "BAR5",
    6: "ROM",
    7: "config",
    8: "VGA",
}


@dataclass(frozen=True)
class RegionInfo(CheckedRecord):
    """What the kernel says of a region (VFIO_DEVICE_GET_REGION_INFO):
    :attr:`Region.info`.  A region the device lacks has size 0 and no flags."""

    #: The region's index (0-5 the BARs, 6 ROM, 7 config, 8 VGA, then device-specific).
    index: int
    #: VFIO_REGION_INFO_FLAG_* bits (READ, WRITE, MMAP, CAPS: pyvfio.uapi).
    flags: int
    #: Its size in bytes.
    size: int
    #: Where the region starts in the device fd (what pread and mmap are given).
    offset: int
    #: Its capabilities, decoded: SparseMmapCap, TypeCap, MsixMappableCap, UnknownCap.
    caps: tuple[RegionCap, ...]

    @property
    def name(self) -> str:
        """``BAR0`` to ``BAR5``, ``ROM``, ``config``, ``VGA``, else ``regionN``."""
        return REGION_NAMES.get(self.index, f"region{self.index}")

    @property
    def readable(self) -> bool:
        """Whether the region may be read (the READ flag)."""
        return bool(self.flags & uapi.VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        """Whether the region may be written (the WRITE flag)."""
        return bool(self.flags & uapi.VFIO_REGION_INFO_FLAG_WRITE)

    @property
    def mappable(self) -> bool:
        """Whether some of the region may be mmapped (the MMAP flag);
        :attr:`mmap_areas` says which parts."""
        return bool(self.flags & uapi.VFIO_REGION_INFO_FLAG_MMAP)

    @property
    def msix_mappable(self) -> bool:
        """Whether the MSI-X table in this BAR may be mmapped too (an MsixMappableCap)."""
        return any(isinstance(c, MsixMappableCap) for c in self.caps)

    @property
    def type(self) -> TypeCap | None:
        """A device-specific region's type and subtype, or None."""
        return next((c for c in self.caps if isinstance(c, TypeCap)), None)

    @property
    def mmap_areas(self) -> tuple[tuple[int, int], ...]:
        """(offset, size) pairs that may be mmapped; the whole region unless sparse."""
        if not self.mappable or self.size == 0:
            return ()
        for cap in self.caps:
            if isinstance(cap, SparseMmapCap):
                return cap.areas
        return ((0, self.size),)


def query_region_info(fd: int, index: int, device: str) -> RegionInfo:
    """VFIO_DEVICE_GET_REGION_INFO, growing the buffer once if caps follow.

    A region the device does not have reads as size 0 with no flags.
    """
    size = ctypes.sizeof(uapi.vfio_region_info)
    while True:
        buf = bytearray(size)
        hdr = uapi.vfio_region_info.from_buffer(buf)
        hdr.argsz, hdr.index = size, index
        try:
            ioctl(
                fd,
                uapi.VFIO_DEVICE_GET_REGION_INFO,
                buf,
                device=device,
                operation=f"VFIO_DEVICE_GET_REGION_INFO({index})",
            )
        except InvalidArgumentError:
            # vfio-pci's answer for a region the device lacks (e.g. VGA)
            del hdr
            return RegionInfo(index=index, flags=0, size=0, offset=0, caps=())
        flags, argsz, cap_offset = hdr.flags, hdr.argsz, hdr.cap_offset
        region_size, region_offset = hdr.size, hdr.offset
        del hdr  # release the export of buf
        if argsz <= size:
            break
        size = argsz
    has_caps = flags & uapi.VFIO_REGION_INFO_FLAG_CAPS and cap_offset
    caps = parse_region_caps(bytes(buf[:argsz]), cap_offset) if has_caps else ()
    return RegionInfo(index=index, flags=flags, size=region_size, offset=region_offset, caps=caps)


class Region:
    """One region of an open device; obtained with ``Device.region(index)``.

    Offsets and lengths are ints (never bools), relative to the region's start.
    """

    def __init__(self, device: DeviceFd, index: int) -> None:
        """``device`` an open Device, ``index`` one of its region indexes."""
        device = check_device(device, "region")
        index = device._region_index(index, "region")
        self._device = device
        #: The region's index.
        self.index = index
        #: What the kernel says of it (a :class:`RegionInfo`), read once at creation.
        self.info = query_region_info(device.fd, index, device.bdf)
        self._mappings: list[Mapping] = []

    @property
    def size(self) -> int:
        """The region's size in bytes (0: the device has no such region)."""
        return self.info.size

    def _where(self, operation: str) -> str:
        return f"{operation} {self.info.name}"

    def _check_int(self, value: object, name: str, operation: str) -> int:
        """An int, for a range check after (which says what the region takes)."""
        return _check.integer(
            value,
            name,
            device=self._device.bdf,
            operation=self._where(operation),
            low=None,
            high=None,
        )

    def _check_range(self, offset: int, length: int, operation: str) -> None:
        if offset < 0 or length < 0 or offset + length > self.info.size:
            raise OutOfRangeError(
                f"[{offset:#x}, {offset + length:#x}) is outside {self.info.name} "
                f"(size {self.info.size:#x})",
                device=self._device.bdf,
                operation=self._where(operation),
            )

    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` through the kernel (pread on the
        device fd); both ints, the span inside the region."""
        offset = self._check_int(offset, "offset", "read")
        length = self._check_int(length, "length", "read")
        data = self._kernel_io("read", offset, length, lambda fd, at: os.pread(fd, length, at))
        assert isinstance(data, bytes)
        return data

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` (a bytes-like object) at ``offset`` (an int) through the
        kernel (pwrite on the device fd); the span must lie inside the region."""
        offset = self._check_int(offset, "offset", "write")
        length = _check.readable_buffer(
            data, "data", device=self._device.bdf, operation=self._where("write")
        )
        self._kernel_io("write", offset, length, lambda fd, at: os.pwrite(fd, data, at))

    def _kernel_io(
        self, op: str, offset: int, length: int, call: Callable[[int, int], bytes | int]
    ) -> bytes | int:
        self._check_range(offset, length, op)
        if not (self.info.readable if op == "read" else self.info.writable):
            raise UnsupportedError(
                f"region is not {'readable' if op == 'read' else 'writable'}",
                device=self._device.bdf,
                operation=self._where(op),
            )
        try:
            result = call(self._device.fd, self.info.offset + offset)
        except OSError as exc:
            raise from_oserror(
                exc, device=self._device.bdf, operation=self._where(f"{op} at {offset:#x}")
            ) from exc
        done = len(result) if isinstance(result, bytes) else result
        if done != length:
            raise OutOfRangeError(
                f"short {op}: {done} of {length} bytes",
                device=self._device.bdf,
                operation=self._where(op),
            )
        return result

    def map(
        self,
        offset: int | None = None,
        length: int | None = None,
        *,
        wc: bool = False,
        attr: MemoryAttr | None = None,
    ) -> Mapping:
        """mmap ``length`` bytes of the region from ``offset``.

        The span must lie inside one of ``info.mmap_areas`` (the kernel's
        sparse-mmap areas, or the whole region) and start on a page.  With
        no arguments, maps the whole region, or its only mmap-able area.

        ``wc=True`` (or ``attr=MemoryAttr.WC/UC``) maps through an mmap
        cookie with that memory attribute; it needs the device bound to the
        vfio_pci_cookie driver, and ``mapping.memory_type`` then reports the
        type in effect.  Without them this is a plain vfio-pci mmap.

        ``offset`` and ``length`` are ints or None; ``wc`` True or False;
        ``attr`` None, a MemoryAttr or its int value.  Everything is checked
        before a cookie is made, and a failure after leaves none behind.
        """
        bdf = self._device.bdf
        where = self._where("map")
        offset = _check.optional_integer(
            offset, "offset", device=bdf, operation=where, low=None, high=None
        )
        length = _check.optional_integer(
            length, "length", device=bdf, operation=where, low=None, high=None
        )
        wc = _check.boolean(wc, "wc", device=bdf, operation=where)
        given = attr
        if attr is not None:
            attr = check_attr(attr, bdf, where)
        if wc:
            if attr not in (None, MemoryAttr.WC):
                raise InvalidArgumentError(
                    f"wc=True contradicts attr={getattr(given, 'name', given)}",
                    device=bdf,
                    operation=where,
                    hint="pass wc=True or attr=MemoryAttr.X, not both",
                )
            attr = MemoryAttr.WC
        areas = self.info.mmap_areas
        if not areas:
            raise UnsupportedError(
                "region cannot be mmapped",
                device=bdf,
                operation=self._where("map"),
                hint="use read()/write() instead",
            )
        if offset is None:
            if length is not None or len(areas) != 1:
                raise OutOfRangeError(
                    "say which area to map: "
                    + ", ".join(f"[{o:#x}, {o + s:#x})" for o, s in areas),
                    device=bdf,
                    operation=self._where("map"),
                    hint="call map(offset, length) with one of these areas",
                )
            offset, length = areas[0]
        if length is None:
            length = self.info.size - offset
        self._check_range(offset, length, "map")
        if offset % mmap.PAGESIZE or length <= 0:
            raise OutOfRangeError(
                f"offset {offset:#x} must be page aligned and length > 0",
                device=bdf,
                operation=self._where("map"),
            )
        if not any(o <= offset and offset + length <= o + s for o, s in areas):
            raise OutOfRangeError(
                f"[{offset:#x}, {offset + length:#x}) is not inside an mmap-able area; "
                "areas: " + ", ".join(f"[{o:#x}, {o + s:#x})" for o, s in areas),
                device=bdf,
                operation=self._where("map"),
                hint="the kernel keeps the rest (e.g. the MSI-X table) for read()/write()",
            )
        prot = (mmap.PROT_READ if self.info.readable else 0) | (
            mmap.PROT_WRITE if self.info.writable else 0
        )
        cookie = None
        file_offset = self.info.offset + offset
        if attr is not None:
            cookie = Cookie(self._device, self.index, offset, length, attr)
            file_offset, length = cookie.value, cookie.mmap_length
        try:
            mapping = self._mmap(
                file_offset=file_offset,
                length=length,
                prot=prot,
                offset=offset,
                attr=attr,
                cookie=cookie,
            )
        except BaseException:
            # Whatever failed after the cookie was made (the mmap, an interrupt),
            # the cookie goes too: a live one would keep its memory type on
            # these pages, and nothing would be left to destroy it by.
            if cookie is not None:
                cookie.destroy()
            raise
        self._mappings.append(mapping)
        return mapping

    def _mmap(
        self,
        *,
        file_offset: int,
        length: int,
        prot: int,
        offset: int,
        attr: MemoryAttr | None,
        cookie: Cookie | None,
    ) -> Mapping:
        bdf = self._device.bdf
        try:
            mm = mmap.mmap(
                self._device.fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=file_offset
            )
        except OSError as exc:
            hint = (
                "another mapping of these pages has another memory type"
                if (exc.errno == errno.EBUSY)
                else None
            )
            raise from_oserror(exc, device=bdf, operation=self._where("mmap"), hint=hint) from exc
        name = f"{bdf} {self.info.name}+{offset:#x}" + (f" {attr.name}" if attr is not None else "")
        try:
            return Mapping(mm, name, offset, cookie)
        except BaseException:
            mm.close()
            raise

    def revoke(self, reason: str) -> None:
        """Make the mappings' accessors raise ClosedError(reason) (``reason`` a
        str); the pages stay mapped until close(), so a thread mid-access cannot fault."""
        reason = _check.text(reason, "reason", device=self._device.bdf, operation="revoke")
        for mapping in list(self._mappings):
            mapping._release(reason)

    def close(self, *, destroy_cookies: bool = True) -> None:
        """Unmap every mapping of the region; ``destroy_cookies`` (True or False)
        also destroys their cookies (False: a forked child, whose are its parent's)."""
        destroy_cookies = _check.boolean(
            destroy_cookies, "destroy_cookies", device=self._device.bdf, operation="close region"
        )
        for mapping in self._mappings:
            if destroy_cookies:
                mapping.close()
            else:
                mapping._unmap()
        self._mappings.clear()
