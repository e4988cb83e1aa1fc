# SPDX-License-Identifier: Apache-2.0
"""Host tests: no root, no device; sysfs is faked in a temporary tree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FakeDevice = Callable[..., Path]


@pytest.fixture
def sysfs_root(tmp_path: Path) -> Path:
    root = tmp_path / "sys" / "bus" / "pci"
    (root / "devices").mkdir(parents=True)
    (root / "drivers").mkdir()
    (tmp_path / "sys" / "kernel" / "iommu_groups").mkdir(parents=True)
    return root


@pytest.fixture
def fake_device(sysfs_root: Path) -> FakeDevice:
    """Create a PCI function in the fake sysfs, shaped as the kernel shows it."""

    def make(
        bdf: str,
        vendor: int,
        device: int,
        cls: int,
        *,
        driver: str | None = None,
        group: int | None = None,
        bars: dict[int, tuple[int, int, int]] | None = None,
    ) -> Path:
        dev = sysfs_root / "devices" / bdf
        dev.mkdir()
        (dev / "vendor").write_text(f"{vendor:#06x}\n")
        (dev / "device").write_text(f"{device:#06x}\n")
        (dev / "class").write_text(f"{cls:#08x}\n")
        (dev / "driver_override").write_text("(null)\n")
        lines = []
        for index in range(13):
            start, size, flags = (bars or {}).get(index, (0, 0, 0))
            end = start + size - 1 if size else 0
            lines.append(f"{start:#018x} {end:#018x} {flags:#018x}")
        (dev / "resource").write_text("\n".join(lines) + "\n")
        if driver:
            drv = sysfs_root / "drivers" / driver
            drv.mkdir(exist_ok=True)
            (dev / "driver").symlink_to(drv)
        if group is not None:
            gdir = sysfs_root.parent.parent / "kernel" / "iommu_groups" / str(group)
            (gdir / "devices").mkdir(parents=True, exist_ok=True)
            (gdir / "devices" / bdf).symlink_to(dev)
            (dev / "iommu_group").symlink_to(gdir)
        return dev

    return make
