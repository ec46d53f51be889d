//! What the engine needs to know about a model beyond its analytic spec: epsilons, RoPE base
//! and scaling, the attention scale, soft-caps, the GELU form and the checkpoint's tensor names.
//!
//! The analytic [`ModelSpec`] decides structure (and therefore cost); these numbers change
//! values, not costs, so they are read here from the same `config.json`, with the defaults of
//! each family's `transformers` implementation where a field is absent. Structure is never
//! inferred from the model's name (PITFALLS.md #21): the `model_type` only selects the reference
//! implementation's defaults, as in the spec parser.
//!
//! MLA models (DeepSeek-V2/V3, PLM) also carry their execution form ([`MlaForm`], chosen by
//! the caller, absorbed by default) and, with DeepSeek's YaRN `rope_scaling`, the YaRN
//! frequencies and softmax `mscale` (`modeling_deepseek.py` `DeepseekV2YarnRotaryEmbedding`,
//! `DeepseekV2Attention.softmax_scale`). MoE models carry their router ([`RouterParams`]:
//! `scoring_func`, `topk_method`, `n_group`/`topk_group`, `norm_topk_prob`,
//! `routed_scaling_factor`).
//!
//! Not supported (refused with [`EngineError::Unsupported`]): OLMoE's whole-projection q/k
//! norm, ReLU MLPs, MiniCPM's depth/logit scaling, RoPE scalings other than `default`,
//! `linear`, `llama3` (and `yarn` on MLA models), MLA with attention biases, q/k norms or
//! sliding windows, MoE with a non-gated MLP.

use crate::error::EngineError;
use rooflinebench_model::cost::MlaForm;
use rooflinebench_model::hardware::Warning;
use rooflinebench_model::spec::{Activation, Attention, Ffn, ModelSpec, NormKind, QkNorm};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The GELU form: `transformers` `gelu` (exact, erf) or `gelu_pytorch_tanh`/`gelu_new` (tanh).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluForm {
    Erf,
    Tanh,
}

impl GeluForm {
    pub fn kernel(self) -> rooflinebench_kernels::engine::act::Gelu {
        match self {
            GeluForm::Erf => rooflinebench_kernels::engine::act::Gelu::Erf,
            GeluForm::Tanh => rooflinebench_kernels::engine::act::Gelu::Tanh,
        }
    }
}

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rope_type")]
pub enum RopeScaling {
    None,
    /// Every frequency divided by `factor` (position interpolation).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's piecewise rescaling (`transformers` `_compute_llama3_parameters`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// DeepSeek's YaRN (`DeepseekV2YarnRotaryEmbedding`): frequencies blended between
    /// interpolated (`/ factor`) and original by a linear ramp over the correction range of
    /// `beta_fast..beta_slow` rotations, and `cos`/`sin` scaled by
    /// `mscale(factor, mscale) / mscale(factor, mscale_all_dim)`. Accepted on MLA models only.
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        beta_fast: f64,
        beta_slow: f64,
        mscale: f64,
        mscale_all_dim: f64,
    },
}

/// YaRN's attention-temperature factor: `0.1 * mscale * ln(scale) + 1` for `scale > 1`, else 1
/// (`yarn_get_mscale`).
pub fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// YaRN's correction range `(low, high)` of frequency indices for `rot` rotary dims
/// (`yarn_find_correction_range`; `high` nudged when equal to `low`).
pub fn yarn_correction_range(
    beta_fast: f64,
    beta_slow: f64,
    rot: usize,
    base: f64,
    original_max: f64,
) -> (f64, f64) {
    let dim = rot as f64;
    let corr = |rotations: f64| {
        dim * (original_max / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
    };
    let low = corr(beta_fast).floor().max(0.0);
    let high = corr(beta_slow).ceil().min(dim - 1.0);
    if low == high {
        (low, high + 0.001)
    } else {
        (low, high)
    }
}

impl RopeScaling {
    /// Factor applied to every `cos`/`sin` table entry (YaRN's mscale ratio; 1 otherwise).
    pub fn cos_sin_scale(&self) -> f32 {
        match *self {
            RopeScaling::Yarn {
                factor,
                mscale,
                mscale_all_dim,
                ..
            } => (yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)) as f32,
            RopeScaling::None | RopeScaling::Linear { .. } | RopeScaling::Llama3 { .. } => 1.0,
        }
    }
}

/// How MoE router scores are formed from the router logits (`scoring_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    Softmax,
    Sigmoid,
}

