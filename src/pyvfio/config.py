# SPDX-License-Identifier: Apache-2.0
"""PCI configuration space: through the VFIO config region, and decoded from an
image of it (sysfs ``config``, which `pyvfio info` reads without opening anything).

Accesses go through pread/pwrite of exactly the requested width; vfio-pci
virtualises parts of config space (BARs, MSI/MSI-X, some command bits), so
what is read here is what the kernel lets userspace see.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _check, uapi
from ._check import CheckedRecord
from .errors import InvalidArgumentError, OutOfRangeError
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
class Capability(CheckedRecord):
    """One capability of a config space's lists (:meth:`ConfigSpace.capabilities`)."""

    #: Its ID (PCI_CAP_ID_*, or PCI_EXT_CAP_ID_* when extended).
    id: int
    #: Where it is in config space.
    offset: int
    #: An extended (PCI Express, at 0x100 and up) capability, or a standard one.
    extended: bool
    #: An extended capability's version (0 for a standard one).
    version: int = 0

    @property
    def name(self) -> str:
        """Its name (``MSI``, ``PCI Express``, ``Advanced Error Reporting`` ...),
        or ``cap 0xNN`` / ``ext-cap 0xNN`` for one without a name here."""
        names = EXT_CAP_NAMES if self.extended else CAP_NAMES
        return names.get(self.id, f"{'ext-' if self.extended else ''}cap {self.id:#x}")


class ConfigSpace:
    """Width-exact accessors and a capability walk over region 7.

    Offsets and values are ints (never bools); an offset must be aligned to
    the access width and inside config space, a value fit the width.
    """

    def __init__(self, region: Region) -> None:
        """Over ``region``, the device's config region (``dev.config`` makes one)."""
        _check.instance(
            region,
            Region,
            "region",
            "the config Region (dev.region(7))",
            device=None,
            operation="ConfigSpace()",
        )
        if region.index != uapi.VFIO_PCI_CONFIG_REGION_INDEX:
            raise InvalidArgumentError(
                f"region must be the config region (index {uapi.VFIO_PCI_CONFIG_REGION_INDEX}), "
                f"not region {region.index}",
                device=region._device.bdf,
                operation="ConfigSpace()",
                hint="use dev.config",
            )
        self._region = region

    @property
    def size(self) -> int:
        """Config space's size: 256 bytes, 4096 for PCI Express."""
        return self._region.size

    def _offset(self, offset: object, width: int, operation: str) -> int:
        bdf = self._region._device.bdf
        offset = _check.integer(offset, "offset", device=bdf, operation=operation, high=None)
        if offset % width:
            raise OutOfRangeError(
                f"offset {offset:#x} is not {width}-byte aligned", device=bdf, operation=operation
            )
        return offset

    def _read(self, offset: int, width: int) -> int:
        offset = self._offset(offset, width, f"config read{width * 8}")
        return int.from_bytes(self._region.read(offset, width), "little")

    def _write(self, offset: int, width: int, value: int) -> None:
        operation = f"config write{width * 8}"
        offset = self._offset(offset, width, operation)
        bdf = self._region._device.bdf
        value = _check.integer(value, "value", device=bdf, operation=operation, high=None)
        if not 0 <= value < 1 << (8 * width):
            raise OutOfRangeError(
                f"value {value:#x} does not fit in {width * 8} bits",
                device=bdf,
                operation=operation,
            )
        self._region.write(offset, value.to_bytes(width, "little"))

    def read8(self, offset: int) -> int:
        """The byte at ``offset``."""
        return self._read(offset, 1)

    def read16(self, offset: int) -> int:
        """The 16-bit word at ``offset`` (2-byte aligned), little-endian."""
        return self._read(offset, 2)

    def read32(self, offset: int) -> int:
        """The 32-bit word at ``offset`` (4-byte aligned), little-endian."""
        return self._read(offset, 4)

    def write8(self, offset: int, value: int) -> None:
        """Write the byte ``value`` at ``offset``."""
        self._write(offset, 1, value)

    def write16(self, offset: int, value: int) -> None:
        """Write the 16-bit ``value`` at ``offset`` (2-byte aligned), little-endian."""
        self._write(offset, 2, value)

    def write32(self, offset: int, value: int) -> None:
        """Write the 32-bit ``value`` at ``offset`` (4-byte aligned), little-endian."""
        self._write(offset, 4, value)

    def enable_bus_master(self, enable: bool = True) -> None:
        """Set (or clear) PCI_COMMAND bus mastering: needed for DMA and for MSI/MSI-X,
        which the device delivers as memory writes.  ``enable`` is True or False."""
        enable = _check.boolean(
            enable, "enable", device=self._region._device.bdf, operation="enable bus master"
        )
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


# --- Decoding a config space image (as sysfs `config` gives it) -------------

PCI_REVISION_ID = 0x08
PCI_HEADER_TYPE = 0x0E
PCI_ROM_ADDRESS = 0x30  # type 0 header
PCI_ROM_ADDRESS1 = 0x38  # type 1 (bridge) header
PCI_ROM_ADDRESS_ENABLE = 0x1
# What anyone may read of sysfs `config`; the rest needs CAP_SYS_ADMIN.
PCI_STD_HEADER_SIZE = 64

