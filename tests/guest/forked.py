# SPDX-License-Identifier: Apache-2.0
"""Python child processes forked from the test process instead of started anew.

A new interpreter costs 5-15 s of emulated CPU in the guest (interpreter and
``import pyvfio`` read over 9p, under TCG), and the guest suite starts dozens
of them: another process holding a device, a CLI call, an unbind from
elsewhere.  A fork of the test process has pyvfio imported already and costs
a fraction of a second.

The child is a separate process as far as the kernel is concerned (its own
pid, fds and VFIO opens), which is what those tests need.  Like
``subprocess.Popen(close_fds=True)`` it keeps only stdin, stdout and stderr:
an fd the test process has open (a device a fixture holds) is not the
child's.  Tests of what a user runs as a command (an example script, the
``python -m pyvfio`` entry point, a fresh venv) still start a real process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO

from pyvfio.cli import main as cli_main


class Forked:
    """A child running ``target()`` with stdout and stderr on pipes (text).

    The subset of ``subprocess.Popen`` the guest tests use: ``stdout``,
    ``stderr``, ``pid``, ``returncode``, ``wait``, ``communicate``, ``kill``.
    The exit status is ``target``'s return value (an int, None for 0), the
    code of a SystemExit it raises, or 1 after printing an uncaught
    exception's traceback to stderr, as an interpreter would.
    """

    def __init__(self, target: Callable[[], int | None]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _child(target, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: IO[str] = open(out_r, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.stderr: IO[str] = open(err_r, encoding="utf-8", errors="replace")  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; TimeoutError if the child runs past ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"child {self.pid} still running after {timeout} s")
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """The rest of stdout and stderr, once the child has exited.

        Both are read while waiting, so a child that writes more than a pipe
        holds does not block on it."""
        texts: dict[str, str] = {}
        readers = [
            threading.Thread(target=lambda n=name, s=stream: texts.__setitem__(n, s.read()))
            for name, stream in (("out", self.stdout), ("err", self.stderr))
        ]
        for reader in readers:
            reader.start()
        self.wait(timeout)
        for reader in readers:
            # EOF once every writer is gone: the child, and any child of its own
            reader.join(timeout)
        self.stdout.close()
        self.stderr.close()
        return texts.get("out", ""), texts.get("err", "")

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


def _child(target: Callable[[], int | None], out_w: int, err_w: int) -> None:
    status = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # pytest's capture objects stand in for sys.stdout/err: write to the pipes.
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        # and its log handlers stand in for logging's default: warnings to stderr
        for handler in logging.root.handlers[:]:
            logging.root.removeHandler(handler)
        logging.root.setLevel(logging.WARNING)
        try:
            result = target()
            status = 0 if result is None else result
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                status = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def python(code: str, *argv: str) -> Forked:
    """``python -c CODE ARGV...``, forked: ``sys.argv`` is ``["-c", *argv]``."""

    def target() -> None:
        sys.argv = ["-c", *argv]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})

    return Forked(target)


def pyvfio(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """``pyvfio ARGS...`` (the CLI), forked: (exit status, stdout, stderr)."""
    child = Forked(lambda: cli_main(list(args)))
    try:
        out, err = child.communicate(timeout)
    finally:
        child.kill()
    assert child.returncode is not None
    return child.returncode, out, err
