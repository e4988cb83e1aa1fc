# SPDX-License-Identifier: Apache-2.0
"""The `pyvfio` command: the only code in the package that prints or exits."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, kmod, mmio, uapi
from ._where import build_command, load_hint
from .caps import MsixMappableCap, SparseMmapCap, TypeCap, UnknownCap
from .config import ConfigHeader, Link, decode_config
from .cookie import DRIVER as COOKIE_DRIVER
from .cookie import supported_attrs
from .device import Device
from .errors import VfioError
from .pci import Bar, PciDevice, Sysfs, normalize_bdf
from .pciids import PciIds

JSON_SCHEMA_VERSION = 1
USAGE_ERROR = 2  # a bad argument, as argparse exits
FORCE_HELP = (
    "even if it is in use (a filesystem mounted, an interface up, a process holding it "
    "through VFIO): its users lose the device, or the kernel waits for them"
)
WAIT_HELP = (
    "with --force: give up waiting for the device's holders after S seconds (the "
    "kernel's unbind goes on until they let go); default: wait, saying for whom"
)


def human_size(size: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


def _bar_text(bar: Bar) -> str:
    kind = "io" if bar.is_io else ("mem64" if bar.is_64bit else "mem32")
    pf = ",prefetch" if bar.prefetchable else ""
    return f"BAR{bar.index}={human_size(bar.size)}({kind}{pf})"


def _bar_json(bar: Bar) -> dict[str, Any]:
    return {
        "index": bar.index,
        "start": bar.start,
        "size": bar.size,
        "io": bar.is_io,
        "64bit": bar.is_64bit,
        "prefetchable": bar.prefetchable,
    }


def device_json(dev: PciDevice) -> dict[str, Any]:
    return {
        "bdf": dev.bdf,
        "vendor": f"{dev.vendor:04x}",
        "device": f"{dev.device:04x}",
        "class": f"{dev.class_code:06x}",
        "iommu_group": dev.iommu_group,
        "driver": dev.driver,
        "bars": [_bar_json(b) for b in dev.bars],
    }


def _id_matches(dev: PciDevice, vendor_device: str) -> bool:
    vendor, _, device = vendor_device.partition(":")
    return (not vendor or dev.vendor == int(vendor, 16)) and (
        not device or dev.device == int(device, 16)
    )


def _pci_id(text: str) -> str:
    vendor, sep, device = text.partition(":")
    try:
        for part in (vendor, device):
            if part and not 0 <= int(part, 16) <= 0xFFFF:
                raise ValueError(part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not VENDOR:DEVICE in hex") from None
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not VENDOR:DEVICE in hex")
    return text


def cmd_list(args: argparse.Namespace) -> int:
    devices = Sysfs(Path(args.sysfs)).devices()
    if args.ids:
        devices = [d for d in devices if any(_id_matches(d, i) for i in args.ids)]
    if args.json:
        print(
            json.dumps(
                {"schema": JSON_SCHEMA_VERSION, "devices": [device_json(d) for d in devices]},
                indent=2,
            )
        )
        return 0
    # The driver column is as wide as its longest name ("i6300ESB timer" has a
    # space: the columns must still line up, one device a line).
    width = max([12, *(len(d.driver or "-") for d in devices)])
    print(f"{'BDF':<13} {'ID':<9} {'CLASS':<6} {'GROUP':>5} {'DRIVER':<{width}} BARS")
    for d in devices:
        group = "-" if d.iommu_group is None else str(d.iommu_group)
        bars = " ".join(_bar_text(b) for b in d.bars) or "-"
        print(
            f"{d.bdf:<13} {d.id:<9} {d.class_code >> 8:04x}   {group:>5} "
            f"{d.driver or '-':<{width}} {bars}"
        )
    return 0


# Features a plain vfio-pci may offer, probed by `info`.
KNOWN_FEATURES = {
    "pci-vf-token": (uapi.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, uapi.VFIO_DEVICE_FEATURE_SET),
    "migration": (uapi.VFIO_DEVICE_FEATURE_MIGRATION, uapi.VFIO_DEVICE_FEATURE_GET),
    "low-power": (uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, uapi.VFIO_DEVICE_FEATURE_SET),
}


def _cap_json(cap: object) -> dict[str, Any]:
    if isinstance(cap, SparseMmapCap):
        return {"kind": "sparse-mmap", "areas": [{"offset": o, "size": s} for o, s in cap.areas]}
    if isinstance(cap, TypeCap):
        return {"kind": "type", "type": cap.type, "subtype": cap.subtype}
    if isinstance(cap, MsixMappableCap):
        return {"kind": "msix-mappable"}
    assert isinstance(cap, UnknownCap)
    return {"kind": "unknown", "id": cap.id, "version": cap.version, "data": cap.data.hex()}


def _cap_text(doc: dict[str, Any]) -> str:
    if doc["kind"] == "sparse-mmap":
        return "sparse-mmap " + ",".join(f"[{a['offset']:#x}+{a['size']:#x}]" for a in doc["areas"])
    if doc["kind"] == "type":
        return f"type {doc['type']:#x}/{doc['subtype']:#x}"
    if doc["kind"] == "unknown":
        return f"cap {doc['id']} v{doc['version']}"
    return str(doc["kind"])


def device_report(dev: Device) -> dict[str, Any]:
    """The VFIO view of an open device (regions, IRQs, features), as the
    JSON-ready part of `pyvfio info` that only a VFIO-bound device has."""
    regions = []
    for region in dev.regions():
        info = region.info
        regions.append(
            {
                "index": info.index,
                "name": info.name,
                "size": info.size,
                "offset": info.offset,
                "readable": info.readable,
                "writable": info.writable,
                "mmap": info.mappable,
                "mmap_areas": [{"offset": o, "size": s} for o, s in info.mmap_areas],
                "caps": [_cap_json(c) for c in info.caps],
                # memory attributes an mmap cookie may ask for (vfio_pci_cookie only)
                "attrs": sorted(a.name for a in supported_attrs(dev, info.index)),
            }
        )
    irqs = [
        {
            "index": i.index,
            "name": i.name,
            "count": i.count,
            "supported": i.supported,
            "flags": [f.name.lower() for f in type(i.flags) if f in i.flags and f.name],
        }
        for i in dev.irq_infos()
    ]
    features = {name: dev.has_feature(num, flags) for name, (num, flags) in KNOWN_FEATURES.items()}
    return {
        # how the device was opened: "iommufd" (cdev) or "legacy" (group)
        "backend": str(dev.backend),
        "iommu": dev.iommu.name,
        "flags": [f.name.lower() for f in type(dev.info.flags) if f in dev.info.flags and f.name],
        "num_regions": dev.info.num_regions,
        "num_irqs": dev.info.num_irqs,
        "regions": regions,
        "irqs": irqs,
        "features": features,
    }


# The keys of device_report: null in `info --json` when there is no VFIO view.
VFIO_KEYS = (
    "backend",
    "iommu",
    "flags",
    "num_regions",
    "num_irqs",
    "regions",
    "irqs",
    "features",
)


def _link_json(link: Link | None) -> dict[str, Any] | None:
    return None if link is None else {"speed": link.speed, "width": link.width}


def _rom_json(sysfs: Sysfs, bdf: str, header: ConfigHeader) -> dict[str, Any] | None:
    """The ROM the kernel assigned (address and size from sysfs ``resource``),
    else what the ROM register holds; enabled is the register's decode bit."""
    enabled = header.rom is not None and header.rom.enabled
    resource = sysfs.rom(bdf)
    if resource is not None:
        return {"address": resource.start, "size": resource.size, "enabled": enabled}
    if header.rom is not None and header.rom.address:
        return {"address": header.rom.address, "size": None, "enabled": enabled}
    return None


