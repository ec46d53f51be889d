//! Weights from a GGUF file (llama.cpp's format), in their stored formats.
//!
//! What it is: a [`Source`] over a memory-mapped GGUF that maps llama.cpp's tensor names
//! (`token_embd`, `blk.N.attn_q`, `ffn_gate`, `attn_norm`, `output_norm`, `output`, biases,
//! q/k norms; fused `attn_qkv` and phi3's `[gate; up]` `ffn_up` split by rows) onto the
//! engine's [`Key`]s and copies every tensor once into owned aligned buffers before anything
//! is timed. Quantized tensors keep their block format ([`MatBuf::Quant`]), F32/F16/BF16
//! tensors stay dense in their stored dtype, 1-D tensors become f32.
//!
//! Two conversions undo what llama.cpp's `convert_hf_to_gguf.py` did:
//! - `llama` architecture: the converter permutes the rows of `attn_q`/`attn_k` (weights and
//!   biases) from the Hugging Face rotate-half layout to interleaved pairs, because llama.cpp
//!   applies "normal" (adjacent-pair) RoPE to that architecture (`LlamaModel.permute`:
//!   `w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2)`). The engine's RoPE is rotate-half, so
//!   rows are permuted back on load: engine row `h*d + s*d/2 + j` is file row `h*d + 2j + s`.
//!   Other architectures (qwen2/3, gemma, phi3, gpt-neox) use NeoX RoPE in llama.cpp and keep
//!   the Hugging Face row order.
//! - Gemma: the converter stores RMSNorm weights as `1 + w`; the engine adds the family's
//!   offset itself, so it is subtracted here.
//!
//! What it is not: a loader for MLA/MoE expert tensors or for formats without an engine kernel
//! (IQ*, Q2_K, Q3_K, ...): those give one error naming the file and the tensor.

use crate::arch::ModelDef;
use crate::error::EngineError;
use crate::weights::{AlignedBytes, Key, LKey, Mat, MatBuf, Source};
use rooflinebench_gguf::{GgmlType, GgufFile, TensorInfo};
use rooflinebench_kernels::engine::convert::{bf16_to_f32, f16_to_f32};
use rooflinebench_kernels::engine::WeightDtype;
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
}

/// The model definition of a GGUF file: llama.cpp's hyperparameters as a Hugging Face config,
/// parsed like any `config.json` (value parameters such as `rope_theta` and `rms_norm_eps`
/// included). Errors name the file.
pub fn model_def(path: &Path) -> Result<(ModelDef, Vec<Warning>), EngineError> {
    let file = GgufFile::open(path)?;
    let cfg = rooflinebench_gguf::arch::hf_config(&file.header).map_err(|e| e.in_file(path))?;
    let (mut def, warnings) =
        ModelDef::from_config_json(&cfg.to_string()).map_err(|e| EngineError::Config {
            field: path.display().to_string(),
            reason: e.to_string(),
        })?;
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
        })
    }

    /// Bytes of every tensor in the file (what the loaded weights take, within padding).
    pub fn tensor_bytes(&self) -> u64 {
        self.file.header.tensors.iter().map(|t| t.n_bytes).sum()
    }

    fn has(&self, name: &str) -> bool {
        self.file.header.tensor(name).is_some()
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

    /// The tensor `name` and its bytes, checking its shape is `[cols, total_rows]` (ggml
    /// order; `cols == 0`: a 1-D tensor of `total_rows`).
    fn tensor(
        &self,
        name: &str,
        total_rows: usize,
        cols: usize,
    ) -> Result<(&TensorInfo, &[u8]), EngineError> {
        let path = &self.file.path;
        let Some(t) = self.file.header.tensor(name) else {
            return Err(EngineError::MissingTensor {
                path: path.clone(),
                tensor: name.to_string(),
            });
        };
        let expected: Vec<u64> = if cols == 0 {
            vec![total_rows as u64]
        } else {
            vec![cols as u64, total_rows as u64]
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

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
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
        let (name, pick) = self.locate(key, rows);
        let (t, data) = self.tensor(&name, total_rows(pick, rows), cols)?;
        let src = source_rows(pick, rows, self.head_dim);
        let buf = if let Some(q) = t.ty.quant() {
            let row_bytes = q
                .bytes_for(cols)
                .ok_or_else(|| self.unsupported(&name, t.ty))?;
            MatBuf::Quant {
                ty: q,
                data: AlignedBytes::from_slice(&gather(data, &src, row_bytes)),
            }
        } else {
            match t.ty {
                GgmlType::F32 => MatBuf::F32(f32s(&gather(data, &src, cols * 4))),
                GgmlType::F16 => MatBuf::F16(u16s(&gather(data, &src, cols * 2))),
                GgmlType::BF16 => MatBuf::Bf16(u16s(&gather(data, &src, cols * 2))),
                other => return Err(self.unsupported(&name, other)),
            }
        };
        Ok(Mat { rows, cols, buf })
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        let (name, pick) = self.locate(key, len);
        let (t, data) = self.tensor(&name, total_rows(pick, len), 0)?;
        let src = source_rows(pick, len, self.head_dim);
        let mut v: Vec<f32> = match t.ty {
            GgmlType::F32 => f32s(&gather(data, &src, 4)),
            GgmlType::F16 => u16s(&gather(data, &src, 2))
                .into_iter()
                .map(f16_to_f32)
                .collect(),
            GgmlType::BF16 => u16s(&gather(data, &src, 2))
                .into_iter()
                .map(bf16_to_f32)
                .collect(),
            other => return Err(self.unsupported(&name, other)),
        };
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
}
