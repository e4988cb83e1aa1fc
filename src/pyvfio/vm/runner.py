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

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import VmError
from . import klog
from .kernel import default_kernel

# PCI IDs of the emulated devices, for finding them in the guest: addresses
# shift with vng's options, IDs do not.
EDU_ID = (0x1234, 0x11E8)
E1000E_ID = (0x8086, 0x10D3)  # `--nics`: the DPDK tests' NICs
IVSHMEM_ID = (0x1AF4, 0x1110)
NVME_ID = (0x1B36, 0x0010)

IVSHMEM_SIZE = "4M"
NVME_CMB_MB = 16
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


def device_qemu_opts(nvme_image: Path, nics: int = 0) -> list[str]:
    """QEMU arguments for the machine and the emulated PCI devices."""
    return [
        # split irqchip is what intremap needs under KVM; TCG accepts it too
        "-machine",
        "q35,kernel-irqchip=split",
        "-device",
        "intel-iommu,intremap=on,caching-mode=on",
        "-device",
        "edu",
        "-object",
        f"memory-backend-ram,id=pyvfio-ivshmem,size={IVSHMEM_SIZE}",
        "-device",
        "ivshmem-plain,memdev=pyvfio-ivshmem",
        "-drive",
        f"file={nvme_image},if=none,id=pyvfio-nvme,format=raw",
        "-device",
        f"nvme,serial=pyvfio0,drive=pyvfio-nvme,cmb_size_mb={NVME_CMB_MB}",
        *nic_qemu_opts(nics),
    ]


@dataclass(frozen=True)
class VmOptions:
    kernel: Path | None = None  # default: the one linux-image-amd64 points at
    memory: str = "1G"
    cpus: int = 2
    kvm: bool = False  # /dev/kvm may exist without working; TCG is the safe default
    timeout: float = 1800.0
    verbose: bool = False  # show the guest console (boot messages, panics)
    append: tuple[str, ...] = ()
    # e1000e NICs for the client tests (DPDK); added last, so the other
    # devices keep their addresses
    nics: int = 0
    rwdirs: tuple[Path, ...] = ()  # host directories the guest may write (results)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GuestResult:
    returncode: int
    output: str
    kernel_log: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
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
    nvme_image = rundir / "nvme.img"
    qemu_opts = device_qemu_opts(nvme_image, options.nics) + ([] if options.kvm else _TCG_OPTS)
    argv = [
        "--run",
        str(kernel),
        "--force-9p",
        "--disable-microvm",
        "--memory",
        options.memory,
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
    with open(rundir / "nvme.img", "wb") as image:
        image.truncate(NVME_IMAGE_BYTES)


def run(
    command: Sequence[str],
    options: VmOptions | None = None,
    *,
    echo: TextIO | None = sys.stdout,
) -> GuestResult:
    """Boot a guest, run ``command`` in the current directory, and judge its kernel log.

    The guest's output is streamed to ``echo`` as it comes (None: silent)
    and returned.  Raises VmError if the guest cannot boot or does not
    finish; a clean exit with a bad kernel log is reported in
    ``GuestResult.problems``.
    """
    if not command:
        raise VmError("no command given", operation="vm run", hint="pyvfio vm run -- CMD ARGS")
    options = options or VmOptions()
    vng, env = _find_vng()
    with tempfile.TemporaryDirectory(prefix="pyvfio-vm-") as tmp:
        rundir = Path(tmp)
        _write_guest_script(command, options, rundir)
        argv = [vng, *build_command(command, options, rundir)]
        output = _run_streaming(argv, env, options.timeout, echo)
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


def _run_streaming(
    argv: list[str], env: dict[str, str], timeout: float, echo: TextIO | None
) -> str:
    # QEMU reopens its stdout with O_TRUNC: a pipe is the only safe target.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    chunks: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            chunks.append(line)
            if echo is not None:
                echo.write(line)
                echo.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(5)
        raise VmError(
            f"the guest did not finish within {timeout:.0f} s; killed",
            operation="vm run",
            hint="raise --timeout, or rerun with --verbose",
        ) from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    reader.join()
    return "".join(chunks)
