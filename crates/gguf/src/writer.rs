//! GGUF v3 writer, and synthetic models with random weights in real block layouts.
//!
//! [`GgufWriter`] holds metadata and a tensor plan; [`GgufWriter::write`] streams the header
//! and then asks a callback for each tensor's bytes (so a 1 GB model never sits in memory as
//! f32). [`synthetic`] lays out a whole model from an HF config the way llama.cpp names and
//! shapes it (`token_embd.weight`, `blk.N.attn_q.weight`, ..., `output_norm.weight`,
//! `output.weight`; `ne[0]` is the input dimension of a matrix), with the metadata llama.cpp
//! needs and a minimal GPT-2 style vocabulary; [`write_synthetic`] fills it with seeded random
//! weights quantized by the kernels crate.
//!
//! Per-tensor types follow llama.cpp's rules (llama-quant.cpp `llama_tensor_get_type`): norms,
//! biases and the MoE router stay F32; a row length that is not a multiple of the block size
//! falls back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16: pitfall 24); the Q4_K_M
//! recipe uses Q6_K for `output.weight` and for `attn_v` / `ffn_down` in the layers
//! `use_more_bits` selects.

use crate::arch::ArchConfig;
use crate::reader::{align_up, tensor_size, DEFAULT_ALIGNMENT, MAGIC};
use crate::tokenizer::byte_to_unicode;
use crate::types::{Array, GgmlType, Value};
use crate::GgufError;
use rooflinebench_kernels::quant::{quantize, QuantType};
use rooflinebench_model::format::use_more_bits;
use std::io::Write;

/// How the weights of a synthetic model are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    F32,
    F16,
    Bf16,
    Quant(QuantType),
    /// llama.cpp's Q4_K_M mix (Q4_K, with Q6_K for the output head and some attn_v/ffn_down).
    Q4KM,
}

impl WeightFormat {
    pub fn parse(s: &str) -> Option<WeightFormat> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(WeightFormat::F32),
            "f16" => Some(WeightFormat::F16),
            "bf16" => Some(WeightFormat::Bf16),
            "q4_k_m" => Some(WeightFormat::Q4KM),
            other => QuantType::parse(other).map(WeightFormat::Quant),
        }
    }

    pub fn name(self) -> String {
        match self {
            WeightFormat::F32 => "f32".into(),
            WeightFormat::F16 => "f16".into(),
            WeightFormat::Bf16 => "bf16".into(),
            WeightFormat::Q4KM => "q4_k_m".into(),
            WeightFormat::Quant(q) => q.name().into(),
        }
    }

    /// llama.cpp `general.file_type` (`enum llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            WeightFormat::F32 => 0,
            WeightFormat::F16 => 1,
            WeightFormat::Bf16 => 32,
            WeightFormat::Q4KM => 15,
            WeightFormat::Quant(q) => match q {
                QuantType::Q4_0 => 2,
                QuantType::Q4_1 => 3,
                QuantType::Q8_0 => 7,
                QuantType::Q5_0 => 8,
                QuantType::Q5_1 => 9,
                QuantType::Q4K => 14,
                QuantType::Q5K => 16,
                QuantType::Q6K => 18,
            },
        }
    }

    fn base(self) -> GgmlType {
        match self {
            WeightFormat::F32 => GgmlType::F32,
            WeightFormat::F16 => GgmlType::F16,
            WeightFormat::Bf16 => GgmlType::BF16,
            WeightFormat::Q4KM => GgmlType::Q4_K,
            WeightFormat::Quant(q) => GgmlType::from_quant(q),
        }
    }
}

/// llama.cpp's fallback for a row length `ne0` the type's blocks do not divide.
pub fn fallback_type(ty: GgmlType, ne0: u64) -> GgmlType {
    if ne0.is_multiple_of(ty.block_elems()) {
        return ty;
    }
    let next = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if ne0.is_multiple_of(next.block_elems()) {
        next
    } else {
        GgmlType::F16
    }
}

