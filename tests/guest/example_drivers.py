# SPDX-License-Identifier: Apache-2.0
"""The example drivers (examples/edu.py, examples/nvme.py), loaded as modules:
tests that need a device to do real DMA or raise a real interrupt drive it
with them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from pyvfio import Device

EXAMPLES = Path(__file__).parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


edu = _load("edu")
nvme = _load("nvme")
#: What QEMU's nvme answers in IDENTIFY controller's model number (bytes 24-63).
QEMU_NVME_MODEL = b"QEMU NVMe Ctrl"


def read_by_edu(device: Device, iova: int, count: int) -> bytes:
    """What edu ``device`` reads at ``iova`` (examples/edu.py's ``Edu.read_at``),
    with its MSI let go after, so that the next call can take it again."""
    driver = edu.Edu(device)
    try:
        return bytes(driver.read_at(iova, count))
    finally:
        driver.msi.close()
