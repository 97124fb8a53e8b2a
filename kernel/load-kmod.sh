#!/usr/bin/env bash
# Builds fastecho.ko for the running kernel and loads it.
#   kernel/load-kmod.sh [port=N] [backlog=N] [addr=A]
# Builds in kernel/build/$(uname -r)/ against /lib/modules/$(uname -r)/build
# (KDIR=... for another kbuild tree), or loads FASTECHO_KO=path/fastecho.ko
# as it is, built elsewhere for this kernel.
# Anything missing (module support, root, headers, a compiler) is named in
# one line, and the script exits 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
krel=$(uname -r)
kdir=${KDIR:-/lib/modules/$krel/build}
out=$here/build/$krel

die() { echo "load-kmod: $*" >&2; exit 1; }

for arg in "$@"; do
	case $arg in
	port=?* | backlog=?* | addr=?*) ;;
	*) die "unknown argument '$arg' (usage: load-kmod.sh [port=N] [backlog=N] [addr=A])" ;;
	esac
done

if [ ! -e /proc/modules ]; then
	die "kernel $krel cannot load modules (no /proc/modules: built without CONFIG_MODULES); use the VM harness: bash kernel/vm/vm-test.sh"
fi
if [ "$(cat /proc/sys/kernel/modules_disabled 2>/dev/null || echo 0)" = 1 ]; then
	die "module loading is disabled on this kernel (kernel.modules_disabled=1)"
fi
[ "$(id -u)" = 0 ] || die "loading a module needs root: run it with sudo"
command -v insmod >/dev/null || die "insmod is missing (Debian/Ubuntu: apt-get install kmod)"
if grep -q '^fastecho ' /proc/modules; then
	die "fastecho is already loaded: run kernel/unload-kmod.sh first"
fi

ko=${FASTECHO_KO:-}
if [ -n "$ko" ]; then
	[ -r "$ko" ] || die "FASTECHO_KO=$ko: no such file"
else
	if [ ! -e "$kdir/Makefile" ]; then
		die "no kernel headers for $krel at $kdir: install them (Debian/Ubuntu: apt-get install linux-headers-$krel)"
	fi
	command -v make >/dev/null || die "make is missing (Debian/Ubuntu: apt-get install build-essential)"
	command -v gcc >/dev/null || die "gcc is missing (Debian/Ubuntu: apt-get install build-essential)"
	mkdir -p "$out"
	cp "$here/fastecho.c" "$here/Kbuild" "$out/"
	if ! make -C "$kdir" M="$out" modules >"$out/build.log" 2>&1; then
		cat "$out/build.log" >&2
		die "building fastecho.ko against $kdir failed (log above, also in $out/build.log)"
	fi
	ko=$out/fastecho.ko
fi

if ! err=$(insmod "$ko" "$@" 2>&1); then
	why=$(dmesg 2>/dev/null | grep 'fastecho: ' | tail -n1 || true)
	die "insmod failed: $err${why:+ (kernel log: $why)}"
fi
echo "load-kmod: fastecho loaded: $(dmesg 2>/dev/null | grep 'fastecho: listening' | tail -n1 | sed 's/.*fastecho: //')"
echo "load-kmod: counters in /sys/kernel/fastecho/ (accepted, active, bytes_echoed, dropped); unload with kernel/unload-kmod.sh"
