#!/usr/bin/env bash
# The README's test command: every test of the workspace, then the SIMD kernels again on the
# scalar path so the fallbacks are exercised on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
echo "== kernels again with ROOFLINEBENCH_FORCE_ISA=scalar"
ROOFLINEBENCH_FORCE_ISA=scalar cargo test --locked -p rooflinebench-kernels -p rooflinebench-bench
echo "== HTML report in headless Chromium"
bash scripts/check-html.sh