def pci_report(sysfs: Sysfs, pci: PciDevice, ids: PciIds) -> dict[str, Any]:
    """What sysfs shows of any device, whatever its driver: read-only, nothing opened."""
    header = decode_config(sysfs.config(pci.bdf))
    subsystem = sysfs.subsystem(pci.bdf)
    if subsystem is None and header.subsystem_vendor is not None:
        subsystem = (header.subsystem_vendor, header.subsystem_device or 0)
    power_state, power_from = sysfs.power_state(pci.bdf), "kernel"
    if power_state is None and header.power is not None:
        power_state, power_from = header.power.state, "pmcsr"
    caps = header.capabilities
    msi, msix, pm, express = header.msi, header.msix, header.power, header.express
    return {
        "schema": JSON_SCHEMA_VERSION,
        "bdf": pci.bdf,
        "vendor": f"{pci.vendor:04x}",
        "vendor_name": ids.vendor(pci.vendor),
        "device": f"{pci.device:04x}",
        "device_name": ids.device(pci.vendor, pci.device),
        "subsystem_vendor": None if subsystem is None else f"{subsystem[0]:04x}",
        "subsystem_vendor_name": None if subsystem is None else ids.vendor(subsystem[0]),
        "subsystem_device": None if subsystem is None else f"{subsystem[1]:04x}",
        "subsystem_name": None
        if subsystem is None
        else ids.subsystem(pci.vendor, pci.device, *subsystem),
        "class": f"{pci.class_code:06x}",
        "class_name": ids.class_name(pci.class_code),
        "prog_if": f"{pci.class_code & 0xFF:02x}",
        "prog_if_name": ids.prog_if(pci.class_code),
        "revision": f"{header.revision:02x}",
        "header_type": header.header_type,
        "names_from": None if ids.path is None else str(ids.path),
        "driver": pci.driver,
        "iommu_group": pci.iommu_group,
        "config_size": header.size,
        "config_missing": header.missing,
        "power_state": power_state,
        "power_state_from": power_from if power_state is not None else None,
        "command": header.command,
        "command_bits": header.command_bits(),
        "status": header.status,
        "status_bits": header.status_bits(),
        "devsel": header.devsel,
        "bars": [_bar_json(b) for b in pci.bars],
        "rom": _rom_json(sysfs, pci.bdf, header),
        "pci_capabilities": None
        if caps is None
        else [
            {"id": c.id, "name": c.name, "offset": c.offset, "extended": c.extended} for c in caps
        ],
        "power_management": None
        if pm is None
        else {
            "offset": pm.offset,
            "version": pm.version,
            "state": pm.state,
            "no_soft_reset": pm.no_soft_reset,
            "pme_enabled": pm.pme_enabled,
        },
        "msi": None
        if msi is None
        else {
            "offset": msi.offset,
            "enabled": msi.enabled,
            "vectors_max": msi.vectors_max,
            "vectors_enabled": msi.vectors_enabled,
            "64bit": msi.is_64bit,
            "maskable": msi.maskable,
            "address": msi.address,
            "data": msi.data,
        },
        "msix": None
        if msix is None
        else {
            "offset": msix.offset,
            "enabled": msix.enabled,
            "masked": msix.function_masked,
            "table_size": msix.table_size,
            "table_bar": msix.table_bar,
            "table_offset": msix.table_offset,
            "pba_bar": msix.pba_bar,
            "pba_offset": msix.pba_offset,
        },
        "express": None
        if express is None
        else {
            "offset": express.offset,
            "version": express.version,
            "port_type": express.port_type,
            "link_capability": _link_json(express.link_capability),
            "link_status": _link_json(express.link_status),
        },
    }


