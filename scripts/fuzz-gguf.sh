#!/usr/bin/env bash
# Fuzzes the GGUF reader for a bounded time (default 120 s): scripts/fuzz-gguf.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus is seeded
# with small synthetic GGUF files from the writer. Crashes land in fuzz/artifacts/gguf_reader/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
command -v cargo-fuzz >/dev/null || { echo "error: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2; exit 1; }
corpus=fuzz/corpus/gguf_reader
mkdir -p "$corpus"
if [[ -z "$(ls -A "$corpus")" ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cat >"$tmp/llama.json" <<'JSON'
{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 270, "tie_word_embeddings": true}
JSON
    cat >"$tmp/ds.json" <<'JSON'
{"model_type": "deepseek_v2", "hidden_size": 256, "intermediate_size": 32, "num_hidden_layers": 2,
 "num_attention_heads": 1, "vocab_size": 270, "kv_lora_rank": 32, "q_lora_rank": 32,
 "qk_nope_head_dim": 32, "qk_rope_head_dim": 32, "v_head_dim": 32, "n_routed_experts": 2,
 "num_experts_per_tok": 1, "moe_intermediate_size": 32, "n_shared_experts": 1, "first_k_dense_replace": 1,
 "scoring_func": "sigmoid", "tie_word_embeddings": true}
JSON
    for fmt in q8_0 q4_1 q5_0 f16; do
        cargo run -q --release -p rooflinebench-gguf --example synth_gguf -- "$tmp/llama.json" "$fmt" "$corpus/llama-$fmt.gguf" >/dev/null
    done
    cargo run -q --release -p rooflinebench-gguf --example synth_gguf -- "$tmp/ds.json" q4_k_m "$corpus/ds-q4_k_m.gguf" >/dev/null
fi
cd fuzz
# -rss_limit_mb: a parse that allocated far beyond its (at most 256 KB) input would trip it.
cargo +nightly fuzz run gguf_reader -- -max_total_time="$secs" -max_len=262144 -rss_limit_mb=1024 -timeout=10
