# SPDX-License-Identifier: Apache-2.0
"""The module hints of an installed pyvfio, followed literally on the real kernel.

tests/host/test_outside_repo.py (run before the guests by `make test`) makes a
fresh venv from the sdist's wheel in build/outside-repo/ and, as the hints say,
`pyvfio kmod build`s the module there for the kernel of the matrix whose headers
the host has (6.1 on Debian 12).  Here that venv, and
nothing of this tree, maps a BAR write-combined on a device bound to vfio-pci,
follows the hint of the error it gets, and maps again."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import Sysfs, __version__, kmod
from pyvfio.cookie import DRIVER
from pyvfio.vm import IVSHMEM_ID

OUT = Path(__file__).resolve().parents[2] / "build" / "outside-repo"
CACHE = OUT / "cache"

MAP_WC = """
import sys
from pyvfio import Device, VfioError
try:
    with Device.open(sys.argv[1]) as dev, dev.region(2).map(wc=True) as mapping:
        mapping.write32(0, 0x5AFE)
        print("mapped", mapping.read32(0))
except VfioError as exc:
    print(exc)
"""


def _run(command: str) -> subprocess.CompletedProcess[str]:
    """A command line in the fresh venv, from a directory outside the tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYVFIO_"))}
    env.update(PATH=f"{OUT / 'venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
    env.update(XDG_CACHE_HOME=str(CACHE))
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=OUT / "home",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def module_unloaded() -> Iterator[None]:
    """No vfio_pci_cookie loaded at the start; the tree's build loaded again after,
    if it was before."""
    was_loaded = kmod.is_loaded()
    kmod.unload()
    yield
    kmod.unload()
    if was_loaded:
        kmod.load()


def test_hints_load_the_module_the_fresh_venv_built(sysfs: Sysfs, module_unloaded: None) -> None:
    release = os.uname().release
    ko = CACHE / "pyvfio" / "kmod" / release / f"{DRIVER}.ko"
    if not (OUT / "venv" / "bin" / "pyvfio").exists():
        pytest.fail(f"no fresh venv in {OUT}: run tests/host/test_outside_repo.py first")
    if not ko.exists():
        # The host test builds for one kernel: the one whose headers the host has.
        pytest.skip(f"the fresh venv built the module for another kernel than {release}")
    status = _run("pyvfio kmod status")
    assert status.returncode == 3, status.stdout + status.stderr  # built, not loaded
    bdf = sysfs.find(*IVSHMEM_ID)[0].bdf
    try:
        # Not on a VFIO driver: the open's hint binds it.
        unbound = _run(f"python -c '{MAP_WC}' {bdf}")
        assert "not a VFIO driver" in unbound.stdout, unbound.stdout + unbound.stderr
        (bind_command,) = re.findall(r"`([^`]+)`", unbound.stdout)
        assert bind_command == f"pyvfio bind {bdf}"
        bind = _run(bind_command)
        assert bind.returncode == 0, bind.stderr
        refused = _run(f"python -c '{MAP_WC}' {bdf}")
        assert refused.returncode == 0, refused.stderr
        assert "offers no mmap cookies" in refused.stdout, refused.stdout
        commands = re.findall(r"`([^`]+)`", refused.stdout)
        assert commands == [
            "pyvfio kmod build",
            "pyvfio kmod load",
            f"pyvfio bind {bdf} --driver {DRIVER}",
        ], refused.stdout
        # The build ran on the host (the host test); the rest runs here, as root.
        for command in commands[1:]:
            proc = _run(command)
            assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
        mapped = _run(f"python -c '{MAP_WC}' {bdf}")
        assert mapped.stdout.strip() == f"mapped {0x5AFE}", mapped.stdout + mapped.stderr
        status = _run("pyvfio kmod status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"loaded: yes, version {__version__} (srcversion " in status.stdout
        assert f"from {ko}" in status.stdout
    finally:
        sysfs.unbind(bdf)
