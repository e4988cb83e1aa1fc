# SPDX-License-Identifier: Apache-2.0
"""The debug test kernel: linux-source-7.3 with iommufd, the VFIO cdev and lockdep.

No Debian kernel enables ``CONFIG_IOMMUFD``, so the iommufd backend and the
module's cdev path have no kernel to run on; and lockdep, which reports a
lock-order inversion the first time both orders are taken, is only in a
debug build.  This kernel is built here, once per machine:

1. Debian's ``linux-source-7.3`` (trixie-backports), the newest version;
2. ``vng --kconfig``: virtme-ng's minimal guest config;
3. ``tools/debug-kernel.config`` merged over it, then every option the
   fragment sets is checked in the result (a dependency Kconfig silently
   dropped is an error, not a different kernel);
4. ``make bzImage modules headers``, then modules_install into the cache.

The cache key is the source version plus a hash of the fragment and the
virtme-ng version::

    debug/KEY/linux-source-7.3/   the build tree, kept: the module builds
                                  against it (M=), and its usr/include has
                                  the 7.3 uAPI headers the bindings are
                                  checked against
    kernels/REL/root/             boot/vmlinuz-REL and lib/modules/REL, as
                                  for the Debian kernels
    kernels/7.3-debug.json        series, release, tree, key

The build takes tens of minutes on two cores (docs/testing.md has the
measured time); a second ``make setup`` finds it and only refreshes the
package lists.  An interrupted build resumes where make stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from .._sys import top_level_make_env
from ..errors import VmError
from .kernels import CACHE, DEBUG_SERIES, Kernel, PrivateApt, _run, cache_lock
from .selftests import BASE, PACKAGE, SUITE

log = logging.getLogger(__name__)

FRAGMENT = Path(__file__).resolve().parents[3] / "tools" / "debug-kernel.config"
ROOT = CACHE / "debug"
_INDEX = CACHE / "kernels" / f"{DEBUG_SERIES}.json"


@dataclass(frozen=True)
class DebugKernel:
    version: str  # of the source package
    key: str
    release: str  # uname -r, e.g. 7.3.4-pyvfio-debug
    build_seconds: float

    @property
    def tree(self) -> Path:
        return ROOT / self.key / PACKAGE

    @property
    def uapi_include(self) -> Path:
        """The tree's sanitized uAPI headers (``make headers``)."""
        return self.tree / "usr" / "include"

    def kernel(self) -> Kernel:
        return Kernel(DEBUG_SERIES, self.release, "", str(self.tree))


def _vng_version() -> str:
    try:
        return metadata.version("virtme-ng")
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(version: str, fragment: bytes) -> str:
    digest = hashlib.sha256(fragment + f"virtme-ng=={_vng_version()}".encode()).hexdigest()
    return f"{version.replace('~', '_')}-{digest[:12]}"


