//! The exact per-operator cost model: FLOPs and bytes of every operator of one phase.
//!
//! # Conventions
//!
//! - One multiply-add is 2 FLOPs. Elementwise work is charged per element: norms
//!   (RMSNorm 4, LayerNorm 7), RoPE 3 per rotated element, softmax 5 per score (scale, max,
//!   subtract-exp, sum, divide; +3 with Gemma2's tanh soft-cap), activations (SiLU 4, GELU 8),
//!   a gated multiply 1, a residual add 1, a bias add 1.
//! - Bytes are those an ideal *unfused* kernel per operator moves (see [`crate::op`]): each
//!   weight read once per phase at its stored size (block scales included, [`crate::format`]),
//!   each operator's input activations read and output activations written once, at
//!   [`CostOptions::activation_bytes`] per element. Attention scores and probabilities are
//!   written and read between score, softmax and value, unless [`CostOptions::flash_attention`]
//!   (then they stay on chip).
//! - KV cache: K is written by the RoPE operator (after q/k norm), V by the V projection. The
//!   score operator reads every attended K row once per sequence, the value operator every V
//!   row (ideal reuse across the queries of a prefill). Bytes per row follow
//!   [`CostOptions::kv`] (PITFALLS.md #2, #3).
//! - Attention pairs are causal (PITFALLS.md #8): in a prefill of `S` new tokens after `c0`
//!   cached, the token at position `p` attends to `min(p + 1, W)` positions (itself included,
//!   `W` the layer's sliding window or infinity): `S*c0 + S(S+1)/2` pairs without a window.
//! - [`Phase::Decode`]`{ context: c }` is one new token per sequence at position `c - 1`,
//!   attending to `min(c, W)` positions including itself; it writes one new KV entry per layer
//!   and reads the `min(c, W)` attended rows (its own just written one included). It costs
//!   exactly what `Prefill { tokens: 1, cached: c - 1 }` costs (PITFALLS.md #10).
//! - The LM head (and the final norm before it) run on the last token of each sequence in a
//!   prefill, or on every prompt token with [`CostOptions::lm_head_all_tokens`]; on the one new
//!   token in a decode step: `2 * hidden * vocab` FLOPs per such token (PITFALLS.md #9). It reads
//!   the whole output matrix (for a tied model, the embedding matrix).
//! - The embedding gathers one row per token (at most `vocab` distinct rows): never the whole
//!   table (PITFALLS.md #18).
//! - MoE: routed FLOPs are exact (`tokens * top_k` expert applications); expert weight bytes
//!   are the expected number of distinct experts hit by `T` routed tokens under uniform
//!   routing, `E * (1 - (1 - k/E)^T)` (PITFALLS.md #7), times one expert's bytes, rounded to the
//!   byte. The experts operator also counts combining the `k` outputs (2 FLOPs per element).
//! - MLA (DeepSeek-V2 §2.1, [`MlaForm`]): `Absorbed` caches the latent `kv_lora_rank +
//!   qk_rope_head_dim` per token per layer and folds `W_UK`/`W_UV` into per-head query and
//!   output maps (`MlaQAbsorb`, `MlaVAbsorb`); attention runs in the latent space and the
//!   value operator reuses the latent rows the score operator read (no second read).
//!   `Materialized` (the Hugging Face reference) up-projects each new token's latent to
//!   per-head K and V (`MlaKvUp`) and caches those: it behaves like MHA. The MLA q/kv
//!   down-projections include their RMSNorm (`q_a_layernorm`, `kv_a_layernorm`).
//! - Arithmetic path ([`OpCost::compute`]): matrix products on the weight format's path
//!   (`f32`/`f16`/`bf16`, int8 for block-quantized weights), attention score/value on the KV
//!   format's path, everything elementwise (norms, RoPE, softmax, activations, residuals,
//!   embedding gather, router) on f32.
//!
//! All arithmetic is exact integer arithmetic on saturating 128-bit intermediates; a result
//! that does not fit in 64 bits is an error ([`ModelError::Overflow`]), never a wrap-around.
//!
//! Not modelled: framework overheads, cache effects (see `roofline` for cache-level roofs),
//! speculative decoding, padding, tensor parallelism.

use crate::error::ModelError;
use crate::format::{KvFormat, Recipe, RecipeContext, TensorFormats, TensorRole, WeightFormat};
use crate::hardware::Precision;
use crate::op::{OpCost, OpId, OpKind};
use crate::spec::{Attention, LayerKind, MlaSpec, ModelSpec, QkNorm, MAX_POSITIONS};
use crate::units::{Bytes, Flops, Intensity};
use serde::{Deserialize, Serialize};
use std::ops::{Add, Mul};

/// Largest accepted batch: 2^24 sequences.
pub const MAX_BATCH: u64 = 1 << 24;

/// What one forward pass processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `tokens` new tokens per sequence after `cached` already in the KV cache; the new token at
    /// position `cached + i` attends to `cached + i + 1` positions (causal).
    Prefill { tokens: u64, cached: u64 },
    /// One new token per sequence attending to `context` positions **including itself**
    /// (`context - 1` cached before the step). The first decode step after a prefill of `P`
    /// tokens has `context = P + 1`.
    Decode { context: u64 },
}

impl Phase {
    /// New tokens per sequence.
    pub fn new_tokens(&self) -> u64 {
        match self {
            Phase::Prefill { tokens, .. } => *tokens,
            Phase::Decode { .. } => 1,
        }
    }
    /// Positions cached before the phase.
    pub fn cached(&self) -> u64 {
        match self {
            Phase::Prefill { cached, .. } => *cached,
            Phase::Decode { context } => context.saturating_sub(1),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Prefill { .. } => "prefill",
            Phase::Decode { .. } => "decode",
        }
    }
    fn validate(&self) -> Result<(), ModelError> {
        let (opt, v) = match self {
            Phase::Prefill { tokens, cached } => {
                if *cached > MAX_POSITIONS {
                    return Err(ModelError::BadOption {
                        option: "cached",
                        value: *cached,
                        reason: "more than 2^40 cached positions",
                    });
                }
                ("seq", *tokens)
            }
            Phase::Decode { context } => ("context", *context),
        };
        if v == 0 {
            return Err(ModelError::BadOption {
                option: opt,
                value: v,
                reason: "must be at least 1",
            });
        }
        if v > MAX_POSITIONS {
            return Err(ModelError::BadOption {
                option: opt,
                value: v,
                reason: "more than 2^40 positions",
            });
        }
        Ok(())
    }
}

