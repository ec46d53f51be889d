//! What the engine needs to know about a model beyond its analytic spec: epsilons, RoPE base
//! and scaling, the attention scale, soft-caps, the GELU form and the checkpoint's tensor names.
//!
//! The analytic [`ModelSpec`] decides structure (and therefore cost); these numbers change
//! values, not costs, so they are read here from the same `config.json`, with the defaults of
//! each family's `transformers` implementation where a field is absent. Structure is never
//! inferred from the model's name (PITFALLS.md #21): the `model_type` only selects the reference
//! implementation's defaults, as in the spec parser.
//!
//! Not supported (refused with [`EngineError::Unsupported`]): MLA and MoE (a later issue),
//! OLMoE's whole-projection q/k norm, ReLU MLPs, MiniCPM's depth/logit scaling, RoPE scalings
//! other than `default`, `linear` and `llama3`.

use crate::error::EngineError;
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
            Some(m) if m.contains_key("rope_type") => scaling_from(m, "rope_parameters")?,
            _ => parse_rope_scaling(obj)?,
        };
        let (rope_local_theta, rope_local_scaling) = match rp_sliding {
            Some(m) => (
                Some(positive(m, "rope_theta")?.unwrap_or(10_000.0)),
                scaling_from(m, "rope_parameters.sliding_attention")?,
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

        let attn_scale = match positive(obj, "query_pre_attn_scalar")? {
            Some(s) if matches!(mt, "gemma2" | "gemma3" | "gemma3_text") => s.powf(-0.5),
            _ => (spec.head_dim as f64).powf(-0.5),
        } as f32;
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
            },
            spec,
        })
    }
}

fn parse_rope_scaling(obj: &Map<String, Value>) -> Result<RopeScaling, EngineError> {
    let Some(Value::Object(rs)) = obj.get("rope_scaling") else {
        return match obj.get("rope_scaling") {
            None | Some(Value::Null) => Ok(RopeScaling::None),
            Some(_) => Err(cfg_err("rope_scaling", "must be an object or null")),
        };
    };
    scaling_from(rs, "rope_scaling")
}

/// A scaling object (`rope_scaling`, or a v5 `rope_parameters` entry).
fn scaling_from(rs: &Map<String, Value>, field: &str) -> Result<RopeScaling, EngineError> {
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
        other => Err(EngineError::unsupported(format!(
            "rope_scaling type {other:?}"
        ))),
    }
}

fn check_supported(spec: &ModelSpec) -> Result<(), EngineError> {
    if let Attention::Mla(_) = spec.attention {
        return Err(EngineError::unsupported(
            "multi-head latent attention (MLA)",
        ));
    }
    match spec.ffn {
        Ffn::Moe { .. } => return Err(EngineError::unsupported("mixture-of-experts FFN")),
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
            "num_local_experts":4,"num_experts_per_tok":2}"#;
        let e = ModelDef::from_config_json(moe).unwrap_err().to_string();
        assert!(e.contains("mixture-of-experts"), "{e}");
    }
}
