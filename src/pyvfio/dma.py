# SPDX-License-Identifier: Apache-2.0
"""DMA buffers: host memory mapped into the device's IOMMU address space.

The IOMMU side is behind :class:`IommuBackend`, which the legacy type1
:class:`~pyvfio.container.Container` and the iommufd
:class:`~pyvfio.iommufd.Ioas` both implement, so buffers and the IOVA
allocator do not care which kernel interface is underneath.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import struct
import threading
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from . import _check
from ._sys import close_mmap
from .errors import ClosedError, InvalidArgumentError, OutOfRangeError, VfioError

_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
MAP_HUGETLB = 0x40000  # <linux/mman.h>; Python's mmap module does not export it
HUGEPAGE_SIZE = 2 << 20


@runtime_checkable
class IommuBackend(Protocol):
    """What maps DMA for a device: an iommufd IOAS (:class:`~pyvfio.Ioas`) or a
    legacy container (:class:`~pyvfio.Container`).  :class:`DmaSpace` needs
    nothing else of it."""

    @property
    def name(self) -> str:
        """What errors call it (a path, with the IOAS's number for iommufd)."""
        ...

    def iova_ranges(self) -> Sequence[tuple[int, int]]:
        """Usable IOVA ranges, inclusive (start, end)."""
        ...

    def map_dma(self, vaddr: int, iova: int, size: int, *, readable: bool, writable: bool) -> None:
        """Map ``size`` bytes of this process at ``vaddr`` to ``iova``, which the
        device may read if ``readable`` and write if ``writable``."""
        ...

    def unmap_dma(self, iova: int, size: int) -> None:
        """Unmap the ``size`` bytes mapped at ``iova``."""
        ...


def _check_memory(memory: object, name: str, operation: str) -> int:
    """Memory to map for DMA: an open, writable mmap; returns its length."""
    _check.instance(
        memory,
        mmap.mmap,
        "memory",
        "an mmap.mmap of whole pages",
        device=name,
        operation=operation,
    )
    assert isinstance(memory, mmap.mmap)
    try:
        length = len(memory)
    except ValueError:  # "mmap closed or invalid"
        raise InvalidArgumentError(
            "memory is a closed mmap", device=name, operation=operation, hint="map an open one"
        ) from None
    with memoryview(memory) as view:
        if view.readonly:
            raise _check.wrong_type(
                "memory",
                memory,
                "a writable mmap.mmap (PROT_WRITE)",
                device=name,
                operation=operation,
            )
    return length


def check_iova_span(iova: object, size: object, *, device: str, operation: str) -> tuple[int, int]:
    """An IOMMU mapping's ``iova`` and ``size``: ints, size > 0, the span below 2**64."""
    iova = _check.integer(iova, "iova", device=device, operation=operation)
    size = _check.integer(
        size, "size", device=device, operation=operation, low=1, high=(1 << 64) - iova
    )
    return iova, size


def check_map_args(
    vaddr: object,
    iova: object,
    size: object,
    readable: object,
    writable: object,
    *,
    device: str,
    operation: str,
) -> tuple[int, int, int, bool, bool]:
    """map_dma()'s arguments, as both IOMMU backends take them."""
    vaddr = _check.integer(vaddr, "vaddr", device=device, operation=operation)
    iova, size = check_iova_span(iova, size, device=device, operation=operation)
    readable = _check.boolean(readable, "readable", device=device, operation=operation)
    writable = _check.boolean(writable, "writable", device=device, operation=operation)
    return vaddr, iova, size, readable, writable


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


def check_range_pairs(ranges: object, operation: str) -> list[tuple[int, int]]:
    """IOVA ranges: a sequence of inclusive (first, last) int pairs, first <= last < 2**64."""
    takes = "a sequence of (first, last) int pairs"
    if not isinstance(ranges, Sequence) or isinstance(ranges, str | bytes):
        raise _check.wrong_type("ranges", ranges, takes, device=None, operation=operation)
    pairs = []
    for pair in ranges:
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise _check.wrong_type(
                "ranges", pair, f"{takes} (an item)", device=None, operation=operation
            )
        first = _check.integer(pair[0], "ranges", device=None, operation=operation)
        last = _check.integer(pair[1], "ranges", device=None, operation=operation)
        if first > last:
            raise InvalidArgumentError(
                f"ranges has ({first:#x}, {last:#x}): first > last",
                operation=operation,
                hint="ranges are inclusive (first, last) pairs",
            )
        pairs.append((first, last))
    return pairs


def _power_of_two(value: object, name: str, operation: str) -> int:
    number = _check.integer(value, name, device=None, operation=operation, low=1, high=1 << 63)
    if number & (number - 1):
        raise OutOfRangeError(
            f"{name} must be a power of two, not {number:#x}", operation=operation
        )
    return number


IdentityIova = Literal["identity"]
#: ``iova=IDENTITY``: map a buffer at its own virtual address (IOVA = VA).
IDENTITY: IdentityIova = "identity"


def check_iova_choice(iova: object, device: str, operation: str) -> int | IdentityIova | None:
    """A buffer's ``iova=``: None, :data:`IDENTITY`, or an int below 2**64."""
    if iova is None or iova == IDENTITY:
        return None if iova is None else IDENTITY
    return _check.integer(
        iova,
        "iova",
        device=device,
        operation=operation,
        hint="an IOVA (int), pyvfio.dma.IDENTITY ('identity') or None (the allocator picks)",
    )


class IovaAllocator:
    """First-fit allocation of IOVA space from the usable ranges.

    Page 0 is never handed out, so a zero DMA address in a descriptor is
    always a bug the IOMMU catches.
    """

    def __init__(self, ranges: Sequence[tuple[int, int]], page_size: int = mmap.PAGESIZE) -> None:
        """``ranges``: the usable IOVAs as inclusive (first, last) int pairs;
        ``page_size`` a power of two (an int)."""
        page_size = _power_of_two(page_size, "page_size", "IovaAllocator()")
        pairs = check_range_pairs(ranges, "IovaAllocator()")
        #: The unit of allocation, and the least alignment.
        self.page_size = page_size
        # free spans as sorted, non-overlapping [start, end) pairs
        self._free: list[tuple[int, int]] = []
        for first, last in sorted(pairs):
            start = max(_align_up(first, page_size), page_size)
            end = (last + 1) & ~(page_size - 1)
            if end > start:
                self._release(start, end)
        self._allocated: dict[int, int] = {}
        # What restrict() left usable, as [start, end) pairs; a freed span
        # returns only its part in them.
        self._usable = list(self._free)
        # Guards the three lists: devices of one IommuContext allocate from
        # their threads, and a device joining narrows them.
        self._lock = threading.Lock()

    @property
    def free_spans(self) -> list[tuple[int, int]]:
        """The free IOVA space as sorted [start, end) pairs (end excluded)."""
        with self._lock:
            return list(self._free)

    def allocate(self, size: int, *, align: int | None = None, limit: int | None = None) -> int:
        """Reserve ``size`` bytes (rounded up to pages); return the IOVA.

        ``size`` is an int > 0; ``limit`` None or the first address the
        device cannot reach (its DMA mask + 1, an int > 0); ``align`` None or
        a power of two (an int), raised to the page size if smaller.
        """
        operation = "allocate IOVA"
        size = _check.integer(size, "size", device=None, operation=operation, low=None, high=None)
        if size <= 0:
            raise OutOfRangeError(f"size must be positive, not {size}", operation=operation)
        if align is not None:
            align = _power_of_two(align, "align", operation)
        limit = _check.optional_integer(
            limit, "limit", device=None, operation=operation, low=1, high=1 << 64
        )
        align = max(align or self.page_size, self.page_size)
        size = _align_up(size, self.page_size)
        with self._lock:
            return self._first_fit(size, align, limit)

    def _first_fit(self, size: int, align: int, limit: int | None) -> int:
        for i, (start, end) in enumerate(self._free):
            iova = _align_up(start, align)
            top = end if limit is None else min(end, limit)
            if iova + size <= top:
                self._carve(i, iova, size)
                return iova
        where = "" if limit is None else f" below {limit:#x}"
        raise OutOfRangeError(
            f"no free IOVA span of {size:#x} bytes{where}",
            operation="allocate IOVA",
            hint="free buffers, or ask for less",
        )

    def reserve(self, iova: int, size: int) -> int:
        """Take ``size`` bytes (an int > 0, rounded up to pages) at ``iova``
        (an int, page-aligned), which must be free and usable; returns the
        size taken.  For a caller's own IOVA layout beside allocate()."""
        operation = "reserve IOVA"
        iova = _check.integer(iova, "iova", device=None, operation=operation)
        size = _check.integer(size, "size", device=None, operation=operation, low=1, high=None)
        if iova % self.page_size:
            raise OutOfRangeError(
                f"iova {iova:#x} is not a multiple of the page size ({self.page_size:#x})",
                operation=operation,
            )
        size = _align_up(size, self.page_size)
        with self._lock:
            return self._take(iova, size, operation)

    def _take(self, iova: int, size: int, operation: str) -> int:
        end = iova + size
        for i, (start, stop) in enumerate(self._free):
            if start <= iova and end <= stop:
                self._carve(i, iova, size)
                return size
        taken = [
            f"{start:#x}-{start + length - 1:#x}"
            for start, length in sorted(self._allocated.items())
            if start < end and iova < start + length
        ]
        if taken:
            why = "overlaps what is mapped at " + ", ".join(taken)
            hint = "pick a free IOVA, or let the allocator pick (iova=None)"
        else:
            usable = ", ".join(f"{a:#x}-{b - 1:#x}" for a, b in self._usable)
            why = f"is not inside the IOMMU's usable IOVAs ({usable})"
            hint = "pick an IOVA inside them (an IOMMU's address width bounds them)"
        raise OutOfRangeError(f"iova {iova:#x}-{end - 1:#x} {why}", operation=operation, hint=hint)

    def free(self, iova: int) -> None:
        """Return the span allocated at ``iova`` (an int allocate() returned)."""
        iova = _check.integer(iova, "iova", device=None, operation="free IOVA")
        with self._lock:
            size = self._allocated.pop(iova, None)
            if size is None:
                raise InvalidArgumentError(
                    f"iova {iova:#x} was not allocated here", operation="free IOVA"
                )
            for start, end in self._clip(iova, iova + size):
                self._release(start, end)

    def restrict(self, ranges: Sequence[tuple[int, int]]) -> None:
        """From now on hand out only IOVAs that are inside ``ranges``
        (inclusive (first, last) int pairs, as the constructor takes them) and
        were usable before: a device joining the address space may reserve
        some.  Allocated spans stay allocated; freed, only their usable part
        is handed out again."""
        pairs = check_range_pairs(ranges, "restrict IOVA ranges")
        # Merged first, as [start, end): ranges that touch or overlap are one
        # span of IOVAs; then whole pages of each.
        merged: list[tuple[int, int]] = []
        for first, last in sorted(pairs):
            if merged and first <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(last + 1, merged[-1][1]))
            else:
                merged.append((first, last + 1))
        usable = [
            (_align_up(start, self.page_size), end & ~(self.page_size - 1))
            for start, end in merged
            if end & ~(self.page_size - 1) > _align_up(start, self.page_size)
        ]
        with self._lock:
            self._usable = [
                (low, high)
                for usable_start, usable_end in usable
                for low, high in self._clip(usable_start, usable_end)
            ]
            self._free = [piece for start, end in self._free for piece in self._clip(start, end)]

    def _carve(self, i: int, iova: int, size: int) -> None:
        """Allocate [iova, iova + size) out of free span ``i``, which holds it."""
        start, end = self._free[i]
        remainder = [(start, iova)] if start < iova else []
        if iova + size < end:
            remainder.append((iova + size, end))
        self._free[i : i + 1] = remainder
        self._allocated[iova] = size

    def _clip(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) that are usable IOVAs."""
        pieces = []
        for usable_start, usable_end in self._usable:
            low, high = max(start, usable_start), min(end, usable_end)
            if low < high:
                pieces.append((low, high))
        return pieces

    def _release(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self._free, (start, end))
        if i > 0 and self._free[i - 1][1] == start:
            i -= 1
            start = self._free.pop(i)[0]
        if i < len(self._free) and self._free[i][0] == end:
            end = self._free.pop(i)[1]
        self._free.insert(i, (start, end))


class DmaBuffer:
    """Host memory mapped for device DMA at ``iova``.

    Anonymous memory of its own, or the caller's ``memory`` (an mmap of whole
    pages: ``DmaSpace.map_memory``).  ``view`` is a writable memoryview of the
    buffer.  Release any views taken from it before ``close()``, which unmaps
    it from the IOMMU and, if the buffer made it, from the process; the
    caller's mmap stays the caller's (and cannot be closed while mapped).

    ``size`` is an int > 0 (ignored with ``memory``, an open, writable
    ``mmap.mmap``); ``hugepages`` and ``writable_by_device`` True or False;
    ``limit`` None or the first IOVA the device cannot reach (an int > 0);
    ``iova`` None (the allocator picks), an int (page-aligned, free, inside
    the usable ranges) or :data:`IDENTITY` (the buffer's own virtual
    address, as DPDK's ``--iova-mode va``).  Offsets and values of the
    accessors are ints (never bools).
    """

    def __init__(
        self,
        dma: DmaSpace,
        size: int,
        *,
        hugepages: bool = False,
        limit: int | None = None,
        writable_by_device: bool = True,
        memory: mmap.mmap | None = None,
        iova: int | IdentityIova | None = None,
    ) -> None:
        _check.instance(
            dma, DmaSpace, "dma", "a DmaSpace (dev.dma)", device=None, operation="DMA buffer"
        )
        operation = "map memory for DMA" if memory is not None else "allocate DMA buffer"
        name = dma.backend.name
        iova = check_iova_choice(iova, name, operation)
        hugepages = _check.boolean(hugepages, "hugepages", device=name, operation=operation)
        writable_by_device = _check.boolean(
            writable_by_device, "writable_by_device", device=name, operation=operation
        )
        limit = _check.optional_integer(
            limit, "limit", device=name, operation=operation, low=1, high=1 << 64
        )
        if memory is None:
            size = _check.integer(
                size, "size", device=name, operation=operation, low=None, high=None
            )
            if size > _check.SIZE_MAX:
                raise OutOfRangeError(
                    f"size {size:#x}: a DMA buffer is at most {_check.SIZE_MAX:#x} bytes (mmap(2))",
                    device=name,
                    operation=operation,
                )
        else:
            size = _check_memory(memory, name, operation)
        self._dma = dma
        self._owned = memory is None
        if memory is not None and size % mmap.PAGESIZE:
            raise OutOfRangeError(
                f"an mmap of {size:#x} bytes is not whole pages",
                device=dma.backend.name,
                operation="map memory for DMA",
                hint=f"map a multiple of {mmap.PAGESIZE} bytes",
            )
        if size <= 0:
            raise OutOfRangeError(
                f"a DMA buffer of {size} bytes",
                device=dma.backend.name,
                operation="allocate DMA buffer",
                hint="ask for a positive size",
            )
        page = HUGEPAGE_SIZE if hugepages else mmap.PAGESIZE
        #: Its size in bytes: what was asked, rounded up to pages (2 MiB with hugepages).
        self.size = _align_up(size, page)
        flags = mmap.MAP_SHARED | (MAP_HUGETLB if hugepages else 0)
        try:
            self._mm: mmap.mmap | None = (
                memory if memory is not None else mmap.mmap(-1, self.size, flags=flags)
            )
        except OSError as exc:
            hint = (
                "reserve hugepages first: echo N > /proc/sys/vm/nr_hugepages" if hugepages else None
            )
            raise VfioError(
                f"cannot allocate {self.size:#x} bytes",
                errno=exc.errno,
                device=dma.backend.name,
                operation="allocate DMA buffer",
                hint=hint,
            ) from exc
        #: Its address in this process.
        self.vaddr = mmap_address(self._mm)
        wanted = self.vaddr if iova == IDENTITY else iova
        try:
            #: Its address for the device: what to put in descriptors and DMA registers.
            self.iova = take_iova(
                dma, self.size, wanted, page=page, limit=limit, operation=operation
            )
        except BaseException:
            # No IOVA (limit too low, space full): the memory made for it goes.
            if self._owned:
                self._mm.close()
            raise
        try:
            dma.backend.map_dma(
                self.vaddr, self.iova, self.size, readable=True, writable=writable_by_device
            )
        except BaseException:
            dma.allocator.free(self.iova)
            if self._owned:
                self._mm.close()
            raise
        #: A writable memoryview of the whole buffer (released by :meth:`close`).
        self.view = memoryview(self._mm)

    @property
    def closed(self) -> bool:
        """Whether the buffer is closed (unmapped)."""
        return self._mm is None

    # Little-endian fields, as descriptors and queue entries are laid out
    # (struct.pack_into by hand otherwise).  They are ordinary stores: the
    # README's "DMA and ordering" says when the device sees them.

    def _at(self, offset: int, width: int, op: str) -> int:
        if type(offset) is not int:  # bools, strs ... (an int costs one test)
            offset = _check.integer(
                offset, "offset", device=self._dma.backend.name, operation=op, low=None, high=None
            )
        if self._mm is None:
            raise ClosedError("DMA buffer is closed", device=self._dma.backend.name, operation=op)
        if not 0 <= offset <= self.size - width:
            raise OutOfRangeError(
                f"offset {offset:#x} width {width} is outside the {self.size:#x}-byte buffer",
                device=self._dma.backend.name,
                operation=op,
            )
        return offset

    def read8(self, offset: int) -> int:
        """The byte at ``offset``."""
        return self.view[self._at(offset, 1, "read8")]

    def read16(self, offset: int) -> int:
        """The little-endian 16-bit value at ``offset`` (any alignment)."""
        return int(_U16.unpack_from(self.view, self._at(offset, 2, "read16"))[0])

    def read32(self, offset: int) -> int:
        """The little-endian 32-bit value at ``offset`` (any alignment)."""
        return int(_U32.unpack_from(self.view, self._at(offset, 4, "read32"))[0])

    def read64(self, offset: int) -> int:
        """The little-endian 64-bit value at ``offset`` (any alignment)."""
        return int(_U64.unpack_from(self.view, self._at(offset, 8, "read64"))[0])

    def write8(self, offset: int, value: int) -> None:
        """Store the byte ``value`` at ``offset``."""
        self._store(_U8, offset, value, "write8")

    def write16(self, offset: int, value: int) -> None:
        """Store ``value`` (it must fit 16 bits) little-endian at ``offset``."""
        self._store(_U16, offset, value, "write16")

    def write32(self, offset: int, value: int) -> None:
        """Store ``value`` (it must fit 32 bits) little-endian at ``offset``."""
        self._store(_U32, offset, value, "write32")

    def write64(self, offset: int, value: int) -> None:
        """Store ``value`` (it must fit 64 bits) little-endian at ``offset``."""
        self._store(_U64, offset, value, "write64")

    def _store(self, fmt: struct.Struct, offset: int, value: int, op: str) -> None:
        at = self._at(offset, fmt.size, op)
        if type(value) is not int:
            value = _check.integer(
                value, "value", device=self._dma.backend.name, operation=op, low=None, high=None
            )
        if not 0 <= value < 1 << (8 * fmt.size):
            raise OutOfRangeError(
                f"value {value} does not fit in {8 * fmt.size} bits",
                device=self._dma.backend.name,
                operation=op,
            )
        fmt.pack_into(self.view, at, value)

    def close(self) -> None:
        """Unmap the buffer from the IOMMU and free its IOVAs; memory it made is
        unmapped from the process too.  Safe to call twice."""
        if self._mm is None:
            return
        try:
            self._dma.backend.unmap_dma(self.iova, self.size)
        finally:
            self._dma.allocator.free(self.iova)
            self._dma.forget(self)
            self.view.release()
            if self._owned:
                close_mmap(self._mm, f"DMA buffer at IOVA {self.iova:#x}")
            self._mm = None

    def __enter__(self) -> DmaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DmaBuffer iova={self.iova:#x} size={self.size:#x}>"


def mmap_address(mm: mmap.mmap) -> int:
    """Where ``mm`` (an open, writable mmap) lies in this process; valid as
    long as the mmap is."""
    anchor = ctypes.c_char.from_buffer(mm)
    address = ctypes.addressof(anchor)
    del anchor  # a buffer export would keep the mmap from closing
    return address


def take_iova(
    dma: DmaSpace, size: int, wanted: object, *, page: int, limit: int | None, operation: str
) -> int:
    """An IOVA for ``size`` bytes in ``dma``: the allocator's pick (``wanted``
    None, below ``limit``), or ``wanted`` itself (an int), checked against the
    page size and ``limit`` and reserved."""
    allocator = dma.allocator
    if wanted is None:
        return allocator.allocate(size, align=page, limit=limit)
    assert isinstance(wanted, int)
    if wanted % page:
        raise OutOfRangeError(
            f"iova {wanted:#x} is not a multiple of the page size ({page:#x})",
            device=dma.backend.name,
            operation=operation,
            hint="with hugepages=True the IOMMU maps 2 MiB pages: align the IOVA to them"
            if page == HUGEPAGE_SIZE
            else None,
        )
    if limit is not None and wanted + size > limit:
        raise OutOfRangeError(
            f"iova {wanted:#x}-{wanted + size - 1:#x} ends above limit {limit:#x}",
            device=dma.backend.name,
            operation=operation,
            hint="the device cannot reach it: pick a lower IOVA",
        )
    try:
        allocator.reserve(wanted, size)
    except VfioError as exc:
        exc.device = dma.backend.name
        exc.operation = operation
        raise
    return wanted


class DmaSpace:
    """The buffers mapped into one IOMMU address space, and its allocator."""

    #: What maps the buffers: the device's :attr:`~pyvfio.Device.iommu`.
    backend: IommuBackend
    #: Where their IOVAs come from: the backend's usable ranges.
    allocator: IovaAllocator

    def __init__(self, backend: IommuBackend) -> None:
        """Over ``backend``: what maps DMA (dev.iommu, a Container or an Ioas)."""
        _check.instance(
            backend,
            IommuBackend,
            "backend",
            "an IOMMU backend (dev.iommu: a Container or an Ioas)",
            device=None,
            operation="DmaSpace()",
        )
        self.backend = backend
        self.allocator = IovaAllocator(backend.iova_ranges())
        self._buffers: list[DmaBuffer] = []
        self._closed = False

    def allocate(
        self,
        size: int,
        *,
        hugepages: bool = False,
        limit: int | None = None,
        writable_by_device: bool = True,
        iova: int | IdentityIova | None = None,
    ) -> DmaBuffer:
        """A new DmaBuffer of ``size`` bytes; arguments as DmaBuffer takes them."""
        if self._closed:
            raise ClosedError(
                "DMA space is closed", device=self.backend.name, operation="allocate DMA buffer"
            )
        buf = DmaBuffer(
            self,
            size,
            hugepages=hugepages,
            limit=limit,
            writable_by_device=writable_by_device,
            iova=iova,
        )
        self._buffers.append(buf)
        return buf

    def map_memory(
        self,
        memory: mmap.mmap,
        *,
        limit: int | None = None,
        writable_by_device: bool = True,
        iova: int | IdentityIova | None = None,
    ) -> DmaBuffer:
        """Map memory the caller already has (an mmap of whole pages: anonymous,
        a file, hugetlbfs) for DMA; ``close()`` unmaps it from the IOMMU only.
        Arguments as DmaBuffer takes them."""
        if self._closed:
            raise ClosedError(
                "DMA space is closed", device=self.backend.name, operation="map memory for DMA"
            )
        buf = DmaBuffer(
            self, 0, limit=limit, writable_by_device=writable_by_device, memory=memory, iova=iova
        )
        self._buffers.append(buf)
        return buf

    def forget(self, buf: DmaBuffer) -> None:
        """Stop tracking ``buf`` (a DmaBuffer; its close() calls this)."""
        _check.instance(
            buf, DmaBuffer, "buf", "a DmaBuffer", device=self.backend.name, operation="forget"
        )
        if buf in self._buffers:
            self._buffers.remove(buf)

    @property
    def buffers(self) -> list[DmaBuffer]:
        """The buffers mapped now, oldest first."""
        return list(self._buffers)

    def close(self) -> None:
        """Close every buffer; no new one can be made after."""
        self._closed = True
        for buf in list(self._buffers):
            buf.close()
