# SPDX-License-Identifier: Apache-2.0
"""A VFIO device: the fd from its group, its info, regions and reset."""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass

from . import uapi
from ._sys import ioctl
from .container import Container
from .errors import ClosedError, DriverError, UnsupportedError
from .group import Group
from .pci import Sysfs, normalize_bdf
from .region import Region

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    flags: int
    num_regions: int
    num_irqs: int

    @property
    def can_reset(self) -> bool:
        return bool(self.flags & uapi.VFIO_DEVICE_FLAGS_RESET)

    @property
    def is_pci(self) -> bool:
        return bool(self.flags & uapi.VFIO_DEVICE_FLAGS_PCI)


class Device:
    """An open VFIO device.

    ``Device.open(bdf)`` does the whole legacy dance (container, group,
    type1v2 IOMMU, device fd) and owns what it opened; ``close()`` releases
    mappings first, then the device, group and container.
    """

    def __init__(self, bdf: str, fd: int, group: Group, container: Container | None) -> None:
        self.bdf = bdf
        self._fd = fd
        self._group = group
        self._container = container
        self._regions: dict[int, Region] = {}
        info = uapi.vfio_device_info(argsz=ctypes.sizeof(uapi.vfio_device_info))
        ioctl(fd, uapi.VFIO_DEVICE_GET_INFO, info, device=bdf, operation="VFIO_DEVICE_GET_INFO")
        self.info = DeviceInfo(
            flags=info.flags, num_regions=info.num_regions, num_irqs=info.num_irqs
        )

    @classmethod
    def open(cls, bdf: str, *, sysfs: Sysfs | None = None) -> Device:
        sysfs = sysfs or Sysfs()
        pci = sysfs.device(normalize_bdf(bdf))
        if pci.driver is None or "vfio" not in pci.driver:
            raise DriverError(
                f"device is bound to {pci.driver or 'no driver'}, not a VFIO driver",
                device=pci.bdf,
                operation="open",
                hint=f"run `pyvfio bind {pci.bdf}`",
            )
        if pci.iommu_group is None:
            raise UnsupportedError(
                "device has no IOMMU group",
                device=pci.bdf,
                operation="open",
                hint="boot with the IOMMU enabled (intel_iommu=on)",
            )
        container = Container()
        try:
            group = Group(pci.iommu_group, container, sysfs)
            try:
                fd = group.device_fd(pci.bdf)
                try:
                    return cls(pci.bdf, fd, group, container)
                except BaseException:
                    os.close(fd)
                    raise
            except BaseException:
                group.close()
                raise
        except BaseException:
            container.close()
            raise

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

    def region(self, index: int) -> Region:
        """Region ``index`` (0-5 BARs, 6 ROM, 7 config space, 8 VGA, more device-specific)."""
        if not 0 <= index < self.info.num_regions:
            raise UnsupportedError(
                f"region {index} does not exist (device has {self.info.num_regions})",
                device=self.bdf,
                operation="region",
            )
        if index not in self._regions:
            self._regions[index] = Region(self, index)
        return self._regions[index]

    def reset(self) -> None:
        if not self.info.can_reset:
            raise UnsupportedError(
                "device does not support VFIO_DEVICE_RESET", device=self.bdf, operation="reset"
            )
        ioctl(self.fd, uapi.VFIO_DEVICE_RESET, 0, device=self.bdf, operation="VFIO_DEVICE_RESET")

    def close(self) -> None:
        """Release mappings, then the device, group and container; safe to call twice."""
        if self._fd < 0:
            return
        for region in self._regions.values():
            region.close()
        self._regions.clear()
        os.close(self._fd)
        self._fd = -1
        self._group.close()
        if self._container is not None:
            self._container.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<Device {self.bdf} {state}>"
