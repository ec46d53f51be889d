//! Relative Inference Potential (Phi), its dimensionless variant, and roofline efficiency.
//!
//! From the RooflineBench paper (arXiv 2602.11506, Eq. 6/7; ROOFLINEBENCH.md §1), with the
//! ridge point `R(OI_r, pi)`, `OI_r = pi / beta`, and a measured point `P(OI_p, Perf_p)`:
//!
//! - memory-bound (`OI_p < OI_r`), Eq. 6: `Phi = sqrt((OI_r - OI_p)^2 + (pi - Perf_p)^2)`;
//! - compute-bound (`OI_p >= OI_r`), Eq. 7: `Phi = pi - Perf_p`;
//! - points on opposite sides of the ridge are incomparable; smaller Phi ranks better.
//!
//! [`Potential::phi`] is Eq. 6/7 exactly as written, in SI units (FLOP/byte and FLOP/s). Eq. 6
//! then adds (FLOP/byte)^2 to (FLOP/s)^2, so the performance term dominates completely: the
//! number is kept for fidelity to the paper, not because it is physically meaningful.
//! [`Potential::phi_decades`] is the same construction on the log-log plot, where both axes are
//! measured in decades (`log10` of the ratio), so it is dimensionless and both terms count.
//! [`Potential::efficiency`] is `Perf_p / P_attainable(OI_p)`, the plain roofline efficiency.
//!
//! Phi needs a *measured* point. A point predicted by the roofline sits on the roof by
//! construction (efficiency 1), so its Phi only says how far along the roof it is from the
//! ridge: a statement about the workload's intensity, not about how well it runs.

use super::Bound;
use crate::units::{BytesPerSec, FlopsPerSec, Intensity};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The ridge point `R(OI_r, pi)` of one roof.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    pub intensity: Intensity,
    pub peak_flops_per_second: FlopsPerSec,
}

impl Ridge {
    /// `OI_r = pi / beta`. Errors on a non-finite or non-positive ceiling.
    pub fn new(peak: FlopsPerSec, bandwidth: BytesPerSec) -> Result<Ridge, super::RooflineError> {
        positive("peak FLOP/s", peak.0)?;
        positive("bandwidth bytes/s", bandwidth.0)?;
        Ok(Ridge {
            intensity: peak / bandwidth,
            peak_flops_per_second: peak,
        })
    }

    /// `min(pi, OI x beta)` with `beta = pi / OI_r`.
    pub fn attainable(&self, oi: Intensity) -> FlopsPerSec {
        let pi = self.peak_flops_per_second.0;
        FlopsPerSec((oi.0 * pi / self.intensity.0).min(pi))
    }
}

/// Where a point stands against one roof.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Potential {
    pub side: Bound,
    /// Eq. 6 (memory-bound) or Eq. 7 (compute-bound) in SI units; smaller is better.
    pub phi: f64,
    /// The same distances in decades on the log-log plot (dimensionless); smaller is better.
    pub phi_decades: f64,
    /// `Perf / attainable(OI)`: 1 on the roof. Above 1 is a bug in units, precision, FLOP
    /// counting or scope (PITFALLS.md, physical limits), never "more than 100%".
    pub efficiency: f64,
    pub attainable_flops_per_second: FlopsPerSec,
    pub ridge: Ridge,
}

impl Potential {
    /// True when the point lies above its roof (efficiency > 1 beyond float noise).
    pub fn above_roof(&self) -> bool {
        self.efficiency > 1.0 + 1e-9
    }
}

fn positive(what: &'static str, v: f64) -> Result<(), super::RooflineError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(super::RooflineError::BadValue { what, value: v })
    }
}

/// Phi, Phi in decades and efficiency of the point `(oi, perf)` against `ridge`.
pub fn potential(
    ridge: Ridge,
    oi: Intensity,
    perf: FlopsPerSec,
) -> Result<Potential, super::RooflineError> {
    positive("point intensity FLOP/byte", oi.0)?;
    positive("point performance FLOP/s", perf.0)?;
    let oi_r = ridge.intensity.0;
    let pi = ridge.peak_flops_per_second.0;
    let side = if oi.0 < oi_r {
        Bound::Memory
    } else {
        Bound::Compute
    };
    let (phi, phi_decades) = match side {
        // Eq. 6: Euclidean distance to the ridge point.
        Bound::Memory => (
            ((oi_r - oi.0).powi(2) + (pi - perf.0).powi(2)).sqrt(),
            ((oi_r / oi.0).log10().powi(2) + (pi / perf.0).log10().powi(2)).sqrt(),
        ),
        // Eq. 7: vertical distance to the compute roof.
        Bound::Compute => (pi - perf.0, (pi / perf.0).log10()),
    };
    let attainable = ridge.attainable(oi);
    Ok(Potential {
        side,
        phi,
        phi_decades,
        efficiency: perf.0 / attainable.0,
        attainable_flops_per_second: attainable,
        ridge,
    })
}

