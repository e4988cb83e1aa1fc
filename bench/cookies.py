# SPDX-License-Identifier: Apache-2.0
"""Cookie cost and scaling: each step's latency with 1 ... the cap of live cookies.

    python3 bench/cookies.py --bdf BDF [--region 2]   # device on vfio_pci_cookie, as root

Steps, on one more WC cookie while N others stay live on the same device file:
create, mmap, first touch (the fault), munmap, destroy.  Median of --repeat.
Three layouts: "spread" puts each cookie on the next page; "strided" on every
other page, so that WC and uncached runs alternate; "same-page" stacks them all
on page 0, the layout that made the first module's PAT scans slow.
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

from pyvfio import Device, uapi
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
    cookie = Cookie(dev, region, page * PAGE, PAGE, MemoryAttr.WC)
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


LAYOUTS = {"spread": 1, "strided": 2, "same-page": 0}  # pages between cookies


def measure(
    dev: Device, region: int, levels: list[int], repeat: int, layout: str
) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """Step medians (us) per level of live cookies, and kernel bytes per cookie."""
    medians: dict[int, dict[str, float]] = {}
    per_cookie: dict[str, float] = {}
    live: list[Cookie] = []
    pages = dev.region(region).size // PAGE

    def page_of(i: int) -> int:
        return i * LAYOUTS[layout] % pages

    base_mem = meminfo()
    for level in levels:
        while len(live) < level:
            live.append(Cookie(dev, region, page_of(len(live)) * PAGE, PAGE, MemoryAttr.WC))
        if level == levels[-1]:
            now = meminfo()
            for key in ("Slab", "VmallocUsed", "PageTables"):
                per_cookie[key] = (now[key] - base_mem[key]) / max(level - 1, 1)
        runs = [one_cycle(dev, region, page_of(len(live) + i)) for i in range(repeat)]
        medians[level] = {s: statistics.median(r[s] for r in runs) / 1000 for s in STEPS}
        progress(
            f"cookies ({layout}): {level:>5} live: "
            + ", ".join(f"{s} {medians[level][s]:.1f} us" for s in STEPS)
        )
    for cookie in live:
        cookie.destroy()
    return medians, per_cookie


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bdf", required=True)
    parser.add_argument("--region", type=int, default=2)
    # the top level leaves room for the one measured cookie under the cap
    parser.add_argument("--levels", default=f"1,100,{uapi.VFIO_MMAP_COOKIE_MAX - 1}")
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    low, high = levels[0], levels[-1]
    figures = []
    results = {}
    with Device.open(args.bdf) as dev:
        for layout in LAYOUTS:
            medians, per_cookie = measure(dev, args.region, levels, args.repeat, layout)
            results[layout] = {"medians_us": medians, "bytes_per_cookie": per_cookie}
            figures += [
                Figure(
                    "cookies",
                    f"{layout}: {step} at {high:,} live vs {low}",
                    medians[high][step],
                    medians[low][step],
                    "us",
                    1.5,
                )
                for step in STEPS
            ]
            note = ", ".join(f"{k} {v:.0f} B" for k, v in per_cookie.items())
            print(f"{layout}: memory per live cookie: {sum(per_cookie.values()):.0f} B ({note})")
    save("cookies", figures, results)
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
