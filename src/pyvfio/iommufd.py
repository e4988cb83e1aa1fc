# SPDX-License-Identifier: Apache-2.0
"""iommufd (/dev/iommu): an IO address space (IOAS) and devices bound to it.

The backend of a device opened through its VFIO cdev
(``/dev/vfio/devices/vfioN``): the device fd is bound to an iommufd
(VFIO_DEVICE_BIND_IOMMUFD) and attached to an IOAS
(VFIO_DEVICE_ATTACH_IOMMUFD_PT), and DMA is mapped into the IOAS
(IOMMU_IOAS_MAP).  :class:`Ioas` implements :class:`pyvfio.dma.IommuBackend`,
as the legacy :class:`~pyvfio.container.Container` does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import uuid
from collections.abc import Sequence

from . import _check, uapi
from ._sys import ioctl, open_node
from .dma import check_iova_span, check_map_args
from .errors import (
    ClosedError,
    DeviceNotFoundError,
    OutOfRangeError,
    VfioError,
    explain_overlap,
)

IOMMUFD_PATH = "/dev/iommu"
FIRST_RANGES = 8  # room for this many IOVA ranges at first; EMSGSIZE says if more


def _map_flags(readable: bool, writable: bool) -> int:
    """IOMMU_IOAS_MAP* flags: at the IOVA given, with the device's access."""
    return (
        uapi.IOMMU_IOAS_MAP_FIXED_IOVA
        | (uapi.IOMMU_IOAS_MAP_READABLE if readable else 0)
        | (uapi.IOMMU_IOAS_MAP_WRITEABLE if writable else 0)
    )


