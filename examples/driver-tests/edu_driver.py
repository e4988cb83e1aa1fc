# SPDX-License-Identifier: Apache-2.0
"""A small userspace driver for QEMU's ``edu`` device, the code under test.

Registers from QEMU's docs/specs/edu.rst.  Completion is polled, so the
driver needs no interrupts: ident, a liveness check, the device's factorial
unit, and a DMA copy through the device's own 4 KiB buffer.
"""

from __future__ import annotations

import time

from pyvfio import Device

IDS = "1234:11e8"

_IDENT = 0x00
_LIVENESS = 0x04
_FACTORIAL = 0x08
_STATUS = 0x20
_STATUS_BUSY = 0x01
_DMA_SRC = 0x80
_DMA_DST = 0x88
_DMA_COUNT = 0x90
_DMA_CMD = 0x98
_DMA_RUN = 0x01
_DMA_TO_HOST = 0x02
_DEVICE_BUFFER = 0x40000
# edu drives 28 address bits, and QEMU 7.2's refuses a copy that reaches
# its buffer's last byte.
_DMA_LIMIT = 1 << 28
MAX_COPY = 2048


def expected_factorial(n: int) -> int:
    """What the device answers for ``n``: n! modulo 2**32."""
    result = 1
    for k in range(2, n + 1):
        result = result * k % 2**32
    return result


class EduDriver:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.regs = device.region(0).map()
        device.config.enable_bus_master()

    def version(self) -> tuple[int, int]:
        ident = self.regs.read32(_IDENT)
        if ident & 0xFF != 0xED:
            raise RuntimeError(f"{self.device.bdf} is no edu device (ident {ident:#x})")
        return ident >> 24, (ident >> 16) & 0xFF

    def alive(self, value: int) -> bool:
        self.regs.write32(_LIVENESS, value)
        return self.regs.read32(_LIVENESS) == ~value & 0xFFFFFFFF

    def _wait(self, offset: int, bit: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.regs.read32(offset) & bit:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.device.bdf}: still busy after {timeout} s")
            time.sleep(0.001)

    def factorial(self, n: int, timeout: float = 5.0) -> int:
        self.regs.write32(_STATUS, 0)  # polled: no interrupt
        self.regs.write32(_FACTORIAL, n)
        self._wait(_STATUS, _STATUS_BUSY, timeout)
        return self.regs.read32(_FACTORIAL)

    def _dma(self, src: int, dst: int, count: int, flags: int, timeout: float) -> None:
        self.regs.write64(_DMA_SRC, src)
        self.regs.write64(_DMA_DST, dst)
        self.regs.write64(_DMA_COUNT, count)
        self.regs.write64(_DMA_CMD, _DMA_RUN | flags)
        self._wait(_DMA_CMD, _DMA_RUN, timeout)

    def copy_through_device(self, data: bytes, timeout: float = 5.0) -> bytes:
        """``data`` into the device's buffer by DMA, and back into another buffer."""
        if not 0 < len(data) <= MAX_COPY:
            raise ValueError(f"copy 1 to {MAX_COPY} bytes, not {len(data)}")
        with (
            self.device.dma_buffer(len(data), limit=_DMA_LIMIT) as out,
            self.device.dma_buffer(len(data), limit=_DMA_LIMIT) as back,
        ):
            out.view[: len(data)] = data
            self._dma(out.iova, _DEVICE_BUFFER, len(data), 0, timeout)
            self._dma(_DEVICE_BUFFER, back.iova, len(data), _DMA_TO_HOST, timeout)
            return bytes(back.view[: len(data)])
