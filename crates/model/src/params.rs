//! Parameter counts: total, embedding, non-embedding and active (per token).
//!
//! Conventions (those of Qwen's and Pythia's model cards):
//! - `embedding` is the input embedding plus an *untied* output head (`vocab * hidden` each);
//!   a tied head shares the input matrix and is counted once.
//! - `non_embedding = total - embedding`.
//! - `active` is what one token uses: `total` minus the routed experts it is not sent to
//!   (`(E - k)` experts in each MoE layer). It includes the embeddings (Qwen3-30B-A3B's "3.3B
//!   activated" does; DeepSeek-V2-Lite's "2.4B activated" leaves the input embedding out).
//!
//! Checked against published counts: Qwen2.5-0.5B 494,032,768 / 357,898,112 non-embedding,
//! SmolLM2-135M 134,515,008, Llama-3.2-1B 1,235,814,400, pythia-160m 162,322,944 / 85,056,000.

use crate::error::ModelError;
use crate::spec::{Attention, ModelSpec, QkNorm};
use serde::{Deserialize, Serialize};

/// Parameter counts of a model (`params --json` prints exactly these keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    pub total: u64,
    pub embedding: u64,
    pub non_embedding: u64,
    pub active: u64,
}

/// Parameters of one layer, split by block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LayerParams {
    /// Attention projections, their biases and q/k (or MLA latent) norms.
    pub attention: u128,
    /// Layer norms (pre-attention, pre-FFN, and Gemma's post norms).
    pub norms: u128,
    /// Every FFN parameter (all experts, router, shared experts).
    pub ffn_total: u128,
    /// FFN parameters one token uses (router, k routed experts, shared experts).
    pub ffn_active: u128,
}

/// Parameters of one FFN of intermediate size `i` (gated: gate, up, down), biases included.
pub(crate) fn mlp_params(spec: &ModelSpec, i: u64) -> u128 {
    let (h, i) = (spec.hidden_size as u128, i as u128);
    let gated = spec.ffn.gated();
    let mats = if gated { 3 } else { 2 };
    let bias = if spec.mlp_bias {
        if gated {
            2 * i + h
        } else {
            i + h
        }
    } else {
        0
    };
    mats * h * i + bias
}

pub(crate) fn layer_params(spec: &ModelSpec, layer: usize) -> LayerParams {
    let h = spec.hidden_size as u128;
    let nh = spec.num_attention_heads as u128;
    let nkv = spec.num_key_value_heads as u128;
    let dh = spec.head_dim as u128;
    let dv = spec.v_head_dim as u128;
    let norm_p = spec.norm.params_per_elem() as u128;

    let attention = match &spec.attention {
        Attention::Mla(m) => {
            let (kvl, rope, nope, v) = (
                m.kv_lora_rank as u128,
                m.qk_rope_head_dim as u128,
                m.qk_nope_head_dim as u128,
                m.v_head_dim as u128,
            );
            let qk = nope + rope;
            let in_bias = |out: u128| if spec.qkv_bias { out } else { 0 };
            let q = match m.q_lora_rank {
                // q_a_proj (+bias), q_a_layernorm, q_b_proj
                Some(ql) => {
                    let ql = ql as u128;
                    h * ql + in_bias(ql) + ql + ql * nh * qk
                }
                None => h * nh * qk + in_bias(nh * qk),
            };
            // kv_a_proj_with_mqa (+bias), kv_a_layernorm, kv_b_proj, o_proj (+bias)
            let kv = h * (kvl + rope) + in_bias(kvl + rope) + kvl + kvl * nh * (nope + v);
            let o = nh * v * h + if spec.o_bias { h } else { 0 };
            q + kv + o
        }
        Attention::Mha | Attention::Gqa | Attention::Mqa => {
            let q = h * nh * dh;
            let kv = 2 * h * nkv * dh;
            let bias = if spec.qkv_bias {
                nh * dh + 2 * nkv * dh
            } else {
                0
            };
            let o = nh * dv * h + if spec.o_bias { h } else { 0 };
            let qkn = match spec.qk_norm {
                None => 0,
                Some(QkNorm::PerHead) => 2 * dh,
                Some(QkNorm::Whole) => nh * dh + nkv * dh,
            };
            q + kv + bias + o + qkn
        }
    };
    let n_norms = if spec.post_norms { 4 } else { 2 };
    let norms = n_norms * h * norm_p;

    let (ffn_total, ffn_active) = match (spec.layers[layer].moe, spec.ffn.moe()) {
        (true, Some(m)) => {
            let e = m.num_experts as u128;
            let k = m.top_k as u128;
            let expert = mlp_params(spec, m.expert_intermediate_size);
            let router = e * h + if m.router_bias { e } else { 0 };
            let shared = if m.shared_intermediate_size > 0 {
                mlp_params(spec, m.shared_intermediate_size)
                    + if m.shared_expert_gate { h } else { 0 }
            } else {
                0
            };
            (router + e * expert + shared, router + k * expert + shared)
        }
        _ => {
            let p = mlp_params(spec, spec.intermediate_size);
            (p, p)
        }
    };
    LayerParams {
        attention,
        norms,
        ffn_total,
        ffn_active,
    }
}

fn to_u64(x: u128) -> Result<u64, ModelError> {
    u64::try_from(x).map_err(|_| ModelError::Overflow {
        what: "the parameter count",
    })
}

/// Counts the parameters of `spec`. Exact integer arithmetic; an absurd config is an error.
pub fn count_params(spec: &ModelSpec) -> Result<ParamCounts, ModelError> {
    spec.validate()?;
    let h = spec.hidden_size as u128;
    let v = spec.vocab_size as u128;
    let embedding = if spec.tie_word_embeddings {
        v * h
    } else {
        2 * v * h
    };
    let final_norm = h * spec.norm.params_per_elem() as u128;
    let mut total = embedding + final_norm;
    let mut active = total;
    for layer in 0..spec.layers.len() {
        let p = layer_params(spec, layer);
        total += p.attention + p.norms + p.ffn_total;
        active += p.attention + p.norms + p.ffn_active;
    }
    Ok(ParamCounts {
        total: to_u64(total)?,
        embedding: to_u64(embedding)?,
        non_embedding: to_u64(total - embedding)?,
        active: to_u64(active)?,
    })
}
