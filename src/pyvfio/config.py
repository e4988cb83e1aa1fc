# SPDX-License-Identifier: Apache-2.0
"""PCI configuration space through the VFIO config region, and its capabilities.

Accesses go through pread/pwrite of exactly the requested width; vfio-pci
virtualises parts of config space (BARs, MSI/MSI-X, some command bits), so
what is read here is what the kernel lets userspace see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import uapi
from .errors import OutOfRangeError

if TYPE_CHECKING:
    from .region import Region

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4
PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34
PCI_CFG_SPACE_SIZE = 256
PCI_EXT_CAP_START = 0x100

CAP_NAMES = {
    0x01: "Power Management",
    0x05: "MSI",
    0x09: "Vendor Specific",
    0x10: "PCI Express",
    0x11: "MSI-X",
    0x12: "SATA",
    0x13: "Advanced Features",
}
EXT_CAP_NAMES = {
    0x0001: "Advanced Error Reporting",
    0x0003: "Device Serial Number",
    0x000B: "Vendor Specific",
    0x000D: "ACS",
    0x000E: "ARI",
    0x0010: "SR-IOV",
    0x0015: "Resizable BAR",
    0x0018: "LTR",
    0x001E: "L1 PM Substates",
}


@dataclass(frozen=True)
class Capability:
    id: int
    offset: int
    extended: bool
    version: int = 0

    @property
    def name(self) -> str:
        names = EXT_CAP_NAMES if self.extended else CAP_NAMES
        return names.get(self.id, f"{'ext-' if self.extended else ''}cap {self.id:#x}")


class ConfigSpace:
    """Width-exact accessors and a capability walk over region 7."""

    def __init__(self, region: Region) -> None:
        if region.index != uapi.VFIO_PCI_CONFIG_REGION_INDEX:
            raise ValueError("ConfigSpace needs the config region (index 7)")
        self._region = region

    @property
    def size(self) -> int:
        return self._region.size

    def _read(self, offset: int, width: int) -> int:
        if offset % width:
            raise OutOfRangeError(
                f"offset {offset:#x} is not {width}-byte aligned",
                operation=f"config read{width * 8}",
            )
        return int.from_bytes(self._region.read(offset, width), "little")

    def _write(self, offset: int, width: int, value: int) -> None:
        if offset % width:
            raise OutOfRangeError(
                f"offset {offset:#x} is not {width}-byte aligned",
                operation=f"config write{width * 8}",
            )
        if not 0 <= value < 1 << (8 * width):
            raise OutOfRangeError(
                f"value {value:#x} does not fit in {width * 8} bits",
                operation=f"config write{width * 8}",
            )
        self._region.write(offset, value.to_bytes(width, "little"))

    def read8(self, offset: int) -> int:
        return self._read(offset, 1)

    def read16(self, offset: int) -> int:
        return self._read(offset, 2)

    def read32(self, offset: int) -> int:
        return self._read(offset, 4)

    def write8(self, offset: int, value: int) -> None:
        self._write(offset, 1, value)

    def write16(self, offset: int, value: int) -> None:
        self._write(offset, 2, value)

    def write32(self, offset: int, value: int) -> None:
        self._write(offset, 4, value)

    def enable_bus_master(self, enable: bool = True) -> None:
        """Set (or clear) PCI_COMMAND bus mastering: needed for DMA and for MSI/MSI-X,
        which the device delivers as memory writes."""
        command = self.read16(PCI_COMMAND)
        wanted = command | PCI_COMMAND_MASTER if enable else command & ~PCI_COMMAND_MASTER
        if wanted != command:
            self.write16(PCI_COMMAND, wanted)

    def capabilities(self) -> list[Capability]:
        """Standard then extended capabilities, in list order; loops are cut."""
        return walk_capabilities(self._region.read(0, min(self.size, 4096)))


def walk_capabilities(config: bytes) -> list[Capability]:
    """Parse the capability lists out of a config space image."""
    caps: list[Capability] = []
    if len(config) >= 0x40 and int.from_bytes(config[6:8], "little") & PCI_STATUS_CAP_LIST:
        seen: set[int] = set()
        pos = config[PCI_CAPABILITY_LIST] & ~3
        while pos >= 0x40 and pos + 2 <= len(config) and pos not in seen:
            seen.add(pos)
            caps.append(Capability(id=config[pos], offset=pos, extended=False))
            pos = config[pos + 1] & ~3
    if len(config) > PCI_CFG_SPACE_SIZE:
        seen = set()
        pos = PCI_EXT_CAP_START
        while pos >= PCI_EXT_CAP_START and pos + 4 <= len(config) and pos not in seen:
            seen.add(pos)
            header = int.from_bytes(config[pos : pos + 4], "little")
            if header in (0, 0xFFFFFFFF):
                break
            caps.append(
                Capability(
                    id=header & 0xFFFF, offset=pos, extended=True, version=(header >> 16) & 0xF
                )
            )
            pos = (header >> 20) & ~3
    return caps
