//! A dependent integer-add chain whose cycle count is known: timing it measures the core clock.
//!
//! Virtual machines report no `cpufreq` and `/proc/cpuinfo` shows the TSC rate, not the core
//! clock, so the probe measures it: `CHAIN` dependent `add reg, reg` per loop iteration, each
//! with a latency of exactly 1 cycle on every x86-64 core since the P6 and on every Arm core
//! this tool targets (Agner Fog, instruction tables; Arm Cortex software optimization guides).
//! The addend is a register on purpose: with `add reg, 1` this Granite Rapids-class core ran
//! the chain at "21 GHz" (its renamer appears to fold chains of immediate adds, as reported for
//! Golden Cove and later cores), so an immediate chain measures the renamer, not the clock.
//! The loop counter runs on a separate dependency chain and retires in parallel, so one
//! iteration costs `CHAIN` cycles. Frequency = cycles / seconds. Not a power or turbo model.
//!
//! objdump (rustc 1.95): 64 x `add rax, rcx` then `dec`/`jne`, as written.

/// Dependent adds per loop iteration.
pub const CHAIN: u64 = 64;

/// Whether this build can measure the clock this way.
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Runs `iters` iterations of the chain: `iters * CHAIN` core cycles. Returns the chain's value
/// (`iters * CHAIN`) so the work cannot be removed; 0 where unsupported.
#[inline(never)]
pub fn add_chain(iters: u64) -> u64 {
    #[allow(unused_mut)]
    let mut x: u64 = 0;
    if iters == 0 {
        return 0;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: pure register arithmetic on the named operands; no memory, no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            ".rept 64",
            "add {x}, {one}",
            ".endr",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x,
            one = in(reg) 1u64,
            n = inout(reg) iters => _,
            options(nomem, nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!(
            "2:",
            ".rept 64",
            "add {x}, {x}, {one}",
            ".endr",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            x = inout(reg) x,
            one = in(reg) 1u64,
            n = inout(reg) iters => _,
            options(nomem, nostack),
        );
    }
    x
}

/// Vector instruction mixes that may change the clock (Intel's AVX "licences").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    /// Scalar `vfmadd213ss`: light, the control.
    ScalarFma,
    /// 256-bit `vfmadd213ps ymm`.
    Avx2Fma,
    /// 512-bit `vfmadd213ps zmm`: "heavy" AVX-512, down-clocked on many Intel server cores.
    Avx512Fma,
}

/// Dependent adds per iteration of a mix loop (the loop's critical path in cycles).
pub const MIX_CHAIN: u64 = 24;

/// Runs `iters` iterations of 16 independent FMAs of the given width beside `MIX_CHAIN`
/// dependent register adds. The FMAs need 8 of the 24 cycles on two FMA ports, so the add chain
/// sets the pace and the time measures the clock the core runs at *while executing that
/// mix*. Compare with [`Mix::ScalarFma`], which has the same shape but light instructions, to
/// cancel the small cost of port sharing. `None` where the CPU lacks the instructions.
///
/// objdump: as written (asm), 2 x 8 `vfmadd213ps zmm2..9, zmm0, zmm1` then 24 `add r, r`.
#[inline(never)]
pub fn mix_chain(mix: Mix, iters: u64) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = is_x86_feature_detected!("fma");
        let iters = iters.max(1);
        // SAFETY: each arm runs only after checking the features its function enables.
        unsafe {
            match mix {
                Mix::ScalarFma if fma => Some(x86_mix::scalar(iters)),
                Mix::Avx2Fma if fma && is_x86_feature_detected!("avx2") => {
                    Some(x86_mix::ymm(iters))
                }
                Mix::Avx512Fma if is_x86_feature_detected!("avx512f") => Some(x86_mix::zmm(iters)),
                _ => None,
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (mix, iters);
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_mix {
    use std::arch::asm;

    macro_rules! mix {
        ($name:ident, $feat:literal, $ins:literal, $r:literal) => {
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name(iters: u64) -> u64 {
                let mut x = 0u64;
                asm!(
                    concat!("vxorps ", $r, "0, ", $r, "0, ", $r, "0"),
                    concat!("vxorps ", $r, "1, ", $r, "1, ", $r, "1"),
                    "2:",
                    ".rept 2",
                    concat!($ins, " ", $r, "2, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "3, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "4, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "5, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "6, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "7, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "8, ", $r, "0, ", $r, "1"),
                    concat!($ins, " ", $r, "9, ", $r, "0, ", $r, "1"),
                    ".endr",
                    ".rept 24",
                    "add {x}, {one}",
                    ".endr",
                    "dec {n}",
                    "jnz 2b",
                    x = inout(reg) x,
                    one = in(reg) 1u64,
                    n = inout(reg) iters => _,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
                    out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _,
                    options(nomem, nostack),
                );
                x
            }
        };
    }
    mix!(scalar, "fma", "vfmadd213ss", "xmm");
    mix!(ymm, "avx2,fma", "vfmadd213ps", "ymm");
    mix!(zmm, "avx512f", "vfmadd213ps", "zmm");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_do_the_declared_number_of_adds_or_report_missing_features() {
        for mix in [Mix::ScalarFma, Mix::Avx2Fma, Mix::Avx512Fma] {
            match mix_chain(mix, 10) {
                Some(x) => assert_eq!(x, 10 * MIX_CHAIN, "{mix:?}"),
                None => println!("skip {mix:?}: not on this CPU"),
            }
        }
    }

    #[test]
    fn chain_does_the_declared_number_of_adds() {
        if !SUPPORTED {
            println!("skip: no add chain on this architecture");
            return;
        }
        for n in [0u64, 1, 7, 8, 9, 65, 1000] {
            assert_eq!(add_chain(n), n * CHAIN);
        }
    }
}