/// The execution form of multi-head latent attention (labelled on every MLA result).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlaForm {
    /// Latent cache (`kv_lora_rank + qk_rope_head_dim` per token per layer), `W_UK`/`W_UV`
    /// absorbed: high decode intensity.
    #[default]
    Absorbed,
    /// Per-head K and V materialized and cached (Hugging Face reference): like MHA.
    Materialized,
}

impl MlaForm {
    pub fn name(self) -> &'static str {
        match self {
            MlaForm::Absorbed => "absorbed",
            MlaForm::Materialized => "materialized",
        }
    }
}

/// Everything about *how* a model is run that changes its costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostOptions {
    /// Sequences processed together (each with the same phase geometry). [`crate::workload::
    /// request_cost`] uses the scenario's batch instead.
    pub batch: u64,
    /// How weights are stored.
    pub weights: Recipe,
    /// How the KV cache is stored.
    pub kv: KvFormat,
    /// Apply the LM head to every prompt token in a prefill (default: the last one only).
    pub lm_head_all_tokens: bool,
    /// MLA execution form (ignored for other attention kinds).
    pub mla_form: MlaForm,
    /// Bytes per activation element between operators: 4 (f32, llama.cpp on CPU) or 2.
    pub activation_bytes: u64,
    /// Fused attention: scores and probabilities never reach memory.
    pub flash_attention: bool,
}

impl Default for CostOptions {
    fn default() -> Self {
        CostOptions {
            batch: 1,
            weights: Recipe::default(),
            kv: KvFormat::default(),
            lm_head_all_tokens: false,
            mla_form: MlaForm::Absorbed,
            activation_bytes: 4,
            flash_attention: false,
        }
    }
}

impl CostOptions {
    fn validate(&self) -> Result<(), ModelError> {
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(ModelError::BadOption {
                option: "batch",
                value: self.batch,
                reason: "must be between 1 and 2^24",
            });
        }
        if self.activation_bytes != 2 && self.activation_bytes != 4 {
            return Err(ModelError::BadOption {
                option: "activation_bytes",
                value: self.activation_bytes,
                reason: "must be 2 or 4",
            });
        }
        Ok(())
    }
}

/// Sums of the cost fields over a set of operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostTotals {
    pub flops: Flops,
    pub weight_bytes: Bytes,
    pub act_read_bytes: Bytes,
    pub act_write_bytes: Bytes,
    pub kv_read_bytes: Bytes,
    pub kv_write_bytes: Bytes,
}

impl CostTotals {
    /// Adds `op` taken `times` times (saturating: totals are validated at construction).
    pub fn add_op(&mut self, op: &OpCost, times: u64) {
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b.saturating_mul(times));
        add(&mut self.flops.0, op.flops.0);
        add(&mut self.weight_bytes.0, op.weight_bytes.0);
        add(&mut self.act_read_bytes.0, op.act_read_bytes.0);
        add(&mut self.act_write_bytes.0, op.act_write_bytes.0);
        add(&mut self.kv_read_bytes.0, op.kv_read_bytes.0);
        add(&mut self.kv_write_bytes.0, op.kv_write_bytes.0);
    }
    /// Adds another total (saturating).
    pub fn add(&mut self, o: &CostTotals) {
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut self.flops.0, o.flops.0);
        add(&mut self.weight_bytes.0, o.weight_bytes.0);
        add(&mut self.act_read_bytes.0, o.act_read_bytes.0);
        add(&mut self.act_write_bytes.0, o.act_write_bytes.0);
        add(&mut self.kv_read_bytes.0, o.kv_read_bytes.0);
        add(&mut self.kv_write_bytes.0, o.kv_write_bytes.0);
    }
    /// All memory traffic.
    pub fn bytes(&self) -> Bytes {
        Bytes(
            self.weight_bytes
                .0
                .saturating_add(self.act_read_bytes.0)
                .saturating_add(self.act_write_bytes.0)
                .saturating_add(self.kv_read_bytes.0)
                .saturating_add(self.kv_write_bytes.0),
        )
    }
    /// `flops / bytes`.
    pub fn intensity(&self) -> Intensity {
        self.flops / self.bytes()
    }
    /// Checked total, for validating a table once.
    fn checked_add_op(&mut self, op: &OpCost, times: u64) -> Option<()> {
        let f = |a: u64, b: u64| a.checked_add(b.checked_mul(times)?);
        self.flops.0 = f(self.flops.0, op.flops.0)?;
        self.weight_bytes.0 = f(self.weight_bytes.0, op.weight_bytes.0)?;
        self.act_read_bytes.0 = f(self.act_read_bytes.0, op.act_read_bytes.0)?;
        self.act_write_bytes.0 = f(self.act_write_bytes.0, op.act_write_bytes.0)?;
        self.kv_read_bytes.0 = f(self.kv_read_bytes.0, op.kv_read_bytes.0)?;
        self.kv_write_bytes.0 = f(self.kv_write_bytes.0, op.kv_write_bytes.0)?;
        // bytes() must not saturate either
        let b = [
            self.weight_bytes.0,
            self.act_read_bytes.0,
            self.act_write_bytes.0,
            self.kv_read_bytes.0,
            self.kv_write_bytes.0,
        ];
        b.iter().try_fold(0u64, |acc, x| acc.checked_add(*x))?;
        Some(())
    }
}

/// Costs of one layer (sum of its operators).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub layer: u32,
    pub totals: CostTotals,
}

