# SPDX-License-Identifier: Apache-2.0
"""Sysfs.bound(): a device lent to a VFIO driver for a block comes back as it was."""

from __future__ import annotations

import pytest

from pyvfio import Device, Sysfs
from pyvfio.vm import EDU_ID, NVME_ID


class _DriverBugError(Exception):
    pass


def test_a_device_goes_back_to_its_driver_even_after_an_error(sysfs: Sysfs) -> None:
    (nvme,) = sysfs.find(*NVME_ID)
    assert nvme.driver == "nvme" and nvme.driver_override is None
    with pytest.raises(_DriverBugError), sysfs.bound(nvme.bdf) as dev:
        assert dev.driver == "vfio-pci"
        with Device.open(dev.bdf):
            raise _DriverBugError
    after = sysfs.device(nvme.bdf)
    assert (after.driver, after.driver_override) == ("nvme", None)


def test_a_device_with_no_driver_is_left_with_none(sysfs: Sysfs) -> None:
    (edu,) = sysfs.find(*EDU_ID)
    assert edu.driver is None
    with sysfs.bound(edu.bdf, "vfio-pci") as dev:
        assert dev.driver == "vfio-pci"
    after = sysfs.device(edu.bdf)
    assert (after.driver, after.driver_override) == (None, None)
