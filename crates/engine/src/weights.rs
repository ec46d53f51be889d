//! Model weights in memory: random from a seed, or read from Hugging Face safetensors files.
//!
//! Matrices are stored row-major `[out_features, in_features]` (the HF `nn.Linear` layout) in
//! the run's weight dtype (f32, f16 or bf16); norms and biases are always f32 (tiny, and the
//! cost model counts them as f32). Random weights are generated element by element into
//! freshly allocated buffers, so every page is written before anything is timed (PITFALLS.md
//! #23: untouched calloc pages would make decode look 2-3x faster than it is).
//!
//! The random generator is counter-based (SplitMix64 of `seed`, tensor name and element
//! index), so a model is the same for any thread count. Matrices are uniform in
//! `±sqrt(3 / in_features)` (unit output variance for unit input variance), norm weights
//! `1 ± 0.1`, biases `±0.1`, embeddings `±1`.
//!
//! Safetensors files are memory-mapped, their headers validated, and each tensor copied (and
//! converted to the run's dtype) into aligned buffers once, before any timing. Fused
//! checkpoints are split on load: Phi3's `qkv_proj`/`gate_up_proj` and GPT-NeoX's per-head
//! interleaved `query_key_value`.

use crate::arch::{ModelDef, Naming};
use crate::error::EngineError;
use rooflinebench_kernels::engine::convert::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use rooflinebench_kernels::engine::{MatRef, WeightData, WeightDtype};
use rooflinebench_model::spec::{ModelSpec, NormKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A weight matrix's elements.
#[derive(Clone, Debug)]
pub enum MatBuf {
    F32(Vec<f32>),
    F16(Vec<u16>),
    Bf16(Vec<u16>),
}

/// A row-major `rows x cols` weight matrix.
#[derive(Clone, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub buf: MatBuf,
}

impl Mat {
    pub fn view(&self) -> MatRef<'_> {
        let data = match &self.buf {
            MatBuf::F32(v) => WeightData::F32(v),
            MatBuf::F16(v) => WeightData::F16(v),
            MatBuf::Bf16(v) => WeightData::Bf16(v),
        };
        MatRef {
            rows: self.rows,
            cols: self.cols,
            data,
        }
    }

    pub fn dtype(&self) -> WeightDtype {
        match self.buf {
            MatBuf::F32(_) => WeightDtype::F32,
            MatBuf::F16(_) => WeightDtype::F16,
            MatBuf::Bf16(_) => WeightDtype::Bf16,
        }
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols * self.dtype().size()
    }

    /// Element `(r, c)` as f32 (slow; for reference code and tests).
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let i = r * self.cols + c;
        match &self.buf {
            MatBuf::F32(v) => v[i],
            MatBuf::F16(v) => f16_to_f32(v[i]),
            MatBuf::Bf16(v) => bf16_to_f32(v[i]),
        }
    }

    fn from_f32(rows: usize, cols: usize, data: Vec<f32>, dtype: WeightDtype) -> Mat {
        let buf = match dtype {
            WeightDtype::F32 => MatBuf::F32(data),
            WeightDtype::F16 => MatBuf::F16(data.iter().map(|&x| f32_to_f16(x)).collect()),
            WeightDtype::Bf16 => MatBuf::Bf16(data.iter().map(|&x| f32_to_bf16(x)).collect()),
        };
        Mat { rows, cols, buf }
    }
}

/// A norm's parameters (f32). `bias` only for LayerNorm.
#[derive(Clone, Debug)]
pub struct Norm {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// One decoder layer.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Norm,
    pub q: Mat,
    pub k: Mat,
    pub v: Mat,
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub o: Mat,
    pub o_bias: Option<Vec<f32>>,
    pub attn_post_norm: Option<Norm>,
    pub ffn_norm: Norm,
    pub gate: Option<Mat>,
    pub gate_bias: Option<Vec<f32>>,
    pub up: Mat,
    pub up_bias: Option<Vec<f32>>,
    pub down: Mat,
    pub down_bias: Option<Vec<f32>>,
    pub ffn_post_norm: Option<Norm>,
}

