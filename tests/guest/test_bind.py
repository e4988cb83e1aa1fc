# SPDX-License-Identifier: Apache-2.0
"""Binding safely: Sysfs.bound() gives a device back as it was; bind and unbind
refuse a device in use, naming the user."""

from __future__ import annotations

import functools
import re
import subprocess
import time
from pathlib import Path

import pytest

from pyvfio import BusyError, Device, InvalidArgumentError, Sysfs, VfioError
from pyvfio.vm import EDU_ID, NVME_ID

from . import forked


class _DriverBugError(Exception):
    pass


def test_a_device_goes_back_to_its_driver_even_after_an_error(sysfs: Sysfs) -> None:
    (nvme,) = sysfs.find(*NVME_ID)
    assert nvme.driver == "nvme" and nvme.driver_override is None
    with pytest.raises(_DriverBugError), sysfs.bound(nvme.bdf) as dev:
        assert dev.driver == "vfio-pci"
        with Device.open(dev.bdf):
            raise _DriverBugError
    after = sysfs.device(nvme.bdf)
    assert (after.driver, after.driver_override) == ("nvme", None)


def test_a_device_with_no_driver_is_left_with_none(sysfs: Sysfs) -> None:
    (edu,) = sysfs.find(*EDU_ID)
    assert edu.driver is None
    with sysfs.bound(edu.bdf, "vfio-pci") as dev:
        assert dev.driver == "vfio-pci"
    after = sysfs.device(edu.bdf)
    assert (after.driver, after.driver_override) == (None, None)


def _namespace(sysfs: Sysfs, bdf: str) -> str:
    """The nvme controller's namespace block device (nvme0n1)."""
    device_dir = (sysfs.root / "devices" / bdf).resolve()
    names = [
        p.name
        for p in Path("/sys/class/block").iterdir()
        if str(p.resolve()).startswith(f"{device_dir}/") and not (p / "partition").exists()
    ]
    assert names, f"no block device under {bdf}"
    return sorted(names)[0]


def _has_ext4() -> bool:
    subprocess.run(["modprobe", "ext4"], capture_output=True, check=False)
    return "\text4\n" in Path("/proc/filesystems").read_text()


@pytest.mark.parametrize("use", ["mounted", "swap"])
def test_bind_refuses_a_disk_in_use(sysfs: Sysfs, tmp_path: Path, use: str) -> None:
    if use == "mounted" and not _has_ext4():
        pytest.skip("this kernel has no ext4 (the debug kernel's minimal config)")
    (nvme,) = sysfs.find(*NVME_ID)
    disk = _namespace(sysfs, nvme.bdf)
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    if use == "mounted":
        run(["mkfs.ext4", "-q", "-F", f"/dev/{disk}"])
        run(["mount", f"/dev/{disk}", str(tmp_path)])
        user, release = f"{disk} is mounted on {tmp_path}", ["umount", str(tmp_path)]
    else:
        run(["mkswap", f"/dev/{disk}"])
        run(["swapon", f"/dev/{disk}"])
        user, release = f"{disk} is in use as swap", ["swapoff", f"/dev/{disk}"]
    try:
        with pytest.raises(BusyError, match=user) as info:
            sysfs.bind(nvme.bdf)
        assert "--force" in (info.value.hint or "")
        assert sysfs.device(nvme.bdf).driver == "nvme"  # nothing changed
        status, _, err = forked.pyvfio("bind", nvme.bdf)
        assert status == 1 and user in err
        if use == "mounted":
            (tmp_path / "still-writable").write_text("the filesystem kept its disk")
    finally:
        run(release)
    with sysfs.bound(nvme.bdf) as dev:  # released: nothing in the way
        assert dev.driver == "vfio-pci"


