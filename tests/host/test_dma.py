# SPDX-License-Identifier: Apache-2.0
"""The IOVA allocator: valid ranges, holes, DMA limits, alignment, reuse."""

import mmap

import pytest

from pyvfio.dma import DmaSpace, IovaAllocator
from pyvfio.errors import ClosedError, OutOfRangeError

PAGE = 4096
# What type1 reports under an Intel IOMMU: everything but the MSI window.
X86_RANGES = [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 39) - 1)]


def test_page_zero_is_never_handed_out() -> None:
    alloc = IovaAllocator(X86_RANGES)
    assert alloc.allocate(1) == PAGE


def test_allocations_skip_the_msi_window() -> None:
    alloc = IovaAllocator(X86_RANGES)
    below = alloc.allocate(0xFEE00000 - PAGE)  # everything below the window
    assert below == PAGE
    above = alloc.allocate(PAGE)
    assert above == 0xFEF00000


def test_a_device_joining_narrows_what_is_handed_out() -> None:
    alloc = IovaAllocator([(0, (1 << 39) - 1)])
    kept = alloc.allocate(0x10 * PAGE)  # at PAGE
    alloc.restrict(X86_RANGES)  # a second device: its MSI window is reserved now
    assert alloc.free_spans == [(0x11 * PAGE, 0xFEE00000), (0xFEF00000, 1 << 39)]
    assert alloc.allocate(0xFEE00000 - 0x11 * PAGE) == 0x11 * PAGE
    assert alloc.allocate(PAGE) == 0xFEF00000  # not in the window
    alloc.free(kept)
    assert alloc.allocate(0x10 * PAGE) == kept
    # narrowing only: a later, wider report does not hand the window out
    alloc.restrict([(0, (1 << 40) - 1)])
    assert all(not (start < 0xFEF00000 and end > 0xFEE00000) for start, end in alloc.free_spans)
    assert alloc.free_spans[-1][1] == 1 << 39


def test_a_span_freed_after_a_narrowing_returns_only_its_usable_part() -> None:
    alloc = IovaAllocator([(0, (1 << 32) - 1)])
    alloc.allocate(0xFEDFF000)  # up to the window
    window = alloc.allocate(0x100000)  # then the window itself, before it was reserved
    assert window == 0xFEE00000
    alloc.restrict(X86_RANGES)
    alloc.free(window)
    assert (0xFEE00000, 0xFEF00000) not in alloc.free_spans
    assert all(start >= 0xFEF00000 for start, _ in alloc.free_spans)


def test_ranges_that_touch_or_overlap_narrow_as_one_span() -> None:
    alloc = IovaAllocator([(0, 0xFFFF)])
    alloc.restrict([(0x8000, 0xFFFF), (0, 0x7FFF), (0x2000, 0x9FFF)])
    assert alloc.free_spans == [(PAGE, 0x10000)]
    assert alloc.allocate(0xA000) == PAGE  # across where the ranges met
    assert alloc.reserve(0xB000, 0x2000) == 0x2000
    # met inside a page: the page is still usable
    alloc = IovaAllocator([(0, 0xFFFF)])
    alloc.restrict([(0, 0x17FF), (0x1800, 0x2FFF)])
    assert alloc.free_spans == [(PAGE, 0x3000)]


def test_limit_models_a_device_dma_mask() -> None:
    alloc = IovaAllocator(X86_RANGES)
    alloc.allocate((1 << 28) - 2 * PAGE, limit=1 << 28)
    with pytest.raises(OutOfRangeError, match="below 0x10000000"):
        alloc.allocate(2 * PAGE, limit=1 << 28)
    iova = alloc.allocate(2 * PAGE)  # no limit: may cross it
    assert iova + 2 * PAGE > 1 << 28


def test_alignment_and_rounding() -> None:
    alloc = IovaAllocator(X86_RANGES)
    alloc.allocate(1)
    huge = alloc.allocate(3 << 20, align=2 << 20)
    assert huge % (2 << 20) == 0
    small = alloc.allocate(100)
    assert small == 2 * PAGE  # the gap left by alignment is used


