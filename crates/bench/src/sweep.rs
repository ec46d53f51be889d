//! Working-set sweep planning and plateau detection: which sizes to measure, and which measured
//! sizes represent the L1, L2, L3 and DRAM plateaus.
//!
//! Reported cache sizes are a hint, not truth: a virtual machine may be told the host's whole
//! L3 (480 MiB on the machine this was written on) while the bandwidth curve reaches the DRAM
//! level near 100 MiB. So the L1 and L2 plateaus are searched well inside the reported sizes
//! (at most half of each, at least twice the level above), and the L3 plateau ends where the
//! *measured* curve comes within 15% of the separately measured DRAM bandwidth. A level whose
//! best point is not clearly above the next one (no plateau) is left out rather than invented.
//! Pure functions on numbers; the measuring is in [`crate::probe`].

use rooflinebench_model::hardware::MemLevel;
use serde::Serialize;

/// A sweep point within this factor of the DRAM bandwidth counts as "at the DRAM level".
pub const DRAM_LEVEL_FACTOR: f64 = 1.15;

/// One measured sweep point (1 thread, read pattern).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    pub working_set_bytes: u64,
    pub bytes_per_second: f64,
    pub median_bytes_per_second: f64,
    pub cv: f64,
    pub unstable: bool,
}

/// A plateau's representative working set (per thread) and the sweep's bandwidth there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LevelPick {
    pub level: MemLevel,
    pub working_set_bytes: u64,
    pub sweep_bytes_per_second: f64,
}

/// Geometric sizes from `min` to `max` (inclusive when hit), `steps_per_doubling` per factor
/// of two, each a multiple of 1 KiB (whole cache lines for every pattern's arrays).
pub fn sweep_sizes(min: u64, max: u64, steps_per_doubling: u32) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    let step = 2f64.powf(1.0 / steps_per_doubling.max(1) as f64);
    let mut x = min.max(4096) as f64;
    while x <= max as f64 * 1.0001 {
        let s = ((x / 1024.0).round() as u64).max(1) * 1024;
        if out.last() != Some(&s) && s <= max {
            out.push(s);
        }
        x *= step;
    }
    out
}

/// The smallest sweep size beyond `after` whose bandwidth is at the DRAM level: where the last
/// cache's plateau measurably ends.
pub fn dram_level_start(points: &[SweepPoint], after: u64, dram_bw: f64) -> Option<u64> {
    points
        .iter()
        .filter(|p| p.working_set_bytes > after)
        .find(|p| p.bytes_per_second <= dram_bw * DRAM_LEVEL_FACTOR)
        .map(|p| p.working_set_bytes)
}

