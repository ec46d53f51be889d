//! llama.cpp architecture names and `<arch>.*` hyperparameter keys <-> Hugging Face config
//! fields.
//!
//! [`hf_config`] produces a `config.json`-shaped object (HF field names verbatim) from a GGUF
//! header, so the analytic model parses a GGUF exactly like a config; facts that GGUF keeps in
//! tensors rather than keys (tied embeddings, qkv bias, q/k norm) are read from the tensor
//! list. [`ArchConfig::from_hf`] goes the other way for the writer.
//!
//! Key names are llama.cpp's (`LLM_KV_*` in llama-arch.cpp): `{arch}.embedding_length`,
//! `{arch}.attention.head_count_kv`, `{arch}.rope.dimension_count`, ... MLA (deepseek2, plm):
//! `attention.key_length` = `qk_nope_head_dim + qk_rope_head_dim`, `attention.value_length` =
//! `v_head_dim`, `rope.dimension_count` = `qk_rope_head_dim` (newer converters also write
//! `key_length_mla` / `value_length_mla`, preferred when present).

use crate::{Gguf, GgufError};
use serde_json::{json, Map, Value as Json};

/// (llama.cpp architecture, HF `model_type`).
const ARCHS: &[(&str, &str)] = &[
    ("llama", "llama"),
    ("qwen2", "qwen2"),
    ("qwen2moe", "qwen2_moe"),
    ("qwen3", "qwen3"),
    ("qwen3moe", "qwen3_moe"),
    ("gemma", "gemma"),
    ("gemma2", "gemma2"),
    ("gemma3", "gemma3_text"),
    ("phi3", "phi3"),
    ("deepseek2", "deepseek_v2"),
    ("plm", "plm"),
    ("gptneox", "gpt_neox"),
    ("olmoe", "olmoe"),
    ("minicpm", "minicpm"),
    ("minicpm3", "minicpm3"),
];

const KNOWN: &str = "llama, qwen2, qwen2moe, qwen3, qwen3moe, gemma, gemma2, gemma3, phi3, \
                     deepseek2, plm, gptneox, olmoe, minicpm, minicpm3";

/// The HF `model_type` of a llama.cpp architecture name (`gpt-neox` is accepted for `gptneox`).
pub fn model_type(arch: &str) -> Option<&'static str> {
    let arch = if arch == "gpt-neox" { "gptneox" } else { arch };
    ARCHS.iter().find(|(a, _)| *a == arch).map(|(_, m)| *m)
}

/// Reads `{arch}.{name}` as an integer that may also be stored as a per-layer array whose
/// entries are all equal (llama.cpp allows arrays for head counts and FFN sizes).
fn uniform_u64(g: &Gguf, key: &str) -> Result<Option<u64>, GgufError> {
    let Some(v) = g.get(key) else {
        return Ok(None);
    };
    if let Some(n) = v.as_u64() {
        return Ok(Some(n));
    }
    let bad = |reason| GgufError::BadValue {
        key: key.to_string(),
        value: v.summary(),
        reason,
    };
    let arr = v.as_array().ok_or_else(|| bad("not an integer"))?;
    let vals = arr.to_i64s().ok_or_else(|| bad("not an integer array"))?;
    let first = *vals.first().ok_or_else(|| bad("empty array"))?;
    if vals.iter().any(|&x| x != first) || first < 0 {
        return Err(bad("per-layer values that differ are not supported"));
    }
    Ok(Some(first as u64))
}

/// A number as `f64`; `f32` values go through their shortest decimal form so `1e-5` stored as
/// f32 reads back as `1e-5`, not `9.999999747378752e-6`.
fn f64_shortest(v: &crate::Value) -> Option<f64> {
    match v {
        crate::Value::F32(x) => x.to_string().parse().ok(),
        other => other.as_f64(),
    }
}

fn put(m: &mut Map<String, Json>, k: &str, v: impl Into<Json>) {
    m.insert(k.to_string(), v.into());
}

