# SPDX-License-Identifier: Apache-2.0
"""Closing a device gives back every fd and mapping it took."""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest

from pyvfio import Device, Sysfs
from pyvfio.irq import IrqIndex

from .kver import VMA_HOLDS_PAT_RECORD


def _counts() -> tuple[int, int]:
    return len(os.listdir("/proc/self/fd")), len(Path("/proc/self/maps").read_text().splitlines())


def test_close_returns_fds_and_mappings(edu: str, nvme: str) -> None:
    def use_both() -> None:
        with Device.open(edu) as dev:
            dev.region(0).map()
            dev.config.read32(0)
            dev.enable_irq(IrqIndex.MSI)
            dev.dma_buffer(8192)
            dev.dma_buffer(4096)
        with Device.open(nvme) as dev:
            dev.region(0).map()
            dev.region(2).map(0, 1 << 20)
            dev.enable_irq(IrqIndex.MSIX, 8)

    # Once first, to warm caches: imports, lazily built objects, and the
    # allocator's arenas, which the request watcher's thread also uses.
    use_both()
    before = _counts()
    for _ in range(3):
        use_both()
    assert _counts() == before


def test_close_leaves_no_thread_even_in_the_kernel(edu: str) -> None:
    # The watcher's OS thread outlives Thread.join() for a moment; while it
    # does, a new thread gets a new stack and a fork counts it as running.
    tasks = len(os.listdir("/proc/self/task"))
    for _ in range(20):
        with Device.open(edu):
            pass
        assert len(os.listdir("/proc/self/task")) == tasks


def test_examples_edu_driver_runs(edu: str, capsys: pytest.CaptureFixture[str]) -> None:
    # In this process, as its script would run (a new Python costs seconds under TCG).
    example = Path(__file__).parents[2] / "examples" / "edu.py"
    assert runpy.run_path(str(example), run_name="example")["main"]([edu]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{edu}: edu v1.0, liveness ok"
    assert "factorial(12) = 479001600  (MSI)" in lines
    assert any(line.startswith("DMA: 2048 bytes") and "verified" in line for line in lines)


def test_examples_wc_demo_proves_write_combining(
    sysfs: Sysfs, cookie_module: None, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).parents[2] / "examples" / "wc_demo.py"
    assert runpy.run_path(str(example), run_name="example")["main"]() == 0
    out = capsys.readouterr().out
    expected = _demo_shape(_readme_demo_output())
    if not VMA_HOLDS_PAT_RECORD:  # as the README says: one BAR0 entry from 6.10
        expected.remove("BAR0 page 0:    PAT: [mem 0x…-0x…] uncached-minus")
    # make test adds large BARs to every boot (--large-bar): not the README's devices
    shown = [line for line in _demo_shape(out) if not _ADDED_LARGE_BAR.search(line)]
    assert shown == expected
    assert "memory type reported by the module: write-combining" in out
    assert re.search(r"CMB pages 0-3:  PAT: \[mem 0x[0-9a-f]+-0x[0-9a-f]+\] write-combining", out)
    assert re.search(r"BAR0 page 0:    PAT: .* uncached-minus", out)
    assert "is refused" in out and "after close: 0 PAT entries left" in out


_ADDED_LARGE_BAR = re.compile(r" BAR2=\d+G\(")


def _readme_demo_output() -> str:
    """The demo output the README shows (the block after "Output of a run here")."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    after = readme.split("Output of a run here:", 1)[1]
    return after.split("```\n", 2)[1]


def _demo_shape(text: str) -> list[str]:
    """The demo's lines with what differs between boots and kernels made
    alike: PCI addresses, IOMMU group numbers, physical addresses and the
    cookie's value, the NVMe version and CAP."""
    shape = []
    for line in text.strip().splitlines():
        alike = re.sub(r"\b[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\b", "BDF", line)
        alike = re.sub(r"0x[0-9a-f]+", "0x…", alike)
        alike = re.sub(r"VS=\d+\.\d+", "VS=…", alike)
        alike = re.sub(r"^(BDF +\S+ +\S+) +\d+ ", r"\1 GROUP ", alike)  # the device table
        shape.append(alike.rstrip())
    return shape
