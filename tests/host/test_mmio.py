# SPDX-License-Identifier: Apache-2.0
"""MMIO accessors over anonymous memory, for the C helper and the fallback.

(Access width on a real device register is proven in tests/guest.)
"""

import json
import mmap
from collections.abc import Iterator

import pytest

from pyvfio import ClosedError, OutOfRangeError, UnsupportedError, mmio, uapi
from pyvfio.cookie import MemoryAttr, MemoryType
from pyvfio.irq import IrqIndex
from pyvfio.mmio import Mapping, _PyWindow

BACKENDS = ["c", "python"]


def test_the_c_helper_is_built() -> None:
    # `make setup` builds it; a silent fallback would cost 7x per access.
    assert mmio.BACKEND == "c"


@pytest.fixture(params=BACKENDS)
def window(request: pytest.FixtureRequest) -> Iterator[Mapping | _PyWindow]:
    mm = mmap.mmap(-1, 4096)
    if request.param == "c":
        mapping = Mapping(mm, "anon")
        yield mapping
        mapping.close()
    else:
        win = _PyWindow(mm, "anon")
        yield win
        win._release()
        mm.close()


def test_widths_are_little_endian(window: Mapping | _PyWindow) -> None:
    window.write64(8, 0x0807060504030201)
    assert window.read8(8) == 0x01
    assert window.read16(8) == 0x0201
    assert window.read32(12) == 0x08070605
    assert window.read64(8) == 0x0807060504030201
    window.write8(9, 0xAA)
    window.write16(10, 0xBBCC)
    window.write32(12, 0xDDEEFF00)
    assert window.read_bytes(8, 8).hex() == "01aaccbb00ffeedd"


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("read32", (4096,)),
        ("read32", (4094,)),
        ("read64", (-8,)),
        ("write16", (4096, 0)),
        ("read16", (1,)),
        ("read32", (2,)),
        ("write64", (4, 0)),
        ("write8", (0, 256)),
        ("write16", (0, 1 << 16)),
        ("write32", (0, -1)),
        ("write32", (4, -1)),
        ("write64", (0, 1 << 64)),
        ("read32", (1 << 64,)),
        ("write32", (-(1 << 64), 0)),
    ],
)
def test_bad_offsets_widths_and_values(
    window: Mapping | _PyWindow, op: str, args: tuple[int, ...]
) -> None:
    # One error for every int the access cannot take: never Python's OverflowError.
    with pytest.raises(OutOfRangeError):
        getattr(window, op)(*args)
    assert window.read_bytes(0, 16) == bytes(16)  # nothing was written


def test_bulk_copies(window: Mapping | _PyWindow) -> None:
    data = bytes(range(256)) * 4
    window.write_bytes(3, data[:1021])  # unaligned start: falls back to narrower accesses
    assert window.read_bytes(3, 1021) == data[:1021]
    out = bytearray(10)
    window.copy_from(3, out)
    assert out == data[:10]
    with pytest.raises(OutOfRangeError):
        window.write_bytes(4090, b"x" * 7)
    with pytest.raises(OutOfRangeError):
        window.copy_from(4095, bytearray(2))


def test_closed_mapping_refuses_access() -> None:
    mapping = Mapping(mmap.mmap(-1, 4096), "anon")
    mapping.close()
    mapping.close()  # harmless twice
    assert mapping.closed
    with pytest.raises(ClosedError, match="anon: read32: mapping is closed"):
        mapping.read32(0)


@pytest.mark.parametrize("op", ["read8", "read32", "read64", "write16", "write64", "read_bytes"])
def test_released_window_says_why(window: Mapping | _PyWindow, op: str) -> None:
    # What a program in the middle of a register loop sees when the kernel
    # asks for the device back: the accessors raise, on both backends.
    window._release("the device is being unbound")
    window._release("a second reason does not replace the first")
    args = (0, 0) if op.startswith(("write", "read_bytes")) else (0,)
    with pytest.raises(ClosedError, match=f"anon: {op}: the device is being unbound"):
        getattr(window, op)(*args)


def test_error_names_the_mapping() -> None:
    with (
        Mapping(mmap.mmap(-1, 4096), "0000:00:0a.0 BAR0+0x0") as mapping,
        pytest.raises(OutOfRangeError, match=r"0000:00:0a\.0 BAR0\+0x0: read32: offset 4096"),
    ):
        mapping.read32(4096)


def test_barrier_needs_the_c_helper() -> None:
    mm = mmap.mmap(-1, 4096)
    with Mapping(mm, "anon") as mapping:
        mapping.write_barrier()  # C: sfence
    win = _PyWindow(mmap.mmap(-1, 4096), "anon")
    with pytest.raises(UnsupportedError, match="C helper"):
        win.write_barrier()


def test_close_with_a_live_view_still_closes(caplog: pytest.LogCaptureFixture) -> None:
    mm = mmap.mmap(-1, 4096)
    mapping = Mapping(mm, "anon")
    view = memoryview(mm)  # e.g. a numpy array over the BAR
    mapping.close()
    assert mapping.closed and "views of it exist" in caplog.text
    with pytest.raises(ClosedError):
        mapping.read32(0)
    view.release()


def test_enums_print_their_names() -> None:
    # print(mapping.memory_type) said "2"; the numbers stay for ==, JSON and ioctls.
    assert (str(MemoryType.WC), f"{MemoryAttr.UC}", str(IrqIndex.MSIX)) == ("WC", "UC", "MSIX")
    assert MemoryType.WC == uapi.VFIO_MEMTYPE_WC and json.dumps(IrqIndex.MSIX) == "2"


def test_the_fallback_is_announced_once_and_only_when_mapping(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mmio, "BACKEND", "python")
    mmio._warn_fallback_once.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="pyvfio.mmio"):
            assert caplog.records == []  # importing and listing say nothing
            for _ in range(3):
                Mapping(mmap.mmap(-1, 4096), "anon").close()
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "--no-cache-dir --force-reinstall" in warnings[0]
    finally:
        mmio._warn_fallback_once.cache_clear()


@pytest.mark.parametrize(
    ("direct_url", "command"),
    [
        # from an index: no direct_url.json
        (None, "pip install --no-cache-dir --force-reinstall pyvfio"),
        (
            '{"url": "file:///home/u/pyvfio-0.1.0.tar.gz", "archive_info": {}}',
            "pip install --no-cache-dir --force-reinstall /home/u/pyvfio-0.1.0.tar.gz",
        ),
        (
            '{"url": "file:///home/u/my%20src", "dir_info": {}}',
            "pip install --no-cache-dir --force-reinstall '/home/u/my src'",
        ),
        (
            '{"url": "file:///home/u/pyvfio", "dir_info": {"editable": true}}',
            "pip install --no-cache-dir --force-reinstall -e /home/u/pyvfio",
        ),
        (
            '{"url": "https://example.org/pyvfio.git", '
            '"vcs_info": {"vcs": "git", "commit_id": "a8c1442"}}',
            "pip install --no-cache-dir --force-reinstall "
            "git+https://example.org/pyvfio.git@a8c1442",
        ),
        # a wheel carries no source to build from
        ('{"url": "file:///w/pyvfio-0.1.0-py3-none-any.whl", "archive_info": {}}', None),
        ("not json", "pip install --no-cache-dir --force-reinstall pyvfio"),
    ],
)
def test_the_fallback_hint_rebuilds_from_where_pyvfio_came_from(
    direct_url: str | None, command: str | None
) -> None:
    # PEP 610: pip records where a distribution was installed from.
    assert mmio.reinstall_command(direct_url) == command
