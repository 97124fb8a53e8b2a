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
die() { say "vm: $*"; exit 1; }

# --- host packages ---------------------------------------------------------

# command-or-file -> Debian package that provides it
VM_HOST_NEEDS=(
	"qemu-system-x86_64:qemu-system-x86"
	"/bin/busybox:busybox-static"
	"cpio:cpio"
	"gzip:gzip"
	"gcc-12:gcc-12"
	"gcc:gcc"
	"make:make"
	"strip:binutils"
	"modinfo:kmod"
	"timeout:coreutils"
	"/usr/lib/x86_64-linux-gnu/libc.a:libc6-dev"
	"/usr/lib/x86_64-linux-gnu/libelf.so.1:libelf1"
	"/usr/lib/x86_64-linux-gnu/libcrypto.so.3:libssl3"
)

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

vm_host_setup() {
	local missing=() item
	for item in "${VM_HOST_NEEDS[@]}"; do
		vm_have "${item%%:*}" || missing+=("${item#*:}")
	done
	# busybox must be the static build: it is copied into the initramfs.
	if [ -e /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then
		missing+=(busybox-static)
	fi
	# The 6.12 kernel comes from bookworm-backports.
	if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		vm_need_root "adding the bookworm-backports apt source"
		say "vm: adding the bookworm-backports apt source"
		echo "deb http://deb.debian.org/debian bookworm-backports main" \
			>/etc/apt/sources.list.d/bookworm-backports.list
		vm_apt_updated=
		vm_apt_update
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		vm_need_root "installing ${missing[*]}"
		vm_apt_update
		say "vm: installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
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
		die "fastecho.ko does not build against $krel"
	fi
	if grep -qi 'warning' "$out/build.log"; then
		cat "$out/build.log" >&2
		die "fastecho.ko builds with warnings against $krel"
	fi
	VM_KO=$out/fastecho.ko
}

# vm_build_client: the static test client, shared by all kernels.
vm_build_client() {
	VM_CLIENT=$VM_CACHE/echoclient
	gcc -static -O2 -Wall -Wextra -Werror -o "$VM_CLIENT.new" "$VM_DIR/echoclient.c" ||
		die "echoclient does not build"
	mv "$VM_CLIENT.new" "$VM_CLIENT"
}

# vm_pack_initramfs KREL INIT [NAME=PATH | +DEST=FILE]...: busybox, INIT as
# /init, fastecho.ko, echoclient, the load/unload scripts, each PATH as
# /bin/NAME (debug info stripped) with the shared libraries it needs, and
# each plain FILE as /DEST. Sets VM_INITRD.
vm_pack_initramfs() {
	local krel=$1 init=$2 stage=$VM_CACHE/$1/initramfs arg bin lib
	shift 2
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,etc,lib64}
	cp /bin/busybox "$stage/bin/busybox"
	cp "$init" "$stage/init"
	chmod 755 "$stage/init"
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