/// Every weight of a model.
#[derive(Clone, Debug)]
pub struct Weights {
    pub dtype: WeightDtype,
    pub embed: Mat,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Norm,
    /// `None` when tied to the embedding.
    pub lm_head: Option<Mat>,
}

impl Weights {
    /// The matrix the LM head multiplies by.
    pub fn head(&self) -> &Mat {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes of all weights as stored.
    pub fn bytes(&self) -> usize {
        let norm = |n: &Norm| 4 * (n.weight.len() + n.bias.as_ref().map_or(0, Vec::len));
        let ov = |v: &Option<Vec<f32>>| 4 * v.as_ref().map_or(0, Vec::len);
        let mut total = self.embed.bytes() + self.lm_head.as_ref().map_or(0, Mat::bytes);
        total += norm(&self.final_norm);
        for l in &self.layers {
            total += norm(&l.attn_norm) + norm(&l.ffn_norm);
            total += l.attn_post_norm.as_ref().map_or(0, norm)
                + l.ffn_post_norm.as_ref().map_or(0, norm);
            total += l.q.bytes() + l.k.bytes() + l.v.bytes() + l.o.bytes();
            total += l.gate.as_ref().map_or(0, Mat::bytes) + l.up.bytes() + l.down.bytes();
            total += ov(&l.q_bias) + ov(&l.k_bias) + ov(&l.v_bias) + ov(&l.o_bias);
            total += ov(&l.q_norm) + ov(&l.k_norm);
            total += ov(&l.gate_bias) + ov(&l.up_bias) + ov(&l.down_bias);
        }
        total
    }
}

/// Bytes the weights of `spec` take in `dtype` (matrices) plus f32 norms and biases, computed
/// before allocating anything.
pub fn weight_bytes(spec: &ModelSpec, dtype: WeightDtype) -> Result<u64, EngineError> {
    let s = spec;
    let over = || {
        EngineError::Model(rooflinebench_model::error::ModelError::Overflow {
            what: "the weight size",
        })
    };
    let m = |r: u64, c: u64| -> Option<u64> { r.checked_mul(c)?.checked_mul(dtype.size() as u64) };
    let h = s.hidden_size;
    let q = s.num_attention_heads * s.head_dim;
    let kv = s.num_key_value_heads * s.head_dim;
    let per_layer = (|| -> Option<u64> {
        let mut t = m(q, h)?
            .checked_add(m(kv, h)?)?
            .checked_add(m(kv, h)?)?
            .checked_add(m(h, q)?)?;
        let ffn = if s.ffn.gated() { 3 } else { 2 };
        t = t.checked_add(m(s.intermediate_size, h)?.checked_mul(ffn)?)?;
        // norms, biases (generous upper bound: a few vectors of the largest width)
        t = t.checked_add(16u64.checked_mul(h.max(q).max(s.intermediate_size))?)?;
        Some(t)
    })()
    .ok_or_else(over)?;
    let embed = m(s.vocab_size, h).ok_or_else(over)?;
    let head = if s.tie_word_embeddings { 0 } else { embed };
    per_layer
        .checked_mul(s.num_hidden_layers)
        .and_then(|x| x.checked_add(embed)?.checked_add(head))
        .ok_or_else(over)
}

// ------------------------------------------------------------------------------------------
// Logical tensors.

/// A tensor of the engine's model, independent of checkpoint naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Embed,
    FinalNorm,
    FinalNormBias,
    LmHead,
    Layer(usize, LKey),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LKey {
    AttnNorm,
    AttnNormBias,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    O,
    OBias,
    AttnPostNorm,
    FfnNorm,
    FfnNormBias,
    Gate,
    Up,
    Down,
    GateBias,
    UpBias,
    DownBias,
    FfnPostNorm,
}

impl Key {
    fn label(&self) -> String {
        match self {
            Key::Embed => "embed".into(),
            Key::FinalNorm => "final_norm".into(),
            Key::FinalNormBias => "final_norm_bias".into(),
            Key::LmHead => "lm_head".into(),
            Key::Layer(i, k) => format!("layers.{i}.{k:?}"),
        }
    }
}

/// Where tensors come from.
pub trait Source {
    /// A `rows x cols` matrix in `dtype`.
    fn mat(
        &mut self,
        key: Key,
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
    ) -> Result<Mat, EngineError>;
    /// A vector of `len` f32 (norm weights as stored in the checkpoint, biases).
    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError>;
}

/// Builds every weight of `def` from `src`. RMSNorm weights get the family's offset added.
pub fn build(
    def: &ModelDef,
    dtype: WeightDtype,
    src: &mut dyn Source,
) -> Result<Weights, EngineError> {
    let s = &def.spec;
    let h = s.hidden_size as usize;
    let hd = s.head_dim as usize;
    let nq = s.num_attention_heads as usize * hd;
    let nkv = s.num_key_value_heads as usize * hd;
    let inter = s.intermediate_size as usize;
    let vocab = s.vocab_size as usize;
    let ln = s.norm == NormKind::LayerNorm;
    let offset = def.arch.norm_weight_offset;
    let norm =
        |src: &mut dyn Source, w: Key, b: Option<Key>, len: usize| -> Result<Norm, EngineError> {
            let mut weight = src.vec(w, len)?;
            if !ln && offset != 0.0 {
                weight.iter_mut().for_each(|x| *x += offset);
            }
            let bias = match (ln, b) {
                (true, Some(b)) => Some(src.vec(b, len)?),
                _ => None,
            };
            Ok(Norm { weight, bias })
        };
    let embed = src.mat(Key::Embed, vocab, h, dtype)?;
    let mut layers = Vec::with_capacity(s.num_hidden_layers as usize);
    for i in 0..s.num_hidden_layers as usize {
        let k = |lk| Key::Layer(i, lk);
        let attn_norm = norm(src, k(LKey::AttnNorm), Some(k(LKey::AttnNormBias)), h)?;
        let q = src.mat(k(LKey::Q), nq, h, dtype)?;
        let kk = src.mat(k(LKey::K), nkv, h, dtype)?;
        let v = src.mat(k(LKey::V), nkv, h, dtype)?;
        let (q_bias, k_bias, v_bias) = if s.qkv_bias {
            (
                Some(src.vec(k(LKey::QBias), nq)?),
                Some(src.vec(k(LKey::KBias), nkv)?),
                Some(src.vec(k(LKey::VBias), nkv)?),
            )
        } else {
            (None, None, None)
        };
        let (q_norm, k_norm) = if s.qk_norm.is_some() {
            let mut qn = src.vec(k(LKey::QNorm), hd)?;
            let mut kn = src.vec(k(LKey::KNorm), hd)?;
            if offset != 0.0 {
                qn.iter_mut()
                    .chain(kn.iter_mut())
                    .for_each(|x| *x += offset);
            }
            (Some(qn), Some(kn))
        } else {
            (None, None)
        };
        let o = src.mat(k(LKey::O), h, nq, dtype)?;
        let o_bias = if s.o_bias {
            Some(src.vec(k(LKey::OBias), h)?)
        } else {
            None
        };
        let attn_post_norm = if s.post_norms {
            Some(norm(src, k(LKey::AttnPostNorm), None, h)?)
        } else {
            None
        };
        let ffn_norm = norm(src, k(LKey::FfnNorm), Some(k(LKey::FfnNormBias)), h)?;
        let gate = if s.ffn.gated() {
            Some(src.mat(k(LKey::Gate), inter, h, dtype)?)
        } else {
            None
        };
        let up = src.mat(k(LKey::Up), inter, h, dtype)?;
        let down = src.mat(k(LKey::Down), h, inter, dtype)?;
        let (gate_bias, up_bias, down_bias) = if s.mlp_bias {
            (
                if s.ffn.gated() {
                    Some(src.vec(k(LKey::GateBias), inter)?)
                } else {
                    None
                },
                Some(src.vec(k(LKey::UpBias), inter)?),
                Some(src.vec(k(LKey::DownBias), h)?),
            )
        } else {
            (None, None, None)
        };
        let ffn_post_norm = if s.post_norms {
            Some(norm(src, k(LKey::FfnPostNorm), None, h)?)
        } else {
            None
        };
        layers.push(LayerWeights {
            attn_norm,
            q,
            k: kk,
            v,
            q_bias,
            k_bias,
            v_bias,
            q_norm,
            k_norm,
            o,
            o_bias,
            attn_post_norm,
            ffn_norm,
            gate,
            gate_bias,
            up,
            up_bias,
            down,
            down_bias,
            ffn_post_norm,
        });
    }
    let final_norm = norm(src, Key::FinalNorm, Some(Key::FinalNormBias), h)?;
    let lm_head = if s.tie_word_embeddings {
        None
    } else {
        Some(src.mat(Key::LmHead, vocab, h, dtype)?)
    };
    Ok(Weights {
        dtype,
        embed,
        layers,
        final_norm,
        lm_head,
    })
}

// ------------------------------------------------------------------------------------------
// Random weights.

#[inline]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash_str(seed: u64, s: &str) -> u64 {
    s.bytes()
        .fold(splitmix64(seed), |h, b| splitmix64(h ^ b as u64))
}

