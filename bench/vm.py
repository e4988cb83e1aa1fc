# SPDX-License-Identifier: Apache-2.0
"""Test VM cost: `pyvfio vm run` to the guest command and back, and `make test`.

python3 bench/vm.py [--make-test]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Figure, progress, save, table

from pyvfio.vm import run

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--make-test", action="store_true", help="also time the whole suite")
    args = parser.parse_args()
    boots = []
    for i in range(args.boots):
        start = time.perf_counter()
        run(["true"], echo=None).check()
        boots.append(time.perf_counter() - start)
        progress(f"vm: boot {i + 1}: {boots[-1]:.1f} s")
    # Baseline: what the guide measured for a bare vng boot on these machines.
    figures = [
        Figure(
            "vm",
            "vm run -- true (best)",
            min(boots),
            15.0,
            "s",
            1.5,
            note="baseline: bare vng boot, ~15 s on these machines",
        )
    ]
    if args.make_test:
        start = time.perf_counter()
        proc = subprocess.run(
            ["make", "test"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        progress(f"vm: make test: {wall:.0f} s, exit {proc.returncode}")
        figures.append(
            Figure(
                "vm",
                "make test wall time",
                wall,
                15 * 60,
                "s",
                1.0,
                note="baseline: CI's 15-minute budget",
            )
        )
    save("vm", figures)
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
