# SPDX-License-Identifier: Apache-2.0
"""Capability walk over config space images."""

from pyvfio.config import walk_capabilities


def image(size: int = 256) -> bytearray:
    cfg = bytearray(size)
    cfg[6] = 0x10  # status: capability list present
    return cfg


def test_standard_and_extended_lists() -> None:
    cfg = image(4096)
    cfg[0x34] = 0x40
    cfg[0x40:0x42] = bytes([0x11, 0x80])  # MSI-X -> 0x80
    cfg[0x80:0x82] = bytes([0x10, 0x60])  # PCIe -> 0x60
    cfg[0x60:0x62] = bytes([0x01, 0x00])  # PM, end
    cfg[0x100:0x104] = (0x0001 | 1 << 16 | 0x148 << 20).to_bytes(4, "little")  # AER
    cfg[0x148:0x14C] = (0x0003 | 1 << 16).to_bytes(4, "little")  # DSN, end
    caps = walk_capabilities(bytes(cfg))
    assert [(c.name, c.offset) for c in caps] == [
        ("MSI-X", 0x40),
        ("PCI Express", 0x80),
        ("Power Management", 0x60),
        ("Advanced Error Reporting", 0x100),
        ("Device Serial Number", 0x148),
    ]
    assert caps[3].extended and caps[3].version == 1


def test_no_capability_bit_means_no_list() -> None:
    cfg = image()
    cfg[6] = 0
    cfg[0x34] = 0x40
    assert walk_capabilities(bytes(cfg)) == []


def test_loops_terminate() -> None:
    cfg = image(4096)
    cfg[0x34] = 0x40
    cfg[0x40:0x42] = bytes([0x05, 0x40])  # points at itself
    cfg[0x100:0x104] = (0x0001 | 0x100 << 20).to_bytes(4, "little")
    caps = walk_capabilities(bytes(cfg))
    assert [(c.id, c.extended) for c in caps] == [(0x05, False), (0x0001, True)]
