//! AVX2 and AVX-512 VNNI quantized dot products (x86-64).
//!
//! One generic body per format family, instantiated for two integer-dot back ends
//! ([`Avx2`]: `vpmaddubsw` + `vpmaddwd`; [`Vnni`]: `vpdpbusd` / `vpdpwssd` on ymm) and for
//! 1..=4 activation rows (the GEMM micro-tile: each weight block is loaded and unpacked once and
//! multiplied with every activation row while in registers). The thin `#[target_feature]`
//! wrappers at the bottom are the only entry points.
//!
//! Integer trick (ours, the same idea as llama.cpp's `q8_1` sums): 4/5/6-bit weights are kept
//! unsigned (`q` in 0..=63) so `vpmaddubsw` / `vpdpbusd` take them directly as the unsigned
//! operand; the zero point is applied once per block through the precomputed activation sum
//! (`ds = d_a * sum(a)` for 32-blocks, `bsums` per 16 for k-quants). Signed `q8_0` weights use
//! the `abs`/`sign` trick on AVX2 (no `i16` saturation: |w|, |a| <= 127) and `w + 128` with a
//! `-128 * sum(a)` correction on VNNI (which has no intermediate saturation).
//!
//! Saturation bounds of `vpmaddubsw` (pairs of u8 x i8 summed in i16): 63 * 127 * 2 = 16002 for
//! q6_K, 31 * 127 * 2 for 5-bit, 15 * 127 * 2 for 4-bit, 127 * 127 * 2 for q8_0: all < 32767.

use super::reference::scale_min_k4;
use super::{ActRow, QuantIsa, QuantType, QK, QK_K};
use std::arch::x86_64::*;

/// Integer dot-product back end.
trait IDot {
    /// Added to signed `i8` weights to make them unsigned (0 when no offset is used).
    const I8_OFFSET: f32;
    /// i32x8 partial sums of `u[k] * s[k]` (`u` unsigned, `s` signed, 32 bytes each).
    unsafe fn dot_u8(u: __m256i, s: __m256i) -> __m256i;
    /// i32x8 partial sums of `(w[k] + I8_OFFSET) * s[k]` for signed `w`.
    unsafe fn dot_i8(w: __m256i, s: __m256i) -> __m256i;
    /// `acc + madd(p, sc)`: i16 pairs times i16 scales, summed into i32 lanes.
    unsafe fn acc_madd(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i;
}

struct Avx2;
struct Vnni;

impl IDot for Avx2 {
    const I8_OFFSET: f32 = 0.0;
    #[inline(always)]
    unsafe fn dot_u8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
    #[inline(always)]
    unsafe fn dot_i8(w: __m256i, s: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(s, w));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
    #[inline(always)]
    unsafe fn acc_madd(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc))
    }
}

impl IDot for Vnni {
    const I8_OFFSET: f32 = 128.0;
    #[inline(always)]
    unsafe fn dot_u8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
    #[inline(always)]
    unsafe fn dot_i8(w: __m256i, s: __m256i) -> __m256i {
        let u = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
    #[inline(always)]
    unsafe fn acc_madd(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, p, sc)
    }
}

/// An `f16` scale to `f32`. Broadcasting (`vpbroadcastw` from memory) instead of
/// `_mm_cvtsi32_si128`: LLVM lowered the latter to `vpinsrw` into a stale register, a false
/// dependency on an accumulator that serialized the whole block loop (seen in `objdump`).
#[inline(always)]
unsafe fn f16_load(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
}

#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn load256(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// 32 unsigned 4-bit values (element order: low nibbles then high nibbles) from 16 bytes.
#[inline(always)]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    let x = _mm_loadu_si128(p as *const __m128i);
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(x, m4);
    let hi = _mm_and_si128(_mm_srli_epi16(x, 4), m4);
    _mm256_set_m128i(hi, lo)
}

