# SPDX-License-Identifier: Apache-2.0
"""The CLI against the real kernel: info shows what the kernel reports."""

from __future__ import annotations

import json
import re
import subprocess

from pyvfio import Device, Sysfs

from . import forked
from .kver import RUNNING


def pyvfio(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (forked: tests/guest/forked.py)."""
    status, out, err = forked.pyvfio(*args)
    return subprocess.CompletedProcess(["pyvfio", *args], status, out, err)


def test_info_json_matches_the_kernel(any_device: str) -> None:
    proc = pyvfio("info", "--json", any_device)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema"] == 1 and report["bdf"] == any_device
    pci = Sysfs().device(any_device)
    # The report says what it describes, and how it was opened.
    assert (report["vendor"], report["device"], report["class"]) == (
        f"{pci.vendor:04x}",
        f"{pci.device:04x}",
        f"{pci.class_code:06x}",
    )
    assert report["driver"] == pci.driver
    with Device.open(any_device) as dev:
        assert report["backend"] == str(dev.backend) and report["iommu"]
        assert report["num_regions"] == dev.info.num_regions
        assert [(r["index"], r["size"], r["offset"]) for r in report["regions"]] == [
            (r.index, r.size, r.info.offset) for r in dev.regions()
        ]
        assert [i["count"] for i in report["irqs"]] == [i.count for i in dev.irq_infos()]
        with_cookies = dev.driver == "vfio_pci_cookie"
        for r in report["regions"]:
            mem_bar = r["index"] < 6 and r["mmap"]
            assert r["attrs"] == (["UC", "WC"] if with_cookies and mem_bar else []), r


def test_info_text_and_bind_cycle(sysfs: Sysfs, nvme_id: tuple[int, int]) -> None:
    (nvme,) = sysfs.find(*nvme_id)
    # On its host driver info shows what sysfs does, and opens nothing.
    sysfs_only = pyvfio("info", nvme.bdf)
    assert sysfs_only.returncode == 0, sysfs_only.stderr
    assert "VFIO: not opened: on nvme, not a VFIO driver" in sysfs_only.stdout
    assert "REGION" not in sysfs_only.stdout
    assert pyvfio("bind", nvme.bdf).stdout.strip() == f"{nvme.bdf}: bound to vfio-pci (was nvme)"
    try:
        text = pyvfio("info", nvme.bdf).stdout
        assert "BAR0     rwm        16K" in text and "msix-mappable" in text
        assert "ATTRS" in text and " UC,WC " not in text  # plain vfio-pci: no cookies
        # Since 6.5 vfio-pci drops NORESIZE where MSI-X vectors can be added while
        # enabled (dynamic MSI-X, which the guest's interrupt remapping offers).
        msix_flags = "eventfd,noresize" if RUNNING < (6, 5) else "eventfd"
        assert re.search(rf"MSIX        65  {msix_flags}\b(?!,)", text)
        assert "ERR          1" in text
    finally:
        out = pyvfio("unbind", nvme.bdf).stdout.strip()
    assert out == f"{nvme.bdf}: released; now on nvme"


def test_bad_bdf_is_a_clear_error() -> None:
    proc = pyvfio("info", "00:1f.7")
    assert proc.returncode == 1
    assert proc.stderr.startswith("pyvfio: error: 0000:00:1f.7: no such PCI device")
