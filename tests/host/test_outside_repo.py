# SPDX-License-Identifier: Apache-2.0
"""pyvfio installed as a user gets it, away from this tree: the sdist, a wheel
built from it, a fresh venv, and every hint of the installed package followed
literally.  No package index is used: a directory holding the sdist stands in
for it (PIP_NO_INDEX, PIP_FIND_LINKS), and setuptools is copied into the fresh
venv in place of the build environment pip would fetch.

What needs the kernel is split: the module is built here, with `pyvfio kmod
build`, for the kernel of the matrix whose headers the host has (the host's
own series: 6.1 on Debian 12), and tests/guest/test_outside_repo.py loads
that build with the same venv (build/outside-repo/, which the guest sees)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import select
import shutil
import subprocess
import sys
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyvfio import VfioError, __version__
from pyvfio.vm import kernels

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "outside-repo"  # read by the guest test


@dataclass(frozen=True)
class Fresh:
    venv: Path
    index: Path  # the sdist, where an index would serve it
    cache: Path  # $XDG_CACHE_HOME of the user
    home: Path  # a working directory outside the tree
    build_output: str  # what `pip wheel` of the sdist without a compiler showed

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "PYVFIO_"))
        }
        env.update(
            PATH=f"{self.venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            XDG_CACHE_HOME=str(self.cache),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(self.index),
            # pip's odd spelling for "build without isolation" (setuptools is in the venv)
            PIP_NO_BUILD_ISOLATION="0",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_CONFIG_FILE=os.devnull,
        )
        env.update(extra)
        return env

    def run(self, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """A shell command line, as a user in the venv would type it."""
        return subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=self.home,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            check=False,
        )


def _in_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a terminal of its own, as pip runs when a user types it."""
    leader, follower = os.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
        preexec_fn=take_terminal,  # noqa: PLW1509 (no threads in this test)
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 600)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def _install_setuptools(venv: Path) -> None:
    """Copy this Python's setuptools into the venv: what pip's isolated build
    would download, had it an index."""
    spec = importlib.util.find_spec("setuptools")
    assert spec is not None and spec.origin is not None
    site = Path(spec.origin).parents[1]
    (target,) = venv.glob("lib/python3*/site-packages")
    names = ["setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth"]
    names += [p.name for p in site.glob("setuptools-*.dist-info")]
    for name in names:
        source = site / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def fresh() -> Iterator[Fresh]:
    shutil.rmtree(OUT, ignore_errors=True)
    index, home, cache = (OUT / d for d in ("index", "home", "cache"))
    for d in (index, home, cache):
        d.mkdir(parents=True)
    # Built from a copy: the build rewrites src/pyvfio.egg-info, which guests
    # booted meanwhile read (pytest reads every distribution's metadata).
    tree = OUT / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "__pycache__", "*.egg-info", ".*_cache"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; build_meta.build_sdist({str(index)!r})",
        ],
        cwd=tree,
        check=True,
        capture_output=True,
    )
    (sdist,) = index.glob("pyvfio-*.tar.gz")
    venv = OUT / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
    _install_setuptools(venv)
    # Installed from the sdist where there is no compiler, as a user without
    # an index would: what pip shows at a terminal.
    rc, output = _in_terminal(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--no-cache-dir",
            str(sdist),
        ],
        home,
        {**os.environ, "CC": "false", "PIP_CONFIG_FILE": os.devnull},
    )
    assert rc == 0, output
    fresh = Fresh(venv, index, cache, home, output)
    yield fresh


