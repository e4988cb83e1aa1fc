# SPDX-License-Identifier: Apache-2.0
"""Print a line per JUnit report and one closing line over all of them.

Usage: summary.py [--logs DIR] LABEL=REPORT.xml... [step:NAME...]; exits 1 if
anything failed, a report is missing, or no test ran at all.  The last line is
the plain ``pyvfio: N passed, N failed, N skipped`` that CI reads.

With ``--logs``, DIR holds each boot's NAME.log and NAME.rc ("STATUS SECONDS")
for the report NAME.xml: a line gets the boot's time, and a missing report
gets the end of the boot's error, since CI shows only the end of the output.
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


def boot_seconds(logs: Path | None, report: Path) -> str:
    rc = logs / f"{report.stem}.rc" if logs else None
    if rc is None or not rc.exists():
        return ""
    return f" ({rc.read_text().split()[1]} s)"


def boot_error(logs: Path | None, report: Path) -> list[str]:
    """The runner's error and what follows it, else the log's last lines."""
    log = logs / f"{report.stem}.log" if logs else None
    if log is None or not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("pyvfio: error:")]
    return lines[starts[-1] :][:20] if starts else lines[-10:]


def main(argv: list[str]) -> int:
    logs = None
    if argv[:1] == ["--logs"]:
        logs, argv = Path(argv[1]), argv[2:]
    totals = [0, 0, 0]
    problems = [f"step {a[5:]} failed" for a in argv if a.startswith("step:")]
    for arg in (a for a in argv if not a.startswith("step:")):
        label, _, path = arg.rpartition("=")
        report = Path(path)
        if not report.exists():
            problems.append(f"{report} missing (its test run did not finish)")
            problems += [f"  {line}" for line in boot_error(logs, report)]
            continue
        counts = count(report)
        if counts[0] == 0:
            problems.append(f"{label or report.stem}: no test passed")
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
        print(
            f"  {label or report.stem}: {counts[0]} passed, {counts[1]} failed, "
            f"{counts[2]} skipped{boot_seconds(logs, report)}"
        )
    for problem in problems:
        print(problem if problem.startswith("  ") else f"summary: {problem}")
    if totals[0] == 0:
        problems.append("no test ran")
    if problems:
        totals[1] = max(totals[1], 1)
    print(f"pyvfio: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
