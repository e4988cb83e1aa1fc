# SPDX-License-Identifier: Apache-2.0
"""The vfio_pci_cookie kernel module: where its source is, build, load, status.

The source is kmod/ of the source tree, or the copy the wheel carries
(``pyvfio/kmod_src``, put there by setup.py).  Builds go outside the source,
because Kbuild's clean deletes every .ko under the module's directory and an
installed package may be read-only:

* in the source tree, ``make kmod`` (``pyvfio vm kmod``) builds once per kernel
  of the test matrix into ``build/kmod/RELEASE/``;
* anywhere else, ``pyvfio kmod build`` builds for one kernel into
  ``$XDG_CACHE_HOME/pyvfio/kmod/RELEASE/`` (``~/.cache`` by default; the
  invoking user's under sudo).

``$PYVFIO_KMOD_DIR`` overrides both.  A failed build leaves its first compiler
error in ``RELEASE/error``, which :func:`build_error` reports (the guest suite
skips the module's tests with it).  The module may also be installed in the
kernel's module tree, by DKMS (``pyvfio kmod install``, kmod/dkms.conf), where
modprobe finds it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from ._sys import top_level_make_env
from ._where import IN_SOURCE_TREE, SOURCE_TREE, load_hint
from .cookie import DRIVER
from .errors import DriverError

KMOD_SRC = SOURCE_TREE / "kmod" if IN_SOURCE_TREE else Path(__file__).resolve().parent / "kmod_src"
# kmod/dkms.conf's PACKAGE_NAME; its version is the project's.
DKMS_NAME = "vfio-pci-cookie"
STAND_IN = "vfio-pci.ko"  # the opt-in stand-in (kmod/Makefile install-stand-in)


def _user_cache() -> Path:
    """$XDG_CACHE_HOME or ~/.cache of the user who ran the command: under sudo,
    the one who built the module as themselves, so `sudo pyvfio kmod load` finds it."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"])
    home = Path.home()
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user:
        with contextlib.suppress(KeyError):  # a user sudo knows but passwd does not
            home = Path(pwd.getpwnam(sudo_user).pw_dir)
    return home / ".cache"


def build_dir() -> Path:
    """Where builds go, one directory per kernel release."""
    if os.environ.get("PYVFIO_KMOD_DIR"):
        return Path(os.environ["PYVFIO_KMOD_DIR"])
    if IN_SOURCE_TREE:
        return SOURCE_TREE / "build" / "kmod"
    return _user_cache() / "pyvfio" / "kmod"


BUILD_DIR = build_dir()


def is_loaded() -> bool:
    return Path("/sys/module", DRIVER).exists()


def built_for(release: str | None = None) -> Path:
    """Where the module for ``release`` (default: the running kernel) is built."""
    return BUILD_DIR / (release or os.uname().release) / f"{DRIVER}.ko"


def build_error(release: str | None = None) -> str | None:
    """The first compiler error of the last failed build for ``release``, if it failed."""
    try:
        return (built_for(release).parent / "error").read_text().strip()
    except OSError:
        return None


