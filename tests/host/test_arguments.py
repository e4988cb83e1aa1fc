# SPDX-License-Identifier: Apache-2.0
"""Every public call checks its arguments before it does anything (issue 24).

The public API is walked by introspection, from ``pyvfio.__all__`` and the
cookie module's functions through what their methods and properties return,
and every (callable, parameter) it finds must have a row in a bad-input
table: ``HOST_ROWS`` here, for what runs without a device (sysfs on a fake
tree, mappings of anonymous memory, DMA through a fake IOMMU, the checks a
constructor makes before it opens anything), ``guest.test_arguments.ROWS``
for the rest, run on a real device on both backends, or a row generated here
for the calls whose checks are uniform: the records calls return (each
field, a value of the wrong type) and the error classes.

Each row says which exception it expects; the message must name the
parameter, and nothing may have changed.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import mmap
import re
import sys
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pyvfio
from pyvfio import (
    AffectedDevice,
    ArgumentTypeError,
    Bar,
    Container,
    Device,
    DeviceInfo,
    Group,
    InvalidArgumentError,
    Ioas,
    IommuContext,
    Mapping,
    OutOfRangeError,
    PciDevice,
    Region,
    RegionInfo,
    Sysfs,
    VfioError,
    VmArgumentError,
    cookie,
    normalize_bdf,
)
from pyvfio.caps import IommuInfo, MsixMappableCap, SparseMmapCap, TypeCap, UnknownCap
from pyvfio.config import Capability, ConfigSpace
from pyvfio.cookie import Cookie, CookieInfo, MemoryAttr, MemoryType
from pyvfio.devfd import DeviceFd
from pyvfio.device import DeviceFlags
from pyvfio.dma import DmaBuffer, DmaSpace, IovaAllocator
from pyvfio.irq import Interrupts, IrqFlags, IrqInfo
from pyvfio.mmio import _PyWindow

from .conftest import FakeDevice

BDF = "0000:00:0a.0"
PAGE = mmap.PAGESIZE


def bad(value: object) -> Any:
    """Marks the argument under test: of a type or value the call must refuse."""
    return value


# -- the walk ---------------------------------------------------------------


def _namespace() -> dict[str, Any]:
    """Every name of every pyvfio module, to resolve annotations a module
    imports only for type checking (``MemoryType`` in mmio)."""
    names: dict[str, Any] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("pyvfio.") and not name.startswith("pyvfio.vm"):
            names.update(vars(module))
    return names


def _classes_in(annotation: object) -> list[type]:
    if isinstance(annotation, type):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _classes_in(arg)
    return found


@dataclass
class Api:
    """The public callables (``Class.method`` or a function's name) with
    their signatures, and the classes walked."""

    signatures: dict[str, inspect.Signature]
    classes: set[type]


def walk_api() -> Api:
    namespace = _namespace()
    api = Api({}, set())

    def returns(function: object) -> list[type]:
        hints = typing.get_type_hints(function, localns=namespace)
        return _classes_in(hints.get("return"))

    def add_callable(key: str, function: Callable[..., object]) -> None:
        api.signatures[key] = inspect.signature(function)
        if not isinstance(function, type) and not inspect.isbuiltin(function):
            for cls in returns(function):
                add_class(cls)

    def add_class(cls: type) -> None:
        # Enums are called with their values (Python's own check); protocols
        # are not called at all (Container and Ioas implement IommuBackend).
        if (
            cls in api.classes
            or not cls.__module__.startswith("pyvfio")
            or issubclass(cls, enum.Enum)
            or getattr(cls, "_is_protocol", False)
        ):
            return
        api.classes.add(cls)
        add_callable(f"{cls.__name__}.__init__", cls)
        for name, annotation in typing.get_type_hints(cls, localns=namespace).items():
            if not name.startswith("_"):
                for found in _classes_in(annotation):
                    add_class(found)
        for name in dir(cls):
            if name.startswith("_") and name not in ("__enter__", "__exit__"):
                continue
            owner = next(k for k in cls.__mro__ if name in vars(k))
            if not owner.__module__.startswith("pyvfio"):
                continue  # BaseException.add_note and the like
            raw = inspect.getattr_static(cls, name)
            if isinstance(raw, property):
                assert raw.fget is not None and raw.fset is None, f"{cls.__name__}.{name}"
                for found in returns(raw.fget):
                    add_class(found)
            elif callable(raw) or isinstance(raw, staticmethod | classmethod):
                add_callable(f"{cls.__name__}.{name}", getattr(cls, name))

    for name in pyvfio.__all__:
        value = getattr(pyvfio, name)
        if isinstance(value, type):
            add_class(value)
        else:
            add_callable(name, value)
    for name in dir(cookie):
        value = getattr(cookie, name)
        if inspect.isfunction(value) and value.__module__ == cookie.__name__:
            if not name.startswith("_") and name not in ("check_attr", "check_device"):
                add_callable(f"cookie.{name}", value)
        elif isinstance(value, type) and value.__module__ == cookie.__name__:
            add_class(value)
    return api


def takes_anything(parameter: inspect.Parameter) -> bool:
    """A parameter annotated ``object`` (``__exit__(*exc)``) has no bad input."""
    return parameter.annotation in (object, "object")


def api_parameters(api: Api) -> set[tuple[str, str]]:
    return {
        (key, name)
        for key, signature in api.signatures.items()
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls") and not takes_anything(parameter)
    }


# -- rows generated for the uniform checks ----------------------------------

# One valid record of each kind, to spoil one field at a time.
RECORD_SAMPLES: dict[type[Any], Any] = {
    Bar: Bar(index=0, start=0xFEB00000, size=4096, flags=0x200),
    PciDevice: PciDevice(
        bdf=BDF,
        vendor=0x1234,
        device=0x11E8,
        class_code=0xFF00,
        driver=None,
        driver_override=None,
        iommu_group=10,
        bars=(Bar(index=0, start=0xFEB00000, size=4096, flags=0x200),),
    ),
    DeviceInfo: DeviceInfo(flags=DeviceFlags.PCI, num_regions=9, num_irqs=5),
    AffectedDevice: AffectedDevice(bdf=BDF, group=13, owned=True),
    RegionInfo: RegionInfo(index=0, flags=0, size=4096, offset=0, caps=(MsixMappableCap(),)),
    IrqInfo: IrqInfo(index=1, flags=IrqFlags.EVENTFD, count=1),
    Capability: Capability(id=5, offset=0x40, extended=False),
    CookieInfo: CookieInfo(
        index=0,
        offset=0,
        length=4096,
        attr=MemoryAttr.UC,
        memory_type=MemoryType.UC_MINUS,
        mapped=False,
    ),
    IommuInfo: IommuInfo(page_sizes=4096, iova_ranges=((0, 1 << 39),), dma_avail=None, unknown=()),
    UnknownCap: UnknownCap(id=1, version=1, data=b""),
    SparseMmapCap: SparseMmapCap(areas=((0, 4096),)),
    TypeCap: TypeCap(type=1, subtype=2),
    MsixMappableCap: MsixMappableCap(),
}
WRONG = object()  # of no annotated type


def generated_rows(api: Api) -> set[tuple[str, str]]:
    rows = set()
    for cls in api.classes:
        if dataclasses.is_dataclass(cls) and cls in RECORD_SAMPLES:
            rows |= {(f"{cls.__name__}.__init__", f.name) for f in dataclasses.fields(cls)}
        if cls is VmArgumentError:  # (parameter, message, *, hint): its own test below
            rows |= {("VmArgumentError.__init__", p) for p in ("parameter", "message", "hint")}
        elif issubclass(cls, VfioError):
            rows |= {(f"{cls.__name__}.__init__", p) for p in ERROR_ARGUMENTS}
    return rows


# A value of the wrong type for each argument of an error class.
ERROR_ARGUMENTS: dict[str, object] = {
    "message": 5,
    "device": Path("/dev/vfio/10"),
    "operation": 5,
    "errno": "EBUSY",
    "hint": ["a list"],
}


# -- the host table ---------------------------------------------------------


class FakeIommu:
    """An IommuBackend that records maps: DMA bookkeeping without a device."""

    name = "fake-iommu"

    def __init__(self) -> None:
        self.maps: list[tuple[int, int]] = []

    def iova_ranges(self) -> list[tuple[int, int]]:
        return [(0, (1 << 39) - 1)]

    def map_dma(self, vaddr: int, iova: int, size: int, *, readable: bool, writable: bool) -> None:
        self.maps.append((iova, size))

    def unmap_dma(self, iova: int, size: int) -> None:
        self.maps.remove((iova, size))


@dataclass
class Host:
    """What host rows call: a fake sysfs with edu in it, a mapping of anonymous
    memory (C helper or fallback), a DMA space on a fake IOMMU with a buffer."""

    sysfs: Sysfs
    tree: Path
    window: Mapping | _PyWindow
    iommu: FakeIommu
    space: DmaSpace
    buffer: DmaBuffer
    allocator: IovaAllocator
    device: DeviceFd  # closed: any call that got past its checks would fail on it
    container: Container  # never opened: its type is all a check looks at

    def snapshot(self) -> object:
        files = {
            p: p.read_bytes()
            for p in sorted(self.tree.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
        links = {p: p.resolve() for p in self.tree.rglob("*") if p.is_symlink()}
        return (
            files,
            links,
            self.window.read_bytes(0, PAGE),
            list(self.iommu.maps),
            self.space.buffers,
            self.allocator.free_spans,
            bytes(self.buffer.view),
        )


@dataclass(frozen=True)
class Bad:
    """A bad argument: ``call`` passes it to ``target`` as ``param``."""

    target: str
    param: str
    call: Callable[[Host], object]
    error: type[VfioError]


def _info() -> IrqInfo:
    return IrqInfo(index=1, flags=IrqFlags.EVENTFD, count=1)


def _calls(attr: str, method: str, *args: object, **kwargs: object) -> Callable[[Host], object]:
    """``host.<attr>.<method>(*args, **kwargs)``, for rows made in a loop."""

    def call(h: Host) -> object:
        return getattr(getattr(h, attr), method)(*args, **kwargs)

    return call


def _accessor_rows() -> dict[str, Bad]:
    """The mapping accessors: a str offset, a bool value, out-of-range lengths, str data."""
    rows: dict[str, Bad] = {}
    for bits in (8, 16, 32, 64):
        rows[f"read{bits}('0')"] = Bad(
            f"Mapping.read{bits}",
            "offset",
            _calls("window", f"read{bits}", "0"),
            ArgumentTypeError,
        )
        rows[f"write{bits}(True, 0)"] = Bad(
            f"Mapping.write{bits}",
            "offset",
            _calls("window", f"write{bits}", True, 0),
            ArgumentTypeError,
        )
        rows[f"write{bits}(0, True)"] = Bad(
            f"Mapping.write{bits}",
            "value",
            _calls("window", f"write{bits}", 0, True),
            ArgumentTypeError,
        )
        rows[f"dma read{bits}(True)"] = Bad(
            f"DmaBuffer.read{bits}",
            "offset",
            _calls("buffer", f"read{bits}", True),
            ArgumentTypeError,
        )
        rows[f"dma write{bits}('0', 1)"] = Bad(
            f"DmaBuffer.write{bits}",
            "offset",
            _calls("buffer", f"write{bits}", "0", 1),
            ArgumentTypeError,
        )
        rows[f"dma write{bits}(0, 1.0)"] = Bad(
            f"DmaBuffer.write{bits}",
            "value",
            _calls("buffer", f"write{bits}", 0, 1.0),
            ArgumentTypeError,
        )
    return rows


HOST_ROWS: dict[str, Bad] = {
    # -- addresses and sysfs
    "normalize_bdf(None)": Bad(
        "normalize_bdf",
        "bdf",
        lambda h: normalize_bdf(bad(None)),
        ArgumentTypeError,
    ),
    "Sysfs(5)": Bad("Sysfs.__init__", "root", lambda h: Sysfs(bad(5)), ArgumentTypeError),
    "find('1234', '11e8')": Bad(
        "Sysfs.find",
        "vendor",
        lambda h: h.sysfs.find(bad("1234"), bad("11e8")),
        ArgumentTypeError,
    ),
    "find(0x1234, 0x1_0000)": Bad(
        "Sysfs.find", "device", lambda h: h.sysfs.find(0x1234, 0x1_0000), OutOfRangeError
    ),
    "find_class('0x0108')": Bad(
        "Sysfs.find_class",
        "class_code",
        lambda h: h.sysfs.find_class(bad("0x0108")),
        ArgumentTypeError,
    ),
    "find_class(mask=1 << 24)": Bad(
        "Sysfs.find_class",
        "mask",
        lambda h: h.sysfs.find_class(0x010802, mask=1 << 24),
        OutOfRangeError,
    ),
    "group_members(-1)": Bad(
        "Sysfs.group_members", "group", lambda h: h.sysfs.group_members(-1), OutOfRangeError
    ),
    "bind(10)": Bad("Sysfs.bind", "bdf", lambda h: h.sysfs.bind(bad(10)), ArgumentTypeError),
    "reset_methods(10)": Bad(
        "Sysfs.reset_methods", "bdf", lambda h: h.sysfs.reset_methods(bad(10)), ArgumentTypeError
    ),
    "set_reset_methods(10)": Bad(
        "Sysfs.set_reset_methods",
        "bdf",
        lambda h: h.sysfs.set_reset_methods(bad(10), ["flr"]),
        ArgumentTypeError,
    ),
    "set_reset_methods(methods='flr')": Bad(
        "Sysfs.set_reset_methods",
        "methods",
        lambda h: h.sysfs.set_reset_methods(BDF, bad("flr")),
        ArgumentTypeError,
    ),
    "bind(driver='../x')": Bad(
        "Sysfs.bind", "driver", lambda h: h.sysfs.bind(BDF, "../x"), InvalidArgumentError
    ),
    "bind(driver=None)": Bad(
        "Sysfs.bind",
        "driver",
        lambda h: h.sysfs.bind(BDF, bad(None)),
        ArgumentTypeError,
    ),
    "bind(force=1)": Bad(
        "Sysfs.bind",
        "force",
        lambda h: h.sysfs.bind(BDF, force=bad(1)),
        ArgumentTypeError,
    ),
    "total_vfs(10)": Bad(
        "Sysfs.total_vfs", "bdf", lambda h: h.sysfs.total_vfs(bad(10)), ArgumentTypeError
    ),
    "vfs(10)": Bad("Sysfs.vfs", "bdf", lambda h: h.sysfs.vfs(bad(10)), ArgumentTypeError),
    "physfn(10)": Bad("Sysfs.physfn", "bdf", lambda h: h.sysfs.physfn(bad(10)), ArgumentTypeError),
    "disable_vfs(10)": Bad(
        "Sysfs.disable_vfs", "bdf", lambda h: h.sysfs.disable_vfs(bad(10)), ArgumentTypeError
    ),
    "enable_vfs('zz')": Bad(
        "Sysfs.enable_vfs", "bdf", lambda h: h.sysfs.enable_vfs("zz", 1), InvalidArgumentError
    ),
    "enable_vfs(count='1')": Bad(
        "Sysfs.enable_vfs", "count", lambda h: h.sysfs.enable_vfs(BDF, bad("1")), ArgumentTypeError
    ),
    "enable_vfs(count=0)": Bad(
        "Sysfs.enable_vfs", "count", lambda h: h.sysfs.enable_vfs(BDF, 0), OutOfRangeError
    ),
    "enable_vfs(autoprobe=1)": Bad(
        "Sysfs.enable_vfs",
        "autoprobe",
        lambda h: h.sysfs.enable_vfs(BDF, 1, autoprobe=bad(1)),
        ArgumentTypeError,
    ),
    # vfs_enabled() checks at the call, not when its block is entered
    "vfs_enabled(None)": Bad(
        "Sysfs.vfs_enabled", "bdf", lambda h: h.sysfs.vfs_enabled(bad(None), 1), ArgumentTypeError
    ),
    "vfs_enabled(count=2**64)": Bad(
        "Sysfs.vfs_enabled", "count", lambda h: h.sysfs.vfs_enabled(BDF, 2**64), OutOfRangeError
    ),
    "vfs_enabled(autoprobe='no')": Bad(
        "Sysfs.vfs_enabled",
        "autoprobe",
        lambda h: h.sysfs.vfs_enabled(BDF, 1, autoprobe=bad("no")),
        ArgumentTypeError,
    ),
    # bound() checks at the call, not when its block is entered
    "bound('zz')": Bad("Sysfs.bound", "bdf", lambda h: h.sysfs.bound("zz"), InvalidArgumentError),
    "bound(driver='')": Bad(
        "Sysfs.bound", "driver", lambda h: h.sysfs.bound(BDF, ""), InvalidArgumentError
    ),
    "bound(force='yes')": Bad(
        "Sysfs.bound",
        "force",
        lambda h: h.sysfs.bound(BDF, force=bad("yes")),
        ArgumentTypeError,
    ),
    "unbind(b'00:0a.0')": Bad(
        "Sysfs.unbind",
        "bdf",
        lambda h: h.sysfs.unbind(bad(b"00:0a.0")),
        ArgumentTypeError,
    ),
    "unbind(force=None)": Bad(
        "Sysfs.unbind",
        "force",
        lambda h: h.sysfs.unbind(BDF, force=bad(None)),
        ArgumentTypeError,
    ),
    **{
        f"{name}(timeout={shown})": Bad(
            f"Sysfs.{name}",
            "timeout",
            _calls("sysfs", name, BDF, force=True, timeout=value),
            error,
        )
        for name in ("bind", "unbind")
        for shown, value, error in (
            ("-1", -1, OutOfRangeError),
            ("nan", math.nan, OutOfRangeError),
            ("'5'", "5", ArgumentTypeError),
        )
    },
    **{
        f"{name}(on_wait=1)": Bad(
            f"Sysfs.{name}", "on_wait", _calls("sysfs", name, BDF, on_wait=1), ArgumentTypeError
        )
        for name in ("bind", "unbind")
    },
    **{
        f"{name}('00:0a')": Bad(
            f"Sysfs.{name}",
            "bdf",
            _calls("sysfs", name, "00:0a"),
            InvalidArgumentError,
        )
        for name in ("config", "device", "power_state", "rom", "subsystem", "users", "vfio_cdev")
    },
    # -- opening: checked before sysfs is read or a node opened
    "IommuContext(backend=1)": Bad(
        "IommuContext.__init__",
        "backend",
        lambda h: IommuContext(bad(1)),
        ArgumentTypeError,
    ),
    "IommuContext(backend='vfio')": Bad(
        "IommuContext.__init__",
        "backend",
        lambda h: IommuContext("vfio"),
        InvalidArgumentError,
    ),
    "IommuContext(sysfs=path)": Bad(
        "IommuContext.__init__",
        "sysfs",
        lambda h: IommuContext(sysfs=bad("/sys/bus/pci")),
        ArgumentTypeError,
    ),
    "context.open(None)": Bad(
        "IommuContext.open",
        "bdf",
        lambda h: IommuContext(sysfs=h.sysfs).open(bad(None)),
        ArgumentTypeError,
    ),
    "context.open('00:0a')": Bad(
        "IommuContext.open",
        "bdf",
        lambda h: IommuContext(sysfs=h.sysfs).open("00:0a"),
        InvalidArgumentError,
    ),
    "context.open(vf_token=str)": Bad(
        "IommuContext.open",
        "vf_token",
        lambda h: IommuContext(sysfs=h.sysfs).open(BDF, vf_token=bad(str(uuid.uuid4()))),
        ArgumentTypeError,
    ),
    "Device.open(vf_token=bytes)": Bad(
        "Device.open",
        "vf_token",
        lambda h: Device.open(BDF, sysfs=h.sysfs, vf_token=bad(uuid.uuid4().bytes)),
        ArgumentTypeError,
    ),
    "Device.open(None)": Bad(
        "Device.open", "bdf", lambda h: Device.open(bad(None)), ArgumentTypeError
    ),
    "Device.open(sysfs=path)": Bad(
        "Device.open",
        "sysfs",
        lambda h: Device.open(BDF, sysfs=bad("/sys/bus/pci")),
        ArgumentTypeError,
    ),
    "Device.open(backend='vfio')": Bad(
        "Device.open",
        "backend",
        lambda h: Device.open(BDF, sysfs=h.sysfs, backend="vfio"),
        InvalidArgumentError,
    ),
    "Device(bdf=10)": Bad(
        "Device.__init__",
        "bdf",
        lambda h: Device(bad(10), 3, h.container),
        ArgumentTypeError,
    ),
    "Device(fd='3')": Bad(
        "Device.__init__",
        "fd",
        lambda h: Device(BDF, bad("3"), h.container),
        ArgumentTypeError,
    ),
    "Device(iommu='/dev/iommu')": Bad(
        "Device.__init__",
        "iommu",
        lambda h: Device(BDF, 3, bad("/dev/iommu")),
        ArgumentTypeError,
    ),
    "Device(driver=5)": Bad(
        "Device.__init__",
        "driver",
        lambda h: Device(BDF, 3, h.container, bad(5)),
        ArgumentTypeError,
    ),
    "Device(group=10)": Bad(
        "Device.__init__",
        "group",
        lambda h: Device(BDF, 3, h.container, None, group=bad(10)),
        ArgumentTypeError,
    ),
    "Container(5)": Bad(
        "Container.__init__", "path", lambda h: Container(bad(5)), ArgumentTypeError
    ),
    "Ioas(b'/dev/iommu')": Bad(
        "Ioas.__init__",
        "path",
        lambda h: Ioas(bad(b"/dev/iommu")),
        ArgumentTypeError,
    ),
    "Group('10')": Bad(
        "Group.__init__",
        "number",
        lambda h: Group(bad("10"), h.container),
        ArgumentTypeError,
    ),
    "Group(container=None)": Bad(
        "Group.__init__",
        "container",
        lambda h: Group(10, bad(None)),
        ArgumentTypeError,
    ),
    "Group(sysfs=path)": Bad(
        "Group.__init__",
        "sysfs",
        lambda h: Group(10, h.container, bad("/sys/bus/pci")),
        ArgumentTypeError,
    ),
    # -- what an open device makes, given a closed one: checked before it is used
    "Region('dev', 0)": Bad(
        "Region.__init__",
        "device",
        lambda h: Region(bad("dev"), 0),
        ArgumentTypeError,
    ),
    "Region(index=True)": Bad(
        "Region.__init__", "index", lambda h: Region(h.device, True), ArgumentTypeError
    ),
    "ConfigSpace(7)": Bad(
        "ConfigSpace.__init__",
        "region",
        lambda h: ConfigSpace(bad(7)),
        ArgumentTypeError,
    ),
    "Interrupts(device=None)": Bad(
        "Interrupts.__init__",
        "device",
        lambda h: Interrupts(bad(None), _info(), 1),
        ArgumentTypeError,
    ),
    "Interrupts(info=1)": Bad(
        "Interrupts.__init__",
        "info",
        lambda h: Interrupts(h.device, bad(1), 1),
        ArgumentTypeError,
    ),
    "Interrupts(count=2 of 1)": Bad(
        "Interrupts.__init__", "count", lambda h: Interrupts(h.device, _info(), 2), OutOfRangeError
    ),
    "Cookie(device='dev')": Bad(
        "Cookie.__init__",
        "device",
        lambda h: Cookie(bad("dev"), 2, 0, PAGE, MemoryAttr.UC),
        ArgumentTypeError,
    ),
    "Cookie(index=2**40)": Bad(
        "Cookie.__init__",
        "index",
        lambda h: Cookie(h.device, 1 << 40, 0, PAGE, MemoryAttr.UC),
        OutOfRangeError,
    ),
    # ctypes kept the low 64 bits: offset 0, then length 4096
    "Cookie(offset=2**64)": Bad(
        "Cookie.__init__",
        "offset",
        lambda h: Cookie(h.device, 2, 1 << 64, PAGE, MemoryAttr.UC),
        OutOfRangeError,
    ),
    "Cookie(length=2**64 + 4096)": Bad(
        "Cookie.__init__",
        "length",
        lambda h: Cookie(h.device, 2, 0, (1 << 64) + PAGE, MemoryAttr.UC),
        OutOfRangeError,
    ),
    "Cookie(attr=7)": Bad(
        "Cookie.__init__",
        "attr",
        lambda h: Cookie(h.device, 2, 0, PAGE, bad(7)),
        InvalidArgumentError,
    ),
    "supported_attrs('dev')": Bad(
        "cookie.supported_attrs",
        "device",
        lambda h: cookie.supported_attrs(bad("dev"), 0),
        ArgumentTypeError,
    ),
    "supported_attrs(index=2**40)": Bad(
        "cookie.supported_attrs",
        "index",
        lambda h: cookie.supported_attrs(h.device, 1 << 40),
        OutOfRangeError,
    ),
    "wc_refused_ranges(None)": Bad(
        "cookie.wc_refused_ranges",
        "device",
        lambda h: cookie.wc_refused_ranges(bad(None), 0),
        ArgumentTypeError,
    ),
    "wc_refused_ranges(index=2**40)": Bad(
        "cookie.wc_refused_ranges",
        "index",
        lambda h: cookie.wc_refused_ranges(h.device, 1 << 40),
        OutOfRangeError,
    ),
    "live_cookies(None)": Bad(
        "cookie.live_cookies",
        "device",
        lambda h: cookie.live_cookies(bad(None)),
        ArgumentTypeError,
    ),
    # -- mappings (of anonymous memory; the accessors on both backends)
    "Mapping(mm=bytearray)": Bad(
        "Mapping.__init__",
        "mm",
        lambda h: Mapping(bad(bytearray(PAGE)), "anon"),
        ArgumentTypeError,
    ),
    "Mapping(name=None)": Bad(
        "Mapping.__init__",
        "name",
        lambda h: Mapping(mmap.mmap(-1, PAGE), bad(None)),
        ArgumentTypeError,
    ),
    "Mapping(region_offset=-1)": Bad(
        "Mapping.__init__",
        "region_offset",
        lambda h: Mapping(mmap.mmap(-1, PAGE), "anon", -1),
        OutOfRangeError,
    ),
    "Mapping(cookie=1)": Bad(
        "Mapping.__init__",
        "cookie",
        lambda h: Mapping(mmap.mmap(-1, PAGE), "anon", 0, bad(1)),
        ArgumentTypeError,
    ),
    **_accessor_rows(),
    "read_bytes(0.0, 4)": Bad(
        "Mapping.read_bytes",
        "offset",
        lambda h: h.window.read_bytes(bad(0.0), 4),
        ArgumentTypeError,
    ),
    "read_bytes(0, 2**70)": Bad(
        "Mapping.read_bytes", "length", lambda h: h.window.read_bytes(0, 1 << 70), OutOfRangeError
    ),
    "write_bytes(None, b'x')": Bad(
        "Mapping.write_bytes",
        "offset",
        lambda h: h.window.write_bytes(bad(None), b"x"),
        ArgumentTypeError,
    ),
    "write_bytes(0, 'text')": Bad(
        "Mapping.write_bytes",
        "data",
        lambda h: h.window.write_bytes(0, bad("text")),
        ArgumentTypeError,
    ),
    "copy_from(True, buf)": Bad(
        "Mapping.copy_from",
        "offset",
        lambda h: h.window.copy_from(True, bytearray(4)),
        ArgumentTypeError,
    ),
    # was BufferError
    "copy_from(0, bytes)": Bad(
        "Mapping.copy_from", "buffer", lambda h: h.window.copy_from(0, bytes(4)), ArgumentTypeError
    ),
    # -- DMA through a fake IOMMU
    "DmaSpace('iommu')": Bad(
        "DmaSpace.__init__",
        "backend",
        lambda h: DmaSpace(bad("iommu")),
        ArgumentTypeError,
    ),
    "allocate('4096')": Bad(
        "DmaSpace.allocate",
        "size",
        lambda h: h.space.allocate(bad("4096")),
        ArgumentTypeError,
    ),
    "allocate(2**64)": Bad(
        "DmaSpace.allocate", "size", lambda h: h.space.allocate(1 << 64), OutOfRangeError
    ),
    "allocate(hugepages=1)": Bad(
        "DmaSpace.allocate",
        "hugepages",
        lambda h: h.space.allocate(PAGE, hugepages=bad(1)),
        ArgumentTypeError,
    ),
    "allocate(limit=0)": Bad(
        "DmaSpace.allocate", "limit", lambda h: h.space.allocate(PAGE, limit=0), OutOfRangeError
    ),
    "allocate(writable_by_device='no')": Bad(
        "DmaSpace.allocate",
        "writable_by_device",
        lambda h: h.space.allocate(PAGE, writable_by_device=bad("no")),
        ArgumentTypeError,
    ),
    "map_memory(bytearray)": Bad(
        "DmaSpace.map_memory",
        "memory",
        lambda h: h.space.map_memory(bad(bytearray(PAGE))),
        ArgumentTypeError,
    ),
    "map_memory(read-only mmap)": Bad(
        "DmaSpace.map_memory",
        "memory",
        lambda h: h.space.map_memory(mmap.mmap(-1, PAGE, prot=mmap.PROT_READ)),
        ArgumentTypeError,
    ),
    "map_memory(limit=-1)": Bad(
        "DmaSpace.map_memory",
        "limit",
        lambda h: h.space.map_memory(mmap.mmap(-1, PAGE), limit=-1),
        OutOfRangeError,
    ),
    "map_memory(writable_by_device=0)": Bad(
        "DmaSpace.map_memory",
        "writable_by_device",
        lambda h: h.space.map_memory(mmap.mmap(-1, PAGE), writable_by_device=bad(0)),
        ArgumentTypeError,
    ),
    "forget(iova)": Bad(
        "DmaSpace.forget",
        "buf",
        lambda h: h.space.forget(bad(h.buffer.iova)),
        ArgumentTypeError,
    ),
    "DmaBuffer(dma=iommu)": Bad(
        "DmaBuffer.__init__",
        "dma",
        lambda h: DmaBuffer(bad(h.iommu), PAGE),
        ArgumentTypeError,
    ),
    "DmaBuffer(size=True)": Bad(
        "DmaBuffer.__init__", "size", lambda h: DmaBuffer(h.space, True), ArgumentTypeError
    ),
    "DmaBuffer(hugepages=None)": Bad(
        "DmaBuffer.__init__",
        "hugepages",
        lambda h: DmaBuffer(h.space, PAGE, hugepages=bad(None)),
        ArgumentTypeError,
    ),
    "DmaBuffer(limit=2**65)": Bad(
        "DmaBuffer.__init__",
        "limit",
        lambda h: DmaBuffer(h.space, PAGE, limit=1 << 65),
        OutOfRangeError,
    ),
    "DmaBuffer(writable_by_device=1)": Bad(
        "DmaBuffer.__init__",
        "writable_by_device",
        lambda h: DmaBuffer(h.space, PAGE, writable_by_device=bad(1)),
        ArgumentTypeError,
    ),
    "DmaBuffer(memory=closed mmap)": Bad(
        "DmaBuffer.__init__",
        "memory",
        lambda h: DmaBuffer(h.space, 0, memory=_closed()),
        InvalidArgumentError,
    ),
    "IovaAllocator(ranges=[(1, 0)])": Bad(
        "IovaAllocator.__init__",
        "ranges",
        lambda h: IovaAllocator([(1, 0)]),
        InvalidArgumentError,
    ),
    "IovaAllocator(ranges='0-1')": Bad(
        "IovaAllocator.__init__",
        "ranges",
        lambda h: IovaAllocator(bad("0-1")),
        ArgumentTypeError,
    ),
    "IovaAllocator(page_size=4095)": Bad(
        "IovaAllocator.__init__",
        "page_size",
        lambda h: IovaAllocator([(0, 1 << 39)], page_size=4095),
        OutOfRangeError,
    ),
    "allocator.allocate(None)": Bad(
        "IovaAllocator.allocate",
        "size",
        lambda h: h.allocator.allocate(bad(None)),
        ArgumentTypeError,
    ),
    "allocator.allocate(align=3 pages)": Bad(
        "IovaAllocator.allocate",
        "align",
        lambda h: h.allocator.allocate(PAGE, align=3 * PAGE),
        OutOfRangeError,
    ),
    "allocator.allocate(limit='4G')": Bad(
        "IovaAllocator.allocate",
        "limit",
        lambda h: h.allocator.allocate(PAGE, limit=bad("4G")),
        ArgumentTypeError,
    ),
    "allocator.restrict([(2, 1)])": Bad(
        "IovaAllocator.restrict",
        "ranges",
        lambda h: h.allocator.restrict([(2, 1)]),
        InvalidArgumentError,
    ),
    "allocator.restrict(None)": Bad(
        "IovaAllocator.restrict",
        "ranges",
        lambda h: h.allocator.restrict(bad(None)),
        ArgumentTypeError,
    ),
    "space.allocate(iova='va')": Bad(
        "DmaSpace.allocate",
        "iova",
        lambda h: h.space.allocate(PAGE, iova=bad("va")),
        ArgumentTypeError,
    ),
    "space.allocate(iova=taken)": Bad(
        "DmaSpace.allocate",
        "iova",
        lambda h: h.space.allocate(PAGE, iova=h.buffer.iova),
        OutOfRangeError,
    ),
    "space.map_memory(iova=-1)": Bad(
        "DmaSpace.map_memory",
        "iova",
        lambda h: h.space.map_memory(mmap.mmap(-1, PAGE), iova=-1),
        OutOfRangeError,
    ),
    "DmaBuffer(iova=1.0)": Bad(
        "DmaBuffer.__init__",
        "iova",
        lambda h: DmaBuffer(h.space, PAGE, iova=bad(1.0)),
        ArgumentTypeError,
    ),
    "allocator.reserve(iova=odd)": Bad(
        "IovaAllocator.reserve",
        "iova",
        lambda h: h.allocator.reserve(PAGE + 1, PAGE),
        OutOfRangeError,
    ),
    "allocator.reserve(size=0)": Bad(
        "IovaAllocator.reserve",
        "size",
        lambda h: h.allocator.reserve(PAGE, 0),
        OutOfRangeError,
    ),
    "allocator.free(not allocated)": Bad(
        "IovaAllocator.free", "iova", lambda h: h.allocator.free(0x1234000), InvalidArgumentError
    ),
}


def _closed() -> mmap.mmap:
    memory = mmap.mmap(-1, PAGE)
    memory.close()
    return memory


# -- the tests ----------------------------------------------------------------


def _device_rows() -> dict[str, Any]:
    from guest.test_arguments import ROWS  # noqa: PLC0415 - the guest table, read only for its keys

    return ROWS


def test_every_parameter_of_the_public_api_has_a_bad_input_row() -> None:
    api = walk_api()
    wanted = api_parameters(api)
    have = {(row.target, row.param) for row in HOST_ROWS.values()}
    have |= {(row.target, row.param) for row in _device_rows().values()}
    have |= generated_rows(api)
    missing = sorted(wanted - have)
    assert not missing, "no bad-input row for:\n" + "\n".join(f"{t}({p})" for t, p in missing)
    # and no row for what is not public (a renamed parameter, a removed call)
    assert not sorted(have - wanted)


def test_the_walk_reaches_what_calls_return() -> None:
    # A sanity check of the walk itself: it follows returns and attributes.
    api = walk_api()
    for cls in (Region, Mapping, Cookie, ConfigSpace, Interrupts, DmaBuffer, DmaSpace, Group):
        assert cls in api.classes, cls
    assert {IovaAllocator, Container, Ioas, Sysfs, PciDevice, CookieInfo} <= api.classes
    assert ("Mapping.read32", "offset") in api_parameters(api)  # the C helper's signature
    assert ("cookie.wc_refused_ranges", "index") in api_parameters(api)
    # __exit__(*exc: object) takes anything; nothing else is let off
    let_off = {
        (key, name)
        for key, signature in api.signatures.items()
        for name, parameter in signature.parameters.items()
        if takes_anything(parameter)
    }
    assert {name for _, name in let_off} == {"exc"}


@pytest.fixture(params=["c", "python"])
def host(
    request: pytest.FixtureRequest, sysfs_root: Path, fake_device: FakeDevice
) -> Iterator[Host]:
    fake_device(BDF, 0x1234, 0x11E8, 0x00FF00, driver="vfio-pci", group=10)
    memory = mmap.mmap(-1, PAGE)
    window: Mapping | _PyWindow = (
        Mapping(memory, "anon") if request.param == "c" else _PyWindow(memory, "anon")
    )
    iommu = FakeIommu()
    space = DmaSpace(iommu)
    buffer = space.allocate(PAGE)
    device = DeviceFd(BDF, -1, None)
    yield Host(
        sysfs=Sysfs(sysfs_root),
        tree=sysfs_root.parent.parent,
        window=window,
        iommu=iommu,
        space=space,
        buffer=buffer,
        allocator=IovaAllocator([(0, (1 << 39) - 1)]),
        device=device,
        container=Container.__new__(Container),
    )
    buffer.close()
    window._release()


def _names(error: BaseException, param: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(param)}(?!\w)", str(error)) is not None


@pytest.mark.parametrize("name", HOST_ROWS)
def test_a_bad_argument_is_refused_before_anything_changes(host: Host, name: str) -> None:
    row = HOST_ROWS[name]
    before = host.snapshot()
    with pytest.raises(row.error) as info:
        row.call(host)
    error = info.value
    assert isinstance(error, TypeError if row.error is ArgumentTypeError else ValueError)
    assert _names(error, row.param), f"{row.target}: the message does not name {row.param}: {error}"
    assert host.snapshot() == before


@pytest.mark.parametrize("cls", sorted(RECORD_SAMPLES, key=str))
def test_a_record_refuses_a_field_of_the_wrong_type(cls: type[Any]) -> None:
    sample: Any = RECORD_SAMPLES[cls]
    assert type(sample) is cls
    for field in dataclasses.fields(cls):
        with pytest.raises(ArgumentTypeError) as info:
            dataclasses.replace(sample, **{field.name: WRONG})
        assert _names(info.value, field.name), str(info.value)
        assert f"{cls.__name__}()" in str(info.value)
    if any(f.type in (int, "int") for f in dataclasses.fields(cls)):
        name = next(f.name for f in dataclasses.fields(cls) if f.type in (int, "int"))
        with pytest.raises(ArgumentTypeError, match="not True"):  # a bool is no int
            dataclasses.replace(sample, **{name: True})


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in vars(pyvfio.errors).values()
        if isinstance(c, type) and issubclass(c, VfioError) and c is not VmArgumentError
    ],
)
def test_an_error_class_refuses_arguments_of_the_wrong_type(cls: type[VfioError]) -> None:
    for param, bad in ERROR_ARGUMENTS.items():
        kwargs: dict[str, Any] = {"message": "failed", param: bad}
        with pytest.raises(ArgumentTypeError) as info:
            cls(**kwargs)
        assert _names(info.value, param), str(info.value)
    assert str(cls("failed", device=BDF, operation="open", errno=16, hint="wait")).startswith(BDF)


def test_the_vm_argument_error_refuses_arguments_of_the_wrong_type() -> None:
    for kwargs in (
        {"parameter": 5, "message": "failed"},
        {"parameter": "cpus", "message": 5},
        {"parameter": "cpus", "message": "failed", "hint": ["a list"]},
    ):
        with pytest.raises(ArgumentTypeError):
            VmArgumentError(**kwargs)
    error = VmArgumentError("cpus", "0 is not between 1 and 2", hint="--cpus 2")
    assert error.parameter == "cpus" and "vm run: cpus" in str(error)
