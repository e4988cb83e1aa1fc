# SPDX-License-Identifier: Apache-2.0
"""The open VFIO device fd, as regions, interrupts, cookies and config use it.

A region, an interrupt index or a cookie needs only the fd, the name errors
give the device and VFIO_DEVICE_FEATURE, whichever backend (group or cdev)
opened it.  :class:`~pyvfio.device.Device` is a :class:`DeviceFd`; these
modules depend on this one and never on ``device``.
"""

from __future__ import annotations

import ctypes
import struct

from . import uapi
from ._sys import ioctl
from .errors import ClosedError, VfioError


class DeviceFd:
    """An open device fd and its names; ``fd`` raises ClosedError once closed."""

    def __init__(self, bdf: str, fd: int, driver: str | None) -> None:
        self.bdf = bdf
        self.driver = driver
        self._fd = fd

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ClosedError(
                "device is closed",
                device=self.bdf,
                operation="use",
                hint="open it again with Device.open()",
            )
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def feature(self, feature: int, flags: int, data: bytes = b"") -> bytes:
        """VFIO_DEVICE_FEATURE: ``flags`` is GET/SET/PROBE; returns the data area after."""
        header = ctypes.sizeof(uapi.vfio_device_feature)
        buf = bytearray(header + len(data))
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
        """Probe: does the driver support ``feature`` with ``flags`` (GET and/or SET)?"""
        try:
            self.feature(feature, flags | uapi.VFIO_DEVICE_FEATURE_PROBE)
        except ClosedError:
            raise
        except VfioError:
            return False
        return True
