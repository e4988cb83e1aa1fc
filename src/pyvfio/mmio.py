# SPDX-License-Identifier: Apache-2.0
"""Exact-width access to an mmapped device region.

A register must see one access of the width the driver means: never two
16-bit halves of a 32-bit register, never a merged 64-bit access.  Slicing
an mmap promises nothing of the kind (it copies with memcpy of any shape), so
the accessors come from a small C extension, ``pyvfio._mmio``, built at
install time: each access is one ``volatile`` load or store of a fixed-width
type, after a bounds and alignment check, all in one C call.

If the extension could not be built, a pure-Python fallback is used (see
:data:`BACKEND`).  It indexes a ``memoryview`` cast to the item type, which
CPython implements as one fixed-size ``memcpy`` that x86-64 and arm64
compilers emit as a single load or store of that width: the width guarantee
holds in practice there, but rests on the compiler, and the fallback cannot
issue a store fence, so ``write_barrier()`` raises UnsupportedError.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import mmap
import operator
import shlex
import sys
import typing
import urllib.parse
from typing import TYPE_CHECKING, Literal

from . import _check
from ._sys import close_mmap
from .cookie import Cookie
from .errors import ArgumentTypeError, ClosedError, OutOfRangeError, UnsupportedError

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .cookie import MemoryType

log = logging.getLogger(__name__)

if sys.byteorder != "little":  # pragma: no cover - x86 and arm64 hosts are little endian
    raise ImportError("pyvfio's MMIO accessors assume a little-endian host")


_FORMATS: dict[int, Literal["Q", "I", "B"]] = {8: "Q", 4: "I", 1: "B"}


def _offset_error(name: str, op: str, what: str, value: object, takes: str) -> ArgumentTypeError:
    # The C helper's message, word for word: both backends validate alike.
    return ArgumentTypeError(f"{name}: {op}: {what} must be {takes}, not {_check.shown(value)}")


def _as_int(name: str, op: str, what: str, value: object) -> int:
    """An int argument of an accessor (``__index__`` too), never a bool."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise _offset_error(name, op, what, value, "an int")
    return operator.index(typing.cast(typing.SupportsIndex, value))


