# SPDX-License-Identifier: Apache-2.0
"""The device's children take the device fd, never the Device: no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pyvfio"


def _imported_modules(path: Path) -> set[str]:
    """Every pyvfio module ``path`` imports, TYPE_CHECKING blocks included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module)
            else:
                names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("child", ["region", "irq", "config", "mmio", "cookie", "devfd"])
def test_children_of_the_device_do_not_import_it(child: str) -> None:
    assert "device" not in _imported_modules(SRC / f"{child}.py")


def test_the_device_still_imports_its_children() -> None:
    # The check above must see imports at all: device.py's are its children.
    assert {"region", "irq", "devfd"} <= _imported_modules(SRC / "device.py")
