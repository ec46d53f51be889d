//! A validated model specification, parsed from a Hugging Face `config.json`.
//!
//! The architecture is read from fields, never from a model's name (PITFALLS.md #21):
//! - attention: MLA when `kv_lora_rank` is set (with `q_lora_rank`, `qk_nope_head_dim`,
//!   `qk_rope_head_dim`, `v_head_dim`); otherwise MHA / GQA / MQA from `num_attention_heads`
//!   and `num_key_value_heads` (absent = MHA);
//! - FFN: MoE when `num_experts`, `n_routed_experts` or `num_local_experts` is positive, with
//!   `num_experts_per_tok`, `moe_intermediate_size` (else `intermediate_size`, as Mixtral and
//!   OLMoE size experts), shared experts (`n_shared_experts` x `moe_intermediate_size` or
//!   `shared_expert_intermediate_size`), and dense layers from `first_k_dense_replace`,
//!   `moe_layer_freq`, `decoder_sparse_step` and `mlp_only_layers`;
//! - sliding window only where it is really applied: `layer_types` when present, else the
//!   family's rule (Mistral/Mixtral/Phi3 every layer; Qwen only with `use_sliding_window` and
//!   from `max_window_layers` on; Gemma2 every other layer; Gemma3 five of every six).
//!
//! What the fields cannot say is taken from the `model_type`'s reference implementation in
//! `transformers`: Qwen2's hard-wired q/k/v bias, GPT-NeoX's LayerNorm, biases and plain GELU
//! MLP, Gemma's sandwich norms and embedding scale, Qwen3/Gemma3/OLMoE's q/k norms. An unknown
//! `model_type` with standard fields is analysed as a Llama-style decoder with a warning.
//!
//! Not modelled: vision towers (a multimodal config is analysed through its `text_config`),
//! multi-token-prediction layers, encoder-decoder models, linear-attention/SSM layers.

use crate::error::ModelError;
use crate::hardware::Warning;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest accepted width-like size (hidden, intermediate, vocab, heads, head dim, ranks):
/// 2^24. Bounding every input keeps all cost arithmetic far from overflow.
pub const MAX_DIM: u64 = 1 << 24;
/// Largest accepted layer count (also bounds the per-layer vector a config can make us allocate).
pub const MAX_LAYERS: u64 = 4096;
/// Largest accepted expert count.
pub const MAX_EXPERTS: u64 = 1 << 16;
/// Largest accepted sliding window or position count used in arithmetic: 2^40.
pub const MAX_POSITIONS: u64 = 1 << 40;

/// The model types whose reference implementation this crate knows (issue 2).
pub const KNOWN_MODEL_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "qwen2_moe",
    "qwen3_moe",
    "mixtral",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "phi3",
    "gpt_neox",
    "deepseek_v2",
    "deepseek_v3",
    "olmoe",
    "minicpm",
    "minicpm3",
];

/// Multi-head latent attention dimensions (DeepSeek-V2 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlaSpec {
    /// Rank of the compressed KV latent `c_kv` (cached per token per layer).
    pub kv_lora_rank: u64,
    /// Rank of the compressed query; `None` = queries projected directly from the hidden state.
    pub q_lora_rank: Option<u64>,
    /// Per-head query/key dimension without position information.
    pub qk_nope_head_dim: u64,
    /// Per-head query dimension with RoPE; the key's RoPE part is one vector shared by all heads
    /// and cached next to the latent.
    pub qk_rope_head_dim: u64,
    /// Per-head value dimension.
    pub v_head_dim: u64,
}

impl MlaSpec {
    /// Elements cached per token per layer in the absorbed form: `kv_lora_rank + qk_rope_head_dim`
    /// (PITFALLS.md #4).
    pub fn latent_elems(&self) -> u64 {
        self.kv_lora_rank + self.qk_rope_head_dim
    }
    /// Query/key head dimension: `qk_nope_head_dim + qk_rope_head_dim`.
    pub fn qk_head_dim(&self) -> u64 {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }
}

/// The attention kind, from the head counts and `kv_lora_rank` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// `num_key_value_heads == num_attention_heads`.
    Mha,
    /// `1 < num_key_value_heads < num_attention_heads`.
    Gqa,
    /// `num_key_value_heads == 1 < num_attention_heads`.
    Mqa,
    /// Multi-head latent attention.
    Mla(MlaSpec),
}

