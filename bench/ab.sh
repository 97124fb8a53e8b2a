#!/usr/bin/env bash
# A/B (or A/B/C...) of server variants under one load, interleaved round by round so a
# shared machine's drift hits every variant alike (every other round runs them in
# reverse). Prints each run, then per variant the median over rounds of its ratios to
# the first variant's figures in the same round: echoes/s and server CPU per echo
# (closed loop), or, with RATE set, corrected p50 and p99 latency at RATE messages/s
# (open loop). This is how the README's per-lever ratios and its open-loop comparison
# were taken.
#
#   bench/ab.sh SIZE CONNS ROUNDS VARIANT...
#   VARIANT is LABEL=SERVE_ARGS, or LABEL@BINARY=SERVE_ARGS to compare two builds
#
#   bench/ab.sh 65536 100 3 'epoll=--engine epoll' 'uring=--engine uring' \
#       'uring-64k=--engine uring --buffer-size 65536 --hold-budget 64M'
#   just ab 64 100 3 'new=' 'old@/tmp/old/ringecho='
#   RATE=96700 bench/ab.sh 64 100 5 'epoll=--engine epoll' 'uring='
#
# Each server runs on CPU 0 with one worker (TCP only), the load generator on CPU 1 with
# one thread, 1 s warm-up + SECS (default 3) measured seconds per run.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
size=$1 conns=$2 rounds=$3
shift 3
secs=${SECS:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/serve.sh
. "$here/bench/serve.sh"
default_bin=${RINGECHO_BIN:-$here/target/release/ringecho}

die() { echo "ab: $*" >&2; exit 1; }
[ -x "$default_bin" ] || die "no binary at $default_bin: run cargo build --release"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number, not '$rounds'"

labels=() bins=() args=()
for v in "$@"; do
	[[ $v == *=* ]] || die "variant '$v' is not LABEL=SERVE_ARGS"
	head=${v%%=*}
	label=${head%%@*}
	bin=$default_bin
	[[ $head == *@* ]] && bin=${head#*@}
	[ -x "$bin" ] || die "variant $label: no binary at $bin"
	labels+=("$label") bins+=("$bin") args+=("${v#*=}")
done

results=$(mktemp)
trap 'rm -f "$results"; [ -n "${sp:-}" ] && kill "$sp" 2>/dev/null; true' EXIT
for r in $(seq 1 "$rounds"); do
	# Every other round in reverse (A B, B A, ...), so drift within a round favours no one.
	order=("${!labels[@]}")
	if ((r % 2 == 0)); then
		order=()
		for ((k = ${#labels[@]} - 1; k >= 0; k--)); do order+=("$k"); done
	fi
	for i in "${order[@]}"; do
		# shellcheck disable=SC2086 # the variant's arguments are words
		start_server "$results.banner" taskset -c 0 "${bins[$i]}" serve --port 0 --threads 1 \
			--proto tcp ${args[$i]} || { kill "$pid" 2>/dev/null || true; die "variant ${labels[$i]} did not start"; }
		sp=$pid
		load=(--conns "$conns" --size "$size" --secs "$secs" --warmup 1 --threads 1 --cpus 1)
		if [ -n "${RATE:-}" ]; then
			out=$("$default_bin" bench latency "$addr" --rate "$RATE" "${load[@]}" 2>&1) ||
				die "variant ${labels[$i]}: the load failed: $out"
			line=$(grep -E '^ *corrected' <<<"$out" | head -1)
			a=$(grep -oE 'p50 [0-9.]+' <<<"$line" | cut -d' ' -f2)
			b=$(grep -oE 'p99 [0-9.]+' <<<"$line" | cut -d' ' -f2)
			printf 'round %d  %-12s corrected p50 %8.1f µs  p99 %9.1f µs\n' "$r" "${labels[$i]}" "$a" "$b"
		else
			out=$("$default_bin" bench throughput "$addr" "${load[@]}" --server-pid "$sp" 2>&1) ||
				die "variant ${labels[$i]}: the load failed: $out"
			a=$(grep -oE '[0-9.]+ echoes/s' <<<"$out" | head -1 | cut -d' ' -f1)
			b=$(grep -oE 'server [0-9.]+ µs' <<<"$out" | head -1 | cut -d' ' -f2)
			printf 'round %d  %-12s %10.0f echoes/s  server %7.2f µs/echo\n' "$r" "${labels[$i]}" "$a" "$b"
		fi
		kill "$sp"; wait "$sp" 2>/dev/null || true; sp=
		if [ -z "$a" ] || [ -z "$b" ]; then die "variant ${labels[$i]}: no figures in: $out"; fi
		echo "$r $i $a $b" >>"$results"
	done
done
rm -f "$results.banner"

echo "median over $rounds round(s) of the ratio to ${labels[0]} in the same round ($conns x $size B${RATE:+, $RATE/s open loop}):"
# The median of column 1 of stdin (one number per line).
median() { sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); printf "%.2f", (NR % 2) ? v[m] : (v[m] + v[m + 1]) / 2 }'; }
for i in "${!labels[@]}"; do
	ratios() { # column $1 of variant i over variant 0, one line per round
		awk -v i="$i" -v c="$1" '{ x[$1, $2] = $c; if ($1 > n) n = $1 } END { for (r = 1; r <= n; r++) print x[r, i] / x[r, 0] }' "$results"
	}
	if [ -n "${RATE:-}" ]; then
		printf '  %-14s corrected p50 %sx   p99 %sx\n' "${labels[$i]}" "$(ratios 3 | median)" "$(ratios 4 | median)"
	else
		printf '  %-14s echoes/s %sx   server CPU per echo %sx\n' "${labels[$i]}" "$(ratios 3 | median)" "$(ratios 4 | median)"
	fi
done
