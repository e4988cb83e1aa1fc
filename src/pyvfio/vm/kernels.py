# SPDX-License-Identifier: Apache-2.0
"""The kernel matrix: Debian kernels fetched into a cache, and the module built for each.

Each series (6.1, 6.12, 7.3) is named by a Debian metapackage in a suite;
the release it points at is resolved from the package lists, never written
down here.  Nothing is installed on the host and its sources and package
state are not touched: each Debian base (bookworm, trixie) gets private
sources, lists, cache and status under the cache (apt.conf settings such as a
proxy still apply), the mirror being the one the host's own apt uses.

For one release the cache holds::

    kernels/REL/root/          the image packages, extracted (boot/, lib/modules/)
    kernels/REL/kernel.json    series, release, base (also kernels/SERIES.json)
    roots/BASE/                a minimal debootstrap root of that Debian base,
                               with the release's headers installed: the module
                               is built there with the compiler and kbuild tools
                               the kernel was built with (7.3's need glibc 2.38,
                               which bookworm lacks)

virtme-ng boots ``root/boot/vmlinuz-REL`` and links ``root/lib/modules/REL``
into the guest by itself, so the host's /lib/modules is never written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .._sys import top_level_make_env
from .._where import setup_hint
from ..errors import VmError
from ..kmod import record_build

log = logging.getLogger(__name__)

CACHE = Path(os.environ.get("PYVFIO_CACHE", "/var/lib/pyvfio"))
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Source:
    """Where one kernel series comes from, for one Debian base."""

    base: str  # Debian codename whose root builds the module
    image: str  # metapackage (or versioned package) depending on linux-image-REL
    headers: str  # the matching headers metapackage
    release: str | None = None  # apt default release (backports are pinned low)


# Per series, its sources in order of preference; the host's own base wins.
SERIES: dict[str, tuple[Source, ...]] = {
    "6.1": (Source("bookworm", "linux-image-amd64", "linux-headers-amd64"),),
    "6.12": (
        Source("trixie", "linux-image-amd64", "linux-headers-amd64"),
        Source("bookworm", "linux-image-6.12-amd64", "linux-headers-6.12-amd64"),
    ),
    "7.3": (
        Source("trixie", "linux-image-amd64", "linux-headers-amd64", release="trixie-backports"),
    ),
}
# Built here, not fetched (debugkernel.py): iommufd, the VFIO cdev, lockdep.
DEBUG_SERIES = "7.3-debug"
DEFAULT_SERIES = ("6.1", "6.12", "7.3", DEBUG_SERIES)
# The suites a base's private apt state lists.
SUITES = {
    "bookworm": ("bookworm", "bookworm-updates"),
    "trixie": ("trixie", "trixie-updates", "trixie-backports"),
}


@dataclass(frozen=True)
class Kernel:
    """One fetched kernel of the matrix."""

    series: str
    release: str  # e.g. 6.12.117-amd64
    base: str  # "" for a kernel built here (the debug kernel)
    tree: str = ""  # a kernel built here: its build tree, which modules build against

    @property
    def root(self) -> Path:
        return CACHE / "kernels" / self.release / "root"

    @property
    def image(self) -> Path:
        return image_path(self.release)

    @property
    def build_root(self) -> Path:
        return CACHE / "roots" / self.base

    @property
    def headers(self) -> str:
        """The headers tree, as a path inside :attr:`build_root` (the host's
        root for a kernel built here)."""
        return self.tree or f"/usr/src/linux-headers-{self.release}"


def image_path(release: str) -> Path:
    """Where the fetched image of ``release`` lives (it may not be fetched)."""
    return CACHE / "kernels" / release / "root" / "boot" / f"vmlinuz-{release}"


def _of_series(release: str, series: str) -> bool:
    """``release`` (6.12.117+deb12-amd64) belongs to ``series`` (6.12, not 6.1)."""
    return release == series or release.startswith((series + ".", series + "-"))


def _words(text: str) -> list[str]:
    """The series named in a comma- or space-separated list."""
    return [w for w in re.split(r"[,\s]+", text.strip()) if w]


def host_base() -> str:
    """The host's Debian codename (bookworm, trixie), from os-release."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=(\S+)", text, re.M)
    return match.group(1) if match else ""


