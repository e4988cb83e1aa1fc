# SPDX-License-Identifier: Apache-2.0
"""The test VM runner: its command line, its argument checks, and one real boot that
must not pass."""

import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pyvfio.errors import InvalidArgumentError, VmError
from pyvfio.vm import VmArgumentError, VmOptions, run, runner, virtme_run
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
        "intel-iommu,intremap=on,caching-mode=on,aw-bits=48",
        "-device edu",
        "ivshmem-plain,memdev=",
        "nvme,serial=",
        "cmb_size_mb=16",
        "-accel tcg,thread=single",  # Debian 13's QEMU aborted once under MTTCG
        f"file={tmp_path}/nvme.img",
    ):
        assert needle in opts


def test_added_devices_come_after_the_built_in_set(tmp_path: Path) -> None:
    options = VmOptions(
        kernel=KERNEL,
        nics=1,
        devices=("pci-testdev", "edu,addr=0x10"),
        objects=("memory-backend-ram,id=m,size=1M",),
        large_bars=("1G", "64G"),
    )
    opts = _qemu_opts(build_command(["true"], options, tmp_path))
    built_in = opts.index("nvme,serial=")
    nic = opts.index("e1000e,netdev=")
    bars = [
        opts.index(
            f"memory-backend-file,id=pyvfio-bar0,size={1 << 30},share=on,"
            f"mem-path={tmp_path}/bar0.img"
        ),
        opts.index(
            f"memory-backend-file,id=pyvfio-bar1,size={64 << 30},share=on,"
            f"mem-path={tmp_path}/bar1.img"
        ),
        opts.index("ivshmem-plain,memdev=pyvfio-bar1"),
    ]
    added = [
        opts.index("-object memory-backend-ram,id=m,size=1M"),
        opts.index("-device pci-testdev"),
        opts.index("-device edu,addr=0x10"),
    ]
    assert built_in < nic < min(bars) and max(bars) < min(added)
    assert added == sorted(added)  # in the order given


def test_kvm_is_opt_in(tmp_path: Path) -> None:
    argv = build_command(["true"], VmOptions(kernel=KERNEL, kvm=True), tmp_path)
    assert "--disable-kvm" not in argv
    assert "thread=single" not in _qemu_opts(argv)


def test_the_guest_caches_the_root_unless_told_not_to(tmp_path: Path) -> None:
    cached = "rootflags=" + virtme_run.CACHED_ROOT_FLAGS
    argv = build_command(["true"], VmOptions(kernel=KERNEL, append=("rootflags=x",)), tmp_path)
    # the caller's rootflags come later, and the kernel keeps the last
    assert argv.index(cached) < argv.index("rootflags=x")
    argv = build_command(["true"], VmOptions(kernel=KERNEL, cached_root=False), tmp_path)
    assert not [arg for arg in argv if arg.startswith("rootflags=")]


def test_the_initramfs_mounts_the_root_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    mkinitramfs = pytest.importorskip("virtme.mkinitramfs")
    script = mkinitramfs._MOUNT_ROOT_HOST
    monkeypatch.setattr(mkinitramfs, "_MOUNT_ROOT_HOST", script)  # restored after
    assert virtme_run.cache_root_in_initramfs()
    mount_9p = next(line for line in mkinitramfs._MOUNT_ROOT_HOST.splitlines() if "-t 9p" in line)
    assert mount_9p == next(line for line in script.splitlines() if "-t 9p" in line).replace(
        "msize=524288 /dev/root", "msize=524288,cache=loose /dev/root"
    )
    # a virtme-ng whose script is another: left as it is, and said
    monkeypatch.setattr(mkinitramfs, "_MOUNT_ROOT_HOST", "mount -t 9p /dev/root /newroot")
    assert not virtme_run.cache_root_in_initramfs()
    assert mkinitramfs._MOUNT_ROOT_HOST == "mount -t 9p /dev/root /newroot"


