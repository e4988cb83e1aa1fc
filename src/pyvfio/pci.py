# SPDX-License-Identifier: Apache-2.0
"""PCI devices as sysfs shows them: lookup, IOMMU groups, driver binding.

Nothing here opens /dev/vfio; this is the part of pyvfio that works on any
device, whatever it is bound to.  Binding uses ``driver_override`` rather
than ``new_id``, which would let the driver claim every device with the same
ID.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _check, usage
from ._check import CheckedRecord
from ._where import load_hint
from .cookie import DRIVER as COOKIE_DRIVER
from .errors import (
    ArgumentTypeError,
    BusyError,
    DeviceNotFoundError,
    DriverError,
    InvalidArgumentError,
    OutOfRangeError,
    VfioError,
)

log = logging.getLogger(__name__)

SYSFS_PCI = Path("/sys/bus/pci")

# IORESOURCE_* bits of the sysfs "resource" file (include/linux/ioport.h)
_IORESOURCE_IO = 0x100
_IORESOURCE_MEM = 0x200
_IORESOURCE_PREFETCH = 0x2000
_IORESOURCE_MEM_64 = 0x100000

_BDF_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$")

NUM_BARS = 6
MAX_VFS = 0xFFFF  # the SR-IOV capability's TotalVFs is 16 bits
# How long a process holding the group node may take to let go before it
# counts as a user (udev opens it as it appears).
TRANSIENT_HOLDER_SECONDS = 2.0
PCI_ROM_RESOURCE = 6  # the line of `resource` after the six BARs
# When an unbind that waits for the device's holders first says whom it
# waits for, and how often it says so again.
WAIT_FIRST_REPORT_SECONDS = 1.0
WAIT_REPORT_SECONDS = 5.0

# Taking a device from its driver, then probing it again, in a child process:
# the kernel waits in the unbind write until every holder has closed the
# device, and a signal turns that wait uninterruptible
# (vfio_unregister_group_dev), so a writer in this process could keep it from
# ever exiting.  A child of its own can be left waiting.  Exit 10 or 11 says
# which write failed; the shell's message, on stderr, says why.
_UNBIND_AND_PROBE = 'printf %s "$1" >"$2" || exit 10; printf %s "$1" >"$3" || exit 11'
_ERRNO_OF = {
    os.strerror(e): e
    for e in (errno.EPERM, errno.EACCES, errno.ENODEV, errno.ENOENT, errno.EBUSY, errno.EINVAL)
}
# Writers given up on: kept so that Python reaps them once they end.
_left_waiting: list[subprocess.Popen[str]] = []


_BDF_HINT = "use the DDDD:BB:DD.F form shown by `pyvfio list`, e.g. 0000:00:03.0"


def normalize_bdf(bdf: str) -> str:
    """Return the full ``DDDD:BB:DD.F`` form of a PCI address, lower case.

    ``bdf`` is a str, ``DDDD:BB:DD.F`` or ``BB:DD.F`` in hex, either case,
    with surrounding blanks; anything else raises ArgumentTypeError (not a
    str) or InvalidArgumentError (not a PCI address).
    """
    if not isinstance(bdf, str):
        raise _check.wrong_type(
            "bdf", bdf, "a PCI address (str)", device=None, operation=None, hint=_BDF_HINT
        )
    m = _BDF_RE.match(bdf.strip())
    if not m:
        raise InvalidArgumentError(f"bdf {bdf!r} is not a PCI address", hint=_BDF_HINT)
    domain = m.group(1) or "0000"
    return f"{domain}:{m.group(2)}:{m.group(3)}.{m.group(4)}".lower()


@dataclass(frozen=True)
class Bar(CheckedRecord):
    """One base address register as the kernel assigned it."""

    #: The BAR's number, 0-5 (6: the expansion ROM, :meth:`Sysfs.rom`).
    index: int
    #: Its physical (bus) address.
    start: int
    #: Its size in bytes.
    size: int
    #: The kernel's IORESOURCE_* bits, from sysfs ``resource``.
    flags: int

    @property
    def is_io(self) -> bool:
        """Whether it is an I/O port BAR (else memory)."""
        return bool(self.flags & _IORESOURCE_IO)

    @property
    def prefetchable(self) -> bool:
        """Whether it is marked prefetchable."""
        return bool(self.flags & _IORESOURCE_PREFETCH)

    @property
    def is_64bit(self) -> bool:
        """Whether it is a 64-bit memory BAR."""
        return bool(self.flags & _IORESOURCE_MEM_64)


@dataclass(frozen=True)
class PciDevice(CheckedRecord):
    """A snapshot of one PCI function's sysfs attributes."""

    #: Its address, ``DDDD:BB:DD.F``.
    bdf: str
    #: The vendor ID.
    vendor: int
    #: The device ID.
    device: int
    #: Class, subclass and prog-if, as one int (``0x010802``: an NVMe controller).
    class_code: int
    #: The driver bound to it, or None.
    driver: str | None
    #: The driver its next probe is steered to (sysfs ``driver_override``), or None.
    driver_override: str | None
    #: Its IOMMU group's number, or None without an IOMMU.
    iommu_group: int | None
    #: Its memory and I/O BARs, those the kernel assigned, by index.
    bars: tuple[Bar, ...]

    @property
    def id(self) -> str:
        """``vvvv:dddd``, as lspci -n prints it."""
        return f"{self.vendor:04x}:{self.device:04x}"

    @property
    def on_vfio(self) -> bool:
        """Bound to a VFIO driver (vfio-pci, vfio_pci_cookie or another variant),
        the drivers :meth:`pyvfio.Device.open` accepts."""
        return self.driver is not None and "vfio" in self.driver


