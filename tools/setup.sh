#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Idempotent set-up for the test VM, the kernel module build and the dev tools.
# Installs Debian packages only when missing, then the project into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 pciutils kmod gcc make)

apt_install() {
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
		--no-install-recommends "$@" </dev/null
}

# The release a metapackage depends on, e.g. 6.1.0-56-amd64.
release_of() {
	dpkg-query -W -f='${Depends}' "$1" 2>/dev/null |
		grep -oE 'linux-(image|headers)-[0-9][^ ,(]*' | head -n1 |
		sed -E 's/^linux-(image|headers)-//'
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	apt_install "${missing[@]}"
fi

# The module is built against the guest kernel's headers: both must be one release.
image=$(release_of linux-image-amd64)
headers=$(release_of linux-headers-amd64)
if [ "$image" != "$headers" ] || [ ! -d "/lib/modules/$image" ] ||
	[ ! -d "/usr/src/linux-headers-$headers" ]; then
	echo "setup: kernel image ($image) and headers ($headers) differ; upgrading both"
	apt_install linux-image-amd64 linux-headers-amd64
	image=$(release_of linux-image-amd64)
	headers=$(release_of linux-headers-amd64)
	if [ "$image" != "$headers" ]; then
		echo "setup: linux-image-amd64 ($image) and linux-headers-amd64 ($headers) still" \
			"differ; fix the apt sources" >&2
		exit 1
	fi
fi

if [ ! -x .venv/bin/python ]; then
	python3 -m venv .venv
fi
stamp=.venv/.pyvfio-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[vm,dev]'
	touch "$stamp"
fi
echo "setup: ok (guest kernel $image, venv .venv)"
