# SPDX-License-Identifier: Apache-2.0
"""Whether this pyvfio runs from its source tree, and so which commands a hint
may name: `make kmod` and `make setup` there, `pyvfio kmod ...` and
`pyvfio vm fetch` anywhere else.  Imports nothing of the package, so any
module can use it."""

from __future__ import annotations

from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[2]
# An editable install or a run from the tree has the tree's kmod/ and Makefile;
# an installed wheel has neither (setup.py gives it a copy of kmod/ instead).
IN_SOURCE_TREE = (SOURCE_TREE / "kmod" / "Kbuild").is_file() and (
    SOURCE_TREE / "pyproject.toml"
).is_file()


def build_command() -> str:
    """The command that builds the module here."""
    return "make kmod" if IN_SOURCE_TREE else "pyvfio kmod build"


def load_hint() -> str:
    """What to run to get the module loaded, followed literally where this pyvfio is."""
    if IN_SOURCE_TREE:
        return (
            "run `make kmod`, which builds it for each kernel of the test matrix, then as "
            "root `pyvfio kmod load`"
        )
    return (
        "run `pyvfio kmod build`, then as root `pyvfio kmod load`; or install it with DKMS "
        "as root: `pyvfio kmod install`"
    )


def setup_hint(series: str | None = None) -> str:
    """What fetches the test VM's kernels (``series``, default all of the matrix)."""
    if IN_SOURCE_TREE:
        return f"run `make setup KERNELS={series}`" if series else "run `make setup`"
    return f"run `pyvfio vm fetch {series}` as root" if series else "run `pyvfio vm fetch` as root"
