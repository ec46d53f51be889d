//! Roofline math: which roof applies to an operator, its attainable performance and predicted
//! time, and sums of those over a phase and a whole request.
//!
//! - Attainable performance `P(I) = min(pi, I x beta)` and ridge point `I* = pi / beta`
//!   (Williams, Waterman, Patterson, "Roofline", CACM 2009; ROOFLINEBENCH.md §1).
//! - Predicted operator time `max(F / pi, B / beta)` and a request as prefill plus every decode
//!   step at its own context (the co-design paper, ROOFLINEBENCH.md §4; PITFALLS.md #10).
//! - The roof of an operator is the compute ceiling of the arithmetic path it really executes
//!   (`OpCost::compute`, PITFALLS.md #12) and the bandwidth of DRAM by default, or of the cache
//!   level its working set fits in ([`LevelPolicy`]).
//!
//! Every prediction carries the [`CeilingSource`] it was computed from, so no figure silently
//! mixes datasheet and measured ceilings (PITFALLS.md #17). The Relative Inference Potential
//! lives in [`potential`].
//!
//! This module is pure: no I/O, no measurement. It works on slices of [`OpCost`] so it does not
//! care how the cost table was produced.

pub mod potential;

use crate::hardware::{CeilingSource, HardwareProfile, MemLevel, Precision, Warning};
use crate::op::{OpCost, OpId, OpKind};
use crate::units::{Bytes, BytesPerSec, Flops, FlopsPerSec, Intensity, Seconds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Which side of the ridge a workload sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// `I < I*`: limited by bandwidth.
    Memory,
    /// `I >= I*` (the paper's convention puts the ridge itself on the compute side).
    Compute,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Memory => "memory",
            Bound::Compute => "compute",
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a roofline cannot be built or evaluated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RooflineError {
    #[error("hardware profile `{profile}` has no {ceilings} DRAM bandwidth ceiling")]
    NoBandwidth { profile: String, ceilings: String },
    #[error("hardware profile `{profile}` has no {ceilings} compute ceiling for any precision")]
    NoCompute { profile: String, ceilings: String },
    #[error("{what} is {value}: it must be finite and positive")]
    BadValue { what: &'static str, value: f64 },
}

/// One roof: a compute ceiling and a bandwidth ceiling from the same source.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roof {
    /// The precision whose compute ceiling this is (after any fallback).
    pub precision: Precision,
    pub peak_flops_per_second: FlopsPerSec,
    pub level: MemLevel,
    pub bandwidth_bytes_per_second: BytesPerSec,
    pub source: CeilingSource,
}

impl Roof {
    /// Ridge point `I* = pi / beta`, FLOP/byte.
    pub fn ridge(&self) -> Intensity {
        self.peak_flops_per_second / self.bandwidth_bytes_per_second
    }

    /// `min(pi, I x beta)`; an infinite intensity (no bytes moved) gives `pi`.
    pub fn attainable(&self, oi: Intensity) -> FlopsPerSec {
        let mem = oi * self.bandwidth_bytes_per_second;
        if mem.0.total_cmp(&self.peak_flops_per_second.0).is_lt() {
            mem
        } else {
            self.peak_flops_per_second
        }
    }

    /// Predicted time `max(F / pi, B / beta)`.
    pub fn time(&self, flops: Flops, bytes: Bytes) -> Seconds {
        let tc = flops / self.peak_flops_per_second;
        let tm = bytes / self.bandwidth_bytes_per_second;
        Seconds(tc.0.max(tm.0))
    }

    /// Memory-bound left of the ridge, compute-bound at or right of it.
    pub fn bound(&self, oi: Intensity) -> Bound {
        if oi.0.total_cmp(&self.ridge().0).is_lt() {
            Bound::Memory
        } else {
            Bound::Compute
        }
    }
}

/// Which memory level's bandwidth bounds an operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy", content = "level")]
pub enum LevelPolicy {
    /// DRAM for every operator: in LLM inference each layer's weights are evicted by the next
    /// layer's before they are read again, so this is the honest default.
    #[default]
    Dram,
    /// One fixed level for every operator (falls back to DRAM when the profile lacks it).
    Fixed(MemLevel),
    /// The smallest cache level whose capacity holds the operator's working set (all bytes it
    /// touches), DRAM otherwise. Optimistic: it assumes the data is already in that cache.
    WorkingSet,
}

/// How to select ceilings from a profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoofOptions {
    pub source: CeilingSourceChoice,
    /// Ceilings measured at this thread count (or thread-less spec-sheet figures); `None`: best.
    pub threads: Option<u32>,
    pub level: LevelPolicy,
    /// Cache capacities for [`LevelPolicy::WorkingSet`]. Levels missing here use the working set
    /// their bandwidth ceiling was measured at, which underestimates capacity (conservative).
    #[serde(default)]
    pub cache_capacity: Vec<(MemLevel, Bytes)>,
}

