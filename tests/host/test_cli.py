# SPDX-License-Identifier: Apache-2.0
"""The CLI on a fake sysfs: listing, JSON schema, filters, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyvfio.cli import main

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
