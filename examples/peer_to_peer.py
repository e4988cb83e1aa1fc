# SPDX-License-Identifier: Apache-2.0
"""Peer-to-peer DMA: edu writes into another device's BAR, and reads it.

edu and ivshmem (a device whose BAR2 is plain memory) are opened into one
IommuContext, and a page of ivshmem's BAR2 is mapped into that context at
an IOVA, as a DMA buffer would be. edu then copies a message, by DMA, from
a buffer in RAM to that IOVA: the bytes land in the other device's BAR,
where this program reads them through its own mapping of BAR2. Then the
reverse: this program writes into BAR2 and edu reads it by DMA. On the
legacy backend the BAR goes into the IOMMU through its mmap; on iommufd
through a dma-buf of the BAR (Linux 6.19 and later).

Try it in the test VM (QEMU's edu and ivshmem):
    pyvfio vm run -- python3 examples/peer_to_peer.py
Both devices go back to their drivers at the end.
"""

from __future__ import annotations

import argparse
import mmap
import sys

from edu import DMA_TO_RAM, EDU_DMA_LIMIT, EDU_DMA_MEMORY, Edu

from pyvfio import IommuContext, Sysfs, VfioError
from pyvfio.vm import EDU_ID, IVSHMEM_ID

MESSAGE = b"written by edu, into another device's BAR"
PAGE = mmap.PAGESIZE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("legacy", "iommufd"), help="default: the best")
    args = parser.parse_args(argv)
    sysfs = Sysfs()
    edus, shared = sysfs.find(*EDU_ID), sysfs.find(*IVSHMEM_ID)
    if not edus or not shared:
        print("needs an edu and an ivshmem device: try it in the test VM (see --help)")
        return 1
    edu_bdf, peer_bdf = edus[0].bdf, shared[0].bdf
    try:
        with (
            sysfs.bound(edu_bdf, "vfio-pci"),
            sysfs.bound(peer_bdf, "vfio-pci"),
            IommuContext(args.backend) as context,
        ):
            edu = Edu(context.open(edu_bdf))
            peer_dev = context.open(peer_bdf)
            bar2 = peer_dev.region(2).map(0, PAGE)  # the program's own view of the page
            bar2.write_bytes(0, bytes(PAGE))
            # The page of BAR2, in the context at an IOVA edu can drive.
            peer = context.dma_map_peer(peer_dev, 2, size=PAGE, limit=EDU_DMA_LIMIT)
            print(f"{context.backend} context: {peer_bdf} BAR2 at IOVA {peer.iova:#x}")
            with context.dma_buffer(PAGE, limit=EDU_DMA_LIMIT) as source:
                source.view[: len(MESSAGE)] = MESSAGE
                edu.dma(source.iova, EDU_DMA_MEMORY, len(MESSAGE), 0)  # RAM -> edu
                edu.dma(EDU_DMA_MEMORY, peer.iova, len(MESSAGE), DMA_TO_RAM)  # edu -> the BAR
            seen = bar2.read_bytes(0, len(MESSAGE))
            print(f"BAR2 holds {seen.decode()!r}")
            if seen != MESSAGE:
                raise RuntimeError("edu's DMA did not reach the BAR")
            reply = b"and read back from it by edu"
            bar2.write_bytes(512, reply)
            got = edu.read_at(peer.iova + 512, len(reply))
            print(f"edu read {got.decode()!r} from the BAR, by DMA")
            if got != reply:
                raise RuntimeError("edu read other bytes than the BAR holds")
    except (VfioError, RuntimeError, TimeoutError) as exc:
        print(f"peer_to_peer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
