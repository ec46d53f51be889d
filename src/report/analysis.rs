//! Builds a [`ResultDoc`]: costs a model's scenarios, predicts them against every ceiling
//! source of a profile, places measured points (and the predicted ones, flagged) against the
//! roof with Phi, and computes the sweeps the report draws.
//!
//! Predicted request time is the co-design paper's sum (ROOFLINEBENCH.md §4): the prefill plus
//! every decode step at its own context, each operator `max(F/pi, B/beta)` on its own roof.
//! This module computes; it writes nothing.

use crate::result::{
    KindCost, ModelSummary, PhaseCost, PointOrigin, PotentialRecord, Provenance, ResultDoc,
    ScenarioCosts, ScenarioPrediction, ScenarioResult, Sweep, SweepSeries, RESULT_KIND,
    RESULT_SCHEMA_VERSION,
};
use anyhow::{bail, Context, Result};
use rooflinebench_model::cost::{CostModel, CostOptions, CostTable, CostTotals, Phase};
use rooflinebench_model::hardware::{CeilingSource, HardwareProfile, Precision, Warning};
use rooflinebench_model::measure::{MeasuredPoint, Scope};
use rooflinebench_model::op::OpId;
use rooflinebench_model::params::count_params;
use rooflinebench_model::roofline::potential::{potential, Ridge};
use rooflinebench_model::roofline::{
    by_kind, combine_request, predict_op, predict_phase, Ceilings, PhaseAccumulator,
    PhasePrediction, RoofOptions,
};
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::units::{FlopsPerSec, Intensity};
use rooflinebench_model::workload::Scenario;
use std::collections::HashMap;

/// `--mem-level`: which memory level's bandwidth bounds each operator.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemLevelArg {
    /// DRAM for every operator (weights do not stay cached between layers).
    #[default]
    Dram,
    /// The smallest cache level that holds each operator's working set (optimistic).
    WorkingSet,
    L1,
    L2,
    L3,
}

impl MemLevelArg {
    pub fn roof_options(self) -> RoofOptions {
        use rooflinebench_model::hardware::MemLevel;
        use rooflinebench_model::roofline::LevelPolicy;
        RoofOptions {
            level: match self {
                MemLevelArg::Dram => LevelPolicy::Dram,
                MemLevelArg::WorkingSet => LevelPolicy::WorkingSet,
                MemLevelArg::L1 => LevelPolicy::Fixed(MemLevel::L1),
                MemLevelArg::L2 => LevelPolicy::Fixed(MemLevel::L2),
                MemLevelArg::L3 => LevelPolicy::Fixed(MemLevel::L3),
            },
            ..RoofOptions::default()
        }
    }
}

/// Everything an analysis needs.
pub struct AnalysisInput<'a> {
    pub spec: &'a ModelSpec,
    /// Warnings from parsing the model config.
    pub spec_warnings: Vec<Warning>,
    pub profile: HardwareProfile,
    pub scenarios: Vec<Scenario>,
    pub cost_options: CostOptions,
    /// Level policy and threads; the source is set per ceiling source.
    pub roof: RoofOptions,
    pub measurements: Vec<MeasuredPoint>,
    /// Compute the context, prompt-length and depth sweeps.
    pub sweeps: bool,
}

/// Ceiling sources in the order figures are shown: measured here first.
pub const SOURCES: [CeilingSource; 3] = [
    CeilingSource::Measured,
    CeilingSource::Theoretical,
    CeilingSource::MeasuredElsewhere,
];

