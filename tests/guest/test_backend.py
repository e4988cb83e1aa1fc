# SPDX-License-Identifier: Apache-2.0
"""The two ways to open a device: iommufd + the VFIO cdev, or the legacy group.

`make test` runs the whole guest suite on the debug kernel (the one with
IOMMUFD) once per backend, with $PYVFIO_BACKEND set; on the Debian kernels
only the legacy backend exists.  These tests pin down the choice itself.
"""

from __future__ import annotations

import os

import pytest

from pyvfio import (
    Backend,
    BusyError,
    Device,
    InvalidArgumentError,
    Ioas,
    OutOfRangeError,
    Sysfs,
    UnsupportedError,
    VfioError,
)
from pyvfio import (
    iommufd as iommufd_module,
)
from pyvfio.device import BACKEND_ENV


def has_iommufd() -> bool:
    # /dev/iommu appears with iommufd.ko, which loading vfio brings in: ask once
    # the sysfs fixture has loaded vfio-pci, never at import.
    return os.path.exists("/dev/iommu")


@pytest.fixture
def with_iommufd(sysfs: Sysfs) -> None:
    if not has_iommufd():
        pytest.skip("the kernel has no IOMMUFD")


def _open_fds() -> set[str]:
    """What this process's fds point at (the fd listdir itself used is gone)."""
    targets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.add(f"{fd} {os.readlink(f'/proc/self/fd/{fd}')}")
        except FileNotFoundError:
            continue
    return targets


def test_the_run_uses_the_backend_it_asked_for(edu: str) -> None:
    requested = os.environ.get(BACKEND_ENV)
    with Device.open(edu) as dev:
        expected = Backend(requested) if requested else Backend.LEGACY
        if not requested and has_iommufd():
            expected = Backend.IOMMUFD
        assert dev.backend is expected
        assert isinstance(dev.iommu, Ioas) == (expected is Backend.IOMMUFD)


def test_auto_takes_iommufd_where_the_kernel_has_it(edu: str, sysfs: Sysfs) -> None:
    assert (sysfs.vfio_cdev(edu) is not None) == has_iommufd()
    with Device.open(edu, backend="auto") as dev:
        assert dev.backend is (Backend.IOMMUFD if has_iommufd() else Backend.LEGACY)
    with Device.open(edu, backend="legacy") as dev:
        assert dev.backend is Backend.LEGACY


def test_iommufd_without_the_kernel_support_is_refused(edu: str) -> None:
    if has_iommufd():
        with Device.open(edu, backend=Backend.IOMMUFD) as dev:
            assert dev.iommu.name.startswith("/dev/iommu IOAS ")
        return
    before = _open_fds()
    with pytest.raises(UnsupportedError, match="CONFIG_IOMMUFD") as info:
        Device.open(edu, backend="iommufd")
    assert "legacy" in (info.value.hint or "")
    assert _open_fds() == before


def test_an_unknown_backend_is_an_error_and_opens_nothing(edu: str) -> None:
    before = _open_fds()
    with pytest.raises(VfioError, match="unknown VFIO backend 'vfio'") as info:
        Device.open(edu, backend="vfio")
    assert "iommufd" in (info.value.hint or "")
    assert _open_fds() == before


@pytest.mark.parametrize("backend", list(Backend))
def test_close_releases_every_fd(edu: str, backend: Backend) -> None:
    if backend is Backend.IOMMUFD and not has_iommufd():  # edu loaded vfio
        pytest.skip("the kernel has no IOMMUFD")
    before = _open_fds()
    dev = Device.open(edu, backend=backend)
    opened = {target.split(" ", 1)[1] for target in _open_fds() - before}
    nodes = {"/dev/iommu"} if backend is Backend.IOMMUFD else {"/dev/vfio/vfio"}
    assert nodes <= opened, opened
    dev.dma_buffer(4096).close()
    dev.close()
    assert _open_fds() == before


@pytest.mark.usefixtures("with_iommufd")
@pytest.mark.parametrize("first", list(Backend))
def test_one_backend_holds_the_device_against_the_other(edu: str, first: Backend) -> None:
    other = Backend.LEGACY if first is Backend.IOMMUFD else Backend.IOMMUFD
    with Device.open(edu, backend=first):
        before = _open_fds()
        with pytest.raises(BusyError):  # EBUSY either way, as the README says
            Device.open(edu, backend=other)
        assert _open_fds() == before
    # Released: the other backend opens it now.
    with Device.open(edu, backend=other) as dev:
        assert dev.backend is other


@pytest.mark.usefixtures("with_iommufd")
def test_iommufd_dma_ranges_and_unmap(edu: str) -> None:
    with Device.open(edu, backend=Backend.IOMMUFD) as dev:
        ranges = dev.iommu.iova_ranges()
        # Attaching the device narrowed the IOAS: the interrupt window is out.
        assert ranges and not any(start <= 0xFEE00000 <= end for start, end in ranges)
        buf = dev.dma_buffer(3 * 4096)
        with pytest.raises(VfioError):  # the range is taken: FIXED_IOVA does not replace
            dev.iommu.map_dma(buf.vaddr, buf.iova, 4096, readable=True, writable=True)
        buf.close()
        with pytest.raises(OutOfRangeError, match="nothing is mapped at"):  # ENOENT
            dev.iommu.unmap_dma(buf.iova, buf.size)


@pytest.mark.usefixtures("with_iommufd")
def test_more_iova_ranges_than_room_are_fetched_whole(
    edu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Device.open(edu, backend=Backend.IOMMUFD) as dev:
        ranges = dev.iommu.iova_ranges()
        assert len(ranges) >= 2  # the interrupt window splits the space
        # Room for one: the kernel answers EMSGSIZE with the count needed.
        monkeypatch.setattr(iommufd_module, "FIRST_RANGES", 1)
        assert dev.iommu.iova_ranges() == ranges


def test_the_container_is_the_legacy_backends_only(edu: str) -> None:
    with Device.open(edu, backend=Backend.LEGACY) as dev:
        assert dev.container is dev.iommu
        assert dev.container.iommu_info().iova_ranges
    if not has_iommufd():
        return
    with Device.open(edu, backend=Backend.IOMMUFD) as dev:
        with pytest.raises(UnsupportedError, match="no VFIO container") as info:
            dev.container  # noqa: B018
        assert "dev.iommu" in (info.value.hint or "")


@pytest.mark.usefixtures("with_iommufd")
def test_a_second_cdev_open_is_refused_with_a_hint(edu: str) -> None:
    with Device.open(edu, backend=Backend.IOMMUFD):
        before = _open_fds()
        with pytest.raises(InvalidArgumentError) as info:
            Device.open(edu, backend=Backend.IOMMUFD)
        assert "already open through its cdev" in (info.value.hint or "")
        assert _open_fds() == before
