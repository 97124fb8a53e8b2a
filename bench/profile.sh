#!/usr/bin/env bash
# Where one server's time goes, per echo: CPU (the bench's own accounting) and system
# calls (strace -c on the server while the same load runs again). Repeatable, so a change
# to an engine can be judged by "syscalls per echo" and "server CPU per echo" before and
# after, not only by a noisy echoes/s.
#
#   bench/profile.sh [ENGINE] [CONNS] [SIZE] [SECS]      (defaults: uring 100 64 3)
#   just profile epoll 1000 4096
#
# The server runs on CPU 0 with one worker, the load generator on CPU 1 (one thread).
# strace slows the server a lot: read its counts per echo, not its echoes/s. perf counters
# are not available on every machine (`perf stat -e instructions true` tells); where they
# are, `perf top -p PID` during a run shows the hot functions.
set -euo pipefail
engine=${1:-uring}
conns=${2:-100}
size=${3:-64}
secs=${4:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/serve.sh
. "$here/bench/serve.sh"
bin=${RINGECHO_BIN:-$here/target/release/ringecho}

die() { echo "profile: $*" >&2; exit 1; }
[ -x "$bin" ] || die "no binary at $bin: run cargo build --release (or set RINGECHO_BIN)"
if ! command -v strace >/dev/null; then
	[ "$(id -u)" = 0 ] || die "strace is missing: apt-get install strace"
	echo "profile: installing strace" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null ||
		die "apt-get install strace failed"
fi

out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
start_server "$out/serve" "$bin" serve --engine "$engine" --proto tcp --port 0 --threads 1 --pin ||
	exit 1

load() {
	"$bin" bench throughput "$addr" --conns "$conns" --size "$size" --secs "$secs" \
		--warmup 0.5 --threads 1 --cpus 1 --server-pid "$pid"
}

echo "== $engine, $conns connections x $size B, ${secs}s: CPU"
load | tee "$out/plain" | sed -n '2,4p'

echo "== the same load with strace -c -f on the server (slowed down; counts per echo)"
strace -q -c -f -p "$pid" -o "$out/strace" &
tracer=$!
sleep 0.3
load >"$out/traced"
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
rate=$(sed -n 's/^ *\([0-9]*\) echoes\/s.*/\1/p' "$out/traced")
# Echoes flow through the warm-up too, but only the measured window's are counted: scale
# the rate by both (an estimate; hence "about").
echoes=$(awk -v r="$rate" -v s="$secs" 'BEGIN { printf "%d", r * (s + 0.5) }')
[ "${echoes:-0}" -gt 0 ] || die "no echo completed under strace"
awk -v e="$echoes" '
	/^-+/ { sep++; next }
	sep == 1 && NF >= 5 { name = $NF; calls = $4
		printf "  %-16s %10d calls  %8.3f per echo\n", name, calls, calls / e; total += calls }
	END { printf "  %-16s %10d calls  %8.3f per echo (about %d echoes)\n", "total", total, total / e, e }
' "$out/strace"
