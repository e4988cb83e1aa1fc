# SPDX-License-Identifier: Apache-2.0
"""The module touches no core field that docs/uapi.md does not list and justify."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
SOURCE = ROOT / "kmod" / "vfio_pci_cookie.c"
DOC = ROOT / "docs" / "uapi.md"

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_INCLUDE = re.compile(r"^#\s*include[^\n]*", re.M)
_CORE_FIELD = re.compile(r"\b(?:cdev->core|core)(?:->|\.)([A-Za-z_]\w*)")


def code_without_comments(text: str) -> str:
    return _STRING.sub('""', _COMMENT.sub(" ", _INCLUDE.sub("", text)))


def core_fields_used(text: str) -> set[str]:
    return set(_CORE_FIELD.findall(code_without_comments(text)))


def core_fields_documented() -> set[str]:
    doc = DOC.read_text()
    section = doc.split("### Core state the driver reads or changes", 1)[1].split("\n###", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_every_core_field_the_module_uses_is_justified_in_the_docs() -> None:
    used = core_fields_used(SOURCE.read_text())
    documented = core_fields_documented()
    assert used - documented == set(), "core fields used but not in docs/uapi.md's table"
    assert documented - used == set(), "rows of docs/uapi.md's table the module no longer uses"


def test_the_scan_sees_fields_and_skips_comments_and_strings() -> None:
    text = """
    #include <linux/vfio_pci_core.h>
    /* core->hidden in a comment */ x = cdev->core.barmap[i];
    y = core->memory_lock; // core->also_hidden
    pr_info("core->in_string");
    """
    assert core_fields_used(text) == {"barmap", "memory_lock"}
