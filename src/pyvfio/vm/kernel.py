# SPDX-License-Identifier: Apache-2.0
"""Which kernel the test VM boots: one of the matrix's, resolved, never hard-coded."""

from __future__ import annotations

from pathlib import Path

from .._where import setup_hint
from ..errors import VmArgumentError, VmError
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
    """A kernel image from a series (``6.12``), a fetched release, a path, or
    a release with an image in /boot.

    A series or release that is known but not fetched raises VmError (set-up
    fetches it); anything else that names no image, VmArgumentError."""
    series = [*kernels.SERIES, kernels.DEBUG_SERIES]
    if value in series:
        image = kernels.cached(value).image
    elif "/" in value or (value and Path(value).exists()):
        if not Path(value).exists():
            raise VmArgumentError("kernel", f"{value!r}: no such file")
        return Path(value)
    elif value and (kernels.CACHE / "kernels" / value).is_dir():
        image = kernels.image_path(value)
    elif value and (Path("/boot") / f"vmlinuz-{value}").exists():
        return Path("/boot") / f"vmlinuz-{value}"
    else:
        raise VmArgumentError(
            "kernel",
            f"{value!r} is no kernel series, fetched release or image file; "
            f"the series are {', '.join(series)}",
            hint="`pyvfio vm kernels` shows which are fetched",
        )
    if not image.exists():
        raise VmError(
            f"no kernel image for {value!r} ({image})", operation="find kernel", hint=_HINT
        )
    return image


def release_of(image: Path) -> str:
    """The release of a .../vmlinuz-RELEASE image, from its name."""
    name = image.name
    return name.removeprefix("vmlinuz-") if name.startswith("vmlinuz-") else name
