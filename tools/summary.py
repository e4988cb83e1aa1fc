# SPDX-License-Identifier: Apache-2.0
"""Print one closing line over several pytest JUnit reports and failed steps.

Usage: summary.py REPORT.xml... [step:NAME...]; exits 1 if anything failed,
a report is missing, or no test ran at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(argv: list[str]) -> int:
    passed = failed = skipped = 0
    problems = [f"step {a[5:]} failed" for a in argv if a.startswith("step:")]
    for report in (Path(a) for a in argv if not a.startswith("step:")):
        if not report.exists():
            problems.append(f"{report} missing (its test run did not finish)")
            continue
        for suite in ET.parse(report).getroot().iter("testsuite"):
            total = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            failed += bad
            skipped += skip
            passed += total - bad - skip
    for problem in problems:
        print(f"summary: {problem}")
    if passed == 0:
        problems.append("no test ran")
    if problems:
        failed = max(failed, 1)
    print(f"pyvfio: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
