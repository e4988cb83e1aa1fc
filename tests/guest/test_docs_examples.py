# SPDX-License-Identifier: Apache-2.0
"""The API reference's guest examples (docs/api, ``.. example:: guest``), each
run as written, in this process (a new Python costs seconds under TCG): each
in a namespace of its own, as ``python3 example.py`` would.  Every example
binds what it uses for its own time (``Sysfs.bound``) and must leave the
emulated devices on the drivers they had.  The host examples run in
tests/host/test_docs.py.

    .venv/bin/pyvfio vm run -- .venv/bin/python -m pytest tests/guest/test_docs_examples.py
"""

from __future__ import annotations

import pytest

from pyvfio import Sysfs
from pyvfio.vm import EDU_ID, IVSHMEM_ID, NVME_ID, NVME_SRIOV_ID

from .docs_examples import Example, examples

Drivers = dict[str, tuple[str | None, str | None]]


def _drivers(sysfs: Sysfs) -> Drivers:
    """Each emulated device's driver and driver_override."""
    return {
        dev.bdf: (dev.driver, dev.driver_override)
        for ids in (EDU_ID, IVSHMEM_ID, NVME_ID, NVME_SRIOV_ID)
        for dev in sysfs.find(*ids)
    }


def test_the_reference_has_guest_examples() -> None:
    assert len(examples("guest")) >= 5


@pytest.mark.parametrize("example", examples("guest"), ids=lambda e: e.name)
def test_guest_example_runs(example: Example, sysfs: Sysfs, request: pytest.FixtureRequest) -> None:
    if example.requires == "vfio_pci_cookie":
        request.getfixturevalue("cookie_module")  # loaded, or the test skips saying why
    before = _drivers(sysfs)
    exec(example.compiled(), {"__name__": "__main__"})
    assert _drivers(sysfs) == before, f"{example.name} left a device on another driver"
