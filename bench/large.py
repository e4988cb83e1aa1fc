# SPDX-License-Identifier: Apache-2.0
"""What vfio_pci_cookie costs on large BARs, against vfio-pci in the same boot.

    pyvfio vm run --large-bar 16M --large-bar 1G --large-bar 64G --rwdir bench/results \\
        -- .venv/bin/python bench/large.py [--repeat 20] [--repeat-at 64G=5] [--cycles 100]

As root in the test VM.  The BARs are the BAR2 of ivshmem-plain devices that
``--large-bar`` adds, found by size (the built-in ivshmem's is 4 MiB); each is
bound to vfio-pci and to the module in turn (ABBA blocks, so that TCG's drift
within a run cancels).  Per size, --repeat runs (medians, unless said otherwise) of:

1. ``Device.open``, the first 4-byte pread of BAR2 after it, ``close()``:
   module against vfio-pci, target 1.5x each.
2. Kernel memory after open, after that pread and after close, against its
   value before open: page tables (/proc/meminfo's PageTables; on kernels
   whose PageTables leaves out the kernel's own, 6.1 and 6.12, MemFree's
   drop, at most the growth of what no meminfo counter holds), and
   the bytes of live vmalloc areas in /proc/vmallocinfo (every caller summed;
   areas freed but not yet purged, ``unpurged vm_area``, left out).  The most
   of any run (the first after a bind included), not the median: the kernel
   keeps a vmalloc range's page tables when it is freed and reuses them for
   the next mapping there, so only a run at a fresh address shows them.
   Target: the module's increase at most vfio-pci's (0 if below) +
   --allowance-kib, with no cookies live; after close, vfio-pci's + --slack-kib.
3. Create and destroy of a one-page WC cookie at 2 MiB and at 2 MiB + 4 KiB
   (off a 2 MiB boundary), and apart from them each open's first create (at
   2 MiB): the largest BAR against the smallest, target 1.5x (the sizes
   between are shown, without a target).
4. On the largest BAR: while one thread creates and destroys a WC cookie at
   2 MiB + 4 KiB --cycles times, one thread times 4-byte preads and another
   faults (mmap one page half the BAR away, read it, munmap; on kernels that
   refuse legacy mmaps of a BAR with WC cookies, 6.1, through a UC cookie's
   mapping).  Target: the longest of each at most twice the smallest BAR's
   median create at that offset + 10 ms.
"""

from __future__ import annotations

import argparse
import errno
import mmap
import os
import re
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import Figure, progress, save, table

from pyvfio import Device, Sysfs, kmod
from pyvfio.cookie import DRIVER, Cookie, MemoryAttr
from pyvfio.vm import IVSHMEM_ID

PAGE = mmap.PAGESIZE
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
VFIO = "vfio-pci"
BAR = 2  # ivshmem-plain's memory BAR
COOKIE_AT = {"2M": 2 * MiB, "2M+4K": 2 * MiB + 4 * KiB}
WAIT_COOKIE = "2M+4K"  # where the cookie of step 4 goes: its neighbour run is off 2 MiB
WAIT_SLACK_MS = 10.0
PAUSE = 0.0005  # seconds between a sampler's operations
# Whether PageTables counts the kernel's own page tables (vmalloc, ioremap):
# measured here, a WC cookie on the 64 GiB BAR whose neighbour run is mapped
# with 4K pages moved PageTables by 256 KiB on 6.12 and by 128 MiB on 7.3
# (MemFree dropped by 120-270 MiB on both).  The kernel began to count them
# between those two releases; the bench takes 6.16 as the first that does.
KERNEL_PAGE_TABLES_COUNTED = (6, 16)


def size_label(size: int) -> str:
    return f"{size // GiB}G" if size >= GiB and size % GiB == 0 else f"{size // MiB}M"


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([MG])", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: say 16M, 1G, 64G ...")
    return int(match.group(1)) * (GiB if match.group(2) == "G" else MiB)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def kernel_counts_own_page_tables() -> bool:
    numbers = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert numbers, os.uname().release
    return (int(numbers.group(1)), int(numbers.group(2))) >= KERNEL_PAGE_TABLES_COUNTED


# ---- kernel memory ----------------------------------------------------------


# What /proc/meminfo counts of the memory in use, without overlaps (Cached
# holds Shmem, AnonPages AnonHugePages; VmallocUsed is pages).  The rest of
# MemTotal - MemFree is what no counter shows, such as the kernel's own page
# tables before 6.16.
ACCOUNTED = (
    "Buffers",
    "Cached",
    "SwapCached",
    "AnonPages",
    "Slab",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "VmallocUsed",
    "Percpu",
)