impl Attention {
    pub fn name(&self) -> &'static str {
        match self {
            Attention::Mha => "MHA",
            Attention::Gqa => "GQA",
            Attention::Mqa => "MQA",
            Attention::Mla(_) => "MLA",
        }
    }
    /// Classifies standard attention from head counts.
    pub fn from_heads(heads: u64, kv_heads: u64) -> Attention {
        if kv_heads >= heads {
            Attention::Mha
        } else if kv_heads == 1 {
            Attention::Mqa
        } else {
            Attention::Gqa
        }
    }
}

/// The MLP nonlinearity (`hidden_act` / `hidden_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    Gelu,
    Relu,
}

impl Activation {
    /// FLOPs charged per element (a transcendental counts as one FLOP): SiLU `x / (1 + e^-x)`
    /// 4, GELU (tanh form) 8, ReLU 1. A convention: these are tiny next to the matmuls.
    pub fn flops_per_elem(self) -> u64 {
        match self {
            Activation::Silu => 4,
            Activation::Gelu => 8,
            Activation::Relu => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::Relu => "relu",
        }
    }
}

/// Mixture-of-experts dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoeSpec {
    /// Routed experts per MoE layer.
    pub num_experts: u64,
    /// Experts each token is routed to (`num_experts_per_tok`).
    pub top_k: u64,
    /// Intermediate size of one routed expert (PITFALLS.md #6).
    pub expert_intermediate_size: u64,
    /// Number of shared (always-on) experts (informational; sizes are in
    /// `shared_intermediate_size`).
    pub num_shared_experts: u64,
    /// Total intermediate size of all shared experts together (0 = none):
    /// `n_shared_experts * moe_intermediate_size` or `shared_expert_intermediate_size`.
    pub shared_intermediate_size: u64,
    /// Qwen2-MoE: a sigmoid gate `Linear(hidden, 1)` scales the shared expert.
    pub shared_expert_gate: bool,
    /// DeepSeek-V3 (`topk_method: noaux_tc`): a per-expert bias added to router scores.
    pub router_bias: bool,
}

/// The FFN kind. In a MoE model some layers may still be dense ([`LayerKind::moe`]); those use
/// `ModelSpec::intermediate_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ffn {
    Dense {
        gated: bool,
        act: Activation,
    },
    Moe {
        gated: bool,
        act: Activation,
        moe: MoeSpec,
    },
}

impl Ffn {
    /// SwiGLU/GeGLU (gate, up, down) rather than a plain two-matrix MLP.
    pub fn gated(&self) -> bool {
        match self {
            Ffn::Dense { gated, .. } | Ffn::Moe { gated, .. } => *gated,
        }
    }
    pub fn act(&self) -> Activation {
        match self {
            Ffn::Dense { act, .. } | Ffn::Moe { act, .. } => *act,
        }
    }
    pub fn moe(&self) -> Option<&MoeSpec> {
        match self {
            Ffn::Dense { .. } => None,
            Ffn::Moe { moe, .. } => Some(moe),
        }
    }
}

/// RMSNorm (weight only) or LayerNorm (weight and bias, mean subtracted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    RmsNorm,
    LayerNorm,
}

impl NormKind {
    /// FLOPs per normalised element: RMSNorm 4 (square-accumulate, scale by 1/rms and weight),
    /// LayerNorm 7 (mean, centre, square-accumulate, scale, weight, bias).
    pub fn flops_per_elem(self) -> u64 {
        match self {
            NormKind::RmsNorm => 4,
            NormKind::LayerNorm => 7,
        }
    }
    /// Parameters per normalised element (weight, plus bias for LayerNorm).
    pub fn params_per_elem(self) -> u64 {
        match self {
            NormKind::RmsNorm => 1,
            NormKind::LayerNorm => 2,
        }
    }
}

/// Normalisation of queries and keys before RoPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNorm {
    /// One RMSNorm of `head_dim` shared by all heads (Qwen3, Gemma3).
    PerHead,
    /// One RMSNorm over the whole projection (OLMoE): `heads * head_dim` weights for q,
    /// `kv_heads * head_dim` for k.
    Whole,
}

/// What distinguishes one layer from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerKind {
    /// MoE FFN (else dense, `intermediate_size`).
    pub moe: bool,
    /// Sliding attention window (positions attended, the current one included); `None` = full.
    pub window: Option<u64>,
}

