//! The clock every trial is timed with, and its resolution.
//!
//! `std::time::Instant` is the monotonic clock (`clock_gettime(CLOCK_MONOTONIC)` through the
//! vDSO on Linux, tens of nanoseconds per read). Trials last milliseconds, so its resolution is
//! far below the noise; the probe still measures it and warns when a trial is shorter than
//! 1000 ticks. Not a cycle counter: a VM's TSC may be virtualised and the core clock varies.

use std::time::Instant;

/// Smallest non-zero difference between consecutive clock reads, in seconds.
pub fn resolution() -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..200 {
        let a = Instant::now();
        let mut b = Instant::now();
        let mut spins = 0;
        while b == a && spins < 1_000_000 {
            b = Instant::now();
            spins += 1;
        }
        let d = b.saturating_duration_since(a).as_secs_f64();
        if d > 0.0 {
            best = best.min(d);
        }
    }
    if best.is_finite() {
        best
    } else {
        1e-6
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolution_is_positive_and_sub_millisecond() {
        let r = super::resolution();
        assert!(r > 0.0 && r < 1e-3, "{r}");
    }
}
