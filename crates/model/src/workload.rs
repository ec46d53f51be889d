//! Workloads: scenarios of (prompt tokens, generated tokens, batch) and the cost of a whole
//! request.
//!
//! Convention: the prefill of `P` prompt tokens produces the logits of the **first** generated
//! token. Generating `G` tokens is therefore one prefill plus `G - 1` decode steps; decode step
//! `j` (1-based) feeds generated token `j` back and runs at `Phase::Decode { context: P + j }`,
//! so the contexts are `P + 1 ..= P + G - 1`, each step at **its own** context (PITFALLS.md
//! #10; the co-design paper's `sum_s T_decode(S_in + s)`, ROOFLINEBENCH.md §4).
//!
//! Built-in scenarios are the RooflineBench paper's: SISO 128/128, LISO 4096/128,
//! SILO 128/4096, LILO 4096/4096, batch 1.

use crate::cost::{CostModel, CostOptions, CostTable, CostTotals, Phase};
use crate::error::ModelError;
use crate::format::TensorFormats;
use crate::op::OpCost;
use crate::spec::ModelSpec;
use crate::units::{Bytes, Flops};
use serde::{Deserialize, Serialize};

/// A request shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    /// Prompt tokens per sequence.
    pub prompt: u64,
    /// Generated tokens per sequence (the first comes from the prefill).
    pub generate: u64,
    /// Sequences served together.
    pub batch: u64,
}

/// Largest accepted prompt length (2^32 tokens).
pub const MAX_SCENARIO_TOKENS: u64 = 1 << 32;
/// Largest accepted generation length (2^20 tokens): a request keeps one record per decode
/// step and costs each one.
pub const MAX_GENERATED_TOKENS: u64 = 1 << 20;

impl Scenario {
    pub fn new(name: &str, prompt: u64, generate: u64, batch: u64) -> Result<Scenario, ModelError> {
        let check = |option: &'static str, v: u64, max: u64, reason: &'static str| {
            if v == 0 {
                Err(ModelError::BadOption {
                    option,
                    value: v,
                    reason: "must be at least 1",
                })
            } else if v > max {
                Err(ModelError::BadOption {
                    option,
                    value: v,
                    reason,
                })
            } else {
                Ok(v)
            }
        };
        Ok(Scenario {
            name: name.to_string(),
            prompt: check("prompt", prompt, MAX_SCENARIO_TOKENS, "more than 2^32")?,
            generate: check("generate", generate, MAX_GENERATED_TOKENS, "more than 2^20")?,
            batch: check("batch", batch, crate::cost::MAX_BATCH, "more than 2^24")?,
        })
    }

    /// The paper's four scenarios, batch 1.
    pub fn builtin() -> Vec<Scenario> {
        [
            ("SISO", 128, 128),
            ("LISO", 4096, 128),
            ("SILO", 128, 4096),
            ("LILO", 4096, 4096),
        ]
        .into_iter()
        .map(|(n, p, g)| Scenario {
            name: n.to_string(),
            prompt: p,
            generate: g,
            batch: 1,
        })
        .collect()
    }

    /// `SISO`/`LISO`/`SILO`/`LILO` (any case), `P/G` or `P/G/B`.
    pub fn parse(s: &str) -> Result<Scenario, ModelError> {
        let t = s.trim();
        if let Some(sc) = Scenario::builtin()
            .into_iter()
            .find(|b| b.name.eq_ignore_ascii_case(t))
        {
            return Ok(sc);
        }
        let bad = || ModelError::UnknownScenario {
            name: s.to_string(),
        };
        let parts: Vec<&str> = t.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let num = |p: &str| p.trim().parse::<u64>().map_err(|_| bad());
        let prompt = num(parts[0])?;
        let generate = num(parts[1])?;
        let batch = match parts.get(2) {
            Some(b) => num(b)?,
            None => 1,
        };
        Scenario::new(t, prompt, generate, batch)
    }

    /// Context of decode step `j` (1-based): `prompt + j`.
    pub fn decode_context(&self, j: u64) -> u64 {
        self.prompt.saturating_add(j)
    }

    /// Decode steps after the prefill: `generate - 1`.
    pub fn decode_steps(&self) -> u64 {
        self.generate.saturating_sub(1)
    }
}

/// Totals of one decode step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCost {
    /// `Phase::Decode { context }` of the step.
    pub context: u64,
    pub totals: CostTotals,
}

/// The cost of a whole request: its prefill table, the totals of every decode step at its own
/// context, and sums. Per-operator tables of the decode steps are generated on demand
/// ([`RequestCost::decode_table`], [`RequestCost::decode_tables`]) rather than stored: a LILO
/// request has 4,095 steps of hundreds of operators each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestCost {
    pub scenario: Scenario,
    /// The options used, with `batch = scenario.batch`.
    pub options: CostOptions,
    pub prefill: CostTable,
    /// One entry per decode step (`generate - 1` of them), contexts `prompt + 1 ..`.
    pub decode_steps: Vec<StepCost>,
    /// Every decode step's operators summed per operator id (same order as a decode table).
    pub decode_sum: Vec<OpCost>,
    pub prefill_totals: CostTotals,
    pub decode_totals: CostTotals,
    pub totals: CostTotals,
    #[serde(skip)]
    spec: Option<ModelSpec>,
    /// A file's real per-tensor formats, when the request was costed with them.
    #[serde(skip)]
    formats: Option<TensorFormats>,
}

