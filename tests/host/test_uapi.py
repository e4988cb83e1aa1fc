# SPDX-License-Identifier: Apache-2.0
"""pyvfio.uapi against the system's <linux/vfio.h>: sizes, offsets, numbers.

A C program is generated from the bindings, compiled against the header and
run; any drift (a field moved, a number changed) fails here.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyvfio import uapi

HEADER = Path("/usr/include/linux/vfio.h")
KMOD_HEADER = (
    Path(__file__).parents[2] / "kmod" / "include" / "uapi" / "linux" / "vfio_pci_cookie.h"
)


def _structs() -> list[type[ctypes.Structure]]:
    return [
        obj
        for name, obj in vars(uapi).items()
        if isinstance(obj, type) and issubclass(obj, ctypes.Structure) and name.startswith("vfio")
    ]


def _constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(uapi).items()
        if name.startswith("VFIO_") and isinstance(value, int)
    }


def _c_source() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/vfio.h>",
        f'#include "{KMOD_HEADER}"',
        "int main(void) {",
    ]
    for struct in _structs():
        name = struct.__name__
        lines.append(f'printf("sizeof {name} %zu\\n", sizeof(struct {name}));')
        for field, *_ in struct._fields_:
            lines.append(
                f'printf("offsetof {name}.{field} %zu\\n", offsetof(struct {name}, {field}));'
            )
    for name in _constants():
        lines.append(f'printf("const {name} %u\\n", (__u32)({name}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


def _header_size(struct: type[ctypes.Structure]) -> int:
    """The size the system header gives ``struct``, where it legitimately differs."""
    size = ctypes.sizeof(struct)
    # Headers from 6.5 on append `__u32 pad` to vfio_device_info ("vfio: align
    # capability structures"); the binding keeps the 6.1 layout, which every
    # kernel accepts (argsz says how much the caller has).
    body = re.search(r"struct vfio_device_info \{([^}]*)\}", HEADER.read_text())
    if struct is uapi.vfio_device_info and body and re.search(r"\bpad;", body.group(1)):
        size += 4
    return size


def _python_view() -> list[str]:
    lines = []
    for struct in _structs():
        name = struct.__name__
        lines.append(f"sizeof {name} {_header_size(struct)}")
        for field, *_ in struct._fields_:
            lines.append(f"offsetof {name}.{field} {getattr(struct, field).offset}")
    lines += [f"const {name} {value}" for name, value in _constants().items()]
    return lines


@pytest.mark.skipif(
    not HEADER.exists() or not shutil.which("cc"), reason="needs a C compiler and linux-libc-dev"
)
def test_bindings_match_the_system_and_kmod_headers(tmp_path: Path) -> None:
    source = tmp_path / "check.c"
    source.write_text(_c_source())
    binary = tmp_path / "check"
    subprocess.run(["cc", "-Wall", "-Werror", "-o", str(binary), str(source)], check=True)
    from_c = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    c_view, py_view = from_c.splitlines(), _python_view()
    assert len(c_view) == len(py_view)
    mismatches = [(c, py) for c, py in zip(c_view, py_view, strict=True) if c != py]
    assert mismatches == [], "header vs binding:\n" + "\n".join(
        f"{c}  !=  {py}" for c, py in mismatches
    )


def test_every_binding_is_checked() -> None:
    # Guard against the generator silently skipping things.
    assert len(_structs()) >= 20
    assert "VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE" in _constants()
    assert "VFIO_DEVICE_GET_REGION_INFO" in _constants()