/// Every source of `profile` that yields a usable roofline (a DRAM bandwidth and a compute
/// ceiling). Errors when none does.
pub fn ceilings_of(profile: &HardwareProfile, roof: &RoofOptions) -> Result<Vec<Ceilings>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for s in SOURCES {
        let mut o = roof.clone();
        o.source = rooflinebench_model::roofline::CeilingSourceChoice(s);
        match Ceilings::from_profile(profile, &o) {
            Ok(c) => out.push(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if out.is_empty() {
        bail!(
            "hardware profile `{}` has no usable roofline: it needs a DRAM bandwidth and a compute \
             ceiling from the same source ({})",
            profile.name,
            errors.join("; ")
        );
    }
    Ok(out)
}

fn phase_cost(table: &CostTable) -> PhaseCost {
    PhaseCost {
        phase: table.phase,
        totals: table.totals(),
        by_kind: table
            .by_kind()
            .into_iter()
            .map(|(kind, compute, totals)| KindCost {
                kind,
                compute,
                totals,
            })
            .collect(),
    }
}

/// Summary of a spec for the result.
pub fn model_summary(spec: &ModelSpec, opts: &CostOptions) -> ModelSummary {
    ModelSummary {
        name: spec.name.clone(),
        model_type: spec.model_type.clone(),
        attention: spec.attention.name().to_string(),
        num_hidden_layers: spec.num_hidden_layers,
        hidden_size: spec.hidden_size,
        num_attention_heads: spec.num_attention_heads,
        num_key_value_heads: spec.num_key_value_heads,
        head_dim: spec.head_dim,
        intermediate_size: spec.intermediate_size,
        vocab_size: spec.vocab_size,
        moe: spec.ffn.moe().is_some(),
        params: count_params(spec).ok(),
        weights: opts.weights.name(),
        kv: opts.kv.name().to_string(),
    }
}

/// Predicts one phase against every source at once, visiting the cost model a single time.
fn predict_visit(
    model: &CostModel<'_>,
    phase: Phase,
    ceilings: &[Ceilings],
) -> Result<(CostTotals, Vec<PhasePrediction>)> {
    let mut accs: Vec<PhaseAccumulator<'_>> = ceilings.iter().map(PhaseAccumulator::new).collect();
    let mut totals = CostTotals::default();
    model.visit(phase, |op, n| {
        totals.add_op(op, n);
        for a in &mut accs {
            a.add(op, n);
        }
    })?;
    Ok((
        totals,
        accs.into_iter().map(PhaseAccumulator::finish).collect(),
    ))
}

fn scenario_result(
    model: &CostModel<'_>,
    sc: &Scenario,
    ceilings: &[Ceilings],
) -> Result<ScenarioResult> {
    let prefill_phase = Phase::Prefill {
        tokens: sc.prompt,
        cached: 0,
    };
    let prefill = model.table(prefill_phase)?;
    let steps = sc.decode_steps();
    let first = if steps > 0 {
        Some(model.table(Phase::Decode {
            context: sc.decode_context(1),
        })?)
    } else {
        None
    };
    let last = if steps > 0 {
        Some(model.table(Phase::Decode {
            context: sc.decode_context(steps),
        })?)
    } else {
        None
    };
    let mut per_source: Vec<Vec<(u64, PhasePrediction)>> = vec![Vec::new(); ceilings.len()];
    let mut decode_totals = CostTotals::default();
    for j in 1..=steps {
        let context = sc.decode_context(j);
        let (t, preds) = predict_visit(model, Phase::Decode { context }, ceilings)?;
        decode_totals.add(&t);
        for (v, p) in per_source.iter_mut().zip(preds) {
            v.push((context, p));
        }
    }
    let prefill_totals = prefill.totals();
    let mut request_totals = prefill_totals;
    request_totals.add(&decode_totals);
    let mut predictions = Vec::new();
    for (c, steps) in ceilings.iter().zip(per_source) {
        let (pre, pre_ops) = predict_phase(&prefill.ops, c);
        let request = combine_request(pre, steps, sc.batch, c.source);
        let decode_last_ops = match &last {
            Some(t) => by_kind(&predict_phase(&t.ops, c).1),
            None => Vec::new(),
        };
        predictions.push(ScenarioPrediction {
            source: c.source,
            request,
            prefill_ops: by_kind(&pre_ops),
            decode_last_ops,
        });
    }
    Ok(ScenarioResult {
        scenario: sc.clone(),
        costs: ScenarioCosts {
            prefill: phase_cost(&prefill),
            decode_first: first.as_ref().map(phase_cost),
            decode_last: last.as_ref().map(phase_cost),
            decode_totals,
            request_totals,
        },
        predictions,
    })
}

/// A point to place against a roof.
struct PointRef<'a> {
    label: String,
    scope: Scope,
    origin: PointOrigin,
    phase: &'a str,
    context: u64,
    precision: Precision,
    oi: Intensity,
    perf: FlopsPerSec,
}

/// Phi of a point against the DRAM roof of its precision in `c`; `None` for a degenerate point.
fn potential_record(c: &Ceilings, p: PointRef<'_>) -> Option<PotentialRecord> {
    let roof = c.dram_roof(p.precision).roof;
    let ridge = Ridge::new(roof.peak_flops_per_second, roof.bandwidth_bytes_per_second).ok()?;
    let pot = potential(ridge, p.oi, p.perf).ok()?;
    Some(PotentialRecord {
        label: p.label,
        scope: p.scope,
        origin: p.origin,
        scenario: None,
        phase: p.phase.to_string(),
        context: p.context,
        source: c.source,
        precision: roof.precision,
        intensity_flops_per_byte: p.oi.0,
        flops_per_second: p.perf.0,
        potential: pot,
        predicted_seconds: None,
        measured_seconds: None,
    })
}

/// Phi of the predicted prefill, last decode step and whole request of every scenario.
fn predicted_potential(
    scenarios: &[ScenarioResult],
    ceilings: &[Ceilings],
) -> Vec<PotentialRecord> {
    let mut out = Vec::new();
    for s in scenarios {
        for p in &s.predictions {
            let Some(c) = ceilings.iter().find(|c| c.source == p.source) else {
                continue;
            };
            let r = &p.request;
            let name = &s.scenario.name;
            // (label, scope, phase, context, flops, bytes, seconds)
            let mut points = vec![(
                format!("{name} prefill {}", s.scenario.prompt),
                Scope::Phase,
                "prefill",
                0,
                r.prefill.flops,
                r.prefill.bytes,
                r.prefill.seconds.0,
            )];
            if let Some(d) = &r.decode_last {
                points.push((
                    format!("{name} decode@{}", d.context),
                    Scope::Phase,
                    "decode",
                    d.context,
                    d.flops,
                    d.bytes,
                    d.seconds_per_step.0,
                ));
            }
            points.push((
                format!("{name} request"),
                Scope::Request,
                "request",
                s.scenario.prompt.saturating_add(s.scenario.generate),
                r.flops,
                r.bytes,
                r.request_seconds.0,
            ));
            for (label, scope, phase, context, flops, bytes, secs) in points {
                if secs <= 0.0 || !secs.is_finite() {
                    continue;
                }
                let point = PointRef {
                    label,
                    scope,
                    origin: PointOrigin::Predicted,
                    phase,
                    context,
                    precision: r.prefill.roof.precision,
                    oi: flops / bytes,
                    perf: FlopsPerSec(flops.as_f64() / secs),
                };
                if let Some(mut rec) = potential_record(c, point) {
                    rec.scenario = Some(name.clone());
                    rec.predicted_seconds = Some(secs);
                    out.push(rec);
                }
            }
        }
    }
    out
}

/// The roofline's predicted time for the work a measured point did, joined on phase, context,
/// batch and (for operators) the operator id.
///
/// A decode point covers `tokens` consecutive steps starting at `context` (the engine's
/// `decode@D xG` and llama-bench's tg tests): its prediction is the sum of every step at its
/// own context, not one step. An operator point with a layer-less id of a per-layer kind (the
/// engine's per-kind totals) joins every layer's operator of that kind.
struct Joiner<'a> {
    spec: &'a ModelSpec,
    opts: CostOptions,
    tables: HashMap<(Phase, u64), Option<CostTable>>,
}

