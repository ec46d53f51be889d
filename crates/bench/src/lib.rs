//! Measurement harness: timing, warm-up, repetitions, statistics, host description and the
//! hardware-ceilings probe. It measures; interpretation lives in `rooflinebench-model`.
//!
//! Entry point: [`probe::run_probe`] returns a
//! [`rooflinebench_model::hardware::HardwareProfile`]; [`table::render`] prints one.

pub mod host;
pub mod load;
pub mod peaks;
pub mod probe;
pub mod stats;
pub mod sweep;
pub mod table;
pub mod team;
pub mod timer;

use rooflinebench_kernels::ceiling::CeilingError;
use rooflinebench_kernels::isa::IsaError;

/// Why a probe cannot run. Measurement-quality problems are not errors: they are warnings in
/// the profile.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("--threads must list counts of at least 1 (got 0)")]
    ThreadsZero,
    #[error("--threads {requested} is more than the {available} CPUs this process may use")]
    TooManyThreads { requested: u32, available: u32 },
    #[error("cannot list the CPUs this process may run on, so threads cannot be pinned")]
    NoCores,
    #[error("this process runs under an emulator ({reason}): emulated timings are not the hardware's ceilings; run natively, or pass --allow-emulated to measure anyway (the profile is then marked untrustworthy)")]
    Emulated { reason: String },
    #[error(transparent)]
    Isa(#[from] IsaError),
    #[error(transparent)]
    Kernel(#[from] CeilingError),
}
