//! Storage formats: weight formats with their exact block layout, llama.cpp's per-tensor
//! quantization recipes, and KV-cache formats.
//!
//! Bytes are exact, block scales included (PITFALLS.md "Physical limits": Q8_0 8.5 bits per
//! weight, Q4_0 4.5, Q4_1 5.0, Q5_0 5.5, Q5_1 6.0, Q4_K 4.5, Q5_K 5.5, Q6_K 6.5625). Block
//! layouts are those of ggml (`ggml-common.h`: `block_q8_0` = f16 scale + 32 x i8 = 34 bytes,
//! `block_q4_K` = 2 x f16 + 12 scale bytes + 128 nibble bytes = 144 bytes per 256 weights, ...).
//!
//! A recipe decides the format of every tensor. [`Recipe::Uniform`] stores every matrix in one
//! format; [`Recipe::Q4KM`] / [`Recipe::Q5KM`] follow llama.cpp's `llama_tensor_get_type`
//! (`src/llama-quant.cpp`): Q6_K for the output head, for `attn_v` and `ffn_down` on the
//! "more bits" layers, Q5_K/Q6_K for fused `attn_qkv`. K-quants need the tensor's inner
//! dimension divisible by 256: otherwise llama.cpp falls back per tensor (Q4_K -> Q5_0,
//! Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if even 32 does not divide it), and so do we
//! (PITFALLS.md #24). In every recipe 1-D tensors (norm weights, biases) and MoE router matrices
//! stay F32, as llama.cpp's converter and quantizer leave them.
//!
//! Not modelled: importance-matrix (IQ*) formats, Q2_K/Q3_K recipes, a file's actual types (read
//! the GGUF for those: labels lie, PITFALLS.md "read the file, not the label").

use crate::error::ModelError;
use crate::hardware::Precision;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// A storage format of one weight tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

const WEIGHT_NAMES: &str =
    "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_m, q5_k_m";

