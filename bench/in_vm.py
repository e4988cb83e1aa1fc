# SPDX-License-Identifier: Apache-2.0
"""The benchmarks that need devices, run inside one test-VM boot (`make bench`).

    python3 bench/in_vm.py [--large 16M,1G,64G]   # as root in the test VM

``--large`` also runs large.py on the ivshmem devices whose BAR2 has those
sizes (the boot adds them with ``--large-bar``); the other benches take the
built-in ivshmem, the one with the smallest BAR2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import progress  # noqa: E402

from pyvfio import Sysfs, kmod  # noqa: E402
from pyvfio.cookie import DRIVER  # noqa: E402
from pyvfio.vm import EDU_ID, IVSHMEM_ID, NVME_ID  # noqa: E402


def bench(script: str, *args: str) -> None:
    progress(f"guest: {script} {' '.join(args)}")
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)


def bar2_size(sysfs: Sysfs, bdf: str) -> int:
    return next((bar.size for bar in sysfs.device(bdf).bars if bar.index == 2), 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", help="BAR2 sizes for large.py (e.g. 16M,1G,64G); none: skip it")
    args = parser.parse_args()
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    kmod.load()
    sysfs = Sysfs()
    edu, nvme = (sysfs.find(*ids)[0].bdf for ids in (EDU_ID, NVME_ID))
    # --large-bar adds ivshmem devices too: the built-in one has the smallest BAR2
    ivshmem = min((d.bdf for d in sysfs.find(*IVSHMEM_ID)), key=lambda b: bar2_size(sysfs, b))
    sysfs.bind(edu, "vfio-pci")
    sysfs.bind(ivshmem, DRIVER)
    sysfs.bind(nvme, DRIVER)
    try:
        bench("mmio.py", "--bdf", edu, "--number", "20000")
        bench("wc.py", "--bdf", ivshmem, "--bdf", nvme)
        bench("cookies.py", "--bdf", nvme)
        bench("compat.py", "--bdf", ivshmem)  # rebinds it
    finally:
        for bdf in (edu, ivshmem, nvme):
            sysfs.unbind(bdf)
    if args.large:
        bench("large.py", "--sizes", args.large)  # binds and unbinds its own
    return 0


if __name__ == "__main__":
    sys.exit(main())
