#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: lint, host tests, the module built for every kernel,
# then the guest suite once per kernel of the matrix ($KERNELS picks a subset)
# and once per backend on the debug kernel (iommufd + cdev, then legacy; the
# iommufd boot also runs the kernel's VFIO selftests), once more on the first
# kernel booted with nopat, and the outside clients (DPDK, the kernel's VFIO
# selftests) on the first kernel.
# `tools/test.sh --clients` runs only the clients, on every kernel (make test-clients).
# Ends with a summary line per kernel and one over everything.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# Kernels where vfio_pci_cookie may fail to build (the Makefile's list, empty
# today): its tests there skip with the compiler error; anywhere else a failed
# build fails.
KMOD_PENDING=${KMOD_PENDING?run through make}
rm -rf build/junit && mkdir -p build/junit
failed=()

step() {
	local name=$1
	shift
	echo "=== $name: $*"
	"$@" || failed+=("$name")
}

clients_only=0
[ "${1:-}" = --clients ] && clients_only=1

# The client tests' boot: two e1000e NICs for DPDK, hugepages for DPDK and the
# selftests' hugetlb variants (the 1 GiB page must be reserved at boot, and
# needs a guest of 4 GiB to find an aligned one).
clients() {
	local s=$1 start=$SECONDS
	step "clients-$s" "$BIN/pyvfio" vm run --kernel "$s" --nics 2 --memory 4G \
		--append hugepagesz=1G --append hugepages=1 --rwdir build/junit -- \
		"$BIN/python" -m pytest tests/guest/test_clients_dpdk.py tests/guest/test_clients_selftests.py \
		-p no:cacheprovider -o junit_suite_name="clients-$s" --junitxml="build/junit/clients-$s.xml"
	echo "=== clients-$s took $((SECONDS - start)) s"
	reports+=("clients-$s=build/junit/clients-$s.xml")
}

reports=()
if [ "$clients_only" = 0 ]; then
	step ruff "$BIN/ruff" check src tests examples tools bench
	step ruff-format "$BIN/ruff" format --check src tests examples tools bench
	step mypy "$BIN/mypy"
	step host-tests "$BIN/pytest" tests/host --junitxml=build/junit/host.xml
	reports+=(host=build/junit/host.xml)
fi

mapfile -t series < <("$BIN/pyvfio" vm kernels --names)
[ "${#series[@]}" -gt 0 ] || failed+=("kernel-matrix")
step kmod "$BIN/pyvfio" vm kmod "${series[@]}" --allow-fail "$KMOD_PENDING"
if [ "$clients_only" = 1 ]; then
	for s in "${series[@]}"; do clients "$s"; done
	"$BIN/python" tools/summary.py "${reports[@]}" "${failed[@]/#/step:}"
	exit
fi
# One guest run of the suite: guest SERIES NAME [BACKEND]; BACKEND sets
# $PYVFIO_BACKEND in the guest (unset: the library picks).
guest() {
	local s=$1 name=$2 backend=${3:-} start=$SECONDS
	local boot=() extra=()
	if [ "$backend" = iommufd ]; then
		# The selftests' iommufd variants and vfio_pci_device_test run only
		# here; their hugetlb_1gb variants need the page reserved at boot.
		boot=(--memory 4G --append hugepagesz=1G --append hugepages=1)
		extra=(tests/guest/test_clients_selftests.py)
	fi
	# The guest writes its report through a directory shared read-write with it.
	step "$name" "$BIN/pyvfio" vm run --kernel "$s" "${boot[@]}" --rwdir build/junit -- \
		env ${backend:+PYVFIO_BACKEND=$backend} "$BIN/python" -m pytest tests/guest "${extra[@]}" \
		-p no:cacheprovider --ignore-glob='tests/guest/test_clients_*' \
		-o junit_suite_name="$name" --junitxml="build/junit/$name.xml"
	echo "=== $name took $((SECONDS - start)) s"
	reports+=("${name#guest-}=build/junit/$name.xml")
}
for s in "${series[@]}"; do
	if [ "$s" = 7.3-debug ]; then
		guest "$s" "guest-$s-iommufd" iommufd
		guest "$s" "guest-$s-legacy" legacy
	else
		guest "$s" "guest-$s"
	fi
done
if [ "${#series[@]}" -gt 0 ]; then
	s=${series[0]}
	# Once without PAT: legacy users and UC cookies must not notice (issue #10).
	step "nopat-$s" "$BIN/pyvfio" vm run --kernel "$s" --append nopat --rwdir build/junit -- \
		"$BIN/python" -m pytest tests/guest/test_nopat.py tests/guest/test_compat.py \
		-p no:cacheprovider -o junit_suite_name="nopat-$s" --junitxml="build/junit/nopat-$s.xml"
	reports+=("nopat-$s=build/junit/nopat-$s.xml")
	# The full matrix of clients takes `make test-clients` (docs/testing.md: CI time).
	clients "$s"
fi

"$BIN/python" tools/summary.py "${reports[@]}" "${failed[@]/#/step:}"
