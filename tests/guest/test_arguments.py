# SPDX-License-Identifier: Apache-2.0
"""Bad arguments, fed to a real open device: each is refused at the call with
a TypeError or the library's ValueError naming the parameter, and leaves
nothing behind (issue 24).

One table, beside test_errors.py's: every row runs on one edu device opened
once per module (on vfio_pci_cookie where the module builds, so cookies are
counted), through whichever backend the boot uses; the suite runs it on 6.1
(legacy) and on the debug kernel with PYVFIO_BACKEND=iommufd.  After each
row: registers, MSI and a plain map of BAR0 work, no fd, mapping, DMA buffer
or cookie is left over.  tests/host/test_arguments.py checks that every
parameter of the public API has a row here or in its own table.
"""

from __future__ import annotations

import asyncio
import math
import mmap
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyvfio import (
    ArgumentTypeError,
    Container,
    Device,
    Group,
    InvalidArgumentError,
    IommuContext,
    Mapping,
    OutOfRangeError,
    Region,
    Sysfs,
    VfioError,
    kmod,
)
from pyvfio.cookie import DRIVER as COOKIE_DRIVER
from pyvfio.cookie import Cookie, MemoryAttr, live_cookies, supported_attrs, wc_refused_ranges
from pyvfio.dma import DmaBuffer
from pyvfio.irq import Interrupts, IrqIndex
from pyvfio.p2p import PeerMapping
from pyvfio.vm import EDU_ID

EDU_ID_REGISTER = 0x010000ED  # edu's BAR0 word 0: what a working device answers
PAGE = mmap.PAGESIZE


def bad(value: object) -> Any:
    """Marks the argument under test: of a type or value the call must refuse."""
    return value


@dataclass
class Opened:
    dev: Device
    bar0: Mapping
    msi: Interrupts
    buf: DmaBuffer
    cookies: bool  # bound to vfio_pci_cookie: cookies can be made and counted


@dataclass(frozen=True)
class Bad:
    """A bad argument: ``call`` passes it to ``target`` as ``param``."""

    target: str
    param: str
    call: Callable[[Opened], object]
    error: type[VfioError]
    needs: str | None = None  # "legacy" or "iommufd": the backend dev.iommu must be
    # What the message starts with (the device, else the IOMMU), or None.
    names: Callable[[Opened], str] | None = lambda o: o.dev.bdf


def _iommu_name(o: Opened) -> str:
    return o.dev.iommu.name


def _context(o: Opened) -> IommuContext:
    context = o.dev.context
    assert context is not None  # Device.open makes one
    return context


# A bad value for each of a peer mapping's own parameters, and its error.
PEER_BAD: list[tuple[str, object, type[VfioError]]] = [
    ("index", "0", ArgumentTypeError),
    ("index", 6, OutOfRangeError),
    ("offset", 1, OutOfRangeError),
    ("size", True, ArgumentTypeError),
    ("limit", 1 << 65, OutOfRangeError),
    ("iova", "0x1000", ArgumentTypeError),
    ("writable_by_device", 1, ArgumentTypeError),
]


# ... and of what only the constructor takes.
PEER_INIT_BAD: list[tuple[str, object, type[VfioError]]] = [
    ("device", "edu", ArgumentTypeError),
    ("dma", "dma", ArgumentTypeError),
]


def _peer(*, context: bool, **spoilt: object) -> Callable[[Opened], object]:
    """context.dma_map_peer(dev, 0, ...) or PeerMapping(...) of BAR0, one
    argument spoilt."""

    def call(o: Opened) -> object:
        ctx = _context(o)
        args: dict[str, object] = {"device": o.dev, "index": 0, **spoilt}
        device, index = args.pop("device"), args.pop("index")
        if context:
            return ctx.dma_map_peer(device, index, **args)  # type: ignore[arg-type]
        dma = args.pop("dma", ctx.dma)
        kwargs: dict[str, object] = {"offset": 0, "size": None, "limit": None, "iova": None}
        kwargs |= {"writable_by_device": True, **args}
        return PeerMapping(dma, device, index, **kwargs)  # type: ignore[arg-type]

    return call


def _container(o: Opened) -> Container:
    assert isinstance(o.dev.iommu, Container)
    return o.dev.iommu


