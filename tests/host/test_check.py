# SPDX-License-Identifier: Apache-2.0
"""The argument checks every public call makes (pyvfio._check), on their own."""

from __future__ import annotations

import ctypes
import enum
import math
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyvfio import (
    ArgumentTypeError,
    InvalidArgumentError,
    OutOfRangeError,
    VfioError,
    _check,
    uapi,
)
from pyvfio.cookie import MemoryAttr


class Index:
    """Not an int, but one to Python (numpy's integers are like this)."""

    def __index__(self) -> int:
        return 3


def test_the_error_classes_are_the_builtin_ones_too() -> None:
    # A caller catching TypeError or ValueError, as for any Python call, catches ours.
    assert issubclass(ArgumentTypeError, VfioError) and issubclass(ArgumentTypeError, TypeError)
    assert issubclass(InvalidArgumentError, ValueError) and issubclass(OutOfRangeError, ValueError)
    assert not issubclass(ArgumentTypeError, ValueError)


def test_an_integer_is_an_int_never_a_bool() -> None:
    where: dict[str, Any] = {"device": "0000:00:0a.0", "operation": "read32"}
    assert _check.integer(7, "offset", **where) == 7
    assert _check.integer(MemoryAttr.WC, "offset", **where) == 1  # an int subclass
    assert _check.integer(Index(), "offset", **where) == 3
    for bad in (True, False, "7", 7.0, None, b"7"):
        with pytest.raises(ArgumentTypeError) as info:
            _check.integer(bad, "offset", **where)
        assert str(info.value).startswith("0000:00:0a.0: read32: offset must be an int, not ")
    with pytest.raises(
        OutOfRangeError, match=r"offset -1 is out of range: it takes 0\.\.2\*\*64-1"
    ):
        _check.integer(-1, "offset", **where)
    with pytest.raises(OutOfRangeError, match=r"index 0x10000000000 .* takes 0\.\.8"):
        _check.integer(1 << 40, "index", device=None, operation=None, high=8)
    assert _check.integer(-(1 << 80), "n", device=None, operation=None, low=None, high=None)


def test_a_duration_is_finite_and_bounded() -> None:
    where: dict[str, Any] = {"device": None, "operation": "wait"}
    assert _check.seconds(0, "timeout", **where) == 0.0
    assert _check.seconds(1.5, "timeout", **where) == 1.5
    for bad in (math.nan, math.inf, -0.001, 1e300, 10**400, _check.POLL_SECONDS_MAX + 1):
        with pytest.raises(
            OutOfRangeError, match=r"timeout .* is out of range: it takes 0\.\.2147483 seconds"
        ):
            _check.seconds(bad, "timeout", **where)
    for wrong in (True, "1", None, 1j):
        with pytest.raises(ArgumentTypeError, match="timeout must be a number of seconds"):
            _check.seconds(wrong, "timeout", **where)


class Colour(enum.IntEnum):
    RED = 0
    BLUE = 2


class Mode(enum.StrEnum):
    FAST = "fast"


def test_an_enum_takes_its_members_and_their_values() -> None:
    where: dict[str, Any] = {"device": None, "operation": "map"}
    assert _check.member(Colour.BLUE, Colour, "attr", **where) is Colour.BLUE
    assert _check.member(2, Colour, "attr", **where) is Colour.BLUE
    assert _check.member("fast", Mode, "mode", **where) is Mode.FAST
    with pytest.raises(
        InvalidArgumentError, match=r"attr 1 is not one of Colour\.RED, Colour\.BLUE"
    ):
        _check.member(1, Colour, "attr", **where)
    for wrong in (True, "RED", 2.0, None):
        with pytest.raises(
            ArgumentTypeError, match=r"attr must be one of Colour\.RED, Colour\.BLUE"
        ):
            _check.member(wrong, Colour, "attr", **where)


