# SPDX-License-Identifier: Apache-2.0
"""A userspace NVMe driver: admin queue, IDENTIFY, one block written and read back.

It takes the controller from the kernel's nvme driver for the run, enables it
with an admin queue, identifies the controller and namespace 1, and creates
one I/O queue pair. On one block it then READs the old content, WRITEs a
random pattern, READs that back into another buffer, compares, and WRITEs the
old content back. A completion is seen by its phase bit, after MSI-X vector
0's eventfd fired. At the end the controller goes back to the driver it had:
the nvme driver, or, after a run that was killed before it could give it
back, vfio-pci, with the command that gives it to nvme.

IT WRITES TO ONE BLOCK OF NAMESPACE 1: the one --lba names, by default the
last. The old content is put back, but a crash in between loses it. A
controller whose disk is in use (mounted, swap, ...) is refused.

Try it in the test VM (QEMU's nvme): pyvfio vm run -- python3 examples/nvme.py
Layouts and codes: the NVM Express Base Specification 1.4.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pyvfio import Device, Sysfs, VfioError
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.irq import IrqIndex

NVME_CLASS = 0x010802  # mass storage, NVM, NVM Express I/O controller
VFIO_DRIVERS = ("vfio-pci", COOKIE_DRIVER)
CAP, VS, CC, CSTS, AQA, ASQ, ACQ = 0x00, 0x08, 0x14, 0x1C, 0x24, 0x28, 0x30
SQE_SIZE, CQE_SIZE = 64, 16  # log2 of each goes in CC.IOSQES and CC.IOCQES
DEPTH = 16  # entries per queue; one command at a time needs no more
DELETE_SQ, CREATE_SQ, DELETE_CQ, CREATE_CQ, IDENTIFY = 0x00, 0x01, 0x04, 0x05, 0x06  # admin
WRITE, READ = 0x01, 0x02  # I/O, NVM command set
STATUS = {0x01: "invalid opcode", 0x02: "invalid field", 0x0B: "invalid namespace"}
STATUS |= {0x80: "LBA out of range", 0x101: "invalid queue ID"}  # type << 8 | code


class NvmeError(Exception):
    """The controller refused a command, or did not answer in time."""


class Queue:
    """A submission queue and its completion queue, with one queue ID."""

    def __init__(self, dev: Device, qid: int, stride: int) -> None:
        self.qid = qid
        self.sq = dev.dma_buffer(DEPTH * SQE_SIZE)  # within a page: physically contiguous
        self.cq = dev.dma_buffer(DEPTH * CQE_SIZE)  # zeroed: phase 0 means empty
        self.tail = self.head = 0
        self.phase = 1  # what the controller writes on this pass over the CQ
        self.sq_doorbell = 0x1000 + 2 * qid * stride  # SQ tail, then CQ head
        self.cq_doorbell = self.sq_doorbell + stride


class Controller:
    """The controller's registers (BAR0), enabled with an admin queue."""

    def __init__(self, dev: Device) -> None:
        self.regs = dev.region(0).map()
        cap = self.regs.read64(CAP)
        self.timeout = max(1, cap >> 24 & 0xFF) / 2  # CAP.TO, in 500 ms units
        self.stride = 4 << (cap >> 32 & 0xF)  # CAP.DSTRD: doorbell spacing
        mps = cap >> 48 & 0xF  # CAP.MPSMIN: the smallest memory page, 4 KiB << MPSMIN
        self.page = 4096 << mps
        if self.page > os.sysconf("SC_PAGE_SIZE") or (cap & 0xFFFF) + 1 < DEPTH:
            raise NvmeError(f"CAP {cap:#x}: page size or queue size (MQES) not handled here")
        dev.config.enable_bus_master()  # DMA and MSI-X are bus-master writes
        self.msix = dev.enable_irq(IrqIndex.MSIX, 1)  # vector 0: admin and our I/O CQ
        self.disable()
        self.admin = Queue(dev, 0, self.stride)
        self.regs.write32(AQA, (DEPTH - 1) << 16 | (DEPTH - 1))  # sizes are 0-based
        self.regs.write64(ASQ, self.admin.sq.iova)
        self.regs.write64(ACQ, self.admin.cq.iova)
        self.regs.write32(CC, 4 << 20 | 6 << 16 | mps << 7 | 1)  # IOCQES, IOSQES, MPS, EN
        self._wait_ready(1)

    def disable(self) -> None:
        """CC.EN = 0 resets the controller: no DMA after this."""
        self.regs.write32(CC, self.regs.read32(CC) & ~1)
        self._wait_ready(0)

    def _wait_ready(self, ready: int) -> None:
        deadline = time.monotonic() + self.timeout
        while (csts := self.regs.read32(CSTS)) & 1 != ready:  # CSTS.RDY
            if csts & 2 or time.monotonic() > deadline:  # CSTS.CFS: fatal error
                raise NvmeError(f"CSTS.RDY not {ready} within {self.timeout} s (CSTS {csts:#x})")
            time.sleep(0.001)

    def command(self, q: Queue, name: str, opcode: int, nsid: int, prp1: int, *cdw: int) -> None:
        """Submit one command (CDW10 onwards in ``cdw``) and wait for its completion."""
        self.submit(q, opcode, nsid, prp1, *cdw)
        self.complete(q, name)

    def submit(self, q: Queue, opcode: int, nsid: int, prp1: int, *cdw: int) -> None:
        """Put one command in ``q`` and ring its doorbell; complete() waits for it."""
        entry = q.tail * SQE_SIZE
        q.sq.view[entry : entry + SQE_SIZE] = bytes(SQE_SIZE)
        q.sq.write32(entry, q.tail << 16 | opcode)  # command ID, opcode
        q.sq.write32(entry + 4, nsid)
        q.sq.write64(entry + 24, prp1)  # data: one page at most here, so no PRP2
        for i, value in enumerate(cdw):
            q.sq.write32(entry + 40 + 4 * i, value)
        q.tail = (q.tail + 1) % DEPTH
        # On x86 this uncached store follows the entry's (README: DMA and ordering)
        self.regs.write32(q.sq_doorbell, q.tail)

    def complete(self, q: Queue, name: str) -> None:
        """Wait for the completion of the oldest command submitted to ``q``
        (``name`` says which in an error), and free its entry."""
        done = q.head * CQE_SIZE + 14  # status and phase: the last thing written
        deadline = time.monotonic() + self.timeout
        while q.cq.read16(done) & 1 != q.phase:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NvmeError(f"{name}: no completion within {self.timeout} s")
            self.msix.wait(left)  # maybe an earlier completion's interrupt: look again
        status = q.cq.read16(done) >> 1
        q.head = (q.head + 1) % DEPTH
        q.phase ^= q.head == 0
        self.regs.write32(q.cq_doorbell, q.head)
        if status & 0x7FF:  # status code type and code
            meaning = STATUS.get(status & 0x7FF, "see the specification")
            raise NvmeError(f"{name} failed: status {status & 0x7FF:#05x} ({meaning})")


