//! GEMV `y = W x (+ b)`: the decode kernel. At batch 1 every weight is used once per token, so
//! the kernel's job is to stream `W` from DRAM at the memory's read bandwidth (PITFALLS.md
//! "decode speed limit": tokens/s <= BW / bytes per token).
//!
//! Shape of the AVX-512 kernels: one row at a time (the matrix is read as one sequential
//! stream), four vectors per step (independent FMA chains), software prefetch 4 KiB ahead into
//! L2, bf16/f16 widened in registers, masked tail loads, one horizontal sum per row. AVX2: four
//! rows at a time, two vectors per row per step, scalar tail. Rows are split across the pool's
//! threads in multiples of [`ROWS`].
//!
//! Accounting per call: reads `rows * cols * sizeof(w)` weight bytes plus `cols * 4` bytes of
//! `x` (cache-resident), writes `rows * 4`; `2 * rows * cols` FLOPs.

use super::convert::{bf16_to_f32, f16_to_f32};
use super::{split_range, MatRef, SendPtr, ThreadPool, WeightData};
use crate::isa::Isa;

/// Rows per thread-split unit.
pub const ROWS: usize = 4;
/// Vectors per row per step of the AVX-512 kernels (4 independent FMA chains).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const UNROLL: usize = 4;
/// Software prefetch distance along a row. Measured on a Sapphire Rapids guest (896-column
/// Qwen2.5-0.5B matrices, 1 thread): without it, bf16 rows stream at ~65% of the read bandwidth
/// (a bf16 row feeds half the bytes per instruction of an f32 row, so the out-of-order window
/// covers half the misses); prefetching 4 KiB ahead into L2 (`prefetcht1`) brings bf16 to ~94%
/// and leaves f32 at the read bandwidth. `prefetcht0` at the same distance was slower (L1 fill
/// buffers), 1-2 KiB too short; processing 4 rows at once was slower than one sequential
/// stream (several streams inside one 4 KiB page confuse the L2 streamer).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_BYTES: usize = 4096;

/// `y[r] = sum_k W[r,k] x[k] + bias[r]`, scalar twin: one row at a time, sequential sums.
pub fn gemv_scalar(w: MatRef<'_>, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    check(&w, x, bias, y);
    for (r, out) in y.iter_mut().enumerate() {
        let row = r * w.cols..(r + 1) * w.cols;
        let mut acc = 0.0f32;
        match w.data {
            WeightData::F32(d) => {
                for (a, b) in d[row].iter().zip(x) {
                    acc += a * b;
                }
            }
            WeightData::F16(d) => {
                for (&a, b) in d[row].iter().zip(x) {
                    acc += f16_to_f32(a) * b;
                }
            }
            WeightData::Bf16(d) => {
                for (&a, b) in d[row].iter().zip(x) {
                    acc += bf16_to_f32(a) * b;
                }
            }
        }
        *out = acc + bias.map_or(0.0, |b| b[r]);
    }
}

fn check(w: &MatRef<'_>, x: &[f32], bias: Option<&[f32]>, y: &[f32]) {
    assert_eq!(x.len(), w.cols, "gemv: x length");
    assert_eq!(y.len(), w.rows, "gemv: y length");
    if let Some(b) = bias {
        assert_eq!(b.len(), w.rows, "gemv: bias length");
    }
}

/// `y = W x (+ bias)` on `pool`'s threads with the kernels of `isa`.
///
/// # Panics
/// When the lengths of `x`, `y` or `bias` do not match `w` (a caller bug; the engine validates
/// shapes when it loads a model).
pub fn gemv(
    isa: Isa,
    pool: &ThreadPool,
    w: MatRef<'_>,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    check(&w, x, bias, y);
    let threads = pool.threads();
    // Below ~64 KiB of weights, one thread is faster than waking another.
    let small = w.rows * w.cols * w.dtype().size() < (64 << 10);
    if threads == 1 || small || w.rows < 2 * ROWS {
        gemv_one(isa, w, x, bias, y);
        return;
    }
    let rows = w.rows;
    let yp = SendPtr(y.as_mut_ptr());
    pool.run(&|tid| {
        let (lo, hi) = split_range(rows, threads, tid, ROWS);
        if lo == hi {
            return;
        }
        // SAFETY: threads get disjoint row ranges [lo, hi) of `y`, which outlives `run`.
        let ys = unsafe { std::slice::from_raw_parts_mut(yp.ptr().add(lo), hi - lo) };
        gemv_one(isa, w.row_range(lo, hi), x, bias.map(|b| &b[lo..hi]), ys);
    });
}

