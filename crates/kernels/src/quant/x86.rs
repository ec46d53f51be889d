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
//! GEMV (decode, one activation row): [`gemv_rows`] loops over weight rows inside the
//! `target_feature` functions. q4_0, q4_1 and q8_0 on AVX-512 VNNI + VBMI + GFNI run
//! [`legacy4_rows`]: 4 blocks per step, two weight rows at a time, against the activation copy
//! permuted once per matmul (`Q8Activations` GEMV layout); the weights keep the GGUF layout.
//! Every path prefetches [`PF_DIST`] ahead. Without VBMI/GFNI (or with more than 4 activation
//! rows) the legacy formats take [`legacy_zmm`] / [`legacy`].
//!
//! Saturation bounds of `vpmaddubsw` (pairs of u8 x i8 summed in i16): 63 * 127 * 2 = 16002 for
//! q6_K, 31 * 127 * 2 for 5-bit, 15 * 127 * 2 for 4-bit, 127 * 127 * 2 for q8_0: all < 32767.

use super::{ActRow, QuantIsa, QuantType, QK, QK_K};
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::OnceLock;

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

/// Software prefetch distance in bytes ahead of the weight pointer (into L2: `prefetcht1`).
///
/// The hardware prefetchers of the measured machine (Xeon with 480 MiB L3, in a VM) do not
/// keep one thread's stream busy. 65536 x 4096 matrix (151 MB q4_0, 285 MB q8_0), 1 thread,
/// `quant_gemv` example, GB/s of weights over three runs while another job compiled (noisy):
/// old 2-block kernel q4_0 3.9 -> 7.8-9.2 with prefetch; 4-block kernel: no prefetch q4_0
/// 9.1-13.6, q8_0 5.9-9.4; `prefetcht0` at 2 KiB q4_0 13.6-16.7, q8_0 6.6-11.0; at 8 KiB
/// q4_0 12.5-16.2, q8_0 7.0-8.6; `prefetcht1` at 2 KiB q4_0 14.0-19.9, q8_0 8.7-11.2; at
/// 8 KiB q4_0 14.2-15.3, q8_0 7.4-8.7. Prefetching past the end of a row (into the next row, or
/// past the matrix) is harmless: rows are contiguous and prefetches never fault.
/// Raised from 2 to 8 KiB after engine decode runs on a quiet machine (depth 128, alternating
/// binaries, tokens/s, 2 KiB -> 8 KiB): SmolLM2 Q4_1 (576-column rows, a model small enough to
/// sit partly in this VM's L3) t1 121.1/119.5 -> 134.6/151.8, t2 227.1/230.4 -> 259.3/265.2;
/// the DRAM-bound Qwen2.5-0.5B files unchanged within noise (q4_0 t1 42.6/42.9 -> 44.5/42.5,
/// t2 83.0/79.2 -> 82.0/79.4; q8_0 t1 25.9/25.8 -> 25.8/26.0, t2 50.1/48.2 -> 47.9/48.6).
const PF_DIST: usize = 8192;

/// Prefetches the cache lines of `span` bytes starting [`PF_DIST`] after `p` (`span` is a
/// constant after inlining, so the loop unrolls).
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, span: usize) {
    prefetch_at(p, PF_DIST, span)
}

/// Prefetches the cache lines of `span` bytes starting `dist` after `p`.
#[inline(always)]
unsafe fn prefetch_at(p: *const u8, dist: usize, span: usize) {
    let mut o = 0;
    while o < span {
        _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(dist + o) as *const i8);
        o += 64;
    }
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
        prefetch_ahead(wp.wrapping_add(b * F::BYTES), 2 * F::BYTES);
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
        prefetch_ahead(wp.wrapping_add(b * F::BYTES), 4 * F::BYTES);
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

/// Byte indices for `vpermt2b` gathering the 16 nibble bytes of each of 4 blocks of `bytes`
/// bytes (quants at `qs_off`) from two 64-byte loads, at the group start and at its last 64
/// bytes: output byte `16k + i` is quant byte `i` of block `k`.
const fn nibble_index(bytes: usize, qs_off: usize) -> [u8; 64] {
    let second = 4 * bytes - 64;
    let mut t = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        let o = (j / 16) * bytes + qs_off + j % 16;
        t[j] = if o < 64 { o } else { 64 + o - second } as u8;
        j += 1;
    }
    t
}

