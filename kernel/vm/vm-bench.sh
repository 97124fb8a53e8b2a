#!/usr/bin/env bash
# vm-bench: boots Debian's 6.12 cloud kernel (bookworm-backports) in QEMU
# with fastecho.ko loaded (backlog=4096) and runs `ringecho bench-all` inside,
# so the module is measured next to the io_uring and epoll servers on a
# kernel that can load it. The results directory comes back over the serial
# port and lands in VM_BENCH_OUT.
#
#   bash kernel/vm/vm-bench.sh [bench-all arguments, default --quick]
#
# Environment: RINGECHO_BIN (default target/release/ringecho; it must have the
# bench-all subcommand), VM_BENCH_OUT (default .vm/bench-results), VM_SUITE
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
VM_BENCH_OUT=${VM_BENCH_OUT:-$REPO_ROOT/.vm/bench-results}
RINGECHO_BIN=${RINGECHO_BIN:-target/release/ringecho}
case $RINGECHO_BIN in
/*) ;;
*) RINGECHO_BIN=$REPO_ROOT/$RINGECHO_BIN ;;
esac
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--quick)
for a in "${args[@]}"; do
	case $a in
	--out | --out=* | --kmod | --kmod=*) die "vm-bench sets --out and --kmod itself" ;;
	esac
done

[ -x "$RINGECHO_BIN" ] ||
	die "no ringecho binary at $RINGECHO_BIN: build it (cargo build --release) or set RINGECHO_BIN"
"$RINGECHO_BIN" bench-all --help >/dev/null 2>&1 ||
	die "$RINGECHO_BIN has no bench-all subcommand yet"

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
vm_pack_initramfs "$krel" "$VM_DIR/bench-init.sh" "ringecho=$RINGECHO_BIN" \
	"+bench-args=$VM_CACHE/bench-args"
vm_pick_accel
say "vm: ringecho bench-all ${args[*]} in the VM (limit ${VM_TIMEOUT} s; console: $dir/console.log)"
rc=0
vm_boot "$krel" "$VM_TIMEOUT" "" || rc=$?
res=$(tr -d '\r' <"$dir/results.log" 2>/dev/null || true)

failed=0
for step in load bench unload dmesg; do
	line=$(grep -m1 "^@@RESULT step=$step " <<<"$res" || true)
	if [ -z "$line" ]; then
		status=MISSING detail="no result (qemu exit $rc; see $dir/console.log)"
	else
		status=$(sed -n 's/.* status=\([A-Z]*\) .*/\1/p' <<<"$line")
		detail=${line#* detail=}
	fi
	[ "$status" = PASS ] || failed=1
	printf '%-8s %-7s %s\n' "$step" "$status" "$detail"
done
if grep -q '^@@ARCHIVE-END' <<<"$res"; then
	rm -rf "$VM_BENCH_OUT"
	mkdir -p "$VM_BENCH_OUT"
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