impl WeightFormat {
    pub const ALL: [WeightFormat; 11] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::Bf16,
        WeightFormat::Q8_0,
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
        WeightFormat::Q5_0,
        WeightFormat::Q5_1,
        WeightFormat::Q4K,
        WeightFormat::Q5K,
        WeightFormat::Q6K,
    ];

    /// ggml's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q4_1 => "q4_1",
            WeightFormat::Q5_0 => "q5_0",
            WeightFormat::Q5_1 => "q5_1",
            WeightFormat::Q4K => "q4_k",
            WeightFormat::Q5K => "q5_k",
            WeightFormat::Q6K => "q6_k",
        }
    }

    /// Parses a name case-insensitively (`Q4_K`, `q4_k`, `q4k` all work).
    pub fn parse(s: &str) -> Result<WeightFormat, ModelError> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let f = match norm.as_str() {
            "f32" | "fp32" => WeightFormat::F32,
            "f16" | "fp16" => WeightFormat::F16,
            "bf16" => WeightFormat::Bf16,
            "q8_0" => WeightFormat::Q8_0,
            "q4_0" => WeightFormat::Q4_0,
            "q4_1" => WeightFormat::Q4_1,
            "q5_0" => WeightFormat::Q5_0,
            "q5_1" => WeightFormat::Q5_1,
            "q4_k" | "q4k" => WeightFormat::Q4K,
            "q5_k" | "q5k" => WeightFormat::Q5K,
            "q6_k" | "q6k" => WeightFormat::Q6K,
            _ => {
                return Err(ModelError::UnknownWeightFormat {
                    name: s.to_string(),
                    expected: WEIGHT_NAMES,
                })
            }
        };
        Ok(f)
    }

    /// Weights per block (1 for the float formats).
    pub fn block_size(self) -> u64 {
        match self {
            WeightFormat::F32 | WeightFormat::F16 | WeightFormat::Bf16 => 1,
            WeightFormat::Q8_0
            | WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1 => 32,
            WeightFormat::Q4K | WeightFormat::Q5K | WeightFormat::Q6K => 256,
        }
    }

    /// Bytes per block, scales and minimums included (ggml-common.h).
    pub fn bytes_per_block(self) -> u64 {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::F16 | WeightFormat::Bf16 => 2,
            WeightFormat::Q8_0 => 34, // f16 d + 32 x i8
            WeightFormat::Q4_0 => 18, // f16 d + 16 bytes of nibbles
            WeightFormat::Q4_1 => 20, // f16 d, f16 m + 16
            WeightFormat::Q5_0 => 22, // f16 d + 4 bytes high bits + 16
            WeightFormat::Q5_1 => 24, // f16 d, f16 m + 4 + 16
            WeightFormat::Q4K => 144, // 2 x f16 + 12 scales + 128
            WeightFormat::Q5K => 176, // 2 x f16 + 12 scales + 32 high bits + 128
            WeightFormat::Q6K => 210, // 128 low + 64 high + 16 scales + f16 d
        }
    }

    /// Effective bits per weight (exact: `8 * bytes_per_block / block_size`).
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.bytes_per_block() as f64 / self.block_size() as f64
    }

    pub fn is_k_quant(self) -> bool {
        matches!(
            self,
            WeightFormat::Q4K | WeightFormat::Q5K | WeightFormat::Q6K
        )
    }

    /// The arithmetic path a matrix product with these weights runs on: floats on their own
    /// path, block-quantized weights on int8 dot products against q8 activations (llama.cpp).
    pub fn compute(self) -> Precision {
        match self {
            WeightFormat::F32 => Precision::F32,
            WeightFormat::F16 => Precision::F16,
            WeightFormat::Bf16 => Precision::Bf16,
            WeightFormat::Q8_0
            | WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1
            | WeightFormat::Q4K
            | WeightFormat::Q5K
            | WeightFormat::Q6K => Precision::Int8,
        }
    }

    /// The format a tensor with inner dimension `inner` really gets when `self` is requested:
    /// llama.cpp's fallback for K-quants (PITFALLS.md #24), then F16 when even a 32-block does
    /// not divide the row. Float formats never change.
    pub fn fit(self, inner: u64) -> WeightFormat {
        let mut f = self;
        if f.is_k_quant() && !inner.is_multiple_of(256) {
            f = match f {
                WeightFormat::Q4K => WeightFormat::Q5_0,
                WeightFormat::Q5K => WeightFormat::Q5_1,
                _ => WeightFormat::Q8_0,
            };
        }
        if !inner.is_multiple_of(f.block_size()) {
            f = WeightFormat::F16;
        }
        f
    }

    /// Exact bytes of `rows` rows of `inner` weights. The caller has already applied
    /// [`WeightFormat::fit`], so `inner` is a multiple of the block size; a partial block is
    /// rounded up all the same.
    pub(crate) fn row_bytes(self, inner: u64) -> u128 {
        let blocks = inner.div_ceil(self.block_size());
        blocks as u128 * self.bytes_per_block() as u128
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The role of a weight tensor, named as in GGUF (`blk.N.attn_v.weight` is `AttnV`), because
/// llama.cpp's recipes key on these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorRole {
    TokenEmbd,
    /// The LM head (`output.weight`); for a tied model the token embedding plays this role.
    Output,
    AttnQ,
    AttnK,
    AttnV,
    /// A fused QKV matrix (gpt_neox, phi3).
    AttnQkv,
    AttnOutput,
    /// MLA `q_a_proj` / `q_proj` (no q LoRA) / `q_b_proj` / `kv_a_proj_with_mqa` / `kv_b_proj`.
    MlaQA,
    MlaQB,
    MlaKvA,
    MlaKvB,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    FfnGateShexp,
    FfnUpShexp,
    FfnDownShexp,
    /// MoE router (`ffn_gate_inp`) and Qwen2-MoE's shared-expert gate: never quantized.
    Router,
}

/// Facts about the model a recipe needs besides the tensor itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipeContext {
    pub n_layers: u64,
    /// Routed experts per MoE layer (0 for a dense model): llama.cpp treats 8-expert models
    /// (Mixtral) specially.
    pub n_experts: u64,
    /// Whether the model has a separate `output.weight` (untied head).
    pub has_output: bool,
}

/// How the weights of a model are stored: one format for every matrix, or a llama.cpp recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// Every matrix in this format (with the K-quant fallback of PITFALLS.md #24); norms,
    /// biases and routers F32.
    Uniform(WeightFormat),
    /// llama.cpp `Q4_K_M`.
    Q4KM,
    /// llama.cpp `Q5_K_M`.
    Q5KM,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe::Uniform(WeightFormat::F16)
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third layer
/// in between get more bits in the `_M` recipes.
pub fn use_more_bits(i_layer: u64, n_layers: u64) -> bool {
    let eighth = n_layers / 8;
    i_layer < eighth || i_layer >= 7 * n_layers / 8 || (i_layer - eighth) % 3 == 2
}