/// One thread's share.
fn gemv_one(isa: Isa, w: MatRef<'_>, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let cols = w.cols;
    match w.data {
        WeightData::F32(d) => super::simd::dispatch!(isa,
            scalar => gemv_scalar(w, x, bias, y),
            avx2 => x86::gemv_f32_avx2(d.as_ptr(), cols, x, bias, y),
            avx512 => x86::gemv_f32_avx512(d.as_ptr(), cols, x, bias, y),
            neon => super::aarch64::gemv_f32_neon(d, cols, x, bias, y)),
        WeightData::F16(d) => super::simd::dispatch!(isa,
            scalar => gemv_scalar(w, x, bias, y),
            avx2 => x86::gemv_f16_avx2(d.as_ptr(), cols, x, bias, y),
            avx512 => x86::gemv_f16_avx512(d.as_ptr(), cols, x, bias, y),
            neon => super::aarch64::gemv_f16_neon(d, cols, x, bias, y)),
        WeightData::Bf16(d) => super::simd::dispatch!(isa,
            scalar => gemv_scalar(w, x, bias, y),
            avx2 => x86::gemv_bf16_avx2(d.as_ptr(), cols, x, bias, y),
            avx512 => x86::gemv_bf16_avx512(d.as_ptr(), cols, x, bias, y),
            neon => super::aarch64::gemv_bf16_neon(d, cols, x, bias, y)),
    }
}

/// Token counts up to which [`gemm_small`] (weights streamed once, tokens reused from L2)
/// beats the `gemm` crate, whose packing of the weight matrix dominates at small `m`.
pub const SMALL_M: usize = 64;

