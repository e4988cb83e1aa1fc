# SPDX-License-Identifier: Apache-2.0
"""examples/nvme.py, a userspace NVMe driver, on the guest's controller: it
identifies the controller, round-trips one block, and gives the controller
back to the kernel's nvme driver with its disk and the block's content."""

from __future__ import annotations

import os
import runpy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyvfio import Device, Sysfs
from pyvfio.vm import EDU_ID, NVME_ID

NVME_EXAMPLE = Path(__file__).parents[2] / "examples" / "nvme.py"
TWO_DEVICES_EXAMPLE = NVME_EXAMPLE.with_name("two_devices.py")
PEER_EXAMPLE = NVME_EXAMPLE.with_name("peer_to_peer.py")
# The nvme driver probes in the background: the disk appears a while after the bind.
DISK_WAIT = 60.0


@dataclass(frozen=True)
class NvmeDisk:
    bdf: str
    model: str  # as the nvme driver reports it
    name: str  # the namespace's block device, nvme0n1
    blocks: int
    block_size: int


def _nvme_disk(sysfs: Sysfs) -> NvmeDisk:
    """The controller on the nvme driver and its namespace's disk, once the driver
    has made it (waiting for that, whatever test had the controller before)."""
    (pci,) = sysfs.find(*NVME_ID)
    device_dir = (sysfs.root / "devices" / pci.bdf).resolve()
    deadline = time.monotonic() + DISK_WAIT
    while True:
        driver = sysfs.device(pci.bdf).driver
        disks = sorted(
            p
            for p in Path("/sys/class/block").iterdir()
            if p.resolve().is_relative_to(device_dir) and not (p / "partition").exists()
        )
        if driver == "nvme" and disks:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{pci.bdf} on {driver}, disks {disks}: no nvme disk after {DISK_WAIT} s")
        time.sleep(0.2)
    controller = next(
        p for p in Path("/sys/class/nvme").iterdir() if (p / "device").resolve() == device_dir
    )
    block_size = int((disks[0] / "queue" / "logical_block_size").read_text())
    return NvmeDisk(
        bdf=pci.bdf,
        model=(controller / "model").read_text().strip(),
        name=disks[0].name,
        blocks=int((disks[0] / "size").read_text()) * 512 // block_size,
        block_size=block_size,
    )


