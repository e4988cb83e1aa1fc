# SPDX-License-Identifier: Apache-2.0
"""pyvfio: drive PCI devices from Python through Linux VFIO."""

# Each name is imported from its module when first used (PEP 562): a program,
# or a CLI verb, pays only for the modules it needs, and in the test VM every
# module is a file read over 9p under TCG (docs/testing.md).
from __future__ import annotations

import importlib

# Not typing's: importing typing costs more than the rest of this file.
TYPE_CHECKING = False
if TYPE_CHECKING:
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

# The module that defines each public name.
_HOME = {
    "Container": "container",
    "IommuContext": "context",
    "AffectedDevice": "device",
    "Backend": "device",
    "Device": "device",
    "DeviceInfo": "device",
    "ArgumentTypeError": "errors",
    "BusyError": "errors",
    "ClosedError": "errors",
    "DeviceNotFoundError": "errors",
    "DeviceReleasedError": "errors",
    "DriverError": "errors",
    "GroupNotViableError": "errors",
    "InvalidArgumentError": "errors",
    "OutOfRangeError": "errors",
    "PermissionDeniedError": "errors",
    "UnsupportedError": "errors",
    "VfioError": "errors",
    "VmArgumentError": "errors",
    "VmError": "errors",
    "Group": "group",
    "Ioas": "iommufd",
    "Mapping": "mmio",
    "Bar": "pci",
    "PciDevice": "pci",
    "Sysfs": "pci",
    "normalize_bdf": "pci",
    "Region": "region",
    "RegionInfo": "region",
}
# Modules that `import pyvfio` used to load with the names above, so that
# `pyvfio.dma.IDENTITY` after a bare `import pyvfio` still works.
_SUBMODULES = frozenset(
    {
        "caps",
        "config",
        "container",
        "context",
        "cookie",
        "devfd",
        "device",
        "dma",
        "errors",
        "group",
        "iommufd",
        "irq",
        "kmod",
        "mmio",
        "p2p",
        "pci",
        "region",
        "uapi",
    }
)

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


# Hidden from type checkers, which would otherwise accept any name
# (pyvfio.Devcie) as an attribute of the package.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name in _HOME:
            value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(f".{name}", __name__)
        else:
            raise AttributeError(f"module 'pyvfio' has no attribute {name!r}")
        globals()[name] = value  # once: later lookups find it directly
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME, *_SUBMODULES})