impl Recipe {
    /// Parses `f16`, `q4_0`, ... (uniform) or a recipe name `q4_k_m`, `q5_k_m`.
    pub fn parse(s: &str) -> Result<Recipe, ModelError> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        match norm.as_str() {
            "q4_k_m" | "q4km" => Ok(Recipe::Q4KM),
            "q5_k_m" | "q5km" => Ok(Recipe::Q5KM),
            _ => WeightFormat::parse(s).map(Recipe::Uniform),
        }
    }

    pub fn name(self) -> String {
        match self {
            Recipe::Uniform(f) => f.name().to_string(),
            Recipe::Q4KM => "q4_k_m".to_string(),
            Recipe::Q5KM => "q5_k_m".to_string(),
        }
    }

    /// The format the tensor of `role` in layer `layer` (ignored for global tensors) with
    /// inner dimension `inner` is stored in.
    pub fn format_for(
        self,
        role: TensorRole,
        layer: u64,
        inner: u64,
        ctx: &RecipeContext,
    ) -> WeightFormat {
        if role == TensorRole::Router {
            return WeightFormat::F32;
        }
        let (base, mixed) = match self {
            Recipe::Uniform(f) => return f.fit(inner),
            Recipe::Q4KM => (WeightFormat::Q4K, WeightFormat::Q5K),
            Recipe::Q5KM => (WeightFormat::Q5K, WeightFormat::Q6K),
        };
        let is_output =
            role == TensorRole::Output || (role == TensorRole::TokenEmbd && !ctx.has_output);
        if is_output {
            // llama.cpp: Q8_0 straight away when the row is not a multiple of 256, else Q6_K.
            return if !inner.is_multiple_of(256) {
                WeightFormat::Q8_0.fit(inner)
            } else {
                WeightFormat::Q6K
            };
        }
        let want = match role {
            TensorRole::AttnV if ctx.n_experts == 8 => WeightFormat::Q8_0,
            TensorRole::AttnV if use_more_bits(layer, ctx.n_layers) => WeightFormat::Q6K,
            TensorRole::AttnK if ctx.n_experts == 8 => WeightFormat::Q8_0,
            TensorRole::AttnOutput if ctx.n_experts == 8 => WeightFormat::Q5K.max_bits(base),
            TensorRole::AttnQkv => mixed,
            TensorRole::FfnDown | TensorRole::FfnDownExps | TensorRole::FfnDownShexp
                if use_more_bits(layer, ctx.n_layers) =>
            {
                WeightFormat::Q6K
            }
            _ => base,
        };
        want.fit(inner)
    }
}

