# ringecho: an io_uring echo server, its epoll baseline, and a conformance checker.
# `just` with no arguments lists the recipes.

# List the recipes
default:
    @just --list --unsorted

# Build the release binary
build:
    cargo build --release --locked

# The io_uring server on 127.0.0.1:12346 (extra flags pass through, e.g. `just run-uring --pin`)
run-uring *ARGS: build
    ./target/release/ringecho serve --engine uring --port 12346 {{ARGS}}

# The epoll server on 127.0.0.1:12347
run-epoll *ARGS: build
    ./target/release/ringecho serve --engine epoll --port 12347 {{ARGS}}

# Conformance suite against any TCP echo server, e.g. `just check 127.0.0.1:12346`
check ADDR *ARGS: build
    ./target/release/ringecho check {{ADDR}} {{ARGS}}

# Measure every server side by side; charts, CSV and summary.md land in results/, which git ignores (~11 min; `--quick`: ~40 s)
bench-all *ARGS: build
    ./target/release/ringecho bench-all {{ARGS}}

# One load run against any server, e.g. `just bench throughput 127.0.0.1:12346 --conns 1000`
bench *ARGS: build
    ./target/release/ringecho bench {{ARGS}}

# Syscalls and CPU per echo for one engine, e.g. `just profile epoll 1000 4096` (strace -c)
profile ENGINE="uring" CONNS="100" SIZE="64": build
    bash bench/profile.sh {{ENGINE}} {{CONNS}} {{SIZE}}

# Messages handled per wake-up at a fixed open-loop rate, e.g. `just wakeups uring 61300` (perf tracepoints)
[positional-arguments]
wakeups ENGINE RATE *ARGS: build
    bash bench/wakeups.sh "$@"

# Server CPU per echo split into kernel data copies and the rest (perf), e.g. `just cpu-split epoll 100 65536`
[positional-arguments]
cpu-split ENGINE *ARGS: build
    bash bench/cpu_split.sh "$@"

# Interleaved A/B of server variants, e.g. `just ab 65536 100 3 'epoll=--engine epoll' 'uring='`
[positional-arguments]
ab SIZE CONNS ROUNDS *VARIANTS: build
    bash bench/ab.sh "$@"

# Redraw the charts and summary.md from a results directory's data files (default: your last bench-all run; the committed one is results/reference)
plot DIR="results": build
    ./target/release/ringecho plot {{DIR}}

# Unit and integration tests (the README's test command)
test:
    cargo test --locked

# Formatting and lints, as CI runs them
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets --locked -- -D warnings

# Build fastecho.ko for this kernel and load it (root, headers), e.g. `just load-kmod port=12345 backlog=4096 max_conns=10000`
load-kmod *PARAMS:
    bash kernel/load-kmod.sh {{PARAMS}}

# Remove fastecho.ko
unload-kmod:
    bash kernel/unload-kmod.sh

# Test fastecho.ko in QEMU on Debian's 6.1 and 6.12 kernels (installs qemu, busybox, kernels)
vm-test: build
    bash kernel/vm/vm-test.sh

# bench-all inside the 6.12 VM against fastecho.ko, uring and epoll; results land in results/vm/ (ignored; the committed run is results/reference/vm/)
vm-bench *ARGS: build
    bash kernel/vm/vm-bench.sh {{ARGS}}

# checkpatch.pl --strict on the module (installs checkpatch from linux-source-6.1)
kernel-lint:
    bash kernel/install-checkpatch.sh
    checkpatch.pl --no-tree --strict -f kernel/fastecho.c
