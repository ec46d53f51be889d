#!/usr/bin/env bash
# Builds the `llamacpp` feature (llama.cpp compiled from source by llama-cpp-sys-2) and runs
# the tests that exercise it: the engine on a synthetic GGUF (tests/cli_sweep.rs), per-node
# timings through ggml's graph callback (tests/llamacpp_nodes.rs), the node-name mapping
# (unit tests), and our engine's logits against llama.cpp's on the same synthetic qwen3moe and
# deepseek2 GGUFs (unit tests in src/sweep/llamacpp_logits_test.rs: the GGUF loader's MoE/MLA
# layouts). Installs Debian cmake and libclang-dev first when they are missing.
#
# The tests use tiny synthetic GGUFs written by crates/gguf (no download, no weights in git).
#
# Build time: llama.cpp (with llama-cpp-2's `common` library) is most of it. LLAMA_LIB_PROFILE
# defaults here to Release (llama-cpp-sys-2 otherwise builds RelWithDebInfo in debug builds, with
# debug info for every C++ file); CPU backend only, no examples/tests/server/tools (llama-cpp-sys-2
# already turns those off), no -march=native unless RUSTFLAGS asks for it. Measured on the 2-core
# development VM (shared, load 3-5): a cold `cargo build --features llamacpp` took 412 s, 341 s of
# it llama.cpp's cmake build.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
# libclang for bindgen: any libclang*.so the loader or clang-sys can find.
if ! ldconfig -p 2>/dev/null | grep -q 'libclang.*\.so' \
    && ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    need+=(libclang-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

export LLAMA_LIB_PROFILE="${LLAMA_LIB_PROFILE:-Release}"

start=$(date +%s)
echo "== building the llamacpp feature (LLAMA_LIB_PROFILE=$LLAMA_LIB_PROFILE)"
cargo test --locked --features llamacpp --no-run \
    --bin rooflinebench --test cli_sweep --test llamacpp_nodes
echo "== built in $(( $(date +%s) - start )) s"
# sweep::llamacpp* : llamacpp, llamacpp_nodes and llamacpp_ffi::logits_test.
cargo test --locked --features llamacpp --bin rooflinebench sweep::llamacpp
cargo test --locked --features llamacpp --test cli_sweep --test llamacpp_nodes
echo "== llamacpp feature tests passed in $(( $(date +%s) - start )) s"
