# SPDX-License-Identifier: Apache-2.0
"""pyvfio.uapi against the kernel's uAPI headers: sizes, offsets, numbers.

A C program is generated from the bindings, compiled against the headers and
run; any drift (a field moved, a number changed) fails here.  Twice: against
the system's <linux/vfio.h> (the cdev and iommufd bindings excepted: 6.1's
header lacks them), and against linux-source-7.3's <linux/vfio.h> and
<linux/iommufd.h>, installed in the debug kernel's tree by `make setup`.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyvfio import uapi
from pyvfio.vm import debugkernel, kernels

SYSTEM_INCLUDE = Path("/usr/include")
KMOD_HEADER = (
    Path(__file__).parents[2] / "kmod" / "include" / "uapi" / "linux" / "vfio_pci_cookie.h"
)


def _structs(exclude: frozenset[str] = frozenset()) -> list[type[ctypes.Structure]]:
    return [
        obj
        for name, obj in vars(uapi).items()
        if isinstance(obj, type)
        and issubclass(obj, ctypes.Structure)
        and name.startswith(("vfio", "iommu_"))
        and name not in exclude
    ]


def _constants(exclude: frozenset[str] = frozenset()) -> dict[str, int]:
    return {
        name: value
        for name, value in vars(uapi).items()
        if name.startswith(("VFIO_", "IOMMU_")) and isinstance(value, int) and name not in exclude
    }


def _c_source(exclude: frozenset[str]) -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/vfio.h>",
        "#include <linux/iommufd.h>" if not exclude else "",
        f'#include "{KMOD_HEADER}"',
        "int main(void) {",
    ]
    for struct in _structs(exclude):
        name = struct.__name__
        lines.append(f'printf("sizeof {name} %zu\\n", sizeof(struct {name}));')
        for field, *_ in struct._fields_:
            lines.append(
                f'printf("offsetof {name}.{field} %zu\\n", offsetof(struct {name}, {field}));'
            )
    for name in _constants(exclude):
        lines.append(f'printf("const {name} %u\\n", (__u32)({name}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


def _header_size(struct: type[ctypes.Structure], include: Path) -> int:
    """The size the header gives ``struct``, where it legitimately differs."""
    size = ctypes.sizeof(struct)
    # Headers from 6.5 on append `__u32 pad` to vfio_device_info ("vfio: align
    # capability structures"); the binding keeps the 6.1 layout, which every
    # kernel accepts (argsz says how much the caller has).
    text = (include / "linux" / "vfio.h").read_text()
    body = re.search(r"struct vfio_device_info \{([^}]*)\}", text)
    if struct is uapi.vfio_device_info and body and re.search(r"\bpad;", body.group(1)):
        size += 4
    return size


def _python_view(include: Path, exclude: frozenset[str]) -> list[str]:
    lines = []
    for struct in _structs(exclude):
        name = struct.__name__
        lines.append(f"sizeof {name} {_header_size(struct, include)}")
        for field, *_ in struct._fields_:
            lines.append(f"offsetof {name}.{field} {getattr(struct, field).offset}")
    lines += [f"const {name} {value}" for name, value in _constants(exclude).items()]
    return lines


def _compare(tmp_path: Path, include: Path, exclude: frozenset[str]) -> None:
    source = tmp_path / "check.c"
    source.write_text(_c_source(exclude))
    binary = tmp_path / "check"
    argv = ["cc", "-Wall", "-Werror", "-o", str(binary), str(source)]
    if include != SYSTEM_INCLUDE:
        argv[1:1] = ["-I", str(include)]
    subprocess.run(argv, check=True)
    from_c = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    c_view, py_view = from_c.splitlines(), _python_view(include, exclude)
    assert len(c_view) == len(py_view)
    mismatches = [(c, py) for c, py in zip(c_view, py_view, strict=True) if c != py]
    assert mismatches == [], f"{include} vs binding:\n" + "\n".join(
        f"{c}  !=  {py}" for c, py in mismatches
    )


@pytest.mark.skipif(
    not (SYSTEM_INCLUDE / "linux/vfio.h").exists() or not shutil.which("cc"),
    reason="needs a C compiler and linux-libc-dev",
)
def test_bindings_match_the_system_and_kmod_headers(tmp_path: Path) -> None:
    iommufd = {name for name in vars(uapi) if name.startswith(("IOMMU_", "iommu_"))}
    _compare(tmp_path, SYSTEM_INCLUDE, uapi.SINCE_6_6 | iommufd)


def test_bindings_match_the_linux_7_3_headers(tmp_path: Path) -> None:
    if kernels.DEBUG_SERIES not in kernels.matrix():
        pytest.skip(f"$KERNELS leaves out {kernels.DEBUG_SERIES}, whose tree has the headers")
    built = debugkernel.installed()
    assert built is not None, "no debug kernel built: run `pyvfio vm debug-kernel` (make setup)"
    _compare(tmp_path, built.uapi_include, frozenset())


def test_every_binding_is_checked() -> None:
    # Guard against the generator silently skipping things.
    assert len(_structs()) >= 28
    assert "IOMMU_IOAS_MAP" in _constants()
    assert "VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE" in _constants()
    assert "VFIO_DEVICE_GET_REGION_INFO" in _constants()