/// How experts are chosen (`topk_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopkMethod {
    /// Plain top-k of the scores (Qwen-MoE, Mixtral, DeepSeek-V2 `greedy`).
    Greedy,
    /// DeepSeek-V2 `group_limited_greedy`: a group's score is its best expert's; only experts
    /// of the `topk_group` best groups compete.
    GroupLimited,
    /// DeepSeek-V3 `noaux_tc`: experts chosen on `score + e_score_correction_bias`, a group's
    /// score is the sum of its two best; the weights are the unbiased scores.
    NoauxTc,
}

/// The MoE router's value parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterParams {
    pub scoring: Scoring,
    pub method: TopkMethod,
    /// Expert groups (`n_group`, 1 = no grouping) and groups kept per token (`topk_group`).
    pub n_group: usize,
    pub topk_group: usize,
    /// Divide the chosen weights by their sum (DeepSeek: only when `top_k > 1`).
    pub norm_topk_prob: bool,
    /// DeepSeek: `top_k > 1` is required for normalisation.
    pub norm_needs_k_gt_1: bool,
    /// Multiplies the weights: always with `noaux_tc`, otherwise only when not normalised.
    pub routed_scaling_factor: f32,
}

/// How the checkpoint names and packs its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Naming {
    /// `model.layers.N.self_attn.q_proj`, `mlp.gate_proj`, ... (llama, mistral, qwen2/3, gemma).
    Llama,
    /// Llama names plus Gemma2/3's four norms per layer.
    GemmaSandwich,
    /// `self_attn.qkv_proj` and `mlp.gate_up_proj` fused (phi3).
    Phi3,
    /// `gpt_neox.layers.N.attention.query_key_value` (per-head interleaved q,k,v), `mlp.dense_*`.
    GptNeox,
}

/// Value-level parameters of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchParams {
    pub norm_eps: f32,
    /// Added to every RMSNorm weight at load (Gemma stores `w` and applies `1 + w`).
    pub norm_weight_offset: f32,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// RoPE base of sliding-window layers when it differs (Gemma3 `rope_local_base_freq`, or
    /// `rope_parameters.sliding_attention` in transformers v5 configs).
    pub rope_local_theta: Option<f64>,
    /// RoPE scaling of sliding-window layers (Gemma3: none).
    pub rope_local_scaling: RopeScaling,
    /// The GELU form of GELU MLPs.
    pub gelu: GeluForm,
    /// Attention score scale: `1/sqrt(head_dim)` or Gemma's `query_pre_attn_scalar^-1/2`.
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Multiplier of the embedding output (Gemma: `sqrt(hidden_size)`).
    pub embed_scale: Option<f32>,
    pub naming: Naming,
    /// MLA execution form (ignored for other attention kinds); labelled on every result.
    #[serde(default)]
    pub mla_form: MlaForm,
    /// The MoE router (MoE models only).
    #[serde(default)]
    pub router: Option<RouterParams>,
}

/// A model the engine can run: the analytic spec plus value-level parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelDef {
    pub spec: ModelSpec,
    pub arch: ArchParams,
}

fn cfg_err(field: &str, reason: &str) -> EngineError {
    EngineError::Config {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn num(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, EngineError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| cfg_err(field, "must be a finite number")),
        Some(_) => Err(cfg_err(field, "must be a number")),
    }
}