def test_other_kinds() -> None:
    where: dict[str, Any] = {"device": None, "operation": "call"}
    assert _check.boolean(False, "wc", **where) is False
    with pytest.raises(ArgumentTypeError, match="wc must be True or False, not 1 "):
        _check.boolean(1, "wc", **where)
    assert _check.text("x", "name", **where) == "x"
    assert _check.text(None, "driver", allow_none=True, **where) == ""
    with pytest.raises(ArgumentTypeError, match="driver must be a str or None"):
        _check.text(5, "driver", allow_none=True, **where)
    assert _check.path(Path("/dev/iommu"), "path", **where) == "/dev/iommu"
    for bad_path in ("", "/dev/\0"):
        with pytest.raises(InvalidArgumentError, match="is not a path"):
            _check.path(bad_path, "path", **where)
    assert _check.callback(print, "callback", **where) is print
    with pytest.raises(ArgumentTypeError, match="callback must be a callable or None"):
        _check.callback("print", "callback", **where)
    assert _check.readable_buffer(b"abc", "data", **where) == 3
    assert _check.readable_buffer(memoryview(bytearray(8)).cast("I"), "data", **where) == 8
    with pytest.raises(ArgumentTypeError, match="data must be a bytes-like object"):
        _check.readable_buffer("abc", "data", **where)
    assert _check.writable_buffer(mmap.mmap(-1, 4096), "buffer", **where) == 4096
    with pytest.raises(ArgumentTypeError, match="buffer must be a writable bytes-like object"):
        _check.writable_buffer(b"abc", "buffer", **where)


def test_a_message_quotes_a_long_value_short() -> None:
    assert _check.shown("x" * 100) == "'" + "x" * 56 + "... (str)"
    assert _check.shown(3) == "3 (int)"


class Fields(ctypes.Structure):
    _fields_ = (
        ("u32", ctypes.c_uint32),
        ("u64", ctypes.c_uint64),
        ("s32", ctypes.c_int32),
        ("u8", ctypes.c_uint8),
    )


def test_a_struct_field_is_never_truncated() -> None:
    # What ctypes does by itself: keeps the low bits.
    assert Fields(u64=(1 << 64) + 4096).u64 == 4096
    where: dict[str, Any] = {"device": "0000:00:0a.0", "operation": "create cookie"}
    made = _check.struct(Fields, u32=(1 << 32) - 1, u64=(1 << 64) - 1, s32=-(1 << 31), **where)
    assert (made.u32, made.u64, made.s32) == ((1 << 32) - 1, (1 << 64) - 1, -(1 << 31))
    for name, value in (("u32", 1 << 32), ("u64", 1 << 64), ("s32", 1 << 31), ("u8", -1)):
        with pytest.raises(OutOfRangeError, match=f"create cookie: {name} "):
            _check.struct(Fields, **{name: value}, device=None, operation="create cookie")
    with pytest.raises(ArgumentTypeError, match="u32 must be an int, not True"):
        _check.struct(Fields, u32=True, **where)
    # the cookie's own struct, as Cookie() fills it
    with pytest.raises(OutOfRangeError, match="offset 0x10000000000000000"):
        _check.struct(uapi.vfio_device_feature_mmap_cookie_create, offset=1 << 64, **where)


@dataclass(frozen=True)
class Record(_check.CheckedRecord):
    count: int
    name: str | None
    pairs: tuple[tuple[int, int], ...]
    pair: tuple[int, str]
    flag: bool


def test_a_record_checks_its_fields_against_their_annotations() -> None:
    Record(1, None, ((1, 2),), (1, "a"), True)
    Record(1, "x", (), (1, "a"), False)
    for bad in (
        {"count": True},
        {"name": b"x"},
        {"pairs": ((1, "2"),)},
        {"pairs": [(1, 2)]},
        {"pair": (1, 2)},
        {"pair": (1, "a", 3)},
        {"flag": 1},
    ):
        ((field, value),) = bad.items()
        args = {"count": 1, "name": None, "pairs": (), "pair": (1, "a"), "flag": True}
        with pytest.raises(ArgumentTypeError, match=rf"Record\(\): {field} must be "):
            Record(**{**args, field: value})  # type: ignore[arg-type]