/// A validated model. All sizes are positive and bounded (see [`MAX_DIM`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Short name (zoo name, folder name, or `_name_or_path`); informational only, never used to
    /// decide the architecture.
    pub name: String,
    pub model_type: String,
    pub hidden_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    /// Equal to `num_attention_heads` for MHA (and for MLA, where it is unused).
    pub num_key_value_heads: u64,
    /// Per-head q/k dimension (for MLA: `qk_nope_head_dim + qk_rope_head_dim`).
    pub head_dim: u64,
    /// Per-head value dimension (`head_dim`, or MLA's `v_head_dim`).
    pub v_head_dim: u64,
    pub vocab_size: u64,
    /// Dense FFN intermediate size (dense layers of a MoE model too); 0 when no layer is dense
    /// and the config gives none.
    pub intermediate_size: u64,
    pub tie_word_embeddings: bool,
    /// 0 when the config does not say.
    pub max_position_embeddings: u64,
    pub attention: Attention,
    pub ffn: Ffn,
    pub norm: NormKind,
    /// Dimensions per head that RoPE rotates (`head_dim * partial_rotary_factor`; MLA:
    /// `qk_rope_head_dim`).
    pub rotary_dims: u64,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub qk_norm: Option<QkNorm>,
    /// The configured sliding window, whether or not used; the layers that use it are in
    /// `layers`.
    pub sliding_window: Option<u64>,
    /// One entry per layer (`layers.len() == num_hidden_layers`).
    pub layers: Vec<LayerKind>,
    /// GPT-NeoX: attention and MLP read the same input and are added together.
    pub parallel_residual: bool,
    /// Gemma2/3: norms after attention and after the FFN too ("sandwich").
    pub post_norms: bool,
    /// Gemma / MiniCPM: the embedding output is scaled (one multiply per element).
    pub embedding_scale: bool,
    /// Gemma2: `tanh` soft-capping of attention logits.
    pub attn_softcap: bool,
    /// Gemma2: `tanh` soft-capping of the final logits.
    pub final_softcap: bool,
    /// Q, K and V are one fused matrix in the checkpoint (GPT-NeoX, Phi3): llama.cpp's recipes
    /// treat `attn_qkv` differently.
    pub fused_qkv: bool,
}

/// Structural overrides for matched-size and depth sweeps (`analyze --layers/--heads/...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub layers: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub kv_lora_rank: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// JSON field access with errors naming the field.

struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, field: &str) -> Option<&'a Value> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn opt_u64(&self, field: &str) -> Result<Option<u64>, ModelError> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Some(u)
                } else {
                    // Integral floats such as `8.0` are accepted; negatives and fractions are not.
                    n.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                        .map(|f| f as u64)
                }
            }
            _ => None,
        };
        n.map(Some)
            .ok_or_else(|| ModelError::bad_type(field, "a non-negative integer"))
    }

    fn req_u64(&self, field: &str) -> Result<u64, ModelError> {
        self.opt_u64(field)?
            .ok_or_else(|| ModelError::missing(field))
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>, ModelError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| ModelError::bad_type(field, "a finite number")),
            Some(_) => Err(ModelError::bad_type(field, "a number")),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, ModelError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ModelError::bad_type(field, "true or false")),
        }
    }

    fn opt_str(&self, field: &str) -> Result<Option<&'a str>, ModelError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ModelError::bad_type(field, "a string")),
        }
    }

    fn opt_array(&self, field: &str) -> Result<Option<&'a Vec<Value>>, ModelError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(ModelError::bad_type(field, "an array")),
        }
    }
}

fn bounded(field: &str, value: u64, max: u64) -> Result<u64, ModelError> {
    if value == 0 {
        return Err(ModelError::zero(field));
    }
    if value > max {
        return Err(ModelError::TooLarge {
            field: field.to_string(),
            value,
            max,
        });
    }
    Ok(value)
}

fn warn(code: &str, message: String) -> Warning {
    Warning {
        code: code.to_string(),
        message,
    }
}