def info_report(sysfs: Sysfs, bdf: str, backend: str | None) -> dict[str, Any]:
    """What `pyvfio info` shows, as a JSON-ready dict (schema JSON_SCHEMA_VERSION).

    Everything comes from sysfs, read-only; the VFIO view is added only for a
    device already on a VFIO driver, opened and closed again.  A device on
    any other driver is never bound, unbound or opened."""
    pci = sysfs.device(bdf)
    report = pci_report(sysfs, pci, PciIds.load())
    report.update(dict.fromkeys(VFIO_KEYS))
    report["vfio_error"] = None
    if pci.on_vfio:
        try:
            with Device.open(pci.bdf, sysfs=sysfs, backend=backend) as dev:
                report.update(device_report(dev))
        except VfioError as exc:
            report["vfio_error"] = str(exc)
    return report


def _flag_text(bits: dict[str, bool], labels: dict[str, str]) -> str:
    return " ".join(f"{label}{'+' if bits[key] else '-'}" for key, label in labels.items())


# lspci's labels for the command and status bits, so the two read alike.
COMMAND_LABELS = {
    "io": "I/O",
    "memory": "Mem",
    "bus_master": "BusMaster",
    "special_cycles": "SpecCycle",
    "memory_write_invalidate": "MemWINV",
    "vga_snoop": "VGASnoop",
    "parity_error_response": "ParErr",
    "stepping": "Stepping",
    "serr": "SERR",
    "fast_back_to_back": "FastB2B",
    "intx_disable": "DisINTx",
}
STATUS_LABELS = {
    "capabilities": "Cap",
    "66mhz": "66MHz",
    "udf": "UDF",
    "fast_back_to_back": "FastB2B",
    "master_data_parity_error": "ParErr",
    "signaled_target_abort": ">TAbort",
    "received_target_abort": "<TAbort",
    "received_master_abort": "<MAbort",
    "signaled_system_error": ">SERR",
    "detected_parity_error": "<PERR",
    "interrupt": "INTx",
}


def _named(name: str | None, number: str, unknown: str) -> str:
    return f"{name or unknown} [{number}]"


def _name_pair(vendor: str | None, device: str | None, ids: str) -> str:
    """``Vendor Device [vvvv:dddd]``, with lspci's words for names not in pci.ids."""
    return f"{vendor or ''} {device or 'Device'} [{ids}]".lstrip()


def _link_text(link: dict[str, Any] | None) -> str:
    return "-" if link is None else f"{link['speed'] or 'unknown'} x{link['width']}"


def _cap_detail(report: dict[str, Any], cap: dict[str, Any]) -> str:
    pm, msi, msix, exp = (report[k] for k in ("power_management", "msi", "msix", "express"))
    if pm and cap["offset"] == pm["offset"]:
        return f" v{pm['version']}: {pm['state']}, PME {'on' if pm['pme_enabled'] else 'off'}"
    if msi and cap["offset"] == msi["offset"]:
        return (
            f": {'enabled' if msi['enabled'] else 'disabled'}, "
            f"{msi['vectors_enabled']}/{msi['vectors_max']} vectors, "
            f"{'64' if msi['64bit'] else '32'}-bit, "
            f"{'maskable' if msi['maskable'] else 'not maskable'}"
        )
    if msix and cap["offset"] == msix["offset"]:
        return (
            f": {'enabled' if msix['enabled'] else 'disabled'}, {msix['table_size']} vectors, "
            f"{'masked' if msix['masked'] else 'not masked'}; "
            f"table BAR{msix['table_bar']}+{msix['table_offset']:#x}, "
            f"PBA BAR{msix['pba_bar']}+{msix['pba_offset']:#x}"
        )
    if exp and cap["offset"] == exp["offset"]:
        if exp["link_capability"] is None:
            return f" v{exp['version']} {exp['port_type']} (no link)"
        return (
            f" v{exp['version']} {exp['port_type']}; link capable "
            f"{_link_text(exp['link_capability'])}, now {_link_text(exp['link_status'])}"
        )
    return ""


