#!/usr/bin/env bash
# Quantized engine speed against llama.cpp and this machine's DRAM roof (issue 6). A benchmark,
# not a test: nothing here runs in CI. On three GGUF files, at 1 and 2 threads, prints one
# `RATIO <name> <value>` line per figure:
#   decode_<file>_t<T>_vs_llamacpp     our decode tokens/s at depth 128 over llama.cpp's, same
#                                      file, threads and depth. Target >= 1.0.
#   prefill512_<file>_t<T>_vs_llamacpp our 512-token prefill tokens/s over llama.cpp's.
#                                      Target >= 0.5.
#   decode_<file>_t<T>_vs_dram_read    (cost-model bytes per token, the file's real per-tensor
#                                      formats / measured time per token) over the probe's DRAM
#                                      read bandwidth at T threads. Target >= 0.8.
# Files: smollm2_q4_1 = the real SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh);
# qwen05_q8_0 / qwen05_q4_0 = Qwen2.5-0.5B-shaped random weights in real Q8_0 / Q4_0 blocks,
# written by our own GGUF writer (crates/gguf example synth_gguf) into $RB_CACHE once. Not in
# the default set: qwen05_q4_k_m (the paper's format; Qwen2.5-0.5B's 896-wide rows make most of
# it q5_0, llama.cpp's fallback), qwen05_q5_0, qwen05_q4_k, qwen05_q6_k.
#
# llama.cpp comes from PyPI `llama-cpp-python` in a venv under $RB_CACHE (built by pip on the
# first run; bench/engine-vs-llamacpp.sh uses the same venv). Each llama.cpp measurement runs
# right after ours, so both see the same machine state; on a shared machine run it twice.
# llama.cpp's extra buffer types (AMX, repacked q4_0/q8_0) are disabled by default because they
# segfault on the VM this was written on; LLAMA_EXTRA_BUFTS=1 turns them back on (then
# llama.cpp's prefill uses its repacked GEMMs and is faster).
#
# Usage: bench/quant-vs-llamacpp.sh
# Environment: RB_CACHE (default ~/.cache/rooflinebench-bench), SMOLLM2 (the Q4_1 file, default
# ~/.cache/rooflinebench/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS ("1 2"), GEN (16 decode
# steps per repetition), REPS (5), DEPTH (128), PROMPT (512), FILES (which of the three).
set -euo pipefail
cd "$(dirname "$0")/.."

RB_CACHE=${RB_CACHE:-$HOME/.cache/rooflinebench-bench}
SMOLLM2=${SMOLLM2:-$HOME/.cache/rooflinebench/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-"1 2"}
GEN=${GEN:-16}
REPS=${REPS:-5}
DEPTH=${DEPTH:-128}
PROMPT=${PROMPT:-512}
FILES=${FILES:-"smollm2_q4_1 qwen05_q8_0 qwen05_q4_0"}
mkdir -p "$RB_CACHE"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

cargo build --release --locked --bin rooflinebench >&2
cargo build --release --locked -p rooflinebench-gguf --example synth_gguf >&2
TARGET=${CARGO_TARGET_DIR:-target}
RB=$TARGET/release/rooflinebench
SYNTH=$TARGET/release/examples/synth_gguf

field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
calc() { python3 -c "print(f'{$1:$2}')"; }

VENV="$RB_CACHE/venv"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "== building llama.cpp through pip install llama-cpp-python (several minutes)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet numpy llama-cpp-python >&2
fi

file_of() {
  case $1 in
    smollm2_q4_1) echo "$SMOLLM2" ;;
    qwen05_q8_0 | qwen05_q4_0 | qwen05_q4_k_m | qwen05_q5_0 | qwen05_q4_k | qwen05_q6_k)
      local fmt=${1#qwen05_} p="$RB_CACHE/qwen2.5-0.5b-synth-${1#qwen05_}.gguf"
      if [[ ! -f $p ]]; then
        echo "== writing $p with our GGUF writer" >&2
        "$SYNTH" crates/model/zoo/Qwen--Qwen2.5-0.5B-Instruct.json "$fmt" "$p.tmp" 0 >&2
        mv "$p.tmp" "$p"
      fi
      echo "$p" ;;
    *) echo "unknown file $1" >&2; exit 2 ;;
  esac
}

cat > "$OUT/llama.py" <<'PY'
"""Times llama.cpp on a GGUF: prefill of `prompt` tokens, and `gen` decode steps at `depth`."""
import json, os, sys, time
import numpy as np
import llama_cpp

