# SPDX-License-Identifier: Apache-2.0
"""The open VFIO device fd, as regions, interrupts, cookies and config use it.

A region, an interrupt index or a cookie needs only the fd, the name errors
give the device and VFIO_DEVICE_FEATURE, whichever backend (group or cdev)
opened it.  :class:`~pyvfio.device.Device` is a :class:`DeviceFd`; these
modules depend on this one and never on ``device``.
"""

from __future__ import annotations

import ctypes
import os
import struct

from . import _check, uapi
from ._sys import ioctl
from .errors import ClosedError, DeviceReleasedError, InvalidArgumentError, VfioError


class DeviceFd:
    """An open device fd and its names; ``fd`` raises ClosedError once closed."""

    def __init__(self, bdf: str, fd: int, driver: str | None) -> None:
        #: The device's PCI address, ``DDDD:BB:DD.F``.
        self.bdf = bdf
        #: The driver it was on when opened (vfio-pci, vfio_pci_cookie ...), or None.
        self.driver = driver
        self._fd = fd
        # The kernel asked for the device back (Device's ReleaseWatch sets
        # this from its thread): the next use closes it, in the caller's
        # thread, where closing fds cannot race the caller's own use of them.
        self._release_due = False
        self._released = False
        self._closing = False  # inside close(): its own uses of fd must not close again
        #: An eventfd that becomes readable when the kernel asks for the device
        #: back (:meth:`Interrupts.wait() <pyvfio.irq.Interrupts.wait>` polls it);
        #: -1 without one (a driver without the request interrupt, or closed).
        self.release_fd = -1
        # Regions the device has, once known (Device reads it at open): region
        # indexes are checked against it, else only against their u32 field.
        self._num_regions: int | None = None

    def _region_index(self, index: object, operation: str) -> int:
        """``index`` checked as a region index of this device (an int)."""
        known = self._num_regions
        return _check.integer(
            index,
            "index",
            device=self.bdf,
            operation=operation,
            high=_check.U32_MAX if known is None else known - 1,
            hint="0-5 for the BARs, 7 for config space (pyvfio.uapi.VFIO_PCI_*_REGION_INDEX)",
        )

    @property
    def fd(self) -> int:
        """The open VFIO device fd.  Raises ClosedError once closed (or
        DeviceReleasedError: the kernel asked for the device back)."""
        if self._release_due and not self._closing:
            self.release_now()
        if self._fd < 0:
            raise self._closed_error()
        return self._fd

    def release_now(self) -> None:
        """Close the device because the kernel asked for it back, and raise
        DeviceReleasedError (also in a forked child, whose parent was asked)."""
        self._release_due = False
        if not self._closing:
            self._released = True
            self.close()
        raise self._closed_error()

    def _closed_error(self) -> ClosedError:
        if self._released:
            return DeviceReleasedError(
                "the kernel asked for the device back (it is being unbound), so pyvfio closed it",
                device=self.bdf,
                operation="use",
                hint="bind it to a VFIO driver again (`pyvfio bind BDF`) and reopen it; "
                "Device.on_release_request() lets a program release it itself",
            )
        return ClosedError(
            "device is closed",
            device=self.bdf,
            operation="use",
            hint="open it again with Device.open()",
        )

    def close(self) -> None:
        """Close the device fd; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        """Whether the device is closed."""
        return self._fd < 0

    def _check_feature(self, feature: object, flags: object, operation: str) -> tuple[int, int]:
        feature = _check.integer(
            feature,
            "feature",
            device=self.bdf,
            operation=operation,
            high=uapi.VFIO_DEVICE_FEATURE_MASK,
        )
        flags = _check.integer(
            flags, "flags", device=self.bdf, operation=operation, high=_check.U32_MAX
        )
        if flags & uapi.VFIO_DEVICE_FEATURE_MASK:
            # Or'ed into the same word, such bits would change the feature number.
            raise InvalidArgumentError(
                f"flags {flags:#x} has bits of the feature number (mask "
                f"{uapi.VFIO_DEVICE_FEATURE_MASK:#x})",
                device=self.bdf,
                operation=operation,
                hint="flags takes VFIO_DEVICE_FEATURE_GET, _SET and _PROBE (pyvfio.uapi)",
            )
        return feature, flags

    def feature(self, feature: int, flags: int, data: bytes = b"") -> bytes:
        """VFIO_DEVICE_FEATURE: returns the data area after the call.

        ``feature`` is a feature number (an int, 0..0xFFFF); ``flags`` the
        VFIO_DEVICE_FEATURE_GET, _SET and _PROBE bits (pyvfio.uapi); ``data`` a
        bytes-like object, the feature's argument.
        """
        operation = f"VFIO_DEVICE_FEATURE({feature!r})"
        feature, flags = self._check_feature(feature, flags, operation)
        size = _check.readable_buffer(data, "data", device=self.bdf, operation=operation)
        header = ctypes.sizeof(uapi.vfio_device_feature)
        buf = bytearray(header + size)
        struct.pack_into("<II", buf, 0, len(buf), (feature & uapi.VFIO_DEVICE_FEATURE_MASK) | flags)
        buf[header:] = data
        ioctl(
            self.fd,
            uapi.VFIO_DEVICE_FEATURE,
            buf,
            device=self.bdf,
            operation=f"VFIO_DEVICE_FEATURE({feature})",
        )
        return bytes(buf[header:])

    def has_feature(self, feature: int, flags: int = uapi.VFIO_DEVICE_FEATURE_GET) -> bool:
        """Probe: does the driver support ``feature`` with ``flags`` (GET and/or SET)?

        Arguments as :meth:`feature`'s."""
        feature, flags = self._check_feature(feature, flags, f"probe feature {feature!r}")
        try:
            self.feature(feature, flags | uapi.VFIO_DEVICE_FEATURE_PROBE)
        except ClosedError:
            raise
        except VfioError:
            return False
        return True
