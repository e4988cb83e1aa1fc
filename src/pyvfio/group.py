# SPDX-License-Identifier: Apache-2.0
"""A VFIO group (/dev/vfio/N): viability, container attachment, device fds."""

from __future__ import annotations

import ctypes
import os
import uuid

from . import _check, uapi, usage
from ._sys import ioctl, open_node, retry_eagain
from .container import Container
from .errors import BusyError, ClosedError, GroupNotViableError
from .pci import Sysfs, normalize_bdf


def group_offenders(sysfs: Sysfs, number: int) -> list[str]:
    """Devices of IOMMU group ``number`` on a host driver: while one is, no
    device of the group may be handed to userspace (either backend)."""
    offenders = []
    for bdf in sysfs.group_members(number):
        driver = sysfs.device(bdf).driver
        if driver is not None and not driver.startswith("vfio") and driver != "pcieport":
            offenders.append(f"{bdf} is also in it and bound to {driver}")
    return offenders


def not_viable(
    number: int, offenders: list[str], device: str, operation: str
) -> GroupNotViableError:
    """The error for group ``number``, naming its ``offenders`` (group_offenders())."""
    return GroupNotViableError(
        f"IOMMU group {number} is not viable: " + ("; ".join(offenders) or "see sysfs"),
        device=device,
        operation=operation,
        hint="bind every device of the group to vfio-pci (`pyvfio bind BDF`) or unbind it",
    )


def other_holders(group: int | None, cdev: str | None) -> list[str]:
    """:func:`usage.vfio_holders` of the group or cdev, less this process."""
    me = f"process {os.getpid()} "
    return [h for h in usage.vfio_holders(group, cdev) if not h.startswith(me)]


def name_holders(exc: BusyError, group: int | None, cdev: str | None) -> None:
    """Say in ``exc`` which other process holds the group or cdev (EBUSY)."""
    others = other_holders(group, cdev)
    if others:
        exc.message = f"held elsewhere: {'; '.join(others)}"
        pids = " ".join(h.split()[1] for h in others)
        exc.hint = f"close the device in that process, or stop it (kill {pids})"
    else:
        exc.hint = "another process (or another container in this one) holds it"


class Group:
    """An open IOMMU group attached to ``container``.

    ``number`` is the group's number (an int >= 0, /dev/vfio/NUMBER),
    ``container`` an open Container, ``sysfs`` a Sysfs or None (the real one).
    """

    def __init__(self, number: int, container: Container, sysfs: Sysfs | None = None) -> None:
        operation = "open group"
        number = _check.integer(
            number, "number", device=None, operation=operation, high=(1 << 31) - 1
        )
        _check.instance(
            container,
            Container,
            "container",
            "an open Container",
            device=None,
            operation=operation,
        )
        _check.instance(
            sysfs,
            Sysfs,
            "sysfs",
            "a pyvfio.Sysfs",
            device=None,
            operation=operation,
            allow_none=True,
        )
        #: The IOMMU group's number.
        self.number = number
        #: Its node, ``/dev/vfio/NUMBER``.
        self.path = f"/dev/vfio/{number}"
        self._sysfs = sysfs or Sysfs()
        try:
            self._fd = open_node(self.path, device=self.path, operation="open group")
        except BusyError as exc:
            name_holders(exc, number, None)
            raise
        try:
            self._check_viable()
            arg = ctypes.c_int32(container.fd)
            ioctl(
                self._fd,
                uapi.VFIO_GROUP_SET_CONTAINER,
                arg,
                device=self.path,
                operation="VFIO_GROUP_SET_CONTAINER",
            )
            container.set_iommu()
        except BaseException:
            os.close(self._fd)
            raise

    def _check_viable(self) -> None:
        status = uapi.vfio_group_status(argsz=ctypes.sizeof(uapi.vfio_group_status))
        ioctl(
            self._fd,
            uapi.VFIO_GROUP_GET_STATUS,
            status,
            device=self.path,
            operation="VFIO_GROUP_GET_STATUS",
        )
        if status.flags & uapi.VFIO_GROUP_FLAGS_VIABLE:
            return
        offenders = group_offenders(self._sysfs, self.number)
        raise not_viable(self.number, offenders, self.path, "open group")

    @property
    def fd(self) -> int:
        """The group's fd; ClosedError once closed."""
        if self._fd < 0:
            raise ClosedError("group is closed", device=self.path, operation="use")
        return self._fd

    def device_fd(
        self, bdf: str, timeout: float = 1.0, *, vf_token: uuid.UUID | None = None
    ) -> int:
        """A new device fd for ``bdf`` (VFIO_GROUP_GET_DEVICE_FD); a first open
        that finds the device lock taken (EAGAIN) is retried for ``timeout`` s.

        ``bdf`` is a PCI address (a str), ``timeout`` seconds (an int or float
        >= 0), ``vf_token`` the VF token (a uuid.UUID) that a VF of a PF on
        vfio-pci, or such a PF whose VFs are in use, is opened with."""
        bdf = normalize_bdf(bdf)
        operation = "VFIO_GROUP_GET_DEVICE_FD"
        timeout = _check.seconds(timeout, "timeout", device=bdf, operation=operation, high=1e9)
        vf_token = _check.vf_token(vf_token, device=bdf, operation=operation)
        name = bdf if vf_token is None else f"{bdf} vf_token={vf_token}"
        buf = bytearray(name.encode() + b"\0")
        return retry_eagain(
            lambda: ioctl(
                self.fd, uapi.VFIO_GROUP_GET_DEVICE_FD, buf, device=bdf, operation=operation
            ),
            timeout,
        )

    def close(self) -> None:
        """Close the group (the kernel detaches it from its container); safe twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
