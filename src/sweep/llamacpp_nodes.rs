//! llama.cpp graph nodes mapped onto our operator ids, so llama.cpp's operators land on the
//! roofline next to ours (same [`OpId`] keys, work and bytes from the same cost model).
//!
//! llama.cpp names graph tensors `<name>-<layer>` through its graph callback
//! (`llama_context::graph_get_cb`, `ggml_format_name(cur, "%s-%d", name, il)`), with the names
//! of `llama-graph.cpp` and `models/<arch>.cpp`: `attn_norm`, `Qcur`, `Kcur`, `Vcur`,
//! `attn_out`/`kqv_wo`, `ffn_inp`, `ffn_norm`, `ffn_gate`, `ffn_up`, `ffn_swiglu`, `ffn_out`,
//! `l_out`, `result_norm`, `result_output`; the KV cache writes are views of `cache_k_l<n>` /
//! `cache_v_l<n>`; unnamed nodes are `node_<n>` (ggml). One name can cover several nodes
//! (`Qcur-5` is the projection's `MUL_MAT` and then the `ROPE`), so a node maps on its name
//! *and* its ggml operator. A fused flash-attention node covers our score, softmax and value
//! operators together; its layer is that of the nodes around it.
//!
//! Anything not recognised goes to the "other" bucket with its name and operator, never
//! dropped, so the attributed time always adds up.
//!
//! Not here: running llama.cpp (see `llamacpp_ffi` and `llamacpp`, feature `llamacpp`).

use anyhow::Result;
use rooflinebench_model::cost::{CostModel, Phase};
use rooflinebench_model::hardware::Precision;
use rooflinebench_model::measure::{MeasuredPoint, SampleSummary, Scope};
use rooflinebench_model::op::{OpId, OpKind};
use rooflinebench_model::units::{Bytes, Flops};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Flash attention: our three attention operators in one ggml node.
pub const FLASH_ATTENTION: &[OpKind] = &[OpKind::AttnScore, OpKind::AttnSoftmax, OpKind::AttnValue];
const QKV: &[OpKind] = &[OpKind::QProj, OpKind::KProj, OpKind::VProj];

/// What a node was mapped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub layer: Option<u32>,
    /// Our operator kinds the node's time belongs to (one, or several for a fused node);
    /// empty: the "other" bucket.
    pub kinds: Vec<OpKind>,
}

impl Mapping {
    /// `L3.q_proj`, `L3.attn_score+attn_softmax+attn_value`, `lm_head` or `other`.
    pub fn label(&self) -> String {
        if self.kinds.is_empty() {
            return "other".to_string();
        }
        let k = kinds_label(&self.kinds);
        match self.layer {
            Some(l) => format!("L{l}.{k}"),
            None => k,
        }
    }
}