/// How a synthetic tensor is filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Every element equals this value (norm weights: 1, biases: 0).
    Const(f32),
    /// Uniform in `[-a, a]`.
    Uniform(f32),
}

/// A tensor to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub init: Init,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// Metadata and a tensor plan, written as GGUF v3.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<PlannedTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_array(b: &mut Vec<u8>, a: &Array) {
    b.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => b.extend_from_slice(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => b.extend(v.iter().map(|&x| u8::from(x))),
        Array::String(v) => v.iter().for_each(|s| put_str(b, s)),
        Array::Array(v) => v.iter().for_each(|x| put_array(b, x)),
    }
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    b.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s),
        Value::Array(a) => put_array(b, a),
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds or replaces a metadata key.
    pub fn meta(&mut self, key: &str, value: Value) {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
    }

    /// Plans a tensor; its shape must suit its type.
    pub fn tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        init: Init,
    ) -> Result<(), GgufError> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::DuplicateTensor {
                tensor: name.to_string(),
            });
        }
        let (n_elements, n_bytes) = tensor_size(name, dims, ty)?;
        self.tensors.push(PlannedTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            init,
            n_elements,
            n_bytes,
        });
        Ok(())
    }

    /// The header (through the padding before the data) and each tensor's data offset.
    pub fn header(&self) -> Result<(Vec<u8>, Vec<u64>), GgufError> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let mut meta = self.metadata.clone();
        if self.alignment != DEFAULT_ALIGNMENT
            && !meta.iter().any(|(k, _)| k == "general.alignment")
        {
            let a = u32::try_from(self.alignment).map_err(|_| GgufError::BadAlignment {
                value: self.alignment.to_string(),
            })?;
            meta.push(("general.alignment".into(), Value::U32(a)));
        }
        b.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        for (k, v) in &meta {
            put_str(&mut b, k);
            put_value(&mut b, v);
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut off = 0u64;
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ty.id().to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            offsets.push(off);
            off = off
                .checked_add(t.n_bytes)
                .and_then(|o| align_up(o, self.alignment))
                .ok_or_else(|| GgufError::Tensor {
                    tensor: t.name.clone(),
                    reason: "offsets overflow".into(),
                })?;
        }
        let padded = align_up(b.len() as u64, self.alignment).unwrap_or(b.len() as u64);
        b.resize(padded as usize, 0);
        Ok((b, offsets))
    }

    /// Writes the file: header, then for each tensor the bytes `data` writes (exactly
    /// `n_bytes`, checked), padded to the alignment. Returns the bytes written.
    pub fn write<W: Write>(
        &self,
        out: &mut W,
        mut data: impl FnMut(
            &PlannedTensor,
            &mut dyn FnMut(&[u8]) -> Result<(), GgufError>,
        ) -> Result<(), GgufError>,
    ) -> Result<u64, GgufError> {
        let (header, _) = self.header()?;
        out.write_all(&header).map_err(GgufError::Write)?;
        let mut total = header.len() as u64;
        for t in &self.tensors {
            let mut written = 0u64;
            let mut sink = |bytes: &[u8]| -> Result<(), GgufError> {
                written += bytes.len() as u64;
                out.write_all(bytes).map_err(GgufError::Write)
            };
            data(t, &mut sink)?;
            if written != t.n_bytes {
                return Err(GgufError::Tensor {
                    tensor: t.name.clone(),
                    reason: format!("{written} bytes written, expected {}", t.n_bytes),
                });
            }
            let end = total + written;
            let pad = align_up(end, self.alignment).unwrap_or(end) - end;
            out.write_all(&vec![0u8; pad as usize])
                .map_err(GgufError::Write)?;
            total = end + pad;
        }
        Ok(total)
    }
}

