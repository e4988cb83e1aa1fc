# SPDX-License-Identifier: Apache-2.0
"""The kernel asking for a device back: unbinding a device a pyvfio program
holds completes, and the program sees a clear error instead of a hang.

Without the library's answer to the request interrupt, the unbind blocks in
the kernel (vfio_unregister_group_dev) until the holder exits.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pyvfio import BusyError, Device, Sysfs
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.irq import IrqIndex
from pyvfio.vm import EDU_ID, IVSHMEM_ID

from . import forked

# The holder: opens edu, says "open", then does what a driver would while
# someone unbinds the device, and prints how that ended.
HOLDER = """
import os, sys, threading
from pyvfio import Device, DeviceReleasedError, ClosedError
from pyvfio.irq import IrqIndex

mode = sys.argv[2]
asked = threading.Event()
with Device.open(sys.argv[1]) as dev:
    bar = dev.region(0).map()
    ints = dev.enable_irq(IrqIndex.MSI)
    if mode == "callback":
        dev.on_release_request(lambda device: asked.set())
    if mode == "callback-close":  # closed in the watcher thread while this one waits
        dev.on_release_request(lambda device: device.close())
        mode = "wait"
    if mode == "fork":  # a child closing its copies leaves the parent's alone
        pid = os.fork()
        if pid == 0:
            dev.close()
            os._exit(0)
        os.waitpid(pid, 0)
        ints.trigger()  # the parent's MSI is still enabled
        assert ints.wait(5) == [0]
        mode = "config"
    print("open", flush=True)
    try:
        if mode == "wait":
            ints.wait()  # no timeout: only the device going away ends it
        elif mode == "mmio":
            while True:
                bar.read32(0)
        elif mode == "config":
            while True:
                dev.config.read16(0)
        elif mode == "callback":
            assert asked.wait(60), "the callback was not called"
            print("callback", dev.release_requested, flush=True)
            dev.close()
            bar.read32(0)
    except ClosedError as exc:
        print(type(exc).__name__, exc, flush=True)
print("closed", dev.closed, flush=True)
"""


@pytest.fixture
def held_edu(sysfs: Sysfs, request: pytest.FixtureRequest) -> Iterator[str]:
    """edu on the test's driver; afterwards unbound, as the guest has it."""
    driver = request.node.callspec.params["driver"]
    if driver == COOKIE_DRIVER:
        request.getfixturevalue("cookie_module")
    edu = sysfs.find(*EDU_ID)[0]  # on the root bus: first, before any behind a bridge
    with sysfs.bound(edu.bdf, driver):
        yield edu.bdf


def unbind_from_another_process(bdf: str, holder: forked.Forked) -> None:
    """What an administrator does while the holder runs; fails the test if it blocks."""
    unbind = forked.python(f"from pyvfio import Sysfs; Sysfs().unbind({bdf!r}, force=True)")
    try:
        status = unbind.wait(timeout=60)
    except TimeoutError:
        holder.kill()  # what used to be the only way out
        unbind.wait()
        pytest.fail(f"unbinding {bdf} blocked while a pyvfio program held it")
    assert status == 0, unbind.communicate()[1]


# The request comes from the core, the same for both drivers; the cookie
# driver has its own mmap, so it runs the case where a mapping is in use.
@pytest.mark.parametrize(
    ("driver", "mode", "seen"),
    [
        ("vfio-pci", "wait", "DeviceReleasedError"),  # a blocked Interrupts.wait() wakes
        ("vfio-pci", "mmio", "ClosedError"),  # register access stops
        (COOKIE_DRIVER, "mmio", "ClosedError"),
        ("vfio-pci", "config", "DeviceReleasedError"),  # the next call on the device
        ("vfio-pci", "fork", "DeviceReleasedError"),
        ("vfio-pci", "callback", "ClosedError"),  # the program's own handler closed it
        ("vfio-pci", "callback-close", "ClosedError"),  # ... from the watcher thread
    ],
)
def test_unbind_completes_while_a_program_holds_the_device(
    sysfs: Sysfs, held_edu: str, driver: str, mode: str, seen: str
) -> None:
    holder = forked.python(HOLDER, held_edu, mode)
    try:
        assert holder.stdout.readline() == "open\n"
        unbind_from_another_process(held_edu, holder)
        out, err = holder.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == 0, err
    assert sysfs.device(held_edu).driver is None
    lines = out.splitlines()
    assert lines[-1] == "closed True"
    assert lines[-2].startswith(f"{seen} {held_edu}"), out
    if mode == "callback":
        assert lines[0] == "callback True" and "mapping is closed" in lines[-2]
    elif mode == "callback-close":
        assert "device is closed" in lines[-2], out
    else:
        assert "being unbound" in lines[-2], out
        assert "asks for the device back" in err


