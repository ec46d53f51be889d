//! The timing loop: a team of pinned worker threads running one ceiling kernel in lock-step.
//!
//! Each worker is pinned to its own logical CPU before it allocates and writes its buffers
//! (first touch puts the pages on its NUMA node; PITFALLS.md #23: nothing is timed untouched).
//! A trial releases all spinning workers at once; each timestamps its own start and end with
//! the monotonic clock, and the trial lasts from the earliest start to the latest end, so the
//! rate never benefits from a late starter. Warm-up trials calibrate the repetition count so a
//! trial lasts at least the policy's target; then trials repeat under [`RepeatPolicy`].
//! Between trials, with the workers parked, the coordinator samples the runnable-task count
//! ([`crate::load`]) to notice strangers. Worker 0 measures the clock before and after.
//! The thread count is always explicit (PITFALLS.md #19); nothing here picks it.

use crate::host::measure_frequency;
use crate::load::foreign_runnable;
use crate::stats::{summarize, RepeatPolicy};
use crate::ProbeError;
use core_affinity::CoreId;
use rooflinebench_kernels::ceiling::bandwidth::{self, BwBuffers, BwKernel};
use rooflinebench_kernels::ceiling::compute::{self, ComputeKernel};
use rooflinebench_kernels::ceiling::CeilingError;
use rooflinebench_model::hardware::SampleStats;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What every worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// One repetition = one loop iteration of the kernel.
    Compute(ComputeKernel),
    /// One repetition = one pass over the worker's own arrays of `per_thread_bytes` in total.
    Bandwidth {
        kernel: BwKernel,
        per_thread_bytes: usize,
    },
}

impl Job {
    pub fn name(&self) -> &'static str {
        match self {
            Job::Compute(k) => k.name(),
            Job::Bandwidth { kernel, .. } => kernel.name(),
        }
    }
}

/// One measurement: every trial's rate plus what produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// FLOP/s (compute) or nominal bytes/s (bandwidth), one per trial, in order.
    pub stats: SampleStats,
    pub threads: u32,
    pub reps_per_trial: u64,
    /// FLOPs or nominal bytes of one repetition on one thread.
    pub work_per_rep: u64,
    /// Write-allocate bytes of one repetition on one thread (bandwidth kernels).
    pub write_allocate_per_rep: u64,
    /// Bytes of all workers' arrays together.
    pub working_set_bytes: u64,
    /// Shortest trial, seconds (compare with the timer resolution).
    pub min_trial_seconds: f64,
    pub freq_before_hz: Option<f64>,
    pub freq_after_hz: Option<f64>,
    /// Fraction of between-trial samples with more other runnable tasks than tolerated.
    pub foreign_fraction: f64,
    /// Largest number of other runnable tasks seen.
    pub foreign_max: u32,
    /// Every worker was pinned to its own CPU.
    pub pinned: bool,
    pub wall_seconds: f64,
    /// The best trial of each window this measurement merges (one entry when not merged).
    pub window_bests: Vec<f64>,
}

