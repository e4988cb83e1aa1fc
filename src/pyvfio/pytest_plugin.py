# SPDX-License-Identifier: Apache-2.0
"""pytest plugin: run a driver's tests inside the test VM, once per kernel.

Registered through the ``pytest11`` entry point, so installing pyvfio is
enough.  Tests that need a device are marked ``@pytest.mark.vfio`` (or
``@pytest.mark.vfio_device("1234:11e8")``, or use one of the fixtures below).
With ``--vfio-kernel 6.1,7.3`` the host boots the VM once per kernel, runs one
pytest process in each guest on the same arguments, and reports every guest
result with the kernel as one more parameter (``test_x[6.1]``), as if it had
run here: the terminal, ``-x``, ``--junitxml`` and the exit status see them.
A guest kernel log with a problem (a WARN, a lockdep report, an oops) fails
``vm::kernel-log[KERNEL]``; a guest that dies or hangs fails the test that was
running.  Unmarked tests run on the host as usual.  Without ``--vfio-kernel``
marked tests skip, unless ``--vfio-here`` runs them on this machine (real
devices, as root) or this is a guest.

Fixtures (in the guest, or with ``--vfio-here``):

- ``vfio_open(ids, driver=..., index=..., backend=...)``: bind the device to a
  VFIO driver, open it, and give it back to its driver after the test; a
  device the machine lacks skips the test, naming it;
- ``vfio_device``: the device of the test's ``vfio_device`` mark, opened so;
- ``vfio_kernel``: the kernel series the guest booted (``"7.3"``);
- ``vfio_backend``: the :class:`~pyvfio.Backend` ``Device.open`` takes here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import pytest

from . import _check
from .device import BACKEND_ENV, Backend, Device, check_backend
from .errors import ArgumentTypeError, InvalidArgumentError, VmArgumentError
from .pci import Sysfs, _check_driver

#: Set in the guest: where its pytest writes each report, one JSON object a line.
REPORT_ENV = "PYVFIO_PYTEST_REPORT"
#: Set in the guest: the series given to --vfio-kernel (the ``vfio_kernel`` fixture).
SERIES_ENV = "PYVFIO_VM_SERIES"
#: What `pyvfio vm run` prints before the kernel log's problem lines.
KLOG_HEADER = "pyvfio vm: the guest kernel log shows problems:"

MARKERS = ("vfio", "vfio_device")
FIXTURES = frozenset({"vfio_open", "vfio_device", "vfio_kernel", "vfio_backend"})
_IDS = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")
# Host options the guest's pytest must not see: (option, takes a value).
_HOST_ONLY = {
    "--vfio-kernel": True,
    "--vfio-device": True,
    "--vfio-vm": True,
    "--vfio-env": True,
    "--vfio-results": True,
    "--vfio-echo": False,
    "--vfio-here": False,
    "--junitxml": True,
    "--junit-xml": True,
    "--basetemp": True,
    # Choices made from the host's cache, which the guest does not have.
    "--lf": False,
    "--last-failed": False,
    "--ff": False,
    "--failed-first": False,
    "--nf": False,
    "--new-first": False,
    "--sw": False,
    "--stepwise": False,
    "--sw-skip": False,
    "--stepwise-skip": False,
    "--lfnf": True,
    "--last-failed-no-failures": True,
    "--cache-clear": False,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pyvfio", "running tests in pyvfio's test VM")
    group.addoption(
        "--vfio-kernel",
        action="append",
        default=[],
        metavar="SERIES[,SERIES...]",
        help="run the tests marked vfio in the test VM, one boot per kernel series "
        "(6.1, 6.12, 7.3, 7.3-debug: `pyvfio vm kernels`; default: the host's own); "
        "repeatable",
    )
    group.addoption(
        "--vfio-device",
        action="append",
        default=[],
        metavar="DEV",
        help="add a PCI device to the VM, in QEMU's -device syntax (repeatable; "
        "also the vfio_devices ini option)",
    )
    group.addoption(
        "--vfio-vm",
        action="append",
        default=[],
        metavar="ARGS",
        help="more `pyvfio vm run` options, shell-quoted, e.g. '--memory 2G --large-bar 1G' "
        "(also the vfio_vm_args ini option)",
    )
    group.addoption(
        "--vfio-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an environment variable for the guest's pytest (repeatable)",
    )
    group.addoption(
        "--vfio-results",
        metavar="DIR",
        help="keep each guest's own JUnit report and output here, as KERNEL.xml and KERNEL.log",
    )
    group.addoption(
        "--vfio-echo",
        action="store_true",
        help="show the guests' own output as it comes",
    )
    group.addoption(
        "--vfio-here",
        action="store_true",
        help="run the tests marked vfio on this machine (as root, with the devices they name)",
    )
    parser.addini("vfio_devices", "PCI devices added to the VM (QEMU -device syntax)", "linelist")
    parser.addini("vfio_vm_args", "more `pyvfio vm run` options", "args")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vfio: the test needs a VFIO device: it runs in the test VM (--vfio-kernel)"
    )
    config.addinivalue_line(
        "markers",
        "vfio_device(ids, driver='vfio-pci', index=0, backend=None): the device the "
        "vfio_device fixture opens, by vendor:device (e.g. '1234:11e8'); implies vfio",
    )
    kernels = _host_kernels(config)
    if kernels:
        config.stash[_KERNELS] = _check_kernels(kernels)
        _check_env(config.getoption("vfio_env"))
    # Taken from the environment, so that a pytest a test starts in the
    # guest neither writes into the host's stream nor names its own tests
    # as the one running.
    report = os.environ.pop(REPORT_ENV, None)
    running = os.environ.pop("PYVFIO_VM_RUNNING", None)
    if running:
        config.stash[_RUNNING] = running
    _CONFIGS.append(config)
    if report and _in_guest():
        config.pluginmanager.register(GuestReporter(config, report), _GUEST_REPORTER)


_KERNELS = pytest.StashKey[list[str]]()
Phase = Literal["setup", "call", "teardown"]
# The configs of this process's pytest sessions, innermost last (pytester
# runs one inside another).
_CONFIGS: list[pytest.Config] = []
_GUEST_REPORTER = "pyvfio-guest-reporter"


def _in_guest() -> bool:
    return os.environ.get("PYVFIO_GUEST") == "1"


def _host_kernels(config: pytest.Config) -> list[str]:
    """The series --vfio-kernel names, in order, once each; none in a guest,
    so the plugin never boots a VM from inside one."""
    if _in_guest():
        return []
    kernels: list[str] = []
    for value in config.getoption("vfio_kernel"):
        for series in value.split(","):
            if series.strip() and series.strip() not in kernels:
                kernels.append(series.strip())
    return kernels


def _check_kernels(kernels: list[str]) -> list[str]:
    """The series, each one `vm run` can boot (``default``: the host's own
    series, as `vm run` boots without --kernel); else a usage error."""
    from .vm.kernel import default_series, resolve_kernel

    checked: list[str] = []
    for series in kernels:
        try:
            name = default_series() if series == "default" else series
            resolve_kernel(name)
        except VmArgumentError as exc:
            raise pytest.UsageError(
                f"--vfio-kernel {series}: {exc.message}" + (f"; {exc.hint}" if exc.hint else "")
            ) from None
        if name not in checked:
            checked.append(name)
    return checked


def _check_env(values: Sequence[str]) -> None:
    from .vm.runner import _ENV_NAME  # what `vm run` takes as a variable's name

    for value in values:
        name, equals, _ = value.partition("=")
        if not equals or not _ENV_NAME.fullmatch(name):
            raise pytest.UsageError(f"--vfio-env {value!r}: give NAME=VALUE")


def _is_vm_test(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) for m in MARKERS) or bool(
        FIXTURES & set(getattr(item, "fixturenames", ()))
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in _CONFIGS:
        _CONFIGS.remove(config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.has_plugin(_GUEST_REPORTER):
        # A guest started by the plugin: the host runs the unmarked tests.
        host = [item for item in items if not _is_vm_test(item)]
        if host:
            config.hook.pytest_deselected(items=host)
            items[:] = [item for item in items if _is_vm_test(item)]
        return
    if _in_guest() or config.stash.get(_KERNELS, None) or config.getoption("vfio_here"):
        return
    skip = pytest.mark.skip(
        reason="needs a VFIO device: run it in the test VM with --vfio-kernel SERIES "
        "(or on this machine, as root, with --vfio-here)"
    )
    for item in items:
        if _is_vm_test(item):
            item.add_marker(skip)


# -- in the guest: every report goes to the host as it is made --------------


class GuestReporter:
    """Registered in a guest the plugin started: writes each report to the
    file the host reads (one JSON object a line, flushed, so the host sees it
    while the guest runs and a guest that dies has sent all but its end)."""

    def __init__(self, config: pytest.Config, path: str) -> None:
        self.config = config
        self.out = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed at unconfigure)

    def send(self, kind: str, **fields: Any) -> None:
        self.out.write(json.dumps({"kind": kind, **fields}, default=repr) + "\n")
        self.out.flush()

    def _serialised(self, report: pytest.TestReport | pytest.CollectReport) -> Any:
        return self.config.hook.pytest_report_to_serializable(config=self.config, report=report)

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send("start", nodeid=nodeid, location=location)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.send("report", report=self._serialised(report))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed or report.skipped:
            self.send("collect", report=self._serialised(report))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.send("collected", nodeids=[str(item.nodeid) for item in session.items])

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self.send("end", exitstatus=int(exitstatus))

    def pytest_unconfigure(self) -> None:
        self.out.close()


_RUNNING = pytest.StashKey[str]()


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    # A guest that hangs is killed by `vm run`, which then names this test.
    config = _CONFIGS[-1] if _CONFIGS else None
    running = config.stash.get(_RUNNING, None) if config is not None else None
    if running:
        with open(running, "w") as out:
            out.write(nodeid + "\n")


# -- on the host: one boot per kernel, its reports replayed here ------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    config = session.config
    kernels = config.stash.get(_KERNELS, [])
    if not kernels or config.option.collectonly:
        return None
    if config.pluginmanager.has_plugin("dsession"):
        raise pytest.UsageError("--vfio-kernel runs one pytest per guest: drop pytest-xdist's -n")
    if session.testsfailed and not config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} errors during collection")
    local = [item for item in session.items if not _is_vm_test(item)]
    in_vm = [item for item in session.items if _is_vm_test(item)]
    session.testscollected = len(local) + len(in_vm) * len(kernels)
    for i, item in enumerate(local):
        nextitem = local[i + 1] if i + 1 < len(local) else None
        config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        _stop_if_asked(session)
    if in_vm:
        for kernel in kernels:
            GuestRun(session, kernel, [str(item.nodeid) for item in in_vm]).run()
            _stop_if_asked(session)
    return True


def _stop_if_asked(session: pytest.Session) -> None:
    if session.shouldfail:
        raise session.Failed(session.shouldfail)
    if session.shouldstop:
        raise session.Interrupted(session.shouldstop)


def guest_args(args: Sequence[str]) -> list[str]:
    """The host's pytest arguments without the options that only the host takes."""
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        name, equals, _ = arg.partition("=")
        if name in _HOST_ONLY:
            skip_value = _HOST_ONLY[name] and not equals
            continue
        kept.append(arg)
    return kept


