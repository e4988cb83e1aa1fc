# SPDX-License-Identifier: Apache-2.0
"""Fuzz and concurrency stress of the cookie uAPI; the kernel log must stay clean.

(The VM runner fails the whole run on any WARNING/BUG/Oops/PAT-conflict
line, so these tests pass only if the kernel said nothing bad.)
"""

from __future__ import annotations

import errno
import faulthandler
import mmap
import os
import random
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pyvfio import Device, Sysfs, VfioError, kmod, uapi
from pyvfio.cookie import Cookie, MemoryAttr

from .kernel_maps import pat_types
from .test_cookies import PAGE, bar_start

SEED = int(os.environ.get("PYVFIO_FUZZ_SEED", "20261124"))
FEATURES = [
    uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE,
    uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY,
    uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY,
    uapi.VFIO_DEVICE_FEATURE_MMAP_ATTRS,
]
# What the header documents, plus ENOTTY (unknown feature) from VFIO itself.
FEATURE_ERRNOS = {
    errno.EINVAL,
    errno.ERANGE,
    errno.EBUSY,
    errno.ENOSPC,
    errno.EOPNOTSUPP,
    errno.ENOTTY,
}
MMAP_ERRNOS = {errno.EINVAL, errno.EBUSY, errno.ENOMEM, errno.EOVERFLOW}
COOKIE_BASE = 0xC00 << 40


def _value(rng: random.Random, interesting: list[int], bits: int) -> int:
    if rng.random() < 0.6:
        return rng.choice(interesting)
    return rng.getrandbits(bits)


def test_fuzz_feature_ioctls_and_mmap_offsets(wc_ivshmem: str, sysfs: Sysfs) -> None:
    rng = random.Random(SEED)
    seen: dict[str, int] = {}
    base = bar_start(sysfs, wc_ivshmem, 2)
    with Device.open(wc_ivshmem) as dev:
        cookies: list[int] = []
        for _ in range(10_000):
            feature = rng.choice(FEATURES) if rng.random() < 0.9 else rng.getrandbits(16)
            flags = rng.choice(
                [
                    uapi.VFIO_DEVICE_FEATURE_SET,
                    uapi.VFIO_DEVICE_FEATURE_GET,
                    uapi.VFIO_DEVICE_FEATURE_PROBE | uapi.VFIO_DEVICE_FEATURE_SET,
                    0,
                    rng.getrandbits(3) << 16,
                ]
            )
            fields = struct.pack(
                "<IIIIQQQQ",
                _value(rng, [0, 2, 6, 7, 9, 0xC00], 32),
                _value(rng, [0, 1, 2], 32),
                0 if rng.random() < 0.8 else rng.getrandbits(32),
                0 if rng.random() < 0.8 else rng.getrandbits(32),
                _value(rng, [0, PAGE, 100, (4 << 20) - PAGE, 4 << 20], 64),
                _value(rng, [0, 1, PAGE, 2 * PAGE, 4 << 20, (1 << 64) - 1], 64),
                rng.choice(cookies) if cookies and rng.random() < 0.5 else rng.getrandbits(64),
                0,
            )
            data = fields[: rng.choice([0, 4, 8, 16, 24, 40, 48, 48, 48])] + (
                bytes(rng.getrandbits(1) for _ in range(rng.choice([0, 0, 8])))
            )
            if (
                feature
                in (
                    uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY,
                    uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY,
                )
                and cookies
                and rng.random() < 0.5
            ):
                data = struct.pack("<QII", rng.choice(cookies), 0, 0) + data[16:]
            try:
                out = dev.feature(feature, flags, data)
                seen["ok"] = seen.get("ok", 0) + 1
                if (
                    feature == uapi.VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE
                    and flags == uapi.VFIO_DEVICE_FEATURE_SET
                    and len(out) >= 40
                ):
                    cookies.append(struct.unpack_from("<Q", out, 32)[0])
            except VfioError as exc:
                assert exc.errno in FEATURE_ERRNOS, (feature, flags, data.hex(), exc)
                seen[errno.errorcode[exc.errno]] = seen.get(errno.errorcode[exc.errno], 0) + 1
            if rng.random() < 0.1:
                _fuzz_mmap(rng, dev, cookies)
        assert seen.get("ok", 0) > 100 and seen.get("EINVAL", 0) > 100, seen
    assert pat_types(base, base + (4 << 20)) == []


def _fuzz_mmap(rng: random.Random, dev: Device, cookies: list[int]) -> None:
    offset = rng.choice(
        [
            rng.choice(cookies) if cookies else COOKIE_BASE,
            COOKIE_BASE + (rng.getrandbits(20) << 12),
            (2 << 40) + (rng.getrandbits(11) << 12),
            rng.getrandbits(12) << 40,
        ]
    )
    length = rng.choice([PAGE, 2 * PAGE, 1 << 20])
    try:
        mm = mmap.mmap(dev.fd, length, offset=offset)
    except OSError as exc:
        assert exc.errno in MMAP_ERRNOS, (hex(offset), length, exc)
        return
    mm[0:4] = b"fuzz"
    assert mm[0:4] == b"fuzz"
    mm.close()


