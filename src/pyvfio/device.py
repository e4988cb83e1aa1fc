# SPDX-License-Identifier: Apache-2.0
"""A VFIO device: opened through its group or its cdev; info, regions, IRQs, DMA, reset."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import functools
import logging
import mmap
import os
import struct
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# The module, not its names: it imports this one (either may come first).
from . import _check, irq, uapi
from . import context as context_mod
from ._check import CheckedRecord
from ._sys import ioctl, retry_eagain
from .config import ConfigSpace
from .container import Container
from .devfd import DeviceFd
from .dma import DmaBuffer, DmaSpace, IdentityIova
from .errors import (
    ArgumentTypeError,
    BusyError,
    DriverError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnsupportedError,
    VfioError,
)
from .group import Group
from .iommufd import IOMMUFD_PATH, Ioas
from .pci import Sysfs, normalize_bdf
from .region import Region

log = logging.getLogger(__name__)

BACKEND_ENV = "PYVFIO_BACKEND"


class Backend(enum.StrEnum):
    """How a device is opened, and what its DMA is mapped into."""

    #: The IOMMU group (``/dev/vfio/N``) in a type1 container
    #: (``/dev/vfio/vfio``): every kernel has it.
    LEGACY = "legacy"
    #: The device's cdev (``/dev/vfio/devices/vfioN``) bound to an iommufd
    #: (``/dev/iommu``) and attached to an IOAS of its own: kernels with
    #: ``CONFIG_IOMMUFD`` and ``CONFIG_VFIO_DEVICE_CDEV``.
    IOMMUFD = "iommufd"


class DeviceFlags(enum.IntFlag):
    """What VFIO_DEVICE_GET_INFO says of a device (:attr:`DeviceInfo.flags`)."""

    #: The device offers a reset (:meth:`Device.reset`).
    RESET = uapi.VFIO_DEVICE_FLAGS_RESET
    #: A PCI device (vfio-pci and its variant drivers).
    PCI = uapi.VFIO_DEVICE_FLAGS_PCI
    #: A platform device (vfio-platform).
    PLATFORM = uapi.VFIO_DEVICE_FLAGS_PLATFORM
    #: The info carries a capability chain.
    CAPS = uapi.VFIO_DEVICE_FLAGS_CAPS


@dataclass(frozen=True)
class DeviceInfo(CheckedRecord):
    """What the kernel says of an open device (VFIO_DEVICE_GET_INFO): :attr:`Device.info`."""

    #: The device's :class:`DeviceFlags`.
    flags: DeviceFlags
    #: How many region indexes it has (:meth:`Device.region` takes 0 to this - 1).
    num_regions: int
    #: How many IRQ indexes it has (:meth:`Device.irq_info` takes 0 to this - 1).
    num_irqs: int

    @property
    def can_reset(self) -> bool:
        """Whether :meth:`Device.reset` can work (the RESET flag)."""
        return bool(self.flags & DeviceFlags.RESET)

    @property
    def is_pci(self) -> bool:
        """Whether it is a PCI device (the PCI flag)."""
        return bool(self.flags & DeviceFlags.PCI)


@dataclass(frozen=True)
class AffectedDevice(CheckedRecord):
    """A function that a hot reset of the device resets too
    (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO): :meth:`Device.hot_reset_devices`."""

    #: Its PCI address.
    bdf: str
    #: Its IOMMU group, as the kernel reports it to a device opened through
    #: its group (legacy); None for a device opened through its cdev.
    group: int | None
    #: Whether this program holds it as the reset needs: its group is one the
    #: device's IOMMU context holds (legacy), or the kernel counts it as the
    #: caller's (iommufd: in the same iommufd, or in an opened device's group).
    owned: bool


BACKEND_CHOICES = ("auto", *(b.value for b in Backend))


def check_backend(value: object, bdf: str | None, *, source: str = "the backend argument") -> str:
    """A backend choice: a Backend, or one of "auto", "legacy", "iommufd"."""
    if not isinstance(value, str):
        raise _check.wrong_type(
            "backend",
            value,
            "a Backend or one of " + ", ".join(map(repr, BACKEND_CHOICES)),
            device=bdf,
            operation="open",
        )
    if value not in BACKEND_CHOICES:
        raise InvalidArgumentError(
            f"unknown VFIO backend {value!r}",
            device=bdf,
            operation="open",
            hint=f"use one of {', '.join(BACKEND_CHOICES)} ({source})",
        )
    return str(value)


def choose_backend(requested: Backend | str | None, bdf: str, cdev: str | None) -> Backend:
    """``requested``, else $PYVFIO_BACKEND, else iommufd where the kernel offers
    it for this device (``/dev/iommu`` and the device's cdev), else legacy."""
    if requested:
        choice = check_backend(requested, bdf)
    else:
        choice = check_backend(os.environ.get(BACKEND_ENV) or "auto", bdf, source=f"${BACKEND_ENV}")
    if choice == "auto":
        # Only what this process may open: a user given /dev/vfio/N but not
        # /dev/iommu keeps working through the group.
        usable = cdev is not None and all(
            os.access(path, os.R_OK | os.W_OK)
            for path in (IOMMUFD_PATH, f"{context_mod.CDEV_DIR}/{cdev}")
        )
        return Backend.IOMMUFD if usable else Backend.LEGACY
    backend = Backend(choice)
    if backend is Backend.IOMMUFD and (cdev is None or not os.path.exists(IOMMUFD_PATH)):
        raise UnsupportedError(
            "the kernel offers no VFIO device cdev and iommufd for this device",
            device=bdf,
            operation="open (iommufd backend)",
            hint="it needs CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV; "
            "use the legacy backend (backend='legacy' or PYVFIO_BACKEND=legacy)",
        )
    return backend


def _weak_call(device: Device) -> Callable[[], None]:
    """``device._release_requested`` through a weak reference: a Device dropped
    unclosed is still freed (its mappings unmapped), as before it had a watcher."""
    ref = weakref.ref(device)

    def call() -> None:
        target = ref()
        if target is not None:
            target._release_requested()

    return call


class Device(DeviceFd):
    """An open VFIO device.

    ``Device.open(bdf)`` opens it through the kernel's iommufd and the
    device's cdev where the kernel has them, else through the legacy
    container and group (type1v2 IOMMU); :attr:`backend` says which, and
    :attr:`iommu` is the address space its DMA is mapped into (an iommufd
    :class:`~pyvfio.iommufd.Ioas` or a legacy
    :class:`~pyvfio.container.Container`) of an IOMMU context of its own
    (:attr:`context`).  ``close()`` (or leaving the ``with`` block)
    releases, in order: interrupts, region mappings, DMA buffers, the device
    fd, then the group and container or the iommufd; it is safe to call
    twice.  A device opened into a shared
    :class:`~pyvfio.IommuContext` leaves the buffers, the container or
    IOAS (and a group another device uses) to the context.
    """

    def __init__(
        self,
        bdf: str,
        fd: int,
        iommu: Container | Ioas,
        driver: str | None = None,
        *,
        group: Group | None = None,
    ) -> None:
        """Take over an open device fd (``Device.open()`` is the way to get one).

        ``bdf`` is the device's PCI address, ``fd`` its open VFIO device fd
        (an int), ``iommu`` the Container or Ioas it is attached to, ``driver``
        the name of its driver or None, ``group`` its Group (legacy) or None.
        """
        operation = "Device()"
        bdf = normalize_bdf(bdf)
        fd = _check.integer(fd, "fd", device=bdf, operation=operation, high=(1 << 31) - 1)
        _check.instance(
            iommu,
            (Container, Ioas),
            "iommu",
            "a Container or an Ioas",
            device=bdf,
            operation=operation,
        )
        _check.text(driver, "driver", device=bdf, operation=operation, allow_none=True)
        _check.instance(
            group, Group, "group", "a Group", device=bdf, operation=operation, allow_none=True
        )
        super().__init__(bdf, fd, driver)
        self._pid = os.getpid()  # a forked child shares the fds, not the ownership
        # Taken by close() only, never across a call into user code; the
        # request watcher is stopped before it (close()).
        self._close_lock = threading.Lock()
        self._group = group
        self._iommu = iommu
        # The IOMMU context it was opened into (None: made by hand, owning
        # its group and container or IOAS), and whether the context is the
        # device's own (Device.open), closed with it.
        self._context: context_mod.IommuContext | None = None
        self._own_context = False
        #: How the device was opened: :attr:`Backend.IOMMUFD` (its ``iommu`` is
        #: an Ioas) or :attr:`Backend.LEGACY` (a Container).
        self.backend = Backend.IOMMUFD if isinstance(iommu, Ioas) else Backend.LEGACY
        self._regions: dict[int, Region] = {}
        self._irqs: dict[int, irq.Interrupts] = {}
        self._dma: DmaSpace | None = None
        info = uapi.vfio_device_info(argsz=ctypes.sizeof(uapi.vfio_device_info))
        ioctl(fd, uapi.VFIO_DEVICE_GET_INFO, info, device=bdf, operation="VFIO_DEVICE_GET_INFO")
        #: What the kernel says of the device: its flags, regions and IRQ indexes
        #: (a :class:`DeviceInfo`).
        self.info = DeviceInfo(
            flags=DeviceFlags(info.flags), num_regions=info.num_regions, num_irqs=info.num_irqs
        )
        self._num_regions = info.num_regions
        self._on_release_request: Callable[[Device], None] | None = None
        self._release_watch: irq.ReleaseWatch | None = None
        if self.info.num_irqs > irq.IrqIndex.REQ and self.irq_info(irq.IrqIndex.REQ).supported:
            self.release_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            try:
                # A weak reference: a Device dropped unclosed is still freed
                # (its mappings unmapped), as before there was a watcher.
                self._release_watch = irq.ReleaseWatch(self, _weak_call(self))
            except BaseException:
                os.close(self.release_fd)
                raise

    def _join(self, context: context_mod.IommuContext, private: bool) -> None:
        """Called by ``context`` once the device is open in it."""
        self._context = context
        self._own_context = private

    @property
    def context(self) -> context_mod.IommuContext | None:
        """The :class:`~pyvfio.IommuContext` the device was opened into: its own
        for ``Device.open``, a shared one for ``IommuContext.open``; None for a
        Device made by hand from an fd."""
        return self._context

    @property
    def group_number(self) -> int | None:
        """Its IOMMU group's number, if it was opened through its group (legacy)."""
        return self._group.number if self._group is not None else None

    @classmethod
    def open(
        cls,
        bdf: str,
        *,
        sysfs: Sysfs | None = None,
        backend: Backend | str | None = None,
        vf_token: uuid.UUID | None = None,
    ) -> Device:
        """Open ``bdf`` (bound to vfio-pci or a variant driver).

        ``bdf`` is a PCI address (a str, as :func:`~pyvfio.normalize_bdf`
        takes it).  ``sysfs`` a :class:`~pyvfio.Sysfs` or None (the real one).
        ``backend``: a :class:`Backend`, ``"iommufd"``, ``"legacy"`` or
        ``"auto"``; None reads $PYVFIO_BACKEND, and auto (the default) takes
        iommufd where the kernel offers it.  Everything after the open
        behaves the same on both.  ``vf_token`` (a uuid.UUID) opens a VF
        whose PF is on vfio-pci: the token the PF's user set
        (:meth:`set_vf_token`); None for any other device.
        """
        bdf = normalize_bdf(bdf)
        _check.instance(
            sysfs,
            Sysfs,
            "sysfs",
            "a pyvfio.Sysfs",
            device=bdf,
            operation="open",
            allow_none=True,
            hint="pass Sysfs(root) for another sysfs tree, not its path",
        )
        if backend is not None:
            check_backend(backend, bdf)
        vf_token = _check.vf_token(vf_token, device=bdf, operation="open")
        context = context_mod.IommuContext(backend, sysfs=sysfs)
        try:
            return context._open(bdf, private=True, vf_token=vf_token)
        except BaseException:
            context.close()
            raise

    @property
    def container(self) -> Container:
        """The legacy backend's container (deprecated: use :attr:`iommu`)."""
        if not isinstance(self._iommu, Container):
            raise UnsupportedError(
                "a device opened through iommufd has no VFIO container",
                device=self.bdf,
                operation="container",
                hint="use dev.iommu (an Ioas here), or open with backend='legacy'",
            )
        return self._iommu

    @property
    def iommu(self) -> Container | Ioas:
        """What the device's DMA is mapped into: an iommufd IOAS or a legacy container."""
        return self._iommu

    # -- the kernel asking for the device back -------------------------

    def on_release_request(self, callback: Callable[[Device], None] | None) -> None:
        """Call ``callback(device)`` when the kernel asks for the device back.

        Unbinding the device from its VFIO driver (another process writing
        its driver's ``unbind``, a module unload) waits in the kernel until
        this process has closed the device.  By default pyvfio then makes
        the program let go: mappings raise ClosedError, a blocked
        ``Interrupts.wait()`` wakes, and the next call on the device closes
        it and raises DeviceReleasedError.

        A callback replaces that default: it runs once, in pyvfio's watcher
        thread (one per process, for all devices: return quickly), and
        should get the program to ``close()`` the device soon (set an Event
        the main loop checks, say).  ``None`` restores the
        default.  Anything else (not callable) raises ArgumentTypeError.
        """
        _check.callback(callback, "callback", device=self.bdf, operation="on_release_request")
        self._on_release_request = callback

    @property
    def release_requested(self) -> bool:
        """Whether the kernel has asked for the device back."""
        return self._release_watch is not None and self._release_watch.requested.is_set()

    def _release_requested(self) -> None:
        """In the watcher thread: the callback, or stop the program's use of the device."""
        callback = self._on_release_request
        if callback is not None:
            callback(self)
            return
        reason = "the device is being unbound: the kernel asked for it back"
        for region in list(self._regions.values()):
            region.revoke(reason)
        self._release_due = True
        os.eventfd_write(self.release_fd, 1)

    # -- regions ---------------------------------------------------------

    def region(self, index: int) -> Region:
        """Region ``index``: 0-5 BARs, 6 ROM, 7 config space, 8 VGA, then device-specific.

        ``index`` is an int; one the device lacks raises UnsupportedError."""
        index = _check.integer(
            index,
            "index",
            device=self.bdf,
            operation="region",
            low=None,
            high=None,
            hint="0-5 for the BARs, 7 for config space (pyvfio.uapi.VFIO_PCI_*_REGION_INDEX)",
        )
        if not 0 <= index < self.info.num_regions:
            raise UnsupportedError(
                f"region {index} does not exist (the device has {self.info.num_regions})",
                device=self.bdf,
                operation="region",
            )
        if index not in self._regions:
            self._regions[index] = Region(self, index)
        return self._regions[index]

    def regions(self) -> list[Region]:
        """Every region of the device, by index (:meth:`region` of each, absent
        ones included: their size is 0)."""
        return [self.region(i) for i in range(self.info.num_regions)]

    @property
    def config(self) -> ConfigSpace:
        """The device's PCI configuration space (region 7), with width-exact
        accessors and the capability walk."""
        return ConfigSpace(self.region(uapi.VFIO_PCI_CONFIG_REGION_INDEX))

    # -- interrupts ------------------------------------------------------

    def irq_info(self, index: int) -> irq.IrqInfo:
        """What the device offers at IRQ index ``index`` (an int, 0..num_irqs - 1:
        pyvfio.irq.IrqIndex names the PCI ones); count 0 if it has none there."""
        return irq.query_irq_info(self, self._irq_index(index, "irq info"))

    def _irq_index(self, index: object, operation: str) -> int:
        last = self.info.num_irqs - 1
        return _check.integer(
            index,
            "index",
            device=self.bdf,
            operation=operation,
            high=last,
            hint="pyvfio.irq.IrqIndex names them (INTX, MSI, MSIX, ERR, REQ)",
        )

    def irq_infos(self) -> list[irq.IrqInfo]:
        """:meth:`irq_info` of every IRQ index of the device, in index order."""
        return [self.irq_info(i) for i in range(self.info.num_irqs)]

    def enable_irq(self, index: int, count: int | None = None) -> irq.Interrupts:
        """Enable ``count`` vectors (default: all) of an IRQ index, one eventfd each.

        ``index`` as :meth:`irq_info` takes it; ``count`` an int from 1 to the
        index's count, or None for all."""
        index = self._irq_index(index, "enable irq")
        if count is not None:
            count = _check.integer(
                count, "count", device=self.bdf, operation="enable irq", low=1, high=_check.U32_MAX
            )
        if index == irq.IrqIndex.REQ and self._release_watch is not None:
            raise BusyError(
                "pyvfio answers the request interrupt itself",
                device=self.bdf,
                operation="enable REQ",
                hint="use dev.on_release_request(callback) to act when the kernel "
                "asks for the device back",
            )
        current = self._irqs.get(index)
        if current is not None and current.eventfds:
            raise BusyError(
                f"{current.info.name} is already enabled",
                device=self.bdf,
                operation="enable irq",
                hint="close() the Interrupts object first",
            )
        # A function signals through one of INTx, MSI and MSI-X at a time; the
        # kernel's EINVAL for a second one does not say why.
        exclusive = (irq.IrqIndex.INTX, irq.IrqIndex.MSI, irq.IrqIndex.MSIX)
        if index in exclusive:
            for other, ints in self._irqs.items():
                if other != index and other in exclusive and ints.eventfds:
                    raise BusyError(
                        f"{ints.info.name} is enabled: a device interrupts through one of "
                        "INTx, MSI and MSI-X at a time",
                        device=self.bdf,
                        operation=f"enable {irq.irq_name(index)}",
                        hint=f"close() the {ints.info.name} Interrupts object first",
                    )
        ints = irq.enable(self, index, count)
        self._irqs[index] = ints
        return ints

    # -- DMA -------------------------------------------------------------

    @property
    def dma(self) -> DmaSpace:
        """The device's DMA buffers and IOVA allocator, over :attr:`iommu`
        (:meth:`dma_buffer` and :meth:`dma_map` use it)."""
        self.fd  # noqa: B018 - a closed (or released) device says so
        if self._context is not None:
            return self._context.dma
        if self._dma is None:
            self._dma = DmaSpace(self._iommu)
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
        """Allocate host memory and map it for the device's DMA (see DmaBuffer).

        ``size`` in bytes (an int > 0, rounded up to pages); ``hugepages``
        and ``writable_by_device`` True or False; ``limit`` None or the first
        IOVA the device cannot reach (an int > 0); ``iova`` None (the
        allocator picks one), an int of your choice (aligned to the buffer's
        pages, free, below ``limit`` and inside the usable IOVAs: the
        ``iova_ranges()`` of :attr:`iommu`, less what a device of the
        context reserved since), or :data:`pyvfio.dma.IDENTITY` for the
        buffer's own virtual address."""
        with self._named_errors():
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
        """Map memory you already have (an mmap of whole pages) for the device's
        DMA; the buffer's ``close()`` unmaps it from the IOMMU and leaves it yours.

        ``memory`` is an open, writable ``mmap.mmap``; ``limit``,
        ``writable_by_device`` and ``iova`` as :meth:`dma_buffer` takes them."""
        with self._named_errors():
            return self.dma.map_memory(
                memory, limit=limit, writable_by_device=writable_by_device, iova=iova
            )

    @contextlib.contextmanager
    def _named_errors(self) -> Iterator[None]:
        """Errors of the DMA space name the IOMMU context it maps into; a call
        made on this device names the device first."""
        try:
            yield
        except VfioError as exc:
            if exc.device is None:
                exc.device = self.bdf
            elif exc.device != self.bdf:
                exc.device = f"{self.bdf} ({exc.device})"
            raise

    # -- reset ---------------------------------------------------------

    def reset(self, timeout: float = 1.0, *, method: str | None = None) -> None:
        """VFIO_DEVICE_RESET (function-level or other reset the kernel can do).

        The kernel only *tries* to take the device's locks and answers EAGAIN
        when another operation holds them for a moment; that is retried for
        up to ``timeout`` seconds (an int or float, >= 0).

        ``method`` (a str) picks one of the methods the kernel offers for the
        device (:meth:`reset_methods`: ``"flr"``, ``"pm"``, ``"bus"`` ...)
        instead of the first that works: sysfs ``reset_method`` is set to it
        for the reset and put back afterwards, so it needs root.  A method
        not offered is refused before anything changes.
        """
        operation = "VFIO_DEVICE_RESET"
        timeout = _check.seconds(timeout, "timeout", device=self.bdf, operation=operation, high=1e9)
        if method is not None and not isinstance(method, str):
            raise ArgumentTypeError(
                f"method must be a reset method's name (a str) or None, not {method!r}",
                device=self.bdf,
                operation=operation,
            )
        fd = self.fd  # a closed device says so before anything else
        sysfs = self._sysfs()
        offered = sysfs.reset_methods(self.bdf) if method is not None else ()
        if method is not None and method not in offered:
            raise InvalidArgumentError(
                f"reset method {method!r} is not offered for this device; the kernel offers "
                + (", ".join(offered) if offered else "none by name (sysfs reset_method)"),
                device=self.bdf,
                operation=operation,
                hint="pass one of those, or none to let the kernel pick",
            )
        if not self.info.can_reset:
            raise UnsupportedError(
                "the device offers no reset", device=self.bdf, operation=operation
            )

        def reset() -> None:
            retry_eagain(
                lambda: ioctl(fd, uapi.VFIO_DEVICE_RESET, 0, device=self.bdf, operation=operation),
                timeout,
            )

        if method is None:
            reset()
            return
        sysfs.set_reset_methods(self.bdf, [method])
        try:
            reset()
        finally:
            sysfs.set_reset_methods(self.bdf, offered)

    def reset_methods(self) -> tuple[str, ...]:
        """The reset methods the kernel offers for the device, in the order it
        tries them (sysfs ``reset_method``); ``reset(method=...)`` takes one."""
        self.fd  # noqa: B018 (a closed device says so)
        return self._sysfs().reset_methods(self.bdf)

    def set_vf_token(self, token: uuid.UUID) -> None:
        """Set the VF token of this PF (VFIO_DEVICE_FEATURE_PCI_VF_TOKEN).

        A PF on vfio-pci lets its VFs be opened only with this shared secret
        (``Device.open(vf, vf_token=token)``): a VF's user then knows the
        PF's user, who can see and disturb its DMA, is one it trusts.  Set
        it before the VFs are opened; ``token`` is a uuid.UUID
        (``uuid.uuid4()`` makes one).  The kernel keeps it while the PF stays
        on its driver; it cannot be read back."""
        operation = "set VF token"
        checked = _check.vf_token(
            token, device=self.bdf, operation=operation, name="token", allow_none=False
        )
        assert checked is not None
        try:
            self.feature(
                uapi.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, uapi.VFIO_DEVICE_FEATURE_SET, checked.bytes
            )
        except UnsupportedError as exc:
            exc.message = "the device has no VF token: it is not an SR-IOV PF on vfio-pci"
            exc.operation = operation
            exc.hint = "set it on the PF whose VFs are to be opened (Sysfs.physfn names it)"
            raise

    def _sysfs(self) -> Sysfs:
        return self._context.sysfs if self._context is not None else Sysfs()

    def hot_reset_devices(self) -> list[AffectedDevice]:
        """The functions a hot reset (:meth:`hot_reset`) of this device resets:
        every function on its slot or bus, this one included.

        UnsupportedError where the kernel cannot reset the bus or slot (a
        device on the root bus, say)."""
        operation = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"
        header = ctypes.sizeof(uapi.vfio_pci_hot_reset_info)
        entry = ctypes.sizeof(uapi.vfio_pci_dependent_device)
        # Room for 128: over 1 KiB, which Python hands the kernel itself, so
        # the count an ENOSPC writes back is seen (3.14 drops a smaller
        # buffer's copy on an error).
        count = 128
        while True:
            buf = bytearray(header + count * entry)
            struct.pack_into("<III", buf, 0, len(buf), 0, 0)
            try:
                ioctl(
                    self.fd,
                    uapi.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
                    buf,
                    device=self.bdf,
                    operation=operation,
                )
            except VfioError as exc:
                needed = struct.unpack_from("<I", buf, 8)[0]
                if exc.errno == errno.ENOSPC and needed > count:
                    count = needed
                    continue
                if exc.errno == errno.ENODEV:
                    raise UnsupportedError(
                        "the kernel cannot reset this device's bus or slot",
                        device=self.bdf,
                        operation=operation,
                        hint="a device on the root bus has no bus to reset: use reset()",
                    ) from exc
                raise
            break
        flags, count = struct.unpack_from("<II", buf, 4)
        by_devid = bool(flags & uapi.VFIO_PCI_HOT_RESET_FLAG_DEV_ID)
        held = self._held_groups()
        devices = []
        for i in range(count):
            ident, segment, bus, devfn = struct.unpack_from("<IHBB", buf, header + i * entry)
            bdf = f"{segment:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"
            if by_devid:
                devices.append(AffectedDevice(bdf, None, ident != uapi.VFIO_PCI_DEVID_NOT_OWNED))
            else:
                devices.append(AffectedDevice(bdf, ident, ident in held))
        return devices

    def _held_groups(self) -> dict[int, Group]:
        """The groups this device's IOMMU context holds (legacy), by number."""
        if self._context is not None:
            return self._context._held_groups()
        return {self._group.number: self._group} if self._group is not None else {}

    def hot_reset(self) -> None:
        """VFIO_DEVICE_PCI_HOT_RESET: reset the device's bus or slot, and with it
        every function :meth:`hot_reset_devices` lists.

        Each of them must be bound to a VFIO driver, and held by this
        program: on the legacy backend its group in this device's IOMMU
        context (open them all into one :class:`~pyvfio.IommuContext`); on
        iommufd in this device's iommufd.  One that is not is named in a
        PermissionDeniedError, and nothing is reset."""
        operation = "VFIO_DEVICE_PCI_HOT_RESET"
        devices = self.hot_reset_devices()
        sysfs = self._sysfs()
        # The kernel's EINVAL for one on another driver does not say which.
        for affected in devices:
            driver = sysfs.device(affected.bdf).driver
            if driver is None or "vfio" not in driver:
                raise DriverError(
                    f"a hot reset also resets {affected.bdf}, which is bound to "
                    f"{driver or 'no driver'}, not a VFIO driver",
                    device=self.bdf,
                    operation=operation,
                    hint=f"run `pyvfio bind {affected.bdf}`, and hold it in this context",
                )
        unowned = [d for d in devices if not d.owned]
        if unowned:
            names = ", ".join(
                d.bdf + (f" (IOMMU group {d.group})" if d.group is not None else "")
                for d in unowned
            )
            raise PermissionDeniedError(
                f"a hot reset also resets {names}, which this program does not hold",
                device=self.bdf,
                operation=operation,
                hint="open every affected device into this device's IOMMU context "
                "(IommuContext.open), or reset this device alone with reset()",
            )
        held = self._held_groups()
        groups = sorted({d.group for d in devices if d.group is not None})
        fds = [held[number].fd for number in groups]
        arg = bytearray(ctypes.sizeof(uapi.vfio_pci_hot_reset) + 4 * len(fds))
        struct.pack_into(f"<III{len(fds)}i", arg, 0, len(arg), 0, len(fds), *fds)
        try:
            ioctl(
                self.fd, uapi.VFIO_DEVICE_PCI_HOT_RESET, arg, device=self.bdf, operation=operation
            )
        except BusyError as exc:
            # The kernel only tries the affected devices' memory locks.
            exc.hint = (
                "another thread is in a BAR access, an mmap fault or a reset of an "
                "affected device: try again when it is done"
            )
            raise

    # -- lifetime --------------------------------------------------------

    def close(self) -> None:
        """Release interrupts, mappings, DMA (of its own context), then the
        fds; safe to call twice, and from several threads.

        In a forked child it closes only the child's copies (fds, mappings),
        leaving the parent's interrupts, cookies and DMA mappings in place.
        Every step is tried even if one fails (a mapping left behind would keep
        the device from being unbound); the first error is raised after.
        """
        # First, outside the lock: take the device from the request watcher,
        # waiting for its callback if one runs, so that no release is asked
        # during the close.  A callback closing the device does not wait.
        if self._release_watch is not None:
            self._release_watch.stop()
        with self._close_lock:
            if self._fd < 0:
                return
            self._closing = True
            self._release_due = False
            owner = os.getpid() == self._pid
            steps: list[Callable[[], None]] = []
            if self._release_watch is not None:
                steps.append(self._release_watch.close)
            steps += [functools.partial(i.close, disable=owner) for i in self._irqs.values()]
            steps += [
                functools.partial(r.close, destroy_cookies=owner) for r in self._regions.values()
            ]
            if self._dma is not None and owner:
                steps.append(self._dma.close)
            context = self._context
            if context is not None and self._own_context and context._dma is not None and owner:
                steps.append(context._dma.close)  # before the device, as its own would
            first: BaseException | None = None
            for step in steps:
                try:
                    step()
                except BaseException as exc:
                    first = first or exc
            self._irqs.clear()
            self._regions.clear()
            try:
                # Closing the fd unbinds a cdev from its iommufd, or releases the
                # device in its group; only then can the IOAS or container go.
                os.close(self._fd)
                self._fd = -1
                if self.release_fd >= 0:
                    # Wakes this process's waits, which find the device closed
                    # (a forked child's copy is its parent's: not written).
                    if owner:
                        os.eventfd_write(self.release_fd, 1)
                    os.close(self.release_fd)
                    self.release_fd = -1
            finally:
                try:
                    if context is not None:
                        context._leave(self)
                        if self._own_context:
                            context.close()
                    else:
                        if self._group is not None:
                            self._group.close()
                        self._iommu.close()
                finally:
                    self._closing = False
            if first is not None:
                raise first

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<Device {self.bdf} {self.backend} {state}>"
