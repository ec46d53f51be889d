//! Measuring a model: prefill of N tokens, and decode steps at a real depth D (after a real
//! prefill to D, PITFALLS.md #15), with warm-up, repetitions and every sample kept.
//!
//! Procedure. Weights are generated (or read) and every buffer written before anything is
//! timed (PITFALLS.md #23, #14). Prefill: each repetition empties the cache and runs the N
//! prompt tokens as one forward pass. Decode: one untimed prefill of D tokens fills the cache;
//! each repetition rewinds the cache to D and runs G single-token steps (contexts `D+1 ..= D+G`
//! in the cost model's convention); its sample is the sum of the G steps. Warm-up repetitions
//! run the same way and are discarded. Times are wall-clock around each forward pass and around
//! each operator ([`TimingRecorder`]); the difference (loop glue, recorder overhead) is reported
//! as `unattributed_seconds`.
//!
//! Work and traffic come from the cost model for the same [`OpId`] and phase (decode: the sum
//! of the G steps' tables), with the engine's real formats: weights in the run's dtype, KV cache
//! f32, activations f32, LM head on the last token. Every operator the engine runs is checked
//! against the cost table in both directions; a mismatch is a warning here and a test failure
//! in `tests/`. The arithmetic path of every engine operator is f32 (16-bit weights are widened
//! in registers), so predictions use the f32 compute roof.
//!
//! MLA models run in the form `ModelDef::arch.mla_form` says, costed in the same form, and every
//! result carries it (`mla_form`, and in the engine label of each measured point). MoE models
//! record which experts each MoE layer chose in the first timed repetition (every repetition
//! runs the same tokens): a per-layer histogram, and the expert weight bytes those hits really
//! read next to the cost model's assumption (`k` experts per layer per decode step; for `T`
//! tokens the uniform-routing expectation `E (1 - (1 - k/E)^T)`, PITFALLS.md #7).

use crate::arch::ModelDef;
use crate::error::EngineError;
use crate::model::Logits;
use crate::recorder::{ExpertHits, TimingRecorder};
use crate::{load, LoadOptions, WeightsFrom};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_kernels::isa::Isa;
use rooflinebench_model::cost::{
    expected_distinct_experts, CostModel, CostOptions, CostTable, Phase,
};
use rooflinebench_model::format::{KvFormat, Recipe, WeightFormat};
use rooflinebench_model::hardware::{Precision, Warning};
use rooflinebench_model::measure::{MeasuredPoint, SampleSummary, Scope};
use rooflinebench_model::op::{OpCost, OpId, OpKind};
use rooflinebench_model::roofline::{predict_op, Bound, Ceilings};
use rooflinebench_model::spec::{Attention, MoeSpec};
use rooflinebench_model::units::{Bytes, Flops};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Instant;

/// Version of the bench result JSON; bump on any incompatible change.
pub const BENCH_SCHEMA_VERSION: u32 = 1;

/// What to measure and how.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub weights: WeightsFrom,
    /// Weight dtype; `None`: the checkpoint's own, f32 for random weights.
    pub dtype: Option<WeightDtype>,
    /// Prompt tokens of the prefill phase (0: no prefill phase).
    pub prompt: usize,
    /// Context depth decode starts at (a real prefill of this many tokens precedes it).
    pub depth: usize,
    /// Decode steps per repetition (0: no decode phase).
    pub gen: usize,
    pub reps: usize,
    pub warmup: usize,
    pub threads: usize,
    /// Kernel ISA; `None`: the best available (or `ROOFLINEBENCH_FORCE_ISA`).
    pub isa: Option<Isa>,
    /// Seed of the token ids fed to the model.
    pub token_seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            weights: WeightsFrom::Random { seed: 0 },
            dtype: None,
            prompt: 128,
            depth: 128,
            gen: 8,
            reps: 5,
            warmup: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa: None,
            token_seed: 1,
        }
    }
}

