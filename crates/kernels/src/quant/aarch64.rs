//! aarch64 quantized dot products with `sdot` (FEAT_DotProd) for every format: `q8_0`, `q4_0`,
//! `q4_1`, `q5_0`, `q5_1` weights against `q8_0` activations, and the k-quants `q4_K`, `q5_K`,
//! `q6_K` against `q8_K` activations (256-weight super-blocks, `bsums` per 16). Each kernel takes
//! 1..=4 activation rows per weight row (the GEMM micro-tile): a weight block is unpacked into
//! registers once and multiplied with every activation row.
//!
//! `sdot v.4s, v.16b, v.16b` adds four s8 x s8 products into each i32 lane. Its intrinsic
//! (`vdotq_s32`) is unstable on Rust 1.95, so it is one `asm!` instruction here (as are `smmla`
//! and the `f16` -> `f32` `fcvt`: `half`'s conversion is an out-of-line call on aarch64).
//! Integer tricks:
//! - legacy: unsigned 4/5-bit codes (0..=31) are valid s8 operands; the zero point is applied
//!   per block through the activation sum `ds`, as the scalar twin does. The fifth bits of
//!   q5_0/q5_1 are spread to bytes with `tbl` + `cmtst`.
//! - `q4_K`/`q5_K`: unsigned 4/5-bit codes, one `sdot` pair per 32-weight sub-block, scaled by
//!   its 6-bit scale in i32 lanes (`mla`); the mins go through the activation sums per 16:
//!   `sum_j m_j (bsums[2j] + bsums[2j+1])` with a pairwise add and widening multiplies.
//! - `q6_K`: the 6-bit codes are made signed (`q - 32`, in -32..=31) once per super-block, so
//!   no offset term is needed; one `sdot` per 16-weight group, times its `i8` scale.
//!
//! The integer sums are exact (|isum| <= 63 * 31 * 127 * 256 for q5_K and
//! 128 * 32 * 127 * 256 for q6_K, far below 2^31), so they equal the twin's whatever the
//! summation order, and the float operations run in the twin's order: results agree with the
//! scalar twin bit for bit (tests below, run under `qemu-aarch64 -cpu max` by
//! `scripts/test-aarch64.sh`). Without `dotprod` (or off aarch64) everything runs the twin.
//! Not tuned on hardware (emulated timings are meaningless).
//!
//! `i8mm`: `dot_rows2_i8mm` multiplies two weight rows with 2 or 4 activation rows of
//! `q8_0`/`q4_0` on `smmla` (a 2x8 by 8x2 s8 block per instruction), tested against the twin,
//! but not dispatched yet: `QuantMatrix` passes one weight row at a time, and with one weight
//! row half of each `smmla` result would be discarded (no gain over `sdot`). It is for a
//! 2-weight-row prefill micro-tile in `gemm_rows_raw`.

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
/// Without NEON and dotprod everything runs the scalar twin.
pub(super) fn dot_rows(ty: QuantType, w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    debug_assert_eq!(acts.len(), out.len());
    #[cfg(target_arch = "aarch64")]
    if available() {
        arm::sdot_rows(ty, w, acts, out);
        return;
    }
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        *o = super::scalar::dot(ty, w, a);
    }
}