# llama.cpp's extra CPU buffer types (AMX and the repacked q4_0/q8_0 layouts) segfault on
# this VM with llama-cpp-python 0.3.36 (AMX_INT8 detected); they are off unless
# LLAMA_EXTRA_BUFTS=1. Without them llama.cpp multiplies the file's blocks as stored, like us.
if os.environ.get("LLAMA_EXTRA_BUFTS") != "1":
    _default = llama_cpp.llama_model_default_params
    def _no_extra():
        p = _default(); p.use_extra_bufts = False; return p
    llama_cpp.llama_model_default_params = _no_extra
    llama_cpp.llama.llama_cpp.llama_model_default_params = _no_extra
from llama_cpp import Llama

path, threads, depth, gen, reps, prompt = sys.argv[1:7]
threads, depth, gen, reps, prompt = map(int, (threads, depth, gen, reps, prompt))
llm = Llama(model_path=path, n_ctx=max(prompt, depth + gen) + 16, n_batch=prompt, n_ubatch=prompt,
            n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False,
            use_mmap=False)
rng = np.random.default_rng(1)
ids = [int(x) for x in rng.integers(300, llm.n_vocab(), size=max(prompt, depth + gen))]

def prefill():
    llm.reset()
    t0 = time.perf_counter(); llm.eval(ids[:prompt]); return time.perf_counter() - t0

def decode():
    llm.n_tokens = depth  # eval() drops cache entries beyond n_tokens first
    total = 0.0
    for tok in ids[depth:depth + gen]:
        t0 = time.perf_counter(); llm.eval([tok]); total += time.perf_counter() - t0
    return total

prefill()
p = sorted(prefill() for _ in range(reps))
llm.reset(); llm.eval(ids[:depth])
decode()
d = sorted(decode() for _ in range(reps))
print(json.dumps({"prefill_tokens_per_second": prompt / p[len(p) // 2],
                  "decode_tokens_per_second": gen / d[len(d) // 2],
                  "llama_cpp_python": __import__("llama_cpp").__version__}))
PY

THREAD_LIST=$(echo "$THREADS" | tr ' ' ',')
echo "== probe (threads $THREAD_LIST)" >&2
"$RB" probe --threads "$THREAD_LIST" -o "$OUT/probe.json" >&2

for NAME in $FILES; do
  F=$(file_of "$NAME")
  [[ -f $F ]] || { echo "missing $F (scripts/fetch-smollm2.sh fetches SmolLM2)" >&2; exit 1; }
  for T in $THREADS; do
    echo "== ours: $NAME, $T threads" >&2
    "$RB" bench "$F" --prompt "$PROMPT" --gen 0 --reps "$REPS" --warmup 1 --threads "$T" \
      --hw "$OUT/probe.json" --json -o "$OUT/p.json" >/dev/null
    "$RB" bench "$F" --prompt 0 --depth "$DEPTH" --gen "$GEN" --reps "$REPS" --warmup 1 \
      --threads "$T" --hw "$OUT/probe.json" --json -o "$OUT/d.json" >/dev/null
    ptps=$(field "$OUT/p.json" "r['phases'][0]['tokens'] / r['phases'][0]['seconds']['median']")
    dtps=$(field "$OUT/d.json" "r['phases'][0]['steps'] / r['phases'][0]['seconds']['median']")
    bw=$(field "$OUT/d.json" "r['phases'][0]['bytes'] / r['phases'][0]['seconds']['median']")
    roof=$(field "$OUT/d.json" "r['roof']['dram_bytes_per_second']")
    label=$(field "$OUT/d.json" "r['weights']")
    echo "ours $NAME t$T ($label): prefill $(calc "$ptps" .1f) tokens/s, decode $(calc "$dtps" .2f) tokens/s = $(calc "$bw/1e9" .2f) GB/s of $(calc "$roof/1e9" .2f) GB/s DRAM read" >&2
    echo "== llama.cpp: $NAME, $T threads" >&2
    "$VENV/bin/python" "$OUT/llama.py" "$F" "$T" "$DEPTH" "$GEN" "$REPS" "$PROMPT" > "$OUT/l.json"
    lp=$(field "$OUT/l.json" "r['prefill_tokens_per_second']")
    ld=$(field "$OUT/l.json" "r['decode_tokens_per_second']")
    echo "llama.cpp $NAME t$T: prefill $(calc "$lp" .1f) tokens/s, decode $(calc "$ld" .2f) tokens/s (llama-cpp-python $(field "$OUT/l.json" "r['llama_cpp_python']"))" >&2
    echo "RATIO decode_${NAME}_t${T}_vs_llamacpp $(calc "$dtps/$ld" .3f)"
    echo "RATIO prefill${PROMPT}_${NAME}_t${T}_vs_llamacpp $(calc "$ptps/$lp" .3f)"
    echo "RATIO decode_${NAME}_t${T}_vs_dram_read $(calc "$bw/$roof" .3f)"
  done
done
