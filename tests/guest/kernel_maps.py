# SPDX-License-Identifier: Apache-2.0
"""What the guest kernel records and maps for a BAR, read from its own lists:
PAT's memory types (/sys/kernel/debug/x86/pat_memtype_list) and the kernel's
virtual mappings (/proc/vmallocinfo, which names the function and module
that asked for each area)."""

from __future__ import annotations

import re
from pathlib import Path

PAT_LIST = Path("/sys/kernel/debug/x86/pat_memtype_list")
_PAT_LINE = re.compile(r"PAT: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\S+)")
_VMALLOCINFO = Path("/proc/vmallocinfo")
_MODULE_AREA = re.compile(r"0x[0-9a-f]+-0x[0-9a-f]+\s+(\d+) .*\[vfio_pci_cookie\]")
_IOREMAP = re.compile(r"0x[0-9a-f]+-0x[0-9a-f]+\s+(\d+) (.*) phys=0x([0-9a-f]+) ioremap")


def pat_types(start: int, end: int) -> list[tuple[int, int, str]]:
    """PAT reservations overlapping physical [start, end)."""
    found = []
    for line in PAT_LIST.read_text().splitlines():
        m = _PAT_LINE.match(line)
        if m:
            lo, hi, kind = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if lo < end and hi > start:
                found.append((lo, hi, kind))
    return found


def module_kernel_maps() -> int:
    """Bytes of kernel virtual mappings the module made."""
    return sum(int(m.group(1)) for m in _MODULE_AREA.finditer(_VMALLOCINFO.read_text()))


def _ioremaps() -> list[tuple[int, int, str]]:
    """(phys, area size, caller) of every ioremap()."""
    return [(int(m[3], 16), int(m[1]), m[2]) for m in _IOREMAP.finditer(_VMALLOCINFO.read_text())]


def ioremap_guard(bar_start: int, bar_size: int) -> int:
    """What an ioremap area's size adds to the length it maps (a guard page
    on most kernels), from the core's own map of the whole BAR, which must
    exist (made at open on 7.3, on first use on 6.1 and 6.12)."""
    (guard,) = {size - bar_size for phys, size, _ in _ioremaps() if phys == bar_start}
    return guard


def module_ioremaps(bar_start: int, bar_size: int, guard: int) -> list[tuple[int, int]]:
    """(phys, length) of the module's ioremap()s of the BAR's pages."""
    return [
        (phys, size - guard)
        for phys, size, caller in _ioremaps()
        if "[vfio_pci_cookie]" in caller and bar_start <= phys < bar_start + bar_size
    ]


def module_vmaps() -> int:
    """Bytes of the module's kernel mappings that are not ioremap()s: a
    whole-BAR vmap_pfn() map, 4 KiB pages throughout."""
    ioremaps = sum(size for _, size, caller in _ioremaps() if "[vfio_pci_cookie]" in caller)
    return module_kernel_maps() - ioremaps