/// Every operator of one phase, layer by layer: embedding first, then each layer's operators
/// in execution order, then the final norm and the LM head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostTable {
    pub phase: Phase,
    pub batch: u64,
    /// Weight recipe and KV format the table was computed for.
    pub weights: Recipe,
    pub kv: KvFormat,
    /// The MLA form used (`None` for non-MLA models): every MLA number says which form it is.
    pub mla_form: Option<MlaForm>,
    pub ops: Vec<OpCost>,
}

impl CostTable {
    pub fn totals(&self) -> CostTotals {
        let mut t = CostTotals::default();
        for op in &self.ops {
            t.add_op(op, 1);
        }
        t
    }
    pub fn flops(&self) -> Flops {
        self.totals().flops
    }
    pub fn bytes(&self) -> Bytes {
        self.totals().bytes()
    }
    pub fn weight_bytes(&self) -> Bytes {
        self.totals().weight_bytes
    }
    /// Activation bytes read and written.
    pub fn act_bytes(&self) -> Bytes {
        let t = self.totals();
        Bytes(t.act_read_bytes.0.saturating_add(t.act_write_bytes.0))
    }
    pub fn kv_read_bytes(&self) -> Bytes {
        self.totals().kv_read_bytes
    }
    pub fn kv_write_bytes(&self) -> Bytes {
        self.totals().kv_write_bytes
    }
    pub fn intensity(&self) -> Intensity {
        self.totals().intensity()
    }
    /// One summary per layer, in order (global operators excluded).
    pub fn per_layer(&self) -> Vec<LayerSummary> {
        let mut out: Vec<LayerSummary> = Vec::new();
        for op in &self.ops {
            let Some(l) = op.id.layer else { continue };
            match out.last_mut() {
                Some(s) if s.layer == l => s.totals.add_op(op, 1),
                _ => {
                    let mut totals = CostTotals::default();
                    totals.add_op(op, 1);
                    out.push(LayerSummary { layer: l, totals });
                }
            }
        }
        out
    }
    /// Operators summed over layers, one row per kind in first-appearance order.
    pub fn by_kind(&self) -> Vec<(OpKind, Precision, CostTotals)> {
        let mut out: Vec<(OpKind, Precision, CostTotals)> = Vec::new();
        for op in &self.ops {
            match out.iter_mut().find(|(k, _, _)| *k == op.id.kind) {
                Some((_, _, t)) => t.add_op(op, 1),
                None => {
                    let mut t = CostTotals::default();
                    t.add_op(op, 1);
                    out.push((op.id.kind, op.compute, t));
                }
            }
        }
        out
    }
    /// The operators of layer `layer`.
    pub fn layer_ops(&self, layer: u32) -> impl Iterator<Item = &OpCost> {
        self.ops.iter().filter(move |o| o.id.layer == Some(layer))
    }
}

// ---------------------------------------------------------------------------------------------
// Saturating arithmetic: every formula below reads like the maths, and anything too big
// saturates at u64::MAX. All formulas only multiply and add non-negative counts, so a
// saturated intermediate leaves the result saturated (or exactly 0 when a factor is 0, which
// is then also the true value); `u64::MAX` is therefore reserved as "overflowed" and turned
// into an error when an operator is finished.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct W(u64);

impl W {
    /// From a 128-bit intermediate, saturating.
    #[inline]
    fn wide(x: u128) -> W {
        W(u64::try_from(x).unwrap_or(u64::MAX))
    }
}

impl Mul for W {
    type Output = W;
    #[inline]
    fn mul(self, o: W) -> W {
        W(self.0.saturating_mul(o.0))
    }
}
impl Add for W {
    type Output = W;
    #[inline]
    fn add(self, o: W) -> W {
        W(self.0.saturating_add(o.0))
    }
}
#[inline]
fn w(x: u64) -> W {
    W(x)
}
const Z: W = W(0);

/// An operator before conversion to 64-bit counts.
#[derive(Clone, Copy)]
struct RawOp {
    kind: OpKind,
    flops: W,
    weight: W,
    act_r: W,
    act_w: W,
    kv_r: W,
    kv_w: W,
    compute: Precision,
}

impl RawOp {
    fn new(kind: OpKind, compute: Precision) -> RawOp {
        RawOp {
            kind,
            flops: Z,
            weight: Z,
            act_r: Z,
            act_w: Z,
            kv_r: Z,
            kv_w: Z,
            compute,
        }
    }
    fn finish(self, layer: Option<u32>) -> Result<OpCost, ModelError> {
        let c = |x: W, what| {
            if x.0 == u64::MAX {
                Err(ModelError::Overflow { what })
            } else {
                Ok(x.0)
            }
        };
        Ok(OpCost {
            id: OpId {
                layer,
                kind: self.kind,
            },
            flops: Flops(c(self.flops, "an operator's FLOPs")?),
            weight_bytes: Bytes(c(self.weight, "an operator's weight bytes")?),
            act_read_bytes: Bytes(c(self.act_r, "an operator's activation bytes")?),
            act_write_bytes: Bytes(c(self.act_w, "an operator's activation bytes")?),
            kv_read_bytes: Bytes(c(self.kv_r, "an operator's KV bytes")?),
            kv_write_bytes: Bytes(c(self.kv_w, "an operator's KV bytes")?),
            compute: self.compute,
        })
    }
}

/// Formats of every matrix of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LayerFormats {
    q: WeightFormat,
    k: WeightFormat,
    v: WeightFormat,
    o: WeightFormat,
    gate: WeightFormat,
    up: WeightFormat,
    down: WeightFormat,
    e_gate: WeightFormat,
    e_up: WeightFormat,
    e_down: WeightFormat,
    s_gate: WeightFormat,
    s_up: WeightFormat,
    s_down: WeightFormat,
    q_a: WeightFormat,
    q_b: WeightFormat,
    kv_a: WeightFormat,
    kv_b: WeightFormat,
}

#[derive(Clone, Copy, Debug)]
struct Group {
    kind: LayerKind,
    fmts: LayerFormats,
    first: u32,
    count: u64,
}