# What may name a driver: it becomes a sysfs path and a modprobe argument.
_DRIVER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _check_driver(driver: object, operation: str) -> str:
    name = _check.text(driver, "driver", device=None, operation=operation)
    if not _DRIVER_RE.match(name):
        raise InvalidArgumentError(
            f"driver {name!r} is not a driver name",
            operation=operation,
            hint="name a driver as /sys/bus/pci/drivers lists it, e.g. vfio-pci",
        )
    return name


def _check_force(force: object, operation: str) -> bool:
    return _check.boolean(force, "force", device=None, operation=operation)


def _check_wait(
    timeout: object, on_wait: object, operation: str
) -> tuple[float | None, Callable[[str], object] | None]:
    if timeout is not None:
        timeout = _check.seconds(timeout, "timeout", device=None, operation=operation)
    return timeout, _check.callback(on_wait, "on_wait", device=None, operation=operation)


def _check_id(value: object, name: str, high: int, operation: str) -> int:
    try:
        return _check.integer(value, name, device=None, operation=operation, high=high)
    except ArgumentTypeError as exc:
        exc.hint = "IDs are numbers: find(0x1234, 0x11E8), not find('1234', '11e8')"
        raise


class Sysfs:
    """Access to /sys/bus/pci; the root is a parameter so tests can fake it.

    ``root`` is a path (str or pathlib.Path).  Every ``bdf`` parameter takes
    a PCI address as :func:`normalize_bdf` does.
    """

    def __init__(self, root: Path | str = SYSFS_PCI) -> None:
        #: The PCI bus directory it reads, ``/sys/bus/pci`` by default.
        self.root = Path(_check.path(root, "root", device=None, operation="Sysfs()"))

    def _dev(self, bdf: str) -> Path:
        path = self.root / "devices" / normalize_bdf(bdf)
        if not path.exists():
            raise DeviceNotFoundError(
                "no such PCI device",
                device=normalize_bdf(bdf),
                hint="`pyvfio list` shows the devices present",
            )
        return path

    def vfio_cdev(self, bdf: str) -> str | None:
        """The device's VFIO cdev (``vfioN`` of /dev/vfio/devices), if the kernel made one.

        Kernels from 6.1 list the device under ``vfio-dev/`` either way; only
        with ``CONFIG_VFIO_DEVICE_CDEV`` is it a char device (a ``dev`` file)."""
        found = sorted((self._dev(bdf) / "vfio-dev").glob("vfio*/dev"))
        return found[0].parent.name if found else None

    def addresses(self) -> list[str]:
        """The addresses of every PCI function, sorted."""
        try:
            return sorted(p.name for p in (self.root / "devices").iterdir())
        except FileNotFoundError:
            raise DeviceNotFoundError(
                f"no PCI devices directory under {self.root}",
                operation="list devices",
                hint="is sysfs mounted, and is the path /sys/bus/pci?",
            ) from None

    def device(self, bdf: str) -> PciDevice:
        """A snapshot of the device now: IDs, class, driver, IOMMU group, BARs.
        DeviceNotFoundError if there is no such device."""
        path = self._dev(bdf)
        driver_link = path / "driver"
        group_link = path / "iommu_group"
        override = _read_optional(path / "driver_override")
        return PciDevice(
            bdf=path.name,
            vendor=int((path / "vendor").read_text(), 16),
            device=int((path / "device").read_text(), 16),
            class_code=int((path / "class").read_text(), 16),
            driver=driver_link.resolve().name if driver_link.exists() else None,
            driver_override=None if override in (None, "", "(null)") else override,
            iommu_group=int(group_link.resolve().name) if group_link.exists() else None,
            bars=_parse_resource((path / "resource").read_text()),
        )

    def config(self, bdf: str) -> bytes:
        """The device's config space as sysfs gives it to this user: 4096 bytes
        (PCI Express) or 256 to root, only the first 64 to anyone else.
        Reading it changes nothing: the kernel wakes only a device in D3cold."""
        path = self._dev(bdf) / "config"
        try:
            return path.read_bytes()
        except OSError as exc:
            raise VfioError(
                f"reading {path} failed: {exc.strerror}",
                device=normalize_bdf(bdf),
                operation="read config space",
                errno=exc.errno,
            ) from exc

    def power_state(self, bdf: str) -> str | None:
        """The D-state the kernel last recorded (``D0``, ``D3hot``, ...), from
        sysfs ``power_state`` (Linux 5.19+); None where the kernel has no such
        attribute or does not know (``unknown``: no driver has managed it)."""
        state = _read_optional(self._dev(bdf) / "power_state")
        return None if state in (None, "unknown") else state

    def subsystem(self, bdf: str) -> tuple[int, int] | None:
        """(subsystem vendor, subsystem device) as the kernel read them (for
        bridges from the SSVID capability); None where sysfs has no such files."""
        path = self._dev(bdf)
        vendor = _read_optional(path / "subsystem_vendor")
        device = _read_optional(path / "subsystem_device")
        if vendor is None or device is None:
            return None
        return int(vendor, 16), int(device, 16)

    def rom(self, bdf: str) -> Bar | None:
        """The expansion ROM resource the kernel assigned (``resource`` line 6,
        PCI_ROM_RESOURCE), or None if the device has none."""
        lines = (self._dev(bdf) / "resource").read_text().splitlines()
        if len(lines) <= PCI_ROM_RESOURCE:
            return None
        start, end, flags = (int(field, 16) for field in lines[PCI_ROM_RESOURCE].split())
        if start == 0 and end == 0:
            return None
        return Bar(index=PCI_ROM_RESOURCE, start=start, size=end - start + 1, flags=flags)

    def devices(self) -> list[PciDevice]:
        """A snapshot of every PCI function, in address order."""
        return [self.device(bdf) for bdf in self.addresses()]

    def find(self, vendor: int, device: int) -> list[PciDevice]:
        """All functions with this vendor:device ID (ints, 0..0xFFFF), in address order."""
        vendor = _check_id(vendor, "vendor", 0xFFFF, "find")
        device = _check_id(device, "device", 0xFFFF, "find")
        return [d for d in self.devices() if (d.vendor, d.device) == (vendor, device)]

    def find_class(self, class_code: int, mask: int = 0xFFFF00) -> list[PciDevice]:
        """All functions of a class, in address order: ``0x010800`` with the
        default mask is every NVMe controller (class 01, subclass 08, any
        prog-if); ``mask=0xFF0000`` matches the base class only.  Both are
        ints, 0..0xFFFFFF."""
        class_code = _check_id(class_code, "class_code", 0xFFFFFF, "find_class")
        mask = _check_id(mask, "mask", 0xFFFFFF, "find_class")
        return [d for d in self.devices() if d.class_code & mask == class_code & mask]

    def group_members(self, group: int) -> list[str]:
        """The addresses in IOMMU group ``group`` (an int >= 0); empty if there is none."""
        group = _check.integer(
            group, "group", device=None, operation="group members", high=(1 << 31) - 1
        )
        path = self.root.parent.parent / "kernel" / "iommu_groups" / str(group) / "devices"
        return sorted(p.name for p in path.iterdir()) if path.exists() else []

    def users(self, bdf: str) -> list[str]:
        """What uses the device now, as sentences: its block devices mounted,
        swapped on or held, its network interfaces up, processes holding its
        VFIO group or cdev.  Empty: taking it from its driver breaks nothing."""
        return self._users(self.device(bdf))

    def _users(self, dev: PciDevice) -> list[str]:
        path = self._dev(dev.bdf)
        return [
            *usage.block_users(self.root, path),
            *usage.net_users(self.root, path),
            *usage.vfio_holders(dev.iommu_group, self.vfio_cdev(dev.bdf)),
        ]

    def _refuse_if_used(self, dev: PciDevice, operation: str, force: bool) -> None:
        if force or dev.driver is None:
            return
        users = self._users(dev)
        # A process that opens the group node for a moment (udev, as the node
        # appears after a bind) is not a user: only one still there is.
        deadline = time.monotonic() + TRANSIENT_HOLDER_SECONDS
        while users and all(u.startswith("process ") for u in users):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
            users = self._users(dev)
        if not users:
            return
        holders = [u.split()[1] for u in users if u.startswith("process ")]
        if holders:
            hint = (
                f"stop process {', '.join(holders)} first (kill {' '.join(holders)}): the "
                "kernel waits until it closes the device; it asks it to, and a pyvfio "
                "program lets go at its next use of the device, others may never"
            )
        else:
            hint = f"stop using it first: {dev.driver} would lose it"
        raise BusyError(
            f"in use: {'; '.join(users)}",
            device=dev.bdf,
            operation=operation,
            hint=f"{hint}; or force it (--force, force=True)",
        )

    def bind(
        self,
        bdf: str,
        driver: str = "vfio-pci",
        *,
        force: bool = False,
        timeout: float | None = None,
        on_wait: Callable[[str], object] | None = None,
    ) -> str | None:
        """Bind ``bdf`` to ``driver``; return the driver it had before.

        A device in use (:meth:`users`: a mounted filesystem, an interface up,
        a process holding it through VFIO) is refused with BusyError naming
        the user, unless ``force``.  If the new driver does not take the
        device, the previous one is restored before the error is raised, so
        a failed bind loses nothing.  ``driver`` is a driver's name (a str,
        as /sys/bus/pci/drivers lists it), ``force`` True or False.
        ``timeout`` and ``on_wait`` are :meth:`unbind`'s.
        """
        driver = _check_driver(driver, "bind")
        force = _check_force(force, "bind")
        timeout, on_wait = _check_wait(timeout, on_wait, "bind")
        dev = self.device(bdf)
        if dev.driver == driver:
            return driver
        self._refuse_if_used(dev, f"bind to {driver}", force)
        self._ensure_driver_loaded(driver, dev.bdf)
        path = self._dev(dev.bdf)
        _write(path / "driver_override", driver, dev.bdf, "set driver_override")
        self._reprobe(dev, f"bind to {driver}", timeout, on_wait)
        now = self.device(dev.bdf).driver
        if now != driver:
            self._restore(dev)
            raise DriverError(
                f"{driver} did not take the device (kernel log may say why)",
                device=dev.bdf,
                operation="bind",
                hint=f"the device is back on {dev.driver or 'no driver'}; check `dmesg`",
            )
        log.info("%s: bound to %s (was %s)", dev.bdf, driver, dev.driver)
        return dev.driver

    def reset_methods(self, bdf: str) -> tuple[str, ...]:
        """The reset methods the kernel will try for ``bdf``, in its order
        (sysfs ``reset_method``, Linux 5.15 and later: ``flr``, ``pm``,
        ``bus`` ...); () where it offers none."""
        text = _read_optional(self._dev(bdf) / "reset_method")
        return tuple(text.split()) if text else ()

    def set_reset_methods(self, bdf: str, methods: Sequence[str]) -> None:
        """Write ``reset_method``: the kernel tries only ``methods``, in that
        order (``("default",)``: every method the device supports).  Needs root."""
        operation = "set reset_method"
        if isinstance(methods, str) or not isinstance(methods, Sequence):
            raise ArgumentTypeError(
                f"methods must be a sequence of str, not {methods!r}", operation=operation
            )
        for method in methods:
            if not isinstance(method, str):
                raise ArgumentTypeError(
                    f"methods must be a sequence of str, not one holding {method!r}",
                    operation=operation,
                )
            if method.split() != [method]:
                raise InvalidArgumentError(
                    f"methods: {method!r} is no reset method's name", operation=operation
                )
        if not methods:
            raise InvalidArgumentError(
                'methods: give at least one ("default": every method)', operation=operation
            )
        path = self._dev(bdf)
        _write(path / "reset_method", " ".join(methods), path.name, operation)

    # -- SR-IOV ------------------------------------------------------------

    def total_vfs(self, bdf: str) -> int:
        """How many virtual functions ``bdf`` can have (sysfs ``sriov_totalvfs``);
        0 for a function without SR-IOV, a VF among them."""
        text = _read_optional(self._dev(bdf) / "sriov_totalvfs")
        return int(text) if text else 0

    def vfs(self, bdf: str) -> list[str]:
        """The addresses of the PF ``bdf``'s virtual functions now enabled, in
        VF order (``virtfn0``, ``virtfn1`` ...); empty if none are."""
        path = self._dev(bdf)
        links = sorted(path.glob("virtfn*"), key=lambda p: int(p.name[len("virtfn") :]))
        return [link.resolve().name for link in links]

    def physfn(self, bdf: str) -> str | None:
        """The address of the PF whose VF ``bdf`` is; None if it is no VF."""
        link = self._dev(bdf) / "physfn"
        return link.resolve().name if link.exists() else None

    def enable_vfs(self, bdf: str, count: int, *, autoprobe: bool = False) -> list[str]:
        """Create ``count`` virtual functions of the PF ``bdf`` (sysfs
        ``sriov_numvfs``); returns their addresses.  Needs root.

        ``autoprobe`` False (the default) sets ``sriov_drivers_autoprobe`` to 0
        first: no driver takes the VFs as they appear, so a program binds each
        where it wants (:meth:`bind`).  A PF on vfio-pci (or a variant
        driver) creates VFs only with that module's ``enable_sriov=1``; it
        steers them to itself (``driver_override``), which the kernel honours
        whatever ``autoprobe`` says, and opening one takes the VF token its
        PF's user set (:meth:`pyvfio.Device.set_vf_token`).  ``count`` is an
        int from 1 to :meth:`total_vfs`; a PF that has VFs already is
        refused (:meth:`disable_vfs` first)."""
        operation = "enable VFs"
        name, count, autoprobe = _vfs_arguments(bdf, count, autoprobe)
        dev = self.device(name)
        total = self.total_vfs(dev.bdf)
        if total == 0:
            raise InvalidArgumentError(
                "the device has no SR-IOV capability (sriov_totalvfs)",
                device=dev.bdf,
                operation=operation,
                hint="give the address of a physical function that has VFs",
            )
        if count > total:
            raise OutOfRangeError(
                f"count: {count} VFs asked, the PF has at most {total}",
                device=dev.bdf,
                operation=operation,
            )
        now = self.vfs(dev.bdf)
        if now:
            raise BusyError(
                f"the PF has {len(now)} VFs already ({', '.join(now)})",
                device=dev.bdf,
                operation=operation,
                hint="disable them first (Sysfs.disable_vfs)",
            )
        path = self._dev(dev.bdf)
        before = _read_optional(path / "sriov_drivers_autoprobe")
        _write(path / "sriov_drivers_autoprobe", "1" if autoprobe else "0", dev.bdf, operation)
        try:
            path.joinpath("sriov_numvfs").write_text(str(count))
        except OSError as exc:
            if before is not None:  # a refusal changes nothing
                _write(path / "sriov_drivers_autoprobe", before, dev.bdf, operation)
            raise VfioError(
                f"writing sriov_numvfs failed: {exc.strerror}",
                device=dev.bdf,
                operation=operation,
                errno=exc.errno,
                hint=_enable_vfs_hint(dev.driver, exc.errno),
            ) from exc
        return self.vfs(dev.bdf)

    def disable_vfs(self, bdf: str) -> None:
        """Remove every virtual function of the PF ``bdf`` (``sriov_numvfs`` 0).

        The kernel waits, in that write, until nothing holds a VF: a VF
        some process holds through VFIO (this one included, which would
        never let go) is refused with BusyError naming it, before anything
        changes.  Harmless without VFs.  Needs root."""
        operation = "disable VFs"
        dev = self.device(bdf)
        vfs = self.vfs(dev.bdf)
        if not vfs:
            return
        for vf in vfs:
            vf_dev = self.device(vf)
            holders = usage.vfio_holders(vf_dev.iommu_group, self.vfio_cdev(vf))
            if holders:
                raise BusyError(
                    f"VF {vf} is in use: {'; '.join(holders)}",
                    device=dev.bdf,
                    operation=operation,
                    hint="close the VF's Device first (the kernel would wait for it)",
                )
        _write(self._dev(dev.bdf) / "sriov_numvfs", "0", dev.bdf, operation)

    def vfs_enabled(
        self, bdf: str, count: int, *, autoprobe: bool = False
    ) -> contextlib.AbstractContextManager[list[str]]:
        """:meth:`enable_vfs` for a ``with`` block, which gets the VFs'
        addresses; afterwards the VFs are gone (:meth:`disable_vfs`) and
        ``sriov_drivers_autoprobe`` is as it was.  Arguments as
        :meth:`enable_vfs`'s, checked at the call."""
        return self._vfs_enabled(*_vfs_arguments(bdf, count, autoprobe))

    @contextlib.contextmanager
    def _vfs_enabled(self, bdf: str, count: int, autoprobe: bool) -> Iterator[list[str]]:
        path = self._dev(bdf)
        before = _read_optional(path / "sriov_drivers_autoprobe")
        try:
            yield self.enable_vfs(bdf, count, autoprobe=autoprobe)
        finally:
            try:
                self.disable_vfs(bdf)
            finally:
                if before is not None:
                    _write(path / "sriov_drivers_autoprobe", before, bdf, "restore autoprobe")

    def bound(
        self, bdf: str, driver: str = "vfio-pci", *, force: bool = False
    ) -> contextlib.AbstractContextManager[PciDevice]:
        """Bind ``bdf`` to ``driver`` for a ``with`` block; afterwards (error or
        not) the device is back as it was: on its previous driver with its
        previous driver_override, or unbound if it had none.  Arguments as
        :meth:`bind`'s, checked at the call, before the ``with``."""
        driver = _check_driver(driver, "bind")
        force = _check_force(force, "bind")
        normalize_bdf(bdf)
        return self._bound(bdf, driver, force)

    @contextlib.contextmanager
    def _bound(self, bdf: str, driver: str, force: bool) -> Iterator[PciDevice]:
        before = self.device(bdf)
        self.bind(before.bdf, driver, force=force)
        try:
            yield self.device(before.bdf)
        finally:
            if before.driver != driver:
                self._return_to(before)

    def _return_to(self, before: PciDevice) -> None:
        path = self._dev(before.bdf)
        if before.driver is not None:
            self.bind(before.bdf, before.driver)
        elif (path / "driver").exists():
            _write(path / "driver" / "unbind", before.bdf, before.bdf, "unbind")
        # driver_override only steers the next probe: the binding stays.
        override = before.driver_override or "\n"
        _write(path / "driver_override", override, before.bdf, "restore driver_override")

    def unbind(
        self,
        bdf: str,
        *,
        force: bool = False,
        timeout: float | None = None,
        on_wait: Callable[[str], object] | None = None,
    ) -> str | None:
        """Release ``bdf`` from its driver and let the kernel pick its default one.

        Refused like :meth:`bind` while the device is in use, unless ``force``.
        Returns the driver the device ends up with (None if none claims it).
        A device already on the driver the kernel picked for it (bound, with
        no driver_override) is left alone: unbinding it would only take it
        from its driver and probe the same one again.
        ``force`` is True or False.

        A forced unbind of a device that a process holds through VFIO waits
        in the kernel until the holder closes it (a pyvfio program does at
        its next use of the device).  ``on_wait(sentence)``, if given, is
        called after a second of waiting and every 5 s after, naming whom the
        kernel waits for.  After ``timeout`` seconds (None: no limit) a
        BusyError says so; the kernel's unbind cannot be called off, so it
        goes on in a child process and ends when the holders let go.
        """
        force = _check_force(force, "unbind")
        timeout, on_wait = _check_wait(timeout, on_wait, "unbind")
        dev = self.device(bdf)
        if dev.driver is not None and dev.driver_override is None:
            log.info("%s: already on %s, its default driver", dev.bdf, dev.driver)
            return dev.driver
        self._refuse_if_used(dev, "unbind", force)
        self._restore(dev, timeout, on_wait)
        return self.device(bdf).driver

    def _restore(
        self,
        dev: PciDevice,
        timeout: float | None = None,
        on_wait: Callable[[str], object] | None = None,
    ) -> None:
        path = self._dev(dev.bdf)
        _write(path / "driver_override", "\n", dev.bdf, "clear driver_override")
        self._reprobe(dev, "unbind", timeout, on_wait)

    def _reprobe(
        self,
        dev: PciDevice,
        operation: str,
        timeout: float | None,
        on_wait: Callable[[str], object] | None,
    ) -> None:
        """Take ``dev`` from its driver, if it has one, and probe it again:
        driver_override, already written, picks the next driver."""
        path = self._dev(dev.bdf)
        if not (path / "driver").exists():
            self._probe(dev.bdf)
            return
        driver = path / "driver" / "unbind"
        # Named now: the unbind takes the cdev out of sysfs before it waits.
        nodes = (dev.iommu_group, self.vfio_cdev(dev.bdf))
        writer = subprocess.Popen(
            [
                "sh",
                "-c",
                _UNBIND_AND_PROBE,
                "sh",
                dev.bdf,
                str(driver),
                str(self.root / "drivers_probe"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C in a terminal is not for it
        )
        start = time.monotonic()
        next_report = start + WAIT_FIRST_REPORT_SECONDS
        try:
            while True:
                try:
                    status = writer.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if timeout is not None and now - start >= timeout:
                    whom, pids = _waited_for(*nodes)
                    raise BusyError(
                        f"the kernel still waits for {whom} after {timeout:g} s; the unbind "
                        f"cannot be called off: it goes on in process {writer.pid} and ends "
                        "when the device is let go",
                        device=dev.bdf,
                        operation=operation,
                        hint=(
                            f"stop process {', '.join(pids)} (kill {' '.join(pids)})"
                            if pids
                            else "find the process that maps the device and stop it"
                        )
                        + "; a pyvfio program lets go at its next use of the device",
                    )
                if on_wait is not None and now >= next_report:
                    next_report = now + WAIT_REPORT_SECONDS
                    whom, _ = _waited_for(*nodes)
                    on_wait(f"{dev.bdf}: waiting {now - start:.0f} s for {whom} to close it")
        except BaseException:
            _left_waiting.append(writer)
            raise
        assert writer.stderr is not None
        said = writer.stderr.read().strip()
        writer.stderr.close()
        if status != 0:
            reason = said.rsplit(": ", 1)[-1] if said else f"status {status}"
            step = "unbind" if status == 10 else "drivers_probe"
            raise VfioError(
                f"writing {driver if status == 10 else self.root / 'drivers_probe'} "
                f"failed: {reason}",
                device=dev.bdf,
                operation=f"{operation} ({step})",
                errno=_ERRNO_OF.get(reason),
                hint="binding needs root"
                if _ERRNO_OF.get(reason) in (errno.EPERM, errno.EACCES)
                else None,
            )

    def _probe(self, bdf: str) -> None:
        _write(self.root / "drivers_probe", bdf, bdf, "drivers_probe")

    def _ensure_driver_loaded(self, driver: str, bdf: str) -> None:
        if (self.root / "drivers" / driver).exists():
            return
        proc = subprocess.run(["modprobe", driver], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (self.root / "drivers" / driver).exists():
            raise DriverError(
                f"driver {driver} is not loaded and `modprobe {driver}` failed: "
                f"{proc.stderr.strip() or 'no such driver'}",
                device=bdf,
                operation="bind",
                hint=_load_hint(driver),
            )


def _waited_for(group: int | None, cdev: str | None) -> tuple[str, list[str]]:
    """Whom an unbind waits for, as words and as process ids."""
    holders = usage.vfio_holders(group, cdev)
    pids = [h.split()[1] for h in holders]
    if holders:
        return "; ".join(
            h.removesuffix(" open").replace(" has ", " holding ") for h in holders
        ), pids
    # An mmap of a BAR or a device fd passed on keeps the device, with
    # no group or cdev node open to see.
    return "its holder (no process has its group or cdev open: a mapping or a passed fd)", pids


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _write(path: Path, value: str, device: str, operation: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise VfioError(
            f"writing {path} failed: {exc.strerror}",
            device=device,
            operation=operation,
            errno=exc.errno,
            hint="binding needs root" if exc.errno in (errno.EPERM, errno.EACCES) else None,
        ) from exc


def _parse_resource(text: str) -> tuple[Bar, ...]:
    bars = []
    for index, line in enumerate(text.splitlines()[:NUM_BARS]):
        start, end, flags = (int(field, 16) for field in line.split())
        if end == 0 and start == 0:
            continue
        bars.append(Bar(index=index, start=start, size=end - start + 1, flags=flags))
    return tuple(bars)


def _vfs_arguments(bdf: str, count: int, autoprobe: bool) -> tuple[str, int, bool]:
    """:meth:`Sysfs.enable_vfs`'s arguments, checked: the address, normalized."""
    name = normalize_bdf(bdf)
    operation = "enable VFs"
    count = _check.integer(count, "count", device=name, operation=operation, low=1, high=MAX_VFS)
    autoprobe = _check.boolean(autoprobe, "autoprobe", device=name, operation=operation)
    return name, count, autoprobe


def _enable_vfs_hint(driver: str | None, error: int | None) -> str:
    """What to do when the PF's driver refused to create VFs."""
    if error == errno.ENOENT and driver is not None and "vfio" in driver:
        module = driver.replace("-", "_")
        return (
            f"{driver} creates VFs only with its enable_sriov parameter: "
            f"echo 1 > /sys/module/{module}/parameters/enable_sriov (or load it "
            f"with enable_sriov=1), as root"
        )
    if error in (errno.EPERM, errno.EACCES):
        return "creating VFs needs root"
    if driver is None:
        return "the PF has no driver: bind one that creates VFs (vfio-pci, or its own)"
    return f"{driver} refused; `dmesg` may say why"


def _load_hint(driver: str) -> str:
    if driver == COOKIE_DRIVER:  # ours: built by the user, where modprobe may not find it
        return f"{load_hint()}; or pick another driver"
    return f"load it first (modprobe {driver}) or pick another driver"
