#!/usr/bin/env bash
# Installs the kernel's checkpatch.pl (with spelling.txt and
# const_structs.checkpatch beside it) from Debian's linux-source-6.1 package
# into /opt/checkpatch/scripts, and links /usr/local/bin/checkpatch.pl to it.
# Idempotent; uses /usr/src/linux-source-6.1.tar.xz if that package is
# installed, else downloads the package without installing it.
set -euo pipefail
dest=${CHECKPATCH_DIR:-/opt/checkpatch}
files=(checkpatch.pl spelling.txt const_structs.checkpatch)

die() { echo "install-checkpatch: $*" >&2; exit 1; }

have_all() {
	local f
	for f in "${files[@]}"; do
		[ -s "$dest/scripts/$f" ] || return 1
	done
}

if ! have_all; then
	[ "$(id -u)" = 0 ] || die "needs root (apt-get, $dest, /usr/local/bin)"
	command -v perl >/dev/null || die "perl is missing (apt-get install perl)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	tarball=/usr/src/linux-source-6.1.tar.xz
	if [ ! -e "$tarball" ]; then
		(cd "$tmp" && { apt-get download -qq linux-source-6.1 2>/dev/null ||
			{ apt-get update -qq && apt-get download -qq linux-source-6.1; }; }) ||
			die "apt-get download linux-source-6.1 failed"
		dpkg-deb --fsys-tarfile "$tmp"/linux-source-6.1_*.deb |
			tar -x -C "$tmp" ./usr/src/linux-source-6.1.tar.xz
		tarball=$tmp/usr/src/linux-source-6.1.tar.xz
	fi
	members=()
	for f in "${files[@]}"; do
		members+=("linux-source-6.1/scripts/$f")
	done
	tar -xJf "$tarball" -C "$tmp" "${members[@]}"
	mkdir -p "$dest/scripts"
	for f in "${files[@]}"; do
		install -m "$([ "$f" = checkpatch.pl ] && echo 755 || echo 644)" \
			"$tmp/linux-source-6.1/scripts/$f" "$dest/scripts/$f"
	done
fi
if [ "$(readlink /usr/local/bin/checkpatch.pl 2>/dev/null)" != "$dest/scripts/checkpatch.pl" ]; then
	[ "$(id -u)" = 0 ] || die "needs root to link /usr/local/bin/checkpatch.pl"
	ln -sf "$dest/scripts/checkpatch.pl" /usr/local/bin/checkpatch.pl
fi
echo "install-checkpatch: $(checkpatch.pl --version | head -n2 | tail -n1 | sed 's/^ *//') at $dest/scripts"
