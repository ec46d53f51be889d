#!/usr/bin/env bash
# Cross-builds the SIMD crates' tests for aarch64-unknown-linux-gnu and runs them under
# qemu-aarch64 with `-cpu max` (NEON, fp16, bf16, dotprod, i8mm, sve), then once more with
# ROOFLINEBENCH_FORCE_ISA=scalar, so every aarch64 kernel is checked against its scalar twin.
# Emulated timings are meaningless: only correctness is tested here.
#
# Installs what it needs if missing: Debian gcc-aarch64-linux-gnu (linker + sysroot for
# qemu's -L) and qemu-user, and the rustup target. Uses its own target dir.
# Tested: every test of rooflinebench-kernels (among them ggml_arm_q8: our activation
# quantization and dot products against llama.cpp's NEON code, built here from the sources
# cargo fetched for llama-cpp-sys-2) and rooflinebench-bench, and the unit tests of
# rooflinebench-engine (its integration tests run unoptimised engine code and take ~4 minutes
# per pass under qemu: ROOFLINEBENCH_AARCH64_FULL=1 runs them too). Then clippy for aarch64
# Linux and a type-check + clippy of the whole workspace for aarch64-apple-darwin (macOS).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "== [aarch64 $(( $(date +%s) - start ))s] $*"; }

TRIPLE=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
    stamp "installing ${need_apt[*]}"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq >/dev/null
    $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE"; then
    stamp "rustup target add $TRIPLE"
    rustup target add "$TRIPLE"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_AARCH64:-$PWD/target/aarch64-qemu}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu max -L $SYSROOT"
# cc-built C code (none today) would need the cross compiler too.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# A dedicated target dir gains nothing from incremental builds, and rustc 1.95's incremental
# cache once produced an unlinkable test binary here (undefined `anon.*.llvm.*` symbols).
export CARGO_INCREMENTAL=0
# The isa test fails if the emulated CPU lacks these: kernel tests must not silently skip.
export ROOFLINEBENCH_EXPECT_FEATURES=neon,asimddp,fphp,bf16,i8mm
# ...and must detect that it runs under qemu. The probe refuses under emulation unless allowed;
# its tests check the profile's structure, never its values, so they may run here.
export ROOFLINEBENCH_EXPECT_EMULATED=1
export ROOFLINEBENCH_ALLOW_EMULATED=1

main=(-p rooflinebench-kernels -p rooflinebench-bench)
engine=(-p rooflinebench-engine)
[ "${ROOFLINEBENCH_AARCH64_FULL:-}" = 1 ] || engine+=(--lib)
# The probe test asserts L1 >= L2 >= L3 >= DRAM read bandwidth: true of hardware, not of an
# emulator (qemu's memory hierarchy is flat), so it is skipped here; x86 CI runs it.
skip=(--skip tiny_probe_profile_is_complete_finite_and_monotone)
run_tests() {
    cargo test --locked --target "$TRIPLE" "${main[@]}" "$@"
    cargo test --locked --target "$TRIPLE" "${engine[@]}" "$@"
}

# llama.cpp's own aarch64 quantization and dot products, for crates/kernels/tests/ggml_arm_q8.rs:
# scripts/ggml-arm-q8/harness.c compiled against the llama.cpp sources inside the
# llama-cpp-sys-2 crate (the `llamacpp` feature's dependency; cargo fetches it), run under qemu.
stamp "llama.cpp's NEON quantization (scripts/ggml-arm-q8) for the comparison test"
sys_manifest=$(cargo metadata --locked --format-version 1 --all-features \
    | python3 -c 'import json, sys
m = json.load(sys.stdin)
paths = [p["manifest_path"] for p in m["packages"] if p["name"] == "llama-cpp-sys-2"]
if not paths:
    sys.exit("error: llama-cpp-sys-2 is not in cargo metadata (Cargo.lock)")
print(paths[0])')
GGML="$(dirname "$sys_manifest")/llama.cpp/ggml"
if [ ! -f "$GGML/src/ggml-cpu/arch/arm/quants.c" ]; then
    echo "error: $GGML/src/ggml-cpu/arch/arm/quants.c: llama.cpp's aarch64 sources not found" >&2
    exit 1
fi
harness_dir="$CARGO_TARGET_DIR/ggml-arm-q8"
mkdir -p "$harness_dir"
cflags=(-O2 -march=armv8.2-a+dotprod+fp16 -I"$GGML/include" -I"$GGML/src" -I"$GGML/src/ggml-cpu")
aarch64-linux-gnu-gcc "${cflags[@]}" -c "$GGML/src/ggml-cpu/arch/arm/quants.c" -o "$harness_dir/quants.o"
aarch64-linux-gnu-gcc "${cflags[@]}" -c "$GGML/src/ggml-quants.c" -o "$harness_dir/ggml-quants.o"
aarch64-linux-gnu-gcc "${cflags[@]}" -Wall -Werror -c scripts/ggml-arm-q8/harness.c -o "$harness_dir/harness.o"
aarch64-linux-gnu-gcc -static "$harness_dir"/{harness,quants,ggml-quants}.o -lm -o "$harness_dir/harness"
qemu-aarch64 -cpu max "$harness_dir/harness" "$harness_dir/out.bin"
export ROOFLINEBENCH_GGML_ARM_Q8="$harness_dir/out.bin" ROOFLINEBENCH_EXPECT_GGML_ARM_Q8=1

stamp "build tests for $TRIPLE (kernels, bench, engine)"
run_tests --no-run

stamp "features the emulated CPU reports (kernels without them are skipped, not run)"
cargo test --locked --target "$TRIPLE" "${main[@]}" --lib \
    isa::tests::feature_flags -- --nocapture 2>/dev/null | grep '^detected' || true

stamp "tests under qemu-aarch64 -cpu max"
run_tests -- "${skip[@]}"

stamp "tests under qemu-aarch64 -cpu max with ROOFLINEBENCH_FORCE_ISA=scalar"
ROOFLINEBENCH_FORCE_ISA=scalar run_tests -- "${skip[@]}"

stamp "clippy for $TRIPLE (warnings only an Arm build sees, e.g. x86-only fields)"
cargo clippy --locked --target "$TRIPLE" -p rooflinebench-kernels -p rooflinebench-bench -p rooflinebench-engine --all-targets -- -D warnings

# macOS on Apple Silicon: no Apple SDK or linker here, so the sysctl host description and the
# rest are type-checked and linted (not linked or run) for aarch64-apple-darwin.
MAC=aarch64-apple-darwin
if rustup target list --installed 2>/dev/null | grep -qx "$MAC" || rustup target add "$MAC" >/dev/null 2>&1; then
    stamp "clippy for $MAC (type-check only)"
    cargo clippy --locked --target "$MAC" --workspace --all-targets -- -D warnings
else
    stamp "skip $MAC: rustup could not add the target"
fi

stamp "done"
