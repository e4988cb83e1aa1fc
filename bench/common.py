# SPDX-License-Identifier: Apache-2.0
"""Shared by the benchmarks: timing, result files, the summary table.

Machines here are shared and noisy, so every figure is measured beside its
baseline in the same run and reported as a ratio; each timing is the best of
several repeats (the least disturbed one).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass
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

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        return "pass" if self.ratio <= self.target else "MISS"


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
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{bench}.json"
    doc = {
        "bench": bench,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "figures": [asdict(f) | {"ratio": f.ratio, "verdict": f.verdict} for f in figures],
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
                )
            )
    return figures


def table(figures: list[Figure]) -> str:
    head = f"{'figure':<44} {'pyvfio':>11} {'baseline':>11} {'ratio':>6} {'target':>7} verdict"
    rows = [head, "-" * len(head)]
    for f in figures:
        target = f"<={f.target:g}x" if f.target is not None else "-"
        rows.append(
            f"{f.bench + ': ' + f.name:<44} {f.value:>9.1f}{f.unit:<2} "
            f"{f.baseline:>9.1f}{f.unit:<2} {f.ratio:>5.2f}x {target:>7} {f.verdict}"
        )
    return "\n".join(rows)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