def _run(argv: Sequence[str], what: str, **kwargs: object) -> str:
    log.debug("run %s", " ".join(argv))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise VmError(
            f"{argv[0]} not found",
            operation=what,
            hint="`pyvfio vm check` names each missing tool and its package",
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise VmError(f"`{' '.join(argv[:4])} ...` failed:\n{tail}", operation=what)
    return str(proc.stdout)


# --- the mirror the host uses ------------------------------------------------


def host_mirrors() -> tuple[str, str]:
    """(archive URI, security URI) that the host's apt already uses for Debian."""
    out = _run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(ORIGIN)"],
        "find mirror",
    )
    archive = security = ""
    for line in out.splitlines():
        uri, release, origin = [*line.split(), "", ""][:3]
        if origin != "Debian":  # a third-party repository with a Debian-like suite
            continue
        if release in SUITES or release in {"sid", "unstable", "testing", "stable"}:
            archive = archive or uri
        elif release.endswith("-security"):
            security = security or uri
    if not archive:
        raise VmError(
            "the host's apt lists no Debian archive",
            operation="find mirror",
            hint="run `apt-get update` with a Debian source configured",
        )
    # A bare debootstrap root lists no security suite: its usual neighbour.
    security = security or re.sub(r"/debian/?$", "/debian-security/", archive)
    return archive.rstrip("/"), security.rstrip("/")


def sources_text(base: str, archive: str, security: str) -> str:
    """A deb822 sources file for one Debian base with updates, backports, security."""
    return (
        f"Types: deb\nURIs: {archive}\nSuites: {' '.join(SUITES[base])}\n"
        f"Components: main\nSigned-By: {KEYRING}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {base}-security\n"
        f"Components: main\nSigned-By: {KEYRING}\n"
    )


# --- private apt state per base ----------------------------------------------


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists, cache and status."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.dir = CACHE / "apt" / base

    def _options(self, release: str | None) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": "/dev/null",
            "Dir::Etc::SourceParts": str(self.dir / "sources"),
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": "/dev/null",
            "Dir::State::Lists": str(self.dir / "lists"),
            "Dir::State::status": "/dev/null",
            "Dir::Cache": str(self.dir / "cache"),
            "APT::Sandbox::User": "root",  # downloads land in a root-only cache
        }
        if release:
            opts["APT::Default-Release"] = release
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def update(self, archive: str, security: str) -> None:
        for sub in ("sources", "lists/partial", "cache/archives/partial"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "sources" / "debian.sources").write_text(
            sources_text(self.base, archive, security)
        )
        _run(["apt-get", *self._options(None), "-qq", "update"], f"apt update ({self.base})")

    def depends(self, package: str, release: str | None) -> list[str]:
        out = _run(
            ["apt-cache", *self._options(release), "depends", package],
            f"resolve {package} ({self.base})",
        )
        return re.findall(r"^\s*Depends: (\S+)", out, re.M)

    def candidate(self, package: str, release: str | None) -> str | None:
        """The version apt would install of ``package``, None if it has none."""
        out = _run(["apt-cache", *self._options(release), "policy", package], f"find {package}")
        match = re.search(r"Candidate: (\S+)", out)
        return match.group(1) if match and match.group(1) != "(none)" else None

    def download(self, packages: Sequence[str], release: str | None, into: Path) -> list[Path]:
        into.mkdir(parents=True, exist_ok=True)
        _run(
            ["apt-get", *self._options(release), "-qq", "download", *packages],
            f"download {packages[0]}",
            cwd=into,
        )
        return sorted(into.glob("*.deb"))


def _release_from(depends: Sequence[str], kind: str) -> str | None:
    for dep in depends:
        match = re.fullmatch(rf"linux-{kind}-(\d\S*)", dep)
        if match:
            return match.group(1)
    return None


def resolve(series: str, apt: PrivateApt, source: Source) -> str:
    """The release ``source``'s metapackage points at, checked against ``series``."""
    release = _release_from(apt.depends(source.image, source.release), "image")
    headers = _release_from(apt.depends(source.headers, source.release), "headers")
    if release is None or release != headers:
        raise VmError(
            f"{source.image} and {source.headers} ({source.base}) point at {release} and {headers}",
            operation=f"resolve kernel {series}",
            hint=f"the mirror may be mid-update: {setup_hint(series)} again later",
        )
    if not _of_series(release, series):
        raise VmError(
            f"{source.image} ({source.base}) now points at {release}, not a {series} kernel",
            operation=f"resolve kernel {series}",
            hint="update pyvfio.vm.kernels.SERIES",
        )
    return release


def check_series(series: str) -> None:
    if series not in SERIES and series != DEBUG_SERIES:
        raise VmError(
            f"unknown kernel series {series!r}",
            operation="pick kernel",
            hint=f"use one of {', '.join([*SERIES, DEBUG_SERIES])}",
        )


def choose_source(series: str, base: str | None = None) -> Source:
    check_series(series)
    sources = SERIES.get(series)
    if sources is None:
        raise VmError(
            f"{series} is built here, not fetched",
            operation="pick kernel",
            hint="run `pyvfio vm debug-kernel`",
        )
    base = base if base is not None else host_base()
    return next((s for s in sources if s.base == base), sources[0])