fn kinds_label(kinds: &[OpKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("+")
}

/// `Qcur-12` -> (`Qcur`, Some(12)); `cache_k_l3 (view)` -> (`cache_k`, Some(3)); a name
/// without a layer suffix is returned whole.
pub fn split_name(name: &str) -> (&str, Option<u32>) {
    let base = name.split(" (").next().unwrap_or(name).trim();
    if let Some((b, l)) = base.rsplit_once('-') {
        if let Ok(l) = l.parse::<u32>() {
            return (b, Some(l));
        }
    }
    for prefix in ["cache_k_l", "cache_v_l"] {
        if let Some(l) = base
            .strip_prefix(prefix)
            .and_then(|l| l.parse::<u32>().ok())
        {
            return (&prefix[..7], Some(l));
        }
    }
    (base, None)
}

/// Maps the nodes of one graph, in execution order (the mapping of an unnamed node or a bare
/// `norm` depends on where in the layer it runs).
#[derive(Debug, Default)]
pub struct NodeMapper {
    layer: Option<u32>,
    /// The FFN half of the current layer has started (after the attention residual).
    in_ffn: bool,
    /// The layer stack is over (final norm, LM head).
    after_layers: bool,
}

impl NodeMapper {
    pub fn new() -> NodeMapper {
        NodeMapper::default()
    }

    pub fn map(&mut self, name: &str, op: &str) -> Mapping {
        let (base, layer) = split_name(name);
        if let Some(l) = layer {
            if self.layer != Some(l) {
                self.in_ffn = false;
            }
            self.layer = Some(l);
        }
        let one = |k: OpKind| vec![k];
        let is_mm = op == "MUL_MAT";
        let kinds: Vec<OpKind> = match (base, layer) {
            ("embd" | "inp_embd", None) if op == "GET_ROWS" => one(OpKind::Embedding),
            ("result_norm", None) => one(OpKind::FinalNorm),
            ("norm", None) if self.layer.is_some() => {
                self.after_layers = true;
                one(OpKind::FinalNorm)
            }
            ("result_output", None) => one(OpKind::LmHead),
            (_, Some(_)) => self.map_layer(base, op, is_mm),
            // An unnamed fused attention takes the layer of the nodes around it.
            _ if op == "FLASH_ATTN_EXT" && self.layer.is_some() && !self.after_layers => {
                FLASH_ATTENTION.to_vec()
            }
            _ => Vec::new(),
        };
        let layer = match (kinds.is_empty(), layer) {
            (true, _) => layer,
            (false, Some(l)) => Some(l),
            (false, None) => {
                let global = matches!(
                    kinds.first(),
                    Some(OpKind::Embedding | OpKind::FinalNorm | OpKind::LmHead)
                );
                if global {
                    None
                } else {
                    self.layer
                }
            }
        };
        Mapping { layer, kinds }
    }

    fn map_layer(&mut self, base: &str, op: &str, is_mm: bool) -> Vec<OpKind> {
        let one = |k: OpKind| vec![k];
        let norm_op = matches!(op, "RMS_NORM" | "NORM" | "MUL" | "ADD");
        match base {
            "norm" | "attn_norm" if !self.in_ffn => one(OpKind::AttnNorm),
            "norm" | "ffn_norm" => {
                self.in_ffn = true;
                one(OpKind::FfnNorm)
            }
            "wqkv" | "wqkv_b" => QKV.to_vec(),
            "Qcur" | "Kcur" if op == "ROPE" => one(OpKind::Rope),
            "Qcur" if is_mm || op == "ADD" => one(OpKind::QProj),
            "Kcur" if is_mm || op == "ADD" => one(OpKind::KProj),
            "Vcur" if is_mm || op == "ADD" => one(OpKind::VProj),
            "Qcur_normed" if norm_op => one(OpKind::QNorm),
            "Kcur_normed" if norm_op => one(OpKind::KNorm),
            // Our cost model charges the K cache write to RoPE and the V write to V's projection.
            "cache_k" => one(OpKind::Rope),
            "cache_v" => one(OpKind::VProj),
            "kq" | "kq_scaled" | "kq_tanh" | "kq_plus_kq_b" => one(OpKind::AttnScore),
            "kq_soft_max" => one(OpKind::AttnSoftmax),
            "kqv" | "v_cont" | "kqv_out" => one(OpKind::AttnValue),
            "__fattn__" => FLASH_ATTENTION.to_vec(),
            "kqv_wo" | "attn_out" if is_mm => one(OpKind::OProj),
            "attn_post_norm" => one(OpKind::AttnPostNorm),
            "ffn_inp" => {
                self.in_ffn = true;
                one(OpKind::AttnResidual)
            }
            "ffn_gate" if is_mm => one(OpKind::FfnGate),
            "ffn_up" if is_mm => one(OpKind::FfnUp),
            "ffn_swiglu" | "ffn_silu" | "ffn_gelu" | "ffn_geglu" | "ffn_reglu" | "ffn_relu"
            | "ffn_gate_par" | "ffn_swiglu_oai" | "ffn_sqr(relu)" => one(OpKind::FfnAct),
            "ffn_out" | "ffn_down" if is_mm => one(OpKind::FfnDown),
            "ffn_post_norm" => one(OpKind::FfnPostNorm),
            "l_out" => one(OpKind::FfnResidual),
            b if b.starts_with("ffn_moe_logits")
                || b.starts_with("ffn_moe_probs")
                || b.starts_with("ffn_moe_topk")
                || b.starts_with("ffn_moe_weights")
                || b.starts_with("ffn_moe_group_topk") =>
            {
                one(OpKind::MoeRouter)
            }
            b if b.starts_with("ffn_moe_") => one(OpKind::MoeExperts),
            b if b.contains("shexp") => one(OpKind::MoeSharedExperts),
            _ if op == "FLASH_ATTN_EXT" => FLASH_ATTENTION.to_vec(),
            _ => Vec::new(),
        }
    }
}

/// One timed node (already mapped) of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedNode {
    pub name: String,
    pub op: String,
    pub seconds: f64,
}