STRESS_SECONDS = float(os.environ.get("PYVFIO_STRESS_SECONDS", "30"))
# The least work that counts as a race run, per second of it: a third of
# what 6.1 under TCG does (30 s: 50 map cycles and decode toggles, 5 resets).
_PER_SECOND = {"cycles": 50 / 30, "toggles": 50 / 30, "resets": 5 / 30, "steps": 10 / 30}


def _assert_enough(**done: int) -> None:
    """Each count above its least for this run's length: the races really ran."""
    short = {k: n for k, n in done.items() if n <= _PER_SECOND[k.split("_")[0]] * STRESS_SECONDS}
    assert not short, f"too little done in {STRESS_SECONDS:g} s: {short}"


def _worker(dev: Device, seed: int, deadline: float, counter: Path, resets: Path) -> None:
    """A forked process: cycle cookies through create/map/touch/unmap/destroy.

    ``resets`` grows by one byte before and one after each device reset: a
    reset between our write and read-back clears the CMB, so a different value
    read back then is the reset's doing, not a lost write.
    """
    rng = random.Random(seed)
    stop = threading.Event()

    def table_churn() -> None:  # no touching: safe while decode is off
        while not stop.is_set():
            try:
                c = Cookie(dev, 2, rng.randrange(0, 64) * PAGE, PAGE, MemoryAttr.UC)
                c.query()
                c.destroy()
            except VfioError:
                pass

    thread = threading.Thread(target=table_churn, daemon=True)
    thread.start()
    cycles = 0
    while time.monotonic() < deadline:
        page = rng.randrange(64, 1024)
        attr = MemoryAttr.WC if page % 2 else MemoryAttr.UC
        try:
            mapping = dev.region(2).map(page * PAGE, PAGE, attr=attr)
        except VfioError:
            continue  # EBUSY from a sibling's conflicting page is expected
        epoch = resets.stat().st_size
        mapping.write32(0, cycles)  # SIGBUS here while decode is off: the parent respawns us
        value = mapping.read32(0)
        if value != cycles:
            assert epoch % 2 or resets.stat().st_size != epoch, (value, cycles)
        mapping.close()
        cycles += 1
        with counter.open("a") as out:
            out.write("1")
    stop.set()
    thread.join()


def _reset_marked(dev: Device, resets: Path) -> None:
    """Reset the device, with a mark in ``resets`` before and after (see _worker)."""
    with resets.open("a") as mark:
        mark.write("1")
    dev.reset()
    with resets.open("a") as mark:
        mark.write("1")


def _assert_clean_exit(status: int, error: Path) -> None:
    """A worker that did not die of SIGBUS must have exited 0; else show its traceback."""
    ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert ok, error.read_text() if error.exists() else status


def test_concurrent_cookies_against_reset_and_decode_toggling(
    wc_nvme: str, sysfs: Sysfs, tmp_path: Path
) -> None:
    base = bar_start(sysfs, wc_nvme, 2)
    counter, resets_file = (tmp_path / "cycles", tmp_path / "resets")
    counter.touch()
    resets_file.touch()
    deadline = time.monotonic() + STRESS_SECONDS
    sigbus = resets = toggles = 0
    with Device.open(wc_nvme) as dev:
        workers: dict[int, int] = {}

        def spawn(seed: int) -> None:
            pid = os.fork()
            if pid == 0:  # child: never return into pytest
                faulthandler.disable()  # dying of SIGBUS is this worker's job
                code = 0
                try:
                    _worker(dev, seed, deadline, counter, resets_file)
                except BaseException:  # the parent reports it
                    (tmp_path / f"worker-{os.getpid()}.err").write_text(traceback.format_exc())
                    code = 1
                os._exit(code)
            workers[pid] = seed

        for seed in range(3):
            spawn(seed)
        cmd = dev.config.read16(4)
        while time.monotonic() < deadline:
            dev.config.write16(4, cmd & ~2)  # memory decode off: revoke
            time.sleep(0.02)
            dev.config.write16(4, cmd)
            toggles += 1
            if toggles % 10 == 0:
                _reset_marked(dev, resets_file)
                dev.config.write16(4, cmd)
                resets += 1
            time.sleep(0.05)
            for pid in list(workers):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    seed = workers.pop(pid)
                    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGBUS:
                        sigbus += 1
                        spawn(seed + 100)
                    else:
                        _assert_clean_exit(status, tmp_path / f"worker-{pid}.err")
        for pid in workers:
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status) or os.WTERMSIG(status) == signal.SIGBUS
    cycles = len(counter.read_text())
    print(
        f"stress: {cycles} map cycles, {toggles} decode toggles, {resets} resets, "
        f"{sigbus} workers killed by SIGBUS"
    )
    _assert_enough(cycles=cycles, toggles=toggles, resets=resets)
    assert pat_types(base, base + (16 << 20)) == []  # nothing leaked
    sysfs.unbind(wc_nvme)
    kmod.unload()  # no reference left behind
    kmod.load()
    sysfs.bind(wc_nvme, "vfio_pci_cookie")  # the fixture unbinds it again


