# SPDX-License-Identifier: Apache-2.0
"""Write-combining effect: streaming writes through a WC cookie vs an uncached mapping.

    python3 bench/wc.py --bdf BDF [--region 2] [--size 65536]   # device on vfio_pci_cookie

Same buffer, same pages' neighbours, same run.  On a real machine with a
real device this is where WC shows (often several times the UC throughput
for 4 KiB copies).  Under QEMU's TCG caches and memory types are not
modelled: there the ratio measures code paths only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Figure, progress, save, table

from pyvfio import Device, Sysfs
from pyvfio.cookie import MemoryAttr
from pyvfio.mmio import Mapping


def throughput(mapping: Mapping, size: int, how: str, rounds: int) -> float:
    """Best MB/s over ``rounds`` passes over ``size`` bytes."""
    chunk = os.urandom(4096)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        if how == "4K":
            for off in range(0, size, 4096):
                mapping.write_bytes(off, chunk)
        else:
            write64 = mapping.write64
            for off in range(0, size, 8):
                write64(off, off)
        mapping.write_barrier()
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bdf", action="append", required=True, help="repeatable")
    parser.add_argument("--region", type=int, default=2)
    parser.add_argument("--size", type=int, default=64 << 10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tcg = (
        Path("/sys/devices/virtual/dmi/id/sys_vendor").exists()
        and "QEMU" in Path("/sys/devices/virtual/dmi/id/sys_vendor").read_text()
    )
    note = "TCG: code paths only, caches not modelled" if tcg else "real machine"
    figures = []
    for bdf in args.bdf:
        device_id = Sysfs().device(bdf).id
        with Device.open(bdf) as dev:
            region = dev.region(args.region)
            wc = region.map(0, args.size, wc=True)
            # Neighbouring pages through a UC cookie: a legacy mmap of a BAR
            # with WC cookies is refused on 6.1, and this way both sides take
            # the same path.
            uc = region.map(args.size, args.size, attr=MemoryAttr.UC)
            for how in ("64-bit", "4K"):
                w = throughput(wc, args.size, how, args.rounds)
                u = throughput(uc, args.size, how, args.rounds)
                progress(f"wc: {device_id} {how} writes: WC {w:.1f} MB/s, UC {u:.1f} MB/s")
                # ratio < 1 means WC is faster: time per byte, WC over UC
                figures.append(
                    Figure(
                        "wc",
                        f"{device_id} {how} writes, s/GB WC vs UC",
                        1e3 / w,
                        1e3 / u,
                        "s",
                        note=note,
                    )
                )
    save("wc", figures, {"note": note})
    print(f"({note})")
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
