# SPDX-License-Identifier: Apache-2.0
"""Names from pci.ids: the file's format, its absence, and lspci's conventions."""

from __future__ import annotations

from pathlib import Path

from pyvfio.pciids import PCI_IDS_PATHS, PciIds

SAMPLE = """\
# a comment line
1af4  Red Hat, Inc.
\t1041  Virtio 1.0 network device
\t1110  Inter-VM shared memory
\t\t1af4 1100  QEMU Virtual Machine
1b36  Red Hat, Inc.
\t0010  QEMU NVM Express Controller
ffff  Illegal Vendor ID

C 00  Unclassified device
\t00  Non-VGA unclassified device
C 01  Mass storage controller
\t08  Non-Volatile memory controller
\t\t01  NVMHCI
\t\t02  NVM Express
L 0009  a later section that is not a vendor
\t0001  not a device
"""


def test_names_of_each_kind() -> None:
    ids = PciIds(SAMPLE)
    assert ids.vendor(0x1B36) == "Red Hat, Inc."
    assert ids.device(0x1B36, 0x0010) == "QEMU NVM Express Controller"
    assert ids.subsystem(0x1AF4, 0x1110, 0x1AF4, 0x1100) == "QEMU Virtual Machine"
    assert ids.class_name(0x010802) == "Non-Volatile memory controller"
    assert ids.prog_if(0x010802) == "NVM Express"


def test_what_is_not_listed_has_no_name() -> None:
    ids = PciIds(SAMPLE)
    assert ids.vendor(0x1234) is None and ids.device(0x1234, 0x11E8) is None
    assert ids.device(0x1B36, 0x0011) is None
    # a subsystem listed under another device is not this one's
    assert ids.subsystem(0x1B36, 0x0010, 0x1AF4, 0x1100) is None
    assert ids.prog_if(0x010803) is None
    # sections after the classes are neither vendors nor devices
    assert ids.vendor(0x0009) is None and ids.device(0x0009, 0x0001) is None


def test_lspci_conventions() -> None:
    ids = PciIds(SAMPLE)
    # a subsystem that repeats the device's own IDs is the device
    assert ids.subsystem(0x1AF4, 0x1041, 0x1AF4, 0x1041) == "Virtio 1.0 network device"
    # an unlisted subclass falls back to its base class
    assert ids.class_name(0x00FF00) == "Unclassified device"
    assert ids.class_name(0x120000) is None


def test_the_first_file_found_is_used(tmp_path: Path) -> None:
    (tmp_path / "second.ids").write_text("1234  Second\n")
    (tmp_path / "first.ids").write_text("1234  First\n")
    paths = [tmp_path / "absent.ids", tmp_path / "first.ids", tmp_path / "second.ids"]
    ids = PciIds.load(paths)
    assert ids.path == tmp_path / "first.ids" and ids.vendor(0x1234) == "First"


def test_no_database_means_no_names_and_no_error(tmp_path: Path) -> None:
    ids = PciIds.load([tmp_path / "absent.ids"])
    assert ids.path is None and ids.vendor(0x1B36) is None and ids.class_name(0x010802) is None


def test_the_installed_database_parses() -> None:
    # pciutils (tools/setup.sh) brings Debian's pci.ids along.
    ids = PciIds.load()
    assert ids.path in PCI_IDS_PATHS
    assert ids.device(0x8086, 0x29C0) == "82G33/G31/P35/P31 Express DRAM Controller"