def test_free_coalesces_and_space_is_reused() -> None:
    alloc = IovaAllocator([(0, 16 * PAGE - 1)])
    a = alloc.allocate(4 * PAGE)
    b = alloc.allocate(4 * PAGE)
    c = alloc.allocate(4 * PAGE)
    with pytest.raises(OutOfRangeError):
        alloc.allocate(4 * PAGE)
    alloc.free(b)
    alloc.free(a)
    alloc.free(c)
    assert alloc.free_spans == [(PAGE, 16 * PAGE)]
    assert alloc.allocate(15 * PAGE) == PAGE


def test_bad_requests() -> None:
    alloc = IovaAllocator(X86_RANGES)
    with pytest.raises(ValueError, match="positive"):
        alloc.allocate(0)
    with pytest.raises(ValueError, match="power of two"):
        alloc.allocate(PAGE, align=3 * PAGE)
    with pytest.raises(ValueError, match="not allocated"):
        alloc.free(0x1234000)


class _FakeIommu:
    """An IommuBackend that records maps: DMA bookkeeping without a device."""

    name = "fake-iommu"

    def __init__(self) -> None:
        self.maps: list[tuple[int, int]] = []

    def iova_ranges(self) -> list[tuple[int, int]]:
        return list(X86_RANGES)

    def map_dma(self, vaddr: int, iova: int, size: int, *, readable: bool, writable: bool) -> None:
        self.maps.append((iova, size))

    def unmap_dma(self, iova: int, size: int) -> None:
        self.maps.remove((iova, size))


@pytest.mark.parametrize("size", [0, -1])
def test_a_buffer_of_no_size_is_refused_and_nothing_is_mapped(size: int) -> None:
    iommu = _FakeIommu()
    space = DmaSpace(iommu)
    with pytest.raises(OutOfRangeError, match=f"a DMA buffer of {size} bytes") as info:
        space.allocate(size)
    assert info.value.hint == "ask for a positive size"
    assert iommu.maps == [] and space.buffers == []
    space.allocate(1).close()  # the space is unharmed
    assert iommu.maps == []


def test_buffer_accessors_are_little_endian_and_checked() -> None:
    iommu = _FakeIommu()
    with DmaSpace(iommu).allocate(4096) as buf:
        buf.write32(8, 0x11223344)
        buf.write64(16, 0x0102030405060708)
        buf.write16(2, 0xBEEF)
        buf.write8(0, 0xA5)
        assert bytes(buf.view[:4]) == b"\xa5\x00\xef\xbe"
        assert bytes(buf.view[8:12]) == b"\x44\x33\x22\x11"
        assert (buf.read8(0), buf.read16(2), buf.read32(8)) == (0xA5, 0xBEEF, 0x11223344)
        assert buf.read64(16) == 0x0102030405060708
        for call in (
            lambda: buf.write32(4094, 0),  # crosses the end
            lambda: buf.read64(-8),
            lambda: buf.write16(0, 1 << 16),
            lambda: buf.write8(0, -1),
        ):
            with pytest.raises(OutOfRangeError):
                call()
        assert buf.read32(4092) == 0 and buf.read8(0) == 0xA5  # nothing written
    with pytest.raises(ClosedError):
        buf.read32(0)


def test_memory_the_caller_has_is_mapped_and_stays_theirs() -> None:
    iommu = _FakeIommu()
    space = DmaSpace(iommu)
    mine = mmap.mmap(-1, 2 * PAGE)
    buf = space.map_memory(mine, writable_by_device=False)
    assert iommu.maps == [(buf.iova, 2 * PAGE)] and buf.size == 2 * PAGE
    buf.write32(PAGE, 0xCAFEF00D)
    assert mine[PAGE : PAGE + 4] == b"\x0d\xf0\xfe\xca"  # the same pages
    with pytest.raises(BufferError):  # mapped for DMA: not closable under the device
        mine.close()
    buf.close()
    assert iommu.maps == [] and not mine.closed
    mine[0] = 1  # still the caller's
    with pytest.raises(OutOfRangeError, match="not whole pages"):
        space.map_memory(mmap.mmap(-1, 100))
    assert iommu.maps == []