/// Encodes f32 values (a whole number of rows) as `ty`.
pub fn encode(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, GgufError> {
    let bad = |reason: String| GgufError::Tensor {
        tensor: format!("<{} data>", ty.name()),
        reason,
    };
    Ok(match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        other => {
            let q = other
                .quant()
                .ok_or_else(|| bad("the writer cannot encode this type".into()))?;
            quantize(q, x).map_err(|e| bad(e.to_string()))?
        }
    })
}

/// xorshift64*: deterministic, seedable, fast enough for a gigabyte of weights.
struct Rng(u64);
impl Rng {
    fn new(seed: u64, name: &str) -> Rng {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
        }
        Rng(h | 1)
    }
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Writes one planned tensor's random (or constant) contents through `sink`, in row chunks.
pub fn fill_tensor(
    t: &PlannedTensor,
    seed: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), GgufError>,
) -> Result<(), GgufError> {
    let ne0 = t.dims.first().copied().unwrap_or(1).max(1);
    let rows = t.n_elements / ne0;
    let chunk_rows = (1u64 << 20).div_ceil(ne0).max(1);
    let mut rng = Rng::new(seed, &t.name);
    let mut r = 0;
    let mut buf = Vec::new();
    while r < rows {
        let n = chunk_rows.min(rows - r);
        let len = usize::try_from(n * ne0).map_err(|_| GgufError::Tensor {
            tensor: t.name.clone(),
            reason: "too large for this machine".into(),
        })?;
        buf.clear();
        match t.init {
            Init::Const(c) => buf.resize(len, c),
            Init::Uniform(a) => buf.extend((0..len).map(|_| (rng.next_f32() * 2.0 - 1.0) * a)),
        }
        let bytes = encode(t.ty, &buf).map_err(|e| match e {
            GgufError::Tensor { reason, .. } => GgufError::Tensor {
                tensor: t.name.clone(),
                reason,
            },
            e => e,
        })?;
        sink(&bytes)?;
        r += n;
    }
    Ok(())
}

/// Special token of the synthetic vocabulary (bos = eos).
pub const SYNTHETIC_EOS: &str = "<|endoftext|>";
/// Merges of the synthetic vocabulary, in rank order (GPT-2 byte-level spelling, `Ġ` = space).
pub const SYNTHETIC_MERGES: &[&str] = &[
    "Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "a t", "e n", "Ġ o", "o r",
];

/// A minimal vocabulary: `tokenizer.ggml.tokens`, `token_type`, `merges` and the eos id.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub eos: u32,
}

/// A minimal GPT-2 byte-level vocabulary of exactly `vocab` tokens: the 256 byte tokens, the
/// merge results, `<|endoftext|>` (control), then unique filler tokens.
pub fn synthetic_vocab(vocab: u64) -> Result<SyntheticVocab, GgufError> {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| byte_to_unicode(b).to_string())
        .collect();
    let mut types = vec![1i32; 256];
    for m in SYNTHETIC_MERGES {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    let eos = tokens.len() as u32;
    tokens.push(SYNTHETIC_EOS.to_string());
    types.push(3);
    let vocab = usize::try_from(vocab).unwrap_or(usize::MAX);
    if vocab < tokens.len() {
        return Err(GgufError::Config {
            field: "vocab_size".into(),
            reason: format!(
                "{vocab} is smaller than the {} tokens of the minimal vocabulary",
                tokens.len()
            ),
        });
    }
    if vocab > 16_000_000 {
        return Err(GgufError::Config {
            field: "vocab_size".into(),
            reason: format!("{vocab} is absurdly large"),
        });
    }
    let mut i = 0;
    while tokens.len() < vocab {
        tokens.push(format!("<|filler_{i}|>"));
        types.push(1);
        i += 1;
    }
    let merges = SYNTHETIC_MERGES.iter().map(|s| s.to_string()).collect();
    Ok(SyntheticVocab {
        tokens,
        types,
        merges,
        eos,
    })
}