/// `0x10` in byte `j` where bit `j` of the little-endian `u32` at `p` is set.
#[inline(always)]
unsafe fn high_bits32(p: *const u8) -> __m256i {
    let qh = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    let v = _mm256_set1_epi32(qh as i32);
    let spread = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(v, spread);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// A legacy 32-weight block format.
trait Legacy {
    const BYTES: usize;
    /// Signed `i8` weights (q8_0) rather than unsigned.
    const SIGNED: bool;
    /// The 32 weight values and `(d, m)` with `x = d q + m`.
    unsafe fn unpack(b: *const u8) -> (__m256i, f32, f32);
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Legacy for Q8_0 {
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> (__m256i, f32, f32) {
        (load256(b.add(2)), f16_load(b), 0.0)
    }
}
impl Legacy for Q4_0 {
    const BYTES: usize = 18;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> (__m256i, f32, f32) {
        let d = f16_load(b);
        (nibbles32(b.add(2)), d, -8.0 * d)
    }
}
impl Legacy for Q4_1 {
    const BYTES: usize = 20;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> (__m256i, f32, f32) {
        (nibbles32(b.add(4)), f16_load(b), f16_load(b.add(2)))
    }
}
impl Legacy for Q5_0 {
    const BYTES: usize = 22;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> (__m256i, f32, f32) {
        let d = f16_load(b);
        let q = _mm256_or_si256(nibbles32(b.add(6)), high_bits32(b.add(2)));
        (q, d, -16.0 * d)
    }
}
impl Legacy for Q5_1 {
    const BYTES: usize = 24;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> (__m256i, f32, f32) {
        let q = _mm256_or_si256(nibbles32(b.add(8)), high_bits32(b.add(4)));
        (q, f16_load(b), f16_load(b.add(2)))
    }
}

/// One block of [`legacy`] into one of its two accumulator sets.
#[inline(always)]
unsafe fn legacy_block<D: IDot, F: Legacy, const M: usize>(
    wp: *const u8,
    b: usize,
    acts: &[ActRow<'_>; M],
    acc: &mut [__m256; M],
    corr: &mut [f32; M],
) {
    let (q, d, m) = F::unpack(wp.add(b * F::BYTES));
    let cm = if F::SIGNED { -d * D::I8_OFFSET } else { m };
    for i in 0..M {
        let a = &acts[i];
        let av = load256(a.qs.as_ptr().add(b * QK) as *const u8);
        let p = if F::SIGNED {
            D::dot_i8(q, av)
        } else {
            D::dot_u8(q, av)
        };
        let da = *a.d.get_unchecked(b);
        acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(d * da), _mm256_cvtepi32_ps(p), acc[i]);
        if !(F::SIGNED && D::I8_OFFSET == 0.0) {
            corr[i] += cm * *a.ds.get_unchecked(b);
        }
    }
}

/// `sum_b [ d_w d_a dot(q, a) + (m - d_w * offset) * ds_a ]` over the blocks of a row.
/// Even and odd blocks go to separate accumulators: one chain of dependent FMAs (4 cycles
/// each) per block would otherwise bound the loop below the load rate.
#[inline(always)]
unsafe fn legacy<D: IDot, F: Legacy, const M: usize>(
    w: &[u8],
    acts: &[ActRow<'_>; M],
    out: &mut [f32; M],
) {
    let nb = w.len() / F::BYTES;
    let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); M], [_mm256_setzero_ps(); M]);
    let (mut corr0, mut corr1) = ([0.0f32; M], [0.0f32; M]);
    let wp = w.as_ptr();
    let mut b = 0;
    while b + 2 <= nb {
        legacy_block::<D, F, M>(wp, b, acts, &mut acc0, &mut corr0);
        legacy_block::<D, F, M>(wp, b + 1, acts, &mut acc1, &mut corr1);
        b += 2;
    }
    if b < nb {
        legacy_block::<D, F, M>(wp, b, acts, &mut acc0, &mut corr0);
    }
    for i in 0..M {
        out[i] = hsum_ps(_mm256_add_ps(acc0[i], acc1[i])) + (corr0[i] + corr1[i]);
    }
}