def print_info(report: dict[str, Any]) -> None:
    r = report
    title = f"{r['bdf']} {_named(r['class_name'], r['class'][:4], 'Class')}: "
    title += _name_pair(r["vendor_name"], r["device_name"], f"{r['vendor']}:{r['device']}")
    title += f" (rev {r['revision']})"
    if r["prog_if"] != "00" or r["prog_if_name"]:
        named = f" [{r['prog_if_name']}]" if r["prog_if_name"] else ""
        title += f" (prog-if {r['prog_if']}{named})"
    print(title)
    if r["subsystem_vendor"] not in (None, "0000", "ffff"):
        ids = f"{r['subsystem_vendor']}:{r['subsystem_device']}"
        print(f"  subsystem: {_name_pair(r['subsystem_vendor_name'], r['subsystem_name'], ids)}")
    group = "-" if r["iommu_group"] is None else r["iommu_group"]
    power = (
        "unknown"
        if r["power_state"] is None
        else f"{r['power_state']} (from {r['power_state_from']})"
    )
    print(f"  driver: {r['driver'] or '-'}, IOMMU group {group}, power state {power}")
    print(f"  control: {_flag_text(r['command_bits'], COMMAND_LABELS)}")
    print(f"  status: {_flag_text(r['status_bits'], STATUS_LABELS)} DEVSEL={r['devsel']}")
    for bar in r["bars"]:
        kind = "io" if bar["io"] else ("mem64" if bar["64bit"] else "mem32")
        pf = ", prefetchable" if bar["prefetchable"] else ""
        print(
            f"  BAR{bar['index']}: {kind}{pf} at {bar['start']:#x} [size={human_size(bar['size'])}]"
        )
    if r["rom"] is not None:
        rom = r["rom"]
        size = "" if rom["size"] is None else f" [size={human_size(rom['size'])}]"
        state = "enabled" if rom["enabled"] else "disabled"
        print(f"  expansion ROM at {rom['address']:#x}{size} {state}")
    if r["pci_capabilities"] is None:
        if r["config_missing"]:
            print(f"  not shown: {r['config_missing']}")
    else:
        print(f"  capabilities:{'' if r['pci_capabilities'] else ' none'}")
        for cap in r["pci_capabilities"]:
            where = f"{cap['offset']:03x}" if cap["extended"] else f"{cap['offset']:02x}"
            print(f"    [{where}] {cap['name']}{_cap_detail(r, cap)}")
    if r["backend"] is None:
        why = r["vfio_error"] or (
            f"on {r['driver'] or 'no driver'}, not a VFIO driver; info reads sysfs only"
        )
        print(f"  VFIO: not opened: {why}")
        return
    print(
        f"  VFIO: flags {','.join(r['flags'])}, {r['num_regions']} regions, "
        f"{r['num_irqs']} IRQ indexes, {r['backend']} backend ({r['iommu']})"
    )
    print(f"  {'REGION':<8} {'FLAGS':<5} {'SIZE':>8} {'OFFSET':>14}  {'ATTRS':<6} CAPS")
    for region in r["regions"]:
        if not region["size"]:
            continue
        flags = "".join(
            c if region[key] else "-"
            for c, key in (("r", "readable"), ("w", "writable"), ("m", "mmap"))
        )
        caps = "; ".join(_cap_text(c) for c in region["caps"]) or "-"
        attrs = ",".join(region["attrs"]) or "-"
        print(
            f"  {region['name']:<8} {flags:<5} {human_size(region['size']):>8} "
            f"{region['offset']:#14x}  {attrs:<6} {caps}"
        )
    print(f"  {'IRQ':<8} {'COUNT':>5}  FLAGS")
    for i in r["irqs"]:
        count = str(i["count"]) if i["supported"] else "-"
        flags = ",".join(i["flags"]) if i["supported"] else "not supported"
        print(f"  {i['name']:<8} {count:>5}  {flags}")
    print(
        "  features: "
        + ", ".join(f"{n}={'yes' if ok else 'no'}" for n, ok in r["features"].items())
    )


def cmd_info(args: argparse.Namespace) -> int:
    report = info_report(Sysfs(Path(args.sysfs)), args.bdf, args.backend)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_info(report)
    return 0


def print_json(doc: dict[str, Any]) -> None:
    """One JSON document of schema JSON_SCHEMA_VERSION on stdout, as every --json prints."""
    print(json.dumps({"schema": JSON_SCHEMA_VERSION, **doc}, indent=2))


def binding_json(bdf: str, driver: str | None, previous: str | None) -> dict[str, Any]:
    """`bind --json` and `unbind --json`: the device's driver now and before."""
    return {"bdf": bdf, "driver": driver, "previous_driver": previous}


def _say_waiting(sentence: str) -> None:
    print(f"pyvfio: {sentence}", file=sys.stderr, flush=True)


def _rebinding(what: str, bdf: str) -> str:
    """The line for an interrupted bind or unbind: the kernel's part goes on."""
    return (
        f"pyvfio: interrupted; the kernel's {what} of {bdf} goes on until the device is "
        "let go (see `pyvfio info` for its driver)"
    )


def cmd_bind(args: argparse.Namespace) -> int:
    sysfs = Sysfs(Path(args.sysfs))
    try:
        previous = sysfs.bind(
            args.bdf, args.driver, force=args.force, timeout=args.timeout, on_wait=_say_waiting
        )
    except KeyboardInterrupt:
        print(_rebinding("unbind", args.bdf), file=sys.stderr)
        return 130
    if args.json:
        print_json(binding_json(normalize_bdf(args.bdf), args.driver, previous))
        return 0
    print(f"{args.bdf}: bound to {args.driver} (was {previous or 'unbound'})")
    return 0