def exercise(dev: Device, ctrl: Controller, lba: int | None) -> None:
    admin, page = ctrl.admin, ctrl.page
    vs = ctrl.regs.read32(VS)
    print(f"{dev.bdf}: NVMe {vs >> 16}.{vs >> 8 & 0xFF}, CAP.TO {ctrl.timeout} s, page {page}")
    with dev.dma_buffer(page) as ident:
        ctrl.command(admin, "IDENTIFY controller", IDENTIFY, 0, ident.iova, 1)  # CNS 1
        for field, start, end in (("model", 24, 64), ("serial", 4, 24), ("firmware", 64, 72)):
            text = bytes(ident.view[start:end]).decode("ascii", "replace").strip()
            print(f"{field + ':':9} {text}")
        ctrl.command(admin, "IDENTIFY namespace 1", IDENTIFY, 1, ident.iova, 0)  # CNS 0
        blocks = ident.read64(0)  # NSZE
        lbaf = ident.read32(128 + 4 * (ident.read8(26) & 0xF))  # the format FLBAS picks
    size = 1 << (lbaf >> 16 & 0xFF)
    print(f"namespace 1: {blocks} blocks of {size} bytes")
    lba = blocks - 1 if lba is None else lba
    if not 0 <= lba < blocks:
        raise NvmeError(f"LBA {lba} is not in namespace 1 (0 to {blocks - 1}); pick one with --lba")
    if size > page or lbaf & 0xFFFF:
        raise NvmeError(f"LBA format {lbaf:#x}: blocks over a page or with metadata not handled")

    io = Queue(dev, 1, ctrl.stride)
    qsize = (DEPTH - 1) << 16 | io.qid
    ctrl.command(admin, "CREATE I/O CQ", CREATE_CQ, 0, io.cq.iova, qsize, 0b11)  # IEN, PC
    ctrl.command(admin, "CREATE I/O SQ", CREATE_SQ, 0, io.sq.iova, qsize, io.qid << 16 | 1)
    old, pattern, back = (dev.dma_buffer(page) for _ in range(3))
    pattern.view[:size] = os.urandom(size)
    where = (lba & 0xFFFFFFFF, lba >> 32, 0)  # starting LBA, then number of blocks - 1
    ctrl.command(io, f"READ LBA {lba}", READ, 1, old.iova, *where)
    ctrl.command(io, f"WRITE LBA {lba}", WRITE, 1, pattern.iova, *where)
    ctrl.command(io, f"READ LBA {lba}", READ, 1, back.iova, *where)
    same = back.view[:size] == pattern.view[:size]
    ctrl.command(io, f"WRITE LBA {lba} (its old content)", WRITE, 1, old.iova, *where)
    ctrl.command(admin, "DELETE I/O SQ", DELETE_SQ, 0, 0, io.qid)
    ctrl.command(admin, "DELETE I/O CQ", DELETE_CQ, 0, 0, io.qid)
    if not same:
        raise NvmeError(f"LBA {lba}: the block read back differs from the one written")
    print(f"LBA {lba}: wrote {size} random bytes, read back identical; old content restored")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bdf", nargs="?", help="the controller (default: the first NVMe)")
    parser.add_argument("--lba", type=int, help="the block it writes (default: the last one)")
    args = parser.parse_args(argv)
    sysfs = Sysfs()
    try:
        found = [sysfs.device(args.bdf)] if args.bdf else sysfs.find_class(NVME_CLASS, 0xFFFFFF)
        if not found:
            raise NvmeError("no NVMe controller here; try it in the test VM (see --help)")
        if found[0].class_code != NVME_CLASS:  # never take another device from its driver
            raise NvmeError(f"{found[0].bdf} is class {found[0].class_code:06x}, not NVMe")
        # bound(): on vfio-pci for the block, then back on nvme (refused if its disk is in use)
        with sysfs.bound(found[0].bdf, "vfio-pci") as pci, Device.open(pci.bdf) as dev:
            ctrl = Controller(dev)
            try:
                exercise(dev, ctrl, args.lba)
            finally:
                ctrl.disable()  # before the device's close unmaps the queues
    except (VfioError, NvmeError) as exc:
        print(f"nvme: {exc}", file=sys.stderr)
        return 1
    now = sysfs.device(pci.bdf).driver
    print(f"{pci.bdf}: back on {now}")
    if now in VFIO_DRIVERS:
        # A run killed before it could give the controller back left it here.
        print(
            f"{pci.bdf} was on {now} before this ran, so it stays there; "
            f"`pyvfio unbind {pci.bdf}` gives it back to the driver the kernel picks (nvme)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
