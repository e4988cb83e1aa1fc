#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Idempotent set-up for the test VM, the kernel matrix and the dev tools:
#  1. the Debian packages the host needs (only those missing are installed);
#  2. the project into .venv;
#  3. a check that every tool the runner and the matrix invoke is present;
#  4. the matrix kernels ($KERNELS, default 6.1 6.12 7.3 7.3-debug + the host's own)
#     fetched into the cache ($PYVFIO_CACHE, default /var/lib/pyvfio), and the
#     debug kernel (7.3-debug) built there: tens of minutes, once per machine.
# `setup.sh --demo` (make demo) fetches only the kernel the demo boots, the
# host's own series: the rest is for make test.
# What apt and pip print goes to build/logs/setup.log.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0
[ "${1:-}" = --demo ] && demo=1
mkdir -p build/logs
LOG=build/logs/setup.log
: >"$LOG"
# quietly CMD...: its output to the log; on failure, the log's end and its name.
quietly() {
	if ! "$@" >>"$LOG" 2>&1; then
		echo "setup: \`$*\` failed; the end of $LOG:" >&2
		tail -n 15 "$LOG" >&2
		exit 1
	fi
}

# Each is named by a tool in pyvfio/vm/tools.py, checked in step 3.
APT_PACKAGES=(qemu-system-x86 busybox-static file udev iproute2 debootstrap coreutils apt dpkg dkms
	kmod pciutils pci.ids procps gcc make python3 python3-venv python3-dev
	# the guest tests' disk in use (mkfs.ext4, mount, swap) and the kernel log
	e2fsprogs mount util-linux tar
	# the host's own kernel series: the outside-the-tree tests build the module for it
	linux-headers-amd64
	# the client tests: DPDK's testpmd, and building the kernel's VFIO selftests
	dpdk-dev uuid-dev xz-utils
	# building the debug kernel (7.3-debug: iommufd, VFIO cdev, lockdep)
	flex bison bc perl libelf-dev libssl-dev)

# apt, debootstrap and chroot (the module is built in a root of the kernel's
# Debian release) all need root.
if [ "$(id -u)" -ne 0 ]; then
	echo "setup: run as root (apt-get, debootstrap and chroot need it)" >&2
	exit 1
fi
apt_install() {
	quietly apt-get update -q
	quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$pkg")
done
# Hosts with systemd have it; the standalone package would replace systemd.
command -v systemd-tmpfiles >/dev/null || missing+=(systemd-standalone-tmpfiles)
# testpmd's e1000e driver is a plugin whose package name carries DPDK's ABI
# (librte-net-e1000-23 on Debian 12): take the one the dpdk package names.
apt-cache show dpdk >/dev/null 2>&1 || quietly apt-get update -q
e1000_pmd=$(apt-cache depends dpdk | grep -o 'librte-net-e1000-\?[0-9][0-9.]*' | head -n1)
if [ -z "$e1000_pmd" ]; then
	echo "setup: no librte-net-e1000 package among dpdk's dependencies" >&2
	exit 1
fi
dpkg-query -W -f='${Status}' "$e1000_pmd" 2>/dev/null | grep -q 'ok installed' || missing+=("$e1000_pmd")
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${#missing[@]} Debian packages (log: $LOG): ${missing[*]}"
	apt_install "${missing[@]}"
fi
# The host's own kernel series is resolved from its package lists.
apt-cache show linux-image-amd64 >/dev/null 2>&1 || quietly apt-get update -q

if [ ! -x .venv/bin/python ]; then
	python3 -m venv .venv
fi
stamp=.venv/.pyvfio-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
	echo "setup: installing pyvfio and its dev tools into .venv (log: $LOG)"
	quietly .venv/bin/pip install --upgrade pip
	quietly .venv/bin/pip install -e '.[vm,dev]'
	touch "$stamp"
fi

.venv/bin/pyvfio vm check
if [ "$demo" = 1 ]; then
	.venv/bin/pyvfio vm fetch default
	echo "setup: ok for the demo (make setup or make test sets up the rest)"
	exit 0
fi
.venv/bin/pyvfio vm fetch
.venv/bin/pyvfio vm selftests
echo "setup: ok (venv .venv, kernels: $(.venv/bin/pyvfio vm kernels --names | tr '\n' ' '))"
