# SPDX-License-Identifier: Apache-2.0
"""`make bench`: every benchmark, then one summary table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import RESULTS, load_all, machine, progress, table  # noqa: E402

from pyvfio.vm import VmOptions, run  # noqa: E402


def main() -> int:
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)
    progress("1/4 mmio on the host (anonymous memory)")
    subprocess.run(
        [sys.executable, str(HERE / "mmio.py"), "--host"], check=True, stdout=subprocess.DEVNULL
    )
    progress("2-3/4 mmio on edu, write-combining, cookie scaling: in one VM boot")
    result = run(
        [sys.executable, str(HERE / "in_vm.py")],
        VmOptions(rwdirs=(RESULTS,), memory="2G"),
        echo=sys.stderr,
    )
    result.check()
    progress("4/4 test VM cost")
    subprocess.run(
        [sys.executable, str(HERE / "vm.py"), *sys.argv[1:]], check=True, stdout=subprocess.DEVNULL
    )
    figures = load_all()
    print(f"\nmachine: {machine()}")
    print(table(figures))
    misses = [f for f in figures if f.verdict == "MISS"]
    print(
        f"\n{len(figures)} figures, {len(misses)} missed targets"
        + "".join(f"\n  MISS: {f.bench}: {f.name} ({f.ratio:.2f}x)" for f in misses)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
