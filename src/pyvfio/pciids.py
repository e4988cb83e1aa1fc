# SPDX-License-Identifier: Apache-2.0
"""Vendor, device, subsystem and class names from the pci.ids database.

The database is optional: without it every name is None, never an error.
Debian ships it as the ``pci.ids`` package (a dependency of pciutils).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Where distributions install it: Debian and Ubuntu, Fedora, others.
PCI_IDS_PATHS = (
    Path("/usr/share/misc/pci.ids"),
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/pci.ids"),
)


class PciIds:
    """The names of one pci.ids file, parsed once.

    The format: a vendor line ``vvvv  name``; below it, one tab and
    ``dddd  name`` for a device, two tabs and ``ssss ssss  name`` for a
    subsystem of that device.  ``C cc  name`` starts a class, with subclasses
    (one tab) and programming interfaces (two tabs) below it.  Other
    sections (``L`` etc.) are skipped."""

    def __init__(self, text: str = "", path: Path | None = None) -> None:
        self.path = path
        self._vendors: dict[int, str] = {}
        self._devices: dict[tuple[int, int], str] = {}
        self._subsystems: dict[tuple[int, int, int, int], str] = {}
        self._classes: dict[tuple[int, ...], str] = {}
        self._parse(text.splitlines())

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

    def _parse(self, lines: Iterable[str]) -> None:
        section = ""  # "vendor", "class" or "" (a section we skip)
        outer: tuple[int, ...] = ()
        inner: tuple[int, ...] = ()
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            depth = len(line) - len(line.lstrip("\t"))
            key, _, name = line.strip().partition("  ")
            name = name.strip()
            try:
                if depth == 0:
                    if line.startswith("C "):
                        section, outer = "class", (int(key[2:], 16),)
                        self._classes[outer] = name
                    elif len(key) == 4 and " " not in key:
                        section, outer = "vendor", (int(key, 16),)
                        self._vendors[outer[0]] = name
                    else:
                        section = ""
                elif depth == 1 and section == "vendor":
                    inner = (*outer, int(key, 16))
                    self._devices[(inner[0], inner[1])] = name
                elif depth == 1 and section == "class":
                    inner = (*outer, int(key, 16))
                    self._classes[inner] = name
                elif depth == 2 and section == "vendor" and len(inner) == 2:
                    sub_vendor, sub_device = (int(part, 16) for part in key.split())
                    self._subsystems[(inner[0], inner[1], sub_vendor, sub_device)] = name
                elif depth == 2 and section == "class" and len(inner) == 2:
                    self._classes[(*inner, int(key, 16))] = name
            except ValueError:
                continue  # a malformed line costs its own name only

    def vendor(self, vendor: int) -> str | None:
        return self._vendors.get(vendor)

    def device(self, vendor: int, device: int) -> str | None:
        return self._devices.get((vendor, device))

    def subsystem(self, vendor: int, device: int, sub_vendor: int, sub_device: int) -> str | None:
        """The subsystem's name as listed under its device; a subsystem that
        repeats the device's own IDs is named as the device, as lspci does."""
        name = self._subsystems.get((vendor, device, sub_vendor, sub_device))
        if name is None and (vendor, device) == (sub_vendor, sub_device):
            return self.device(vendor, device)
        return name

    def class_name(self, class_code: int) -> str | None:
        """The subclass name of a 24-bit class code, else its base class name."""
        base, sub = class_code >> 16, (class_code >> 8) & 0xFF
        return self._classes.get((base, sub)) or self._classes.get((base,))

    def prog_if(self, class_code: int) -> str | None:
        base, sub, prog_if = class_code >> 16, (class_code >> 8) & 0xFF, class_code & 0xFF
        return self._classes.get((base, sub, prog_if))