def test_unbind_names_the_process_holding_the_device(sysfs: Sysfs) -> None:
    (edu,) = sysfs.find(*EDU_ID)
    with sysfs.bound(edu.bdf):
        holder = forked.python(HOLD, edu.bdf)
        try:
            assert holder.stdout.readline() == "open\n"
            with pytest.raises(BusyError, match=f"process {holder.pid} \\(") as info:
                sysfs.unbind(edu.bdf)  # would block in the kernel until the holder closes
            assert f"kill {holder.pid}" in (info.value.hint or "")
            assert sysfs.device(edu.bdf).driver == "vfio-pci"
        finally:
            holder.kill()
            holder.wait()


def test_a_forced_unbind_says_whom_it_waits_for_and_takes_a_timeout(sysfs: Sysfs) -> None:
    # It used to hang in the kernel with no output, and `timeout` could not
    # stop it: a signal makes the kernel's wait uninterruptible.
    (edu,) = sysfs.find(*EDU_ID)
    with sysfs.bound(edu.bdf):
        holder = forked.python(HOLD, edu.bdf)  # idle: it never lets go by itself
        try:
            assert holder.stdout.readline() == "open\n"
            status, out, err = forked.pyvfio("unbind", edu.bdf, "--force", "--timeout", "3")
            assert status == 1, (out, err)
            waiting, *_, error = err.splitlines()
            assert re.fullmatch(
                rf"pyvfio: {edu.bdf}: waiting 1 s for process {holder.pid} \(.+\) holding "
                r"/dev/vfio/\S+ to close it",
                waiting,
            ), err
            assert f"still waits for process {holder.pid} (" in error
            assert "after 3 s" in error and f"kill {holder.pid}" in error
            writer = re.search(r"goes on in process (\d+) ", error)
            assert writer, error
            assert _running(int(writer[1]))  # still in the kernel's unbind
        finally:
            holder.kill()
            holder.wait()
        # The holder gone, the unbind left waiting in the kernel ends, and the
        # device is on no driver, edu's default.  (Once, in a CI run with two
        # guests at a time, the writer was still there after 10 s: 30 s.)
        for _ in range(300):
            if not _running(int(writer[1])):
                break
            time.sleep(0.1)
        assert not _running(int(writer[1]))
        assert sysfs.device(edu.bdf).driver is None


def _running(pid: int) -> bool:
    """The process exists and has not ended (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # reaped before or during the read
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_open_names_the_process_holding_the_device(sysfs: Sysfs) -> None:
    # The group (legacy) or the cdev (iommufd) refuses a second opener; which
    # process to ask is what the user needs to know.
    (edu,) = sysfs.find(*EDU_ID)
    with sysfs.bound(edu.bdf):
        holder = forked.python(HOLD, edu.bdf)
        try:
            assert holder.stdout.readline() == "open\n"
            with pytest.raises(VfioError, match=f"elsewhere: process {holder.pid} \\(") as info:
                Device.open(edu.bdf)
            assert isinstance(info.value, (BusyError, InvalidArgumentError))
        finally:
            holder.kill()
            holder.wait()
        Device.open(edu.bdf).close()  # and once it is gone, the device opens


def test_a_holder_that_lets_go_at_once_is_not_a_user(sysfs: Sysfs) -> None:
    # udev opens a group node for a moment as it appears after a bind; an
    # unbind just then was refused as "in use".
    (edu,) = sysfs.find(*EDU_ID)
    with sysfs.bound(edu.bdf):
        node = f"/dev/vfio/{sysfs.device(edu.bdf).iommu_group}"
        brief = forked.python(
            f"import time; f = open({node!r}); print(1, flush=True); time.sleep(0.5)"
        )
        try:
            assert brief.stdout.readline() == "1\n"
            assert sysfs.unbind(edu.bdf) is None  # waited for it, then unbound
        finally:
            brief.kill()
            brief.wait()


HOLD = """
import sys, time
from pyvfio import Device
dev = Device.open(sys.argv[1])
print("open", flush=True)
time.sleep(60)
"""