fn positive(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, EngineError> {
    match num(obj, field)? {
        Some(v) if v <= 0.0 => Err(cfg_err(field, "must be positive")),
        v => Ok(v),
    }
}

impl ModelDef {
    /// Parses a `config.json`: the analytic spec and the engine's parameters.
    pub fn from_config_json(text: &str) -> Result<(ModelDef, Vec<Warning>), EngineError> {
        let (spec, warnings) = ModelSpec::from_config_json(text)?;
        let def = ModelDef::from_spec_and_config(spec, text)?;
        Ok((def, warnings))
    }

    /// A spec whose config text is not at hand: every value parameter takes its family default.
    pub fn from_spec(spec: ModelSpec) -> Result<ModelDef, EngineError> {
        ModelDef::from_spec_and_config(spec, "{}")
    }

    /// `spec` (possibly with overrides applied) plus the value parameters of `config_json`.
    pub fn from_spec_and_config(
        spec: ModelSpec,
        config_json: &str,
    ) -> Result<ModelDef, EngineError> {
        check_supported(&spec)?;
        let value: Value = serde_json::from_str(config_json)
            .map_err(|e| cfg_err("config.json", &e.to_string()))?;
        let empty = Map::new();
        let top = value.as_object().unwrap_or(&empty);
        // Multimodal configs keep the language model's fields in `text_config`.
        let obj = match top.get("text_config") {
            Some(Value::Object(t)) if !top.contains_key("hidden_size") => t,
            _ => top,
        };
        let model_type = spec.model_type.clone();
        let mt = model_type.as_str();
        let mla = matches!(spec.attention, Attention::Mla(_));
        let gemma = matches!(mt, "gemma" | "gemma2" | "gemma3" | "gemma3_text");

        let norm_eps = [
            "rms_norm_eps",
            "layer_norm_eps",
            "layer_norm_epsilon",
            "norm_eps",
        ]
        .iter()
        .find_map(|f| positive(obj, f).transpose())
        .transpose()?
        .unwrap_or(match spec.norm {
            NormKind::RmsNorm => 1e-6,
            NormKind::LayerNorm => 1e-5,
        }) as f32;

        // transformers v5 moves RoPE settings into `rope_parameters`, either one object or one
        // per layer type (`full_attention` / `sliding_attention`).
        let rp = match obj.get("rope_parameters") {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(_) => return Err(cfg_err("rope_parameters", "must be an object")),
        };
        let rp_full = rp.and_then(|m| match m.get("full_attention") {
            Some(Value::Object(f)) => Some(f),
            _ => None,
        });
        let rp_sliding = rp.and_then(|m| match m.get("sliding_attention") {
            Some(Value::Object(f)) => Some(f),
            _ => None,
        });
        let rp_global = rp_full.or(rp);
        let rope_theta = match rp_global
            .map(|m| positive(m, "rope_theta"))
            .transpose()?
            .flatten()
        {
            Some(t) => t,
            None => match positive(obj, "rope_theta")? {
                Some(t) => t,
                None => positive(obj, "rotary_emb_base")?.unwrap_or(10_000.0),
            },
        };
        let rope_scaling = match rp_global {
            Some(m) if m.contains_key("rope_type") => scaling_from(m, "rope_parameters", mla)?,
            _ => parse_rope_scaling(obj, mla)?,
        };
        let (rope_local_theta, rope_local_scaling) = match rp_sliding {
            Some(m) => (
                Some(positive(m, "rope_theta")?.unwrap_or(10_000.0)),
                scaling_from(m, "rope_parameters.sliding_attention", false)?,
            ),
            None if matches!(mt, "gemma3" | "gemma3_text") => (
                Some(positive(obj, "rope_local_base_freq")?.unwrap_or(10_000.0)),
                RopeScaling::None,
            ),
            None => (None, RopeScaling::None),
        };
        // A v5 config may carry the partial rotary factor only inside `rope_parameters`.
        let mut spec = spec;
        if let Some(f) = rp_global
            .map(|m| positive(m, "partial_rotary_factor"))
            .transpose()?
            .flatten()
        {
            if f <= 1.0
                && num(obj, "partial_rotary_factor")?.is_none()
                && num(obj, "rotary_pct")?.is_none()
            {
                spec.rotary_dims = (((spec.head_dim as f64 * f) as u64).max(1)) & !1;
            }
        }

        let act_name = [obj.get("hidden_activation"), obj.get("hidden_act")]
            .into_iter()
            .flatten()
            .find_map(|v| v.as_str());
        let gelu = match act_name {
            // transformers' Gemma forces the tanh form when `hidden_activation` is absent.
            _ if gemma
                && obj
                    .get("hidden_activation")
                    .and_then(Value::as_str)
                    .is_none() =>
            {
                GeluForm::Tanh
            }
            Some("gelu") | Some("gelu_python") => GeluForm::Erf,
            _ => GeluForm::Tanh,
        };

        let mut attn_scale = match positive(obj, "query_pre_attn_scalar")? {
            Some(s) if matches!(mt, "gemma2" | "gemma3" | "gemma3_text") => s.powf(-0.5),
            _ => (spec.head_dim as f64).powf(-0.5),
        };
        // DeepSeek MLA: softmax_scale *= mscale(factor, mscale_all_dim)^2 when that is set.
        if let RopeScaling::Yarn {
            factor,
            mscale_all_dim,
            ..
        } = rope_scaling
        {
            if mscale_all_dim != 0.0 {
                let m = yarn_mscale(factor, mscale_all_dim);
                attn_scale *= m * m;
            }
        }
        let attn_scale = attn_scale as f32;
        let router = match spec.ffn.moe() {
            Some(m) => Some(router_from(obj, mt, m.num_experts, m.top_k, m.router_bias)?),
            None => None,
        };
        let attn_softcap = positive(obj, "attn_logit_softcapping")?.map(|v| v as f32);
        let final_softcap = positive(obj, "final_logit_softcapping")?.map(|v| v as f32);
        let embed_scale = spec
            .embedding_scale
            .then(|| (spec.hidden_size as f64).sqrt() as f32);

        let naming = match mt {
            "gpt_neox" => Naming::GptNeox,
            "phi3" => Naming::Phi3,
            _ if spec.post_norms => Naming::GemmaSandwich,
            _ => Naming::Llama,
        };
        Ok(ModelDef {
            arch: ArchParams {
                norm_eps,
                norm_weight_offset: if gemma { 1.0 } else { 0.0 },
                rope_theta,
                rope_scaling,
                rope_local_theta,
                rope_local_scaling,
                gelu,
                attn_scale,
                attn_softcap,
                final_softcap,
                embed_scale,
                naming,
                mla_form: MlaForm::default(),
                router,
            },
            spec,
        })
    }
}

fn parse_rope_scaling(obj: &Map<String, Value>, mla: bool) -> Result<RopeScaling, EngineError> {
    let Some(Value::Object(rs)) = obj.get("rope_scaling") else {
        return match obj.get("rope_scaling") {
            None | Some(Value::Null) => Ok(RopeScaling::None),
            Some(_) => Err(cfg_err("rope_scaling", "must be an object or null")),
        };
    };
    scaling_from(rs, "rope_scaling", mla)
}

/// A scaling object (`rope_scaling`, or a v5 `rope_parameters` entry).
fn scaling_from(
    rs: &Map<String, Value>,
    field: &str,
    mla: bool,
) -> Result<RopeScaling, EngineError> {
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = || {
        positive(rs, "factor")?.ok_or_else(|| cfg_err(&format!("{field}.factor"), "is required"))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: factor()? }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: positive(rs, "low_freq_factor")?.unwrap_or(1.0),
            high_freq_factor: positive(rs, "high_freq_factor")?.unwrap_or(4.0),
            original_max_position_embeddings: positive(rs, "original_max_position_embeddings")?
                .unwrap_or(8192.0),
        }),
        "yarn" if mla => Ok(RopeScaling::Yarn {
            factor: factor()?,
            original_max_position_embeddings: positive(rs, "original_max_position_embeddings")?
                .unwrap_or(4096.0),
            beta_fast: positive(rs, "beta_fast")?.unwrap_or(32.0),
            beta_slow: positive(rs, "beta_slow")?.unwrap_or(1.0),
            mscale: num(rs, "mscale")?.unwrap_or(1.0),
            mscale_all_dim: num(rs, "mscale_all_dim")?.unwrap_or(0.0),
        }),
        other => Err(EngineError::unsupported(format!(
            "rope_scaling type {other:?}"
        ))),
    }
}

