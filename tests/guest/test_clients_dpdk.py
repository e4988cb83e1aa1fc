# SPDX-License-Identifier: Apache-2.0
"""DPDK's testpmd, unmodified, on stock vfio-pci and on the vfio-pci stand-in.

DPDK drives a device through VFIO only if its sysfs driver is named exactly
``vfio-pci``.  The stand-in is vfio_pci_cookie built as the module vfio-pci
(kmod/Kbuild, docs/uapi.md "Standing in for vfio-pci"): the stock module is
unloaded, the stand-in loaded in its place, and DPDK binds as it always does.
Both drivers must give the same results.

Needs the NICs `make test` adds for this file only (``pyvfio vm run --nics 2``)
and ``make setup``'s DPDK packages.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import Device, Sysfs
from pyvfio.vm import E1000E_ID

from .conftest import rmmod_vfio_pci, stand_in_ko
from .kernel_maps import pat_types

TESTPMD = shutil.which("dpdk-testpmd")
HUGEPAGES = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
HUGETLBFS = Path("/dev/hugepages")
FILE_PREFIX = "pyvfio"
STOCK, STAND_IN = "stock vfio-pci", "vfio-pci stand-in"

pytestmark = [
    pytest.mark.skipif(
        len(Sysfs().find(*E1000E_ID)) < 2, reason="needs the NICs of make test's clients boot"
    ),
    pytest.mark.skipif(TESTPMD is None, reason="dpdk-testpmd is not installed: run `make setup`"),
]

# What each driver gave, compared by the last test.
results: dict[str, dict[str, object]] = {}


def _modprobe(*argv: str) -> None:
    proc = subprocess.run(["modprobe", *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"modprobe {' '.join(argv)}: {proc.stderr}"


@pytest.fixture(scope="module")
def hugepages() -> Iterator[None]:
    HUGEPAGES.write_text("256")  # 512 MiB: testpmd's mbuf pool needs about 340
    HUGETLBFS.mkdir(exist_ok=True)
    if not os.path.ismount(HUGETLBFS):
        subprocess.run(["mount", "-t", "hugetlbfs", "nodev", str(HUGETLBFS)], check=True)
    yield
    HUGEPAGES.write_text("0")


def _drop_dpdk_files() -> None:
    """A killed testpmd leaves its hugepage files and runtime directory."""
    for f in HUGETLBFS.glob(f"{FILE_PREFIX}map_*"):
        f.unlink()
    shutil.rmtree(f"/var/run/dpdk/{FILE_PREFIX}", ignore_errors=True)


@pytest.fixture(scope="module", params=[STOCK, STAND_IN])
def driver(request: pytest.FixtureRequest, hugepages: None) -> Iterator[str]:
    """Which vfio-pci the NICs get; the stock one is back afterwards."""
    rmmod_vfio_pci()
    if request.param == STAND_IN:
        _modprobe("vfio-pci-core")
        subprocess.run(["insmod", stand_in_ko()], check=True)
    else:
        _modprobe("vfio-pci")
    # DPDK sees the name vfio-pci either way; the module behind it is ours
    # (out-of-tree, taint O) only in the stand-in run.
    taint = Path("/sys/module/vfio_pci/taint").read_text()
    assert ("O" in taint) == (request.param == STAND_IN), taint
    yield str(request.param)
    rmmod_vfio_pci()  # rmmod works once testpmd is gone and the NICs are unbound
    _modprobe("vfio-pci")


@pytest.fixture(scope="module")
def nics(driver: str) -> Iterator[list[str]]:
    sysfs = Sysfs()
    bdfs = [d.bdf for d in sysfs.find(*E1000E_ID)][:2]
    for bdf in bdfs:
        sysfs.bind(bdf, "vfio-pci")
    yield bdfs
    for bdf in bdfs:
        sysfs.unbind(bdf)


class PmdShell:
    """dpdk-testpmd in interactive mode, one command at a time."""

    PROMPT = b"testpmd> "

    def __init__(self, bdfs: list[str]) -> None:
        _drop_dpdk_files()
        allow = [arg for bdf in bdfs for arg in ("-a", bdf)]
        # stdbuf: testpmd's printf output is block-buffered on a pipe and would
        # arrive after the prompt that follows it
        argv = ["stdbuf", "-o0", str(TESTPMD), "-l", "0-1", "-n", "1"]
        argv += ["--file-prefix", FILE_PREFIX, *allow, "--", "-i"]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.startup = self._until_prompt(timeout=180)

    def _until_prompt(self, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        out = b""
        deadline = time.monotonic() + timeout
        while not out.endswith(self.PROMPT):
            left = deadline - time.monotonic()
            assert left > 0, f"testpmd gave no prompt in {timeout} s:\n{out.decode()}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"testpmd exited (status {self.proc.wait()}):\n{out.decode()}"
                out += chunk
        return out.decode(errors="replace")

    def cmd(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._until_prompt()

    def quit(self) -> tuple[int, str]:
        out, _ = self.proc.communicate(b"quit\n", timeout=60)
        return self.proc.returncode, out.decode(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=60)


_STATS = re.compile(
    r"NIC statistics for port (\d+).*?RX-packets:\s+(\d+).*?RX-errors:\s+(\d+)"
    r".*?TX-packets:\s+(\d+)\s+TX-errors:\s+(\d+)",
    re.S,
)


def _port_stats(text: str) -> dict[int, tuple[int, int, int, int]]:
    """port -> (rx packets, rx errors, tx packets, tx errors)"""
    return {int(m[1]): (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in _STATS.finditer(text)}


def _forward(pmd: PmdShell, seconds: float = 3) -> dict[int, tuple[int, int, int, int]]:
    pmd.cmd("clear port stats all")
    pmd.cmd("start tx_first")
    time.sleep(seconds)
    stats = _port_stats(pmd.cmd("show port stats all"))
    pmd.cmd("stop")
    return stats


def _moved_both_ways(stats: dict[int, tuple[int, int, int, int]]) -> bool:
    """Each port sent and received, with no errors on either side."""
    return sorted(stats) == [0, 1] and all(
        rx > 0 and tx > 0 and rx_err == 0 and tx_err == 0
        for rx, rx_err, tx, tx_err in stats.values()
    )


def _bar_ranges(bdfs: list[str]) -> list[tuple[int, int]]:
    sysfs = Sysfs()
    return [
        (bar.start, bar.start + bar.size)
        for bdf in bdfs
        for bar in sysfs.device(bdf).bars
        if not bar.is_io
    ]


def _pat_left(bdfs: list[str]) -> list[tuple[int, int, str]]:
    return [entry for lo, hi in _bar_ranges(bdfs) for entry in pat_types(lo, hi)]


def _holders(bdfs: list[str]) -> list[str]:
    """Processes that still hold one of the NICs' VFIO groups open."""
    sysfs = Sysfs()
    groups = {f"/dev/vfio/{sysfs.device(bdf).iommu_group}" for bdf in bdfs}
    held = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) in groups:
                held.append(str(fd))
        except OSError:
            continue
    return held