/// Decode steps a point covers; more would be a corrupt file, not a measurement.
const MAX_JOINED_STEPS: u64 = 1 << 20;

impl Joiner<'_> {
    /// The forward passes a measured point covers.
    fn phases_of(m: &MeasuredPoint) -> Option<Vec<Phase>> {
        match m.phase.as_str() {
            "prefill" => Some(vec![Phase::Prefill {
                tokens: m.tokens,
                cached: m.context,
            }]),
            "decode" => {
                let steps = m.tokens.max(1);
                if steps > MAX_JOINED_STEPS {
                    return None;
                }
                Some(
                    (0..steps)
                        .map(|j| Phase::Decode {
                            context: m.context.saturating_add(j),
                        })
                        .collect(),
                )
            }
            _ => None,
        }
    }

    fn table(&mut self, phase: Phase, batch: u64) -> Option<&CostTable> {
        let (spec, opts) = (self.spec, self.opts);
        self.tables
            .entry((phase, batch))
            .or_insert_with(|| {
                let o = CostOptions {
                    batch: batch.max(1),
                    ..opts
                };
                CostModel::new(spec, &o).ok()?.table(phase).ok()
            })
            .as_ref()
    }

    fn predicted_seconds(&mut self, m: &MeasuredPoint, c: &Ceilings) -> Option<f64> {
        let mut total = 0.0;
        for phase in Joiner::phases_of(m)? {
            let table = self.table(phase, m.batch)?;
            total += match m.scope {
                Scope::Operator => {
                    let id = m.op?;
                    let mut matched = false;
                    let mut secs = 0.0;
                    for op in table.ops.iter().filter(|o| joins(id, o.id)) {
                        matched = true;
                        secs += predict_op(op, c).0.seconds.0;
                    }
                    if !matched {
                        return None;
                    }
                    secs
                }
                Scope::Phase => predict_phase(&table.ops, c).0.seconds.0,
                Scope::Request => return None,
            };
        }
        Some(total)
    }
}

