//! aarch64 quantized dot products with `sdot` (FEAT_DotProd): `q8_0`, `q4_0`, `q4_1`, `q5_0`,
//! `q5_1` weights against `q8_0` activations, 1..=4 activation rows per weight row (the GEMM
//! micro-tile). The k-quants fall back to the scalar twin on this path for now.
//!
//! `sdot v.4s, v.16b, v.16b` adds four s8 x s8 products into each i32 lane. Its intrinsic
//! (`vdotq_s32`) is unstable on Rust 1.95, so it is one `asm!` instruction here. Unsigned
//! 4/5-bit weights (0..=31) are valid s8 operands; the zero point is applied per block through
//! the activation sum `ds`, exactly as the scalar twin does, and the float operations run in
//! the twin's order, so results agree bit for bit. Not a tuned kernel: it is the NEON path the
//! engine dispatches to on Arm, checked under `qemu-aarch64` in CI.

use super::{ActRow, QuantType};

/// Whether this CPU can run the `sdot` path (never true off aarch64).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// Dot products of one weight row with `acts.len()` activation rows into `out`.
/// Formats without an `sdot` kernel run the scalar twin.
pub(super) fn dot_rows(ty: QuantType, w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    #[cfg(target_arch = "aarch64")]
    if available()
        && matches!(
            ty,
            QuantType::Q8_0 | QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1
        )
    {
        for (a, o) in acts.iter().zip(out.iter_mut()) {
            // SAFETY: `available()` checked NEON and dotprod, the features `dot_legacy_sdot`
            // enables. `w` is whole blocks of `ty` and `a` has one q8_0 block (32 values, a
            // scale and a sum) per weight block (`QuantMatrix::check_act`); the kernel indexes
            // through slices, so a violation panics rather than reads out of bounds.
            *o = unsafe { arm::dot_legacy_sdot(ty, w, a) };
        }
        return;
    }
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        *o = super::scalar::dot(ty, w, a);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::super::reference::{f16_at, unpack_legacy};
    use super::super::{ActRow, QuantType, QK};
    use std::arch::aarch64::*;
    use std::arch::asm;

    /// `acc + sdot(a, b)`: 4 x (4 s8 products) per call.
    #[inline(always)]
    unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }

    /// The 32 weights of one block as s8 in element order (low, high halves).
    #[inline(always)]
    unsafe fn weights(ty: QuantType, blk: &[u8], q: &mut [u8; QK]) -> (int8x16_t, int8x16_t) {
        match ty {
            QuantType::Q8_0 => {
                let p = blk[2..34].as_ptr().cast::<i8>();
                (vld1q_s8(p), vld1q_s8(p.add(16)))
            }
            QuantType::Q4_0 | QuantType::Q4_1 => {
                let off = if ty == QuantType::Q4_0 { 2 } else { 4 };
                let v = vld1q_u8(blk[off..off + 16].as_ptr());
                let lo = vandq_u8(v, vdupq_n_u8(0x0F));
                let hi = vshrq_n_u8::<4>(v);
                (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
            }
            _ => {
                // 5-bit formats: the high bits are scattered; unpack with the reference code
                unpack_legacy(ty, blk, q);
                let p = q.as_ptr().cast::<i8>();
                (vld1q_s8(p), vld1q_s8(p.add(16)))
            }
        }
    }

    /// One weight row of a legacy format with one q8_0 activation row.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dot_legacy_sdot(ty: QuantType, w: &[u8], a: &ActRow<'_>) -> f32 {
        let bb = ty.block_bytes();
        let mut q = [0u8; QK];
        let mut acc = 0.0f32;
        for (b, blk) in w.chunks_exact(bb).enumerate() {
            let (w0, w1) = weights(ty, blk, &mut q);
            let x = &a.qs[b * QK..(b + 1) * QK];
            let x0 = vld1q_s8(x.as_ptr());
            let x1 = vld1q_s8(x[16..].as_ptr());
            let s = vaddvq_s32(sdot(sdot(vdupq_n_s32(0), w0, x0), w1, x1));
            // the scalar twin's float operations, in its order
            if ty == QuantType::Q8_0 {
                acc += f16_at(blk, 0) * a.d[b] * s as f32;
            } else {
                let d = f16_at(blk, 0);
                let m = match ty {
                    QuantType::Q4_0 => -8.0 * d,
                    QuantType::Q5_0 => -16.0 * d,
                    _ => f16_at(blk, 2),
                };
                acc += d * a.d[b] * s as f32 + m * a.ds[b];
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::super::{dot_with, quantize, Q8Activations, QuantIsa, QuantType};

    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The `sdot` path agrees with the scalar twin bit for bit (same integer sums, same float
    /// operations in the same order), over block counts including 0, 1 and odd sizes.
    #[test]
    fn sdot_dot_equals_scalar_twin_exactly() {
        if !QuantIsa::NeonDot.available() {
            println!("skip neondot: this CPU lacks neon+dotprod");
            return;
        }
        for ty in [
            QuantType::Q8_0,
            QuantType::Q4_0,
            QuantType::Q4_1,
            QuantType::Q5_0,
            QuantType::Q5_1,
        ] {
            for blocks in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65] {
                let n = blocks * 32;
                let w = quantize(ty, &vals(n, blocks as u64 + 1)).unwrap();
                let x = Q8Activations::from_f32(ty.act_kind(), &vals(n, 99), 1, n).unwrap();
                let s = dot_with(QuantIsa::Scalar, ty, &w, &x, 0).unwrap();
                let v = dot_with(QuantIsa::NeonDot, ty, &w, &x, 0).unwrap();
                assert_eq!(v.to_bits(), s.to_bits(), "{ty} blocks={blocks}: {v} vs {s}");
            }
        }
    }
}