/// Two blocks of [`legacy_zmm`]: both blocks' 64 weights in one zmm (`vpdpbusd` on 512 bits),
/// the two scale products broadcast to the block's 8 lanes each, the zero-point terms of both
/// blocks in lanes 0 and 1 of `corr`.
#[inline(always)]
unsafe fn legacy_pair<F: Legacy, const M: usize>(
    wp: *const u8,
    b: usize,
    acts: &[ActRow<'_>; M],
    acc: &mut [__m512; M],
    corr: &mut [__m128; M],
) {
    let (q0, d0, m0) = F::unpack(wp.add(b * F::BYTES));
    let (q1, d1, m1) = F::unpack(wp.add((b + 1) * F::BYTES));
    let mut q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
    if F::SIGNED {
        q = _mm512_xor_si512(q, _mm512_set1_epi8(-128));
    }
    let dw = _mm_setr_ps(d0, d1, 0.0, 0.0);
    let cm = if F::SIGNED {
        _mm_mul_ps(dw, _mm_set1_ps(-128.0))
    } else {
        _mm_setr_ps(m0, m1, 0.0, 0.0)
    };
    // Lanes 0..8 take element 0 (block b), lanes 8..16 element 1 (block b + 1).
    let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for i in 0..M {
        let a = &acts[i];
        let av = _mm512_loadu_si512(a.qs.as_ptr().add(b * QK) as *const _);
        let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, av);
        let da = _mm_castsi128_ps(_mm_loadl_epi64(a.d.as_ptr().add(b) as *const __m128i));
        let s = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_mul_ps(dw, da)));
        acc[i] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[i]);
        let ds = _mm_castsi128_ps(_mm_loadl_epi64(a.ds.as_ptr().add(b) as *const __m128i));
        corr[i] = _mm_fmadd_ps(cm, ds, corr[i]);
    }
}

/// The legacy formats on AVX-512 VNNI with 512-bit vectors: two blocks per `vpdpbusd` and the
/// per-block scalar work (zero-point term, scale product) done two blocks at a time in vector
/// lanes. Four blocks per iteration into two accumulator sets, so consecutive FMAs do not wait
/// on each other. A last odd block goes through the 256-bit [`legacy_block`].
#[inline(always)]
unsafe fn legacy_zmm<F: Legacy, const M: usize>(
    w: &[u8],
    acts: &[ActRow<'_>; M],
    out: &mut [f32; M],
) {
    let nb = w.len() / F::BYTES;
    let wp = w.as_ptr();
    let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); M], [_mm512_setzero_ps(); M]);
    let (mut corr0, mut corr1) = ([_mm_setzero_ps(); M], [_mm_setzero_ps(); M]);
    let mut b = 0;
    while b + 4 <= nb {
        legacy_pair::<F, M>(wp, b, acts, &mut acc0, &mut corr0);
        legacy_pair::<F, M>(wp, b + 2, acts, &mut acc1, &mut corr1);
        b += 4;
    }
    if b + 2 <= nb {
        legacy_pair::<F, M>(wp, b, acts, &mut acc0, &mut corr0);
        b += 2;
    }
    let mut tail = [_mm256_setzero_ps(); M];
    let mut tail_corr = [0.0f32; M];
    if b < nb {
        legacy_block::<Vnni, F, M>(wp, b, acts, &mut tail, &mut tail_corr);
    }
    for i in 0..M {
        let c = _mm_add_ps(corr0[i], corr1[i]);
        let c = _mm_add_ss(c, _mm_movehdup_ps(c));
        out[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i]))
            + hsum_ps(tail[i])
            + _mm_cvtss_f32(c)
            + tail_corr[i];
    }
}

/// Sum over sub-blocks of `m_j * (bsums[2j] + bsums[2j+1])` for q4_K/q5_K mins.
#[inline(always)]
unsafe fn min_sum(mn: &[u8; 8], bs: *const i16) -> i32 {
    let mut s = 0i32;
    for (j, &m) in mn.iter().enumerate() {
        s += m as i32 * (*bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32);
    }
    s
}