class Ioas:
    """An iommufd of its own and one IOAS in it; devices attach to the IOAS.

    ``path`` is the iommufd node (str or pathlib.Path).
    """

    def __init__(self, path: str = IOMMUFD_PATH) -> None:
        path = _check.path(path, "path", device=None, operation="open iommufd")
        #: The iommufd node it opened.
        self.path = path
        # Missing: the kernel lacks iommufd.  Present but refused: the
        # permission hint open_node gives.
        missing = not os.path.exists(path)
        hint = (
            "the kernel needs CONFIG_IOMMUFD; use the legacy backend "
            "(backend='legacy' or PYVFIO_BACKEND=legacy)"
            if missing
            else None
        )
        self._fd = open_node(path, device=path, operation="open iommufd", hint=hint)
        try:
            alloc = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
            ioctl(self._fd, uapi.IOMMU_IOAS_ALLOC, alloc, device=path, operation="IOMMU_IOAS_ALLOC")
        except BaseException:
            os.close(self._fd)
            raise
        #: The IOAS's object ID in the iommufd.
        self.ioas_id = int(alloc.out_ioas_id)

    @property
    def fd(self) -> int:
        """The iommufd's fd; ClosedError once closed."""
        if self._fd < 0:
            raise ClosedError("iommufd is closed", device=self.path, operation="use")
        return self._fd

    @property
    def name(self) -> str:
        """What errors call it: ``/dev/iommu IOAS N``."""
        return f"{self.path} IOAS {self.ioas_id}"

    # -- devices ---------------------------------------------------------

    @staticmethod
    def _device_args(device_fd: object, bdf: object, operation: str) -> tuple[int, str]:
        """A device cdev's fd (an int) and its PCI address (a str, for messages)."""
        bdf = _check.text(bdf, "bdf", device=None, operation=operation)
        device_fd = _check.integer(
            device_fd, "device_fd", device=bdf, operation=operation, high=(1 << 31) - 1
        )
        return device_fd, bdf

    def bind(self, device_fd: int, bdf: str, *, vf_token: uuid.UUID | None = None) -> int:
        """Bind a device cdev fd to this iommufd; returns the device's object ID.

        ``device_fd`` is the open cdev's fd (an int), ``bdf`` its address (a
        str), ``vf_token`` the VF token (a uuid.UUID) that a VF of a PF on
        vfio-pci is opened with (VFIO_DEVICE_BIND_FLAG_TOKEN, Linux 6.17 and
        later)."""
        operation = "VFIO_DEVICE_BIND_IOMMUFD"
        device_fd, bdf = self._device_args(device_fd, bdf, operation)
        vf_token = _check.vf_token(vf_token, device=bdf, operation=operation)
        arg = uapi.vfio_device_bind_iommufd(
            argsz=ctypes.sizeof(uapi.vfio_device_bind_iommufd), iommufd=self.fd
        )
        token = ctypes.create_string_buffer(vf_token.bytes if vf_token else b"", 16)
        if vf_token is not None:
            arg.flags = uapi.VFIO_DEVICE_BIND_FLAG_TOKEN
            arg.token_uuid_ptr = ctypes.addressof(token)
        ioctl(device_fd, uapi.VFIO_DEVICE_BIND_IOMMUFD, arg, device=bdf, operation=operation)
        return int(arg.out_devid)

    def attach(self, device_fd: int, bdf: str) -> None:
        """Attach a bound device to the IOAS: its DMA now goes through it.

        Arguments as :meth:`bind`'s."""
        device_fd, bdf = self._device_args(device_fd, bdf, "VFIO_DEVICE_ATTACH_IOMMUFD_PT")
        arg = uapi.vfio_device_attach_iommufd_pt(
            argsz=ctypes.sizeof(uapi.vfio_device_attach_iommufd_pt), pt_id=self.ioas_id
        )
        ioctl(
            device_fd,
            uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
            arg,
            device=bdf,
            operation=f"VFIO_DEVICE_ATTACH_IOMMUFD_PT(ioas {self.ioas_id})",
        )

    def detach(self, device_fd: int, bdf: str) -> None:
        """Detach a device from the IOAS; arguments as :meth:`bind`'s."""
        device_fd, bdf = self._device_args(device_fd, bdf, "VFIO_DEVICE_DETACH_IOMMUFD_PT")
        arg = uapi.vfio_device_detach_iommufd_pt(
            argsz=ctypes.sizeof(uapi.vfio_device_detach_iommufd_pt)
        )
        ioctl(
            device_fd,
            uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT,
            arg,
            device=bdf,
            operation="VFIO_DEVICE_DETACH_IOMMUFD_PT",
        )

    # -- the IommuBackend calls -------------------------------------------

    def iova_ranges(self) -> Sequence[tuple[int, int]]:
        """Usable IOVA ranges (inclusive); they narrow as devices attach."""
        count = FIRST_RANGES
        while True:
            ranges = (uapi.iommu_iova_range * count)()
            arg = uapi.iommu_ioas_iova_ranges(
                size=ctypes.sizeof(uapi.iommu_ioas_iova_ranges),
                ioas_id=self.ioas_id,
                num_iovas=count,
                allowed_iovas=ctypes.addressof(ranges),
            )
            try:
                ioctl(
                    self.fd,
                    uapi.IOMMU_IOAS_IOVA_RANGES,
                    arg,
                    device=self.name,
                    operation="IOMMU_IOAS_IOVA_RANGES",
                )
            except VfioError as exc:
                # EMSGSIZE: more ranges than room; num_iovas says how many
                if exc.errno == errno.EMSGSIZE and arg.num_iovas > count:
                    count = int(arg.num_iovas)
                    continue
                raise
            return [(int(r.start), int(r.last)) for r in ranges[: arg.num_iovas]]

    def map_dma(
        self, vaddr: int, iova: int, size: int, *, readable: bool = True, writable: bool = True
    ) -> None:
        """Map ``size`` bytes of this process at ``vaddr`` to ``iova`` (ints, size
        > 0, the span below 2**64); ``readable``/``writable`` by the device, True or False."""
        vaddr, iova, size, readable, writable = check_map_args(
            vaddr, iova, size, readable, writable, device=self.name, operation="IOMMU_IOAS_MAP"
        )
        arg = uapi.iommu_ioas_map(
            size=ctypes.sizeof(uapi.iommu_ioas_map),
            flags=_map_flags(readable, writable),
            ioas_id=self.ioas_id,
            user_va=vaddr,
            length=size,
            iova=iova,
        )
        self._map(uapi.IOMMU_IOAS_MAP, arg, f"IOMMU_IOAS_MAP(iova={iova:#x}, size={size:#x})")

    def _map_file(
        self, fd: int, size: int, iova: int, *, readable: bool = True, writable: bool = True
    ) -> None:
        """Map the first ``size`` bytes of the file ``fd`` (a dma-buf of a
        BAR) at ``iova``: IOMMU_IOAS_MAP_FILE.  Unmapped with :meth:`unmap_dma`."""
        fd = _check.integer(fd, "fd", device=self.name, operation="IOMMU_IOAS_MAP_FILE", high=None)
        operation = f"IOMMU_IOAS_MAP_FILE(iova={iova:#x}, size={size:#x})"
        _, iova, size, readable, writable = check_map_args(
            0, iova, size, readable, writable, device=self.name, operation=operation
        )
        arg = uapi.iommu_ioas_map_file(
            size=ctypes.sizeof(uapi.iommu_ioas_map_file),
            flags=_map_flags(readable, writable),
            ioas_id=self.ioas_id,
            fd=fd,
            start=0,
            length=size,
            iova=iova,
        )
        self._map(uapi.IOMMU_IOAS_MAP_FILE, arg, operation)

    def _map(self, request: int, arg: ctypes.Structure, operation: str) -> None:
        try:
            ioctl(self.fd, request, arg, device=self.name, operation=operation)
        except VfioError as exc:
            explain_overlap(exc)
            raise

    def unmap_dma(self, iova: int, size: int) -> None:
        """Unmap what was mapped at ``iova``, ``size`` bytes (ints, as map_dma() takes them)."""
        iova, size = check_iova_span(iova, size, device=self.name, operation="IOMMU_IOAS_UNMAP")
        arg = uapi.iommu_ioas_unmap(
            size=ctypes.sizeof(uapi.iommu_ioas_unmap), ioas_id=self.ioas_id, iova=iova, length=size
        )
        operation = f"IOMMU_IOAS_UNMAP(iova={iova:#x})"
        try:
            ioctl(self.fd, uapi.IOMMU_IOAS_UNMAP, arg, device=self.name, operation=operation)
        except DeviceNotFoundError as exc:  # ENOENT: not a missing device
            raise OutOfRangeError(
                f"nothing is mapped at {iova:#x}", device=self.name, operation=operation
            ) from exc
        if arg.length != size:
            raise OutOfRangeError(
                f"unmapped {arg.length:#x} of {size:#x} bytes",
                device=self.name,
                operation="IOMMU_IOAS_UNMAP",
            )

    def close(self) -> None:
        """Close the iommufd: the kernel destroys the IOAS with it."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Ioas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