def _calls(
    on: Callable[[Opened], object], method: str, *args: object, **kwargs: object
) -> Callable[[Opened], object]:
    """``on(opened).<method>(*args, **kwargs)``, for rows made in a loop."""

    def call(o: Opened) -> object:
        return getattr(on(o), method)(*args, **kwargs)

    return call


def _config(o: Opened) -> object:
    return o.dev.config


def _iommu_call(method: str, param: str, value: object) -> Callable[[Opened], object]:
    """``dev.iommu.<method>(...)`` with good arguments but ``param=value``."""

    def call(o: Opened) -> object:
        good: dict[str, Any] = {
            "map_dma": {"vaddr": o.buf.vaddr, "iova": 1 << 40, "size": PAGE},
            "unmap_dma": {"iova": o.buf.iova, "size": PAGE},
        }.get(method, {"device_fd": o.dev.fd, "bdf": o.dev.bdf})
        return getattr(o.dev.iommu, method)(**{**good, param: value})

    return call


def _edu_region(o: Opened) -> Region:
    return o.dev.region(0)


ROWS: dict[str, Bad] = {
    # -- the device
    "region(True)": Bad("Device.region", "index", lambda o: o.dev.region(True), ArgumentTypeError),
    "irq_info(2**40)": Bad(  # answered for index 0
        "Device.irq_info", "index", lambda o: o.dev.irq_info(1 << 40), OutOfRangeError
    ),
    "irq_info(-1)": Bad(  # accepted: count 0
        "Device.irq_info", "index", lambda o: o.dev.irq_info(-1), OutOfRangeError
    ),
    "irq_info('MSI')": Bad(
        "Device.irq_info",
        "index",
        lambda o: o.dev.irq_info(bad("MSI")),
        ArgumentTypeError,
    ),
    "enable_irq(True)": Bad(
        "Device.enable_irq", "index", lambda o: o.dev.enable_irq(True), ArgumentTypeError
    ),
    "enable_irq(99)": Bad(
        "Device.enable_irq", "index", lambda o: o.dev.enable_irq(99), OutOfRangeError
    ),
    "enable_irq(count='1')": Bad(
        "Device.enable_irq",
        "count",
        lambda o: o.dev.enable_irq(IrqIndex.INTX, bad("1")),
        ArgumentTypeError,
    ),
    "enable_irq(count=0)": Bad(
        "Device.enable_irq", "count", lambda o: o.dev.enable_irq(IrqIndex.INTX, 0), OutOfRangeError
    ),
    "dma_buffer('4096')": Bad(
        "Device.dma_buffer",
        "size",
        lambda o: o.dev.dma_buffer(bad("4096")),
        ArgumentTypeError,
    ),
    "dma_buffer(hugepages='no')": Bad(
        "Device.dma_buffer",
        "hugepages",
        lambda o: o.dev.dma_buffer(PAGE, hugepages=bad("no")),
        ArgumentTypeError,
    ),
    "dma_buffer(limit=-1)": Bad(
        "Device.dma_buffer", "limit", lambda o: o.dev.dma_buffer(PAGE, limit=-1), OutOfRangeError
    ),
    "dma_buffer(writable_by_device=None)": Bad(
        "Device.dma_buffer",
        "writable_by_device",
        lambda o: o.dev.dma_buffer(PAGE, writable_by_device=bad(None)),
        ArgumentTypeError,
    ),
    "context.dma_buffer(True)": Bad(
        "IommuContext.dma_buffer",
        "size",
        lambda o: _context(o).dma_buffer(bad(True)),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "context.dma_buffer(hugepages=1)": Bad(
        "IommuContext.dma_buffer",
        "hugepages",
        lambda o: _context(o).dma_buffer(PAGE, hugepages=bad(1)),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "context.dma_buffer(limit=0)": Bad(
        "IommuContext.dma_buffer",
        "limit",
        lambda o: _context(o).dma_buffer(PAGE, limit=0),
        OutOfRangeError,
        names=_iommu_name,
    ),
    "context.dma_buffer(writable_by_device='yes')": Bad(
        "IommuContext.dma_buffer",
        "writable_by_device",
        lambda o: _context(o).dma_buffer(PAGE, writable_by_device=bad("yes")),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "context.dma_map_peer(device=5)": Bad(
        "IommuContext.dma_map_peer",
        "device",
        lambda o: _context(o).dma_map_peer(bad(5), 0),
        ArgumentTypeError,
        names=None,
    ),
    **{
        f"context.dma_map_peer({param}={value!r})": Bad(
            "IommuContext.dma_map_peer",
            param,
            _peer(context=True, **{param: value}),
            error,
        )
        for param, value, error in PEER_BAD
    },
    **{
        f"PeerMapping({param}={value!r})": Bad(
            "PeerMapping.__init__",
            param,
            _peer(context=False, **{param: value}),
            error,
            names=None if param in ("device", "dma") else (lambda o: o.dev.bdf),
        )
        for param, value, error in PEER_BAD + PEER_INIT_BAD
    },
    "context.dma_map(bytes)": Bad(
        "IommuContext.dma_map",
        "memory",
        lambda o: _context(o).dma_map(bad(bytes(PAGE))),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "context.dma_map(limit=2**65)": Bad(
        "IommuContext.dma_map",
        "limit",
        lambda o: _context(o).dma_map(mmap.mmap(-1, PAGE), limit=1 << 65),
        OutOfRangeError,
        names=_iommu_name,
    ),
    "context.dma_map(writable_by_device=None)": Bad(
        "IommuContext.dma_map",
        "writable_by_device",
        lambda o: _context(o).dma_map(mmap.mmap(-1, PAGE), writable_by_device=bad(None)),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "dma_buffer(iova=True)": Bad(
        "Device.dma_buffer",
        "iova",
        lambda o: o.dev.dma_buffer(PAGE, iova=bad(True)),
        ArgumentTypeError,
    ),
    "dma_buffer(iova=taken)": Bad(
        "Device.dma_buffer",
        "iova",
        lambda o: o.dev.dma_buffer(PAGE, iova=o.buf.iova),
        OutOfRangeError,
    ),
    "dma_map(iova=2**64)": Bad(
        "Device.dma_map",
        "iova",
        lambda o: o.dev.dma_map(mmap.mmap(-1, PAGE), iova=1 << 64),
        OutOfRangeError,
    ),
    "context.dma_buffer(iova='va')": Bad(
        "IommuContext.dma_buffer",
        "iova",
        lambda o: _context(o).dma_buffer(PAGE, iova=bad("va")),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "context.dma_map(iova=odd)": Bad(
        "IommuContext.dma_map",
        "iova",
        lambda o: _context(o).dma_map(mmap.mmap(-1, PAGE), iova=0x100001),
        OutOfRangeError,
        names=_iommu_name,
    ),
    "dma_map(bytearray)": Bad(
        "Device.dma_map",
        "memory",
        lambda o: o.dev.dma_map(bad(bytearray(PAGE))),
        ArgumentTypeError,
    ),
    "dma_map(limit='4G')": Bad(
        "Device.dma_map",
        "limit",
        lambda o: o.dev.dma_map(mmap.mmap(-1, PAGE), limit=bad("4G")),
        ArgumentTypeError,
    ),
    "dma_map(writable_by_device=1)": Bad(
        "Device.dma_map",
        "writable_by_device",
        lambda o: o.dev.dma_map(mmap.mmap(-1, PAGE), writable_by_device=bad(1)),
        ArgumentTypeError,
    ),
    "reset('soon')": Bad(
        "Device.reset",
        "timeout",
        lambda o: o.dev.reset(bad("soon")),
        ArgumentTypeError,
    ),
    "reset(-1)": Bad("Device.reset", "timeout", lambda o: o.dev.reset(-1), OutOfRangeError),
    "reset(method=1)": Bad(
        "Device.reset", "method", lambda o: o.dev.reset(method=bad(1)), ArgumentTypeError
    ),
    "reset(method='nope')": Bad(
        "Device.reset", "method", lambda o: o.dev.reset(method="nope"), InvalidArgumentError
    ),
    "set_vf_token(str)": Bad(
        "Device.set_vf_token",
        "token",
        lambda o: o.dev.set_vf_token(bad(str(uuid.uuid4()))),
        ArgumentTypeError,
    ),
    "feature(1 << 16)": Bad(  # was masked to feature 0
        "Device.feature", "feature", lambda o: o.dev.feature(1 << 16, 0), OutOfRangeError
    ),
    "feature(flags=-1)": Bad(
        "Device.feature", "flags", lambda o: o.dev.feature(0, -1), OutOfRangeError
    ),
    "feature(data='x')": Bad(
        "Device.feature",
        "data",
        lambda o: o.dev.feature(0, 0, bad("x")),
        ArgumentTypeError,
    ),
    "has_feature('x')": Bad(
        "Device.has_feature",
        "feature",
        lambda o: o.dev.has_feature(bad("x")),
        ArgumentTypeError,
    ),
    "has_feature(flags=feature bits)": Bad(
        "Device.has_feature", "flags", lambda o: o.dev.has_feature(0, 0x3), InvalidArgumentError
    ),
    "on_release_request('x')": Bad(  # accepted, then failed in the watcher thread
        "Device.on_release_request",
        "callback",
        lambda o: o.dev.on_release_request(bad("x")),
        ArgumentTypeError,
    ),
    # -- regions
    "read('0', 4)": Bad(
        "Region.read", "offset", lambda o: _edu_region(o).read(bad("0"), 4), ArgumentTypeError
    ),
    "read(0, True)": Bad(
        "Region.read", "length", lambda o: _edu_region(o).read(0, True), ArgumentTypeError
    ),
    "write(None, b'')": Bad(
        "Region.write",
        "offset",
        lambda o: _edu_region(o).write(bad(None), b"\0" * 4),
        ArgumentTypeError,
    ),
    "write(4, 'text')": Bad(
        "Region.write",
        "data",
        lambda o: _edu_region(o).write(4, bad("text")),
        ArgumentTypeError,
    ),
    "map('0')": Bad(
        "Region.map", "offset", lambda o: _edu_region(o).map(bad("0")), ArgumentTypeError
    ),
    "map(0, 4096.0)": Bad(
        "Region.map",
        "length",
        lambda o: _edu_region(o).map(0, bad(4096.0)),
        ArgumentTypeError,
    ),
    "map(wc=1)": Bad(
        "Region.map", "wc", lambda o: _edu_region(o).map(0, PAGE, wc=bad(1)), ArgumentTypeError
    ),
    # made and mapped a cookie, then failed on attr.name and left the cookie live
    "map(attr=7)": Bad(
        "Region.map",
        "attr",
        lambda o: _edu_region(o).map(0, PAGE, attr=bad(7)),
        InvalidArgumentError,
    ),
    "map(attr='WC')": Bad(
        "Region.map",
        "attr",
        lambda o: _edu_region(o).map(0, PAGE, attr=bad("WC")),
        ArgumentTypeError,
    ),
    "map(attr=True)": Bad(
        "Region.map",
        "attr",
        lambda o: _edu_region(o).map(0, PAGE, attr=bad(True)),
        ArgumentTypeError,
    ),
    "revoke(5)": Bad(
        "Region.revoke", "reason", lambda o: _edu_region(o).revoke(bad(5)), ArgumentTypeError
    ),
    "close(destroy_cookies='no')": Bad(
        "Region.close",
        "destroy_cookies",
        lambda o: _edu_region(o).close(destroy_cookies=bad("no")),
        ArgumentTypeError,
    ),
    "Region(index=2**40)": Bad(
        "Region.__init__", "index", lambda o: Region(o.dev, 1 << 40), OutOfRangeError
    ),
    # -- config space
    **{
        f"config.read{bits}('0')": Bad(  # TypeError: not all arguments converted ...
            f"ConfigSpace.read{bits}",
            "offset",
            _calls(_config, f"read{bits}", "0"),
            ArgumentTypeError,
        )
        for bits in (8, 16, 32)
    },
    **{
        f"config.write{bits}(True, 0)": Bad(
            f"ConfigSpace.write{bits}",
            "offset",
            _calls(_config, f"write{bits}", True, 0),
            ArgumentTypeError,
        )
        for bits in (8, 16, 32)
    },
    **{
        f"config.write{bits}(4, '1')": Bad(
            f"ConfigSpace.write{bits}",
            "value",
            _calls(_config, f"write{bits}", 4, "1"),
            ArgumentTypeError,
        )
        for bits in (8, 16, 32)
    },
    "config.enable_bus_master(1)": Bad(
        "ConfigSpace.enable_bus_master",
        "enable",
        lambda o: o.dev.config.enable_bus_master(bad(1)),
        ArgumentTypeError,
    ),
    # -- interrupts
    "msi.mask('0')": Bad(
        "Interrupts.mask", "vector", lambda o: o.msi.mask(bad("0")), ArgumentTypeError
    ),
    "msi.unmask(None)": Bad(
        "Interrupts.unmask",
        "vector",
        lambda o: o.msi.unmask(bad(None)),
        ArgumentTypeError,
    ),
    "msi.trigger(False)": Bad(
        "Interrupts.trigger", "vector", lambda o: o.msi.trigger(False), ArgumentTypeError
    ),
    "msi.wait(1e300)": Bad(  # OverflowError
        "Interrupts.wait", "timeout", lambda o: o.msi.wait(1e300), OutOfRangeError
    ),
    "msi.wait(nan)": Bad(
        "Interrupts.wait", "timeout", lambda o: o.msi.wait(math.nan), OutOfRangeError
    ),
    "msi.wait('1')": Bad(
        "Interrupts.wait",
        "timeout",
        lambda o: o.msi.wait(bad("1")),
        ArgumentTypeError,
    ),
    "msi.wait_async(-1)": Bad(
        "Interrupts.wait_async",
        "timeout",
        lambda o: asyncio.run(o.msi.wait_async(-1)),
        OutOfRangeError,
    ),
    "msi.wait_async('1')": Bad(
        "Interrupts.wait_async",
        "timeout",
        lambda o: asyncio.run(o.msi.wait_async(bad("1"))),
        ArgumentTypeError,
    ),
    "msi.close(disable='yes')": Bad(
        "Interrupts.close",
        "disable",
        lambda o: o.msi.close(disable=bad("yes")),
        ArgumentTypeError,
    ),
    # -- BAR0's mapping (every accessor has host rows on both register backends)
    "bar0.read32('0')": Bad(
        "Mapping.read32", "offset", lambda o: o.bar0.read32(bad("0")), ArgumentTypeError
    ),
    "bar0.write32(4, True)": Bad(
        "Mapping.write32", "value", lambda o: o.bar0.write32(4, True), ArgumentTypeError
    ),
    "bar0.read_bytes(0, 2**70)": Bad(  # OverflowError
        "Mapping.read_bytes", "length", lambda o: o.bar0.read_bytes(0, 1 << 70), OutOfRangeError
    ),
    "bar0.write_bytes(4, 'text')": Bad(
        "Mapping.write_bytes",
        "data",
        lambda o: o.bar0.write_bytes(4, bad("text")),
        ArgumentTypeError,
    ),
    "bar0.copy_from(0, bytes)": Bad(  # BufferError
        "Mapping.copy_from", "buffer", lambda o: o.bar0.copy_from(0, bytes(4)), ArgumentTypeError
    ),
    # -- DMA
    "buf.write32(0, -1.0)": Bad(
        "DmaBuffer.write32",
        "value",
        lambda o: o.buf.write32(0, bad(-1.0)),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "buf.read64('8')": Bad(  # struct.error
        "DmaBuffer.read64",
        "offset",
        lambda o: o.buf.read64(bad("8")),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    "dma.allocate(2**64)": Bad(
        "DmaSpace.allocate",
        "size",
        lambda o: o.dev.dma.allocate(1 << 64),
        OutOfRangeError,
        names=_iommu_name,
    ),
    "dma.map_memory(closed mmap)": Bad(
        "DmaSpace.map_memory",
        "memory",
        lambda o: o.dev.dma.map_memory(_closed_mmap()),
        InvalidArgumentError,
        names=_iommu_name,
    ),
    "dma.forget(None)": Bad(
        "DmaSpace.forget",
        "buf",
        lambda o: o.dev.dma.forget(bad(None)),
        ArgumentTypeError,
        names=_iommu_name,
    ),
    # -- cookies: checked before the driver is asked (so also on vfio-pci)
    "Cookie(offset=2**64)": Bad(  # truncated to offset 0
        "Cookie.__init__",
        "offset",
        lambda o: Cookie(o.dev, 0, 1 << 64, PAGE, MemoryAttr.UC),
        OutOfRangeError,
    ),
    "Cookie(length=2**64 + 4096)": Bad(  # truncated to 4096
        "Cookie.__init__",
        "length",
        lambda o: Cookie(o.dev, 0, 0, (1 << 64) + PAGE, MemoryAttr.UC),
        OutOfRangeError,
    ),
    "Cookie(index=9)": Bad(
        "Cookie.__init__",
        "index",
        lambda o: Cookie(o.dev, 9, 0, PAGE, MemoryAttr.UC),
        OutOfRangeError,
    ),
    "Cookie(attr='UC')": Bad(
        "Cookie.__init__",
        "attr",
        lambda o: Cookie(o.dev, 0, 0, PAGE, bad("UC")),
        ArgumentTypeError,
    ),
    "Cookie(device=bdf)": Bad(
        "Cookie.__init__",
        "device",
        lambda o: Cookie(bad(o.dev.bdf), 0, 0, PAGE, MemoryAttr.UC),
        ArgumentTypeError,
        names=None,
    ),
    "supported_attrs(2**40)": Bad(  # answered for region 0
        "cookie.supported_attrs",
        "index",
        lambda o: supported_attrs(o.dev, 1 << 40),
        OutOfRangeError,
    ),
    "wc_refused_ranges(2**40)": Bad(  # answered for region 0
        "cookie.wc_refused_ranges",
        "index",
        lambda o: wc_refused_ranges(o.dev, 1 << 40),
        OutOfRangeError,
    ),
    # -- the IOMMU, through the device's own (each backend in its boot)
    "container.check_extension('type1')": Bad(
        "Container.check_extension",
        "extension",
        lambda o: _container(o).check_extension(bad("type1")),
        ArgumentTypeError,
        needs="legacy",
        names=_iommu_name,
    ),
    "container.set_iommu(2**40)": Bad(  # OverflowError
        "Container.set_iommu",
        "iommu_type",
        lambda o: _container(o).set_iommu(1 << 40),
        OutOfRangeError,
        needs="legacy",
        names=_iommu_name,
    ),
    **{
        f"{kind}.map_dma({param}={value!r})": Bad(
            f"{'Container' if kind == 'container' else 'Ioas'}.map_dma",
            param,
            _iommu_call("map_dma", param, value),
            error,
            needs="legacy" if kind == "container" else "iommufd",
            names=_iommu_name,
        )
        for kind in ("container", "ioas")
        for param, value, error in (
            ("vaddr", "0", ArgumentTypeError),
            ("iova", -PAGE, OutOfRangeError),
            ("size", 0, OutOfRangeError),
            ("readable", 1, ArgumentTypeError),
            ("writable", None, ArgumentTypeError),
        )
    },
    **{
        f"{kind}.unmap_dma({param}={value!r})": Bad(
            f"{'Container' if kind == 'container' else 'Ioas'}.unmap_dma",
            param,
            _iommu_call("unmap_dma", param, value),
            error,
            needs="legacy" if kind == "container" else "iommufd",
            names=_iommu_name,
        )
        for kind in ("container", "ioas")
        for param, value, error in (
            ("iova", "0x1000", ArgumentTypeError),
            ("size", 1 << 64, OutOfRangeError),
        )
    },
    **{
        f"ioas.{verb}({param}={value!r})": Bad(
            f"Ioas.{verb}",
            param,
            _iommu_call(verb, param, value),
            ArgumentTypeError,
            needs="iommufd",
            names=None,
        )
        for verb in ("bind", "attach", "detach")
        for param, value in (("device_fd", str(3)), ("bdf", 10))
    },
    "ioas.bind(vf_token=str)": Bad(
        "Ioas.bind",
        "vf_token",
        _iommu_call("bind", "vf_token", str(uuid.uuid4())),
        ArgumentTypeError,
        needs="iommufd",
        names=None,
    ),
    "group.device_fd('zz')": Bad(
        "Group.device_fd",
        "bdf",
        lambda o: _group(o).device_fd("zz"),
        InvalidArgumentError,
        needs="legacy",
        names=None,
    ),
    "group.device_fd(vf_token=int)": Bad(
        "Group.device_fd",
        "vf_token",
        lambda o: _group(o).device_fd(o.dev.bdf, vf_token=bad(uuid.uuid4().int)),
        ArgumentTypeError,
        needs="legacy",
    ),
    "group.device_fd(timeout=-1)": Bad(
        "Group.device_fd",
        "timeout",
        lambda o: _group(o).device_fd(o.dev.bdf, timeout=-1),
        OutOfRangeError,
        needs="legacy",
    ),
}


def _group(o: Opened) -> Group:
    group = o.dev._group  # the legacy device's own group: nothing else may open it
    assert group is not None
    return group


def _closed_mmap() -> mmap.mmap:
    memory = mmap.mmap(-1, PAGE)
    memory.close()
    return memory


def _device_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _device_maps() -> list[str]:
    with open("/proc/self/maps") as maps:
        return [line for line in maps if "vfio" in line]


@pytest.fixture(scope="module")
def opened(sysfs: Sysfs) -> Iterator[Opened]:
    """edu, opened once for the module: on vfio_pci_cookie where it builds."""
    # Where `make kmod` built the module (else it left the compiler's error),
    # edu goes on it, and the rows also count cookies.
    cookies = kmod.is_loaded() or kmod.built_for().exists()
    if cookies:
        kmod.load()
    devices = sysfs.find(*EDU_ID)
    assert devices, "no edu device in the guest"
    with (
        sysfs.bound(devices[0].bdf, COOKIE_DRIVER if cookies else "vfio-pci"),
        Device.open(devices[0].bdf) as dev,
    ):
        dev.config.enable_bus_master()
        with dev.enable_irq(IrqIndex.MSI) as msi:
            assert live_cookies(dev) == 0
            yield Opened(dev, dev.region(0).map(), msi, dev.dma_buffer(PAGE), cookies)


def assert_nothing_left_behind(o: Opened, fds: int, maps: list[str]) -> None:
    """Registers, MSI and a fresh map of BAR0 work; no fd, mapping, DMA buffer
    or cookie is left from the call."""
    assert o.bar0.read32(0) == EDU_ID_REGISTER
    o.msi.trigger()
    assert o.msi.wait(5) == [0]
    assert o.dev.dma.buffers == [o.buf]
    assert _device_fds() == fds
    assert _device_maps() == maps
    if o.cookies:
        assert live_cookies(o.dev) == 0, "a cookie was left live"
    # On 6.1 a live WC cookie would also make this fail (EBUSY).
    with o.dev.region(0).map(0, PAGE) as again:
        assert again.read32(0) == EDU_ID_REGISTER


@pytest.mark.parametrize("name", ROWS)
def test_a_bad_argument_is_refused_and_changes_nothing(opened: Opened, name: str) -> None:
    row = ROWS[name]
    if row.needs is not None and row.needs != opened.dev.backend:
        pytest.skip(
            f"{row.target} is the {row.needs} backend's; this boot runs {opened.dev.backend}"
        )
    fds, maps = _device_fds(), _device_maps()
    with pytest.raises(row.error) as info:
        row.call(opened)
    error = info.value
    assert isinstance(error, TypeError if row.error is ArgumentTypeError else ValueError)
    assert re.search(rf"(?<![\w.]){row.param}(?!\w)", str(error)), f"no {row.param} in: {error}"
    if row.names is not None:
        assert str(error).startswith(row.names(opened)), str(error)
    assert_nothing_left_behind(opened, fds, maps)


def test_an_int_attr_maps_as_its_member(opened: Opened) -> None:
    # map(attr=1) made and mapped a cookie, then raised AttributeError on attr.name.
    if not opened.cookies:
        pytest.skip(f"{COOKIE_DRIVER} is not built for {os.uname().release}: {kmod.build_error()}")
    fds, maps = _device_fds(), _device_maps()
    mapping = opened.dev.region(0).map(0, PAGE, attr=bad(int(MemoryAttr.UC)))
    assert mapping.cookie is not None and mapping.cookie.attr is MemoryAttr.UC
    assert mapping.name.endswith(" UC") and mapping.read32(0) == EDU_ID_REGISTER
    mapping.close()
    assert_nothing_left_behind(opened, fds, maps)


def test_a_map_that_fails_after_its_cookie_leaves_no_cookie(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any failure once the cookie exists (the mmap, the Mapping, an interrupt).
    if not opened.cookies:
        pytest.skip(f"{COOKIE_DRIVER} is not built for {os.uname().release}: {kmod.build_error()}")

    def interrupted(*args: object, **kwargs: object) -> Mapping:
        raise KeyboardInterrupt

    fds, maps = _device_fds(), _device_maps()
    monkeypatch.setattr(Region, "_mmap", interrupted)
    with pytest.raises(KeyboardInterrupt):
        opened.dev.region(0).map(0, PAGE, attr=MemoryAttr.UC)
    monkeypatch.undo()
    assert_nothing_left_behind(opened, fds, maps)
