# SPDX-License-Identifier: Apache-2.0
"""Boot a kernel of the matrix under QEMU with virtme-ng and run one command.

The guest sees the host's root filesystem (read-only, with writable
overlays), so the host's python3, this checkout and its virtualenv are all
there.  It gets a q35 machine with an emulated Intel IOMMU and the devices
pyvfio is tested against.  A small wrapper script runs the command inside the
guest, then saves the exit status and the kernel log into a directory shared
with the host; the host judges that log with :mod:`pyvfio.vm.klog`.
"""

from __future__ import annotations

import codecs
import compileall
import contextlib
import fcntl
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..errors import VmArgumentError, VmError
from . import klog, virtme_run
from .kernel import default_kernel

# What stops `vm run` and with it its guest (exit status 128 + the number).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# PCI IDs of the emulated devices, for finding them in the guest: addresses
# shift with vng's options, IDs do not.
#: (vendor, device) of QEMU's ``edu`` teaching device: BAR0 1 MiB of
#: registers, DMA, MSI.
EDU_ID = (0x1234, 0x11E8)
#: (vendor, device) of the e1000e NICs ``--nics`` adds (the DPDK tests').
E1000E_ID = (0x8086, 0x10D3)
#: (vendor, device) of ``ivshmem-plain``: BAR2 is 4 MiB of RAM, 64-bit prefetchable.
IVSHMEM_ID = (0x1AF4, 0x1110)
#: (vendor, device) of QEMU's ``nvme`` controller: BAR0 registers and the
#: MSI-X table, BAR2 a 16 MiB controller memory buffer; the guest's nvme
#: driver has it, with a 16 MiB disk.
NVME_ID = (0x1B36, 0x0010)
#: (vendor, device) of the NVMe controller with SR-IOV that the ``--device``
#: values of :data:`SRIOV_NVME_DEVICES` add (``use-intel-id``: other IDs than
#: the built-in nvme's, whose tests expect one); its VFs have the same IDs.
NVME_SRIOV_ID = (0x8086, 0x5845)
#: ``--device`` values of an NVMe controller with SR-IOV, 2 VFs: QEMU's nvme
#: needs an ``nvme-subsys`` for SR-IOV, and no CMB.  Its VFs stay offline
#: until the PF's driver gives them queues (examples/nvme_sriov.py).
SRIOV_NVME_DEVICES = (
    "nvme-subsys,id=pyvfio-subsys",
    "nvme,serial=pyvfio-sriov,subsys=pyvfio-subsys,use-intel-id=on,"
    "sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2",
)
#: (vendor, device) of QEMU's ``pci-testdev``, which ``--device pci-testdev`` adds.
PCI_TESTDEV_ID = (0x1B36, 0x0005)

IVSHMEM_SIZE = "4M"
NVME_CMB_MB = 16
NVME_IMAGE = "nvme.img"  # in the run's directory, made by _write_guest_script
NVME_IMAGE_BYTES = 16 << 20


# One host thread runs all vCPUs.  Multi-threaded TCG in Debian 13's QEMU 10.0
# aborted once (iotlb_to_section assertion) while one vCPU toggled a BAR's
# memory decode and another accessed it, in the cookie stress test; the guest
# still has 2 CPUs, so its threads still interleave and preempt each other.
_TCG_OPTS = ["-accel", "tcg,thread=single"]


def nic_qemu_opts(count: int) -> list[str]:
    """``count`` e1000e NICs on one QEMU hub: what one port sends, the others receive."""
    opts: list[str] = []
    for n in range(count):
        opts += ["-netdev", f"hubport,id=pyvfio-net{n},hubid=0"]
        opts += ["-device", f"e1000e,netdev=pyvfio-net{n},mac=52:54:00:12:34:{0x60 + n:02x}"]
    return opts


def large_bar_qemu_opts(sizes: Sequence[int], rundir: Path) -> list[str]:
    """An ivshmem-plain device per size, its BAR2 that many bytes of a sparse
    file in ``rundir``: QEMU maps the file shared, so a page costs host memory
    only once the guest touches it, and a 64 GiB BAR costs nothing to boot."""
    opts: list[str] = []
    for n, size in enumerate(sizes):
        backend = f"memory-backend-file,id=pyvfio-bar{n},size={size},share=on"
        opts += ["-object", f"{backend},mem-path={rundir / f'bar{n}.img'}"]
        opts += ["-device", f"ivshmem-plain,memdev=pyvfio-bar{n}"]
    return opts