impl RequestCost {
    /// The full operator table of decode step `j` (1-based, `1 ..= generate - 1`).
    pub fn decode_table(&self, j: u64) -> Result<CostTable, ModelError> {
        let spec = self.spec.as_ref().ok_or(ModelError::BadOption {
            option: "decode_table",
            value: j,
            reason: "a deserialized request has no model attached",
        })?;
        if j == 0 || j > self.scenario.decode_steps() {
            return Err(ModelError::BadOption {
                option: "decode step",
                value: j,
                reason: "outside 1 ..= generate - 1",
            });
        }
        model_for(spec, &self.options, self.formats.as_ref())?.table(Phase::Decode {
            context: self.scenario.decode_context(j),
        })
    }

    /// Every decode step's table in order, generated lazily (one table alive at a time).
    pub fn decode_tables(&self) -> impl Iterator<Item = Result<CostTable, ModelError>> + '_ {
        (1..=self.scenario.decode_steps()).map(move |j| self.decode_table(j))
    }
}

/// Costs a whole request: the prefill of `scenario.prompt` tokens and `generate - 1` decode
/// steps, each at its own context, at `scenario.batch` (overriding `opts.batch`).
pub fn request_cost(
    spec: &ModelSpec,
    scenario: &Scenario,
    opts: &CostOptions,
) -> Result<RequestCost, ModelError> {
    request_cost_with_formats(spec, scenario, opts, None)
}

fn model_for<'a>(
    spec: &'a ModelSpec,
    opts: &CostOptions,
    formats: Option<&TensorFormats>,
) -> Result<CostModel<'a>, ModelError> {
    match formats {
        Some(f) => CostModel::with_formats(spec, opts, f),
        None => CostModel::new(spec, opts),
    }
}

/// [`request_cost`] with a file's real per-tensor formats (PITFALLS.md #24): every tensor found
/// in `formats` is costed in its stored type, the others follow `opts.weights`.
pub fn request_cost_with_formats(
    spec: &ModelSpec,
    scenario: &Scenario,
    opts: &CostOptions,
    formats: Option<&TensorFormats>,
) -> Result<RequestCost, ModelError> {
    let scenario = Scenario::new(
        &scenario.name,
        scenario.prompt,
        scenario.generate,
        scenario.batch,
    )?;
    let options = CostOptions {
        batch: scenario.batch,
        ..*opts
    };
    let model = model_for(spec, &options, formats)?;
    let prefill = model.table(Phase::Prefill {
        tokens: scenario.prompt,
        cached: 0,
    })?;
    let prefill_totals = model.totals(prefill.phase)?;
    let steps = scenario.decode_steps();
    // One small record per step (at most 2^20 steps, checked by `Scenario::new`).
    let mut decode_steps = Vec::with_capacity(steps as usize);
    let mut decode_totals = CostTotals::default();
    let mut sum: Vec<[u128; 6]> = Vec::new();
    let mut first_ops: Vec<OpCost> = Vec::new();
    for j in 1..=steps {
        let context = scenario.decode_context(j);
        let phase = Phase::Decode { context };
        let totals = model.totals(phase)?;
        decode_totals.add(&totals);
        let mut i = 0usize;
        model.visit(phase, |op, n| {
            if j == 1 {
                first_ops.push(*op);
                sum.push([0; 6]);
            }
            if let Some(acc) = sum.get_mut(i) {
                let n = n as u128;
                acc[0] += op.flops.0 as u128 * n;
                acc[1] += op.weight_bytes.0 as u128 * n;
                acc[2] += op.act_read_bytes.0 as u128 * n;
                acc[3] += op.act_write_bytes.0 as u128 * n;
                acc[4] += op.kv_read_bytes.0 as u128 * n;
                acc[5] += op.kv_write_bytes.0 as u128 * n;
            }
            i += 1;
        })?;
        decode_steps.push(StepCost { context, totals });
    }
    // Expand the per-group sums into per-layer rows: each group's sum is spread evenly over
    // its identical layers (the groups are exact multiples).
    let decode_sum = expand_sum(&model, &first_ops, &sum)?;
    let mut totals = prefill_totals;
    totals.add(&decode_totals);
    let overflow = |t: &CostTotals| t.flops.0 == u64::MAX || t.bytes().0 == u64::MAX;
    if overflow(&totals) {
        return Err(ModelError::Overflow {
            what: "the request total",
        });
    }
    Ok(RequestCost {
        scenario,
        options,
        prefill,
        decode_steps,
        decode_sum,
        prefill_totals,
        decode_totals,
        totals,
        spec: Some(spec.clone()),
        formats: formats.cloned(),
    })
}

fn expand_sum(
    model: &CostModel<'_>,
    first_ops: &[OpCost],
    sum: &[[u128; 6]],
) -> Result<Vec<OpCost>, ModelError> {
    let summed: Vec<(OpCost, u64)> = first_ops
        .iter()
        .zip(sum)
        .map(|(op, s)| {
            let c = |x: u128| {
                u64::try_from(x).map_err(|_| ModelError::Overflow {
                    what: "the decode sum",
                })
            };
            Ok((
                OpCost {
                    id: op.id,
                    flops: Flops(c(s[0])?),
                    weight_bytes: Bytes(c(s[1])?),
                    act_read_bytes: Bytes(c(s[2])?),
                    act_write_bytes: Bytes(c(s[3])?),
                    kv_read_bytes: Bytes(c(s[4])?),
                    kv_write_bytes: Bytes(c(s[5])?),
                    compute: op.compute,
                },
                0,
            ))
        })
        .collect::<Result<_, ModelError>>()?;
    Ok(model.expand_visit(&summed))
}
