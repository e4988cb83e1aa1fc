# SPDX-License-Identifier: Apache-2.0
"""Shared by the benchmarks: timing, result files, the summary table.

Machines here are shared and noisy, so every figure is measured beside its
baseline in the same run and reported as a ratio; each timing is the best of
several repeats (the least disturbed one).  Where a ratio cannot judge (a
baseline near zero, such as kernel memory vfio-pci does not use), a figure
carries an absolute bound instead.

In the test VM, results carry the guest kernel's series (``compat@6.1``):
$PYVFIO_BENCH_KERNEL, which `make bench` sets per boot, else guessed from
the running kernel's release.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("PYVFIO_BENCH_RESULTS", Path(__file__).parent / "results"))


def ns_per_call(stmt: str, env: dict[str, Any], number: int = 100_000, repeat: int = 5) -> float:
    """Best-of-``repeat`` nanoseconds per execution of ``stmt``."""
    timer = timeit.Timer(stmt, globals=env)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Figure:
    """One row of the summary: pyvfio's number against its baseline."""

    bench: str
    name: str
    value: float
    baseline: float
    unit: str
    target: float | None = None  # max ratio value/baseline, if there is one
    note: str = ""
    bound: float | None = None  # max value itself (in unit), if there is one

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def verdict(self) -> str:
        if self.target is None and self.bound is None:
            return "-"
        return "MISS" if self.shortfall() else "pass"

    def shortfall(self) -> str:
        """What misses, e.g. ``1.83x > 1.5x`` or ``2048.0KiB > 64.0KiB``; empty if nothing."""
        missed = []
        if self.target is not None and not self.ratio <= self.target:
            missed.append(f"{self.ratio:.2f}x > {self.target:g}x")
        if self.bound is not None and not self.value <= self.bound:
            missed.append(f"{self.value:.1f}{self.unit} > {self.bound:.1f}{self.unit}")
        return ", ".join(missed)


def kernel_tag() -> str:
    """The guest kernel's series the figures are measured on ("" on the host)."""
    tag = os.environ.get("PYVFIO_BENCH_KERNEL")
    if tag is not None:
        return tag
    if os.environ.get("PYVFIO_GUEST") != "1":
        return ""
    release = platform.release()  # 6.1.0-57-amd64, 7.3.4-pyvfio-debug
    series = ".".join(release.split("-")[0].split("+")[0].split(".")[:2])
    return series + ("-debug" if "debug" in release else "")


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "python": platform.python_version(),
        "guest": os.environ.get("PYVFIO_GUEST", "0"),
    }


def save(bench: str, figures: list[Figure], extra: dict[str, Any] | None = None) -> Path:
    """Write bench.json (bench@SERIES.json in the VM), each figure's bench
    field tagged with the kernel series likewise."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = kernel_tag()
    suffix = f"@{tag}" if tag else ""
    path = RESULTS / f"{bench}{suffix}.json"
    tagged = [replace(f, bench=f.bench + suffix) for f in figures]
    doc = {
        "bench": bench + suffix,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "figures": [asdict(f) | {"ratio": f.ratio, "verdict": f.verdict} for f in tagged],
        **(extra or {}),
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def load_all() -> list[Figure]:
    figures = []
    for path in sorted(RESULTS.glob("*.json")):
        for f in json.loads(path.read_text())["figures"]:
            figures.append(
                Figure(
                    f["bench"],
                    f["name"],
                    f["value"],
                    f["baseline"],
                    f["unit"],
                    f["target"],
                    f["note"],
                    f.get("bound"),
                )
            )
    return figures


def table(figures: list[Figure]) -> str:
    """The summary: a row per figure; "target" is the ratio's (``<=1.5x``) or the
    value's bound (``<=64.0KiB``); a ratio over a baseline of 0 or less is "-"."""
    cells = [("figure", "pyvfio", "baseline", "ratio", "target", "verdict")]
    for f in figures:
        targets = []
        if f.target is not None:
            targets.append(f"<={f.target:g}x")
        if f.bound is not None:
            targets.append(f"<={f.bound:.1f}{f.unit}")
        cells.append(
            (
                f"{f.bench}: {f.name}",
                f"{f.value:.1f}{f.unit:<2}",
                f"{f.baseline:.1f}{f.unit:<2}",
                f"{f.ratio:.2f}x" if f.baseline > 0 else "-",
                " ".join(targets) or "-",
                f.verdict,
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(6)]
    widths[0] = max(widths[0], 44)
    rows = [
        f"{row[0]:<{widths[0]}} "
        + " ".join(f"{cell:>{w}}" for cell, w in zip(row[1:5], widths[1:5], strict=True))
        + f" {row[5]}"
        for row in cells
    ]
    rows.insert(1, "-" * len(rows[0]))
    return "\n".join(rows)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