/// A [`CeilingSource`] with a default (so `RoofOptions` can derive `Default`): measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CeilingSourceChoice(pub CeilingSource);

impl Default for CeilingSourceChoice {
    fn default() -> Self {
        CeilingSourceChoice(CeilingSource::Measured)
    }
}

impl RoofOptions {
    pub fn new(source: CeilingSource) -> RoofOptions {
        RoofOptions {
            source: CeilingSourceChoice(source),
            ..RoofOptions::default()
        }
    }
}

/// The ceilings of one source selected from a profile, ready to give each operator its roof.
#[derive(Clone, Debug, PartialEq)]
pub struct Ceilings {
    pub profile: String,
    pub source: CeilingSource,
    pub compute: BTreeMap<Precision, FlopsPerSec>,
    pub bandwidth: BTreeMap<MemLevel, BytesPerSec>,
    /// Capacity used by [`LevelPolicy::WorkingSet`] per cache level.
    pub capacity: BTreeMap<MemLevel, Bytes>,
    pub level: LevelPolicy,
}

/// The roof chosen for one precision, and whether the requested precision was missing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoofChoice {
    pub roof: Roof,
    /// `Some(requested)` when the profile lacked `requested` and another roof was used.
    pub fell_back_from: Option<Precision>,
}

impl Ceilings {
    /// Every ceiling of `opts.source` in `profile`. Needs a DRAM bandwidth and at least one
    /// compute ceiling of that source.
    pub fn from_profile(
        profile: &HardwareProfile,
        opts: &RoofOptions,
    ) -> Result<Ceilings, RooflineError> {
        let source = opts.source.0;
        let mut compute = BTreeMap::new();
        for p in Precision::ALL {
            if let Some(v) = profile.peak(p, source, opts.threads) {
                check_positive("compute ceiling", v.0)?;
                compute.insert(p, v);
            }
        }
        let mut bandwidth = BTreeMap::new();
        let mut capacity = BTreeMap::new();
        for l in MemLevel::ALL {
            if let Some(b) = profile.bandwidth_roof(l, source, opts.threads) {
                check_positive("bandwidth ceiling", b.bytes_per_second)?;
                bandwidth.insert(l, BytesPerSec(b.bytes_per_second));
                if let Some(ws) = b.working_set_bytes {
                    capacity.insert(l, Bytes(ws));
                }
            }
        }
        for &(l, c) in &opts.cache_capacity {
            capacity.insert(l, c);
        }
        if !bandwidth.contains_key(&MemLevel::Dram) {
            return Err(RooflineError::NoBandwidth {
                profile: profile.name.clone(),
                ceilings: source.name().to_string(),
            });
        }
        if compute.is_empty() {
            return Err(RooflineError::NoCompute {
                profile: profile.name.clone(),
                ceilings: source.name().to_string(),
            });
        }
        Ok(Ceilings {
            profile: profile.name.clone(),
            source,
            compute,
            bandwidth,
            capacity,
            level: opts.level,
        })
    }

    /// The compute ceiling for `precision`: itself, else f32, else the first precision the
    /// profile has (in [`Precision::ALL`] order). The fallback is reported in the choice.
    pub fn peak_for(&self, precision: Precision) -> (Precision, FlopsPerSec) {
        if let Some(&v) = self.compute.get(&precision) {
            return (precision, v);
        }
        if let Some(&v) = self.compute.get(&Precision::F32) {
            return (Precision::F32, v);
        }
        // `from_profile` guarantees at least one entry.
        let (&p, &v) = self
            .compute
            .iter()
            .next()
            .unwrap_or((&Precision::F32, &FlopsPerSec(f64::NAN)));
        (p, v)
    }

    /// The DRAM bandwidth (always present).
    pub fn dram(&self) -> BytesPerSec {
        self.bandwidth
            .get(&MemLevel::Dram)
            .copied()
            .unwrap_or(BytesPerSec(f64::NAN))
    }