/// q4_K (`HIGH = false`) and q5_K (`HIGH = true`).
#[inline(always)]
unsafe fn qk<D: IDot, const HIGH: bool, const M: usize>(
    w: &[u8],
    acts: &[ActRow<'_>; M],
    out: &mut [f32; M],
) {
    let bb = if HIGH { 176 } else { 144 };
    let nb = w.len() / bb;
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let mut acc = [_mm256_setzero_ps(); M];
    let mut corr = [0.0f32; M];
    for b in 0..nb {
        let blk = w.as_ptr().add(b * bb);
        let d = f16_load(blk);
        let dmin = f16_load(blk.add(2));
        let scales = std::slice::from_raw_parts(blk.add(4), 12);
        let mut sc = [0u8; 8];
        let mut mn = [0u8; 8];
        for j in 0..8 {
            (sc[j], mn[j]) = scale_min_k4(j, scales);
        }
        let qs = blk.add(if HIGH { 48 } else { 16 });
        let mut qh = if HIGH {
            load256(blk.add(16))
        } else {
            _mm256_setzero_si256()
        };
        let mut iacc = [_mm256_setzero_si256(); M];
        for c in 0..4 {
            let x = load256(qs.add(32 * c));
            let mut lo = _mm256_and_si256(x, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
            if HIGH {
                let hl = _mm256_and_si256(qh, one);
                let hh = _mm256_and_si256(_mm256_srli_epi16(qh, 1), one);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(hl, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(hh, 4));
                qh = _mm256_srli_epi16(qh, 2);
            }
            let sl = _mm256_set1_epi16(sc[2 * c] as i16);
            let sh = _mm256_set1_epi16(sc[2 * c + 1] as i16);
            for i in 0..M {
                let a = acts[i].qs.as_ptr().add(b * QK_K + 64 * c) as *const u8;
                let p0 = _mm256_maddubs_epi16(lo, load256(a));
                let p1 = _mm256_maddubs_epi16(hi, load256(a.add(32)));
                iacc[i] = D::acc_madd(iacc[i], p0, sl);
                iacc[i] = D::acc_madd(iacc[i], p1, sh);
            }
        }
        for i in 0..M {
            let a = &acts[i];
            let da = *a.d.get_unchecked(b);
            acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(d * da), _mm256_cvtepi32_ps(iacc[i]), acc[i]);
            let ms = min_sum(&mn, a.bsums.as_ptr().add(16 * b));
            corr[i] -= dmin * da * ms as f32;
        }
    }
    for i in 0..M {
        out[i] = hsum_ps(acc[i]) + corr[i];
    }
}

/// i16 scale vector `[s[j] x 8 | s[j+1] x 8]` from 16 `i8` scales.
#[inline(always)]
unsafe fn scale_pair(scales: __m128i, j: i64) -> __m256i {
    let ctrl = _mm_set_epi64x((j + 1) * 0x0101_0101_0101_0101, j * 0x0101_0101_0101_0101);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, ctrl))
}

#[inline(always)]
unsafe fn q6_k<D: IDot, const M: usize>(w: &[u8], acts: &[ActRow<'_>; M], out: &mut [f32; M]) {
    let nb = w.len() / 210;
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); M];
    for b in 0..nb {
        let blk = w.as_ptr().add(b * 210);
        let scales = _mm_loadu_si128(blk.add(192) as *const __m128i);
        let d = f16_load(blk.add(208));
        let mut iacc = [_mm256_setzero_si256(); M];
        for n in 0..2 {
            let ql0 = load256(blk.add(64 * n));
            let ql1 = load256(blk.add(64 * n + 32));
            let qh = load256(blk.add(128 + 32 * n));
            let h1 = _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4);
            let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4);
            let h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4);
            let h4 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4);
            let q = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), h1),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), h3),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), h4),
            ];
            let base = 8 * n as i64;
            let s = [
                scale_pair(scales, base),
                scale_pair(scales, base + 2),
                scale_pair(scales, base + 4),
                scale_pair(scales, base + 6),
            ];
            for i in 0..M {
                let a = acts[i].qs.as_ptr().add(b * QK_K + 128 * n) as *const u8;
                for k in 0..4 {
                    let p = _mm256_maddubs_epi16(q[k], load256(a.add(32 * k)));
                    iacc[i] = D::acc_madd(iacc[i], p, s[k]);
                }
            }
        }
        let sc16 = _mm256_cvtepi8_epi16(scales);
        for i in 0..M {
            let a = &acts[i];
            let bs = _mm256_loadu_si256(a.bsums.as_ptr().add(16 * b) as *const __m256i);
            // sum_g s_g * 32 * bsums_g: the offset of the unsigned 6-bit values.
            let off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
            let isum = _mm256_sub_epi32(iacc[i], off);
            let da = *a.d.get_unchecked(b);
            acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(d * da), _mm256_cvtepi32_ps(isum), acc[i]);
        }
    }
    for i in 0..M {
        out[i] = hsum_ps(acc[i]);
    }
}