def test_vng_runs_the_caching_virtme_run(tmp_path: Path) -> None:
    pytest.importorskip("virtme")
    ours = str(Path(sys.executable).parent / "vng")
    env = runner._with_cached_root(ours, {"PATH": "/usr/bin"}, tmp_path)
    assert env["PATH"] == f"{tmp_path / 'bin'}:/usr/bin"
    shim = tmp_path / "bin" / "virtme-run"
    assert shutil.which("virtme-run", path=env["PATH"]) == str(shim)
    shown = subprocess.run([shim, "--help"], env=env, capture_output=True, text=True, check=True)
    assert "usage: virtme-run" in shown.stdout and "pyvfio" not in shown.stderr
    # Another vng (pipx's, say) runs its own virtme-run: nothing is put first.
    other = {"PATH": "/usr/bin"}
    assert runner._with_cached_root("/opt/vng/bin/vng", other, tmp_path / "x") is other


def test_empty_command_is_refused() -> None:
    with pytest.raises(VmError, match="no command"):
        run([])


def _vm_available() -> bool:
    bindir = str(Path(sys.executable).parent)
    return shutil.which("vng", path=bindir) is not None and bool(shutil.which("qemu-system-x86_64"))


@pytest.mark.skipif(not _vm_available(), reason="test VM not set up (make setup)")
@pytest.mark.boots
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


# --- arguments: refused before anything is looked for or started -------------


def _bzimage(path: Path) -> Path:
    """A file that passes for an x86 kernel image (the bzImage header magic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(0x202) + b"HdrS" + bytes(64))
    return path


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if run() looks for virtme-ng or QEMU, or starts a process."""

    def looked_for_vng() -> tuple[str, dict[str, str]]:
        raise AssertionError("vng was looked for: the arguments were not checked first")

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(runner, "_find_vng", looked_for_vng)
    monkeypatch.setattr(subprocess, "Popen", started)


def _refusals(tmp_path: Path) -> list[tuple[dict[str, Any], str, str]]:
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "a b").mkdir()
    total = runner.host_memory()
    assert total is not None
    return [
        ({"kernel": tmp_path / "nonexist"}, "kernel", "no such file"),
        ({"kernel": tmp_path}, "kernel", "is not a file"),
        ({"kernel": tmp_path / "file"}, "kernel", "is not a kernel image"),
        ({"kernel": _bzimage(tmp_path / "a b" / "vmlinuz")}, "kernel", "cannot pass a path"),
        ({"memory": "lots"}, "memory", "'lots' is not a size"),
        ({"memory": "1G1"}, "memory", "is not a size"),
        ({"memory": "0.1K"}, "memory", "is not a whole number of KiB"),
        ({"memory": "64M"}, "memory", "below the guest's minimum of 128M"),
        ({"memory": f"{(total >> 30) + 1}G"}, "memory", "more than the host's"),
        ({"cpus": 0}, "cpus", "0 is not between 1 and the host's"),
        ({"cpus": (os.cpu_count() or 1) + 1}, "cpus", "is not between 1 and the host's"),
        ({"timeout": -5}, "timeout", "-5 is not a number of seconds above 0"),
        ({"timeout": 0}, "timeout", "above 0"),
        ({"timeout": math.nan}, "timeout", "nan is not"),
        ({"timeout": math.inf}, "timeout", "inf is not"),
        ({"timeout": 10**400}, "timeout", "inf is not"),
        ({"silence": -1}, "silence", "-1 is not a number of seconds above 0"),
        ({"silence": math.nan}, "silence", "nan is not"),
        ({"nics": -1}, "nics", f"-1 is not between 0 and {runner.MAX_NICS}"),
        ({"nics": runner.MAX_NICS + 1}, "nics", "is not between 0 and"),
        ({"append": ("",)}, "append", "is empty"),
        ({"append": ("  ",)}, "append", "is empty"),
        ({"append": ('a"b',)}, "append", "No closing quotation"),
        ({"rwdirs": (tmp_path / "nonexist",)}, "rwdirs", "no such directory"),
        ({"rwdirs": (tmp_path / "file",)}, "rwdirs", "is not a directory"),
        ({"rwdirs": (tmp_path / "a b",)}, "rwdirs", "virtme-ng passes only paths of"),
        ({"env": {"A B": "1"}}, "env", "is no variable name"),
        ({"env": {"A": "\0"}}, "env", "NUL byte"),
        ({"devices": ("",)}, "devices", "does not start with a QEMU device type"),
        ({"devices": ("-device edu",)}, "devices", "does not start with a QEMU device type"),
        ({"devices": ("edu\n",)}, "devices", "NUL or newline"),
        ({"devices": ("edu",) * 9}, "devices", "9 given; at most 8"),
        ({"objects": ("memory-backend-ram,size=1M",)}, "objects", "has no id="),
        ({"large_bars": ("3G",)}, "large_bars", "is not a power of two from 1M to 1T"),
        ({"large_bars": ("512K",)}, "large_bars", "is not a power of two from 1M to 1T"),
        ({"large_bars": ("2T",)}, "large_bars", "is not a power of two from 1M to 1T"),
        ({"large_bars": ("lots",)}, "large_bars", "'lots' is not a size"),
    ]


