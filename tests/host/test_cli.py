# SPDX-License-Identifier: Apache-2.0
"""The CLI on a fake sysfs: listing, JSON schema, filters, errors."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pyvfio
from pyvfio import kmod
from pyvfio.cli import KMOD_ABSENT, KMOD_LOADABLE, KMOD_LOADED, main
from pyvfio.pci import PciDevice, Sysfs
from pyvfio.vm import kernels, runner, tools

from .conftest import FakeDevice


@pytest.fixture
def two_devices(sysfs_root: Path, fake_device: FakeDevice) -> Path:
    fake_device(
        "0000:00:0a.0", 0x1234, 0x11E8, 0x00FF00, group=10, bars={0: (0xFEA00000, 1 << 20, 0x40200)}
    )
    fake_device(
        "0000:00:0c.0",
        0x1B36,
        0x0010,
        0x010802,
        driver="nvme",
        group=12,
        bars={0: (0xFEB00000, 16 << 10, 0x140204), 2: (0xFC000000, 16 << 20, 0x14220C)},
    )
    return sysfs_root


def test_list_text(two_devices: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sysfs", str(two_devices), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["BDF", "ID", "CLASS", "GROUP", "DRIVER", "BARS"]
    assert lines[1].split() == ["0000:00:0a.0", "1234:11e8", "00ff", "10", "-", "BAR0=1M(mem32)"]
    assert lines[2].split() == [
        "0000:00:0c.0",
        "1b36:0010",
        "0108",
        "12",
        "nvme",
        "BAR0=16K(mem64)",
        "BAR2=16M(mem64,prefetch)",
    ]


def test_list_json_schema(two_devices: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sysfs", str(two_devices), "list", "--json", "-d", "1b36:"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    assert doc["devices"] == [
        {
            "bdf": "0000:00:0c.0",
            "vendor": "1b36",
            "device": "0010",
            "class": "010802",
            "iommu_group": 12,
            "driver": "nvme",
            "bars": [
                {
                    "index": 0,
                    "start": 0xFEB00000,
                    "size": 16 << 10,
                    "io": False,
                    "64bit": True,
                    "prefetchable": False,
                },
                {
                    "index": 2,
                    "start": 0xFC000000,
                    "size": 16 << 20,
                    "io": False,
                    "64bit": True,
                    "prefetchable": True,
                },
            ],
        }
    ]


def test_bad_id_filter_is_a_usage_error(
    two_devices: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--sysfs", str(two_devices), "list", "-d", "nvme"])
    assert exc.value.code == 2
    assert "VENDOR:DEVICE" in capsys.readouterr().err


def test_unknown_device_is_a_clear_error(
    two_devices: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--sysfs", str(two_devices), "bind", "0000:00:1f.0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyvfio: error: 0000:00:1f.0: no such PCI device")


def test_list_keeps_its_columns_with_a_driver_name_with_a_space(
    sysfs_root: Path, fake_device: FakeDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_device("0000:00:03.0", 0x8086, 0x25AB, 0x088000, driver="i6300ESB timer", group=3)
    fake_device("0000:00:0a.0", 0x1234, 0x11E8, 0x00FF00, group=10)
    assert main(["--sysfs", str(sysfs_root), "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    bars = header.index("BARS")
    assert [row[bars:].strip() for row in rows] == ["-", "-"]
    assert rows[0][header.index("DRIVER") : bars].strip() == "i6300ESB timer"


def test_list_into_a_closed_pipe_ends_quietly(two_devices: Path) -> None:
    # `pyvfio list --json | head -1`: no BrokenPipeError traceback.
    proc = subprocess.run(
        f"{sys.executable} -m pyvfio --sysfs {two_devices} list --json | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout == "{\n"
    assert proc.stderr == ""


def test_a_missing_sysfs_is_an_error_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--sysfs", str(tmp_path / "nonexistent"), "list"]) == 1
    err = capsys.readouterr().err
    assert "no PCI devices directory" in err and "is sysfs mounted" in err


def test_version_says_how_registers_are_accessed_and_where_the_module_is() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyvfio", "--version"], capture_output=True, text=True, check=True
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("pyvfio 0.")
    assert lines[1] == "register access: C extension (pyvfio._mmio)"  # built by make setup
    assert lines[2].startswith("vfio_pci_cookie: ")
    assert proc.stderr == ""


CONFIG = Path(__file__).parent / "data" / "config"


@pytest.fixture
def nvme_on_nvme(sysfs_root: Path, fake_device: FakeDevice) -> Path:
    """The VM's nvme as sysfs shows it on the nvme driver, config space included."""
    dev = fake_device(
        "0000:00:0d.0",
        0x1B36,
        0x0010,
        0x010802,
        driver="nvme",
        group=13,
        bars={0: (0xFEB00000, 16 << 10, 0x140204), 2: (0xFD000000, 16 << 20, 0x14220C)},
    )
    (dev / "config").write_bytes((CONFIG / "nvme.bin").read_bytes())
    (dev / "subsystem_vendor").write_text("0x1af4\n")
    (dev / "subsystem_device").write_text("0x1100\n")
    (dev / "power_state").write_text("D0\n")
    return dev


