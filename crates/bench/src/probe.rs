//! The ceilings probe: measures this machine's compute roofs per precision and bandwidth roofs
//! per memory level, and returns them as a versioned [`HardwareProfile`].
//!
//! Order of work: host description and clock; compute kernels (each precision's best path at
//! every thread count, every path at one thread in the default mode); the DRAM read bandwidth
//! (default 1 GiB working set, capped by available memory); a 1-thread read sweep from 4 KiB up
//! to where the bandwidth reaches the DRAM level (or a cap); the L1/L2/L3 plateaus found in it
//! ([`crate::sweep`]); then every bandwidth pattern at each level and thread count. Every
//! measurement records its samples, the clock before and after it, and whether other tasks
//! were runnable; quality problems become [`Warning`]s with a remedy, and the affected ceilings
//! are flagged unstable rather than silently low. Not a model of the machine: the analytic
//! roofline lives in `rooflinebench-model`.

use crate::host::{self, HostInfo};
use crate::load::{self, Snapshot};
use crate::peaks::{self, CoreModel};
use crate::stats::{is_unstable, RepeatPolicy};
use crate::sweep::{self, LevelPick, SweepPoint};
use crate::team::{self, Job, Measurement};
use crate::timer;
use crate::ProbeError;
use core_affinity::CoreId;
use rooflinebench_kernels::ceiling::bandwidth::{BwKernel, BwOp};
use rooflinebench_kernels::ceiling::buffer;
use rooflinebench_kernels::ceiling::compute::{ComputeKernel, ComputePath};
use rooflinebench_kernels::isa::{self, Isa};
use rooflinebench_model::hardware::{
    BandwidthCeiling, BwPattern, CeilingSource, ComputeCeiling, HardwareProfile, MemLevel,
    Precision, Warning, HW_SCHEMA_VERSION,
};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Default DRAM working set (issue 3): far beyond any edge device's last-level cache.
pub const DEFAULT_DRAM_BYTES: u64 = GIB;

/// How thorough a probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// At most ~5 s: best kernel per precision, read bandwidth per level and DRAM.
    Quick,
    /// At most ~30 s: every kernel at 1 thread, every pattern at every level.
    Default,
    /// Several times longer: more trials, a finer sweep, every kernel at every thread count.
    Thorough,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Default => "default",
            Mode::Thorough => "thorough",
        }
    }
}

/// What to probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeOptions {
    pub mode: Mode,
    /// Thread counts to measure at; empty means 1 and all usable CPUs.
    pub threads: Vec<u32>,
    /// DRAM working set in bytes (all threads together); default [`DEFAULT_DRAM_BYTES`].
    pub dram_bytes: Option<u64>,
    /// Largest sweep working set; default depends on the mode and the reported LLC.
    pub sweep_max_bytes: Option<u64>,
    pub compute: bool,
    pub bandwidth: bool,
    /// Measure even under an emulator (qemu-user, Rosetta 2): every ceiling is then marked
    /// unstable and an `emulated` warning says why. Also enabled by a non-empty
    /// `ROOFLINEBENCH_ALLOW_EMULATED` (the aarch64 CI tests run the probe under qemu).
    pub allow_emulated: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            mode: Mode::Default,
            threads: Vec::new(),
            dram_bytes: None,
            sweep_max_bytes: None,
            compute: true,
            bandwidth: true,
            allow_emulated: false,
        }
    }
}

impl ProbeOptions {
    pub fn quick() -> ProbeOptions {
        ProbeOptions {
            mode: Mode::Quick,
            ..ProbeOptions::default()
        }
    }
}

struct Plan {
    compute: RepeatPolicy,
    /// Windows each compute kernel is measured in, spread over the compute phase.
    compute_passes: u32,
    cache: RepeatPolicy,
    /// Windows each cache-level bandwidth ceiling is measured in.
    cache_passes: u32,
    dram: RepeatPolicy,
    sweep: RepeatPolicy,
    steps_per_doubling: u32,
    sweep_cap: u64,
    sweep_budget: Duration,
    cache_patterns: &'static [BwOp],
    dram_patterns: &'static [BwOp],
    /// Every supported kernel at the first thread count (not only each precision's best).
    all_kernels_first: bool,
    all_kernels_everywhere: bool,
}

/// Register- and cache-resident kernels use 1-2 ms trials: far above the clock's resolution
/// and the start skew (about a microsecond), and short enough that on a shared machine some
/// trials run between two preemptions, so the best trial still finds the hardware's rate.
const fn policy(
    warm_ms: u64,
    target_ms: u64,
    min: usize,
    max: usize,
    budget_ms: u64,
) -> RepeatPolicy {
    RepeatPolicy {
        warmup: Duration::from_millis(warm_ms),
        target_trial: Duration::from_millis(target_ms),
        min_trials: min,
        max_trials: max,
        budget: Duration::from_millis(budget_ms),
    }
}

fn plan(mode: Mode) -> Plan {
    use BwOp::*;
    match mode {
        Mode::Quick => Plan {
            compute: policy(5, 1, 5, 16, 16),
            compute_passes: 1,
            cache: policy(4, 1, 5, 16, 16),
            cache_passes: 1,
            dram: policy(0, 10, 3, 4, 60),
            sweep: policy(1, 1, 3, 4, 5),
            steps_per_doubling: 1,
            sweep_cap: 512 * MIB,
            sweep_budget: Duration::from_millis(1200),
            cache_patterns: &[Read],
            // the roof `run` needs is the read bandwidth (weights and KV cache are read)
            dram_patterns: &[Read],
            all_kernels_first: false,
            all_kernels_everywhere: false,
        },
        Mode::Default => Plan {
            compute: policy(20, 1, 10, 60, 60),
            compute_passes: 3,
            cache: policy(10, 1, 10, 60, 50),
            cache_passes: 3,
            dram: policy(0, 40, 4, 8, 300),
            sweep: policy(3, 2, 3, 6, 12),
            steps_per_doubling: 2,
            sweep_cap: 2 * GIB,
            sweep_budget: Duration::from_secs(6),
            // non-temporal stores bypass the caches: only DRAM has a write_nt roof
            cache_patterns: &[Read, Write, Copy, Triad],
            dram_patterns: &[Read, Write, WriteNt, Copy, Triad],
            all_kernels_first: true,
            all_kernels_everywhere: false,
        },
        Mode::Thorough => Plan {
            compute: policy(100, 2, 20, 200, 400),
            compute_passes: 4,
            cache: policy(50, 2, 20, 200, 300),
            cache_passes: 4,
            dram: policy(0, 100, 10, 20, 2500),
            sweep: policy(10, 5, 5, 12, 60),
            steps_per_doubling: 4,
            sweep_cap: 8 * GIB,
            sweep_budget: Duration::from_secs(40),
            cache_patterns: &[Read, Write, Copy, Triad],
            dram_patterns: &[Read, Write, WriteNt, Copy, Triad],
            all_kernels_first: true,
            all_kernels_everywhere: true,
        },
    }
}