/// One graph node over every repetition (its time summed over the passes of a repetition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub name: String,
    pub op: String,
    /// `L3.q_proj`-style target, or `other`.
    pub mapped_to: String,
    /// Executions per repetition (micro-batches, decode steps).
    pub count: u64,
    pub seconds: SampleSummary,
}

/// One of our operator kinds (or a fused group), summed over layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindRow {
    /// `ffn_up`, or `attn_score+attn_softmax+attn_value` for a fused node.
    pub label: String,
    pub kinds: Vec<OpKind>,
    /// The arithmetic path of the covered operators (cost model).
    pub compute: Precision,
    /// Layers (or global instances) covered.
    pub instances: u64,
    /// Per repetition, from the cost model.
    pub flops: u64,
    pub bytes: u64,
    pub seconds: SampleSummary,
}

/// Per-node timing of one phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseNodes {
    /// `prefill` or `decode`.
    pub phase: String,
    /// Prompt tokens (prefill) or decode steps per repetition.
    pub tokens: u64,
    /// Cached positions before the phase.
    pub depth: u64,
    /// Whole-phase wall time per repetition without the callback.
    pub plain_seconds: SampleSummary,
    /// Whole-phase wall time per repetition with the per-node callback.
    pub profiled_seconds: SampleSummary,
    /// First node start to last node end (summed over passes) per repetition: the graph's
    /// execution, without graph building, allocation and input setup.
    pub graph_seconds: SampleSummary,
    /// `profiled / plain` at the medians: what timing every node costs.
    pub callback_overhead: f64,
    /// Median over repetitions of (time inside timed nodes / profiled time); the rest is graph
    /// building, allocation, input setup and the scheduler between nodes.
    pub attributed_fraction: f64,
    /// Our operator kinds, in execution order.
    pub kinds: Vec<KindRow>,
    /// Seconds (median per repetition) of the nodes no operator of ours covers.
    pub other_seconds: f64,
    /// Every node, in execution order (mapped and other).
    pub nodes: Vec<NodeRow>,
}

fn summary(samples: Vec<f64>) -> Result<SampleSummary> {
    Ok(SampleSummary::from_samples(
        samples.into_iter().map(|s| s.max(1e-9)).collect(),
    )?)
}

/// The timings of one phase, every repetition.
#[derive(Clone, Debug, Default)]
pub struct PhaseRun {
    /// `prefill` or `decode`.
    pub phase: String,
    pub tokens: u64,
    pub depth: u64,
    /// `reps[r]`: the nodes of repetition `r` (every pass of it, in order).
    pub reps: Vec<Vec<TimedNode>>,
    /// Whole-phase seconds per repetition without the callback.
    pub plain: Vec<f64>,
    /// Whole-phase seconds per repetition with it.
    pub profiled: Vec<f64>,
    /// Per repetition: first node start to last node end, summed over passes.
    pub graph: Vec<f64>,
}

/// Our operator kinds of one node mapping, the layers they were seen in, seconds per rep.
type KindGroup = (Vec<OpKind>, BTreeSet<Option<u32>>, Vec<f64>);

