//! Operator identity and per-operator cost, shared by the analytic cost table, the engine's
//! timing recorder and the report, so predicted and measured costs join on a key, not a string.
//!
//! Counting convention (see `reference/PITFALLS.md`): one multiply-add is 2 FLOPs; bytes are
//! bytes moved to or from memory by an ideal kernel (each weight read once per phase, each
//! activation read and written once per operator), split by what they are.

use crate::hardware::Precision;
use crate::units::{Bytes, Flops, Intensity};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an operator does. Matched exhaustively: a new variant breaks the build wherever it
/// is unhandled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Gather of one embedding row per token.
    Embedding,
    /// Norm before attention (RMSNorm or LayerNorm).
    AttnNorm,
    QProj,
    KProj,
    VProj,
    /// Per-head RMSNorm on queries (Qwen3, Gemma3, OLMoE).
    QNorm,
    /// Per-head RMSNorm on keys.
    KNorm,
    /// Rotary position embedding applied to q and k.
    Rope,
    /// MLA: query down-projection to `q_lora_rank` (absent when `q_lora_rank` is null).
    MlaQDown,
    /// MLA: query up-projection (or direct projection) to per-head nope+rope dims.
    MlaQUp,
    /// MLA: down-projection of the hidden state to the latent `kv_lora_rank` plus the shared rope key.
    MlaKvDown,
    /// MLA materialized form: latent cache up-projected to per-head K (nope) and V.
    MlaKvUp,
    /// MLA absorbed form: per-head query nope part mapped into latent space (`W_UK` absorbed).
    MlaQAbsorb,
    /// MLA absorbed form: per-head latent attention output mapped to `v_head_dim` (`W_UV`).
    MlaVAbsorb,
    /// `Q K^T` (causal in prefill).
    AttnScore,
    AttnSoftmax,
    /// `softmax(QK^T) V`.
    AttnValue,
    OProj,
    /// Norm after attention, before the residual add (Gemma2/3).
    AttnPostNorm,
    AttnResidual,
    /// Norm before the FFN.
    FfnNorm,
    FfnGate,
    FfnUp,
    /// Activation (and the gate multiply of a gated MLP), on `intermediate_size` elements.
    FfnAct,
    FfnDown,
    /// Norm after the FFN, before the residual add (Gemma2/3).
    FfnPostNorm,
    /// MoE router: logits over experts, softmax/sigmoid, top-k.
    MoeRouter,
    /// All routed experts of a layer (gate, up, act, down) together.
    MoeExperts,
    /// Shared (always-on) experts of a MoE layer together.
    MoeSharedExperts,
    FfnResidual,
    FinalNorm,
    LmHead,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Embedding => "embedding",
            OpKind::AttnNorm => "attn_norm",
            OpKind::QProj => "q_proj",
            OpKind::KProj => "k_proj",
            OpKind::VProj => "v_proj",
            OpKind::QNorm => "q_norm",
            OpKind::KNorm => "k_norm",
            OpKind::Rope => "rope",
            OpKind::MlaQDown => "mla_q_down",
            OpKind::MlaQUp => "mla_q_up",
            OpKind::MlaKvDown => "mla_kv_down",
            OpKind::MlaKvUp => "mla_kv_up",
            OpKind::MlaQAbsorb => "mla_q_absorb",
            OpKind::MlaVAbsorb => "mla_v_absorb",
            OpKind::AttnScore => "attn_score",
            OpKind::AttnSoftmax => "attn_softmax",
            OpKind::AttnValue => "attn_value",
            OpKind::OProj => "o_proj",
            OpKind::AttnPostNorm => "attn_post_norm",
            OpKind::AttnResidual => "attn_residual",
            OpKind::FfnNorm => "ffn_norm",
            OpKind::FfnGate => "ffn_gate",
            OpKind::FfnUp => "ffn_up",
            OpKind::FfnAct => "ffn_act",
            OpKind::FfnDown => "ffn_down",
            OpKind::FfnPostNorm => "ffn_post_norm",
            OpKind::MoeRouter => "moe_router",
            OpKind::MoeExperts => "moe_experts",
            OpKind::MoeSharedExperts => "moe_shared_experts",
            OpKind::FfnResidual => "ffn_residual",
            OpKind::FinalNorm => "final_norm",
            OpKind::LmHead => "lm_head",
        }
    }
}

/// One operator instance: its kind and the layer it belongs to (`None` outside the layer stack:
/// embedding, final norm, LM head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    pub layer: Option<u32>,
    pub kind: OpKind,
}

impl OpId {
    pub fn global(kind: OpKind) -> OpId {
        OpId { layer: None, kind }
    }
    pub fn layer(layer: u32, kind: OpKind) -> OpId {
        OpId {
            layer: Some(layer),
            kind,
        }
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            Some(l) => write!(f, "L{l}.{}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

/// The work and traffic of one operator in one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCost {
    pub id: OpId,
    pub flops: Flops,
    /// Weight bytes read (each weight once per phase, at its stored size incl. block scales).
    pub weight_bytes: Bytes,
    /// Activation bytes read.
    pub act_read_bytes: Bytes,
    /// Activation bytes written.
    pub act_write_bytes: Bytes,
    /// KV-cache bytes read.
    pub kv_read_bytes: Bytes,
    /// KV-cache bytes written (new entries only).
    pub kv_write_bytes: Bytes,
    /// The arithmetic path this operator executes on; selects its compute roof.
    pub compute: Precision,
}

impl OpCost {
    pub fn zero(id: OpId, compute: Precision) -> OpCost {
        OpCost {
            id,
            flops: Flops::ZERO,
            weight_bytes: Bytes::ZERO,
            act_read_bytes: Bytes::ZERO,
            act_write_bytes: Bytes::ZERO,
            kv_read_bytes: Bytes::ZERO,
            kv_write_bytes: Bytes::ZERO,
            compute,
        }
    }

    /// All memory traffic of the operator.
    pub fn bytes(&self) -> Bytes {
        self.weight_bytes
            + self.act_read_bytes
            + self.act_write_bytes
            + self.kv_read_bytes
            + self.kv_write_bytes
    }

    /// `flops / bytes`; infinite for an operator that moves no bytes.
    pub fn intensity(&self) -> Intensity {
        self.flops / self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_id_displays_layer_and_kind() {
        assert_eq!(OpId::layer(3, OpKind::QProj).to_string(), "L3.q_proj");
        assert_eq!(OpId::global(OpKind::LmHead).to_string(), "lm_head");
    }

    #[test]
    fn bytes_sum_every_stream() {
        let mut c = OpCost::zero(OpId::global(OpKind::LmHead), Precision::F32);
        c.flops = Flops(100);
        c.weight_bytes = Bytes(10);
        c.act_read_bytes = Bytes(1);
        c.act_write_bytes = Bytes(2);
        c.kv_read_bytes = Bytes(3);
        c.kv_write_bytes = Bytes(4);
        assert_eq!(c.bytes(), Bytes(20));
        assert_eq!(c.intensity().0, 5.0);
    }
}
