//! GEMM `C = A W^T (+ b)`: the prefill kernel. With `m` tokens every weight is reused `m`
//! times, so prefill is compute-bound and the kernel's job is FMA throughput.
//!
//! The SIMD paths call the `gemm` crate (built with its `x86-v4` feature it has AVX-512
//! microkernels; measured ~165-240 GFLOP/s per core on a Sapphire Rapids guest for f32). That
//! crate picks its own microkernel from the CPU's features, so under
//! `ROOFLINEBENCH_FORCE_ISA=avx2` on an AVX-512 machine it still runs AVX-512 code; only
//! `scalar` truly changes the path. Up to [`gemv::SMALL_M`] tokens an AVX-512 tile kernel of
//! our own runs instead (4 weight rows x 4 tokens of accumulators, each weight row streamed from
//! DRAM once): there the crate's packing of the whole weight matrix costs more than the
//! arithmetic. f16/bf16 weights are widened to f32 in blocks of
//! [`BLOCK_ROWS`] rows into a per-thread scratch buffer (L2-sized) just before use: the widening
//! costs `n*k` conversions against `2*m*n*k` FLOPs. Output columns are split across the pool.
//!
//! Accounting per call: `2*m*n*k` FLOPs; reads `n*k*sizeof(w)` weight bytes and `m*k*4`
//! activation bytes, writes `m*n*4`.

use super::{convert, gemv, split_range, MatRef, SendPtr, ThreadPool, WeightData};
use crate::isa::Isa;
use std::cell::RefCell;

/// Weight rows widened per block for f16/bf16 weights.
pub const BLOCK_ROWS: usize = 64;

fn check(a: &[f32], m: usize, w: &MatRef<'_>, bias: Option<&[f32]>, c: &[f32]) {
    assert_eq!(a.len(), m * w.cols, "gemm: a length");
    assert_eq!(c.len(), m * w.rows, "gemm: c length");
    if let Some(b) = bias {
        assert_eq!(b.len(), w.rows, "gemm: bias length");
    }
}