def _hint_commands(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def test_a_build_without_compiler_warns_at_the_terminal_and_its_hint_gets_the_fast_path(
    fresh: Fresh,
) -> None:
    # Seen without -v: the warning goes to the terminal pip runs in.
    assert "WARNING: pyvfio's C extension (pyvfio._mmio) did not build" in fresh.build_output
    assert "`pyvfio --version` prints the exact command" in fresh.build_output
    before = fresh.run("pyvfio --version")
    assert before.returncode == 0, before.stderr
    assert "register access: pure-Python fallback" in before.stdout
    (command,) = [c for c in _hint_commands(before.stdout) if c.startswith("pip ")]
    # It names the sdist pip was given (direct_url.json): pyvfio is on no index.
    (sdist,) = fresh.index.glob("pyvfio-*.tar.gz")
    assert command == f"pip install --no-cache-dir --force-reinstall {sdist}"
    # Followed literally, with a compiler now, and no index at all.
    proc = fresh.run(command, PIP_FIND_LINKS="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = fresh.run("pyvfio --version")
    assert "register access: C extension (pyvfio._mmio)" in after.stdout, after.stdout


def test_the_installed_package_carries_the_module_source(fresh: Fresh) -> None:
    proc = fresh.run(
        "python -c 'import pyvfio.kmod as k; print(k.KMOD_SRC); print(k.IN_SOURCE_TREE)'"
    )
    src, in_tree = proc.stdout.split()
    assert in_tree == "False"
    assert Path(src).is_relative_to(fresh.venv), src
    names = {p.relative_to(src).as_posix() for p in Path(src).rglob("*") if p.is_file()}
    assert names == {
        p.relative_to(ROOT / "kmod").as_posix()
        for p in (ROOT / "kmod").rglob("*")
        if p.is_file() and not p.name.endswith((".o", ".ko", ".cmd"))
    }


def test_versions_agree(fresh: Fresh) -> None:
    """dkms.conf's PACKAGE_VERSION and MODULE_VERSION are the project's."""
    conf = (ROOT / "kmod" / "dkms.conf").read_text()
    assert f'PACKAGE_VERSION="{__version__}"' in conf
    assert f'MODULE_VERSION("{__version__}")' in (ROOT / "kmod" / "vfio_pci_cookie.c").read_text()
    assert f'version = "{__version__}"' in (ROOT / "pyproject.toml").read_text()


def _guest_kernel() -> str:
    """A kernel of the matrix whose headers the host has (the host's own series:
    `make setup` installs linux-headers-amd64), which the guest test boots."""
    for series in kernels.SERIES:
        try:
            release = kernels.cached(series).release
        except VfioError:
            continue
        if Path("/lib/modules", release, "build", "Makefile").exists():
            return release
    pytest.fail("no fetched kernel of the matrix has its headers on the host: run `make setup`")


def test_module_hints_outside_the_tree_build_the_module(fresh: Fresh) -> None:
    running = os.uname().release
    version = fresh.run("pyvfio --version")
    assert "make kmod" not in version.stdout
    commands = _hint_commands(version.stdout)
    assert commands[:2] == ["pyvfio kmod build", "pyvfio kmod load"], version.stdout
    release = _guest_kernel()
    # Nothing for the host's own kernel yet: status says so, load says what to run.
    status = fresh.run("pyvfio kmod status")
    assert status.returncode == 4, status.stdout + status.stderr
    load = fresh.run("pyvfio kmod load")
    assert load.returncode == 1
    assert f"neither built for {running}" in load.stderr, load.stderr
    assert _hint_commands(load.stderr)[:2] == commands[:2], load.stderr
    if not Path("/lib/modules", running, "build", "Makefile").exists():
        # This host's own kernel has no headers: the build says which package.
        proc = fresh.run(commands[0])
        assert proc.returncode == 1
        assert f"no kernel headers for {running}" in proc.stderr, proc.stderr
        assert f"linux-headers-{running}" in proc.stderr or "kernel-devel" in proc.stderr
    # The same command for the kernel the guest runs (the guest test loads it).
    proc = fresh.run(f"{commands[0]} --release {release}")
    assert proc.returncode == 0, proc.stderr
    ko = fresh.cache / "pyvfio" / "kmod" / release / "vfio_pci_cookie.ko"
    assert proc.stdout.strip() == f"built {ko}"
    status = fresh.run(f"pyvfio kmod status --release {release}")
    assert status.returncode == 3, status.stdout + status.stderr  # built, not loaded
    assert f"built: {ko} (srcversion " in status.stdout


DKMS_SCRIPT = """
set -e
# Private overlays: nothing DKMS writes reaches the host.
for dir in /usr/src /var/lib/dkms /lib/modules; do
    name=$(echo "$dir" | tr / _)
    mkdir -p "$SCRATCH/$name/upper" "$SCRATCH/$name/work"
    layers="lowerdir=$dir,upperdir=$SCRATCH/$name/upper,workdir=$SCRATCH/$name/work"
    mount -t overlay overlay -o "$layers" "$dir"
done
$COMMAND
pyvfio kmod status --release "$RELEASE" || echo "status exit $?"
cp -a "/lib/modules/$RELEASE/updates/dkms" "$SCRATCH/installed"
echo "=== uninstall"
pyvfio kmod uninstall
pyvfio kmod status --release "$RELEASE" || echo "status exit $?"
ls /usr/src
"""


def test_dkms_install_builds_and_installs_only_the_cookie_module(
    fresh: Fresh, tmp_path: Path
) -> None:
    release = _guest_kernel()
    proc = subprocess.run(
        ["unshare", "--mount", "/bin/sh", "-c", DKMS_SCRIPT],
        env=fresh.env(
            XDG_CACHE_HOME=str(tmp_path / "cache"),  # no build of the other tests
            SCRATCH=str(tmp_path),
            RELEASE=release,
            COMMAND=f"pyvfio kmod install --release {release}",
        ),
        cwd=fresh.home,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed, removed = proc.stdout.split("=== uninstall")
    # DKMS compresses the module as the kernel's own are (Debian 13: .ko.xz)
    (module,) = (p.name for p in (tmp_path / "installed").iterdir())
    assert re.fullmatch(r"vfio_pci_cookie\.ko(\.xz|\.zst|\.gz)?", module), module
    path = re.escape(f"/lib/modules/{release}/updates/dkms/{module}")
    assert re.search(rf"installed: {path}(\s|$)", installed, re.M), installed
    assert f"vfio-pci-cookie/{__version__}, {release}, x86_64: installed" in installed
    assert "status exit 3" in installed
    # Uninstalled: nothing left to load, DKMS knows it no more, its source copy gone.
    assert "installed: no" in removed and "dkms: not added" in removed, removed
    assert "status exit 4" in removed
    assert f"vfio-pci-cookie-{__version__}" not in removed
