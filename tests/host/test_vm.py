# SPDX-License-Identifier: Apache-2.0
"""The test VM runner: its command line, and one real boot that must not pass."""

import shutil
import sys
from pathlib import Path

import pytest

from pyvfio.errors import VmError
from pyvfio.vm import VmOptions, run
from pyvfio.vm.runner import _died_summary, build_command

KERNEL = Path("/boot/vmlinuz-test")


def _qemu_opts(argv: list[str]) -> str:
    (opts,) = [a for a in argv if a.startswith("--qemu-opts=")]
    return opts


def test_defaults_to_tcg_with_iommu_and_devices(tmp_path: Path) -> None:
    argv = build_command(["true"], VmOptions(kernel=KERNEL), tmp_path)
    assert argv[:2] == ["--run", str(KERNEL)]
    assert "--disable-kvm" in argv
    assert "intel_iommu=on" in argv
    opts = _qemu_opts(argv)
    for needle in (
        "intel-iommu,intremap=on",
        "-device edu",
        "ivshmem-plain,memdev=",
        "nvme,serial=",
        "cmb_size_mb=16",
        "-accel tcg,thread=single",  # Debian 13's QEMU aborted once under MTTCG
        f"file={tmp_path}/nvme.img",
    ):
        assert needle in opts


def test_kvm_is_opt_in(tmp_path: Path) -> None:
    argv = build_command(["true"], VmOptions(kernel=KERNEL, kvm=True), tmp_path)
    assert "--disable-kvm" not in argv
    assert "thread=single" not in _qemu_opts(argv)


def test_empty_command_is_refused() -> None:
    with pytest.raises(VmError, match="no command"):
        run([])


def _vm_available() -> bool:
    bindir = str(Path(sys.executable).parent)
    return shutil.which("vng", path=bindir) is not None and bool(shutil.which("qemu-system-x86_64"))


@pytest.mark.skipif(not _vm_available(), reason="test VM not set up (make setup)")
def test_guest_status_and_kernel_warning_reach_the_host() -> None:
    # A real boot: the guest's exit status comes back, and a WARNING in its
    # kernel log is reported even though the command itself "succeeded".
    script = (
        "echo '<4>WARNING: CPU: 0 PID: 1 at pyvfio-selftest' > /dev/kmsg; "
        "test -d /sys/kernel/debug/x86 || exit 9; exit 7"
    )
    result = run(["sh", "-c", script], echo=None)
    assert result.returncode == 7
    assert result.problems == (
        "WARNING: "
        + next(
            line.strip() for line in result.kernel_log.splitlines() if "pyvfio-selftest" in line
        ),
    )
    assert not result.ok
    with pytest.raises(VmError, match="pyvfio-selftest"):
        result.check()


def test_a_dead_guest_shows_qemus_complaint_not_the_register_dump() -> None:
    output = "\n".join(
        [
            "0000:00:0a.0: edu v1.0, liveness ok",
            "qemu: hardware error: EDU: DMA range 0x40000-0x40fff out of bounds",
            "CPU #0:",
            "RAX=000000000001ad40 RBX=0000000000000000 RCX=0000000000000000",
            "ES =0000 0000000000000000 00000000 00000000",
            "DMA: still a line of the program",
        ]
    )
    assert _died_summary(output).splitlines() == [
        "qemu: hardware error: EDU: DMA range 0x40000-0x40fff out of bounds",
        "0000:00:0a.0: edu v1.0, liveness ok",
        "DMA: still a line of the program",
    ]
