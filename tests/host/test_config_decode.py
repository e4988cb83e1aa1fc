# SPDX-License-Identifier: Apache-2.0
"""Config space decoding (what `pyvfio info` shows), on config space captured
from the test VM's devices as root (tests/host/data/config/*.bin), checked
against lspci reading the same bytes (`lspci -F`) and against known values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from guest import lspci

from pyvfio.config import ConfigHeader, Link, decode_config
from pyvfio.errors import InvalidArgumentError

DATA = Path(__file__).parent / "data" / "config"
CAPTURED = sorted(p.stem for p in DATA.glob("*.bin"))


def captured(name: str) -> bytes:
    return (DATA / f"{name}.bin").read_bytes()


def lspci_of(config: bytes, tmp_path: Path) -> dict[str, Any]:
    """lspci -vv over ``config``, fed as a dump file (the format `lspci -x` writes)."""
    lines = ["00:04.0 captured"]
    for offset in range(0, len(config), 16):
        row = " ".join(f"{b:02x}" for b in config[offset : offset + 16])
        lines.append(f"{offset:02x}: {row}")
    dump = tmp_path / "dump"
    dump.write_text("\n".join(lines) + "\n")
    return lspci.parse_vv(lspci.run("-F", str(dump), "-vv", "-nn"))


def as_lspci(header: ConfigHeader) -> dict[str, Any]:
    """The decoded header in the shape lspci.parse_vv gives."""

    def link(value: Link | None) -> dict[str, Any] | None:
        return None if value is None else {"speed": value.speed, "width": value.width}

    msi, msix, exp = header.msi, header.msix, header.express
    return {
        "command_bits": header.command_bits(),
        "status_bits": header.status_bits(),
        "devsel": header.devsel,
        "msi": None
        if msi is None
        else {
            "enabled": msi.enabled,
            "vectors_enabled": msi.vectors_enabled,
            "vectors_max": msi.vectors_max,
            "maskable": msi.maskable,
            "64bit": msi.is_64bit,
            "address": msi.address,
            "data": msi.data,
        },
        "msix": None
        if msix is None
        else {
            "enabled": msix.enabled,
            "table_size": msix.table_size,
            "masked": msix.function_masked,
            "table_bar": msix.table_bar,
            "table_offset": msix.table_offset,
            "pba_bar": msix.pba_bar,
            "pba_offset": msix.pba_offset,
        },
        # lspci names PMCSR state 3 "D3"
        "pm_state": None if header.power is None else header.power.state.replace("hot", ""),
        "express_type": None if exp is None else exp.port_type,
        "link_capability": None if exp is None else link(exp.link_capability),
        "link_status": None if exp is None else link(exp.link_status),
        # from a dump lspci has no sysfs resource: address from the register, no size
        "rom": None
        if header.rom is None or not header.rom.address
        else {"address": header.rom.address, "size": None, "enabled": header.rom.enabled},
    }


def lspci_fields(parsed: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parsed.items() if not k.startswith("prog_if")}


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_devices_decode_as_lspci_reads_them(name: str, tmp_path: Path) -> None:
    config = captured(name)
    assert lspci_fields(lspci_of(config, tmp_path)) == as_lspci(decode_config(config))


def test_captured_set_covers_the_decoders() -> None:
    # Each decoder meets a real capability of its kind in the captured images.
    headers = {name: decode_config(captured(name)) for name in CAPTURED}
    assert {"edu", "ivshmem", "nvme", "q35-host-bridge"} <= headers.keys()
    assert any(h.msi for h in headers.values())
    assert any(h.msix for h in headers.values())
    assert any(h.power for h in headers.values())
    assert any(h.express for h in headers.values())


def test_nvme_values() -> None:
    header = decode_config(captured("nvme"))
    assert (header.vendor, header.device, header.revision) == (0x1B36, 0x0010, 2)
    assert header.class_code == 0x010802 and header.header_type == 0
    assert (header.subsystem_vendor, header.subsystem_device) == (0x1AF4, 0x1100)
    assert header.size == 4096 and header.missing is None
    assert header.command_bits()["memory"] and header.command_bits()["bus_master"]
    assert header.msix is not None and header.msix.offset == 0x40
    assert (header.msix.enabled, header.msix.function_masked, header.msix.table_size) == (
        True,
        False,
        65,
    )
    assert (header.msix.table_bar, header.msix.table_offset) == (0, 0x2000)
    assert (header.msix.pba_bar, header.msix.pba_offset) == (0, 0x3000)
    assert header.express is not None
    assert header.express.port_type == "Root Complex Integrated Endpoint"
    assert header.express.version == 2 and header.express.link_capability is None
    assert header.power is not None and (header.power.version, header.power.state) == (3, "D0")
    assert header.msi is None and header.rom is not None and header.rom.address == 0


def test_edu_msi_values() -> None:
    header = decode_config(captured("edu"))
    assert header.msi is not None and header.msi.offset == 0x40
    assert (header.msi.enabled, header.msi.vectors_enabled, header.msi.vectors_max) == (
        False,
        1,
        1,
    )
    assert header.msi.is_64bit and not header.msi.maskable
    assert header.revision == 0x10 and header.msix is None and header.power is None


def test_a_device_with_no_capabilities() -> None:
    header = decode_config(captured("ivshmem"))
    assert not header.status_bits()["capabilities"]
    assert header.capabilities == () and header.missing is None


def edited_nvme() -> bytes:
    """nvme, turned into a PCIe endpoint behind a link (8GT/s x4 capable,
    trained at 2.5GT/s x1), with a disabled ROM, MSI-X masked and off, in D3hot:
    the states the VM's devices do not show."""
    cfg = bytearray(captured("nvme"))
    exp = 0x80
    cfg[exp + 2] &= 0x0F  # device/port type 0: Endpoint
    cfg[exp + 0x0C : exp + 0x10] = (4 << 4 | 3).to_bytes(4, "little")  # LnkCap
    cfg[exp + 0x12 : exp + 0x14] = (1 << 4 | 1).to_bytes(2, "little")  # LnkSta
    cfg[0x30:0x34] = (0xFEB80000).to_bytes(4, "little")  # ROM, enable bit clear
    cfg[0x42:0x44] = (0x4000 | 64).to_bytes(2, "little")  # MSI-X: masked, off, 65
    cfg[0x64] |= 0x3  # PMCSR: D3hot
    return bytes(cfg)


