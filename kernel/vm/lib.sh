# shellcheck shell=bash
# Shared set-up for the VM scripts (vm-test.sh, vm-bench.sh): host packages,
# the Debian cloud kernels (image + kbuild tree, extracted, never installed),
# building fastecho.ko and the test client, packing an initramfs, booting QEMU.
# Sourced, not run. Everything lands in $VM_CACHE (default .vm/ at the repo
# root, git-ignored) and is reused on the next run.

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KMOD_SRC=$(cd "$VM_DIR/.." && pwd)
REPO_ROOT=$(cd "$VM_DIR/../.." && pwd)
VM_CACHE=${VM_CACHE:-$REPO_ROOT/.vm}

say() { printf '%s\n' "$*" >&2; }
# die MESSAGE: says it and exits (only the subshell, when run in one). With
# VM_ERR_FILE set, the message also goes there, for a caller that reports a
# failed step instead of aborting (vm-test's per-kernel "build" row).
die() {
	say "vm: $*"
	if [ -n "${VM_ERR_FILE:-}" ]; then
		printf '%s\n' "$*" >"$VM_ERR_FILE"
	fi
	exit 1
}

# --- host packages ---------------------------------------------------------

# command-or-file -> Debian package that provides it
VM_HOST_NEEDS=(
	"/bin/busybox:busybox-static"
	"cpio:cpio"
	"gzip:gzip"
	"gcc-12:gcc-12"
	"gcc:gcc"
	"make:make"
	"strip:binutils"
	"modinfo:kmod"
	"timeout:coreutils"
	"pahole:pahole"
	"/usr/lib/x86_64-linux-gnu/libc.a:libc6-dev"
	"/usr/lib/x86_64-linux-gnu/libelf.so.1:libelf1"
	"/usr/lib/x86_64-linux-gnu/libcrypto.so.3:libssl3"
)
# QEMU is installed apart: from the suite the host's other QEMU packages
# come from (see vm_qemu_suite).
VM_QEMU_NEED="qemu-system-x86_64:qemu-system-x86"