/// Per-phase geometry.
#[derive(Clone, Copy)]
struct Geo {
    /// Sequences.
    b: W,
    /// New tokens over all sequences (`b * new tokens per sequence`).
    t: W,
    /// Tokens the final norm and LM head run on.
    lm: W,
}

/// `(query-key pairs, KV rows read)` per sequence for a phase under a window.
fn extent(phase: &Phase, window: Option<u64>) -> (W, W) {
    let s = phase.new_tokens() as u128;
    let c0 = phase.cached() as u128;
    let end = c0 + s; // positions after the phase; queries at 1-based positions c0+1 ..= end
    match window {
        None => (W::wide(s * c0 + s * (s + 1) / 2), W::wide(end)),
        Some(wd) => {
            let wd = wd as u128;
            let a = c0 + 1;
            let pairs = if a > wd {
                s * wd
            } else if end <= wd {
                s * c0 + s * (s + 1) / 2
            } else {
                // a ..= wd attend to their own position count, the rest to wd each
                (a + wd) * (wd - a + 1) / 2 + (end - wd) * wd
            };
            (W::wide(pairs), W::wide(end.min(s + wd - 1)))
        }
    }
}

/// Expected number of distinct experts hit when `tokens` tokens each pick `top_k` of
/// `num_experts` experts uniformly: `E * (1 - (1 - k/E)^T)`, never more than `min(E, T*k)`
/// (PITFALLS.md #7). The power is computed by repeated squaring (deterministic on every
/// platform).
pub fn expected_distinct_experts(num_experts: u64, top_k: u64, tokens: u64) -> f64 {
    if num_experts == 0 || top_k == 0 || tokens == 0 {
        return 0.0;
    }
    let k = top_k.min(num_experts);
    let cap = (num_experts as f64).min(tokens as f64 * k as f64);
    if tokens == 1 {
        return k as f64;
    }
    let miss = 1.0 - k as f64 / num_experts as f64;
    let mut base = miss;
    let mut e = tokens;
    let mut p = 1.0f64;
    while e > 0 && p > 0.0 {
        if e & 1 == 1 {
            p *= base;
        }
        base *= base;
        e >>= 1;
    }
    (num_experts as f64 * (1.0 - p)).min(cap)
}

/// A model prepared for costing under fixed options: per-layer weight formats are resolved
/// once and identical layers are grouped, so each phase costs one pass per distinct layer.
#[derive(Clone, Debug)]
pub struct CostModel<'a> {
    spec: &'a ModelSpec,
    opts: CostOptions,
    groups: Vec<Group>,
    /// Group index of every layer.
    layer_group: Vec<u16>,
    embd: WeightFormat,
    output: WeightFormat,
}

impl<'a> CostModel<'a> {
    pub fn new(spec: &'a ModelSpec, opts: &CostOptions) -> Result<CostModel<'a>, ModelError> {
        Self::build(spec, opts, None)
    }

    /// Like [`CostModel::new`], but every tensor found in `formats` (a file's real per-tensor
    /// types, PITFALLS.md #24) is costed in that format; the others follow `opts.weights`.
    pub fn with_formats(
        spec: &'a ModelSpec,
        opts: &CostOptions,
        formats: &TensorFormats,
    ) -> Result<CostModel<'a>, ModelError> {
        Self::build(spec, opts, Some(formats))
    }