impl BenchOptions {
    /// A run of a few seconds for a small model (what `rooflinebench run` needs): prefill of 32
    /// tokens, 4 decode steps at depth 32, 3 repetitions after 1 warm-up, random f32 weights.
    pub fn quick(threads: usize) -> BenchOptions {
        BenchOptions {
            prompt: 32,
            depth: 32,
            gen: 4,
            reps: 3,
            warmup: 1,
            threads,
            ..BenchOptions::default()
        }
    }
}

/// One operator of one phase, over all repetitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpResult {
    pub id: OpId,
    /// `L3.q_proj`-style name.
    pub name: String,
    /// The arithmetic path executed ([`engine_compute`]): int8 dot products for quantized
    /// matrices, f32 for everything else.
    pub compute: Precision,
    /// Per repetition, from the cost model.
    pub flops: Flops,
    pub bytes: Bytes,
    /// Per-repetition durations (decode: summed over the repetition's steps).
    pub seconds: SampleSummary,
    #[serde(default)]
    pub predicted_seconds: Option<f64>,
    #[serde(default)]
    pub attainable_flops_per_second: Option<f64>,
    /// `predicted / measured` (1.0 = on the roof).
    #[serde(default)]
    pub roof_fraction: Option<f64>,
    #[serde(default)]
    pub bound: Option<Bound>,
}

/// One phase (prefill, or decode at a depth) over all repetitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// `"prefill"` or `"decode"`.
    pub phase: String,
    /// New tokens per repetition (prompt length, or decode steps).
    pub tokens: u64,
    /// Forward passes per repetition (1 for prefill, the step count for decode).
    pub steps: u64,
    /// Positions cached before the phase (prefill) or the depth decode starts at.
    pub depth: u64,
    /// Cost-model contexts of the first and last decode step (`depth + 1 ..= depth + steps`);
    /// for prefill the positions after it.
    pub context_first: u64,
    pub context_last: u64,
    /// Wall time per repetition.
    pub seconds: SampleSummary,
    /// Per repetition, from the cost model.
    pub flops: Flops,
    pub bytes: Bytes,
    pub weight_bytes: Bytes,
    pub kv_bytes: Bytes,
    /// Median repetition time minus the sum of the operators' medians.
    pub unattributed_seconds: f64,
    pub ops: Vec<OpResult>,
    #[serde(default)]
    pub predicted_seconds: Option<f64>,
    #[serde(default)]
    pub roof_fraction: Option<f64>,
    /// MoE models: which experts were hit, and what that means for the bytes read.
    #[serde(default)]
    pub experts: Option<ExpertResult>,
}

/// One MoE layer's expert-hit histogram over one repetition of a phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerExperts {
    pub layer: u32,
    /// Token-expert assignments per routed expert.
    pub counts: Vec<u64>,
    /// Distinct experts touched, summed over the repetition's forward passes.
    pub distinct: u64,
}

/// Expert hits of one repetition of a phase against the cost model's assumption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertResult {
    pub layers: Vec<LayerExperts>,
    /// Bytes of one routed expert's weights (gate, up, down) in the run's format.
    pub bytes_per_expert: Bytes,
    /// Distinct experts the cost model charges, summed over MoE layers and steps.
    pub model_distinct_experts: f64,
    /// Distinct experts really hit, summed over MoE layers and steps.
    pub measured_distinct_experts: u64,
    /// Routed-expert weight bytes: cost model vs. what the hits read.
    pub model_expert_bytes: Bytes,
    pub measured_expert_bytes: Bytes,
    /// The phase's bytes with the measured expert bytes in place of the model's.
    pub bytes_with_measured_experts: Bytes,
}

impl PhaseResult {
    /// Seconds per token at the median (decode: per step; prefill: per prompt token).
    pub fn seconds_per_token(&self) -> f64 {
        self.seconds.median / self.tokens.max(1) as f64
    }

