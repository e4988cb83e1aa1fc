# SPDX-License-Identifier: Apache-2.0
"""The single exception tree of pyvfio.

Every error the package raises is a :class:`VfioError`.  Each carries the
device (a BDF or a path) and the operation that failed, the errno when the
kernel refused something, and a hint saying what to do next, so that the
message alone is enough to act on.
"""

from __future__ import annotations

import errno as _errno
import os


class VfioError(Exception):
    """Base class of every pyvfio error.

    ``str(error)`` is the whole sentence, each part where known:
    ``DEVICE: OPERATION: MESSAGE (ERRNO-NAME: strerror); HINT``.  ``message``
    is a str; ``device``, ``operation`` and ``hint`` strs or None, ``errno``
    an int or None.
    """

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        operation: str | None = None,
        errno: int | None = None,
        hint: str | None = None,
    ) -> None:
        # Checked here too: a wrong type would surface only later, as a
        # confusing error from __str__, in the middle of reporting another one.
        _check_error_args(message, device=device, operation=operation, errno=errno, hint=hint)
        super().__init__(message)
        #: What went wrong, without the rest (``str(error)`` has it all).
        self.message = message
        #: The device (a BDF) or node (a path) concerned, or None.
        self.device = device
        #: What was being done: an ioctl's name, ``bind``, ``map BAR2`` ..., or None.
        self.operation = operation
        #: The errno the kernel answered, or None when pyvfio refused the call itself.
        self.errno = errno
        #: What to do next, or None.
        self.hint = hint

    def __str__(self) -> str:
        parts = [p for p in (self.device, self.operation) if p]
        text = ": ".join([*parts, self.message])
        if self.errno is not None:
            text += f" ({_errno.errorcode.get(self.errno, self.errno)}: {os.strerror(self.errno)})"
        if self.hint:
            text += f"; {self.hint}"
        return text


class DeviceNotFoundError(VfioError):
    """No such PCI device, group or VFIO node."""


class DriverError(VfioError):
    """The device is not bound to the driver the operation needs."""


class GroupNotViableError(VfioError):
    """The IOMMU group holds a device bound to a non-VFIO driver."""


class PermissionDeniedError(VfioError):
    """The kernel refused access (EPERM/EACCES)."""


class BusyError(VfioError):
    """The resource is in use (EBUSY), e.g. a group already opened elsewhere."""


class InvalidArgumentError(VfioError, ValueError):
    """A bad argument value: refused by pyvfio before the call (the message
    names the parameter), or by the kernel (EINVAL, with ``errno`` set)."""


class ArgumentTypeError(VfioError, TypeError):
    """An argument of the wrong type, refused before anything was done; the
    message names the parameter and what it takes."""


class UnsupportedError(VfioError):
    """The device, driver or kernel does not offer this operation."""


class OutOfRangeError(VfioError, ValueError):
    """A number outside what the call takes: an offset, width or length
    outside the region, an index the device lacks, a value wider than its field."""


class ClosedError(VfioError):
    """The object was used after close()."""


class DeviceReleasedError(ClosedError):
    """The kernel asked for the device back (an unbind) and pyvfio closed it."""


class VmError(VfioError):
    """The test VM could not be started or did not finish."""


class VmArgumentError(VmError, InvalidArgumentError):
    """An argument of the test VM (``pyvfio vm run``, :class:`pyvfio.vm.VmOptions`)
    that cannot work, refused before anything starts; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str, *, hint: str | None = None) -> None:
        if not isinstance(parameter, str):
            raise ArgumentTypeError(
                f"parameter must be a str, not {parameter!r}", operation="VmArgumentError()"
            )
        super().__init__(message, operation=f"vm run: {parameter}", hint=hint)
        #: The refused :class:`~pyvfio.vm.VmOptions` field (``memory``, ``kernel`` ...).
        self.parameter = parameter


def _check_error_args(message: object, **optional: object) -> None:
    if not isinstance(message, str):
        raise ArgumentTypeError(
            f"message must be a str, not {message!r}", operation=f"{VfioError.__name__}()"
        )
    for name, value in optional.items():
        wanted: type = int if name == "errno" else str
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise ArgumentTypeError(
                f"{name} must be {'an int' if wanted is int else 'a str'} or None, not {value!r}",
                operation=f"{VfioError.__name__}()",
            )


_ERRNO_CLASSES: dict[int, type[VfioError]] = {
    _errno.ENOENT: DeviceNotFoundError,
    _errno.ENODEV: DeviceNotFoundError,
    _errno.EPERM: PermissionDeniedError,
    _errno.EACCES: PermissionDeniedError,
    _errno.EBUSY: BusyError,
    _errno.EINVAL: InvalidArgumentError,
    _errno.ENOTTY: UnsupportedError,
    _errno.EOPNOTSUPP: UnsupportedError,
}


def from_oserror(
    exc: OSError,
    *,
    device: str | None,
    operation: str,
    hint: str | None = None,
) -> VfioError:
    """Translate an OSError from a syscall into the matching VfioError."""
    cls = _ERRNO_CLASSES.get(exc.errno or 0, VfioError)
    message = "failed"
    if cls is PermissionDeniedError and hint is None:
        hint = "run as root or give your user access to /dev/vfio"
    return cls(message, device=device, operation=operation, errno=exc.errno, hint=hint)


def explain_overlap(exc: VfioError) -> None:
    """A DMA map over IOVAs already mapped answers EEXIST, which reads as
    "file exists": say what it means (either backend)."""
    if exc.errno == _errno.EEXIST and exc.hint is None:
        exc.hint = (
            "part of this IOVA range is already mapped: unmap it first, or let "
            "dev.dma_buffer() choose free IOVAs"
        )