@pytest.mark.usefixtures("nothing_starts")
def test_run_refuses_each_bad_option_before_it_starts_anything(tmp_path: Path) -> None:
    for kwargs, parameter, message in _refusals(tmp_path):
        with pytest.raises(VmError) as exc:
            run(["true"], VmOptions(**kwargs), echo=None)
        assert isinstance(exc.value, VmArgumentError), kwargs
        assert isinstance(exc.value, InvalidArgumentError)
        assert exc.value.parameter == parameter, kwargs
        assert message in exc.value.message, (kwargs, exc.value.message)
        assert "\n" not in str(exc.value)
        assert str(exc.value).startswith(f"vm run: {parameter}: ")


@pytest.mark.usefixtures("nothing_starts")
def test_run_refuses_wrong_types(tmp_path: Path) -> None:
    for kwargs in (
        {"cpus": "2"},
        {"cpus": True},
        {"memory": 1 << 30},
        {"timeout": "5"},
        {"silence": None},
        {"devices": "edu"},  # a string is not a tuple of strings
        {"objects": (1,)},
        {"large_bars": (1 << 30,)},
        {"nics": 1.0},
        {"kvm": 1},
        {"cached_root": "no"},
        {"append": "nopat"},  # a string is not a tuple of strings
        {"append": (1,)},
        {"rwdirs": str(tmp_path)},
        {"kernel": 5},
        {"env": {"A": 1}},
    ):
        with pytest.raises(TypeError, match=f"vm run: {next(iter(kwargs))} must be"):
            run(["true"], VmOptions(**kwargs), echo=None)
    with pytest.raises(TypeError, match="command must be a list of strings"):
        run("true", echo=None)
    with pytest.raises(TypeError, match="command must be a list of strings"):
        run(["echo", 1], echo=None)  # type: ignore[list-item]


@pytest.mark.usefixtures("nothing_starts")
def test_kvm_is_refused_where_it_would_hang(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "KVM_DEVICE", tmp_path / "kvm")
    with pytest.raises(VmError, match="/kvm does not exist"):
        run(["true"], VmOptions(kvm=True), echo=None)
    (tmp_path / "kvm").touch()
    monkeypatch.setattr(runner, "_hardware_virtualisation", lambda: False)
    with pytest.raises(VmError, match=r"no hardware virtualisation .* KVM guests hang"):
        run(["true"], VmOptions(kvm=True), echo=None)


@pytest.mark.usefixtures("nothing_starts")
def test_an_rwdir_the_user_cannot_write_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(VmError, match="is not writable by this user"):
        run(["true"], VmOptions(rwdirs=(tmp_path,)), echo=None)


def test_good_options_pass_and_memory_reaches_vng_in_a_form_it_keeps(tmp_path: Path) -> None:
    kernel = _bzimage(tmp_path / "vmlinuz-test")
    for memory, passed in (
        ("1.5G", "1536M"),
        ("1g", "1024M"),
        ("512", "512M"),
        ("131072K", "128M"),
    ):
        options = VmOptions(
            kernel=kernel,
            memory=memory,
            cpus=1,
            timeout=1,
            append=("nopat", "a=b c=d"),
            nics=runner.MAX_NICS,
            rwdirs=(tmp_path,),
            env={"PYVFIO_X": "1"},
        )
        options.check()
        argv = build_command(["true"], options, tmp_path)
        assert argv[argv.index("--memory") + 1] == passed
    assert runner.memory_bytes("2T") == 2 << 40


# --- stopping: a timeout, SIGTERM and Ctrl-C leave nothing behind -----------