def _dying_with_parent() -> Callable[[], None]:
    """For preexec_fn: `vm run` stops its guest on SIGTERM, so a host pytest
    killed outright leaves no QEMU behind.  libc is found here, before the
    fork."""
    prctl = ctypes.CDLL(None).prctl
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (`vm run` then stops its guest), and SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


class GuestRun:
    """One kernel's boot: ``pyvfio vm run`` of the guest's pytest, whose
    reports are replayed in the host's session as they arrive."""

    def __init__(self, session: pytest.Session, kernel: str, expected: list[str]) -> None:
        self.session = session
        self.config = session.config
        self.kernel = kernel
        self.expected = expected
        self.reported: set[str] = set()
        self.running: tuple[str, tuple[str, int | None, str]] | None = None
        self.output: list[str] = []
        self.exitstatus: int | None = None
        # What the guest's pytest collected (None: it never said), and the
        # phases of the running test it reported.
        self.collected: list[str] | None = None
        self.phases: list[str] = []

    def vid(self, nodeid: object) -> str:
        """``nodeid`` with the kernel as one more parameter: ``test_x[6.1]``,
        ``test_x[a-6.1]`` (the test runs once per kernel)."""
        text = str(nodeid)
        if text.endswith("]") and "[" in text.partition("::")[2]:
            return f"{text[:-1]}-{self.kernel}]"
        return f"{text}[{self.kernel}]"

    def command(self, results: Path, kept: Path | None) -> list[str]:
        config = self.config
        env = [f"{REPORT_ENV}={results / 'reports.jsonl'}", f"{SERIES_ENV}={self.kernel}"]
        env += config.getoption("vfio_env")
        # Options from the environment apply in the guest too, but for the host's own.
        addopts = os.environ.get("PYTEST_ADDOPTS", "").strip()
        if addopts:
            env.append(f"PYTEST_ADDOPTS={shlex.join(guest_args(shlex.split(addopts)))}")
        # The guest's root is read-only: its cache, and a JUnit report that
        # an ini's addopts may ask for, go to the results directory (the last
        # --junitxml wins).
        pytest_argv = [sys.executable, "-m", "pytest", *guest_args(config.invocation_params.args)]
        pytest_argv += ["-o", f"cache_dir={results / 'cache'}", f"--junitxml={results}/guest.xml"]
        vm = ["--kernel", self.kernel, "--rwdir", str(results)]
        for device in [*config.getini("vfio_devices"), *config.getoption("vfio_device")]:
            vm += ["--device", device]
        vm += config.getini("vfio_vm_args")
        for extra in config.getoption("vfio_vm"):
            vm += shlex.split(extra)
        if kept is not None:
            vm += ["--rwdir", str(kept)]
            pytest_argv[-1] = f"--junitxml={kept / self.kernel}.xml"
        return [sys.executable, "-m", "pyvfio", "vm", "run", *vm, "--", "env", *env, *pytest_argv]

    def kept_results(self) -> Path | None:
        """--vfio-results, made if need be; None if not given."""
        given = self.config.getoption("vfio_results")
        if not given:
            return None
        kept: Path = (self.config.invocation_params.dir / str(given)).resolve()
        kept.mkdir(parents=True, exist_ok=True)
        return kept

    def run(self) -> None:
        with tempfile.TemporaryDirectory(prefix="pyvfio-pytest-") as tmp:
            results = Path(tmp)
            stream = results / "reports.jsonl"
            stream.touch()
            kept = self.kept_results()
            argv = self.command(results, kept)
            with (
                subprocess.Popen(
                    argv,
                    cwd=self.config.invocation_params.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_dying_with_parent(),  # noqa: PLW1509 (a prctl only)
                ) as proc,
                open(stream, encoding="utf-8") as reports,
            ):
                assert proc.stdout is not None
                try:
                    self._follow(proc, proc.stdout, reports)
                except BaseException:
                    _stop(proc)  # not left to boot on for up to an hour
                    raise
                returncode = proc.wait()
        if kept is not None:
            (kept / f"{self.kernel}.log").write_text("\n".join(self.output) + "\n")
        self._finish(returncode)

    def _follow(self, proc: subprocess.Popen[bytes], out: IO[bytes], reports: IO[str]) -> None:
        echo = self.config.getoption("vfio_echo")
        writer = self.config.pluginmanager.get_plugin("terminalreporter")
        selector = selectors.DefaultSelector()
        selector.register(out, selectors.EVENT_READ)
        pending = b""
        partial = ""
        done = False
        while not done:
            if not selector.select(timeout=0.5):
                done = proc.poll() is not None and not selector.select(timeout=0)
            else:
                chunk = os.read(out.fileno(), 65536)
                done = not chunk
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    self.output.append(line)
                    if echo and writer is not None:
                        writer.write_line(line)
            # The guest writes whole lines; a line still being written is kept.
            partial += reports.read()
            *complete, partial = partial.split("\n")
            for line in complete:
                if line:
                    self._replay(json.loads(line))
        if pending:
            self.output.append(pending.decode(errors="replace"))
        selector.close()

    def _replay(self, event: dict[str, Any]) -> None:
        hook = self.config.hook
        kind = event["kind"]
        if kind == "start":
            nodeid = str(event["nodeid"])
            path, line, name = event["location"]
            location = (path, line, name)
            self.running = (nodeid, location)
            self.phases = []
            hook.pytest_runtest_logstart(nodeid=self.vid(nodeid), location=location)
        elif kind in ("report", "collect"):
            report = hook.pytest_report_from_serializable(config=self.config, data=event["report"])
            original = report.nodeid
            report.nodeid = self.vid(original)
            # JSON made lists of the tuples that pytest's reports hold.
            if isinstance(report.longrepr, list):
                report.longrepr = tuple(report.longrepr)
            if isinstance(getattr(report, "location", None), list):
                report.location = tuple(report.location)
            if kind == "collect":
                hook.pytest_collectreport(report=report)
                return
            hook.pytest_runtest_logreport(report=report)
            self.phases.append(str(report.when))
            if report.when == "teardown":
                self.reported.add(str(original))
                self.running = None
                hook.pytest_runtest_logfinish(nodeid=report.nodeid, location=report.location)
        elif kind == "collected":
            self.collected = [str(nodeid) for nodeid in event["nodeids"]]
        elif kind == "end":
            self.exitstatus = int(event["exitstatus"])

    def _finish(self, returncode: int) -> None:
        problems = self._kernel_problems()
        if self.running is not None:
            nodeid, location = self.running
            # The phase it died in: a test whose call passed fails in teardown.
            when: Phase = (
                "teardown" if "call" in self.phases else "call" if self.phases else "setup"
            )
            self._fail(
                self.vid(nodeid),
                location,
                f"the guest ({self.kernel}) died or was killed during this test's {when}; "
                f"{self._not_run()} did not run. The run's last output:\n" + self._tail(),
                when,
            )
        if problems:
            self._fail(
                self.vid("vm::kernel-log"),
                ("vm", None, self.vid("kernel-log")),
                f"the guest kernel log ({self.kernel}) shows problems:\n  " + "\n  ".join(problems),
            )
        if self.running is not None:
            return
        # `vm run` exits with the guest pytest's status, or 1 for a clean
        # exit with kernel-log problems; anything else (a guest that hung or
        # died after its pytest ended, a refused option) is the run's failure.
        expected = None
        if self.exitstatus is not None:
            expected = self.exitstatus or (1 if problems else 0)
        if returncode != expected or self.exitstatus not in (0, 1, 5):
            self._fail(
                self.vid("vm::run"),
                ("vm", None, self.vid("run")),
                f"`pyvfio vm run` ({self.kernel}) exited with status {returncode}, its "
                f"guest's pytest with {self.exitstatus}; {self._not_run()} did not run. "
                "The run's last output:\n" + self._tail(),
            )
        elif (missing := self._missing()) and not self.session.shouldfail:
            self._fail(
                self.vid("vm::run"),
                ("vm", None, self.vid("run")),
                f"the guest's pytest ({self.kernel}) collected {len(missing)} tests "
                f"it did not report: {', '.join(missing[:5])}",
            )

    def _kernel_problems(self) -> list[str]:
        if KLOG_HEADER not in self.output:
            return []
        lines = self.output[self.output.index(KLOG_HEADER) + 1 :]
        return [line.strip() for line in lines if line.startswith("  ")]

    def _wanted(self) -> list[str]:
        """What the guest collected, else what the host expected it to."""
        return self.expected if self.collected is None else self.collected

    def _missing(self) -> list[str]:
        """What the guest was to run and did not report (the running test aside)."""
        running = self.running[0] if self.running is not None else None
        return [n for n in self._wanted() if n not in self.reported and n != running]

    def _not_run(self) -> str:
        return f"{len(self._missing())} of its {len(self._wanted())} tests"

    def _tail(self) -> str:
        # From the runner's error on (it may follow a test's dots on one line).
        errors = [i for i, line in enumerate(self.output) if "pyvfio: error:" in line]
        if not errors:
            return "\n".join(self.output[-20:])
        first = self.output[errors[-1]]
        return "\n".join([first[first.index("pyvfio: error:") :], *self.output[errors[-1] + 1 :]])

    def _fail(
        self,
        nodeid: str,
        location: tuple[str, int | None, str],
        text: str,
        when: Phase = "call",
    ) -> None:
        hook = self.config.hook
        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        report = pytest.TestReport(
            nodeid=nodeid,
            location=location,
            keywords={},
            outcome="failed",
            longrepr=text,
            when=when,
        )
        hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


