//! Ceiling microkernels: compute peaks per precision and bandwidth per memory level.
//!
//! Each kernel is written for the roof, not for usefulness: register-resident operands with
//! enough independent accumulators to hide latency ([`compute`]), or long unit-stride streams
//! ([`bandwidth`]). Each declares its accounting in a `const` spec beside it (FLOPs per
//! iteration, bytes per element, streams, instructions), in the spirit of likwid-bench's kernel
//! headers (format only; no code taken), and each has a scalar twin that re-executes the same
//! arithmetic one lane at a time while tallying what it does. Tests check the SIMD kernel's
//! result against the twin and the declared accounting against the twin's tally.
//!
//! This module does no timing and no threading: `rooflinebench-bench` owns the harness. It is
//! deliberately not a general SIMD library.

pub mod bandwidth;
pub mod buffer;
pub mod compute;
pub mod freq;

/// What a scalar twin counted while re-executing a kernel: the oracle for declared accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Floating-point (or integer multiply-add) operations; one FMA counts 2.
    pub flops: u64,
    /// Bytes loaded from the buffers.
    pub bytes_read: u64,
    /// Bytes stored to the buffers.
    pub bytes_written: u64,
    /// Bytes stored with regular (write-allocating) stores: each such line is first read into
    /// the cache, an extra read the nominal count leaves out. Non-temporal stores add none.
    pub write_allocate_bytes: u64,
}

/// Why a ceiling kernel cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CeilingError {
    #[error("kernel {kernel} needs {needs}, which this CPU lacks")]
    Unsupported {
        kernel: &'static str,
        needs: &'static str,
    },
    #[error("kernel {kernel} needs buffers of equal length (got {expected} and {got} elements)")]
    LengthMismatch {
        kernel: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("cannot allocate a {bytes}-byte buffer")]
    Alloc { bytes: usize },
    #[error("kernel {kernel} panicked (a bug: please report it)")]
    Panicked { kernel: &'static str },
}

/// Hides a value from the optimiser without emitting an instruction, so that a loop-invariant
/// operand is not hoisted out of a ceiling loop (and independent scalar accumulators are not
/// packed into SIMD registers by the SLP vectoriser). On targets without a register class
/// here it is a no-op; the scalar kernels are then whatever the compiler makes of them.
macro_rules! opaque {
    ($x:expr, $class:ident) => {
        // SAFETY: an empty asm block that only claims to modify a register-held value.
        #[allow(unused_unsafe, asm_sub_register)]
        unsafe {
            ::std::arch::asm!("/* {0} */", inout($class) $x, options(nomem, nostack, preserves_flags));
        }
    };
}
pub(crate) use opaque;

/// [`opaque!`] for scalars: `xmm_reg`/`reg` on x86-64, `vreg`/`reg` on aarch64, nothing elsewhere.
macro_rules! opaque_f32 {
    ($x:expr) => {
        #[cfg(target_arch = "x86_64")]
        $crate::ceiling::opaque!($x, xmm_reg);
        #[cfg(target_arch = "aarch64")]
        $crate::ceiling::opaque!($x, vreg);
    };
}
pub(crate) use opaque_f32;

/// [`opaque!`] for 32-bit integers.
macro_rules! opaque_int {
    ($x:expr) => {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an empty asm block that only claims to modify a register-held value.
        unsafe {
            ::std::arch::asm!("/* {0:e} */", inout(reg) $x, options(nomem, nostack, preserves_flags));
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        unsafe {
            ::std::arch::asm!("/* {0:w} */", inout(reg) $x, options(nomem, nostack, preserves_flags));
        }
    };
}
pub(crate) use opaque_int;