/// A Hugging Face style config for the model in `g`.
pub fn hf_config(g: &Gguf) -> Result<Json, GgufError> {
    let arch = g.architecture()?.to_string();
    let mt = model_type(&arch).ok_or_else(|| GgufError::UnsupportedArchitecture {
        arch: arch.clone(),
        known: KNOWN,
    })?;
    let arch = if arch == "gpt-neox" {
        "gptneox".to_string()
    } else {
        arch
    };
    let k = |s: &str| format!("{arch}.{s}");
    let req = |s: &str| -> Result<u64, GgufError> {
        uniform_u64(g, &k(s))?.ok_or(GgufError::MissingKey { key: k(s) })
    };
    let opt = |s: &str| uniform_u64(g, &k(s));
    let optf = |s: &str| g.get(&k(s)).and_then(f64_shortest);

    let hidden = req("embedding_length")?;
    let layers = req("block_count")?;
    let heads = req("attention.head_count")?;
    if heads == 0 {
        return Err(GgufError::BadValue {
            key: k("attention.head_count"),
            value: "0".into(),
            reason: "must be at least 1",
        });
    }
    let kv_heads = opt("attention.head_count_kv")?.unwrap_or(heads);
    let mut c = Map::new();
    let mut model_type = mt.to_string();
    put(&mut c, "hidden_size", hidden);
    put(&mut c, "num_hidden_layers", layers);
    put(&mut c, "num_attention_heads", heads);
    put(&mut c, "num_key_value_heads", kv_heads);
    if let Some(ff) = opt("feed_forward_length")? {
        put(&mut c, "intermediate_size", ff);
    }
    if let Some(ctx) = opt("context_length")? {
        put(&mut c, "max_position_embeddings", ctx);
    }
    if let Some(eps) = optf("attention.layer_norm_rms_epsilon") {
        put(&mut c, "rms_norm_eps", eps);
    }
    if let Some(eps) = optf("attention.layer_norm_epsilon") {
        put(&mut c, "layer_norm_eps", eps);
    }
    put(
        &mut c,
        "rope_theta",
        optf("rope.freq_base").unwrap_or(10000.0),
    );

    let vocab = match opt("vocab_size")? {
        Some(v) => Some(v),
        None => match g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(a) => Some(a.len() as u64),
            None => g
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied()),
        },
    };
    if let Some(v) = vocab {
        put(&mut c, "vocab_size", v);
    }
    put(
        &mut c,
        "tie_word_embeddings",
        g.tensor("output.weight").is_none(),
    );
    let has = |n: &str| g.tensor(n).is_some();
    put(
        &mut c,
        "attention_bias",
        has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias"),
    );
    for key in ["bos_token_id", "eos_token_id"] {
        let gk = format!("tokenizer.ggml.{key}");
        if let Some(v) = g.get(&gk).and_then(|v| v.as_u64()) {
            put(&mut c, key, v);
        }
    }

    let key_len = opt("attention.key_length_mla")?.or(opt("attention.key_length")?);
    let val_len = opt("attention.value_length_mla")?.or(opt("attention.value_length")?);
    let rope_dim = opt("rope.dimension_count")?;
    let kv_lora = opt("attention.kv_lora_rank")?;

    match &*arch {
        "deepseek2" | "plm" | "minicpm3" => {
            let kv_lora = kv_lora.ok_or(GgufError::MissingKey {
                key: k("attention.kv_lora_rank"),
            })?;
            let rope = rope_dim.ok_or(GgufError::MissingKey {
                key: k("rope.dimension_count"),
            })?;
            let kl = key_len.ok_or(GgufError::MissingKey {
                key: k("attention.key_length"),
            })?;
            let nope = kl.checked_sub(rope).ok_or_else(|| GgufError::BadValue {
                key: k("attention.key_length"),
                value: kl.to_string(),
                reason: "smaller than rope.dimension_count",
            })?;
            put(&mut c, "kv_lora_rank", kv_lora);
            put(&mut c, "qk_rope_head_dim", rope);
            put(&mut c, "qk_nope_head_dim", nope);
            put(&mut c, "v_head_dim", val_len.unwrap_or(nope));
            match opt("attention.q_lora_rank")? {
                Some(q) if q > 0 => put(&mut c, "q_lora_rank", q),
                _ => put(&mut c, "q_lora_rank", Json::Null),
            }
        }
        _ => {
            if let Some(kl) = key_len {
                put(&mut c, "head_dim", kl);
            }
        }
    }

    // MoE.
    if let Some(n_exp) = opt("expert_count")?.filter(|&n| n > 0) {
        let used = opt("expert_used_count")?.unwrap_or(0);
        let ff_exp = opt("expert_feed_forward_length")?;
        match &*arch {
            "deepseek2" => {
                put(&mut c, "n_routed_experts", n_exp);
                put(&mut c, "num_experts_per_tok", used);
                if let Some(f) = ff_exp {
                    put(&mut c, "moe_intermediate_size", f);
                }
                put(
                    &mut c,
                    "n_shared_experts",
                    opt("expert_shared_count")?.unwrap_or(0),
                );
                put(
                    &mut c,
                    "first_k_dense_replace",
                    opt("leading_dense_block_count")?.unwrap_or(0),
                );
                put(&mut c, "moe_layer_freq", 1);
                put(
                    &mut c,
                    "routed_scaling_factor",
                    optf("expert_weights_scale").unwrap_or(1.0),
                );
                let norm = g
                    .get(&k("expert_weights_norm"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                put(&mut c, "norm_topk_prob", norm);
                put(&mut c, "n_group", opt("expert_group_count")?.unwrap_or(1));
                put(
                    &mut c,
                    "topk_group",
                    opt("expert_group_used_count")?.unwrap_or(1),
                );
                // llama.cpp LLAMA_EXPERT_GATING_FUNC_TYPE: 1 softmax, 2 sigmoid (V3).
                if opt("expert_gating_func")? == Some(2) {
                    put(&mut c, "scoring_func", "sigmoid");
                    put(&mut c, "topk_method", "noaux_tc");
                    model_type = "deepseek_v3".to_string();
                } else {
                    put(&mut c, "scoring_func", "softmax");
                    put(&mut c, "topk_method", "greedy");
                }
            }
            _ => {
                put(&mut c, "num_experts", n_exp);
                put(&mut c, "num_experts_per_tok", used);
                if let Some(f) = ff_exp {
                    put(&mut c, "moe_intermediate_size", f);
                }
                if let Some(f) = opt("expert_shared_feed_forward_length")? {
                    put(&mut c, "shared_expert_intermediate_size", f);
                }
                put(&mut c, "decoder_sparse_step", 1);
                put(&mut c, "mlp_only_layers", json!([]));
                put(
                    &mut c,
                    "norm_topk_prob",
                    g.get(&k("expert_weights_norm"))
                        .and_then(|v| v.as_bool())
                        .unwrap_or(arch == "qwen3moe"),
                );
            }
        }
    }

    // Family specifics.
    match &*arch {
        "gemma" | "gemma2" | "gemma3" => {
            put(&mut c, "hidden_activation", "gelu_pytorch_tanh");
            if let Some(w) = opt("attention.sliding_window")? {
                put(&mut c, "sliding_window", w);
                if arch == "gemma3" {
                    // Gemma 3: five local layers per global one (not stored in GGUF).
                    put(&mut c, "sliding_window_pattern", 6);
                }
            }
        }
        "gptneox" => {
            put(&mut c, "hidden_act", "gelu");
            if let (Some(r), Some(hd)) = (rope_dim, hidden.checked_div(heads)) {
                if hd > 0 {
                    put(&mut c, "rotary_pct", r as f64 / hd as f64);
                }
            }
            let par = g
                .get(&k("use_parallel_residual"))
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            put(&mut c, "use_parallel_residual", par);
        }
        "plm" => put(&mut c, "hidden_act", "relu2"),
        "phi3" => {
            put(&mut c, "hidden_act", "silu");
            if let Some(w) = opt("attention.sliding_window")? {
                put(&mut c, "sliding_window", w);
            }
            if let Some(o) = opt("rope.scaling.original_context_length")? {
                put(&mut c, "original_max_position_embeddings", o);
            }
        }
        _ => put(&mut c, "hidden_act", "silu"),
    }
    if let Some(t) = g.get(&k("rope.scaling.type")).and_then(|v| v.as_str()) {
        if t != "none" {
            let mut rs = Map::new();
            put(&mut rs, "rope_type", t);
            if let Some(f) = optf("rope.scaling.factor") {
                put(&mut rs, "factor", f);
            }
            if let Some(o) = opt("rope.scaling.original_context_length")? {
                put(&mut rs, "original_max_position_embeddings", o);
            }
            put(&mut c, "rope_scaling", Json::Object(rs));
        }
    }
    // Partial rotary for standard attention.
    if let (Some(r), false) = (rope_dim, arch == "gptneox" || kv_lora.is_some()) {
        let hd = key_len.or(hidden.checked_div(heads)).unwrap_or(0);
        if hd > 0 && r != hd {
            put(&mut c, "partial_rotary_factor", r as f64 / hd as f64);
        }
    }
    put(&mut c, "model_type", model_type);
    put(&mut c, "gguf_architecture", arch.clone());
    Ok(Json::Object(c))
}

/// Mixture-of-experts hyperparameters for the writer.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub experts: u64,
    pub used: u64,
    pub ff: u64,
    pub shared: u64,
    /// Shared-expert FFN width (all shared experts together).
    pub shared_ff: u64,
    pub leading_dense: u64,
    pub norm_topk: bool,
    /// llama.cpp gating function: 1 softmax, 2 sigmoid.
    pub gating: u64,
    pub scale: f64,
}

