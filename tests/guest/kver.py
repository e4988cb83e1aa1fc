# SPDX-License-Identifier: Apache-2.0
"""The running kernel's version, for the few answers that legitimately differ by kernel."""

from __future__ import annotations

import os
import re

_match = re.match(r"(\d+)\.(\d+)", os.uname().release)
assert _match is not None
RUNNING: tuple[int, int] = (int(_match.group(1)), int(_match.group(2)))