class _Gate:
    """Many touchers or one disruptor: a touch while decode is off would SIGBUS the process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._touching = 0
        self._closed = False

    def touch(self) -> _Touch:
        return _Touch(self)

    def enter(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._touching += 1

    def leave(self) -> None:
        with self._cond:
            self._touching -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._touching == 0)

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


class _Touch:
    def __init__(self, gate: _Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._gate.enter()

    def __exit__(self, *exc: object) -> None:
        self._gate.leave()


WATCHDOG_SECONDS = 10.0
Step = Callable[[random.Random], None]


class _ThreadStress:
    """The steps each thread repeats, over one open device."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.gate = _Gate()
        self.counts = {"toggles": 0, "resets": 0, "low_power": 0}

    def map_cycle(self, rng: random.Random) -> None:
        page = rng.randrange(0, 1024)
        attr = MemoryAttr.WC if page % 2 else MemoryAttr.UC
        try:
            cookie = Cookie(self.dev, 2, page * PAGE, PAGE, attr)
        except VfioError as exc:
            assert exc.errno == errno.EBUSY, exc  # a sibling's page of the other type
            return
        m = mmap.mmap(self.dev.fd, PAGE, offset=cookie.value)
        with self.gate.touch():
            m[0:4] = struct.pack("<I", page)
            assert len(m[0:4]) == 4  # a read through the mapping
        m.close()
        cookie.destroy()

    def table_churn(self, rng: random.Random) -> None:
        c = Cookie(self.dev, 2, rng.randrange(1024, 2048) * PAGE, PAGE, MemoryAttr.UC)
        c.query()
        c.destroy()

    def disrupt(self, rng: random.Random) -> None:
        dev, set_ = self.dev, uapi.VFIO_DEVICE_FEATURE_SET
        cmd = dev.config.read16(4)
        self.gate.close()
        try:
            choice = rng.randrange(10)
            if choice == 0:
                dev.reset()
                self.counts["resets"] += 1
            elif choice == 1:
                dev.feature(uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, set_)
                time.sleep(0.05)
                dev.feature(uapi.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, set_)
                self.counts["low_power"] += 1
            else:
                dev.config.write16(4, cmd & ~2)  # memory decode off: revoke
                time.sleep(0.01)
                self.counts["toggles"] += 1
            dev.config.write16(4, cmd)
        finally:
            self.gate.open()
        time.sleep(0.03)


def _run_watched(
    steps: dict[str, Callable[[random.Random], None]], deadline: float
) -> dict[str, int]:
    """Run each step in its own thread until ``deadline``; fail if one stalls for 10 s."""
    progress = dict.fromkeys(steps, 0)
    errors: list[str] = []

    def run(name: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < deadline and not errors:
                steps[name](rng)
                progress[name] += 1
        except BaseException:
            errors.append(f"{name}:\n{traceback.format_exc()}")

    threads = [
        threading.Thread(target=run, args=(name, i), daemon=True) for i, name in enumerate(steps)
    ]
    for t in threads:
        t.start()
    seen = {name: (0, time.monotonic()) for name in steps}
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        now = time.monotonic()
        for name, (count, since) in list(seen.items()):
            if progress[name] != count:
                seen[name] = (progress[name], now)
            elif now - since > WATCHDOG_SECONDS and now < deadline:
                faulthandler.dump_traceback()
                raise AssertionError(f"{name} made no progress for {WATCHDOG_SECONDS} s")
    assert not errors, errors[0]
    return progress


def test_threads_of_one_process_against_reset_decode_and_low_power(
    wc_nvme: str, sysfs: Sysfs
) -> None:
    """Threads share the device fd, the mm and the driver's locks: what deadlocked v1."""
    base = bar_start(sysfs, wc_nvme, 2)
    deadline = time.monotonic() + STRESS_SECONDS
    with Device.open(wc_nvme) as dev:
        stress = _ThreadStress(dev)
        steps: dict[str, Step] = {f"map-{i}": stress.map_cycle for i in range(3)}
        steps |= {"table": stress.table_churn, "disrupt": stress.disrupt}
        progress = _run_watched(steps, deadline)
        print(f"stress (threads): {progress} {stress.counts}")
        _assert_enough(**{f"steps_{name}": count for name, count in progress.items()})
        assert all(stress.counts.values()), stress.counts
    assert pat_types(base, base + (16 << 20)) == []  # nothing left after close
    sysfs.unbind(wc_nvme)
    kmod.unload()  # no reference left behind
    kmod.load()
    sysfs.bind(wc_nvme, "vfio_pci_cookie")  # the fixture unbinds it again
