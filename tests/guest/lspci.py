# SPDX-License-Identifier: Apache-2.0
"""lspci's text, parsed into what `pyvfio info --json` reports, so the two can
be compared field by field (the guest tests on live devices; the host tests on
captured config space through `lspci -F`)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

LSPCI = "/usr/bin/lspci"
# Names from pci.ids only: udev's hwdb, which lspci also asks, names some
# subsystems after their device where pci.ids has no entry.
NO_HWDB = ["-O", "hwdb.disable=1"]

# lspci's label of each command and status bit -> the key of info's JSON
CONTROL = {
    "I/O": "io",
    "Mem": "memory",
    "BusMaster": "bus_master",
    "SpecCycle": "special_cycles",
    "MemWINV": "memory_write_invalidate",
    "VGASnoop": "vga_snoop",
    "ParErr": "parity_error_response",
    "Stepping": "stepping",
    "SERR": "serr",
    "FastB2B": "fast_back_to_back",
    "DisINTx": "intx_disable",
}
STATUS = {
    "Cap": "capabilities",
    "66MHz": "66mhz",
    "UDF": "udf",
    "FastB2B": "fast_back_to_back",
    "ParErr": "master_data_parity_error",
    ">TAbort": "signaled_target_abort",
    "<TAbort": "received_target_abort",
    "<MAbort": "received_master_abort",
    ">SERR": "signaled_system_error",
    "<PERR": "detected_parity_error",
    "INTx": "interrupt",
}


def run(*args: str) -> str:
    proc = subprocess.run(
        [LSPCI, *NO_HWDB, *args], capture_output=True, text=True, check=True, timeout=60
    )
    return proc.stdout


def _bits(line: str, labels: dict[str, str]) -> dict[str, bool]:
    found = dict(re.findall(r"(\S+?)([+-])(?=\s|$)", line))
    return {key: found[label] == "+" for label, key in labels.items()}


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    assert m, text
    return int(m.group(1)) * units[m.group(2)]


def parse_vv(text: str) -> dict[str, Any]:
    """`lspci -vv -nn -s BDF` of one device, as the fields info reports."""
    lines = text.splitlines()
    title = lines[0]
    out: dict[str, Any] = {"msi": None, "msix": None, "pm_state": None, "rom": None}
    out["express_type"] = out["link_capability"] = out["link_status"] = None
    prog_if = re.search(r"\(prog-if ([0-9a-f]{2})(?: \[(.*?)\])?\)", title)
    out["prog_if"] = prog_if.group(1) if prog_if else "00"
    out["prog_if_name"] = prog_if.group(2) if prog_if else None
    cap = ""
    for line in lines[1:]:
        stripped = line.strip()
        if line.startswith("\tCapabilities:"):
            cap = stripped
        elif not line.startswith("\t\t"):
            cap = ""
        if line.startswith("\tControl:"):
            out["command_bits"] = _bits(stripped, CONTROL)
        elif line.startswith("\tStatus:"):
            out["status_bits"] = _bits(stripped, STATUS)
            out["devsel"] = re.search(r"DEVSEL=(\w+)", stripped).group(1)  # type: ignore[union-attr]
        elif line.startswith("\tExpansion ROM at "):
            m = re.match(r"Expansion ROM at (\S+)", stripped)
            size = re.search(r"\[size=(\w+)\]", stripped)
            out["rom"] = {
                "address": int(m.group(1), 16),  # type: ignore[union-attr]
                "size": _size(size.group(1)) if size else None,
                "enabled": "[disabled]" not in stripped,
            }
        elif m := re.match(
            r"Capabilities: \[\w+\] MSI: Enable([+-]) Count=(\d+)/(\d+) "
            r"Maskable([+-]) 64bit([+-])",
            stripped,
        ):
            out["msi"] = {
                "enabled": m.group(1) == "+",
                "vectors_enabled": int(m.group(2)),
                "vectors_max": int(m.group(3)),
                "maskable": m.group(4) == "+",
                "64bit": m.group(5) == "+",
            }
        elif (
            cap
            and "MSI:" in cap
            and (m := re.match(r"Address: ([0-9a-f]+)  Data: ([0-9a-f]+)", stripped))
        ):
            out["msi"]["address"] = int(m.group(1), 16)
            out["msi"]["data"] = int(m.group(2), 16)
        elif m := re.match(
            r"Capabilities: \[\w+\] MSI-X: Enable([+-]) Count=(\d+) Masked([+-])", stripped
        ):
            out["msix"] = {
                "enabled": m.group(1) == "+",
                "table_size": int(m.group(2)),
                "masked": m.group(3) == "+",
            }
        elif (
            cap
            and "MSI-X" in cap
            and (m := re.match(r"(Vector table|PBA): BAR=(\d) offset=([0-9a-f]+)", stripped))
        ):
            which = "table" if m.group(1) == "Vector table" else "pba"
            out["msix"][f"{which}_bar"] = int(m.group(2))
            out["msix"][f"{which}_offset"] = int(m.group(3), 16)
        elif m := re.match(
            r"Capabilities: \[\w+\] Express \(v\d\) (.*?)(?:, (?:MSI|IntMsgNum) \w+)?$", stripped
        ):
            out["express_type"] = m.group(1)
        elif cap and "Power Management" in cap and (m := re.match(r"Status: (D\d)", stripped)):
            out["pm_state"] = m.group(1)
        elif m := re.match(
            r"(LnkCap|LnkSta):\s.*?Speed ([\w.]+GT/s|unknown).*?Width x(\d+)", stripped
        ):
            key = "link_capability" if m.group(1) == "LnkCap" else "link_status"
            speed = None if m.group(2) == "unknown" else m.group(2)
            out[key] = {"speed": speed, "width": int(m.group(3))}
    return out


def parse_vmm(text: str) -> dict[str, str]:
    """`lspci -vmm -nn -s BDF`: its ``Key:\\tvalue`` lines."""
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def vmm_expected(report: dict[str, Any]) -> dict[str, str]:
    """What `lspci -vmm -nn` must print for the device `info --json` describes:
    names from pci.ids with the ID in brackets, lspci's words where none is."""
    expected = {
        "Class": f"{report['class_name'] or 'Class'} [{report['class'][:4]}]",
        "Vendor": f"{report['vendor_name'] or 'Vendor'} [{report['vendor']}]",
        "Device": f"{report['device_name'] or 'Device'} [{report['device']}]",
    }
    sub_vendor = report["subsystem_vendor"]
    if sub_vendor not in (None, "0000", "ffff"):
        expected["SVendor"] = (
            f"{report['subsystem_vendor_name'] or 'Unknown vendor'} [{sub_vendor}]"
        )
        expected["SDevice"] = (
            f"{report['subsystem_name'] or 'Device'} [{report['subsystem_device']}]"
        )
    if report["revision"] != "00":
        expected["Rev"] = report["revision"]
    return expected
