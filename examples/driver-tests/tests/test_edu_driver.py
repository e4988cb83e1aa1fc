# SPDX-License-Identifier: Apache-2.0
"""The driver against a real edu device, in the test VM: `pytest --vfio-kernel=6.1,7.3`."""

from __future__ import annotations

import os

import pytest
from edu_driver import IDS, MAX_COPY, EduDriver, expected_factorial

from pyvfio import Backend, Device

# Every test here gets the edu device, bound to vfio-pci and opened.
pytestmark = pytest.mark.vfio_device(IDS)


def test_the_device_is_a_live_edu_1_0(vfio_device: Device) -> None:
    edu = EduDriver(vfio_device)
    assert edu.version() == (1, 0)
    assert edu.alive(0x12345678)
    assert edu.alive(0)


def test_factorial_is_computed_by_the_device(vfio_device: Device) -> None:
    edu = EduDriver(vfio_device)
    for n in (0, 1, 5, 12, 13, 20):
        assert edu.factorial(n) == expected_factorial(n), n


@pytest.mark.parametrize("size", [1, MAX_COPY])
def test_dma_through_the_iommu_comes_back_intact(vfio_device: Device, size: int) -> None:
    data = bytes((7 * i + size) & 0xFF for i in range(size))
    assert EduDriver(vfio_device).copy_through_device(data) == data


def test_the_kernel_and_backend_are_the_ones_asked_for(
    vfio_device: Device, vfio_kernel: str, vfio_backend: Backend
) -> None:
    # The series booted, as --vfio-kernel named it, and the backend the
    # device opened on: iommufd where that kernel offers it, unless
    # --vfio-env=PYVFIO_BACKEND=legacy asks for the other.
    assert os.uname().release.startswith(vfio_kernel.removesuffix("-debug"))
    assert vfio_device.backend == vfio_backend
    assert EduDriver(vfio_device).factorial(3) == 6