#: The emulated IOMMU's address width (intel-iommu ``aw-bits``).
IOMMU_ADDRESS_BITS = 48


def device_qemu_opts(options: VmOptions, rundir: Path) -> list[str]:
    """QEMU arguments for the machine and the emulated PCI devices: the
    built-in set (its disk image and any large BAR's file in ``rundir``), then
    what ``options`` adds: NICs, large BARs, ``objects`` and ``devices``, last so
    that the built-in set keeps its addresses and IOMMU groups."""
    added = large_bar_qemu_opts([_size(s, "large_bars") for s in options.large_bars], rundir)
    for obj in options.objects:
        added += ["-object", obj]
    for dev in options.devices:
        added += ["-device", dev]
    return [
        # split irqchip is what intremap needs under KVM; TCG accepts it too
        "-machine",
        "q35,kernel-irqchip=split",
        "-device",
        # 48 address bits: QEMU 7.2's default is 39 (Debian 13's QEMU 10.0 has
        # 48), and identity IOVAs of user addresses need 47.
        f"intel-iommu,intremap=on,caching-mode=on,aw-bits={IOMMU_ADDRESS_BITS}",
        "-device",
        "edu",
        "-object",
        f"memory-backend-ram,id=pyvfio-ivshmem,size={IVSHMEM_SIZE}",
        "-device",
        "ivshmem-plain,memdev=pyvfio-ivshmem",
        "-drive",
        f"file={rundir / NVME_IMAGE},if=none,id=pyvfio-nvme,format=raw",
        "-device",
        f"nvme,serial=pyvfio0,drive=pyvfio-nvme,cmb_size_mb={NVME_CMB_MB}",
        *nic_qemu_opts(options.nics),
        *added,
    ]


# Bounds of VmOptions (see VmOptions.check).
# The smallest guest accepted: 128M boots 6.1 with these devices and runs a
# shell command (measured: `free` shows 59 MiB total, 16 MiB available), too
# small for much more; 1G is the default, the DPDK boots take 4G.
MIN_MEMORY = 128 << 20
# Each NIC takes a slot on the guest's PCI root bus, which the other devices and
# every --rwdir (a virtio-9p device each) share; 2 are what the DPDK tests use.
MAX_NICS = 8
# --device, --object and --large-bar each: the same slots.
MAX_EXTRA_DEVICES = 8
# A large BAR: a power of two (as every BAR), from 1 MiB to 1 TiB; 64 GiB BARs
# on sparse files were seen to work (docs/testing.md).
LARGE_BAR_MIN, LARGE_BAR_MAX = 1 << 20, 1 << 40
# What a -device or -object value starts with: its type, then ",key=value"s.
_QEMU_TYPE = re.compile(r"[A-Za-z0-9_.-]+")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)", re.IGNORECASE)
_UNITS = {"": 20, "K": 10, "M": 20, "G": 30, "T": 40}  # no suffix: MiB, as QEMU's -m
# What virtme-ng passes on as an --rwdir: it splits its own command line at
# spaces and accepts only these characters in a path.
_RWDIR_PATH = re.compile(r"[A-Za-z0-9_+/.-]+")
KVM_DEVICE = Path("/dev/kvm")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def memory_bytes(text: str) -> int:
    """The size a ``--memory`` value names: a number with K, M, G or T
    (either case), no suffix meaning MiB as in QEMU's ``-m``; e.g. ``1G``, ``1536M``."""
    return _size(text, "memory")


def _size(text: str, parameter: str) -> int:
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        raise VmArgumentError(
            parameter,
            f"{text!r} is not a size: give a number with K, M, G or T, e.g. 1G or 512M "
            "(no suffix: MiB)",
        )
    number, unit = match.groups()
    whole, _, fraction = number.partition(".")
    shift = _UNITS[unit.upper()]
    size = (int(whole + fraction) << shift) // int(10 ** len(fraction))
    if size % 1024:
        raise VmArgumentError(parameter, f"{text!r} is not a whole number of KiB")
    return size


