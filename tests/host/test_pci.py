# SPDX-License-Identifier: Apache-2.0
"""sysfs parsing: addresses, IDs, groups, drivers and BARs."""

import os
import threading
import time
from pathlib import Path

import pytest

from pyvfio import (
    BusyError,
    DeviceNotFoundError,
    InvalidArgumentError,
    Sysfs,
    VfioError,
    normalize_bdf,
    pci,
)
from pyvfio.errors import ArgumentTypeError

from .conftest import FakeDevice

MEM64_PREFETCH = 0x0014220C  # flags the kernel reports for ivshmem's BAR2
MEM32 = 0x00040200


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("00:03.0", "0000:00:03.0"),
        ("0000:0A:1f.7", "0000:0a:1f.7"),
        (" 0001:00:00.0\n", "0001:00:00.0"),
    ],
)
def test_normalize_bdf(text: str, full: str) -> None:
    assert normalize_bdf(text) == full


@pytest.mark.parametrize("bad", ["", "0:3.0", "00:03", "00:20.0", "00:03.8", "zz:03.0"])
def test_bad_bdf_is_refused_with_hint(bad: str) -> None:
    # A bad value (issue 24): InvalidArgumentError, a ValueError, no longer
    # DeviceNotFoundError: nothing was looked for.
    with pytest.raises(InvalidArgumentError, match=r"bdf .* is not a PCI address.*pyvfio list"):
        normalize_bdf(bad)


@pytest.mark.parametrize("bad", [None, 3, b"00:03.0"])
def test_a_bdf_of_another_type_is_a_type_error(bad: object) -> None:
    # Device.open(None) once gave a raw AttributeError; now a TypeError (issue 24).
    with pytest.raises(ArgumentTypeError, match=r"bdf must be a PCI address \(str\).*pyvfio list"):
        normalize_bdf(bad)  # type: ignore[arg-type]


def test_device_snapshot(sysfs_root: Path, fake_device: FakeDevice) -> None:
    fake_device(
        "0000:00:0b.0",
        0x1AF4,
        0x1110,
        0x050000,
        group=11,
        bars={0: (0xFEA00000, 256, MEM32), 2: (0xFE800000, 4 << 20, MEM64_PREFETCH)},
    )
    dev = Sysfs(sysfs_root).device("00:0b.0")
    assert (dev.bdf, dev.id, dev.class_code, dev.iommu_group) == (
        "0000:00:0b.0",
        "1af4:1110",
        0x050000,
        11,
    )
    assert dev.driver is None and dev.driver_override is None
    assert [(b.index, b.size, b.prefetchable, b.is_64bit) for b in dev.bars] == [
        (0, 256, False, False),
        (2, 4 << 20, True, True),
    ]


def test_find_by_id_and_driver(sysfs_root: Path, fake_device: FakeDevice) -> None:
    fake_device("0000:00:0c.0", 0x1B36, 0x0010, 0x010802, driver="nvme", group=12)
    fake_device("0000:00:0a.0", 0x1234, 0x11E8, 0x00FF00, driver="vfio-pci", group=10)
    sysfs = Sysfs(sysfs_root)
    assert [d.bdf for d in sysfs.devices()] == ["0000:00:0a.0", "0000:00:0c.0"]
    (nvme,) = sysfs.find(0x1B36, 0x0010)
    assert nvme.driver == "nvme"
    assert sysfs.group_members(12) == ["0000:00:0c.0"]


def test_missing_device_names_it(sysfs_root: Path) -> None:
    with pytest.raises(DeviceNotFoundError, match=r"0000:00:05\.0.*no such PCI device"):
        Sysfs(sysfs_root).device("00:05.0")


def test_vfio_cdev_only_where_the_kernel_made_a_char_device(
    sysfs_root: Path, fake_device: FakeDevice
) -> None:
    dev = fake_device("0000:00:0b.0", 0x1234, 0x11E8, 0x00FF00, driver="vfio-pci", group=10)
    sysfs = Sysfs(sysfs_root)
    assert sysfs.vfio_cdev("0000:00:0b.0") is None  # not bound to VFIO yet
    (dev / "vfio-dev" / "vfio0").mkdir(parents=True)
    assert sysfs.vfio_cdev("0000:00:0b.0") is None  # 6.1-6.5, or no VFIO_DEVICE_CDEV
    (dev / "vfio-dev" / "vfio0" / "dev").write_text("238:0\n")
    assert sysfs.vfio_cdev("0000:00:0b.0") == "vfio0"


def test_find_by_class(sysfs_root: Path, fake_device: FakeDevice) -> None:
    fake_device("0000:00:0a.0", 0x1234, 0x11E8, 0x00FF00)
    fake_device("0000:00:0c.0", 0x1B36, 0x0010, 0x010802)
    fake_device("0000:00:0d.0", 0x8086, 0x2922, 0x010601)
    sysfs = Sysfs(sysfs_root)
    assert [d.bdf for d in sysfs.find_class(0x010800)] == ["0000:00:0c.0"]
    assert [d.bdf for d in sysfs.find_class(0x010000, 0xFF0000)] == [
        "0000:00:0c.0",
        "0000:00:0d.0",
    ]
    assert sysfs.find_class(0x020000) == []