# A stand-in for virtme-ng: it says which guest directory it was given, starts
# a child as QEMU would, and never finishes.
# A stand-in for virtme-ng: it says what runs (as the guest's pytest does),
# starts a child as vng starts QEMU, prints, and never ends.
_HANGING_VNG = """#!/bin/sh
for arg; do case "$arg" in */guest.sh*) echo "$arg" > {record}/rundir;; esac; done
rundir=$(dirname "$(sed 's/^sh //' {record}/rundir)")
echo tests/guest/test_hangs.py::test_forever > "$rundir/running"
sleep 600 &
echo $! > {record}/child
echo "tests/guest/test_hangs.py ..."
wait
"""

# One that prints a dot every 0.2 s for {seconds} s and then ends as a guest does.
_SLOW_VNG = """#!/bin/sh
for arg; do case "$arg" in */guest.sh*) rundir=$(dirname "${{arg#sh }}");; esac; done
end=$(($(date +%s) + {seconds}))
while [ "$(date +%s)" -lt "$end" ]; do printf .; sleep 0.2; done
echo 0 > "$rundir/status"
: > "$rundir/kernel.log"
"""


def _hanging_vng(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "record"
    record.mkdir()
    vng = tmp_path / "vng"
    vng.write_text(_HANGING_VNG.format(record=record))
    vng.chmod(0o755)
    return vng, record


def _state(pid: int) -> str | None:
    """The process's state letter from /proc, None once it is reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # reaped before or during the read
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _left_behind(record: Path) -> list[str]:
    """What of the stand-in's run still exists: its child, its guest directory."""
    left = []
    child = int((record / "child").read_text())
    for _ in range(100):  # SIGKILL is delivered, but not always at once
        if _state(child) in (None, "Z"):  # gone, or killed and waiting for its reaper
            break
        time.sleep(0.05)
    else:
        left.append(f"process {child}")
    words = (record / "rundir").read_text().split()
    rundir = next(Path(w).parent for w in words if w.endswith("guest.sh"))
    if rundir.exists():
        left.append(str(rundir))
    return left


def _wait_for(path: Path) -> None:
    for _ in range(200):
        if path.exists() and path.read_text().strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


@pytest.mark.parametrize(
    ("timeout", "silence", "said"),
    [(4, 300, "did not finish within 4 s"), (300, 3, "printed nothing for 3 s")],
)
def test_a_stuck_guest_is_killed_naming_what_ran_and_leaving_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, timeout: float, silence: float, said: str
) -> None:
    vng, record = _hanging_vng(tmp_path)
    monkeypatch.setattr(runner, "_find_vng", lambda: (str(vng), dict(os.environ)))
    kernel = _bzimage(tmp_path / "bzImage")
    options = runner.VmOptions(kernel=kernel, timeout=timeout, silence=silence)
    with pytest.raises(VmError) as err:
        runner.run(["true"], options, echo=None)
    assert said + "; killed while it ran tests/guest/test_hangs.py::test_forever;" in str(err.value)
    assert "tests/guest/test_hangs.py ..." in str(err.value)  # its last output
    assert _left_behind(record) == []


# One that ends as a guest does but leaves a child holding its output, as
# virtme-ng leaves virtiofsd when it dies.
_LEAVING_VNG = """#!/bin/sh
for arg; do case "$arg" in */guest.sh*) rundir=$(dirname "${{arg#sh }}");; esac; done
sleep 600 &
echo $! > {record}/child
echo 0 > "$rundir/status"
: > "$rundir/kernel.log"
"""


def test_a_child_left_behind_by_vng_is_stopped_with_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    record.mkdir()
    vng = tmp_path / "vng"
    vng.write_text(_LEAVING_VNG.format(record=record))
    vng.chmod(0o755)
    monkeypatch.setattr(runner, "_find_vng", lambda: (str(vng), dict(os.environ)))
    started = time.monotonic()
    result = runner.run(
        ["true"], runner.VmOptions(kernel=_bzimage(tmp_path / "bzImage")), echo=None
    )
    assert result.returncode == 0
    assert time.monotonic() - started < 30  # not the child's 600 s
    child = int((record / "child").read_text())
    for _ in range(100):
        if _state(child) in (None, "Z"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"vng's child {child} still runs")


