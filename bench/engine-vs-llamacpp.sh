#!/usr/bin/env bash
# Engine speed against this machine's roofs and against llama.cpp (issue 5). A benchmark, not a
# test: nothing here runs in CI. Prints one `RATIO <name> <value>` line per figure:
#   decode_<w>_t<T>_vs_dram_read   Qwen2.5-0.5B-shaped random model, depth 128, weights <w>:
#                                  (cost-model bytes per token / measured time per token) over the
#                                  probe's DRAM read bandwidth at T threads. Target >= 0.85.
#   prefill512_f32_t<T>_vs_f32_peak 512-token f32 prefill: cost-model FLOPs / time over the probe's
#                                  f32 FMA peak at T threads. Target >= 0.60.
#   decode_<w>_t<T>_vs_llamacpp    our tokens/s over llama.cpp's, same shapes, threads, depth.
#                                  Target >= 1.0.
#   prefill512_f32_t<T>_vs_llamacpp our prefill tokens/s over llama.cpp's. Target >= 0.8.
#
# llama.cpp comes from PyPI `llama-cpp-python` (built from source by pip, into a venv under
# $RB_CACHE, outside the repository); the GGUF files (random weights, Qwen2.5-0.5B shape, F32
# and BF16) are written with PyPI `gguf` into $RB_CACHE too. Both are reused on later runs.
#
# Usage: bench/engine-vs-llamacpp.sh [--no-llamacpp]
# Environment: RB_CACHE (default ~/.cache/rooflinebench-bench), THREADS ("1 2"), GEN (16 decode
# steps per repetition), REPS (5), DEPTH (128), PROMPT (512), MODEL (qwen2.5-0.5b).
set -euo pipefail
cd "$(dirname "$0")/.."

RB_CACHE=${RB_CACHE:-$HOME/.cache/rooflinebench-bench}
THREADS=${THREADS:-"1 2"}
GEN=${GEN:-16}
REPS=${REPS:-5}
DEPTH=${DEPTH:-128}
PROMPT=${PROMPT:-512}
MODEL=${MODEL:-qwen2.5-0.5b}
LLAMACPP=1
[[ "${1:-}" == "--no-llamacpp" ]] && LLAMACPP=0
mkdir -p "$RB_CACHE"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

cargo build --release --locked --bin rooflinebench >&2
RB=${CARGO_TARGET_DIR:-target}/release/rooflinebench

# One JSON field of a bench result, via Python (always present on the machines we target).
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

THREAD_LIST=$(echo "$THREADS" | tr ' ' ',')
echo "== probe (threads $THREAD_LIST)" >&2
"$RB" probe --threads "$THREAD_LIST" -o "$OUT/probe.json" >&2

if [[ $LLAMACPP == 1 ]]; then
  VENV="$RB_CACHE/venv"
  if ! "$VENV/bin/python" -c "import llama_cpp, gguf, numpy" 2>/dev/null; then
    echo "== building llama.cpp through pip install llama-cpp-python (several minutes)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy gguf llama-cpp-python >&2
  fi
  cat > "$OUT/llama.py" <<'PY'
"""Writes a random-weight GGUF of the config's shape (once) and times llama.cpp on it."""
import json, os, sys, time
import numpy as np
import gguf
from llama_cpp import Llama

cfg_path, cache, wtype, threads, depth, gen, reps, prompt = sys.argv[1:9]
threads, depth, gen, reps, prompt = map(int, (threads, depth, gen, reps, prompt))
cfg = json.load(open(cfg_path))
path = os.path.join(cache, f"qwen2.5-0.5b-random-{wtype}.gguf")
if not os.path.exists(path):
    h, L, inter, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // nh
    rng = np.random.default_rng(0)
    ftype = gguf.LlamaFileType.ALL_F32 if wtype == "f32" else gguf.LlamaFileType.MOSTLY_BF16
    qtype = gguf.GGMLQuantizationType.F32 if wtype == "f32" else gguf.GGMLQuantizationType.BF16
    w = gguf.GGUFWriter(path + ".tmp", "qwen2")
    w.add_name("qwen2.5-0.5b-random")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(h)
    w.add_block_count(L)
    w.add_feed_forward_length(inter)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(ftype)
    # A minimal byte-level BPE vocabulary: the 256 byte tokens, then placeholders.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    tokens = [chr(c) for c in cs] + [f"<|t{i}|>" for i in range(V - 256)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * 256 + [gguf.TokenType.USER_DEFINED] * (V - 256))
    w.add_token_merges(["! !"])  # llama.cpp refuses a BPE vocabulary without merges
    w.add_bos_token_id(256); w.add_eos_token_id(257)

    def t(name, shape, scale):
        a = (rng.random(shape, dtype=np.float32) * 2 - 1) * scale
        if len(shape) == 1:
            a[:] += 1.0 if name.endswith("norm.weight") else 0.0
            w.add_tensor(name, a)  # norms and biases stay F32, as llama.cpp's converter leaves them
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)

    t("token_embd.weight", (V, h), 1.0)
    for i in range(L):
        p = f"blk.{i}."
        t(p + "attn_norm.weight", (h,), 0.1)
        t(p + "attn_q.weight", (nh * hd, h), (3 / h) ** 0.5)
        t(p + "attn_k.weight", (nkv * hd, h), (3 / h) ** 0.5)
        t(p + "attn_v.weight", (nkv * hd, h), (3 / h) ** 0.5)
        t(p + "attn_q.bias", (nh * hd,), 0.1)
        t(p + "attn_k.bias", (nkv * hd,), 0.1)
        t(p + "attn_v.bias", (nkv * hd,), 0.1)
        t(p + "attn_output.weight", (h, nh * hd), (3 / (nh * hd)) ** 0.5)
        t(p + "ffn_norm.weight", (h,), 0.1)
        t(p + "ffn_gate.weight", (inter, h), (3 / h) ** 0.5)
        t(p + "ffn_up.weight", (inter, h), (3 / h) ** 0.5)
        t(p + "ffn_down.weight", (h, inter), (3 / inter) ** 0.5)
    t("output_norm.weight", (h,), 0.1)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    os.rename(path + ".tmp", path)

