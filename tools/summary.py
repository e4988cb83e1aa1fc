# SPDX-License-Identifier: Apache-2.0
"""Print a line per JUnit report and one closing line over all of them.

Usage: summary.py LABEL=REPORT.xml... [step:NAME...]; exits 1 if anything
failed, a report is missing, or no test ran at all.  The last line is the
plain ``pyvfio: N passed, N failed, N skipped`` that CI reads.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) over every testsuite of one JUnit file."""
    passed = failed = skipped = 0
    for suite in ET.parse(report).getroot().iter("testsuite"):
        total = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        failed += bad
        skipped += skip
        passed += total - bad - skip
    return passed, failed, skipped


def main(argv: list[str]) -> int:
    totals = [0, 0, 0]
    problems = [f"step {a[5:]} failed" for a in argv if a.startswith("step:")]
    for arg in (a for a in argv if not a.startswith("step:")):
        label, _, path = arg.rpartition("=")
        report = Path(path)
        if not report.exists():
            problems.append(f"{report} missing (its test run did not finish)")
            continue
        counts = count(report)
        if counts[0] == 0:
            problems.append(f"{label or report.stem}: no test passed")
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
        print(
            f"  {label or report.stem}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped"
        )
    for problem in problems:
        print(f"summary: {problem}")
    if totals[0] == 0:
        problems.append("no test ran")
    if problems:
        totals[1] = max(totals[1], 1)
    print(f"pyvfio: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