def test_link_rom_and_states_decode_as_lspci_reads_them(tmp_path: Path) -> None:
    config = edited_nvme()
    header = decode_config(config)
    assert header.express is not None and header.express.port_type == "Endpoint"
    assert header.express.link_capability == Link("8GT/s", 4)
    assert header.express.link_status == Link("2.5GT/s", 1)
    assert header.rom is not None and (header.rom.address, header.rom.enabled) == (
        0xFEB80000,
        False,
    )
    assert header.msix is not None and header.msix.function_masked and not header.msix.enabled
    assert header.power is not None and header.power.state == "D3hot"
    assert lspci_fields(lspci_of(config, tmp_path)) == as_lspci(header)


def test_unprivileged_64_bytes_say_what_is_missing() -> None:
    # Non-root readers of sysfs config get the standard header only.
    header = decode_config(captured("nvme")[:64])
    assert header.capabilities is None and header.msix is None and header.power is None
    assert header.missing is not None and "without root" in header.missing
    assert (header.vendor, header.class_code, header.revision) == (0x1B36, 0x010802, 2)
    # a device without a capability list misses nothing worth saying
    assert decode_config(captured("ivshmem")[:64]).missing is None


def test_a_truncated_image_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 64 bytes"):
        decode_config(b"\xff" * 16)
