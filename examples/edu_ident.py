# SPDX-License-Identifier: Apache-2.0
"""The smallest userspace driver: read QEMU edu's ident and liveness registers.

Run it in the test VM (no hardware needed):

    pyvfio vm run -- python3 examples/edu_ident.py
"""

from __future__ import annotations

import sys

from pyvfio import Device, Sysfs

EDU = (0x1234, 0x11E8)


def main() -> int:
    sysfs = Sysfs()
    found = sysfs.find(*EDU)
    if not found:
        print("no edu device here; run me with `pyvfio vm run -- python3 examples/edu_ident.py`")
        return 1
    bdf = found[0].bdf
    previous = sysfs.bind(bdf, "vfio-pci")
    try:
        with Device.open(bdf) as dev:
            bar0 = dev.region(0).map()
            ident = bar0.read32(0x00)
            bar0.write32(0x04, 0x12345678)
            alive = bar0.read32(0x04) == ~0x12345678 & 0xFFFFFFFF
            print(
                f"{bdf}: edu ident {ident:#010x} (version {ident >> 24}.{ident >> 16 & 0xFF}),"
                f" liveness {'ok' if alive else 'FAILED'}"
            )
            return 0 if alive else 1
    finally:
        if previous != "vfio-pci":
            sysfs.unbind(bdf)


if __name__ == "__main__":
    sys.exit(main())