/// The plan (metadata + tensor list) of a synthetic model.
pub fn synthetic(cfg: &ArchConfig, format: WeightFormat) -> Result<GgufWriter, GgufError> {
    let mut w = GgufWriter::new();
    let a = cfg.arch;
    let k = |s: &str| format!("{a}.{s}");
    let u32v = |field: &str, v: u64| -> Result<Value, GgufError> {
        u32::try_from(v)
            .map(Value::U32)
            .map_err(|_| GgufError::Config {
                field: field.to_string(),
                reason: format!("{v} does not fit in u32"),
            })
    };
    w.meta("general.architecture", Value::String(a.to_string()));
    w.meta(
        "general.name",
        Value::String(format!("rooflinebench synthetic {a} {}", format.name())),
    );
    w.meta("general.file_type", Value::U32(format.file_type()));
    if matches!(format, WeightFormat::Quant(_) | WeightFormat::Q4KM) {
        w.meta("general.quantization_version", Value::U32(2));
    }
    w.meta(
        &k("context_length"),
        u32v("max_position_embeddings", cfg.context)?,
    );
    w.meta(&k("embedding_length"), u32v("hidden_size", cfg.hidden)?);
    w.meta(&k("block_count"), u32v("num_hidden_layers", cfg.layers)?);
    w.meta(
        &k("feed_forward_length"),
        u32v("intermediate_size", cfg.ff)?,
    );
    w.meta(
        &k("attention.head_count"),
        u32v("num_attention_heads", cfg.heads)?,
    );
    w.meta(
        &k("attention.layer_norm_rms_epsilon"),
        Value::F32(cfg.rms_eps as f32),
    );
    w.meta(&k("rope.freq_base"), Value::F32(cfg.rope_theta as f32));
    w.meta(&k("vocab_size"), u32v("vocab_size", cfg.vocab)?);
    match &cfg.mla {
        Some(m) => {
            // llama.cpp's converter stores MLA as MQA over the latent (one KV head of
            // kv_lora_rank + rope), with the per-head sizes under the *_mla keys.
            w.meta(&k("attention.head_count_kv"), Value::U32(1));
            // Always written (0 = no q LoRA): llama.cpp requires the key for deepseek2 and
            // refuses a file without it ("key not found"), as convert_hf_to_gguf.py writes it.
            w.meta(
                &k("attention.q_lora_rank"),
                u32v("q_lora_rank", m.q_lora_rank.unwrap_or(0))?,
            );
            w.meta(
                &k("attention.kv_lora_rank"),
                u32v("kv_lora_rank", m.kv_lora_rank)?,
            );
            w.meta(
                &k("attention.key_length"),
                u32v("kv_lora_rank", m.kv_lora_rank + m.qk_rope)?,
            );
            w.meta(
                &k("attention.value_length"),
                u32v("kv_lora_rank", m.kv_lora_rank)?,
            );
            w.meta(
                &k("attention.key_length_mla"),
                u32v("qk_nope_head_dim", m.qk_nope + m.qk_rope)?,
            );
            w.meta(
                &k("attention.value_length_mla"),
                u32v("v_head_dim", m.v_head)?,
            );
            w.meta(
                &k("rope.dimension_count"),
                u32v("qk_rope_head_dim", m.qk_rope)?,
            );
        }
        None => {
            w.meta(
                &k("attention.head_count_kv"),
                u32v("num_key_value_heads", cfg.kv_heads)?,
            );
            w.meta(&k("attention.key_length"), u32v("head_dim", cfg.head_dim)?);
            w.meta(
                &k("attention.value_length"),
                u32v("head_dim", cfg.head_dim)?,
            );
            w.meta(&k("rope.dimension_count"), u32v("head_dim", cfg.head_dim)?);
        }
    }
    if let Some(m) = &cfg.moe {
        w.meta(&k("expert_count"), u32v("num_experts", m.experts)?);
        w.meta(
            &k("expert_used_count"),
            u32v("num_experts_per_tok", m.used)?,
        );
        w.meta(
            &k("expert_feed_forward_length"),
            u32v("moe_intermediate_size", m.ff)?,
        );
        if a == "deepseek2" {
            w.meta(
                &k("expert_shared_count"),
                u32v("n_shared_experts", m.shared)?,
            );
            w.meta(
                &k("leading_dense_block_count"),
                u32v("first_k_dense_replace", m.leading_dense)?,
            );
            w.meta(&k("expert_weights_scale"), Value::F32(m.scale as f32));
            w.meta(&k("expert_weights_norm"), Value::Bool(m.norm_topk));
            w.meta(&k("expert_gating_func"), Value::U32(m.gating as u32));
        }
    }
    let SyntheticVocab {
        tokens,
        types,
        merges,
        eos,
    } = synthetic_vocab(cfg.vocab)?;
    w.meta("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.meta("tokenizer.ggml.pre", Value::String("default".into()));
    w.meta("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    w.meta("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    w.meta("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
    w.meta("tokenizer.ggml.bos_token_id", Value::U32(eos));
    w.meta("tokenizer.ggml.eos_token_id", Value::U32(eos));
    w.meta("tokenizer.ggml.add_bos_token", Value::Bool(false));

    let n_layers = cfg.layers;
    let matrix = |name: &str, layer: Option<u64>, ne0: u64| -> GgmlType {
        let ty = match (format, layer) {
            (WeightFormat::Q4KM, _) if name == "output.weight" => GgmlType::Q6_K,
            (WeightFormat::Q4KM, Some(i))
                if (name.ends_with("attn_v.weight") || name.contains("ffn_down"))
                    && use_more_bits(i, n_layers) =>
            {
                GgmlType::Q6_K
            }
            _ => format.base(),
        };
        fallback_type(ty, ne0)
    };
    let std = Init::Uniform(0.02 * 3f32.sqrt());
    let ones = Init::Const(1.0);
    let mul = |x: u64, y: u64, f: &str| {
        x.checked_mul(y).ok_or_else(|| GgufError::Config {
            field: f.to_string(),
            reason: "size overflows".into(),
        })
    };
    let h = cfg.hidden;
    w.tensor(
        "token_embd.weight",
        &[h, cfg.vocab],
        matrix("token_embd.weight", None, h),
        std,
    )?;
    w.tensor("output_norm.weight", &[h], GgmlType::F32, ones)?;
    if !cfg.tied {
        w.tensor(
            "output.weight",
            &[h, cfg.vocab],
            matrix("output.weight", None, h),
            std,
        )?;
    }
    for i in 0..n_layers {
        let b = |s: &str| format!("blk.{i}.{s}");
        let mat = |w: &mut GgufWriter, s: &str, dims: &[u64]| -> Result<(), GgufError> {
            let name = b(s);
            let ty = matrix(&name, Some(i), dims[0]);
            w.tensor(&name, dims, ty, std)
        };
        w.tensor(&b("attn_norm.weight"), &[h], GgmlType::F32, ones)?;
        match &cfg.mla {
            Some(m) => {
                let qk = m.qk_nope + m.qk_rope;
                match m.q_lora_rank {
                    Some(q) => {
                        mat(&mut w, "attn_q_a.weight", &[h, q])?;
                        w.tensor(&b("attn_q_a_norm.weight"), &[q], GgmlType::F32, ones)?;
                        mat(
                            &mut w,
                            "attn_q_b.weight",
                            &[q, mul(cfg.heads, qk, "qk_nope_head_dim")?],
                        )?;
                    }
                    None => mat(
                        &mut w,
                        "attn_q.weight",
                        &[h, mul(cfg.heads, qk, "qk_nope_head_dim")?],
                    )?,
                }
                mat(
                    &mut w,
                    "attn_kv_a_mqa.weight",
                    &[h, m.kv_lora_rank + m.qk_rope],
                )?;
                w.tensor(
                    &b("attn_kv_a_norm.weight"),
                    &[m.kv_lora_rank],
                    GgmlType::F32,
                    ones,
                )?;
                mat(
                    &mut w,
                    "attn_k_b.weight",
                    &[m.qk_nope, m.kv_lora_rank, cfg.heads],
                )?;
                mat(
                    &mut w,
                    "attn_v_b.weight",
                    &[m.kv_lora_rank, m.v_head, cfg.heads],
                )?;
                mat(
                    &mut w,
                    "attn_output.weight",
                    &[mul(cfg.heads, m.v_head, "v_head_dim")?, h],
                )?;
            }
            None => {
                let q = mul(cfg.heads, cfg.head_dim, "head_dim")?;
                let kv = mul(cfg.kv_heads, cfg.head_dim, "head_dim")?;
                mat(&mut w, "attn_q.weight", &[h, q])?;
                mat(&mut w, "attn_k.weight", &[h, kv])?;
                mat(&mut w, "attn_v.weight", &[h, kv])?;
                mat(&mut w, "attn_output.weight", &[q, h])?;
                if cfg.qkv_bias {
                    w.tensor(&b("attn_q.bias"), &[q], GgmlType::F32, std)?;
                    w.tensor(&b("attn_k.bias"), &[kv], GgmlType::F32, std)?;
                    w.tensor(&b("attn_v.bias"), &[kv], GgmlType::F32, std)?;
                }
                if cfg.qk_norm {
                    w.tensor(
                        &b("attn_q_norm.weight"),
                        &[cfg.head_dim],
                        GgmlType::F32,
                        ones,
                    )?;
                    w.tensor(
                        &b("attn_k_norm.weight"),
                        &[cfg.head_dim],
                        GgmlType::F32,
                        ones,
                    )?;
                }
            }
        }
        w.tensor(&b("ffn_norm.weight"), &[h], GgmlType::F32, ones)?;
        match &cfg.moe {
            Some(m) if i >= m.leading_dense => {
                w.tensor(
                    &b("ffn_gate_inp.weight"),
                    &[h, m.experts],
                    GgmlType::F32,
                    std,
                )?;
                if m.gating == 2 {
                    w.tensor(
                        &b("exp_probs_b.bias"),
                        &[m.experts],
                        GgmlType::F32,
                        Init::Const(0.0),
                    )?;
                }
                mat(&mut w, "ffn_gate_exps.weight", &[h, m.ff, m.experts])?;
                mat(&mut w, "ffn_up_exps.weight", &[h, m.ff, m.experts])?;
                mat(&mut w, "ffn_down_exps.weight", &[m.ff, h, m.experts])?;
                if m.shared > 0 {
                    mat(&mut w, "ffn_gate_shexp.weight", &[h, m.shared_ff])?;
                    mat(&mut w, "ffn_up_shexp.weight", &[h, m.shared_ff])?;
                    mat(&mut w, "ffn_down_shexp.weight", &[m.shared_ff, h])?;
                }
            }
            _ => {
                mat(&mut w, "ffn_gate.weight", &[h, cfg.ff])?;
                mat(&mut w, "ffn_up.weight", &[h, cfg.ff])?;
                mat(&mut w, "ffn_down.weight", &[cfg.ff, h])?;
            }
        }
    }
    Ok(w)
}

/// Writes a synthetic model: plan from `cfg` and `format`, seeded random weights.
pub fn write_synthetic<W: Write>(
    cfg: &ArchConfig,
    format: WeightFormat,
    seed: u64,
    out: &mut W,
) -> Result<u64, GgufError> {
    let plan = synthetic(cfg, format)?;
    plan.write(out, |t, sink| fill_tensor(t, seed, sink))
}
