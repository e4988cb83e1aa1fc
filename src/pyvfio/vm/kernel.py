# SPDX-License-Identifier: Apache-2.0
"""Which kernel the test VM boots: the distribution's, resolved, never hard-coded."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import VmError

METAPACKAGE = "linux-image-amd64"
_HINT = "run `make setup` (installs linux-image-amd64 and linux-headers-amd64) or pass --kernel"


def release_from_metapackage(package: str = METAPACKAGE) -> str:
    """The kernel release (e.g. 6.1.0-56-amd64) that Debian's metapackage points at."""
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Depends}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise VmError(
            "dpkg-query not found: not a Debian system",
            operation="find kernel",
            hint="pass --kernel /boot/vmlinuz-RELEASE",
        ) from exc
    match = re.search(r"linux-(?:image|headers)-(\d[^\s,(]*)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise VmError(f"{package} is not installed", operation="find kernel", hint=_HINT)
    return match.group(1)


def default_kernel() -> Path:
    """/boot/vmlinuz-<release> for the release the metapackage depends on."""
    release = release_from_metapackage()
    image = Path("/boot") / f"vmlinuz-{release}"
    if not image.exists():
        raise VmError(f"{image} is missing", operation="find kernel", hint=_HINT)
    modules = Path("/lib/modules") / release
    if not modules.is_dir():
        raise VmError(
            f"{modules} is missing: the guest needs its modules",
            operation="find kernel",
            hint=_HINT,
        )
    return image


def release_of(image: Path) -> str:
    """The release of a /boot/vmlinuz-RELEASE image, from its name."""
    name = image.name
    return name.removeprefix("vmlinuz-") if name.startswith("vmlinuz-") else name