/// Whether this CPU can run the `smmla` tile [`dot_rows2_i8mm`] (never true off aarch64).
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn i8mm_available() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("i8mm")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// Dot products of two weight rows `w0`, `w1` (`q8_0` or `q4_0`) with 2 or 4 activation rows,
/// `out[t] = [w0 . acts[t], w1 . acts[t]]`, on `smmla` (FEAT_I8MM) when available, else on the
/// scalar twin. Results equal the twin's bit for bit.
///
/// Not dispatched yet: `QuantMatrix`'s micro-tile passes one weight row at a time, and with one
/// weight row `smmla` does no more useful work per instruction than `sdot`. A 2 x 2 or 2 x 4
/// (weight x activation rows) tile in `gemm_rows_raw` would call this for prefill.
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn dot_rows2_i8mm(
    ty: QuantType,
    w0: &[u8],
    w1: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [[f32; 2]],
) {
    debug_assert_eq!(acts.len(), out.len());
    #[cfg(target_arch = "aarch64")]
    if i8mm_available()
        && matches!(ty, QuantType::Q8_0 | QuantType::Q4_0)
        && w0.len() == w1.len()
        && matches!(acts.len(), 2 | 4)
    {
        arm::legacy_rows2(ty, w0, w1, acts, out);
        return;
    }
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        *o = [super::scalar::dot(ty, w0, a), super::scalar::dot(ty, w1, a)];
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::super::reference::scale_min_k4;
    use super::super::{ActRow, QuantType, QK, QK_K};
    use std::arch::aarch64::*;
    use std::arch::asm;

    /// The little-endian `f16` at `b[at..at + 2]` as `f32`, with `fcvt` (base Armv8 FP, no
    /// FEAT_FP16 needed). `half`'s `to_f32` is an out-of-line call with a run-time feature
    /// check on aarch64, once per scale; the conversion is exact, so the value (and every
    /// result) equals the twin's `reference::f16_at` for every finite `f16`.
    #[inline(always)]
    fn f16_at(b: &[u8], at: usize) -> f32 {
        let bits = u16::from_le_bytes([b[at], b[at + 1]]) as u32;
        let out: f32;
        // SAFETY: register-only instructions of the base aarch64 ISA (FP/SIMD is mandatory
        // on aarch64 Linux, macOS and Android targets).
        unsafe {
            asm!(
                "fmov {t:s}, {b:w}",
                "fcvt {o:s}, {t:h}",
                b = in(reg) bits,
                t = out(vreg) _,
                o = out(vreg) out,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        out
    }

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

    /// `0x10` in byte `j` of the result pair (elements 0..16, 16..32) where bit `j` of the
    /// little-endian `u32` at `p[0..4]` is set: the fifth bits of q5_0 / q5_1.
    #[inline(always)]
    unsafe fn high_bits(p: &[u8]) -> (uint8x16_t, uint8x16_t) {
        let qh = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let v = vreinterpretq_u8_u32(vdupq_n_u32(qh));
        // element j reads byte j / 8 and tests bit j % 8
        let idx_lo = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));
        let idx_hi = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
        let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        let t = vdupq_n_u8(0x10);
        (
            vandq_u8(vtstq_u8(vqtbl1q_u8(v, idx_lo), bit), t),
            vandq_u8(vtstq_u8(vqtbl1q_u8(v, idx_hi), bit), t),
        )
    }

    /// The 32 weights of one legacy block as s8 in element order (low, high halves): signed
    /// for q8_0, unsigned codes (0..=31, valid s8 operands) for the 4/5-bit formats.
    #[inline(always)]
    unsafe fn weights(ty: QuantType, blk: &[u8]) -> (int8x16_t, int8x16_t) {
        let m4 = vdupq_n_u8(0x0F);
        match ty {
            QuantType::Q8_0 => {
                let p = blk[2..34].as_ptr().cast::<i8>();
                (vld1q_s8(p), vld1q_s8(p.add(16)))
            }
            QuantType::Q4_0 | QuantType::Q4_1 => {
                let off = if ty == QuantType::Q4_0 { 2 } else { 4 };
                let v = vld1q_u8(blk[off..off + 16].as_ptr());
                let lo = vandq_u8(v, m4);
                let hi = vshrq_n_u8::<4>(v);
                (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
            }
            _ => {
                // q5_0: qh at 2, qs at 6; q5_1: qh at 4, qs at 8
                let off = if ty == QuantType::Q5_0 { 2 } else { 4 };
                let (h0, h1) = high_bits(&blk[off..off + 4]);
                let v = vld1q_u8(blk[off + 4..off + 20].as_ptr());
                let lo = vorrq_u8(vandq_u8(v, m4), h0);
                let hi = vorrq_u8(vshrq_n_u8::<4>(v), h1);
                (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
            }
        }
    }

    /// One weight row of a legacy format with `M` q8_0 activation rows; each block is
    /// unpacked once for all of them.
    #[inline(always)]
    unsafe fn legacy<const M: usize>(
        ty: QuantType,
        w: &[u8],
        acts: &[ActRow<'_>; M],
        out: &mut [f32; M],
    ) {
        let bb = ty.block_bytes();
        let zero = vdupq_n_s32(0);
        let mut acc = [0.0f32; M];
        for (b, blk) in w.chunks_exact(bb).enumerate() {
            let (w0, w1) = weights(ty, blk);
            let d = f16_at(blk, 0);
            let m = match ty {
                QuantType::Q8_0 => 0.0,
                QuantType::Q4_0 => -8.0 * d,
                QuantType::Q5_0 => -16.0 * d,
                _ => f16_at(blk, 2),
            };
            for i in 0..M {
                let a = &acts[i];
                let x = &a.qs[b * QK..(b + 1) * QK];
                let x0 = vld1q_s8(x.as_ptr());
                let x1 = vld1q_s8(x[16..].as_ptr());
                let s = vaddvq_s32(sdot(sdot(zero, w0, x0), w1, x1));
                // the scalar twin's float operations, in its order
                if ty == QuantType::Q8_0 {
                    acc[i] += d * a.d[b] * s as f32;
                } else {
                    acc[i] += d * a.d[b] * s as f32 + m * a.ds[b];
                }
            }
        }
        *out = acc;
    }

    /// `acc + A B^T` for two 2 x 8 s8 matrices (row `i` in bytes `8i..8i + 8` of `a`, `b`):
    /// lanes `[a0.b0, a0.b1, a1.b0, a1.b1]`, 8 products each.
    #[cfg_attr(not(test), allow(dead_code))]
    #[inline(always)]
    unsafe fn smmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }

    /// `[lo 8 bytes of a, lo 8 bytes of b]` and `[hi of a, hi of b]`: two rows of 8 k-values
    /// stacked into one 2 x 8 `smmla` operand.
    #[cfg_attr(not(test), allow(dead_code))]
    #[inline(always)]
    unsafe fn stack(a: int8x16_t, b: int8x16_t) -> (int8x16_t, int8x16_t) {
        let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
        (
            vreinterpretq_s8_s64(vzip1q_s64(a, b)),
            vreinterpretq_s8_s64(vzip2q_s64(a, b)),
        )
    }

    /// Two weight rows x `2P` activation rows of `q8_0` / `q4_0`. Per block and pair of
    /// activation rows, four `smmla` give the four integer block sums; the float updates are
    /// the twin's (`(d da) s`, plus `m ds` for q4_0, then added to the running sum), done
    /// lane-wise in the same order, so each lane equals the twin bit for bit.
    #[cfg_attr(not(test), allow(dead_code))]
    #[target_feature(enable = "neon,i8mm")]
    unsafe fn legacy_2x<const P: usize>(
        ty: QuantType,
        w0: &[u8],
        w1: &[u8],
        acts: &[[ActRow<'_>; 2]; P],
        out: &mut [[f32; 4]; P],
    ) {
        let bb = ty.block_bytes();
        let zero = vdupq_n_s32(0);
        let mut acc = [vdupq_n_f32(0.0); P];
        for (b, (k0, k1)) in w0.chunks_exact(bb).zip(w1.chunks_exact(bb)).enumerate() {
            let (a0, a1) = weights(ty, k0);
            let (b0, b1) = weights(ty, k1);
            // k = 0..8, 8..16, 16..24, 24..32 of both weight rows
            let (wz0, wz1) = stack(a0, b0);
            let (wz2, wz3) = stack(a1, b1);
            let (d0, d1) = (f16_at(k0, 0), f16_at(k1, 0));
            let dw = vld1q_f32([d0, d0, d1, d1].as_ptr());
            let mw = vld1q_f32([-8.0 * d0, -8.0 * d0, -8.0 * d1, -8.0 * d1].as_ptr());
            for p in 0..P {
                let [x, y] = &acts[p];
                let (xs, ys) = (&x.qs[b * QK..(b + 1) * QK], &y.qs[b * QK..(b + 1) * QK]);
                let (xz0, xz1) = stack(vld1q_s8(xs.as_ptr()), vld1q_s8(ys.as_ptr()));
                let (xz2, xz3) = stack(vld1q_s8(xs[16..].as_ptr()), vld1q_s8(ys[16..].as_ptr()));
                let s = smmla(smmla(zero, wz0, xz0), wz1, xz1);
                let s = smmla(smmla(s, wz2, xz2), wz3, xz3);
                // lanes: [w0.x, w0.y, w1.x, w1.y]
                let da = vld1q_f32([x.d[b], y.d[b], x.d[b], y.d[b]].as_ptr());
                let mut t = vmulq_f32(vmulq_f32(dw, da), vcvtq_f32_s32(s));
                if ty == QuantType::Q4_0 {
                    let ds = vld1q_f32([x.ds[b], y.ds[b], x.ds[b], y.ds[b]].as_ptr());
                    t = vaddq_f32(t, vmulq_f32(mw, ds));
                }
                acc[p] = vaddq_f32(acc[p], t);
            }
        }
        for p in 0..P {
            vst1q_f32(out[p].as_mut_ptr(), acc[p]);
        }
    }

    /// `out[t] = [w0 . acts[t], w1 . acts[t]]` for 2 or 4 activation rows (the weights are
    /// unpacked once per block for all of them). Only called when `i8mm_available()`, for
    /// q8_0 / q4_0 rows of equal length.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn legacy_rows2(
        ty: QuantType,
        w0: &[u8],
        w1: &[u8],
        acts: &[ActRow<'_>],
        out: &mut [[f32; 2]],
    ) {
        fn put<const P: usize>(r: &[[f32; 4]; P], out: &mut [[f32; 2]]) {
            for (p, l) in r.iter().enumerate() {
                out[2 * p] = [l[0], l[2]];
                out[2 * p + 1] = [l[1], l[3]];
            }
        }
        // Both calls: the caller checked `i8mm_available()` (NEON and I8MM, the
        // features `legacy_2x` enables). Weight loads go through the `chunks_exact` blocks of
        // `ty` (`weights`), activations through slices of one block each, so operands shorter
        // than `QuantMatrix::check_act` guarantees panic instead of reading out of bounds.
        match acts {
            [a, b] => {
                let mut r = [[0.0f32; 4]; 1];
                // SAFETY: CPU features and bounds as stated above the match.
                unsafe { legacy_2x::<1>(ty, w0, w1, &[[*a, *b]], &mut r) };
                put(&r, out);
            }
            [a, b, c, d] => {
                let mut r = [[0.0f32; 4]; 2];
                // SAFETY: CPU features and bounds as stated above the match.
                unsafe { legacy_2x::<2>(ty, w0, w1, &[[*a, *b], [*c, *d]], &mut r) };
                put(&r, out);
            }
            _ => unreachable!("legacy_rows2 takes 2 or 4 activation rows"),
        }
    }

    /// The 256 activations of super-block `b` of every row, checked once per block so the
    /// kernels below load at constant offsets below 256 from each.
    #[inline(always)]
    fn block_acts<'a, const M: usize>(acts: &[ActRow<'a>; M], b: usize) -> [&'a [i8; QK_K]; M] {
        std::array::from_fn(|i| {
            let s = &acts[i].qs[b * QK_K..(b + 1) * QK_K];
            <&[i8; QK_K]>::try_from(s).unwrap_or_else(|_| unreachable!("slice of QK_K"))
        })
    }

    /// `q4_K` (`HIGH = false`, 144-byte blocks) and `q5_K` (`HIGH = true`, 176-byte blocks)
    /// with `M` activation rows: `sum_b da (d isum - dmin msum)`, the scalar twin's formula.
    #[inline(always)]
    unsafe fn qk<const HIGH: bool, const M: usize>(
        w: &[u8],
        acts: &[ActRow<'_>; M],
        out: &mut [f32; M],
    ) {
        let bb = if HIGH { 176 } else { 144 };
        let m4 = vdupq_n_u8(0x0F);
        let one = vdupq_n_u8(1);
        let two = vdupq_n_u8(2);
        let zero = vdupq_n_s32(0);
        let mut acc = [0.0f32; M];
        for (b, blk) in w.chunks_exact(bb).enumerate() {
            let mut sc = [0u8; 8];
            let mut mn = [0u8; 8];
            for j in 0..8 {
                (sc[j], mn[j]) = scale_min_k4(j, &blk[4..16]);
            }
            // `blk` has exactly `bb` bytes (chunks_exact): every load below ends at or before
            // offset 176 (q5_K) or 144 (q4_K).
            let p = blk.as_ptr();
            let qs = p.add(if HIGH { 48 } else { 16 });
            let (mut qh0, mut qh1) = if HIGH {
                (vld1q_u8(p.add(16)), vld1q_u8(p.add(32)))
            } else {
                (vdupq_n_u8(0), vdupq_n_u8(0))
            };
            let xs = block_acts(acts, b);
            let mut iacc = [zero; M];
            for c in 0..4 {
                // 32 bytes: low nibbles are sub-block 2c, high nibbles sub-block 2c + 1.
                let v0 = vld1q_u8(qs.add(32 * c));
                let v1 = vld1q_u8(qs.add(32 * c + 16));
                let (mut l0, mut l1) = (vandq_u8(v0, m4), vandq_u8(v1, m4));
                let (mut h0, mut h1) = (vshrq_n_u8::<4>(v0), vshrq_n_u8::<4>(v1));
                if HIGH {
                    // bit 2c of qh[l] is bit 4 of weight 64c + l, bit 2c + 1 of 64c + 32 + l
                    l0 = vorrq_u8(l0, vshlq_n_u8::<4>(vandq_u8(qh0, one)));
                    l1 = vorrq_u8(l1, vshlq_n_u8::<4>(vandq_u8(qh1, one)));
                    h0 = vorrq_u8(h0, vshlq_n_u8::<3>(vandq_u8(qh0, two)));
                    h1 = vorrq_u8(h1, vshlq_n_u8::<3>(vandq_u8(qh1, two)));
                    qh0 = vshrq_n_u8::<2>(qh0);
                    qh1 = vshrq_n_u8::<2>(qh1);
                }
                let (l0, l1) = (vreinterpretq_s8_u8(l0), vreinterpretq_s8_u8(l1));
                let (h0, h1) = (vreinterpretq_s8_u8(h0), vreinterpretq_s8_u8(h1));
                let (sl, sh) = (sc[2 * c] as i32, sc[2 * c + 1] as i32);
                for i in 0..M {
                    let x = xs[i].as_ptr().add(64 * c);
                    let pl = sdot(sdot(zero, l0, vld1q_s8(x)), l1, vld1q_s8(x.add(16)));
                    let ph = sdot(sdot(zero, h0, vld1q_s8(x.add(32))), h1, vld1q_s8(x.add(48)));
                    iacc[i] = vmlaq_n_s32(iacc[i], pl, sl);
                    iacc[i] = vmlaq_n_s32(iacc[i], ph, sh);
                }
            }
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let mn16 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn.as_ptr())));
            for i in 0..M {
                let a = &acts[i];
                let bs = &a.bsums[16 * b..16 * (b + 1)];
                // bsums[2j] + bsums[2j+1] for j = 0..8 (|sum| <= 32 * 127 fits in i16)
                let pair = vpaddq_s16(vld1q_s16(bs.as_ptr()), vld1q_s16(bs[8..].as_ptr()));
                let lo = vmull_s16(vget_low_s16(mn16), vget_low_s16(pair));
                let msum = vaddvq_s32(vaddq_s32(lo, vmull_high_s16(mn16, pair)));
                let isum = vaddvq_s32(iacc[i]);
                // the scalar twin's float operations, in its order
                acc[i] += a.d[b] * (d * isum as f32 - dmin * msum as f32);
            }
        }
        *out = acc;
    }

    /// `q6_K` (210-byte blocks) with `M` activation rows: `sum_b d da isum`, the twin's formula.
    #[inline(always)]
    unsafe fn q6_k<const M: usize>(w: &[u8], acts: &[ActRow<'_>; M], out: &mut [f32; M]) {
        let m4 = vdupq_n_u8(0x0F);
        let m3 = vdupq_n_u8(3);
        let off = vdupq_n_s8(32);
        let zero = vdupq_n_s32(0);
        let mut acc = [0.0f32; M];
        for (b, blk) in w.chunks_exact(210).enumerate() {
            let sc: [i32; 16] = std::array::from_fn(|g| (blk[192 + g] as i8) as i32);
            let xs = block_acts(acts, b);
            // `blk` has exactly 210 bytes (chunks_exact): the loads below end at offset 192.
            let p = blk.as_ptr();
            let mut iacc = [zero; M];
            for n in 0..2 {
                let ql = p.add(64 * n);
                let qh = p.add(128 + 32 * n);
                for h in 0..2 {
                    // bytes l = 16h..16h+16 of ql[0..32], ql[32..64] and qh[0..32]
                    let la = vld1q_u8(ql.add(16 * h));
                    let lb = vld1q_u8(ql.add(32 + 16 * h));
                    let hb = vld1q_u8(qh.add(16 * h));
                    let u = [
                        vorrq_u8(vandq_u8(la, m4), vshlq_n_u8::<4>(vandq_u8(hb, m3))),
                        vorrq_u8(
                            vandq_u8(lb, m4),
                            vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(hb), m3)),
                        ),
                        vorrq_u8(
                            vshrq_n_u8::<4>(la),
                            vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(hb), m3)),
                        ),
                        vorrq_u8(vshrq_n_u8::<4>(lb), vshlq_n_u8::<4>(vshrq_n_u8::<6>(hb))),
                    ];
                    // u[k] holds weights 128n + 32k + 16h .. +16: group 8n + 2k + h.
                    let q = [
                        vsubq_s8(vreinterpretq_s8_u8(u[0]), off),
                        vsubq_s8(vreinterpretq_s8_u8(u[1]), off),
                        vsubq_s8(vreinterpretq_s8_u8(u[2]), off),
                        vsubq_s8(vreinterpretq_s8_u8(u[3]), off),
                    ];
                    for i in 0..M {
                        let x = xs[i].as_ptr().add(128 * n + 16 * h);
                        for (k, &qk) in q.iter().enumerate() {
                            let s = sdot(zero, qk, vld1q_s8(x.add(32 * k)));
                            iacc[i] = vmlaq_n_s32(iacc[i], s, sc[8 * n + 2 * k + h]);
                        }
                    }
                }
            }
            let d = f16_at(blk, 208);
            for i in 0..M {
                let isum = vaddvq_s32(iacc[i]);
                // the scalar twin's float operations, in its order
                acc[i] += d * acts[i].d[b] * isum as f32;
            }
        }
        *out = acc;
    }

    #[target_feature(enable = "neon,dotprod")]
    unsafe fn rows_sdot<const M: usize>(
        ty: QuantType,
        w: &[u8],
        acts: &[ActRow<'_>; M],
        out: &mut [f32; M],
    ) {
        match ty {
            QuantType::Q4K => qk::<false, M>(w, acts, out),
            QuantType::Q5K => qk::<true, M>(w, acts, out),
            QuantType::Q6K => q6_k::<M>(w, acts, out),
            // a literal type per arm: `legacy` is inlined and specialised, no per-block match
            QuantType::Q8_0 => legacy::<M>(QuantType::Q8_0, w, acts, out),
            QuantType::Q4_0 => legacy::<M>(QuantType::Q4_0, w, acts, out),
            QuantType::Q4_1 => legacy::<M>(QuantType::Q4_1, w, acts, out),
            QuantType::Q5_0 => legacy::<M>(QuantType::Q5_0, w, acts, out),
            QuantType::Q5_1 => legacy::<M>(QuantType::Q5_1, w, acts, out),
        }
    }

    fn run<const M: usize>(ty: QuantType, w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
        let (Ok(acts), Ok(out)) = (
            <&[ActRow<'_>; M]>::try_from(acts),
            <&mut [f32; M]>::try_from(out),
        ) else {
            unreachable!("sdot_rows dispatches on the slice length")
        };
        // SAFETY: the caller checked `available()` (NEON and dotprod, the features
        // `rows_sdot` enables). Memory: weight loads stay inside one `chunks_exact` block
        // (k-quants: constant offsets below the block size; legacy: through block slices);
        // activation loads go through a checked slice per block (`&[i8; 256]` for k-quants),
        // and scales, sums and `bsums` are indexed through slices, so operands shorter than
        // `QuantMatrix::check_act` guarantees panic instead of reading out of bounds.
        unsafe { rows_sdot::<M>(ty, w, acts, out) }
    }

    /// Dot products of one weight row with `acts.len()` rows (micro-tiles of <= 4).
    /// Only called when `available()`.
    pub(super) fn sdot_rows(ty: QuantType, w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
        for (a, o) in acts.chunks(4).zip(out.chunks_mut(4)) {
            match a.len() {
                1 => run::<1>(ty, w, a, o),
                2 => run::<2>(ty, w, a, o),
                3 => run::<3>(ty, w, a, o),
                _ => run::<4>(ty, w, a, o),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        dot_with, quantize, scalar, ActKind, Q8Activations, QuantIsa, QuantMatrix, QuantType, QK_K,
    };

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

    /// xorshift bytes.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut r = crate::xorshift::XorShift64::new(seed);
        (0..n).map(|_| (r.next_u64() >> 32) as u8).collect()
    }

    /// Finite `f16` scales from the extremes: largest normal (both signs), smallest subnormal,
    /// zero, ordinary values.
    const F16_SCALES: [u16; 7] = [0x3C00, 0xB800, 0x7BFF, 0xFBFF, 0x0001, 0x0000, 0x4248];

    /// Quant-byte patterns of a k-quant row: random; all zero (every weight at its minimum
    /// code, with random scales and mins); all ones (maximum codes; q4_K/q5_K scales and mins
    /// 63, q6_K scales alternating -128 and 127).
    #[derive(Clone, Copy, Debug)]
    enum Fill {
        Random,
        Zero,
        Ones,
    }

    /// A row of `nb` raw super-blocks of `ty` (q4_K, q5_K or q6_K) with the `f16` scale fields
    /// set from [`F16_SCALES`] (never NaN or infinite).
    fn kquant_row(ty: QuantType, nb: usize, fill: Fill, seed: u64) -> Vec<u8> {
        let bb = ty.block_bytes();
        let mut w = match fill {
            Fill::Random => bytes(nb * bb, seed),
            Fill::Zero => vec![0u8; nb * bb],
            Fill::Ones => vec![0xFF; nb * bb],
        };
        let pick = bytes(2 * nb, seed ^ 0x55);
        let sc = bytes(16 * nb, seed ^ 0xAA);
        for (b, blk) in w.chunks_exact_mut(bb).enumerate() {
            let scales = if ty == QuantType::Q6K {
                &mut blk[192..208]
            } else {
                &mut blk[4..16]
            };
            match fill {
                Fill::Random => {}
                Fill::Zero => scales.copy_from_slice(&sc[16 * b..16 * b + scales.len()]),
                Fill::Ones if ty == QuantType::Q6K => {
                    for (g, v) in scales.iter_mut().enumerate() {
                        *v = if g % 2 == 0 { 0x80 } else { 0x7F };
                    }
                }
                Fill::Ones => {}
            }
            let d = F16_SCALES[pick[2 * b] as usize % F16_SCALES.len()];
            let m = F16_SCALES[pick[2 * b + 1] as usize % F16_SCALES.len()];
            if ty == QuantType::Q6K {
                blk[208..210].copy_from_slice(&d.to_le_bytes());
            } else {
                blk[0..2].copy_from_slice(&d.to_le_bytes());
                blk[2..4].copy_from_slice(&m.to_le_bytes());
            }
        }
        w
    }

    /// Four activation rows of `n`: random values, and the saturating patterns (every value
    /// +127, every value -127, alternating signs) when `extreme`.
    fn act_rows(n: usize, extreme: bool, seed: u64) -> Q8Activations {
        let mut x = Vec::with_capacity(4 * n);
        for r in 0..4u64 {
            if extreme && r > 0 {
                x.extend((0..n).map(|i| match r {
                    1 => 3.0,
                    2 => -3.0,
                    _ => {
                        if i % 2 == 0 {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                }));
            } else {
                x.extend(vals(n, seed + r));
            }
        }
        Q8Activations::from_f32(ActKind::Q8K, &x, 4, n).unwrap()
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// The k-quant `sdot` kernels agree with the scalar twin bit for bit (exact integer sums,
    /// the twin's float operations in its order) for 1..=4 activation rows per weight row and
    /// 1..=4 super-blocks, on random blocks, all-minimum and all-maximum quants, extreme `f16`
    /// scales and mins, and saturating activations.
    #[test]
    fn kquant_sdot_equals_scalar_twin_exactly_for_1_to_4_rows() {
        if !QuantIsa::NeonDot.available() {
            println!("skip neondot k-quants: this CPU lacks neon+dotprod");
            return;
        }
        let mut checked = 0usize;
        for ty in [QuantType::Q4K, QuantType::Q5K, QuantType::Q6K] {
            for nb in 1..=4usize {
                let n = nb * QK_K;
                for (f, fill) in [Fill::Random, Fill::Zero, Fill::Ones]
                    .into_iter()
                    .enumerate()
                {
                    for seed in 0..3u64 {
                        let w = kquant_row(ty, nb, fill, 100 * nb as u64 + 10 * f as u64 + seed);
                        let x = act_rows(n, seed == 1, seed + 7);
                        let rows: Vec<_> = (0..4).map(|r| x.row(r)).collect();
                        for m in 1..=4 {
                            let mut got = [0.0f32; 4];
                            super::dot_rows(ty, &w, &rows[..m], &mut got[..m]);
                            for (r, &g) in got[..m].iter().enumerate() {
                                let want = scalar::dot(ty, &w, &rows[r]);
                                assert!(
                                    same(g, want),
                                    "{ty} blocks={nb} {fill:?} seed={seed} rows={m} row {r}: \
                                     {g} vs scalar {want}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        println!("k-quant sdot == scalar twin on {checked} dot products");
    }

    /// Quantized (not raw) weights through the public GEMM entry with 7 activation rows
    /// (micro-tiles of 4 and 3) and several weight rows: the NEON path equals the scalar one.
    #[test]
    fn kquant_gemm_neondot_equals_scalar_gemm() {
        if !QuantIsa::NeonDot.available() {
            println!("skip neondot k-quant gemm: this CPU lacks neon+dotprod");
            return;
        }
        let (rows, m, n) = (5usize, 7usize, 3 * QK_K);
        let x = Q8Activations::from_f32(ActKind::Q8K, &vals(m * n, 3), m, n).unwrap();
        for ty in [QuantType::Q4K, QuantType::Q5K, QuantType::Q6K] {
            let data = quantize(ty, &vals(rows * n, 11)).unwrap();
            let w = QuantMatrix::new(ty, rows, n, &data).unwrap();
            let mut s = vec![0.0f32; m * rows];
            let mut v = vec![0.0f32; m * rows];
            w.gemm_with(QuantIsa::Scalar, &x, m, &mut s, 1).unwrap();
            w.gemm_with(QuantIsa::NeonDot, &x, m, &mut v, 2).unwrap();
            for (i, (a, b)) in v.iter().zip(&s).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{ty} output {i}: {a} vs {b}");
            }
        }
    }

    /// The legacy `sdot` kernels with 1..=4 activation rows per weight row agree with the
    /// scalar twin bit for bit on raw blocks: random bytes (every `qh` bit pattern of the
    /// 5-bit formats), all-zero and all-ones quants, extreme `f16` scales and `m`.
    #[test]
    fn legacy_sdot_equals_scalar_twin_exactly_for_1_to_4_rows() {
        if !QuantIsa::NeonDot.available() {
            println!("skip neondot legacy rows: this CPU lacks neon+dotprod");
            return;
        }
        let mut checked = 0usize;
        for ty in [
            QuantType::Q8_0,
            QuantType::Q4_0,
            QuantType::Q4_1,
            QuantType::Q5_0,
            QuantType::Q5_1,
        ] {
            let bb = ty.block_bytes();
            for blocks in [1usize, 2, 3, 8, 9] {
                let n = blocks * 32;
                for (f, fill) in [Fill::Random, Fill::Zero, Fill::Ones]
                    .into_iter()
                    .enumerate()
                {
                    let seed = 10 * blocks as u64 + f as u64;
                    let mut w = match fill {
                        Fill::Random => bytes(blocks * bb, seed),
                        Fill::Zero => vec![0u8; blocks * bb],
                        Fill::Ones => vec![0xFF; blocks * bb],
                    };
                    let pick = bytes(2 * blocks, seed ^ 3);
                    for (b, blk) in w.chunks_exact_mut(bb).enumerate() {
                        let d = F16_SCALES[pick[2 * b] as usize % F16_SCALES.len()];
                        blk[0..2].copy_from_slice(&d.to_le_bytes());
                        if matches!(ty, QuantType::Q4_1 | QuantType::Q5_1) {
                            let m = F16_SCALES[pick[2 * b + 1] as usize % F16_SCALES.len()];
                            blk[2..4].copy_from_slice(&m.to_le_bytes());
                        }
                    }
                    let mut x = Vec::with_capacity(4 * n);
                    for r in 0..4u64 {
                        if f == 2 && r > 0 {
                            x.extend((0..n).map(|i| if i % 2 == 0 { 5.0 } else { -5.0 }));
                        } else {
                            x.extend(vals(n, seed + 50 + r));
                        }
                    }
                    let x = Q8Activations::from_f32(ActKind::Q8_0, &x, 4, n).unwrap();
                    let rows: Vec<_> = (0..4).map(|r| x.row(r)).collect();
                    for m in 1..=4 {
                        let mut got = [0.0f32; 4];
                        super::dot_rows(ty, &w, &rows[..m], &mut got[..m]);
                        for (r, &g) in got[..m].iter().enumerate() {
                            let want = scalar::dot(ty, &w, &rows[r]);
                            assert!(
                                same(g, want),
                                "{ty} blocks={blocks} {fill:?} rows={m} row {r}: {g} vs scalar {want}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        println!("legacy sdot == scalar twin on {checked} dot products");
    }

    /// The `smmla` tile (2 weight rows x 2 or 4 activation rows) agrees with the scalar twin
    /// bit for bit on q8_0 and q4_0: quantized and raw weights (q8_0 codes down to -128, all
    /// q4_0 nibbles 0 or 15), extreme `f16` scales, saturating activations.
    #[test]
    fn i8mm_tile_equals_scalar_twin_exactly() {
        if !super::i8mm_available() {
            println!("skip i8mm: this CPU lacks neon+i8mm");
            return;
        }
        let mut checked = 0usize;
        for ty in [QuantType::Q8_0, QuantType::Q4_0] {
            let bb = ty.block_bytes();
            for blocks in [1usize, 2, 7, 8, 33] {
                let n = blocks * 32;
                for (f, fill) in [Fill::Random, Fill::Zero, Fill::Ones]
                    .into_iter()
                    .enumerate()
                {
                    let seed = 10 * blocks as u64 + f as u64;
                    // row 0 from the quantizer, row 1 raw bytes with chosen f16 scales
                    let w0 = quantize(ty, &vals(n, seed)).unwrap();
                    let mut w1 = match fill {
                        Fill::Random => bytes(n / 32 * bb, seed),
                        Fill::Zero => vec![0u8; n / 32 * bb],
                        Fill::Ones => vec![0xFF; n / 32 * bb],
                    };
                    if let Fill::Zero = fill {
                        // q8_0 codes -128 (0x80) instead of zeros
                        for blk in w1.chunks_exact_mut(bb).filter(|_| ty == QuantType::Q8_0) {
                            blk.fill(0x80);
                        }
                    }
                    let pick = bytes(n / 32, seed ^ 7);
                    for (blk, &k) in w1.chunks_exact_mut(bb).zip(&pick) {
                        let d = F16_SCALES[k as usize % F16_SCALES.len()];
                        blk[0..2].copy_from_slice(&d.to_le_bytes());
                    }
                    let mut x = Vec::with_capacity(4 * n);
                    for r in 0..4u64 {
                        if f == 1 && r > 1 {
                            x.extend((0..n).map(|i| {
                                if (i + r as usize).is_multiple_of(3) {
                                    -2.0
                                } else {
                                    2.0
                                }
                            }));
                        } else {
                            x.extend(vals(n, seed + 100 + r));
                        }
                    }
                    let x = Q8Activations::from_f32(ActKind::Q8_0, &x, 4, n).unwrap();
                    let rows: Vec<_> = (0..4).map(|r| x.row(r)).collect();
                    for m in [2usize, 4] {
                        let mut got = [[0.0f32; 2]; 4];
                        super::dot_rows2_i8mm(ty, &w0, &w1, &rows[..m], &mut got[..m]);
                        for (t, g) in got[..m].iter().enumerate() {
                            for (r, w) in [&w0, &w1].into_iter().enumerate() {
                                let want = scalar::dot(ty, w, &rows[t]);
                                assert!(
                                    same(g[r], want),
                                    "{ty} blocks={blocks} {fill:?} act rows={m}: weight row {r} \
                                     x act row {t}: {} vs scalar {want}",
                                    g[r]
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        println!("i8mm tile == scalar twin on {checked} dot products");
    }
}