/// Multi-head latent attention hyperparameters for the writer.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaConfig {
    pub q_lora_rank: Option<u64>,
    pub kv_lora_rank: u64,
    pub qk_nope: u64,
    pub qk_rope: u64,
    pub v_head: u64,
}

/// What the writer needs to lay out a model, parsed from an HF config.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchConfig {
    /// llama.cpp architecture name.
    pub arch: &'static str,
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub ff: u64,
    pub vocab: u64,
    pub context: u64,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub tied: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    pub moe: Option<MoeConfig>,
    pub mla: Option<MlaConfig>,
    pub bos: u64,
    pub eos: u64,
}

fn field_u64(c: &Json, f: &str) -> Result<Option<u64>, GgufError> {
    match c.get(f) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| GgufError::Config {
            field: f.to_string(),
            reason: format!("expected a non-negative integer, found {v}"),
        }),
    }
}

fn need_u64(c: &Json, f: &str) -> Result<u64, GgufError> {
    let v = field_u64(c, f)?.ok_or_else(|| GgufError::Config {
        field: f.to_string(),
        reason: "missing".to_string(),
    })?;
    if v == 0 {
        return Err(GgufError::Config {
            field: f.to_string(),
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(v)
}

fn first_u64(c: &Json, f: &str) -> Option<u64> {
    match c.get(f) {
        Some(Json::Array(a)) => a.first().and_then(|v| v.as_u64()),
        Some(v) => v.as_u64(),
        None => None,
    }
}

impl ArchConfig {
    /// Families the writer lays out: llama/mistral, qwen2, qwen3, qwen3_moe and
    /// deepseek_v2/v3 (MLA + MoE).
    pub fn from_hf(c: &Json) -> Result<ArchConfig, GgufError> {
        let mt = c
            .get("model_type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| GgufError::Config {
                field: "model_type".into(),
                reason: "missing".into(),
            })?;
        let arch =
            match mt {
                "llama" | "mistral" => "llama",
                "qwen2" => "qwen2",
                "qwen3" => "qwen3",
                "qwen3_moe" => "qwen3moe",
                "deepseek_v2" | "deepseek_v3" => "deepseek2",
                other => return Err(GgufError::UnsupportedArchitecture {
                    arch: other.to_string(),
                    known:
                        "writer: llama, mistral, qwen2, qwen3, qwen3_moe, deepseek_v2, deepseek_v3",
                }),
            };
        let hidden = need_u64(c, "hidden_size")?;
        let heads = need_u64(c, "num_attention_heads")?;
        let kv_heads = field_u64(c, "num_key_value_heads")?.unwrap_or(heads);
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(GgufError::Config {
                field: "num_key_value_heads".into(),
                reason: format!("{kv_heads} does not divide num_attention_heads {heads}"),
            });
        }
        let head_dim = match field_u64(c, "head_dim")? {
            Some(h) if h > 0 => h,
            _ => {
                if hidden % heads != 0 {
                    return Err(GgufError::Config {
                        field: "hidden_size".into(),
                        reason: format!("{hidden} is not divisible by num_attention_heads {heads}"),
                    });
                }
                hidden / heads
            }
        };
        let moe = match arch {
            "qwen3moe" => Some(MoeConfig {
                experts: need_u64(c, "num_experts")?,
                used: need_u64(c, "num_experts_per_tok")?,
                ff: need_u64(c, "moe_intermediate_size")?,
                shared: 0,
                shared_ff: 0,
                leading_dense: 0,
                norm_topk: c
                    .get("norm_topk_prob")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true),
                gating: 1,
                scale: 1.0,
            }),
            "deepseek2" => match field_u64(c, "n_routed_experts")? {
                Some(e) if e > 0 => {
                    let ff = need_u64(c, "moe_intermediate_size")?;
                    let shared = field_u64(c, "n_shared_experts")?.unwrap_or(0);
                    Some(MoeConfig {
                        experts: e,
                        used: need_u64(c, "num_experts_per_tok")?,
                        ff,
                        shared,
                        shared_ff: shared.checked_mul(ff).ok_or_else(|| GgufError::Config {
                            field: "n_shared_experts".into(),
                            reason: "overflows".into(),
                        })?,
                        leading_dense: field_u64(c, "first_k_dense_replace")?.unwrap_or(0),
                        norm_topk: c
                            .get("norm_topk_prob")
                            .and_then(|v| v.as_bool())
                            .unwrap_or(false),
                        gating: if c.get("scoring_func").and_then(|v| v.as_str()) == Some("sigmoid")
                        {
                            2
                        } else {
                            1
                        },
                        scale: c
                            .get("routed_scaling_factor")
                            .and_then(|v| v.as_f64())
                            .unwrap_or(1.0),
                    })
                }
                _ => None,
            },
            _ => None,
        };
        let mla = if arch == "deepseek2" {
            Some(MlaConfig {
                q_lora_rank: field_u64(c, "q_lora_rank")?.filter(|&q| q > 0),
                kv_lora_rank: need_u64(c, "kv_lora_rank")?,
                qk_nope: need_u64(c, "qk_nope_head_dim")?,
                qk_rope: need_u64(c, "qk_rope_head_dim")?,
                v_head: need_u64(c, "v_head_dim")?,
            })
        } else {
            None
        };
        Ok(ArchConfig {
            arch,
            hidden,
            layers: need_u64(c, "num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
            ff: need_u64(c, "intermediate_size")?,
            vocab: need_u64(c, "vocab_size")?,
            context: field_u64(c, "max_position_embeddings")?.unwrap_or(4096),
            rms_eps: c
                .get("rms_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-6),
            rope_theta: c
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(10000.0),
            tied: c
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            qkv_bias: arch == "qwen2"
                || c.get("attention_bias")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
            qk_norm: arch == "qwen3" || arch == "qwen3moe",
            moe,
            mla,
            bos: first_u64(c, "bos_token_id").unwrap_or(1),
            eos: first_u64(c, "eos_token_id").unwrap_or(2),
        })
    }
}
