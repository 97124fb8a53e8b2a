#!/usr/bin/env bash
# Where the server's CPU goes per echo, split into the kernel's data copies
# (rep_movs_alternative: receive into user memory, send out of it) and everything else,
# sampled by perf on the server's CPU. Needs no hardware counters (cpu-clock sampling).
# The copies are the same bytes for every engine, so a difference in their cost per echo
# is a difference in where the engine keeps its buffers.
#
#   bench/cpu_split.sh ENGINE [CONNS] [SIZE] [SERVE_ARGS...]   (defaults: 100 conns, 65536 B)
#   just cpu-split epoll 100 65536
#
# The server runs on CPU 0 with one worker, the load generator on CPU 1 (one thread);
# 1 s warm-up, then 3 s sampled at 4 kHz inside a 4 s run. Prints echoes/s and, per
# echo, the server CPU's busy time, copy time and the rest, in µs. Needs perf (Debian:
# linux-perf) and root; run it alternately for two engines and compare within a round.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
engine=$1 conns=${2:-100} size=${3:-65536}
shift $(($# < 3 ? $# : 3))
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/serve.sh
. "$here/bench/serve.sh"
need_bin_and_perf cpu_split

die() { echo "cpu_split: $*" >&2; exit 1; }
[[ $engine == uring || $engine == epoll ]] || die "ENGINE must be uring or epoll, not '$engine'"

out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
start_server "$out/serve" taskset -c 0 "$bin" serve --engine "$engine" --proto tcp --port 0 \
	--threads 1 "$@" || exit 1

hz=4000 secs=3
(
	sleep 1.5
	perf record -q -F "$hz" -e cpu-clock -C 0 -o "$out/perf.data" -- sleep "$secs" >/dev/null 2>&1
) &
sampler=$!
line=$("$bin" bench throughput "$addr" --conns "$conns" --size "$size" --secs 4 --warmup 1 \
	--threads 1 --cpus 1 2>&1 | grep -m1 'echoes/s') || die "the load failed"
wait "$sampler" || die "perf record failed"
rate=$(grep -oE '^ *[0-9.]+' <<<"$line" | tr -d ' ')

# Samples per symbol on CPU 0; the idle loop's are not the server's.
perf report -i "$out/perf.data" --no-children --sort sym --stdio -n -g none 2>/dev/null |
	awk -v rate="$rate" -v hz="$hz" -v secs="$secs" -v engine="$engine" '
	/^ +[0-9.]+%/ {
		all += $2
		if ($4 == "rep_movs_alternative") copy += $2
		if ($4 ~ /safe_halt|default_idle|cpu_idle|poll_idle|intel_idle|acpi_idle/) idle += $2
	}
	END {
		if (!rate || !all) { print "cpu_split: no samples or no echoes"; exit 1 }
		us = 1e6 / hz / (rate * secs) # µs of CPU per sample, per echo
		printf "%s: %.0f echoes/s; server CPU per echo: busy %.2f µs = copies %.2f + the rest %.2f\n",
			engine, rate, (all - idle) * us, copy * us, (all - idle - copy) * us
	}'
