#!/usr/bin/env bash
# Removes fastecho.ko: closes the listener and every open connection.
# Anything missing (module support, root, the module) is named in one line,
# and the script exits 1.
set -euo pipefail
krel=$(uname -r)

die() { echo "unload-kmod: $*" >&2; exit 1; }

if [ ! -e /proc/modules ]; then
	die "kernel $krel cannot load modules (no /proc/modules: built without CONFIG_MODULES), so fastecho is not loaded"
fi
[ "$(id -u)" = 0 ] || die "removing a module needs root: run it with sudo"
command -v rmmod >/dev/null || die "rmmod is missing (Debian/Ubuntu: apt-get install kmod)"
grep -q '^fastecho ' /proc/modules || die "fastecho is not loaded"

accepted=$(cat /sys/kernel/fastecho/accepted 2>/dev/null || echo '?')
active=$(cat /sys/kernel/fastecho/active 2>/dev/null || echo '?')
rmmod fastecho || die "rmmod fastecho failed"
echo "unload-kmod: fastecho removed ($accepted connections accepted, $active open at unload, all closed)"
