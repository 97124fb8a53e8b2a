#!/usr/bin/env bash
# vm-test: builds fastecho.ko against Debian's 6.1 (bookworm) and 6.12
# (bookworm-backports) cloud kernels and tests it in QEMU, one VM per kernel.
# See kernel/README.md ("The VM harness").
#
# Environment:
#   RINGECHO_BIN  ringecho binary for `ringecho check` inside the VM
#                 (default target/release/ringecho, relative to the repo root)
#   VM_SUITES     Debian suites whose cloud kernel to test
#                 (default "bookworm bookworm-backports")
#   VM_ACCEL      auto (default: KVM if a probe boot works, else TCG), kvm, tcg
#   VM_TIMEOUT    seconds one VM may run (default 300)
#   VM_CACHE      downloads and builds (default .vm/ at the repo root)
#
# Exit status 0 only if every step passed on every kernel.
set -euo pipefail
# shellcheck source=kernel/vm/lib.sh
source "$(dirname "$0")/lib.sh"

VM_SUITES=${VM_SUITES:-bookworm bookworm-backports}
VM_TIMEOUT=${VM_TIMEOUT:-300}
vm_ringecho_bin
PARAMS="port backlog addr max_conns"
STEPS="load check echo conc1000 rmmod_held rmmod_busy bad_params port_in_use params cycles counters max_conns idle_mem burst noread linger scripts dmesg"

start=$(date +%s)
mkdir -p "$VM_CACHE"
vm_host_setup
vm_build_client

# vm_prepare KREL: fetch the kernel, build the module, check modinfo, pack
# the initramfs. Run in a subshell: a failure there (die) ends only the
# subshell, and the message lands in $VM_ERR_FILE for the table.
vm_prepare() {
	local krel=$1 p
	vm_kernel_fetch "$krel"
	vm_build_module "$krel"
	# modinfo must describe every parameter (and these must exist)
	for p in $PARAMS $(modinfo -F parmtype "$VM_KO" | cut -d: -f1); do
		modinfo -F parm "$VM_KO" | grep -q "^$p:[^(]" ||
			die "modinfo: parameter $p has no description"
	done
	vm_pack_initramfs "$krel" "$VM_DIR/init.sh" "ringecho=$RINGECHO_BIN"
}

summary=()
failed=0
accel_picked=
for suite in $VM_SUITES; do
	VM_ERR_FILE=$VM_CACHE/prepare-$suite.err
	rm -f "$VM_ERR_FILE"
	set +e
	krel=$(vm_kernel_release "$suite")
	set -e
	label=$(echo "$krel" | grep -o '^[0-9]*\.[0-9]*' || true)
	[ -n "$label" ] || label=$suite
	dir=$VM_CACHE/${krel:-$suite}
	mkdir -p "$dir"
	say "== $label (${krel:-no kernel release}, $suite)"
	prep=FAIL
	if [ -n "$krel" ]; then
		set +e
		(
			set -e
			vm_prepare "$krel"
		)
		rc=$?
		set -e
		[ $rc = 0 ] && prep=PASS
	fi
	if [ $prep = PASS ]; then
		vm_paths "$krel"
		prep_detail="fastecho.ko built with W=1 -Werror, every parameter described: $(modinfo -F parmtype "$VM_KO" | cut -d: -f1 | tr '\n' ' ')"
		if [ -z "$accel_picked" ]; then
			vm_pick_accel
			accel_picked=1
		fi
		t0=$(date +%s)
		rc=0
		vm_boot "$krel" "$VM_TIMEOUT" "" || rc=$?
		t1=$(date +%s)
		res=$(tr -d '\r' <"$dir/results.log" 2>/dev/null || true)
		inqemu="$((t1 - t0)) s in QEMU"
	else
		prep_detail=$(cat "$VM_ERR_FILE" 2>/dev/null || echo "failed (see the messages above)")
		res=
		inqemu="not booted"
	fi

	kfail=0
	printf '\n%-12s %-6s %s\n' "step" "result" "detail ($label, ${krel:-?}, $inqemu)"
	printf '%-12s %-6s %s\n' "build" "$prep" "$prep_detail"
	[ $prep = PASS ] || kfail=1
	for step in $STEPS; do
		if [ $prep != PASS ]; then
			status=SKIP detail="not run: the build step failed"
		else
			vm_step_result "$step" "$res" \
				"no result (VM timed out or crashed: see $dir/console.log)"
		fi
		[ "$status" = PASS ] || kfail=1
		printf '%-12s %-6s %s\n' "$step" "$status" "$detail"
	done
	if [ $prep = PASS ] && ! grep -q '^@@DONE' <<<"$res"; then
		kfail=1
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
			printf '%-12s %-6s %s\n' "vm" "FAIL" "timed out after ${VM_TIMEOUT} s"
		else
			printf '%-12s %-6s %s\n' "vm" "FAIL" "ended without @@DONE (qemu exit $rc)"
		fi
		say "--- last lines of $dir/console.log:"
		tail -n 40 "$dir/console.log" | tr -d '\r' >&2 || true
	fi
	# the conformance suite's own table
	if grep -q '^@@OUT check|' <<<"$res"; then
		echo "--- ringecho check ($label):"
		sed -n 's/^@@OUT check| //p' <<<"$res"
	fi
	if [ $kfail = 0 ]; then
		summary+=("$label PASS")
	else
		summary+=("$label FAIL")
		failed=1
		if grep -q '^@@OUT dmesg|' <<<"$res"; then
			say "--- kernel log since the test began ($label):"
			sed -n 's/^@@OUT dmesg| //p' <<<"$res" | tail -n 60 >&2
		fi
	fi
done
unset VM_ERR_FILE

echo
line=
for item in "${summary[@]}"; do
	line+="${line:+, }$item"
done
echo "vm-test: $line ($(($(date +%s) - start)) s)"
exit $failed