def _os_ids() -> set[str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return set()
    ids: set[str] = set()
    for key in ("ID", "ID_LIKE"):
        match = re.search(rf"^{key}=\"?([^\"\n]*)", text, re.M)
        if match:
            ids.update(match.group(1).split())
    return ids


def headers_hint(release: str) -> str:
    """The package that puts the headers of ``release`` at /lib/modules/REL/build."""
    ids = _os_ids()
    if ids & {"debian", "ubuntu"}:
        return f"install them: apt install linux-headers-{release}"
    if ids & {"fedora", "rhel", "centos"}:
        return f"install them: dnf install kernel-devel-{release}"
    return (
        f"install them (Debian, Ubuntu: linux-headers-{release}; Fedora: "
        f"kernel-devel-{release}), or pass --kernel-dir"
    )


def kernel_dir(release: str) -> Path:
    return Path("/lib/modules", release, "build")


def _headers(release: str | None, kdir: Path | None, operation: str) -> tuple[str, Path]:
    """``release`` (default: the running kernel) and its headers, which must be there."""
    release = release or os.uname().release
    kdir = kdir or kernel_dir(release)
    if not (kdir / "Makefile").is_file():
        raise DriverError(
            f"no kernel headers for {release} at {kdir}",
            operation=operation,
            hint=headers_hint(release),
        )
    return release, kdir


def first_error(log_text: str) -> str:
    """The first compiler (or make) error line of a build log, trimmed."""
    for line in log_text.splitlines():
        if re.search(r"\berror:", line, re.I) or (line.startswith("make") and "Error" in line):
            return re.sub(r"^.*?/(?=[^/\s]+\.[ch]:)", "", line.strip())
    return "unknown error (see the build log)"


def record_build(
    proc: subprocess.CompletedProcess[str], work: Path, out: Path, names: Sequence[str]
) -> str | None:
    """Keep a build's outcome in ``out``, as :func:`built_for` and
    :func:`build_error` read it: its log, then either the modules ``names``
    copied from ``work`` or its first error (and no stale modules).  Returns
    the error, or None."""
    log_text = proc.stdout + proc.stderr
    (out / "build.log").write_text(log_text)
    if proc.returncode != 0 or not all((work / name).exists() for name in names):
        error = first_error(log_text)
        (out / "error").write_text(error + "\n")
        for name in names:
            (out / name).unlink(missing_ok=True)
        return error
    (out / "error").unlink(missing_ok=True)
    for name in names:
        shutil.copy2(work / name, out / name)
    return None


def build(release: str | None = None, kdir: Path | None = None) -> Path:
    """Build the module for ``release`` (default: the running kernel) against
    ``kdir`` (default: /lib/modules/RELEASE/build) into :func:`built_for`."""
    release, kdir = _headers(release, kdir, "build module")
    if not (KMOD_SRC / "Kbuild").is_file():
        raise DriverError(
            f"the module's source is not at {KMOD_SRC}",
            operation="build module",
            hint="reinstall pyvfio from its sdist or wheel (both carry the source)",
        )
    out = built_for(release).parent
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=out) as tmp:
        work = Path(tmp) / "src"
        shutil.copytree(KMOD_SRC, work)
        proc = subprocess.run(
            ["make", "-C", str(kdir), f"M={work}", "modules"],
            capture_output=True,
            text=True,
            check=False,
            env=top_level_make_env(),  # not a sub-make of a calling make
        )
        error = record_build(proc, work, out, [f"{DRIVER}.ko"])
        if error is not None:
            raise DriverError(
                f"{DRIVER} does not build for {release}: {error}",
                operation="build module",
                hint=f"the whole log is in {out / 'build.log'}",
            )
    return built_for(release)


def installed_path(release: str | None = None) -> Path | None:
    """The module modprobe would load from the kernel's module tree (DKMS puts it
    there), if any."""
    argv = ["modinfo", "-n", DRIVER]
    if release:
        argv[1:1] = ["-k", release]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    path = proc.stdout.strip()
    return Path(path) if proc.returncode == 0 and path.startswith("/") else None