    /// The memory level whose bandwidth bounds an operator touching `working_set` bytes.
    pub fn level_for(&self, working_set: Bytes) -> MemLevel {
        match self.level {
            LevelPolicy::Dram => MemLevel::Dram,
            LevelPolicy::Fixed(l) => {
                if self.bandwidth.contains_key(&l) {
                    l
                } else {
                    MemLevel::Dram
                }
            }
            LevelPolicy::WorkingSet => [MemLevel::L1, MemLevel::L2, MemLevel::L3]
                .into_iter()
                .find(|l| {
                    self.bandwidth.contains_key(l)
                        && self.capacity.get(l).is_some_and(|&c| working_set <= c)
                })
                .unwrap_or(MemLevel::Dram),
        }
    }

    /// The roof for an operator of `precision` touching `working_set` bytes.
    pub fn roof_for(&self, precision: Precision, working_set: Bytes) -> RoofChoice {
        let (used, peak) = self.peak_for(precision);
        let level = self.level_for(working_set);
        let bw = self.bandwidth.get(&level).copied().unwrap_or(self.dram());
        RoofChoice {
            roof: Roof {
                precision: used,
                peak_flops_per_second: peak,
                level,
                bandwidth_bytes_per_second: bw,
                source: self.source,
            },
            fell_back_from: (used != precision).then_some(precision),
        }
    }

    /// The roof used to place a whole phase: the phase's main precision against DRAM.
    pub fn dram_roof(&self, precision: Precision) -> RoofChoice {
        let (used, peak) = self.peak_for(precision);
        RoofChoice {
            roof: Roof {
                precision: used,
                peak_flops_per_second: peak,
                level: MemLevel::Dram,
                bandwidth_bytes_per_second: self.dram(),
                source: self.source,
            },
            fell_back_from: (used != precision).then_some(precision),
        }
    }

    /// The warning for an operator precision this profile lacks.
    pub fn fallback_warning(&self, missing: Precision) -> Warning {
        let (used, _) = self.peak_for(missing);
        Warning {
            code: "precision_fallback".into(),
            message: format!(
                "hardware profile `{}` has no {} {missing} compute ceiling; operators computing in \
                 {missing} were predicted with the {used} roof instead. Remedy: add a {missing} \
                 ceiling to the profile (or probe a CPU that has that arithmetic path)",
                self.profile,
                self.source.name()
            ),
        }
    }
}

fn check_positive(what: &'static str, value: f64) -> Result<(), RooflineError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(RooflineError::BadValue { what, value })
    }
}

/// The prediction for one operator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpPrediction {
    pub id: OpId,
    /// The arithmetic path the operator executes.
    pub compute: Precision,
    pub flops: Flops,
    pub bytes: Bytes,
    pub roof: Roof,
    pub attainable_flops_per_second: FlopsPerSec,
    pub seconds: Seconds,
    pub bound: Bound,
}

impl OpPrediction {
    /// `flops / bytes`; infinite when no bytes move, NaN for an empty operator.
    pub fn intensity(&self) -> Intensity {
        self.flops / self.bytes
    }
}

/// Predicts one operator against `ceilings`.
pub fn predict_op(op: &OpCost, ceilings: &Ceilings) -> (OpPrediction, Option<Precision>) {
    let bytes = op.bytes();
    let choice = ceilings.roof_for(op.compute, bytes);
    let roof = choice.roof;
    let oi = op.flops / bytes;
    let attainable = if op.flops == Flops::ZERO {
        FlopsPerSec(0.0)
    } else {
        roof.attainable(oi)
    };
    let bound = if op.flops == Flops::ZERO {
        Bound::Memory
    } else {
        roof.bound(oi)
    };
    (
        OpPrediction {
            id: op.id,
            compute: op.compute,
            flops: op.flops,
            bytes,
            roof,
            attainable_flops_per_second: attainable,
            seconds: roof.time(op.flops, bytes),
            bound,
        },
        choice.fell_back_from,
    )
}

/// The precision carrying most FLOPs of a set of operators (f32 for an empty set); its compute
/// roof is the denominator of the phase's MFU and the roof the phase point is drawn against.
pub fn main_precision(ops: &[OpCost]) -> Precision {
    let mut by: BTreeMap<Precision, u64> = BTreeMap::new();
    for op in ops {
        let e = by.entry(op.compute).or_insert(0);
        *e = e.saturating_add(op.flops.0);
    }
    by.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(p, _)| p)
        .unwrap_or(Precision::F32)
}