# -- fixtures ---------------------------------------------------------------


def parse_ids(ids: object) -> tuple[int, int]:
    """``"1234:11e8"`` or ``(0x1234, 0x11E8)`` as (vendor, device)."""
    form = "give 'VVVV:DDDD' in hex or (vendor, device), each 0 to 0xffff"
    if isinstance(ids, str):
        match = _IDS.fullmatch(ids)
        if match:
            return int(match[1], 16), int(match[2], 16)
    elif isinstance(ids, tuple):
        numbers = [n for n in ids if isinstance(n, int) and not isinstance(n, bool)]
        if len(ids) == len(numbers) == 2 and all(0 <= n <= 0xFFFF for n in numbers):
            return numbers[0], numbers[1]
    else:
        raise ArgumentTypeError(
            f"ids: {ids!r} is a {type(ids).__name__}, not a str or tuple: {form}",
            operation="vfio_open",
        )
    raise InvalidArgumentError(f"ids: {ids!r} is no vendor:device: {form}", operation="vfio_open")


@pytest.fixture(scope="session")
def vfio_kernel() -> str:
    """The kernel series the guest booted (as given to --vfio-kernel); on a
    machine of its own, the running kernel's release."""
    return os.environ.get(SERIES_ENV) or os.uname().release


@pytest.fixture(scope="session")
def vfio_backend() -> Backend:
    """The backend ``Device.open`` takes here: $PYVFIO_BACKEND, else iommufd
    where the kernel offers device cdevs and /dev/iommu, else legacy."""
    requested = check_backend(os.environ.get(BACKEND_ENV) or "auto", None, source=f"${BACKEND_ENV}")
    if requested != "auto":
        return Backend(requested)
    _modprobe("vfio-pci")
    cdevs = os.path.isdir("/sys/class/vfio-dev") and os.path.exists("/dev/iommu")
    return Backend.IOMMUFD if cdevs else Backend.LEGACY