class _PyWindow:
    """Pure-Python stand-in for ``pyvfio._mmio.Window`` (same methods and errors)."""

    def __init__(self, buffer: Buffer, name: str) -> None:
        raw = memoryview(buffer)
        self._raw: memoryview | None = raw
        self._name = name
        self._closed_reason = "mapping is closed"
        self._size = len(raw)
        self._views = {1: raw.cast("B"), 2: raw.cast("H"), 4: raw.cast("I"), 8: raw.cast("Q")}

    @property
    def size(self) -> int:
        return self._size

    @property
    def _released(self) -> bool:
        return self._raw is None

    def _index(self, offset: int, width: int, op: str) -> int:
        offset = _as_int(self._name, op, "offset", offset)
        if self._raw is None:
            raise ClosedError(f"{self._name}: {op}: {self._closed_reason}")
        if offset < 0 or offset > self._size - width:
            raise OutOfRangeError(
                f"{self._name}: {op}: offset {offset} width {width} is "
                f"outside the {self._size}-byte mapping"
            )
        if offset % width:
            raise OutOfRangeError(
                f"{self._name}: {op}: offset {offset} is not {width}-byte aligned"
            )
        return offset // width

    def _store(self, width: int, offset: int, value: int) -> None:
        value = _as_int(self._name, f"write{8 * width}", "value", value)
        if not 0 <= value < 1 << (8 * width):
            raise OutOfRangeError(
                f"{self._name}: write{8 * width}: value {value} does not fit in {8 * width} bits"
            )
        op = f"write{8 * width}"
        index = self._index(offset, width, op)
        try:
            self._views[width][index] = value
        except (KeyError, ValueError):  # released by another thread meanwhile
            raise ClosedError(f"{self._name}: {op}: {self._closed_reason}") from None

    def _load(self, width: int, offset: int, op: str) -> int:
        index = self._index(offset, width, op)
        try:
            return int(self._views[width][index])
        except (KeyError, ValueError):  # released by another thread meanwhile
            raise ClosedError(f"{self._name}: {op}: {self._closed_reason}") from None

    def read8(self, offset: int, /) -> int:
        return self._load(1, offset, "read8")

    def read16(self, offset: int, /) -> int:
        return self._load(2, offset, "read16")

    def read32(self, offset: int, /) -> int:
        return self._load(4, offset, "read32")

    def read64(self, offset: int, /) -> int:
        return self._load(8, offset, "read64")

    def write8(self, offset: int, value: int, /) -> None:
        self._store(1, offset, value)

    def write16(self, offset: int, value: int, /) -> None:
        self._store(2, offset, value)

    def write32(self, offset: int, value: int, /) -> None:
        self._store(4, offset, value)

    def write64(self, offset: int, value: int, /) -> None:
        self._store(8, offset, value)

    def _span(self, offset: int, length: int, op: str) -> None:
        offset = _as_int(self._name, op, "offset", offset)
        if self._raw is None:
            raise ClosedError(f"{self._name}: {op}: {self._closed_reason}")
        if offset < 0 or length < 0 or offset + length > self._size:
            raise OutOfRangeError(
                f"{self._name}: {op}: [offset, offset + length) = [{offset}, {offset} + {length}) "
                f"is outside the {self._size}-byte mapping"
            )

    def _copy(self, dst: memoryview, src: memoryview) -> None:
        # Widest aligned access per step, like the C helper; never byte-wise by default.
        pos, n = 0, len(dst)
        while pos < n:
            width = next(w for w in (8, 4, 1) if n - pos >= w and pos % w == 0)
            fmt = _FORMATS[width]
            dst[pos : pos + width].cast(fmt)[0] = src[pos : pos + width].cast(fmt)[0]
            pos += width

    def read_bytes(self, offset: int, length: int, /) -> bytes:
        offset = _as_int(self._name, "read_bytes", "offset", offset)
        length = _as_int(self._name, "read_bytes", "length", length)
        self._span(offset, length, "read_bytes")
        out = bytearray(length)
        assert self._raw is not None
        self._copy(memoryview(out), self._raw[offset : offset + length])
        return bytes(out)

    def write_bytes(self, offset: int, data: Buffer, /) -> None:
        offset = _as_int(self._name, "write_bytes", "offset", offset)
        try:
            src = memoryview(data).cast("B")
        except TypeError:
            raise _offset_error(
                self._name, "write_bytes", "data", data, "a contiguous bytes-like object"
            ) from None
        self._span(offset, len(src), "write_bytes")
        assert self._raw is not None
        self._copy(self._raw[offset : offset + len(src)], src)

    def copy_from(self, offset: int, buffer: Buffer, /) -> None:
        offset = _as_int(self._name, "copy_from", "offset", offset)
        try:
            dst = memoryview(buffer).cast("B")
        except TypeError:
            dst = None
        if dst is None or dst.readonly:
            raise _offset_error(
                self._name, "copy_from", "buffer", buffer, "a writable contiguous bytes-like object"
            )
        self._span(offset, len(dst), "copy_from")
        assert self._raw is not None
        self._copy(dst, self._raw[offset : offset + len(dst)])

    def write_barrier(self) -> None:
        raise UnsupportedError(
            "write_barrier needs the C helper pyvfio._mmio",
            device=self._name,
            operation="write_barrier",
            hint=fallback_hint(),
        )

    def _release(self, reason: str | None = None, /) -> None:
        if reason is not None and self._raw is not None:
            self._closed_reason = reason
        if self._raw is None:
            return
        for view in self._views.values():
            view.release()
        self._views.clear()
        self._raw.release()
        self._raw = None


if TYPE_CHECKING:
    # Both backends have the same methods; type against the C one's stub.
    from ._mmio import Window as _Window

    #: Which register access is in use: ``"c"``, the C helper ``pyvfio._mmio``,
    #: or ``"python"``, the fallback when it could not be built (no fence).
    BACKEND: str
else:
    try:
        from . import _mmio

        _mmio.set_errors(OutOfRangeError, ClosedError, ArgumentTypeError)
        _Window = _mmio.Window
        BACKEND = "c"
    except ImportError:
        _Window = _PyWindow
        BACKEND = "python"

REINSTALL = "pip install --no-cache-dir --force-reinstall"


def reinstall_command(direct_url: str | None) -> str | None:
    """The pip command that builds pyvfio again from where it was installed:
    ``direct_url`` is the installed distribution's ``direct_url.json``
    (PEP 610; None: it came from an index).  None where no command can: a
    wheel, which carries no source."""
    if direct_url is None:
        return f"{REINSTALL} pyvfio"
    try:
        origin = json.loads(direct_url)
        url = str(origin["url"])
    except (ValueError, KeyError, TypeError):
        return f"{REINSTALL} pyvfio"
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and "vcs" in vcs:
        commit = vcs.get("commit_id")
        spec = f"{vcs['vcs']}+{url}" + (f"@{commit}" if commit else "")
        return f"{REINSTALL} {shlex.quote(spec)}"
    target = urllib.parse.unquote(url.removeprefix("file://")) if url.startswith("file://") else url
    if target.endswith(".whl"):
        return None
    dir_info = origin.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return f"{REINSTALL} -e {shlex.quote(target)}"
    return f"{REINSTALL} {shlex.quote(target)}"


