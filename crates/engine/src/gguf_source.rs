//! Weights from a GGUF file (llama.cpp's format), in their stored formats.
//!
//! What it is: a [`Source`] over a memory-mapped GGUF that maps llama.cpp's tensor names
//! (`token_embd`, `blk.N.attn_q`, `ffn_gate`, `attn_norm`, `output_norm`, `output`, biases,
//! q/k norms; fused `attn_qkv` and phi3's `[gate; up]` `ffn_up` split by rows) onto the
//! engine's [`Key`]s and copies every tensor once into owned aligned buffers before anything
//! is timed. Quantized tensors keep their block format ([`MatBuf::Quant`]), F32/F16/BF16
//! tensors stay dense in their stored dtype, 1-D tensors become f32.
//!
//! MoE (qwen2moe, qwen3moe, deepseek2's sparse layers): the router `ffn_gate_inp`
//! (`[hidden, experts]`), deepseek3-style `exp_probs_b` (the `noaux_tc` correction bias), the
//! 3-D expert tensors `ffn_gate_exps`/`ffn_up_exps` (`[hidden, ff, experts]`, ggml order) and
//! `ffn_down_exps` (`[ff, hidden, experts]`), expert `x` being rows `x*rows..(x+1)*rows` of the
//! 2-D view (ggml rows are whole blocks, so quantized experts are sliced without decoding and
//! stay quantized), shared experts `ffn_*_shexp` and Qwen2-MoE's `ffn_gate_inp_shexp`.
//!
//! MLA (deepseek2): `attn_q_a`, `attn_q_a_norm`, `attn_q_b` (or `attn_q` without q LoRA),
//! `attn_kv_a_mqa`, `attn_kv_a_norm`, and `attn_kv_b` (older files) or the split `attn_k_b`
//! (`[nope, kv_lora, heads]`: each head's `W_UK^T`, as the converter's
//! `k_b.transpose(1, 2)`) + `attn_v_b` (`[kv_lora, v_dim, heads]`: each head's `W_UV`). The
//! absorbed form runs those per-head maps as stored, quantized ones against 8-bit activations
//! as llama.cpp does ([`GgufSource`]'s `mla_split`); the materialized form puts them back
//! together into `kv_b_proj` (`kv_b_from_split`; a quantized `attn_k_b` is dequantized to f32
//! for that, with a warning from [`model_def`]).
//!
//! Conversions that undo what llama.cpp's `convert_hf_to_gguf.py` did or what llama.cpp
//! computes differently:
//! - `llama` architecture: the converter permutes the rows of `attn_q`/`attn_k` (weights and
//!   biases) from the Hugging Face rotate-half layout to interleaved pairs, because llama.cpp
//!   applies "normal" (adjacent-pair) RoPE to that architecture (`LlamaModel.permute`:
//!   `w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2)`). The engine's RoPE is rotate-half, so
//!   rows are permuted back on load: engine row `h*d + s*d/2 + j` is file row `h*d + 2j + s`.
//!   Other architectures (qwen2/3, qwen3moe, gemma, phi3, gpt-neox) use NeoX RoPE in llama.cpp
//!   and keep the Hugging Face row order.
//! - `deepseek2`: the converter keeps the Hugging Face rows, and llama.cpp applies normal
//!   (adjacent-pair) RoPE to them, as Hugging Face's DeepSeek-V2 does (it de-interleaves the
//!   pairs before its rotate-half). The engine rotates halves, so the RoPE rows only (the last
//!   `qk_rope_head_dim` rows of each q head in `attn_q_b`/`attn_q`, and the last
//!   `qk_rope_head_dim` rows of `attn_kv_a_mqa`) are un-interleaved the same way; the
//!   `qk_nope` and latent rows keep their order. Checked against llama.cpp's logits on the
//!   same file (`src/sweep/llamacpp_logits_test.rs`): 5e-7 relative with the un-permutation,
//!   0.57 without it.
//! - Gemma: the converter stores RMSNorm weights as `1 + w`; the engine adds the family's
//!   offset itself, so it is subtracted here.
//!
//! A missing tensor, or one whose shape does not match the file's hyperparameters (e.g. an
//! `expert_count` different from the experts the 3-D tensors hold), gives one error naming
//! the file and the tensor.
//!
//! What it is not: a loader for formats without an engine kernel (IQ*, Q2_K, Q3_K, ...):
//! those give one error naming the file and the tensor. Hyperparameters (expert counts,
//! routing, MLA ranks) are read by `rooflinebench_gguf::arch::hf_config`, not here.

