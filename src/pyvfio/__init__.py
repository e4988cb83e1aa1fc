# SPDX-License-Identifier: Apache-2.0
"""pyvfio: drive PCI devices from Python through Linux VFIO."""

from .container import Container
from .context import IommuContext
from .device import AffectedDevice, Backend, Device, DeviceInfo
from .errors import (
    ArgumentTypeError,
    BusyError,
    ClosedError,
    DeviceNotFoundError,
    DeviceReleasedError,
    DriverError,
    GroupNotViableError,
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
    UnsupportedError,
    VfioError,
    VmArgumentError,
    VmError,
)
from .group import Group
from .iommufd import Ioas
from .mmio import Mapping
from .pci import Bar, PciDevice, Sysfs, normalize_bdf
from .region import Region, RegionInfo

__version__ = "0.1.0"

__all__ = [
    "AffectedDevice",
    "ArgumentTypeError",
    "Backend",
    "Bar",
    "BusyError",
    "ClosedError",
    "Container",
    "Device",
    "DeviceInfo",
    "DeviceNotFoundError",
    "DeviceReleasedError",
    "DriverError",
    "Group",
    "GroupNotViableError",
    "InvalidArgumentError",
    "Ioas",
    "IommuContext",
    "Mapping",
    "OutOfRangeError",
    "PciDevice",
    "PermissionDeniedError",
    "Region",
    "RegionInfo",
    "Sysfs",
    "UnsupportedError",
    "VfioError",
    "VmArgumentError",
    "VmError",
    "normalize_bdf",
]