def cmd_unbind(args: argparse.Namespace) -> int:
    sysfs = Sysfs(Path(args.sysfs))
    before = sysfs.device(args.bdf)
    try:
        now = sysfs.unbind(before.bdf, force=args.force, timeout=args.timeout, on_wait=_say_waiting)
    except KeyboardInterrupt:
        print(_rebinding("unbind", before.bdf), file=sys.stderr)
        return 130
    if args.json:
        print_json(binding_json(before.bdf, now, before.driver))
        return 0
    if before.driver is not None and before.driver_override is None:
        print(f"{args.bdf}: already on {now}, the driver the kernel picks for it; nothing to do")
    else:
        print(f"{args.bdf}: released; now on {now or 'no driver'}")
    return 0


# `pyvfio vm run` option of each VmOptions field, for its errors.
VM_RUN_OPTIONS = {
    "rwdirs": "--rwdir",
    "devices": "--device",
    "objects": "--object",
    "large_bars": "--large-bar",
}


def cmd_vm_run(args: argparse.Namespace) -> int:
    from .errors import VmArgumentError
    from .vm import VmOptions, run
    from .vm.kernel import resolve_kernel
    from .vm.runner import check_command

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    # Every argument is checked before anything is looked for or started: a
    # refusal is one line and exit status 2, as argparse's own.
    try:
        check_command(command)
        options = VmOptions(
            kernel=resolve_kernel(args.kernel) if args.kernel is not None else None,
            memory=args.memory,
            cpus=args.cpus,
            kvm=args.kvm,
            timeout=args.timeout,
            silence=args.silence,
            verbose=args.verbose,
            cached_root=not args.uncached_root,
            rwdirs=tuple(Path(d) for d in args.rwdir),
            append=tuple(args.append),
            nics=args.nics,
            devices=tuple(args.device),
            objects=tuple(args.object),
            large_bars=tuple(args.large_bar),
        )
        options.check()
    except VmArgumentError as exc:
        what = exc.message + (f"; {exc.hint}" if exc.hint else "")
        if exc.parameter != "command":
            what = f"argument {VM_RUN_OPTIONS.get(exc.parameter, '--' + exc.parameter)}: {what}"
        print(f"pyvfio vm run: error: {what}", file=sys.stderr)
        return USAGE_ERROR
    result = run(command, options)
    if result.problems:
        print("pyvfio vm: the guest kernel log shows problems:", file=sys.stderr)
        for line in result.problems:
            print(f"  {line}", file=sys.stderr)
        return result.returncode or 1
    return result.returncode


def cmd_vm_fetch(args: argparse.Namespace) -> int:
    from .vm import kernels

    archive, security = kernels.host_mirrors()
    for series in kernels.matrix(" ".join(args.series)):
        if series == kernels.DEBUG_SERIES:
            cmd_vm_debug_kernel(args)
            continue
        try:
            kernel = kernels.fetch(series, archive, security)
        except VfioError as exc:
            try:
                kernel = kernels.cached(series)
            except VfioError:
                raise exc from None
            print(f"pyvfio vm: warning: {exc}; kept {kernel.release}", file=sys.stderr)
        print(f"{series}: {kernel.release} ({kernel.base}) in {kernel.root.parent}")
    return 0


def cmd_vm_debug_kernel(args: argparse.Namespace) -> int:
    from .vm import debugkernel, kernels, selftests

    if debugkernel.installed() is None:
        print(
            f"{kernels.DEBUG_SERIES}: building from {selftests.PACKAGE} "
            "(tens of minutes, once per machine)",
            flush=True,
        )
    built = debugkernel.build(*kernels.host_mirrors(), progress=lambda s: print(s, flush=True))
    kernel = built.kernel()
    print(
        f"{kernels.DEBUG_SERIES}: {kernel.release} ({selftests.PACKAGE} {built.version}, "
        f"built in {built.build_seconds:.0f} s) in {kernel.root.parent}"
    )
    return 0


def cmd_vm_selftests(args: argparse.Namespace) -> int:
    from .vm import kernels, selftests

    built = selftests.fetch(*kernels.host_mirrors())
    print(f"VFIO selftests of {selftests.PACKAGE} {built.version} in {built.dir}")
    return 0


def cmd_vm_kmod(args: argparse.Namespace) -> int:
    from .vm import kernels

    allowed = kernels.series_list(" ".join(args.allow_fail))
    status = 0
    for series in kernels.matrix(" ".join(args.series)):
        kernel = kernels.cached(series)
        build = kernels.build_module(kernel, kmod.KMOD_SRC, kmod.built_for(kernel.release).parent)
        if build.error is None:
            print(f"{series}: {kernel.release}: built {build.ko}")
            continue
        # Pending means "our C does not compile there yet"; a broken build root,
        # missing headers or a link error is a failure on every kernel.
        expected = series in allowed and build.compile_error
        print(
            f"{series}: {kernel.release}: does not build "
            f"({'expected; its tests skip' if expected else 'FAILED'}): {build.error}",
            file=sys.stdout if expected else sys.stderr,
        )
        status = status or (0 if expected else 1)
    return status


# `pyvfio kmod status` exit codes: loaded, loadable (built or installed), neither.
KMOD_LOADED, KMOD_LOADABLE, KMOD_ABSENT = 0, 3, 4