/// Whether a measured operator id joins a costed one: exactly, or every layer's operator of the
/// kind when the measured id carries no layer (a per-kind total).
fn joins(measured: OpId, costed: OpId) -> bool {
    measured == costed || (measured.layer.is_none() && measured.kind == costed.kind)
}

fn measured_potential(
    input: &AnalysisInput<'_>,
    ceilings: &[Ceilings],
    warnings: &mut Vec<Warning>,
) -> Vec<PotentialRecord> {
    let mut joiner = Joiner {
        spec: input.spec,
        opts: input.cost_options,
        tables: HashMap::new(),
    };
    let mut out = Vec::new();
    let mut above: Vec<(String, f64)> = Vec::new();
    let mut no_flops: Vec<String> = Vec::new();
    for m in &input.measurements {
        for c in ceilings {
            let point = PointRef {
                label: m.label.clone(),
                scope: m.scope,
                origin: PointOrigin::Measured,
                phase: &m.phase,
                context: m.context,
                precision: m.compute,
                oi: m.intensity(),
                perf: m.perf(),
            };
            let Some(mut rec) = potential_record(c, point) else {
                if m.flops.0 == 0 && m.bytes.0 > 0 {
                    // a gather (embedding lookup): data movement with no place on a FLOP roof
                    no_flops.push(m.label.clone());
                    break;
                }
                warnings.push(Warning {
                    code: "degenerate_point".into(),
                    message: format!(
                        "measured point `{}` has no finite positive intensity or performance \
                         (flops {}, bytes {}): it is not placed on the roofline",
                        m.label, m.flops, m.bytes
                    ),
                });
                break;
            };
            if rec.potential.above_roof() && c.source == CeilingSource::Measured {
                above.push((m.label.clone(), rec.potential.efficiency));
            }
            rec.measured_seconds = Some(m.seconds.median);
            rec.predicted_seconds = joiner.predicted_seconds(m, c);
            out.push(rec);
        }
    }
    warnings.extend(above_roof_warning(&above));
    if !no_flops.is_empty() {
        warnings.push(Warning {
            code: "no_flops".into(),
            message: format!(
                "{} measured point(s) only move data (no FLOPs: {}): their time is in the tables \
                 but they have no place on a roofline",
                no_flops.len(),
                no_flops.join(", ")
            ),
        });
    }
    out
}

