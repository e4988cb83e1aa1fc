# SPDX-License-Identifier: Apache-2.0
"""virtme-run with the guest's root filesystem cached (9p ``cache=loose``).

virtme-ng shares the host's root with the guest over 9p without a cache:
every lookup, stat and read in the guest is a round trip to QEMU, and under
TCG a Python start-up (hundreds of lookups) takes seconds.  The guest mounts
that root read-only and reads what the host does not change during a run,
so it may keep what it has read.

vng starts ``virtme-run`` through the shell; :func:`pyvfio.vm.runner.run`
puts a ``virtme-run`` that runs this module first on vng's PATH.  Debian's
kernels have 9p as a module, so virtme-ng's initramfs mounts the root, with
the options written in its script: they are changed here.  A kernel with 9p
built in mounts the root itself, from ``rootflags=``, which the runner
appends to the command line.
"""

from __future__ import annotations

import importlib
import sys

#: virtme-ng's (1.42) options for the root, as its initramfs script and its
#: ``rootflags=`` give them.
UNCACHED_ROOT_FLAGS = "version=9p2000.L,trans=virtio,access=any,msize=524288"
CACHED_ROOT_FLAGS = UNCACHED_ROOT_FLAGS + ",cache=loose"
_UNCACHED_MOUNT = "access=any,msize=524288 /dev/root"
_CACHED_MOUNT = "access=any,msize=524288,cache=loose /dev/root"
_SCRIPT = "_MOUNT_ROOT_HOST"  # in virtme.mkinitramfs


def cache_root_in_initramfs() -> bool:
    """Make virtme-ng's initramfs mount the root cached; False if this
    virtme-ng's script is not the one known here (then it stays uncached)."""
    mkinitramfs = importlib.import_module("virtme.mkinitramfs")
    script = getattr(mkinitramfs, _SCRIPT, "")
    if not isinstance(script, str) or script.count(_UNCACHED_MOUNT) != 1:
        return False
    setattr(mkinitramfs, _SCRIPT, script.replace(_UNCACHED_MOUNT, _CACHED_MOUNT))
    return True


def main() -> int:
    if not cache_root_in_initramfs():
        print(
            "pyvfio: this virtme-ng's initramfs is not 1.42's: the guest's root stays "
            "uncached (slower); install pyvfio[vm] for the virtme-ng it was tested with",
            file=sys.stderr,
        )
    sys.argv[0] = "virtme-run"  # its messages name the command vng ran
    run = importlib.import_module("virtme.commands.run")
    status = run.main()
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