/// Byte indices gathering half `half` (bytes `16 half .. 16 half + 16`) of the 32 quants of
/// each of 4 q8_0 blocks from the 128 bytes starting at byte `base` of the group.
const fn q8_index(half: usize, base: usize) -> [u8; 64] {
    let mut t = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        t[j] = ((j / 16) * 34 + 2 + 16 * half + j % 16 - base) as u8;
        j += 1;
    }
    t
}

/// Word indices putting the `f16` at byte `off` of block `k` (of `bytes` bytes) in words
/// `4k..4k+4` and, for `two`, the one at byte `off + 2` in words `16 + 4k..16 + 4k + 4`.
const fn scale_index(bytes: usize, two: bool) -> [u16; 32] {
    let mut t = [0u16; 32];
    let mut j = 0;
    while j < 32 {
        let k = (j % 16) / 4;
        let extra = if two && j >= 16 { 2 } else { 0 };
        t[j] = ((k * bytes + extra) / 2) as u16;
        j += 1;
    }
    t
}

/// [`scale_index`] for `vpermt2w` over the two loads of [`nibble_index`] (the group start and
/// its last 64 bytes): blocks of more than 20 bytes put the last block's scales past byte 64.
const fn scale_index2(bytes: usize, two: bool) -> [u16; 32] {
    let second = 4 * bytes - 64;
    let mut t = scale_index(bytes, two);
    let mut j = 0;
    while j < 32 {
        let byte = 2 * t[j] as usize;
        if byte >= 64 {
            t[j] = (32 + (byte - second) / 2) as u16;
        }
        j += 1;
    }
    t
}

#[inline(always)]
unsafe fn load_idx8(t: &[u8; 64]) -> __m512i {
    _mm512_loadu_si512(t.as_ptr() as *const _)
}

#[inline(always)]
unsafe fn load_idx16(t: &[u16; 32]) -> __m512i {
    _mm512_loadu_si512(t.as_ptr() as *const _)
}

/// A legacy format in groups of 4 blocks for [`legacy4`].
trait Group4: Legacy {
    /// Factor of the correction sum: `-offset` for formats with an implicit zero point
    /// (`x = d (q - offset)`), 1 for formats with a stored min `m` (`x = d q + m`).
    const K: f32;
    /// `x = d q + m` (the correction takes `m`, not `d`).
    const HAS_MIN: bool;
    /// The group at `p`: unsigned quants of elements 0..16 of the 4 blocks (16 bytes each, in
    /// block order), of elements 16..32, `d` per block in lanes `4k..4k+4`, and `m` likewise
    /// (or `d` again when there is no min).
    ///
    /// With `MASKED`, only the first `valid` bytes at `p` are read (the rest read as zero):
    /// the last, partial group of a row.
    unsafe fn group<const MASKED: bool>(
        p: *const u8,
        valid: usize,
    ) -> (__m512i, __m512i, __m512, __m512);
}

/// 64 bytes at `p + off`; with `MASKED` only those before `p + valid` (the others are zero and
/// not accessed: masked-out bytes of `vmovdqu8` never fault).
#[inline(always)]
unsafe fn load_group<const MASKED: bool>(p: *const u8, off: usize, valid: usize) -> __m512i {
    if MASKED {
        let n = valid.saturating_sub(off);
        let k: __mmask64 = if n >= 64 { !0 } else { (1u64 << n) - 1 };
        _mm512_maskz_loadu_epi8(k, p.wrapping_add(off) as *const i8)
    } else {
        _mm512_loadu_si512(p.add(off) as *const _)
    }
}

/// Low and high nibbles of the gathered bytes.
#[inline(always)]
unsafe fn split_nibbles(q: __m512i) -> (__m512i, __m512i) {
    let m4 = _mm512_set1_epi8(0x0F);
    // High nibble to the low bits in one `gf2p8affineqb` (GFNI): output bit i = input bit
    // i + 4 (matrix row 7 - i selects the input bits of output bit i), bits 4..8 zero.
    let hi = _mm512_gf2p8affine_epi64_epi8::<0>(q, _mm512_set1_epi64(0x1020_4080_0000_0000));
    (_mm512_and_si512(q, m4), hi)
}

