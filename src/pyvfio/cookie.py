# SPDX-License-Identifier: Apache-2.0
"""mmap cookies: per-mapping memory attributes (the vfio_pci_cookie module).

A cookie names (region, offset, length, attribute); its value is the offset
to pass to mmap() on the device fd.  Only devices bound to the
``vfio_pci_cookie`` driver (kmod/) offer them; see docs/uapi.md.
"""

from __future__ import annotations

import ctypes
import enum
import errno
from dataclasses import dataclass

from . import _check, uapi
from ._check import CheckedRecord
from ._where import build_command
from .devfd import DeviceFd
from .errors import InvalidArgumentError, UnsupportedError, VfioError

#: The driver that offers cookies: pyvfio's kernel module, a vfio-pci variant.
DRIVER = "vfio_pci_cookie"


class MemoryAttr(enum.IntEnum):
    """What a cookie asks for: ``Region.map(attr=...)``, :class:`Cookie`.
    An int that is one of the values is accepted where a MemoryAttr is."""

    #: Uncached: every access goes to the device, in order.
    UC = uapi.VFIO_MMAP_ATTR_UC
    #: Write-combining: stores may be merged and held back until a fence
    #: (:meth:`Mapping.write_barrier() <pyvfio.Mapping.write_barrier>`).
    WC = uapi.VFIO_MMAP_ATTR_WC

    def __str__(self) -> str:  # the name: IntEnum would print the number
        return self.name


class MemoryType(enum.IntEnum):
    """What the platform applies, as x86 PAT names it in pat_memtype_list:
    :attr:`Mapping.memory_type <pyvfio.Mapping.memory_type>`,
    :attr:`CookieInfo.memory_type`."""

    #: Not known, e.g. on a platform without PAT (booted with ``nopat``).
    UNKNOWN = uapi.VFIO_MEMTYPE_UNKNOWN
    #: Uncached, but an MTRR may make it write-combining (``uncached-minus``,
    #: what a plain vfio-pci mapping of a BAR gets).
    UC_MINUS = uapi.VFIO_MEMTYPE_UC_MINUS
    #: Write-combining.
    WC = uapi.VFIO_MEMTYPE_WC
    #: Uncached, strictly.
    UC = uapi.VFIO_MEMTYPE_UC
    #: Write-back (cached).
    WB = uapi.VFIO_MEMTYPE_WB
    #: Write-through.
    WT = uapi.VFIO_MEMTYPE_WT
    #: Write-protect.
    WP = uapi.VFIO_MEMTYPE_WP

    @property
    def pat_name(self) -> str:
        """The type as /sys/kernel/debug/x86/pat_memtype_list writes it
        (``write-combining``, ``uncached-minus`` ...; ``unknown``)."""
        return {
            MemoryType.UC_MINUS: "uncached-minus",
            MemoryType.WC: "write-combining",
            MemoryType.UC: "uncached",
            MemoryType.WB: "write-back",
            MemoryType.WT: "write-through",
            MemoryType.WP: "write-protect",
        }.get(self, "unknown")

    def __str__(self) -> str:  # the name: IntEnum would print the number
        return self.name


@dataclass(frozen=True)
class CookieInfo(CheckedRecord):
    """What the module says of a live cookie (:meth:`Cookie.query`)."""

    #: The region index it covers.
    index: int
    #: Where its range starts in the region.
    offset: int
    #: The range's length in bytes.
    length: int
    #: The attribute it asked for.
    attr: MemoryAttr
    #: The memory type in effect on its pages.
    memory_type: MemoryType
    #: Whether it is mmapped now.
    mapped: bool


def _feature(device: DeviceFd, feature: int, flags: int, arg: ctypes.Structure) -> None:
    data = device.feature(feature, flags, bytes(arg))
    ctypes.memmove(ctypes.addressof(arg), data, ctypes.sizeof(arg))


def check_device(device: object, operation: str) -> DeviceFd:
    """``device`` is an open device (a pyvfio.Device)."""
    checked: DeviceFd = _check.instance(
        device, DeviceFd, "device", "an open pyvfio.Device", device=None, operation=operation
    )
    return checked


def _region_attrs(
    device: DeviceFd, index: int, operation: str
) -> uapi.vfio_device_feature_mmap_attrs | None:
    """MMAP_ATTRS for region ``index``, or None if the driver has no cookies."""
    device = check_device(device, operation)
    index = device._region_index(index, operation)
    arg = _check.struct(
        uapi.vfio_device_feature_mmap_attrs, device=device.bdf, operation=operation, index=index
    )
    if not device.has_feature(uapi.VFIO_DEVICE_FEATURE_MMAP_ATTRS):
        return None
    _feature(device, uapi.VFIO_DEVICE_FEATURE_MMAP_ATTRS, uapi.VFIO_DEVICE_FEATURE_GET, arg)
    return arg


def supported_attrs(device: DeviceFd, index: int) -> frozenset[MemoryAttr]:
    """Attributes a cookie may ask for on region ``index`` (empty: none or no module).

    ``device`` is an open Device, ``index`` one of its region indexes (an int).
    """
    arg = _region_attrs(device, index, "supported_attrs")
    if arg is None:
        return frozenset()
    return frozenset(a for a in MemoryAttr if arg.attrs & (1 << a))


def wc_refused_ranges(device: DeviceFd, index: int) -> list[tuple[int, int]]:
    """(offset, length) page ranges of region ``index`` where WC is refused (MSI-X).

    Arguments as :func:`supported_attrs`'s.
    """
    arg = _region_attrs(device, index, "wc_refused_ranges")
    if arg is None:
        return []
    return [(r.offset, r.length) for r in arg.wc_refused[: arg.nr_wc_refused]]


