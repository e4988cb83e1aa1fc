# SPDX-License-Identifier: Apache-2.0
"""Load the vfio_pci_cookie kernel module built for the running kernel.

``make kmod`` (``pyvfio vm kmod``) builds kmod/ once per kernel of the test
matrix into ``build/kmod/RELEASE/``, outside kmod/ because Kbuild's clean
deletes every .ko under the module's directory.  A failed build leaves its
first compiler error in ``build/kmod/RELEASE/error`` instead, which
:func:`build_error` reports (the guest suite skips the module's tests with it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .cookie import DRIVER
from .errors import DriverError

KMOD_SRC = Path(__file__).resolve().parents[2] / "kmod"
BUILD_DIR = Path(os.environ.get("PYVFIO_KMOD_DIR", KMOD_SRC.parent / "build" / "kmod"))


def is_loaded() -> bool:
    return Path("/sys/module", DRIVER).exists()


def built_for(release: str | None = None) -> Path:
    """Where the module for ``release`` (default: the running kernel) is built."""
    return BUILD_DIR / (release or os.uname().release) / f"{DRIVER}.ko"


def build_error(release: str | None = None) -> str | None:
    """The first compiler error of the last failed build for ``release``, if it failed."""
    try:
        return (built_for(release).parent / "error").read_text().strip()
    except OSError:
        return None


def load(ko: Path | None = None) -> None:
    """insmod the module (after its dependency vfio-pci-core); no-op if loaded."""
    if is_loaded():
        return
    release = os.uname().release
    ko = ko or built_for(release)
    if not ko.exists():
        error = build_error(release)
        raise DriverError(
            f"{DRIVER} does not build for {release}: {error}" if error else f"{ko} is not built",
            operation="load module",
            hint="run `make kmod` (it builds against each kernel of the test matrix)",
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