impl Measurement {
    /// One measurement of the same job from two runs at different moments: every trial of
    /// both, the clocks of the run that holds the best trial (the clock that best ran at),
    /// the worst disturbance of either.
    pub fn merge(self, other: Measurement) -> Measurement {
        let (n_a, n_b) = (self.stats.samples.len(), other.stats.samples.len());
        let mut samples = self.stats.samples.clone();
        samples.extend_from_slice(&other.stats.samples);
        let (best_run, _) = if other.stats.best > self.stats.best {
            (&other, &self)
        } else {
            (&self, &other)
        };
        let total = (n_a + n_b).max(1) as f64;
        Measurement {
            stats: summarize(&samples),
            threads: self.threads,
            reps_per_trial: best_run.reps_per_trial,
            work_per_rep: self.work_per_rep,
            write_allocate_per_rep: self.write_allocate_per_rep,
            working_set_bytes: self.working_set_bytes,
            min_trial_seconds: self.min_trial_seconds.min(other.min_trial_seconds),
            freq_before_hz: best_run.freq_before_hz,
            freq_after_hz: best_run.freq_after_hz,
            foreign_fraction: (self.foreign_fraction * n_a as f64
                + other.foreign_fraction * n_b as f64)
                / total,
            foreign_max: self.foreign_max.max(other.foreign_max),
            pinned: self.pinned && other.pinned,
            wall_seconds: self.wall_seconds + other.wall_seconds,
            window_bests: [self.window_bests.as_slice(), other.window_bests.as_slice()].concat(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Run(u64),
    Freq,
    Stop,
}

#[derive(Default)]
struct Slot {
    t0: Option<Instant>,
    t1: Option<Instant>,
    err: Option<CeilingError>,
    freq: Option<f64>,
    pinned: bool,
    working_set: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lock-step control shared by the coordinator and the workers.
///
/// Workers spin on `generation` between trials (on their own pinned CPUs), so a trial starts
/// on every CPU within about a microsecond of the release; a futex barrier would add tens of
/// microseconds of wake-up skew to every trial. The coordinator sleeps during a trial and is
/// unparked by the last worker to finish, so it never competes with the workers.
struct Control {
    generation: AtomicU64,
    remaining: AtomicUsize,
    cmd: Mutex<Cmd>,
    coordinator: std::thread::Thread,
}

impl Control {
    /// Issues `c` to every worker and, unless it is `Stop`, waits until all have done it.
    fn step(&self, c: Cmd, threads: usize) {
        *lock(&self.cmd) = c;
        let wait = !matches!(c, Cmd::Stop);
        self.remaining
            .store(if wait { threads } else { 0 }, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        while wait && self.remaining.load(Ordering::Acquire) != 0 {
            std::thread::park();
        }
    }
}

/// Repetition count that makes a trial of `seconds` at `reps` last about `target` (x1.2).
fn scaled_reps(reps: u64, seconds: f64, target: f64) -> u64 {
    if seconds.is_nan() || seconds <= 0.0 {
        return reps.saturating_mul(16);
    }
    let factor = (target / seconds * 1.2).clamp(1.0, 1000.0);
    ((reps as f64 * factor).ceil() as u64).max(reps.saturating_add(1))
}

/// Runs `job` on `cores.len()` workers (worker i pinned to `cores[i]`) under `policy`.
///
/// `tolerated` is how many other runnable tasks cannot disturb this job: the number of CPUs
/// it leaves idle, for a job that only uses core-private resources (registers, L1, L2); 0
/// for one that shares the last-level cache or memory with every CPU. A between-trial sample
/// with more strangers than that counts as disturbed.
pub fn measure(
    job: Job,
    cores: &[CoreId],
    policy: &RepeatPolicy,
    with_frequency: bool,
    tolerated: u32,
) -> Result<Measurement, ProbeError> {
    let threads = cores.len();
    if threads == 0 {
        return Err(ProbeError::ThreadsZero);
    }
    let started = Instant::now();
    let ctl = Control {
        generation: AtomicU64::new(0),
        remaining: AtomicUsize::new(0),
        cmd: Mutex::new(Cmd::Stop),
        coordinator: std::thread::current(),
    };
    let slots: Vec<Mutex<Slot>> = (0..threads).map(|_| Mutex::new(Slot::default())).collect();

    std::thread::scope(|s| -> Result<Measurement, ProbeError> {
        for (i, core) in cores.iter().enumerate() {
            let (ctl, slot) = (&ctl, &slots[i]);
            let core = *core;
            s.spawn(move || worker(job, i == 0, core, ctl, slot));
        }
        // first step: every worker has pinned itself and written its buffers
        ctl.step(Cmd::Run(0), threads);
        if let Some(e) = slots.iter().find_map(|m| lock(m).err.take()) {
            ctl.step(Cmd::Stop, threads);
            return Err(e.into());
        }
        let pinned = slots.iter().all(|m| lock(m).pinned);
        let working_set: u64 = slots.iter().map(|m| lock(m).working_set).sum();
        let (work_per_rep, wa_per_rep) = match job {
            Job::Compute(k) => (k.spec().flops_per_iter, 0),
            Job::Bandwidth { kernel, .. } => {
                let spec = kernel.spec();
                let per_thread = working_set / threads as u64;
                let elems = per_thread / (4 * spec.op.arrays() as u64);
                (
                    elems * (spec.bytes_read_per_elem + spec.bytes_written_per_elem),
                    elems * spec.write_allocate_per_elem,
                )
            }
        };
        let freq = || -> Option<f64> {
            ctl.step(Cmd::Freq, threads);
            lock(&slots[0]).freq.take()
        };
        // (team span: earliest start to latest end, longest single worker)
        let trial = |reps: u64| -> Result<(f64, f64), ProbeError> {
            ctl.step(Cmd::Run(reps), threads);
            let mut t0: Option<Instant> = None;
            let mut t1: Option<Instant> = None;
            let mut longest = 0f64;
            for m in &slots {
                let mut g = lock(m);
                if let Some(e) = g.err.take() {
                    return Err(e.into());
                }
                if let (Some(a), Some(b)) = (g.t0, g.t1) {
                    longest = longest.max(b.saturating_duration_since(a).as_secs_f64());
                    t0 = Some(t0.map_or(a, |x| x.min(a)));
                    t1 = Some(t1.map_or(b, |x| x.max(b)));
                }
            }
            let span = match (t0, t1) {
                (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
                _ => 0.0,
            };
            Ok((span, longest))
        };

        let result = (|| -> Result<Measurement, ProbeError> {
            let freq_before = if with_frequency { freq() } else { None };
            // warm-up and calibration, on the workers' own kernel time (not on the span,
            // which on a busy machine includes waiting to be scheduled)
            let target = policy.target_trial.as_secs_f64();
            let mut reps = 1u64;
            let warm_start = Instant::now();
            loop {
                let (_, longest) = trial(reps)?;
                if longest < target {
                    reps = scaled_reps(reps, longest, target);
                    continue;
                }
                if warm_start.elapsed() >= policy.warmup {
                    break;
                }
            }
            let mut rates = Vec::new();
            let mut min_trial = f64::INFINITY;
            let mut foreign_hits = 0usize;
            let mut foreign_samples = 0usize;
            let mut foreign_max = 0u32;
            let trials_start = Instant::now();
            while policy.wants_more(&rates, trials_start.elapsed()) {
                let (secs, longest) = trial(reps)?;
                let total_work = (threads as u64)
                    .saturating_mul(reps)
                    .saturating_mul(work_per_rep) as f64;
                min_trial = min_trial.min(secs);
                rates.push(if secs > 0.0 { total_work / secs } else { 0.0 });
                // calibrated on a disturbed (slow) warm-up trial: lengthen the next ones
                if longest < target / 2.0 {
                    reps = scaled_reps(reps, longest, target);
                }
                // the workers spin (runnable) between trials: they are not strangers
                if let Some(f) = foreign_runnable(threads as u32) {
                    foreign_samples += 1;
                    if f > tolerated {
                        foreign_hits += 1;
                    }
                    foreign_max = foreign_max.max(f);
                }
            }
            let freq_after = if with_frequency { freq() } else { None };
            let stats = summarize(&rates);
            Ok(Measurement {
                window_bests: vec![stats.best],
                stats,
                threads: threads as u32,
                reps_per_trial: reps,
                work_per_rep,
                write_allocate_per_rep: wa_per_rep,
                working_set_bytes: working_set,
                min_trial_seconds: min_trial,
                freq_before_hz: freq_before,
                freq_after_hz: freq_after,
                foreign_fraction: if foreign_samples > 0 {
                    foreign_hits as f64 / foreign_samples as f64
                } else {
                    0.0
                },
                foreign_max,
                pinned,
                wall_seconds: started.elapsed().as_secs_f64(),
            })
        })();
        ctl.step(Cmd::Stop, threads);
        result
    })
}

fn worker(job: Job, is_first: bool, core: CoreId, ctl: &Control, slot: &Mutex<Slot>) {
    let pinned = core_affinity::set_for_current(core);
    let mut bufs = match job {
        Job::Bandwidth {
            kernel,
            per_thread_bytes,
        } => match BwBuffers::new(kernel.spec().op, per_thread_bytes) {
            Ok(b) => Some(b),
            Err(e) => {
                lock(slot).err = Some(e);
                None
            }
        },
        Job::Compute(_) => None,
    };
    {
        let mut g = lock(slot);
        g.pinned = pinned;
        g.working_set = bufs.as_ref().map_or(0, |b| b.bytes() as u64);
    }
    let mut seen = 0u64;
    loop {
        // spin until the next command; yield now and then so an unpinned coordinator that
        // shares this CPU gets to run
        let mut spins = 0u32;
        loop {
            let g = ctl.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(65_536) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let c = *lock(&ctl.cmd);
        match c {
            Cmd::Stop => break,
            Cmd::Freq => {
                if is_first {
                    // several short chains: one of them likely runs undisturbed
                    let f = measure_frequency(5, 0.0005);
                    lock(slot).freq = f;
                }
            }
            Cmd::Run(0) => {}
            Cmd::Run(reps) => {
                let t0 = Instant::now();
                // a panicking kernel must not leave the coordinator waiting forever
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match (job, bufs.as_mut()) {
                        (Job::Compute(k), _) => compute::run(k, reps).map(|_| ()),
                        (Job::Bandwidth { kernel, .. }, Some(b)) => {
                            bandwidth::run(kernel, b, reps).map(|_| ())
                        }
                        (Job::Bandwidth { .. }, None) => Ok(()),
                    }
                }))
                .unwrap_or(Err(CeilingError::Panicked { kernel: job.name() }));
                let t1 = Instant::now();
                let mut g = lock(slot);
                g.t0 = Some(t0);
                g.t1 = Some(t1);
                if let Err(e) = r {
                    g.err = Some(e);
                }
            }
        }
        if ctl.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            ctl.coordinator.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn quick() -> RepeatPolicy {
        RepeatPolicy {
            warmup: Duration::from_millis(2),
            target_trial: Duration::from_millis(1),
            min_trials: 3,
            max_trials: 5,
            budget: Duration::from_millis(20),
        }
    }

    fn cores(n: usize) -> Vec<CoreId> {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        ids.into_iter().take(n).collect()
    }

    #[test]
    fn compute_measurement_has_samples_and_positive_rates() {
        let c = cores(1);
        if c.is_empty() {
            println!("skip: cannot list cores");
            return;
        }
        let m = measure(
            Job::Compute(ComputeKernel::MulAddF32Scalar),
            &c,
            &quick(),
            true,
            0,
        )
        .unwrap();
        assert!(m.stats.samples.len() >= 3);
        assert!(m.stats.samples.iter().all(|r| r.is_finite() && *r > 0.0));
        assert!(m.min_trial_seconds > 0.0);
        assert_eq!(m.work_per_rep, compute::MULADD_F32_SCALAR.flops_per_iter);
    }

    #[test]
    fn bandwidth_measurement_counts_every_stream() {
        let c = cores(1);
        if c.is_empty() {
            println!("skip: cannot list cores");
            return;
        }
        let job = Job::Bandwidth {
            kernel: BwKernel::TriadScalar,
            per_thread_bytes: 3 * 4096,
        };
        let m = measure(job, &c, &quick(), false, 0).unwrap();
        assert_eq!(m.working_set_bytes, 3 * 4096);
        // triad: 1024 elements x (8 read + 4 written), plus 4 write-allocate
        assert_eq!(m.work_per_rep, 1024 * 12);
        assert_eq!(m.write_allocate_per_rep, 1024 * 4);
    }

    #[test]
    fn calibration_grows_reps_and_never_overflows() {
        assert!(scaled_reps(1, 0.0, 0.01) > 1);
        assert_eq!(scaled_reps(u64::MAX, 0.0, 0.01), u64::MAX);
        assert!(scaled_reps(10, 0.001, 0.01) >= 100);
        assert!(scaled_reps(u64::MAX / 2, 1e-9, 1.0) >= u64::MAX / 2);
    }

    fn run_of(samples: &[f64], clock: f64, foreign: f64) -> Measurement {
        Measurement {
            stats: summarize(samples),
            threads: 1,
            reps_per_trial: 10,
            work_per_rep: 64,
            write_allocate_per_rep: 0,
            working_set_bytes: 0,
            min_trial_seconds: 1e-3,
            freq_before_hz: Some(clock),
            freq_after_hz: Some(clock),
            foreign_fraction: foreign,
            foreign_max: 1,
            pinned: true,
            wall_seconds: 0.1,
            window_bests: vec![summarize(samples).best],
        }
    }

    /// Windows at different moments merge into one measurement: all trials, the best of
    /// both, and the clock of the window that ran the best trial.
    #[test]
    fn merged_windows_keep_every_trial_and_the_best_windows_clock() {
        let slow = run_of(&[90.0, 91.0, 92.0], 3.6e9, 0.0);
        let fast = run_of(&[100.0, 101.0, 102.0], 4.1e9, 1.0);
        let m = slow.merge(fast);
        assert_eq!(m.stats.samples.len(), 6);
        assert_eq!(m.stats.best, 102.0);
        assert_eq!(m.freq_before_hz, Some(4.1e9));
        assert!((m.foreign_fraction - 0.5).abs() < 1e-12);
        assert!((m.wall_seconds - 0.2).abs() < 1e-12);
        assert_eq!(m.window_bests, vec![92.0, 102.0]);
    }
}