def _held_device(sysfs_root: Path, fake_device: FakeDevice) -> Path:
    """A device on vfio-pci whose unbind blocks until the test lets it go:
    ``unbind`` is a FIFO, whose writer waits for a reader as the kernel's
    unbind waits for the device's holders."""
    dev = fake_device("0000:00:0a.0", 0x1234, 0x11E8, 0x00FF00, driver="vfio-pci", group=10)
    (dev / "driver_override").write_text("vfio-pci\n")
    os.mkfifo(sysfs_root / "drivers" / "vfio-pci" / "unbind")
    (sysfs_root / "drivers_probe").write_text("")
    return dev


def _let_go(sysfs_root: Path) -> str:
    with open(sysfs_root / "drivers" / "vfio-pci" / "unbind") as fifo:
        return fifo.read()


def test_a_forced_unbind_says_whom_it_waits_for_and_gives_up_at_its_timeout(
    sysfs_root: Path, fake_device: FakeDevice
) -> None:
    _held_device(sysfs_root, fake_device)
    said: list[str] = []
    start = time.monotonic()
    with pytest.raises(BusyError) as err:
        Sysfs(sysfs_root).unbind("0000:00:0a.0", force=True, timeout=1.5, on_wait=said.append)
    assert 1.5 <= time.monotonic() - start < 10
    assert said == [
        "0000:00:0a.0: waiting 1 s for its holder (no process has its group or cdev "
        "open: a mapping or a passed fd) to close it"
    ]
    message = str(err.value)
    assert "still waits for its holder" in message and "after 1.5 s" in message
    writer = pci._left_waiting[-1]
    assert f"goes on in process {writer.pid} " in message
    assert Sysfs(sysfs_root).device("0000:00:0a.0").driver_override is None  # cleared
    # The holder lets go: the unbind the writer was left in ends, then the probe.
    assert _let_go(sysfs_root) == "0000:00:0a.0"
    assert writer.wait(timeout=10) == 0
    assert (sysfs_root / "drivers_probe").read_text() == "0000:00:0a.0"


def test_a_forced_unbind_without_timeout_waits_for_the_holder(
    sysfs_root: Path, fake_device: FakeDevice
) -> None:
    _held_device(sysfs_root, fake_device)
    holder = threading.Timer(1.2, _let_go, (sysfs_root,))
    holder.start()
    said: list[str] = []
    Sysfs(sysfs_root).unbind("0000:00:0a.0", force=True, on_wait=said.append)
    holder.join()
    assert len(said) == 1 and said[0].startswith("0000:00:0a.0: waiting 1 s for its holder")
    assert (sysfs_root / "drivers_probe").read_text() == "0000:00:0a.0"


def test_a_failed_write_names_the_file_and_the_reason(
    sysfs_root: Path, fake_device: FakeDevice
) -> None:
    dev = fake_device("0000:00:0a.0", 0x1234, 0x11E8, 0x00FF00, driver="vfio-pci", group=10)
    (dev / "driver_override").write_text("vfio-pci\n")
    (sysfs_root / "drivers_probe").mkdir()  # no file to write
    with pytest.raises(VfioError, match="drivers_probe failed: ") as err:
        Sysfs(sysfs_root).unbind("0000:00:0a.0")
    assert err.value.operation == "unbind (drivers_probe)"


def test_reset_methods_read_and_set_as_sysfs_shows_them(
    sysfs_root: Path, fake_device: FakeDevice
) -> None:
    dev = fake_device("0000:00:04.0", 0x1B36, 0x0010, 0x010802)
    sysfs = Sysfs(sysfs_root)
    assert sysfs.reset_methods("0000:00:04.0") == ()  # no attribute: none offered
    (dev / "reset_method").write_text("flr bus\n")
    assert sysfs.reset_methods("00:04.0") == ("flr", "bus")
    sysfs.set_reset_methods("00:04.0", ["bus"])
    assert (dev / "reset_method").read_text() == "bus"


@pytest.mark.parametrize(
    ("methods", "error"),
    [
        ("flr", TypeError),
        (None, TypeError),
        ([1], TypeError),
        ([], ValueError),
        (["flr bus"], ValueError),
        ([""], ValueError),
    ],
)
def test_bad_reset_methods_are_refused_before_writing(
    sysfs_root: Path, fake_device: FakeDevice, methods: object, error: type
) -> None:
    dev = fake_device("0000:00:04.0", 0x1B36, 0x0010, 0x010802)
    (dev / "reset_method").write_text("flr\n")
    with pytest.raises(error, match="methods"):
        Sysfs(sysfs_root).set_reset_methods("00:04.0", methods)  # type: ignore[arg-type]
    assert (dev / "reset_method").read_text() == "flr\n"