def _read_block(disk: NvmeDisk, lba: int) -> bytes:
    fd = os.open(f"/dev/{disk.name}", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # from the disk, not the page cache
        return os.pread(fd, disk.block_size, lba * disk.block_size)
    finally:
        os.close(fd)


def test_nvme_example_round_trips_a_block_and_gives_the_disk_back(
    sysfs: Sysfs, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _nvme_disk(sysfs)
    last = disk.blocks - 1
    before = _read_block(disk, last)
    # No address: it finds the controller by its class.
    lines = _run_example(NVME_EXAMPLE, capsys, monkeypatch).splitlines()
    assert lines[0].startswith(f"{disk.bdf}: NVMe 1.")
    assert f"model:    {disk.model}" in lines
    assert f"namespace 1: {disk.blocks} blocks of {disk.block_size} bytes" in lines
    assert (
        f"LBA {last}: wrote {disk.block_size} random bytes, read back identical; "
        "old content restored"
    ) in lines
    assert lines[-1] == f"{disk.bdf}: back on nvme"
    after = _nvme_disk(sysfs)
    assert (after.blocks, after.block_size) == (disk.blocks, disk.block_size)
    assert sysfs.device(disk.bdf).driver_override is None
    assert _read_block(after, last) == before


def _example() -> dict[str, Any]:
    """The example's names, to run them in this process (the script exits with
    what main() returns)."""
    return runpy.run_path(str(NVME_EXAMPLE), run_name="example")


def test_nvme_example_refuses_an_lba_beyond_the_namespace(
    sysfs: Sysfs, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = _nvme_disk(sysfs)
    assert _example()["main"](["--lba", str(disk.blocks)]) == 1
    err = capsys.readouterr().err
    assert (
        f"nvme: LBA {disk.blocks} is not in namespace 1 (0 to {disk.blocks - 1}); "
        "pick one with --lba"
    ) in err
    assert sysfs.device(disk.bdf).driver_override is None
    assert _nvme_disk(sysfs).blocks == disk.blocks  # on nvme again, with its disk


def test_nvme_example_leaves_a_device_that_is_not_nvme_alone(
    sysfs: Sysfs, capsys: pytest.CaptureFixture[str]
) -> None:
    (edu,) = sysfs.find(*EDU_ID)
    assert _example()["main"]([edu.bdf]) == 1
    assert f"nvme: {edu.bdf} is class 00ff00, not NVMe" in capsys.readouterr().err
    after = sysfs.device(edu.bdf)
    assert (after.driver, after.driver_override) == (edu.driver, edu.driver_override)


def test_nvme_example_names_a_command_the_controller_rejects_and_its_status(
    sysfs: Sysfs,
) -> None:
    example = _example()
    disk = _nvme_disk(sysfs)
    with sysfs.bound(disk.bdf), Device.open(disk.bdf) as dev, dev.dma_buffer(4096) as ident:
        ctrl = example["Controller"](dev)
        try:
            with pytest.raises(
                example["NvmeError"], match=r"^opcode 0xff failed: status 0x001 \(invalid opcode\)$"
            ):
                ctrl.command(ctrl.admin, "opcode 0xff", 0xFF, 0, 0)
            # the admin queue goes on
            ctrl.command(ctrl.admin, "IDENTIFY", example["IDENTIFY"], 0, ident.iova, 1)
            assert bytes(ident.view[24:64]).decode().strip() == disk.model
        finally:
            ctrl.disable()
    assert _nvme_disk(sysfs).blocks == disk.blocks


def test_nvme_example_after_a_killed_run_says_how_to_give_the_controller_back(
    sysfs: Sysfs, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run killed inside its block (SIGKILL: no cleanup) leaves the
    # controller on vfio-pci; the next run "gave it back" there, silently.
    disk = _nvme_disk(sysfs)
    sysfs.bind(disk.bdf, "vfio-pci")
    try:
        assert _example()["main"]([]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[-2:] == [
            f"{disk.bdf}: back on vfio-pci",
            f"{disk.bdf} was on vfio-pci before this ran, so it stays there; "
            f"`pyvfio unbind {disk.bdf}` gives it back to the driver the kernel picks (nvme)",
        ]
    finally:
        sysfs.unbind(disk.bdf)  # the hint, followed
    assert _nvme_disk(sysfs).blocks == disk.blocks


def _run_example(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """Its output, run as its script would, in this process (a new Python
    costs seconds under TCG), its folder on the path; it must succeed."""
    monkeypatch.syspath_prepend(str(path.parent))
    assert runpy.run_path(str(path), run_name="example")["main"]([]) == 0, capsys.readouterr()
    return capsys.readouterr().out


def test_two_devices_example_hands_a_page_from_nvme_to_edu(
    sysfs: Sysfs, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout = _run_example(TWO_DEVICES_EXAMPLE, capsys, monkeypatch)
    assert "model 'QEMU NVMe Ctrl'" in stdout, stdout
    assert "edu read the same 2048 bytes from that IOVA, by DMA" in stdout, stdout
    _nvme_disk(sysfs)  # the controller is back on nvme, with its disk


def test_peer_to_peer_example_has_edu_write_into_and_read_from_a_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backend is the suite's (PYVFIO_BACKEND): iommufd maps the BAR by dma-buf.
    stdout = _run_example(PEER_EXAMPLE, capsys, monkeypatch)
    assert 'BAR2 holds "written by edu, into another device\'s BAR"' in stdout, stdout
    assert "edu read 'and read back from it by edu' from the BAR, by DMA" in stdout, stdout