@dataclass(frozen=True)
class Snapshot:
    page_tables: int  # bytes, PageTables
    mem_free: int  # bytes, MemFree
    unaccounted: int  # bytes neither free nor in any meminfo counter
    vmalloc: int  # bytes of live vmalloc areas
    callers: dict[str, int]  # of those bytes, by the caller vmallocinfo names


def snapshot() -> Snapshot:
    # Fold the CPUs' pending deltas into the counters first: each may hold
    # dozens of pages (vmstat's threshold), more than the allowance.
    Path("/proc/sys/vm/stat_refresh").write_text("1\n")
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0]) * KiB
    callers: dict[str, int] = {}
    for line in Path("/proc/vmallocinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) < 2 or "unpurged" in fields:
            continue  # freed already; only the TLB flush is pending
        caller = re.sub(r"\+0x.*", "", fields[2]) if len(fields) > 2 else "?"
        callers[caller] = callers.get(caller, 0) + int(fields[1])
    accounted = sum(info.get(key, 0) for key in ACCOUNTED)
    return Snapshot(
        page_tables=info["PageTables"],
        mem_free=info["MemFree"],
        unaccounted=info["MemTotal"] - info["MemFree"] - accounted,
        vmalloc=sum(callers.values()),
        callers=callers,
    )


def memory_delta(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """KiB the kernel holds more in ``after`` than in ``before``."""
    page_tables = after.page_tables - before.page_tables
    unaccounted = after.unaccounted - before.unaccounted
    mem_free_drop = before.mem_free - after.mem_free
    # Before 6.16: what left the free lists for no counter.  Either alone moves
    # without page tables: MemFree with this process's heap and the page
    # cache, the rest when pages pass between counters or per-CPU lists.
    untracked = min(unaccounted, mem_free_drop)
    return {
        "page tables": (page_tables if kernel_counts_own_page_tables() else untracked) / KiB,
        "vmalloc": (after.vmalloc - before.vmalloc) / KiB,
        "PageTables": page_tables / KiB,
        "unaccounted": unaccounted / KiB,
        "MemFree drop": mem_free_drop / KiB,
    }


def caller_delta(before: Snapshot, after: Snapshot) -> dict[str, int]:
    names = set(before.callers) | set(after.callers)
    delta = {n: after.callers.get(n, 0) - before.callers.get(n, 0) for n in names}
    return {n: d for n, d in sorted(delta.items()) if d}


# ---- 1 and 2: open, first pread, close --------------------------------------

POINTS = ("after open", "after pread", "after close")
STEPS = ("open", "first pread", "close")
MEMORY = ("page tables", "vmalloc", "PageTables", "unaccounted", "MemFree drop")


@dataclass
class OpenCycle:
    first: bool  # the first after a bind: its timings are left out (TCG translates code)
    us: dict[str, float]  # open, first pread, close
    memory: dict[str, dict[str, float]]  # by point: memory_delta
    callers: dict[str, dict[str, int]]  # by point: caller_delta


def open_cycle(bdf: str, first: bool = False) -> OpenCycle:
    before = snapshot()
    start = time.perf_counter_ns()
    dev = Device.open(bdf)
    opened = time.perf_counter_ns()
    try:
        after_open = snapshot()
        offset = dev.region(BAR).info.offset
        start_read = time.perf_counter_ns()
        os.pread(dev.fd, 4, offset)
        read = time.perf_counter_ns()
        after_pread = snapshot()
    finally:
        start_close = time.perf_counter_ns()
        dev.close()
        closed = time.perf_counter_ns()
    after_close = snapshot()
    snaps = dict(zip(POINTS, (after_open, after_pread, after_close), strict=True))
    return OpenCycle(
        first=first,
        us={
            "open": (opened - start) / 1000,
            "first pread": (read - start_read) / 1000,
            "close": (closed - start_close) / 1000,
        },
        memory={p: memory_delta(before, s) for p, s in snaps.items()},
        callers={p: caller_delta(before, s) for p, s in snaps.items()},
    )


def split(count: int, blocks: int, block: int) -> int:
    """Runs of ``count`` that fall to the ``block``-th of a driver's ``blocks``."""
    return count // blocks + (1 if block < count % blocks else 0)


def rounds(counts: dict[int, int], blocks: int, block: int) -> Iterator[list[int]]:
    """The sizes each round of a block measures: interleaved while each has runs left."""
    share = {size: split(n, blocks, block) for size, n in counts.items()}
    for i in range(max(share.values(), default=0)):
        yield [size for size, n in share.items() if i < n]


def bind_all(sysfs: Sysfs, devices: dict[int, str], driver: str) -> None:
    for bdf in devices.values():
        sysfs.bind(bdf, driver)


def open_cycles(
    sysfs: Sysfs, devices: dict[int, str], counts: dict[int, int]
) -> dict[str, dict[int, list[OpenCycle]]]:
    """Each driver's cycles per size, in ABBA blocks; each block begins with a
    cycle per size (``first``) whose timings do not count and whose memory
    does: the kernel keeps the page tables of a vmalloc range after it is
    freed, and the next mapping at that address reuses them, so what a
    mapping costs shows only where the range was not mapped alike before."""
    results: dict[str, dict[int, list[OpenCycle]]] = {
        d: {size: [] for size in devices} for d in (VFIO, DRIVER)
    }
    order = (VFIO, DRIVER, DRIVER, VFIO)  # ABBA: each driver's two blocks straddle the middle
    seen = {VFIO: 0, DRIVER: 0}
    for driver in order:
        bind_all(sysfs, devices, driver)
        for size, bdf in devices.items():
            results[driver][size].append(open_cycle(bdf, first=True))
        for sizes in rounds(counts, 2, seen[driver]):
            for size in sizes:
                results[driver][size].append(open_cycle(devices[size]))
        seen[driver] += 1
        for size in devices:
            runs = results[driver][size]
            timed = [c for c in runs if not c.first]
            most = {
                what: max(c.memory[p][what] for c in runs for p in POINTS)
                for what in ("page tables", "vmalloc")
            }
            progress(
                f"large: {size_label(size)} on {driver}: {len(timed)} runs"
                + (
                    ", last: " + ", ".join(f"{k} {v:.0f} us" for k, v in timed[-1].us.items())
                    if timed
                    else ""
                )
                + f"; most page tables {most['page tables']:.0f} KiB, "
                f"vmalloc {most['vmalloc']:.0f} KiB"
            )
    return results


# ---- 3: cookie create and destroy -------------------------------------------


def timed_cookie(dev: Device, offset: int, attr: MemoryAttr = MemoryAttr.WC) -> tuple[float, float]:
    """Microseconds to create, then to destroy, a one-page cookie at ``offset``."""
    start = time.perf_counter_ns()
    cookie = Cookie(dev, BAR, offset, PAGE, attr)
    created = time.perf_counter_ns()
    cookie.destroy()
    destroyed = time.perf_counter_ns()
    return (created - start) / 1000, (destroyed - created) / 1000


def cookie_cycles(
    sysfs: Sysfs, devices: dict[int, str], counts: dict[int, int]
) -> dict[int, dict[str, list[float]]]:
    bind_all(sysfs, devices, DRIVER)
    steps = ["first create", "first destroy"] + [
        f"{op} at {where}" for where in COOKIE_AT for op in ("create", "destroy")
    ]
    results: dict[int, dict[str, list[float]]] = {size: {s: [] for s in steps} for size in devices}
    for i, sizes in enumerate(rounds(counts, 1, 0)):
        for size in sizes:
            samples = results[size]
            with Device.open(devices[size]) as dev:
                c, d = timed_cookie(dev, COOKIE_AT["2M"])
                samples["first create"].append(c)
                samples["first destroy"].append(d)
                wheres = list(COOKIE_AT) if i % 2 == 0 else list(reversed(COOKIE_AT))
                for where in wheres:
                    c, d = timed_cookie(dev, COOKIE_AT[where])
                    samples[f"create at {where}"].append(c)
                    samples[f"destroy at {where}"].append(d)
        progress(
            f"large: cookies: round {i + 1}: "
            + ", ".join(
                f"{size_label(s)} first {results[s]['first create'][-1]:.0f} us, "
                f"at {WAIT_COOKIE} {results[s][f'create at {WAIT_COOKIE}'][-1]:.0f} us"
                for s in sizes
            )
        )
    return results


# ---- 4: waits of preads and faults while cookies come and go ----------------


def fault_once(fd: int, offset: int) -> None:
    """mmap one page of the device fd at ``offset``, read it (the fault), munmap."""
    page = mmap.mmap(fd, PAGE, offset=offset)
    try:
        page[:4]
    finally:
        page.close()


def sample(op: Callable[[], object], stop: mmap.mmap, out: int) -> None:
    """In a child: time ``op`` until ``stop[0]`` is set, pausing between calls
    so as not to keep a vCPU busy; the ns latencies go to the pipe ``out``."""
    samples = array("q")
    while not stop[0]:
        start = time.perf_counter_ns()
        op()
        samples.append(time.perf_counter_ns() - start)
        time.sleep(PAUSE)
    with os.fdopen(out, "wb") as pipe:
        pipe.write(samples.tobytes())


def run_beside(
    ops: dict[str, Callable[[], object]], body: Callable[[], object]
) -> dict[str, list[int]]:
    """Run each op in a loop in a process of its own (forked: it shares the
    device fd) while ``body`` runs here; their latencies in ns.  Processes,
    not threads: under single-threaded TCG a thread waiting for the GIL held
    on the other vCPU waits for QEMU to switch vCPUs, tens of ms."""
    stop = mmap.mmap(-1, PAGE)  # shared with the children
    children: dict[str, tuple[int, int]] = {}
    try:
        for name, op in ops.items():
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                status = 1
                try:
                    os.close(read)
                    sample(op, stop, write)
                    status = 0
                finally:
                    os._exit(status)  # no atexit, no destructors: the device is the parent's
            os.close(write)
            children[name] = (pid, read)
        body()
    finally:
        stop[0] = 1
        samples: dict[str, list[int]] = {}
        failed = []
        for name, (pid, read) in children.items():
            with os.fdopen(read, "rb") as pipe:
                data = pipe.read()
            if os.waitpid(pid, 0)[1] != 0:
                failed.append(name)
            samples[name] = array("q", data).tolist()
        stop.close()
    if failed:
        raise RuntimeError(f"large: the {', '.join(failed)} sampler failed (see above)")
    return samples


def describe(ns: list[int]) -> dict[str, float]:
    ms = sorted(x / 1e6 for x in ns)
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
    }


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def waits(bdf: str, size: int, cycles: int) -> dict[str, Any]:
    cookie_at = COOKIE_AT[WAIT_COOKIE]
    far = size // 2  # the pread's page; the fault's is the next
    changes: list[tuple[float, float]] = []
    with Device.open(bdf) as dev:
        base = dev.region(BAR).info.offset
        timed_cookie(dev, cookie_at)  # an open's first create is step 3's
        # 6.1 refuses a legacy mmap of a BAR with WC cookies (and the reverse)
        wc = Cookie(dev, BAR, cookie_at, PAGE, MemoryAttr.WC)
        fault_via = "legacy mmap"
        fault_offset = base + far + PAGE
        uc: Cookie | None = None
        try:
            mmap.mmap(dev.fd, PAGE, offset=fault_offset).close()
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            uc = Cookie(dev, BAR, far + PAGE, PAGE, MemoryAttr.UC)
            fault_via, fault_offset = "UC cookie", uc.value
        finally:
            wc.destroy()
        ops: dict[str, Callable[[], object]] = {
            "pread": lambda: os.pread(dev.fd, 4, base + far),
            "fault": lambda: fault_once(dev.fd, fault_offset),
        }
        quiet = run_beside(ops, lambda: time.sleep(2.0))
        # The floor under TCG: one host thread runs both vCPUs, so a busy vCPU
        # alone stretches what the other times, with no lock shared.
        spinning = run_beside(ops, lambda: spin(2.0))

        def change() -> None:
            for i in range(cycles):
                changes.append(timed_cookie(dev, cookie_at))
                if (i + 1) % 10 == 0:
                    progress(
                        f"large: waits: {i + 1}/{cycles} WC create/destroy cycles, "
                        f"last {changes[-1][0] / 1000:.0f} + {changes[-1][1] / 1000:.0f} ms"
                    )

        busy = run_beside(ops, change)
        if uc is not None:
            uc.destroy()
    return {
        "fault via": fault_via,
        "cookie at": cookie_at,
        "pread and fault at": far,
        "quiet": {name: describe(ns) for name, ns in quiet.items()},
        "beside a busy CPU": {name: describe(ns) for name, ns in spinning.items()},
        "during changes": {name: describe(ns) for name, ns in busy.items()},
        "create_ms": describe([int(c * 1000) for c, _ in changes]),
        "destroy_ms": describe([int(d * 1000) for _, d in changes]),
    }


# ---- the run ----------------------------------------------------------------


def find_devices(sysfs: Sysfs, sizes: list[int]) -> dict[int, str]:
    by_size: dict[int, str] = {}
    for dev in sysfs.find(*IVSHMEM_ID):
        for bar in dev.bars:
            if bar.index == BAR:
                by_size.setdefault(bar.size, dev.bdf)
    missing = [size_label(s) for s in sizes if s not in by_size]
    if missing:
        found = ", ".join(f"{size_label(s)} at {b}" for s, b in sorted(by_size.items()))
        raise SystemExit(
            f"large: no ivshmem with a BAR2 of {', '.join(missing)} (found: {found}); "
            "boot with " + " ".join(f"--large-bar {size_label(s)}" for s in sizes)
        )
    return {size: by_size[size] for size in sizes}


def module_identity(ko: Path) -> dict[str, str]:
    srcversion = Path("/sys/module", DRIVER, "srcversion")
    built = ""
    if ko.is_file():  # else loaded before: /sys/module/...
        built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ko.stat().st_mtime))
    return {
        "file": str(ko),
        "built": built,
        "srcversion": srcversion.read_text().strip() if srcversion.exists() else "",
    }