vm_have() {
	case $1 in
	/*) [ -e "$1" ] ;;
	*) command -v "$1" >/dev/null 2>&1 ;;
	esac
}

vm_apt_updated=
vm_apt_update() {
	[ -n "$vm_apt_updated" ] && return 0
	say "vm: apt-get update"
	apt-get update -qq >/dev/null || die "apt-get update failed"
	vm_apt_updated=1
}

vm_need_root() {
	[ "$(id -u)" = 0 ] || die "$1 needs root (run as root, or install it by hand first)"
}

# vm_qemu_suite: the backports suite (e.g. bookworm-backports) when a QEMU
# package installed on the host is a backports build (version with ~bpo, such
# as qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1), else nothing (the default
# release). qemu-system-x86 depends on the exact version of qemu-system-common
# and friends, and the default release's 7.2 cannot be installed beside a
# 10.x qemu-utils ("pkgProblemResolver::Resolve generated breaks").
vm_qemu_suite() {
	local codename
	if dpkg-query -W -f '${db:Status-Abbrev} ${Version}\n' 'qemu*' 2>/dev/null |
		grep -q '^ii .*~bpo'; then
		codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
		echo "$codename-backports"
	fi
}

# vm_apt_install [-t SUITE] PKG...: installs, quietly when it works; when it
# fails, apt's own error lines (unmet dependencies, E: lines) are shown.
vm_apt_install() {
	local opt=() log=$VM_CACHE/apt-install.log
	if [ "$1" = -t ]; then
		opt=(-t "$2")
		shift 2
	fi
	vm_need_root "installing $*"
	vm_apt_update
	say "vm: installing $*${opt[1]:+ (from ${opt[1]})}"
	mkdir -p "$VM_CACHE"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${opt[@]}" "$@" >"$log" 2>&1; then
		say "vm: apt-get install ${opt[*]}${opt[*]:+ }$* failed; apt said:"
		grep -vE '^(Reading|Building|Selecting|Preparing|Unpacking|Setting up|Processing|Get:|Fetched|Need to get|After this|[0-9]+ upgraded)' \
			"$log" | tail -n 40 >&2
		die "apt-get install ${opt[*]}${opt[*]:+ }$* failed (full output: $log)"
	fi
}

vm_host_setup() {
	local missing=() item qsuite
	for item in "${VM_HOST_NEEDS[@]}"; do
		vm_have "${item%%:*}" || missing+=("${item#*:}")
	done
	# busybox must be the static build: it is copied into the initramfs.
	if [ -e /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then
		missing+=(busybox-static)
	fi
	# The 6.12 kernel (and maybe QEMU) comes from bookworm-backports.
	if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		vm_need_root "adding the bookworm-backports apt source"
		say "vm: adding the bookworm-backports apt source"
		echo "deb http://deb.debian.org/debian bookworm-backports main" \
			>/etc/apt/sources.list.d/bookworm-backports.list
		vm_apt_updated=
		vm_apt_update
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		vm_apt_install "${missing[@]}"
	fi
	if ! vm_have "${VM_QEMU_NEED%%:*}"; then
		qsuite=$(vm_qemu_suite)
		if [ -n "$qsuite" ]; then
			vm_apt_install -t "$qsuite" "${VM_QEMU_NEED#*:}"
		else
			vm_apt_install "${VM_QEMU_NEED#*:}"
		fi
	fi
}

# --- kernels -----------------------------------------------------------------

# vm_kernel_release SUITE -> e.g. 6.1.0-56-cloud-amd64 (what the cloud-amd64
# metapackage of that suite points at right now)
vm_kernel_release() {
	local suite=$1 opt=() dep
	[ "$suite" = bookworm ] || opt=(-t "$suite")
	dep=$(apt-cache "${opt[@]}" show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^Depends: linux-image-\([^ ,]*\).*/\1/p' | head -n1)
	if [ -z "$dep" ]; then
		vm_apt_update
		dep=$(apt-cache "${opt[@]}" show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
			sed -n 's/^Depends: linux-image-\([^ ,]*\).*/\1/p' | head -n1)
	fi
	if [ "$suite" != bookworm ] && [[ $dep == 6.1.* ]]; then
		# -t did not reach backports: the lists are stale or lack it
		vm_apt_update
		dep=$(apt-cache "${opt[@]}" show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
			sed -n 's/^Depends: linux-image-\([^ ,]*\).*/\1/p' | head -n1)
	fi
	[ -n "$dep" ] || die "no linux-image-cloud-amd64 in $suite (apt sources?)"
	echo "$dep"
}

# vm_kernel_fetch KREL: downloads and extracts the image, headers and kbuild
# packages into $VM_CACHE/KREL/root; sets VM_VMLINUZ and VM_KBUILD.
vm_kernel_fetch() {
	local krel=$1 dir=$VM_CACHE/$1 debs=$VM_CACHE/debs pkgs pkg deb common kbuild
	VM_VMLINUZ=$dir/root/boot/vmlinuz-$krel
	VM_KBUILD=$dir/root/usr/src/linux-headers-$krel
	if [ -e "$dir/.extracted" ] && [ -e "$VM_VMLINUZ" ] && [ -e "$VM_KBUILD/Makefile" ]; then
		return 0
	fi
	mkdir -p "$debs"
	common=$(apt-cache show --no-all-versions "linux-headers-$krel" 2>/dev/null |
		sed -n 's/^Depends: .*\(linux-headers-[^ ,]*-common\).*/\1/p' | head -n1)
	kbuild=$(apt-cache show --no-all-versions "linux-headers-$krel" 2>/dev/null |
		sed -n 's/^Depends: .*\(linux-kbuild-[^ ,]*\).*/\1/p' | head -n1)
	if [ -z "$common" ] || [ -z "$kbuild" ]; then
		die "cannot resolve the headers of $krel"
	fi
	pkgs=("linux-image-$krel" "linux-headers-$krel" "$common" "$kbuild")
	say "vm: downloading ${pkgs[*]}"
	for pkg in "${pkgs[@]}"; do
		rm -f "$debs/${pkg}"_*.deb	# leftovers of an interrupted run
	done
	(cd "$debs" && apt-get download -qq "${pkgs[@]}" >/dev/null 2>"$debs/download.log") ||
		die "apt-get download ${pkgs[*]} failed: $(tail -n3 "$debs/download.log")"
	rm -rf "$dir/root"
	mkdir -p "$dir/root"
	for pkg in "${pkgs[@]}"; do
		for deb in "$debs/${pkg}"_*.deb; do
			[ -e "$deb" ] || die "no .deb for $pkg in $debs"
			dpkg -x "$deb" "$dir/root"
		done
	done
	# The arch headers include the common tree by absolute path: point it here.
	sed -i "s#^include /usr/src/#include $dir/root/usr/src/#" "$VM_KBUILD/Makefile"
	[ -e "$VM_VMLINUZ" ] || die "no vmlinuz in linux-image-$krel"
	# The guest runs from the initramfs alone: its modules and docs are dead
	# weight here, and so are the .debs once unpacked.
	rm -rf "$dir/root/lib/modules" "$dir/root/usr/share/doc"
	for pkg in "${pkgs[@]}"; do
		rm -f "$debs/${pkg}"_*.deb
	done
	touch "$dir/.extracted"
}