/// One bandwidth ceiling to measure: what, where, and (once measured) its trials.
struct BwJob {
    level: MemLevel,
    op: BwOp,
    kernel: BwKernel,
    t: u32,
    per_thread: u64,
    m: Option<team::Measurement>,
}

/// Validates a `--threads` list against the CPUs this process may use: sorted, deduplicated;
/// empty means `[1, usable]`.
pub fn resolve_threads(requested: &[u32], usable: u32) -> Result<Vec<u32>, ProbeError> {
    let mut t: Vec<u32> = if requested.is_empty() {
        vec![1, usable.max(1)]
    } else {
        requested.to_vec()
    };
    if t.contains(&0) {
        return Err(ProbeError::ThreadsZero);
    }
    if let Some(&max) = t.iter().max() {
        if max > usable {
            return Err(ProbeError::TooManyThreads {
                requested: max,
                available: usable,
            });
        }
    }
    t.sort_unstable();
    t.dedup();
    Ok(t)
}

/// Each precision's paths, best first (the first one this CPU has is "the" roof path).
const PREFERENCE: [ComputeKernel; 24] = [
    ComputeKernel::FmaF64Avx512,
    ComputeKernel::FmaF64Avx2,
    ComputeKernel::FmaF64Neon,
    ComputeKernel::MulAddF64Scalar,
    ComputeKernel::FmaF32Avx512,
    ComputeKernel::FmaF32Avx2,
    ComputeKernel::FmaF32Neon,
    ComputeKernel::MulAddF32Scalar,
    ComputeKernel::F16cFmaF32Avx512,
    ComputeKernel::F16cFmaF32Avx2,
    ComputeKernel::F16cvtFmaF32Neon,
    ComputeKernel::F16MulAddF32Scalar,
    ComputeKernel::FmaF16Avx512fp16,
    ComputeKernel::FmaF16Neon,
    ComputeKernel::DotBf16Avx512bf16,
    ComputeKernel::MmlaBf16Neon,
    ComputeKernel::DotBf16Neon,
    ComputeKernel::DotBf16Scalar,
    ComputeKernel::DotI8Avx512vnni,
    ComputeKernel::DotI8Avxvnni,
    ComputeKernel::DotI8Avx2,
    ComputeKernel::MmlaI8Neon,
    ComputeKernel::DotI8Neon,
    ComputeKernel::DotI8Scalar,
];

fn precision_of(path: ComputePath) -> Precision {
    match path {
        ComputePath::F64 => Precision::F64,
        ComputePath::F32 => Precision::F32,
        ComputePath::F16ViaF32 | ComputePath::F16Native => Precision::F16,
        ComputePath::Bf16Dot => Precision::Bf16,
        ComputePath::Int8Dot => Precision::Int8,
    }
}

/// The kernels to measure at one thread count.
fn compute_kernels(cap: Isa, all: bool) -> Vec<ComputeKernel> {
    let allowed: Vec<ComputeKernel> = PREFERENCE.into_iter().filter(|k| k.allowed(cap)).collect();
    if all {
        return allowed;
    }
    let mut seen: Vec<ComputePath> = Vec::new();
    allowed
        .into_iter()
        .filter(|k| {
            let p = k.spec().path;
            let first = !seen.contains(&p);
            seen.push(p);
            first
        })
        .collect()
}

fn pattern_of(op: BwOp) -> BwPattern {
    match op {
        BwOp::Read => BwPattern::Read,
        BwOp::Write => BwPattern::Write,
        BwOp::WriteNt => BwPattern::WriteNt,
        BwOp::Copy => BwPattern::Copy,
        BwOp::Triad => BwPattern::Triad,
    }
}

/// What went wrong with one measurement (for flags and warnings).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct Quality {
    stats_unstable: bool,
    /// The best trials of the windows differ by more than 5%: the ceiling did not repeat
    /// within this probe, so it cannot be expected to repeat in the next.
    windows_disagree: bool,
    busy: bool,
    /// The clock before and after differ by more than 5% (either way).
    clock_changed: bool,
    short_trials: bool,
    unpinned: bool,
    /// Measured at a core clock more than 5% below the highest this probe saw (set after all
    /// measurements): the host can run faster, so the ceiling is likely to differ next time.
    low_clock: bool,
}

impl Quality {
    fn of(m: &Measurement, timer_res: f64) -> Quality {
        Quality {
            stats_unstable: is_unstable(&m.stats),
            windows_disagree: windows_disagree(&m.window_bests),
            busy: m.foreign_fraction >= 0.25,
            clock_changed: matches!(
                (m.freq_before_hz, m.freq_after_hz),
                (Some(b), Some(a)) if a < 0.95 * b || a > b / 0.95
            ),
            short_trials: m.min_trial_seconds < 1000.0 * timer_res,
            unpinned: !m.pinned,
            low_clock: false,
        }
    }
    fn unstable(&self) -> bool {
        self.stats_unstable
            || self.windows_disagree
            || self.busy
            || self.clock_changed
            || self.low_clock
    }
}

/// Largest relative spread of the windows' best trials allowed for a stable ceiling: the
/// repeatability issue 3 asks of two consecutive probes.
const MAX_WINDOW_SPREAD: f64 = 0.05;

fn windows_disagree(bests: &[f64]) -> bool {
    let hi = bests.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lo = bests.iter().copied().fold(f64::INFINITY, f64::min);
    bests.len() > 1 && hi > 0.0 && (hi - lo) / hi > MAX_WINDOW_SPREAD
}

/// One measured ceiling's label and quality, for the warnings.
struct Record {
    label: String,
    quality: Quality,
    foreign_max: u32,
    /// The core clock around the measurement's best window (the higher of before and after).
    clock_hz: Option<f64>,
    /// Where its ceiling went.
    target: CeilingRef,
}

/// Index of a measured ceiling in the probe's output vectors.
#[derive(Clone, Copy)]
enum CeilingRef {
    Compute(usize),
    Informational(usize),
    Bandwidth(usize),
}

