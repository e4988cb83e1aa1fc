# SPDX-License-Identifier: Apache-2.0
"""The guest kernel-log check, on captured and kernel-format samples."""

from pathlib import Path

import pytest

from pyvfio.vm import find_problems

DATA = Path(__file__).parent / "data"


def test_clean_boot_log_has_no_problems() -> None:
    # A real boot of the test VM (6.1 guest, IOMMU, edu, ivshmem, nvme).
    log = (DATA / "clean-boot.log").read_text()
    assert "DMAR: IOMMU enabled" in log
    assert find_problems(log) == []


@pytest.mark.parametrize(
    ("sample", "kind"),
    [("warn.log", "WARNING"), ("bug.log", "BUG"), ("pat-conflict.log", "PAT conflict")],
)
def test_problem_samples_are_caught(sample: str, kind: str) -> None:
    problems = find_problems((DATA / sample).read_text())
    assert problems, f"{sample} passed the check"
    assert problems[0].startswith(f"{kind}: ")


def test_every_bad_line_is_reported_once() -> None:
    problems = find_problems((DATA / "bug.log").read_text())
    assert [p.split(":")[0] for p in problems] == ["BUG", "Oops"]
    pat = find_problems((DATA / "pat-conflict.log").read_text())
    assert [p.split(":")[0] for p in pat] == ["PAT conflict", "PAT mismatch"]


def test_problem_appended_to_clean_log_is_caught() -> None:
    log = (DATA / "clean-boot.log").read_text()
    line = "[   99.000000] general protection fault, probably for non-canonical address"
    assert find_problems(log + line + "\n") == [f"general protection fault: {line.strip()}"]


def test_lockdep_and_atomic_sleep_reports_are_named() -> None:
    # Kernel-format sample of the four reports a lockdep kernel prints; each is
    # named for what it is, not as a generic WARNING or BUG.
    problems = find_problems((DATA / "lockdep.log").read_text())
    assert [p.split(":")[0] for p in problems] == [
        "lockdep circular",
        "lockdep recursive",
        "lockdep inconsistent",
        "sleep in atomic",
    ]


@pytest.mark.parametrize(
    ("sample", "first"),
    [
        # A module taking two mutexes in both orders, then sleeping under a
        # spinlock (the second report: "scheduling while atomic", a BUG).
        ("captured-7.3-debug-circular.log", "lockdep circular"),
        # A mutex taken under a spinlock: DEBUG_ATOMIC_SLEEP's report, then
        # lockdep's "Invalid wait context".
        ("captured-7.3-debug-atomic.log", "sleep in atomic"),
    ],
)
def test_reports_captured_on_the_debug_kernel_are_caught(sample: str, first: str) -> None:
    # Captured from the 7.3-debug guest (`pyvfio vm run --kernel 7.3-debug`)
    # with a throw-away module doing just that; nothing of pyvfio's.
    problems = find_problems((DATA / sample).read_text())
    assert problems and problems[0].startswith(f"{first}: "), problems
