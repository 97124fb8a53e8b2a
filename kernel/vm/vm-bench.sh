#!/usr/bin/env bash
# vm-bench: boots Debian's 6.12 cloud kernel (bookworm-backports) in QEMU
# with fastecho.ko loaded (backlog=4096) and runs `ringecho bench-all` inside,
# so the module is measured next to the io_uring and epoll servers on a
# kernel that can load it. The results directory comes back over the serial
# port and lands in VM_BENCH_OUT. bench-all gets --note "measured inside an
# emulated QEMU/TCG VM (Linux KREL): ...", which goes under every chart title
# and into metadata.txt (KVM instead of TCG when the probe picked KVM).
#
#   bash kernel/vm/vm-bench.sh [bench-all arguments, default --quick]
#   bash kernel/vm/vm-bench.sh --full [bench-all arguments]   # default profile
#
# Environment: RINGECHO_BIN (default target/release/ringecho; it must have the
# bench-all subcommand and its --note flag), VM_BENCH_OUT (default
# results/vm at the repo root, which git ignores; each run that brings results
# back replaces its contents, all but a README.md; the committed run is
# results/reference/vm, copied there by hand), VM_SUITE
# (default bookworm-backports), VM_TIMEOUT (default 1200 s), VM_SMP (default
# 2), VM_MEM (default 2048), VM_ACCEL, VM_CACHE as for vm-test.sh.
#
# Under TCG the guest's CPUs are emulated: compare the servers within one run,
# never these numbers with a run on real hardware.
set -euo pipefail
# shellcheck source=kernel/vm/lib.sh
source "$(dirname "$0")/lib.sh"

VM_SUITE=${VM_SUITE:-bookworm-backports}
VM_TIMEOUT=${VM_TIMEOUT:-1200}
VM_BENCH_OUT=${VM_BENCH_OUT:-$REPO_ROOT/results/vm}
vm_ringecho_bin
# No arguments: --quick. --full (vm-bench's own) stands for bench-all's
# default profile, which takes no flag of its own.
args=()
[ $# -gt 0 ] || set -- --quick
for a in "$@"; do
	case $a in
	--full) continue ;;
	--out | --out=* | --kmod | --kmod=* | --note | --note=*)
		die "vm-bench sets --out, --kmod and --note itself" ;;
	esac
	args+=("$a")
done

help=$("$RINGECHO_BIN" bench-all --help 2>&1) ||
	die "$RINGECHO_BIN has no bench-all subcommand yet"
grep -q -- '--note' <<<"$help" ||
	die "$RINGECHO_BIN bench-all has no --note flag yet: rebuild it (cargo build --release)"

start=$(date +%s)
mkdir -p "$VM_CACHE"
vm_host_setup
vm_build_client
krel=$(vm_kernel_release "$VM_SUITE")
dir=$VM_CACHE/$krel
say "== $krel ($VM_SUITE)"
vm_kernel_fetch "$krel"
vm_build_module "$krel"
echo "${args[*]}" >"$VM_CACHE/bench-args"
# The probe boot (KVM or not) needs an initramfs; the note, which names the
# accelerator, is only known after it, so the image is packed again with it.
: >"$VM_CACHE/bench-note"
pack() {
	vm_pack_initramfs "$krel" "$VM_DIR/bench-init.sh" "ringecho=$RINGECHO_BIN" \
		"+bench-args=$VM_CACHE/bench-args" "+bench-note=$VM_CACHE/bench-note"
}
pack
vm_pick_accel
case ${VM_ACCEL_ARGS[1]} in
kvm*) accel=KVM ;;
*) accel=TCG ;;
esac
echo "measured inside an emulated QEMU/$accel VM (Linux $krel): compare servers with each other, not with host numbers" \
	>"$VM_CACHE/bench-note"
pack
say "vm: ringecho bench-all ${args[*]} in the VM (limit ${VM_TIMEOUT} s; console: $dir/console.log)"
rc=0
vm_boot "$krel" "$VM_TIMEOUT" "" || rc=$?
res=$(tr -d '\r' <"$dir/results.log" 2>/dev/null || true)

failed=0
for step in load bench unload dmesg; do
	vm_step_result "$step" "$res" "no result (qemu exit $rc; see $dir/console.log)"
	[ "$status" = PASS ] || failed=1
	printf '%-8s %-7s %s\n' "$step" "$status" "$detail"
done
if grep -q '^@@ARCHIVE-END' <<<"$res"; then
	mkdir -p "$VM_BENCH_OUT"
	# a hand-written README.md describing the run stays; everything else goes
	find "$VM_BENCH_OUT" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	sed -n '/^@@ARCHIVE-BEGIN/,/^@@ARCHIVE-END/p' <<<"$res" | sed '1d;$d' |
		base64 -d | tar xzf - -C "$VM_BENCH_OUT"
	echo "vm-bench: results in $VM_BENCH_OUT"
	[ -f "$VM_BENCH_OUT/summary.md" ] && cat "$VM_BENCH_OUT/summary.md"
else
	failed=1
	echo "vm-bench: no results came back"
fi
echo "vm-bench: $krel $([ $failed = 0 ] && echo PASS || echo FAIL) ($(($(date +%s) - start)) s)"
exit $failed