/// Picks each plateau's representative size from a 1-thread read sweep: the largest point
/// within 10% of the fastest, well inside L1 and L2 (flat plateaus, edges avoided); the
/// geometric middle of the measured L3 plateau.
///
/// `l1`, `l2`, `l3`: reported per-thread capacities (sysfs, else cpuid); `dram_bw`: the DRAM
/// read bandwidth measured with a working set far beyond the caches.
pub fn pick_levels(
    points: &[SweepPoint],
    l1: Option<u64>,
    l2: Option<u64>,
    l3: Option<u64>,
    dram_bw: Option<f64>,
) -> Vec<LevelPick> {
    // the largest size within 10% of the region's best: on a flat plateau noise decides the
    // maximum, and small sets pay more per-pass overhead, so prefer the large end (this keeps
    // two runs on the same working set; sweep sizes are fixed per mode)
    let best_in = |lo: u64, hi: u64| -> Option<&SweepPoint> {
        let inside = || {
            points
                .iter()
                .filter(move |p| p.working_set_bytes >= lo && p.working_set_bytes <= hi)
        };
        let top = inside()
            .map(|p| p.bytes_per_second)
            .max_by(|a, b| a.total_cmp(b))?;
        inside()
            .filter(|p| p.bytes_per_second >= 0.90 * top)
            .max_by_key(|p| p.working_set_bytes)
    };
    let mut picks: Vec<LevelPick> = Vec::new();
    let push = |level: MemLevel, p: &SweepPoint, picks: &mut Vec<LevelPick>| {
        picks.push(LevelPick {
            level,
            working_set_bytes: p.working_set_bytes,
            sweep_bytes_per_second: p.bytes_per_second,
        });
    };
    let l1 = l1.unwrap_or(32 << 10);
    if let Some(p) = best_in(0, l1 / 2) {
        push(MemLevel::L1, p, &mut picks);
    }
    let Some(l2) = l2 else {
        return picks;
    };
    if let Some(p) = best_in(2 * l1, l2 / 2) {
        push(MemLevel::L2, p, &mut picks);
    }
    if let Some(l3) = l3 {
        let end = dram_bw
            .and_then(|bw| dram_level_start(points, 2 * l2, bw))
            .map_or(l3 / 2, |e| (e / 2).min(l3 / 2));
        // the L3 plateau slopes (near slices first, a VM's share of a shared cache, L2 hits
        // at its low end): take the point nearest its geometric middle, not its maximum
        let mid = ((2 * l2) as f64 * end as f64).sqrt();
        let middle = points
            .iter()
            .filter(|p| p.working_set_bytes >= 2 * l2 && p.working_set_bytes <= end)
            .min_by(|a, b| {
                let d = |p: &SweepPoint| (p.working_set_bytes as f64 / mid).ln().abs();
                d(a).total_cmp(&d(b))
            });
        if let Some(p) = middle {
            let distinct = dram_bw.is_none_or(|bw| p.bytes_per_second > bw * DRAM_LEVEL_FACTOR);
            if distinct {
                push(MemLevel::L3, p, &mut picks);
            }
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(ws: u64, bw: f64) -> SweepPoint {
        SweepPoint {
            working_set_bytes: ws,
            bytes_per_second: bw,
            median_bytes_per_second: bw,
            cv: 0.0,
            unstable: false,
        }
    }

    /// The curve measured on the 2-vCPU KVM guest this was written on: L1 48 KiB, L2 2 MiB,
    /// sysfs L3 480 MiB, but DRAM level from ~100 MiB.
    fn vm_curve() -> Vec<SweepPoint> {
        let kib = 1024u64;
        vec![
            pt(4 * kib, 350e9),
            pt(16 * kib, 345e9),
            pt(46 * kib, 348e9),
            pt(70 * kib, 167e9),
            pt(236 * kib, 187e9),
            pt(1194 * kib, 181e9),
            pt(1792 * kib, 107e9),
            pt(4031 * kib, 30e9),
            pt(13605 * kib, 29.7e9),
            pt(45916 * kib, 29.7e9),
            pt(68875 * kib, 28.9e9),
            pt(103312 * kib, 17.7e9),
            pt(232452 * kib, 16.1e9),
        ]
    }

    #[test]
    fn vm_with_bogus_480_mib_l3_gets_its_measured_plateaus() {
        let picks = pick_levels(
            &vm_curve(),
            Some(48 << 10),
            Some(2 << 20),
            Some(480 << 20),
            Some(16e9),
        );
        let levels: Vec<_> = picks.iter().map(|p| p.level).collect();
        assert_eq!(levels, vec![MemLevel::L1, MemLevel::L2, MemLevel::L3]);
        // 16 KiB (345e9) is within 10% of the fastest (350e9) and larger
        assert_eq!(picks[0].working_set_bytes, 16 << 10);
        assert_eq!(picks[1].working_set_bytes, 236 << 10);
        // L3 picked in the middle of [4 MiB, half of where the curve reaches DRAM (~100 MiB)]
        assert_eq!(picks[2].working_set_bytes, 13605 << 10);
        assert_eq!(
            dram_level_start(&vm_curve(), 4 << 20, 16e9),
            Some(103312 << 10)
        );
    }

    #[test]
    fn missing_l3_plateau_is_not_invented() {
        // no distinct level between L2 and DRAM
        let c = vec![
            pt(4096, 100e9),
            pt(100 << 10, 50e9),
            pt(8 << 20, 10.5e9),
            pt(64 << 20, 10e9),
        ];
        let picks = pick_levels(
            &c,
            Some(32 << 10),
            Some(1 << 20),
            Some(16 << 20),
            Some(10e9),
        );
        assert_eq!(picks.len(), 2);
    }

    #[test]
    fn sweep_sizes_are_geometric_page_multiples() {
        let s = sweep_sizes(4096, 1 << 20, 2);
        assert_eq!(s.first(), Some(&4096));
        assert_eq!(s.last(), Some(&(1 << 20)));
        assert!(s.windows(2).all(|w| w[1] > w[0] && w[1] % 1024 == 0));
        assert_eq!(s.len(), 17);
        assert!(sweep_sizes(8192, 4096, 2).is_empty());
    }
}
