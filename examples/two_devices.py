# SPDX-License-Identifier: Apache-2.0
"""Two devices, one IOMMU address space: NVMe writes, edu reads, one buffer.

Both devices are opened into one IommuContext, and one buffer is mapped into
it once. The NVMe controller writes its IDENTIFY page into that buffer by
DMA; edu then copies the same bytes out of it, by DMA at the same IOVA, into
its own memory and back out to a second buffer, which must match. No byte
passes through this program on the way: what one device wrote, the other
read. The drivers are the ones in examples/nvme.py and examples/edu.py.

Try it in the test VM (QEMU's nvme and edu):
    pyvfio vm run -- python3 examples/two_devices.py
The controller goes back to the kernel's nvme driver at the end.
"""

from __future__ import annotations

import argparse
import sys

from edu import EDU_DMA_LIMIT, EDU_DMA_SAFE, Edu
from nvme import IDENTIFY, NVME_CLASS, Controller, NvmeError

from pyvfio import IommuContext, Sysfs, VfioError
from pyvfio.vm import EDU_ID


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args(argv)
    sysfs = Sysfs()
    edus, nvmes = sysfs.find(*EDU_ID), sysfs.find_class(NVME_CLASS, 0xFFFFFF)
    if not edus or not nvmes:
        print("needs an edu and an NVMe controller: try it in the test VM (see --help)")
        return 1
    edu_bdf, nvme_bdf = edus[0].bdf, nvmes[0].bdf
    try:
        with (
            sysfs.bound(edu_bdf, "vfio-pci"),
            sysfs.bound(nvme_bdf, "vfio-pci"),
            IommuContext() as context,
        ):
            nvme = context.open(nvme_bdf)
            edu = Edu(context.open(edu_bdf))
            print(f"{context.backend} context {context.iommu.name}: {nvme_bdf} and {edu_bdf}")
            # One buffer for both: below the 28 bits edu can address.
            shared = context.dma_buffer(4096, limit=EDU_DMA_LIMIT)
            ctrl = Controller(nvme)
            try:
                ctrl.command(ctrl.admin, "IDENTIFY controller", IDENTIFY, 0, shared.iova, 1)
            finally:
                ctrl.disable()  # no DMA from the controller after this
            model = bytes(shared.view[24:64]).decode("ascii", "replace").strip()
            print(f"NVMe wrote its IDENTIFY page at IOVA {shared.iova:#x}: model {model!r}")
            if edu.read_at(shared.iova, EDU_DMA_SAFE) != bytes(shared.view[:EDU_DMA_SAFE]):
                raise NvmeError("edu read other bytes than NVMe wrote")
            print(f"edu read the same {EDU_DMA_SAFE} bytes from that IOVA, by DMA")
    except (VfioError, NvmeError, RuntimeError, TimeoutError) as exc:
        print(f"two_devices: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
