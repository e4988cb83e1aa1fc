# SPDX-License-Identifier: Apache-2.0
"""Interrupts on eventfds and DMA through the IOMMU, on the real kernel."""

from __future__ import annotations

import asyncio
import mmap
import threading
import time
from pathlib import Path

import pytest

from pyvfio import BusyError, ClosedError, Device, OutOfRangeError, UnsupportedError
from pyvfio.dma import IDENTITY
from pyvfio.irq import IrqIndex
from pyvfio.vm import runner

from . import example_drivers as drivers
from .kver import RUNNING

EDU_IRQ_STATUS = 0x24
EDU_IRQ_RAISE = 0x60
EDU_IRQ_ACK = 0x64


def test_irq_indexes_as_the_kernel_reports_them(edu: str, nvme: str) -> None:
    # edu is conventional PCI: up to 6.12 vfio-pci offers ERR on PCIe devices
    # only; 7.3's vfio_pci_get_irq_count() offers it on every device.
    edu_err = 0 if RUNNING <= (6, 12) else 1
    with Device.open(edu) as dev:
        counts = {i.name: i.count for i in dev.irq_infos()}
        assert counts == {"INTX": 1, "MSI": 1, "MSIX": 0, "ERR": edu_err, "REQ": 1}
        if edu_err:
            dev.enable_irq(IrqIndex.ERR).close()
        else:
            with pytest.raises(UnsupportedError, match="no ERR interrupt"):
                dev.enable_irq(IrqIndex.ERR)
    with Device.open(nvme) as dev:
        msix_cap = next(c for c in dev.config.capabilities() if c.name == "MSI-X")
        table_size = (dev.config.read16(msix_cap.offset + 2) & 0x7FF) + 1
        assert dev.irq_info(IrqIndex.MSIX).count == table_size == 65
        assert dev.irq_info(IrqIndex.ERR).count == 1  # PCIe device: ERR exists


def test_edu_msi_from_the_device(edu: str) -> None:
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        dev.config.enable_bus_master()
        with dev.enable_irq(IrqIndex.MSI) as msi:
            assert msi.wait(0.05) == []  # nothing pending: times out empty
            bar0.write32(EDU_IRQ_RAISE, 0x4)
            assert msi.wait(5) == [0]
            assert bar0.read32(EDU_IRQ_STATUS) == 0x4
            bar0.write32(EDU_IRQ_ACK, 0x4)
            msi.trigger()  # the kernel signals the eventfd itself
            assert msi.wait(5) == [0]
            with pytest.raises(BusyError, match="already enabled"):
                dev.enable_irq(IrqIndex.MSI)


def test_edu_intx_is_automasked_until_unmasked(edu: str) -> None:
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        with dev.enable_irq(IrqIndex.INTX) as intx:
            bar0.write32(EDU_IRQ_RAISE, 0x1)
            assert intx.wait(5) == [0]
            bar0.write32(EDU_IRQ_ACK, 0x1)  # device lowers the line
            intx.unmask()
            bar0.write32(EDU_IRQ_RAISE, 0x2)
            assert intx.wait(5) == [0]
            bar0.write32(EDU_IRQ_ACK, 0x2)
            intx.mask()
            intx.unmask()


def test_nvme_msix_vectors_are_distinct(nvme: str) -> None:
    with Device.open(nvme) as dev, dev.enable_irq(IrqIndex.MSIX, 4) as msix:
        assert msix.count == 4
        msix.trigger(2)
        msix.trigger(3)
        assert msix.wait(5) == [2, 3]
        assert msix.pending() == []


def test_iova_ranges_exclude_the_msi_window(edu: str) -> None:
    with Device.open(edu) as dev:
        ranges = dev.iommu.iova_ranges()
        assert ranges, "type1 reports its IOVA ranges on 6.1, iommufd on every kernel"
        assert not any(start <= 0xFEE00000 <= end for start, end in ranges)


@pytest.mark.parametrize("memory", ["own", "callers"])
def test_edu_dma_both_ways(edu: str, memory: str) -> None:
    pattern = bytes(range(256)) * 4
    mine = mmap.mmap(-1, 4096)  # the caller's memory (dev.dma_map)
    with Device.open(edu) as dev:
        bar0 = dev.region(0).map()
        dev.config.enable_bus_master()
        src = dev.dma_buffer(4096, limit=1 << 28)
        if memory == "own":
            dst = dev.dma_buffer(4096, limit=1 << 28)
        else:
            dst = dev.dma_map(mine, limit=1 << 28)
        assert src.iova != dst.iova and max(src.iova, dst.iova) + 4096 <= 1 << 28
        src.view[: len(pattern)] = pattern
        for s, d, direction in ((src.iova, 0x40000, 0), (0x40000, dst.iova, 2)):
            bar0.write64(0x80, s)
            bar0.write64(0x88, d)
            bar0.write64(0x90, len(pattern))
            bar0.write64(0x98, 1 | direction)
            for _ in range(500):
                if not bar0.read64(0x98) & 1:
                    break
                time.sleep(0.01)
            assert not bar0.read64(0x98) & 1, "DMA did not complete"
        assert bytes(dst.view[: len(pattern)]) == pattern
    if memory == "callers":  # the device wrote into it; closing left it ours
        assert not mine.closed and mine[: len(pattern)] == pattern


def _free_hugepages() -> int:
    line = next(
        x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("HugePages_Free:")
    )
    return int(line.split()[1])


