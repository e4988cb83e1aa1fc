# SPDX-License-Identifier: Apache-2.0
"""Cookie cost and scaling: each step's latency with 1 ... 100,000 live cookies.

    python3 bench/cookies.py --bdf BDF [--region 2]   # device on vfio_pci_cookie, as root

Steps, on one more cookie while N others stay live on the same device file:
create, mmap, first touch (the fault), munmap, destroy.  Median of --repeat.
"""

from __future__ import annotations

import argparse
import mmap
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Figure, progress, save, table

from pyvfio import Device
from pyvfio.cookie import Cookie, MemoryAttr

PAGE = 4096
STEPS = ("create", "mmap", "first touch", "munmap", "destroy")


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0]) * 1024
    return out


def one_cycle(dev: Device, region: int, page: int) -> dict[str, float]:
    t: dict[str, float] = {}
    start = time.perf_counter_ns()
    cookie = Cookie(dev, region, page * PAGE, PAGE, MemoryAttr.UC)
    t["create"] = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    mm = mmap.mmap(dev.fd, PAGE, offset=cookie.value)
    t["mmap"] = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    mm[0:8] = b"pyvfio!!"
    t["first touch"] = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    mm.close()
    t["munmap"] = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    cookie.destroy()
    t["destroy"] = time.perf_counter_ns() - start
    return t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bdf", required=True)
    parser.add_argument("--region", type=int, default=2)
    parser.add_argument("--levels", default="1,100,10000,100000")
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    medians: dict[int, dict[str, float]] = {}
    live: list[Cookie] = []
    with Device.open(args.bdf) as dev:
        pages = dev.region(args.region).size // PAGE
        base_mem = meminfo()
        per_cookie: dict[str, float] = {}
        for level in levels:
            while len(live) < level:
                live.append(
                    Cookie(dev, args.region, (len(live) % pages) * PAGE, PAGE, MemoryAttr.UC)
                )
            if level == levels[-1]:
                now = meminfo()
                for key in ("Slab", "VmallocUsed", "PageTables"):
                    per_cookie[key] = (now[key] - base_mem[key]) / max(level - 1, 1)
            runs = [
                one_cycle(dev, args.region, (len(live) + i) % pages) for i in range(args.repeat)
            ]
            medians[level] = {s: statistics.median(r[s] for r in runs) / 1000 for s in STEPS}
            progress(
                f"cookies: {level:>6} live: "
                + ", ".join(f"{s} {medians[level][s]:.1f} us" for s in STEPS)
            )
        for cookie in live:
            cookie.destroy()
    low, high = levels[0], levels[-1]
    figures = [
        Figure(
            "cookies",
            f"{step} at {high:,} live vs {low}",
            medians[high][step],
            medians[low][step],
            "us",
            1.5,
        )
        for step in STEPS
    ]
    total = sum(per_cookie.values())
    note = ", ".join(f"{k} {v:.0f} B" for k, v in per_cookie.items())
    print(f"memory per live cookie: {total:.0f} bytes ({note})")
    save("cookies", figures, {"medians_us": medians, "bytes_per_cookie": per_cookie})
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
