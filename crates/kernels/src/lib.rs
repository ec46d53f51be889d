//! The only crate with SIMD `unsafe`: ISA detection, ceiling microkernels and engine kernels.
//!
//! Every kernel has a scalar twin that is both its fallback and its test oracle. The ISA is
//! chosen once at run time (never at compile time: a ceiling tool must use what the CPU has).

pub mod ceiling;
pub mod engine;
pub mod isa;
pub mod quant;
pub mod xorshift;