/// A group of 4 blocks of a nibble format (q4_0, q4_1, q5_0, q5_1) of `bytes` bytes each:
/// `f16` `d` at byte 0, an `f16` `m` at byte 2 when `min`, the fifth bits `qh` at `qh_off`
/// for the 5-bit formats, the 16 nibble bytes where `nib` gathers them, the scales where `sc`
/// ([`scale_index2`]) gathers them from the group's two loads.
#[inline(always)]
unsafe fn nibble_group<const MASKED: bool>(
    p: *const u8,
    valid: usize,
    bytes: usize,
    nib: &[u8; 64],
    sc: &[u16; 32],
    min: bool,
    qh_off: Option<usize>,
) -> (__m512i, __m512i, __m512, __m512) {
    let x0 = load_group::<MASKED>(p, 0, valid);
    let x1 = load_group::<MASKED>(p, 4 * bytes - 64, valid);
    let q = _mm512_permutex2var_epi8(x0, load_idx8(nib), x1);
    let (lo, hi) = split_nibbles(q);
    let (lo, hi) = match qh_off {
        Some(off) => fifth_bits::<MASKED>(p, bytes, off, valid, lo, hi),
        None => (lo, hi),
    };
    let dm = _mm512_permutex2var_epi16(x0, load_idx16(sc), x1);
    let d = _mm512_cvtph_ps(_mm512_castsi512_si256(dm));
    let m = if min {
        _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1))
    } else {
        d
    };
    (lo, hi, d, m)
}

impl Group4 for Q4_0 {
    const K: f32 = -8.0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn group<const MASKED: bool>(
        p: *const u8,
        valid: usize,
    ) -> (__m512i, __m512i, __m512, __m512) {
        const NIB: [u8; 64] = nibble_index(18, 2);
        const SC: [u16; 32] = scale_index2(18, false);
        nibble_group::<MASKED>(p, valid, 18, &NIB, &SC, false, None)
    }
}

impl Group4 for Q4_1 {
    const K: f32 = 1.0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn group<const MASKED: bool>(
        p: *const u8,
        valid: usize,
    ) -> (__m512i, __m512i, __m512, __m512) {
        const NIB: [u8; 64] = nibble_index(20, 4);
        const SC: [u16; 32] = scale_index2(20, true);
        nibble_group::<MASKED>(p, valid, 20, &NIB, &SC, true, None)
    }
}

impl Group4 for Q8_0 {
    const K: f32 = -128.0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn group<const MASKED: bool>(
        p: *const u8,
        valid: usize,
    ) -> (__m512i, __m512i, __m512, __m512) {
        // 136 bytes: halves 0 from bytes 0..128, halves 1 from bytes 8..136.
        const LO: [u8; 64] = q8_index(0, 0);
        const HI: [u8; 64] = q8_index(1, 8);
        const SC: [u16; 32] = scale_index(34, false);
        let x0 = load_group::<MASKED>(p, 0, valid);
        let x1 = load_group::<MASKED>(p, 64, valid);
        let y0 = load_group::<MASKED>(p, 8, valid);
        let y1 = load_group::<MASKED>(p, 72, valid);
        let flip = _mm512_set1_epi8(-128);
        let lo = _mm512_xor_si512(_mm512_permutex2var_epi8(x0, load_idx8(&LO), x1), flip);
        let hi = _mm512_xor_si512(_mm512_permutex2var_epi8(y0, load_idx8(&HI), y1), flip);
        let dh = _mm512_permutex2var_epi16(x0, load_idx16(&SC), x1);
        let d = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
        (lo, hi, d, d)
    }
}

