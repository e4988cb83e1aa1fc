# SPDX-License-Identifier: Apache-2.0
"""Which kernel the test VM boots: one of the matrix's, resolved, never hard-coded."""

from __future__ import annotations

from pathlib import Path

from .._where import setup_hint
from ..errors import VmError
from . import kernels

_HINT = f"{setup_hint()}, or pass --kernel SERIES|RELEASE|IMAGE"


def default_series() -> str:
    """The series of the host's linux-image-amd64 (6.1 on Debian 12, 6.12 on 13)."""
    series = kernels.host_default_series()
    if series is None:
        raise VmError(
            "the host's linux-image-amd64 is no kernel series pyvfio knows",
            operation="find kernel",
            hint=_HINT,
        )
    return series


def default_kernel() -> Path:
    """The image of the host's own series, as ``make setup`` fetched it."""
    return resolve_kernel(default_series())


def resolve_kernel(value: str) -> Path:
    """A kernel image from a series (``6.12``), a fetched release, or a path."""
    if value in kernels.SERIES or value == kernels.DEBUG_SERIES:
        image = kernels.cached(value).image
    elif (kernels.CACHE / "kernels" / value).is_dir():
        image = kernels.image_path(value)
    elif Path(value).exists():
        return Path(value)
    else:
        image = Path("/boot") / f"vmlinuz-{value}"
    if not image.exists():
        raise VmError(
            f"no kernel image for {value!r} ({image})", operation="find kernel", hint=_HINT
        )
    return image


def release_of(image: Path) -> str:
    """The release of a .../vmlinuz-RELEASE image, from its name."""
    name = image.name
    return name.removeprefix("vmlinuz-") if name.startswith("vmlinuz-") else name
