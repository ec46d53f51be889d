#!/usr/bin/env bash
# Analytic architecture sweep: roofline-scores 50,000 candidate architectures (depth, width,
# heads, KV heads, FFN ratio, experts), each as a prefill of 1024 tokens plus 16 decode steps
# (the co-design paper's search, ROOFLINEBENCH.md §4), on one core, and prints configurations
# per second (best of three passes). The last line is `CONFIGS_PER_SECOND <number>`. Target: >= 100,000 per second.
#
# Usage: bench/analytic-sweep.sh [N_CONFIGS]   (default 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-50000}"
cargo build --release --locked -q -p rooflinebench-model --example arch_sweep
target="${CARGO_TARGET_DIR:-target}"
exe="$target/release/examples/arch_sweep"
# Single-threaded: the whole sweep runs on one core. It runs three identical passes and reports
# the fastest (wall clock), plus CPU seconds per pass on Linux to expose contention.
exec "$exe" "$n"