def _run_root(argv: list[str], operation: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise DriverError(
            f"{argv[0]} not found",
            operation=operation,
            hint="install kmod (the package with modprobe and insmod)",
        ) from exc
    if proc.returncode != 0:
        stderr = proc.stderr.strip()
        root = "run it as root; " if os.geteuid() != 0 else ""
        raise DriverError(
            f"`{' '.join(argv)}` failed: {stderr or f'exit {proc.returncode}'}",
            operation=operation,
            hint=f"{root}the module must be built for the running kernel "
            f"({os.uname().release}); `dmesg` tells more",
        )


def load(ko: Path | None = None) -> Path:
    """Load the module, after its dependency vfio-pci-core: ``ko``, else the one
    built for the running kernel, else the one installed (DKMS).  Returns the
    file loaded; a no-op if already loaded (then returns /sys/module/...)."""
    if is_loaded():
        return Path("/sys/module", DRIVER)
    release = os.uname().release
    ko = ko or built_for(release)
    if ko.exists():
        _run_root(["modprobe", "vfio-pci-core"], "load module")
        _run_root(["insmod", str(ko)], "load module")
        return ko
    installed = installed_path()
    if installed is not None:
        _run_root(["modprobe", DRIVER], "load module")
        return installed
    error = build_error(release)
    raise DriverError(
        f"{DRIVER} does not build for {release}: {error}"
        if error
        else f"{DRIVER} is neither built for {release} ({ko}) nor installed",
        operation="load module",
        hint=load_hint(),
    )


def unload() -> None:
    """rmmod; fails (DriverError) while a device is bound or open."""
    if not is_loaded():
        return
    proc = subprocess.run(["rmmod", DRIVER], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DriverError(
            f"rmmod {DRIVER} failed: {proc.stderr.strip()}",
            operation="unload module",
            hint="unbind its devices first",
        )


# --- status --------------------------------------------------------------------


def _modinfo_field(target: str, field: str) -> str | None:
    try:
        proc = subprocess.run(
            ["modinfo", "-F", field, target], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    value = proc.stdout.strip()
    return value if proc.returncode == 0 and value else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class Status:
    release: str
    loaded: bool
    loaded_version: str | None  # MODULE_VERSION of the loaded module
    loaded_srcversion: str | None
    loaded_from: Path | None  # the built or installed file whose srcversion matches
    built: Path | None  # built for this release (pyvfio kmod build, make kmod)
    built_srcversion: str | None
    build_error: str | None
    installed: Path | None  # in the kernel's module tree (DKMS)
    installed_srcversion: str | None
    dkms: str | None  # `dkms status` for the package; None without dkms
    stand_in: list[Path]  # the vfio-pci stand-in in updates/ (opt-in)
    headers: Path | None  # /lib/modules/REL/build, where present

    @property
    def available(self) -> bool:
        """Something `pyvfio kmod load` can load on this kernel."""
        return self.built is not None or self.installed is not None


def status(release: str | None = None) -> Status:
    running = os.uname().release
    release = release or running
    here = release == running
    loaded = here and is_loaded()
    sys_module = Path("/sys/module", DRIVER)
    loaded_srcversion = _read(sys_module / "srcversion") if loaded else None
    ko = built_for(release)
    built = ko if ko.exists() else None
    built_src = _modinfo_field(str(ko), "srcversion") if built else None
    installed = installed_path(release)
    installed_src = _modinfo_field(str(installed), "srcversion") if installed else None
    loaded_from = None
    if loaded_srcversion:
        if loaded_srcversion == built_src:
            loaded_from = built
        elif loaded_srcversion == installed_src:
            loaded_from = installed
    dkms = None
    if shutil.which("dkms"):
        proc = subprocess.run(
            ["dkms", "status", "-m", DKMS_NAME, "-k", release],
            capture_output=True,
            text=True,
            check=False,
        )
        dkms = proc.stdout.strip() or "not added"
    headers = kernel_dir(release)
    return Status(
        release=release,
        loaded=loaded,
        loaded_version=_read(sys_module / "version") if loaded else None,
        loaded_srcversion=loaded_srcversion,
        loaded_from=loaded_from,
        built=built,
        built_srcversion=built_src,
        build_error=build_error(release),
        installed=installed,
        installed_srcversion=installed_src,
        dkms=dkms,
        stand_in=sorted(Path("/lib/modules", release, "updates").glob(STAND_IN + "*")),
        headers=headers if (headers / "Makefile").is_file() else None,
    )


# --- DKMS ----------------------------------------------------------------------


def dkms_source() -> Path:
    """Where DKMS keeps the package's source (what `dkms add` copies)."""
    return Path("/usr/src", f"{DKMS_NAME}-{__version__}")


def dkms_install(release: str | None = None, kdir: Path | None = None) -> None:
    """dkms add, build and install for ``release`` (default: the running kernel),
    against ``kdir`` (default: /lib/modules/RELEASE/build); DKMS then rebuilds
    the module for every kernel installed later."""
    if shutil.which("dkms") is None:
        raise DriverError(
            "dkms is not installed",
            operation="install module",
            hint="install it (Debian, Ubuntu: apt install dkms; Fedora: dnf install dkms), "
            "or build without it: `pyvfio kmod build`",
        )
    release, kdir = _headers(release, kdir, "install module")
    version = ["-m", DKMS_NAME, "-v", __version__]
    added = subprocess.run(
        ["dkms", "status", *version], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not added:
        _dkms(["dkms", "add", str(KMOD_SRC)])
    _dkms(["dkms", "build", *version, "-k", release, "--kernelsourcedir", str(kdir)])
    _dkms(["dkms", "install", *version, "-k", release, "--force"])


def dkms_uninstall() -> None:
    """dkms remove of this version for every kernel; the source copy goes too."""
    if shutil.which("dkms") is None:
        raise DriverError("dkms is not installed", operation="uninstall module")
    _dkms(["dkms", "remove", "-m", DKMS_NAME, "-v", __version__, "--all"])
    shutil.rmtree(dkms_source(), ignore_errors=True)


def _dkms(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        raise DriverError(
            f"`{' '.join(argv)}` failed: {' / '.join(output[-3:]) or f'exit {proc.returncode}'}",
            operation="DKMS",
            hint="run it as root" if os.geteuid() != 0 else "its make.log is under /var/lib/dkms",
        )
