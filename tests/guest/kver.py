# SPDX-License-Identifier: Apache-2.0
"""The running kernel's version, for the few answers that legitimately differ by kernel."""

from __future__ import annotations

import os
import re

_match = re.match(r"(\d+)\.(\d+)", os.uname().release)
assert _match is not None
RUNNING: tuple[int, int] = (int(_match.group(1)), int(_match.group(2)))

# 6.1's core faults a legacy BAR vma in with remap_pfn_range, which adds a PAT
# record of its own and gives the whole vma one type; 6.10+ faults with
# vmf_insert_pfn, which adds none and looks each page up.  So on 6.1 the module
# keeps legacy mmaps and WC cookies on different BARs (EBUSY); from 6.10 a
# page's mappings all follow its type.
VMA_HOLDS_PAT_RECORD: bool = RUNNING < (6, 10)