def live_cookies(device: DeviceFd) -> int:
    """How many cookies the device's open holds, of every region (0: no module).

    Destroyed cookies that are still mapped count, as they do against the
    driver's limit of ``uapi.VFIO_MMAP_COOKIE_MAX`` per open (a create past
    it fails with ENOSPC).  ``device`` is an open Device.
    """
    arg = _region_attrs(device, 0, "live_cookies")
    return 0 if arg is None else int(arg.nr_cookies)


def check_attr(attr: object, device: str, operation: str) -> MemoryAttr:
    """A MemoryAttr member, or an int that is one."""
    return _check.member(attr, MemoryAttr, "attr", device=device, operation=operation)


class Cookie:
    """One cookie on an open device; ``destroy()`` it when done (idempotent).

    ``device`` is an open Device; ``index`` one of its region indexes,
    ``offset`` and ``length`` a range of it (ints, the range inside
    0..2**64-1); ``attr`` a MemoryAttr or its int value.  The driver checks
    the rest against the region and answers with an errno (EINVAL: not page
    aligned, empty, not a mmap-able BAR; ERANGE: past its end).
    """

    def __init__(
        self, device: DeviceFd, index: int, offset: int, length: int, attr: MemoryAttr
    ) -> None:
        device = check_device(device, "create cookie")
        operation = "create cookie"
        attr = check_attr(attr, device.bdf, operation)
        index = device._region_index(index, operation)
        offset = _check.integer(offset, "offset", device=device.bdf, operation=operation)
        length = _check.integer(
            length,
            "length",
            device=device.bdf,
            operation=operation,
            high=_check.U64_MAX - offset,  # the range may not wrap
        )
        self._device = device
        arg = _check.struct(
            uapi.vfio_device_feature_mmap_cookie_create,
            device=device.bdf,
            operation=operation,
            index=index,
            attr=int(attr),
            offset=offset,
            length=length,
        )
        try:
            _feature(
                device,
                uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE,
                uapi.VFIO_DEVICE_FEATURE_SET,
                arg,
            )
        except VfioError as exc:
            if exc.errno == errno.ENOTTY:
                # The driver does not know the feature: no probe round trip needed.
                driver = device.driver or "its driver"
                raise UnsupportedError(
                    f"{driver} offers no mmap cookies (memory attributes)",
                    device=device.bdf,
                    operation="map with attributes",
                    hint=f"bind the device to {DRIVER}: `{build_command()}`, then as root "
                    "`pyvfio kmod load`, then "
                    f"`pyvfio bind {device.bdf} --driver {DRIVER}`",
                ) from exc
            exc.operation = (
                f"create {attr.name} cookie for region {index} [{offset:#x}, {offset + length:#x})"
            )
            if exc.errno == errno.EBUSY:
                exc.hint = (
                    "a page of the range is already mapped with another memory type; "
                    "unmap it (legacy mmaps, cookies, or a mapping made outside the device "
                    "such as sysfs resourceN_wc) or pick other pages"
                )
                if attr is MemoryAttr.WC:
                    exc.hint += (
                        "; or, for a BAR's first WC cookie, the device has ioeventfds "
                        "(VFIO_DEVICE_IOEVENTFD): create that cookie before them"
                    )
            elif exc.errno == errno.EPERM:
                exc.hint = (
                    "the kernel maps these pages itself (MSI-X table or PBA) and they "
                    "stay uncached; wc_refused_ranges() lists them"
                )
            elif exc.errno == errno.ENOSPC:
                exc.hint = (
                    f"an open device holds at most {uapi.VFIO_MMAP_COOKIE_MAX} cookies; "
                    "destroy and unmap ones you no longer use"
                )
            raise
        #: The cookie: the offset to pass to mmap() on the device fd.
        self.value: int = arg.cookie
        #: The length to mmap: the range rounded out to whole pages.
        self.mmap_length: int = arg.mmap_length
        #: The region index, the range's offset in it and the attribute asked for.
        self.index, self.offset, self.attr = index, offset, attr
        self._destroyed = False

    def query(self) -> CookieInfo:
        """Ask the module about the cookie (its range, attribute, memory type in
        effect and whether it is mapped); InvalidArgumentError once destroyed."""
        if self._destroyed:
            raise InvalidArgumentError(
                "cookie was destroyed", device=self._device.bdf, operation="query cookie"
            )
        arg = uapi.vfio_device_feature_mmap_cookie_query(cookie=self.value)
        _feature(
            self._device,
            uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY,
            uapi.VFIO_DEVICE_FEATURE_GET,
            arg,
        )
        return CookieInfo(
            index=arg.index,
            offset=arg.offset,
            length=arg.length,
            attr=MemoryAttr(arg.attr),
            memory_type=MemoryType(arg.memtype),
            mapped=bool(arg.state & uapi.VFIO_MMAP_COOKIE_STATE_MAPPED),
        )

    @property
    def destroyed(self) -> bool:
        """Whether :meth:`destroy` was called (or the device closed)."""
        return self._destroyed

    def destroy(self) -> None:
        """Forget the cookie; mappings made from it stay valid until unmapped."""
        if self._destroyed or self._device.closed:
            self._destroyed = True
            return
        arg = uapi.vfio_device_feature_mmap_cookie_destroy(cookie=self.value)
        _feature(
            self._device,
            uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY,
            uapi.VFIO_DEVICE_FEATURE_SET,
            arg,
        )
        self._destroyed = True

    def __repr__(self) -> str:
        return (
            f"<Cookie {self.value:#x} region {self.index}+{self.offset:#x} "
            f"len {self.mmap_length:#x} {self.attr.name}>"
        )