/// Uniform in `[-1, 1)` for element `i` of the stream `stream`.
#[inline]
fn uniform(stream: u64, i: u64) -> f32 {
    let r = splitmix64(stream ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
    ((r >> 40) as f32) * (2.0 / (1u64 << 24) as f32) - 1.0
}

/// Random weights from a seed, generated on `threads` threads.
pub struct RandomSource {
    pub seed: u64,
    pub threads: usize,
    /// Subtracted from norm weights so that the family's offset brings them back to `1 ± 0.1`.
    pub norm_offset: f32,
}

impl RandomSource {
    fn fill(&self, key: Key, n: usize, scale: f32, shift: f32) -> Vec<f32> {
        let stream = hash_str(self.seed, &key.label());
        let mut out = vec![f32::NAN; n];
        let threads = self.threads.max(1);
        let chunk = n.div_ceil(threads).max(1 << 14);
        std::thread::scope(|sc| {
            for (ci, part) in out.chunks_mut(chunk).enumerate() {
                sc.spawn(move || {
                    let base = (ci * chunk) as u64;
                    for (j, v) in part.iter_mut().enumerate() {
                        *v = shift + scale * uniform(stream, base + j as u64);
                    }
                });
            }
        });
        out
    }
}

impl Source for RandomSource {
    fn mat(
        &mut self,
        key: Key,
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
    ) -> Result<Mat, EngineError> {
        let scale = match key {
            Key::Embed => 1.0,
            _ => (3.0 / cols.max(1) as f32).sqrt(),
        };
        let n = rows
            .checked_mul(cols)
            .ok_or_else(|| EngineError::bad_option("tensor", key.label(), "too large"))?;
        Ok(Mat::from_f32(
            rows,
            cols,
            self.fill(key, n, scale, 0.0),
            dtype,
        ))
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        let is_norm = matches!(
            key,
            Key::FinalNorm
                | Key::Layer(
                    _,
                    LKey::AttnNorm
                        | LKey::FfnNorm
                        | LKey::QNorm
                        | LKey::KNorm
                        | LKey::AttnPostNorm
                        | LKey::FfnPostNorm
                )
        );
        Ok(if is_norm {
            self.fill(key, len, 0.1, 1.0 - self.norm_offset)
        } else {
            self.fill(key, len, 0.1, 0.0)
        })
    }
}

// ------------------------------------------------------------------------------------------
// Safetensors.

struct StFile {
    path: PathBuf,
    map: memmap2::Mmap,
    header_len: usize,
    meta: safetensors::tensor::Metadata,
}

/// One or several safetensors files (a single `model.safetensors`, or the shards of a
/// `model.safetensors.index.json`), memory-mapped.
pub struct SafetensorsSource {
    files: Vec<StFile>,
    /// Tensor name -> file index.
    index: HashMap<String, usize>,
    naming: Naming,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Display path for errors about missing tensors.
    display: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SafetensorsSource {
    /// Opens `path`: a `.safetensors` file, a `model.safetensors.index.json`, or a folder
    /// holding either.
    pub fn open(path: &Path, def: &ModelDef) -> Result<SafetensorsSource, EngineError> {
        let mut files = Vec::new();
        let (shards, display): (Vec<PathBuf>, PathBuf) = if path.is_dir() {
            let single = path.join("model.safetensors");
            let index = path.join("model.safetensors.index.json");
            if single.exists() {
                (vec![single.clone()], single)
            } else if index.exists() {
                (read_index(&index)?, index)
            } else {
                return Err(EngineError::Io {
                    path: single,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no model.safetensors or model.safetensors.index.json in this folder",
                    ),
                });
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            (read_index(path)?, path.to_path_buf())
        } else {
            (vec![path.to_path_buf()], path.to_path_buf())
        };
        let mut index = HashMap::new();
        for p in shards {
            let f = std::fs::File::open(&p).map_err(io_err(&p))?;
            // SAFETY: the file is mapped read-only and only read while `self` lives; like every
            // mmap-based reader we assume no other process truncates it meanwhile.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(&p))?;
            let (header_len, meta) =
                safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
                    EngineError::BadSafetensors {
                        path: p.clone(),
                        reason: e.to_string(),
                    }
                })?;
            for name in meta.tensors().keys() {
                index.insert(name.clone(), files.len());
            }
            files.push(StFile {
                path: p,
                map,
                header_len,
                meta,
            });
        }
        let s = &def.spec;
        Ok(SafetensorsSource {
            files,
            index,
            naming: def.arch.naming,
            heads: s.num_attention_heads as usize,
            kv_heads: s.num_key_value_heads as usize,
            head_dim: s.head_dim as usize,
            display,
        })
    }

    /// The dtype the checkpoint stores its embedding in (the natural run dtype), if it is one
    /// the engine reads.
    pub fn stored_dtype(&self) -> Option<WeightDtype> {
        let (name, _) = self.locate(Key::Embed);
        let f = &self.files[*self.index.get(&name)?];
        match f.meta.info(&name)?.dtype {
            safetensors::Dtype::F32 => Some(WeightDtype::F32),
            safetensors::Dtype::F16 => Some(WeightDtype::F16),
            safetensors::Dtype::BF16 => Some(WeightDtype::Bf16),
            _ => None,
        }
    }

    /// The checkpoint name of a logical tensor, and which rows of it hold the tensor.
    fn locate(&self, key: Key) -> (String, RowPick) {
        let n = self.naming;
        let (hd, nh, nkv) = (self.head_dim, self.heads, self.kv_heads);
        let all = RowPick::All;
        match key {
            Key::Embed => match n {
                Naming::GptNeox => ("gpt_neox.embed_in.weight".into(), all),
                _ => ("model.embed_tokens.weight".into(), all),
            },
            Key::FinalNorm => match n {
                Naming::GptNeox => ("gpt_neox.final_layer_norm.weight".into(), all),
                _ => ("model.norm.weight".into(), all),
            },
            Key::FinalNormBias => ("gpt_neox.final_layer_norm.bias".into(), all),
            Key::LmHead => match n {
                Naming::GptNeox => ("embed_out.weight".into(), all),
                _ => ("lm_head.weight".into(), all),
            },
            Key::Layer(i, lk) => {
                if n == Naming::GptNeox {
                    let p = format!("gpt_neox.layers.{i}.");
                    let qkv = |part: usize, suffix: &str| {
                        (
                            format!("{p}attention.query_key_value.{suffix}"),
                            RowPick::Interleaved {
                                heads: nh,
                                parts: 3,
                                part,
                                rows: hd,
                            },
                        )
                    };
                    return match lk {
                        LKey::AttnNorm => (format!("{p}input_layernorm.weight"), all),
                        LKey::AttnNormBias => (format!("{p}input_layernorm.bias"), all),
                        LKey::FfnNorm => (format!("{p}post_attention_layernorm.weight"), all),
                        LKey::FfnNormBias => (format!("{p}post_attention_layernorm.bias"), all),
                        LKey::Q => qkv(0, "weight"),
                        LKey::K => qkv(1, "weight"),
                        LKey::V => qkv(2, "weight"),
                        LKey::QBias => qkv(0, "bias"),
                        LKey::KBias => qkv(1, "bias"),
                        LKey::VBias => qkv(2, "bias"),
                        LKey::O => (format!("{p}attention.dense.weight"), all),
                        LKey::OBias => (format!("{p}attention.dense.bias"), all),
                        LKey::Up => (format!("{p}mlp.dense_h_to_4h.weight"), all),
                        LKey::UpBias => (format!("{p}mlp.dense_h_to_4h.bias"), all),
                        LKey::Down => (format!("{p}mlp.dense_4h_to_h.weight"), all),
                        LKey::DownBias => (format!("{p}mlp.dense_4h_to_h.bias"), all),
                        other => (format!("{p}<{other:?}>"), all),
                    };
                }
                let p = format!("model.layers.{i}.");
                let sandwich = n == Naming::GemmaSandwich;
                let phi = n == Naming::Phi3;
                let (q_rows, kv_rows) = (nh * hd, nkv * hd);
                let name = |s: &str| format!("{p}{s}");
                match lk {
                    LKey::AttnNorm => (name("input_layernorm.weight"), all),
                    LKey::AttnNormBias => (name("input_layernorm.bias"), all),
                    LKey::AttnPostNorm => (name("post_attention_layernorm.weight"), all),
                    LKey::FfnNorm if sandwich => (name("pre_feedforward_layernorm.weight"), all),
                    LKey::FfnNorm => (name("post_attention_layernorm.weight"), all),
                    LKey::FfnNormBias => (name("post_attention_layernorm.bias"), all),
                    LKey::FfnPostNorm => (name("post_feedforward_layernorm.weight"), all),
                    LKey::Q | LKey::K | LKey::V if phi => {
                        let start = match lk {
                            LKey::Q => 0,
                            LKey::K => q_rows,
                            _ => q_rows + kv_rows,
                        };
                        let total = q_rows + 2 * kv_rows;
                        (
                            name("self_attn.qkv_proj.weight"),
                            RowPick::Range { start, total },
                        )
                    }
                    LKey::Q => (name("self_attn.q_proj.weight"), all),
                    LKey::K => (name("self_attn.k_proj.weight"), all),
                    LKey::V => (name("self_attn.v_proj.weight"), all),
                    LKey::QBias => (name("self_attn.q_proj.bias"), all),
                    LKey::KBias => (name("self_attn.k_proj.bias"), all),
                    LKey::VBias => (name("self_attn.v_proj.bias"), all),
                    LKey::QNorm => (name("self_attn.q_norm.weight"), all),
                    LKey::KNorm => (name("self_attn.k_norm.weight"), all),
                    LKey::O => (name("self_attn.o_proj.weight"), all),
                    LKey::OBias => (name("self_attn.o_proj.bias"), all),
                    LKey::Gate if phi => (name("mlp.gate_up_proj.weight"), RowPick::Half(0)),
                    LKey::Up if phi => (name("mlp.gate_up_proj.weight"), RowPick::Half(1)),
                    LKey::Gate => (name("mlp.gate_proj.weight"), all),
                    LKey::Up => (name("mlp.up_proj.weight"), all),
                    LKey::Down => (name("mlp.down_proj.weight"), all),
                    LKey::GateBias => (name("mlp.gate_proj.bias"), all),
                    LKey::UpBias => (name("mlp.up_proj.bias"), all),
                    LKey::DownBias => (name("mlp.down_proj.bias"), all),
                }
            }
        }
    }

    /// Reads `key` as f32 values, checking that it holds `rows x cols` after row picking
    /// (`cols == 0`: a 1-D tensor of `rows`).
    fn read(&self, key: Key, rows: usize, cols: usize) -> Result<Vec<f32>, EngineError> {
        let (name, pick) = self.locate(key);
        let Some(&fi) = self.index.get(&name) else {
            return Err(EngineError::MissingTensor {
                path: self.display.clone(),
                tensor: name,
            });
        };
        let f = &self.files[fi];
        let info = f
            .meta
            .info(&name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: f.path.clone(),
                tensor: name.clone(),
            })?;
        let width = if cols == 0 { 1 } else { cols };
        let total_rows = pick.total_rows(rows);
        let expected: Vec<usize> = if cols == 0 {
            vec![total_rows]
        } else {
            vec![total_rows, cols]
        };
        if info.shape != expected {
            return Err(EngineError::TensorShape {
                path: f.path.clone(),
                tensor: name,
                found: info.shape.clone(),
                expected,
            });
        }
        let esize = match info.dtype {
            safetensors::Dtype::F32 => 4,
            safetensors::Dtype::F16 | safetensors::Dtype::BF16 => 2,
            other => {
                return Err(EngineError::TensorDtype {
                    path: f.path.clone(),
                    tensor: name,
                    found: format!("{other:?}"),
                })
            }
        };
        let (a, b) = info.data_offsets;
        let start = 8 + f.header_len + a;
        let bytes =
            f.map
                .get(start..8 + f.header_len + b)
                .ok_or_else(|| EngineError::BadSafetensors {
                    path: f.path.clone(),
                    reason: format!("tensor `{name}` lies beyond the end of the file"),
                })?;
        let mut out = Vec::with_capacity(rows * width);
        for r in pick.rows(rows) {
            let row = &bytes[r * width * esize..(r + 1) * width * esize];
            match info.dtype {
                safetensors::Dtype::F32 => out.extend(
                    row.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                safetensors::Dtype::F16 => out.extend(
                    row.chunks_exact(2)
                        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
                ),
                _ => out.extend(
                    row.chunks_exact(2)
                        .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
                ),
            }
        }
        Ok(out)
    }
}

