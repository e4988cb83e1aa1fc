# SPDX-License-Identifier: Apache-2.0
"""The kernel's own VFIO selftests, built once from a Debian source package.

Debian's ``linux-source-7.3`` (trixie-backports) has
``tools/testing/selftests/vfio``.  The programs are built on the
host as their authors wrote them (no patches): ``make headers`` in the source
tree, then ``make -C tools/testing/selftests/vfio``.  Only the programs are
kept, in ``$PYVFIO_CACHE/selftests/VERSION/``, keyed by the package version;
the guest runs them from there (the guest sees the host's root).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._sys import top_level_make_env
from ..errors import VmError
from .kernels import CACHE, PrivateApt, _run, cache_lock

PACKAGE = "linux-source-7.3"
BASE, SUITE = "trixie", "trixie-backports"
PROGRAMS = (
    "vfio_pci_device_test",
    "vfio_dma_mapping_test",
    "vfio_dma_mapping_mmio_test",
    "vfio_pci_driver_test",
)
ROOT = CACHE / "selftests"
_CURRENT = ROOT / "current.json"


@dataclass(frozen=True)
class Selftests:
    version: str  # of the source package
    dir: Path

    def program(self, name: str) -> Path:
        return self.dir / name

    @property
    def complete(self) -> bool:
        return all(self.program(p).exists() for p in PROGRAMS)


def installed() -> Selftests | None:
    """The built selftests ``make setup`` recorded, if any."""
    try:
        record = json.loads(_CURRENT.read_text())
    except (OSError, ValueError):
        return None
    tests = Selftests(record["version"], Path(record["dir"]))
    return tests if tests.complete else None


def fetch(archive: str, security: str) -> Selftests:
    """Build the selftests of the newest ``linux-source-7.3`` unless already built."""
    with cache_lock():
        apt = PrivateApt(BASE)
        apt.update(archive, security)
        version = _candidate(apt)
        tests = Selftests(version, ROOT / version.replace("~", "_"))
        if not tests.complete:
            _build(apt, tests)
        _CURRENT.write_text(json.dumps({"version": version, "dir": str(tests.dir)}) + "\n")
        return tests


def _candidate(apt: PrivateApt) -> str:
    version = apt.candidate(PACKAGE, SUITE)
    if version is None:
        raise VmError(
            f"{PACKAGE} is not in {SUITE}",
            operation="fetch the VFIO selftests",
            hint="update pyvfio.vm.selftests.PACKAGE to a source package that has "
            "tools/testing/selftests/vfio",
        )
    return version


def _build(apt: PrivateApt, tests: Selftests) -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT, prefix="build-") as tmp:
        work = Path(tmp)
        (deb,) = apt.download([f"{PACKAGE}={tests.version}"], SUITE, work / "deb")
        tarball = f"./usr/src/{PACKAGE}.tar.xz"
        _run(
            ["sh", "-c", f"dpkg-deb --fsys-tarfile {deb} | tar -x -C {work} {tarball}"],
            f"unpack {deb.name}",
        )
        _run(["tar", "-xJf", str(work / tarball), "-C", str(work)], f"unpack {PACKAGE}")
        tree = work / PACKAGE
        env = top_level_make_env()  # not `make setup`'s MAKELEVEL (kernels.py)
        # the selftests include the uAPI headers of their own tree, from usr/include
        _run(["make", "-C", str(tree), "-s", "headers"], f"make headers in {PACKAGE}", env=env)
        _run(
            ["make", "-C", str(tree / "tools/testing/selftests/vfio"), "-s"],
            f"build the VFIO selftests of {PACKAGE}",
            env=env,
        )
        staging = work / "out"
        staging.mkdir()
        for name in PROGRAMS:
            shutil.copy2(tree / "tools/testing/selftests/vfio" / name, staging / name)
        shutil.rmtree(tests.dir, ignore_errors=True)
        staging.rename(tests.dir)
