# SPDX-License-Identifier: Apache-2.0
"""The kernel matrix and set-up: tool check, kernel resolution, per-kernel summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyvfio import kmod
from pyvfio.errors import VmError
from pyvfio.vm import debugkernel, kernels, tools

ROOT = Path(__file__).resolve().parents[2]
PYVFIO = [sys.executable, "-m", "pyvfio"]


def _path_without(tool: str, into: Path) -> str:
    """A PATH holding every checked tool that is installed, except ``tool``."""
    into.mkdir()
    for name in [*tools.HOST_TOOLS, *tools.VENV_TOOLS, "python3"]:
        found = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        if found and name != tool:
            (into / name).symlink_to(found)
    return str(into)


def test_setup_check_names_the_package_of_a_hidden_tool(tmp_path: Path) -> None:
    # `make setup` ends with this check: with busybox gone from PATH it must fail
    # and say which package brings it back.
    env = {**os.environ, "PATH": _path_without("busybox", tmp_path / "bin")}
    proc = subprocess.run(
        [*PYVFIO, "vm", "check"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "busybox is missing: install busybox-static" in proc.stderr


def test_setup_left_every_tool_in_place() -> None:
    # After `make setup` (which `make test` runs first) nothing may be missing.
    assert tools.missing() == []


def test_every_missing_tool_names_its_package(tmp_path: Path) -> None:
    gone = dict(tools.missing(path=str(tmp_path), venv_bin=str(tmp_path)))
    assert gone["qemu-system-x86_64"] == "qemu-system-x86"
    assert gone["file"] == "file"  # virtme-ng runs `file -L busybox` (a fresh root lacked it)
    assert gone["depmod"] == "kmod"
    assert gone["vng"] == "virtme-ng (pip, pyvfio[vm])"
    assert gone["flex"] == "flex"  # the debug kernel's build


def test_pending_kernels_are_an_explicit_list() -> None:
    # Once the module builds everywhere KMOD_PENDING becomes empty: that must
    # mean "no kernel may fail", never "the default matrix may".
    assert kernels.series_list("") == set()
    assert kernels.series_list(" 6.12  7.3 ") == {"6.12", "7.3"}
    with pytest.raises(VmError, match="unknown kernel series"):
        kernels.series_list("6.13")


def test_only_our_own_compile_error_counts_as_pending() -> None:
    kernel = kernels.Kernel("7.3", "7.3.4+deb13-amd64", "trixie")

    def build(error: str) -> kernels.ModuleBuild:
        return kernels.ModuleBuild(kernel, None, error)

    assert build("vfio_pci_cookie.c:239:9: error: implicit declaration").compile_error
    assert not build('ERROR: modpost: "foo" [vfio_pci_cookie.ko] undefined!').compile_error
    assert not build("make: *** /usr/src/linux-headers-7.3: No such file").compile_error


def test_matrix_default_and_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERNELS", raising=False)
    monkeypatch.setattr(kernels, "host_default_series", lambda: "6.12")
    assert kernels.matrix() == ["6.1", "6.12", "7.3", "7.3-debug"]
    monkeypatch.setattr(kernels, "host_default_series", lambda: None)
    assert kernels.matrix() == ["6.1", "6.12", "7.3", "7.3-debug"]
    assert kernels.matrix("7.3,6.1") == ["7.3", "6.1"]
    assert kernels.matrix("7.3-debug") == ["7.3-debug"]
    monkeypatch.setenv("KERNELS", "6.12 6.12")
    assert kernels.matrix() == ["6.12"]
    with pytest.raises(VmError, match=r"unknown kernel series '5\.10'.*6\.1, 6\.12, 7\.3, 7\.3-d"):
        kernels.matrix("6.1 5.10")


def test_the_debug_kernel_is_built_not_fetched() -> None:
    with pytest.raises(VmError, match=r"built here, not fetched.*pyvfio vm debug-kernel"):
        kernels.choose_source("7.3-debug")


def test_a_config_option_kconfig_dropped_is_reported() -> None:
    fragment = "# comment\nCONFIG_IOMMUFD=m\nCONFIG_E1000E=m\n# CONFIG_MODULE_SIG is not set\n"
    config = "CONFIG_IOMMUFD=m\n# CONFIG_E1000E is not set\nCONFIG_MODULE_SIG=y\n"
    assert debugkernel.unmet_options(fragment, config) == [
        "CONFIG_E1000E=m",
        "# CONFIG_MODULE_SIG is not set",
    ]
    assert debugkernel.unmet_options(fragment, "CONFIG_IOMMUFD=m\nCONFIG_E1000E=m\n") == []


def test_the_debug_kernel_key_follows_the_fragment() -> None:
    one = debugkernel.cache_key("7.3.4-1~bpo13+1", b"CONFIG_A=y\n")
    assert one.startswith("7.3.4-1_bpo13+1-")
    assert one == debugkernel.cache_key("7.3.4-1~bpo13+1", b"CONFIG_A=y\n")
    assert one != debugkernel.cache_key("7.3.4-1~bpo13+1", b"CONFIG_A=m\n")
    assert one != debugkernel.cache_key("7.3.5-1~bpo13+1", b"CONFIG_A=y\n")


def test_each_series_prefers_the_hosts_own_debian_release() -> None:
    assert kernels.choose_source("6.12", "bookworm").image == "linux-image-6.12-amd64"
    assert kernels.choose_source("6.12", "trixie").image == "linux-image-amd64"
    # 7.3 exists only in trixie-backports, pinned low by apt: asked for by release
    assert kernels.choose_source("7.3", "bookworm").release == "trixie-backports"


def test_a_metapackage_pointing_elsewhere_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Apt:
        def depends(self, package: str, release: str | None) -> list[str]:
            kind = "image" if "image" in package else "headers"
            return ["linux-base-amd64", f"linux-{kind}-7.4.1+deb13-amd64"]

    source = kernels.choose_source("7.3", "trixie")
    with pytest.raises(VmError, match=r"now points at 7\.4\.1\+deb13-amd64, not a 7\.3 kernel"):
        kernels.resolve("7.3", Apt(), source)  # type: ignore[arg-type]
    assert kernels.resolve("7.4", Apt(), source) == "7.4.1+deb13-amd64"  # type: ignore[arg-type]


def test_first_compiler_error_is_what_a_skip_shows() -> None:
    log = (
        "  CC [M]  /var/tmp/pyvfio-kmod/6.12/vfio_pci_cookie.o\n"
        "/var/tmp/pyvfio-kmod/6.12/vfio_pci_cookie.c: In function 'vma_join':\n"
        "/var/tmp/pyvfio-kmod/6.12/vfio_pci_cookie.c:248:25: error: 'struct "
        "vfio_pci_core_device' has no member named 'vma_lock'\n"
        "/var/tmp/pyvfio-kmod/6.12/vfio_pci_cookie.c:250:1: error: second\n"
        "make[2]: *** [scripts/Makefile.build:250: vfio_pci_cookie.o] Error 1\n"
    )
    assert kmod.first_error(log) == (
        "vfio_pci_cookie.c:248:25: error: 'struct vfio_pci_core_device' has no member "
        "named 'vma_lock'"
    )
    assert kmod.first_error("make: *** No rule to make target 'modules'.  Stop.\n") == (
        "unknown error (see the build log)"
    )


def test_private_apt_sources_name_updates_backports_and_security() -> None:
    text = kernels.sources_text("trixie", "http://mirror/debian", "http://mirror/debian-security")
    assert "Suites: trixie trixie-updates trixie-backports\n" in text
    assert "Suites: trixie-security\n" in text
    assert text.count(f"Signed-By: {kernels.KEYRING}") == 2


def test_summary_counts_each_kernel_and_the_whole(tmp_path: Path) -> None:
    def junit(name: str, tests: int, failures: int, skipped: int) -> str:
        path = tmp_path / f"{name}.xml"
        path.write_text(
            f'<testsuites><testsuite name="{name}" tests="{tests}" failures="{failures}" '
            f'errors="0" skipped="{skipped}"/></testsuites>'
        )
        return f"{name}={path}"

    def summary(*args: str) -> tuple[int, list[str]]:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "summary.py"), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.returncode, proc.stdout.splitlines()

    rc, lines = summary(junit("host", 10, 0, 0), junit("6.1", 5, 0, 1), junit("7.3", 5, 0, 3))
    assert rc == 0
    assert lines == [
        "  host: 10 passed, 0 failed, 0 skipped",
        "  6.1: 4 passed, 0 failed, 1 skipped",
        "  7.3: 2 passed, 0 failed, 3 skipped",
        "pyvfio: 16 passed, 0 failed, 4 skipped",
    ]
    rc, lines = summary(junit("host", 1, 0, 0), junit("7.3", 5, 0, 5))
    assert rc == 1
    assert "summary: 7.3: no test passed" in lines
    rc, lines = summary(junit("6.12", 3, 1, 0), f"7.3={tmp_path}/none.xml", "step:kmod")
    assert rc == 1
    assert "summary: step kmod failed" in lines
    assert any("none.xml missing" in line for line in lines)
    assert lines[-1] == "pyvfio: 2 passed, 1 failed, 0 skipped"

    # With the boots' logs: each line has its time, a boot without a report
    # the runner's error, which is all that CI's view of the output ends with.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "6.12.rc").write_text("1 472\n")
    (logs / "none.rc").write_text("1 1800\n")
    (logs / "none.log").write_text(
        "tests/guest/test_a.py ....\n"
        "pyvfio: error: vm run: the guest did not finish within 1800 s; killed; "
        "its last output:\ntests/guest/test_b.py ..\n"
    )
    rc, lines = summary("--logs", str(logs), junit("6.12", 3, 1, 0), f"7.3={tmp_path}/none.xml")
    assert rc == 1
    assert "  6.12: 2 passed, 1 failed, 0 skipped (472 s)" in lines
    error = lines.index(f"summary: {tmp_path}/none.xml missing (its test run did not finish)")
    assert lines[error + 1 : error + 3] == [
        "  pyvfio: error: vm run: the guest did not finish within 1800 s; killed; its last output:",
        "  tests/guest/test_b.py ..",
    ]


# Programs every Debian root has (Essential: yes), or that are this project's own.
ESSENTIAL = {"sh", "true", "python3", "pyvfio", "cp", "tr", "ls", "mkdir", "cat", "echo"}
CALL = re.compile(
    r"(?:run|Popen|check_output|check_call|_run|_run_root)\(\s*\[\s*\"([A-Za-z][\w.+-]*)\"",
)


def test_every_program_a_test_or_the_tooling_runs_is_checked_and_installed() -> None:
    # Debian 13's minimal root had no mkfs.ext4, and only a guest test found out.
    run = set()
    for tree in ("src", "tests", "bench", "examples", "tools"):
        for path in (ROOT / tree).rglob("*.py"):
            run |= set(CALL.findall(path.read_text()))
    assert "mkfs.ext4" in run and "dpkg-deb" in run, "the scan finds nothing"
    unchecked = run - set(tools.HOST_TOOLS) - set(tools.VENV_TOOLS) - ESSENTIAL
    assert not unchecked, f"add these to pyvfio.vm.tools.HOST_TOOLS: {sorted(unchecked)}"
    setup = re.sub(r"#.*", "", (ROOT / "tools" / "setup.sh").read_text())
    listed = set(re.search(r"APT_PACKAGES=\((.*?)\)", setup, re.S)[1].split())  # type: ignore[index]
    packages = {*tools.HOST_TOOLS.values(), *tools.HOST_FILES.values()}
    # systemd-standalone-tmpfiles only where systemd is absent (setup.sh says why)
    not_installed = packages - listed - {"systemd-standalone-tmpfiles"}
    assert not not_installed, f"tools/setup.sh does not install {sorted(not_installed)}"
