# SPDX-License-Identifier: Apache-2.0
"""SR-IOV: a PF on a VFIO driver creates VFs, and a VF opens only with the
PF user's VF token.

The boots that run this file add an NVMe controller with SR-IOV
(pyvfio.vm.SRIOV_NVME_DEVICES); QEMU keeps its VFs offline until the PF's
driver brings them up, which examples/nvme_sriov.py does.
"""

from __future__ import annotations

import contextlib
import runpy
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvfio import (
    BusyError,
    Device,
    InvalidArgumentError,
    IommuContext,
    OutOfRangeError,
    PermissionDeniedError,
    Sysfs,
    UnsupportedError,
    VfioError,
)
from pyvfio.vm import EDU_ID, NVME_SRIOV_ID

EXAMPLE = Path(__file__).parents[2] / "examples" / "nvme_sriov.py"


def _parameter(driver: str) -> Path:
    return Path("/sys/module") / driver.replace("-", "_") / "parameters" / "enable_sriov"


@contextlib.contextmanager
def _pf_on(sysfs: Sysfs, driver: str) -> Iterator[str]:
    """The SR-IOV NVMe's PF, bound to ``driver``, which may create VFs
    (enable_sriov=1) for the block."""
    found = sysfs.find(*NVME_SRIOV_ID)
    if not found:
        pytest.skip("no SR-IOV NVMe in this boot (tools/test.sh adds SRIOV_NVME_DEVICES)")
    bdf = found[0].bdf
    with sysfs.bound(bdf, driver):
        parameter = _parameter(driver)
        before = parameter.read_text().strip()
        parameter.write_text("1")
        try:
            yield bdf
        finally:
            parameter.write_text(before)
            assert sysfs.vfs(bdf) == []


@pytest.fixture
def pf(sysfs: Sysfs, vfio_driver: str) -> Iterator[str]:
    """On each VFIO driver: the module creates VFs through the core as vfio-pci does."""
    with _pf_on(sysfs, vfio_driver) as bdf:
        yield bdf


# The rest on vfio-pci only: the messages, and the NVMe bring-up, are the
# same on the module.
@pytest.fixture
def vfio_pci_pf(sysfs: Sysfs) -> Iterator[str]:
    with _pf_on(sysfs, "vfio-pci") as bdf:
        yield bdf


def test_a_vf_opens_with_the_token_its_pf_user_set(sysfs: Sysfs, pf: str, vfio_driver: str) -> None:
    token = uuid.uuid4()
    assert sysfs.total_vfs(pf) == 2
    autoprobe = Path(f"/sys/bus/pci/devices/{pf}/sriov_drivers_autoprobe")
    assert autoprobe.read_text().strip() == "1"
    with IommuContext() as context:
        pf_dev = context.open(pf)
        pf_dev.set_vf_token(token)
        with sysfs.vfs_enabled(pf, 2) as vfs:
            assert vfs == sysfs.vfs(pf) and len(vfs) == 2
            assert autoprobe.read_text().strip() == "0"
            for address in vfs:
                assert sysfs.physfn(address) == pf
                # No autoprobe, yet probed: the kernel honours the
                # driver_override by which the core steers a PF's VFs to
                # its own driver (the module's: a driver by that name).
                assert sysfs.device(address).driver == vfio_driver
            with pytest.raises(PermissionDeniedError) as refused:
                context.open(vfs[0])
            assert f"its PF {pf} is on {vfio_driver}: pass vf_token=" in str(refused.value.hint)
            with pytest.raises(PermissionDeniedError) as wrong:
                context.open(vfs[0], vf_token=uuid.uuid4())
            assert "is another" in str(wrong.value.hint)
            vf = context.open(vfs[0], vf_token=token)
            assert vf.config.read16(0) == NVME_SRIOV_ID[0]
            # Its own context works too: the token is the device's, not the context's.
            with Device.open(vfs[1], vf_token=token) as other:
                assert other.config.read16(2) == NVME_SRIOV_ID[1]
            # The kernel would wait for this process to let go of the VF: refused.
            with pytest.raises(BusyError, match=f"VF {vfs[0]} is in use"):
                sysfs.disable_vfs(pf)
            assert sysfs.vfs(pf) == vfs
            vf.close()
        assert sysfs.vfs(pf) == []
        assert autoprobe.read_text().strip() == "1"  # as it was


def test_creating_vfs_says_what_is_missing(sysfs: Sysfs, vfio_pci_pf: str) -> None:
    pf, vfio_driver = vfio_pci_pf, "vfio-pci"
    with pytest.raises(OutOfRangeError, match="at most 2"):
        sysfs.enable_vfs(pf, 3)
    edu = sysfs.find(*EDU_ID)[0].bdf
    with pytest.raises(InvalidArgumentError, match="no SR-IOV capability"):
        sysfs.enable_vfs(edu, 1)
    _parameter(vfio_driver).write_text("0")
    with pytest.raises(VfioError) as refused:
        sysfs.enable_vfs(pf, 1)
    assert f"{_parameter(vfio_driver)}" in str(refused.value.hint)
    assert sysfs.vfs(pf) == []
    assert Path(f"/sys/bus/pci/devices/{pf}/sriov_drivers_autoprobe").read_text() == "1\n"


def test_a_vf_token_is_refused_where_it_has_no_meaning(sysfs: Sysfs) -> None:
    edu = sysfs.find(*EDU_ID)[0].bdf
    with sysfs.bound(edu):
        with Device.open(edu) as dev, pytest.raises(UnsupportedError, match="not an SR-IOV PF"):
            dev.set_vf_token(uuid.uuid4())
        with pytest.raises(InvalidArgumentError) as refused:
            Device.open(edu, vf_token=uuid.uuid4())
        assert refused.value.hint == "the device is no PF or VF: open it without vf_token"


def test_the_sriov_example_brings_its_vfs_online(
    sysfs: Sysfs, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not sysfs.find(*NVME_SRIOV_ID):
        pytest.skip("no SR-IOV NVMe in this boot (tools/test.sh adds SRIOV_NVME_DEVICES)")
    # In this process (a new Python costs seconds under TCG), as its script would.
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    assert runpy.run_path(str(EXAMPLE), run_name="example")["main"]([]) == 0
    out = capsys.readouterr().out
    assert "2 secondary controllers" in out
    for n in (1, 2):
        assert f"controller {n}, model 'QEMU NVMe Ctrl'" in out, out