/// The fifth bits of q5_0/q5_1 (`qh`, a little-endian `u32` at byte `qh_off` of each block):
/// adds 16 to the gathered low-nibble bytes (elements 0..16, bits 0..16 of `qh`) and
/// high-nibble bytes (elements 16..32, bits 16..32). Bit `i` of block `k` belongs to byte
/// `16k + i` of the nibble registers, so the 4 blocks' half-words make one 64-bit mask each.
/// With `MASKED`, blocks at or past `valid` bytes are not read.
#[inline(always)]
unsafe fn fifth_bits<const MASKED: bool>(
    p: *const u8,
    bytes: usize,
    qh_off: usize,
    valid: usize,
    lo: __m512i,
    hi: __m512i,
) -> (__m512i, __m512i) {
    let (mut ml, mut mh) = (0u64, 0u64);
    for k in 0..4 {
        if MASKED && (k + 1) * bytes > valid {
            break;
        }
        let qh = (p.add(k * bytes + qh_off) as *const u32).read_unaligned();
        ml |= u64::from(qh & 0xFFFF) << (16 * k);
        mh |= u64::from(qh >> 16) << (16 * k);
    }
    let c16 = _mm512_set1_epi8(0x10);
    (
        _mm512_or_si512(lo, _mm512_maskz_mov_epi8(ml, c16)),
        _mm512_or_si512(hi, _mm512_maskz_mov_epi8(mh, c16)),
    )
}

impl Group4 for Q5_0 {
    const K: f32 = -16.0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn group<const MASKED: bool>(
        p: *const u8,
        valid: usize,
    ) -> (__m512i, __m512i, __m512, __m512) {
        const NIB: [u8; 64] = nibble_index(22, 6);
        const SC: [u16; 32] = scale_index2(22, false);
        nibble_group::<MASKED>(p, valid, 22, &NIB, &SC, false, Some(2))
    }
}

impl Group4 for Q5_1 {
    const K: f32 = 1.0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn group<const MASKED: bool>(
        p: *const u8,
        valid: usize,
    ) -> (__m512i, __m512i, __m512, __m512) {
        const NIB: [u8; 64] = nibble_index(24, 8);
        const SC: [u16; 32] = scale_index2(24, true);
        nibble_group::<MASKED>(p, valid, 24, &NIB, &SC, true, Some(4))
    }
}

/// Group `g` of the activation layout against the weight group at `p` (`valid` bytes of it
/// with `MASKED`), accumulated lane-wise.
#[inline(always)]
unsafe fn group_dot<F: Group4, const MASKED: bool>(
    p: *const u8,
    valid: usize,
    g: usize,
    a: &ActRow<'_>,
    acc: &mut __m512,
    corr: &mut __m512,
) {
    let (lo, hi, d, m) = F::group::<MASKED>(p, valid);
    let ap = a.qp.as_ptr().add(g * 128);
    let a0 = _mm512_loadu_si512(ap as *const _);
    let a1 = _mm512_loadu_si512(ap.add(64) as *const _);
    // 4 lanes per block: both halves of a block accumulate into the same lanes.
    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a0);
    let s = _mm512_dpbusd_epi32(s, hi, a1);
    let da = _mm512_loadu_ps(a.dx.as_ptr().add(g * 16));
    let ds = _mm512_loadu_ps(a.sx.as_ptr().add(g * 16));
    *acc = _mm512_fmadd_ps(d, _mm512_mul_ps(_mm512_cvtepi32_ps(s), da), *acc);
    *corr = _mm512_fmadd_ps(if F::HAS_MIN { m } else { d }, ds, *corr);
}

/// The last, partial group of a row of `nb` blocks (none when `nb` is a multiple of 4): masked
/// loads stop at the row end, and the zero-padded activations (`d = ds = 0`) of the missing
/// blocks cancel whatever is computed for them (zeros: finite scales).
#[inline(always)]
unsafe fn partial_group<F: Group4>(
    wr: *const u8,
    nb: usize,
    a: &ActRow<'_>,
    acc: &mut __m512,
    corr: &mut __m512,
) {
    let g = nb / 4;
    if !nb.is_multiple_of(4) {
        let p = wr.add(g * 4 * F::BYTES);
        group_dot::<F, true>(p, (nb % 4) * F::BYTES, g, a, acc, corr);
    }
}

