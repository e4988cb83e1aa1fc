#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: lint, host tests, then the guest tests in one VM boot.
# Ends with one summary line over both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
rm -rf build && mkdir -p build
failed=()

step() {
	local name=$1
	shift
	echo "=== $name: $*"
	"$@" || failed+=("$name")
}

step ruff "$BIN/ruff" check src tests examples tools bench
step ruff-format "$BIN/ruff" format --check src tests examples tools bench
step mypy "$BIN/mypy"
step host-tests "$BIN/pytest" tests/host --junitxml=build/host.xml
step kmod make --no-print-directory kmod
# The guest writes its report through a directory shared read-write with it.
step guest-tests "$BIN/pyvfio" vm run --rwdir build -- \
	"$BIN/python" -m pytest tests/guest -p no:cacheprovider --junitxml=build/guest.xml

"$BIN/python" tools/summary.py build/host.xml build/guest.xml "${failed[@]/#/step:}"