def kmod_status_text(st: kmod.Status) -> str:
    def srcv(version: str | None) -> str:
        return f" (srcversion {version})" if version else ""

    if st.loaded:
        origin = str(st.loaded_from) if st.loaded_from else "a file other than those below"
        loaded = (
            f"yes, version {st.loaded_version or '?'}{srcv(st.loaded_srcversion)}, from {origin}"
        )
    else:
        loaded = "no"
    if st.built:
        built = f"{st.built}{srcv(st.built_srcversion)}"
    elif st.build_error:
        built = f"no: the last build failed: {st.build_error}"
    else:
        built = f"no ({build_command()})"
    lines = [
        f"{COOKIE_DRIVER} for {st.release}",
        f"  loaded: {loaded}",
        f"  built: {built}",
        "  installed: "
        + (f"{st.installed}{srcv(st.installed_srcversion)}" if st.installed else "no"),
        f"  dkms: {st.dkms if st.dkms is not None else 'dkms is not installed'}",
        "  vfio-pci stand-in: "
        + (", ".join(map(str, st.stand_in)) if st.stand_in else "not installed"),
        "  kernel headers: "
        + (str(st.headers) if st.headers else f"missing: {kmod.headers_hint(st.release)}"),
    ]
    return "\n".join(lines)


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def kmod_status_json(st: kmod.Status) -> dict[str, Any]:
    """`pyvfio kmod status --json` (the text's facts, and the state its exit status says)."""
    return {
        "module": COOKIE_DRIVER,
        "release": st.release,
        "state": "loaded" if st.loaded else "loadable" if st.available else "absent",
        "loaded": st.loaded,
        "loaded_version": st.loaded_version,
        "loaded_srcversion": st.loaded_srcversion,
        "loaded_from": _path(st.loaded_from),
        "built": _path(st.built),
        "built_srcversion": st.built_srcversion,
        "build_error": st.build_error,
        "installed": _path(st.installed),
        "installed_srcversion": st.installed_srcversion,
        "dkms": st.dkms,
        "stand_in": [str(p) for p in st.stand_in],
        "headers": _path(st.headers),
        "headers_hint": None if st.headers else kmod.headers_hint(st.release),
    }


def cmd_kmod_status(args: argparse.Namespace) -> int:
    st = kmod.status(args.release)
    if args.json:
        print_json(kmod_status_json(st))
    else:
        print(kmod_status_text(st))
    if st.loaded:
        return KMOD_LOADED
    return KMOD_LOADABLE if st.available else KMOD_ABSENT


def cmd_kmod_build(args: argparse.Namespace) -> int:
    ko = kmod.build(args.release, Path(args.kernel_dir) if args.kernel_dir else None)
    print(f"built {ko}")
    return 0


def cmd_kmod_load(args: argparse.Namespace) -> int:
    was_loaded = kmod.is_loaded()
    source = kmod.load(Path(args.ko) if args.ko else None)
    print(f"{COOKIE_DRIVER}: " + ("already loaded" if was_loaded else f"loaded {source}"))
    return 0


def cmd_kmod_install(args: argparse.Namespace) -> int:
    kmod.dkms_install(args.release, Path(args.kernel_dir) if args.kernel_dir else None)
    print(f"{kmod.DKMS_NAME} {__version__}: installed with DKMS (source {kmod.dkms_source()})")
    return 0


def cmd_kmod_uninstall(args: argparse.Namespace) -> int:
    kmod.dkms_uninstall()
    print(f"{kmod.DKMS_NAME} {__version__}: removed from DKMS")
    return 0


def cmd_vm_check(args: argparse.Namespace) -> int:
    from .vm import tools

    gone = tools.missing()
    count = len(tools.HOST_TOOLS) + len(tools.HOST_FILES) + len(tools.VENV_TOOLS)
    if args.json:
        print_json(
            {"checked": count, "missing": [{"name": name, "package": pkg} for name, pkg in gone]}
        )
        return 1 if gone else 0
    for tool, package in gone:
        print(f"pyvfio vm: {tool} is missing: install {package}", file=sys.stderr)
    if not gone:
        print(f"pyvfio vm: all {count} tools present")
    return 1 if gone else 0


def cmd_vm_kernels(args: argparse.Namespace) -> int:
    from .vm import kernels

    if args.names:
        print("\n".join(kernels.matrix(" ".join(args.series))))
        return 0
    docs = []
    for series in kernels.matrix(" ".join(args.series)):
        doc: dict[str, Any] = {
            "series": series,
            "fetched": False,
            "release": None,
            "base": None,
            "image": None,
            "module": None,
            "module_path": None,
            "module_error": None,
        }
        docs.append(doc)
        try:
            kernel = kernels.cached(series)
        except VfioError:
            if not args.json:
                print(f"{series}: not fetched (make setup KERNELS={series})")
            continue
        ko = kmod.built_for(kernel.release)
        error = None if ko.exists() else kmod.build_error(kernel.release)
        doc.update(
            fetched=True,
            release=kernel.release,
            base=kernel.base or None,  # "": built here (the debug kernel)
            image=str(kernel.image),
            module="built" if ko.exists() else "failed" if error else "not built",
            module_path=str(ko) if ko.exists() else None,
            module_error=error,
        )
        if not args.json:
            state = {"built": "module built", "failed": f"module fails: {error}"}
            print(
                f"{series}: {kernel.release} ({kernel.base}) {kernel.image}; "
                f"{state.get(doc['module'], 'module not built')}"
            )
    if args.json:
        print_json({"kernels": docs})
    return 0


