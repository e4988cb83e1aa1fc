# SPDX-License-Identifier: Apache-2.0
"""The VFIO container (/dev/vfio/vfio): API version, IOMMU type."""

from __future__ import annotations

import os

from . import uapi
from ._sys import ioctl, open_node
from .errors import ClosedError, UnsupportedError

CONTAINER_PATH = "/dev/vfio/vfio"


class Container:
    """An open VFIO container; groups are attached to it, then the IOMMU is set."""

    def __init__(self, path: str = CONTAINER_PATH) -> None:
        self.path = path
        self._fd = open_node(
            path,
            device=path,
            operation="open container",
            hint="load the vfio module (modprobe vfio-pci)",
        )
        self.iommu_type: int | None = None
        try:
            version = ioctl(
                self._fd,
                uapi.VFIO_GET_API_VERSION,
                0,
                device=path,
                operation="VFIO_GET_API_VERSION",
            )
            if version != uapi.VFIO_API_VERSION:
                raise UnsupportedError(
                    f"unknown VFIO API version {version}", device=path, operation="open container"
                )
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ClosedError("container is closed", device=self.path, operation="use")
        return self._fd

    def check_extension(self, extension: int) -> bool:
        return (
            ioctl(
                self.fd,
                uapi.VFIO_CHECK_EXTENSION,
                extension,
                device=self.path,
                operation="VFIO_CHECK_EXTENSION",
            )
            > 0
        )

    def set_iommu(self, iommu_type: int = uapi.VFIO_TYPE1v2_IOMMU) -> None:
        """Select the IOMMU model; needs at least one group attached first."""
        if self.iommu_type is not None:
            return
        if not self.check_extension(iommu_type):
            raise UnsupportedError(
                f"IOMMU type {iommu_type} not offered",
                device=self.path,
                operation="VFIO_SET_IOMMU",
                hint="load vfio_iommu_type1 and boot with the IOMMU on",
            )
        ioctl(
            self.fd, uapi.VFIO_SET_IOMMU, iommu_type, device=self.path, operation="VFIO_SET_IOMMU"
        )
        self.iommu_type = iommu_type

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
