# SPDX-License-Identifier: Apache-2.0
"""Device interrupts: INTx, MSI, MSI-X, error and request, each vector an eventfd."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import functools
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import _check, uapi
from ._check import CheckedRecord
from ._sys import ioctl
from .devfd import DeviceFd
from .errors import (
    ClosedError,
    InvalidArgumentError,
    OutOfRangeError,
    UnsupportedError,
    VfioError,
)

log = logging.getLogger(__name__)


class IrqIndex(enum.IntEnum):
    """The IRQ indexes of a VFIO PCI device, as :meth:`Device.enable_irq()
    <pyvfio.Device.enable_irq>` and :meth:`~pyvfio.Device.irq_info` take them
    (a plain int works too)."""

    #: The legacy pin interrupt: one vector, level-triggered; vfio-pci masks
    #: it when it fires, :meth:`Interrupts.unmask` after handling it.
    INTX = uapi.VFIO_PCI_INTX_IRQ_INDEX
    #: Message-signalled interrupts: up to 32 vectors.
    MSI = uapi.VFIO_PCI_MSI_IRQ_INDEX
    #: MSI-X: up to 2048 vectors, each with its own table entry.
    MSIX = uapi.VFIO_PCI_MSIX_IRQ_INDEX
    #: The error interrupt: signalled when the kernel's PCI error recovery
    #: (AER) reports an error on the device.
    ERR = uapi.VFIO_PCI_ERR_IRQ_INDEX
    #: The request interrupt: the kernel asks for the device back (an unbind).
    #: pyvfio answers it itself (:meth:`Device.on_release_request()
    #: <pyvfio.Device.on_release_request>`).
    REQ = uapi.VFIO_PCI_REQ_IRQ_INDEX

    def __str__(self) -> str:  # the name: IntEnum would print the number
        return self.name


class IrqFlags(enum.IntFlag):
    """What VFIO_DEVICE_GET_IRQ_INFO says of an IRQ index (:attr:`IrqInfo.flags`)."""

    #: It can signal an eventfd (what :class:`Interrupts` uses).
    EVENTFD = uapi.VFIO_IRQ_INFO_EVENTFD
    #: VFIO can mask and unmask it (INTx only on vfio-pci).
    MASKABLE = uapi.VFIO_IRQ_INFO_MASKABLE
    #: The kernel masks it when it fires (INTx): unmask after handling.
    AUTOMASKED = uapi.VFIO_IRQ_INFO_AUTOMASKED
    #: Its vectors cannot be added to while enabled: to change the count,
    #: disable it and enable it again (MSI-X has no such limit since Linux 6.5).
    NORESIZE = uapi.VFIO_IRQ_INFO_NORESIZE


def irq_name(index: int) -> str:
    """The IrqIndex name of ``index``, else ``irqN``."""
    try:
        return IrqIndex(index).name
    except ValueError:
        return f"irq{index}"


@dataclass(frozen=True)
class IrqInfo(CheckedRecord):
    """What the kernel says of one IRQ index (:meth:`Device.irq_info()
    <pyvfio.Device.irq_info>`)."""

    #: The IRQ index (:class:`IrqIndex` names the PCI ones).
    index: int
    #: Its :class:`IrqFlags`.
    flags: IrqFlags
    #: How many vectors it has; 0: the device has no such interrupt.
    count: int

    @property
    def name(self) -> str:
        """``INTX``, ``MSI``, ``MSIX``, ``ERR``, ``REQ``, else ``irqN``."""
        return irq_name(self.index)

    @property
    def supported(self) -> bool:
        """Whether the device has this interrupt (a count above 0)."""
        return self.count > 0


def query_irq_info(device: DeviceFd, index: int) -> IrqInfo:
    """VFIO_DEVICE_GET_IRQ_INFO; an index the device lacks reads as count 0.

    vfio-pci answers EINVAL for the ERR index on conventional PCI devices:
    that means "no such interrupt", not a failure.
    """
    info = _check.struct(
        uapi.vfio_irq_info,
        device=device.bdf,
        operation="VFIO_DEVICE_GET_IRQ_INFO",
        argsz=ctypes.sizeof(uapi.vfio_irq_info),
        index=index,
    )
    try:
        ioctl(
            device.fd,
            uapi.VFIO_DEVICE_GET_IRQ_INFO,
            info,
            device=device.bdf,
            operation=f"VFIO_DEVICE_GET_IRQ_INFO({index})",
        )
    except InvalidArgumentError:
        return IrqInfo(index, IrqFlags(0), 0)
    return IrqInfo(index, IrqFlags(info.flags), info.count)


def _set_irqs(
    device: DeviceFd, index: int, flags: int, start: int, count: int, *, data: bytes = b""
) -> None:
    header = ctypes.sizeof(uapi.vfio_irq_set)
    buf = bytearray(header + len(data))
    struct.pack_into("<IIIII", buf, 0, len(buf), flags, index, start, count)
    buf[header:] = data
    ioctl(
        device.fd,
        uapi.VFIO_DEVICE_SET_IRQS,
        buf,
        device=device.bdf,
        operation=f"VFIO_DEVICE_SET_IRQS({irq_name(index)})",
    )


def _disable_irqs(device: DeviceFd, index: int) -> None:
    """Take every eventfd of ``index`` from the device (count 0)."""
    _set_irqs(device, index, uapi.VFIO_IRQ_SET_DATA_NONE | uapi.VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)


class Interrupts:
    """Enabled vectors of one IRQ index, one non-blocking eventfd each.

    Obtain with ``Device.enable_irq()``; ``wait()`` reports which vectors
    fired; ``close()`` disables the index and closes the eventfds.  Vectors
    are ints (never bools), from 0 to ``count - 1``.
    """

    def __init__(self, device: DeviceFd, info: IrqInfo, count: int) -> None:
        """Enable ``count`` (an int, 1..info.count) vectors of the index ``info``
        (the device's IrqInfo for it) on ``device``, an open Device."""
        device = _check.instance(
            device, DeviceFd, "device", "an open pyvfio.Device", device=None, operation="enable irq"
        )
        operation = "enable irq"
        _check.instance(
            info,
            IrqInfo,
            "info",
            "an IrqInfo (dev.irq_info())",
            device=device.bdf,
            operation=operation,
        )
        count = _check.integer(
            count,
            "count",
            device=device.bdf,
            operation=f"enable {info.name}",
            low=1,
            high=info.count,
        )
        self._device = device
        #: The IRQ index's :class:`IrqInfo`.
        self.info = info
        #: The vectors' eventfds, vector 0 first (non-blocking; empty once closed).
        self.eventfds: list[int] = []
        try:
            for _ in range(count):
                self.eventfds.append(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
            data = struct.pack(f"<{count}i", *self.eventfds)
            _set_irqs(
                device,
                info.index,
                uapi.VFIO_IRQ_SET_DATA_EVENTFD | uapi.VFIO_IRQ_SET_ACTION_TRIGGER,
                0,
                count,
                data=data,
            )
        except BaseException:
            for fd in self.eventfds:
                os.close(fd)
            self.eventfds = []
            raise
        self._poll = select.poll()
        for fd in self.eventfds:
            self._poll.register(fd, select.POLLIN)
        # A wait() must not outlast the device: it wakes when the kernel asks
        # for the device back (ReleaseWatch) or the device is closed, and
        # then raises.  A copy: the device's is -1 once closed.
        self._release_fd = device.release_fd
        if self._release_fd >= 0:
            self._poll.register(self._release_fd, select.POLLIN)

    @property
    def count(self) -> int:
        """How many vectors are enabled (0 once closed)."""
        return len(self.eventfds)

    def _vector(self, vector: int, operation: str) -> int:
        vector = _check.integer(
            vector,
            "vector",
            device=self._device.bdf,
            operation=f"{self.info.name} {operation}",
            low=None,
            high=None,
        )
        if not self.eventfds:
            raise ClosedError(
                f"{self.info.name} interrupts are disabled",
                device=self._device.bdf,
                operation="irq",
            )
        if not 0 <= vector < len(self.eventfds):
            raise OutOfRangeError(
                f"vector {vector} not enabled (0..{len(self.eventfds) - 1})",
                device=self._device.bdf,
                operation=f"{self.info.name} irq",
            )
        return vector

    def _action(self, vector: int, action: int, operation: str) -> None:
        vector = self._vector(vector, operation)
        _set_irqs(self._device, self.info.index, uapi.VFIO_IRQ_SET_DATA_NONE | action, vector, 1)

    def _maskable(self, operation: str) -> None:
        # vfio-pci masks only INTx (which it masks itself when it fires); MSI
        # and MSI-X answer ENOTTY, which says nothing to a reader.
        if not self.info.flags & IrqFlags.MASKABLE:
            raise UnsupportedError(
                f"{self.info.name} is not maskable through VFIO",
                device=self._device.bdf,
                operation=operation,
                hint="mask it at the device (MSI-X vector control, or a device register); "
                "VFIO masks and unmasks INTx only",
            )

    def mask(self, vector: int = 0) -> None:
        """Mask ``vector`` (INTx only: see unmask())."""
        self._vector(vector, "mask")
        self._maskable("mask")
        self._action(vector, uapi.VFIO_IRQ_SET_ACTION_MASK, "mask")

    def unmask(self, vector: int = 0) -> None:
        """Unmask INTx after handling it (vfio-pci masks it when it fires)."""
        self._vector(vector, "unmask")
        self._maskable("unmask")
        self._action(vector, uapi.VFIO_IRQ_SET_ACTION_UNMASK, "unmask")

    def trigger(self, vector: int = 0) -> None:
        """Have the kernel signal the vector's eventfd, as if the device had (testing)."""
        self._action(vector, uapi.VFIO_IRQ_SET_ACTION_TRIGGER, "trigger")

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until a vector fires or ``timeout`` seconds pass; return the fired vectors.

        Each returned vector's eventfd counter is consumed.  An empty list
        means the timeout expired.  ``timeout`` is None (no limit) or a number
        of seconds, 0 to 2147483 (poll(2)'s limit, 24 days).
        """
        ms = self._start_wait(timeout, "wait")
        ready = [fd for fd, _ in self._poll.poll(ms)]
        return self._fired(ready)

    async def wait_async(self, timeout: float | None = None) -> list[int]:
        """``wait()`` for an asyncio program: the running loop watches the
        eventfds (``loop.add_reader``), so no thread blocks.

        As ``wait()``: the fired vectors, their counters consumed; an empty
        list only after ``timeout`` seconds (None, or 0 to 2147483).  Several
        tasks may wait at once: a vector another took is waited for again.
        Closing the device wakes the waits, which raise ClosedError.
        Cancelling the task stops the wait and consumes nothing.
        """
        import asyncio  # noqa: PLC0415 - a third of `import pyvfio`'s time; only this needs it

        ms = self._start_wait(timeout, "wait_async")
        loop = asyncio.get_running_loop()
        deadline = None if ms is None else loop.time() + ms / 1000
        woken: list[asyncio.Future[None]] = [loop.create_future()]

        def wake() -> None:
            if not woken[0].done():
                woken[0].set_result(None)

        # Copies of the fds, this wait's own: the loop keeps one reader per
        # fd (another wait, or the caller's own reader, would replace it), and
        # an fd closed under it (close() wakes waits through release_fd, then
        # closes it) would leave epoll, and the wake-up with it.
        originals = [*self.eventfds, *([self._release_fd] if self._release_fd >= 0 else [])]
        watched: list[int] = []
        try:
            for fd in originals:
                try:
                    watched.append(os.dup(fd))
                except OSError as exc:  # EMFILE; EBADF: closed meanwhile
                    self._device.fd  # noqa: B018 - a closed device says so
                    raise VfioError(
                        f"cannot watch the eventfds: {exc.strerror}",
                        errno=exc.errno,
                        device=self._device.bdf,
                        operation="wait_async",
                    ) from exc
                loop.add_reader(watched[-1], wake)
            while True:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken[0], left)
                # Which fds are readable: what poll() would say, without waiting.
                fired = self._fired([fd for fd, _ in self._poll.poll(0)])
                if fired or (deadline is not None and loop.time() >= deadline):
                    return fired
                woken[0] = loop.create_future()  # another wait took it
        finally:
            for fd in watched:
                loop.remove_reader(fd)
                os.close(fd)

    def _start_wait(self, timeout: float | None, operation: str) -> int | None:
        """The checks a wait starts with; ``timeout`` in ms for poll(2)."""
        if timeout is not None:
            timeout = _check.seconds(
                timeout,
                "timeout",
                device=self._device.bdf,
                operation=f"{self.info.name} {operation}",
                hint="pass None to wait without a limit",
            )
        if not self.eventfds:
            raise ClosedError(
                f"{self.info.name} interrupts are disabled",
                device=self._device.bdf,
                operation=operation,
            )
        return None if timeout is None else int(timeout * 1000)

    def _fired(self, ready: list[int]) -> list[int]:
        """The vectors among the ``ready`` fds, their counters consumed."""
        # Closed meanwhile by another thread: the fd numbers may be reused.
        if self._device.closed or not self.eventfds:
            self._device.fd  # noqa: B018  (raises DeviceReleasedError or ClosedError)
            raise ClosedError(
                f"{self.info.name} interrupts were closed",
                device=self._device.bdf,
                operation="wait",
            )
        if self._release_fd in ready:
            self._device.release_now()
        fired = []
        for fd in ready:
            try:
                os.eventfd_read(fd)
            except BlockingIOError:
                continue
            fired.append(self.eventfds.index(fd))
        return sorted(fired)

    def pending(self) -> list[int]:
        """Vectors that fired since the last wait(), without blocking."""
        return self.wait(0)

    def close(self, *, disable: bool = True) -> None:
        """Disable the index in the device and close the eventfds; safe twice.

        ``disable=False`` only closes the eventfds (a forked child: the
        device's vectors are its parent's too); True or False."""
        disable = _check.boolean(
            disable, "disable", device=self._device.bdf, operation=f"close {self.info.name}"
        )
        if not self.eventfds:
            return
        try:
            if disable and not self._device.closed:
                _disable_irqs(self._device, self.info.index)
        finally:
            for fd in self.eventfds:
                os.close(fd)
            self.eventfds = []

    def __enter__(self) -> Interrupts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def enable(device: DeviceFd, index: int, count: int | None = None) -> Interrupts:
    info = query_irq_info(device, index)
    if not info.supported:
        raise UnsupportedError(
            f"the device has no {info.name} interrupt",
            device=device.bdf,
            operation="enable irq",
            hint="`pyvfio info BDF` lists the IRQ indexes it has",
        )
    count = info.count if count is None else count
    if not 1 <= count <= info.count:
        raise OutOfRangeError(
            f"{count} vectors asked, {info.name} has {info.count}",
            device=device.bdf,
            operation="enable irq",
        )
    if not info.flags & IrqFlags.EVENTFD:
        raise UnsupportedError(
            f"{info.name} cannot signal an eventfd", device=device.bdf, operation="enable irq"
        )
    return Interrupts(device, info, count)


class _RequestWatcher:
    """The one thread of a process that waits for the release requests of
    all its open devices, and answers them one at a time.

    A fork ends the thread: it is joined before the fork, so that the child
    never inherits a lock the thread held mid-way.  In the parent it starts
    again at the main thread's next Python step (a pending call), once
    ``os.fork()`` has returned: Python 3.13 counts the threads of a process
    just before that, to warn about a fork in a multi-threaded program, and
    finds one.  (A fork from another thread starts it again at once.)  A
    request the kernel makes meanwhile stays in its eventfd until then.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Guards every attribute.  Never held across a join, a callback or an
        # ioctl; taken inside a Device's close lock, never around it.
        self.lock = threading.Lock()
        self.answered = threading.Condition(self.lock)
        self.watches: dict[int, ReleaseWatch] = {}  # by their request eventfd
        self.thread: threading.Thread | None = None  # the one that should run
        self.wake = -1  # that thread's own eventfd: the watches changed, or end
        self.answering: dict[ReleaseWatch, threading.Thread] = {}

    def add(self, watch: ReleaseWatch) -> None:
        with self.lock:
            self.watches[watch.eventfd] = watch
            if self.thread is not None:
                os.eventfd_write(self.wake, 1)
            else:
                self._start()

    def remove(self, watch: ReleaseWatch) -> None:
        """Afterwards nothing answers for ``watch``.  Waits for its callback,
        unless called from it; the last watch ends the thread (joined; from
        a callback, the thread ends when the callback returns)."""
        ended = None
        me = threading.current_thread()
        with self.lock:
            if self.watches.get(watch.eventfd) is watch:
                del self.watches[watch.eventfd]
                if self.thread is not None and not self.watches and self.thread is not me:
                    ended = self._end()
                elif self.thread is not None:
                    # From a callback: the thread stays the watcher until the
                    # callback returns (a fork meanwhile joins it), then ends.
                    os.eventfd_write(self.wake, 1)
            while self.answering.get(watch, me) is not me:
                self.answered.wait()
        if ended is not None and ended is not me:
            _join_fully(ended)

    def _start(self) -> None:
        wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        thread = threading.Thread(
            target=self._run, args=(wake,), name="pyvfio-release-requests", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            os.close(wake)
            raise
        self.thread, self.wake = thread, wake

    def _end(self) -> threading.Thread:
        """With the lock: tell the thread to end; it closes its own eventfd."""
        assert self.thread is not None
        thread, self.thread = self.thread, None
        os.eventfd_write(self.wake, 1)
        self.wake = -1
        return thread

    def _run(self, wake: int) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self.lock:
                    if self.thread is not me:
                        return
                    if not self.watches:  # the last removed by a callback
                        self.thread, self.wake = None, -1
                        return
                    polled = dict(self.watches)
                poll = select.poll()
                for fd in (wake, *polled):
                    poll.register(fd, select.POLLIN)
                ready = [fd for fd, _ in poll.poll()]
                for watch in self._take_requests(me, wake, ready, polled):
                    self._answer(watch)
        finally:
            with self.lock:
                if self.thread is me:  # died of an error: the next add starts one
                    self.thread = None
                    self.wake = -1
            os.close(wake)

    def _take_requests(
        self, me: threading.Thread, wake: int, ready: list[int], polled: dict[int, ReleaseWatch]
    ) -> list[ReleaseWatch]:
        """Consume the ready eventfds; the watches asked for the first time."""
        first = []
        with self.lock:
            if self.thread is not me:
                return []
            for fd in ready:
                watch = polled.get(fd)
                # A watch removed since the poll may have closed its fd, and
                # the number may be another file's now: leave it alone.
                if fd != wake and self.watches.get(fd) is not watch:
                    continue
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(fd)
                if watch is not None and not watch.requested.is_set():
                    watch.requested.set()  # the kernel asks again every 10 s
                    first.append(watch)
        return first

    def _answer(self, watch: ReleaseWatch) -> None:
        with self.lock:
            if self.watches.get(watch.eventfd) is not watch:
                return  # removed meanwhile
            self.answering[watch] = threading.current_thread()
        try:
            watch.answer()
        finally:
            with self.lock:
                self.answering.pop(watch, None)  # gone in a child the callback forked
                self.answered.notify_all()

    def pause(self) -> None:
        """Before a fork: end the thread, unless this is it (a callback forking)."""
        with self.lock:
            if self.thread is None or self.thread is threading.current_thread():
                return
            thread = self._end()
        _join_fully(thread)

    def resume_unless_main(self) -> None:
        """After a fork, in the parent, if another thread than the main one
        forked: the main thread may be blocked in C, where no pending call
        runs.  (Python 3.13 then sees this thread and warns.)"""
        if _resume_in_main is None or threading.current_thread() is not threading.main_thread():
            self.start_if_needed()

    def start_if_needed(self) -> None:
        with self.lock:
            if self.thread is None and self.watches:
                self._start()

    def forget(self) -> None:
        """In a forked child, which has no thread: its devices are its parent's."""
        if self.wake >= 0 and self.thread is not threading.current_thread():
            os.close(self.wake)  # another's; a callback that forked closes its own
        self._reset()  # the lock may have been held at the fork


def _join_fully(thread: threading.Thread) -> None:
    """Join ``thread``, then wait (up to a second) until its OS thread is gone.

    ``join()`` returns while the thread is still leaving the kernel.  Until
    it has left, glibc cannot reuse its stack (a thread started meanwhile
    maps a new one, which a closed device would seem to leave behind) and
    a fork counts it as running."""
    thread.join()
    task = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + 1.0
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0002)


def _start_after_fork(_arg: int | None) -> int:
    """A pending call: the main thread runs it at its next Python step.  (If
    CPython's queue of them were full, the next device opened starts it.)"""
    try:
        _WATCHER.start_if_needed()
    except Exception:
        log.exception("pyvfio: the release-request watcher did not start again after a fork")
    return 0


_WATCHER = _RequestWatcher()
os.register_at_fork(
    before=_WATCHER.pause,
    after_in_parent=_WATCHER.resume_unless_main,
    after_in_child=_WATCHER.forget,
)
# Registered after the hooks above, so that it runs after them: a C call
# (no Python step, where the pending call would run at once) that queues
# the watcher's start, which then runs once os.fork() has returned.
_resume_in_main: Callable[[], int] | None
try:
    _pending_call = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(_start_after_fork)
    _add_pending_call = ctypes.pythonapi["Py_AddPendingCall"]
except (AttributeError, OSError):  # not CPython
    _resume_in_main = None
else:
    _add_pending_call.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    _resume_in_main = functools.partial(
        _add_pending_call, ctypes.cast(_pending_call, ctypes.c_void_p), None
    )
    os.register_at_fork(after_in_parent=_resume_in_main)


class ReleaseWatch:
    """Answers the device's request interrupt: the kernel asking for it back.

    Unbinding a device from its VFIO driver waits, in the kernel, until
    every fd and mapping of it is gone; meanwhile vfio-pci signals the REQ
    eventfd (at once, then every 10 s).  The process's watcher thread waits
    on it and calls ``on_request`` once, from that thread.
    """

    def __init__(self, device: DeviceFd, on_request: Callable[[], None]) -> None:
        self._device = device
        self._on_request = on_request
        self.requested = threading.Event()
        self._pid = os.getpid()
        self.eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            _set_irqs(
                device,
                IrqIndex.REQ,
                uapi.VFIO_IRQ_SET_DATA_EVENTFD | uapi.VFIO_IRQ_SET_ACTION_TRIGGER,
                0,
                1,
                data=struct.pack("<i", self.eventfd),
            )
            _WATCHER.add(self)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see
                self.close()
            raise

    def answer(self) -> None:
        """In the watcher thread, once."""
        log.warning(
            "%s: the kernel asks for the device back (it is being unbound)", self._device.bdf
        )
        try:
            self._on_request()
        except BaseException:  # sys.exit() in a callback must not end the watcher
            log.exception("%s: the release-request callback failed", self._device.bdf)

    def stop(self) -> None:
        """Afterwards nothing calls ``on_request``: waits for a callback that
        is running, unless called from it (a callback closing the device).
        Safe twice; in a forked child it does nothing."""
        if os.getpid() == self._pid:
            _WATCHER.remove(self)

    def close(self) -> None:
        """stop(), take the eventfd from the device, close it; safe twice.

        In a forked child only the child's copy of the fd is closed: the
        device's REQ trigger is its parent's."""
        self.stop()
        if self.eventfd < 0:
            return
        try:
            if os.getpid() == self._pid and not self._device.closed:
                _disable_irqs(self._device, IrqIndex.REQ)
        finally:
            os.close(self.eventfd)
            self.eventfd = -1