use crate::arch::ModelDef;
use crate::error::EngineError;
use crate::hugebuf::WeightBuf;
use crate::weights::{Key, LKey, Mat, MatBuf, MlaMaps, Source};
use rooflinebench_gguf::{GgmlType, GgufFile, TensorInfo};
use rooflinebench_kernels::engine::convert::{bf16_to_f32, f16_to_f32};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_kernels::quant::QuantMatrix;
use rooflinebench_model::hardware::Warning;
use std::path::Path;

/// A memory-mapped GGUF file as a weight source.
pub struct GgufSource {
    file: GgufFile,
    /// Undo the converter's q/k row permutation (`llama` architecture).
    permute_qk: bool,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    norm_offset: f32,
    /// Routed experts per MoE layer (0: no MoE).
    experts: usize,
    /// MLA `(qk_nope_head_dim, qk_rope_head_dim, v_head_dim)`, if MLA.
    mla: Option<(usize, usize, usize)>,
    /// MLA `kv_lora_rank` (0 otherwise).
    kv_lora_rank: usize,
}

/// Which rows of a file tensor make up a logical tensor.
#[derive(Clone, Copy, Debug)]
enum Pick {
    All,
    /// `rows` rows from `start` of a fused tensor of `total` rows.
    Range {
        start: usize,
        total: usize,
    },
    /// Every row, un-permuted from llama.cpp's interleaved-pair order, `heads` heads.
    Unpermute {
        heads: usize,
    },
    /// Every row; in each block of `block` rows, the `rope` rows from `offset` are
    /// un-permuted from interleaved pairs to halves (deepseek2's RoPE rows).
    RopeRows {
        block: usize,
        offset: usize,
        rope: usize,
    },
    /// Expert `index` of a 3-D `[cols, rows, count]` tensor (`blk.N.ffn_*_exps`).
    Expert {
        index: usize,
        count: usize,
    },
}

/// Warning code of [`model_def`]: quantized split MLA tensors that the materialized form
/// dequantizes (callers running the absorbed form drop it).
pub const DEQUANTIZED_KV_B: &str = "gguf_dequantized_on_load";