# --- fetch ---------------------------------------------------------------------


def _kernel_json(release: str) -> Path:
    return CACHE / "kernels" / release / "kernel.json"


def fetch(series: str, archive: str, security: str) -> Kernel:
    """Resolve, download and extract ``series``; install its headers in a build root."""
    with cache_lock():
        return _fetch(series, archive, security)


def _fetch(series: str, archive: str, security: str) -> Kernel:
    source = choose_source(series)
    apt = PrivateApt(source.base)
    apt.update(archive, security)
    release = resolve(series, apt, source)
    kernel = Kernel(series, release, source.base)
    if not kernel.image.exists():
        _extract_image(kernel, apt, source)
    ensure_build_root(source.base, archive, security)
    _install_headers(kernel, source)
    record = json.dumps(asdict(kernel), indent=1) + "\n"
    _kernel_json(release).write_text(record)
    (CACHE / "kernels" / f"{series}.json").write_text(record)
    return kernel


def _extract_image(kernel: Kernel, apt: PrivateApt, source: Source) -> None:
    image_pkg = f"linux-image-{kernel.release}"
    # 6.1/6.12: one package; 7.3 splits it into -binary, -modules, -base.
    parts = [d for d in apt.depends(image_pkg, source.release) if kernel.release in d]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        debs = apt.download([image_pkg, *parts], source.release, Path(tmp) / "debs")
        staging = Path(tmp) / "root"
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(staging)], f"extract {deb.name}")
        # merged-/usr packages (trixie) ship usr/lib/modules only
        if not (staging / "lib").exists() and (staging / "usr" / "lib").is_dir():
            (staging / "lib").symlink_to("usr/lib")
        # 7.3 ships the image as usr/lib/modules/REL/vmlinuz only
        boot = staging / "boot" / f"vmlinuz-{kernel.release}"
        if not boot.exists() and (staging / "lib/modules" / kernel.release / "vmlinuz").exists():
            boot.parent.mkdir(exist_ok=True)
            boot.symlink_to(f"../lib/modules/{kernel.release}/vmlinuz")
        if not boot.exists():
            raise VmError(
                f"no vmlinuz-{kernel.release} in {', '.join(d.name for d in debs)}",
                operation=f"fetch kernel {kernel.series}",
            )
        _run(["depmod", "-b", str(staging), kernel.release], "depmod")
        kernel.root.parent.mkdir(parents=True, exist_ok=True)
        if kernel.root.exists():
            shutil.rmtree(kernel.root)
        staging.rename(kernel.root)


def ensure_build_root(base: str, archive: str, security: str) -> Path:
    """A minimal debootstrap root of ``base`` with a compiler, made once."""
    root = CACHE / "roots" / base
    if (root / ".pyvfio-ready").exists():
        return root
    tmp = root.with_name(base + ".tmp")
    if tmp.exists():  # an interrupted debootstrap may have left /proc mounted
        _unmount_under(tmp)
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=gcc,make,libc6-dev,ca-certificates,perl",
            base,
            str(tmp),
            archive,
        ],
        f"debootstrap {base}",
    )
    # An https mirror behind a local CA (as on these machines) needs its certificate.
    extra_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for cert in extra_cas:
        shutil.copy2(cert, tmp / "usr/local/share/ca-certificates" / cert.name)
    if extra_cas:
        _chroot(tmp, ["update-ca-certificates"], f"CA certificates in {base} root")
    (tmp / "etc/apt/sources.list").write_text("")
    (tmp / "etc/apt/sources.list.d/debian.sources").write_text(
        sources_text(base, archive, security)
    )
    (tmp / ".pyvfio-ready").touch()  # _install_headers refreshes its lists
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


def _unmount_under(path: Path) -> None:
    prefix = f"{path.resolve()}/"
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One writer of the cache at a time (two checkouts may run `make setup` at once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# What runs in a build root sees its own tools, not the caller's environment.
_CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "DEBIAN_FRONTEND": "noninteractive",
    "HOME": "/root",
}


def _chroot(root: Path, argv: Sequence[str], what: str) -> str:
    return _run(["chroot", str(root), *argv], what, env=_CHROOT_ENV)


def _install_headers(kernel: Kernel, source: Source) -> None:
    root = kernel.build_root
    # W=1 runs scripts/kernel-doc, which needs perl's Pod::Usage (not in minbase).
    if (root / kernel.headers.lstrip("/") / "Makefile").exists() and any(
        root.glob("usr/share/perl/*/Pod/Usage.pm")
    ):
        return
    release = ["-t", source.release] if source.release else []
    _chroot(kernel.build_root, ["apt-get", "-qq", "update"], f"apt update in {kernel.base} root")
    _chroot(
        kernel.build_root,
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            *release,
            f"linux-headers-{kernel.release}",
            "perl",
        ],
        f"install headers {kernel.release}",
    )