# --- builds ------------------------------------------------------------------

# vm_build_module KREL: builds fastecho.ko against that kernel's kbuild tree
# with -Werror and W=1; any warning fails. Sets VM_KO.
vm_build_module() {
	local krel=$1 out=$VM_CACHE/$1/build
	rm -rf "$out"
	mkdir -p "$out"
	cp "$KMOD_SRC/fastecho.c" "$KMOD_SRC/Kbuild" "$out/"
	if ! make -C "$VM_KBUILD" M="$out" W=1 KCFLAGS=-Werror modules >"$out/build.log" 2>&1; then
		cat "$out/build.log" >&2
		die "fastecho.ko does not build against $krel: $(vm_first_error "$out/build.log")"
	fi
	if grep -qi 'warning' "$out/build.log"; then
		cat "$out/build.log" >&2
		die "fastecho.ko builds with warnings against $krel: $(grep -i -m1 warning "$out/build.log")"
	fi
	VM_KO=$out/fastecho.ko
}

# vm_first_error LOG: the line of a build log that says what went wrong
vm_first_error() {
	local line
	line=$(grep -m1 -E 'error|Error|not found|No such file|not available' "$1" || true)
	[ -n "$line" ] || line=$(grep -v '^make' "$1" | tail -n1)
	printf '%s' "${line:-see $1}"
}

# vm_paths KREL: sets VM_VMLINUZ, VM_KBUILD, VM_KO and VM_INITRD to where
# vm_kernel_fetch, vm_build_module and vm_pack_initramfs put them (for a
# caller that ran those in a subshell).
vm_paths() {
	local dir=$VM_CACHE/$1
	VM_VMLINUZ=$dir/root/boot/vmlinuz-$1
	VM_KBUILD=$dir/root/usr/src/linux-headers-$1
	VM_KO=$dir/build/fastecho.ko
	VM_INITRD=$dir/initrd.gz
}

# vm_build_client: the static test client, shared by all kernels.
vm_build_client() {
	VM_CLIENT=$VM_CACHE/echoclient
	gcc -static -O2 -Wall -Wextra -Werror -o "$VM_CLIENT.new" "$VM_DIR/echoclient.c" ||
		die "echoclient does not build"
	mv "$VM_CLIENT.new" "$VM_CLIENT"
}

