# SPDX-License-Identifier: Apache-2.0
"""The device's children take the device fd, never the Device: no import circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pyvfio

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


def test_import_pyvfio_leaves_asyncio_to_wait_async() -> None:
    # asyncio (with ssl) was a third of `import pyvfio`, and every guest
    # Python start pays for it over 9p; only Interrupts.wait_async uses it.
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pyvfio; print(sorted({'asyncio', 'ssl'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "[]"


def _pyvfio_modules_after(code: str) -> list[str]:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; {code}; print(sorted(m for m in sys.modules if m.startswith('pyvfio')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(ast.literal_eval(shown.stdout.strip()))


def test_import_pyvfio_loads_each_module_when_a_name_from_it_is_first_used() -> None:
    # Every guest Python start reads what it imports over 9p, under TCG.
    assert _pyvfio_modules_after("import pyvfio") == ["pyvfio"]
    assert "pyvfio.device" not in _pyvfio_modules_after("from pyvfio import VfioError")
    assert "pyvfio.device" in _pyvfio_modules_after("from pyvfio import Device")
    # Modules reached through the package still work after a bare import.
    assert "pyvfio.dma" in _pyvfio_modules_after("import pyvfio; pyvfio.dma.IDENTITY")


def test_every_public_name_resolves_to_its_own_module() -> None:
    for name in pyvfio.__all__:
        value = getattr(pyvfio, name)
        assert getattr(value, "__name__", name) == name
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        pyvfio.Nothing  # type: ignore[attr-defined]  # noqa: B018