/// Scalar twin: `c[i*n + j] = sum_k a[i*k + kk] * W[j, kk] + bias[j]`, sequential sums.
pub fn gemm_nt_scalar(a: &[f32], m: usize, w: MatRef<'_>, bias: Option<&[f32]>, c: &mut [f32]) {
    check(a, m, &w, bias, c);
    let (n, k) = (w.rows, w.cols);
    let mut row = vec![0.0f32; k];
    for j in 0..n {
        w.row_to_f32(j, &mut row);
        for i in 0..m {
            let mut acc = 0.0f32;
            for (x, y) in a[i * k..(i + 1) * k].iter().zip(&row) {
                acc += x * y;
            }
            c[i * n + j] = acc + bias.map_or(0.0, |b| b[j]);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `C (m x n) = A (m x k) W^T + bias`, `W` being `n x k` row-major, on `pool`'s threads.
///
/// # Panics
/// When the slice lengths do not match `m` and `w` (a caller bug).
pub fn gemm_nt(
    isa: Isa,
    pool: &ThreadPool,
    a: &[f32],
    m: usize,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    check(a, m, &w, bias, c);
    if m == 0 || w.rows == 0 {
        return;
    }
    if m == 1 {
        gemv::gemv(isa, pool, w, a, bias, c);
        return;
    }
    if isa == Isa::Scalar || !isa.available() {
        gemm_nt_scalar(a, m, w, bias, c);
        return;
    }
    let n = w.rows;
    let threads = pool.threads();
    let cp = SendPtr(c.as_mut_ptr());
    pool.run(&|tid| {
        let (lo, hi) = split_range(n, threads, tid, 16);
        if lo >= hi {
            return;
        }
        // SAFETY: this thread writes only columns lo..hi of `c` (m x n).
        let done =
            m <= gemv::SMALL_M && unsafe { gemv::gemm_small(isa, w, a, m, lo, hi, cp.ptr(), n) };
        if !done {
            columns(isa, a, m, w, lo, hi, cp, n);
        }
    });
    if let Some(b) = bias {
        for row in c.chunks_exact_mut(n) {
            for (o, bb) in row.iter_mut().zip(b) {
                *o += bb;
            }
        }
    }
}

/// Output columns `lo..hi` (weight rows `lo..hi`) on the calling thread.
#[allow(clippy::too_many_arguments)]
fn columns(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: MatRef<'_>,
    lo: usize,
    hi: usize,
    c: SendPtr<f32>,
    ldc: usize,
) {
    let k = w.cols;
    match w.data {
        WeightData::F32(d) => {
            // SAFETY: rows lo..hi of `W` lie in `d`; this thread writes only columns lo..hi of
            // `c` (m x ldc), disjoint from every other thread's.
            unsafe { sgemm(a, m, &d[lo * k..hi * k], hi - lo, k, c.ptr().add(lo), ldc) };
        }
        WeightData::F16(_) | WeightData::Bf16(_) => SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let need = BLOCK_ROWS * k;
            if s.len() < need {
                s.resize(need, 0.0);
            }
            let mut j = lo;
            while j < hi {
                let j1 = (j + BLOCK_ROWS).min(hi);
                let blk = w.row_range(j, j1);
                let buf = &mut s[..(j1 - j) * k];
                convert::to_f32(isa, blk.data, buf);
                // SAFETY: as above, columns j..j1 of `c` belong to this thread.
                unsafe { sgemm(a, m, buf, j1 - j, k, c.ptr().add(j), ldc) };
                j = j1;
            }
        }),
    }
}

/// `dst[i*ldc + j] = sum_kk a[i*k + kk] * w[j*k + kk]` for `i < m`, `j < n`.
///
/// # Safety
/// `dst` must be valid for writes at `i*ldc + j` for every `i < m`, `j < n`, and no other
/// thread may access those elements during the call.
unsafe fn sgemm(a: &[f32], m: usize, w: &[f32], n: usize, k: usize, dst: *mut f32, ldc: usize) {
    debug_assert!(a.len() >= m * k && w.len() >= n * k);
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        ldc as isize,
        false,
        a.as_ptr(),
        1,
        k as isize,
        w.as_ptr(),
        k as isize,
        1,
        0.0f32,
        1.0f32,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Strided f32 product through the `gemm` crate:
/// `dst[i*dst_rs + j] = beta * sum_kk a[i*a_rs + kk*a_cs] * b[kk*b_rs + j*b_cs]` for `i < m`,
/// `j < n` (overwrites `dst`).
///
/// # Safety
/// Every address the strides reach for `i < m`, `j < n`, `kk < k` must be valid (reads from `a`
/// and `b`, writes to `dst`), and no other thread may touch the written elements meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    b: *const f32,
    b_rs: isize,
    b_cs: isize,
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        false,
        a,
        a_cs,
        a_rs,
        b,
        b_cs,
        b_rs,
        0.0f32,
        beta,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::convert::{f32_to_bf16, f32_to_f16};
    use crate::engine::testutil::{assert_close, isas, rand_vec, SIZES};

    fn check_all(m: usize, n: usize, k: usize, threads: usize) {
        let pool = ThreadPool::new(threads);
        let wf = rand_vec(n * k, 11);
        let wb: Vec<u16> = wf.iter().map(|&v| f32_to_bf16(v)).collect();
        let wh: Vec<u16> = wf.iter().map(|&v| f32_to_f16(v)).collect();
        let a = rand_vec(m * k, 12);
        let bias = rand_vec(n, 13);
        for data in [
            WeightData::F32(&wf),
            WeightData::Bf16(&wb),
            WeightData::F16(&wh),
        ] {
            let w = MatRef::new(n, k, data).unwrap();
            for b in [None, Some(&bias[..])] {
                let mut want = vec![0.0; m * n];
                gemm_nt_scalar(&a, m, w, b, &mut want);
                for isa in isas() {
                    let mut got = vec![f32::NAN; m * n];
                    gemm_nt(isa, &pool, &a, m, w, b, &mut got);
                    let tol = 4e-6 * (k as f32).sqrt().max(1.0);
                    assert_close(
                        &got,
                        &want,
                        tol,
                        &format!("gemm {:?} {isa} {m}x{n}x{k} t{threads}", w.dtype()),
                    );
                }
            }
        }
    }

    #[test]
    fn gemm_matches_scalar_twin_on_every_isa_and_size() {
        for &k in &SIZES {
            for (m, n) in [(2usize, 1usize), (3, 7), (5, 17), (16, 65)] {
                check_all(m, n, k, 1);
            }
        }
        for &n in &SIZES {
            check_all(9, n, 33, 1);
        }
        check_all(0, 5, 5, 1);
        check_all(1, 9, 17, 1);
    }

    #[test]
    fn gemm_threaded_and_blocked_matches_scalar() {
        check_all(33, 200, 130, 2);
        check_all(7, 3, 64, 3);
        // Both sides of the small-m kernel's limit, odd row and token counts.
        check_all(64, 37, 70, 2);
        check_all(65, 37, 70, 2);
        check_all(6, 9, 1000, 1);
    }
}
