# SPDX-License-Identifier: Apache-2.0
"""SR-IOV from a userspace PF driver: NVMe virtual functions, brought online.

An NVMe controller with SR-IOV (the PF) is driven by this program through
vfio-pci, and gives its virtual functions (VFs) to userspace drivers too:

1. The PF is opened into an IommuContext and given a VF token, the secret
   a VF's user must show to open a VF of a PF that userspace drives.
2. Its controller lists its secondary controllers (one per VF) and their
   share of its queues and interrupt vectors. A VF's controller stays offline
   until the PF's driver gives it some (NVMe Virtualization Management): the
   PF first gives up the flexible ones it holds, which takes effect at its
   next function-level reset.
3. The VFs are created (sysfs sriov_numvfs, with no driver probing them),
   each secondary controller gets 2 queues and 1 vector and is set online.
4. Each VF is bound to vfio-pci, opened with the token into the same
   context, and identifies itself: its controller ID is its secondary's.

At the end the VFs are removed and both drivers are as they were.

Try it in the test VM, whose SR-IOV NVMe (8086:5845) `make test` adds:
    pyvfio vm run --device nvme-subsys,id=s0 \\
        --device nvme,serial=sriov,subsys=s0,use-intel-id=on,sriov_max_vfs=2,\\
sriov_vq_flexible=4,sriov_vi_flexible=2 -- python3 examples/nvme_sriov.py
vfio-pci must allow VFs: this example sets its enable_sriov parameter for
the run. Layouts and codes: the NVM Express Base Specification 1.4.
"""

from __future__ import annotations

import argparse
import struct
import sys
import uuid
from pathlib import Path

from nvme import IDENTIFY, Controller, NvmeError

from pyvfio import Device, IommuContext, Sysfs, VfioError

SRIOV_NVME_ID = (0x8086, 0x5845)  # QEMU's nvme with use-intel-id=on
VIRT_MGMT = 0x1C  # admin opcode: Virtualization Management
PRIMARY_FLEXIBLE, SECONDARY_OFFLINE, SECONDARY_ASSIGN, SECONDARY_ONLINE = 0x1, 0x7, 0x8, 0x9
QUEUES, VECTORS = 0, 1  # resource types
CNS_CONTROLLER, CNS_PRIMARY_CAPS, CNS_SECONDARY_LIST = 0x01, 0x14, 0x15
VF_QUEUES, VF_VECTORS = 2, 1  # an admin queue and one I/O queue pair; one MSI-X vector


def identify(dev: Device, ctrl: Controller, cns: int, cntid: int = 0) -> bytes:
    """One IDENTIFY data structure (4 KiB)."""
    with dev.dma_buffer(4096) as page:
        ctrl.command(
            ctrl.admin, f"IDENTIFY CNS {cns:#x}", IDENTIFY, 0, page.iova, cntid << 16 | cns
        )
        return bytes(page.view[:4096])


def virt_mgmt(ctrl: Controller, action: int, cntlid: int, kind: int = 0, count: int = 0) -> None:
    name = f"Virtualization Management (action {action:#x}, controller {cntlid})"
    ctrl.command(ctrl.admin, name, VIRT_MGMT, 0, 0, cntlid << 16 | kind << 8 | action, count)


def secondaries(dev: Device, ctrl: Controller) -> list[tuple[int, int]]:
    """(controller ID, VF number) of each secondary controller."""
    data = identify(dev, ctrl, CNS_SECONDARY_LIST)
    entries = []
    for n in range(data[0]):
        scid, _pcid, _state, vfn = struct.unpack_from("<HHB3xH", data, 32 + 32 * n)
        entries.append((scid, vfn))
    return entries


def free_flexible_resources(pf: Device, ctrl: Controller) -> Controller:
    """Give up the PF's own flexible queues and vectors (they are all its own
    at first); a function-level reset makes that take effect."""
    caps = identify(pf, ctrl, CNS_PRIMARY_CAPS)
    (cntlid,) = struct.unpack_from("<H", caps)
    (queues_held,) = struct.unpack_from("<H", caps, 40)  # VQRFAP
    (vectors_held,) = struct.unpack_from("<H", caps, 88)  # VIRFAP
    if not queues_held and not vectors_held:
        return ctrl
    virt_mgmt(ctrl, PRIMARY_FLEXIBLE, cntlid, QUEUES, 0)
    virt_mgmt(ctrl, PRIMARY_FLEXIBLE, cntlid, VECTORS, 0)
    ctrl.disable()
    ctrl.msix.close()
    pf.reset()
    return Controller(pf)


def set_module_parameter(driver: str, value: str) -> str:
    path = Path("/sys/module") / driver.replace("-", "_") / "parameters" / "enable_sriov"
    before = path.read_text().strip()
    path.write_text(value)
    return before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--driver", default="vfio-pci", help="the VFIO driver of PF and VFs")
    parser.add_argument("--vfs", type=int, default=2, help="how many VFs (default 2)")
    args = parser.parse_args(argv)
    sysfs = Sysfs()
    found = sysfs.find(*SRIOV_NVME_ID)
    if not found or not sysfs.total_vfs(found[0].bdf):
        print("needs an NVMe controller with SR-IOV: try it in the test VM (see --help)")
        return 1
    pf_bdf = found[0].bdf
    token = uuid.uuid4()
    try:
        with sysfs.bound(pf_bdf, args.driver), IommuContext() as context:
            before = set_module_parameter(args.driver, "1")
            try:
                pf = context.open(pf_bdf)
                pf.set_vf_token(token)
                ctrl = free_flexible_resources(pf, Controller(pf))
                listed = secondaries(pf, ctrl)
                print(f"PF {pf_bdf}: {len(listed)} secondary controllers {listed}")
                with sysfs.vfs_enabled(pf_bdf, args.vfs) as vfs:
                    for (cntlid, _vfn), vf_bdf in zip(listed, vfs, strict=False):
                        virt_mgmt(ctrl, SECONDARY_ASSIGN, cntlid, QUEUES, VF_QUEUES)
                        virt_mgmt(ctrl, SECONDARY_ASSIGN, cntlid, VECTORS, VF_VECTORS)
                        virt_mgmt(ctrl, SECONDARY_ONLINE, cntlid)
                        with sysfs.bound(vf_bdf, args.driver):
                            vf = context.open(vf_bdf, vf_token=token)
                            vf_ctrl = Controller(vf)
                            data = identify(vf, vf_ctrl, CNS_CONTROLLER)
                            model = data[24:64].decode("ascii", "replace").strip()
                            seen = struct.unpack_from("<H", data, 78)[0]
                            print(f"VF {vf_bdf}: controller {seen}, model {model!r}")
                            vf_ctrl.disable()
                            vf.close()
                        virt_mgmt(ctrl, SECONDARY_OFFLINE, cntlid)
                        if seen != cntlid:
                            raise NvmeError(f"VF {vf_bdf} is controller {seen}, not {cntlid}")
                ctrl.disable()
            finally:
                set_module_parameter(args.driver, before)
    except (VfioError, NvmeError, OSError, TimeoutError) as exc:
        print(f"nvme_sriov: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
