# SPDX-License-Identifier: Apache-2.0
"""Unmarked: runs on the host, beside the VM's boots."""

from __future__ import annotations

from edu_driver import expected_factorial


def test_reference_factorial_wraps_at_32_bits() -> None:
    assert expected_factorial(5) == 120
    assert expected_factorial(13) == 6227020800 % 2**32
