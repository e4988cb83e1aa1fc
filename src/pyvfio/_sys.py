# SPDX-License-Identifier: Apache-2.0
"""The one place where pyvfio issues ioctls and opens device nodes.

Wrapping here keeps the promise that no bare OSError leaves the package.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from typing import Any

from .errors import from_oserror

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
