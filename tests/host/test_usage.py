# SPDX-License-Identifier: Apache-2.0
"""Who uses a device, on a fake sysfs and /proc: the sentences bind refuses with."""

from __future__ import annotations

import os
from pathlib import Path

from pyvfio import usage

from .conftest import FakeDevice


def _link_class(sysfs_root: Path, cls: str, name: str, target: Path) -> Path:
    class_dir = sysfs_root.parent.parent / "class" / cls
    class_dir.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    (class_dir / name).symlink_to(target)
    return target


def test_mounted_swapped_and_held_disks_are_named(
    sysfs_root: Path, fake_device: FakeDevice, tmp_path: Path
) -> None:
    dev = fake_device("0000:00:0c.0", 0x1B36, 0x0010, 0x010802, driver="nvme")
    disk = _link_class(sysfs_root, "block", "nvme0n1", dev / "nvme" / "nvme0" / "nvme0n1")
    _link_class(sysfs_root, "block", "nvme0n1p1", disk / "nvme0n1p1")
    _link_class(sysfs_root, "block", "sda", tmp_path / "elsewhere" / "sda")  # not ours
    (disk / "holders").mkdir()
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mounts").write_text(
        "/dev/nvme0n1p1 /srv ext4 rw 0 0\n/dev/sda /data ext4 rw 0 0\nproc /proc proc rw 0 0\n"
    )
    (proc / "swaps").write_text("Filename Type Size Used Priority\n/dev/nvme0n1 partition 1 0 -2\n")
    assert usage.block_users(sysfs_root, dev, proc) == [
        "nvme0n1 is in use as swap",
        "nvme0n1p1 is mounted on /srv",
    ]
    (disk / "holders" / "dm-0").mkdir()
    assert "nvme0n1 is held by dm-0" in usage.block_users(sysfs_root, dev, proc)


def test_only_interfaces_that_are_up_count(sysfs_root: Path, fake_device: FakeDevice) -> None:
    dev = fake_device("0000:00:0d.0", 0x8086, 0x10D3, 0x020000, driver="e1000e")
    for name, flags in (("enp0s13", "0x1003"), ("enp0s14", "0x1002")):
        (_link_class(sysfs_root, "net", name, dev / "net" / name) / "flags").write_text(flags)
    assert usage.net_users(sysfs_root, dev) == ["network interface enp0s13 is up"]


def test_processes_holding_the_group_or_cdev_are_named(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, comm, target in (
        ("41", "testpmd", "/dev/vfio/12"),
        # An unbind that has begun deletes the cdev's node; the open file stays.
        ("42", "python3", "/dev/vfio/devices/vfio0 (deleted)"),
        ("43", "bash", "/dev/null"),
    ):
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "comm").write_text(comm + "\n")
        os.symlink(target, proc / pid / "fd" / "3")
    (proc / "self").mkdir()
    assert usage.vfio_holders(12, "vfio0", proc) == [
        "process 41 (testpmd) has /dev/vfio/12 open",
        "process 42 (python3) has /dev/vfio/devices/vfio0 open",
    ]
    assert usage.vfio_holders(None, None, proc) == []
