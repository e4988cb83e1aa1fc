# SPDX-License-Identifier: Apache-2.0
"""An IOMMU context: one DMA address space that any number of devices share.

On the legacy backend it is a type1 container with the IOMMU groups of its
devices attached; on iommufd an IOAS with the devices' cdevs attached.  A
buffer mapped into it once (:attr:`IommuContext.dma`) is reachable by every
device opened into it, at the same IOVA: how a buffer passes from one device
to another, as in DPDK, libvfn and rust-vmm.

``Device.open(bdf)`` makes a context of its own for the device, closed with
it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

# The module, not its names: it imports this one (either may come first).
from . import _check
from . import device as device_mod
from ._sys import open_node, retry_eagain
from .container import Container
from .dma import DmaBuffer, DmaSpace, IdentityIova
from .errors import (
    ArgumentTypeError,
    BusyError,
    ClosedError,
    DriverError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnsupportedError,
    VfioError,
)
from .group import Group, group_offenders, name_holders, not_viable, other_holders
from .iommufd import Ioas
from .p2p import PeerMapping
from .pci import Sysfs, normalize_bdf

if TYPE_CHECKING:
    from .device import Backend, Device

CDEV_DIR = "/dev/vfio/devices"


class IommuContext:
    """One IOMMU address space; devices are opened into it with :meth:`open`.

    ``backend``: a :class:`~pyvfio.Backend`, ``"iommufd"``, ``"legacy"``,
    ``"auto"`` or None ($PYVFIO_BACKEND, else auto), as ``Device.open``
    takes it; auto is decided by the first device opened (iommufd where the
    kernel offers it for that device), and every later device uses the same.
    ``sysfs``: a :class:`~pyvfio.Sysfs` or None (the real one).

    Devices of one IOMMU group share its group fd (legacy); a group leaves
    the container when its last device closes, except the container's last
    group, which stays until another group joins or the context closes: the
    kernel drops a container's mappings with its last group.  :meth:`close` closes every
    device still open, then the buffers, groups and the container or iommufd.
    """

    def __init__(self, backend: Backend | str | None = None, *, sysfs: Sysfs | None = None) -> None:
        operation = "IommuContext()"
        if backend is not None:
            device_mod.check_backend(backend, None)
        _check.instance(
            sysfs,
            Sysfs,
            "sysfs",
            "a pyvfio.Sysfs",
            device=None,
            operation=operation,
            allow_none=True,
            hint="pass Sysfs(root) for another sysfs tree, not its path",
        )
        self._requested = backend
        self._sysfs = sysfs or Sysfs()
        # Who made the container or IOAS: a forked child's close leaves its
        # DMA mappings (set again at the first open).
        self._pid = os.getpid()
        # Guards every field below; held across the kernel calls of an open
        # or a close (a device's own close takes its lock first, then this).
        self._lock = threading.RLock()
        #: How its devices are opened: the backend asked for, else decided by
        #: the first device (None before then).
        self.backend: Backend | None = None
        if backend is not None and backend != "auto":
            self.backend = device_mod.Backend(backend)
        self._iommu: Container | Ioas | None = None
        self._groups: dict[int, Group] = {}
        self._group_users: dict[int, int] = {}
        self._devices: list[Device] = []
        self._peers: list[PeerMapping] = []  # peer-to-peer maps of its devices' BARs
        self._dma: DmaSpace | None = None
        self._closed = False
        self._private = False  # Device.open's: one device, closed with it

    @property
    def name(self) -> str:
        """What errors call it: its container or IOAS, once there is one."""
        return self._iommu.name if self._iommu is not None else "IOMMU context"

    @property
    def iommu(self) -> Container | Ioas:
        """The legacy container or the iommufd IOAS; exists from the first open."""
        self._check_open("iommu")
        if self._iommu is None:
            raise UnsupportedError(
                "no device has been opened into the context yet",
                device=self.name,
                operation="iommu",
                hint="ctx.open(bdf) first: it decides the backend",
            )
        return self._iommu

    @property
    def sysfs(self) -> Sysfs:
        """The sysfs it finds its devices in."""
        return self._sysfs

    @property
    def devices(self) -> list[Device]:
        """The devices open in it, in the order they were opened."""
        with self._lock:
            return list(self._devices)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise ClosedError("IOMMU context is closed", device=self.name, operation=operation)

    # -- devices ---------------------------------------------------------

    def open(self, bdf: str, *, vf_token: uuid.UUID | None = None) -> Device:
        """Open ``bdf`` (bound to vfio-pci or a variant driver) into this
        context: its DMA goes through the context's address space.

        ``bdf`` is a PCI address (a str).  A device already open here, or one
        the context's backend cannot open, is refused before anything changes.
        ``vf_token`` (a uuid.UUID) opens a VF whose PF is on vfio-pci: the
        token the PF's user set (:meth:`Device.set_vf_token`).
        """
        if self._private:
            raise UnsupportedError(
                "this IOMMU context is the device's own (Device.open), closed with it",
                device=normalize_bdf(bdf),
                operation="open",
                hint="open the devices that share an address space into an IommuContext()",
            )
        return self._open(bdf, private=False, vf_token=vf_token)

    def _open(self, bdf: str, *, private: bool, vf_token: uuid.UUID | None = None) -> Device:
        bdf = normalize_bdf(bdf)
        vf_token = _check.vf_token(vf_token, device=bdf, operation="open")
        with self._lock:
            self._check_open("open")
            if any(dev.bdf == bdf for dev in self._devices):
                raise BusyError(
                    "already open in this IOMMU context",
                    device=bdf,
                    operation="open",
                    hint="use the Device you have (ctx.devices lists them)",
                )
            pci = self._sysfs.device(bdf)
            if pci.driver is None or "vfio" not in pci.driver:
                raise DriverError(
                    f"device is bound to {pci.driver or 'no driver'}, not a VFIO driver",
                    device=pci.bdf,
                    operation="open",
                    hint=f"run `pyvfio bind {pci.bdf}`",
                )
            if pci.iommu_group is None:
                raise UnsupportedError(
                    "device has no IOMMU group",
                    device=pci.bdf,
                    operation="open",
                    hint="boot with the IOMMU enabled (intel_iommu=on)",
                )
            cdev = self._sysfs.vfio_cdev(pci.bdf)
            if self._iommu is None:  # the first device: as Device.open chooses
                backend = device_mod.choose_backend(self._requested, pci.bdf, cdev)
            else:
                assert self.backend is not None
                backend = self.backend
            if backend is device_mod.Backend.IOMMUFD:
                if cdev is None:
                    raise UnsupportedError(
                        "the kernel offers no VFIO cdev for this device, and the context is "
                        "an iommufd IOAS",
                        device=pci.bdf,
                        operation="open (iommufd backend)",
                        hint="open it into a legacy context (IommuContext('legacy'))",
                    )
                # The kernel refuses the cdev with a bare EPERM while the group
                # has a device on a host driver; the group path says which.
                offenders = group_offenders(self._sysfs, pci.iommu_group)
                if offenders:
                    raise not_viable(pci.iommu_group, offenders, pci.bdf, "open (iommufd backend)")
                with self._vf_token_errors(pci.bdf, vf_token, backend):
                    device = self._open_cdev(
                        pci.bdf, cdev, pci.driver, pci.iommu_group, private, vf_token=vf_token
                    )
            else:
                with self._vf_token_errors(pci.bdf, vf_token, backend):
                    device = self._open_group(
                        pci.bdf, pci.iommu_group, pci.driver, private, vf_token=vf_token
                    )
            try:
                self._narrow_allocator()
            except BaseException:
                device.close()
                raise
            self.backend = backend
            self._private = private
            self._devices.append(device)
            return device

    @contextlib.contextmanager
    def _vf_token_errors(
        self, bdf: str, vf_token: uuid.UUID | None, backend: Backend
    ) -> Iterator[None]:
        """An open the kernel refused: say what VF tokens have to do with it."""
        try:
            yield
        except (PermissionDeniedError, InvalidArgumentError) as exc:
            if exc.errno is not None:
                exc.hint = self._vf_token_hint(bdf, vf_token, backend, exc) or exc.hint
            raise

    def _vf_token_hint(
        self, bdf: str, vf_token: uuid.UUID | None, backend: Backend, exc: VfioError
    ) -> str | None:
        pf = self._sysfs.physfn(bdf)
        pf_driver = self._sysfs.device(pf).driver if pf is not None else None
        vf_of_vfio = pf_driver is not None and "vfio" in pf_driver
        pf_with_vfs = pf is None and bool(self._sysfs.vfs(bdf))
        if isinstance(exc, PermissionDeniedError):
            if vf_of_vfio and vf_token is None:
                return (
                    f"its PF {pf} is on {pf_driver}: pass vf_token=, the UUID the "
                    "PF's user set with Device.set_vf_token()"
                )
            if vf_of_vfio:
                return f"the VF token of its PF {pf} is another: pass the one its user set"
            if pf_with_vfs:
                return "its VFs are in use: open it with vf_token=, the token they use"
            return None
        if vf_token is None:
            return None
        if pf is None and not self._sysfs.total_vfs(bdf):
            return "the device is no PF or VF: open it without vf_token"
        if pf is not None and not vf_of_vfio:
            return f"its PF {pf} is on {pf_driver or 'no driver'}: open it without vf_token"
        if backend is device_mod.Backend.IOMMUFD:
            return (
                "a kernel before 6.17 cannot open a VF by token through its cdev: "
                "open it into a legacy context (IommuContext('legacy'))"
            )
        return None

    def _open_group(
        self, bdf: str, number: int, driver: str, private: bool, *, vf_token: uuid.UUID | None
    ) -> Device:
        made_container = self._iommu is None
        if made_container:
            self._iommu = Container()
            self._pid = os.getpid()
        assert isinstance(self._iommu, Container)
        group = self._groups.get(number)
        made_group = group is None
        try:
            if group is None:
                group = Group(number, self._iommu, self._sysfs)
            fd = group.device_fd(bdf, vf_token=vf_token)
            try:
                device = device_mod.Device(bdf, fd, self._iommu, driver, group=group)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            if made_group and group is not None:
                group.close()
            if made_container:
                self._iommu.close()
                self._iommu = None
            raise
        self._groups[number] = group
        self._group_users[number] = self._group_users.get(number, 0) + 1
        # A group kept only as the container's last need not stay now.
        for idle in [n for n, users in self._group_users.items() if users == 0]:
            del self._group_users[idle]
            self._groups.pop(idle).close()
        device._join(self, private)
        return device

    def _open_cdev(
        self,
        bdf: str,
        cdev: str,
        driver: str,
        group: int,
        private: bool,
        *,
        vf_token: uuid.UUID | None,
    ) -> Device:
        made_ioas = self._iommu is None
        if made_ioas:
            self._iommu = Ioas()
            self._pid = os.getpid()
        ioas = self._iommu
        assert isinstance(ioas, Ioas)
        path = f"{CDEV_DIR}/{cdev}"
        try:
            fd = open_node(path, device=bdf, operation=f"open {path}")
            try:
                # Binding opens the device: its first open resets it, with the
                # same EAGAIN window as the group path's GET_DEVICE_FD.  A
                # device whose group a legacy user holds answers EBUSY.
                try:
                    retry_eagain(lambda: ioas.bind(fd, bdf, vf_token=vf_token), 1.0)
                except BusyError as exc:
                    name_holders(exc, group, cdev)  # a process holding its group
                    raise
                except InvalidArgumentError as exc:
                    # vfio_df_open(): a cdev opens a device once, unlike a group
                    others = other_holders(None, cdev)
                    if others:
                        exc.message = f"already open elsewhere: {'; '.join(others)}"
                    if others or vf_token is None:
                        exc.hint = "the device is already open through its cdev; close that first"
                    raise
                ioas.attach(fd, bdf)
                device = device_mod.Device(bdf, fd, ioas, driver)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            if made_ioas:
                ioas.close()
                self._iommu = None
            raise
        device._join(self, private)
        return device

    def _narrow_allocator(self) -> None:
        """A device attached may reserve IOVAs (its MSI window, say): the
        allocator stops handing them out."""
        if self._dma is not None:
            self._dma.allocator.restrict(self.iommu.iova_ranges())

    def _held_groups(self) -> dict[int, Group]:
        """The groups attached to its container (legacy), by number."""
        with self._lock:
            return dict(self._groups)

    def _leave(self, device: Device) -> None:
        """``device`` has closed its fd: let go of its group (legacy)."""
        with self._lock:
            if device in self._devices:
                self._devices.remove(device)
            number = device.group_number
            if number not in self._group_users:  # iommufd: the cdev's close was all
                return
            self._group_users[number] -= 1
            # The container's last group stays: with it go the container's
            # IOMMU and every mapping in it.
            if self._group_users[number] == 0 and len(self._groups) > 1:
                del self._group_users[number]
                self._groups.pop(number).close()

    # -- DMA -------------------------------------------------------------

    @property
    def dma(self) -> DmaSpace:
        """The context's DMA buffers and IOVA allocator, shared by its devices."""
        with self._lock:
            self._check_open("dma")
            if self._dma is None:
                self._dma = DmaSpace(self.iommu)
            return self._dma

    def dma_buffer(
        self,
        size: int,
        *,
        hugepages: bool = False,
        limit: int | None = None,
        writable_by_device: bool = True,
        iova: int | IdentityIova | None = None,
    ) -> DmaBuffer:
        """Allocate host memory and map it for DMA by every device of the
        context; arguments as :meth:`pyvfio.Device.dma_buffer` takes them."""
        return self.dma.allocate(
            size,
            hugepages=hugepages,
            limit=limit,
            writable_by_device=writable_by_device,
            iova=iova,
        )

    def dma_map(
        self,
        memory: mmap.mmap,
        *,
        limit: int | None = None,
        writable_by_device: bool = True,
        iova: int | IdentityIova | None = None,
    ) -> DmaBuffer:
        """Map memory you already have for DMA by every device of the context;
        arguments as :meth:`pyvfio.Device.dma_map` takes them."""
        return self.dma.map_memory(
            memory, limit=limit, writable_by_device=writable_by_device, iova=iova
        )

    def dma_map_peer(
        self,
        device: Device,
        index: int,
        *,
        offset: int = 0,
        size: int | None = None,
        limit: int | None = None,
        iova: int | None = None,
        writable_by_device: bool = True,
    ) -> PeerMapping:
        """Map BAR ``index`` of ``device`` (a device of this context), from
        ``offset`` for ``size`` bytes (whole pages; None: to its end), into the
        context, so that its other devices can DMA to it (peer-to-peer):
        the :class:`~pyvfio.p2p.PeerMapping`'s ``iova`` is where.  ``limit``
        and ``iova`` as :meth:`dma_buffer` takes them (an int IOVA or None).
        On the legacy backend through the BAR's mmap; on iommufd through a
        dma-buf of the BAR (Linux 6.19 and later).  Closed with the context,
        before its devices."""
        with self._lock:
            self._check_open("map a BAR for peer-to-peer DMA")
        if not isinstance(device, device_mod.Device):
            raise ArgumentTypeError(
                f"device must be a Device of this context, not {device!r}",
                operation="map a BAR for peer-to-peer DMA",
            )
        if device not in self.devices:
            raise InvalidArgumentError(
                "the device is not open in this IOMMU context",
                device=device.bdf,
                operation="map a BAR for peer-to-peer DMA",
                hint="open it with this context's open()",
            )
        peer = PeerMapping(
            self.dma,
            device,
            index,
            offset=offset,
            size=size,
            limit=limit,
            iova=iova,
            writable_by_device=writable_by_device,
        )
        with self._lock:
            self._peers.append(peer)
        return peer

    # -- lifetime --------------------------------------------------------

    def close(self) -> None:
        """Close its devices, then its buffers, groups and the container or
        iommufd; safe to call twice.  The first error is raised after every
        step has been tried."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # no open from here on
            devices = list(self._devices)
        first: BaseException | None = None
        for peer in self._peers:  # before the devices whose BARs they map
            try:
                peer.close()
            except BaseException as exc:
                first = first or exc
        for device in devices:  # outside the lock: each takes it to leave
            try:
                device.close()
            except BaseException as exc:
                first = first or exc
        with self._lock:
            steps = []
            if self._dma is not None and os.getpid() == self._pid:
                steps.append(self._dma.close)
            steps += [group.close for group in self._groups.values()]
            if self._iommu is not None:
                steps.append(self._iommu.close)
            for step in steps:
                try:
                    step()
                except BaseException as exc:
                    first = first or exc
            self._groups.clear()
            self._group_users.clear()
        if first is not None:
            raise first

    def __enter__(self) -> IommuContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._devices)} devices"
        return f"<IommuContext {self.backend or 'undecided'} {state}>"