class _GoneReader:
    """An echo whose reader left (`vm run ... | head`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass


def test_a_reader_that_leaves_does_not_stall_the_guest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vng = tmp_path / "vng"
    vng.write_text(_SLOW_VNG.format(seconds=3))
    vng.chmod(0o755)
    monkeypatch.setattr(runner, "_find_vng", lambda: (str(vng), dict(os.environ)))
    options = runner.VmOptions(kernel=_bzimage(tmp_path / "bzImage"), silence=2)
    result = runner.run(["true"], options, echo=_GoneReader())  # type: ignore[arg-type]
    assert result.returncode == 0 and result.output.count(".") >= 10


def test_a_guest_that_prints_is_not_stuck(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Dots without a newline, as pytest prints them, are progress too.
    vng = tmp_path / "vng"
    vng.write_text(_SLOW_VNG.format(seconds=3))
    vng.chmod(0o755)
    monkeypatch.setattr(runner, "_find_vng", lambda: (str(vng), dict(os.environ)))
    options = runner.VmOptions(kernel=_bzimage(tmp_path / "bzImage"), silence=1)
    result = runner.run(["true"], options, echo=None)
    assert result.returncode == 0 and result.output.count(".") >= 10


# The CLI in a process of its own, with the stand-in in place of virtme-ng.
_CLI_WITH_VNG = """
import os, sys
from pyvfio import cli
from pyvfio.vm import runner
runner._find_vng = lambda: ({vng!r}, dict(os.environ))
raise SystemExit(cli.main(["vm", "run", "--kernel", {kernel!r}, "--", "true"]))
"""


@pytest.mark.parametrize("whom", ["process", "group"])
@pytest.mark.parametrize(
    ("sig", "said"),
    [
        (signal.SIGTERM, "pyvfio: terminated"),
        (signal.SIGINT, "pyvfio: interrupted"),
        (signal.SIGHUP, "pyvfio: hung up"),
    ],
)
def test_vm_run_stopped_by_a_signal_stops_its_guest(
    tmp_path: Path, sig: signal.Signals, said: str, whom: str
) -> None:
    # To the process alone, as `timeout` sends it; to its group, as CI and a
    # terminal do.
    vng, record = _hanging_vng(tmp_path)
    kernel = _bzimage(tmp_path / "bzImage")
    code = _CLI_WITH_VNG.format(vng=str(vng), kernel=str(kernel))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for(record / "child")
    if whom == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, stderr
    assert stderr.strip() == said  # one line, no traceback
    assert _left_behind(record) == []


def test_a_run_directory_is_never_seen_with_its_runner_file_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sweep (another run starting) removes a directory whose runner file
    # no one holds: the file must appear already locked.
    rundir = tmp_path / (runner.RUNDIR_PREFIX + "starting")
    rundir.mkdir()
    runner_file = rundir / runner.RUNNER_FILE
    present_at_lock: list[bool] = []
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        present_at_lock.append(runner_file.exists())
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    with runner._held_as_live(rundir):
        assert present_at_lock == [False]
        assert runner.sweep_stale_rundirs(tmp_path) == []
        assert runner_file.exists()
    assert runner.sweep_stale_rundirs(tmp_path) == [rundir]  # let go: swept


def test_a_runner_killed_outright_takes_its_guest_along_and_the_next_run_sweeps_up(
    tmp_path: Path,
) -> None:
    vng, record = _hanging_vng(tmp_path)
    kernel = _bzimage(tmp_path / "bzImage")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI_WITH_VNG.format(vng=str(vng), kernel=str(kernel))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    _wait_for(record / "child")
    proc.kill()
    proc.wait()
    (rundir,) = tmp.iterdir()
    # The guest (here vng's child) died with the runner; its directory is
    # what a SIGKILL leaves, and the next run removes it.
    assert _left_behind(record) == [str(rundir)]
    in_use = tmp / "pyvfio-vm-in-use"  # a live run's, as its runner holds it
    in_use.mkdir()
    unnamed = tmp / "pyvfio-vm-unnamed"  # being made, or an older pyvfio's
    unnamed.mkdir()
    with runner._held_as_live(in_use):
        assert runner.sweep_stale_rundirs(tmp) == [rundir]
    assert in_use.exists() and unnamed.exists() and not rundir.exists()
