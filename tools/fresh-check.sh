#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Does pyvfio set itself up on a new machine?  For each Debian release given
# (default: bookworm trixie), debootstrap a bare root, clone this repository's
# HEAD into it, and run the README's two commands there as a new user would:
#
#   apt-get install git make   (the README's prerequisites on a bare machine)
#   make demo
#   make test                  (both with CI=true and no stdin, as CI runs)
#
# A fresh clone on a set-up machine proves nothing about set-up (busybox was
# once missing for exactly that reason), so nothing of the host's packages,
# venv or kernel cache is visible inside.  The root gets only what any machine
# here has: DNS, the apt mirror the host uses, and the host's extra CA
# certificates (this workplace's network needs them for PyPI).
#
# Slow (tens of minutes per release) and not part of `make test`.  Needs root.
# Usage: tools/fresh-check.sh [bookworm|trixie ...]   (FRESH_DIR=/var/lib/pyvfio-fresh)
# FRESH_COMMANDS="make demo" runs only those (;-separated) instead of both.
# Each line shown is stamped with the seconds since its command started.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
fresh_dir=${FRESH_DIR:-/var/lib/pyvfio-fresh}
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=(bookworm trixie)

[ "$(id -u)" -eq 0 ] || {
	echo "fresh-check: needs root (debootstrap, chroot, mounts)" >&2
	exit 1
}
command -v debootstrap >/dev/null || {
	echo "fresh-check: install debootstrap" >&2
	exit 1
}
# The mirror the host's apt already uses, as the new machine would.
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN)' |
	awk '$3 == "Debian" && $2 !~ /-/ && !m {m = $1} END {print m}')
[ -n "$mirror" ] || {
	echo "fresh-check: the host's apt lists no Debian archive" >&2
	exit 1
}
mirror=${mirror%/}
security=${mirror%/debian}/debian-security

mounted=()
cleanup() {
	local m
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -l "${mounted[i]}" 2>/dev/null || true
	done
	mounted=()
}
trap cleanup EXIT

bind() { # bind SRC DST: recursive bind mount, undone on exit
	mkdir -p "$2"
	mount --rbind "$1" "$2"
	mounted+=("$2")
	mount --make-rslave "$2"
}

unmount_all_under() { # a run killed earlier may have left mounts (the host's /dev!)
	awk -v root="$1" '$2 == root || index($2, root "/") == 1 {print $2}' /proc/self/mounts |
		sort -r | xargs -r -n1 umount -l
}

in_root() { # in_root ROOT CMD: a login-like environment, no stdin
	local root=$1
	shift
	chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
		REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
		"$@" </dev/null
}

status=0
for release in "${releases[@]}"; do
	root=$fresh_dir/$release
	log=$fresh_dir/$release.log
	mkdir -p "$fresh_dir"
	cleanup
	[ -d "$root" ] && unmount_all_under "$root"
	rm -rf --one-file-system "$root"
	echo "=== fresh-check $release: debootstrap (minbase) into $root"
	start=$SECONDS
	debootstrap --variant=minbase "$release" "$root" "$mirror" >"$log" 2>&1
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $mirror
		Suites: $release $release-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $security
		Suites: $release-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	: >"$root/etc/apt/sources.list"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	mkdir -p "$root/usr/local/share/ca-certificates"
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" \
		2>/dev/null || true
	# A machine's / is a mount point; a chroot's is not unless made one, and
	# `unshare --mount` (the DKMS test) fails to make it private otherwise.
	mount --bind "$root" "$root"
	mounted+=("$root")
	mount --make-private "$root"
	mount -t proc proc "$root/proc"
	mounted+=("$root/proc")
	bind /sys "$root/sys"
	bind /dev "$root/dev"
	# The README's prerequisites on a bare machine: git to clone, make to run.
	in_root "$root" apt-get update -qq >>"$log" 2>&1
	in_root "$root" apt-get install -y -qq --no-install-recommends git make \
		ca-certificates >>"$log" 2>&1
	git clone -q --no-local "$repo" "$root/root/pyvfio"
	echo "    $(git -C "$root/root/pyvfio" log --oneline -1)"
	IFS=';' read -ra commands <<<"${FRESH_COMMANDS:-make demo;make test}"
	for cmd in "${commands[@]}"; do
		echo "=== fresh-check $release: $cmd"
		t0=$SECONDS
		set +e
		in_root "$root" CI=true sh -c "cd /root/pyvfio && $cmd" 2>&1 | tee -a "$log" |
			grep --line-buffered -E '^(pyvfio: |  [0-9a-z.]+: [0-9]+ passed|summary:|setup|7.3-debug: |== |BAR2|CMB pages|memory type|vfio_pci_cookie does not|the write-combining|make: \*\*\*)' |
			while IFS= read -r line; do printf '    [%4d s] %s\n' $((SECONDS - t0)) "$line"; done
		rc=${PIPESTATUS[0]}
		set -e
		echo "    $cmd: exit $rc after $((SECONDS - t0)) s"
		[ "$rc" -eq 0 ] || status=1
	done
	echo "=== fresh-check $release: done in $((SECONDS - start)) s (log: $log)"
	cleanup
done
exit $status
