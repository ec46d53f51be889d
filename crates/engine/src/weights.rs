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
//! Quantized matrices ([`MatBuf::Quant`]) hold llama.cpp blocks in a 64-byte aligned buffer;
//! [`matmul`] is the one projection dispatch (dense GEMM/GEMV, or 8-bit activations against
//! the blocks). Random weights are quantized into real blocks when [`RandomSource::quant`] is
//! set; GGUF files load through [`crate::gguf_source`].
//!
//! Safetensors files are memory-mapped, their headers validated, and each tensor copied (and
//! converted to the run's dtype) into aligned buffers once, before any timing. Fused
//! checkpoints are split on load: Phi3's `qkv_proj`/`gate_up_proj` and GPT-NeoX's per-head
//! interleaved `query_key_value`. MoE experts are read per expert (`mlp.experts.N.*`, Mixtral's
//! `block_sparse_moe.experts.N.w1/w2/w3`), and MLA's RoPE rows reordered from interleaved pairs
//! ([`rope_pair_row`]).

use crate::arch::{ModelDef, Naming};
use crate::error::EngineError;
use crate::hugebuf::WeightBuf;
use rooflinebench_kernels::engine::convert::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use rooflinebench_kernels::engine::{gemm, MatRef, ThreadPool, WeightData, WeightDtype};
use rooflinebench_kernels::isa::Isa;
use rooflinebench_kernels::quant::{
    ActKind, Q8Activations, QuantError, QuantIsa, QuantMatrix, QuantType,
};
use rooflinebench_model::format::{TensorFormats, TensorRole, WeightFormat};
use rooflinebench_model::spec::{ModelSpec, NormKind};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A weight matrix's elements.
#[derive(Clone, Debug)]
pub enum MatBuf {
    F32(WeightBuf<f32>),
    F16(WeightBuf<u16>),
    Bf16(WeightBuf<u16>),
    /// llama.cpp blocks of `ty`, rows contiguous (each row a whole number of blocks), in a
    /// 64-byte aligned buffer. Multiplied by [`matmul`] against activations quantized to 8 bits.
    Quant {
        ty: QuantType,
        data: WeightBuf<u8>,
    },
}

/// A row-major `rows x cols` weight matrix.
#[derive(Clone, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub buf: MatBuf,
}

