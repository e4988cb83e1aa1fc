# SPDX-License-Identifier: Apache-2.0
"""`make bench`: every benchmark, then one summary table; exit 1 if a target is missed.

    python3 bench/run_all.py [--kernel SERIES[,SERIES...]] [--no-make-test]

The device benchmarks run in one VM boot per kernel series (default: the
first of `pyvfio vm kernels --names`), with the large BARs large.py measures
added; their figures carry the series (``compat@6.1``).  Other arguments go
to vm.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import RESULTS, load_all, machine, progress, table  # noqa: E402

from pyvfio.errors import VmError  # noqa: E402
from pyvfio.vm import VmOptions, kernels, run  # noqa: E402
from pyvfio.vm.kernel import resolve_kernel  # noqa: E402

# ivshmem-plain devices whose BAR2 is a sparse file: large.py's BARs
LARGE_BARS = ("16M", "1G", "64G")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kernel",
        action="append",
        default=[],
        metavar="SERIES",
        help="kernel series to boot for the device benchmarks, repeatable or "
        "comma-separated (default: the first of `pyvfio vm kernels --names`)",
    )
    args, vm_args = parser.parse_known_args()
    requested = " ".join(args.kernel)
    series = kernels.matrix(requested) if requested.strip() else kernels.matrix()[:1]
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)
    progress("1/3 mmio on the host (anonymous memory)")
    subprocess.run(
        [sys.executable, str(HERE / "mmio.py"), "--host"], check=True, stdout=subprocess.DEVNULL
    )
    failed = []
    for i, name in enumerate(series, 1):
        progress(
            f"2/3 in the VM on {name} ({i}/{len(series)}): mmio on edu, write-combining, "
            "cookie scaling, compat, large BARs: in one boot"
        )
        try:
            result = run(
                [sys.executable, str(HERE / "in_vm.py"), "--large", ",".join(LARGE_BARS)],
                VmOptions(
                    kernel=resolve_kernel(name),
                    rwdirs=(RESULTS,),
                    memory="2G",
                    large_bars=LARGE_BARS,
                    env={"PYVFIO_BENCH_KERNEL": name},
                ),
                echo=sys.stderr,
            )
            result.check()
        except VmError as exc:  # the other kernels still run; the exit status says it
            progress(f"{name}: the VM benchmarks failed: {exc}")
            failed.append(name)
    progress("3/3 test VM cost")
    subprocess.run(
        [sys.executable, str(HERE / "vm.py"), *vm_args], check=True, stdout=subprocess.DEVNULL
    )
    figures = load_all()
    print(f"\nmachine: {machine()}")
    print(table(figures))
    misses = [f for f in figures if f.verdict == "MISS"]
    print(
        f"\n{len(figures)} figures, {len(misses)} missed targets"
        + "".join(f"\n  MISS: {f.bench}: {f.name} ({f.shortfall()})" for f in misses)
        + "".join(f"\n  FAILED: the VM benchmarks on {name}" for name in failed)
    )
    return 1 if misses or failed else 0


if __name__ == "__main__":
    sys.exit(main())
