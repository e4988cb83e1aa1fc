# SPDX-License-Identifier: Apache-2.0
"""Vendor, device, subsystem and class names from the pci.ids database.

The database is optional: without it every name is None, never an error.
Debian ships it as the ``pci.ids`` package (a dependency of pciutils).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Where distributions install it: Debian and Ubuntu, Fedora, others.
PCI_IDS_PATHS = (
    Path("/usr/share/misc/pci.ids"),
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/pci.ids"),
)


class PciIds:
    """The names of one pci.ids file.

    The format: a vendor line ``vvvv  name``; below it, one tab and
    ``dddd  name`` for a device, two tabs and ``ssss ssss  name`` for a
    subsystem of that device.  ``C cc  name`` starts a class, with subclasses
    (one tab) and programming interfaces (two tabs) below it.  Other
    sections (``L`` etc.) are never matched.  A lookup searches the text for
    the one entry it wants rather than parsing 40,000 lines up front: `info`
    wants six names, and Python starts slowly enough under emulation."""

    def __init__(self, text: str = "", path: Path | None = None) -> None:
        self.path = path
        # A leading newline lets every entry be found as "\n" + its line start.
        self._text = "\n" + text.replace("\r\n", "\n")

    @classmethod
    def load(cls, paths: Iterable[Path] = PCI_IDS_PATHS) -> PciIds:
        """The first database found in ``paths``; an empty one if none is."""
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            return cls(text, path)
        return cls()

    def _entry(self, key: str, start: int, end: int) -> tuple[str | None, int, int]:
        """The name on the line ``key`` + two spaces within [start, end), and
        the span of the lines nested below it (those with more tabs than
        ``key``, comments among them)."""
        found = self._text.find(f"\n{key}  ", start, end)
        if found < 0:
            return None, -1, -1
        line_end = self._text.find("\n", found + 1, end)
        line_end = end if line_end < 0 else line_end
        name = self._text[found + len(key) + 3 : line_end].strip() or None
        depth = len(key) - len(key.lstrip("\t"))
        below = re.compile(rf"\n(?!\t{{{depth + 1}}}|#)").search(self._text, line_end, end)
        return name, line_end, end if below is None else below.start()

    def _vendor_block(self, vendor: int) -> tuple[str | None, int, int]:
        return self._entry(f"{vendor:04x}", 0, len(self._text))

    def _device_block(self, vendor: int, device: int) -> tuple[str | None, int, int]:
        _, start, end = self._vendor_block(vendor)
        if start < 0:
            return None, -1, -1
        return self._entry(f"\t{device:04x}", start, end)

    def vendor(self, vendor: int) -> str | None:
        return self._vendor_block(vendor)[0]

    def device(self, vendor: int, device: int) -> str | None:
        return self._device_block(vendor, device)[0]

    def subsystem(self, vendor: int, device: int, sub_vendor: int, sub_device: int) -> str | None:
        """The subsystem's name as listed under its device; a subsystem that
        repeats the device's own IDs is named as the device, as lspci does."""
        device_name, start, end = self._device_block(vendor, device)
        name = None
        if start >= 0:
            name = self._entry(f"\t\t{sub_vendor:04x} {sub_device:04x}", start, end)[0]
        if name is None and (vendor, device) == (sub_vendor, sub_device):
            return device_name
        return name

    def _class_block(self, class_code: int, levels: int) -> tuple[str | None, int, int]:
        base, sub, prog_if = class_code >> 16, (class_code >> 8) & 0xFF, class_code & 0xFF
        found = self._entry(f"C {base:02x}", 0, len(self._text))
        for depth, number in enumerate((sub, prog_if)[: levels - 1], start=1):
            if found[1] < 0:
                break
            found = self._entry("\t" * depth + f"{number:02x}", found[1], found[2])
        return found

    def class_name(self, class_code: int) -> str | None:
        """The subclass name of a 24-bit class code, else its base class name."""
        return self._class_block(class_code, 2)[0] or self._class_block(class_code, 1)[0]

    def prog_if(self, class_code: int) -> str | None:
        return self._class_block(class_code, 3)[0]