/// Predicted totals of one phase (a prefill, or one decode step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhasePrediction {
    pub source: CeilingSource,
    pub flops: Flops,
    pub bytes: Bytes,
    /// Sum of the operators' predicted times.
    pub seconds: Seconds,
    /// Part of `seconds` spent in memory-bound operators.
    pub memory_bound_seconds: Seconds,
    /// The phase's main precision and DRAM roof (MFU/MBU denominators).
    pub roof: Roof,
    /// Predicted model bandwidth utilisation: `(bytes / seconds) / beta_DRAM`.
    pub mbu: f64,
    /// Predicted model FLOPs utilisation: `(flops / seconds) / pi_main`.
    pub mfu: f64,
    /// Precisions the profile lacked (a fallback roof was used; see the warnings).
    #[serde(default)]
    pub fallback_precisions: Vec<Precision>,
}

impl PhasePrediction {
    /// The phase's point on the roofline plot: `(F/B, F/T)`. Below the roof when operators of
    /// both kinds are mixed (the sum of maxima exceeds the maximum of sums).
    pub fn point(&self) -> (Intensity, FlopsPerSec) {
        (self.flops / self.bytes, self.flops / self.seconds)
    }
}

/// Accumulates operator predictions into a [`PhasePrediction`]. Takes `(op, times)` pairs so
/// it can consume [`crate::cost::CostModel::visit`] directly (identical layers visited once):
/// predicted time is linear in the repeat count, `n x max(F/pi, B/beta)`.
pub struct PhaseAccumulator<'c> {
    ceilings: &'c Ceilings,
    flops: Flops,
    bytes: Bytes,
    seconds: Seconds,
    memory_bound_seconds: Seconds,
    flops_by_precision: BTreeMap<Precision, u64>,
    fallbacks: Vec<Precision>,
}

impl<'c> PhaseAccumulator<'c> {
    pub fn new(ceilings: &'c Ceilings) -> PhaseAccumulator<'c> {
        PhaseAccumulator {
            ceilings,
            flops: Flops::ZERO,
            bytes: Bytes::ZERO,
            seconds: Seconds(0.0),
            memory_bound_seconds: Seconds(0.0),
            flops_by_precision: BTreeMap::new(),
            fallbacks: Vec::new(),
        }
    }

    /// Adds `times` identical instances of `op`; returns the prediction of one instance.
    pub fn add(&mut self, op: &OpCost, times: u64) -> OpPrediction {
        let (p, fb) = predict_op(op, self.ceilings);
        if let Some(fb) = fb {
            if !self.fallbacks.contains(&fb) {
                self.fallbacks.push(fb);
            }
        }
        let t = Seconds(p.seconds.0 * times as f64);
        self.seconds += t;
        if p.bound == Bound::Memory {
            self.memory_bound_seconds += t;
        }
        self.flops = Flops(self.flops.0.saturating_add(p.flops.0.saturating_mul(times)));
        self.bytes = Bytes(self.bytes.0.saturating_add(p.bytes.0.saturating_mul(times)));
        let e = self.flops_by_precision.entry(op.compute).or_insert(0);
        *e = e.saturating_add(op.flops.0.saturating_mul(times));
        p
    }

    pub fn finish(mut self) -> PhasePrediction {
        self.fallbacks.sort();
        let main = self
            .flops_by_precision
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(p, _)| *p)
            .unwrap_or(Precision::F32);
        let roof = self.ceilings.dram_roof(main).roof;
        let (mbu, mfu) = utilisation(self.flops, self.bytes, self.seconds, &roof);
        PhasePrediction {
            source: self.ceilings.source,
            flops: self.flops,
            bytes: self.bytes,
            seconds: self.seconds,
            memory_bound_seconds: self.memory_bound_seconds,
            roof,
            mbu,
            mfu,
            fallback_precisions: self.fallbacks,
        }
    }
}

/// Predicts every operator of a phase, and the phase's totals.
pub fn predict_phase(ops: &[OpCost], ceilings: &Ceilings) -> (PhasePrediction, Vec<OpPrediction>) {
    let mut acc = PhaseAccumulator::new(ceilings);
    let preds = ops.iter().map(|op| acc.add(op, 1)).collect();
    (acc.finish(), preds)
}

/// `(MBU, MFU)` of `flops` and `bytes` done in `seconds` against `roof`; 0 for a zero time.
pub fn utilisation(flops: Flops, bytes: Bytes, seconds: Seconds, roof: &Roof) -> (f64, f64) {
    if seconds.0.is_nan() || seconds.0 <= 0.0 {
        return (0.0, 0.0);
    }
    (
        (bytes / seconds).0 / roof.bandwidth_bytes_per_second.0,
        (flops / seconds).0 / roof.peak_flops_per_second.0,
    )
}

