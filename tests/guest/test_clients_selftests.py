# SPDX-License-Identifier: Apache-2.0
"""The kernel's own VFIO selftests, unmodified, on vfio-pci and vfio_pci_cookie.

``make setup`` builds them from Debian's linux-source-7.3 (pyvfio.vm.selftests).
Each program runs on edu, ivshmem and nvme under both drivers (the one that
only maps memory in the IOMMU, on edu alone); the programs
run every IOMMU mode they know as variants.  Every case must pass, skip with
the selftest's own reason, or fail for a reason this kernel gives on both
drivers alike (no IOMMUFD; the one kernel difference listed below).  Any
difference between the drivers fails.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyvfio import Sysfs
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.vm import EDU_ID, IVSHMEM_ID, NVME_ID, selftests

from .conftest import REPORT

DEVICES = {"edu": EDU_ID, "ivshmem": IVSHMEM_ID, "nvme": NVME_ID}
HUGEPAGES = Path("/sys/kernel/mm/hugepages")
KSFT_SKIP = 4
PAGE = 4096


@dataclass(frozen=True)
class Case:
    status: str  # pass, skip or fail
    reason: str  # the selftest's own words, addresses and paths trimmed


_RESULT = re.compile(r"^(ok|not ok) \d+ (\S+)(?: # SKIP ?(.*))?$")
_RUN = re.compile(r"^#\s+RUN\s+(\S+) \.\.\.$")
_NOISE = re.compile(r"^(#\s+(OK|FAIL|SKIP)\s|# \S+: Test (failed|terminated))")


def _trim(lines: list[str]) -> str:
    text = "\n".join(line.strip() for line in lines if line.strip() and not _NOISE.match(line))
    text = re.sub(r"\S*/selftests/vfio/", "", text)
    return re.sub(r"0x[0-9a-f]{6,}", "0x…", text)


def parse(output: str, returncode: int, program: str) -> dict[str, Case]:
    """Cases of one kselftest-harness run: name -> Case."""
    cases: dict[str, Case] = {}
    body: list[str] = []
    for line in output.splitlines():
        if _RUN.match(line):
            body = []
        elif m := _RESULT.match(line):
            if m[3] is not None:
                cases[m[2]] = Case("skip", m[3].strip())
            else:
                cases[m[2]] = Case("pass" if m[1] == "ok" else "fail", _trim(body))
        else:
            body.append(line)
    if not cases:  # the program stopped before its first case
        status = "skip" if returncode == KSFT_SKIP else "fail"
        cases[program] = Case(status, _trim(output.splitlines()))
    return cases


def _oneline(reason: str) -> str:
    return " / ".join(reason.splitlines())


def cannot_run(name: str, case: Case, sub_page_bar: bool) -> str | None:
    """Why a failed case cannot run here, from its own output; None: a real failure."""
    no_iommufd = not Path("/dev/iommu").exists()
    if no_iommufd and ("/dev/iommu" in case.reason or "iommufd > 0" in case.reason):
        return "no IOMMUFD in this kernel: " + _oneline(case.reason)
    # The library maps every BAR at setup and unmaps the reservation's tail at
    # BAR start + BAR size, which is not page aligned for a BAR smaller than a
    # page (ivshmem's 256-byte BAR0): munmap() says EINVAL before any case runs.
    if sub_page_bar and "munmap(map_align + size" in case.reason and "errno: 22" in case.reason:
        return "the selftest library cannot map a BAR smaller than a page: " + _oneline(case.reason)
    # A DMA map that wraps the IOVA space: older type1 answers EINVAL, the
    # selftest expects EOVERFLOW.  A kernel difference, the same on both drivers.
    if name.endswith(".overflow") and "Expected rc (-22) == -EOVERFLOW (-75)" in case.reason:
        return "kernel difference: " + _oneline(case.reason)
    return None


@pytest.fixture(scope="module")
def hugepages() -> Iterator[None]:
    """2 MiB pages for the selftests' hugetlb variants.  Their 1 GiB variants use
    the page the clients boot reserves (`hugepagesz=1G hugepages=1`): a guest
    seldom has a free aligned GiB once it runs."""
    nr = HUGEPAGES / "hugepages-2048kB" / "nr_hugepages"
    before = nr.read_text()
    nr.write_text("64")
    yield
    nr.write_text(before)


@pytest.fixture(scope="module")
def built(hugepages: None, cookie_module: None) -> selftests.Selftests:
    """The selftest programs, with what they need in the guest set up."""
    tests = selftests.installed()
    if tests is None:
        pytest.fail("the VFIO selftests are not built: run `make setup`")
    return tests


def _run_on(program: Path, sysfs: Sysfs, bdf: str, driver: str) -> dict[str, Case]:
    sysfs.bind(bdf, driver)
    try:
        proc = subprocess.run(
            [str(program), bdf],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # a case's assertion text is on stderr, in order
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        sysfs.unbind(bdf)
    return parse(proc.stdout, proc.returncode, program.name)


# vfio_dma_mapping_test maps and unmaps memory in the IOMMU, whatever the
# device: on one device it compares the drivers as well as on three (it took
# 60 s on nvme, the longest test of the suite's longest boot).
DEVICE_NEUTRAL = {"vfio_dma_mapping_test": "edu"}


@pytest.mark.parametrize(
    ("program", "device"),
    [
        (program, device)
        for program in selftests.PROGRAMS
        for device in DEVICES
        if DEVICE_NEUTRAL.get(program, device) == device
    ],
)
def test_selftest_gives_the_same_results_on_both_drivers(
    program: str,
    device: str,
    built: selftests.Selftests,
    sysfs: Sysfs,
) -> None:
    (pci, *_) = sysfs.find(*DEVICES[device])
    bdf = pci.bdf
    sub_page_bar = any(not bar.is_io and 0 < bar.size < PAGE for bar in pci.bars)
    runs = {
        drv: _run_on(built.program(program), sysfs, bdf, drv) for drv in ("vfio-pci", COOKIE_DRIVER)
    }
    stock, ours = runs["vfio-pci"], runs[COOKIE_DRIVER]
    counts = dict(sorted(Counter(c.status for c in stock.values()).items()))
    REPORT.append(f"{program} on {device}: {counts}, identical on both drivers: {ours == stock}")
    REPORT.extend(
        f"  {c.status} {n}: {cannot_run(n, c, sub_page_bar) or _oneline(c.reason)}"
        for n, c in stock.items()
        if c.status != "pass"
    )
    assert ours == stock, "vfio_pci_cookie and vfio-pci differ"
    failures = {
        n: c.reason
        for n, c in stock.items()
        if c.status == "fail" and not cannot_run(n, c, sub_page_bar)
    }
    assert not failures, f"{program} on {device}: cases the kernel can run failed"