llm = Llama(model_path=path, n_ctx=max(prompt, depth + gen) + 16, n_batch=prompt, n_ubatch=prompt,
            n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False,
            use_mmap=False)
rng = np.random.default_rng(1)
ids = [int(x) for x in rng.integers(300, cfg["vocab_size"], size=max(prompt, depth + gen))]

def prefill():
    llm.reset()
    t0 = time.perf_counter(); llm.eval(ids[:prompt]); return time.perf_counter() - t0

def decode():
    llm.n_tokens = depth  # eval() drops cache entries beyond n_tokens first
    total = 0.0
    for tok in ids[depth:depth + gen]:
        t0 = time.perf_counter(); llm.eval([tok]); total += time.perf_counter() - t0
    return total

out = {}
if wtype == "f32":
    prefill()
    p = sorted(prefill() for _ in range(reps))
    out["prefill_tokens_per_second"] = prompt / p[len(p) // 2]
llm.reset(); llm.eval(ids[:depth])
decode()
d = sorted(decode() for _ in range(reps))
out["decode_tokens_per_second"] = gen / d[len(d) // 2]
out["llama_cpp_python"] = __import__("llama_cpp").__version__
print(json.dumps(out))
PY
fi
CONFIG="crates/model/zoo/Qwen--Qwen2.5-0.5B-Instruct.json"

# llama.cpp on the same shape, weights, threads and depth, run right after ours so both see the
# same machine state. Prints the RATIO lines against our tokens/s.
llama() {  # llama <w> <T> <our decode tok/s> [our prefill tok/s]
  local W=$1 T=$2 f="$OUT/llama-$1-t$2.json"
  "$VENV/bin/python" "$OUT/llama.py" "$CONFIG" "$RB_CACHE" "$W" "$T" "$DEPTH" "$GEN" "$REPS" "$PROMPT" > "$f"
  local theirs
  theirs=$(field "$f" "r['decode_tokens_per_second']")
  echo "llama.cpp decode $W t$T: $(python3 -c "print(f'{$theirs:.2f} tokens/s')") (llama-cpp-python $(field "$f" "r['llama_cpp_python']"))" >&2
  echo "RATIO decode_${W}_t${T}_vs_llamacpp $(python3 -c "print(f'{$3/$theirs:.3f}')")"
  if [[ -n "${4:-}" ]]; then
    theirs=$(field "$f" "r['prefill_tokens_per_second']")
    echo "llama.cpp prefill t$T: $(python3 -c "print(f'{$theirs:.1f} tokens/s')")" >&2
    echo "RATIO prefill${PROMPT}_f32_t${T}_vs_llamacpp $(python3 -c "print(f'{$4/$theirs:.3f}')")"
  fi
}

for T in $THREADS; do
  echo "== ours: prefill $PROMPT f32, $T threads" >&2
  "$RB" bench "$MODEL" --weights f32 --prompt "$PROMPT" --gen 0 --reps "$REPS" --warmup 1 \
    --threads "$T" --hw "$OUT/probe.json" --json -o "$OUT/prefill-t$T.json" >/dev/null
  f="$OUT/prefill-t$T.json"
  perf=$(field "$f" "r['phases'][0]['flops'] / r['phases'][0]['seconds']['median']")
  peak=$(field "$f" "r['roof']['f32_flops_per_second']")
  prefill_tps=$(field "$f" "r['phases'][0]['tokens'] / r['phases'][0]['seconds']['median']")
  echo "ours prefill t$T: $(python3 -c "print(f'{$prefill_tps:.1f} tokens/s, {$perf/1e9:.1f} GFLOP/s of {$peak/1e9:.1f} GFLOP/s f32 peak')")" >&2
  echo "RATIO prefill${PROMPT}_f32_t${T}_vs_f32_peak $(python3 -c "print(f'{$perf/$peak:.3f}')")"
  for W in f32 bf16; do
    echo "== ours: decode $W, depth $DEPTH, $T threads" >&2
    "$RB" bench "$MODEL" --weights "$W" --prompt 0 --depth "$DEPTH" --gen "$GEN" --reps "$REPS" \
      --warmup 1 --threads "$T" --hw "$OUT/probe.json" --json -o "$OUT/decode-$W-t$T.json" >/dev/null
    f="$OUT/decode-$W-t$T.json"
    bw=$(field "$f" "r['phases'][0]['bytes'] / r['phases'][0]['seconds']['median']")
    roof=$(field "$f" "r['roof']['dram_bytes_per_second']")
    tps=$(field "$f" "r['phases'][0]['steps'] / r['phases'][0]['seconds']['median']")
    echo "ours decode $W t$T: $(python3 -c "print(f'{$tps:.2f} tokens/s, {$bw/1e9:.2f} GB/s of {$roof/1e9:.2f} GB/s DRAM read')")" >&2
    echo "RATIO decode_${W}_t${T}_vs_dram_read $(python3 -c "print(f'{$bw/$roof:.3f}')")"
    if [[ $LLAMACPP == 1 ]]; then
      if [[ $W == f32 ]]; then llama "$W" "$T" "$tps" "$prefill_tps"; else llama "$W" "$T" "$tps"; fi
    fi
  done
done
