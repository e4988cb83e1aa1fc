# SPDX-License-Identifier: Apache-2.0
"""Test VM cost: `pyvfio vm run` to the guest command and back, Python start-up
in the guest (`import pyvfio` against a bare `python -c pass`), and `make test`.

    python3 bench/vm.py [--no-make-test]

The baseline for a boot is a bare virtme-ng boot of the same kernel, timed in
the same run: the ratio is what pyvfio's machine, devices and kernel-log check
add.  `make test` is judged against the suite's 18-minute budget (issue 22).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Figure, progress, save, table

from pyvfio.vm import run
from pyvfio.vm.kernel import default_kernel

ROOT = Path(__file__).resolve().parents[1]


def bare_boot() -> float:
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    vng = shutil.which("vng", path=env["PATH"]) or "vng"
    argv = [
        vng,
        "--run",
        str(default_kernel()),
        "--disable-kvm",
        "--force-9p",
        "--disable-microvm",
        "--exec",
        "true",
    ]
    start = time.perf_counter()
    # QEMU reopens stdout with O_TRUNC: give it a pipe, never a file.
    subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=True,
    )
    return time.perf_counter() - start


# Run in the guest: the median of 5 starts of each, as JSON on one line.
GUEST_STARTS = """
import json, statistics, subprocess, sys, time
def median_start(code):
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
codes = ("pass", "import pyvfio", "from pyvfio import Device")
print("STARTS", json.dumps({code: median_start(code) for code in codes}))
"""


def guest_starts() -> dict[str, float]:
    result = run([sys.executable, "-c", GUEST_STARTS], echo=None).check()
    line = next(line for line in result.output.splitlines() if line.startswith("STARTS "))
    starts: dict[str, float] = json.loads(line.removeprefix("STARTS "))
    return starts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=2)
    parser.add_argument("--no-make-test", action="store_true", help="skip timing the suite")
    args = parser.parse_args()
    ours, bare = [], []
    for i in range(args.boots):  # interleaved, best of each
        start = time.perf_counter()
        run(["true"], echo=None).check()
        ours.append(time.perf_counter() - start)
        bare.append(bare_boot())
        progress(f"vm: boot {i + 1}: pyvfio vm run {ours[-1]:.1f} s, bare vng {bare[-1]:.1f} s")
    figures = [
        Figure(
            "vm",
            "vm run -- true vs bare vng boot",
            min(ours),
            min(bare),
            "s",
            1.5,
            note="IOMMU, 3 devices, log check",
        )
    ]
    starts = guest_starts()
    progress(f"vm: guest starts: {starts}")
    figures += [
        Figure(
            "vm",
            "guest: import pyvfio vs python -c pass",
            starts["import pyvfio"],
            starts["pass"],
            "s",
            2.0,
            note="median of 5, one boot",
        ),
        Figure(
            "vm",
            "guest: from pyvfio import Device vs python -c pass",
            starts["from pyvfio import Device"],
            starts["pass"],
            "s",
            note="what a driver loads",
        ),
    ]
    if not args.no_make_test:
        progress("vm: make test (takes a few minutes)")
        start = time.perf_counter()
        proc = subprocess.run(
            ["make", "test"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        progress(f"vm: make test: {wall:.0f} s, exit {proc.returncode}")
        if proc.returncode != 0:
            print(proc.stdout[-3000:], file=sys.stderr)
            raise SystemExit("make test failed; its wall time means nothing")
        figures.append(
            Figure(
                "vm",
                "make test wall time vs the suite's budget",
                wall,
                18 * 60,
                "s",
                1.0,
                note="baseline: the 18-minute budget, not a measurement",
            )
        )
    save("vm", figures)
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
