# SPDX-License-Identifier: Apache-2.0
"""The one place where pyvfio issues ioctls and opens device nodes.

Wrapping here keeps the promise that no bare OSError leaves the package.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import VfioError, from_oserror

T = TypeVar("T")

log = logging.getLogger(__name__)


def ioctl(fd: int, request: int, arg: Any, *, device: str | None, operation: str) -> int:
    """ioctl(2) with an int or a writable buffer; returns the ioctl's result."""
    try:
        if isinstance(arg, int):
            return fcntl.ioctl(fd, request, arg)
        # mutate_flag: the kernel writes its answer into the caller's buffer
        return int(fcntl.ioctl(fd, request, arg, True))
    except OSError as exc:
        raise from_oserror(exc, device=device, operation=operation) from exc


def open_node(path: str, *, device: str | None, operation: str, hint: str | None = None) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise from_oserror(exc, device=device, operation=operation, hint=hint) from exc


def close_mmap(mm: mmap.mmap, what: str) -> None:
    """munmap, unless a caller still holds a view: then the pages go with the last view."""
    try:
        mm.close()
    except BufferError:
        log.warning("%s closed while views of it exist", what)


def retry_eagain(call: Callable[[], T], timeout: float) -> T:
    """``call()``, retried for up to ``timeout`` s while it fails with EAGAIN.

    vfio-pci only *tries* to take the device lock for a reset, also the one
    it does when a device is first opened (6.1's vfio_pci_core_enable), and
    answers EAGAIN while someone else, udev handling a bind event for one,
    holds it for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except VfioError as exc:
            if exc.errno != errno.EAGAIN:
                raise
            if time.monotonic() >= deadline:
                exc.hint = f"the device stayed busy for {timeout} s; try again"
                raise
        time.sleep(0.01)


# Make's own variables, which a make run from `make` inherits: a build
# started here is a top-level make (kselftest's lib.mk, with MAKELEVEL set,
# expects OUTPUT from its parent and writes the programs to / without it).
_MAKE_VARS = {"MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"}


def top_level_make_env() -> dict[str, str]:
    """This process's environment without make's own variables."""
    return {k: v for k, v in os.environ.items() if k not in _MAKE_VARS}