/// The router of a MoE model from its config (DeepSeek-V2/V3 `modeling_deepseek.py` `MoEGate`,
/// Qwen2/3-MoE and Mixtral sparse blocks).
fn router_from(
    obj: &Map<String, Value>,
    mt: &str,
    num_experts: u64,
    top_k: u64,
    router_bias: bool,
) -> Result<RouterParams, EngineError> {
    let deepseek = matches!(mt, "deepseek_v2" | "deepseek_v3");
    let scoring = match obj.get("scoring_func").and_then(Value::as_str) {
        None | Some("softmax") => Scoring::Softmax,
        Some("sigmoid") => Scoring::Sigmoid,
        Some(other) => {
            return Err(EngineError::unsupported(format!(
                "MoE scoring_func {other:?}"
            )))
        }
    };
    let method = match obj.get("topk_method").and_then(Value::as_str) {
        None | Some("greedy") => TopkMethod::Greedy,
        Some("group_limited_greedy") => TopkMethod::GroupLimited,
        Some("noaux_tc") => TopkMethod::NoauxTc,
        Some(other) => {
            return Err(EngineError::unsupported(format!(
                "MoE topk_method {other:?}"
            )))
        }
    };
    if router_bias != (method == TopkMethod::NoauxTc) {
        return Err(cfg_err(
            "topk_method",
            "the router bias goes with noaux_tc only",
        ));
    }
    let int = |field: &str, default: u64| -> Result<u64, EngineError> {
        match num(obj, field)? {
            None => Ok(default),
            Some(v) if v >= 1.0 && v.fract() == 0.0 && v <= num_experts as f64 => Ok(v as u64),
            Some(_) => Err(cfg_err(
                field,
                "must be a whole number between 1 and the expert count",
            )),
        }
    };
    let grouped = method != TopkMethod::Greedy;
    let n_group = if grouped { int("n_group", 1)? } else { 1 };
    let topk_group = if grouped {
        int("topk_group", n_group)?
    } else {
        1
    };
    if !num_experts.is_multiple_of(n_group) {
        return Err(cfg_err(
            "n_group",
            "must divide the number of routed experts",
        ));
    }
    if topk_group > n_group {
        return Err(cfg_err("topk_group", "must be at most n_group"));
    }
    if top_k > topk_group * (num_experts / n_group) {
        return Err(cfg_err(
            "num_experts_per_tok",
            "exceeds the experts of the topk_group groups kept",
        ));
    }
    if method == TopkMethod::NoauxTc && n_group > 1 && num_experts / n_group < 2 {
        return Err(cfg_err(
            "n_group",
            "noaux_tc needs at least two experts per group",
        ));
    }
    let norm_topk_prob = match obj.get("norm_topk_prob") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => mt == "mixtral",
        Some(_) => return Err(cfg_err("norm_topk_prob", "must be true or false")),
    };
    let routed_scaling_factor = positive(obj, "routed_scaling_factor")?.unwrap_or(1.0) as f32;
    Ok(RouterParams {
        scoring,
        method,
        n_group: n_group as usize,
        topk_group: topk_group as usize,
        norm_topk_prob,
        norm_needs_k_gt_1: deepseek,
        routed_scaling_factor,
    })
}

