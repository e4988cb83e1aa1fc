# SPDX-License-Identifier: Apache-2.0
"""EAGAIN from vfio-pci's try-lock paths (first open, reset) is retried, briefly."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from pyvfio._sys import retry_eagain
from pyvfio.errors import VfioError, from_oserror


def _failing(*codes: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(codes):
            code = codes[len(calls) - 1]
            raise from_oserror(OSError(code, "x"), device="0000:00:0d.0", operation="open")
        return "fd"

    return calls, call


def test_a_moment_of_eagain_is_waited_out() -> None:
    calls, call = _failing(errno.EAGAIN, errno.EAGAIN)
    assert retry_eagain(call, timeout=1.0) == "fd"
    assert len(calls) == 3


def test_a_device_that_stays_busy_fails_with_a_hint() -> None:
    _, call = _failing(*[errno.EAGAIN] * 1000)
    with pytest.raises(VfioError, match=r"EAGAIN.*stayed busy for 0\.05 s; try again"):
        retry_eagain(call, timeout=0.05)


def test_other_errors_are_not_retried() -> None:
    calls, call = _failing(errno.EBUSY)
    with pytest.raises(VfioError, match="EBUSY"):
        retry_eagain(call, timeout=1.0)
    assert len(calls) == 1
