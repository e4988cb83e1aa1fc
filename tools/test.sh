#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: lint, host tests, the module built for every kernel,
# then the guest suite once per kernel of the matrix ($KERNELS picks a subset)
# and once per backend on the debug kernel (iommufd + cdev, then legacy; the
# iommufd boot also runs the kernel's VFIO selftests), once more on the first
# kernel booted with nopat, and the outside clients (DPDK, the kernel's VFIO
# selftests) on the first kernel.
# `tools/test.sh --clients` runs only the clients, on every kernel (make test-clients).
# Guest boots run two at a time ($PYVFIO_TEST_JOBS).
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

# Each host step says when it ended, in seconds from the start, and how long
# it took: docs/testing.md gives these times.
step() {
	local name=$1 start=$SECONDS
	shift
	echo "=== $name: $*"
	"$@" || failed+=("$name")
	echo "=== $name: $((SECONDS - start)) s, ended at $SECONDS s"
}

# Guest boots run $PYVFIO_TEST_JOBS at a time (default 2): each TCG guest keeps
# about one host core busy, so two boots share these 2-core machines with
# little loss, and the whole suite fits CI's time (docs/testing.md).  A boot's
# output goes to build/logs/NAME.log and is printed when it ends.
JOBS=${PYVFIO_TEST_JOBS:-2}
if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
	echo "test.sh: PYVFIO_TEST_JOBS must be a positive number, not '$JOBS'" >&2
	exit 2
fi
rm -rf build/logs && mkdir -p build/logs
boots=()
# Interrupted: no guest (vng, QEMU) is left running behind us.
kill_tree() {
	local child
	for child in $(pgrep -P "$1"); do kill_tree "$child"; done
	kill "$1" 2>/dev/null
}
stop() {
	trap - HUP INT TERM
	for j in $(jobs -p); do kill_tree "$j"; done
	exit "$1"
}
# The status a shell gives a command killed by the signal: 128 + its number.
trap 'stop 129' HUP
trap 'stop 130' INT
trap 'stop 143' TERM

# logged NAME CMD...: CMD with its output in build/logs/NAME.log, then its
# exit status and seconds in NAME.rc, whole or not at all (reap may look
# while another ends).  Run in the background.
logged() {
	local name=$1 start=$SECONDS
	shift
	"$@" >"build/logs/$name.log" 2>&1
	echo "$? $((SECONDS - start))" >"build/logs/$name.rc.tmp"
	mv "build/logs/$name.rc.tmp" "build/logs/$name.rc"
}

# show NAME: the log and time of a logged command that ended; a failure counts.
show() {
	local name=$1 rc took
	read -r rc took <"build/logs/$name.rc"
	echo "=== $name"
	cat "build/logs/$name.log"
	echo "=== $name took $took s (exit $rc)"
	touch "build/logs/$name.shown"
	[ "$rc" = 0 ] || failed+=("$name")
}

# Show every boot that ended since the last call.
reap() {
	local name
	for name in "${boots[@]}"; do
		[ -f "build/logs/$name.rc" ] && [ ! -f "build/logs/$name.shown" ] || continue
		show "$name"
	done
}

# How many boots have started and not ended.
running_boots() {
	local name count=0
	for name in "${boots[@]}"; do
		[ -f "build/logs/$name.rc" ] || count=$((count + 1))
	done
	echo "$count"
}

# queued NAME LABEL CMD...: CMD in the background once fewer than $JOBS of
# these run, its JUnit report build/junit/NAME.xml summarised as LABEL.
queued() {
	local name=$1 label=$2
	shift 2
	# Counted by their status files: `wait -n` also returns for the host
	# tests, which may still run beside the first boots.
	while [ "$(running_boots)" -ge "$JOBS" ]; do
		wait -n || true
		reap
	done
	echo "=== $name: started at $SECONDS s"
	logged "$name" "$@" &
	boots+=("$name")
	reports+=("$label=build/junit/$name.xml")
}

# boot NAME LABEL KERNEL VM-ARGS... -- PYTEST-ARGS...: one guest boot, through
# the pytest plugin (pyvfio.pytest_plugin): pytest on the host boots KERNEL
# with the `pyvfio vm run` options VM-ARGS, runs the tests in the guest and
# writes their report; the guest's own output is build/logs/NAME/KERNEL.log.
boot() {
	local name=$1 label=$2 kernel=$3 vm=()
	shift 3
	while [ "$1" != -- ]; do
		vm+=("--vfio-vm=$1")
		shift
	done
	shift
	queued "$name" "$label" "${PYTEST[@]}" "$@" --vfio-kernel="$kernel" "${vm[@]}" \
		--vfio-results="build/logs/$name" \
		-o junit_suite_name="$name" --junitxml="build/junit/$name.xml"
}

clients_only=0
[ "${1:-}" = --clients ] && clients_only=1
# --durations: each boot's log ends with its slowest tests (docs/testing.md).
PYTEST=("$BIN/python" -m pytest -p no:cacheprovider --durations=15)

