# SPDX-License-Identifier: Apache-2.0
"""Argument checks for the boundary of every public call.

A public call checks its arguments first, before it opens, maps or asks the
kernel anything, so a mistake changes nothing.  A wrong type raises
:class:`~pyvfio.errors.ArgumentTypeError` (a ``TypeError``), a bad value
:class:`~pyvfio.errors.OutOfRangeError` or
:class:`~pyvfio.errors.InvalidArgumentError` (``ValueError`` both); each
names the parameter and what it takes, and the device and operation where
there are some.

``bool`` is an ``int`` to Python, but never an offset, an index or a size
here: ``read32(True)`` is a mistake, not ``read32(1)``.  Numbers are never
truncated: a value that does not fit its ctypes field is refused
(:func:`struct`), where ctypes would keep the low bits.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import functools
import mmap
import operator
import os
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ArgumentTypeError, InvalidArgumentError, OutOfRangeError

E = TypeVar("E", bound=enum.Enum)
S = TypeVar("S", bound=ctypes.Structure)
T = TypeVar("T")

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
# Largest size mmap(2) and the IOMMU calls can be asked for from Python
# (ssize_t), rounded down to a page.
SIZE_MAX = ((1 << 63) - 1) & ~(mmap.PAGESIZE - 1)
# poll(2) takes milliseconds in a C int.
POLL_SECONDS_MAX = ((1 << 31) - 1) // 1000

_REPR_MAX = 60


def shown(value: object) -> str:
    """``value`` as a message quotes it: its repr (cut short) and its type."""
    text = repr(value)
    if len(text) > _REPR_MAX:
        text = text[: _REPR_MAX - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _number(n: int) -> str:
    """Bounds as a reader thinks of them: small ones in decimal, limits by their power of two."""
    for bits in (31, 32, 63, 64):
        if n == (1 << bits) - 1:
            return f"2**{bits}-1"
    return str(n) if abs(n) < 0x10000 else f"{n:#x}"


def wrong_type(
    name: str,
    value: object,
    takes: str,
    *,
    device: str | None,
    operation: str | None,
    hint: str | None = None,
) -> ArgumentTypeError:
    """The error for ``value`` of parameter ``name``, which takes ``takes``."""
    return ArgumentTypeError(
        f"{name} must be {takes}, not {shown(value)}",
        device=device,
        operation=operation,
        hint=hint,
    )


def integer(
    value: object,
    name: str,
    *,
    device: str | None,
    operation: str | None,
    low: int | None = 0,
    high: int | None = U64_MAX,
    hint: str | None = None,
) -> int:
    """``value`` as an int in [low, high] (None: unbounded on that side): an
    ``int`` (or an object with ``__index__``), never a ``bool``."""
    if type(value) is not int:  # the common case costs one comparison
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            raise wrong_type(name, value, "an int", device=device, operation=operation, hint=hint)
        value = operator.index(typing.cast(typing.SupportsIndex, value))
    assert isinstance(value, int)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            takes = f"{_number(low or 0)}.."
        elif low is None:
            takes = f"at most {_number(high)}"
        else:
            takes = f"{_number(low)}..{_number(high)}"
        raise OutOfRangeError(
            f"{name} {_number(value)} is out of range: it takes {takes}",
            device=device,
            operation=operation,
            hint=hint,
        )
    return value


def optional_integer(
    value: object,
    name: str,
    *,
    device: str | None,
    operation: str | None,
    low: int | None = 0,
    high: int | None = U64_MAX,
) -> int | None:
    """None, or :func:`integer`."""
    if value is None:
        return None
    return integer(value, name, device=device, operation=operation, low=low, high=high)


def boolean(value: object, name: str, *, device: str | None, operation: str | None) -> bool:
    """``True`` or ``False`` only: ``0``/``1`` and other truthy things are refused."""
    if not isinstance(value, bool):
        raise wrong_type(name, value, "True or False", device=device, operation=operation)
    return value


def text(
    value: object,
    name: str,
    *,
    device: str | None,
    operation: str | None,
    allow_none: bool = False,
) -> str:
    """A ``str`` (None too with ``allow_none``, returned as ``""``)."""
    if value is None and allow_none:
        return ""
    if not isinstance(value, str):
        takes = "a str or None" if allow_none else "a str"
        raise wrong_type(name, value, takes, device=device, operation=operation)
    return value


def path(value: object, name: str, *, device: str | None, operation: str | None) -> str:
    """A filesystem path: a non-empty ``str`` or ``os.PathLike`` of one."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise wrong_type(
            name, value, "a path (str or pathlib.Path)", device=device, operation=operation
        )
    if not value or "\0" in value:
        raise InvalidArgumentError(
            f"{name} {value!r} is not a path", device=device, operation=operation
        )
    return value


