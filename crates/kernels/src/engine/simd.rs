//! Shared machinery of the engine kernels: per-ISA wrappers of one generic body, dispatch, and
//! a branch-free `exp` that vectorizes.
//!
//! Checked with `objdump -d` (Sapphire Rapids build): the avx512 variants of `silu_mul` and
//! `softmax` compile to zmm loops with `vrndscaleps` and no scalar conversions.
//!
//! Small kernels (norms, activations, softmax, RoPE) are written once as a "lanes" body: plain
//! Rust over fixed 16-element chunks with per-lane accumulators, which LLVM turns into one AVX-512
//! register or two AVX2 registers when the body is inlined into a `#[target_feature]` wrapper.
//! Their scalar twins are separate, deliberately naive sequential loops (the test oracle).

/// Lane count of the generic bodies: one zmm of f32, two ymm.
pub const LANES: usize = 16;

/// Defines `$avx2` and `$avx512`: the generic `$body` compiled for those ISAs.
macro_rules! isa_variants {
    ($body:ident => $avx2:ident, $avx512:ident; ($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)?) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx2($($a: $t),*) $(-> $r)? {
            $body($($a),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx512($($a: $t),*) $(-> $r)? {
            $body($($a),*)
        }
        // On aarch64 the `$avx2` name holds the NEON build of the same body (`macro_rules!`
        // cannot mint a `_neon` identifier); `dispatch!` calls it for `Isa::Neon`.
        #[cfg(target_arch = "aarch64")]
        #[target_feature(enable = "neon")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx2($($a: $t),*) $(-> $r)? {
            $body($($a),*)
        }
    };
}
pub(crate) use isa_variants;

/// Runs the variant for `$isa`, or the scalar twin when the ISA is scalar, not x86, or not
/// available on this CPU (so a wrong argument degrades to slow, never to SIGILL).
macro_rules! dispatch {
    // with an aarch64 NEON variant (`engine/aarch64.rs`); the others as below
    ($isa:expr, scalar => $scalar:expr, avx2 => $avx2:expr, avx512 => $avx512:expr,
     neon => $neon:expr $(,)?) => {{
        match $isa {
            #[cfg(target_arch = "aarch64")]
            $crate::isa::Isa::Neon if $crate::isa::Isa::Neon.available() => {
                // SAFETY: the CPU has NEON, the only feature the neon variant is compiled with.
                unsafe { $neon }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx512 if $crate::isa::Isa::Avx512.available() => {
                // SAFETY: the CPU has every feature the avx512 variant is compiled with.
                unsafe { $avx512 }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx2 if $crate::isa::Isa::Avx2.available() => {
                // SAFETY: the CPU has every feature the avx2 variant is compiled with.
                unsafe { $avx2 }
            }
            #[allow(unreachable_patterns)]
            _ => $scalar,
        }
    }};
    ($isa:expr, scalar => $scalar:expr, avx2 => $avx2:expr, avx512 => $avx512:expr $(,)?) => {{
        #[allow(unreachable_patterns)]
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx512 if $crate::isa::Isa::Avx512.available() => {
                // SAFETY: the CPU has every feature the avx512 variant is compiled with.
                unsafe { $avx512 }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx2 if $crate::isa::Isa::Avx2.available() => {
                // SAFETY: the CPU has every feature the avx2 variant is compiled with.
                unsafe { $avx2 }
            }
            #[cfg(target_arch = "aarch64")]
            $crate::isa::Isa::Neon if $crate::isa::Isa::Neon.available() => {
                // SAFETY: on aarch64 the avx2-named variant is the NEON build (`isa_variants!`).
                unsafe { $avx2 }
            }
            _ => $scalar,
        }
    }};
}
pub(crate) use dispatch;

/// True when `isa` selects one of the x86 SIMD variants defined by [`isa_variants`].
pub fn has_x86_variant(isa: crate::isa::Isa) -> bool {
    use crate::isa::Isa;
    cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2 | Isa::Avx512) && isa.available()
}

/// `e^x` to about 2 ulp for x in [-87, 88] (Cephes `expf` range reduction and polynomial),
/// branch-free so that loops over it vectorize. Outside the range it saturates.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let fx = (x * LOG2E + 0.5).floor();
    let r = x - fx * C1 - fx * C2;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^fx without a float->int conversion (Rust's saturating `as` does not vectorize): adding
    // 1.5 * 2^23 puts the integer fx (|fx| <= 127 here) in the low mantissa bits.
    let t = fx + 12_582_912.0;
    let e = t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23;
    y * f32::from_bits(e)
}

/// `tanh(x) = 1 - 2 / (e^{2x} + 1)`, branch-free; saturates correctly at both ends.
#[inline(always)]
pub fn tanh_approx(x: f32) -> f32 {
    1.0 - 2.0 / (exp_approx(2.0 * x) + 1.0)
}

/// Sum of a lane accumulator.
#[inline(always)]
pub fn hsum(acc: &[f32; LANES]) -> f32 {
    let mut a = *acc;
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            a[i] += a[i + w];
        }
        w /= 2;
    }
    a[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_approx_matches_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = x.exp();
            let got = exp_approx(x);
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.173;
        }
        assert!(exp_approx(-1000.0) >= 0.0 && exp_approx(-1000.0) < 1e-37);
        assert!(exp_approx(1000.0).is_finite());
    }
}
