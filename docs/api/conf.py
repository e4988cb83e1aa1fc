# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration of pyvfio's API reference (`make docs`).

Built from the docstrings of the tree it sits in (its ``src`` goes first on
the path), with warnings as errors.  Two additions of its own:

* ``.. example:: host`` / ``.. example:: guest``: a runnable example, shown
  as a Python block under a line saying where it runs.  The tests run every
  one of them: tests/host/test_docs.py the host ones, and
  tests/guest/test_docs_examples.py, in the test VM, the guest ones.
* a warning for every object the reference shows without a docstring, so a
  public name cannot be listed with nothing said about it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

SRC = Path(__file__).resolve().parents[2] / "src"
sys.path.insert(0, str(SRC))

import pyvfio  # noqa: E402 - from SRC, just put first on the path

project = "pyvfio"
author = "the pyvfio authors"
copyright = "the pyvfio authors, Apache-2.0"
version = release = pyvfio.__version__

extensions = ["sphinx.ext.autodoc"]
# The docstrings are reST (``literals``, :class:`roles`): no napoleon needed.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # listed even without a docstring, and then warned about
    "member-order": "bysource",
    "show-inheritance": True,
}
autoclass_content = "both"  # the class docstring, then __init__'s
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False
python_use_unqualified_type_names = True
html_theme = "alabaster"
html_title = f"pyvfio {release} API reference"
html_static_path: list[str] = []
exclude_patterns = ["_build"]

log = logging.getLogger(__name__)

# Where an example runs, as the line above it says.
WHERE = {
    "host": "Runs on the host: no VFIO, no root, no device.",
    "guest": (
        "Runs in the test VM, as root, on its emulated devices (QEMU edu, ivshmem, "
        "nvme): `pyvfio vm run -- python3 example.py`."
    ),
}
REQUIRES = {
    "vfio_pci_cookie": "It needs the vfio_pci_cookie module loaded (`pyvfio kmod load`).",
}


class ExampleDirective(SphinxDirective):
    """``.. example:: host|guest`` with Python code as content (and, for a
    guest example, ``:requires: vfio_pci_cookie``)."""

    required_arguments = 1
    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {
        "requires": lambda value: directives.choice(value, tuple(REQUIRES)),
    }

    def run(self) -> list[nodes.Node]:
        where = self.arguments[0]
        if where not in WHERE:
            raise self.error(f"example: where it runs is one of {', '.join(WHERE)}, not {where!r}")
        code = "\n".join(self.content)
        try:
            compile(code, f"{self.env.docname}:{self.lineno}", "exec")
        except SyntaxError as exc:
            raise self.error(f"example: not Python: {exc}") from None
        said = WHERE[where]
        requires = self.options.get("requires")
        if requires:
            said += " " + REQUIRES[requires]
        label = nodes.paragraph("", "", nodes.strong("", "Example. "), nodes.Text(said))
        block = nodes.literal_block(code, code, language="python")
        self.set_source_info(block)
        box = nodes.container("", label, block, classes=["pyvfio-example", f"pyvfio-{where}"])
        return [box]


def _undocumented(  # noqa: PLR0917 - the signature Sphinx calls it with
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """A warning (an error, with -W) for each object shown without a docstring."""
    if what != "module" and not any(line.strip() for line in lines):
        log.warning("%s %s has no docstring", what, name, type="pyvfio", subtype="undocumented")


def _empty_attribute(app: Sphinx, domain: str, objtype: str, content: nodes.Element) -> None:
    """The same for attributes and data, which autodoc shows with no docstring
    event when they have none."""
    if domain == "py" and objtype in ("attribute", "data") and not content.children:
        signature = content.parent[0] if content.parent is not None else content
        log.warning(
            "%s %s has no docstring",
            objtype,
            signature.get("fullname") or signature.astext(),
            type="pyvfio",
            subtype="undocumented",
            location=content,
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("example", ExampleDirective)
    app.connect("autodoc-process-docstring", _undocumented)
    app.connect("object-description-transform", _empty_attribute)
    return {"parallel_read_safe": True}
