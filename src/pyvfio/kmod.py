# SPDX-License-Identifier: Apache-2.0
"""Load the vfio_pci_cookie kernel module built from kmod/ (``make kmod``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .cookie import DRIVER
from .errors import DriverError

KMOD_DIR = Path(__file__).resolve().parents[2] / "kmod"


def is_loaded() -> bool:
    return Path("/sys/module", DRIVER).exists()


def load(ko: Path | None = None) -> None:
    """insmod the module (after its dependency vfio-pci-core); no-op if loaded."""
    if is_loaded():
        return
    ko = ko or KMOD_DIR / f"{DRIVER}.ko"
    if not ko.exists():
        raise DriverError(
            f"{ko} is not built",
            operation="load module",
            hint="run `make kmod` (it builds against the VM's kernel)",
        )
    for argv in (["modprobe", "vfio-pci-core"], ["insmod", str(ko)]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DriverError(
                f"`{' '.join(argv)}` failed: {proc.stderr.strip()}",
                operation="load module",
                hint="the module must be built for the running kernel",
            )


def unload() -> None:
    """rmmod; fails (DriverError) while a device is bound or open."""
    if not is_loaded():
        return
    proc = subprocess.run(["rmmod", DRIVER], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DriverError(
            f"rmmod {DRIVER} failed: {proc.stderr.strip()}",
            operation="unload module",
            hint="unbind its devices first",
        )
