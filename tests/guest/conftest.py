# SPDX-License-Identifier: Apache-2.0
"""Guest tests: run as root inside the test VM (`make test` boots it).

Devices are found by vendor:device, never by address: guest addresses
shift with the VM's options.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import Sysfs, kmod
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.vm import EDU_ID, IVSHMEM_ID, NVME_ID

HERE = Path(__file__).parent


# Lines a test wants in the run's log whatever its outcome (the selftest cases
# this kernel cannot run, and why): printed after the summary.
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("reported by the tests")
        for line in REPORT:
            terminalreporter.line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here takes devices from their drivers: the pytest plugin
    # (pyvfio.pytest_plugin) runs them in the VM (--vfio-kernel, as `make
    # test` does), and skips them on a host.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.vfio)


def rmmod_vfio_pci() -> None:
    """rmmod whichever vfio-pci is loaded, stock or stand-in: it must go once
    no device is bound to it."""
    if os.path.exists("/sys/module/vfio_pci"):
        proc = subprocess.run(["rmmod", "vfio_pci"], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"rmmod vfio_pci: {proc.stderr}"


def stand_in_ko() -> str:
    """The vfio-pci stand-in built for the running kernel (kmod/Kbuild)."""
    ko = kmod.built_for().parent / "vfio-pci.ko"
    if not ko.exists():
        pytest.fail(f"{ko} is not built: run `make kmod`")
    return str(ko)


@pytest.fixture(scope="session")
def sysfs() -> Sysfs:
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    return Sysfs()


@pytest.fixture(scope="session")
def cookie_module(sysfs: Sysfs) -> None:
    """vfio_pci_cookie, loaded; its tests skip, naming the compiler error, where it
    does not build yet (`make test` fails the run if that kernel is not expected
    to fail: see tools/test.sh)."""
    error = kmod.build_error()
    if error is not None:
        pytest.skip(f"{COOKIE_DRIVER} does not build for {os.uname().release}: {error}")
    kmod.load()  # built by `make kmod` for every kernel of the matrix


@pytest.fixture(scope="session", params=["vfio-pci", COOKIE_DRIVER])
def vfio_driver(request: pytest.FixtureRequest) -> str:
    """Every device test runs on vfio-pci and on our drop-in variant driver."""
    if request.param == COOKIE_DRIVER:
        request.getfixturevalue("cookie_module")
    return str(request.param)


def _bound(sysfs: Sysfs, ids: tuple[int, int], driver: str = "vfio-pci") -> Iterator[str]:
    devices = sysfs.find(*ids)
    assert devices, f"no {ids[0]:04x}:{ids[1]:04x} device in the guest"
    bdf = devices[0].bdf
    sysfs.bind(bdf, driver)
    try:
        yield bdf
    finally:
        sysfs.unbind(bdf)


@pytest.fixture
def edu(sysfs: Sysfs, vfio_driver: str) -> Iterator[str]:
    """The edu device's BDF, bound to the VFIO driver under test."""
    yield from _bound(sysfs, EDU_ID, vfio_driver)


@pytest.fixture
def ivshmem(sysfs: Sysfs, vfio_driver: str) -> Iterator[str]:
    yield from _bound(sysfs, IVSHMEM_ID, vfio_driver)


@pytest.fixture
def nvme(sysfs: Sysfs, vfio_driver: str) -> Iterator[str]:
    yield from _bound(sysfs, NVME_ID, vfio_driver)


@pytest.fixture
def nvme_id() -> tuple[int, int]:
    return NVME_ID


@pytest.fixture(params=["edu", "ivshmem", "nvme"])
def any_device(request: pytest.FixtureRequest, sysfs: Sysfs, vfio_driver: str) -> Iterator[str]:
    """Each emulated device in turn, bound to the VFIO driver under test."""
    ids = {"edu": EDU_ID, "ivshmem": IVSHMEM_ID, "nvme": NVME_ID}[request.param]
    yield from _bound(sysfs, ids, vfio_driver)


@pytest.fixture
def wc_ivshmem(sysfs: Sysfs, cookie_module: None) -> Iterator[str]:
    """ivshmem (RAM-backed 4 MiB BAR2) bound to the cookie driver."""
    yield from _bound(sysfs, IVSHMEM_ID, COOKIE_DRIVER)


@pytest.fixture
def wc_nvme(sysfs: Sysfs, cookie_module: None) -> Iterator[str]:
    """nvme (16 MiB CMB in BAR2) bound to the cookie driver."""
    yield from _bound(sysfs, NVME_ID, COOKIE_DRIVER)