/// The model definition of a GGUF file: llama.cpp's hyperparameters as a Hugging Face config,
/// parsed like any `config.json` (value parameters such as `rope_theta` and `rms_norm_eps`
/// included). Errors name the file.
pub fn model_def(path: &Path) -> Result<(ModelDef, Vec<Warning>), EngineError> {
    let file = GgufFile::open(path)?;
    let cfg = rooflinebench_gguf::arch::hf_config(&file.header).map_err(|e| e.in_file(path))?;
    let (mut def, mut warnings) =
        ModelDef::from_config_json(&cfg.to_string()).map_err(|e| EngineError::Config {
            field: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let split_quant = file
        .header
        .tensors
        .iter()
        .filter(|t| t.name.ends_with(".attn_k_b.weight") && t.ty.quant().is_some())
        .filter(|t| {
            let kv_b = t.name.replace(".attn_k_b.", ".attn_kv_b.");
            file.header.tensor(&kv_b).is_none()
        })
        .count();
    if split_quant > 0 {
        warnings.push(Warning {
            code: DEQUANTIZED_KV_B.into(),
            message: format!(
                "{}: in the materialized MLA form, {split_quant} quantized attn_k_b tensor(s) \
                 (no attn_kv_b) are dequantized to f32 on load to rebuild kv_b_proj: those \
                 products run dense f32, not in the file's format (the absorbed form runs them \
                 as stored)",
                path.display()
            ),
        });
    }
    if let Some(s) = path.file_stem() {
        def.spec.name = s.to_string_lossy().into_owned();
    }
    Ok((def, warnings))
}

impl GgufSource {
    /// Maps and parses `path` for the model `def` (usually from [`model_def`] of the same file).
    pub fn open(path: &Path, def: &ModelDef) -> Result<GgufSource, EngineError> {
        let file = GgufFile::open(path)?;
        let arch = file
            .header
            .architecture()
            .map_err(|e| e.in_file(path))?
            .to_string();
        let s = &def.spec;
        Ok(GgufSource {
            file,
            permute_qk: arch == "llama",
            heads: s.num_attention_heads as usize,
            kv_heads: s.num_key_value_heads as usize,
            head_dim: s.head_dim as usize,
            norm_offset: def.arch.norm_weight_offset,
            experts: s.ffn.moe().map_or(0, |m| m.num_experts as usize),
            mla: crate::mla::spec_of(def).map(|m| {
                (
                    m.qk_nope_head_dim as usize,
                    m.qk_rope_head_dim as usize,
                    m.v_head_dim as usize,
                )
            }),
            kv_lora_rank: crate::mla::spec_of(def).map_or(0, |m| m.kv_lora_rank as usize),
        })
    }

    /// Bytes of every tensor in the file (what the loaded weights take, within padding).
    pub fn tensor_bytes(&self) -> u64 {
        self.file.header.tensors.iter().map(|t| t.n_bytes).sum()
    }

    fn has(&self, name: &str) -> bool {
        self.file.header.tensor(name).is_some()
    }

    /// Bytes of one row of `cols` values of `ty` in tensor `name`.
    fn row_bytes(&self, name: &str, ty: GgmlType, cols: usize) -> Result<usize, EngineError> {
        match (ty.quant(), ty) {
            (Some(q), _) => q.bytes_for(cols).ok_or_else(|| self.unsupported(name, ty)),
            (None, GgmlType::F32) => Ok(cols * 4),
            (None, GgmlType::F16 | GgmlType::BF16) => Ok(cols * 2),
            (None, other) => Err(self.unsupported(name, other)),
        }
    }

    /// A `rows x cols` matrix of tensor `name` from its rows' bytes, in the stored format.
    fn stored_mat(
        &self,
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Mat, EngineError> {
        let buf = match (ty.quant(), ty) {
            (Some(q), _) => MatBuf::Quant {
                ty: q,
                data: WeightBuf::from_slice(bytes),
            },
            (None, GgmlType::F32) => MatBuf::F32(f32_buf(bytes)),
            (None, GgmlType::F16) => MatBuf::F16(u16_buf(bytes)),
            (None, GgmlType::BF16) => MatBuf::Bf16(u16_buf(bytes)),
            (None, other) => return Err(self.unsupported(name, other)),
        };
        Ok(Mat { rows, cols, buf })
    }

    /// The file's name of a logical tensor, and which of its rows hold it.
    fn locate(&self, key: Key, rows: usize) -> (String, Pick) {
        let all = Pick::All;
        match key {
            Key::Embed => ("token_embd.weight".into(), all),
            Key::LmHead => ("output.weight".into(), all),
            Key::FinalNorm => ("output_norm.weight".into(), all),
            Key::FinalNormBias => ("output_norm.bias".into(), all),
            Key::Layer(i, lk) => {
                let p = format!("blk.{i}.");
                let n = |s: &str| format!("{p}{s}");
                let (hd, nq, nkv) = (self.head_dim, self.heads, self.kv_heads);
                let fused = self.has(&n("attn_qkv.weight"));
                let qkv = |part: usize, suffix: &str| {
                    let (q, kv) = (nq * hd, nkv * hd);
                    let start = [0, q, q + kv][part];
                    (
                        n(&format!("attn_qkv.{suffix}")),
                        Pick::Range {
                            start,
                            total: q + 2 * kv,
                        },
                    )
                };
                // phi3: `ffn_up` holds [gate; up] and there is no `ffn_gate`.
                let gate_in_up = !self.has(&n("ffn_gate.weight"));
                let qk = |heads: usize| {
                    if self.permute_qk {
                        Pick::Unpermute { heads }
                    } else {
                        all
                    }
                };
                match lk {
                    LKey::AttnNorm => (n("attn_norm.weight"), all),
                    LKey::AttnNormBias => (n("attn_norm.bias"), all),
                    LKey::Q if fused => qkv(0, "weight"),
                    LKey::K if fused => qkv(1, "weight"),
                    LKey::V if fused => qkv(2, "weight"),
                    LKey::QBias if fused => qkv(0, "bias"),
                    LKey::KBias if fused => qkv(1, "bias"),
                    LKey::VBias if fused => qkv(2, "bias"),
                    LKey::Q => (n("attn_q.weight"), qk(nq)),
                    LKey::K => (n("attn_k.weight"), qk(nkv)),
                    LKey::V => (n("attn_v.weight"), all),
                    LKey::QBias => (n("attn_q.bias"), qk(nq)),
                    LKey::KBias => (n("attn_k.bias"), qk(nkv)),
                    LKey::VBias => (n("attn_v.bias"), all),
                    LKey::QNorm => (n("attn_q_norm.weight"), all),
                    LKey::KNorm => (n("attn_k_norm.weight"), all),
                    LKey::O => (n("attn_output.weight"), all),
                    LKey::OBias => (n("attn_output.bias"), all),
                    LKey::AttnPostNorm => (n("post_attention_norm.weight"), all),
                    LKey::FfnNorm => (n("ffn_norm.weight"), all),
                    LKey::FfnNormBias => (n("ffn_norm.bias"), all),
                    LKey::FfnPostNorm => (n("post_ffw_norm.weight"), all),
                    LKey::Gate if gate_in_up => (
                        n("ffn_up.weight"),
                        Pick::Range {
                            start: 0,
                            total: 2 * rows,
                        },
                    ),
                    LKey::Up if gate_in_up && self.is_fused_up(i, rows) => (
                        n("ffn_up.weight"),
                        Pick::Range {
                            start: rows,
                            total: 2 * rows,
                        },
                    ),
                    LKey::Gate => (n("ffn_gate.weight"), all),
                    LKey::Up => (n("ffn_up.weight"), all),
                    LKey::Down => (n("ffn_down.weight"), all),
                    LKey::GateBias => (n("ffn_gate.bias"), all),
                    LKey::UpBias => (n("ffn_up.bias"), all),
                    LKey::DownBias => (n("ffn_down.bias"), all),
                    // MLA (deepseek2). llama.cpp rotates interleaved pairs of the RoPE rows
                    // (LLAMA_ROPE_TYPE_NORM) of the Hugging Face rows as stored; the engine
                    // rotates halves, so those rows are un-permuted (see the module doc).
                    LKey::MlaQA => (n("attn_q_a.weight"), all),
                    LKey::MlaQANorm => (n("attn_q_a_norm.weight"), all),
                    LKey::MlaQB => {
                        let name = if self.has(&n("attn_q_b.weight")) {
                            n("attn_q_b.weight")
                        } else {
                            n("attn_q.weight")
                        };
                        let (nope, rope, _) = self.mla.unwrap_or((0, 0, 0));
                        let pick = Pick::RopeRows {
                            block: nope + rope,
                            offset: nope,
                            rope,
                        };
                        (name, pick)
                    }
                    LKey::MlaKvA => {
                        let rope = self.mla.map_or(0, |m| m.1);
                        let pick = Pick::RopeRows {
                            block: rows,
                            offset: rows.saturating_sub(rope),
                            rope,
                        };
                        (n("attn_kv_a_mqa.weight"), pick)
                    }
                    LKey::MlaKvANorm => (n("attn_kv_a_norm.weight"), all),
                    // Newer files split this into attn_k_b/attn_v_b: see `kv_b_from_split`.
                    LKey::MlaKvB => (n("attn_kv_b.weight"), all),
                    // MoE.
                    LKey::MoeRouter => (n("ffn_gate_inp.weight"), all),
                    LKey::MoeRouterBias => (n("exp_probs_b.bias"), all),
                    LKey::ExpGate(x) | LKey::ExpUp(x) | LKey::ExpDown(x) => {
                        let part = match lk {
                            LKey::ExpGate(_) => "ffn_gate_exps",
                            LKey::ExpUp(_) => "ffn_up_exps",
                            _ => "ffn_down_exps",
                        };
                        let pick = Pick::Expert {
                            index: x as usize,
                            count: self.experts,
                        };
                        (n(&format!("{part}.weight")), pick)
                    }
                    LKey::ShGate => (n("ffn_gate_shexp.weight"), all),
                    LKey::ShUp => (n("ffn_up_shexp.weight"), all),
                    LKey::ShDown => (n("ffn_down_shexp.weight"), all),
                    LKey::ShGateVec => (n("ffn_gate_inp_shexp.weight"), all),
                    #[allow(unreachable_patterns)]
                    other => (
                        n(&format!("<{other:?}: not read from GGUF by this engine>")),
                        all,
                    ),
                }
            }
        }
    }

    /// Whether layer `i`'s `ffn_up` has twice `rows` rows (phi3's fused gate and up).
    fn is_fused_up(&self, i: usize, rows: usize) -> bool {
        self.file
            .header
            .tensor(&format!("blk.{i}.ffn_up.weight"))
            .is_some_and(|t| t.dims.get(1).copied() == Some(2 * rows as u64))
    }

    /// The tensor `name` and its bytes, checking its shape is the one `pick` reads `rows`
    /// logical rows of `cols` from (ggml order; `cols == 0`: a 1-D tensor).
    fn tensor(
        &self,
        name: &str,
        pick: Pick,
        rows: usize,
        cols: usize,
    ) -> Result<(&TensorInfo, &[u8]), EngineError> {
        let path = &self.file.path;
        let Some(t) = self.file.header.tensor(name) else {
            return Err(EngineError::MissingTensor {
                path: path.clone(),
                tensor: name.to_string(),
            });
        };
        let expected: Vec<u64> = match (pick, cols) {
            (Pick::Expert { count, .. }, _) => vec![cols as u64, rows as u64, count as u64],
            (_, 0) => vec![total_rows(pick, rows) as u64],
            _ => vec![cols as u64, total_rows(pick, rows) as u64],
        };
        // ggml allows trailing dimensions of 1.
        let mut dims = t.dims.clone();
        while dims.len() > expected.len() && dims.last() == Some(&1) {
            dims.pop();
        }
        if dims != expected {
            return Err(EngineError::TensorShape {
                path: path.clone(),
                tensor: name.to_string(),
                found: t.dims.iter().map(|&d| d as usize).collect(),
                expected: expected.iter().map(|&d| d as usize).collect(),
            });
        }
        let data = self
            .file
            .header
            .tensor_data(self.file.bytes(), t)
            .map_err(|e| e.in_file(path))?;
        Ok((t, data))
    }

    /// Layer `i`'s `kv_b_proj` (`heads * (nope + dv)` rows of `kv_lora_rank` = `cols`) rebuilt
    /// from newer llama.cpp files' split tensors: `attn_k_b` `[nope, kvl, heads]` holds each
    /// head's `W_UK^T` (`kvl x nope`, the converter's `k_b.transpose(1, 2)`) and `attn_v_b`
    /// `[kvl, dv, heads]` each head's `W_UV` (`dv x kvl`). Dense types stay in their stored
    /// dtype (the transpose is exact); a quantized `attn_k_b` cannot be transposed block-wise,
    /// so the whole matrix is dequantized to f32 ([`model_def`] warns about it).
    fn kv_b_from_split(&self, i: usize, rows: usize, cols: usize) -> Result<Mat, EngineError> {
        let (nope, _, dv) = self.mla.unwrap_or((0, 0, 0));
        let (nh, kvl) = (self.heads, cols);
        let kname = format!("blk.{i}.attn_k_b.weight");
        let vname = format!("blk.{i}.attn_v_b.weight");
        if rows != nh * (nope + dv) {
            return Err(EngineError::TensorShape {
                path: self.file.path.clone(),
                tensor: kname,
                found: vec![rows],
                expected: vec![nh * (nope + dv)],
            });
        }
        let kp = Pick::Expert {
            index: 0,
            count: nh,
        };
        let (kt, kd) = self.tensor(&kname, kp, kvl, nope)?;
        let (vt, vd) = self.tensor(&vname, kp, dv, kvl)?;
        // Row-major f32 copies of `kvl*nh` k rows and `dv*nh` v rows (only when not both
        // dense of one dtype).
        let dense_es = |t: &TensorInfo| match t.ty {
            GgmlType::F32 => Some(4),
            GgmlType::F16 | GgmlType::BF16 => Some(2),
            _ => None,
        };
        if let (Some(es), true) = (dense_es(kt), kt.ty == vt.ty) {
            let mut out = Vec::with_capacity(rows * kvl * es);
            for h in 0..nh {
                for d in 0..nope {
                    for c in 0..kvl {
                        let at = ((h * kvl + c) * nope + d) * es;
                        out.extend_from_slice(&kd[at..at + es]);
                    }
                }
                let at = h * dv * kvl * es;
                out.extend_from_slice(&vd[at..at + dv * kvl * es]);
            }
            let buf = match kt.ty {
                GgmlType::F32 => MatBuf::F32(f32_buf(&out)),
                GgmlType::F16 => MatBuf::F16(u16_buf(&out)),
                _ => MatBuf::Bf16(u16_buf(&out)),
            };
            return Ok(Mat { rows, cols, buf });
        }
        let kf = self.to_f32(&kname, kt, kd, nh * kvl, nope)?;
        let vf = self.to_f32(&vname, vt, vd, nh * dv, kvl)?;
        let mut out = Vec::with_capacity(rows * kvl);
        for h in 0..nh {
            for d in 0..nope {
                out.extend((0..kvl).map(|c| kf[(h * kvl + c) * nope + d]));
            }
            out.extend_from_slice(&vf[h * dv * kvl..(h + 1) * dv * kvl]);
        }
        Ok(Mat {
            rows,
            cols,
            buf: MatBuf::F32(out.into()),
        })
    }

    /// A whole `rows x cols` tensor as f32 (dequantized if quantized).
    fn to_f32(
        &self,
        name: &str,
        t: &TensorInfo,
        data: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, EngineError> {
        Ok(match t.ty {
            GgmlType::F32 => f32s(data).collect(),
            GgmlType::F16 => u16s(data).map(f16_to_f32).collect(),
            GgmlType::BF16 => u16s(data).map(bf16_to_f32).collect(),
            other => {
                let q = other.quant().ok_or_else(|| self.unsupported(name, other))?;
                let m = QuantMatrix {
                    ty: q,
                    rows,
                    cols,
                    data,
                };
                let mut out = vec![0.0f32; rows * cols];
                for (r, row) in out.chunks_exact_mut(cols.max(1)).enumerate() {
                    m.dequantize_row(r, row)
                        .map_err(|_| self.unsupported(name, other))?;
                }
                out
            }
        })
    }

    fn unsupported(&self, name: &str, ty: GgmlType) -> EngineError {
        EngineError::TensorFormat {
            path: self.file.path.clone(),
            tensor: name.to_string(),
            found: ty.name().to_string(),
        }
    }
}

/// The file rows making up `rows` logical rows under `pick`, in order.
fn source_rows(pick: Pick, rows: usize, head_dim: usize) -> Vec<usize> {
    match pick {
        Pick::All => (0..rows).collect(),
        Pick::Range { start, .. } => (start..start + rows).collect(),
        Pick::Expert { index, .. } => (index * rows..(index + 1) * rows).collect(),
        Pick::RopeRows {
            block,
            offset,
            rope,
        } => (0..rows)
            .map(|r| crate::weights::rope_pair_row(r, block, offset, rope))
            .collect(),
        Pick::Unpermute { heads } => {
            let half = head_dim / 2;
            (0..rows)
                .map(|r| {
                    let (h, i) = (r / head_dim.max(1), r % head_dim.max(1));
                    // HF row (h, s, j) with i = s*half + j sits at file row h*d + 2j + s.
                    if half == 0 || heads == 0 {
                        return r;
                    }
                    let (s, j) = (i / half, i % half);
                    h * head_dim + 2 * j + s
                })
                .collect()
        }
    }
}

fn total_rows(pick: Pick, rows: usize) -> usize {
    match pick {
        Pick::Range { total, .. } => total,
        Pick::Expert { count, .. } => count.saturating_mul(rows),
        _ => rows,
    }
}

/// Gathers rows `src` of `row_bytes` bytes each.
fn gather(data: &[u8], src: &[usize], row_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() * row_bytes);
    for &r in src {
        out.extend_from_slice(&data[r * row_bytes..(r + 1) * row_bytes]);
    }
    out
}

/// Little-endian u16 values of `b`.
fn u16s(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
}

/// Little-endian f32 values of `b`.
fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Little-endian u16 values of `b` in weight storage.
fn u16_buf(b: &[u8]) -> WeightBuf<u16> {
    WeightBuf::from_iter(b.len() / 2, u16s(b))
}

/// Little-endian f32 values of `b` in weight storage.
fn f32_buf(b: &[u8]) -> WeightBuf<f32> {
    WeightBuf::from_iter(b.len() / 4, f32s(b))
}

impl Source for GgufSource {
    /// The stored format: the requested dtype is ignored (a GGUF runs what it holds).
    fn mat(
        &mut self,
        key: Key,
        rows: usize,
        cols: usize,
        _dtype: WeightDtype,
    ) -> Result<Mat, EngineError> {
        if rows == 0 || cols == 0 {
            // A placeholder the engine does not run (q/k/v of an MLA layer, the dense MLP of a
            // MoE layer): nothing to read.
            return Ok(Mat {
                rows,
                cols,
                buf: MatBuf::F32(WeightBuf::empty()),
            });
        }
        if let Key::Layer(i, LKey::MlaKvB) = key {
            if !self.has(&format!("blk.{i}.attn_kv_b.weight")) {
                return self.kv_b_from_split(i, rows, cols);
            }
        }
        let (name, pick) = self.locate(key, rows);
        let (t, data) = self.tensor(&name, pick, rows, cols)?;
        let src = source_rows(pick, rows, self.head_dim);
        let row_bytes = self.row_bytes(&name, t.ty, cols)?;
        self.stored_mat(&name, t.ty, rows, cols, &gather(data, &src, row_bytes))
    }

    /// Newer llama.cpp files store MLA's absorbed maps per head (`attn_k_b` `[nope, kvl,
    /// heads]`: each head's `W_UK^T`, `kvl x nope`; `attn_v_b` `[kvl, dv, heads]`: each head's
    /// `W_UV`, `dv x kvl`): sliced per head and kept in their stored format, as llama.cpp
    /// multiplies them (8-bit activations against quantized blocks).
    fn mla_split(&mut self, i: usize, _dtype: WeightDtype) -> Result<Option<MlaMaps>, EngineError> {
        let (kname, vname) = (
            format!("blk.{i}.attn_k_b.weight"),
            format!("blk.{i}.attn_v_b.weight"),
        );
        if self.has(&format!("blk.{i}.attn_kv_b.weight")) || !self.has(&kname) {
            return Ok(None);
        }
        let (nope, _, dv) = self.mla.unwrap_or((0, 0, 0));
        let (nh, kvl) = (self.heads, self.kv_lora_rank);
        let per_head = Pick::Expert {
            index: 0,
            count: nh,
        };
        let maps = |name: &str, rows: usize, cols: usize| -> Result<Vec<Mat>, EngineError> {
            let (t, data) = self.tensor(name, per_head, rows, cols)?;
            let head_bytes = rows * self.row_bytes(name, t.ty, cols)?;
            (0..nh)
                .map(|h| {
                    let bytes = &data[h * head_bytes..(h + 1) * head_bytes];
                    self.stored_mat(name, t.ty, rows, cols, bytes)
                })
                .collect()
        };
        let uk_t = maps(&kname, kvl, nope)?;
        let uv = maps(&vname, dv, kvl)?;
        Ok(Some((uk_t, uv)))
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        let (name, pick) = self.locate(key, len);
        let (t, data) = self.tensor(&name, pick, len, 0)?;
        let src = source_rows(pick, len, self.head_dim);
        let mut v: Vec<f32> = match t.ty {
            GgmlType::F32 => f32s(&gather(data, &src, 4)).collect(),
            GgmlType::F16 => u16s(&gather(data, &src, 2)).map(f16_to_f32).collect(),
            GgmlType::BF16 => u16s(&gather(data, &src, 2)).map(bf16_to_f32).collect(),
            other => return Err(self.unsupported(&name, other)),
        };
        let is_norm = key.is_norm();
        if is_norm && self.norm_offset != 0.0 {
            v.iter_mut().for_each(|x| *x -= self.norm_offset);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `LlamaModel.permute` applied to row indices, inverted by [`source_rows`].
    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, d) = (3, 8);
        // permute: file row h*d + 2j + s holds HF row h*d + s*d/2 + j.
        let mut file_to_hf = vec![0; heads * d];
        for h in 0..heads {
            for s in 0..2 {
                for j in 0..d / 2 {
                    file_to_hf[h * d + 2 * j + s] = h * d + s * d / 2 + j;
                }
            }
        }
        let src = source_rows(Pick::Unpermute { heads }, heads * d, d);
        for (hf_row, &file_row) in src.iter().enumerate() {
            assert_eq!(file_to_hf[file_row], hf_row);
        }
    }

    /// deepseek2: only the `rope` rows after `offset` of each block are un-interleaved; the
    /// map is a permutation within each block.
    #[test]
    fn rope_rows_unpermute_only_the_rope_part_of_each_head() {
        let (heads, nope, rope) = (3, 6, 4);
        let block = nope + rope;
        let pick = Pick::RopeRows {
            block,
            offset: nope,
            rope,
        };
        let src = source_rows(pick, heads * block, 0);
        for h in 0..heads {
            let b = h * block;
            // nope rows in place
            assert_eq!(&src[b..b + nope], &(b..b + nope).collect::<Vec<_>>()[..]);
            // engine rope rows [x0 x1 | y0 y1] from file pairs (x0 y0) (x1 y1)
            let r = &src[b + nope..b + block];
            assert_eq!(r, &[b + nope, b + nope + 2, b + nope + 1, b + nope + 3]);
        }
        let mut sorted = src.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..heads * block).collect::<Vec<_>>());
    }
}
