# SPDX-License-Identifier: Apache-2.0
"""Without PAT: legacy mappings and UC cookies work as on vfio-pci; only WC is refused.

`make test` boots one kernel with `nopat` and runs this file there
(tools/test.sh). The first module answered EBUSY to every legacy BAR mmap and
UC cookie in that boot.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyvfio import Device, UnsupportedError
from pyvfio.cookie import MemoryAttr, supported_attrs

PAGE = 4096
NOPAT = "nopat" in Path("/proc/cmdline").read_text().split()

pytestmark = pytest.mark.skipif(not NOPAT, reason="runs in make test's nopat boot")


def test_legacy_offsets_work_without_pat(ivshmem: str) -> None:
    with Device.open(ivshmem) as dev:
        bar2 = dev.region(2)
        legacy = bar2.map(0, 2 * PAGE)
        legacy.write32(PAGE, 0xC0DE)
        assert bar2.read(PAGE, 4) == struct.pack("<I", 0xC0DE)
        bar2.write(PAGE + 4, struct.pack("<I", 0xF00D))
        assert legacy.read32(PAGE + 4) == 0xF00D


def test_uc_cookies_work_and_wc_is_unsupported_without_pat(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        bar2 = dev.region(2)
        assert supported_attrs(dev, 2) == {MemoryAttr.UC}
        uc = bar2.map(0, PAGE, attr=MemoryAttr.UC)
        uc.write32(0, 0xBEEF)
        assert bar2.read(0, 4) == struct.pack("<I", 0xBEEF)
        with pytest.raises(UnsupportedError):
            bar2.map(PAGE, PAGE, wc=True)
        legacy = bar2.map(2 * PAGE, PAGE)  # beside a UC cookie, on every kernel
        legacy.write32(0, 1)
        assert legacy.read32(0) == 1