/// The clock around a measurement (the higher of the readings before and after it).
fn around_clock(m: &Measurement) -> Option<f64> {
    match (m.freq_before_hz, m.freq_after_hz) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Marks `low_clock` every record measured more than [`MAX_WINDOW_SPREAD`] below `top`, the
/// highest clock of the probe; returns their indices.
fn mark_low_clock(records: &mut [Record], top: f64) -> Vec<usize> {
    let mut low = Vec::new();
    for (i, r) in records.iter_mut().enumerate() {
        if r.clock_hz
            .is_some_and(|c| c < (1.0 - MAX_WINDOW_SPREAD) * top)
        {
            r.quality.low_clock = true;
            low.push(i);
        }
    }
    low
}

fn fmt_bytes(b: u64) -> String {
    if b as f64 >= 0.999 * GIB as f64 {
        format!("{:.2} GiB", b as f64 / GIB as f64)
    } else if b >= MIB {
        format!("{:.1} MiB", b as f64 / MIB as f64)
    } else {
        format!("{} KiB", b / 1024)
    }
}

/// Size of the largest per-core (unshared) data cache below `level`, bytes (0 if none).
fn private_below(host: &HostInfo, level: u32) -> u64 {
    (1..level)
        .filter(|&l| host.cache(l).and_then(|c| c.shared_by_cpus).unwrap_or(1) <= 1)
        .filter_map(|l| host.cache_bytes(l))
        .max()
        .unwrap_or(0)
}

/// "clock 3.99 -> 3.98 GHz" (before and after a measurement), for its note.
fn clocks(m: &Measurement) -> String {
    match (m.freq_before_hz, m.freq_after_hz) {
        (Some(a), Some(b)) => format!("clock {:.2} -> {:.2} GHz", a / 1e9, b / 1e9),
        _ => "clock not measured".into(),
    }
}

/// The scalar clock (best of `rounds` short add chains) and, with `vector`, the clocks under
/// 256- and 512-bit FMA load, all measured on `core`.
fn measure_clock(core: CoreId, rounds: u32, vector: bool) -> (Option<f64>, host::VectorClocks) {
    std::thread::scope(|s| {
        s.spawn(move || {
            core_affinity::set_for_current(core);
            let hz = host::measure_frequency(rounds, 0.0005);
            let v = match hz {
                Some(hz) if vector => host::measure_vector_clocks(hz, 5, 0.0005),
                _ => host::VectorClocks::default(),
            };
            (hz, v)
        })
        .join()
        .unwrap_or_default()
    })
}

/// Refuses to measure under an emulator unless `--allow-emulated` or a non-empty
/// `ROOFLINEBENCH_ALLOW_EMULATED` allows it.
fn emulation_gate(
    reason: &str,
    allow: bool,
    env: Option<std::ffi::OsString>,
) -> Result<(), ProbeError> {
    if allow || env.is_some_and(|v| !v.is_empty()) {
        Ok(())
    } else {
        Err(ProbeError::Emulated {
            reason: reason.to_string(),
        })
    }
}

/// Runs the probe. `progress` receives one line per step (print it to stderr).
pub fn run_probe(
    opts: &ProbeOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<HardwareProfile, ProbeError> {
    let t0 = Instant::now();
    let cap = isa::best()?;
    let pl = plan(opts.mode);
    let mut host = host::detect();
    if let Some(reason) = &host.emulation {
        emulation_gate(
            reason,
            opts.allow_emulated,
            std::env::var_os("ROOFLINEBENCH_ALLOW_EMULATED"),
        )?;
        progress(&format!(
            "WARNING: running under an emulator ({reason}): every ceiling below is the emulator's speed, not the hardware's"
        ));
    }
    let cores = core_affinity::get_core_ids()
        .filter(|v| !v.is_empty())
        .ok_or(ProbeError::NoCores)?;
    let usable = cores.len() as u32;
    let threads = resolve_threads(&opts.threads, usable)?;
    let snapshot = Snapshot::now();
    let timer_res = timer::resolution();
    let mut say = |msg: &str| progress(&format!("[{:5.1}s] {msg}", t0.elapsed().as_secs_f64()));

    say("measuring the core clock (dependent-add chain)");
    let (freq_start, vclocks) = measure_clock(cores[0], 20, true);
    host.frequency_hz = freq_start;
    host.frequency_avx2_hz = vclocks.avx2_hz;
    host.frequency_avx512_hz = vclocks.avx512_hz;
    if host.clusters.len() > 1 {
        say("measuring each core cluster's clock (big.LITTLE / P+E cores)");
        host::measure_cluster_frequencies(&mut host, 10, 0.0005);
    }
    let model = peaks::core_model(&host);
    let phys = host.physical_cores.unwrap_or(usable).max(1);

    let mut warnings: Vec<Warning> = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    let mut compute: Vec<ComputeCeiling> = Vec::new();
    let mut informational: Vec<ComputeCeiling> = Vec::new();
    let mut bandwidth: Vec<BandwidthCeiling> = Vec::new();

    if opts.compute {
        // Every kernel runs in `compute_passes` windows spread over the compute phase and keeps
        // its best trial. A VM's core clock moves between about 3.6 and 4.1 GHz within a
        // second (a dependent-multiply chain sampled every 0.25 s for 2 minutes): one window per
        // kernel catches whatever clock that moment had, so two probes differed by up to 13%;
        // windows seconds apart reach the same top clock in every probe.
        let mut jobs: Vec<(u32, ComputeKernel, Option<team::Measurement>)> = Vec::new();
        for (ti, &t) in threads.iter().enumerate() {
            let all = pl.all_kernels_everywhere || (pl.all_kernels_first && ti == 0);
            jobs.extend(compute_kernels(cap, all).into_iter().map(|k| (t, k, None)));
        }
        let per_pass = pl.compute.split(pl.compute_passes);
        for pass in 1..=pl.compute_passes {
            if pl.compute_passes > 1 {
                say(&format!(
                    "compute pass {pass}/{} ({} kernels)",
                    pl.compute_passes,
                    jobs.len()
                ));
            }
            for (t, k, merged) in jobs.iter_mut() {
                // register-only: strangers matter only if they need our CPUs
                let m = team::measure(
                    Job::Compute(*k),
                    &cores[..*t as usize],
                    &per_pass,
                    true,
                    usable - *t,
                )?;
                *merged = Some(match merged.take() {
                    Some(a) => a.merge(m),
                    None => m,
                });
            }
        }
        for (t, k, m) in jobs {
            let Some(m) = m else { continue };
            {
                let spec = k.spec();
                let q = Quality::of(&m, timer_res);
                say(&format!(
                    "compute {:<22} x{t}: {:8.1} GFLOP/s (median {:.1}){}",
                    spec.name,
                    m.stats.best / 1e9,
                    m.stats.median / 1e9,
                    if q.unstable() { "  unstable" } else { "" }
                ));
                let precision = precision_of(spec.path);
                let native_f16 = spec.path == ComputePath::F16Native;
                let note = match spec.path {
                    ComputePath::F16ViaF32 => "f16 operands converted to f32 (F16C) and multiplied-added in f32, one conversion per FMA: the path LLM kernels take on x86; conversions not counted as FLOPs",
                    ComputePath::F16Native => "native f16 multiply-add with f16 accumulation; informational: not a roof, LLM kernels accumulate in f32",
                    ComputePath::Bf16Dot => "bf16 pairs dot-multiplied into f32 accumulators; 4 FLOP per f32 lane per instruction",
                    ComputePath::Int8Dot => "u8 x s8 dot products into i32; 8 integer ops (4 multiply-adds) per i32 lane per instruction",
                    _ => "register-resident multiply-add chains, one FMA = 2 FLOP",
                };
                let c = ComputeCeiling {
                    precision,
                    source: CeilingSource::Measured,
                    flops_per_second: m.stats.best,
                    threads: Some(t),
                    kernel: Some(spec.name.to_string()),
                    isa: Some(spec.isa.name().to_string()),
                    stats: Some(m.stats.clone()),
                    unstable: q.unstable(),
                    note: Some(format!(
                        "{note}; {} FLOP per iteration, {} accumulators x {} lanes; {} iterations per trial; {}",
                        spec.flops_per_iter,
                        spec.accumulators,
                        spec.lanes,
                        m.reps_per_trial,
                        clocks(&m)
                    )),
                };
                records.push(Record {
                    label: format!("{} x{t}", spec.name),
                    quality: q,
                    foreign_max: m.foreign_max,
                    clock_hz: around_clock(&m),
                    target: if native_f16 {
                        CeilingRef::Informational(informational.len())
                    } else {
                        CeilingRef::Compute(compute.len())
                    },
                });
                // the clock this instruction mix runs at: the scalar clock around this
                // measurement (turbo drifts) times the vector-load ratio measured at the start
                // (AVX-512 licences lower it)
                let around = match (m.freq_before_hz, m.freq_after_hz) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b).or(freq_start),
                };
                let ratio = |v: Option<f64>| match (v, freq_start) {
                    (Some(v), Some(s)) if s > 0.0 => v / s,
                    _ => 1.0,
                };
                let (clock, clock_name) = match spec.isa {
                    Isa::Avx512 => (
                        around.map(|c| c * ratio(vclocks.avx512_hz)),
                        "around this measurement, x the 512-bit FMA load ratio",
                    ),
                    Isa::Avx2 => (
                        around.map(|c| c * ratio(vclocks.avx2_hz)),
                        "around this measurement, x the 256-bit FMA load ratio",
                    ),
                    _ => (around, "around this measurement"),
                };
                let theo = match (clock, peaks::flops_per_cycle(k, &model)) {
                    (Some(hz), Some(p)) => {
                        let used = t.min(phys);
                        Some(ComputeCeiling {
                            precision,
                            source: CeilingSource::Theoretical,
                            flops_per_second: p.flops_per_cycle * hz * used as f64,
                            threads: Some(t),
                            kernel: Some(spec.name.to_string()),
                            isa: Some(spec.isa.name().to_string()),
                            stats: None,
                            unstable: false,
                            note: Some(format!(
                                "{} FLOP/cycle/core ({}) x {:.3} GHz (measured clock {clock_name}) x {used} core(s); source: {}{}",
                                p.flops_per_cycle,
                                p.derivation,
                                hz / 1e9,
                                p.source,
                                if p.flagged { "; rests on a flagged assumption (see warnings)" } else { "" }
                            )),
                        })
                    }
                    _ => None,
                };
                let dest = if native_f16 {
                    &mut informational
                } else {
                    &mut compute
                };
                dest.push(c);
                dest.extend(theo);
            }
        }
    }

    // ---------------------------------------------------------------- bandwidth
    let mut sweep_points: Vec<SweepPoint> = Vec::new();
    let mut picks: Vec<LevelPick> = Vec::new();
    let mut sweep_stop = String::new();
    let mut dram_start: Option<u64> = None;
    let mut dram_bytes = opts.dram_bytes.unwrap_or(DEFAULT_DRAM_BYTES).max(MIB);
    let llc = host.llc_level().and_then(|l| host.cache_bytes(l));
    if opts.bandwidth {
        let avail = host::memory_available_bytes();
        if let Some(avail) = avail {
            let limit = (avail / 2) / MIB * MIB;
            if dram_bytes > limit {
                warnings.push(Warning {
                    code: "dram_working_set_shrunk".into(),
                    message: format!(
                        "the DRAM working set was shrunk from {} to {} (half of the {} available memory); free memory or pass a smaller --dram-size to choose it yourself",
                        fmt_bytes(dram_bytes),
                        fmt_bytes(limit.max(MIB)),
                        fmt_bytes(avail)
                    ),
                });
                dram_bytes = limit.max(MIB);
            }
        }
        // fault large buffers in once per probe (1 GiB can take seconds), where first-touch
        // placement cannot matter: one NUMA node. Quick mode skips the huge-page request,
        // whose memory compaction can stall for seconds on a fragmented machine.
        let max_t = threads.iter().copied().max().unwrap_or(1) as u64;
        let _arena = ArenaGuard::new(
            host.numa_nodes.unwrap_or(1) <= 1,
            dram_bytes + 3 * max_t * 2 * MIB,
            opts.mode != Mode::Quick,
        );
        let read_k = BwKernel::best(BwOp::Read, cap).unwrap_or(BwKernel::ReadScalar);
        say(&format!(
            "DRAM read, {} working set, 1 thread",
            fmt_bytes(dram_bytes)
        ));
        let dram1 = team::measure(
            Job::Bandwidth {
                kernel: read_k,
                per_thread_bytes: dram_bytes as usize,
            },
            &cores[..1],
            &pl.dram,
            true,
            0,
        )?;
        let dram_bw = dram1.stats.best;

        // 1-thread read sweep, stopped once two points sit at the DRAM level
        let l1 = host.cache_bytes(1);
        let l2 = host.cache_bytes(2);
        let l3 = host.cache_bytes(3);
        let mut cap_bytes = opts.sweep_max_bytes.unwrap_or(pl.sweep_cap);
        let mut why_cap = "the mode's sweep limit";
        if opts.sweep_max_bytes.is_none() {
            if let Some(llc) = llc {
                let want = (4 * llc).max(64 * MIB);
                if want < cap_bytes {
                    cap_bytes = want;
                    why_cap = "4x the reported last-level cache";
                }
            }
        }
        if let Some(avail) = avail {
            if avail / 4 < cap_bytes {
                cap_bytes = avail / 4;
                why_cap = "a quarter of the available memory";
            }
        }
        let sizes = sweep::sweep_sizes(4096, cap_bytes, pl.steps_per_doubling);
        say(&format!(
            "read sweep 4 KiB .. {} ({} sizes, 1 thread)",
            fmt_bytes(cap_bytes),
            sizes.len()
        ));
        let sweep_t0 = Instant::now();
        sweep_stop = format!("reached the cap {} ({why_cap})", fmt_bytes(cap_bytes));
        let beyond = 2 * l2.unwrap_or(MIB);
        for s in sizes {
            if sweep_t0.elapsed() > pl.sweep_budget {
                sweep_stop = format!(
                    "stopped at {} by the sweep's time budget ({:.1} s)",
                    fmt_bytes(s),
                    pl.sweep_budget.as_secs_f64()
                );
                break;
            }
            let m = team::measure(
                Job::Bandwidth {
                    kernel: read_k,
                    per_thread_bytes: s as usize,
                },
                &cores[..1],
                &pl.sweep,
                false,
                0,
            )?;
            sweep_points.push(SweepPoint {
                working_set_bytes: m.working_set_bytes,
                bytes_per_second: m.stats.best,
                median_bytes_per_second: m.stats.median,
                cv: m.stats.cv,
                unstable: is_unstable(&m.stats),
            });
            let at_dram = sweep_points
                .iter()
                .rev()
                .take(2)
                .filter(|p| p.working_set_bytes > beyond && p.bytes_per_second <= dram_bw * 1.10)
                .count();
            if at_dram == 2 {
                sweep_stop = format!(
                    "stopped at {}: two consecutive sizes at the DRAM level",
                    fmt_bytes(s)
                );
                break;
            }
        }
        dram_start = sweep::dram_level_start(&sweep_points, beyond, dram_bw);
        picks = sweep::pick_levels(&sweep_points, l1, l2, l3, Some(dram_bw));
        say(&format!("sweep {sweep_stop}"));

        // each level x pattern x thread count
        let mut levels: Vec<(MemLevel, u64)> = picks
            .iter()
            .map(|p| (p.level, p.working_set_bytes))
            .collect();
        levels.push((MemLevel::Dram, dram_bytes));
        let mut bw_jobs: Vec<BwJob> = Vec::new();
        for (level, rep) in levels {
            let patterns = if level == MemLevel::Dram {
                pl.dram_patterns
            } else {
                pl.cache_patterns
            };
            let level_no = match level {
                MemLevel::L1 => Some(1),
                MemLevel::L2 => Some(2),
                MemLevel::L3 => Some(3),
                MemLevel::Dram => None,
            };
            let shared_by = level_no
                .and_then(|n| host.cache(n))
                .and_then(|c| c.shared_by_cpus)
                .unwrap_or(1)
                .max(1);
            for &op in patterns {
                let Some(kernel) = BwKernel::best(op, cap) else {
                    continue;
                };
                for &t in &threads {
                    // private caches: each thread its own plateau-sized set; shared ones and
                    // DRAM: the plateau-sized set split between the threads sharing it, but
                    // never small enough to fit in a thread's private cache below
                    let per_thread = match level {
                        MemLevel::Dram => rep / t as u64,
                        _ => (rep / (t.min(shared_by) as u64)).max(if shared_by > 1 {
                            private_below(&host, level_no.unwrap_or(1)) * 2
                        } else {
                            0
                        }),
                    };
                    let total = per_thread.saturating_mul(t as u64);
                    if level == MemLevel::L3 && t > 1 && dram_start.is_some_and(|d| total > d / 2) {
                        say(&format!(
                            "L3   {:<8} x{t}: skipped, {} threads' sets beyond their private caches ({}) exceed the measured L3 plateau",
                            op.name(),
                            t,
                            fmt_bytes(total)
                        ));
                        continue;
                    }
                    bw_jobs.push(BwJob {
                        level,
                        op,
                        kernel,
                        t,
                        per_thread,
                        m: (level == MemLevel::Dram && op == BwOp::Read && t == 1)
                            .then(|| dram1.clone()),
                    });
                }
            }
        }
        // Every job in `cache_passes` windows spread over this phase, keeping the best trial
        // (as for compute: the VM's state moves within seconds; two 2-thread L1/L2
        // measurements one probe apart differed by up to 27% in one window, DRAM non-temporal
        // writes by 12%).
        let cache_split = pl.cache.split(pl.cache_passes);
        let dram_split = pl.dram.split(pl.cache_passes);
        for pass in 1..=pl.cache_passes {
            say(&format!(
                "bandwidth pass {pass}/{} ({} ceilings)",
                pl.cache_passes,
                bw_jobs.len()
            ));
            for j in bw_jobs.iter_mut() {
                let dram = j.level == MemLevel::Dram;
                // the 1-thread DRAM read's first window was measured before the sweep
                if dram && pass == 1 && j.m.is_some() {
                    continue;
                }
                let m = team::measure(
                    Job::Bandwidth {
                        kernel: j.kernel,
                        per_thread_bytes: j.per_thread as usize,
                    },
                    &cores[..j.t as usize],
                    if dram { &dram_split } else { &cache_split },
                    true,
                    // private levels: strangers on idle CPUs do not share them
                    match j.level {
                        MemLevel::L1 | MemLevel::L2 => usable - j.t,
                        MemLevel::L3 | MemLevel::Dram => 0,
                    },
                )?;
                j.m = Some(match j.m.take() {
                    Some(a) => a.merge(m),
                    None => m,
                });
            }
        }
        for j in bw_jobs {
            let (level, op, kernel, t) = (j.level, j.op, j.kernel, j.t);
            let spec = kernel.spec();
            let Some(m) = j.m else { continue };
            {
                let q = Quality::of(&m, timer_res);
                say(&format!(
                    "{:<4} {:<8} x{t} {:>10}: {:8.2} GB/s (median {:.2}){}",
                    level.name(),
                    op.name(),
                    fmt_bytes(m.working_set_bytes),
                    m.stats.best / 1e9,
                    m.stats.median / 1e9,
                    if q.unstable() { "  unstable" } else { "" }
                ));
                let wa = (m.write_allocate_per_rep > 0 && m.work_per_rep > 0).then(|| {
                    m.stats.best * (m.work_per_rep + m.write_allocate_per_rep) as f64
                        / m.work_per_rep as f64
                });
                records.push(Record {
                    label: format!("{} {} x{t}", level.name(), spec.name),
                    quality: q.clone(),
                    foreign_max: m.foreign_max,
                    clock_hz: around_clock(&m),
                    target: CeilingRef::Bandwidth(bandwidth.len()),
                });
                bandwidth.push(BandwidthCeiling {
                    level,
                    source: CeilingSource::Measured,
                    pattern: pattern_of(op),
                    bytes_per_second: m.stats.best,
                    with_write_allocate_bytes_per_second: wa,
                    threads: Some(t),
                    working_set_bytes: Some(m.working_set_bytes),
                    kernel: Some(spec.name.to_string()),
                    isa: Some(spec.isa.name().to_string()),
                    stats: Some(m.stats.clone()),
                    unstable: q.unstable(),
                    note: Some(format!(
                        "nominal bytes count every stream once ({} read + {} write per element){}; {} passes per trial; {}",
                        spec.read_streams,
                        spec.write_streams,
                        if spec.write_allocate_per_elem > 0 {
                            "; regular stores also read each line first (write-allocate), reported separately"
                        } else if op == BwOp::WriteNt {
                            "; non-temporal stores: no write-allocate"
                        } else {
                            ""
                        },
                        m.reps_per_trial,
                        clocks(&m)
                    )),
                });
            }
        }
    }

    // ---------------------------------------------------------------- end of measurements
    say("measuring the core clock again");
    let (freq_end, _) = measure_clock(cores[0], 20, false);
    let activity = snapshot.activity_since(host.logical_cpus);
    // A ceiling measured while the host ran the core slower than it did elsewhere in this
    // probe is not this machine's ceiling and will not repeat: on a VM whose clock moved
    // 3.69 -> 4.09 GHz within a probe, consecutive probes differed by up to 16% on ceilings
    // no other check had flagged.
    let top_clock = records
        .iter()
        .filter_map(|r| r.clock_hz)
        .chain(freq_start)
        .chain(freq_end)
        .fold(0.0f64, f64::max);
    for i in mark_low_clock(&mut records, top_clock) {
        let r = &records[i];
        let note = format!(
            "measured at {:.2} GHz, more than 5% below this probe's highest clock ({:.2} GHz): marked unstable",
            r.clock_hz.unwrap_or(0.0) / 1e9,
            top_clock / 1e9
        );
        let mark = |unstable: &mut bool, n: &mut Option<String>| {
            *unstable = true;
            *n = Some(match n.take() {
                Some(old) => format!("{old}; {note}"),
                None => note.clone(),
            });
        };
        match r.target {
            CeilingRef::Compute(j) => {
                let c = &mut compute[j];
                mark(&mut c.unstable, &mut c.note)
            }
            CeilingRef::Informational(j) => {
                let c = &mut informational[j];
                mark(&mut c.unstable, &mut c.note)
            }
            CeilingRef::Bandwidth(j) => {
                let b = &mut bandwidth[j];
                mark(&mut b.unstable, &mut b.note)
            }
        }
    }

    collect_warnings(
        &mut warnings,
        &Context {
            records: &records,
            host: &host,
            model: &model,
            freq_start,
            freq_end,
            activity,
            bandwidth: &bandwidth,
            dram_bytes,
            dram_start,
            llc,
            sweep_stop: &sweep_stop,
            measured_bandwidth: opts.bandwidth,
            timer_res,
        },
    );
    for n in &host.notes {
        warnings.push(Warning {
            code: "host_incomplete".into(),
            message: n.clone(),
        });
    }
    if let Some(reason) = &host.emulation {
        // loudly, first, and on every ceiling: emulated speed is no hardware's roofline
        warnings.insert(
            0,
            Warning {
                code: "emulated".into(),
                message: format!(
                    "measured under an emulator ({reason}): these ceilings are the emulator's speed and say nothing about any hardware; re-run natively on the device"
                ),
            },
        );
        let note = "emulated: not a hardware ceiling";
        for c in compute.iter_mut() {
            c.unstable = true;
            c.note = Some(
                c.note
                    .take()
                    .map_or(note.into(), |n| format!("{n}; {note}")),
            );
        }
        for b in bandwidth.iter_mut() {
            b.unstable = true;
            b.note = Some(
                b.note
                    .take()
                    .map_or(note.into(), |n| format!("{n}; {note}")),
            );
        }
    }
    for w in &warnings {
        say(&format!("warning [{}]: {}", w.code, w.message));
    }

    let mut host_json = serde_json::to_value(&host).unwrap_or_else(|_| json!({}));
    if let Some(obj) = host_json.as_object_mut() {
        obj.insert(
            "probe".into(),
            json!({
                "mode": opts.mode.name(),
                "threads": threads,
                "isa": cap.name(),
                "duration_seconds": t0.elapsed().as_secs_f64(),
                "timer_resolution_seconds": timer_res,
                "frequency_start_hz": freq_start,
                "frequency_end_hz": freq_end,
                "core_model": {
                    "name": model.name,
                    "fma512_per_cycle": model.fma512_per_cycle,
                    "fma256_per_cycle": model.fma256_per_cycle,
                    "fma128_per_cycle": model.fma128_per_cycle,
                    "source": model.source,
                    "assumption": model.assumption,
                },
                "dram_working_set_bytes": dram_bytes,
                "sweep": sweep_points,
                "sweep_stop": sweep_stop,
                "dram_level_start_bytes": dram_start,
                "levels": picks,
                "informational_compute": informational,
                "other_cpu_load": activity.map(|a| json!({
                    "foreign_cpus": a.foreign_cpus,
                    "steal_fraction": a.steal_fraction,
                })),
                "optimized_build": !cfg!(debug_assertions),
                "huge_pages_requested": opts.bandwidth && opts.mode != Mode::Quick,
            }),
        );
    }
    Ok(HardwareProfile {
        schema_version: HW_SCHEMA_VERSION,
        name: host.cpu_model.clone(),
        description: Some(format!(
            "{} ({}, {} usable CPUs{}), measured by `rooflinebench probe` ({} mode, threads {})",
            host.cpu_model,
            host.arch,
            usable,
            host.hypervisor
                .as_deref()
                .map(|h| format!(", virtualised: {h}"))
                .unwrap_or_default(),
            opts.mode.name(),
            threads
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )),
        source: Some("rooflinebench probe".into()),
        host: Some(host_json),
        compute,
        bandwidth,
        warnings,
    })
}

