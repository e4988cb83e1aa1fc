# SPDX-License-Identifier: Apache-2.0
"""Exact-width access to an mmapped device region.

A register must see one access of the width the driver means: never two
16-bit halves of a 32-bit register, never a merged 64-bit access.  Slicing
an mmap gives no such promise (it copies with memcpy of any shape).  A
memoryview cast to the item type loads and stores one item with a single
fixed-size copy, which the compiler emits as one instruction of that width
on the architectures CPython targets; every accessor here goes through such
a view and checks bounds and natural alignment first.
"""

from __future__ import annotations

import mmap
import sys

from .errors import ClosedError, OutOfRangeError

if sys.byteorder != "little":  # pragma: no cover - x86 and arm64 hosts are little endian
    raise ImportError("pyvfio's MMIO accessors assume a little-endian host")


class Mapping:
    """A mapped window of a region with width-exact, bounds-checked accessors."""

    def __init__(self, mm: mmap.mmap, name: str) -> None:
        self._mm: mmap.mmap | None = mm
        self.name = name
        self.size = len(mm)
        raw = memoryview(mm)
        self._raw: memoryview | None = raw
        # One view per access width; indexing a view is one load or store.
        self._views = {1: raw.cast("B"), 2: raw.cast("H"), 4: raw.cast("I"), 8: raw.cast("Q")}

    def _view(self, width: int, offset: int) -> memoryview:
        if self._mm is None:
            raise ClosedError("mapping is closed", device=self.name, operation="access")
        if offset < 0 or offset + width > self.size:
            raise OutOfRangeError(
                f"offset {offset:#x} width {width} is outside the {self.size:#x}-byte mapping",
                device=self.name,
                operation=f"access{width * 8}",
            )
        if offset % width:
            raise OutOfRangeError(
                f"offset {offset:#x} is not {width}-byte aligned",
                device=self.name,
                operation=f"access{width * 8}",
            )
        return self._views[width]

    def read8(self, offset: int) -> int:
        return int(self._view(1, offset)[offset])

    def read16(self, offset: int) -> int:
        return int(self._view(2, offset)[offset >> 1])

    def read32(self, offset: int) -> int:
        return int(self._view(4, offset)[offset >> 2])

    def read64(self, offset: int) -> int:
        return int(self._view(8, offset)[offset >> 3])

    def write8(self, offset: int, value: int) -> None:
        self._view(1, offset)[offset] = value

    def write16(self, offset: int, value: int) -> None:
        self._view(2, offset)[offset >> 1] = value

    def write32(self, offset: int, value: int) -> None:
        self._view(4, offset)[offset >> 2] = value

    def write64(self, offset: int, value: int) -> None:
        self._view(8, offset)[offset >> 3] = value

    @property
    def closed(self) -> bool:
        return self._mm is None

    def close(self) -> None:
        """Unmap; safe to call twice."""
        if self._mm is None:
            return
        for view in self._views.values():
            view.release()
        self._views.clear()
        assert self._raw is not None
        self._raw.release()
        self._raw = None
        self._mm.close()
        self._mm = None

    def __enter__(self) -> Mapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
