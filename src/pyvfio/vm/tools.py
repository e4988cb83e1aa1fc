# SPDX-License-Identifier: Apache-2.0
"""The host tools the test VM and the kernel matrix invoke, and the packages that bring them.

``make setup`` installs the packages, then :func:`missing` proves each tool is
really there: a forgotten dependency fails set-up by name, not a test run
minutes later (busybox was once forgotten this way).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# tool -> Debian package; what each is for is in the comment.
HOST_TOOLS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",  # the guest machine
    "busybox": "busybox-static",  # virtme-ng's initramfs
    "file": "file",  # virtme-ng checks that busybox is static with it
    # virtme-ng-init runs these in the guest (the host's root is the guest's);
    # without udev no driver autoloads (nvme stays unbound), and the other two
    # log WARNING lines that the kernel-log check rightly fails
    "udevadm": "udev",
    "ip": "iproute2",
    "systemd-tmpfiles": "systemd-standalone-tmpfiles",
    "debootstrap": "debootstrap",  # build roots for kernels of another Debian release
    "chroot": "coreutils",  # building the module in those roots
    "apt-get": "apt",  # fetching kernels (private lists)
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",  # extracting kernel packages
    "depmod": "kmod",  # module index of a fetched kernel
    "modprobe": "kmod",  # in the guest (the host's root is the guest's)
    "insmod": "kmod",
    "rmmod": "kmod",
    "modinfo": "kmod",  # pyvfio kmod status
    "gcc": "gcc",  # pyvfio's C extension, the kernel's VFIO selftests
    "make": "make",
    "xz": "xz-utils",  # unpacking linux-source for the selftests
    "dpdk-testpmd": "dpdk-dev",  # the DPDK client tests, in the guest
    "stdbuf": "coreutils",  # testpmd's output unbuffered on a pipe
    "pgrep": "procps",  # tools/test.sh stops its guest boots when interrupted
    # the module's DKMS package, installed for real in a private mount namespace
    # (tests/host/test_outside_repo.py)
    "dkms": "dkms",
    "unshare": "util-linux",
    "lspci": "pciutils",  # the oracle `pyvfio info` is compared with, in the guest
    # a disk in use, which bind must refuse (tests/guest/test_bind.py); Debian
    # 13's minimal root has no e2fsprogs
    "mkfs.ext4": "e2fsprogs",
    "mount": "mount",
    "umount": "mount",
    "mkswap": "util-linux",
    "swapon": "util-linux",
    "swapoff": "util-linux",
    "dmesg": "util-linux",  # the kernel log, read by the cookie safety tests
    "tar": "tar",  # the kernel's VFIO selftests from linux-source
    # building the debug kernel (debugkernel.py)
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "perl": "perl",
}
# Files, not tools: headers the debug kernel's build needs (objtool, module
# signing tools), and the PCI ID database.
HOST_FILES: dict[str, str] = {
    "/usr/include/gelf.h": "libelf-dev",
    "/usr/include/openssl/evp.h": "libssl-dev",
    # names for `pyvfio info` and lspci (the info test compares them)
    "/usr/share/misc/pci.ids": "pci.ids",
}
# Installed into the virtualenv by pip, from pyvfio[vm]: vng shells out to virtme-run.
VENV_TOOLS: dict[str, str] = {"vng": "virtme-ng", "virtme-run": "virtme-ng"}


def missing(path: str | None = None, venv_bin: str | None = None) -> list[tuple[str, str]]:
    """(tool, package) for every tool found neither on ``path`` (default: $PATH)
    nor, for the pip-installed ones, in ``venv_bin`` (default: this Python's bin/)."""
    if path is None:
        path = os.environ.get("PATH", "")
    if venv_bin is None:
        venv_bin = str(Path(sys.executable).parent)
    gone = [
        (tool, pkg) for tool, pkg in HOST_TOOLS.items() if shutil.which(tool, path=path) is None
    ]
    gone += [(file, pkg) for file, pkg in HOST_FILES.items() if not os.path.exists(file)]
    gone += [
        (tool, f"{pkg} (pip, pyvfio[vm])")
        for tool, pkg in VENV_TOOLS.items()
        if shutil.which(tool, path=os.pathsep.join([venv_bin, path])) is None
    ]
    return gone
