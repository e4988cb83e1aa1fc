# SPDX-License-Identifier: Apache-2.0
"""Write-combining through an mmap cookie, with the kernel's own proof.

Binds the NVMe controller to the vfio_pci_cookie driver, maps its
controller memory buffer (BAR2) write-combining and its registers (BAR0)
uncached, and prints what x86 PAT records for those pages.  Run it in the
test VM (`make demo` does), or on a machine with an NVMe CMB as root:

    pyvfio vm run -- python3 examples/wc_demo.py
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pyvfio import BusyError, Device, Sysfs, kmod
from pyvfio.cli import main as pyvfio_cli
from pyvfio.cookie import DRIVER, MemoryAttr, supported_attrs

NVME_CLASS = 0x010802
PAGE = 4096
PAT_LIST = Path("/sys/kernel/debug/x86/pat_memtype_list")


def pat_lines(start: int, end: int) -> list[str]:
    """pat_memtype_list entries overlapping physical [start, end)."""
    out = []
    for line in PAT_LIST.read_text().splitlines():
        m = re.match(r"PAT: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\S+)", line)
        if m and int(m.group(1), 16) < end and int(m.group(2), 16) > start:
            out.append(line)
    return out


def main() -> int:
    print("== the emulated devices, as pyvfio sees them")
    pyvfio_cli(["list", "-d", "1234:11e8", "-d", "1af4:1110", "-d", "1b36:0010"])
    sysfs = Sysfs()
    nvme = next(
        (
            d
            for d in sysfs.devices()
            if d.class_code == NVME_CLASS and any(b.index == 2 and b.prefetchable for b in d.bars)
        ),
        None,
    )
    if nvme is None:
        print("no NVMe controller with a CMB here", file=sys.stderr)
        return 1
    error = kmod.build_error()
    if error is not None:
        # Until the module's second design, it builds on 6.1 only.
        print(f"\n{DRIVER} does not build for {os.uname().release} yet: {error}")
        print("the write-combining part of this demo runs on 6.1: `make demo KERNEL=6.1`")
        return 0
    kmod.load()
    previous = sysfs.bind(nvme.bdf, DRIVER)
    bar0 = next(b for b in nvme.bars if b.index == 0)
    cmb = next(b for b in nvme.bars if b.index == 2)
    try:
        with Device.open(nvme.bdf) as dev:
            print(f"\n== {nvme.bdf} ({nvme.id}) on {DRIVER} (was {previous})")
            print(
                f"BAR2 (CMB) accepts: {', '.join(sorted(a.name for a in supported_attrs(dev, 2)))}"
            )
            regs = dev.region(0).map(0, PAGE)  # legacy offset: uncached, as vfio-pci
            cap, version = regs.read64(0x00), regs.read32(0x08)
            print(
                f"BAR0 registers, uncached:  CAP={cap:#018x} VS={version >> 16}."
                f"{version >> 8 & 0xFF}"
            )
            sq = dev.region(2).map(0, 4 * PAGE, wc=True)  # e.g. a submission queue
            pattern = os.urandom(4 * PAGE)
            sq.write_bytes(0, pattern)
            sq.write_barrier()  # sfence: drain the WC buffers
            ok = dev.region(2).read(0, len(pattern)) == pattern
            print(
                f"CMB pages 0-3, write-combining cookie {sq.cookie.value if sq.cookie else 0:#x}:"
                f" 16 KiB written, read back through the kernel: "
                f"{'identical' if ok else 'DIFFERENT'}"
            )
            print(f"memory type reported by the module: {sq.memory_type.pat_name}")
            regs.read32(0)
            print("\n== what x86 PAT records (/sys/kernel/debug/x86/pat_memtype_list)")
            for line in pat_lines(bar0.start, bar0.start + PAGE):
                print(f"BAR0 page 0:    {line}")
            for line in pat_lines(cmb.start, cmb.start + 4 * PAGE):
                print(f"CMB pages 0-3:  {line}")
            try:
                dev.region(2).map(PAGE, PAGE, attr=MemoryAttr.UC)  # an uncached alias of a WC page
                print("conflicting uncached alias of a WC page: ALLOWED (bug)")
                return 1
            except BusyError as exc:
                print(f"\nan uncached alias of a WC page is refused: {exc}")
            cmb_types = {line.split()[-1] for line in pat_lines(cmb.start, cmb.start + 4 * PAGE)}
            bar0_types = {line.split()[-1] for line in pat_lines(bar0.start, bar0.start + PAGE)}
            if not ok or cmb_types != {"write-combining"} or bar0_types != {"uncached-minus"}:
                print("FAILED: data or memory types are not what was asked", file=sys.stderr)
                return 1
        # counted before nvme takes the device back: its driver maps the CMB itself
        left = pat_lines(cmb.start, cmb.start + cmb.size)
    finally:
        sysfs.unbind(nvme.bdf)
    print(
        f"after close: {len(left)} PAT entries left in the CMB; {nvme.bdf} back on "
        f"{sysfs.device(nvme.bdf).driver}"
    )
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