def repeat_at(text: str) -> tuple[int, int]:
    size, sep, count = text.partition("=")
    if not sep or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: say SIZE=COUNT, e.g. 64G=5")
    return parse_size(size), int(count)


def main() -> int:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="16M,1G,64G",
        help="BAR2 sizes to measure, smallest first (default: 16M,1G,64G); "
        "the smallest is step 3's reference, the largest step 4's BAR",
    )
    parser.add_argument("--repeat", type=int, default=20, help="runs per size and driver")
    parser.add_argument(
        "--repeat-at",
        type=repeat_at,
        action="append",
        default=[],
        metavar="SIZE=COUNT",
        help="another count for one size (e.g. 64G=5)",
    )
    parser.add_argument("--cycles", type=int, default=100, help="WC create/destroy cycles, step 4")
    parser.add_argument(
        "--ko",
        type=Path,
        help="the module to load: a .ko, or a directory with RELEASE/vfio_pci_cookie.ko "
        "(default: the one built for this kernel); the module must not be loaded yet",
    )
    parser.add_argument(
        "--allowance-kib",
        type=float,
        default=64.0,
        help="kernel memory the module may hold beyond vfio-pci's with no cookies (64)",
    )
    parser.add_argument(
        "--slack-kib",
        type=float,
        default=64.0,
        help="kernel memory that may stay after close, measurement noise (64)",
    )
    args = parser.parse_args()
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    counts = {size: args.repeat for size in sizes} | dict(args.repeat_at)
    counts = {size: counts[size] for size in sizes}
    small, large = sizes[0], sizes[-1]

    started = time.monotonic()
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    ko = args.ko
    if ko is not None and ko.is_dir():
        ko = ko / os.uname().release / f"{DRIVER}.ko"
    if ko is not None and kmod.is_loaded():
        raise SystemExit(f"large: --ko {ko}: {DRIVER} is loaded already")
    module = module_identity(kmod.load(ko))
    progress(f"large: {DRIVER} {module['srcversion']} from {module['file']} ({module['built']})")
    sysfs = Sysfs()
    devices = find_devices(sysfs, sizes)
    progress(
        "large: "
        + ", ".join(f"{size_label(s)} at {b} ({counts[s]} runs)" for s, b in devices.items())
    )
    pt_source = "PageTables" if kernel_counts_own_page_tables() else "MemFree drop, capped"
    try:
        opens = open_cycles(sysfs, devices, counts)
        cookies = cookie_cycles(sysfs, devices, counts)
        progress(f"large: waits on {size_label(large)} ({args.cycles} cycles)")
        wait = waits(devices[large], large, args.cycles)
    finally:
        for bdf in devices.values():
            sysfs.unbind(bdf)

    figures = []
    medians: dict[str, dict[str, dict[str, float]]] = {}
    maxima: dict[str, dict[str, dict[str, float]]] = {}
    for size in sizes:
        label = size_label(size)
        timed = {d: [c for c in opens[d][size] if not c.first] for d in (VFIO, DRIVER)}
        med = {
            d: {step: median([c.us[step] for c in timed[d]]) for step in STEPS}
            | {
                f"{what} {point} KiB": median([c.memory[point][what] for c in opens[d][size]])
                for point in POINTS
                for what in MEMORY
            }
            for d in (VFIO, DRIVER)
        }
        most = {
            d: {
                f"{what} {point} KiB": max(c.memory[point][what] for c in opens[d][size])
                for point in POINTS
                for what in MEMORY
            }
            for d in (VFIO, DRIVER)
        }
        medians[label] = med
        maxima[label] = most
        for step in STEPS:
            figures.append(
                Figure(
                    "large",
                    f"{label}: {step} vs vfio-pci",
                    med[DRIVER][step],
                    med[VFIO][step],
                    "us",
                    1.5,
                )
            )
        for what in ("page tables", "vmalloc"):
            shown = (
                "page tables (MemFree)"
                if what == "page tables" and pt_source != "PageTables"
                else what
            )
            for point in POINTS:
                key = f"{what} {point} KiB"
                ours, theirs = most[DRIVER][key], most[VFIO][key]
                if point == "after close":
                    name = f"{label}: {shown} left after close vs vfio-pci"
                    bound = max(theirs, 0.0) + args.slack_kib
                    note = "the most of any run; bound: vfio-pci's + the slack"
                else:
                    name = f"{label}: {shown} {point} vs vfio-pci"
                    bound = max(theirs, 0.0) + args.allowance_kib
                    note = "the most of any run; bound: vfio-pci's + the allowance"
                if shown != what:
                    note += "; MemFree's drop, at most what went to no meminfo counter"
                figures.append(Figure("large", name, ours, theirs, "KiB", note=note, bound=bound))
    cookie_medians = {
        size_label(size): {step: median(v) for step, v in cookies[size].items()} for size in sizes
    }
    ref = cookie_medians[size_label(small)]
    for size in sizes[1:]:
        here = cookie_medians[size_label(size)]
        target = 1.5 if size == large else None
        for where in COOKIE_AT:
            for op in ("create", "destroy"):
                step = f"{op} at {where}"
                figures.append(
                    Figure(
                        "large",
                        f"WC {step}: {size_label(size)} vs {size_label(small)}",
                        here[step],
                        ref[step],
                        "us",
                        target,
                    )
                )
        figures.append(
            Figure(
                "large",
                f"first WC create of an open: {size_label(size)} vs {size_label(small)}",
                here["first create"],
                ref["first create"],
                "us",
                target,
            )
        )
    bound_ms = 2 * ref[f"create at {WAIT_COOKIE}"] / 1000 + WAIT_SLACK_MS
    wait["bound_ms"] = bound_ms
    for op in ("pread", "fault"):
        figures.append(
            Figure(
                "large",
                f"{size_label(large)}: longest {op} during WC changes vs bound",
                wait["during changes"][op].get("max_ms", float("nan")),
                bound_ms,
                "ms",
                1.0,
                note=f"bound: 2x the {size_label(small)} median create at {WAIT_COOKIE} + "
                f"{WAIT_SLACK_MS:g} ms; faults via {wait['fault via']}; without changes "
                f"the longest took {wait['quiet'][op].get('max_ms', float('nan')):.1f} ms, "
                "beside a busy CPU "
                f"{wait['beside a busy CPU'][op].get('max_ms', float('nan')):.1f} ms",
            )
        )
    elapsed = time.monotonic() - started
    for op in ("pread", "fault"):
        progress(
            f"large: {op} ({wait['fault via'] if op == 'fault' else 'device fd'}), median/max: "
            + "; ".join(
                f"{when} {wait[when][op].get('median_ms', 0):.2f}/"
                f"{wait[when][op].get('max_ms', 0):.2f} ms"
                for when in ("quiet", "beside a busy CPU", "during changes")
            )
            + f" (bound {bound_ms:.1f} ms, {wait['during changes'][op].get('count', 0)} ops)"
        )
    progress(f"large: done in {elapsed:.0f} s")
    save(
        "large",
        figures,
        {
            "module": module,
            "devices": {size_label(s): b for s, b in devices.items()},
            "runs": {size_label(s): n for s, n in counts.items()},
            "page_tables_from": pt_source,
            "medians": medians,
            "maxima": maxima,
            "cookie_medians_us": cookie_medians,
            "waits": wait,
            "samples_us": {
                size_label(s): {
                    d: {step: [c.us[step] for c in opens[d][s] if not c.first] for step in STEPS}
                    for d in (VFIO, DRIVER)
                }
                | {"cookies": cookies[s]}
                for s in sizes
            },
            "memory_runs_kib": {
                size_label(s): {d: [c.memory for c in opens[d][s]] for d in (VFIO, DRIVER)}
                for s in sizes
            },
            "vmalloc_callers_last_run": {
                size_label(s): {d: opens[d][s][-1].callers for d in (VFIO, DRIVER)} for s in sizes
            },
            "seconds": elapsed,
        },
    )
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