/// `c[t*ldc + j] = sum_k a[t*cols + k] W[j, k]` for `t < m`, weight rows `j` in `lo..hi`
/// (outputs at columns `lo..hi` of `c`), with the AVX-512 tile kernel. Returns `false` (and does
/// nothing) when `isa` has no such kernel.
///
/// # Safety
/// `c` must be valid for writes at `t*ldc + j` for `t < m`, `j` in `lo..hi`, and no other
/// thread may touch those elements during the call; `a` holds `m x w.cols` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_small(
    isa: Isa,
    w: MatRef<'_>,
    a: &[f32],
    m: usize,
    lo: usize,
    hi: usize,
    c: *mut f32,
    ldc: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && isa.available() {
        debug_assert!(a.len() >= m * w.cols && hi <= w.rows);
        let k = w.cols;
        let out = c.add(lo);
        // SAFETY: the CPU has AVX-512 (checked); pointers are in bounds per the contract.
        match w.data {
            WeightData::F32(d) => {
                x86::small_f32_avx512(d.as_ptr().add(lo * k), hi - lo, k, a.as_ptr(), m, out, ldc)
            }
            WeightData::Bf16(d) => {
                x86::small_bf16_avx512(d.as_ptr().add(lo * k), hi - lo, k, a.as_ptr(), m, out, ldc)
            }
            WeightData::F16(d) => {
                x86::small_f16_avx512(d.as_ptr().add(lo * k), hi - lo, k, a.as_ptr(), m, out, ldc)
            }
        }
        return true;
    }
    let _ = (isa, w, a, m, lo, hi, c, ldc);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PREFETCH_BYTES, ROWS, UNROLL};
    use crate::engine::convert::{bf16_to_f32, f16_to_f32};
    use std::arch::x86_64::*;

    // Element loaders: 16 (AVX-512) or 8 (AVX2) weights widened to f32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn ld512_f32(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldm512_f32(m: __mmask16, p: *const f32) -> __m512 {
        _mm512_maskz_loadu_ps(m, p)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn ld512_bf16(p: *const u16) -> __m512 {
        let h = _mm256_loadu_si256(p as *const __m256i);
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldm512_bf16(m: __mmask16, p: *const u16) -> __m512 {
        let h = _mm256_maskz_loadu_epi16(m, p as *const i16);
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn ld512_f16(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldm512_f16(m: __mmask16, p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16))
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ld256_f32(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ld256_bf16(p: *const u16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ld256_f16(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    fn widen_f32(v: f32) -> f32 {
        v
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    macro_rules! gemv_avx512 {
        ($name:ident, $row_fn:ident, $t:ty, $ld:ident, $ldm:ident) => {
            /// One row of `y = W x`: `U` vectors of 16 per step, each step's cache lines
            /// prefetched [`PREFETCH_BYTES`] ahead into L2.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            #[inline]
            unsafe fn $row_fn<const U: usize>(w: *const $t, cols: usize, x: *const f32) -> f32 {
                let mut acc = [_mm512_setzero_ps(); U];
                let mut k = 0;
                let lines = (16 * U * std::mem::size_of::<$t>()).div_ceil(64);
                while k + 16 * U <= cols {
                    let p = w.add(k);
                    let ahead = (p as *const u8).wrapping_add(PREFETCH_BYTES);
                    for l in 0..lines {
                        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l) as *const i8);
                    }
                    for u in 0..U {
                        let xv = _mm512_loadu_ps(x.add(k + 16 * u));
                        acc[u] = _mm512_fmadd_ps($ld(p.add(16 * u)), xv, acc[u]);
                    }
                    k += 16 * U;
                }
                while k + 16 <= cols {
                    let xa = _mm512_loadu_ps(x.add(k));
                    acc[0] = _mm512_fmadd_ps($ld(w.add(k)), xa, acc[0]);
                    k += 16;
                }
                if k < cols {
                    let m: __mmask16 = ((1u32 << (cols - k)) - 1) as u16;
                    let xa = _mm512_maskz_loadu_ps(m, x.add(k));
                    acc[U - 1] = _mm512_fmadd_ps($ldm(m, w.add(k)), xa, acc[U - 1]);
                }
                let mut t = acc[0];
                for u in 1..U {
                    t = _mm512_add_ps(t, acc[u]);
                }
                _mm512_reduce_add_ps(t)
            }

            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            pub unsafe fn $name(
                w: *const $t,
                cols: usize,
                x: &[f32],
                bias: Option<&[f32]>,
                y: &mut [f32],
            ) {
                for (r, out) in y.iter_mut().enumerate() {
                    *out = $row_fn::<UNROLL>(w.add(r * cols), cols, x.as_ptr());
                }
                if let Some(b) = bias {
                    for (o, bb) in y.iter_mut().zip(b) {
                        *o += bb;
                    }
                }
            }
        };
    }

    macro_rules! gemv_avx2 {
        ($name:ident, $rows_fn:ident, $t:ty, $ld:ident, $widen:ident) => {
            #[target_feature(enable = "avx2,fma,f16c")]
            #[inline]
            unsafe fn $rows_fn<const R: usize>(
                w: *const $t,
                cols: usize,
                x: *const f32,
            ) -> [f32; R] {
                let mut a = [_mm256_setzero_ps(); R];
                let mut b = [_mm256_setzero_ps(); R];
                let mut k = 0;
                while k + 16 <= cols {
                    let xa = _mm256_loadu_ps(x.add(k));
                    let xb = _mm256_loadu_ps(x.add(k + 8));
                    for r in 0..R {
                        let p = w.add(r * cols + k);
                        a[r] = _mm256_fmadd_ps($ld(p), xa, a[r]);
                        b[r] = _mm256_fmadd_ps($ld(p.add(8)), xb, b[r]);
                    }
                    k += 16;
                }
                if k + 8 <= cols {
                    let xa = _mm256_loadu_ps(x.add(k));
                    for r in 0..R {
                        a[r] = _mm256_fmadd_ps($ld(w.add(r * cols + k)), xa, a[r]);
                    }
                    k += 8;
                }
                let mut out = [0.0f32; R];
                for r in 0..R {
                    let mut s = hsum256(_mm256_add_ps(a[r], b[r]));
                    for j in k..cols {
                        s += $widen(*w.add(r * cols + j)) * *x.add(j);
                    }
                    out[r] = s;
                }
                out
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            pub unsafe fn $name(
                w: *const $t,
                cols: usize,
                x: &[f32],
                bias: Option<&[f32]>,
                y: &mut [f32],
            ) {
                let rows = y.len();
                let mut r = 0;
                while r + ROWS <= rows {
                    let v = $rows_fn::<ROWS>(w.add(r * cols), cols, x.as_ptr());
                    y[r..r + ROWS].copy_from_slice(&v);
                    r += ROWS;
                }
                while r < rows {
                    y[r] = $rows_fn::<1>(w.add(r * cols), cols, x.as_ptr())[0];
                    r += 1;
                }
                if let Some(b) = bias {
                    for (o, bb) in y.iter_mut().zip(b) {
                        *o += bb;
                    }
                }
            }
        };
    }

    macro_rules! small_avx512 {
        ($name:ident, $tile:ident, $t:ty, $ld:ident, $ldm:ident) => {
            /// `R` weight rows against `T` tokens: `R x T` accumulators, each weight vector
            /// loaded once per token block and reused `T` times.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            #[inline]
            unsafe fn $tile<const R: usize, const T: usize>(
                w: *const $t,
                cols: usize,
                a: *const f32,
                c: *mut f32,
                ldc: usize,
            ) {
                let mut acc = [[_mm512_setzero_ps(); T]; R];
                let mut k = 0;
                while k + 16 <= cols {
                    let mut wv = [_mm512_setzero_ps(); R];
                    for r in 0..R {
                        wv[r] = $ld(w.add(r * cols + k));
                    }
                    for t in 0..T {
                        let xv = _mm512_loadu_ps(a.add(t * cols + k));
                        for r in 0..R {
                            acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
                        }
                    }
                    k += 16;
                }
                if k < cols {
                    let m: __mmask16 = ((1u32 << (cols - k)) - 1) as u16;
                    let mut wv = [_mm512_setzero_ps(); R];
                    for r in 0..R {
                        wv[r] = $ldm(m, w.add(r * cols + k));
                    }
                    for t in 0..T {
                        let xv = _mm512_maskz_loadu_ps(m, a.add(t * cols + k));
                        for r in 0..R {
                            acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
                        }
                    }
                }
                for t in 0..T {
                    for r in 0..R {
                        *c.add(t * ldc + r) = _mm512_reduce_add_ps(acc[r][t]);
                    }
                }
            }

            /// `c[t*ldc + j] = sum_k a[t*cols + k] W[j, k]` for `t < m` and the `rows` weight
            /// rows starting at `w` (their outputs start at `c`).
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            pub unsafe fn $name(
                w: *const $t,
                rows: usize,
                cols: usize,
                a: *const f32,
                m: usize,
                c: *mut f32,
                ldc: usize,
            ) {
                let mut r = 0;
                while r < rows {
                    let rb = (rows - r).min(4);
                    let wr = w.add(r * cols);
                    // The next row block streams in while this one is reused from L1.
                    let next = (wr as *const u8).wrapping_add(4 * cols * std::mem::size_of::<$t>());
                    for l in (0..rb * cols * std::mem::size_of::<$t>()).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(l) as *const i8);
                    }
                    let mut t = 0;
                    while t < m {
                        let tb = (m - t).min(4);
                        let (at, ct) = (a.add(t * cols), c.add(t * ldc + r));
                        match (rb, tb) {
                            (4, 4) => $tile::<4, 4>(wr, cols, at, ct, ldc),
                            (4, _) => {
                                for tt in 0..tb {
                                    $tile::<4, 1>(
                                        wr,
                                        cols,
                                        at.add(tt * cols),
                                        ct.add(tt * ldc),
                                        ldc,
                                    )
                                }
                            }
                            (_, _) => {
                                for rr in 0..rb {
                                    for tt in 0..tb {
                                        $tile::<1, 1>(
                                            wr.add(rr * cols),
                                            cols,
                                            at.add(tt * cols),
                                            ct.add(tt * ldc + rr),
                                            ldc,
                                        )
                                    }
                                }
                            }
                        }
                        t += tb;
                    }
                    r += rb;
                }
            }
        };
    }

    small_avx512!(
        small_f32_avx512,
        tile_f32_avx512,
        f32,
        ld512_f32,
        ldm512_f32
    );
    small_avx512!(
        small_bf16_avx512,
        tile_bf16_avx512,
        u16,
        ld512_bf16,
        ldm512_bf16
    );
    small_avx512!(
        small_f16_avx512,
        tile_f16_avx512,
        u16,
        ld512_f16,
        ldm512_f16
    );

    gemv_avx512!(gemv_f32_avx512, rows_f32_avx512, f32, ld512_f32, ldm512_f32);
    gemv_avx512!(
        gemv_bf16_avx512,
        rows_bf16_avx512,
        u16,
        ld512_bf16,
        ldm512_bf16
    );
    gemv_avx512!(gemv_f16_avx512, rows_f16_avx512, u16, ld512_f16, ldm512_f16);
    gemv_avx2!(gemv_f32_avx2, rows_f32_avx2, f32, ld256_f32, widen_f32);
    gemv_avx2!(gemv_bf16_avx2, rows_bf16_avx2, u16, ld256_bf16, bf16_to_f32);
    gemv_avx2!(gemv_f16_avx2, rows_f16_avx2, u16, ld256_f16, f16_to_f32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::convert::{f32_to_bf16, f32_to_f16};
    use crate::engine::testutil::{isas, rand_vec, SIZES};

    fn check_all(rows: usize, cols: usize, threads: usize) {
        let pool = ThreadPool::new(threads);
        let wf = rand_vec(rows * cols, 1);
        let wb: Vec<u16> = wf.iter().map(|&v| f32_to_bf16(v)).collect();
        let wh: Vec<u16> = wf.iter().map(|&v| f32_to_f16(v)).collect();
        let x = rand_vec(cols, 2);
        let bias = rand_vec(rows, 3);
        for data in [
            WeightData::F32(&wf),
            WeightData::Bf16(&wb),
            WeightData::F16(&wh),
        ] {
            let w = MatRef::new(rows, cols, data).unwrap();
            for b in [None, Some(&bias[..])] {
                let mut want = vec![0.0; rows];
                gemv_scalar(w, &x, b, &mut want);
                for isa in isas() {
                    let mut got = vec![f32::NAN; rows];
                    gemv(isa, &pool, w, &x, b, &mut got);
                    // Summation order differs: tolerance scales with sqrt(cols).
                    let tol = 1e-6 * (cols as f32).sqrt().max(1.0) * 4.0;
                    crate::engine::testutil::assert_close(
                        &got,
                        &want,
                        tol,
                        &format!("gemv {:?} {isa} {rows}x{cols} t{threads}", w.dtype()),
                    );
                }
            }
        }
    }

    #[test]
    fn gemv_matches_scalar_twin_on_every_isa_and_size() {
        for &cols in &SIZES {
            for rows in [0usize, 1, 3, 4, 5, 9, 17] {
                check_all(rows, cols, 1);
            }
        }
    }

    #[test]
    fn gemv_threaded_matches_scalar() {
        for threads in [2, 3] {
            check_all(257, 300, threads);
            check_all(64, 1000, threads);
        }
    }
}
