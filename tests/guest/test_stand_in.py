# SPDX-License-Identifier: Apache-2.0
"""The vfio-pci stand-in (vfio_pci_cookie built as the module vfio-pci).

What an administrator relies on when installing it over the stock module
(docs/uapi.md, "Standing in for vfio-pci"): configuration written for
vfio-pci keeps working, cookies are there, the two cannot be loaded together,
and the stock module comes back.  DPDK on it is tests/guest/test_clients_dpdk.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import Device, Sysfs
from pyvfio.cookie import MemoryAttr, supported_attrs
from pyvfio.vm import EDU_ID, NVME_ID

from .conftest import rmmod_vfio_pci, stand_in_ko

PARAMS = Path("/sys/module/vfio_pci/parameters")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@pytest.fixture
def no_vfio_pci(sysfs: Sysfs) -> Iterator[None]:
    """Neither vfio-pci loaded; the stock one is back afterwards."""
    rmmod_vfio_pci()
    _run("modprobe", "vfio-pci-core")
    yield
    for dev in sysfs.devices():
        if dev.driver == "vfio-pci":
            sysfs.unbind(dev.bdf)
    rmmod_vfio_pci()
    assert _run("modprobe", "vfio-pci").returncode == 0


def test_ids_parameter_binds_at_load_and_cookies_work(no_vfio_pci: None, sysfs: Sysfs) -> None:
    (edu,) = sysfs.find(*EDU_ID)
    proc = _run("insmod", stand_in_ko(), f"ids={EDU_ID[0]:04x}:{EDU_ID[1]:04x}")
    assert proc.returncode == 0, proc.stderr
    assert "O" in Path("/sys/module/vfio_pci/taint").read_text()  # ours, out of tree
    assert sysfs.device(edu.bdf).driver == "vfio-pci"  # as vfio-pci.ids= does
    with Device.open(edu.bdf) as dev:
        assert MemoryAttr.UC in supported_attrs(dev, 0)


def test_parameters_are_vfio_pcis(no_vfio_pci: None) -> None:
    assert _run("modprobe", "vfio-pci").returncode == 0
    stock = {p.name for p in PARAMS.iterdir()}
    rmmod_vfio_pci()
    assert _run("insmod", stand_in_ko()).returncode == 0
    assert {p.name for p in PARAMS.iterdir()} == stock


def test_cannot_load_beside_the_stock_module(no_vfio_pci: None, sysfs: Sysfs) -> None:
    assert _run("modprobe", "vfio-pci").returncode == 0
    proc = _run("insmod", stand_in_ko())
    assert proc.returncode != 0  # the driver name vfio-pci is taken
    assert "File exists" in proc.stderr or "busy" in proc.stderr.lower(), proc.stderr
    assert "O" not in Path("/sys/module/vfio_pci/taint").read_text()  # stock still loaded
    (edu,) = sysfs.find(*EDU_ID)
    sysfs.bind(edu.bdf, "vfio-pci")
    with Device.open(edu.bdf) as dev:
        assert dev.regions()


@pytest.mark.parametrize("disable_idle_d3", [False, True])
def test_core_parameters_reach_the_core(
    no_vfio_pci: None, sysfs: Sysfs, disable_idle_d3: bool
) -> None:
    """disable_idle_d3 is one vfio-pci hands to the core (globally before 7.3, per
    device from 7.3): QEMU's nvme has PCI PM, so an idle bound one goes to D3hot."""
    param = f"disable_idle_d3={int(disable_idle_d3)}"
    assert _run("insmod", stand_in_ko(), param).returncode == 0
    (nvme,) = sysfs.find(*NVME_ID)
    sysfs.bind(nvme.bdf, "vfio-pci")
    assert _reaches_d3hot(nvme.bdf) == (not disable_idle_d3)


def _reaches_d3hot(bdf: str, seconds: float = 3) -> bool:
    """Idle entry is not instant after a bind (seen on 7.3): poll for it."""
    power_state = Path(f"/sys/bus/pci/devices/{bdf}/power_state")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if power_state.read_text().strip() == "D3hot":
            return True
        time.sleep(0.1)
    return False