# --- lookup --------------------------------------------------------------------


def cached(series: str) -> Kernel:
    """A series fetched by ``make setup`` (``pyvfio vm fetch``)."""
    index = CACHE / "kernels" / f"{series}.json"
    try:
        record = json.loads(index.read_text())
        return Kernel(**{f.name: record[f.name] for f in fields(Kernel) if f.name in record})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise VmError(
            f"kernel {series} is not fetched ({index})",
            operation="pick kernel",
            hint=setup_hint(series),
        ) from exc


def host_default_series() -> str | None:
    """The series of the host's linux-image-amd64 candidate, if it is in SERIES."""
    proc = subprocess.run(
        ["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=False
    )
    release = _release_from(re.findall(r"Depends: (\S+)", proc.stdout), "image")
    if release is None:
        return None
    return next((s for s in SERIES if _of_series(release, s)), None)


def series_list(words: str) -> set[str]:
    """An explicit set of series (empty string: none), each checked."""
    names = set(_words(words))
    for name in names:
        check_series(name)
    return names


def matrix(requested: str | None = None) -> list[str]:
    """The series to test: ``requested`` or $KERNELS (comma/space lists), else the
    default set plus the host's own series."""
    requested = requested or os.environ.get("KERNELS")
    if requested and requested.strip():
        names = []
        for word in _words(requested):
            name = (host_default_series() or "") if word == "default" else word
            check_series(name)
            if name not in names:
                names.append(name)
        return names
    names = list(DEFAULT_SERIES)
    host = host_default_series()
    if host and host not in names:
        names.append(host)
    return names


# --- the module, per kernel ----------------------------------------------------


@dataclass(frozen=True)
class ModuleBuild:
    kernel: Kernel
    ko: Path | None
    error: str | None  # first error line when the build failed (full log: build.log)

    @property
    def compile_error(self) -> bool:
        """The build failed because the module's own C does not compile."""
        return self.error is not None and bool(COMPILE_ERROR.match(self.error))


# The driver, and the same driver as the module vfio-pci (kmod/Kbuild's stand-in).
MODULE_FILES = ("vfio_pci_cookie.ko", "vfio-pci.ko")
COMPILE_ERROR = re.compile(r"vfio_pci_(cookie|stand_in)\.c:\d+:\d+: error: ")


@contextlib.contextmanager
def _proc_mounted(root: Path) -> Iterator[None]:
    target = root / "proc"
    if os.path.ismount(target):
        yield
        return
    _run(["mount", "-t", "proc", "proc", str(target)], f"mount /proc in {root}")
    try:
        yield
    finally:
        _run(["umount", str(target)], f"unmount /proc in {root}")


def build_module(kernel: Kernel, src: Path, out: Path) -> ModuleBuild:
    """Build kmod/ for ``kernel`` in its build root (a Debian kernel) or against
    its tree (the debug kernel, built with the host's compiler); the .ko and
    log go to ``out``."""
    with cache_lock():  # the work directory in the build root is shared
        return _build_module(kernel, src, out)


def _build_module(kernel: Kernel, src: Path, out: Path) -> ModuleBuild:
    if kernel.tree:
        work = Path(kernel.tree).parent / "kmod-work"
    else:
        work = kernel.build_root / "var/tmp/pyvfio-kmod" / kernel.release
    if work.exists():  # nothing stale: files gone from kmod/ must not build
        shutil.rmtree(work)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd"))
    out.mkdir(parents=True, exist_ok=True)
    make = [
        "make",
        "-C",
        kernel.headers,
        f"M={work}" if kernel.tree else f"M=/{work.relative_to(kernel.build_root)}",
        "W=1",
        "VFIO_PCI_STAND_IN=y",  # the client tests load the vfio-pci stand-in too
        "modules",
    ]
    if kernel.tree:
        proc = subprocess.run(
            make, capture_output=True, text=True, check=False, env=top_level_make_env()
        )
    else:
        with _proc_mounted(kernel.build_root):  # 7.3's objtool reads /proc/self/limits
            proc = subprocess.run(
                ["chroot", str(kernel.build_root), *make],
                capture_output=True,
                text=True,
                check=False,
                env=_CHROOT_ENV,
            )
    error = record_build(proc, work, out, MODULE_FILES)
    return ModuleBuild(kernel, None if error else out / MODULE_FILES[0], error)