fn check_supported(spec: &ModelSpec) -> Result<(), EngineError> {
    if let Attention::Mla(_) = spec.attention {
        if spec.qkv_bias || spec.o_bias {
            return Err(EngineError::unsupported("MLA with attention biases"));
        }
        if spec.qk_norm.is_some() {
            return Err(EngineError::unsupported("MLA with q/k norms"));
        }
        if spec.uses_sliding_window() {
            return Err(EngineError::unsupported("MLA with a sliding window"));
        }
        if spec.parallel_residual || spec.norm != NormKind::RmsNorm {
            return Err(EngineError::unsupported(
                "MLA with LayerNorm or a parallel residual",
            ));
        }
    }
    match spec.ffn {
        Ffn::Moe { gated: false, .. } => {
            return Err(EngineError::unsupported(
                "mixture-of-experts with a non-gated MLP",
            ))
        }
        Ffn::Moe {
            act: Activation::Relu,
            ..
        } => return Err(EngineError::unsupported("a ReLU MLP")),
        Ffn::Moe { .. } => {}
        Ffn::Dense {
            act: Activation::Relu,
            ..
        } => return Err(EngineError::unsupported("a ReLU MLP")),
        Ffn::Dense { .. } => {}
    }
    if spec.qk_norm == Some(QkNorm::Whole) {
        return Err(EngineError::unsupported(
            "whole-projection q/k norm (OLMoE)",
        ));
    }
    if matches!(spec.model_type.as_str(), "minicpm" | "minicpm3") {
        return Err(EngineError::unsupported("MiniCPM depth and logit scaling"));
    }
    if !spec.rotary_dims.is_multiple_of(2) || spec.rotary_dims > spec.head_dim {
        return Err(cfg_err(
            "partial_rotary_factor",
            "rotary dimensions must be even and at most head_dim",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_and_defaults_are_read() {
        let cfg = r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
            "intermediate_size":128,"rms_norm_eps":1e-5,"rope_theta":500000.0,
            "rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#;
        let (d, _) = ModelDef::from_config_json(cfg).unwrap();
        assert_eq!(d.arch.norm_eps, 1e-5);
        assert_eq!(d.arch.rope_theta, 500000.0);
        assert!(
            matches!(d.arch.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 32.0)
        );
        assert_eq!(d.arch.naming, Naming::Llama);
        assert!((d.arch.attn_scale - 0.25).abs() < 1e-7);
    }

    #[test]
    fn unsupported_features_are_named() {
        let cfg = r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,
            "num_attention_heads":4,"vocab_size":100,"intermediate_size":128,
            "rope_scaling":{"rope_type":"yarn","factor":4.0}}"#;
        let e = ModelDef::from_config_json(cfg).unwrap_err().to_string();
        assert!(e.contains("yarn"), "{e}");
        let moe = r#"{"model_type":"mixtral","hidden_size":64,"num_hidden_layers":2,
            "num_attention_heads":4,"vocab_size":100,"intermediate_size":128,
            "num_local_experts":4,"num_experts_per_tok":2,"scoring_func":"tanh"}"#;
        let e = ModelDef::from_config_json(moe).unwrap_err().to_string();
        assert!(e.contains("scoring_func"), "{e}");
        let ok = moe.replace(r#","scoring_func":"tanh""#, "");
        let (d, _) = ModelDef::from_config_json(&ok).unwrap();
        assert!(d.arch.router.unwrap().norm_topk_prob, "mixtral normalises");
    }
}