def _vng_memory(text: str) -> str:
    """``--memory`` as virtme-ng takes it: only N, NK, NM and NG (upper case) get
    through it to QEMU unchanged."""
    size = memory_bytes(text)
    return f"{size >> 20}M" if size % (1 << 20) == 0 else f"{size >> 10}K"


def host_memory() -> int | None:
    """The host's RAM in bytes (MemTotal), None if /proc does not say."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    return int(match.group(1)) << 10 if match else None


def _human(size: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{size}"


def _hardware_virtualisation() -> bool:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"^flags\s*:.*\b(vmx|svm)\b", cpuinfo, re.M))


def _is_kernel_image(path: Path) -> bool | None:
    """An x86 bzImage (``HdrS`` at 0x202) or an ELF file; None if unreadable."""
    try:
        with open(path, "rb") as image:
            head = image.read(0x206)
    except OSError:
        return None
    return head[:4] == b"\x7fELF" or head[0x202:0x206] == b"HdrS"


def _check_type(parameter: str, value: object, kinds: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise TypeError(f"vm run: {parameter} must be {what}, not bool")
    if not isinstance(value, kinds):
        raise TypeError(f"vm run: {parameter} must be {what}, not {type(value).__name__}")


def _check_seconds(parameter: str, value: object) -> None:
    _check_type(parameter, value, (int, float), "a number of seconds")
    assert isinstance(value, (int, float))
    try:
        seconds = float(value)
    except OverflowError:  # an int past float's range
        seconds = math.inf
    if not math.isfinite(seconds) or seconds <= 0:
        raise VmArgumentError(parameter, f"{seconds:g} is not a number of seconds above 0")


def _check_strings(parameter: str, values: object, what: str) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
        raise TypeError(
            f"vm run: {parameter} must be a tuple of {what}, not {type(values).__name__}"
        )


@dataclass(frozen=True)
class VmOptions:
    """How :func:`run` boots the guest.  :meth:`check` (which :func:`run`
    calls before it starts anything) refuses what cannot work."""

    #: The kernel image to boot; None: the host's own series, from the cache.
    kernel: Path | None = None
    #: The guest's RAM: N with K, M, G or T (no suffix: MiB); 128M to the host's RAM.
    memory: str = "1G"
    #: Virtual CPUs: 1 to the host's CPU count.
    cpus: int = 2
    #: Use KVM; /dev/kvm may exist without working, so TCG is the default.
    kvm: bool = False
    #: Seconds the whole run may take (> 0), output or not; then the guest is killed.
    timeout: float = 3600.0
    #: Seconds (> 0) without a byte of output after which the guest is killed as stuck.
    silence: float = 300.0
    #: Show the guest console (boot messages, panics).
    verbose: bool = False
    #: Let the guest cache the host's root filesystem (9p ``cache=loose``):
    #: Python starts about twice as fast, but a file the host changes during
    #: the run may be seen as it was.  The ``rwdirs`` are never cached.
    cached_root: bool = True
    #: Kernel command-line parameters added (``nopat``, ``hugepages=1`` ...).
    append: tuple[str, ...] = ()
    #: e1000e NICs for the client tests (DPDK), 0 to 8; added last, so the
    #: other devices keep their addresses.
    nics: int = 0
    #: Extra PCI devices, each a QEMU ``-device`` value (``"pci-testdev"``,
    #: ``"edu"``); added after the built-in set, which keeps its addresses.
    devices: tuple[str, ...] = ()
    #: QEMU ``-object`` values the extra devices use (``"memory-backend-ram,id=m,size=1M"``).
    objects: tuple[str, ...] = ()
    #: Sizes (``"1G"``, ``"64G"``; powers of two, 1M to 1T): an ivshmem-plain
    #: device each whose BAR2 is a sparse file of that size, costing no host RAM.
    large_bars: tuple[str, ...] = ()
    #: Host directories the guest may write (where results go).
    rwdirs: tuple[Path, ...] = ()
    #: Environment variables set for the command in the guest.
    env: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`VmArgumentError` (a :class:`VmError` and an
        :class:`InvalidArgumentError`) for a value that cannot work, naming the
        field, or TypeError for a value of the wrong type.  Needs no QEMU,
        virtme-ng or kernel cache: it runs before any of them is looked for."""
        self._check_kernel()
        self._check_memory()
        _check_type("cpus", self.cpus, int, "an int")
        cpus = os.cpu_count() or 1
        if not 1 <= self.cpus <= cpus:
            raise VmArgumentError(
                "cpus", f"{self.cpus} is not between 1 and the host's {cpus} CPUs"
            )
        _check_type("kvm", self.kvm, bool, "a bool")
        if self.kvm:
            self._check_kvm()
        for name in ("timeout", "silence"):
            _check_seconds(name, getattr(self, name))
        _check_type("verbose", self.verbose, bool, "a bool")
        _check_type("cached_root", self.cached_root, bool, "a bool")
        _check_strings("append", self.append, "strings")
        for arg in self.append:
            self._check_append(arg)
        _check_type("nics", self.nics, int, "an int")
        if not 0 <= self.nics <= MAX_NICS:
            raise VmArgumentError("nics", f"{self.nics} is not between 0 and {MAX_NICS}")
        for parameter in ("devices", "objects", "large_bars"):
            values = getattr(self, parameter)
            _check_strings(parameter, values, "strings")
            if len(values) > MAX_EXTRA_DEVICES:
                raise VmArgumentError(
                    parameter, f"{len(values)} given; at most {MAX_EXTRA_DEVICES}"
                )
            for value in values:
                _check_type(parameter, value, str, "a tuple of strings")
                if parameter == "large_bars":
                    _check_large_bar(value)
                else:
                    _check_qemu_value(parameter, value)
        _check_strings("rwdirs", self.rwdirs, "paths")
        for rwdir in self.rwdirs:
            _check_rwdir(rwdir)
        _check_type("env", self.env, Mapping, "a mapping of str to str")
        for name, value in self.env.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(
                    f"vm run: env must be a mapping of str to str, not {name!r}: {value!r}"
                )
            if not _ENV_NAME.fullmatch(name):
                raise VmArgumentError(
                    "env", f"{name!r} is no variable name (letters, digits and _)"
                )
            if "\0" in value:
                raise VmArgumentError("env", f"the value of {name} holds a NUL byte")

    def _check_kernel(self) -> None:
        if self.kernel is None:
            return
        _check_type("kernel", self.kernel, (str, os.PathLike), "a path or None")
        path = Path(self.kernel)
        if not path.exists():
            raise VmArgumentError("kernel", f"{str(path)!r}: no such file")
        if not path.is_file():
            raise VmArgumentError("kernel", f"{str(path)!r} is not a file (a kernel image)")
        if shlex.quote(str(path)) != str(path):
            raise VmArgumentError(
                "kernel",
                f"{str(path)!r}: virtme-ng cannot pass a path with spaces, quotes or "
                "other shell characters",
                hint="link or copy the image to a plain path",
            )
        if _is_kernel_image(path) is False:
            raise VmArgumentError(
                "kernel", f"{str(path)!r} is not a kernel image (no bzImage header, not ELF)"
            )

    def _check_memory(self) -> None:
        _check_type("memory", self.memory, str, "a size such as '1G'")
        size = memory_bytes(self.memory)
        if size < MIN_MEMORY:
            raise VmArgumentError(
                "memory", f"{self.memory!r} is below the guest's minimum of {_human(MIN_MEMORY)}"
            )
        total = host_memory()
        if total is not None and size > total:
            raise VmArgumentError(
                "memory", f"{self.memory!r} is more than the host's {_human(total)} of RAM"
            )

    @staticmethod
    def _check_kvm() -> None:
        if not KVM_DEVICE.exists():
            raise VmArgumentError(
                "kvm", f"{KVM_DEVICE} does not exist", hint="leave out --kvm (TCG)"
            )
        if not _hardware_virtualisation():
            raise VmArgumentError(
                "kvm",
                "this CPU has no hardware virtualisation (no vmx or svm in /proc/cpuinfo): "
                "KVM guests hang here",
                hint="leave out --kvm (TCG)",
            )

    @staticmethod
    def _check_append(arg: object) -> None:
        _check_type("append", arg, str, "a tuple of strings")
        assert isinstance(arg, str)
        if not arg.strip():
            raise VmArgumentError("append", f"{arg!r} is empty: give a kernel parameter")
        try:
            shlex.split(arg)  # as virtme-ng splits it
        except ValueError as exc:
            raise VmArgumentError("append", f"{arg!r}: {exc}") from None


