# SPDX-License-Identifier: Apache-2.0
"""The pytest plugin (pyvfio.pytest_plugin) as a user runs it: a project of
marked tests, pytest on the host, the guest's results replayed here.  Two
tests boot the VM for real: what a guest reports and what a guest that dies
leaves the host to say."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pyvfio.pytest_plugin import guest_args, parse_ids
from pyvfio.vm.kernel import default_series

ROOT = Path(__file__).resolve().parents[2]
# The guest sees the host's root but not its /tmp: projects it runs live here.
PROJECTS = ROOT / "build" / "pytest-plugin"


def project(name: str, tests: str, addopts: str = "", **more: str) -> Path:
    """A project of tests/test_driver.py and tests/test_NAME.py for each of ``more``."""
    path = PROJECTS / name
    shutil.rmtree(path, ignore_errors=True)
    (path / "tests").mkdir(parents=True)
    (path / "pytest.ini").write_text(f"[pytest]\naddopts = {addopts}\n")
    (path / "tests" / "test_driver.py").write_text(tests)
    for module, text in more.items():
        (path / "tests" / f"test_{module}.py").write_text(text)
    return path


def pytest_in(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_the_guest_gets_the_arguments_without_the_hosts_own() -> None:
    args = [
        "tests",
        "-k",
        "dma",
        "--vfio-kernel",
        "6.1",
        "--vfio-kernel=7.3",
        "--vfio-device=pci-testdev",
        "--vfio-vm",
        "--memory 2G",
        "--vfio-env=X=1",
        "--vfio-echo",
        "--junitxml=out.xml",
        "--junit-xml",
        "other.xml",
        "--vfio-results=j",
        "-o",
        "junit_suite_name=s",
        "--basetemp",
        "build/tmp",
        "--lf",
        "--sw",
        "--lfnf=all",
        "-x",
    ]
    # The guest's root is read-only and it has no cache of the host's.
    assert guest_args(args) == ["tests", "-k", "dma", "-o", "junit_suite_name=s", "-x"]


@pytest.mark.parametrize("ids", ["1234:11e8", (0x1234, 0x11E8)])
def test_device_ids_are_read_as_vendor_and_device(ids: object) -> None:
    assert parse_ids(ids) == (0x1234, 0x11E8)


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        ("1234", ValueError),
        ("1234:11e8:0", ValueError),
        ("12345:11e8", ValueError),
        ((1, 2, 3), ValueError),
        ((0x10000, 0), ValueError),
        ((True, 0), ValueError),
        (0x1234, TypeError),
        (None, TypeError),
    ],
)
def test_bad_device_ids_are_refused_naming_the_form(ids: object, error: type) -> None:
    with pytest.raises(error, match="VVVV:DDDD"):
        parse_ids(ids)


MIXED = """
import pytest

def test_on_the_host():
    pass

@pytest.mark.vfio
def test_marked():
    pass

def test_with_a_fixture(vfio_kernel):
    pass
"""


def test_without_a_kernel_marked_tests_skip_saying_how_to_run_them() -> None:
    result = pytest_in(project("skips", MIXED))
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout
    assert "run it in the test VM with --vfio-kernel SERIES" in result.stdout


def test_an_unknown_kernel_is_refused_before_anything_runs() -> None:
    result = pytest_in(project("unknown", MIXED), "--vfio-kernel=5.10")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--vfio-kernel 5.10:" in result.stderr
    assert "passed" not in result.stdout


REPORTED = """
import pytest

def test_passes(vfio_kernel):
    assert vfio_kernel == "{series}"

@pytest.mark.vfio
def test_fails():
    assert 6 * 7 == 43

def test_device_absent(vfio_open):
    vfio_open("dead:beef")

@pytest.mark.parametrize("n", [1, 2])
def test_edu_opens(vfio_open, n):
    device = vfio_open("1234:11e8")
    assert device.region(0).map().read32(0) & 0xFF == 0xED

@pytest.mark.vfio
def test_warns_in_the_kernel_log():
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write("<4>WARNING: CPU: 0 PID: 1 at pyvfio-plugin-selftest\\n")
"""


SKIPPED = """
import os

import pytest

if os.environ.get("PYVFIO_GUEST") == "1":
    pytest.skip("a guest-only reason", allow_module_level=True)

@pytest.mark.vfio
def test_skipped_in_the_guest():
    pass
"""


@pytest.mark.boots
def test_guest_results_come_back_as_the_hosts_with_the_kernel_named() -> None:
    kernel = default_series()  # the host's own, which `make setup` fetches first
    tests = REPORTED.format(series=kernel) + MIXED.split("import pytest")[1]
    # Asked for in the project's ini, which the guest's pytest reads too: it
    # must not boot a VM of its own.
    path = project("reported", tests, addopts=f"--vfio-kernel={kernel}", skipped=SKIPPED)
    # PYTEST_ADDOPTS reaches the guest's pytest, without the host's own options.
    addopts = f"-o junit_suite_name=from-addopts --vfio-kernel={kernel}"
    result = pytest_in(
        path, "--junitxml=host.xml", "--vfio-results=j", env={"PYTEST_ADDOPTS": addopts}
    )
    out = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out
    # The unmarked test ran here; every marked one ran in the guest, once.
    assert "PASSED tests/test_driver.py::test_on_the_host\n" in out
    for passed in ("test_passes", "test_edu_opens[1", "test_edu_opens[2", "test_marked"):
        assert f"PASSED tests/test_driver.py::{passed}" in out
    assert f"test_edu_opens[1-{kernel}]" in out
    assert f"FAILED tests/test_driver.py::test_fails[{kernel}]" in out
    assert "assert (6 * 7) == 43" in out  # the guest's own explanation
    assert "this guest has 0 dead:beef device(s)" in out
    assert f"FAILED vm::kernel-log[{kernel}]" in out
    # A module the guest skips as a whole is reported skipped, not lost.
    assert "SKIPPED [1] tests/test_skipped.py" in out
    assert "a guest-only reason" in out
    assert "vm::run" not in out
    assert "pyvfio-plugin-selftest" in out
    host = ET.parse(path / "host.xml").getroot()
    names = {case.get("name") for case in host.iter("testcase")}
    assert f"test_fails[{kernel}]" in names
    assert "test_on_the_host" in names
    # The guest's own report (its names carry no kernel) and output.
    assert "test_driver.py" in (path / "j" / f"{kernel}.log").read_text()
    guest = ET.parse(path / "j" / f"{kernel}.xml").getroot()
    assert {case.get("name") for case in guest.iter("testcase")} >= {"test_fails", "test_marked"}
    assert {suite.get("name") for suite in guest.iter("testsuite")} == {"from-addopts"}


DIES = """
import pytest

pytestmark = pytest.mark.vfio

def test_before():
    pass

def test_panics():
    with open("/proc/sysrq-trigger", "w") as trigger:
        trigger.write("c")

def test_after():
    pass
"""


@pytest.mark.boots
def test_a_guest_that_dies_fails_the_test_it_was_in() -> None:
    kernel = default_series()  # the host's own, which `make setup` fetches first
    result = pytest_in(project("dies", DIES), f"--vfio-kernel={kernel}")
    out = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert f"PASSED tests/test_driver.py::test_before[{kernel}]" in out
    assert f"FAILED tests/test_driver.py::test_panics[{kernel}]" in out
    assert "died or was killed during this test's call; 1 of its 3 tests did not run" in out
    assert "test_after" not in out.split("short test summary info")[1]