/// Predicted time per output token at one context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecodePoint {
    /// Context the step attends to (tokens in the cache including the new one).
    pub context: u64,
    pub seconds_per_step: Seconds,
    /// `batch / seconds_per_step`.
    pub tokens_per_second: f64,
    pub flops: Flops,
    pub bytes: Bytes,
    pub mbu: f64,
    pub mfu: f64,
}

/// Predicted whole request: prefill, then every decode step at its own growing context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestPrediction {
    pub source: CeilingSource,
    pub batch: u64,
    /// Time to first token: the prefill.
    pub ttft_seconds: Seconds,
    pub prefill: PhasePrediction,
    /// Sum over every decode step.
    pub decode_seconds: Seconds,
    pub decode_steps: u64,
    /// Mean time per output token over the steps (`decode_seconds / steps`).
    pub tpot_mean_seconds: Seconds,
    /// Decode throughput over the request: `batch x steps / decode_seconds`.
    pub decode_tokens_per_second: f64,
    /// First and last decode step (the cost grows with context).
    pub decode_first: Option<DecodePoint>,
    pub decode_last: Option<DecodePoint>,
    pub request_seconds: Seconds,
    pub flops: Flops,
    pub bytes: Bytes,
    /// Whole-request utilisation against the prefill's main-precision DRAM roof.
    pub mbu: f64,
    pub mfu: f64,
    #[serde(default)]
    pub fallback_precisions: Vec<Precision>,
}

/// Predicts a request from its prefill and its decode steps given as operator slices;
/// `(context, ops)` per step.
pub fn predict_request<'a, I>(
    prefill: &[OpCost],
    decode_steps: I,
    batch: u64,
    ceilings: &Ceilings,
) -> RequestPrediction
where
    I: IntoIterator<Item = (u64, &'a [OpCost])>,
{
    let (pre, _) = predict_phase(prefill, ceilings);
    combine_request(
        pre,
        decode_steps
            .into_iter()
            .map(|(c, ops)| (c, predict_phase(ops, ceilings).0)),
        batch,
        ceilings.source,
    )
}

/// Combines a predicted prefill and predicted decode steps `(context, phase)` into a request.
pub fn combine_request<I>(
    pre: PhasePrediction,
    decode_steps: I,
    batch: u64,
    source: CeilingSource,
) -> RequestPrediction
where
    I: IntoIterator<Item = (u64, PhasePrediction)>,
{
    let mut fallbacks = pre.fallback_precisions.clone();
    let mut decode_seconds = Seconds(0.0);
    let mut steps = 0u64;
    let mut flops = pre.flops;
    let mut bytes = pre.bytes;
    let mut first = None;
    let mut last = None;
    for (context, p) in decode_steps {
        for f in &p.fallback_precisions {
            if !fallbacks.contains(f) {
                fallbacks.push(*f);
            }
        }
        decode_seconds += p.seconds;
        steps += 1;
        flops = Flops(flops.0.saturating_add(p.flops.0));
        bytes = Bytes(bytes.0.saturating_add(p.bytes.0));
        let dp = DecodePoint {
            context,
            seconds_per_step: p.seconds,
            tokens_per_second: if p.seconds.0 > 0.0 {
                batch as f64 / p.seconds.0
            } else {
                0.0
            },
            flops: p.flops,
            bytes: p.bytes,
            mbu: p.mbu,
            mfu: p.mfu,
        };
        if first.is_none() {
            first = Some(dp.clone());
        }
        last = Some(dp);
    }
    fallbacks.sort();
    let request_seconds = pre.seconds + decode_seconds;
    let (mbu, mfu) = utilisation(flops, bytes, request_seconds, &pre.roof);
    RequestPrediction {
        source,
        batch,
        ttft_seconds: pre.seconds,
        decode_seconds,
        decode_steps: steps,
        tpot_mean_seconds: if steps > 0 {
            Seconds(decode_seconds.0 / steps as f64)
        } else {
            Seconds(0.0)
        },
        decode_tokens_per_second: if decode_seconds.0 > 0.0 {
            (batch as f64) * (steps as f64) / decode_seconds.0
        } else {
            0.0
        },
        decode_first: first,
        decode_last: last,
        request_seconds,
        flops,
        bytes,
        mbu,
        mfu,
        prefill: pre,
        fallback_precisions: fallbacks,
    }
}

/// Operator predictions summed per [`OpKind`] over layers, in first-seen order: the readable
/// granularity for a plot (one point per kind instead of one per layer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindPrediction {
    pub kind: OpKind,
    pub compute: Precision,
    pub flops: Flops,
    pub bytes: Bytes,
    pub seconds: Seconds,
    /// Operator instances summed.
    pub count: u32,
    pub roof: Roof,
    pub bound: Bound,
}