def test_the_request_interrupt_is_the_librarys(sysfs: Sysfs) -> None:
    # A second trigger would replace pyvfio's eventfd: unbinds would hang again.
    edu = sysfs.find(*EDU_ID)[0]  # on the root bus: first, before any behind a bridge
    with sysfs.bound(edu.bdf), Device.open(edu.bdf) as dev:
        with pytest.raises(BusyError, match="answers the request interrupt") as info:
            dev.enable_irq(IrqIndex.REQ)
        assert "on_release_request" in (info.value.hint or "")
        assert not dev.release_requested


# A new interpreter (pyvfio not imported yet).  Its own fork hooks count the
# threads where a fork's hazards and Python 3.13's warning are: at the fork
# itself (a "before" hook registered first runs after pyvfio's), and at the
# end of the parent's hooks (registered last; a C call, as 3.13's count is:
# a Python step there would run what pyvfio queued for after the fork).
FORKER = """
import functools, json, os, sys, tempfile, threading, time, warnings
seen_at_fork = []
os.register_at_fork(before=lambda: seen_at_fork.append(threading.active_count()))
from pyvfio import IommuContext, uapi
from pyvfio.irq import IrqIndex, _set_irqs
counts = tempfile.NamedTemporaryFile("r")
os.register_at_fork(after_in_parent=functools.partial(
    os.system, f"ls /proc/{os.getpid()}/task | wc -l >> {counts.name}"))

def watchers():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("pyvfio-"))

with IommuContext() as context, warnings.catch_warnings(record=True) as warned:
    warnings.simplefilter("always")
    devices = [context.open(bdf) for bdf in sys.argv[1:]]
    bar0 = devices[0].region(0).map()
    before = watchers()
    children = []
    for _ in range(2):  # the second after the watcher's restart
        pid = os.fork()
        if pid == 0:
            os._exit(0 if bar0.read32(0) == 0x010000ED else 1)
        children.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    after = watchers()
    # The watcher started again answers: the kernel's request, sent by hand.
    flags = uapi.VFIO_IRQ_SET_DATA_NONE | uapi.VFIO_IRQ_SET_ACTION_TRIGGER
    _set_irqs(devices[1], IrqIndex.REQ, flags, 0, 1)
    deadline = time.monotonic() + 10
    while not devices[1].release_requested and time.monotonic() < deadline:
        time.sleep(0.05)
print(json.dumps({"at_fork": seen_at_fork, "after_hooks": counts.read().split(),
                  "warned": [str(w.message) for w in warned],
                  "before": before, "after": after, "children": children,
                  "answered": devices[1].release_requested,
                  "others": [devices[0].release_requested],
                  "left": watchers()}))
"""


def test_a_fork_sees_no_pyvfio_thread_and_the_watcher_goes_on(sysfs: Sysfs) -> None:
    # One thread answers the kernel's release requests for every open
    # device.  A fork must not copy it mid-way (a lock it held stays held
    # in the child), nor find it running when os.fork() ends, where Python
    # 3.13 counts threads to warn "use of fork() may lead to deadlocks".
    bdfs = [sysfs.find(*ids)[0].bdf for ids in (EDU_ID, IVSHMEM_ID)]
    with contextlib.ExitStack() as bound:
        for bdf in bdfs:
            bound.enter_context(sysfs.bound(bdf))
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-c", FORKER, *bdfs],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["at_fork"] == [1, 1]  # only the forking thread
    assert report["after_hooks"] == ["1", "1"]
    assert report["warned"] == []
    assert report["before"] == report["after"] == ["pyvfio-release-requests"]
    assert report["children"] == [0, 0]
    assert report["answered"]
    assert report["others"] == [False]  # each device's request is its own
    assert report["left"] == []  # the last close ends the thread
