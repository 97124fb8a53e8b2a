#!/bin/busybox sh
# shellcheck shell=dash
# /init of the vm-bench initramfs (busybox sh, PID 1): loads fastecho.ko,
# runs `ringecho bench-all` with the arguments in /bench-args (and
# `--note "$(cat /bench-note)"` when that file exists), and sends the
# results directory back over /dev/ttyS1 as a base64 tar.gz between
# "@@ARCHIVE-BEGIN" and "@@ARCHIVE-END", with @@RESULT lines like vm-test's.

INIT_NAME=vm-bench
# shellcheck source=kernel/vm/init-common.sh
. /init-common.sh

result() { echo "@@RESULT step=$1 status=$2 detail=$3" >&3; echo "vm-bench: $1 $2 $3"; }

# 1,000-connection bursts against any of the three servers
sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096

if insmod /fastecho.ko backlog=4096; then
	result load PASS "fastecho.ko backlog=4096"
else
	result load FAIL "insmod failed"
fi

cd /tmp || exit 1
# /bench-args holds plain words; the note, which has spaces, comes on its own
if [ -s /bench-note ]; then
	set -- --note "$(cat /bench-note)"
else
	set --
fi
# tee keeps the console live; the exit status is bench-all's, not tee's
# shellcheck disable=SC2046
{
	/bin/ringecho bench-all $(cat /bench-args) "$@" --out /tmp/results
	echo $? >/tmp/bench.rc
} 2>&1 | tee /tmp/bench.log
rc=$(cat /tmp/bench.rc 2>/dev/null || echo 255)
if [ "$rc" = 0 ] && [ -d /tmp/results ]; then
	result bench PASS "ringecho bench-all $(cat /bench-args): $(cd /tmp/results && echo *)"
else
	result bench FAIL "ringecho bench-all exit $rc: $(tail -n2 /tmp/bench.log | tr '\n' ' ')"
fi
if [ -d /tmp/results ]; then
	cp /tmp/bench.log /tmp/results/vm-bench.log
	echo "@@ARCHIVE-BEGIN" >&3
	tar czf - -C /tmp/results . | base64 >&3
	echo "@@ARCHIVE-END" >&3
fi

if timeout 60 rmmod fastecho; then
	result unload PASS "rmmod fastecho"
else
	result unload FAIL "rmmod fastecho failed"
fi
bad=$(dmesg | sed -n '/vm-bench: start/,$p' |
	grep -E 'BUG|Oops|WARNING|refcount|leak|UBSAN|KASAN|hung_task' | head -n3 | tr '\n' ' ')
if [ -z "$bad" ]; then
	result dmesg PASS "clean"
else
	result dmesg FAIL "$bad"
fi
echo "@@DONE" >&3
sync
poweroff -f