CAP_ID_PM = 0x01
CAP_ID_MSI = 0x05
CAP_ID_EXP = 0x10
CAP_ID_MSIX = 0x11

# PCI_COMMAND and PCI_STATUS bits (include/uapi/linux/pci_regs.h), by the
# name the JSON report gives them.
COMMAND_BITS = {
    "io": 0x001,
    "memory": 0x002,
    "bus_master": 0x004,
    "special_cycles": 0x008,
    "memory_write_invalidate": 0x010,
    "vga_snoop": 0x020,
    "parity_error_response": 0x040,
    "stepping": 0x080,
    "serr": 0x100,
    "fast_back_to_back": 0x200,
    "intx_disable": 0x400,
}
STATUS_BITS = {
    "interrupt": 0x0008,
    "capabilities": 0x0010,
    "66mhz": 0x0020,
    "udf": 0x0040,
    "fast_back_to_back": 0x0080,
    "master_data_parity_error": 0x0100,
    "signaled_target_abort": 0x0800,
    "received_target_abort": 0x1000,
    "received_master_abort": 0x2000,
    "signaled_system_error": 0x4000,
    "detected_parity_error": 0x8000,
}
DEVSEL_TIMING = ("fast", "medium", "slow", "reserved")

# PCI Express capability: device/port type (Flags bits 7:4) and link speeds
# (encodings of LnkCap/LnkSta, PCIe base spec 7.5.3.6).
EXP_TYPES = {
    0x0: "Endpoint",
    0x1: "Legacy Endpoint",
    0x4: "Root Port",
    0x5: "Upstream Port",
    0x6: "Downstream Port",
    0x7: "PCI-PCIe Bridge",
    0x8: "PCIe-PCI Bridge",
    0x9: "Root Complex Integrated Endpoint",
    0xA: "Root Complex Event Collector",
}
# Port types that have no link, hence no link registers worth reading.
_EXP_NO_LINK = {0x9, 0xA}
LINK_SPEEDS = {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"}


@dataclass(frozen=True)
class PowerManagement:
    """The PM capability: its version and the D-state PMCSR holds."""

    offset: int
    version: int
    state: str  # "D0" .. "D3hot", from PMCSR bits 1:0
    no_soft_reset: bool
    pme_enabled: bool


@dataclass(frozen=True)
class Msi:
    offset: int
    enabled: bool
    vectors_max: int  # Multiple Message Capable
    vectors_enabled: int  # Multiple Message Enable
    is_64bit: bool
    maskable: bool  # per-vector masking
    address: int
    data: int


@dataclass(frozen=True)
class Msix:
    offset: int
    enabled: bool
    function_masked: bool
    table_size: int
    table_bar: int
    table_offset: int
    pba_bar: int
    pba_offset: int


@dataclass(frozen=True)
class Link:
    """A link's speed (as lspci writes it: "8GT/s"; None for a reserved
    encoding) and width (lanes)."""

    speed: str | None
    width: int


@dataclass(frozen=True)
class Express:
    offset: int
    version: int
    port_type: str
    link_capability: Link | None  # None: the port has no link (integrated endpoint)
    link_status: Link | None


@dataclass(frozen=True)
class Rom:
    """The expansion ROM register: its address bits and decode-enable bit."""

    address: int
    enabled: bool


@dataclass(frozen=True)
class ConfigHeader:
    """What a config space image says, decoded; fields that need more bytes
    than the image has are None (``missing`` says what is not there)."""

    size: int
    vendor: int
    device: int
    command: int
    status: int
    revision: int
    class_code: int
    header_type: int
    subsystem_vendor: int | None  # type 0 header only; bridges use a capability
    subsystem_device: int | None
    rom: Rom | None
    capabilities: tuple[Capability, ...] | None
    power: PowerManagement | None
    msi: Msi | None
    msix: Msix | None
    express: Express | None
    missing: str | None

    def command_bits(self) -> dict[str, bool]:
        return {name: bool(self.command & bit) for name, bit in COMMAND_BITS.items()}

    def status_bits(self) -> dict[str, bool]:
        return {name: bool(self.status & bit) for name, bit in STATUS_BITS.items()}

    @property
    def devsel(self) -> str:
        return DEVSEL_TIMING[(self.status >> 9) & 3]


def _u16(config: bytes, offset: int) -> int:
    return int.from_bytes(config[offset : offset + 2], "little")


def _u32(config: bytes, offset: int) -> int:
    return int.from_bytes(config[offset : offset + 4], "little")


def _fits(config: bytes, offset: int, size: int) -> bool:
    return offset + size <= len(config)


def _power(config: bytes, pos: int) -> PowerManagement | None:
    if not _fits(config, pos, 8):
        return None
    pmc, pmcsr = _u16(config, pos + 2), _u16(config, pos + 4)
    return PowerManagement(
        offset=pos,
        version=pmc & 0x7,
        state=("D0", "D1", "D2", "D3hot")[pmcsr & 0x3],
        no_soft_reset=bool(pmcsr & 0x8),
        pme_enabled=bool(pmcsr & 0x100),
    )


def _msi(config: bytes, pos: int) -> Msi | None:
    if not _fits(config, pos, 10):
        return None
    control = _u16(config, pos + 2)
    is_64bit = bool(control & 0x80)
    if is_64bit:
        address = _u32(config, pos + 4) | _u32(config, pos + 8) << 32
        data_at = pos + 12
    else:
        address = _u32(config, pos + 4)
        data_at = pos + 8
    return Msi(
        offset=pos,
        enabled=bool(control & 0x1),
        vectors_max=1 << ((control >> 1) & 0x7),
        vectors_enabled=1 << ((control >> 4) & 0x7),
        is_64bit=is_64bit,
        maskable=bool(control & 0x100),
        address=address,
        data=_u16(config, data_at) if _fits(config, data_at, 2) else 0,
    )


def _msix(config: bytes, pos: int) -> Msix | None:
    if not _fits(config, pos, 12):
        return None
    control, table, pba = _u16(config, pos + 2), _u32(config, pos + 4), _u32(config, pos + 8)
    return Msix(
        offset=pos,
        enabled=bool(control & 0x8000),
        function_masked=bool(control & 0x4000),
        table_size=(control & 0x7FF) + 1,
        table_bar=table & 0x7,
        table_offset=table & ~0x7,
        pba_bar=pba & 0x7,
        pba_offset=pba & ~0x7,
    )


def _link(register: int, speed_bits: int) -> Link:
    return Link(speed=LINK_SPEEDS.get(speed_bits), width=(register >> 4) & 0x3F)


def _express(config: bytes, pos: int) -> Express | None:
    if not _fits(config, pos, 4):
        return None
    flags = _u16(config, pos + 2)
    port = (flags >> 4) & 0xF
    lnkcap: Link | None = None
    lnksta: Link | None = None
    if port not in _EXP_NO_LINK and _fits(config, pos + 0x14, 2):
        cap = _u32(config, pos + 0x0C)
        sta = _u16(config, pos + 0x12)
        lnkcap = _link(cap, cap & 0xF)
        lnksta = _link(sta, sta & 0xF)
    return Express(
        offset=pos,
        version=flags & 0xF,
        port_type=EXP_TYPES.get(port, f"type {port:#x}"),
        link_capability=lnkcap,
        link_status=lnksta,
    )


def decode_config(config: bytes) -> ConfigHeader:
    """Decode a config space image: the header, and, where the image reaches
    them, the capabilities with the state of PM, MSI, MSI-X and PCI Express.

    Non-root readers of sysfs ``config`` get only the first 64 bytes: then the
    capabilities are None and ``missing`` says so, rather than failing."""
    if len(config) < PCI_STD_HEADER_SIZE:
        raise InvalidArgumentError(
            f"a config space image has at least {PCI_STD_HEADER_SIZE} bytes, not {len(config)}",
            operation="decode config space",
        )
    header_type = config[PCI_HEADER_TYPE] & 0x7F
    rom_at = {0: PCI_ROM_ADDRESS, 1: PCI_ROM_ADDRESS1}.get(header_type)
    rom = None
    if rom_at is not None:
        register = _u32(config, rom_at)
        rom = Rom(address=register & ~0x7FF, enabled=bool(register & PCI_ROM_ADDRESS_ENABLE))
    capabilities = None
    missing = None
    power = msi = msix = express = None
    if len(config) > PCI_STD_HEADER_SIZE:
        capabilities = tuple(walk_capabilities(config))
        for cap in capabilities:
            if cap.extended:
                continue
            if cap.id == CAP_ID_PM and power is None:
                power = _power(config, cap.offset)
            elif cap.id == CAP_ID_MSI and msi is None:
                msi = _msi(config, cap.offset)
            elif cap.id == CAP_ID_MSIX and msix is None:
                msix = _msix(config, cap.offset)
            elif cap.id == CAP_ID_EXP and express is None:
                express = _express(config, cap.offset)
    elif _u16(config, PCI_STATUS) & PCI_STATUS_CAP_LIST:
        missing = (
            f"capabilities (MSI, MSI-X, power management, PCI Express): only the first "
            f"{len(config)} bytes of config space are readable without root"
        )
    return ConfigHeader(
        size=len(config),
        vendor=_u16(config, 0),
        device=_u16(config, 2),
        command=_u16(config, PCI_COMMAND),
        status=_u16(config, PCI_STATUS),
        revision=config[PCI_REVISION_ID],
        class_code=_u32(config, PCI_REVISION_ID) >> 8,
        header_type=header_type,
        subsystem_vendor=_u16(config, 0x2C) if header_type == 0 else None,
        subsystem_device=_u16(config, 0x2E) if header_type == 0 else None,
        rom=rom,
        capabilities=capabilities,
        power=power,
        msi=msi,
        msix=msix,
        express=express,
        missing=missing,
    )