# The client tests' boot: two e1000e NICs for DPDK, hugepages for DPDK and the
# selftests' hugetlb variants (the 1 GiB page must be reserved at boot, and
# needs a guest of 4 GiB to find an aligned one).
HUGE=(--memory 4G --append hugepagesz=1G --append hugepages=1)
# It also adds devices the built-in set lacks (test_added_devices.py): after
# the NICs, so the other devices keep their addresses.
LARGE=(--large-bar 1G --large-bar 64G)
ADDED=(--device pci-testdev "${LARGE[@]}")
# Two edu devices behind a conventional PCI bridge: one IOMMU group of two
# devices, and a bus to hot-reset (test_bridge.py, both backends where the
# kernel has iommufd).  Opt-in: the files that expect one edu do not run
# with them.
BRIDGED=(--device pci-bridge,id=pyvfio-bridge,chassis_nr=1
	--device edu,bus=pyvfio-bridge,addr=1 --device edu,bus=pyvfio-bridge,addr=2)
# An NVMe controller with SR-IOV (pyvfio.vm.SRIOV_NVME_DEVICES), in every
# guest boot (test_sriov.py; on the debug kernel, its iommufd boot): other IDs
# than the built-in nvme's, after the built-in devices.
mapfile -t SRIOV < <("$BIN/python" -c 'from pyvfio.vm import SRIOV_NVME_DEVICES as d
for v in d: print("--device", v, sep="\n")')
clients() {
	local s=$1
	boot "clients-$s" "clients-$s" "$s" --nics 2 "${HUGE[@]}" "${ADDED[@]}" "${BRIDGED[@]}" -- \
		tests/guest/test_clients_dpdk.py tests/guest/test_clients_selftests.py \
		tests/guest/test_added_devices.py tests/guest/test_bridge.py
}

# Files whose kernel paths do not depend on the library's backend: the
# debug kernel runs them once, in its iommufd boot (test_regions.py: a
# device fd's read, write and mmap are the same ops however it was opened).
SAME_ON_BOTH_BACKENDS=(test_bind.py test_cli.py test_errors.py test_harness.py
	test_regions.py test_stand_in.py test_wc_client.py)
# Legacy-backend tests whose point is an answer, not a lock: they run on the
# three Debian kernels, whose only backend is legacy, and the debug kernel's
# legacy boot is for lockdep on the group and container paths, which the
# rest of its files take (opening, mapping, races, release, reset, SR-IOV).
ANSWERS_ON_DEBIAN_KERNELS=(test_arguments.py test_docs_examples.py test_examples.py
	test_info.py test_lifetime.py)
# Module files whose locks do not depend on the library's backend (the
# device fd's ops are the same however it was opened): lockdep sees them in
# the debug kernel's iommufd boot, the Debian kernels check their answers.
MODULE_ONLY=(test_compat.py test_cookie_safety.py test_cookies.py)

# The guest suite: guest SERIES NAME [BACKEND]; BACKEND sets $PYVFIO_BACKEND
# in the guest (unset: the library picks).
guest() {
	local s=$1 name=$2 backend=${3:-}
	local boot=() skip=(--ignore-glob='tests/guest/test_clients_*'
		--ignore=tests/guest/test_added_devices.py) bridged=0
	# The races of test_stress.py run 10 s in the iommufd boot of the lockdep
	# kernel, which reports an inverted lock order the first time both orders
	# are taken; 5 s elsewhere (the legacy boot takes the same module and
	# core locks; the Debian kernels can only crash or hang).
	local stress=5
	[ "$backend" = iommufd ] && stress=10
	if [ "$backend" = iommufd ]; then
		# The selftests' iommufd variants and vfio_pci_device_test run only
		# here; their hugetlb_1gb variants need the page reserved at boot.
		boot=("${HUGE[@]}")
		skip=(--ignore=tests/guest/test_clients_dpdk.py --ignore=tests/guest/test_added_devices.py
			--ignore=tests/guest/test_large_bars.py)
	elif [ "$backend" = legacy ]; then
		# Files whose kernel paths do not depend on the library's backend
		# (sysfs binding, the CLI's output, the C client's own legacy
		# open, module parameters, input checks) ran in the iommufd boot of
		# this kernel, under the same lockdep: not twice.  Nor the answers
		# the Debian kernels' legacy boots check (above), nor SR-IOV, whose
		# legacy open (a token in the group's device name) they check and
		# whose core locks the iommufd boot takes under lockdep.
		for f in "${SAME_ON_BOTH_BACKENDS[@]}" "${ANSWERS_ON_DEBIAN_KERNELS[@]}" \
			"${MODULE_ONLY[@]}" test_sriov.py; do
			skip+=(--ignore="tests/guest/$f")
		done
		# The bridged group, on both backends of the debug kernel (its
		# files take the first edu, on the root bus).
		bridged=1
	fi
	if [ -n "$backend" ]; then
		# The debug kernel's boots: the host tests build the fresh venv's
		# module for the host's kernel series, not this one.
		skip+=(--ignore=tests/guest/test_outside_repo.py)
	fi
	# 1 and 64 GiB BARs (test_large_bars.py), after the built-in devices.
	if [ -z "$backend" ] || [ "$backend" = legacy ]; then
		boot+=("${LARGE[@]}")
	fi
	boot+=("${SRIOV[@]}")
	if [ "$bridged" = 1 ]; then
		boot+=("${BRIDGED[@]}")
	else
		skip+=(--ignore=tests/guest/test_bridge.py)
	fi
	# The example project's driver tests, through the same plugin, on the
	# kernels its docs name (examples/driver-tests/README.md).
	local example=()
	if [ -z "$backend" ] && { [ "$s" = 6.1 ] || [ "$s" = 7.3 ]; }; then
		example=(examples/driver-tests/tests)
	fi
	boot "$name" "${name#guest-}" "$s" "${boot[@]}" -- tests/guest "${example[@]}" "${skip[@]}" \
		${backend:+--vfio-env=PYVFIO_BACKEND=$backend} --vfio-env=PYVFIO_STRESS_SECONDS=$stress
}

reports=()
host_tests=
if [ "$clients_only" = 0 ]; then
	# The host tests, one process, run beside the other host steps, each one
	# process too: two cores.  Their output follows those steps'.
	echo "=== host-tests: started at $SECONDS s"
	# Those that boot the VM run later, in a boot's slot (below).
	logged host-tests "$BIN/pytest" tests/host -m "not boots" --junitxml=build/junit/host.xml &
	host_tests=$!
	step ruff "$BIN/ruff" check src tests examples tools bench docs/api
	step ruff-format "$BIN/ruff" format --check src tests examples tools bench docs/api
	step mypy "$BIN/mypy"
	# The API reference (docs/api), warnings as errors; its examples run in
	# the host tests and in the guests (tests/guest/test_docs_examples.py).
	step docs "$BIN/sphinx-build" -q -E -W --keep-going -b html docs/api build/docs
fi

# Bytecode for every file the guests import, written here: their root is
# read-only, and under TCG compiling the sources again in each guest Python
# process cost more than reading them (docs/testing.md).  Collecting the guest
# tests writes pytest's assertion-rewritten modules, which it reads back there.
step bytecode env PYTHONDONTWRITEBYTECODE= "$BIN/python" -m compileall -q src tests examples bench
# The C example the guest tests run: gcc under TCG took 20 s a boot.
step wc-client make -s -C examples OUT="$PWD/build/examples"
collect_guest_tests() { # quietly: it lists every test
	env PYTHONDONTWRITEBYTECODE= "$BIN/python" -m pytest -p no:cacheprovider --collect-only -q \
		tests/guest >/dev/null
}
step bytecode-pytest collect_guest_tests

mapfile -t series < <("$BIN/pyvfio" vm kernels --names)
[ "${#series[@]}" -gt 0 ] || failed+=("kernel-matrix")
step kmod "$BIN/pyvfio" vm kmod "${series[@]}" --allow-fail "$KMOD_PENDING"
# The host tests make the venv the guests' test_outside_repo.py uses, and
# their runs of `vm run` (fake and real) sweep the temporary directory: every
# boot waits for them.  (Started beside them, a debug boot twice died in 3 s
# with no output, cause not found.)
host_tests_done() {
	[ -n "$host_tests" ] || return 0
	wait "$host_tests" || true
	show host-tests
	reports+=(host=build/junit/host.xml)
	host_tests=
}
if [ "$clients_only" = 1 ]; then
	host_tests_done
	for s in "${series[@]}"; do clients "$s"; done
else
	host_tests_done
	# Longest boots first, so the two lanes end together.
	for s in "${series[@]}"; do
		if [ "$s" = 7.3-debug ]; then
			guest "$s" "guest-$s-iommufd" iommufd
			guest "$s" "guest-$s-legacy" legacy
		fi
	done
	for s in "${series[@]}"; do
		[ "$s" = 7.3-debug ] || guest "$s" "guest-$s"
	done
	if [ "${#series[@]}" -gt 0 ]; then
		s=${series[0]}
		# The full matrix of clients takes `make test-clients` (docs/testing.md: CI time).
		clients "$s"
		# Once without PAT: legacy users and UC cookies must not notice (issue #10).
		boot "nopat-$s" "nopat-$s" "$s" --append nopat -- \
			tests/guest/test_nopat.py tests/guest/test_compat.py
		# The host tests that boot the VM themselves (the runner, the pytest
		# plugin as a user runs it).
		queued host-boots host-boots "${PYTEST[@]}" tests/host -m boots \
			-o junit_suite_name=host-boots --junitxml=build/junit/host-boots.xml
	fi
fi
wait
reap
for name in "${boots[@]}"; do  # a lane that died before writing its status
	[ -f "build/logs/$name.shown" ] || { cat "build/logs/$name.log"; failed+=("$name"); }
done

"$BIN/python" tools/summary.py --logs build/logs "${reports[@]}" "${failed[@]/#/step:}"