/// Builds the per-node view of a phase.
///
/// `passes` are the cost-model phases one repetition ran (micro-batches of a prefill, or each
/// decode step), so the work and bytes of a kind are those of the operators its nodes
/// covered, summed over passes.
pub fn phase_nodes(run: PhaseRun, cost: &CostModel<'_>, passes: &[Phase]) -> Result<PhaseNodes> {
    let PhaseRun {
        phase,
        tokens,
        depth,
        reps,
        plain,
        profiled,
        graph,
    } = run;
    let n = reps.len();
    // Nodes keyed by (name, op) in first-seen order.
    let mut rows: Vec<(String, String, Mapping, u64, Vec<f64>)> = Vec::new();
    // Kind groups in first-seen order, with the layers seen and per-rep seconds.
    let mut groups: Vec<KindGroup> = Vec::new();
    let mut other = vec![0.0; n];
    for (r, nodes) in reps.iter().enumerate() {
        let mut mapper = NodeMapper::new();
        for node in nodes {
            // A new pass starts at the embedding: reset the per-layer state.
            if split_name(&node.name).0 == "embd" {
                mapper = NodeMapper::new();
            }
            let m = mapper.map(&node.name, &node.op);
            let i = match rows
                .iter()
                .position(|x| x.0 == node.name && x.1 == node.op && x.2 == m)
            {
                Some(i) => i,
                None => {
                    rows.push((
                        node.name.clone(),
                        node.op.clone(),
                        m.clone(),
                        0,
                        vec![0.0; n],
                    ));
                    rows.len() - 1
                }
            };
            if r == 0 {
                rows[i].3 += 1;
            }
            rows[i].4[r] += node.seconds;
            if m.kinds.is_empty() {
                other[r] += node.seconds;
                continue;
            }
            let g = match groups.iter().position(|g| g.0 == m.kinds) {
                Some(g) => g,
                None => {
                    groups.push((m.kinds.clone(), BTreeSet::new(), vec![0.0; n]));
                    groups.len() - 1
                }
            };
            groups[g].1.insert(m.layer);
            groups[g].2[r] += node.seconds;
        }
    }
    let mut kinds = Vec::new();
    for (ks, layers, samples) in groups {
        let ids: BTreeSet<OpId> = layers
            .iter()
            .flat_map(|l| {
                ks.iter().map(move |k| OpId {
                    layer: *l,
                    kind: *k,
                })
            })
            .collect();
        let (mut flops, mut bytes) = (0u64, 0u64);
        let mut compute = Precision::F32;
        for p in passes {
            cost.visit(*p, |op, times| {
                if ids.contains(&op.id) {
                    compute = op.compute;
                    flops = flops.saturating_add(op.flops.0.saturating_mul(times));
                    bytes = bytes.saturating_add(op.bytes().0.saturating_mul(times));
                }
            })?;
        }
        kinds.push(KindRow {
            label: kinds_label(&ks),
            kinds: ks,
            compute,
            instances: layers.len() as u64,
            flops,
            bytes,
            seconds: summary(samples)?,
        });
    }
    let plain = summary(plain)?;
    let profiled = summary(profiled)?;
    let graph = summary(graph)?;
    let nodes: Vec<NodeRow> = rows
        .into_iter()
        .map(|(name, op, m, count, s)| {
            Ok(NodeRow {
                name,
                op,
                mapped_to: m.label(),
                count,
                seconds: summary(s)?,
            })
        })
        .collect::<Result<_>>()?;
    // Per repetition, then the median: a sum of per-node medians would leave out every
    // preemption of a loaded machine, which the whole-pass time keeps.
    let fractions: Vec<f64> = reps
        .iter()
        .zip(&profiled.samples)
        .map(|(r, t)| r.iter().map(|x| x.seconds).sum::<f64>() / t.max(1e-12))
        .collect();
    let attributed = summary(fractions)?.median;
    let other_seconds = if n == 0 { 0.0 } else { summary(other)?.median };
    Ok(PhaseNodes {
        phase,
        tokens,
        depth,
        graph_seconds: graph,
        callback_overhead: profiled.median / plain.median,
        attributed_fraction: attributed,
        plain_seconds: plain,
        profiled_seconds: profiled,
        kinds,
        other_seconds,
        nodes,
    })
}

impl PhaseNodes {
    /// One measured point per operator kind (scope `Operator`, like the built-in engine's),
    /// fused groups with `op: None` since no single operator of ours is timed alone.
    pub fn points(&self, engine: &str, threads: u32) -> Result<Vec<MeasuredPoint>> {
        let decode = self.phase == "decode";
        let label = if decode {
            format!("decode@{} x{}", self.depth, self.tokens)
        } else {
            format!("prefill {}", self.tokens)
        };
        let mut out = Vec::new();
        for k in &self.kinds {
            let single = match k.kinds.as_slice() {
                [one] => Some(OpId::global(*one)),
                _ => None,
            };
            out.push(MeasuredPoint {
                label: format!("{} {label} (llama.cpp node)", k.label),
                scope: Scope::Operator,
                op: single,
                phase: self.phase.clone(),
                context: if decode { self.depth + 1 } else { self.depth },
                tokens: self.tokens,
                batch: 1,
                threads,
                engine: engine.to_string(),
                compute: k.compute,
                flops: Flops(k.flops),
                bytes: Bytes(k.bytes),
                seconds: k.seconds.clone(),
            });
        }
        Ok(out)
    }
}