def _check_qemu_value(parameter: str, value: str) -> None:
    if "\0" in value or "\n" in value:
        raise VmArgumentError(parameter, f"{value!r} holds a NUL or newline")
    kind = value.split(",", 1)[0]
    if not _QEMU_TYPE.fullmatch(kind) or kind.startswith("-"):
        what = "device" if parameter == "devices" else "object"
        raise VmArgumentError(
            parameter,
            f"{value!r} does not start with a QEMU {what} type "
            f"(`qemu-system-x86_64 -{what} help` lists them), e.g. "
            + (
                "pci-testdev or edu,addr=0x10"
                if what == "device"
                else "memory-backend-ram,id=m,size=1M"
            ),
        )
    if parameter == "objects" and not re.search(r",id=[^,]+", value):
        raise VmArgumentError(parameter, f"{value!r} has no id=, which its device names")


def _check_large_bar(value: str) -> None:
    size = _size(value, "large_bars")
    if not LARGE_BAR_MIN <= size <= LARGE_BAR_MAX or size & (size - 1):
        raise VmArgumentError(
            "large_bars", f"{value!r} is not a power of two from 1M to 1T (a BAR's size)"
        )


def _check_rwdir(rwdir: object) -> None:
    _check_type("rwdirs", rwdir, (str, os.PathLike), "a tuple of paths")
    assert isinstance(rwdir, (str, os.PathLike))
    path = Path(rwdir)
    if not path.exists():
        raise VmArgumentError("rwdirs", f"{str(path)!r}: no such directory")
    if not path.is_dir():
        raise VmArgumentError("rwdirs", f"{str(path)!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise VmArgumentError("rwdirs", f"{str(path)!r} is not writable by this user")
    if not _RWDIR_PATH.fullmatch(str(path.resolve())):
        raise VmArgumentError(
            "rwdirs",
            f"{str(path.resolve())!r}: virtme-ng passes only paths of letters, digits and _+/.-",
        )


@dataclass(frozen=True)
class GuestResult:
    """How a :func:`run` went."""

    #: The command's exit status in the guest.
    returncode: int
    #: What the run printed: the command's output and errors (with ``verbose``,
    #: the guest console too).
    output: str
    #: The guest kernel's log (dmesg) after the command.
    kernel_log: str
    #: The kernel log's problem lines (:func:`find_problems`).
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the command exited 0 and the kernel log is clean."""
        return self.returncode == 0 and not self.problems

    def check(self) -> GuestResult:
        """Raise VmError unless the command succeeded and the kernel log is clean."""
        if self.problems:
            raise VmError(
                "guest kernel log shows problems:\n  " + "\n  ".join(self.problems),
                operation="vm run",
            )
        if self.returncode != 0:
            raise VmError(f"guest command exited with status {self.returncode}", operation="vm run")
        return self


_GUEST_SCRIPT = """\
#!/bin/sh
# Runs inside the guest; written by pyvfio.vm.runner.
export PYVFIO_GUEST=1 PYTHONDONTWRITEBYTECODE=1
# The command may write here what it is running (a test's name): a guest
# killed as stuck is reported with it.
export PYVFIO_VM_RUNNING={rundir}/running
# The run's directory, shared with the host: --large-bar N's file is barN.img.
export PYVFIO_VM_RUNDIR={rundir}
{exports}
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
cd {cwd} || exit 125
{command}
rc=$?
dmesg > {rundir}/kernel.log
echo $rc > {rundir}/status
exit $rc
"""


def _find_vng() -> tuple[str, dict[str, str]]:
    # vng shells out to virtme-run, so the venv's bin must be on PATH too.
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    vng = shutil.which("vng", path=env["PATH"])
    if vng is None:
        raise VmError(
            "virtme-ng (vng) is not installed",
            operation="vm run",
            hint="pip install 'pyvfio[vm]', or run `make setup`",
        )
    if shutil.which("qemu-system-x86_64", path=env["PATH"]) is None:
        raise VmError(
            "qemu-system-x86_64 is not installed",
            operation="vm run",
            hint="apt-get install qemu-system-x86, or run `make setup`",
        )
    return vng, env


def build_command(command: Sequence[str], options: VmOptions, rundir: Path) -> list[str]:
    """The vng command line for running ``command`` in a fresh guest."""
    kernel = options.kernel or default_kernel()
    qemu_opts = device_qemu_opts(options, rundir) + ([] if options.kvm else _TCG_OPTS)
    argv = [
        "--run",
        str(kernel),
        "--force-9p",
        "--disable-microvm",
        "--memory",
        _vng_memory(options.memory),
        "--cpus",
        str(options.cpus),
        "--rwdir",
        str(rundir),
        "--append",
        "intel_iommu=on",
        "--append",
        "log_buf_len=4M",
        "--qemu-opts=" + shlex.join(qemu_opts),
        "--exec",
        f"sh {shlex.quote(str(rundir / 'guest.sh'))}",
    ]
    if not options.kvm:
        argv.insert(2, "--disable-kvm")
    if options.cached_root:
        # For a kernel with 9p built in (a module's is mounted by the initramfs:
        # see virtme_run); before the caller's parameters, so theirs win.
        argv += ["--append", "rootflags=" + virtme_run.CACHED_ROOT_FLAGS]
    for rwdir in options.rwdirs:
        argv += ["--rwdir", str(rwdir.resolve())]
    for extra in options.append:
        argv += ["--append", extra]
    if options.verbose:
        argv.append("--verbose")
    return argv


def _write_guest_script(command: Sequence[str], options: VmOptions, rundir: Path) -> None:
    exports = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **options.env}
    script = _GUEST_SCRIPT.format(
        exports="\n".join(f"export {k}={shlex.quote(v)}" for k, v in exports.items()),
        cwd=shlex.quote(os.getcwd()),
        command=shlex.join(command),
        rundir=shlex.quote(str(rundir)),
    )
    (rundir / "guest.sh").write_text(script)
    with open(rundir / NVME_IMAGE, "wb") as image:
        image.truncate(NVME_IMAGE_BYTES)


def _with_cached_root(vng: str, env: dict[str, str], rundir: Path) -> dict[str, str]:
    """vng's environment with :mod:`pyvfio.vm.virtme_run` first on its PATH
    as ``virtme-run``, if vng is this interpreter's (its virtme-run must be
    the virtme-ng that vng is); else ``env`` as it is."""
    if Path(vng).parent != Path(sys.executable).parent:
        return env
    bindir = rundir / "bin"
    bindir.mkdir()
    shim = bindir / "virtme-run"
    # By path, not -m: the interpreter need not find pyvfio; -P keeps the
    # module's folder off sys.path.
    python = shlex.quote(sys.executable)
    module = shlex.quote(virtme_run.__file__)
    shim.write_text(f'#!/bin/sh\nexec {python} -P {module} "$@"\n')
    shim.chmod(0o755)
    return {**env, "PATH": f"{bindir}{os.pathsep}{env['PATH']}"}


def check_command(command: Sequence[str]) -> None:
    """Refuse an empty command, or one that is not a sequence of strings."""
    if isinstance(command, (str, bytes)) or not isinstance(command, Sequence):
        raise TypeError(f"vm run: command must be a list of strings, not {type(command).__name__}")
    if not command:
        raise VmArgumentError(
            "command", "no command given", hint="pyvfio vm run [OPTIONS] -- CMD [ARGS...]"
        )
    for word in command:
        if not isinstance(word, str):
            raise TypeError(f"vm run: command must be a list of strings, not {word!r}")


def compile_bytecode(*trees: Path) -> None:
    """Byte-compile ``trees`` (default: pyvfio itself) on the host, where it is cheap.

    The guest cannot keep bytecode (its root is read-only, hence
    PYTHONDONTWRITEBYTECODE), and under TCG compiling pyvfio's source took
    more of ``import pyvfio`` than reading it: each Python process in the
    guest would do it again.  A tree the host cannot write (an installed
    wheel, whose bytecode pip wrote) is left alone.
    """
    for tree in trees or (Path(__file__).resolve().parents[1],):
        if os.access(tree, os.W_OK):
            compileall.compile_dir(tree, quiet=2, workers=1)


def run(
    command: Sequence[str],
    options: VmOptions | None = None,
    *,
    echo: TextIO | None = sys.stdout,
) -> GuestResult:
    """Boot a guest, run ``command`` in the current directory, and judge its kernel log.

    The guest's output is streamed to ``echo`` as it comes (None: silent)
    and returned.  Raises VmArgumentError (a VmError) for a command or
    options that cannot work (:meth:`VmOptions.check`), before it looks for
    virtme-ng or QEMU; VmError if the guest cannot boot or does not finish.
    A clean exit with a bad kernel log is reported in ``GuestResult.problems``.
    """
    check_command(command)
    options = options or VmOptions()
    options.check()  # before anything is looked for or started
    vng, env = _find_vng()
    compile_bytecode()
    sweep_stale_rundirs()
    with tempfile.TemporaryDirectory(prefix=RUNDIR_PREFIX) as tmp:
        rundir = Path(tmp)
        with _held_as_live(rundir):
            _write_guest_script(command, options, rundir)
            if options.cached_root:
                env = _with_cached_root(vng, env, rundir)
            argv = [vng, *build_command(command, options, rundir)]
            output = _run_streaming(argv, env, options, echo, rundir / "running")
        status_file = rundir / "status"
        if not status_file.exists() and "/virtme/" in output and "Traceback" in output:
            raise VmError(
                "virtme-ng failed before the guest booted: " + output.strip().splitlines()[-1],
                operation="vm run",
                hint="run `pyvfio vm check` (it names any missing host tool and its package)",
            )
        if not status_file.exists():
            raise VmError(
                "the guest did not finish the command (kernel panic or QEMU abort?); "
                "output:\n" + _died_summary(output),
                operation="vm run",
                hint="rerun with --verbose to see the guest console",
            )
        kernel_log = (rundir / "kernel.log").read_text(errors="replace")
        return GuestResult(
            returncode=int(status_file.read_text().strip()),
            output=output,
            kernel_log=kernel_log,
            problems=tuple(klog.find_problems(kernel_log)),
        )


_REGISTER_DUMP = re.compile(r"^(CPU #\d|[A-Z][A-Z0-9 ]{1,5}=)")


def _died_summary(output: str) -> str:
    """QEMU's own complaints (before any register dump) and the last lines."""
    lines = output.splitlines()
    qemu = [line for line in lines if line.startswith("qemu")]
    tail = [line for line in lines[-15:] if line not in qemu and not _REGISTER_DUMP.match(line)]
    return "\n".join([*qemu[:5], *tail])