/// Sums operator predictions by kind. The bound is that of the summed point on the first
/// instance's roof.
pub fn by_kind(preds: &[OpPrediction]) -> Vec<KindPrediction> {
    let mut out: Vec<KindPrediction> = Vec::new();
    for p in preds {
        if let Some(k) = out.iter_mut().find(|k| k.kind == p.id.kind) {
            k.flops = Flops(k.flops.0.saturating_add(p.flops.0));
            k.bytes = Bytes(k.bytes.0.saturating_add(p.bytes.0));
            k.seconds += p.seconds;
            k.count = k.count.saturating_add(1);
        } else {
            out.push(KindPrediction {
                kind: p.id.kind,
                compute: p.compute,
                flops: p.flops,
                bytes: p.bytes,
                seconds: p.seconds,
                count: 1,
                roof: p.roof,
                bound: p.bound,
            });
        }
    }
    for k in &mut out {
        k.bound = if k.flops == Flops::ZERO {
            Bound::Memory
        } else {
            k.roof.bound(k.flops / k.bytes)
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{BandwidthCeiling, BwPattern, ComputeCeiling, HW_SCHEMA_VERSION};

    pub(crate) fn compute(p: Precision, src: CeilingSource, v: f64) -> ComputeCeiling {
        ComputeCeiling {
            precision: p,
            source: src,
            flops_per_second: v,
            threads: None,
            kernel: None,
            isa: None,
            stats: None,
            unstable: false,
            note: None,
        }
    }

    pub(crate) fn bw(l: MemLevel, src: CeilingSource, v: f64, ws: Option<u64>) -> BandwidthCeiling {
        BandwidthCeiling {
            level: l,
            source: src,
            pattern: BwPattern::Read,
            bytes_per_second: v,
            with_write_allocate_bytes_per_second: None,
            threads: None,
            working_set_bytes: ws,
            kernel: None,
            isa: None,
            stats: None,
            unstable: false,
            note: None,
        }
    }

    /// The paper's Raspberry Pi 5 (Table 1): measured 78.56 GFLOPS f32 / 3.98 GB/s,
    /// theoretical 153.6 GFLOPS / 17.1 GB/s.
    fn rpi5() -> HardwareProfile {
        HardwareProfile {
            schema_version: HW_SCHEMA_VERSION,
            name: "rpi5".into(),
            description: None,
            source: None,
            host: None,
            compute: vec![
                compute(Precision::F32, CeilingSource::Measured, 78.56e9),
                compute(Precision::F16, CeilingSource::Measured, 1.48e9),
                compute(Precision::F32, CeilingSource::Theoretical, 153.6e9),
            ],
            bandwidth: vec![
                bw(MemLevel::Dram, CeilingSource::Measured, 3.98e9, None),
                bw(
                    MemLevel::L2,
                    CeilingSource::Measured,
                    50e9,
                    Some(512 * 1024),
                ),
                bw(MemLevel::Dram, CeilingSource::Theoretical, 17.1e9, None),
            ],
            warnings: vec![],
        }
    }

    fn op(kind: OpKind, flops: u64, bytes: u64, p: Precision) -> OpCost {
        let mut c = OpCost::zero(OpId::layer(0, kind), p);
        c.flops = Flops(flops);
        c.weight_bytes = Bytes(bytes);
        c
    }

    #[test]
    fn paper_ridge_points_from_table_1() {
        let p = rpi5();
        let m = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap();
        let r = m.dram_roof(Precision::F32).roof.ridge().0;
        // 78.56 / 3.98 = 19.7386934...
        assert!((r - 19.738_693_467).abs() < 1e-6, "{r}");
        let t = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Theoretical)).unwrap();
        let r = t.dram_roof(Precision::F32).roof.ridge().0;
        // 153.6 / 17.1 = 8.98245...: the paper's lowest ridge (finding 5: 8.98 to 38.00).
        assert!((r - 8.982_456_14).abs() < 1e-6, "{r}");
        // RTX 3090 theoretical: 35.58 TFLOPS / 936.2 GB/s = 38.0047: the paper's highest (38.00).
        let rtx = Roof {
            precision: Precision::F32,
            peak_flops_per_second: FlopsPerSec(35.58e12),
            level: MemLevel::Dram,
            bandwidth_bytes_per_second: BytesPerSec(936.2e9),
            source: CeilingSource::Theoretical,
        };
        assert!((rtx.ridge().0 - 38.004_699_85).abs() < 1e-6);
    }

    #[test]
    fn attainable_time_and_bound_by_hand() {
        let roof = Roof {
            precision: Precision::F32,
            peak_flops_per_second: FlopsPerSec(10.0),
            level: MemLevel::Dram,
            bandwidth_bytes_per_second: BytesPerSec(2.0),
            source: CeilingSource::Measured,
        };
        assert_eq!(roof.ridge().0, 5.0);
        assert_eq!(roof.attainable(Intensity(2.0)).0, 4.0);
        assert_eq!(roof.attainable(Intensity(8.0)).0, 10.0);
        assert_eq!(roof.attainable(Intensity(f64::INFINITY)).0, 10.0);
        // 20 FLOPs, 10 bytes: max(2 s, 5 s).
        assert_eq!(roof.time(Flops(20), Bytes(10)).0, 5.0);
        // 100 FLOPs, 10 bytes: max(10 s, 5 s).
        assert_eq!(roof.time(Flops(100), Bytes(10)).0, 10.0);
        assert_eq!(roof.bound(Intensity(4.99)), Bound::Memory);
        assert_eq!(
            roof.bound(Intensity(5.0)),
            Bound::Compute,
            "ridge is compute side"
        );
    }

    #[test]
    fn pitfall_12_each_op_uses_the_roof_of_its_own_precision() {
        let p = rpi5();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap();
        let (f16, fb) = predict_op(&op(OpKind::FfnUp, 1_000, 10, Precision::F16), &c);
        assert_eq!(fb, None);
        assert_eq!(f16.roof.peak_flops_per_second.0, 1.48e9);
        let (f32, _) = predict_op(&op(OpKind::FfnUp, 1_000, 10, Precision::F32), &c);
        assert_eq!(f32.roof.peak_flops_per_second.0, 78.56e9);
    }

    #[test]
    fn missing_precision_falls_back_to_f32_with_a_warning_naming_it() {
        let p = rpi5();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Theoretical)).unwrap();
        let ops = [
            op(OpKind::FfnUp, 1_000, 10, Precision::Int8),
            op(OpKind::FfnDown, 1_000, 10, Precision::F32),
        ];
        let (ph, preds) = predict_phase(&ops, &c);
        assert_eq!(ph.fallback_precisions, vec![Precision::Int8]);
        assert_eq!(preds[0].roof.precision, Precision::F32);
        let w = c.fallback_warning(Precision::Int8);
        assert!(w.message.contains("int8"), "{}", w.message);
        assert!(w.message.contains("theoretical"), "{}", w.message);
    }

    #[test]
    fn missing_dram_or_compute_is_an_error() {
        let mut p = rpi5();
        p.bandwidth.retain(|b| b.level != MemLevel::Dram);
        let e = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap_err();
        assert!(e.to_string().contains("DRAM"), "{e}");
        let p = rpi5();
        let e = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::MeasuredElsewhere))
            .unwrap_err();
        assert!(matches!(e, RooflineError::NoBandwidth { .. }));
        let mut p = rpi5();
        p.compute.clear();
        let e = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap_err();
        assert!(matches!(e, RooflineError::NoCompute { .. }));
    }

    #[test]
    fn working_set_policy_picks_the_cache_that_holds_it() {
        let p = rpi5();
        let mut o = RoofOptions::new(CeilingSource::Measured);
        o.level = LevelPolicy::WorkingSet;
        let c = Ceilings::from_profile(&p, &o).unwrap();
        assert_eq!(c.level_for(Bytes(1000)), MemLevel::L2);
        assert_eq!(c.level_for(Bytes(1 << 30)), MemLevel::Dram);
        let (pr, _) = predict_op(&op(OpKind::QProj, 10, 1000, Precision::F32), &c);
        assert_eq!(pr.roof.bandwidth_bytes_per_second.0, 50e9);
        // Explicit capacity overrides the probe's working set.
        o.cache_capacity = vec![(MemLevel::L2, Bytes(100))];
        let c = Ceilings::from_profile(&p, &o).unwrap();
        assert_eq!(c.level_for(Bytes(1000)), MemLevel::Dram);
        // A fixed level the profile lacks falls back to DRAM.
        o.level = LevelPolicy::Fixed(MemLevel::L1);
        let c = Ceilings::from_profile(&p, &o).unwrap();
        assert_eq!(c.level_for(Bytes(1)), MemLevel::Dram);
    }

    #[test]
    fn phase_sums_op_times_and_reports_utilisation() {
        let p = rpi5();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Theoretical)).unwrap();
        // One memory-bound op (17.1 GB in 1 s) and one compute-bound op (153.6 GFLOP in 1 s).
        let ops = [
            op(OpKind::FfnUp, 0, 17_100_000_000, Precision::F32),
            op(OpKind::AttnScore, 153_600_000_000, 1, Precision::F32),
        ];
        let (ph, preds) = predict_phase(&ops, &c);
        assert_eq!(preds[0].bound, Bound::Memory);
        assert_eq!(preds[1].bound, Bound::Compute);
        assert!((ph.seconds.0 - 2.0).abs() < 1e-9);
        assert!((ph.memory_bound_seconds.0 - 1.0).abs() < 1e-9);
        assert!((ph.mbu - 0.5).abs() < 1e-9, "{}", ph.mbu);
        assert!((ph.mfu - 0.5).abs() < 1e-9, "{}", ph.mfu);
        assert_eq!(ph.flops, Flops(153_600_000_000));
    }

    #[test]
    fn pitfall_10_request_sums_every_step_at_its_own_context() {
        let p = rpi5();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Theoretical)).unwrap();
        let prefill = [op(OpKind::QProj, 0, 17_100_000_000, Precision::F32)];
        // Step k reads k GB-units: total 1+2+3 = 6 units.
        let steps: Vec<Vec<OpCost>> = (1..=3)
            .map(|k| vec![op(OpKind::AttnScore, 0, k * 17_100_000_000, Precision::F32)])
            .collect();
        let r = predict_request(
            &prefill,
            steps
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u64 + 10, s.as_slice())),
            1,
            &c,
        );
        assert!((r.ttft_seconds.0 - 1.0).abs() < 1e-9);
        assert!((r.decode_seconds.0 - 6.0).abs() < 1e-9);
        assert!((r.request_seconds.0 - 7.0).abs() < 1e-9);
        assert_eq!(r.decode_steps, 3);
        assert!((r.tpot_mean_seconds.0 - 2.0).abs() < 1e-9);
        assert!((r.decode_tokens_per_second - 0.5).abs() < 1e-9);
        assert_eq!(r.decode_first.as_ref().unwrap().context, 10);
        assert_eq!(r.decode_last.as_ref().unwrap().context, 12);
        assert!((r.decode_last.as_ref().unwrap().seconds_per_step.0 - 3.0).abs() < 1e-9);
    }

    #[test]
    fn accumulator_with_repeat_counts_equals_the_expanded_table() {
        let p = rpi5();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap();
        let a = op(OpKind::FfnUp, 1_000_000, 400_000, Precision::F32);
        let b = op(OpKind::AttnScore, 9_000_000, 10_000, Precision::F16);
        let (full, _) = predict_phase(&[a, a, a, b], &c);
        let mut acc = PhaseAccumulator::new(&c);
        acc.add(&a, 3);
        acc.add(&b, 1);
        let grouped = acc.finish();
        assert_eq!(full.flops, grouped.flops);
        assert_eq!(full.bytes, grouped.bytes);
        assert!((full.seconds.0 - grouped.seconds.0).abs() <= 1e-15 * full.seconds.0);
        // 3 MFLOP of f32 vs 9 MFLOP of f16: the phase's main precision is f16.
        assert_eq!(grouped.roof.precision, Precision::F16);
    }

    #[test]
    fn by_kind_sums_layers() {
        let p = rpi5();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap();
        let mut a = op(OpKind::FfnUp, 100, 10, Precision::F32);
        let mut b = a;
        a.id = OpId::layer(0, OpKind::FfnUp);
        b.id = OpId::layer(1, OpKind::FfnUp);
        let (_, preds) = predict_phase(&[a, b, op(OpKind::QProj, 1, 1, Precision::F32)], &c);
        let k = by_kind(&preds);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].flops, Flops(200));
        assert_eq!(k[0].count, 2);
    }
}