#[inline(always)]
unsafe fn body<D: IDot, const M: usize>(
    ty: QuantType,
    w: &[u8],
    acts: &[ActRow<'_>; M],
    out: &mut [f32; M],
) {
    match ty {
        QuantType::Q8_0 => legacy::<D, Q8_0, M>(w, acts, out),
        QuantType::Q4_0 => legacy::<D, Q4_0, M>(w, acts, out),
        QuantType::Q4_1 => legacy::<D, Q4_1, M>(w, acts, out),
        QuantType::Q5_0 => legacy::<D, Q5_0, M>(w, acts, out),
        QuantType::Q5_1 => legacy::<D, Q5_1, M>(w, acts, out),
        QuantType::Q4K => qk::<D, false, M>(w, acts, out),
        QuantType::Q5K => qk::<D, true, M>(w, acts, out),
        QuantType::Q6K => q6_k::<D, M>(w, acts, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2<const M: usize>(
    ty: QuantType,
    w: &[u8],
    acts: &[ActRow<'_>; M],
    out: &mut [f32; M],
) {
    body::<Avx2, M>(ty, w, acts, out)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows_vnni<const M: usize>(
    ty: QuantType,
    w: &[u8],
    acts: &[ActRow<'_>; M],
    out: &mut [f32; M],
) {
    // GEMV only: with 2..=4 activation rows (the prefill micro-tile) the 256-bit body keeps
    // more in registers and measured faster (quant_gemv example, 512 x 4096 q4_0: 30 vs 18
    // GMAC/s), while for one row the 512-bit path streams ~1.5x more weight bytes per second.
    if M > 1 {
        return body::<Vnni, M>(ty, w, acts, out);
    }
    match ty {
        QuantType::Q8_0 => legacy_zmm::<Q8_0, M>(w, acts, out),
        QuantType::Q4_0 => legacy_zmm::<Q4_0, M>(w, acts, out),
        QuantType::Q4_1 => legacy_zmm::<Q4_1, M>(w, acts, out),
        QuantType::Q5_0 => legacy_zmm::<Q5_0, M>(w, acts, out),
        QuantType::Q5_1 => legacy_zmm::<Q5_1, M>(w, acts, out),
        QuantType::Q4K | QuantType::Q5K | QuantType::Q6K => body::<Vnni, M>(ty, w, acts, out),
    }
}

fn run<const M: usize>(
    isa: QuantIsa,
    ty: QuantType,
    w: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
) {
    let (Ok(acts), Ok(out)) = (
        <&[ActRow<'_>; M]>::try_from(acts),
        <&mut [f32; M]>::try_from(out),
    ) else {
        unreachable!("dot_rows dispatches on the slice length")
    };
    // SAFETY: `isa.available()` was checked by the caller (`QuantMatrix` / `dot_with` fall back
    // to scalar otherwise), so the CPU has every feature the wrapper enables. Lengths are
    // consistent: `w` is whole blocks of `ty` for `cols` weights, and every activation row has
    // `cols` values, `cols / block` scales and sums (checked by `QuantMatrix::check_act`).
    unsafe {
        match isa {
            QuantIsa::Avx512Vnni => rows_vnni::<M>(ty, w, acts, out),
            _ => rows_avx2::<M>(ty, w, acts, out),
        }
    }
}

/// Dot products of one weight row with 1..=4 activation rows on AVX2 or VNNI.
pub(super) fn dot_rows(
    isa: QuantIsa,
    ty: QuantType,
    w: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
) {
    debug_assert!(isa.available());
    debug_assert_eq!(acts.len(), out.len());
    debug_assert!(acts.iter().all(|a| {
        let blocks = w.len() / ty.block_bytes();
        a.qs.len() == blocks * ty.block_elems()
            && a.d.len() == blocks
            && (ty.block_elems() != QK || a.ds.len() == blocks)
            && (ty.block_elems() != QK_K || a.bsums.len() == blocks * 16)
    }));
    match acts.len() {
        0 => {}
        1 => run::<1>(isa, ty, w, acts, out),
        2 => run::<2>(isa, ty, w, acts, out),
        3 => run::<3>(isa, ty, w, acts, out),
        4 => run::<4>(isa, ty, w, acts, out),
        _ => {
            for (a, o) in acts.chunks(4).zip(out.chunks_mut(4)) {
                dot_rows(isa, ty, w, a, o);
            }
        }
    }
}