/// Which rows of a checkpoint tensor make up a logical tensor.
#[derive(Clone, Copy, Debug)]
enum RowPick {
    All,
    /// `rows` rows from `start` of a fused tensor of `total` rows (Phi3 `qkv_proj`).
    Range {
        start: usize,
        total: usize,
    },
    /// Half `i` of a tensor of twice the rows (Phi3 `gate_up_proj`).
    Half(usize),
    /// Part `part` of `parts` per-head blocks of `rows` rows each (GPT-NeoX `query_key_value`).
    Interleaved {
        heads: usize,
        parts: usize,
        part: usize,
        rows: usize,
    },
}

impl RowPick {
    fn total_rows(&self, rows: usize) -> usize {
        match *self {
            RowPick::All => rows,
            RowPick::Range { total, .. } => total,
            RowPick::Half(_) => 2 * rows,
            RowPick::Interleaved {
                heads,
                parts,
                rows: r,
                ..
            } => heads * parts * r,
        }
    }
    fn rows(&self, rows: usize) -> Vec<usize> {
        match *self {
            RowPick::All => (0..rows).collect(),
            RowPick::Range { start, .. } => (start..start + rows).collect(),
            RowPick::Half(i) => (i * rows..(i + 1) * rows).collect(),
            RowPick::Interleaved {
                heads,
                parts,
                part,
                rows: r,
            } => (0..heads)
                .flat_map(|h| {
                    let base = (h * parts + part) * r;
                    base..base + r
                })
                .collect(),
        }
    }
}

fn read_index(path: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |reason: &str| EngineError::BadSafetensors {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<PathBuf> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .ok_or_else(|| bad("a `weight_map` value is not a file name"))?;
        let p = dir.join(f);
        if !shards.contains(&p) {
            shards.push(p);
        }
    }
    Ok(shards)
}

impl Source for SafetensorsSource {
    fn mat(
        &mut self,
        key: Key,
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
    ) -> Result<Mat, EngineError> {
        let data = self.read(key, rows, cols)?;
        Ok(Mat::from_f32(rows, cols, data, dtype))
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        self.read(key, len, 0)
    }
}