impl ModelSpec {
    /// Parses and validates a Hugging Face `config.json`. Warnings (unknown `model_type`,
    /// ignored vision tower, unknown activation, ...) are returned, not printed.
    pub fn from_config_json(text: &str) -> Result<(ModelSpec, Vec<Warning>), ModelError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ModelError::Json {
            line: e.line(),
            column: e.column(),
            reason: json_reason(&e),
        })?;
        let Value::Object(top) = value else {
            return Err(ModelError::NotAnObject);
        };
        let mut warnings = Vec::new();
        // Multimodal wrappers (gemma3, llava-style) keep the language model in `text_config`.
        let obj = match top.get("text_config") {
            Some(Value::Object(t)) if !top.contains_key("hidden_size") => {
                warnings.push(warn(
                    "text_config_only",
                    "config has a `text_config`: only the language model is analysed (no vision tower)"
                        .to_string(),
                ));
                t
            }
            _ => &top,
        };
        let f = Fields { obj };
        let top_fields = Fields { obj: &top };
        let model_type = match f.opt_str("model_type")? {
            Some(s) => s.to_string(),
            None => top_fields
                .opt_str("model_type")?
                .map(|s| {
                    if s == "gemma3" {
                        "gemma3_text".to_string()
                    } else {
                        s.to_string()
                    }
                })
                .unwrap_or_default(),
        };
        let mt = model_type.as_str();
        if !KNOWN_MODEL_TYPES.contains(&mt) {
            warnings.push(warn(
                "unknown_model_type",
                format!(
                    "model_type {mt:?} is not a known family: analysed from its standard fields as a \
                     Llama-style decoder (RMSNorm, gated MLP, no biases); check the result"
                ),
            ));
        }
        let is = |names: &[&str]| names.contains(&mt);

        let name = f
            .opt_str("_name_or_path")?
            .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| model_type.clone());

        let hidden_size = bounded("hidden_size", f.req_u64("hidden_size")?, MAX_DIM)?;
        let num_hidden_layers = bounded(
            "num_hidden_layers",
            f.req_u64("num_hidden_layers")?,
            MAX_LAYERS,
        )?;
        let num_attention_heads = bounded(
            "num_attention_heads",
            f.req_u64("num_attention_heads")?,
            MAX_DIM,
        )?;
        let vocab_size = bounded("vocab_size", f.req_u64("vocab_size")?, MAX_DIM)?;
        let kv_field = f.opt_u64("num_key_value_heads")?;
        let num_key_value_heads = match kv_field {
            Some(k) => bounded("num_key_value_heads", k, MAX_DIM)?,
            None => num_attention_heads,
        };
        let max_position_embeddings = f.opt_u64("max_position_embeddings")?.unwrap_or(0);

        // --- attention -------------------------------------------------------------------
        let kv_lora = f.opt_u64("kv_lora_rank")?;
        let (attention, head_dim, v_head_dim, rotary_dims) = if let Some(kvl) = kv_lora {
            let kv_lora_rank = bounded("kv_lora_rank", kvl, MAX_DIM)?;
            let q_lora_rank = match f.opt_u64("q_lora_rank")? {
                Some(q) => Some(bounded("q_lora_rank", q, MAX_DIM)?),
                None => None,
            };
            let qk_rope = bounded("qk_rope_head_dim", f.req_u64("qk_rope_head_dim")?, MAX_DIM)?;
            let qk_nope = bounded("qk_nope_head_dim", f.req_u64("qk_nope_head_dim")?, MAX_DIM)?;
            let v = bounded("v_head_dim", f.req_u64("v_head_dim")?, MAX_DIM)?;
            let mla = MlaSpec {
                kv_lora_rank,
                q_lora_rank,
                qk_nope_head_dim: qk_nope,
                qk_rope_head_dim: qk_rope,
                v_head_dim: v,
            };
            (Attention::Mla(mla), qk_nope + qk_rope, v, qk_rope)
        } else {
            if num_key_value_heads > num_attention_heads {
                return Err(ModelError::Exceeds {
                    field: "num_key_value_heads".into(),
                    value: num_key_value_heads,
                    limit_field: "num_attention_heads".into(),
                    limit: num_attention_heads,
                });
            }
            if num_attention_heads % num_key_value_heads != 0 {
                return Err(ModelError::NotDivisible {
                    field: "num_attention_heads".into(),
                    value: num_attention_heads,
                    by_field: "num_key_value_heads".into(),
                    by: num_key_value_heads,
                });
            }
            let head_dim = match f.opt_u64("head_dim")? {
                Some(d) => bounded("head_dim", d, MAX_DIM)?,
                None => {
                    if hidden_size % num_attention_heads != 0 {
                        return Err(ModelError::NotDivisible {
                            field: "hidden_size".into(),
                            value: hidden_size,
                            by_field: "num_attention_heads".into(),
                            by: num_attention_heads,
                        });
                    }
                    hidden_size / num_attention_heads
                }
            };
            // transformers v5 moves it into `rope_parameters`
            let nested = match f.get("rope_parameters") {
                Some(Value::Object(o)) => match o.get("partial_rotary_factor") {
                    None => None,
                    Some(v) => Some(v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                        ModelError::bad_type(
                            "rope_parameters.partial_rotary_factor",
                            "a finite number",
                        )
                    })?),
                },
                _ => None,
            };
            let (factor, factor_field) = match f.opt_f64("partial_rotary_factor")? {
                Some(x) => (Some(x), "partial_rotary_factor"),
                None => match nested {
                    Some(x) => (Some(x), "rope_parameters.partial_rotary_factor"),
                    None => (f.opt_f64("rotary_pct")?, "rotary_pct"),
                },
            };
            let rotary_dims = match factor {
                Some(x) if !(x > 0.0 && x <= 1.0) => {
                    return Err(ModelError::BadValue {
                        field: factor_field.into(),
                        value: x.to_string(),
                        expected: "a fraction in (0, 1]",
                    })
                }
                // transformers: int(head_dim * factor)
                Some(x) => ((head_dim as f64 * x) as u64).max(1),
                None => head_dim,
            };
            (
                Attention::from_heads(num_attention_heads, num_key_value_heads),
                head_dim,
                head_dim,
                rotary_dims,
            )
        };

        // --- FFN ---------------------------------------------------------------------------
        let act_name = match f.opt_str("hidden_act")? {
            Some(a) => Some(a),
            None => f.opt_str("hidden_activation")?,
        };
        let act = match act_name {
            Some("silu") | Some("swish") | None => Activation::Silu,
            Some(a) if a.starts_with("gelu") => Activation::Gelu,
            Some("relu") => Activation::Relu,
            Some(other) => {
                warnings.push(warn(
                    "unknown_activation",
                    format!("hidden_act {other:?} is not known: its cost is counted as SiLU's"),
                ));
                Activation::Silu
            }
        };
        let gated = !is(&["gpt_neox"]);
        let intermediate = match f.opt_u64("intermediate_size")? {
            Some(i) => Some(bounded("intermediate_size", i, MAX_DIM)?),
            None => None,
        };

        let n_experts = {
            let mut e = None;
            for field in ["num_experts", "n_routed_experts", "num_local_experts"] {
                if let Some(v) = f.opt_u64(field)? {
                    if v > 0 {
                        e = Some((field, bounded(field, v, MAX_EXPERTS)?));
                        break;
                    }
                }
            }
            e
        };
        let (ffn, layer_moe) = if let Some((e_field, num_experts)) = n_experts {
            let top_k = bounded(
                "num_experts_per_tok",
                f.req_u64("num_experts_per_tok")?,
                MAX_EXPERTS,
            )?;
            if top_k > num_experts {
                return Err(ModelError::Exceeds {
                    field: "num_experts_per_tok".into(),
                    value: top_k,
                    limit_field: e_field.into(),
                    limit: num_experts,
                });
            }
            let moe_inter = f.opt_u64("moe_intermediate_size")?;
            let expert_intermediate_size = match moe_inter {
                Some(m) => bounded("moe_intermediate_size", m, MAX_DIM)?,
                None => intermediate.ok_or_else(|| ModelError::missing("moe_intermediate_size"))?,
            };
            let n_shared = f.opt_u64("n_shared_experts")?.unwrap_or(0);
            if n_shared > MAX_EXPERTS {
                return Err(ModelError::TooLarge {
                    field: "n_shared_experts".into(),
                    value: n_shared,
                    max: MAX_EXPERTS,
                });
            }
            let shared_field = f.opt_u64("shared_expert_intermediate_size")?;
            let (num_shared_experts, shared_intermediate_size, shared_expert_gate) =
                match shared_field {
                    Some(s) if s > 0 => (
                        1,
                        bounded("shared_expert_intermediate_size", s, MAX_DIM)?,
                        true,
                    ),
                    _ => (n_shared, n_shared * expert_intermediate_size, false),
                };
            let router_bias = f.opt_str("topk_method")? == Some("noaux_tc");
            // Which layers are MoE.
            let first_dense = f.opt_u64("first_k_dense_replace")?.unwrap_or(0);
            let freq = f.opt_u64("moe_layer_freq")?.unwrap_or(1).max(1);
            let step = f.opt_u64("decoder_sparse_step")?.unwrap_or(1).max(1);
            let mut mlp_only = Vec::new();
            if let Some(list) = f.opt_array("mlp_only_layers")? {
                for v in list {
                    match v.as_u64() {
                        Some(i) => mlp_only.push(i),
                        None => {
                            return Err(ModelError::bad_type(
                                "mlp_only_layers",
                                "an array of layer indices",
                            ))
                        }
                    }
                }
            }
            let layer_moe: Vec<bool> = (0..num_hidden_layers)
                .map(|i| {
                    i >= first_dense
                        && i % freq == 0
                        && (i + 1) % step == 0
                        && !mlp_only.contains(&i)
                })
                .collect();
            let moe = MoeSpec {
                num_experts,
                top_k,
                expert_intermediate_size,
                num_shared_experts,
                shared_intermediate_size,
                shared_expert_gate,
                router_bias,
            };
            (Ffn::Moe { gated, act, moe }, layer_moe)
        } else {
            (
                Ffn::Dense { gated, act },
                vec![false; num_hidden_layers as usize],
            )
        };
        let any_dense = layer_moe.iter().any(|m| !m);
        let intermediate_size = match (intermediate, any_dense) {
            (Some(i), _) => i,
            (None, false) => 0,
            (None, true) => return Err(ModelError::missing("intermediate_size")),
        };

        // --- sliding window ------------------------------------------------------------------
        let sliding_window = match f.opt_u64("sliding_window")? {
            Some(w) => Some(bounded("sliding_window", w, MAX_POSITIONS)?),
            None => None,
        };
        let use_sw = f.opt_bool("use_sliding_window")?;
        let layer_sliding: Vec<bool> = if let Some(types) = f.opt_array("layer_types")? {
            if types.len() as u64 != num_hidden_layers {
                return Err(ModelError::BadValue {
                    field: "layer_types".into(),
                    value: format!("{} entries", types.len()),
                    expected: "one entry per layer (num_hidden_layers)",
                });
            }
            let mut out = Vec::with_capacity(types.len());
            for t in types {
                match t.as_str() {
                    Some("full_attention") => out.push(false),
                    Some("sliding_attention") => out.push(true),
                    other => {
                        return Err(ModelError::BadValue {
                            field: "layer_types".into(),
                            value: format!("{other:?}"),
                            expected: "\"full_attention\" or \"sliding_attention\"",
                        })
                    }
                }
            }
            out
        } else {
            let n = num_hidden_layers;
            if sliding_window.is_none() || use_sw == Some(false) {
                vec![false; n as usize]
            } else if is(&["qwen2", "qwen3", "qwen2_moe", "qwen3_moe"]) {
                // Qwen: only with use_sliding_window, from max_window_layers on.
                let from = f.opt_u64("max_window_layers")?.unwrap_or(n);
                (0..n).map(|i| use_sw == Some(true) && i >= from).collect()
            } else if is(&["gemma2"]) {
                (0..n).map(|i| i % 2 == 0).collect()
            } else if is(&["gemma3", "gemma3_text"]) {
                let p = f.opt_u64("sliding_window_pattern")?.unwrap_or(6).max(1);
                (0..n).map(|i| (i + 1) % p != 0).collect()
            } else {
                vec![true; n as usize]
            }
        };
        let layers: Vec<LayerKind> = layer_moe
            .iter()
            .zip(&layer_sliding)
            .map(|(&moe, &sl)| LayerKind {
                moe,
                window: if sl { sliding_window } else { None },
            })
            .collect();
        if layer_sliding.iter().any(|s| *s) && sliding_window.is_none() {
            return Err(ModelError::missing("sliding_window"));
        }

        // --- structure the fields cannot say ------------------------------------------------
        let attention_bias = f.opt_bool("attention_bias")?;
        let (qkv_bias, o_bias) = if is(&["qwen2", "qwen2_moe"]) {
            (true, false)
        } else if is(&["gpt_neox"]) {
            let b = attention_bias.unwrap_or(true);
            (b, b)
        } else {
            let b = attention_bias.unwrap_or(false);
            (b, b)
        };
        let mlp_bias = f.opt_bool("mlp_bias")?.unwrap_or(is(&["gpt_neox"]));
        let norm = if is(&["gpt_neox"]) {
            NormKind::LayerNorm
        } else {
            NormKind::RmsNorm
        };
        let qk_norm = if is(&["qwen3", "qwen3_moe", "gemma3", "gemma3_text"]) {
            Some(QkNorm::PerHead)
        } else if is(&["olmoe"]) {
            Some(QkNorm::Whole)
        } else {
            None
        };
        let tie_default = is(&["gemma", "gemma2", "gemma3", "gemma3_text"]);
        let tie_word_embeddings = match f.opt_bool("tie_word_embeddings")? {
            Some(b) => b,
            None => top_fields
                .opt_bool("tie_word_embeddings")?
                .unwrap_or(tie_default),
        };
        let parallel_residual =
            is(&["gpt_neox"]) && f.opt_bool("use_parallel_residual")?.unwrap_or(true);
        let post_norms = is(&["gemma2", "gemma3", "gemma3_text"]);
        let embedding_scale = is(&["gemma", "gemma2", "gemma3", "gemma3_text"])
            || (is(&["minicpm", "minicpm3"]) && f.opt_f64("scale_emb")?.is_some());
        let attn_softcap = f.opt_f64("attn_logit_softcapping")?.is_some();
        let final_softcap = f.opt_f64("final_logit_softcapping")?.is_some();
        let fused_qkv = is(&["gpt_neox", "phi3"]);
        if f.opt_u64("num_nextn_predict_layers")?.unwrap_or(0) > 0 {
            warnings.push(warn(
                "mtp_layers_ignored",
                "multi-token-prediction layers (num_nextn_predict_layers) are not part of \
                 ordinary decoding and are not counted"
                    .to_string(),
            ));
        }

        let spec = ModelSpec {
            name,
            model_type,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            v_head_dim,
            vocab_size,
            intermediate_size,
            tie_word_embeddings,
            max_position_embeddings,
            attention,
            ffn,
            norm,
            rotary_dims,
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm,
            sliding_window,
            layers,
            parallel_residual,
            post_norms,
            embedding_scale,
            attn_softcap,
            final_softcap,
            fused_qkv,
        };
        spec.validate()?;
        Ok((spec, warnings))
    }

    /// Checks every invariant the cost model relies on. Called by the parser and by every
    /// constructor here; call it after editing public fields by hand.
    pub fn validate(&self) -> Result<(), ModelError> {
        bounded("hidden_size", self.hidden_size, MAX_DIM)?;
        bounded("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        bounded("num_attention_heads", self.num_attention_heads, MAX_DIM)?;
        bounded("num_key_value_heads", self.num_key_value_heads, MAX_DIM)?;
        bounded("head_dim", self.head_dim, MAX_DIM)?;
        bounded("v_head_dim", self.v_head_dim, MAX_DIM)?;
        bounded("vocab_size", self.vocab_size, MAX_DIM)?;
        if self.intermediate_size > MAX_DIM {
            bounded("intermediate_size", self.intermediate_size, MAX_DIM)?;
        }
        if self.layers.len() as u64 != self.num_hidden_layers {
            return Err(ModelError::BadValue {
                field: "num_hidden_layers".into(),
                value: self.num_hidden_layers.to_string(),
                expected: "the number of per-layer entries",
            });
        }
        if self.rotary_dims > self.head_dim {
            return Err(ModelError::Exceeds {
                field: "rotary_dims".into(),
                value: self.rotary_dims,
                limit_field: "head_dim".into(),
                limit: self.head_dim,
            });
        }
        match &self.attention {
            Attention::Mla(m) => {
                bounded("kv_lora_rank", m.kv_lora_rank, MAX_DIM)?;
                bounded("qk_rope_head_dim", m.qk_rope_head_dim, MAX_DIM)?;
                bounded("qk_nope_head_dim", m.qk_nope_head_dim, MAX_DIM)?;
                bounded("v_head_dim", m.v_head_dim, MAX_DIM)?;
                if let Some(q) = m.q_lora_rank {
                    bounded("q_lora_rank", q, MAX_DIM)?;
                }
            }
            Attention::Mha | Attention::Gqa | Attention::Mqa => {
                let (h, k) = (self.num_attention_heads, self.num_key_value_heads);
                if k > h {
                    return Err(ModelError::Exceeds {
                        field: "num_key_value_heads".into(),
                        value: k,
                        limit_field: "num_attention_heads".into(),
                        limit: h,
                    });
                }
                if h % k != 0 {
                    return Err(ModelError::NotDivisible {
                        field: "num_attention_heads".into(),
                        value: h,
                        by_field: "num_key_value_heads".into(),
                        by: k,
                    });
                }
            }
        }
        if let Some(m) = self.ffn.moe() {
            bounded("num_experts", m.num_experts, MAX_EXPERTS)?;
            bounded("num_experts_per_tok", m.top_k, m.num_experts)?;
            bounded("moe_intermediate_size", m.expert_intermediate_size, MAX_DIM)?;
            if m.shared_intermediate_size > MAX_DIM {
                bounded(
                    "shared_expert_intermediate_size",
                    m.shared_intermediate_size,
                    MAX_DIM,
                )?;
            }
        }
        let any_dense = self.layers.iter().any(|l| !l.moe);
        if any_dense {
            bounded("intermediate_size", self.intermediate_size, MAX_DIM)?;
        }
        if self.layers.iter().any(|l| l.moe) && self.ffn.moe().is_none() {
            return Err(ModelError::missing("num_experts"));
        }
        for l in &self.layers {
            if let Some(w) = l.window {
                bounded("sliding_window", w, MAX_POSITIONS)?;
            }
        }
        Ok(())
    }

    /// Depth sweep: keeps the first `n` layers, or repeats the last layer until there are `n`
    /// (the RooflineBench paper's "grown by copying the last layer").
    pub fn with_layers(&self, n: u64) -> Result<ModelSpec, ModelError> {
        let n = bounded("layers", n, MAX_LAYERS)?;
        let mut s = self.clone();
        let last = *s
            .layers
            .last()
            .ok_or_else(|| ModelError::zero("num_hidden_layers"))?;
        s.layers.resize(n as usize, last);
        s.num_hidden_layers = n;
        s.validate()?;
        Ok(s)
    }

    /// Applies structural overrides. `heads` keeps `head_dim` (the attention width changes);
    /// `kv_heads` reclassifies MHA/GQA/MQA; `kv_lora_rank` changes an MLA model's latent rank,
    /// or turns a standard-attention model into MLA with `qk_nope_head_dim = head_dim`,
    /// `qk_rope_head_dim = head_dim / 2` and `v_head_dim = head_dim` (DeepSeek-V2's ratios),
    /// with a warning saying so.
    pub fn with_overrides(&self, o: &Overrides) -> Result<(ModelSpec, Vec<Warning>), ModelError> {
        let mut s = match o.layers {
            Some(n) => self.with_layers(n)?,
            None => self.clone(),
        };
        let mut warnings = Vec::new();
        if let Some(h) = o.heads {
            s.num_attention_heads = bounded("heads", h, MAX_DIM)?;
            if !matches!(s.attention, Attention::Mla(_)) && o.kv_heads.is_none() {
                // Keep the group structure when it still divides, else fall back to MHA.
                let k = s.num_key_value_heads.min(h);
                s.num_key_value_heads = if h % k == 0 { k } else { h };
            } else if matches!(s.attention, Attention::Mla(_)) {
                s.num_key_value_heads = h;
            }
        }
        if let Some(k) = o.kv_heads {
            if matches!(s.attention, Attention::Mla(_)) {
                return Err(ModelError::BadOption {
                    option: "kv-heads",
                    value: k,
                    reason: "an MLA model has no separate KV heads (use --kv-lora-rank)",
                });
            }
            s.num_key_value_heads = bounded("kv-heads", k, MAX_DIM)?;
        }
        if let Some(r) = o.kv_lora_rank {
            let r = bounded("kv-lora-rank", r, MAX_DIM)?;
            match &mut s.attention {
                Attention::Mla(m) => m.kv_lora_rank = r,
                Attention::Mha | Attention::Gqa | Attention::Mqa => {
                    let d = s.head_dim;
                    let rope = (d / 2).max(1);
                    let mla = MlaSpec {
                        kv_lora_rank: r,
                        q_lora_rank: None,
                        qk_nope_head_dim: d,
                        qk_rope_head_dim: rope,
                        v_head_dim: d,
                    };
                    warnings.push(warn(
                        "mla_variant",
                        format!(
                            "standard attention replaced by MLA with kv_lora_rank {r}, \
                             qk_nope_head_dim {d}, qk_rope_head_dim {rope}, v_head_dim {d}"
                        ),
                    ));
                    s.attention = Attention::Mla(mla);
                    s.head_dim = d + rope;
                    s.v_head_dim = d;
                    s.rotary_dims = rope;
                    s.num_key_value_heads = s.num_attention_heads;
                    s.qk_norm = None;
                }
            }
        }
        if !matches!(s.attention, Attention::Mla(_)) {
            s.attention = Attention::from_heads(s.num_attention_heads, s.num_key_value_heads);
        }
        s.validate()?;
        Ok((s, warnings))
    }

    /// Layers with a MoE FFN.
    pub fn moe_layers(&self) -> u64 {
        self.layers.iter().filter(|l| l.moe).count() as u64
    }

    /// Whether any layer attends through a sliding window.
    pub fn uses_sliding_window(&self) -> bool {
        self.layers.iter().any(|l| l.window.is_some())
    }

    /// KV-cache elements stored per token per layer (K and V together; for MLA the latent
    /// `kv_lora_rank + qk_rope_head_dim` in the absorbed form). PITFALLS.md #3, #4.
    pub fn kv_elems_per_token_per_layer(&self, form: crate::cost::MlaForm) -> u64 {
        match (&self.attention, form) {
            (Attention::Mla(m), crate::cost::MlaForm::Absorbed) => m.latent_elems(),
            (Attention::Mla(m), crate::cost::MlaForm::Materialized) => {
                self.num_attention_heads * (m.qk_head_dim() + m.v_head_dim)
            }
            (Attention::Mha | Attention::Gqa | Attention::Mqa, _) => {
                self.num_key_value_heads * (self.head_dim + self.v_head_dim)
            }
        }
    }
}

/// `serde_json`'s message without its trailing " at line L column C" (we report those apart).
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
