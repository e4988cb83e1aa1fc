# SPDX-License-Identifier: Apache-2.0
"""Peer-to-peer DMA: a device's BAR mapped into an IOMMU context, so that the
other devices of the context can DMA into it.

On the legacy backend the BAR's mmap is mapped as memory is
(``VFIO_IOMMU_MAP_DMA`` follows the PFN mapping).  iommufd cannot map a PFN
mapping (``IOMMU_IOAS_MAP`` pins pages, and a BAR has none): there the BAR
range is exported as a dma-buf (``VFIO_DEVICE_FEATURE_DMA_BUF``, Linux 6.19
and later) and mapped with ``IOMMU_IOAS_MAP_FILE``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import TYPE_CHECKING

from . import _check, uapi
from ._sys import ioctl
from .dma import DmaSpace, mmap_address, take_iova
from .errors import InvalidArgumentError, OutOfRangeError, UnsupportedError
from .iommufd import Ioas

if TYPE_CHECKING:
    from .device import Device
    from .mmio import Mapping

OPERATION = "map a BAR for peer-to-peer DMA"


class PeerMapping:
    """``size`` bytes of a device's region at ``iova`` in an IOMMU context:
    what another device of the context DMAs to, to reach that BAR."""

    def __init__(
        self,
        dma: DmaSpace,
        device: Device,
        index: int,
        *,
        offset: int,
        size: int | None,
        limit: int | None,
        iova: int | None,
        writable_by_device: bool,
    ) -> None:
        from .device import Device  # noqa: PLC0415 (it imports this module's users)

        _check.instance(device, Device, "device", "a Device", device=None, operation=OPERATION)
        name = device.bdf
        _check.instance(dma, DmaSpace, "dma", "a DmaSpace", device=name, operation=OPERATION)
        index = _check.integer(index, "index", device=name, operation=OPERATION, low=0, high=5)
        offset = _check.integer(offset, "offset", device=name, operation=OPERATION)
        info = device.region(index).info
        if size is None:
            size = info.size - offset
        size = _check.integer(size, "size", device=name, operation=OPERATION, low=1, high=None)
        limit = _check.optional_integer(
            limit, "limit", device=name, operation=OPERATION, low=1, high=1 << 64
        )
        iova = _check.optional_integer(iova, "iova", device=name, operation=OPERATION)
        writable_by_device = _check.boolean(
            writable_by_device, "writable_by_device", device=name, operation=OPERATION
        )
        page = mmap.PAGESIZE
        if offset % page or size % page or offset + size > info.size:
            raise OutOfRangeError(
                f"offset {offset:#x} and size {size:#x}: BAR {index} is {info.size:#x} bytes, "
                f"and the range must be whole pages ({page:#x}) inside it",
                device=name,
                operation=OPERATION,
            )
        #: The device whose BAR it maps.
        self.device = device
        #: The region (BAR) index, the range's offset in it, and its size.
        self.index, self.offset, self.size = index, offset, size
        self._dma = dma
        self._mapping: Mapping | None = None
        # The IOVA first: the allocator honours the caller's limit (a narrow
        # DMA mask) as for a buffer.
        #: Where the other devices of the context reach the range.
        self.iova = take_iova(dma, size, iova, page=page, limit=limit, operation=OPERATION)
        try:
            if isinstance(dma.backend, Ioas):
                self._map_dma_buf(dma.backend, writable_by_device)
            else:
                self._map_legacy(writable_by_device)
        except BaseException:
            dma.allocator.free(self.iova)
            if self._mapping is not None:
                self._mapping.close()
            raise
        self._closed = False

    def _map_legacy(self, writable: bool) -> None:
        self._mapping = self.device.region(self.index).map(self.offset, self.size)
        vaddr = mmap_address(self._mapping._mm)  # type: ignore[arg-type]
        self._dma.backend.map_dma(vaddr, self.iova, self.size, readable=True, writable=writable)

    def _map_dma_buf(self, ioas: Ioas, writable: bool) -> None:
        ranges = uapi.vfio_region_dma_range(offset=self.offset, length=self.size)
        request = uapi.vfio_device_feature_dma_buf(
            region_index=self.index, open_flags=os.O_RDWR | os.O_CLOEXEC, flags=0, nr_ranges=1
        )
        header = uapi.vfio_device_feature(
            argsz=ctypes.sizeof(uapi.vfio_device_feature)
            + ctypes.sizeof(request)
            + ctypes.sizeof(ranges),
            flags=uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_DMA_BUF,
        )
        data = bytearray(bytes(header) + bytes(request) + bytes(ranges))
        try:
            fd = ioctl(
                self.device.fd,
                uapi.VFIO_DEVICE_FEATURE,
                data,
                device=self.device.bdf,
                operation="VFIO_DEVICE_FEATURE_DMA_BUF",
            )
        except InvalidArgumentError as exc:
            raise UnsupportedError(
                "the kernel cannot export this BAR as a dma-buf, which peer-to-peer DMA "
                "needs on the iommufd backend",
                device=self.device.bdf,
                operation=OPERATION,
                hint="it needs Linux 6.19 or later with CONFIG_VFIO_PCI_DMABUF (PCI_P2PDMA); "
                "or open the devices on the legacy backend",
            ) from exc
        try:
            ioas._map_file(fd, self.size, self.iova, readable=True, writable=writable)
        finally:
            os.close(fd)  # the IOAS holds the dma-buf while it is mapped

    @property
    def closed(self) -> bool:
        """Whether it is unmapped (closed)."""
        return self._closed

    def close(self) -> None:
        """Unmap it from the IOMMU; safe to call twice.  Close it before the
        device whose BAR it maps."""
        if self._closed:
            return
        self._closed = True
        try:
            self._dma.backend.unmap_dma(self.iova, self.size)
        finally:
            self._dma.allocator.free(self.iova)
            if self._mapping is not None:
                self._mapping.close()

    def __enter__(self) -> PeerMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"iova {self.iova:#x}"
        return f"<PeerMapping {self.device.bdf} BAR {self.index} +{self.offset:#x} {state}>"