def version_text() -> str:
    """`pyvfio --version`: the package, how registers are accessed, the module's state."""
    if mmio.BACKEND == "c":
        access = "C extension (pyvfio._mmio)"
    else:
        access = f"pure-Python fallback, no write_barrier: {mmio.fallback_hint()}"
    release = os.uname().release
    if kmod.is_loaded():
        module = "loaded"
    elif kmod.built_for(release).exists():
        module = f"built for {release} ({kmod.built_for(release)}), not loaded"
    elif (installed := kmod.installed_path()) is not None:
        module = f"installed ({installed}), not loaded: as root `pyvfio kmod load`"
    else:
        module = f"not built for {release}: {load_hint()}"
    return f"pyvfio {__version__}\nregister access: {access}\nvfio_pci_cookie: {module}"


class _VersionAction(argparse.Action):
    """--version, worked out only when asked (it runs modinfo)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyvfio", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show the version, backend and module state"
    )
    parser.add_argument("--sysfs", default="/sys/bus/pci", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("list", help="list PCI devices with IOMMU group, driver and BARs")
    p.add_argument(
        "-d",
        dest="ids",
        metavar="VENDOR:DEVICE",
        action="append",
        type=_pci_id,
        help="only devices with this ID (hex; either part may be empty; repeatable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "info",
        help="what sysfs shows of any device, read-only (names, config, capabilities); "
        "regions, IRQs, features too if it is on a VFIO driver",
    )
    p.add_argument("bdf")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--backend",
        choices=["auto", "iommufd", "legacy"],
        default=None,
        help="how to open the device (default: $PYVFIO_BACKEND, else auto: iommufd where "
        "the kernel has it)",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("bind", help="bind a device to a VFIO driver (driver_override)")
    p.add_argument("bdf")
    p.add_argument("--driver", default="vfio-pci")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--timeout", type=float, default=None, metavar="S", help=WAIT_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_bind)

    p = sub.add_parser("unbind", help="release a device back to its default driver")
    p.add_argument("bdf")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--timeout", type=float, default=None, metavar="S", help=WAIT_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_unbind)

    _add_vm_parser(sub)
    _add_kmod_parser(sub)
    return parser


def _add_kmod_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    km = sub.add_parser(
        "kmod",
        help="the vfio_pci_cookie kernel module: status, build, load, DKMS install",
        description="The kernel module that adds write-combining and uncached mappings "
        "(docs/uapi.md in the source tree). Outside the source tree, builds go to "
        "$XDG_CACHE_HOME/pyvfio/kmod/RELEASE (~/.cache by default).",
    ).add_subparsers(dest="kmod_verb", required=True)
    release_help = "kernel release (default: the running kernel's)"
    kernel_dir_help = "the kernel's build tree (default: /lib/modules/RELEASE/build)"
    p = km.add_parser(
        "status",
        help="what is there for a kernel: loaded, built, installed, DKMS, headers",
        epilog=f"exit status: {KMOD_LOADED} loaded, {KMOD_LOADABLE} not loaded but built or "
        f"installed (`pyvfio kmod load` loads it), {KMOD_ABSENT} neither, 1 error",
    )
    p.add_argument("--release", help=release_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_kmod_status)
    p = km.add_parser("build", help="build the module for a kernel (needs its headers)")
    p.add_argument("--release", help=release_help)
    p.add_argument("--kernel-dir", metavar="DIR", help=kernel_dir_help)
    p.set_defaults(func=cmd_kmod_build)
    p = km.add_parser(
        "load", help="load the module built for the running kernel, else the installed one (root)"
    )
    p.add_argument("--ko", metavar="FILE", help="load this .ko instead")
    p.set_defaults(func=cmd_kmod_load)
    p = km.add_parser(
        "install",
        help="add, build and install the module with DKMS, which rebuilds it for new "
        "kernels (root)",
    )
    p.add_argument("--release", help=release_help)
    p.add_argument("--kernel-dir", metavar="DIR", help=kernel_dir_help)
    p.set_defaults(func=cmd_kmod_install)
    p = km.add_parser("uninstall", help="remove the module from DKMS, every kernel (root)")
    p.set_defaults(func=cmd_kmod_uninstall)


class _OneLineErrors(argparse.ArgumentParser):
    """The vm verbs' parsers: a usage error is one line, as their own argument
    checks are (`pyvfio vm run: error: argument --cpus: ...`), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _add_vm_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vm = sub.add_parser("vm", help="the test VM").add_subparsers(
        dest="vm_verb", required=True, parser_class=_OneLineErrors
    )
    p = vm.add_parser(
        "run",
        help="boot the test VM and run CMD in it",
        description="Boot the distribution kernel under QEMU with an IOMMU, "
        "edu, ivshmem-plain and nvme (CMB) devices, run CMD in the current "
        "directory, and fail if the guest kernel log shows a problem. "
        "Every argument is checked before anything starts: a bad one is a one-line "
        "error and exit status 2.",
    )
    p.add_argument(
        "--kernel",
        metavar="SERIES|RELEASE|IMAGE",
        help="a series of the matrix (6.1, 6.12, 7.3, 7.3-debug; `pyvfio vm kernels` shows "
        "which are fetched), a fetched release, or an image file "
        "(default: the series of the host's linux-image-amd64)",
    )
    p.add_argument(
        "--memory",
        default="1G",
        metavar="SIZE",
        help="guest RAM: a number with K, M, G or T (no suffix: MiB), "
        "128M to the host's RAM (default 1G)",
    )
    p.add_argument(
        "--cpus", type=int, default=2, metavar="N", help="1 to the host's CPU count (default 2)"
    )
    p.add_argument(
        "--kvm",
        action="store_true",
        help="use KVM (default: TCG emulation); refused without /dev/kvm or a CPU with "
        "vmx or svm, where KVM guests hang",
    )
    p.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="ARG",
        help="add ARG to the guest kernel command line, e.g. nopat (repeatable)",
    )
    p.add_argument(
        "--nics",
        type=int,
        default=0,
        metavar="N",
        # the bound is pyvfio.vm.runner.MAX_NICS (not imported here: see the ruff settings)
        help="add N e1000e NICs on one QEMU hub, at most 8 (the DPDK tests use 2; default 0)",
    )
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="DEV",
        help="add a PCI device, in QEMU's -device syntax, e.g. pci-testdev (repeatable; "
        "after the built-in devices, which keep their addresses)",
    )
    p.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="OBJ",
        help="add a QEMU -object, e.g. a memory backend an added device names (repeatable)",
    )
    p.add_argument(
        "--large-bar",
        action="append",
        default=[],
        metavar="SIZE",
        help="add an ivshmem-plain device whose BAR2 is SIZE (a power of two, 1M to 1T) "
        "of a sparse file: no host RAM (repeatable)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds, above 0: the guest is killed after that, output or not (default 3600)",
    )
    p.add_argument(
        "--silence",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds, above 0: a guest that prints nothing for that long is killed as "
        "stuck (default 300)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the guest console")
    p.add_argument(
        "--uncached-root",
        action="store_true",
        help="show the guest files the host changes during the run (by default the guest "
        "caches the host's root, and Python starts twice as fast; --rwdir is never cached)",
    )
    p.add_argument(
        "--rwdir",
        action="append",
        default=[],
        metavar="DIR",
        help="an existing host directory the guest may write to (repeatable)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    p.set_defaults(func=cmd_vm_run)

    series_help = (
        "kernel series (default: $KERNELS, else 6.1 6.12 7.3 7.3-debug and the host's own)"
    )
    p = vm.add_parser("fetch", help="fetch the matrix kernels and their headers into the cache")
    p.add_argument("series", nargs="*", help=series_help)
    p.set_defaults(func=cmd_vm_fetch)
    p = vm.add_parser("kmod", help="build vfio_pci_cookie for each fetched kernel")
    p.add_argument("series", nargs="*", help=series_help)
    p.add_argument(
        "--allow-fail",
        action="append",
        default=[],
        metavar="SERIES",
        help="a series where the module is known not to build yet (exit 0 all the same)",
    )
    p.set_defaults(func=cmd_vm_kmod)
    p = vm.add_parser(
        "debug-kernel",
        help="build the debug test kernel (7.3-debug: iommufd, VFIO cdev, lockdep) into the cache",
    )
    p.set_defaults(func=cmd_vm_debug_kernel)
    p = vm.add_parser(
        "selftests", help="build the kernel's VFIO selftests (from linux-source-7.3) into the cache"
    )
    p.set_defaults(func=cmd_vm_selftests)
    p = vm.add_parser("kernels", help="the kernel matrix: what is fetched and built")
    p.add_argument("series", nargs="*", help=series_help)
    only = p.add_mutually_exclusive_group()
    only.add_argument("--names", action="store_true", help="only the series, one a line")
    only.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_vm_kernels)
    p = vm.add_parser(
        "check",
        help="check that every tool the VM and the matrix use is present",
        epilog="exit status: 0 all present, 1 some missing",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_vm_check)


class _Stopped(BaseException):
    """SIGTERM (timeout, a CI cancel, systemd) or SIGHUP (a closed terminal)
    as an exception, so that what is running unwinds as for Ctrl-C: `vm run`
    stops its guest and removes its temporary directory instead of leaving
    QEMU behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


# What each signal that stops the CLI is reported as.
_STOPPED_BY = {signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only the main thread may set handlers; a caller's own handler is kept.
    caught: list[signal.Signals] = []
    try:
        for sig in _STOPPED_BY:
            if (
                threading.current_thread() is threading.main_thread()
                and signal.getsignal(sig) == signal.SIG_DFL
            ):
                signal.signal(sig, _raise_stopped)
                caught.append(sig)
        return int(args.func(args))
    except VfioError as exc:
        print(f"pyvfio: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyvfio: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT  # as a shell reports a command a signal killed
    except _Stopped as stop:
        print(f"pyvfio: {_STOPPED_BY[signal.Signals(stop.signum)]}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:
        # `pyvfio list --json | head`: the reader left; say nothing more, and
        # keep Python from failing again on flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a writer killed by SIGPIPE
    finally:
        for sig in caught:
            signal.signal(sig, signal.SIG_DFL)