def _modprobe(module: str) -> None:
    subprocess.run(["modprobe", module], capture_output=True, check=False)


@pytest.fixture
def vfio_open() -> Iterator[Callable[..., Device]]:
    """A function that opens a device by vendor:device for this test.

    ``vfio_open("1234:11e8", driver="vfio-pci", index=0, backend=None)``
    binds the ``index``-th such device to ``driver``, opens it (``backend`` as
    ``Device.open`` takes it) and returns the :class:`~pyvfio.Device`.  After
    the test every device it opened is closed and put back as it was: on
    its previous driver with its previous driver_override, or on none.  A
    device the machine lacks skips the test.
    """
    sysfs = Sysfs()
    # Unwound in reverse: each device closed, then back on the driver (and
    # driver_override) it had, as Sysfs.bound() leaves it.
    with contextlib.ExitStack() as held:

        def open_device(
            ids: str | tuple[int, int],
            *,
            driver: str = "vfio-pci",
            index: int = 0,
            backend: Backend | str | None = None,
        ) -> Device:
            vendor, device = parse_ids(ids)
            index = _check.integer(index, "index", device=None, operation="vfio_open")
            driver = _check_driver(driver, "vfio_open")
            found = sysfs.find(vendor, device)
            if len(found) <= index:
                where = "this guest" if _in_guest() else "this machine"
                pytest.skip(
                    f"{where} has {len(found)} {vendor:04x}:{device:04x} device(s), the test "
                    f"wants #{index}: add one to the VM with --vfio-device (QEMU -device syntax)"
                )
            bdf = found[index].bdf
            if driver.startswith("vfio"):
                _modprobe(driver.replace("-", "_"))
            held.enter_context(sysfs.bound(bdf, driver))
            dev = Device.open(bdf, backend=backend)
            held.callback(dev.close)
            return dev

        yield open_device


@pytest.fixture
def vfio_device(request: pytest.FixtureRequest, vfio_open: Callable[..., Device]) -> Device:
    """The device of the test's ``@pytest.mark.vfio_device(ids, ...)``, opened
    by ``vfio_open`` with the mark's keywords."""
    mark = request.node.get_closest_marker("vfio_device")
    if mark is None or len(mark.args) != 1:
        raise pytest.UsageError(
            f"{request.node.nodeid}: the vfio_device fixture needs "
            "@pytest.mark.vfio_device('VVVV:DDDD') on the test"
        )
    return vfio_open(mark.args[0], **mark.kwargs)
