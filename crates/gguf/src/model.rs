//! Bridge to the analytic model: a [`ModelSpec`] from a GGUF header, and the real storage
//! format of every tensor, keyed by the cost model's [`TensorRole`] and layer.
//!
//! The spec goes through [`hf_config`] and `ModelSpec::from_config_json`, so a GGUF is
//! validated exactly like a config.json. The formats are read from the file, never derived
//! from its file-type label (pitfall 24).

use crate::arch::hf_config;
use crate::{GgmlType, Gguf, GgufError};
use rooflinebench_model::format::{TensorFormats, TensorRole, WeightFormat};
use rooflinebench_model::hardware::Warning;
use rooflinebench_model::spec::ModelSpec;
use std::collections::BTreeMap;

/// The model spec of the model in `g`, with the spec parser's warnings.
pub fn model_spec(g: &Gguf) -> Result<(ModelSpec, Vec<Warning>), GgufError> {
    let cfg = hf_config(g)?;
    ModelSpec::from_config_json(&cfg.to_string()).map_err(|e| GgufError::Spec {
        reason: e.to_string(),
    })
}

/// The cost model's format for a ggml type (`None` for types it does not model: IQ*, Q2_K,
/// Q3_K, integer and f64 tensors).
pub fn weight_format(ty: GgmlType) -> Option<WeightFormat> {
    Some(match ty {
        GgmlType::F32 => WeightFormat::F32,
        GgmlType::F16 => WeightFormat::F16,
        GgmlType::BF16 => WeightFormat::Bf16,
        GgmlType::Q8_0 => WeightFormat::Q8_0,
        GgmlType::Q4_0 => WeightFormat::Q4_0,
        GgmlType::Q4_1 => WeightFormat::Q4_1,
        GgmlType::Q5_0 => WeightFormat::Q5_0,
        GgmlType::Q5_1 => WeightFormat::Q5_1,
        GgmlType::Q4_K => WeightFormat::Q4K,
        GgmlType::Q5_K => WeightFormat::Q5K,
        GgmlType::Q6_K => WeightFormat::Q6K,
        _ => return None,
    })
}

/// The role and layer of a llama.cpp tensor name (`blk.3.attn_v.weight` -> `(AttnV, Some(3))`);
/// `None` for norms, biases and other non-matrix tensors.
pub fn tensor_role(name: &str) -> Option<(TensorRole, Option<u64>)> {
    let global = match name {
        "token_embd.weight" => Some(TensorRole::TokenEmbd),
        "output.weight" => Some(TensorRole::Output),
        _ => None,
    };
    if let Some(r) = global {
        return Some((r, None));
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: u64 = layer.parse().ok()?;
    let role = match tail {
        "attn_q.weight" => TensorRole::AttnQ,
        "attn_k.weight" => TensorRole::AttnK,
        "attn_v.weight" => TensorRole::AttnV,
        "attn_qkv.weight" => TensorRole::AttnQkv,
        "attn_output.weight" => TensorRole::AttnOutput,
        "attn_q_a.weight" => TensorRole::MlaQA,
        "attn_q_b.weight" => TensorRole::MlaQB,
        "attn_kv_a_mqa.weight" => TensorRole::MlaKvA,
        "attn_kv_b.weight" | "attn_k_b.weight" | "attn_v_b.weight" => TensorRole::MlaKvB,
        "ffn_gate.weight" => TensorRole::FfnGate,
        "ffn_up.weight" => TensorRole::FfnUp,
        "ffn_down.weight" => TensorRole::FfnDown,
        "ffn_gate_exps.weight" => TensorRole::FfnGateExps,
        "ffn_up_exps.weight" => TensorRole::FfnUpExps,
        "ffn_down_exps.weight" => TensorRole::FfnDownExps,
        "ffn_gate_shexp.weight" => TensorRole::FfnGateShexp,
        "ffn_up_shexp.weight" => TensorRole::FfnUpShexp,
        "ffn_down_shexp.weight" => TensorRole::FfnDownShexp,
        "ffn_gate_inp.weight" | "ffn_gate_inp_shexp.weight" => TensorRole::Router,
        _ => return None,
    };
    Some((role, Some(layer)))
}

/// The real format of every weight matrix of a file, by role and layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileFormats {
    pub by_tensor: BTreeMap<(TensorRoleKey, Option<u64>), WeightFormat>,
    /// Matrices whose ggml type the cost model cannot represent (name, type).
    pub unmodelled: Vec<(String, GgmlType)>,
}

/// [`TensorRole`] as an ordered map key (its `Debug` name).
pub type TensorRoleKey = String;

impl FileFormats {
    pub fn of(g: &Gguf) -> FileFormats {
        let mut f = FileFormats::default();
        for t in &g.tensors {
            let Some((role, layer)) = tensor_role(&t.name) else {
                continue;
            };
            match weight_format(t.ty) {
                Some(w) => {
                    f.by_tensor.insert((format!("{role:?}"), layer), w);
                }
                None => f.unmodelled.push((t.name.clone(), t.ty)),
            }
        }
        f
    }

    /// The format of the tensor of `role` in `layer` (`None` for global tensors); a tied model
    /// has no `Output`: its head is the token embedding.
    pub fn format_for(&self, role: TensorRole, layer: Option<u64>) -> Option<WeightFormat> {
        let get = |r: TensorRole| self.by_tensor.get(&(format!("{r:?}"), layer)).copied();
        match role {
            TensorRole::Output => get(TensorRole::Output).or_else(|| {
                self.by_tensor
                    .get(&(format!("{:?}", TensorRole::TokenEmbd), None))
                    .copied()
            }),
            r => get(r),
        }
    }
}

/// The real format of every matrix of `g` the cost model can represent, for
/// `CostModel::with_formats` (pitfall 24: cost the file's types, not its label). Matrices of
/// other types are listed in [`FileFormats::unmodelled`].
pub fn tensor_formats(g: &Gguf) -> TensorFormats {
    let mut f = TensorFormats::new();
    for t in &g.tensors {
        let Some((role, layer)) = tensor_role(&t.name) else {
            continue;
        };
        if let Some(w) = weight_format(t.ty) {
            f.insert(role, layer, w);
        }
    }
    f
}
