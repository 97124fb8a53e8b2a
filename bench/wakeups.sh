#!/usr/bin/env bash
# How many messages one server handles per wake-up at a fixed open-loop rate: the shape
# behind an open-loop p99. Counted by kernel tracepoints, so it needs no hardware
# counters: `io_uring:io_uring_local_work_run` (task work items run per
# io_uring_enter; each is a receive) for uring, the return value of `epoll_wait` for epoll.
#
#   bench/wakeups.sh ENGINE RATE [CONNS] [SIZE]        (defaults: 100 conns, 64 B)
#   just wakeups uring 61300
#
# Prints the corrected latency line, then: wake-ups, messages, and for batch sizes the
# number of wake-ups with that many and the share of all messages handled in batches up
# to that size. The server runs on CPU 0 with one worker, the load generator on CPU 1;
# 1 s warm-up, 3 s traced inside a 4 s run. Needs perf (Debian: linux-perf) and root.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
engine=$1 rate=$2 conns=${3:-100} size=${4:-64}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/serve.sh
. "$here/bench/serve.sh"
need_bin_and_perf wakeups

die() { echo "wakeups: $*" >&2; exit 1; }
case $engine in
uring) event=io_uring:io_uring_local_work_run ;;
epoll) event=syscalls:sys_exit_epoll_wait ;;
*) die "ENGINE must be uring or epoll, not '$engine'" ;;
esac
grep -q "$event" <<<"$(perf list 2>/dev/null)" || die "this kernel has no tracepoint $event"

out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
start_server "$out/serve" taskset -c 0 "$bin" serve --engine "$engine" --proto tcp --port 0 \
	--threads 1 || exit 1

(
	sleep 1.5
	perf record -q -e "$event" -p "$pid" -o "$out/perf.data" -- sleep 3 >/dev/null 2>&1
) &
tracer=$!
"$bin" bench latency "$addr" --rate "$rate" --conns "$conns" --size "$size" --secs 4 \
	--warmup 1 --threads 1 --cpus 1 2>&1 | grep -m1 corrected || die "the load failed"
wait "$tracer" || die "perf record failed"

# uring lines end in "count N, loops M"; epoll's in "0xN" (the return value, in hex).
perf script -i "$out/perf.data" 2>/dev/null | awk '
	function hex(s, v, i) { # mawk has no strtonum
		v = 0
		for (i = 3; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
		return v
	}
	/count [0-9]+/ { match($0, /count [0-9]+/); n = substr($0, RSTART + 6, RLENGTH - 6) + 0 }
	/0x[0-9a-f]+ *$/ { n = hex($NF) }
	n > 0 { h[n]++; wakes++; msgs += n; if (n > top) top = n; n = 0 }
	END {
		if (!wakes) { print "no wake-ups traced"; exit 1 }
		printf "%d wake-ups, %d messages (%.2f per wake-up)\n", wakes, msgs, msgs / wakes
		for (k = 1; k <= top; k++) {
			acc += k * h[k]
			if (h[k] && (k <= 3 || k == 5 || k % 10 == 0 || k == top))
				printf "  batch %4d: %7d wake-ups, messages in batches up to here %6.2f%%\n", k, h[k], 100 * acc / msgs
		}
	}'