/// q4_0, q4_1, q5_0, q5_1, q8_0 GEMV on AVX-512 VNNI + VBMI, 4 blocks (128 weights) per step: the quant
/// bytes of 4 blocks are gathered with one `vpermt2b` per half (the GGUF layout has the `f16`
/// scales between blocks), the activations come pre-permuted in the same order
/// ([`ActRow::qp`]), so two `vpdpbusd` leave each block's dot product in 4 lanes; the 4 block
/// scales are spread to those lanes by one `vpermw` and converted by one `vcvtph2ps`. The
/// zero-point / min term `K sum_b c_b ds_b` is a second lane-wise accumulator. A last partial
/// group runs with masked loads against zero-padded activations.
///
/// Cache-resident (4864 x 896, 1 thread, `quant_gemv`): q4_0 9.3 -> 32 GB/s of weights,
/// q4_1 9.1 -> 30, q8_0 18.9 -> 25 against the 2-block kernel ([`legacy_zmm`]), ~35 / 34 /
/// 27 with 2 rows at once ([`legacy4_rows`]).
///
/// Needs `a.qp`, `a.dx`, `a.sx` for the row's groups (checked by the caller).
#[inline(always)]
unsafe fn legacy4<F: Group4 + Legacy>(w: &[u8], a: &ActRow<'_>) -> f32 {
    let nb = w.len() / F::BYTES;
    let groups = nb / 4;
    let wp = w.as_ptr();
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let (mut corr0, mut corr1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let gb = 4 * F::BYTES;
    let mut g = 0;
    while g + 2 <= groups {
        let p = wp.add(g * gb);
        prefetch_ahead(p, 2 * gb);
        group_dot::<F, false>(p, 0, g, a, &mut acc0, &mut corr0);
        group_dot::<F, false>(p.add(gb), 0, g + 1, a, &mut acc1, &mut corr1);
        g += 2;
    }
    if g < groups {
        group_dot::<F, false>(wp.add(g * gb), 0, g, a, &mut acc0, &mut corr0);
    }
    partial_group::<F>(wp, nb, a, &mut acc1, &mut corr1);
    let t = _mm512_fmadd_ps(
        _mm512_set1_ps(F::K),
        _mm512_add_ps(corr0, corr1),
        _mm512_add_ps(acc0, acc1),
    );
    _mm512_reduce_add_ps(t)
}

/// [`legacy4`] for `R` consecutive weight rows at once (`R` streams in flight; each group's
/// activations are loaded once for all rows). One accumulator pair per row: the rows'
/// independent FMA chains hide each other's latency. Each row's stream prefetches its own
/// future: `pf` bytes ahead, a whole number of `R`-row steps (a fixed distance from row 0
/// would land inside row 1, which is being read already).
#[inline(always)]
unsafe fn legacy4_rows<F: Group4 + Legacy, const R: usize>(
    w: &[u8],
    rb: usize,
    pf: usize,
    a: &ActRow<'_>,
    out: &mut [f32; R],
) {
    let nb = rb / F::BYTES;
    let groups = nb / 4;
    let wp = w.as_ptr();
    let gb = 4 * F::BYTES;
    let mut acc = [_mm512_setzero_ps(); R];
    let mut corr = [_mm512_setzero_ps(); R];
    for g in 0..groups {
        for i in 0..R {
            let p = wp.add(i * rb + g * gb);
            prefetch_at(p, pf, gb);
            group_dot::<F, false>(p, 0, g, a, &mut acc[i], &mut corr[i]);
        }
    }
    for i in 0..R {
        partial_group::<F>(wp.add(i * rb), nb, a, &mut acc[i], &mut corr[i]);
        let t = _mm512_fmadd_ps(_mm512_set1_ps(F::K), corr[i], acc[i]);
        out[i] = _mm512_reduce_add_ps(t);
    }
}

/// Whether `a` carries the GEMV layout for a row of `nb` legacy blocks.
#[inline(always)]
fn has_gemv_layout(a: &ActRow<'_>, nb: usize) -> bool {
    let g = nb.div_ceil(4);
    a.qp.len() == g * 128 && a.dx.len() == g * 16 && a.sx.len() == g * 16
}

/// Whether the CPU has AVX512_VBMI (`vpermt2b`) and GFNI (`gf2p8affineqb`), needed by
/// [`legacy4`].
fn vbmi() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| is_x86_feature_detected!("avx512vbmi") && is_x86_feature_detected!("gfni"))
}