impl WeightFormat {
    /// The one of `self` and `other` with more bits per weight.
    fn max_bits(self, other: WeightFormat) -> WeightFormat {
        if other.bytes_per_block() * self.block_size() > self.bytes_per_block() * other.block_size()
        {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The real format of individual weight tensors, e.g. read from a GGUF file (the gguf crate
/// fills it): labels lie, so a file is costed with its own per-tensor types (PITFALLS.md #24).
/// Keyed by role and layer (`None` for global tensors). A tensor not in the map falls back to
/// the [`Recipe`] of the cost options. A tied model has no `Output` entry: its head is the
/// token embedding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorFormats {
    map: HashMap<(TensorRole, Option<u64>), WeightFormat>,
}

impl TensorFormats {
    pub fn new() -> TensorFormats {
        TensorFormats::default()
    }

    /// Records the format of the tensor of `role` in `layer` (`None` for global tensors).
    pub fn insert(&mut self, role: TensorRole, layer: Option<u64>, format: WeightFormat) {
        self.map.insert((role, layer), format);
    }

    /// The recorded format of the tensor of `role` in `layer`, if any.
    pub fn get(&self, role: TensorRole, layer: Option<u64>) -> Option<WeightFormat> {
        self.map.get(&(role, layer)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The storage format of the KV cache (llama.cpp `--cache-type-k/-v`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum KvFormat {
    F32,
    #[default]
    F16,
    Bf16,
    Q8_0,
    Q4_0,
}

impl KvFormat {
    pub const ALL: [KvFormat; 5] = [
        KvFormat::F32,
        KvFormat::F16,
        KvFormat::Bf16,
        KvFormat::Q8_0,
        KvFormat::Q4_0,
    ];

    pub fn name(self) -> &'static str {
        self.as_weight().name()
    }

    pub fn parse(s: &str) -> Result<KvFormat, ModelError> {
        let bad = || ModelError::UnknownKvFormat {
            name: s.to_string(),
            expected: "f32, f16, bf16, q8_0, q4_0",
        };
        match WeightFormat::parse(s).map_err(|_| bad())? {
            WeightFormat::F32 => Ok(KvFormat::F32),
            WeightFormat::F16 => Ok(KvFormat::F16),
            WeightFormat::Bf16 => Ok(KvFormat::Bf16),
            WeightFormat::Q8_0 => Ok(KvFormat::Q8_0),
            WeightFormat::Q4_0 => Ok(KvFormat::Q4_0),
            _ => Err(bad()),
        }
    }

    /// The same block layout as a weight format.
    pub fn as_weight(self) -> WeightFormat {
        match self {
            KvFormat::F32 => WeightFormat::F32,
            KvFormat::F16 => WeightFormat::F16,
            KvFormat::Bf16 => WeightFormat::Bf16,
            KvFormat::Q8_0 => WeightFormat::Q8_0,
            KvFormat::Q4_0 => WeightFormat::Q4_0,
        }
    }

    /// Attention scores and values run on the KV element type: floats on their own path,
    /// quantized caches on int8 dot products.
    pub fn compute(self) -> Precision {
        self.as_weight().compute()
    }

    /// Exact bytes of one cached row of `elems` values (one token, one layer, K or V):
    /// whole blocks, scales included.
    pub(crate) fn row_bytes(self, elems: u64) -> u128 {
        self.as_weight().row_bytes(elems)
    }
}

impl fmt::Display for KvFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_weight_match_ggml() {
        let expect = [
            (WeightFormat::Q8_0, 8.5),
            (WeightFormat::Q4_0, 4.5),
            (WeightFormat::Q4_1, 5.0),
            (WeightFormat::Q5_0, 5.5),
            (WeightFormat::Q5_1, 6.0),
            (WeightFormat::Q4K, 4.5),
            (WeightFormat::Q5K, 5.5),
            (WeightFormat::Q6K, 6.5625),
            (WeightFormat::F16, 16.0),
        ];
        for (f, bits) in expect {
            assert_eq!(f.bits_per_weight(), bits, "{f}");
        }
    }

    #[test]
    fn names_round_trip() {
        for f in WeightFormat::ALL {
            assert_eq!(WeightFormat::parse(f.name()).unwrap(), f);
            assert_eq!(Recipe::parse(f.name()).unwrap(), Recipe::Uniform(f));
        }
        for k in KvFormat::ALL {
            assert_eq!(KvFormat::parse(k.name()).unwrap(), k);
        }
        assert_eq!(Recipe::parse("Q4_K_M").unwrap(), Recipe::Q4KM);
        assert!(WeightFormat::parse("q3_k").is_err());
        assert!(KvFormat::parse("q4_k").is_err());
    }

    #[test]
    fn pitfall_24_tensor_formats_override_the_recipe_per_tensor() {
        use crate::cost::{CostModel, CostOptions, Phase};
        use crate::op::OpKind;
        let (spec, _) = crate::zoo::lookup("smollm2-135m").unwrap().spec().unwrap();
        let opts = CostOptions {
            weights: Recipe::Uniform(WeightFormat::Q4_1),
            ..CostOptions::default()
        };
        let phase = Phase::Decode { context: 16 };
        let plain = CostModel::new(&spec, &opts).unwrap().table(phase).unwrap();
        // An empty map changes nothing.
        let none = TensorFormats::new();
        let same = CostModel::with_formats(&spec, &opts, &none).unwrap();
        assert_eq!(same.table(phase).unwrap(), plain);
        // A Q8_0 (tied) embedding, so a Q8_0 LM head, and a Q8_0 q_proj in layer 3 only.
        let mut f = TensorFormats::new();
        f.insert(TensorRole::TokenEmbd, None, WeightFormat::Q8_0);
        f.insert(TensorRole::AttnQ, Some(3), WeightFormat::Q8_0);
        let t = CostModel::with_formats(&spec, &opts, &f)
            .unwrap()
            .table(phase)
            .unwrap();
        let bytes = |t: &crate::cost::CostTable, kind: OpKind, layer: Option<u32>| {
            t.ops
                .iter()
                .find(|o| o.id.kind == kind && o.id.layer == layer)
                .unwrap()
                .weight_bytes
                .0
        };
        let h = spec.hidden_size;
        let v = spec.vocab_size;
        assert_eq!(bytes(&t, OpKind::LmHead, None), v * h / 32 * 34);
        assert_eq!(bytes(&plain, OpKind::LmHead, None), v * h / 32 * 20);
        assert_eq!(bytes(&t, OpKind::Embedding, None), h / 32 * 34);
        let q3 = bytes(&t, OpKind::QProj, Some(3));
        assert_eq!(q3 * 20, bytes(&plain, OpKind::QProj, Some(3)) * 34);
        assert_eq!(
            bytes(&t, OpKind::QProj, Some(2)),
            bytes(&plain, OpKind::QProj, Some(2))
        );
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_24_layers() {
        // n/8 = 3: layers 0..3, 21..24, and (i - 3) % 3 == 2 -> 5, 8, 11, 14, 17, 20.
        let more: Vec<u64> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(more, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }
}