/// A text table of a phase: our operator kinds (time, share, achieved rates from the cost
/// model's work), then the "other" nodes by name, then the callback's overhead.
pub fn phase_table(p: &PhaseNodes) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let total = p.profiled_seconds.median;
    let _ = writeln!(
        s,
        "llama.cpp nodes, {} {} (depth {}): {:.3} ms per repetition profiled, {:.3} ms plain \
         (callback overhead x{:.2}); {:.0}% of it from first node to last, {:.0}% inside nodes",
        p.phase,
        p.tokens,
        p.depth,
        total * 1e3,
        p.plain_seconds.median * 1e3,
        p.callback_overhead,
        100.0 * p.graph_seconds.median / total,
        p.attributed_fraction * 100.0
    );
    let _ = writeln!(
        s,
        "  {:<40} {:>5} {:>10} {:>6} {:>10} {:>9} {:>8}",
        "operator (ours)", "n", "ms", "share", "GFLOP/s", "GB/s", "FLOP/B"
    );
    for k in &p.kinds {
        let t = k.seconds.median;
        let _ = writeln!(
            s,
            "  {:<40} {:>5} {:>10.3} {:>5.1}% {:>10.2} {:>9.2} {:>8.2}",
            k.label,
            k.instances,
            t * 1e3,
            100.0 * t / total,
            k.flops as f64 / t / 1e9,
            k.bytes as f64 / t / 1e9,
            if k.bytes == 0 {
                f64::INFINITY
            } else {
                k.flops as f64 / k.bytes as f64
            }
        );
    }
    let others: Vec<&NodeRow> = p.nodes.iter().filter(|n| n.mapped_to == "other").collect();
    let _ = writeln!(
        s,
        "  {:<40} {:>5} {:>10.3} {:>5.1}%",
        "other (unmapped nodes)",
        others.len(),
        p.other_seconds * 1e3,
        100.0 * p.other_seconds / total
    );
    for n in others {
        let _ = writeln!(
            s,
            "    {:<38} {:<14} x{:<3} {:>10.3} ms",
            n.name,
            n.op,
            n.count,
            n.seconds.median * 1e3
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rooflinebench_model::cost::CostOptions;
    use rooflinebench_model::zoo;

    /// Names and operators of one llama-architecture layer as llama.cpp 0.1.161's graph has
    /// them on the CPU with flash attention (seen through the callback on SmolLM2-135M).
    const LAYER: &[(&str, &str)] = &[
        ("norm-{l}", "RMS_NORM"),
        ("attn_norm-{l}", "MUL"),
        ("Qcur-{l}", "MUL_MAT"),
        ("Qcur-{l}", "ROPE"),
        ("Vcur-{l}", "MUL_MAT"),
        ("Kcur-{l}", "MUL_MAT"),
        ("Kcur-{l}", "ROPE"),
        ("cache_k_l{l} (view)", "SET_ROWS"),
        ("cache_v_l{l} (view)", "SET_ROWS"),
        ("node_{n}", "FLASH_ATTN_EXT"),
        ("attn_out-{l}", "MUL_MAT"),
        ("ffn_inp-{l}", "ADD"),
        ("norm-{l}", "RMS_NORM"),
        ("ffn_norm-{l}", "MUL"),
        ("ffn_gate-{l}", "MUL_MAT"),
        ("ffn_up-{l}", "MUL_MAT"),
        ("ffn_swiglu-{l}", "GLU"),
        ("ffn_out-{l}", "MUL_MAT"),
        ("l_out-{l}", "ADD"),
    ];

    fn graph(layers: u32) -> Vec<(String, String)> {
        let mut g = vec![
            ("embd".to_string(), "GET_ROWS".to_string()),
            ("node_1".to_string(), "GET_ROWS".to_string()),
        ];
        for l in 0..layers {
            for (n, op) in LAYER {
                let name = n
                    .replace("{l}", &l.to_string())
                    .replace("{n}", &(100 + l).to_string());
                g.push((name, op.to_string()));
            }
        }
        for (n, op) in [
            ("norm", "RMS_NORM"),
            ("result_norm", "MUL"),
            ("result_output", "MUL_MAT"),
        ] {
            g.push((n.to_string(), op.to_string()));
        }
        g
    }

    #[test]
    fn layer_names_map_onto_our_operator_ids() {
        let mut m = NodeMapper::new();
        let got: Vec<String> = graph(2)
            .iter()
            .map(|(n, op)| m.map(n, op).label())
            .collect();
        let want = [
            "embedding",
            "other",
            "L0.attn_norm",
            "L0.attn_norm",
            "L0.q_proj",
            "L0.rope",
            "L0.v_proj",
            "L0.k_proj",
            "L0.rope",
            "L0.rope",
            "L0.v_proj",
            "L0.attn_score+attn_softmax+attn_value",
            "L0.o_proj",
            "L0.attn_residual",
            "L0.ffn_norm",
            "L0.ffn_norm",
            "L0.ffn_gate",
            "L0.ffn_up",
            "L0.ffn_act",
            "L0.ffn_down",
            "L0.ffn_residual",
        ];
        assert_eq!(&got[..want.len()], &want);
        assert_eq!(
            got[want.len()],
            "L1.attn_norm",
            "the second layer's first norm"
        );
        assert_eq!(
            &got[got.len() - 3..],
            &["final_norm", "final_norm", "lm_head"]
        );
    }

    #[test]
    fn unknown_nodes_go_to_other_with_their_names_never_dropped() {
        let mut m = NodeMapper::new();
        assert!(m.map("some_new_thing-3", "MUL_MAT").kinds.is_empty());
        assert!(m.map("node_7", "DUP").kinds.is_empty());
        // A name we know with an operator we do not expect is not guessed either.
        assert!(m.map("ffn_up-3", "ADD").kinds.is_empty());
    }

    #[test]
    fn layer_suffixes_and_cache_views_parse() {
        assert_eq!(split_name("Qcur-12"), ("Qcur", Some(12)));
        assert_eq!(split_name("cache_k_l3 (view)"), ("cache_k", Some(3)));
        assert_eq!(split_name("result_output"), ("result_output", None));
        assert_eq!(split_name("ffn_sqr(relu)-2"), ("ffn_sqr(relu)", Some(2)));
        assert_eq!(split_name("x-"), ("x-", None));
    }

    #[test]
    fn phase_times_add_up_and_work_joins_the_cost_model() {
        let spec = zoo::lookup("smollm2-135m")
            .expect("built-in model")
            .spec()
            .expect("parses")
            .0
            .with_layers(2)
            .expect("2 layers");
        let cm = CostModel::new(
            &spec,
            &CostOptions {
                flash_attention: true,
                ..CostOptions::default()
            },
        )
        .expect("cost model");
        let g = graph(2);
        let rep = |scale: f64| -> Vec<TimedNode> {
            g.iter()
                .enumerate()
                .map(|(i, (n, op))| TimedNode {
                    name: n.clone(),
                    op: op.clone(),
                    seconds: scale * (1.0 + i as f64) * 1e-6,
                })
                .collect()
        };
        let reps = vec![rep(1.0), rep(2.0), rep(1.5)];
        let node_sum: Vec<f64> = reps
            .iter()
            .map(|r| r.iter().map(|n| n.seconds).sum())
            .collect();
        let passes = [Phase::Prefill {
            tokens: 8,
            cached: 0,
        }];
        let run = PhaseRun {
            phase: "prefill".into(),
            tokens: 8,
            depth: 0,
            reps,
            plain: node_sum.clone(),
            profiled: node_sum.iter().map(|s| s * 2.0).collect(),
            graph: node_sum.clone(),
        };
        let p = phase_nodes(run, &cm, &passes).expect("phase");
        assert!((p.callback_overhead - 2.0).abs() < 1e-9);
        // Kinds plus other add up to the node total (medians of sums of a scaled pattern).
        let kinds: f64 = p.kinds.iter().map(|k| k.seconds.median).sum();
        assert!((kinds + p.other_seconds - node_sum[2]).abs() < 1e-12);
        // Work: the mapped kinds cover every operator of the cost table.
        let table = cm.table(passes[0]).expect("table");
        let flops: u64 = p.kinds.iter().map(|k| k.flops).sum();
        assert_eq!(flops, table.flops().0);
        let up = p
            .kinds
            .iter()
            .find(|k| k.label == "ffn_up")
            .expect("ffn_up");
        assert_eq!(up.instances, 2);
        assert!(p
            .nodes
            .iter()
            .any(|n| n.name == "node_1" && n.mapped_to == "other"));
        let text = phase_table(&p);
        assert!(text.contains("node_1"), "{text}");
        let pts = p.points("llama.cpp test", 1).expect("points");
        assert_eq!(pts.len(), p.kinds.len());
        assert!(pts
            .iter()
            .any(|x| x.op.is_none() && x.label.starts_with("attn_score+")));
    }
}
