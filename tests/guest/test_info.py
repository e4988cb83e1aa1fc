# SPDX-License-Identifier: Apache-2.0
"""`pyvfio info` against lspci, on every PCI device of the guest, whatever its
driver: the names, IDs and config space state must read as lspci reads them,
and a device on a host driver must be left exactly as it was."""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

import pytest

from pyvfio import Sysfs
from pyvfio.cli import main

from . import forked, lspci

# 16 tries at reading a device whose state does not move while info reads it:
# a VFIO-bound device wakes from D3hot while info has it open, and the kernel
# puts it back to sleep a moment after.
TRIES = 16


def info(bdf: str) -> dict[str, Any]:
    """`pyvfio info --json BDF`, run in this process: a new Python costs
    seconds of emulated CPU, and this runs about a hundred times."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["info", "--json", bdf])
    assert status == 0, err.getvalue()
    assert err.getvalue() == ""  # no warning on info
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def settled_info(bdf: str) -> tuple[dict[str, Any], str]:
    """info's report and lspci -vv's text of one unchanged device state."""
    for _ in range(TRIES):
        before = lspci.run("-vv", "-nn", "-s", bdf)
        report = info(bdf)
        if lspci.run("-vv", "-nn", "-s", bdf) == before:
            return report, before
    pytest.fail(f"{bdf}: lspci read a different state each time around info")


def _by_device(text: str) -> dict[str, str]:
    """Output of `lspci -D` for every device, as each device's block by address."""
    blocks = {}
    for block in text.strip("\n").split("\n\n"):
        first = block.splitlines()[0]
        bdf = first.split()[-1] if first.startswith("Slot:") else first.split()[0]
        blocks[bdf] = block + "\n"
    return blocks


def every_mismatch(bdfs: list[str]) -> list[str]:
    """Every field where info and lspci disagree, on each of ``bdfs``.

    lspci runs on all of them at once: each run reads pci.ids anew, which
    costs most of a second of emulated CPU.  A device whose state moved
    while info read it is read again alone (settled_info)."""
    before = _by_device(lspci.run("-D", "-vv", "-nn"))
    reports = {bdf: info(bdf) for bdf in bdfs}
    after = _by_device(lspci.run("-D", "-vv", "-nn"))
    names_from = next(iter(reports.values()))["names_from"]
    assert names_from, "no pci.ids: make setup installs it"
    vmm = _by_device(lspci.run("-D", "-vmm", "-nn", "-k", "-i", names_from))
    wrong = []
    for bdf in bdfs:
        if before[bdf] == after[bdf]:
            wrong += compare(bdf, reports[bdf], before[bdf], vmm[bdf])
        else:
            wrong += mismatches(bdf)[1]
    return wrong


def mismatches(bdf: str) -> tuple[dict[str, Any], list[str]]:
    """info's report of ``bdf``, and every field where it and lspci disagree."""
    report, vv_text = settled_info(bdf)
    assert report["names_from"], "no pci.ids: make setup installs it"
    vmm_text = lspci.run("-vmm", "-nn", "-k", "-i", report["names_from"], "-s", bdf)
    return report, compare(bdf, report, vv_text, vmm_text)