/// Orders two points on the same hardware by Phi (smaller = better use of the hardware), or
/// `None` when they lie on opposite sides of the ridge: the paper declares those incomparable.
pub fn compare(a: &Potential, b: &Potential) -> Option<Ordering> {
    if a.side != b.side {
        return None;
    }
    Some(a.phi.total_cmp(&b.phi))
}

/// A ranking of points on one roof: a separate order per side of the ridge, never merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranking {
    /// Indices of memory-bound points, best (smallest Phi) first.
    pub memory_bound: Vec<usize>,
    /// Indices of compute-bound points, best first.
    pub compute_bound: Vec<usize>,
}

/// Ranks points by Phi within each side of the ridge. `by_decades` ranks by the dimensionless
/// variant instead of Eq. 6/7 in raw units (the two can disagree for memory-bound points).
pub fn rank(points: &[Potential], by_decades: bool) -> Ranking {
    let key = |p: &Potential| if by_decades { p.phi_decades } else { p.phi };
    let mut mem: Vec<usize> = Vec::new();
    let mut comp: Vec<usize> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        match p.side {
            Bound::Memory => mem.push(i),
            Bound::Compute => comp.push(i),
        }
    }
    mem.sort_by(|&a, &b| key(&points[a]).total_cmp(&key(&points[b])));
    comp.sort_by(|&a, &b| key(&points[a]).total_cmp(&key(&points[b])));
    Ranking {
        memory_bound: mem,
        compute_bound: comp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn eq6_memory_bound_by_hand_small_numbers() {
        // pi = 10 FLOP/s, beta = 2 B/s: ridge (5, 10). Point (2, 3): memory-bound.
        let r = Ridge::new(FlopsPerSec(10.0), BytesPerSec(2.0)).unwrap();
        let p = potential(r, Intensity(2.0), FlopsPerSec(3.0)).unwrap();
        assert_eq!(p.side, Bound::Memory);
        // sqrt((5-2)^2 + (10-3)^2) = sqrt(58)
        assert!(close(p.phi, 58f64.sqrt(), 1e-12), "{}", p.phi);
        // decades: sqrt(log10(5/2)^2 + log10(10/3)^2) = sqrt(0.397940^2 + 0.522879^2) = 0.657083
        assert!(
            close(p.phi_decades, 0.657_083_28, 1e-6),
            "{}",
            p.phi_decades
        );
        // attainable(2) = 2 x 2 = 4; efficiency 3/4
        assert_eq!(p.attainable_flops_per_second.0, 4.0);
        assert!(close(p.efficiency, 0.75, 1e-12));
    }

    #[test]
    fn eq7_compute_bound_by_hand() {
        let r = Ridge::new(FlopsPerSec(10.0), BytesPerSec(2.0)).unwrap();
        let p = potential(r, Intensity(8.0), FlopsPerSec(6.0)).unwrap();
        assert_eq!(p.side, Bound::Compute);
        assert_eq!(p.phi, 4.0);
        // log10(10/6) = 0.221849
        assert!(close(p.phi_decades, 0.221_848_75, 1e-6));
        assert!(close(p.efficiency, 0.6, 1e-12));
        // At the ridge exactly: compute side (OI_p >= OI_r), Phi = pi - Perf.
        let p = potential(r, Intensity(5.0), FlopsPerSec(10.0)).unwrap();
        assert_eq!(p.side, Bound::Compute);
        assert_eq!(p.phi, 0.0);
    }

    #[test]
    fn paper_rpi5_measured_ridge_and_raw_units_dominated_by_perf() {
        // Raspberry Pi 5, measured (Table 1): 78.56 GFLOPS f32, 3.98 GB/s.
        let r = Ridge::new(FlopsPerSec(78.56e9), BytesPerSec(3.98e9)).unwrap();
        assert!(close(r.intensity.0, 19.738_693_467, 1e-9));
        // A decode-like point at 1 FLOP/byte running at 2 GFLOP/s.
        let p = potential(r, Intensity(1.0), FlopsPerSec(2e9)).unwrap();
        assert_eq!(p.side, Bound::Memory);
        // sqrt(18.7387^2 + (76.56e9)^2) ~ 76.56e9: the intensity term vanishes in raw units.
        assert!(close(p.phi, 76.56e9, 1e-12), "{}", p.phi);
        // decades: log10(19.7387) = 1.295318, log10(78.56/2) = 1.594171 -> sqrt(sum of squares) = 2.054077
        assert!(
            close(p.phi_decades, 2.054_077_04, 1e-6),
            "{}",
            p.phi_decades
        );
        // attainable(1) = 3.98 GFLOP/s
        assert!(close(p.efficiency, 2.0 / 3.98, 1e-12));
        // Compute-bound: OI 40, 50 GFLOP/s -> Phi = 28.56e9
        let p = potential(r, Intensity(40.0), FlopsPerSec(50e9)).unwrap();
        assert_eq!(p.side, Bound::Compute);
        assert!(close(p.phi, 28.56e9, 1e-12));
    }

    #[test]
    fn opposite_sides_are_incomparable_and_never_ranked_together() {
        let r = Ridge::new(FlopsPerSec(10.0), BytesPerSec(2.0)).unwrap();
        let a = potential(r, Intensity(2.0), FlopsPerSec(3.0)).unwrap();
        let b = potential(r, Intensity(8.0), FlopsPerSec(9.0)).unwrap();
        let c = potential(r, Intensity(1.0), FlopsPerSec(1.5)).unwrap();
        assert_eq!(compare(&a, &b), None);
        assert_eq!(compare(&a, &c), Some(Ordering::Less));
        let ranking = rank(&[a, b, c], false);
        assert_eq!(ranking.memory_bound, vec![0, 2]);
        assert_eq!(ranking.compute_bound, vec![1]);
    }

    #[test]
    fn raw_and_decades_rankings_can_disagree() {
        // pi = 1 TFLOP/s, beta = 10 GB/s: ridge at 100 FLOP/byte. Both points memory-bound.
        let r = Ridge::new(FlopsPerSec(1e12), BytesPerSec(1e10)).unwrap();
        // a: next to the ridge in OI (99) but slow (10 GFLOP/s, efficiency 0.0101).
        let a = potential(r, Intensity(99.0), FlopsPerSec(1e10)).unwrap();
        // b: far left (OI 2) but faster (15 GFLOP/s, efficiency 0.75).
        let b = potential(r, Intensity(2.0), FlopsPerSec(1.5e10)).unwrap();
        // Raw Eq. 6 is dominated by pi - Perf: b is closer.
        assert!(b.phi < a.phi);
        assert_eq!(rank(&[a, b], false).memory_bound, vec![1, 0]);
        // Decades: a = sqrt(log10(100/99)^2 + log10(100)^2) = 2.0000048,
        //          b = sqrt(log10(50)^2 + log10(66.67)^2) = 2.4926175: a is closer.
        assert!(
            close(a.phi_decades, 2.000_004_76, 1e-8),
            "{}",
            a.phi_decades
        );
        assert!(
            close(b.phi_decades, 2.492_617_53, 1e-8),
            "{}",
            b.phi_decades
        );
        assert_eq!(rank(&[a, b], true).memory_bound, vec![0, 1]);
        assert!(b.efficiency > a.efficiency);
    }

    #[test]
    fn a_point_above_its_roof_is_flagged() {
        let r = Ridge::new(FlopsPerSec(10.0), BytesPerSec(2.0)).unwrap();
        let p = potential(r, Intensity(2.0), FlopsPerSec(5.0)).unwrap();
        assert!(p.above_roof());
        let p = potential(r, Intensity(2.0), FlopsPerSec(4.0)).unwrap();
        assert!(!p.above_roof());
    }

    #[test]
    fn nan_or_zero_inputs_are_errors() {
        assert!(Ridge::new(FlopsPerSec(f64::NAN), BytesPerSec(1.0)).is_err());
        assert!(Ridge::new(FlopsPerSec(1.0), BytesPerSec(0.0)).is_err());
        let r = Ridge::new(FlopsPerSec(10.0), BytesPerSec(2.0)).unwrap();
        assert!(potential(r, Intensity(0.0), FlopsPerSec(1.0)).is_err());
        assert!(potential(r, Intensity(1.0), FlopsPerSec(f64::INFINITY)).is_err());
    }
}