def test_testpmd_probes_forwards_restarts_detaches_and_quits(driver: str, nics: list[str]) -> None:
    pmd = PmdShell(nics)
    got: dict[str, object] = {"vfio": "VFIO support initialized" in pmd.startup}
    summary = pmd.cmd("show port summary all")
    # each NIC is a port of the e1000e PMD (DPDK 24.11 no longer logs its probes)
    got["probed"] = sum(bool(re.search(rf"{bdf}\s+net_e1000_em", summary)) for bdf in nics)
    ports = re.search(r"Number of available ports: (\d+)", summary)
    got["ports"] = int(ports[1]) if ports else None
    got["forwarded"] = _moved_both_ways(first := _forward(pmd))

    pmd.cmd("port stop all")
    pmd.cmd("port start all")
    got["forwarded after restart"] = _moved_both_ways(_forward(pmd))

    pmd.cmd("port stop 0")
    pmd.cmd("port close 0")
    detached = pmd.cmd(f"device detach {nics[0]}")
    attached = pmd.cmd(f"port attach {nics[0]}")
    got["detached"] = "is detached" in detached
    got["attached"] = re.search(r"Port \d+ is attached", attached) is not None
    pmd.cmd("port start all")
    got["forwarded after attach"] = _moved_both_ways(_forward(pmd))

    rc, out = pmd.quit()
    got["quit status"] = rc
    got["pat entries left"] = _pat_left(nics)
    got["holders left"] = _holders(nics)
    results.setdefault(driver, {}).update(got)
    print(f"{driver}: first forwarding run {first}")  # the numbers, for the log
    assert got == {
        "vfio": True,
        "probed": 2,
        "ports": 2,
        "forwarded": True,
        "forwarded after restart": True,
        "detached": True,
        "attached": True,
        "forwarded after attach": True,
        "quit status": 0,
        "pat entries left": [],
        "holders left": [],
    }, f"{driver}:\n{pmd.startup}\n{out}"


def test_sigkilled_testpmd_releases_the_nics(driver: str, nics: list[str]) -> None:
    pmd = PmdShell(nics)
    pmd.cmd("start tx_first")
    time.sleep(2)
    pmd.kill()  # mid-forwarding, with DMA running and the BARs mapped
    got: dict[str, object] = {
        "holders left": _holders(nics),
        "pat entries left": _pat_left(nics),
    }
    for name, bdf in zip(("first", "second"), nics, strict=True):
        with Device.open(bdf) as dev:  # the group is free: another user can open it
            got[f"reopened {name}"] = len(dev.regions()) > 0
    results.setdefault(driver, {}).update({f"killed: {k}": v for k, v in got.items()})
    _drop_dpdk_files()
    assert got == {
        "holders left": [],
        "pat entries left": [],
        "reopened first": True,
        "reopened second": True,
    }, driver


def test_both_drivers_give_the_same_results() -> None:
    assert set(results) == {STOCK, STAND_IN}, f"a driver's run is missing: {sorted(results)}"
    assert results[STOCK] == results[STAND_IN]