def test_hugepage_dma_buffer(edu: str) -> None:
    nr = Path("/proc/sys/vm/nr_hugepages")
    nr.write_text("4")  # the guest's own, thrown away with it
    try:
        assert _free_hugepages() == 4
        with Device.open(edu) as dev:
            buf = dev.dma_buffer(1, hugepages=True)
            assert buf.size == 2 << 20 and buf.iova % (2 << 20) == 0
            assert _free_hugepages() == 3  # pinned by VFIO_IOMMU_MAP_DMA
        assert _free_hugepages() == 4  # closing the device released it
    finally:
        nr.write_text("0")


def test_intx_may_follow_msi_once_msi_is_closed(edu: str) -> None:
    # One of INTx/MSI/MSI-X at a time (test_errors: the refusal); in turn works.
    with Device.open(edu) as dev:
        dev.config.enable_bus_master()
        with dev.enable_irq(IrqIndex.MSI) as msi:
            msi.trigger()
            assert msi.wait(5) == [0]
        with dev.enable_irq(IrqIndex.INTX) as intx:
            assert intx.count == 1


def test_an_msix_vector_is_awaited_in_asyncio_without_a_thread(nvme: str) -> None:
    # NVMe signals a completion by MSI-X: the loop watches the vector's
    # eventfd while other tasks run, and no thread is started to wait.
    with Device.open(nvme) as dev, dev.dma_buffer(mmap.PAGESIZE) as page:
        ctrl = drivers.nvme.Controller(dev)
        try:

            async def identify() -> tuple[list[int], int, int]:
                ticks = 0

                async def tick() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1

                ticker = asyncio.create_task(tick())
                threads = threading.active_count()
                assert await ctrl.msix.wait_async(0.3) == []  # nothing submitted yet
                ticked = ticks
                ctrl.submit(ctrl.admin, drivers.nvme.IDENTIFY, 0, page.iova, 1)
                fired = await ctrl.msix.wait_async(10)
                ticker.cancel()
                return fired, ticked, threading.active_count() - threads

            fired, ticks_while_waiting, new_threads = asyncio.run(identify())
            assert fired == [0]
            assert ticks_while_waiting > 0 and new_threads == 0
            ctrl.complete(ctrl.admin, "IDENTIFY controller")  # seen at once: it fired
            assert drivers.QEMU_NVME_MODEL in bytes(page.view[24:64])
        finally:
            ctrl.disable()


def test_a_buffer_goes_at_the_iova_the_caller_picks(edu: str) -> None:
    page = mmap.PAGESIZE
    with Device.open(edu) as dev:
        driver = drivers.edu.Edu(dev)
        fixed = dev.dma_buffer(page, iova=0x200000)
        assert fixed.iova == 0x200000
        fixed.view[:5] = b"fixed"
        assert driver.read_at(0x200000, 5) == b"fixed"
        # Taken, unaligned, above the device's limit, outside the IOMMU's
        # ranges: each refused before anything is mapped.
        before = dev.dma.buffers
        with pytest.raises(OutOfRangeError, match="overlaps what is mapped at 0x200000"):
            dev.dma_buffer(page, iova=0x200000)
        with pytest.raises(OutOfRangeError, match="not a multiple of the page size"):
            dev.dma_buffer(page, iova=0x300001)
        with pytest.raises(OutOfRangeError, match="ends above limit"):
            dev.dma_buffer(page, iova=1 << 28, limit=1 << 28)
        top = max(last for _, last in dev.iommu.iova_ranges())
        assert top == (1 << runner.IOMMU_ADDRESS_BITS) - 1
        with pytest.raises(OutOfRangeError, match="usable IOVAs"):
            dev.dma_buffer(page, iova=top + 1)
        assert dev.dma.buffers == before
        # The allocator works around what the caller placed: 4 MiB do not fit
        # below it.
        picked = dev.dma_buffer(0x400000)
        assert picked.iova >= 0x201000


def test_a_buffer_can_be_mapped_at_its_own_address(edu: str) -> None:
    # IOVA = VA, as DPDK's --iova-mode va: the VM's IOMMU has 48 address bits,
    # enough for any user address.
    with Device.open(edu) as dev:
        identity = dev.dma_buffer(mmap.PAGESIZE, iova=IDENTITY)
        assert identity.iova == identity.vaddr
        with pytest.raises(OutOfRangeError, match="overlaps"):
            dev.dma_map(mmap.mmap(-1, mmap.PAGESIZE), iova=identity.iova)
        memory = mmap.mmap(-1, mmap.PAGESIZE)
        with dev.dma_map(memory, iova=IDENTITY) as mapped:
            assert mapped.iova == mapped.vaddr


def test_closing_the_device_wakes_every_async_wait(edu: str) -> None:
    dev = Device.open(edu)
    msi = dev.enable_irq(IrqIndex.MSI, 1)
    seen: list[int] = []

    async def main() -> list[BaseException | list[int]]:
        loop = asyncio.get_running_loop()
        # A reader of the caller's own on the vector, beside the waits.
        loop.add_reader(msi.eventfds[0], lambda: seen.append(1))
        waits = [asyncio.create_task(msi.wait_async()) for _ in range(2)]
        await asyncio.sleep(0.2)
        msi.trigger(0)  # one of the waits takes it, the other looks and waits on
        await asyncio.sleep(0.2)
        assert seen, "the caller's own reader was replaced"
        loop.remove_reader(msi.eventfds[0])
        dev.close()  # from the loop itself: no thread is left to write
        return await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 10)

    first, second = asyncio.run(main())
    results = sorted((first, second), key=lambda r: isinstance(r, BaseException))
    assert results[0] == [0], results
    assert isinstance(results[1], ClosedError), results