/// The 8 six-bit scales and 8 mins of a q4_K/q5_K block from its 12 packed bytes, as
/// `[scales 0..8 | mins 0..8]`: `reference::scale_min_k4` for all `j` at once in 32-bit words. Bytes
/// 0..4 hold scales 0..3 (low 6 bits) and bytes 4..8 mins 0..3; scales and mins 4..7 are the
/// low and high nibbles of bytes 8..12 with two more bits from the top of bytes 0..4 / 4..8.
#[inline(always)]
unsafe fn scales_mins_k4(p: *const u8) -> [u8; 16] {
    let w = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
    let (s0, s1, s2) = (w(0), w(1), w(2));
    let (low6, nib, two) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    let words = [
        s0 & low6,
        (s2 & nib) | (((s0 >> 6) & two) << 4),
        s1 & low6,
        ((s2 >> 4) & nib) | (((s1 >> 6) & two) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, v) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Sum over sub-blocks of `m_j * (bsums[2j] + bsums[2j+1])` for q4_K/q5_K mins: the 16
/// `bsums` (each |s| <= 16 * 127) summed in pairs, times the mins, in one `vpmaddwd`.
#[inline(always)]
unsafe fn min_sum(mn: &[u8; 8], bs: *const i16) -> i32 {
    let b = _mm256_loadu_si256(bs as *const __m256i);
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    let m = _mm_cvtepu8_epi16(_mm_loadl_epi64(mn.as_ptr() as *const __m128i));
    let p = _mm_madd_epi16(m, pairs);
    let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b01_00_11_10));
    let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b10_11_00_01));
    _mm_cvtsi128_si32(p)
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
        prefetch_ahead(blk, bb);
        let d = f16_load(blk);
        let dmin = f16_load(blk.add(2));
        let sm = scales_mins_k4(blk.add(4));
        let (sc, mn): (&[u8; 8], &[u8; 8]) = (
            sm[..8].try_into().expect("8 scales"),
            sm[8..].try_into().expect("8 mins"),
        );
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
            let ms = min_sum(mn, a.bsums.as_ptr().add(16 * b));
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
        prefetch_ahead(blk, 210);
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
    vnni_body::<M>(ty, w, acts, out)
}

#[inline(always)]
unsafe fn vnni_body<const M: usize>(
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

/// GEMV over consecutive weight rows `rows` of `data` (`rb` bytes each) with one activation
/// row: `out[i] = W[rows.start + i] . a`. The loop over rows runs inside the `target_feature`
/// functions, so a short row (896 columns of q4_0 are 504 bytes) pays no dispatch per row.
pub(super) fn gemv_rows(
    isa: QuantIsa,
    ty: QuantType,
    data: &[u8],
    rb: usize,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    gemv_rows_with(isa, ty, data, rb, rows, a, out, true)
}

/// [`gemv_rows`] with the VBMI kernel allowed or not (tests run both).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv_rows_with(
    isa: QuantIsa,
    ty: QuantType,
    data: &[u8],
    rb: usize,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
    allow_vbmi: bool,
) {
    assert!(isa.available() && matches!(isa, QuantIsa::Avx2 | QuantIsa::Avx512Vnni));
    assert_eq!(out.len(), rows.len());
    assert!(rows.end.checked_mul(rb).is_some_and(|e| e <= data.len()));
    let nb = rb / ty.block_bytes();
    assert!(
        rb == nb * ty.block_bytes()
            && a.qs.len() == nb * ty.block_elems()
            && a.d.len() == nb
            && (ty.block_elems() != QK || a.ds.len() == nb)
            && (ty.block_elems() != QK_K || a.bsums.len() == nb * 16)
    );
    let fast = matches!(
        ty,
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q8_0
    );
    // SAFETY: the CPU has every feature each wrapper enables (`isa.available()`, `vbmi()`);
    // rows, blocks and activation lengths were checked above, and `has_gemv_layout` checks
    // the GEMV layout `legacy4` reads.
    unsafe {
        match isa {
            QuantIsa::Avx512Vnni if allow_vbmi && fast && vbmi() && has_gemv_layout(a, nb) => {
                gemv_vbmi(ty, data, rb, rows, a, out)
            }
            QuantIsa::Avx512Vnni => gemv_vnni(ty, data, rb, rows, a, out),
            _ => gemv_avx2(ty, data, rb, rows, a, out),
        }
    }
}