/// Reserves the bandwidth arena and sets the huge-page policy while alive; undoes both when
/// dropped (also on an early error return).
struct ArenaGuard {
    huge_before: bool,
}

impl ArenaGuard {
    fn new(reserve: bool, bytes: u64, huge: bool) -> ArenaGuard {
        let huge_before = buffer::huge_pages();
        buffer::set_huge_pages(huge);
        if reserve {
            // no arena (allocation refused) only means slower buffer set-up
            let _ = buffer::reserve_arena(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        ArenaGuard { huge_before }
    }
}

impl Drop for ArenaGuard {
    fn drop(&mut self) {
        buffer::release_arenas();
        buffer::set_huge_pages(self.huge_before);
    }
}

struct Context<'a> {
    records: &'a [Record],
    host: &'a HostInfo,
    model: &'a CoreModel,
    freq_start: Option<f64>,
    freq_end: Option<f64>,
    activity: Option<load::Activity>,
    bandwidth: &'a [BandwidthCeiling],
    dram_bytes: u64,
    dram_start: Option<u64>,
    llc: Option<u64>,
    sweep_stop: &'a str,
    measured_bandwidth: bool,
    timer_res: f64,
}

fn list(labels: &[&str]) -> String {
    const SHOW: usize = 6;
    let mut s = labels
        .iter()
        .take(SHOW)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > SHOW {
        s.push_str(&format!(" and {} more", labels.len() - SHOW));
    }
    s
}

fn collect_warnings(w: &mut Vec<Warning>, c: &Context) {
    let mut add = |code: &str, message: String| {
        w.push(Warning {
            code: code.into(),
            message,
        })
    };
    if cfg!(debug_assertions) {
        add(
            "debug_build",
            "this binary was built without optimisations: the harness adds overhead and some kernels run slower; build with `cargo build --release`".into(),
        );
    }
    let pick = |f: fn(&Quality) -> bool| -> Vec<&str> {
        c.records
            .iter()
            .filter(|r| f(&r.quality))
            .map(|r| r.label.as_str())
            .collect()
    };
    let busy = pick(|q| q.busy);
    let foreign_cpus = c.activity.map_or(0.0, |a| a.foreign_cpus);
    if !busy.is_empty() || foreign_cpus > 0.25 {
        let max = c.records.iter().map(|r| r.foreign_max).max().unwrap_or(0);
        add(
            "machine_busy",
            format!(
                "other processes were running during the probe (on average {foreign_cpus:.2} CPUs busy outside it; up to {max} runnable tasks between trials); {} ceiling(s) measured while they ran are marked unstable ({}); stop other work (compilers, browsers, other VMs) and re-run",
                busy.len(),
                list(&busy)
            ),
        );
    }
    if let Some(a) = c.activity {
        if a.steal_fraction > 0.01 {
            add(
                "hypervisor_steal",
                format!(
                    "the hypervisor ran other guests for {:.1}% of this VM's CPU time during the probe: ceilings may be low and noisy; use dedicated vCPUs or re-run when the host is quieter",
                    a.steal_fraction * 100.0
                ),
            );
        }
    }
    let disagree = pick(|q| q.windows_disagree && !q.stats_unstable);
    if !disagree.is_empty() {
        add(
            "windows_disagree",
            format!(
                "{} ceiling(s) differ by more than 5% between the probe's measurement windows (seconds apart): {}; they are marked unstable: on a VM the host moves clocks and vCPU placement; re-run on a quieter machine or with --thorough",
                disagree.len(),
                list(&disagree)
            ),
        );
    }
    let unstable = pick(|q| q.stats_unstable);
    if !unstable.is_empty() {
        add(
            "unstable_ceiling",
            format!(
                "{} ceiling(s) vary between trials (best/median > 1.10 or CV > 5%): {}; the best trial is kept but may not repeat; close other programs and re-run with --thorough",
                unstable.len(),
                list(&unstable)
            ),
        );
    }
    let low = pick(|q| q.low_clock);
    if !low.is_empty() {
        let top = c
            .records
            .iter()
            .filter_map(|r| r.clock_hz)
            .chain(c.freq_start)
            .chain(c.freq_end)
            .fold(0.0f64, f64::max);
        add(
            "low_clock",
            format!(
                "{} ceiling(s) were measured at a core clock more than 5% below the highest this probe saw ({:.2} GHz): {}; they are marked unstable because the host can run faster (turbo, or on a VM the host's load); set the performance governor or re-run when the host is quieter",
                low.len(),
                top / 1e9,
                list(&low)
            ),
        );
    }
    let changed = pick(|q| q.clock_changed);
    if !changed.is_empty() {
        add(
            "clock_changed",
            format!(
                "the core clock changed by more than 5% across {} measurement(s) ({}), which are marked unstable: thermal or power throttling, turbo changes (in a VM: other tenants of the host), or AVX-512 licence changes; cool the device, set the performance governor, and re-run",
                changed.len(),
                list(&changed)
            ),
        );
    }
    if let (Some(a), Some(b)) = (c.freq_start, c.freq_end) {
        if b < 0.95 * a {
            add(
                "throttling_suspected",
                format!(
                    "the core clock fell from {:.2} GHz at the start of the probe to {:.2} GHz at its end; check cooling and the governor, then re-run",
                    a / 1e9,
                    b / 1e9
                ),
            );
        } else if b > a / 0.95 {
            add(
                "clock_changed",
                format!(
                    "the core clock rose from {:.2} GHz at the start of the probe to {:.2} GHz at its end: ceilings measured at different clocks are not comparable; on a VM the host's turbo state moves it; re-run, or compare ceilings as fractions of their theoretical peaks (which use the clock measured around each one)",
                    a / 1e9,
                    b / 1e9
                ),
            );
        }
    }
    if c.freq_start.is_none() {
        add(
            "frequency_unmeasured",
            "the core clock could not be measured on this architecture, so no theoretical peaks were computed; use a device profile's spec-sheet figures instead".into(),
        );
    }
    let short = pick(|q| q.short_trials);
    if !short.is_empty() {
        add(
            "timer_resolution",
            format!(
                "{} measurement(s) had trials shorter than 1000 clock ticks ({:.0} ns each): {}; re-run with --thorough for longer trials",
                short.len(),
                c.timer_res * 1e9,
                list(&short)
            ),
        );
    }
    let unpinned = pick(|q| q.unpinned);
    if !unpinned.is_empty() {
        add(
            "threads_not_pinned",
            format!(
                "{} measurement(s) could not pin their threads to CPUs (container or OS restriction): {}; results may include migrations; allow sched_setaffinity and re-run",
                unpinned.len(),
                list(&unpinned)
            ),
        );
    }
    if let Some(a) = &c.model.assumption {
        add(
            "theoretical_assumption",
            format!("theoretical peaks for {}: {a}", c.model.name),
        );
    }
    // caches: sysfs vs cpuid, reported vs measured
    for cache in &c.host.caches {
        if let (Some(s), Some(q)) = (cache.size_bytes, cache.cpuid_size_bytes) {
            if s != q {
                add(
                    "cache_size_mismatch",
                    format!(
                        "L{} {} cache: sysfs says {}, cpuid says {}; sysfs is used",
                        cache.level,
                        cache.kind,
                        fmt_bytes(s),
                        fmt_bytes(q)
                    ),
                );
            }
        }
    }
    if !c.measured_bandwidth {
        return;
    }
    if let (Some(llc), Some(start)) = (c.llc, c.dram_start) {
        // a cache of size S reaches the DRAM level only at 2-4 S: reaching it within the
        // reported size means the usable cache is at most half of it
        if start <= llc {
            add(
                "llc_smaller_than_reported",
                format!(
                    "the last-level cache is reported as {}, but the read bandwidth reaches the DRAM level at {}: the effective cache is smaller (virtual machines often report the host's whole L3); the L3 ceiling was measured inside the measured plateau",
                    fmt_bytes(llc),
                    fmt_bytes(start)
                ),
            );
        }
    }
    if let Some(llc) = c.llc {
        let confirmed = c.dram_start.is_some_and(|s| s <= c.dram_bytes / 2);
        if c.dram_bytes < 4 * llc && !confirmed {
            add(
                "dram_working_set_small",
                format!(
                    "the DRAM working set ({}) is less than 4x the reported last-level cache ({}) and the sweep did not show the DRAM level below half of it (sweep {}): the DRAM ceiling may include cache hits; pass a larger --dram-size if memory allows",
                    fmt_bytes(c.dram_bytes),
                    fmt_bytes(llc),
                    c.sweep_stop
                ),
            );
        }
    }
    // plateaus should not increase from L1 to DRAM (read, fewest threads)
    let min_t = c.bandwidth.iter().filter_map(|b| b.threads).min();
    let reads: Vec<&BandwidthCeiling> = MemLevel::ALL
        .iter()
        .filter_map(|l| {
            c.bandwidth
                .iter()
                .find(|b| b.level == *l && b.pattern == BwPattern::Read && b.threads == min_t)
        })
        .collect();
    for pair in reads.windows(2) {
        if pair[1].bytes_per_second > pair[0].bytes_per_second * 1.05 {
            add(
                "non_monotone_plateaus",
                format!(
                    "{} read bandwidth ({:.1} GB/s) exceeds {} ({:.1} GB/s): the plateau sizes may be wrong for this machine or a measurement was disturbed; re-run with --thorough",
                    pair[1].level,
                    pair[1].bytes_per_second / 1e9,
                    pair[0].level,
                    pair[0].bytes_per_second / 1e9
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 3's repeatability: a ceiling measured while the host ran the core more than 5%
    /// slower than elsewhere in the same probe is flagged, not printed as stable.
    #[test]
    fn ceilings_measured_below_the_probes_top_clock_are_unstable() {
        let quality = Quality {
            stats_unstable: false,
            windows_disagree: false,
            busy: false,
            clock_changed: false,
            short_trials: false,
            unpinned: false,
            low_clock: false,
        };
        let rec = |clock: Option<f64>| Record {
            label: String::new(),
            quality: quality.clone(),
            foreign_max: 0,
            clock_hz: clock,
            target: CeilingRef::Bandwidth(0),
        };
        let mut r = vec![
            rec(Some(4.09e9)),
            rec(Some(3.69e9)),
            rec(Some(3.95e9)),
            rec(None),
        ];
        assert_eq!(mark_low_clock(&mut r, 4.09e9), vec![1]);
        assert!(r[1].quality.unstable() && r[1].quality.low_clock);
        assert!(!r[0].quality.unstable() && !r[2].quality.unstable() && !r[3].quality.unstable());
    }

    /// Issue 7: emulated timings must not become ceilings unless the user insists.
    #[test]
    fn probe_refuses_under_emulation_unless_allowed() {
        let e = emulation_gate("qemu", false, None).unwrap_err();
        assert!(matches!(e, ProbeError::Emulated { .. }));
        assert!(e.to_string().contains("--allow-emulated"), "{e}");
        assert!(emulation_gate("qemu", false, Some("".into())).is_err());
        assert!(emulation_gate("qemu", true, None).is_ok());
        assert!(emulation_gate("qemu", false, Some("1".into())).is_ok());
    }

    #[test]
    fn thread_lists_are_validated() {
        assert_eq!(resolve_threads(&[], 4).unwrap(), vec![1, 4]);
        assert_eq!(resolve_threads(&[], 1).unwrap(), vec![1]);
        assert_eq!(resolve_threads(&[2, 1, 2], 4).unwrap(), vec![1, 2]);
        assert!(matches!(
            resolve_threads(&[0], 4),
            Err(ProbeError::ThreadsZero)
        ));
        let e = resolve_threads(&[1, 9], 4).unwrap_err();
        assert!(matches!(
            e,
            ProbeError::TooManyThreads {
                requested: 9,
                available: 4
            }
        ));
        assert!(e.to_string().contains("9") && e.to_string().contains("4 CPUs"));
    }

    #[test]
    fn best_kernel_per_precision_is_unique_and_allowed() {
        let cap = isa::best().unwrap();
        let ks = compute_kernels(cap, false);
        let mut paths: Vec<_> = ks.iter().map(|k| k.spec().path).collect();
        let n = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), n);
        assert!(ks.iter().all(|k| k.allowed(cap)));
        assert!(compute_kernels(Isa::Scalar, true)
            .iter()
            .all(|k| k.spec().isa == Isa::Scalar));
    }

    /// Windows seconds apart whose best trials differ by more than 5% flag the ceiling.
    #[test]
    fn ceilings_whose_windows_disagree_are_unstable() {
        assert!(!windows_disagree(&[100.0]));
        assert!(!windows_disagree(&[100.0, 96.0, 99.0]));
        assert!(windows_disagree(&[100.0, 94.0]));
        assert!(!windows_disagree(&[]));
    }
}