/// One warning for every measured point above its measured roof (not one per point): how many,
/// the worst, and the likely causes.
fn above_roof_warning(above: &[(String, f64)]) -> Option<Warning> {
    let worst = above.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let mut names: Vec<&str> = above.iter().map(|(l, _)| l.as_str()).take(4).collect();
    if above.len() > names.len() {
        names.push("...");
    }
    Some(Warning {
        code: "above_roof".into(),
        message: format!(
            "{} measured point(s) run above their measured roof, the worst `{}` at {:.2}x ({}): \
             their working set may stay in a cache faster than the roof's memory level (try \
             `--mem-level working-set`), or a ceiling was measured too low (re-run the probe), \
             or units, precision, FLOP counting or scope are wrong",
            above.len(),
            worst.0,
            worst.1,
            names.join(", ")
        ),
    })
}

/// Quantities against context length, prompt length and depth.
fn compute_sweeps(
    spec: &ModelSpec,
    opts: &CostOptions,
    ceilings: &[Ceilings],
) -> Result<Vec<Sweep>> {
    let model = CostModel::new(spec, opts)?;
    let max_ctx = if spec.max_position_embeddings > 0 {
        spec.max_position_embeddings.min(1 << 17)
    } else {
        1 << 15
    };
    let lengths: Vec<u64> = (4..=17)
        .map(|k| 1u64 << k)
        .filter(|&c| c <= max_ctx)
        .collect();
    let mut tps: Vec<SweepSeries> = ceilings
        .iter()
        .map(|c| SweepSeries {
            name: format!("{} ceilings", c.source.name().replace('_', " ")),
            points: Vec::new(),
        })
        .collect();
    let mut ttft: Vec<SweepSeries> = tps.clone();
    let mut oi_decode = SweepSeries {
        name: "decode step at context".into(),
        points: Vec::new(),
    };
    let mut oi_prefill = SweepSeries {
        name: "prefill of N tokens".into(),
        points: Vec::new(),
    };
    for &n in &lengths {
        let (t, preds) = predict_visit(&model, Phase::Decode { context: n }, ceilings)?;
        oi_decode.points.push([n as f64, t.intensity().0]);
        for (s, p) in tps.iter_mut().zip(&preds) {
            s.points.push([n as f64, opts.batch as f64 / p.seconds.0]);
        }
        let (t, preds) = predict_visit(
            &model,
            Phase::Prefill {
                tokens: n,
                cached: 0,
            },
            ceilings,
        )?;
        oi_prefill.points.push([n as f64, t.intensity().0]);
        for (s, p) in ttft.iter_mut().zip(&preds) {
            s.points.push([n as f64, p.seconds.0]);
        }
    }
    let mut depth_series: Vec<SweepSeries> = Vec::new();
    let depth_phases = [
        (
            "prefill 128",
            Phase::Prefill {
                tokens: 128,
                cached: 0,
            },
        ),
        ("decode@128", Phase::Decode { context: 128 }),
        (
            "prefill 4096",
            Phase::Prefill {
                tokens: 4096,
                cached: 0,
            },
        ),
        ("decode@4096", Phase::Decode { context: 4096 }),
    ];
    for (name, _) in &depth_phases {
        depth_series.push(SweepSeries {
            name: name.to_string(),
            points: Vec::new(),
        });
    }
    for layers in (2..=64).step_by(2) {
        let s = spec.with_layers(layers)?;
        let m = CostModel::new(&s, opts)?;
        for (series, (_, phase)) in depth_series.iter_mut().zip(&depth_phases) {
            series
                .points
                .push([layers as f64, m.totals(*phase)?.intensity().0]);
        }
    }
    Ok(vec![
        Sweep {
            id: "decode-tokens-per-second".into(),
            title: format!(
                "{}: predicted decode speed against context length",
                spec.name
            ),
            x_label: "context (tokens in the KV cache)".into(),
            y_label: "tokens/s (one decode step)".into(),
            x_log: true,
            y_log: false,
            series: tps,
        },
        Sweep {
            id: "ttft".into(),
            title: format!(
                "{}: predicted time to first token against prompt length",
                spec.name
            ),
            x_label: "prompt tokens".into(),
            y_label: "TTFT (s)".into(),
            x_log: true,
            y_log: true,
            series: ttft,
        },
        Sweep {
            id: "intensity-vs-length".into(),
            title: format!(
                "{}: operational intensity against sequence length",
                spec.name
            ),
            x_label: "tokens (prompt length, or decode context)".into(),
            y_label: "operational intensity (FLOP/byte)".into(),
            x_log: true,
            y_log: true,
            series: vec![oi_prefill, oi_decode],
        },
        Sweep {
            id: "intensity-vs-depth".into(),
            title: format!(
                "{}: operational intensity against depth (layers cut or repeated)",
                spec.name
            ),
            x_label: "layers".into(),
            y_label: "operational intensity (FLOP/byte)".into(),
            x_log: false,
            y_log: true,
            series: depth_series,
        },
    ])
}

