# SPDX-License-Identifier: Apache-2.0
"""One regression test per defect the review of the first module found (issue #10).

Each would fail on that module: it deadlocked, let WC cover the MSI-X table,
took a cookie it could not return, had no cap, logged per refusal and answered
EBUSY to a concurrent pread's transient mapping.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyvfio import BusyError, Device, InvalidArgumentError, uapi
from pyvfio.cookie import Cookie, MemoryAttr, wc_refused_ranges

from . import forked

PAGE = 4096

_DEADLOCK_PROBE = textwrap.dedent("""
    # Thread A creates cookies whose outputs land on a page that is not
    # present, so the driver's copy_to_user faults (mmap_lock); thread B mmaps
    # a cookie (mmap_lock held, then the driver's lock).  The first module held
    # its lock across that copy: both threads hung in D state.
    import ctypes, mmap, struct, sys, threading, time
    from pyvfio import Device, uapi
    from pyvfio.cookie import Cookie, MemoryAttr

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    MADV_DONTNEED = 4
    PAGE = 4096
    SECONDS = float(sys.argv[2])

    with Device.open(sys.argv[1]) as dev:
        target = Cookie(dev, 2, 0, PAGE, MemoryAttr.UC)
        buf = libc.mmap(None, 2 * PAGE, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        inputs = 8 + 32          # vfio_device_feature header + create's inputs
        start = buf + PAGE - inputs  # the outputs start on the second page
        feature = uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE | uapi.VFIO_DEVICE_FEATURE_SET
        header = struct.pack("<II", 8 + 48, feature)
        req = struct.pack("<IIIIQQ", 2, 0, 0, 0, PAGE, PAGE)
        ctypes.memmove(start, header + req, inputs)
        done = {"create": 0, "mmap": 0}
        stop = time.monotonic() + SECONDS

        def creator():
            while time.monotonic() < stop:
                libc.madvise(buf + PAGE, PAGE, MADV_DONTNEED)
                if libc.ioctl(dev.fd, uapi.VFIO_DEVICE_FEATURE, start) != 0:
                    raise OSError(ctypes.get_errno(), "create")
                value = ctypes.c_uint64.from_address(start + inputs).value
                dev.feature(uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY,
                            uapi.VFIO_DEVICE_FEATURE_SET, struct.pack("<QII", value, 0, 0))
                done["create"] += 1

        def mapper():
            while time.monotonic() < stop:
                m = mmap.mmap(dev.fd, PAGE, offset=target.value)
                m.close()
                done["mmap"] += 1

        threads = [threading.Thread(target=creator), threading.Thread(target=mapper)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(done["create"], done["mmap"], flush=True)
""")


def test_creating_and_mapping_from_two_threads_does_not_deadlock(wc_ivshmem: str) -> None:
    probe = forked.python(_DEADLOCK_PROBE, wc_ivshmem, "5")
    try:
        out, err = probe.communicate(timeout=90)  # the first module never returned
    finally:
        probe.kill()
    assert probe.returncode == 0, err
    created, mapped = map(int, out.split())
    assert created > 0 and mapped > 0


def test_wc_is_refused_where_the_kernel_maps_msix_itself(wc_nvme: str) -> None:
    with Device.open(wc_nvme) as dev:
        refused = wc_refused_ranges(dev, 0)
        assert refused, "nvme's MSI-X table and PBA live in BAR0"
        for offset, length in refused:
            assert offset % PAGE == 0 and length % PAGE == 0
            with pytest.raises(Exception) as exc:
                Cookie(dev, 0, offset, PAGE, MemoryAttr.WC)
            assert getattr(exc.value, "errno", None) == errno.EPERM
            assert "MSI-X" in str(exc.value)
            Cookie(dev, 0, offset, PAGE, MemoryAttr.UC).destroy()  # UC is what the kernel uses
        assert wc_refused_ranges(dev, 2) == []  # the CMB has no MSI-X structure


def test_create_needs_room_for_its_outputs(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        short = bytes(uapi.vfio_device_feature_mmap_cookie_create(index=2, attr=1, length=PAGE))
        with pytest.raises(InvalidArgumentError):
            dev.feature(
                uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE,
                uapi.VFIO_DEVICE_FEATURE_SET,
                short[:32],  # inputs only: no room for cookie and mmap_length
            )
        # nothing was created: a UC cookie over the same page is no conflict
        Cookie(dev, 2, 0, PAGE, MemoryAttr.UC).destroy()


def test_live_cookies_are_capped_per_open(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        cookies = [Cookie(dev, 2, 0, PAGE, MemoryAttr.UC) for _ in range(uapi.VFIO_MMAP_COOKIE_MAX)]
        with pytest.raises(Exception) as exc:
            Cookie(dev, 2, 0, PAGE, MemoryAttr.UC)
        assert getattr(exc.value, "errno", None) == errno.ENOSPC
        assert "at most 4096" in str(exc.value)
        cookies.pop().destroy()
        cookies.append(Cookie(dev, 2, 0, PAGE, MemoryAttr.UC))
        for c in cookies:
            c.destroy()


def _kernel_log_lines() -> int:
    return len(
        subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout.splitlines()
    )


def test_refusals_leave_the_kernel_log_alone(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        uc = Cookie(dev, 2, 0, PAGE, MemoryAttr.UC)
        before = _kernel_log_lines()
        for _ in range(200):
            with pytest.raises(BusyError):
                Cookie(dev, 2, 0, PAGE, MemoryAttr.WC)
        assert _kernel_log_lines() - before <= 1
        uc.destroy()


def test_a_concurrent_pread_causes_no_spurious_ebusy(wc_ivshmem: str) -> None:
    with Device.open(wc_ivshmem) as dev:
        offset = dev.region(2).info.offset
        stop = threading.Event()
        reads = 0

        def reader() -> None:
            nonlocal reads
            while not stop.is_set():
                os.pread(dev.fd, 4, offset)
                reads += 1

        thread = threading.Thread(target=reader)
        thread.start()
        failures = 0
        try:
            deadline = time.monotonic() + 5
            created = 0
            while time.monotonic() < deadline or created < 200:
                try:
                    Cookie(dev, 2, 0, PAGE, MemoryAttr.WC).destroy()
                except BusyError:
                    failures += 1
                created += 1
        finally:
            stop.set()
            thread.join()
        assert reads > 0
        assert failures == 0, f"{failures} of {created} WC creations answered EBUSY"


# -- charging: what a cookie costs the kernel is the caller's --------------

_CGROUP = Path("/sys/fs/cgroup")


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A fresh cgroup-v2 group with the memory controller, removed afterwards."""
    if not (_CGROUP / "cgroup.controllers").exists():
        subprocess.run(["mount", "-t", "cgroup2", "none", str(_CGROUP)], check=True)
    if "memory" not in (_CGROUP / "cgroup.controllers").read_text().split():
        pytest.skip("this kernel has no memory controller")
    (_CGROUP / "cgroup.subtree_control").write_text("+memory")
    group = _CGROUP / f"pyvfio-test-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        for _ in range(50):  # the child has exited; its group empties a moment later
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def _create_raw(dev: Device, n: int) -> None:
    """Cookie n of distinct ranges (a segment each), kept by the kernel only."""
    arg = uapi.vfio_device_feature_mmap_cookie_create(
        index=2, attr=MemoryAttr.UC, offset=(n % 1000) * PAGE, length=(1 + n // 1000) * PAGE
    )
    dev.feature(
        uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE, uapi.VFIO_DEVICE_FEATURE_SET, bytes(arg)
    )


def _in_group(group: Path, bdf: str, body: Callable[[Device], None]) -> forked.Forked:
    def target() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))
        with Device.open(bdf) as dev:
            body(dev)

    return forked.Forked(target)


def test_cookies_are_charged_to_the_callers_memory_cgroup(
    wc_ivshmem: str, memory_cgroup: Path
) -> None:
    # memory.current is the group's page counter, exact at any moment
    # (memory.stat's slab lines are flushed lazily: 7.3 showed half).
    def current() -> int:
        return int((memory_cgroup / "memory.current").read_text())

    def target() -> None:
        (memory_cgroup / "cgroup.procs").write_text(str(os.getpid()))
        with Device.open(wc_ivshmem) as dev:
            _create_raw(dev, 0)  # first-use allocations out of the way
            before = current()
            for n in range(1, 4001):
                _create_raw(dev, n)
            during = current()
        print(before, during, current())  # closed: the kernel has freed them

    child = forked.Forked(target)
    out, err = child.communicate(120)
    assert child.returncode == 0, err
    before, during, closed = map(int, out.split())
    # A struct cookie and a segment each: at least 64 bytes per cookie, on
    # the way up and again on the way down at close (no Python object goes
    # then, so what leaves is the kernel's).
    assert during - before >= 4000 * 64, (before, during, closed)
    assert during - closed >= 4000 * 64, (before, during, closed)


def test_a_memory_limit_stops_cookies_inside_the_callers_cgroup(
    wc_ivshmem: str, memory_cgroup: Path
) -> None:
    def body(dev: Device) -> None:
        _create_raw(dev, 0)
        # 128 KiB above what cannot be reclaimed: the group's file cache
        # (Python's files, read over 9p) would otherwise make room for
        # 512 KiB of cookies (6.12 made all 4,096 once).
        lines = (memory_cgroup / "memory.stat").read_text().splitlines()
        stat = dict(line.split() for line in lines)
        current = int((memory_cgroup / "memory.current").read_text())
        (memory_cgroup / "memory.max").write_text(str(current - int(stat["file"]) + (128 << 10)))
        print("set", flush=True)
        made = 1
        try:
            for n in range(1, uapi.VFIO_MMAP_COOKIE_MAX):
                _create_raw(dev, n)
                made += 1
        except OSError as exc:
            print("refused", made, exc.errno)
            return
        print("made", made)

    child = _in_group(memory_cgroup, wc_ivshmem, body)
    out, err = child.communicate(120)
    events = dict(
        line.split() for line in (memory_cgroup / "memory.events").read_text().splitlines()
    )
    # The limit was reached in the caller's group: the child was refused
    # (ENOMEM) or OOM-killed there, before the driver's own cap.
    assert out.startswith("set"), (out, err)  # the limit did not stop the child at once
    assert int(events["max"]) > 0, (out, err, events)
    assert "made" not in out, out
    print(f"limit: {out.strip() or 'killed'}, events {events}")
    if child.returncode == -signal.SIGKILL:
        assert int(events["oom_kill"]) >= 1
    else:
        assert child.returncode == 0 and "refused" in out, (child.returncode, out, err)
    with Device.open(wc_ivshmem) as dev:  # the kernel's state is whole: open and map again
        assert dev.region(2).map(0, PAGE, attr=MemoryAttr.UC).read32(0) is not None