def compare(bdf: str, report: dict[str, Any], vv_text: str, vmm_text: str) -> list[str]:
    """The fields where info's ``report`` and lspci's -vv and -vmm texts disagree."""
    vv = lspci.parse_vv(vv_text)
    vmm = lspci.parse_vmm(vmm_text)
    wrong = []

    def check(what: str, ours: object, theirs: object) -> None:
        if ours != theirs:
            wrong.append(f"{bdf} {what}: info {ours!r}, lspci {theirs!r}")

    check("bdf", report["bdf"], Sysfs().device(bdf).bdf)
    for key, value in lspci.vmm_expected(report).items():
        check(key, value, vmm.get(key))
    for key in ("SVendor", "SDevice", "Rev"):
        if key in vmm and key not in lspci.vmm_expected(report):
            check(key, None, vmm[key])
    check("ProgIf", report["prog_if"], vmm.get("ProgIf", "00"))
    check("prog-if name", report["prog_if_name"], vv["prog_if_name"])
    check("driver", report["driver"], vmm.get("Driver"))
    for key in ("command_bits", "status_bits", "devsel", "rom"):
        check(key, report[key], vv[key])
    for key in ("msi", "msix"):
        ours = report[key] and {k: v for k, v in report[key].items() if k != "offset"}
        check(key, ours, vv[key])
    pm = report["power_management"]
    check("PM state", pm and pm["state"].replace("hot", ""), vv["pm_state"])
    exp = report["express"]
    check("express type", exp and exp["port_type"], vv["express_type"])
    check("LnkCap", exp and exp["link_capability"], vv["link_capability"])
    check("LnkSta", exp and exp["link_status"], vv["link_status"])
    # power state: what the kernel records, else PMCSR's
    with open(f"/sys/bus/pci/devices/{bdf}/power_state") as attr:
        kernel = attr.read().strip()
    if kernel != "unknown":
        check(
            "power state (kernel)",
            (report["power_state"], report["power_state_from"]),
            (kernel, "kernel"),
        )
    elif pm is not None:
        check(
            "power state (PMCSR)",
            (report["power_state"], report["power_state_from"]),
            (pm["state"], "pmcsr"),
        )
    else:
        check("power state", report["power_state"], None)
    if (
        pm is not None
        and report["power_state_from"] == "kernel"
        and report["power_state"] in ("D0", "D3hot")
    ):
        check("PMCSR vs kernel", pm["state"], report["power_state"])
    return wrong


def test_info_reads_every_device_as_lspci_does(sysfs: Sysfs) -> None:
    devices = sysfs.devices()
    classes = {d.class_code >> 8 for d in devices}
    # the VM's devices: the q35 host bridge, edu, ivshmem, nvme and virtio ones
    assert {0x0600, 0x00FF, 0x0500, 0x0108} <= classes
    drivers_before = {d.bdf: d.driver for d in devices}
    assert every_mismatch([d.bdf for d in devices]) == []
    assert {d.bdf: d.driver for d in sysfs.devices()} == drivers_before


def test_info_of_a_vfio_bound_device_adds_the_vfio_view(any_device: str) -> None:
    report, wrong = mismatches(any_device)
    assert wrong == []
    assert report["driver"] == Sysfs().device(any_device).driver
    assert report["backend"] in ("iommufd", "legacy") and report["vfio_error"] is None
    assert report["regions"] and report["irqs"] and report["num_regions"] >= 9


def test_info_leaves_a_device_on_its_host_driver(sysfs: Sysfs, nvme_id: tuple[int, int]) -> None:
    (nvme,) = sysfs.find(*nvme_id)
    assert nvme.driver == "nvme"
    (controller,) = os.listdir(f"/sys/bus/pci/devices/{nvme.bdf}/nvme")
    node = os.stat(f"/dev/{controller}")
    status, text, err = forked.pyvfio("info", nvme.bdf)
    assert status == 0, err
    report = info(nvme.bdf)
    assert "VFIO: not opened: on nvme, not a VFIO driver" in text
    assert report["backend"] is None and report["regions"] is None
    after = sysfs.device(nvme.bdf)
    assert (after.driver, after.driver_override) == ("nvme", None)
    assert os.stat(f"/dev/{controller}").st_rdev == node.st_rdev
    # and the driver still serves it: its namespace reads
    with open(f"/dev/{controller}n1", "rb") as disk:
        assert len(disk.read(4096)) == 4096


def test_info_of_a_vfio_device_held_elsewhere_still_reads_sysfs(nvme: str) -> None:
    holder = forked.python(
        "import sys, time; from pyvfio import Device\n"
        f"with Device.open({nvme!r}):\n"
        "    print('open', flush=True); time.sleep(600)"
    )
    try:
        assert holder.stdout.readline() == "open\n", holder.communicate(120)[1]
        report = info(nvme)
    finally:
        holder.kill()
        holder.communicate(120)
    # the open failed (another process has the device); the sysfs part is all there
    assert report["backend"] is None and report["regions"] is None
    # the group's or cdev's refusal, as the library words it (EBUSY on a group,
    # a refused bind on a cdev)
    assert report["vfio_error"]
    assert report["msix"] is not None and report["vendor"] == "1b36"
    assert report["driver"] == Sysfs().device(nvme).driver
