# SPDX-License-Identifier: Apache-2.0
"""Judge a guest's kernel log: anything that means the kernel misbehaved.

A test that passes while the kernel warned has not passed, so every guest
run ends with this check.  The PAT lines matter to pyvfio in particular:
they are how the kernel reports an alias of a page with a conflicting
memory type (and then silently coerces it).
"""

from __future__ import annotations

import re

# Each pattern names one class of problem; a line matching any is reported.
PROBLEM_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # lockdep and atomic-sleep reports first, so they are named as such (their
    # headers also start with WARNING:/BUG:)
    ("lockdep circular", re.compile(r"possible circular locking dependency")),
    ("lockdep recursive", re.compile(r"possible recursive locking")),
    ("lockdep inconsistent", re.compile(r"inconsistent lock state")),
    ("sleep in atomic", re.compile(r"BUG: sleeping function called from invalid context")),
    ("BUG", re.compile(r"\bBUG:")),
    ("Oops", re.compile(r"\bOops\b")),
    ("WARNING", re.compile(r"\bWARNING:")),
    ("general protection fault", re.compile(r"general protection")),
    ("KASAN", re.compile(r"\bKASAN\b")),
    ("PAT conflict", re.compile(r"x86/PAT: .*conflicting memory types")),
    ("PAT mismatch", re.compile(r"x86/PAT: .*expected mapping type")),
)


def find_problems(log: str) -> list[str]:
    """Lines of ``log`` that show a kernel problem, each prefixed by its class."""
    problems = []
    for line in log.splitlines():
        for name, pattern in PROBLEM_PATTERNS:
            if pattern.search(line):
                problems.append(f"{name}: {line.strip()}")
                break
    return problems