def _tree(root: Path) -> dict[str, bytes | str]:
    return {
        str(p): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def _info_json(sysfs_root: Path, bdf: str, capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(["--sysfs", str(sysfs_root), "info", "--json", bdf]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_of_a_device_on_a_host_driver_reads_sysfs_only(
    sysfs_root: Path, nvme_on_nvme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(sysfs_root.parent.parent)
    report = _info_json(sysfs_root, "00:0d.0", capsys)
    assert _tree(sysfs_root.parent.parent) == before  # nothing written
    assert (report["bdf"], report["vendor"], report["device"], report["class"]) == (
        "0000:00:0d.0",
        "1b36",
        "0010",
        "010802",
    )
    assert (report["driver"], report["iommu_group"], report["revision"]) == ("nvme", 13, "02")
    assert (report["subsystem_vendor"], report["subsystem_device"]) == ("1af4", "1100")
    assert (report["prog_if"], report["power_state"], report["power_state_from"]) == (
        "02",
        "D0",
        "kernel",
    )
    assert report["msix"] == {
        "offset": 0x40,
        "enabled": True,
        "masked": False,
        "table_size": 65,
        "table_bar": 0,
        "table_offset": 0x2000,
        "pba_bar": 0,
        "pba_offset": 0x3000,
    }
    assert report["express"]["port_type"] == "Root Complex Integrated Endpoint"
    assert [c["name"] for c in report["pci_capabilities"]] == [
        "MSI-X",
        "PCI Express",
        "Power Management",
    ]
    # no VFIO view, and no attempt at one
    assert report["backend"] is None and report["regions"] is None and report["irqs"] is None
    assert report["vfio_error"] is None


def test_info_json_keeps_one_type_per_field(
    sysfs_root: Path, nvme_on_nvme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _info_json(sysfs_root, "0000:00:0d.0", capsys)
    # as a non-root user reads it: 64 bytes, no power_state attribute (kernel < 5.19)
    (nvme_on_nvme / "config").write_bytes((CONFIG / "nvme.bin").read_bytes()[:64])
    (nvme_on_nvme / "power_state").unlink()
    partial = _info_json(sysfs_root, "0000:00:0d.0", capsys)
    assert full.keys() == partial.keys()
    for key in full:
        kinds = {type(full[key]), type(partial[key])} - {type(None)}
        assert len(kinds) <= 1, (key, full[key], partial[key])
    assert partial["config_size"] == 64 and "without root" in partial["config_missing"]
    assert partial["pci_capabilities"] is None and partial["msix"] is None
    assert partial["power_state"] is None and partial["power_state_from"] is None
    # what the 64-byte header holds is still there
    assert partial["command_bits"] == full["command_bits"] and partial["revision"] == "02"


def test_info_power_state_from_pmcsr_where_the_kernel_does_not_know(
    sysfs_root: Path, nvme_on_nvme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (nvme_on_nvme / "power_state").write_text("unknown\n")
    report = _info_json(sysfs_root, "0000:00:0d.0", capsys)
    assert (report["power_state"], report["power_state_from"]) == ("D0", "pmcsr")


def test_info_text(
    sysfs_root: Path, nvme_on_nvme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--sysfs", str(sysfs_root), "info", "0000:00:0d.0"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("0000:00:0d.0 ")
    assert "[0108]" in text and "[1b36:0010] (rev 02) (prog-if 02" in text
    assert "Mem+ BusMaster+" in text and "power state D0 (from kernel)" in text
    assert "[40] MSI-X: enabled, 65 vectors, not masked; table BAR0+0x2000, PBA BAR0+0x3000" in text
    assert "VFIO: not opened: on nvme, not a VFIO driver" in text


# --- `pyvfio vm run`: every argument checked before anything starts ----------


def _vm_run_refusals(tmp_path: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "file").write_text("not a kernel")
    return [
        (["--kernel", "5.10"], "argument --kernel: '5.10' is no kernel series, fetched release"),
        (["--kernel", "/nonexist"], "argument --kernel: '/nonexist': no such file"),
        (["--kernel", ""], "argument --kernel: '' is no kernel series"),
        (["--kernel", str(tmp_path / "file")], "is not a kernel image"),
        (["--memory", "lots"], "argument --memory: 'lots' is not a size"),
        (["--memory", "1K"], "argument --memory: '1K' is below the guest's minimum"),
        (["--memory", "1000000T"], "argument --memory: '1000000T' is more than the host's"),
        (["--cpus", "0"], "argument --cpus: 0 is not between 1 and the host's"),
        (["--cpus", "100000"], "argument --cpus: 100000 is not between 1"),
        (["--cpus", "x"], "argument --cpus: invalid int value: 'x'"),
        (["--timeout", "-5"], "argument --timeout: -5 is not a number of seconds above 0"),
        (["--timeout", "nan"], "argument --timeout: nan is not"),
        (["--timeout", "inf"], "argument --timeout: inf is not"),
        (["--silence", "0"], "argument --silence: 0 is not a number of seconds above 0"),
        (["--device", "x y"], "argument --device: 'x y' does not start with a QEMU device type"),
        (["--object", "memory-backend-ram"], "argument --object: 'memory-backend-ram' has no id="),
        (["--large-bar", "3G"], "argument --large-bar: '3G' is not a power of two"),
        (["--nics", "-1"], "argument --nics: -1 is not between 0 and 8"),
        (["--nics", "9"], "argument --nics: 9 is not between 0 and 8"),
        (["--append", ""], "argument --append: '' is empty"),
        (["--rwdir", "/nonexist"], "argument --rwdir: '/nonexist': no such directory"),
        (["--rwdir", str(tmp_path / "file")], "argument --rwdir: "),
    ]


def _vm_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, list[str]]:
    try:
        status: object = main(["vm", "run", *argv])
    except SystemExit as exc:  # argparse's own refusals (--cpus x)
        status = exc.code
    out, err = capsys.readouterr()
    assert out == ""
    return status, err.splitlines()


def test_vm_run_refuses_each_bad_argument_in_one_line_before_it_starts_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"started before the arguments were checked: {args}")

    monkeypatch.setattr(runner, "_find_vng", started)
    monkeypatch.setattr(subprocess, "Popen", started)
    for args, message in _vm_run_refusals(tmp_path):
        status, lines = _vm_run([*args, "--", "true"], capsys)
        assert status == 2, (args, lines)
        assert len(lines) == 1, (args, lines)
        assert lines[0].startswith("pyvfio vm run: error: "), lines
        assert message in lines[0], (message, lines)
    # no command at all
    for argv in ([], ["--"], ["--memory", "2G"]):
        status, lines = _vm_run(argv, capsys)
        assert status == 2
        assert lines == [
            "pyvfio vm run: error: no command given; pyvfio vm run [OPTIONS] -- CMD [ARGS...]"
        ]


def test_vm_run_hands_its_options_to_the_runner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    booted: list[tuple[list[str], runner.VmOptions]] = []

    def boot(command: list[str], options: runner.VmOptions) -> runner.GuestResult:
        booted.append((command, options))
        return runner.GuestResult(returncode=3, output="", kernel_log="", problems=())

    monkeypatch.setattr(pyvfio.vm, "run", boot)
    assert _vm_run(["--", "true"], capsys) == (3, [])
    assert _vm_run(["--uncached-root", "--silence", "9", "--", "true", "x"], capsys) == (3, [])
    (_, default), (command, options) = booted
    assert default.cached_root and default.silence == 300
    assert command == ["true", "x"]
    assert not options.cached_root and options.silence == 9


def test_vm_run_help_states_the_bounds_it_checks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["vm", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"at most {runner.MAX_NICS}" in text
    assert f"{runner.MIN_MEMORY >> 20}M to the host's RAM" in text


def test_vm_run_names_the_series_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _vm_run(["--kernel", "5.10", "--", "true"], capsys)
    assert status == 2
    assert lines == [
        "pyvfio vm run: error: argument --kernel: '5.10' is no kernel series, fetched release "
        "or image file; the series are 6.1, 6.12, 7.3, 7.3-debug; `pyvfio vm kernels` shows "
        "which are fetched"
    ]


def test_vm_run_checks_its_arguments_without_vng_or_qemu_on_path(tmp_path: Path) -> None:
    # A Python whose own bin/ holds neither vng nor QEMU, on a PATH of nothing
    # else: the refusal is the argument's, so it came before looking for them.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    env = {"PATH": str(bindir), "PYTHONPATH": str(Path(pyvfio.__file__).parents[1])}
    for args, message in (
        (["--memory", "lots"], "argument --memory: 'lots' is not a size"),
        (["--rwdir", "/nonexist"], "argument --rwdir: '/nonexist': no such directory"),
        (["--timeout", "-5"], "argument --timeout: -5 is not"),
        (["--cpus", "0"], "argument --cpus: 0 is not"),
        (["--kernel", "/nonexist"], "argument --kernel: '/nonexist': no such file"),
    ):
        proc = subprocess.run(
            [bindir / "python3", "-m", "pyvfio", "vm", "run", *args, "--", "true"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"pyvfio vm run: error: {message}"), lines
        assert proc.stdout == ""


# --- --json of the verbs that report state ------------------------------------


def _json_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    status = main(argv)
    out, err = capsys.readouterr()
    assert err == ""
    doc = json.loads(out)
    assert doc["schema"] == 1
    return status, doc


def _one_type_per_field(*docs: dict[str, Any]) -> None:
    for key in docs[0]:
        kinds = {type(doc[key]) for doc in docs} - {type(None)}
        assert len(kinds) <= 1, (key, [doc[key] for doc in docs])


@pytest.fixture
def fake_kernel(sysfs_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """drivers_probe as the kernel does it: the driver_override if one is set,
    else the device's default driver (the dict this returns, by BDF)."""
    defaults: dict[str, str | None] = {}

    def probe(self: Sysfs, bdf: str) -> None:
        dev = self.root / "devices" / bdf
        override = (dev / "driver_override").read_text().strip()
        driver = override if override not in ("", "(null)") else defaults.get(bdf)
        if (dev / "driver").is_symlink():
            (dev / "driver").unlink()
        if driver is not None:
            (self.root / "drivers" / driver).mkdir(exist_ok=True)
            (dev / "driver").symlink_to(self.root / "drivers" / driver)

    def reprobe(self: Sysfs, dev: PciDevice, *args: object) -> None:
        # The real one writes unbind and drivers_probe from a child process.
        (self.root / "devices" / dev.bdf / "driver").unlink(missing_ok=True)
        probe(self, dev.bdf)

    monkeypatch.setattr(Sysfs, "_probe", probe)
    monkeypatch.setattr(Sysfs, "_reprobe", reprobe)
    (sysfs_root / "drivers" / "vfio-pci").mkdir()
    return defaults


def test_bind_and_unbind_json(
    two_devices: Path, fake_kernel: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kernel["0000:00:0c.0"] = "nvme"
    root = ["--sysfs", str(two_devices)]
    bound = _json_of([*root, "bind", "0000:00:0c.0", "--json"], capsys)
    assert bound == (
        0,
        {"schema": 1, "bdf": "0000:00:0c.0", "driver": "vfio-pci", "previous_driver": "nvme"},
    )
    again = _json_of([*root, "bind", "00:0c.0", "--json"], capsys)  # already there
    assert again[1] == {**bound[1], "previous_driver": "vfio-pci"}
    released = _json_of([*root, "unbind", "0000:00:0c.0", "--json"], capsys)
    assert released == (
        0,
        {"schema": 1, "bdf": "0000:00:0c.0", "driver": "nvme", "previous_driver": "vfio-pci"},
    )
    # edu has no driver of its own: null before the bind and after the unbind
    edu = _json_of([*root, "bind", "0000:00:0a.0", "--json"], capsys)[1]
    assert edu["previous_driver"] is None and edu["driver"] == "vfio-pci"
    edu = _json_of([*root, "unbind", "0000:00:0a.0", "--json"], capsys)[1]
    assert edu["driver"] is None and edu["previous_driver"] == "vfio-pci"
    _one_type_per_field(bound[1], released[1], edu)
    # an error is still one line on stderr, and nothing on stdout
    assert main([*root, "unbind", "0000:00:1f.0", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("pyvfio: error: 0000:00:1f.0: no such PCI device")


def test_kmod_status_json_keeps_the_exit_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kmod, "BUILD_DIR", tmp_path / "kmod")
    status, absent = _json_of(["kmod", "status", "--release", "0.0.0-pyvfio", "--json"], capsys)
    assert status == KMOD_ABSENT == 4
    assert absent["module"] == "vfio_pci_cookie" and absent["release"] == "0.0.0-pyvfio"
    assert absent["state"] == "absent" and absent["loaded"] is False
    assert absent["built"] is None and absent["headers"] is None and absent["stand_in"] == []
    assert "linux-headers-0.0.0-pyvfio" in absent["headers_hint"]
    ko = tmp_path / "kmod" / "0.0.0-pyvfio" / "vfio_pci_cookie.ko"
    everything = kmod.Status(
        release="0.0.0-pyvfio",
        loaded=True,
        loaded_version="0.1.0",
        loaded_srcversion="ABC",
        loaded_from=ko,
        built=ko,
        built_srcversion="ABC",
        build_error="kmod/vfio_pci_cookie.c:1:1: error: x",
        installed=Path("/lib/modules/0.0.0-pyvfio/updates/dkms/vfio_pci_cookie.ko"),
        installed_srcversion="DEF",
        dkms="vfio-pci-cookie/0.1.0, 0.0.0-pyvfio, x86_64: installed",
        stand_in=[Path("/lib/modules/0.0.0-pyvfio/updates/vfio-pci.ko")],
        headers=Path("/lib/modules/0.0.0-pyvfio/build"),
    )
    monkeypatch.setattr(kmod, "status", lambda release: everything)
    status, loaded = _json_of(["kmod", "status", "--json"], capsys)
    assert status == KMOD_LOADED == 0
    assert loaded["state"] == "loaded" and loaded["loaded_from"] == str(ko)
    assert loaded["stand_in"] == ["/lib/modules/0.0.0-pyvfio/updates/vfio-pci.ko"]
    assert loaded["headers_hint"] is None
    monkeypatch.setattr(
        kmod, "status", lambda release: dataclasses.replace(everything, loaded=False)
    )
    status, loadable = _json_of(["kmod", "status", "--json"], capsys)
    assert status == KMOD_LOADABLE == 3 and loadable["state"] == "loadable"
    assert absent.keys() == loaded.keys() == loadable.keys()
    _one_type_per_field(absent, loaded, loadable)


def test_vm_kernels_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kernels, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(kmod, "BUILD_DIR", tmp_path / "kmod")
    (tmp_path / "cache" / "kernels").mkdir(parents=True)
    for series, release, base in (
        ("6.1", "6.1.0-57-amd64", "bookworm"),
        ("6.12", "6.12.118+deb12-amd64", "bookworm"),
        ("7.3", "7.3.4+deb13-amd64", "trixie"),
    ):
        record = {"series": series, "release": release, "base": base}
        (tmp_path / "cache" / "kernels" / f"{series}.json").write_text(json.dumps(record))
    (tmp_path / "kmod" / "6.1.0-57-amd64").mkdir(parents=True)
    (tmp_path / "kmod" / "6.1.0-57-amd64" / "vfio_pci_cookie.ko").touch()
    (tmp_path / "kmod" / "7.3.4+deb13-amd64").mkdir(parents=True)
    (tmp_path / "kmod" / "7.3.4+deb13-amd64" / "error").write_text("x.c:1:1: error: y\n")
    status, doc = _json_of(["vm", "kernels", "6.1", "6.12", "7.3", "7.3-debug", "--json"], capsys)
    assert status == 0
    built, plain, failed, absent = doc["kernels"]
    assert built == {
        "series": "6.1",
        "fetched": True,
        "release": "6.1.0-57-amd64",
        "base": "bookworm",
        "image": str(kernels.image_path("6.1.0-57-amd64")),
        "module": "built",
        "module_path": str(tmp_path / "kmod" / "6.1.0-57-amd64" / "vfio_pci_cookie.ko"),
        "module_error": None,
    }
    assert plain["module"] == "not built" and plain["module_path"] is None
    assert failed["module"] == "failed" and failed["module_error"] == "x.c:1:1: error: y"
    assert absent == {
        "series": "7.3-debug",
        "fetched": False,
        **dict.fromkeys(
            ("release", "base", "image", "module", "module_path", "module_error"), None
        ),
    }
    _one_type_per_field(*doc["kernels"])
    # the text says the same
    assert main(["vm", "kernels", "6.1", "6.12", "7.3", "7.3-debug"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("; module built") and lines[1].endswith("; module not built")
    assert lines[2].endswith("; module fails: x.c:1:1: error: y")
    assert lines[3] == "7.3-debug: not fetched (make setup KERNELS=7.3-debug)"


def test_vm_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no host tool on it
    proc = subprocess.run(
        [sys.executable, "-m", "pyvfio", "vm", "check", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1
    assert doc["checked"] == len(tools.HOST_TOOLS) + len(tools.HOST_FILES) + len(tools.VENV_TOOLS)
    assert {"name": "busybox", "package": "busybox-static"} in doc["missing"]
    assert set(tools.HOST_TOOLS) <= {m["name"] for m in doc["missing"]}
    # what make setup left: nothing missing
    assert _json_of(["vm", "check", "--json"], capsys) == (0, {**doc, "missing": []})


def test_unbind_of_a_device_on_its_default_driver_does_nothing(
    two_devices: Path,
    fake_kernel: dict[str, str | None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It used to take nvme from its driver and probe the same driver again.
    fake_kernel["0000:00:0c.0"] = "nvme"
    root = ["--sysfs", str(two_devices)]
    assert main([*root, "bind", "0000:00:0c.0", "--driver", "nvme"]) == 0  # no override left
    Sysfs(two_devices)._restore(Sysfs(two_devices).device("0000:00:0c.0"))
    capsys.readouterr()

    def no_probe(self: Sysfs, *args: object) -> None:
        raise AssertionError(f"{args[0]} was probed again")

    monkeypatch.setattr(Sysfs, "_probe", no_probe)
    monkeypatch.setattr(Sysfs, "_reprobe", no_probe)
    assert main([*root, "unbind", "0000:00:0c.0"]) == 0
    out = capsys.readouterr().out
    said = "already on nvme, the driver the kernel picks for it; nothing to do"
    assert out == f"0000:00:0c.0: {said}\n"
    assert Sysfs(two_devices).device("0000:00:0c.0").driver == "nvme"
    unchanged = _json_of([*root, "unbind", "0000:00:0c.0", "--json"], capsys)[1]
    assert (unchanged["driver"], unchanged["previous_driver"]) == ("nvme", "nvme")