/// Rows two at a time through [`legacy4_rows`] (an odd last row through [`legacy4`]).
/// `quant_gemv`, 1 thread, GB/s: 4864 x 896 q4_0 32 -> 37 with two rows, 151936 x 896 q4_0
/// 19 -> 28; four rows measured no better than two (151936 x 896 q4_0 17-20).
#[inline(always)]
unsafe fn rows4<F: Group4>(
    data: &[u8],
    rb: usize,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    const R: usize = 2;
    let step = R * rb;
    let pf = PF_DIST.div_ceil(step.max(1)).max(1) * step;
    let mut r = rows.start;
    for o in out.chunks_mut(R) {
        if let Ok(o) = <&mut [f32; R]>::try_from(&mut *o) {
            legacy4_rows::<F, R>(data.get_unchecked(r * rb..(r + R) * rb), rb, pf, a, o);
        } else {
            for v in o.iter_mut() {
                *v = legacy4::<F>(data.get_unchecked(r * rb..(r + 1) * rb), a);
                r += 1;
            }
            continue;
        }
        r += R;
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,gfni")]
unsafe fn gemv_vbmi(
    ty: QuantType,
    data: &[u8],
    rb: usize,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    match ty {
        QuantType::Q4_0 => rows4::<Q4_0>(data, rb, rows, a, out),
        QuantType::Q4_1 => rows4::<Q4_1>(data, rb, rows, a, out),
        QuantType::Q5_0 => rows4::<Q5_0>(data, rb, rows, a, out),
        QuantType::Q5_1 => rows4::<Q5_1>(data, rb, rows, a, out),
        QuantType::Q8_0 => rows4::<Q8_0>(data, rb, rows, a, out),
        _ => gemv_vnni(ty, data, rb, rows, a, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_vnni(
    ty: QuantType,
    data: &[u8],
    rb: usize,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    for (o, r) in out.iter_mut().zip(rows) {
        let mut y = [0.0f32];
        vnni_body::<1>(ty, data.get_unchecked(r * rb..(r + 1) * rb), &[*a], &mut y);
        *o = y[0];
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_avx2(
    ty: QuantType,
    data: &[u8],
    rb: usize,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    for (o, r) in out.iter_mut().zip(rows) {
        let mut y = [0.0f32];
        body::<Avx2, 1>(ty, data.get_unchecked(r * rb..(r + 1) * rb), &[*a], &mut y);
        *o = y[0];
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
        1 => gemv_rows(isa, ty, w, w.len(), 0..1, &acts[0], out),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-wise unpacking equals the per-index reference on every bit pattern of each
    /// byte position (random fills plus all-ones / all-zeros / each single bit).
    #[test]
    fn packed_k_scales_unpack_like_the_reference() {
        let mut rng = crate::xorshift::XorShift64::from_state(0x9e37_79b9_7f4a_7c15);
        let mut cases: Vec<[u8; 12]> = vec![[0; 12], [0xFF; 12]];
        for bit in 0..96 {
            let mut c = [0u8; 12];
            c[bit / 8] = 1 << (bit % 8);
            cases.push(c);
        }
        for _ in 0..2000 {
            let mut c = [0u8; 12];
            for b in c.iter_mut() {
                *b = (rng.next_u64() >> 56) as u8;
            }
            cases.push(c);
        }
        for c in cases {
            // SAFETY: reads 12 bytes of `c`.
            let got = unsafe { scales_mins_k4(c.as_ptr()) };
            for j in 0..8 {
                let (sc, mn) = super::super::reference::scale_min_k4(j, &c);
                assert_eq!(
                    (got[j], got[8 + j]),
                    (sc, mn),
                    "bytes {c:02x?} sub-block {j}"
                );
            }
        }
    }
}