    fn build(
        spec: &'a ModelSpec,
        opts: &CostOptions,
        given: Option<&TensorFormats>,
    ) -> Result<CostModel<'a>, ModelError> {
        spec.validate()?;
        opts.validate()?;
        let h = spec.hidden_size;
        let n_experts = spec.ffn.moe().map_or(0, |m| m.num_experts);
        let rctx = RecipeContext {
            n_layers: spec.num_hidden_layers,
            n_experts,
            has_output: !spec.tie_word_embeddings,
        };
        let r = opts.weights;
        let lookup = |role, layer| given.and_then(|g| g.get(role, layer));
        let embd = lookup(TensorRole::TokenEmbd, None)
            .unwrap_or_else(|| r.format_for(TensorRole::TokenEmbd, 0, h, &rctx));
        let output = if spec.tie_word_embeddings {
            embd
        } else {
            lookup(TensorRole::Output, None)
                .unwrap_or_else(|| r.format_for(TensorRole::Output, 0, h, &rctx))
        };
        let nh_dv = spec.num_attention_heads * spec.v_head_dim;
        let (ei, si) = spec.ffn.moe().map_or((1, 1), |m| {
            (
                m.expert_intermediate_size,
                m.shared_intermediate_size.max(1),
            )
        });
        let (ql, kvl) = match &spec.attention {
            Attention::Mla(m) => (m.q_lora_rank.unwrap_or(1), m.kv_lora_rank),
            _ => (1, 1),
        };
        let (qr, kr, vr) = if spec.fused_qkv {
            (
                TensorRole::AttnQkv,
                TensorRole::AttnQkv,
                TensorRole::AttnQkv,
            )
        } else {
            (TensorRole::AttnQ, TensorRole::AttnK, TensorRole::AttnV)
        };
        let mut groups: Vec<Group> = Vec::new();
        let mut layer_group = Vec::with_capacity(spec.layers.len());
        // A uniform recipe does not depend on the layer: resolve it once.
        let uniform = matches!(r, Recipe::Uniform(_)) && given.is_none();
        let mut cached: Option<LayerFormats> = None;
        for (i, kind) in spec.layers.iter().enumerate() {
            let l = i as u64;
            let f = |role, inner| {
                lookup(role, Some(l)).unwrap_or_else(|| r.format_for(role, l, inner, &rctx))
            };
            let fmts = match cached {
                Some(c) => c,
                None => LayerFormats {
                    q: f(qr, h),
                    k: f(kr, h),
                    v: f(vr, h),
                    o: f(TensorRole::AttnOutput, nh_dv),
                    gate: f(TensorRole::FfnGate, h),
                    up: f(TensorRole::FfnUp, h),
                    down: f(TensorRole::FfnDown, spec.intermediate_size.max(1)),
                    e_gate: f(TensorRole::FfnGateExps, h),
                    e_up: f(TensorRole::FfnUpExps, h),
                    e_down: f(TensorRole::FfnDownExps, ei),
                    s_gate: f(TensorRole::FfnGateShexp, h),
                    s_up: f(TensorRole::FfnUpShexp, h),
                    s_down: f(TensorRole::FfnDownShexp, si),
                    q_a: f(TensorRole::MlaQA, h),
                    q_b: f(TensorRole::MlaQB, ql),
                    kv_a: f(TensorRole::MlaKvA, h),
                    kv_b: f(TensorRole::MlaKvB, kvl),
                },
            };
            if uniform {
                cached = Some(fmts);
            }
            let gi = match groups
                .iter()
                .position(|g| g.kind == *kind && g.fmts == fmts)
            {
                Some(gi) => {
                    groups[gi].count += 1;
                    gi
                }
                None => {
                    groups.push(Group {
                        kind: *kind,
                        fmts,
                        first: i as u32,
                        count: 1,
                    });
                    groups.len() - 1
                }
            };
            // At most MAX_LAYERS (4096) layers, so at most 4096 groups.
            layer_group.push(gi as u16);
        }
        Ok(CostModel {
            spec,
            opts: *opts,
            groups,
            layer_group,
            embd,
            output,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        self.spec
    }
    pub fn options(&self) -> &CostOptions {
        &self.opts
    }

    fn geo(&self, phase: &Phase) -> Geo {
        let b = w(self.opts.batch);
        let t = b * w(phase.new_tokens());
        let lm = match phase {
            Phase::Prefill { .. } if self.opts.lm_head_all_tokens => t,
            Phase::Prefill { .. } | Phase::Decode { .. } => b,
        };
        Geo { b, t, lm }
    }

    /// Calls `f(op, times)` for every distinct operator of the phase: the global operators once
    /// (`times = 1`), and each distinct layer's operators once with `times` = the number of
    /// identical layers (`op.id.layer` is the first of them). Nothing is allocated: this is the
    /// fast path for sweeps. The sum of `op * times` equals the full table's totals.
    pub fn visit(&self, phase: Phase, mut f: impl FnMut(&OpCost, u64)) -> Result<(), ModelError> {
        phase.validate()?;
        let geo = self.geo(&phase);
        let (head, tail) = self.global_ops(&geo);
        f(&head.finish(None)?, 1);
        for g in &self.groups {
            let mut err = None;
            self.layer_ops(&phase, &geo, g, &mut |raw: RawOp| {
                if err.is_some() {
                    return;
                }
                match raw.finish(Some(g.first)) {
                    Ok(op) => f(&op, g.count),
                    Err(e) => err = Some(e),
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
        for t in tail {
            f(&t.finish(None)?, 1);
        }
        Ok(())
    }

    /// Turns one value per visited operator (in [`CostModel::visit`] order, each holding the
    /// operator's cost already multiplied by its group size) into a per-layer list in table
    /// order: a group's value is divided evenly among its identical layers.
    pub(crate) fn expand_visit(&self, visited: &[(OpCost, u64)]) -> Vec<OpCost> {
        let mut out = Vec::new();
        let Some((head, rest)) = visited.split_first() else {
            return out;
        };
        out.push(head.0);
        let n_tail = rest.len().min(2);
        let (body, tail) = rest.split_at(rest.len() - n_tail);
        // The body is the groups' operators, group after group.
        let mut blocks: Vec<&[(OpCost, u64)]> = Vec::with_capacity(self.groups.len());
        let mut start = 0;
        for g in &self.groups {
            let len = body[start..]
                .iter()
                .take_while(|(op, _)| op.id.layer == Some(g.first))
                .count();
            blocks.push(&body[start..start + len]);
            start += len;
        }
        for (l, &gi) in self.layer_group.iter().enumerate() {
            let count = self.groups[gi as usize].count;
            for (op, _) in blocks[gi as usize] {
                let d = |x: u64| x / count;
                out.push(OpCost {
                    id: OpId::layer(l as u32, op.id.kind),
                    flops: Flops(d(op.flops.0)),
                    weight_bytes: Bytes(d(op.weight_bytes.0)),
                    act_read_bytes: Bytes(d(op.act_read_bytes.0)),
                    act_write_bytes: Bytes(d(op.act_write_bytes.0)),
                    kv_read_bytes: Bytes(d(op.kv_read_bytes.0)),
                    kv_write_bytes: Bytes(d(op.kv_write_bytes.0)),
                    compute: op.compute,
                });
            }
        }
        out.extend(tail.iter().map(|(op, _)| *op));
        out
    }

    /// Totals of a phase without building the table; checked (an overflowing total is an error).
    pub fn totals(&self, phase: Phase) -> Result<CostTotals, ModelError> {
        let mut t = CostTotals::default();
        let mut ok = true;
        self.visit(phase, |op, n| {
            if t.checked_add_op(op, n).is_none() {
                ok = false;
            }
        })?;
        if ok {
            Ok(t)
        } else {
            Err(ModelError::Overflow {
                what: "the phase total",
            })
        }
    }

    /// The full table of a phase: every operator of every layer.
    pub fn table(&self, phase: Phase) -> Result<CostTable, ModelError> {
        // Validates the phase and that the totals fit in 64 bits.
        self.totals(phase)?;
        let geo = self.geo(&phase);
        let mut per_group: Vec<Vec<OpCost>> = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let mut ops = Vec::with_capacity(24);
            let mut err = None;
            self.layer_ops(&phase, &geo, g, &mut |raw: RawOp| match raw.finish(None) {
                Ok(op) => ops.push(op),
                Err(e) => err = Some(e),
            });
            if let Some(e) = err {
                return Err(e);
            }
            per_group.push(ops);
        }
        let per_layer = per_group.first().map_or(0, Vec::len);
        let mut ops = Vec::with_capacity(self.layer_group.len() * per_layer + 3);
        let (head, tail) = self.global_ops(&geo);
        ops.push(head.finish(None)?);
        for (l, &gi) in self.layer_group.iter().enumerate() {
            for op in &per_group[gi as usize] {
                let mut op = *op;
                op.id.layer = Some(l as u32);
                ops.push(op);
            }
        }
        for t in tail {
            ops.push(t.finish(None)?);
        }
        Ok(CostTable {
            phase,
            batch: self.opts.batch,
            weights: self.opts.weights,
            kv: self.opts.kv,
            mla_form: match self.spec.attention {
                Attention::Mla(_) => Some(self.opts.mla_form),
                _ => None,
            },
            ops,
        })
    }

    /// Embedding (head) and final norm + LM head (tail).
    fn global_ops(&self, g: &Geo) -> (RawOp, [RawOp; 2]) {
        let s = self.spec;
        let h = w(s.hidden_size);
        let v = w(s.vocab_size);
        let a = w(self.opts.activation_bytes);
        let rows = W(g.t.0.min(s.vocab_size));
        let mut emb = RawOp::new(OpKind::Embedding, Precision::F32);
        emb.weight = rows * W::wide(self.embd.row_bytes(s.hidden_size));
        emb.act_w = g.t * h * a;
        if s.embedding_scale {
            emb.flops = g.t * h;
        }
        let fnorm = self.norm_op(OpKind::FinalNorm, g.lm, s.hidden_size);
        let mut head = RawOp::new(OpKind::LmHead, self.output.compute());
        head.flops = w(2) * g.lm * h * v + if s.final_softcap { w(3) * g.lm * v } else { Z };
        head.weight = v * W::wide(self.output.row_bytes(s.hidden_size));
        head.act_r = g.lm * h * a;
        head.act_w = g.lm * v * a;
        (emb, [fnorm, head])
    }

    /// A norm over `width` elements for `tokens` tokens (weights f32).
    fn norm_op(&self, kind: OpKind, tokens: W, width: u64) -> RawOp {
        let a = w(self.opts.activation_bytes);
        let s = self.spec;
        let mut op = RawOp::new(kind, Precision::F32);
        op.flops = w(s.norm.flops_per_elem()) * tokens * w(width);
        op.weight = w(4 * s.norm.params_per_elem()) * w(width);
        op.act_r = tokens * w(width) * a;
        op.act_w = op.act_r;
        op
    }

    /// A dense projection `in_dim -> out_dim` for `tokens` tokens, with optional bias.
    fn proj(
        &self,
        kind: OpKind,
        fmt: WeightFormat,
        tokens: W,
        in_dim: u64,
        out_dim: u64,
        bias: bool,
    ) -> RawOp {
        let a = w(self.opts.activation_bytes);
        let mut op = RawOp::new(kind, fmt.compute());
        op.flops = w(2) * tokens * w(in_dim) * w(out_dim);
        op.weight = w(out_dim) * W::wide(fmt.row_bytes(in_dim));
        if bias {
            op.flops = op.flops + tokens * w(out_dim);
            op.weight = op.weight + w(4) * w(out_dim);
        }
        op.act_r = tokens * w(in_dim) * a;
        op.act_w = tokens * w(out_dim) * a;
        op
    }

    /// `heads` independent maps `in_dim -> out_dim` (MLA's absorbed `W_UK` / `W_UV`), stored as
    /// `heads * rows` rows of `inner` weights in the `kv_b_proj` tensor.
    #[allow(clippy::too_many_arguments)]
    fn per_head_proj(
        &self,
        kind: OpKind,
        fmt: WeightFormat,
        tokens: W,
        heads: u64,
        in_dim: u64,
        out_dim: u64,
        inner: u64,
    ) -> RawOp {
        let a = w(self.opts.activation_bytes);
        let rows = if inner == in_dim { out_dim } else { in_dim };
        let mut op = RawOp::new(kind, fmt.compute());
        op.flops = w(2) * tokens * w(heads) * w(in_dim) * w(out_dim);
        op.weight = w(heads) * w(rows) * W::wide(fmt.row_bytes(inner));
        op.act_r = tokens * w(heads) * w(in_dim) * a;
        op.act_w = tokens * w(heads) * w(out_dim) * a;
        op
    }

    /// Softmax over `scores` attention scores (scale, max, subtract-exp, sum, divide).
    fn softmax_op(&self, scores: W) -> RawOp {
        let a = w(self.opts.activation_bytes);
        let mut sm = RawOp::new(OpKind::AttnSoftmax, Precision::F32);
        sm.flops = w(5 + if self.spec.attn_softcap { 3 } else { 0 }) * scores;
        if !self.opts.flash_attention {
            sm.act_r = scores * a;
            sm.act_w = scores * a;
        }
        sm
    }

    fn residual(&self, kind: OpKind, tokens: W) -> RawOp {
        let a = w(self.opts.activation_bytes);
        let h = w(self.spec.hidden_size);
        let mut op = RawOp::new(kind, Precision::F32);
        op.flops = tokens * h;
        op.act_r = w(2) * tokens * h * a;
        op.act_w = tokens * h * a;
        op
    }

    /// The four parts of an MLP of intermediate size `inter` on `tokens` tokens:
    /// (gate, up, act, down); gate is `None` for a plain MLP. PITFALLS.md #1: the activation
    /// runs on `inter` elements.
    fn mlp_parts(
        &self,
        tokens: W,
        inter: u64,
        fg: WeightFormat,
        fu: WeightFormat,
        fd: WeightFormat,
    ) -> (Option<RawOp>, RawOp, RawOp, RawOp) {
        let s = self.spec;
        let h = s.hidden_size;
        let a = w(self.opts.activation_bytes);
        let gated = s.ffn.gated();
        let gate = gated.then(|| self.proj(OpKind::FfnGate, fg, tokens, h, inter, s.mlp_bias));
        let up = self.proj(OpKind::FfnUp, fu, tokens, h, inter, s.mlp_bias);
        let mut act = RawOp::new(OpKind::FfnAct, Precision::F32);
        let per = s.ffn.act().flops_per_elem() + u64::from(gated);
        act.flops = w(per) * tokens * w(inter);
        act.act_r = w(1 + u64::from(gated)) * tokens * w(inter) * a;
        act.act_w = tokens * w(inter) * a;
        let down = self.proj(OpKind::FfnDown, fd, tokens, inter, h, s.mlp_bias);
        (gate, up, act, down)
    }

    /// Sums parts (an MLP's gate, up, activation, down, ...) into one operator of `kind`.
    fn merge<'p>(
        kind: OpKind,
        compute: Precision,
        parts: impl IntoIterator<Item = &'p RawOp>,
    ) -> RawOp {
        let mut op = RawOp::new(kind, compute);
        for p in parts {
            op.flops = op.flops + p.flops;
            op.weight = op.weight + p.weight;
            op.act_r = op.act_r + p.act_r;
            op.act_w = op.act_w + p.act_w;
            op.kv_r = op.kv_r + p.kv_r;
            op.kv_w = op.kv_w + p.kv_w;
        }
        op
    }

    /// Emits the operators of one layer of group `g`, in execution order.
    fn layer_ops(&self, phase: &Phase, geo: &Geo, g: &Group, emit: &mut impl FnMut(RawOp)) {
        let s = self.spec;
        let o = &self.opts;
        let fm = &g.fmts;
        let a = w(o.activation_bytes);
        let t = geo.t;
        let b = geo.b;
        let h = s.hidden_size;
        let nh = s.num_attention_heads;
        let kvf = o.kv;
        let (pairs_seq, rows_seq) = extent(phase, g.kind.window);
        let pairs = b * pairs_seq;
        let rows = b * rows_seq;
        let scores = pairs * w(nh);
        let flash = o.flash_attention;
        let kvrow = |elems: u64| W::wide(kvf.row_bytes(elems));

        emit(self.norm_op(OpKind::AttnNorm, t, h));

        match &s.attention {
            Attention::Mha | Attention::Gqa | Attention::Mqa => {
                let nkv = s.num_key_value_heads;
                let dh = s.head_dim;
                let dv = s.v_head_dim;
                emit(self.proj(OpKind::QProj, fm.q, t, h, nh * dh, s.qkv_bias));
                emit(self.proj(OpKind::KProj, fm.k, t, h, nkv * dh, s.qkv_bias));
                let mut vp = self.proj(OpKind::VProj, fm.v, t, h, nkv * dv, s.qkv_bias);
                vp.act_w = Z;
                vp.kv_w = t * kvrow(nkv * dv);
                emit(vp);
                if let Some(qk) = s.qk_norm {
                    let (wq, wk) = match qk {
                        QkNorm::PerHead => (dh, dh),
                        QkNorm::Whole => (nh * dh, nkv * dh),
                    };
                    let mut qn = self.norm_op(OpKind::QNorm, t, nh * dh);
                    qn.weight = w(4) * w(wq);
                    emit(qn);
                    let mut kn = self.norm_op(OpKind::KNorm, t, nkv * dh);
                    kn.weight = w(4) * w(wk);
                    emit(kn);
                }
                let mut rope = RawOp::new(OpKind::Rope, Precision::F32);
                rope.flops = w(3) * t * w(nh + nkv) * w(s.rotary_dims);
                rope.act_r = t * w(nh + nkv) * w(dh) * a;
                rope.act_w = t * w(nh * dh) * a;
                rope.kv_w = t * kvrow(nkv * dh);
                emit(rope);
                let mut sc = RawOp::new(OpKind::AttnScore, kvf.compute());
                sc.flops = w(2) * scores * w(dh);
                sc.act_r = t * w(nh * dh) * a;
                sc.kv_r = rows * kvrow(nkv * dh);
                if !flash {
                    sc.act_w = scores * a;
                }
                emit(sc);
                emit(self.softmax_op(scores));
                let mut av = RawOp::new(OpKind::AttnValue, kvf.compute());
                av.flops = w(2) * scores * w(dv);
                if !flash {
                    av.act_r = scores * a;
                }
                av.kv_r = rows * kvrow(nkv * dv);
                av.act_w = t * w(nh * dv) * a;
                emit(av);
                emit(self.proj(OpKind::OProj, fm.o, t, nh * dv, h, s.o_bias));
            }
            Attention::Mla(m) => self.mla_ops(m, geo, fm, pairs_seq, rows_seq, emit),
        }

        if s.post_norms {
            emit(self.norm_op(OpKind::AttnPostNorm, t, h));
        }
        emit(self.residual(OpKind::AttnResidual, t));
        emit(self.norm_op(OpKind::FfnNorm, t, h));

        match (g.kind.moe, s.ffn.moe()) {
            (true, Some(m)) => {
                let e = m.num_experts;
                let mut router = RawOp::new(OpKind::MoeRouter, Precision::F32);
                router.flops = w(2) * t * w(h) * w(e) + w(5) * t * w(e);
                router.weight = w(4) * w(e) * w(h);
                if m.router_bias {
                    router.flops = router.flops + t * w(e);
                    router.weight = router.weight + w(4) * w(e);
                }
                router.act_r = t * w(h) * a;
                router.act_w = t * w(e) * a;
                emit(router);

                // Routed experts: T*k token-expert applications, distinct experts' weights.
                let routed = t * w(m.top_k);
                let inter = m.expert_intermediate_size;
                let (gt, up, act, down) =
                    self.mlp_parts(routed, inter, fm.e_gate, fm.e_up, fm.e_down);
                let mut combine = RawOp::new(OpKind::MoeExperts, Precision::F32);
                combine.flops = w(2) * routed * w(h);
                combine.act_r = routed * w(h) * a;
                combine.act_w = t * w(h) * a;
                let mut ex = Self::merge(
                    OpKind::MoeExperts,
                    fm.e_up.compute(),
                    gt.iter().chain(&[up, act, down, combine]),
                );
                let per_expert = ex.weight; // the parts' weights are those of one expert
                let tokens = t.0;
                ex.weight = if tokens == 1 {
                    w(m.top_k) * per_expert
                } else {
                    let d = expected_distinct_experts(e, m.top_k, tokens);
                    if d >= e as f64 {
                        w(e) * per_expert
                    } else {
                        // k <= d < E: rounded to the byte. A saturated per-expert size stays
                        // saturated (d >= 1 and `as` saturates).
                        W((d * per_expert.0 as f64).round() as u64)
                    }
                };
                emit(ex);

                if m.shared_intermediate_size > 0 {
                    let (gt, up, act, down) = self.mlp_parts(
                        t,
                        m.shared_intermediate_size,
                        fm.s_gate,
                        fm.s_up,
                        fm.s_down,
                    );
                    let mut sg = RawOp::new(OpKind::MoeSharedExperts, Precision::F32);
                    if m.shared_expert_gate {
                        // sigmoid(x . w_g) scales the shared expert's output
                        sg.flops = w(2) * t * w(h) + w(4) * t + t * w(h);
                        sg.weight = w(4) * w(h);
                        sg.act_r = w(2) * t * w(h) * a;
                        sg.act_w = t * w(h) * a;
                    }
                    emit(Self::merge(
                        OpKind::MoeSharedExperts,
                        fm.s_up.compute(),
                        gt.iter().chain(&[up, act, down, sg]),
                    ));
                }
            }
            _ => {
                let (gt, up, act, down) =
                    self.mlp_parts(t, s.intermediate_size, fm.gate, fm.up, fm.down);
                if let Some(gt) = gt {
                    emit(gt);
                }
                emit(up);
                emit(act);
                emit(down);
            }
        }
        if s.post_norms {
            emit(self.norm_op(OpKind::FfnPostNorm, t, h));
        }
        emit(self.residual(OpKind::FfnResidual, t));
    }

    #[allow(clippy::too_many_arguments)]
    fn mla_ops(
        &self,
        m: &MlaSpec,
        geo: &Geo,
        fm: &LayerFormats,
        pairs_seq: W,
        rows_seq: W,
        emit: &mut impl FnMut(RawOp),
    ) {
        let s = self.spec;
        let o = &self.opts;
        let a = w(o.activation_bytes);
        let (t, b) = (geo.t, geo.b);
        let h = s.hidden_size;
        let nh = s.num_attention_heads;
        let (kvl, rope, nope, dv) = (
            m.kv_lora_rank,
            m.qk_rope_head_dim,
            m.qk_nope_head_dim,
            m.v_head_dim,
        );
        let qk = nope + rope;
        let kvf = o.kv;
        let kvrow = |elems: u64| W::wide(kvf.row_bytes(elems));
        let pairs = b * pairs_seq;
        let rows = b * rows_seq;
        let scores = pairs * w(nh);
        let flash = o.flash_attention;
        let absorbed = o.mla_form == MlaForm::Absorbed;
        let norm_flops = w(s.norm.flops_per_elem());

        // Queries.
        match m.q_lora_rank {
            Some(ql) => {
                let mut qd = self.proj(OpKind::MlaQDown, fm.q_a, t, h, ql, s.qkv_bias);
                qd.flops = qd.flops + norm_flops * t * w(ql); // q_a_layernorm
                qd.weight = qd.weight + w(4) * w(ql);
                emit(qd);
                emit(self.proj(OpKind::MlaQUp, fm.q_b, t, ql, nh * qk, false));
            }
            None => emit(self.proj(OpKind::MlaQUp, fm.q, t, h, nh * qk, s.qkv_bias)),
        }
        // Latent KV and the shared RoPE key.
        let mut kd = self.proj(OpKind::MlaKvDown, fm.kv_a, t, h, kvl + rope, s.qkv_bias);
        kd.flops = kd.flops + norm_flops * t * w(kvl); // kv_a_layernorm
        kd.weight = kd.weight + w(4) * w(kvl);
        if absorbed {
            // The normed latent is the cache entry; only k_pe goes on to RoPE.
            kd.act_w = t * w(rope) * a;
            kd.kv_w = t * kvrow(kvl);
        }
        emit(kd);
        if !absorbed {
            let mut up = self.proj(OpKind::MlaKvUp, fm.kv_b, t, kvl, nh * (nope + dv), false);
            up.act_w = Z;
            up.kv_w = t * (kvrow(nh * nope) + kvrow(nh * dv));
            emit(up);
        }
        let mut rp = RawOp::new(OpKind::Rope, Precision::F32);
        rp.flops = w(3) * t * w(nh + 1) * w(rope);
        rp.act_r = t * w(nh + 1) * w(rope) * a;
        rp.act_w = t * w(nh * rope) * a;
        rp.kv_w = if absorbed {
            t * kvrow(rope)
        } else {
            t * kvrow(nh * rope) // k_pe broadcast to every head
        };
        emit(rp);

        if absorbed {
            // q_nope . W_UK per head: queries move into the latent space.
            emit(self.per_head_proj(OpKind::MlaQAbsorb, fm.kv_b, t, nh, nope, kvl, kvl));
        }
        let (score_dim, value_dim, k_row, v_row) = if absorbed {
            (kvl + rope, kvl, kvrow(kvl) + kvrow(rope), Z)
        } else {
            (qk, dv, kvrow(nh * nope) + kvrow(nh * rope), kvrow(nh * dv))
        };
        let mut sc = RawOp::new(OpKind::AttnScore, kvf.compute());
        sc.flops = w(2) * scores * w(score_dim);
        sc.act_r = t * w(nh * score_dim) * a;
        sc.kv_r = rows * k_row;
        if !flash {
            sc.act_w = scores * a;
        }
        emit(sc);
        emit(self.softmax_op(scores));
        let mut av = RawOp::new(OpKind::AttnValue, kvf.compute());
        av.flops = w(2) * scores * w(value_dim);
        if !flash {
            av.act_r = scores * a;
        }
        av.kv_r = rows * v_row;
        av.act_w = t * w(nh * value_dim) * a;
        emit(av);
        if absorbed {
            // latent attention output . W_UV per head
            emit(self.per_head_proj(OpKind::MlaVAbsorb, fm.kv_b, t, nh, kvl, dv, kvl));
        }
        emit(self.proj(OpKind::OProj, fm.o, t, nh * dv, h, s.o_bias));
    }
}
