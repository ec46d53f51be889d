//! The probe's profile: structure and sanity on a tiny, fast configuration. Never absolute
//! speeds (this machine may be shared and slow); only shapes, signs and orderings.

use rooflinebench_bench::probe::{run_probe, Mode, ProbeOptions};
use rooflinebench_bench::stats::RepeatPolicy;
use rooflinebench_bench::team::{measure, Job};
use rooflinebench_kernels::ceiling::compute::ComputeKernel;
use rooflinebench_model::hardware::{
    BwPattern, CeilingSource, HardwareProfile, MemLevel, Precision, HW_SCHEMA_VERSION,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn tiny() -> ProbeOptions {
    ProbeOptions {
        mode: Mode::Quick,
        threads: vec![1],
        dram_bytes: Some(16 << 20),
        sweep_max_bytes: Some(4 << 20),
        ..ProbeOptions::default()
    }
}

#[test]
fn tiny_probe_profile_is_complete_finite_and_monotone() {
    let mut lines = Vec::new();
    let p = run_probe(&tiny(), &mut |l| lines.push(l.to_string())).unwrap();
    assert!(!lines.is_empty(), "progress is reported");
    assert_eq!(p.schema_version, HW_SCHEMA_VERSION);
    p.validate().unwrap();

    // pitfall 12: every precision has its own measured roof at 1 thread (scalar fallbacks
    // exist for each), so no FP16/INT8 run is ever judged against the FP32 roof
    for prec in Precision::ALL {
        let c = p
            .compute_roof(prec, CeilingSource::Measured, Some(1))
            .unwrap_or_else(|| panic!("no measured {prec} ceiling"));
        let s = c
            .stats
            .as_ref()
            .expect("measured ceilings keep their samples");
        assert!(!s.samples.is_empty());
        assert!(s.samples.iter().all(|x| x.is_finite() && *x > 0.0));
        let max = s.samples.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(s.best, max, "the ceiling is the best trial");
        assert!(s.best >= s.median && s.cv >= 0.0);
        assert_eq!(c.flops_per_second, s.best);
        assert!(c.kernel.is_some() && c.isa.is_some());
    }
    // theoretical peaks sit beside the measured ones, when the clock could be measured
    let clock = p
        .host
        .as_ref()
        .and_then(|h| h.get("frequency_hz"))
        .and_then(|v| v.as_f64());
    if clock.is_some() {
        assert!(p
            .compute
            .iter()
            .any(|c| c.source == CeilingSource::Theoretical));
    }

    // bandwidth: finite and positive; read plateaus non-increasing from L1 to DRAM
    for b in &p.bandwidth {
        assert!(b.bytes_per_second.is_finite() && b.bytes_per_second > 0.0);
        assert!(b.working_set_bytes.is_some_and(|w| w > 0));
        if let Some(wa) = b.with_write_allocate_bytes_per_second {
            assert!(wa > b.bytes_per_second, "write-allocate adds traffic");
        }
    }
    let reads: Vec<(MemLevel, f64)> = MemLevel::ALL
        .iter()
        .filter_map(|l| {
            p.bandwidth
                .iter()
                .find(|b| b.level == *l && b.pattern == BwPattern::Read && b.threads == Some(1))
                .map(|b| (*l, b.bytes_per_second))
        })
        .collect();
    assert!(
        reads.first().is_some_and(|r| r.0 == MemLevel::L1),
        "{reads:?}"
    );
    assert!(
        reads.last().is_some_and(|r| r.0 == MemLevel::Dram),
        "{reads:?}"
    );
    for w in reads.windows(2) {
        // 10% slack for a busy machine; real plateaus differ by 1.5x or more
        assert!(w[1].1 <= w[0].1 * 1.10, "{:?} above {:?}", w[1], w[0]);
    }
    let sweep = p.host.as_ref().unwrap()["probe"]["sweep"]
        .as_array()
        .unwrap()
        .clone();
    assert!(sweep.len() >= 5);
    assert!(sweep
        .iter()
        .all(|s| s["bytes_per_second"].as_f64().is_some_and(|v| v > 0.0)));

    for w in &p.warnings {
        assert!(!w.code.is_empty() && !w.message.is_empty());
    }
    // the JSON round-trips through the schema parser
    let text = serde_json::to_string_pretty(&p).unwrap();
    let back = HardwareProfile::from_json(&text).unwrap();
    assert_eq!(back.compute.len(), p.compute.len());
    assert_eq!(back.bandwidth.len(), p.bandwidth.len());
    // and renders
    let table = rooflinebench_bench::table::render(&p);
    assert!(table.contains("Compute ceilings") && table.contains("Bandwidth ceilings"));
}

#[test]
fn pitfall_19_thread_counts_are_explicit_and_validated() {
    let mut o = tiny();
    o.threads = vec![0];
    let e = run_probe(&o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    o.threads = vec![1, 100_000];
    let e = run_probe(&o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("100000"), "{e}");
}

/// A probe on a busy machine must say so: strangers competing for every CPU mark the
/// measurement as disturbed (and the probe turns that into `unstable` and a warning).
#[test]
fn busy_machine_is_detected() {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        println!("skip: cannot list cores");
        return;
    }
    let stop = AtomicBool::new(false);
    let n = cores.len() * 2;
    let policy = RepeatPolicy {
        warmup: Duration::from_millis(5),
        target_trial: Duration::from_millis(2),
        min_trials: 8,
        max_trials: 8,
        budget: Duration::from_millis(200),
    };
    let m = std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        let m = measure(
            Job::Compute(ComputeKernel::MulAddF32Scalar),
            &cores[..1],
            &policy,
            false,
            0,
        );
        stop.store(true, Ordering::Relaxed);
        m
    })
    .unwrap();
    if cfg!(target_os = "linux") {
        assert!(m.foreign_fraction >= 0.25, "busy loops not noticed: {m:?}");
        assert!(m.foreign_max >= 1);
    }
}
