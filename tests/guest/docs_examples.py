# SPDX-License-Identifier: Apache-2.0
"""The runnable examples of the API reference (docs/api/*.rst), read from its
source: each is an ``.. example:: host`` or ``.. example:: guest`` directive
(docs/api/conf.py renders them) whose content is the code.

Read here, with the standard library only, so the guest runs them without
importing Sphinx; tests/host/test_docs.py runs the host ones and checks this
reader finds as many as the built pages show.
"""

from __future__ import annotations

import re
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api"

_START = re.compile(r"^\.\. example:: *(\S+) *$")
_OPTION = re.compile(r"^ +:(\w+): *(.*)$")


@dataclass(frozen=True)
class Example:
    page: str  # the rst file's name without .rst
    line: int  # of the directive, from 1
    where: str  # "host" or "guest"
    requires: str | None  # "vfio_pci_cookie": the module must be loaded first
    code: str
    code_line: int  # the page's line of the code's first line

    @property
    def path(self) -> Path:
        """The page it is on."""
        return DOCS / f"{self.page}.rst"

    def compiled(self) -> types.CodeType:
        """The code, compiled so that a traceback names the page's own lines."""
        return compile("\n" * (self.code_line - 1) + self.code, str(self.path), "exec")

    @property
    def name(self) -> str:
        """``page:line``, as test ids and messages show it."""
        return f"{self.page}:{self.line}"


def examples(where: str | None = None, docs: Path = DOCS) -> list[Example]:
    """Every example of the reference's pages in page and line order; only
    those that run ``where`` ("host" or "guest") if given."""
    found = []
    for page in sorted(docs.glob("*.rst")):
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines):
            match = _START.match(line)
            if match is None:
                continue
            options: dict[str, str] = {}
            body = number + 1
            while body < len(lines) and (option := _OPTION.match(lines[body])):
                options[option.group(1)] = option.group(2)
                body += 1
            while body < len(lines) and not lines[body].strip():
                body += 1
            end = body
            while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" ")):
                end += 1
            code = textwrap.dedent("\n".join(lines[body:end])).rstrip("\n") + "\n"
            runs, requires = match.group(1), options.get("requires")
            found.append(Example(page.stem, number + 1, runs, requires, code, body + 1))
    return [e for e in found if where is None or e.where == where]
