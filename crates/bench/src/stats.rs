//! Summary statistics of repeated trials, the instability rule and the adaptive-repetition
//! policy.
//!
//! A ceiling is the best trial (the least disturbed run of a kernel that cannot go faster than
//! the hardware), always reported with its median and coefficient of variation, and with every
//! raw sample. It is flagged unstable when best/median > 1.10 or CV > 5% (the thresholds of
//! issue 3). This module is pure arithmetic and policy; the timing loop lives in
//! [`crate::team`].

use rooflinebench_model::hardware::SampleStats;
use std::time::Duration;

/// best/median above this flags a ceiling unstable.
pub const MAX_BEST_OVER_MEDIAN: f64 = 1.10;
/// A coefficient of variation above this flags a ceiling unstable.
pub const MAX_CV: f64 = 0.05;

/// Summarises rates (larger is better). Empty input gives zeros (and is flagged unstable).
pub fn summarize(samples: &[f64]) -> SampleStats {
    if samples.is_empty() {
        return SampleStats {
            samples: Vec::new(),
            best: 0.0,
            median: 0.0,
            cv: 0.0,
        };
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
    SampleStats {
        samples: samples.to_vec(),
        best: sorted[n - 1],
        median,
        cv,
    }
}

/// The instability rule: best/median > 1.10 or CV > 5%, or no usable sample.
pub fn is_unstable(s: &SampleStats) -> bool {
    if s.samples.is_empty() || s.median.is_nan() || s.median <= 0.0 || !s.best.is_finite() {
        return true;
    }
    s.best / s.median > MAX_BEST_OVER_MEDIAN || s.cv > MAX_CV
}

/// How long and how often to repeat one measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RepeatPolicy {
    /// Keep warming up (untimed trials, also used to calibrate the trial length) this long.
    pub warmup: Duration,
    /// Each trial repeats the kernel until it lasts at least this long.
    pub target_trial: Duration,
    pub min_trials: usize,
    pub max_trials: usize,
    /// Stop adding trials (beyond `min_trials`) once this much time was spent on them.
    pub budget: Duration,
}

impl RepeatPolicy {
    /// This policy's trials and budget shared among `passes` runs at different moments (each
    /// still warms up and has at least 3 trials).
    pub fn split(&self, passes: u32) -> RepeatPolicy {
        let p = passes.max(1) as usize;
        RepeatPolicy {
            warmup: self.warmup,
            target_trial: self.target_trial,
            min_trials: self.min_trials.div_ceil(p).max(3),
            max_trials: self.max_trials.div_ceil(p).max(3),
            budget: self.budget / p as u32,
        }
    }

    /// Whether to run another trial, given the rates so far and the time spent on trials.
    ///
    /// Adaptive: at least `min_trials`; then stop early when the samples already agree (CV
    /// below 0.5% and best within 1% of the median), otherwise continue while there is budget
    /// and fewer than `max_trials`.
    pub fn wants_more(&self, samples: &[f64], spent: Duration) -> bool {
        let n = samples.len();
        if n < self.min_trials {
            return true;
        }
        if n >= self.max_trials || spent >= self.budget {
            return false;
        }
        let s = summarize(samples);
        !(s.cv < 0.005 && s.median > 0.0 && s.best / s.median < 1.01)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let s = summarize(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(
            s.samples,
            vec![4.0, 1.0, 3.0, 2.0],
            "raw samples kept in order"
        );
        assert_eq!(s.best, 4.0);
        assert_eq!(s.median, 2.5);
        // sample stddev of 1..4 is sqrt(5/3); mean 2.5
        assert!((s.cv - (5.0f64 / 3.0).sqrt() / 2.5).abs() < 1e-12);
    }

    #[test]
    fn instability_thresholds() {
        assert!(!is_unstable(&summarize(&[100.0, 101.0, 100.5, 99.8])));
        // best/median = 1.2
        assert!(is_unstable(&summarize(&[100.0, 100.0, 120.0])));
        // CV > 5% with best/median < 1.1
        assert!(is_unstable(&summarize(&[
            80.0, 100.0, 100.0, 100.0, 108.0, 70.0
        ])));
        assert!(is_unstable(&summarize(&[])));
        assert!(is_unstable(&summarize(&[f64::NAN])));
    }

    #[test]
    fn policy_stops_early_when_samples_agree_and_respects_limits() {
        let p = RepeatPolicy {
            warmup: Duration::ZERO,
            target_trial: Duration::from_millis(1),
            min_trials: 3,
            max_trials: 10,
            budget: Duration::from_secs(1),
        };
        let ms = Duration::from_millis(1);
        assert!(p.wants_more(&[1.0, 1.0], ms));
        assert!(!p.wants_more(&[1.0, 1.0, 1.0], ms));
        assert!(p.wants_more(&[1.0, 1.2, 0.9], ms));
        assert!(!p.wants_more(&[1.0, 1.2, 0.9], Duration::from_secs(2)));
        assert!(!p.wants_more(&[1.0, 1.2, 0.9, 1.0, 1.2, 0.9, 1.0, 1.2, 0.9, 1.0], ms));
    }

    #[test]
    fn a_policy_split_into_passes_shares_trials_and_budget() {
        let p = RepeatPolicy {
            warmup: Duration::from_millis(20),
            target_trial: Duration::from_millis(1),
            min_trials: 10,
            max_trials: 60,
            budget: Duration::from_millis(60),
        };
        let s = p.split(3);
        assert_eq!((s.min_trials, s.max_trials), (4, 20));
        assert_eq!(s.budget, Duration::from_millis(20));
        assert_eq!(s.warmup, p.warmup);
        assert_eq!(p.split(100).min_trials, 3);
        assert_eq!(p.split(1), p);
    }
}
