# SPDX-License-Identifier: Apache-2.0
"""Who uses a PCI device: what taking it from its driver would break, or wait for.

Read-only: sysfs, /proc/mounts, /proc/swaps and the fds of /proc/*/fd.  The
answers are sentences for a refusal ("nvme0n1 is mounted on /srv"), checked
by :meth:`pyvfio.pci.Sysfs.bind` and ``unbind`` before they act.
"""

from __future__ import annotations

import os
from pathlib import Path

_IFF_UP = 0x1  # <linux/if.h>


def _children(class_dir: Path, device_dir: Path) -> list[str]:
    """Names in /sys/class/X whose device lies under ``device_dir`` (a PCI function)."""
    if not class_dir.is_dir():
        return []
    prefix = f"{device_dir.resolve()}/"
    return sorted(p.name for p in class_dir.iterdir() if f"{p.resolve()}/".startswith(prefix))


def _mounts(proc: Path) -> list[tuple[str, str]]:
    """(device basename, mount point) of every mounted block device."""
    try:
        lines = (proc / "self" / "mounts").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        source, target, *_ = [*line.split(), "", ""]
        if source.startswith("/dev/"):
            found.append((os.path.basename(os.path.realpath(source)), target))
    return found


def _swaps(proc: Path) -> set[str]:
    try:
        lines = (proc / "swaps").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {os.path.basename(os.path.realpath(line.split()[0])) for line in lines if line.strip()}


def block_users(sysfs_root: Path, device_dir: Path, proc: Path = Path("/proc")) -> list[str]:
    """Mounted, swapped-on or held (device-mapper, md) block devices of the function."""
    class_dir = sysfs_root.parent.parent / "class" / "block"
    names = _children(class_dir, device_dir)
    users = []
    mounts = _mounts(proc)
    swaps = _swaps(proc)
    for name in names:
        users += [f"{name} is mounted on {target}" for dev, target in mounts if dev == name]
        if name in swaps:
            users.append(f"{name} is in use as swap")
        holders = class_dir / name / "holders"
        held_by = sorted(p.name for p in holders.iterdir()) if holders.is_dir() else []
        if held_by:
            users.append(f"{name} is held by {', '.join(held_by)}")
    return users


def net_users(sysfs_root: Path, device_dir: Path) -> list[str]:
    """Network interfaces of the function that are up."""
    class_dir = sysfs_root.parent.parent / "class" / "net"
    users = []
    for name in _children(class_dir, device_dir):
        try:
            flags = int((class_dir / name / "flags").read_text(), 16)
        except (OSError, ValueError):
            continue
        if flags & _IFF_UP:
            users.append(f"network interface {name} is up")
    return users


def vfio_holders(group: int | None, cdev: str | None, proc: Path = Path("/proc")) -> list[str]:
    """Processes holding the function's VFIO group or device cdev open."""
    nodes = set()
    if group is not None:
        nodes.add(f"/dev/vfio/{group}")
    if cdev is not None:
        nodes.add(f"/dev/vfio/devices/{cdev}")
    if not nodes:
        return []
    holders = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                # A cdev's node is deleted as its unbind starts; the open
                # files that hold the unbind back stay.
                target = os.readlink(fd).removesuffix(" (deleted)")
            except OSError:
                continue
            if target in nodes:
                holders.append(f"process {pid_dir.name} ({_comm(pid_dir)}) has {target} open")
                break
    return sorted(holders)


def _comm(pid_dir: Path) -> str:
    try:
        return (pid_dir / "comm").read_text().strip()
    except OSError:
        return "?"