def seconds(
    value: object,
    name: str,
    *,
    device: str | None,
    operation: str | None,
    high: float = float(POLL_SECONDS_MAX),
    hint: str | None = None,
) -> float:
    """A finite duration in seconds, 0 <= value <= high (an int or a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(
            name, value, "a number of seconds (int or float)", device=device, operation=operation
        )
    # Compared, never converted: float(10**400) would raise OverflowError; NaN compares false.
    if not 0 <= value <= high:
        quoted = _number(value) if isinstance(value, int) else repr(value)
        raise OutOfRangeError(
            f"{name} {quoted} is out of range: it takes 0..{high:.0f} seconds",
            device=device,
            operation=operation,
            hint=hint,
        )
    return float(value)


def member(
    value: object,
    kind: type[E],
    name: str,
    *,
    device: str | None,
    operation: str | None,
) -> E:
    """A member of the enum ``kind``, or a value that is one (an IntEnum's
    int, a StrEnum's str); returned as the member."""
    if isinstance(value, kind):
        return value
    base = int if issubclass(kind, int) else str
    members = ", ".join(f"{kind.__name__}.{m.name}" for m in kind)
    if isinstance(value, bool) or not isinstance(value, base):
        raise wrong_type(name, value, f"one of {members}", device=device, operation=operation)
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgumentError(
            f"{name} {value!r} is not one of {members}", device=device, operation=operation
        ) from None


def instance(
    value: object,
    kind: type[T] | tuple[type, ...],
    name: str,
    takes: str,
    *,
    device: str | None,
    operation: str | None,
    allow_none: bool = False,
    hint: str | None = None,
) -> Any:
    """``value`` if it is an instance of ``kind`` (or None, with ``allow_none``)."""
    if (value is None and allow_none) or isinstance(value, kind):
        return value
    takes = f"{takes} or None" if allow_none else takes
    raise wrong_type(name, value, takes, device=device, operation=operation, hint=hint)


def callback(
    value: object, name: str, *, device: str | None, operation: str | None
) -> Callable[..., object] | None:
    """A callable, or None."""
    if value is not None and not callable(value):
        raise wrong_type(name, value, "a callable or None", device=device, operation=operation)
    return value


def readable_buffer(value: object, name: str, *, device: str | None, operation: str | None) -> int:
    """A bytes-like object (bytes, bytearray, memoryview, mmap, array ...); returns its length
    in bytes.  A ``str`` is refused: it has no single byte encoding."""
    try:
        with memoryview(value) as view:  # type: ignore[arg-type]
            return view.nbytes
    except TypeError:
        raise wrong_type(
            name,
            value,
            "a bytes-like object (bytes, bytearray ...)",
            device=device,
            operation=operation,
        ) from None


def writable_buffer(value: object, name: str, *, device: str | None, operation: str | None) -> int:
    """A writable bytes-like object (bytearray, a writable memoryview or mmap ...);
    returns its length in bytes."""
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        view = None
    if view is None or view.readonly:
        if view is not None:
            view.release()
        raise wrong_type(
            name,
            value,
            "a writable bytes-like object (bytearray, a writable memoryview ...)",
            device=device,
            operation=operation,
        )
    with view:
        return view.nbytes


def struct(cls: type[S], *, device: str | None, operation: str | None, **fields: int) -> S:
    """``cls(**fields)``, each value first checked to fit its integer field:
    ctypes would keep the low bits of 2**64 + 4096 and pass 4096 on."""
    ctypes_of = _field_types(cls)
    for name, value in fields.items():
        low, high = ctypes_of[name]
        integer(value, name, device=device, operation=operation, low=low, high=high)
    return cls(**fields)


@functools.cache
def _field_types(cls: type[ctypes.Structure]) -> dict[str, tuple[int, int]]:
    """The range of each integer field of a ctypes structure."""
    ranges = {}
    for name, ctype, *_ in cls._fields_:
        code = getattr(ctype, "_type_", None)
        if isinstance(code, str) and code in "bBhHiIlLqQ":
            bits = 8 * ctypes.sizeof(ctype)
            signed = code.islower()
            ranges[name] = (
                (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            )
    return ranges


# -- records ----------------------------------------------------------------


class CheckedRecord:
    """Base of pyvfio's frozen dataclasses (what calls return: DeviceInfo, Bar,
    IrqInfo ...): building one checks every field against its annotation, so
    a hand-made record with a wrong type fails where it is made, not later."""

    def __post_init__(self) -> None:
        for name, kind in _record_fields(type(self)):
            value = getattr(self, name)
            if not _matches(value, kind):
                raise ArgumentTypeError(
                    f"{name} must be {_describe(kind)}, not {shown(value)}",
                    operation=f"{type(self).__name__}()",
                )


_RECORD_FIELDS: dict[type, tuple[tuple[str, object], ...]] = {}


def _record_fields(cls: type) -> tuple[tuple[str, object], ...]:
    """(name, resolved annotation) of each field, worked out once per class."""
    fields = _RECORD_FIELDS.get(cls)
    if fields is None:
        hints = typing.get_type_hints(cls)
        fields = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
        _RECORD_FIELDS[cls] = fields
    return fields


def _matches(value: object, kind: object) -> bool:
    """Whether ``value`` is of the annotated type ``kind`` (the few shapes records use)."""
    if kind is object or kind is Any:
        return True
    if kind is None or kind is type(None):
        return value is None
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(kind, type):
        return isinstance(value, kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(_matches, value, args))
    raise NotImplementedError(f"no record check for {kind!r}")  # pragma: no cover


def _describe(kind: object) -> str:
    if kind is None or kind is type(None):
        return "None"
    if isinstance(kind, type):
        return {int: "an int", bool: "True or False", str: "a str", bytes: "bytes"}.get(
            kind, f"a {kind.__name__}"
        )
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(arg) for arg in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a tuple of ({_describe(args[0])})"
    if origin is tuple:
        return f"a tuple ({', '.join(_describe(arg) for arg in args)})"
    return repr(kind)  # pragma: no cover


def vf_token(
    value: object,
    *,
    device: str | None,
    operation: str,
    name: str = "vf_token",
    allow_none: bool = True,
) -> uuid.UUID | None:
    """A VF token: a uuid.UUID (or None for none, with ``allow_none``)."""
    token: uuid.UUID | None = instance(
        value,
        uuid.UUID,
        name,
        "a uuid.UUID",
        device=device,
        operation=operation,
        allow_none=allow_none,
        hint="e.g. uuid.uuid4(), or uuid.UUID('bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3')",
    )
    return token