RUNDIR_PREFIX = "pyvfio-vm-"
# In a run's directory: locked (flock) by the runner while the run lasts.
# The kernel lets go of the lock when the runner dies, however it dies, and
# it means the same in every PID namespace that shares the directory.
RUNNER_FILE = "runner"
_UNNAMED_RUNDIR_SECONDS = 24 * 3600


@contextlib.contextmanager
def _held_as_live(rundir: Path) -> Iterator[None]:
    # Locked under another name, then renamed: a sweep in another process
    # that found the runner file between its creation and the lock removed
    # a starting run's directory.
    held = rundir / (RUNNER_FILE + ".new")
    fd = os.open(held, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.rename(rundir / RUNNER_FILE)
        yield
    finally:
        os.close(fd)


def _is_live(runner_file: Path) -> bool:
    try:
        fd = os.open(runner_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def sweep_stale_rundirs(tmp: Path | None = None) -> list[Path]:
    """Remove what runs killed with SIGKILL left in the temporary directory:
    run directories of this user that no runner holds (their guest died with
    it).  A directory without a runner file is being made, or is an older
    pyvfio's, whose run may still go on: left alone for a day.  Returns what
    was removed."""
    removed = []
    for rundir in Path(tmp or tempfile.gettempdir()).glob(RUNDIR_PREFIX + "*"):
        runner_file = rundir / RUNNER_FILE
        try:
            if rundir.is_symlink() or rundir.stat().st_uid != os.geteuid():
                continue
            if runner_file.exists():
                if _is_live(runner_file):
                    continue
            elif time.time() - rundir.stat().st_mtime < _UNNAMED_RUNDIR_SECONDS:
                continue
        except OSError:
            continue
        shutil.rmtree(rundir, ignore_errors=True)
        removed.append(rundir)
    return removed


# Between the runner and vng: it dies with the runner (PR_SET_PDEATHSIG) and
# takes its process group, vng and QEMU, with it; vng alone would leave QEMU,
# its grandchild, running after a SIGKILL of the runner.
_GUARD = """
import ctypes, os, signal, sys
def stop(signum, frame):
    os.killpg(0, signal.SIGKILL)
for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, stop)
PR_SET_PDEATHSIG = 1
ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
if os.getppid() != int(sys.argv[1]):  # the runner died before the prctl
    stop(0, None)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; vng and QEMU must not
    os.execvp(sys.argv[2], sys.argv[2:])
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class _SignalsHeld:
    """SIGINT, SIGTERM and SIGHUP held back while a guest is started: one
    that came inside Popen would leave a QEMU that nobody knows the pid of.
    ``release`` gives back the handlers and delivers what came meanwhile,
    where the caller can stop the guest.  Only the main thread has handlers."""

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._hold)

    def _hold(self, signum: int, frame: object) -> None:
        self._pending.append(signum)

    def release(self) -> None:
        saved, self._saved = self._saved, {}
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for signum in self._pending:
            signal.raise_signal(signum)


class _Output:
    """What the guest prints: kept, echoed, and when it last came."""

    def __init__(self, echo: TextIO | None) -> None:
        self._chunks: list[str] = []
        self._echo = echo
        self.last = time.monotonic()
        self.echoing = False  # blocked on a paused terminal is not a silent guest

    def text(self) -> str:
        return "".join(self._chunks)

    def pump(self, fd: int) -> None:
        # Bytes as they come, not lines: pytest's dots are progress too.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            raw = os.read(fd, 65536)
            text = decoder.decode(raw, final=not raw)
            self.last = time.monotonic()
            self._chunks.append(text)
            if self._echo is not None and text:
                self.echoing = True
                try:
                    self._echo.write(text)
                    self._echo.flush()
                except (OSError, ValueError):  # `| head` left: keep draining the guest
                    self._echo = None
                finally:
                    self.echoing = False
                    self.last = time.monotonic()
            if not raw:
                return


def _wait_unless_stuck(
    proc: subprocess.Popen[bytes], output: _Output, options: VmOptions
) -> str | None:
    """Wait for ``proc``; None once it ends, or why it counts as stuck."""
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if now - start >= options.timeout:
            return f"did not finish within {options.timeout:g} s"
        if not output.echoing and now - output.last >= options.silence:
            return f"printed nothing for {options.silence:g} s"
        left = min(start + options.timeout, output.last + options.silence) - now
        try:
            proc.wait(timeout=min(max(left, 0.01), 1.0))
            return None
        except subprocess.TimeoutExpired:
            continue


def _was_running(running_file: Path) -> str:
    """What the command said it was running ($PYVFIO_VM_RUNNING), as words."""
    try:
        said = running_file.read_text(errors="replace").strip()
    except OSError:
        return ""
    return f" while it ran {said.splitlines()[-1]}" if said else ""


def _run_streaming(
    argv: list[str],
    env: dict[str, str],
    options: VmOptions,
    echo: TextIO | None,
    running_file: Path,
) -> str:
    held = _SignalsHeld()
    try:
        # QEMU reopens its stdout with O_TRUNC: a pipe is the only safe target.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except BaseException:
        held.release()
        raise
    output = _Output(echo)
    assert proc.stdout is not None
    reader = threading.Thread(target=output.pump, args=(proc.stdout.fileno(),), daemon=True)
    try:  # from here on a signal (SIGTERM, Ctrl-C, SIGHUP) stops the guest
        try:
            # Started while the signals are held: one raised inside start()
            # left a thread neither running nor joinable, and the join below
            # failed in place of the stop.
            reader.start()
        finally:
            held.release()
        why = _wait_unless_stuck(proc, output, options)
    finally:
        # The whole group, however the wait ended: vng may leave children
        # (virtiofsd) holding the pipe.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if reader.ident is not None:  # started
            reader.join(5)
    if why is not None:
        # The last lines say what was running: a log holding only this error
        # (CI prints the end of each boot's log) must name it.
        raise VmError(
            f"the guest {why}; killed{_was_running(running_file)}; its last output:\n"
            + _died_summary(output.text()),
            operation="vm run",
            hint="raise --timeout (the cap) or --silence (a step that prints nothing "
            "for long), or rerun with --verbose",
        )
    return output.text()