@functools.cache
def fallback_hint() -> str:
    """What to do about the fallback: a compiler, then a rebuild from the
    source pyvfio was installed from (pip reuses its cached wheel otherwise)."""
    try:
        direct_url = importlib.metadata.distribution("pyvfio").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        direct_url = None
    command = reinstall_command(direct_url)
    if command is None:
        return (
            "install gcc and python3-dev, then install pyvfio again from the sdist or "
            f"source tree its wheel was built from, without pip's cache: `{REINSTALL} PATH`"
        )
    return f"install gcc and python3-dev, then `{command}` (pip reuses its cached wheel otherwise)"


@functools.cache
def _warn_fallback_once() -> None:
    """Said once per process (cached), and only where it matters: when a region
    is mapped, not at import, so `pyvfio list` and `info` stay quiet."""
    if BACKEND == "python":
        log.warning(
            "pyvfio._mmio is not built: register access uses the pure-Python fallback, "
            "which cannot fence (write_barrier); %s",
            fallback_hint(),
        )


class Mapping(_Window):
    """A mapped window of a region with width-exact, bounds-checked accessors.

    Offsets are relative to the start of the mapping (``region_offset`` is
    where that is in the region).  Accessors: ``read8/16/32/64(offset)``,
    ``write8/16/32/64(offset, value)``, ``read_bytes(offset, n)``,
    ``write_bytes(offset, data)``, ``copy_from(offset, buffer)`` and
    ``write_barrier()``.  Offsets, lengths and values are ints (never
    bools), data a bytes-like object, ``copy_from``'s buffer a writable one.
    Errors are OutOfRangeError, ClosedError and ArgumentTypeError.
    """

    #: The cookie it was mapped through, if an attribute was asked for; None
    #: for a plain mapping.
    cookie: Cookie | None

    def __init__(
        self, mm: mmap.mmap, name: str, region_offset: int = 0, cookie: Cookie | None = None
    ) -> None:
        """Accessors over ``mm`` (an open, writable mmap of a region), called
        ``name`` in errors, which starts at ``region_offset`` (an int >= 0) in
        its region and was mapped through ``cookie`` (or None)."""
        name = _check.text(name, "name", device=None, operation="Mapping()")
        _check.instance(mm, mmap.mmap, "mm", "an mmap.mmap", device=name, operation="Mapping()")
        _check.writable_buffer(mm, "mm", device=name, operation="Mapping()")
        region_offset = _check.integer(
            region_offset, "region_offset", device=name, operation="Mapping()"
        )
        _check.instance(
            cookie,
            Cookie,
            "cookie",
            "a Cookie",
            device=name,
            operation="Mapping()",
            allow_none=True,
        )
        _warn_fallback_once()
        super().__init__(mm, name)
        self._mm: mmap.mmap | None = mm
        #: What errors call the mapping: the device, region, offset and attribute.
        self.name = name
        #: Where the mapping starts in its region (offset 0 of the accessors).
        self.region_offset = region_offset
        self.cookie = cookie

    @property
    def memory_type(self) -> MemoryType:
        """The memory type in effect, as the kernel module reports it (cookie mappings)."""
        if self.cookie is None:
            raise UnsupportedError(
                "only mappings made with an attribute (a cookie) report their memory type",
                device=self.name,
                operation="memory_type",
                hint="map with wc=True or attr=MemoryAttr.UC",
            )
        if self._mm is None:
            raise ClosedError("mapping is closed", device=self.name, operation="memory_type")
        return self.cookie.query().memory_type

    @property
    def closed(self) -> bool:
        """Whether the mapping is unmapped (closed)."""
        return self._mm is None

    def close(self) -> None:
        """Unmap (and destroy its cookie); safe to call twice."""
        if self._mm is None:
            return
        self._unmap()
        if self.cookie is not None:
            self.cookie.destroy()

    def _unmap(self) -> None:
        """munmap only: in a forked child, the cookie is also the parent's."""
        self._release()
        if self._mm is not None:
            close_mmap(self._mm, self.name)
            self._mm = None

    def __enter__(self) -> Mapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Mapping {self.name} size={self.size:#x}{' closed' if self.closed else ''}>"