    /// Operators summed over layers, one row per kind in execution order, with per-repetition
    /// samples summed before taking the median.
    pub fn by_kind(&self) -> Vec<KindResult> {
        let mut out: Vec<KindResult> = Vec::new();
        for op in &self.ops {
            let row = match out.iter_mut().position(|k| k.kind == op.id.kind) {
                Some(i) => &mut out[i],
                None => {
                    out.push(KindResult {
                        kind: op.id.kind,
                        compute: op.compute,
                        count: 0,
                        flops: Flops::ZERO,
                        bytes: Bytes::ZERO,
                        samples: vec![0.0; op.seconds.samples.len()],
                        predicted_seconds: Some(0.0),
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            row.count += 1;
            row.flops += op.flops;
            row.bytes += op.bytes;
            for (a, b) in row.samples.iter_mut().zip(&op.seconds.samples) {
                *a += b;
            }
            row.predicted_seconds = match (row.predicted_seconds, op.predicted_seconds) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        out
    }
}

/// One operator kind of a phase, summed over layers.
#[derive(Clone, Debug, PartialEq)]
pub struct KindResult {
    pub kind: OpKind,
    /// The arithmetic path of the kind's first instance (every layer's matrix of one role has
    /// one format in the files we read; a mixed file shows the first layer's).
    pub compute: Precision,
    /// Operator instances (layers).
    pub count: usize,
    pub flops: Flops,
    pub bytes: Bytes,
    /// Per-repetition sums.
    pub samples: Vec<f64>,
    pub predicted_seconds: Option<f64>,
}

impl KindResult {
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

/// The roof the predictions were made against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoofInfo {
    pub profile: String,
    pub source: String,
    pub dram_bytes_per_second: f64,
    pub f32_flops_per_second: f64,
    /// The int8 dot-product roof, when some operator ran on int8 (quantized matrices) and the
    /// profile has an int8 ceiling; `None` with int8 operators means the f32 peak stood in.
    #[serde(default)]
    pub int8_ops_per_second: Option<f64>,
    /// Whether any operator ran on int8 dot products.
    #[serde(default)]
    pub int8_operators: bool,
}

/// Everything one `bench` run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub schema_version: u32,
    pub model: String,
    pub model_type: String,
    /// Weight dtype of the run.
    pub weights: String,
    /// `random (seed N)` or the checkpoint path.
    pub weights_source: String,
    pub kv_cache: String,
    pub threads: u32,
    pub isa: String,
    /// `rooflinebench-engine <version> <isa>`.
    pub engine: String,
    pub reps: u64,
    pub warmup: u64,
    /// Building the model (not timed in any phase).
    pub load_seconds: f64,
    /// MLA models: the execution form run and costed (`absorbed` or `materialized`).
    #[serde(default)]
    pub mla_form: Option<String>,
    /// Bytes of the KV cache allocated for the run (equal to the cost model's size).
    #[serde(default)]
    pub kv_cache_bytes: u64,
    pub phases: Vec<PhaseResult>,
    #[serde(default)]
    pub roof: Option<RoofInfo>,
    pub warnings: Vec<Warning>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn summary(samples: Vec<f64>) -> Result<SampleSummary, EngineError> {
    // A sub-nanosecond operator (an empty residual, say) would read as zero; clamp to 1 ns.
    Ok(SampleSummary::from_samples(
        samples.into_iter().map(|s| s.max(1e-9)).collect(),
    )?)
}

/// Cost options describing what this engine really runs.
/// The arithmetic the engine runs for an operator the cost model puts on `cost`: quantized
/// matrices run int8 dot products against q8 activations (VNNI / `sdot` kernels); f16 and
/// bf16 weights are widened and multiplied in f32, like every other operator.
pub fn engine_compute(cost: Precision) -> Precision {
    match cost {
        Precision::Int8 => Precision::Int8,
        _ => Precision::F32,
    }
}

pub fn cost_options(dtype: WeightDtype) -> CostOptions {
    let fmt = match dtype {
        WeightDtype::F32 => WeightFormat::F32,
        WeightDtype::F16 => WeightFormat::F16,
        WeightDtype::Bf16 => WeightFormat::Bf16,
    };
    CostOptions {
        weights: Recipe::Uniform(fmt),
        kv: KvFormat::F32,
        activation_bytes: 4,
        lm_head_all_tokens: false,
        ..CostOptions::default()
    }
}

/// Operators executed but not costed, and costed but not executed.
pub fn coverage(executed: &[OpId], table: &[OpCost]) -> (Vec<OpId>, Vec<OpId>) {
    let ex: BTreeSet<OpId> = executed.iter().copied().collect();
    let co: BTreeSet<OpId> = table.iter().map(|o| o.id).collect();
    (
        ex.difference(&co).copied().collect(),
        co.difference(&ex).copied().collect(),
    )
}

fn token_ids(seed: u64, n: usize, vocab: u64) -> Vec<u32> {
    let mut r = rooflinebench_kernels::xorshift::XorShift64::from_state(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D,
    );
    (0..n)
        .map(|_| (r.next_u64() % vocab.max(1)) as u32)
        .collect()
}

/// Raw samples of one phase before costing.
struct Raw {
    totals: Vec<f64>,
    /// Per repetition, per operator (same order every repetition).
    ops: Vec<Vec<(OpId, f64)>>,
    /// Expert hits of the first timed repetition (MoE models).
    experts: Vec<ExpertHits>,
}

/// Measures `def` as `opts` says. The model is built first (weights written), then each phase
/// is warmed up and repeated.
/// `opts.warmup` untimed runs, then `opts.reps` timed ones: each run's total, its operator
/// samples, and the expert hits of the first timed run.
fn repeat_runs(
    opts: &BenchOptions,
    rec: &mut TimingRecorder,
    mut run: impl FnMut(&mut TimingRecorder) -> Result<f64, EngineError>,
) -> Result<Raw, EngineError> {
    for _ in 0..opts.warmup {
        run(rec)?;
        rec.take();
        rec.take_experts();
    }
    let mut raw = Raw {
        totals: vec![],
        ops: vec![],
        experts: vec![],
    };
    for rep in 0..opts.reps {
        raw.totals.push(run(rec)?);
        raw.ops.push(rec.take());
        let hits = rec.take_experts();
        if rep == 0 {
            raw.experts = hits;
        }
    }
    Ok(raw)
}

pub fn run_bench(def: &ModelDef, opts: &BenchOptions) -> Result<BenchResult, EngineError> {
    if opts.reps == 0 {
        return Err(EngineError::bad_option(
            "reps",
            0,
            "at least one repetition is needed",
        ));
    }
    if opts.threads == 0 {
        return Err(EngineError::bad_option(
            "threads",
            0,
            "at least one thread is needed",
        ));
    }
    if opts.prompt == 0 && opts.gen == 0 {
        return Err(EngineError::bad_option(
            "prompt",
            0,
            "nothing to measure: give a prompt length, decode steps (--gen), or both",
        ));
    }
    let max_pos = def.spec.max_position_embeddings as usize;
    if max_pos > 0 {
        if opts.prompt > max_pos {
            return Err(EngineError::bad_option(
                "prompt",
                opts.prompt,
                format!(
                    "longer than the model's maximum context (max_position_embeddings = {max_pos})"
                ),
            ));
        }
        if opts.gen > 0 && opts.depth.saturating_add(opts.gen) > max_pos {
            return Err(EngineError::bad_option(
                "depth + gen",
                opts.depth.saturating_add(opts.gen),
                format!("beyond the model's maximum context (max_position_embeddings = {max_pos})"),
            ));
        }
    }
    let decode_positions = if opts.gen > 0 {
        opts.depth.saturating_add(opts.gen)
    } else {
        0
    };
    let positions = opts.prompt.max(decode_positions);
    let max_tokens = opts
        .prompt
        .max(if opts.gen > 0 { opts.depth } else { 0 })
        .max(1);

    let t_load = Instant::now();
    let (mut model, mut cache) = load(
        def,
        &opts.weights,
        &LoadOptions {
            dtype: opts.dtype,
            threads: opts.threads,
            isa: opts.isa,
            positions,
            max_tokens,
        },
    )?;
    let load_seconds = t_load.elapsed().as_secs_f64();
    let dtype = model.weights.dtype;
    let isa = model.isa();
    let spec = &def.spec;
    let tokens = token_ids(opts.token_seed, positions.max(1), spec.vocab_size);
    let mla_form = match spec.attention {
        Attention::Mla(_) => Some(def.arch.mla_form),
        _ => None,
    };
    let copts = CostOptions {
        mla_form: def.arch.mla_form,
        ..cost_options(dtype)
    };
    // The real format of every matrix (a GGUF's per-tensor types, quantized random weights,
    // or the dense dtype): PITFALLS.md #24.
    let formats = model.weights.tensor_formats(spec.fused_qkv);
    let weights_label = model.weights.format_label();
    let cm = CostModel::with_formats(spec, &copts, &formats)?;
    let kv_cache_bytes = cache.bytes();
    let mut warnings = Vec::new();
    let mut phases = Vec::new();
    let mut rec = TimingRecorder::new();

    if opts.prompt > 0 {
        let prompt = &tokens[..opts.prompt];
        let run = |rec: &mut TimingRecorder| -> Result<f64, EngineError> {
            cache.truncate(0);
            let t0 = Instant::now();
            model.forward(prompt, &mut cache, Logits::Last, rec)?;
            Ok(t0.elapsed().as_secs_f64())
        };
        let mut raw = repeat_runs(opts, &mut rec, run)?;
        let table = cm.table(Phase::Prefill {
            tokens: opts.prompt as u64,
            cached: 0,
        })?;
        let hits = std::mem::take(&mut raw.experts);
        let tables = [table];
        let mut p = assemble(
            "prefill",
            opts.prompt as u64,
            1,
            0,
            &tables,
            raw,
            &mut warnings,
        )?;
        p.experts = expert_result(spec.ffn.moe(), &tables, hits, p.bytes);
        phases.push(p);
    }

    if opts.gen > 0 {
        let depth = opts.depth;
        cache.truncate(0);
        if depth > 0 {
            model.forward(
                &tokens[..depth],
                &mut cache,
                Logits::Last,
                &mut crate::NoopRecorder,
            )?;
        }
        let steps = &tokens[..opts.gen];
        let run = |rec: &mut TimingRecorder| -> Result<f64, EngineError> {
            cache.truncate(depth);
            let mut total = 0.0;
            for tok in steps {
                let t0 = Instant::now();
                model.forward(std::slice::from_ref(tok), &mut cache, Logits::Last, rec)?;
                total += t0.elapsed().as_secs_f64();
            }
            Ok(total)
        };
        let mut raw = repeat_runs(opts, &mut rec, run)?;
        let tables = (1..=opts.gen as u64)
            .map(|s| {
                cm.table(Phase::Decode {
                    context: depth as u64 + s,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hits = std::mem::take(&mut raw.experts);
        let mut p = assemble(
            "decode",
            opts.gen as u64,
            opts.gen as u64,
            depth as u64,
            &tables,
            raw,
            &mut warnings,
        )?;
        p.experts = expert_result(spec.ffn.moe(), &tables, hits, p.bytes);
        phases.push(p);
    }

    if opts.warmup == 0 && !phases.is_empty() {
        warnings.push(Warning {
            code: "no_warmup".into(),
            message: "--warmup 0: the first timed repetition includes one-time work (the \
                      kernels' per-thread buffers and the matrix library's packing space are \
                      allocated and first touched then); its samples are kept as measured"
                .into(),
        });
    }
    for p in &phases {
        let spread = (p.seconds.max - p.seconds.min) / p.seconds.median;
        if p.seconds.samples.len() >= 3 && spread > 0.2 {
            warnings.push(Warning {
                code: "high_variance".into(),
                message: format!(
                    "{} repetitions spread by {:.0}% of the median: the machine is busy or \
                     throttling; close other programs or raise --reps",
                    p.phase,
                    spread * 100.0
                ),
            });
        }
    }

    Ok(BenchResult {
        schema_version: BENCH_SCHEMA_VERSION,
        model: spec.name.clone(),
        model_type: spec.model_type.clone(),
        weights: weights_label,
        weights_source: match &opts.weights {
            WeightsFrom::Random { seed } => format!("random (seed {seed})"),
            WeightsFrom::Safetensors(p) | WeightsFrom::Gguf(p) => p.display().to_string(),
            WeightsFrom::RandomQuant { seed, quant } => {
                format!("random (seed {seed}), quantized to {}", quant.name())
            }
        },
        kv_cache: "f32".into(),
        threads: model.threads() as u32,
        isa: isa.name().to_string(),
        engine: match mla_form {
            Some(f) => format!(
                "rooflinebench-engine {} {} mla-{}",
                env!("CARGO_PKG_VERSION"),
                isa.name(),
                f.name()
            ),
            None => format!(
                "rooflinebench-engine {} {}",
                env!("CARGO_PKG_VERSION"),
                isa.name()
            ),
        },
        reps: opts.reps as u64,
        warmup: opts.warmup as u64,
        load_seconds,
        mla_form: mla_form.map(|f| f.name().to_string()),
        kv_cache_bytes,
        phases,
        roof: None,
        warnings,
    })
}

/// Joins raw samples with the summed cost tables of the phase's steps.
fn assemble(
    phase: &str,
    tokens: u64,
    steps: u64,
    depth: u64,
    tables: &[CostTable],
    raw: Raw,
    warnings: &mut Vec<Warning>,
) -> Result<PhaseResult, EngineError> {
    // Sum each operator's cost over the steps.
    let mut costs: Vec<OpCost> = Vec::new();
    for t in tables {
        for op in &t.ops {
            match costs.iter_mut().find(|c| c.id == op.id) {
                Some(c) => {
                    c.flops += op.flops;
                    c.weight_bytes += op.weight_bytes;
                    c.act_read_bytes += op.act_read_bytes;
                    c.act_write_bytes += op.act_write_bytes;
                    c.kv_read_bytes += op.kv_read_bytes;
                    c.kv_write_bytes += op.kv_write_bytes;
                }
                None => costs.push(*op),
            }
        }
    }
    let executed: Vec<OpId> = raw
        .ops
        .first()
        .map(|r| r.iter().map(|(id, _)| *id).collect())
        .unwrap_or_default();
    let (extra, missing) = coverage(&executed, &costs);
    if !extra.is_empty() || !missing.is_empty() {
        let names = |v: &[OpId]| {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        warnings.push(Warning {
            code: "op_mismatch".into(),
            message: format!(
                "{phase}: the engine and the cost model disagree on the operators (executed but \
                 not costed: [{}]; costed but not executed: [{}]); this is a bug, please report it",
                names(&extra),
                names(&missing)
            ),
        });
    }
    let mut ops = Vec::with_capacity(costs.len());
    let mut op_median_sum = 0.0;
    for c in &costs {
        let samples: Vec<f64> = raw
            .ops
            .iter()
            .map(|rep| {
                rep.iter()
                    .find(|(id, _)| *id == c.id)
                    .map_or(0.0, |(_, s)| *s)
            })
            .collect();
        let seconds = summary(samples)?;
        op_median_sum += seconds.median;
        ops.push(OpResult {
            id: c.id,
            name: c.id.to_string(),
            compute: engine_compute(c.compute),
            flops: c.flops,
            bytes: c.bytes(),
            seconds,
            predicted_seconds: None,
            attainable_flops_per_second: None,
            roof_fraction: None,
            bound: None,
        });
    }
    let seconds = summary(raw.totals)?;
    let flops = costs.iter().map(|c| c.flops).sum();
    let bytes = costs.iter().map(|c| c.bytes()).sum();
    let weight_bytes = costs.iter().map(|c| c.weight_bytes).sum();
    let kv_bytes = costs
        .iter()
        .map(|c| c.kv_read_bytes + c.kv_write_bytes)
        .sum();
    let (context_first, context_last) = if phase == "decode" {
        (depth + 1, depth + steps)
    } else {
        (tokens, tokens)
    };
    Ok(PhaseResult {
        phase: phase.to_string(),
        tokens,
        steps,
        depth,
        context_first,
        context_last,
        unattributed_seconds: seconds.median - op_median_sum,
        seconds,
        flops,
        bytes,
        weight_bytes,
        kv_bytes,
        ops,
        predicted_seconds: None,
        roof_fraction: None,
        experts: None,
    })
}

/// The expert hits of one repetition against the cost model's routed-expert bytes. `None`
/// without MoE layers.
fn expert_result(
    moe: Option<&MoeSpec>,
    tables: &[CostTable],
    hits: Vec<ExpertHits>,
    phase_bytes: Bytes,
) -> Option<ExpertResult> {
    let m = moe?;
    if hits.is_empty() {
        return None;
    }
    let model_expert_bytes: u64 = tables
        .iter()
        .flat_map(|t| &t.ops)
        .filter(|o| o.id.kind == OpKind::MoeExperts)
        .map(|o| o.weight_bytes.0)
        .sum();
    // Per MoE layer and forward pass of T tokens the model charges D(T) distinct experts
    // (exactly top_k for one token), all of one size.
    let layers = hits.len() as f64;
    let model_distinct: f64 = tables
        .iter()
        .map(|t| expected_distinct_experts(m.num_experts, m.top_k, t.phase.new_tokens()) * layers)
        .sum();
    let per_expert = if model_distinct > 0.0 {
        (model_expert_bytes as f64 / model_distinct).round() as u64
    } else {
        0
    };
    let measured_distinct: u64 = hits.iter().map(|h| h.distinct).sum();
    let measured_expert_bytes = per_expert.saturating_mul(measured_distinct);
    Some(ExpertResult {
        layers: hits
            .into_iter()
            .map(|h| LayerExperts {
                layer: h.layer,
                counts: h.counts,
                distinct: h.distinct,
            })
            .collect(),
        bytes_per_expert: Bytes(per_expert),
        model_distinct_experts: model_distinct,
        measured_distinct_experts: measured_distinct,
        model_expert_bytes: Bytes(model_expert_bytes),
        measured_expert_bytes: Bytes(measured_expert_bytes),
        bytes_with_measured_experts: Bytes(
            phase_bytes
                .0
                .saturating_add(measured_expert_bytes)
                .saturating_sub(model_expert_bytes),
        ),
    })
}

impl PhaseResult {
    /// Human-readable lines about the expert hits (empty without MoE): the histogram per layer
    /// (most-hit experts first) and measured vs. modelled routed-expert bytes.
    pub fn experts_text(&self) -> String {
        let Some(x) = &self.experts else {
            return String::new();
        };
        let n_exp = x.layers.first().map_or(0, |l| l.counts.len());
        let flops = self.flops.as_f64();
        let mut s = format!(
            "  MoE expert hits (first timed repetition, {} MoE layers x {} experts): distinct \
             experts read {} measured vs {:.1} cost model (uniform routing); routed-expert \
             weights {:.3} GB measured vs {:.3} GB cost model; phase bytes with the measured \
             hits {:.3} GB, intensity {:.2} FLOP/B (cost model {:.2})\n",
            x.layers.len(),
            n_exp,
            x.measured_distinct_experts,
            x.model_distinct_experts,
            x.measured_expert_bytes.as_f64() / 1e9,
            x.model_expert_bytes.as_f64() / 1e9,
            x.bytes_with_measured_experts.as_f64() / 1e9,
            flops / x.bytes_with_measured_experts.as_f64(),
            flops / self.bytes.as_f64(),
        );
        for l in &x.layers {
            let mut hit: Vec<(usize, u64)> = l
                .counts
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, c)| c > 0)
                .collect();
            hit.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let shown: Vec<String> = hit
                .iter()
                .take(12)
                .map(|(e, c)| format!("e{e}:{c}"))
                .collect();
            let more = hit.len().saturating_sub(12);
            s += &format!(
                "    L{}: {}/{} experts hit: {}{}\n",
                l.layer,
                hit.len(),
                l.counts.len(),
                shown.join(" "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            );
        }
        s
    }
}

impl BenchResult {
    /// One line naming the MLA form and the KV cache size (empty for other attention kinds).
    pub fn mla_text(&self) -> String {
        match &self.mla_form {
            Some(f) => format!(
                "attention: MLA, {f} form (costed in the same form); KV cache {:.2} MB\n",
                self.kv_cache_bytes as f64 / 1e6
            ),
            None => String::new(),
        }
    }

    /// Fills every prediction and roof fraction from `ceilings` (f32 compute roof, DRAM or the
    /// ceilings' level policy).
    pub fn evaluate(&mut self, ceilings: &Ceilings) {
        let f32_peak = ceilings.peak_for(Precision::F32).1;
        let int8_operators = self
            .phases
            .iter()
            .flat_map(|p| &p.ops)
            .any(|op| op.compute == Precision::Int8);
        let int8_ops_per_second = match ceilings.peak_for(Precision::Int8) {
            (Precision::Int8, v) if int8_operators => Some(v.0),
            _ => None,
        };
        self.roof = Some(RoofInfo {
            profile: ceilings.profile.clone(),
            source: ceilings.source.name().to_string(),
            dram_bytes_per_second: ceilings.dram().0,
            f32_flops_per_second: f32_peak.0,
            int8_ops_per_second,
            int8_operators,
        });
        for p in &mut self.phases {
            let mut total = 0.0;
            for op in &mut p.ops {
                // Each operator against the roof of the arithmetic it ran (PITFALLS.md #12:
                // never the f32 roof for a quantized product).
                let mut cost = OpCost::zero(op.id, op.compute);
                cost.flops = op.flops;
                cost.act_read_bytes = op.bytes;
                let (pred, _) = predict_op(&cost, ceilings);
                total += pred.seconds.0;
                op.predicted_seconds = Some(pred.seconds.0);
                op.attainable_flops_per_second = Some(pred.attainable_flops_per_second.0);
                op.roof_fraction = Some(pred.seconds.0 / op.seconds.median);
                op.bound = Some(pred.bound);
            }
            p.predicted_seconds = Some(total);
            p.roof_fraction = Some(total / p.seconds.median);
        }
    }

    /// Measured points for the report: one per phase (per repetition of the phase: decode
    /// counts the G steps together), and one per operator kind summed over layers.
    pub fn points(&self) -> Result<Vec<MeasuredPoint>, EngineError> {
        let mut out = Vec::new();
        for p in &self.phases {
            let label = match p.phase.as_str() {
                "decode" => format!("decode@{} x{}", p.depth, p.steps),
                _ => format!("prefill {}", p.tokens),
            };
            let context = if p.phase == "decode" {
                p.context_first
            } else {
                0
            };
            // A phase mixes paths; its point sits under the roof of the one doing most FLOPs.
            let kinds = p.by_kind();
            let main_compute = kinds
                .iter()
                .max_by_key(|k| k.flops)
                .map_or(Precision::F32, |k| k.compute);
            let base = MeasuredPoint {
                label: label.clone(),
                scope: Scope::Phase,
                op: None,
                phase: p.phase.clone(),
                context,
                tokens: p.tokens,
                batch: 1,
                threads: self.threads,
                engine: self.engine.clone(),
                compute: main_compute,
                flops: p.flops,
                bytes: p.bytes,
                seconds: p.seconds.clone(),
            };
            for k in kinds {
                out.push(MeasuredPoint {
                    label: format!("{} {label}", k.kind.name()),
                    scope: Scope::Operator,
                    op: Some(OpId::global(k.kind)),
                    compute: k.compute,
                    flops: k.flops,
                    bytes: k.bytes,
                    seconds: summary(k.samples.clone())?,
                    ..base.clone()
                });
            }
            out.insert(out.len() - p.by_kind().len(), base);
        }
        Ok(out)
    }
}
