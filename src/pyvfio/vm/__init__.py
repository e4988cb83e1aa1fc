# SPDX-License-Identifier: Apache-2.0
"""A test VM on a real kernel: run a command in a guest with emulated PCI devices.

from pyvfio.vm import run
result = run(["python3", "my_driver.py"])
result.check()   # raises if the command failed or the kernel log is not clean
"""

from ..errors import VmArgumentError
from .klog import find_problems
from .runner import (
    E1000E_ID,
    EDU_ID,
    IVSHMEM_ID,
    NVME_ID,
    NVME_SRIOV_ID,
    PCI_TESTDEV_ID,
    SRIOV_NVME_DEVICES,
    GuestResult,
    VmOptions,
    run,
)

__all__ = [
    "E1000E_ID",
    "EDU_ID",
    "IVSHMEM_ID",
    "NVME_ID",
    "NVME_SRIOV_ID",
    "PCI_TESTDEV_ID",
    "SRIOV_NVME_DEVICES",
    "GuestResult",
    "VmArgumentError",
    "VmOptions",
    "find_problems",
    "run",
]