def installed() -> DebugKernel | None:
    """The debug kernel ``make setup`` built, if it is complete."""
    try:
        record = json.loads(_INDEX.read_text())
        built = DebugKernel(**record["debug"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    complete = built.kernel().image.exists() and (built.uapi_include / "linux/iommufd.h").exists()
    return built if complete else None


def build(
    archive: str, security: str, progress: Callable[[str], object] | None = None
) -> DebugKernel:
    """Build the debug kernel of the newest linux-source-7.3 unless already built.

    A new upload of the source package, or a changed fragment, builds a new
    kernel (and removes the old tree).  If the package lists cannot be
    refreshed (offline), a kernel already built is kept, with a warning.
    ``progress(sentence)`` is told how far the compile is, every 30 s.
    """
    with cache_lock():
        apt = PrivateApt(BASE)
        current = installed()
        try:
            apt.update(archive, security)
            version = apt.candidate(PACKAGE, SUITE)
        except VmError as exc:
            if current is None:
                raise
            log.warning("%s; keeping the debug kernel built from %s", exc, current.version)
            return current
        if version is None:
            raise VmError(
                f"{PACKAGE} is not in {SUITE}",
                operation="build the debug kernel",
                hint="update pyvfio.vm.selftests.PACKAGE",
            )
        key = cache_key(version, FRAGMENT.read_bytes())
        if current is not None and current.key == key:
            return current
        built = _build(apt, version, key, progress)
        for old in ROOT.iterdir():  # the trees of earlier keys (a GiB or more each)
            if old.name != key and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return built


def _make_env() -> dict[str, str]:
    env = top_level_make_env()
    venv_bin = str(Path(sys.executable).parent)  # vng shells out to its own tools
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _build(
    apt: PrivateApt, version: str, key: str, progress: Callable[[str], object] | None
) -> DebugKernel:
    work = ROOT / key
    tree = work / PACKAGE
    env = _make_env()
    start = time.monotonic()
    if not (work / ".pyvfio-unpacked").exists():  # an interrupted unpack starts over
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (deb,) = apt.download([f"{PACKAGE}={version}"], SUITE, work / "deb")
        tarball = f"./usr/src/{PACKAGE}.tar.xz"
        _run(
            [
                "sh",
                "-c",
                'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "$3"',
                "-",
                str(deb),
                str(work / "deb"),
                tarball,
            ],
            f"unpack {deb.name}",
        )
        _run(["tar", "-xJf", str(work / "deb" / tarball), "-C", str(work)], f"unpack {PACKAGE}")
        shutil.rmtree(work / "deb")
        (work / ".pyvfio-unpacked").touch()
    stamp = tree / ".pyvfio-configured"
    if not stamp.exists():
        _configure(tree, env)
        stamp.touch()
    jobs = str((os.cpu_count() or 1) + 1)
    _make_showing_progress(tree, env, ["-j", jobs, "bzImage", "modules"], progress)
    _make(tree, env, ["headers"], "install the debug kernel's uAPI headers")
    release = _make(tree, env, ["kernelrelease"], "read the debug kernel's release").strip()
    kernel = Kernel(DEBUG_SERIES, release, "", str(tree))
    staging = kernel.root.with_name("root.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    _make(
        tree,
        env,
        [f"INSTALL_MOD_PATH={staging}", "INSTALL_MOD_STRIP=1", "modules_install"],
        "install the debug kernel's modules",
    )
    (staging / "boot").mkdir()
    shutil.copy2(tree / "arch/x86/boot/bzImage", staging / "boot" / f"vmlinuz-{release}")
    # The release name does not change with the fragment: no index may point
    # at another tree while the image is swapped (a crash here rebuilds).
    _INDEX.unlink(missing_ok=True)
    if kernel.root.exists():
        shutil.rmtree(kernel.root)
    staging.rename(kernel.root)
    # Seconds of this run: a resumed build counts only what it still did.
    built = DebugKernel(version, key, release, round(time.monotonic() - start, 1))
    record = json.dumps({**asdict(kernel), "debug": asdict(built)}, indent=1) + "\n"
    (kernel.root.parent / "kernel.json").write_text(record)
    tmp = _INDEX.with_suffix(".tmp")
    tmp.write_text(record)
    tmp.rename(_INDEX)
    return built


# How often the compile says how far it is: it takes tens of minutes.
PROGRESS_SECONDS = 30.0
_COMPILED = re.compile(r"^\s+CC\s", re.MULTILINE)


def _make_showing_progress(
    tree: Path, env: dict[str, str], args: list[str], progress: Callable[[str], object] | None
) -> None:
    """The compile, its output in build.log beside the tree (what a failure
    quotes), and every PROGRESS_SECONDS how many files it has compiled."""
    log_path = tree.parent / "build.log"
    start = time.monotonic()
    compiled = 0
    with open(log_path, "w+") as out:
        proc = subprocess.Popen(
            ["make", "-C", str(tree), *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        try:
            while True:
                try:
                    proc.wait(timeout=PROGRESS_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                out.seek(0)
                compiled = len(_COMPILED.findall(out.read()))
                if progress is not None:
                    minutes, seconds = divmod(round(time.monotonic() - start), 60)
                    progress(
                        f"{DEBUG_SERIES}: {compiled} files compiled in {minutes} min "
                        f"{seconds:02d} s (log: {log_path})"
                    )
        except BaseException:  # interrupted: no make left running in the tree
            proc.terminate()
            proc.wait()
            raise
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        errors = [line for line in text.splitlines() if "error" in line.lower()]
        tail = "\n".join((errors or text.strip().splitlines())[-8:])
        raise VmError(
            f"`make {' '.join(args)}` failed (log: {log_path}):\n{tail}",
            operation="build the debug kernel",
        )


def _make(tree: Path, env: dict[str, str], args: list[str], what: str) -> str:
    return _run(["make", "-C", str(tree), "-s", *args], what, env=env)


def _configure(tree: Path, env: dict[str, str]) -> None:
    """virtme-ng's guest config, the fragment over it, and a check of the result."""
    _run(["vng", "--kconfig"], "vng --kconfig", cwd=tree, env=env)
    _run(
        ["scripts/kconfig/merge_config.sh", "-m", ".config", str(FRAGMENT)],
        "merge tools/debug-kernel.config",
        cwd=tree,
        env=env,
    )
    _make(tree, env, ["olddefconfig"], "make olddefconfig")
    dropped = unmet_options(FRAGMENT.read_text(), (tree / ".config").read_text())
    if dropped:
        raise VmError(
            "the debug kernel's config did not take: " + ", ".join(dropped),
            operation="configure the debug kernel",
            hint="a dependency of these is missing from tools/debug-kernel.config",
        )


def unmet_options(fragment: str, config: str) -> list[str]:
    """The fragment's settings that ``config`` (a .config) does not have as written."""
    have = set(config.splitlines())
    unmet = []
    for line in (raw.strip() for raw in fragment.splitlines()):
        if line.startswith("CONFIG_"):
            if line not in have:
                unmet.append(line)
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            name = line[2:].split()[0]
            if any(c.startswith(name + "=") for c in have):
                unmet.append(line)
    return unmet