impl Mat {
    /// The dense view the f32/f16/bf16 kernels take; `None` for a quantized matrix.
    pub fn dense_view(&self) -> Option<MatRef<'_>> {
        let data = match &self.buf {
            MatBuf::F32(v) => WeightData::F32(v),
            MatBuf::F16(v) => WeightData::F16(v),
            MatBuf::Bf16(v) => WeightData::Bf16(v),
            MatBuf::Quant { .. } => return None,
        };
        Some(MatRef {
            rows: self.rows,
            cols: self.cols,
            data,
        })
    }

    /// The dense view.
    ///
    /// # Panics
    /// On a quantized matrix (an engine bug: every product with a weight goes through
    /// [`matmul`], which dispatches quantized matrices to the quantized kernels).
    pub fn view(&self) -> MatRef<'_> {
        self.dense_view()
            .expect("a quantized matrix reached a dense kernel: use weights::matmul")
    }

    /// The quantized view; `None` for a dense matrix.
    pub fn quant_view(&self) -> Option<QuantMatrix<'_>> {
        match &self.buf {
            MatBuf::Quant { ty, data } => Some(QuantMatrix {
                ty: *ty,
                rows: self.rows,
                cols: self.cols,
                data: data.as_slice(),
            }),
            _ => None,
        }
    }

    /// The dense dtype; a quantized matrix reports f32, the type its kernels produce (see
    /// [`Mat::format`] for its storage format).
    pub fn dtype(&self) -> WeightDtype {
        match self.buf {
            MatBuf::F32(_) | MatBuf::Quant { .. } => WeightDtype::F32,
            MatBuf::F16(_) => WeightDtype::F16,
            MatBuf::Bf16(_) => WeightDtype::Bf16,
        }
    }

    /// The storage format, as the cost model names it.
    pub fn format(&self) -> WeightFormat {
        match &self.buf {
            MatBuf::F32(_) => WeightFormat::F32,
            MatBuf::F16(_) => WeightFormat::F16,
            MatBuf::Bf16(_) => WeightFormat::Bf16,
            MatBuf::Quant { ty, .. } => quant_format(*ty),
        }
    }

    pub fn bytes(&self) -> usize {
        match &self.buf {
            MatBuf::Quant { data, .. } => data.len(),
            _ => self.rows * self.cols * self.dtype().size(),
        }
    }

    /// Element `(r, c)` as f32 (slow; for reference code and tests).
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let i = r * self.cols + c;
        match &self.buf {
            MatBuf::F32(v) => v[i],
            MatBuf::F16(v) => f16_to_f32(v[i]),
            MatBuf::Bf16(v) => bf16_to_f32(v[i]),
            MatBuf::Quant { .. } => {
                let mut row = vec![0.0; self.cols];
                self.row_to_f32(r, &mut row);
                row[c]
            }
        }
    }

    /// Row `r` as f32 into `out` (`cols` values): an embedding lookup. Quantized rows are
    /// dequantized here, so the lookup's time includes the dequantization.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        match self.quant_view() {
            Some(q) => q
                .dequantize_row(r, out)
                .expect("row index and width checked by the caller"),
            None => self.view().row_to_f32(r, out),
        }
    }

    /// Quantizes `data` (`rows x cols` f32) into blocks of `ty`, rows split over `threads`.
    pub fn quantize(
        rows: usize,
        cols: usize,
        data: &[f32],
        ty: QuantType,
        threads: usize,
    ) -> Result<Mat, EngineError> {
        let bad = |e: QuantError| EngineError::bad_option("weights", ty.name(), e.to_string());
        let row_bytes = ty.bytes_for(cols).ok_or_else(|| {
            bad(QuantError::NotBlockMultiple {
                ty: ty.name(),
                cols,
                block: ty.block_elems(),
            })
        })?;
        if data.len() != rows.saturating_mul(cols) {
            return Err(bad(QuantError::ShapeMismatch {
                op: "quantize weights",
                what: "input",
                expected: rows.saturating_mul(cols),
                actual: data.len(),
            }));
        }
        let mut out = vec![0u8; rows * row_bytes];
        let per = rows.div_ceil(threads.max(1)).max(1);
        let res: Vec<Result<(), QuantError>> = std::thread::scope(|sc| {
            let hs: Vec<_> = out
                .chunks_mut((per * row_bytes).max(1))
                .zip(data.chunks((per * cols).max(1)))
                .map(|(o, x)| {
                    sc.spawn(move || {
                        let q = rooflinebench_kernels::quant::quantize(ty, x)?;
                        o.copy_from_slice(&q);
                        Ok(())
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for r in res {
            r.map_err(bad)?;
        }
        Ok(Mat {
            rows,
            cols,
            buf: MatBuf::Quant {
                ty,
                data: WeightBuf::from_slice(&out),
            },
        })
    }

    /// A dense f32 copy (quantized blocks dequantized): the reference the quantized kernels
    /// are tested against.
    pub fn to_f32(&self) -> Mat {
        let mut data = vec![0.0f32; self.rows * self.cols];
        if self.cols > 0 {
            for (r, row) in data.chunks_exact_mut(self.cols).enumerate() {
                self.row_to_f32(r, row);
            }
        }
        Mat {
            rows: self.rows,
            cols: self.cols,
            buf: MatBuf::F32(data.into()),
        }
    }

    /// A matrix in `dtype` from f32 values, copied into huge-page-backed storage
    /// ([`WeightBuf`]).
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>, dtype: WeightDtype) -> Mat {
        let n = data.len();
        let buf = match dtype {
            WeightDtype::F32 => MatBuf::F32(WeightBuf::from_slice(&data)),
            WeightDtype::F16 => {
                MatBuf::F16(WeightBuf::from_iter(n, data.iter().map(|&x| f32_to_f16(x))))
            }
            WeightDtype::Bf16 => MatBuf::Bf16(WeightBuf::from_iter(
                n,
                data.iter().map(|&x| f32_to_bf16(x)),
            )),
        };
        Mat { rows, cols, buf }
    }
}

/// The cost model's name of a block format.
pub fn quant_format(ty: QuantType) -> WeightFormat {
    match ty {
        QuantType::Q8_0 => WeightFormat::Q8_0,
        QuantType::Q4_0 => WeightFormat::Q4_0,
        QuantType::Q4_1 => WeightFormat::Q4_1,
        QuantType::Q5_0 => WeightFormat::Q5_0,
        QuantType::Q5_1 => WeightFormat::Q5_1,
        QuantType::Q4K => WeightFormat::Q4K,
        QuantType::Q5K => WeightFormat::Q5K,
        QuantType::Q6K => WeightFormat::Q6K,
    }
}

/// The format a matrix of `cols` inputs gets when the run asks for `ty`: K-quants need `cols`
/// divisible by 256 and fall back as llama.cpp's quantizer does (q4_K -> q5_0, q5_K -> q5_1,
/// q6_K -> q8_0; PITFALLS.md #24); `None` (stay dense) when not even 32 divides `cols`.
pub fn quant_fallback(ty: QuantType, cols: usize) -> Option<QuantType> {
    if cols.is_multiple_of(ty.block_elems()) {
        return Some(ty);
    }
    let fb = match ty {
        QuantType::Q4K => QuantType::Q5_0,
        QuantType::Q5K => QuantType::Q5_1,
        QuantType::Q6K => QuantType::Q8_0,
        _ => return None,
    };
    cols.is_multiple_of(fb.block_elems()).then_some(fb)
}

thread_local! {
    /// Quantized activations of the calling thread, one per activation format; reused so
    /// decode steps do not allocate.
    static ACTS: RefCell<[Q8Activations; 2]> =
        RefCell::new([Q8Activations::new(ActKind::Q8_0), Q8Activations::new(ActKind::Q8K)]);
}

/// `out (m x rows) = input (m x cols) W^T + bias` for any weight format: the projection
/// dispatch of the forward pass.
///
/// Dense weights go to the f32/f16/bf16 GEMM/GEMV. Quantized weights run as llama.cpp does:
/// the `m` activation rows are first quantized to 8 bits per element (q8_0 blocks of 32 for
/// the legacy formats, q8_K super-blocks of 256 for the k-quants), then multiplied with
/// integer dot products, GEMV for `m == 1` and the cache-blocked GEMM for prefill, weight
/// rows split over the pool's threads. The activation quantization runs inside the caller's
/// timed operator, so its cost shows in the per-operator times.
///
/// # Panics
/// When the slice lengths do not match `m` and `w` (an engine bug, as for `gemm_nt`).
pub fn matmul(
    isa: Isa,
    pool: &ThreadPool,
    input: &[f32],
    m: usize,
    w: &Mat,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let Some(q) = w.quant_view() else {
        gemm::gemm_nt(isa, pool, input, m, w.view(), bias, out);
        return;
    };
    assert_eq!(input.len(), m * w.cols, "matmul: input length");
    assert_eq!(out.len(), m * w.rows, "matmul: output length");
    if m == 0 || w.rows == 0 {
        return;
    }
    let qisa = QuantIsa::for_isa(isa);
    ACTS.with(|a| {
        let mut a = a.borrow_mut();
        let acts = match q.ty.act_kind() {
            ActKind::Q8_0 => &mut a[0],
            ActKind::Q8K => &mut a[1],
        };
        acts.quantize(input, m, w.cols)
            .and_then(|()| q.gemm_pool(qisa, acts, m, out, pool))
            .expect("shapes checked above and when the matrix was built");
    });
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(w.rows) {
            for (o, bb) in row.iter_mut().zip(b) {
                *o += bb;
            }
        }
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
    /// MLA attention (then `q`, `k`, `v` are empty and `o` is `hidden x heads * v_head_dim`).
    pub mla: Option<crate::mla::MlaWeights>,
    /// A MoE FFN (then `gate`, `up`, `down` are empty).
    pub moe: Option<crate::moe::MoeWeights>,
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

    /// Every dense-path matrix with its cost-model role and layer (MLA/MoE sub-weights and
    /// empty placeholders left out). `fused_qkv`: the cost model names q/k/v `AttnQkv`.
    fn matrices(&self, fused_qkv: bool) -> Vec<(TensorRole, Option<u64>, &Mat)> {
        let mut v = vec![(TensorRole::TokenEmbd, None, &self.embed)];
        if let Some(h) = &self.lm_head {
            v.push((TensorRole::Output, None, h));
        }
        for (i, l) in self.layers.iter().enumerate() {
            let li = Some(i as u64);
            let (qr, kr, vr) = if fused_qkv {
                (
                    TensorRole::AttnQkv,
                    TensorRole::AttnQkv,
                    TensorRole::AttnQkv,
                )
            } else {
                (TensorRole::AttnQ, TensorRole::AttnK, TensorRole::AttnV)
            };
            let mut ms = vec![
                (qr, &l.q),
                (kr, &l.k),
                (vr, &l.v),
                (TensorRole::AttnOutput, &l.o),
            ];
            if let Some(g) = &l.gate {
                ms.push((TensorRole::FfnGate, g));
            }
            ms.push((TensorRole::FfnUp, &l.up));
            ms.push((TensorRole::FfnDown, &l.down));
            // MLA and MoE matrices too, one entry per file tensor (the first expert stands for
            // its 3-D expert tensor: all experts of a tensor share its format), so quantized
            // MLA/MoE GGUFs are costed in their real formats, not the dense default.
            if let Some(a) = &l.mla {
                if let Some((qa, _)) = &a.q_a {
                    ms.push((TensorRole::MlaQA, qa));
                }
                ms.push((TensorRole::MlaQB, &a.q_b));
                ms.push((TensorRole::MlaKvA, &a.kv_a));
                match &a.up {
                    crate::mla::MlaUp::Materialized { kv_b } => ms.push((TensorRole::MlaKvB, kv_b)),
                    crate::mla::MlaUp::Absorbed { uk_t, .. } => {
                        ms.extend(uk_t.first().map(|m| (TensorRole::MlaKvB, m)))
                    }
                }
            }
            if let Some(e) = &l.moe {
                ms.push((TensorRole::Router, &e.router));
                if let Some(x) = e.experts.first() {
                    ms.push((TensorRole::FfnGateExps, &x.gate));
                    ms.push((TensorRole::FfnUpExps, &x.up));
                    ms.push((TensorRole::FfnDownExps, &x.down));
                }
                if let Some(x) = &e.shared {
                    ms.push((TensorRole::FfnGateShexp, &x.gate));
                    ms.push((TensorRole::FfnUpShexp, &x.up));
                    ms.push((TensorRole::FfnDownShexp, &x.down));
                }
            }
            for (r, m) in ms {
                if m.rows > 0 && m.cols > 0 {
                    v.push((r, li, m));
                }
            }
        }
        v
    }

    /// The real storage format of every matrix, for `CostModel::with_formats` (PITFALLS.md
    /// #24: cost what runs, not a label).
    pub fn tensor_formats(&self, fused_qkv: bool) -> TensorFormats {
        let mut f = TensorFormats::new();
        for (role, layer, m) in self.matrices(fused_qkv) {
            f.insert(role, layer, m.format());
        }
        f
    }

    /// The weight formats of the run: `q4_0` when uniform, else each format with its matrix
    /// count, most common first (`q4_1 x210 + q8_0 x1 (token_embd)`).
    pub fn format_label(&self) -> String {
        let mats = self.matrices(false);
        let mut counts: Vec<(WeightFormat, usize, Vec<&'static str>)> = Vec::new();
        for (role, _, m) in &mats {
            let f = m.format();
            let name = match role {
                TensorRole::TokenEmbd => Some("token_embd"),
                TensorRole::Output => Some("output"),
                _ => None,
            };
            match counts.iter_mut().find(|c| c.0 == f) {
                Some(c) => {
                    c.1 += 1;
                    c.2.extend(name);
                }
                None => counts.push((f, 1, name.into_iter().collect())),
            }
        }
        if counts.len() == 1 {
            return counts[0].0.name().to_string();
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts
            .iter()
            .map(|(f, n, names)| {
                let only_globals = names.len() == *n;
                if only_globals {
                    format!("{} x{n} ({})", f.name(), names.join(", "))
                } else {
                    format!("{} x{n}", f.name())
                }
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Whether any matrix is block-quantized.
    pub fn is_quantized(&self) -> bool {
        self.matrices(false)
            .iter()
            .any(|(_, _, m)| m.quant_view().is_some())
    }

    /// A copy with every quantized matrix dequantized to f32: the same model on the dense
    /// path (the reference for the quantized kernels' end-to-end error).
    pub fn dequantized(&self) -> Weights {
        let mut w = self.clone();
        let deq = |m: &mut Mat| {
            if m.quant_view().is_some() {
                *m = m.to_f32();
            }
        };
        deq(&mut w.embed);
        if let Some(h) = &mut w.lm_head {
            deq(h);
        }
        for l in &mut w.layers {
            for m in [
                &mut l.q,
                &mut l.k,
                &mut l.v,
                &mut l.o,
                &mut l.up,
                &mut l.down,
            ] {
                deq(m);
            }
            if let Some(g) = &mut l.gate {
                deq(g);
            }
        }
        w
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
            total +=
                l.mla.as_ref().map_or(0, |m| m.bytes()) + l.moe.as_ref().map_or(0, |m| m.bytes());
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
    let esize = dtype.size() as u64;
    let mla = crate::mla::layer_weight_bytes(s, esize).checked_mul(s.num_hidden_layers);
    per_layer
        .checked_mul(s.num_hidden_layers)
        .and_then(|x| x.checked_add(embed)?.checked_add(head))
        .and_then(|x| {
            x.checked_add(mla?)?
                .checked_add(crate::moe::weight_bytes(s, esize)?)
        })
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
    MlaQA,
    MlaQANorm,
    MlaQB,
    MlaKvA,
    MlaKvANorm,
    MlaKvB,
    MoeRouter,
    MoeRouterBias,
    ExpGate(u32),
    ExpUp(u32),
    ExpDown(u32),
    ShGate,
    ShUp,
    ShDown,
    ShGateVec,
}

impl Key {
    /// A norm's weight vector (stored with the family's offset in some checkpoints).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Key::FinalNorm
                | Key::Layer(
                    _,
                    LKey::AttnNorm
                        | LKey::FfnNorm
                        | LKey::QNorm
                        | LKey::KNorm
                        | LKey::AttnPostNorm
                        | LKey::FfnPostNorm
                        | LKey::MlaQANorm
                        | LKey::MlaKvANorm
                )
        )
    }

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
    /// Layer `layer`'s absorbed MLA maps as the checkpoint stores them, when it stores them per
    /// head (newer GGUFs' `attn_k_b`/`attn_v_b`): `heads` matrices `W_UK^T` (`kvl x nope`) and
    /// `heads` matrices `W_UV` (`dv x kvl`), quantized ones left in their format. `None` (the
    /// default): the checkpoint holds `kv_b_proj` whole, and the maps are cut from it.
    fn mla_split(
        &mut self,
        _layer: usize,
        _dtype: WeightDtype,
    ) -> Result<Option<MlaMaps>, EngineError> {
        Ok(None)
    }
}

/// MLA's absorbed per-head maps: `W_UK^T` (`kvl x nope`) and `W_UV` (`dv x kvl`) per head.
pub type MlaMaps = (Vec<Mat>, Vec<Mat>);

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
    let is_mla = crate::mla::spec_of(def).is_some();
    // MLA: no q/k/v matrices; o_proj reads heads * v_head_dim.
    let (nq, nkv, o_in) = if is_mla {
        (0, 0, s.num_attention_heads as usize * s.v_head_dim as usize)
    } else {
        (nq, nkv, nq)
    };
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
        let o = src.mat(k(LKey::O), h, o_in, dtype)?;
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
        let mla = crate::mla::build_layer(def, dtype, src, i)?;
        let moe = crate::moe::build_layer(def, dtype, src, i)?;
        // A MoE layer has no dense MLP.
        let inter = if moe.is_some() { 0 } else { inter };
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
            mla,
            moe,
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
    /// Quantize the projection, embedding and LM-head matrices into real blocks of this
    /// format (with the k-quant fallback of [`quant_fallback`]); `None`: dense in the run's
    /// dtype.
    pub quant: Option<QuantType>,
}

/// Whether `key` is a matrix the forward pass multiplies through [`matmul`] (or looks up by
/// row), i.e. one that may be stored quantized.
pub fn quantizable(key: Key) -> bool {
    matches!(
        key,
        Key::Embed
            | Key::LmHead
            | Key::Layer(
                _,
                LKey::Q | LKey::K | LKey::V | LKey::O | LKey::Gate | LKey::Up | LKey::Down
            )
    )
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
        let data = self.fill(key, n, scale, 0.0);
        match self.quant.and_then(|q| quant_fallback(q, cols)) {
            Some(ty) if quantizable(key) && n > 0 => {
                Mat::quantize(rows, cols, &data, ty, self.threads)
            }
            _ => Ok(Mat::from_f32(rows, cols, data, dtype)),
        }
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        let is_norm = key.is_norm();
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
    /// MLA `(qk_nope_head_dim, qk_rope_head_dim, kv_lora_rank)`.
    mla: Option<(usize, usize, usize)>,
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
            mla: crate::mla::spec_of(def).map(|m| {
                let u = |v: u64| v as usize;
                (
                    u(m.qk_nope_head_dim),
                    u(m.qk_rope_head_dim),
                    u(m.kv_lora_rank),
                )
            }),
            display,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Whether layer `i` uses Mixtral's `block_sparse_moe` names.
    fn mixtral(&self, i: usize) -> bool {
        self.has(&format!("model.layers.{i}.block_sparse_moe.gate.weight"))
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
                    // MLA (DeepSeek-V2/V3 `modeling_deepseek.py`). The RoPE rows of q and of
                    // the shared key are stored as interleaved pairs: the reference de-interleaves
                    // them (`view(..., d // 2, 2).transpose`) before rotating halves, as the
                    // engine does; so the rows are reordered here, as for a GGUF (llama.cpp's
                    // converter copies these tensors unpermuted).
                    LKey::MlaQA => (name("self_attn.q_a_proj.weight"), all),
                    LKey::MlaQANorm => (name("self_attn.q_a_layernorm.weight"), all),
                    LKey::MlaQB => {
                        let (nope, rope, _) = self.mla.unwrap_or((0, 0, 0));
                        let file = if self.has(&name("self_attn.q_b_proj.weight")) {
                            name("self_attn.q_b_proj.weight")
                        } else {
                            name("self_attn.q_proj.weight")
                        };
                        let pick = RowPick::RopeRows {
                            block: nope + rope,
                            offset: nope,
                            rope,
                        };
                        (file, pick)
                    }
                    LKey::MlaKvA => {
                        let (_, rope, kvl) = self.mla.unwrap_or((0, 0, 0));
                        let pick = RowPick::RopeRows {
                            block: kvl + rope,
                            offset: kvl,
                            rope,
                        };
                        (name("self_attn.kv_a_proj_with_mqa.weight"), pick)
                    }
                    LKey::MlaKvANorm => (name("self_attn.kv_a_layernorm.weight"), all),
                    LKey::MlaKvB => (name("self_attn.kv_b_proj.weight"), all),
                    // MoE: Mixtral's `block_sparse_moe` (w1 gate, w3 up, w2 down), or the
                    // `mlp.gate` router and `mlp.experts.N` of Qwen2/3-MoE and DeepSeek, whose
                    // shared experts are `mlp.shared_experts` (DeepSeek) or `mlp.shared_expert`
                    // with a sigmoid `mlp.shared_expert_gate` (Qwen2-MoE).
                    LKey::MoeRouter if self.mixtral(i) => {
                        (name("block_sparse_moe.gate.weight"), all)
                    }
                    LKey::MoeRouter => (name("mlp.gate.weight"), all),
                    LKey::MoeRouterBias => (name("mlp.gate.e_score_correction_bias"), all),
                    LKey::ExpGate(x) | LKey::ExpUp(x) | LKey::ExpDown(x) => {
                        let (mixtral, hf) = match lk {
                            LKey::ExpGate(_) => ("w1", "gate_proj"),
                            LKey::ExpUp(_) => ("w3", "up_proj"),
                            _ => ("w2", "down_proj"),
                        };
                        if self.mixtral(i) {
                            (
                                name(&format!("block_sparse_moe.experts.{x}.{mixtral}.weight")),
                                all,
                            )
                        } else {
                            (name(&format!("mlp.experts.{x}.{hf}.weight")), all)
                        }
                    }
                    LKey::ShGate | LKey::ShUp | LKey::ShDown => {
                        let part = match lk {
                            LKey::ShGate => "gate_proj",
                            LKey::ShUp => "up_proj",
                            _ => "down_proj",
                        };
                        let deepseek = name(&format!("mlp.shared_experts.{part}.weight"));
                        if self.has(&deepseek) {
                            (deepseek, all)
                        } else {
                            (name(&format!("mlp.shared_expert.{part}.weight")), all)
                        }
                    }
                    // `nn.Linear(hidden, 1)`: a [1, hidden] matrix read as a vector.
                    LKey::ShGateVec => (name("mlp.shared_expert_gate.weight"), all),
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
        // A vector may be stored as a one-row matrix (`nn.Linear(hidden, 1)`).
        let one_row = cols == 0 && info.shape == [1, total_rows];
        if info.shape != expected && !one_row {
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

/// The stored row holding engine row `r` of a tensor made of blocks of `block` rows whose
/// `rope` rows from `offset` are stored as interleaved pairs (MLA's q and shared-key RoPE rows,
/// in Hugging Face checkpoints and GGUF files alike) while the engine rotates halves: engine
/// row `offset + s * rope/2 + j` is stored row `offset + 2j + s`.
pub(crate) fn rope_pair_row(r: usize, block: usize, offset: usize, rope: usize) -> usize {
    let half = rope / 2;
    let (b, i) = (r / block.max(1), r % block.max(1));
    if half == 0 || i < offset || i >= offset + 2 * half {
        return r;
    }
    let (s, j) = ((i - offset) / half, (i - offset) % half);
    b * block + offset + 2 * j + s
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
    /// Blocks of `block` rows whose `rope` rows from `offset` are stored as interleaved pairs
    /// and read as rotate-half halves (MLA q and shared-key RoPE rows).
    RopeRows {
        block: usize,
        offset: usize,
        rope: usize,
    },
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
            RowPick::All | RowPick::RopeRows { .. } => rows,
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
            RowPick::RopeRows {
                block,
                offset,
                rope,
            } => (0..rows)
                .map(|r| rope_pair_row(r, block, offset, rope))
                .collect(),
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
        if rows == 0 || cols == 0 {
            // A placeholder the engine does not run (q/k/v of an MLA layer, the dense MLP of a
            // MoE layer): nothing to read.
            return Ok(Mat::from_f32(rows, cols, Vec::new(), dtype));
        }
        let data = self.read(key, rows, cols)?;
        Ok(Mat::from_f32(rows, cols, data, dtype))
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        self.read(key, len, 0)
    }
}