/// Runs the whole analysis.
/// The thread count every measured point shares, when there is one: the roofs those points are
/// compared with must be the ceilings at that count, not the machine's best at any count.
fn shared_threads(measurements: &[MeasuredPoint]) -> Option<u32> {
    let t = measurements.first()?.threads;
    (t > 0 && measurements.iter().all(|m| m.threads == t)).then_some(t)
}

pub fn analyse(input: AnalysisInput<'_>) -> Result<ResultDoc> {
    let mut roof = input.roof.clone();
    let mut at_threads = None;
    if roof.threads.is_none() {
        if let Some(t) = shared_threads(&input.measurements) {
            let o = RoofOptions {
                threads: Some(t),
                ..roof.clone()
            };
            // a profile without ceilings at that count keeps the best at any count
            if ceilings_of(&input.profile, &o).is_ok() {
                roof = o;
                at_threads = Some(t);
            }
        }
    }
    let ceilings = ceilings_of(&input.profile, &roof)?;
    let model = CostModel::new(input.spec, &input.cost_options)
        .with_context(|| format!("model {}", input.spec.name))?;
    let mut warnings: Vec<Warning> = input.spec_warnings.clone();
    warnings.extend(input.profile.warnings.iter().cloned());
    let mut scenarios = Vec::new();
    for sc in &input.scenarios {
        scenarios.push(
            scenario_result(&model, sc, &ceilings)
                .with_context(|| format!("scenario {}", sc.name))?,
        );
    }
    // One warning per (source, missing precision).
    for c in &ceilings {
        let mut missing: Vec<_> = scenarios
            .iter()
            .flat_map(|s| s.predictions.iter())
            .filter(|p| p.source == c.source)
            .flat_map(|p| p.request.fallback_precisions.iter().copied())
            .collect();
        missing.sort();
        missing.dedup();
        warnings.extend(missing.into_iter().map(|p| c.fallback_warning(p)));
    }
    if let (None, Some(t)) = (at_threads, shared_threads(&input.measurements)) {
        warnings.push(Warning {
            code: "roof_threads".into(),
            message: format!(
                "every measured point ran with {t} thread(s) but profile `{}` has no ceilings \
                 at {t} thread(s): they are compared with its best ceilings at any thread count; \
                 probe with `--threads {t}` for a like-for-like roof",
                input.profile.name
            ),
        });
    }
    let mut potential = measured_potential(&input, &ceilings, &mut warnings);
    potential.extend(predicted_potential(&scenarios, &ceilings));
    let sweeps = if input.sweeps {
        compute_sweeps(input.spec, &input.cost_options, &ceilings)?
    } else {
        Vec::new()
    };
    Ok(ResultDoc {
        schema_version: RESULT_SCHEMA_VERSION,
        kind: RESULT_KIND.into(),
        provenance: Provenance::now(),
        host: input.profile.host.clone(),
        hardware: input.profile.clone(),
        model: model_summary(input.spec, &input.cost_options),
        cost_options: input.cost_options,
        scenarios,
        measurements: input.measurements,
        potential,
        sweeps,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rooflinebench_model::measure::SampleSummary;
    use rooflinebench_model::op::OpKind;
    use rooflinebench_model::units::{Bytes, Flops};

    fn joiner_and_roof() -> (ModelSpec, Ceilings) {
        let (spec, _) = rooflinebench_model::zoo::lookup("smollm2-135m")
            .unwrap()
            .spec()
            .unwrap();
        let profile = rooflinebench_model::devices::lookup("rpi5").unwrap();
        let c = ceilings_of(&profile, &RoofOptions::default()).unwrap();
        (spec, c.into_iter().next().unwrap())
    }

    fn point(scope: Scope, op: Option<OpId>, context: u64, tokens: u64) -> MeasuredPoint {
        MeasuredPoint {
            label: "p".into(),
            scope,
            op,
            phase: "decode".into(),
            context,
            tokens,
            batch: 1,
            threads: 1,
            engine: "test".into(),
            compute: Precision::F32,
            flops: Flops(1),
            bytes: Bytes(1),
            seconds: SampleSummary::single(1.0).unwrap(),
        }
    }

    /// The engine's `decode@D xG` point is G steps: its prediction must be the sum of the G
    /// steps at contexts D..D+G, not one step (the bug this replaced made it G times too small).
    #[test]
    fn decode_points_of_several_steps_join_every_step() {
        let (spec, c) = joiner_and_roof();
        let mut j = Joiner {
            spec: &spec,
            opts: CostOptions::default(),
            tables: HashMap::new(),
        };
        let one = j
            .predicted_seconds(&point(Scope::Phase, None, 129, 1), &c)
            .unwrap();
        let sixteen = j
            .predicted_seconds(&point(Scope::Phase, None, 129, 16), &c)
            .unwrap();
        let by_step: f64 = (0..16)
            .map(|k| {
                j.predicted_seconds(&point(Scope::Phase, None, 129 + k, 1), &c)
                    .unwrap()
            })
            .sum();
        assert!(
            (sixteen - by_step).abs() <= 1e-12 * by_step,
            "{sixteen} vs {by_step}"
        );
        assert!(
            sixteen > 15.9 * one && sixteen < 16.5 * one,
            "{sixteen} vs {one}"
        );
    }

    /// A layer-less operator id of a per-layer kind is the engine's per-kind total: it joins
    /// every layer's operator of that kind; a layer-specific id joins only its own layer.
    #[test]
    fn per_kind_operator_points_join_every_layer() {
        let (spec, c) = joiner_and_roof();
        let layers = spec.num_hidden_layers as f64;
        let mut j = Joiner {
            spec: &spec,
            opts: CostOptions::default(),
            tables: HashMap::new(),
        };
        let all = j
            .predicted_seconds(
                &point(Scope::Operator, Some(OpId::global(OpKind::FfnDown)), 129, 1),
                &c,
            )
            .unwrap();
        let one = j
            .predicted_seconds(
                &point(
                    Scope::Operator,
                    Some(OpId::layer(3, OpKind::FfnDown)),
                    129,
                    1,
                ),
                &c,
            )
            .unwrap();
        assert!(
            (all - layers * one).abs() <= 1e-9 * all,
            "{all} vs {layers} x {one}"
        );
        // an operator the model does not have joins nothing
        assert!(j
            .predicted_seconds(
                &point(
                    Scope::Operator,
                    Some(OpId::global(OpKind::MoeRouter)),
                    129,
                    1
                ),
                &c,
            )
            .is_none());
    }

    /// A run with many cache-resident operators used to print one warning per point.
    #[test]
    fn points_above_the_roof_give_one_warning_naming_the_worst() {
        assert!(above_roof_warning(&[]).is_none());
        let pts: Vec<(String, f64)> = (0..30)
            .map(|i| (format!("op{i}"), 1.0 + i as f64 / 10.0))
            .collect();
        let w = above_roof_warning(&pts).unwrap();
        assert!(
            w.message.starts_with("30 measured point(s)"),
            "{}",
            w.message
        );
        assert!(w.message.contains("`op29` at 3.90x"), "{}", w.message);
    }

    /// Points measured at one thread are compared with the one-thread ceilings, not the
    /// machine's best at any thread count.
    #[test]
    fn measured_points_use_the_ceilings_of_their_thread_count() {
        let (spec, _) = joiner_and_roof();
        let mut profile = rooflinebench_model::devices::lookup("rpi5").unwrap();
        let mut slow_c = profile.compute.clone();
        let mut slow_b = profile.bandwidth.clone();
        for c in &mut profile.compute {
            c.threads = Some(4);
        }
        for b in &mut profile.bandwidth {
            b.threads = Some(4);
        }
        for c in &mut slow_c {
            c.threads = Some(1);
            c.flops_per_second /= 4.0;
        }
        for b in &mut slow_b {
            b.threads = Some(1);
            b.bytes_per_second /= 4.0;
        }
        profile.compute.extend(slow_c);
        profile.bandwidth.extend(slow_b);
        let predicted = |threads: u32| {
            let mut m = point(Scope::Phase, None, 129, 4);
            m.threads = threads;
            let doc = analyse(AnalysisInput {
                spec: &spec,
                spec_warnings: vec![],
                profile: profile.clone(),
                scenarios: vec![],
                cost_options: CostOptions::default(),
                roof: RoofOptions::default(),
                measurements: vec![m],
                sweeps: false,
            })
            .unwrap();
            doc.potential
                .iter()
                .find(|r| r.origin == PointOrigin::Measured)
                .and_then(|r| r.predicted_seconds)
                .unwrap()
        };
        let (one, four) = (predicted(1), predicted(4));
        assert!((one / four - 4.0).abs() < 1e-9, "{one} vs {four}");
    }

    /// Embedding lookups do no FLOPs: one note for all of them, not a warning per point.
    #[test]
    fn data_movement_points_give_one_note() {
        let (spec, _) = joiner_and_roof();
        let mut pts = Vec::new();
        for label in ["embedding prefill 32", "embedding decode@32 x4"] {
            let mut m = point(
                Scope::Operator,
                Some(OpId::global(OpKind::Embedding)),
                33,
                4,
            );
            m.label = label.into();
            m.flops = Flops(0);
            m.bytes = Bytes(13824);
            pts.push(m);
        }
        let doc = analyse(AnalysisInput {
            spec: &spec,
            spec_warnings: vec![],
            profile: rooflinebench_model::devices::lookup("rpi5").unwrap(),
            scenarios: vec![],
            cost_options: CostOptions::default(),
            roof: RoofOptions::default(),
            measurements: pts,
            sweeps: false,
        })
        .unwrap();
        let codes: Vec<&str> = doc.warnings.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == "no_flops").count(),
            1,
            "{codes:?}"
        );
        assert!(!codes.contains(&"degenerate_point"), "{codes:?}");
    }
}
