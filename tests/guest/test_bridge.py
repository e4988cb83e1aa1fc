# SPDX-License-Identifier: Apache-2.0
"""Two devices of one IOMMU group, behind a conventional PCI bridge (issue 23).

The boots that run this file add a pci-bridge with two edu devices behind it
(``BRIDGED`` in tools/test.sh).  Linux puts the devices behind a bridge
without ACS in one IOMMU group, and their DMA carries the bridge's requester
ID: a mismatch between QEMU's IOMMU and the kernel's alias would show as DMAR
faults, which fail the boot.  Each test runs on every backend the kernel
has, whatever $PYVFIO_BACKEND says: legacy everywhere, iommufd where the
kernel has it.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

from pyvfio import Device, DriverError, IommuContext, Sysfs, UnsupportedError
from pyvfio.vm import EDU_ID

from .example_drivers import edu as edu_example
from .example_drivers import read_by_edu

PAGE = mmap.PAGESIZE
PAYLOAD = b"one buffer, two devices, one group"


@pytest.fixture
def behind_bridge(sysfs: Sysfs) -> Iterator[tuple[str, str]]:
    """The two edu devices behind the bridge, on vfio-pci."""
    found = [d.bdf for d in sysfs.find(*EDU_ID) if not d.bdf.startswith("0000:00:")]
    assert len(found) == 2, "this boot lacks tools/test.sh's BRIDGED devices"
    first, second = found
    with sysfs.bound(first), sysfs.bound(second):
        yield first, second


@pytest.fixture(params=["legacy", "iommufd"])
def backend(request: pytest.FixtureRequest, behind_bridge: tuple[str, str]) -> str:
    # /dev/iommu appears with iommufd.ko, which binding to vfio-pci brings in
    # where the kernel has it (of the matrix, the debug kernel, with the cdev).
    if request.param == "iommufd" and not os.path.exists("/dev/iommu"):
        pytest.skip("the kernel has no IOMMUFD")
    return str(request.param)


def test_the_bridge_puts_both_devices_in_one_group(
    sysfs: Sysfs, behind_bridge: tuple[str, str]
) -> None:
    first, second = (sysfs.device(bdf) for bdf in behind_bridge)
    assert first.iommu_group is not None and first.iommu_group == second.iommu_group
    members = sysfs.group_members(first.iommu_group)
    assert set(behind_bridge) <= set(members)


def test_two_devices_of_one_group_open_together_and_both_dma(
    behind_bridge: tuple[str, str], backend: str
) -> None:
    with IommuContext(backend) as context:
        first, second = (context.open(bdf) for bdf in behind_bridge)
        assert first.group_number == second.group_number  # None on iommufd
        shared = context.dma_buffer(PAGE, limit=edu_example.EDU_DMA_LIMIT)
        shared.view[: len(PAYLOAD)] = PAYLOAD
        for dev in (first, second):
            assert read_by_edu(dev, shared.iova, len(PAYLOAD)) == PAYLOAD
        # The group stays while a device of it is open.
        first.close()
        assert read_by_edu(second, shared.iova, len(PAYLOAD)) == PAYLOAD
        again = context.open(behind_bridge[0])
        assert read_by_edu(again, shared.iova, len(PAYLOAD)) == PAYLOAD


def test_a_hot_reset_resets_the_bus_behind_the_bridge(
    behind_bridge: tuple[str, str], backend: str
) -> None:
    with IommuContext(backend) as context:
        first = context.open(behind_bridge[0])
        affected = first.hot_reset_devices()
        assert sorted(d.bdf for d in affected) == sorted(behind_bridge)
        # The second is held through the group the first opened (legacy: its
        # group fd; iommufd: the kernel's implicit ownership of a group).
        assert all(d.owned for d in affected)
        if backend == "legacy":
            assert {d.group for d in affected} == {first.group_number}
        else:
            assert {d.group for d in affected} == {None}
        first.hot_reset()
        second = context.open(behind_bridge[1])
        second.hot_reset()
        shared = context.dma_buffer(PAGE, limit=edu_example.EDU_DMA_LIMIT)
        shared.view[: len(PAYLOAD)] = PAYLOAD
        for dev in (first, second):  # both work after the resets
            assert read_by_edu(dev, shared.iova, len(PAYLOAD)) == PAYLOAD


def test_a_device_on_the_root_bus_cannot_be_hot_reset(sysfs: Sysfs) -> None:
    bdf = sysfs.find(*EDU_ID)[0].bdf
    assert bdf.startswith("0000:00:")
    with sysfs.bound(bdf), Device.open(bdf) as dev:
        with pytest.raises(UnsupportedError, match="cannot reset this device's bus") as info:
            dev.hot_reset()
        assert "reset()" in (info.value.hint or "")


def test_a_hot_reset_names_an_affected_device_on_no_vfio_driver(
    sysfs: Sysfs, behind_bridge: tuple[str, str], backend: str
) -> None:
    first, second = behind_bridge
    sysfs.unbind(second)
    try:
        with IommuContext(backend) as context:
            dev = context.open(first)
            with pytest.raises(DriverError, match=f"also resets {second}, which is bound to no"):
                dev.hot_reset()
            zeroed = context.dma_buffer(PAGE, limit=edu_example.EDU_DMA_LIMIT)
            assert read_by_edu(dev, zeroed.iova, 4) == bytes(4)  # nothing reset
    finally:
        sysfs.bind(second, "vfio-pci")
