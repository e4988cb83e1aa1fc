# SPDX-License-Identifier: Apache-2.0
"""A VFIO device: the fd from its group; info, regions, IRQs, DMA, features, reset."""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import struct
from dataclasses import dataclass

from . import irq, uapi
from ._sys import ioctl, retry_eagain
from .config import ConfigSpace
from .container import Container
from .dma import DmaBuffer, DmaSpace
from .errors import BusyError, ClosedError, DriverError, UnsupportedError, VfioError
from .group import Group
from .pci import Sysfs, normalize_bdf
from .region import Region

log = logging.getLogger(__name__)


class DeviceFlags(enum.IntFlag):
    RESET = uapi.VFIO_DEVICE_FLAGS_RESET
    PCI = uapi.VFIO_DEVICE_FLAGS_PCI
    PLATFORM = uapi.VFIO_DEVICE_FLAGS_PLATFORM
    CAPS = uapi.VFIO_DEVICE_FLAGS_CAPS


@dataclass(frozen=True)
class DeviceInfo:
    flags: DeviceFlags
    num_regions: int
    num_irqs: int

    @property
    def can_reset(self) -> bool:
        return bool(self.flags & DeviceFlags.RESET)

    @property
    def is_pci(self) -> bool:
        return bool(self.flags & DeviceFlags.PCI)


class Device:
    """An open VFIO device.

    ``Device.open(bdf)`` does the legacy container/group dance (type1v2
    IOMMU) and owns what it opened.  ``close()`` (or leaving the ``with``
    block) releases, in order: interrupts, region mappings, DMA buffers, the
    device fd, the group and the container; it is safe to call twice.
    """

    def __init__(
        self, bdf: str, fd: int, group: Group, container: Container, driver: str | None = None
    ) -> None:
        self.bdf = bdf
        self.driver = driver
        self._fd = fd
        self._group = group
        self._container = container
        self._regions: dict[int, Region] = {}
        self._irqs: dict[int, irq.Interrupts] = {}
        self._dma: DmaSpace | None = None
        info = uapi.vfio_device_info(argsz=ctypes.sizeof(uapi.vfio_device_info))
        ioctl(fd, uapi.VFIO_DEVICE_GET_INFO, info, device=bdf, operation="VFIO_DEVICE_GET_INFO")
        self.info = DeviceInfo(
            flags=DeviceFlags(info.flags), num_regions=info.num_regions, num_irqs=info.num_irqs
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
                    return cls(pci.bdf, fd, group, container, pci.driver)
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

    @property
    def container(self) -> Container:
        return self._container

    # -- regions ---------------------------------------------------------

    def region(self, index: int) -> Region:
        """Region ``index``: 0-5 BARs, 6 ROM, 7 config space, 8 VGA, then device-specific."""
        if not 0 <= index < self.info.num_regions:
            raise UnsupportedError(
                f"region {index} does not exist (the device has {self.info.num_regions})",
                device=self.bdf,
                operation="region",
            )
        if index not in self._regions:
            self._regions[index] = Region(self, index)
        return self._regions[index]

    def regions(self) -> list[Region]:
        return [self.region(i) for i in range(self.info.num_regions)]

    @property
    def config(self) -> ConfigSpace:
        return ConfigSpace(self.region(uapi.VFIO_PCI_CONFIG_REGION_INDEX))

    # -- interrupts ------------------------------------------------------

    def irq_info(self, index: int) -> irq.IrqInfo:
        return irq.query_irq_info(self, index)

    def irq_infos(self) -> list[irq.IrqInfo]:
        return [self.irq_info(i) for i in range(self.info.num_irqs)]

    def enable_irq(self, index: int, count: int | None = None) -> irq.Interrupts:
        """Enable ``count`` vectors (default: all) of an IRQ index, one eventfd each."""
        current = self._irqs.get(index)
        if current is not None and current.eventfds:
            raise BusyError(
                f"{current.info.name} is already enabled",
                device=self.bdf,
                operation="enable irq",
                hint="close() the Interrupts object first",
            )
        ints = irq.enable(self, index, count)
        self._irqs[index] = ints
        return ints

    # -- DMA -------------------------------------------------------------

    @property
    def dma(self) -> DmaSpace:
        if self._dma is None:
            self.fd  # noqa: B018 - raises ClosedError on a closed device
            self._dma = DmaSpace(self._container)
        return self._dma

    def dma_buffer(
        self,
        size: int,
        *,
        hugepages: bool = False,
        limit: int | None = None,
        writable_by_device: bool = True,
    ) -> DmaBuffer:
        """Allocate host memory and map it for the device's DMA (see DmaBuffer)."""
        return self.dma.allocate(
            size, hugepages=hugepages, limit=limit, writable_by_device=writable_by_device
        )

    # -- features and reset ----------------------------------------------

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

    def reset(self, timeout: float = 1.0) -> None:
        """VFIO_DEVICE_RESET (function-level or other reset the kernel can do).

        The kernel only *tries* to take the device's locks and answers EAGAIN
        when another operation holds them for a moment; that is retried for
        up to ``timeout`` seconds.
        """
        fd = self.fd  # a closed device says so before anything else
        if not self.info.can_reset:
            raise UnsupportedError(
                "the device offers no reset", device=self.bdf, operation="VFIO_DEVICE_RESET"
            )
        retry_eagain(
            lambda: ioctl(
                fd, uapi.VFIO_DEVICE_RESET, 0, device=self.bdf, operation="VFIO_DEVICE_RESET"
            ),
            timeout,
        )

    # -- lifetime --------------------------------------------------------

    def close(self) -> None:
        """Release interrupts, mappings, DMA, then the fds; safe to call twice."""
        if self._fd < 0:
            return
        try:
            for ints in self._irqs.values():
                ints.close()
            for region in self._regions.values():
                region.close()
            if self._dma is not None:
                self._dma.close()
        finally:
            self._irqs.clear()
            self._regions.clear()
            os.close(self._fd)
            self._fd = -1
            self._group.close()
            self._container.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<Device {self.bdf} {state}>"
