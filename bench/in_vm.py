# SPDX-License-Identifier: Apache-2.0
"""The benchmarks that need devices, run inside one test-VM boot (`make bench`)."""

from __future__ import annotations

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


def main() -> int:
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    kmod.load()
    sysfs = Sysfs()
    edu, ivshmem, nvme = (sysfs.find(*ids)[0].bdf for ids in (EDU_ID, IVSHMEM_ID, NVME_ID))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
