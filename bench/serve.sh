# shellcheck shell=bash
# Sourced by the bench scripts (ab.sh, profile.sh, wakeups.sh, cpu_split.sh): start one
# server and learn its address; find the binary and perf.
#
# start_server BANNER COMMAND...: run COMMAND (a `ringecho serve --port 0 ...`, perhaps
# behind taskset) in the background with its output in the file BANNER; set `pid` to it
# and `addr` to the TCP address its start-up line names. Returns 1, the server's output
# on stderr, if no start-up line appears within 5 s.
# shellcheck disable=SC2034 # pid and addr are the caller's
start_server() {
	local banner=$1
	shift
	"$@" >"$banner" 2>&1 &
	pid=$!
	for _ in $(seq 50); do
		grep -q 'listening on' "$banner" 2>/dev/null && break
		sleep 0.1
	done
	addr=$(sed -n 's/.*listening on tcp \([^ ]*\).*/\1/p' "$banner" | head -1)
	[ -n "$addr" ] || {
		echo "the server did not start: $(cat "$banner")" >&2
		return 1
	}
}

# Set `bin` to the release binary ($RINGECHO_BIN overrides it) and check that it and
# perf are there; a missing one is a one-line error naming the calling script, $1.
# shellcheck disable=SC2034 # bin is the caller's
need_bin_and_perf() {
	bin=${RINGECHO_BIN:-$here/target/release/ringecho}
	[ -x "$bin" ] || {
		echo "$1: no binary at $bin: run cargo build --release (or set RINGECHO_BIN)" >&2
		exit 1
	}
	command -v perf >/dev/null || {
		echo "$1: perf is missing: apt-get install linux-perf" >&2
		exit 1
	}
}