# vm_pack_initramfs KREL INIT [NAME=PATH | +DEST=FILE]...: busybox, INIT as
# /init with the init-common.sh it sources, fastecho.ko, echoclient, the
# load/unload scripts, each PATH as /bin/NAME (debug info stripped) with the
# shared libraries it needs, and each plain FILE as /DEST. Sets VM_INITRD.
vm_pack_initramfs() {
	local krel=$1 init=$2 stage=$VM_CACHE/$1/initramfs arg bin lib
	shift 2
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,etc,lib64}
	cp /bin/busybox "$stage/bin/busybox"
	cp "$init" "$stage/init"
	chmod 755 "$stage/init"
	cp "$VM_DIR/init-common.sh" "$stage/init-common.sh"
	cp "$VM_KO" "$stage/fastecho.ko"
	cp "$VM_CLIENT" "$stage/bin/echoclient"
	mkdir -p "$stage/kmod"
	cp "$KMOD_SRC/load-kmod.sh" "$KMOD_SRC/unload-kmod.sh" "$stage/kmod/"
	for arg in "$@"; do
		if [ "${arg#+}" != "$arg" ]; then
			arg=${arg#+}
			cp "${arg#*=}" "$stage/${arg%%=*}"
			continue
		fi
		bin=${arg#*=}
		strip --strip-debug -o "$stage/bin/${arg%%=*}" "$bin" ||
			cp "$bin" "$stage/bin/${arg%%=*}"
		for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*'); do
			[ -e "$stage$lib" ] && continue
			mkdir -p "$stage$(dirname "$lib")"
			cp -L "$lib" "$stage$lib"
		done
	done
	VM_INITRD=$VM_CACHE/$krel/initrd.gz
	(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$VM_INITRD.new"
	mv "$VM_INITRD.new" "$VM_INITRD"
}

# --- QEMU --------------------------------------------------------------------

VM_ACCEL=${VM_ACCEL:-auto}

# vm_pick_accel: kvm if /dev/kvm is usable and a probe boot reaches init,
# else TCG. Sets VM_ACCEL_ARGS. The probe costs one short boot.
vm_pick_accel() {
	local accel=$VM_ACCEL dir=$VM_CACHE/probe
	VM_ACCEL_ARGS=(-accel "tcg,thread=multi" -cpu max)
	if [ "$accel" = auto ]; then
		accel=tcg
		if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
			mkdir -p "$dir"
			rm -f "$dir/results.log"
			(timeout 30 qemu-system-x86_64 -accel kvm -cpu host -smp 2 -m 512 \
				-kernel "$VM_VMLINUZ" -initrd "$VM_INITRD" \
				-append "console=ttyS0 panic=-1 quiet vmtest=probe" \
				-nographic -monitor none -no-reboot -nic none \
				-serial "file:$dir/console.log" -serial "file:$dir/results.log" \
				</dev/null || true) >"$dir/qemu.log" 2>&1
			grep -qs '@@PROBE ok' "$dir/results.log" && accel=kvm
		fi
	fi
	[ "$accel" = kvm ] && VM_ACCEL_ARGS=(-accel kvm -cpu host)
	say "vm: accelerator: $accel"
}

# vm_boot KREL TIMEOUT CMDLINE-EXTRA: boots the kernel with its initramfs;
# the console goes to console.log, the init script's results to results.log.
# VM_SMP and VM_MEM (MiB) size the guest (default 2 and 2048).
vm_boot() {
	local krel=$1 limit=$2 extra=$3 dir=$VM_CACHE/$1 rc=0
	rm -f "$dir/console.log" "$dir/results.log"
	timeout --kill-after=10 "$limit" qemu-system-x86_64 "${VM_ACCEL_ARGS[@]}" \
		-smp "${VM_SMP:-2}" -m "${VM_MEM:-2048}" \
		-kernel "$VM_VMLINUZ" -initrd "$VM_INITRD" \
		-append "console=ttyS0 panic=-1 loglevel=4 $extra" \
		-nographic -monitor none -no-reboot -nic none \
		-serial "file:$dir/console.log" -serial "file:$dir/results.log" \
		</dev/null >"$dir/qemu.log" 2>&1 || rc=$?
	return $rc
}

# --- results -----------------------------------------------------------------

# vm_ringecho_bin: RINGECHO_BIN (default target/release/ringecho), a relative
# path taken from the repo root, made absolute; dies if it is not executable.
vm_ringecho_bin() {
	RINGECHO_BIN=${RINGECHO_BIN:-target/release/ringecho}
	case $RINGECHO_BIN in
	/*) ;;
	*) RINGECHO_BIN=$REPO_ROOT/$RINGECHO_BIN ;;
	esac
	[ -x "$RINGECHO_BIN" ] ||
		die "no ringecho binary at $RINGECHO_BIN: build it (cargo build --release) or set RINGECHO_BIN"
}

# vm_step_result STEP RESULTS MISSING: from the guest's RESULTS, STEP's
# @@RESULT line: sets status and detail, or status=MISSING and detail=MISSING
# where it has none.
# shellcheck disable=SC2034 # status and detail are the caller's
vm_step_result() {
	local line
	line=$(grep -m1 "^@@RESULT step=$1 " <<<"$2" || true)
	if [ -z "$line" ]; then
		status=MISSING detail=$3
	else
		status=$(sed -n 's/.* status=\([A-Z]*\) .*/\1/p' <<<"$line")
		detail=${line#* detail=}
	fi
}
