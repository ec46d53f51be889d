//! Measured points: what ran, how much work it did according to the cost model, how long it took.
//!
//! A [`MeasuredPoint`] is the unit the engine hands to the report and to the Relative Inference
//! Potential. Its work (`flops`, `bytes`) comes from the analytic cost table, never from a
//! profiler counter, so measured and predicted points join on [`OpId`] and on the phase
//! (PITFALLS.md #13: bytes moved per operator, never RSS x time). Its time covers only the phase
//! or operator it names (PITFALLS.md #14: no model load, no warm-up).
//!
//! This module is a schema plus a few derived quantities; it does not measure anything.

use crate::hardware::Precision;
use crate::op::OpId;
use crate::units::{Bytes, BytesPerSec, Flops, FlopsPerSec, Intensity, Seconds};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a measured point covers, so no per-kernel efficiency is ever read as end-to-end
/// efficiency (PITFALLS.md #22).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One operator (`op` is set): e.g. `L3.ffn_down` in one decode step.
    Operator,
    /// A whole phase: one prefill, or one decode step at a given context.
    Phase,
    /// A whole request: prefill plus every decode step.
    Request,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Operator => "operator",
            Scope::Phase => "phase",
            Scope::Request => "request",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Repeated timings of one thing, in seconds (smaller is better). Every raw sample is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every repetition's duration in seconds, in the order measured.
    #[serde(default)]
    pub samples: Vec<f64>,
}

/// Why a set of samples cannot be summarised.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    #[error("no timing samples")]
    Empty,
    #[error("timing sample {index} is {value}: a duration must be finite and positive")]
    BadSample { index: usize, value: f64 },
}

impl SampleSummary {
    /// Median, min and max of `samples` (each finite and > 0). The median of an even count is
    /// the mean of the two middle values.
    pub fn from_samples(samples: Vec<f64>) -> Result<SampleSummary, SampleError> {
        if samples.is_empty() {
            return Err(SampleError::Empty);
        }
        if let Some((index, &value)) = samples
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(SampleError::BadSample { index, value });
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Ok(SampleSummary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples,
        })
    }

    /// A single timing (no repetitions): median = min = max.
    pub fn single(seconds: f64) -> Result<SampleSummary, SampleError> {
        SampleSummary::from_samples(vec![seconds])
    }

    pub fn median_seconds(&self) -> Seconds {
        Seconds(self.median)
    }
}

/// One measured point for the roofline: `P(OI, Perf)` with `OI = flops / bytes` and
/// `Perf = flops / median time` (ROOFLINEBENCH.md §1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredPoint {
    /// Human label, e.g. `decode@4096`, `prefill 128`, `L3.ffn_down decode@128`.
    pub label: String,
    pub scope: Scope,
    /// The operator, when `scope` is `Operator`; joins with the cost table on this key.
    #[serde(default)]
    pub op: Option<OpId>,
    /// `"prefill"` or `"decode"` (or `"request"` for a whole-request point).
    pub phase: String,
    /// Context length (tokens in the KV cache) the phase ran at: for prefill the tokens cached
    /// before it (usually 0), for decode the context the step attends to.
    pub context: u64,
    /// New tokens processed per sequence in this phase (prompt length for prefill, 1 per decode
    /// step, or the generated count for a request).
    pub tokens: u64,
    pub batch: u64,
    /// Threads the engine used (explicit, PITFALLS.md #19).
    pub threads: u32,
    /// Which engine produced the timing, e.g. `rooflinebench-engine 0.1.0 avx512`.
    pub engine: String,
    /// The arithmetic path executed: selects the compute roof (PITFALLS.md #12).
    pub compute: Precision,
    /// Work by the cost model.
    pub flops: Flops,
    /// Memory traffic by the cost model.
    pub bytes: Bytes,
    /// Measured durations, seconds.
    pub seconds: SampleSummary,
}

impl MeasuredPoint {
    /// `OI = W / Q` in FLOP/byte; infinite when no bytes move.
    pub fn intensity(&self) -> Intensity {
        self.flops / self.bytes
    }

    /// `Perf = W / T` at the median time, FLOP/s.
    pub fn perf(&self) -> FlopsPerSec {
        self.flops / self.seconds.median_seconds()
    }

    /// Achieved bandwidth `Q / T` at the median time, bytes/s.
    pub fn bandwidth(&self) -> BytesPerSec {
        self.bytes / self.seconds.median_seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_even_and_odd_counts() {
        let s = SampleSummary::from_samples(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.samples, vec![3.0, 1.0, 2.0], "raw order kept");
        let s = SampleSummary::from_samples(vec![4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn bad_samples_are_errors_not_panics() {
        assert_eq!(SampleSummary::from_samples(vec![]), Err(SampleError::Empty));
        assert!(matches!(
            SampleSummary::from_samples(vec![1.0, f64::NAN]),
            Err(SampleError::BadSample { index: 1, .. })
        ));
        assert!(SampleSummary::single(0.0).is_err());
    }

    #[test]
    fn point_rates_use_the_median() {
        let p = MeasuredPoint {
            label: "decode@128".into(),
            scope: Scope::Phase,
            op: None,
            phase: "decode".into(),
            context: 128,
            tokens: 1,
            batch: 1,
            threads: 1,
            engine: "test".into(),
            compute: Precision::F32,
            flops: Flops(1_000),
            bytes: Bytes(500),
            seconds: SampleSummary::from_samples(vec![1.0, 2.0, 9.0]).unwrap(),
        };
        assert_eq!(p.intensity().0, 2.0);
        assert_eq!(p.perf().0, 500.0);
        assert_eq!(p.bandwidth().0, 250.0);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"scope\":\"phase\""), "{json}");
        let back: MeasuredPoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
