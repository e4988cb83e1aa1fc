# SPDX-License-Identifier: Apache-2.0
"""examples/wc_client.c, a plain C user of mmap cookies, built and run in the guest.

It opens the device the legacy VFIO way, probes the cookie feature, streams
descriptors through a write-combining mapping and names the PAT record; here
its exit status and summary are checked against the kernel's PAT list.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pyvfio import Sysfs

from .kernel_maps import pat_types
from .test_cookies import wc_records

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUILT = REPO / "build" / "examples"  # by make test, on the host (examples/Makefile)
WINDOW = 64 * 1024  # what wc_client maps write-combining
_SUMMARY = re.compile(
    r"wc_client: (\S+) BAR(\d): 1024 records, 65536 bytes streamed write-combining "
    r"and verified; (PAT: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] write-combining)$"
)


def _make(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = ["make", "-s", "-C", str(EXAMPLES), f"OUT={out}", *flags, str(out / "wc_client")]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def wc_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The host's build if it is up to date (make -q), else one made here."""
    if _make(BUILT, "-q").returncode == 0:
        return BUILT / "wc_client"
    out = tmp_path_factory.mktemp("wc_client")
    proc = _make(out)
    assert proc.returncode == 0, proc.stderr
    return out / "wc_client"


def run(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=60, check=False
    )


def bar(sysfs: Sysfs, bdf: str, index: int) -> tuple[int, int, bool]:
    """(start, size, prefetchable) of BAR ``index``."""
    b = next(b for b in sysfs.device(bdf).bars if b.index == index)
    return b.start, b.size, b.prefetchable


def check_streams_write_combining(exe: Path, sysfs: Sysfs, bdf: str) -> None:
    start, size, _ = bar(sysfs, bdf, 2)
    assert wc_records(start, start + size) == []
    proc = run(exe, bdf)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    m = _SUMMARY.match(lines[0])
    assert m, lines[0]
    assert (m.group(1), m.group(2)) == (bdf, "2")
    # the PAT line it printed is exactly the cookie's pages
    assert (int(m.group(4), 16), int(m.group(5), 16)) == (start, start + min(size, WINDOW))
    # munmap + DESTROY + close leave no write-combining record behind
    assert wc_records(start, start + size) == [], pat_types(start, start + size)


def test_streams_descriptors_write_combining(
    wc_client: Path, wc_ivshmem: str, sysfs: Sysfs
) -> None:
    check_streams_write_combining(wc_client, sysfs, wc_ivshmem)


def test_streams_descriptors_into_the_nvme_cmb(wc_client: Path, wc_nvme: str, sysfs: Sysfs) -> None:
    if not bar(sysfs, wc_nvme, 2)[2]:
        pytest.skip("this nvme's CMB (BAR2) is not prefetchable")
    check_streams_write_combining(wc_client, sysfs, wc_nvme)


@pytest.mark.parametrize("vfio_driver", ["vfio-pci"], indirect=True)
def test_stock_vfio_pci_is_reported_unsupported(wc_client: Path, ivshmem: str) -> None:
    proc = run(wc_client, ivshmem, "2")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        f"wc_client: {ivshmem}: driver vfio-pci has no mmap cookies (MMAP_COOKIE_CREATE "
        "probe: ENOTTY): no write-combining; bind it to vfio_pci_cookie\n"
    )


def test_a_non_prefetchable_bar_fails(wc_client: Path, wc_ivshmem: str, sysfs: Sysfs) -> None:
    assert not bar(sysfs, wc_ivshmem, 0)[2]  # ivshmem's registers
    proc = run(wc_client, wc_ivshmem, "0")
    assert proc.returncode == 1
    expected = f"wc_client: {wc_ivshmem}: BAR0 is not prefetchable"
    assert proc.stderr.startswith(expected), proc.stderr
