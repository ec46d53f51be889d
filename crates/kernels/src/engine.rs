//! Engine kernels: the arithmetic of a transformer forward pass, chosen at run time per ISA.
//!
//! What is here: GEMV (decode: one activation vector against a weight matrix, bound by how fast
//! the weights stream from DRAM) and GEMM (prefill: many tokens at once, bound by FMA
//! throughput) for f32, f16 and bf16 weights; attention score/value loops; softmax; RMSNorm and
//! LayerNorm; rotary embeddings; SiLU x mul and GELU; residual adds; a small persistent thread
//! pool so every parallel kernel runs on an explicit number of threads (PITFALLS.md #19).
//!
//! What is not: quantized weights (a later issue), MLA/MoE routing, any model logic. Activations
//! are always f32; weights are stored as [`MatRef`] in the row-major HF layout
//! `[out_features, in_features]`, so `y = W x` is a dot product per output row.
//!
//! Every kernel has a scalar twin (plain sequential loops) that is both the fallback under
//! `ROOFLINEBENCH_FORCE_ISA=scalar` and the oracle its SIMD paths are tested against.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod act;
pub mod attn;
pub mod convert;
pub mod gemm;
pub mod gemv;
pub mod norm;
pub mod pool;
mod simd;

pub use pool::ThreadPool;

/// Element type of a stored weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDtype {
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (the upper half of an f32).
    Bf16,
}

impl WeightDtype {
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Bf16 => "bf16",
        }
    }

    /// Bytes per stored element.
    pub fn size(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 | WeightDtype::Bf16 => 2,
        }
    }
}

/// The elements of a row-major weight matrix, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    Bf16(&'a [u16]),
}

/// A row-major `rows x cols` weight matrix (`rows` = output features, `cols` = input features).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub rows: usize,
    pub cols: usize,
    pub data: WeightData<'a>,
}

impl<'a> MatRef<'a> {
    /// `None` when `data` does not hold exactly `rows * cols` elements.
    pub fn new(rows: usize, cols: usize, data: WeightData<'a>) -> Option<MatRef<'a>> {
        let n = rows.checked_mul(cols)?;
        let len = match data {
            WeightData::F32(d) => d.len(),
            WeightData::F16(d) | WeightData::Bf16(d) => d.len(),
        };
        (len == n).then_some(MatRef { rows, cols, data })
    }

    pub fn dtype(&self) -> WeightDtype {
        match self.data {
            WeightData::F32(_) => WeightDtype::F32,
            WeightData::F16(_) => WeightDtype::F16,
            WeightData::Bf16(_) => WeightDtype::Bf16,
        }
    }

    /// Rows `r0..r1` as a matrix of their own.
    pub fn row_range(&self, r0: usize, r1: usize) -> MatRef<'a> {
        assert!(r0 <= r1 && r1 <= self.rows, "row range out of bounds");
        let (a, b) = (r0 * self.cols, r1 * self.cols);
        let data = match self.data {
            WeightData::F32(d) => WeightData::F32(&d[a..b]),
            WeightData::F16(d) => WeightData::F16(&d[a..b]),
            WeightData::Bf16(d) => WeightData::Bf16(&d[a..b]),
        };
        MatRef {
            rows: r1 - r0,
            cols: self.cols,
            data,
        }
    }

    /// Row `r` converted to f32 into `out` (`out.len() == cols`).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let m = self.row_range(r, r + 1);
        convert::to_f32_scalar(m.data, out);
    }
}

/// A raw pointer that may cross into pool threads. Each thread writes a disjoint part of the
/// buffer it points into; the pool joins every thread before the borrow it came from ends.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: used only to hand disjoint sub-slices of one `&mut [T]` to pool threads, which are all
// joined before `ThreadPool::run` returns.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its raw field).
    #[inline(always)]
    pub fn ptr(&self) -> *mut T {
        self.0
    }
}

/// The half-open range `[lo, hi)` of `n` items that part `i` of `parts` gets, with every bound
/// a multiple of `align` (except the last, `n`).
pub fn split_range(n: usize, parts: usize, i: usize, align: usize) -> (usize, usize) {
    let parts = parts.max(1);
    let align = align.max(1);
    let units = n.div_ceil(align);
    let lo = (units * i / parts * align).min(n);
    let hi = (units * (i + 1) / parts * align).min(n);
    (lo, hi)
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::isa::Isa;

    /// Sizes every kernel is tested on (STYLE.md: 0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, large).
    pub const SIZES: [usize; 12] = [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000];

    /// ISAs to test: every one this CPU has; prints which are skipped.
    pub fn isas() -> Vec<Isa> {
        for isa in [Isa::Avx2, Isa::Avx512] {
            if !isa.available() {
                eprintln!("skipping {isa}: this CPU lacks it");
            }
        }
        Isa::all_available()
    }

    /// Deterministic pseudo-random values in [-1, 1).
    pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::xorshift::XorShift64::new(seed);
        (0..n).map(|_| r.unit_f32() * 2.0 - 1.0).collect()
    }

    /// `|a - b| <= tol * scale` elementwise, with a message naming the first offender.
    pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let scale = 1.0f32.max(x.abs()).max(y.abs());
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}: element {i}: {x} vs {y}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_range_covers_everything_once() {
        for n in [0usize, 1, 5, 17, 100] {
            for parts in 1..5 {
                let mut next = 0;
                for i in 0..parts {
                    let (lo, hi) = split_range(n, parts, i, 4);
                    assert_eq!(lo, next);
                    assert!(hi >= lo);
                    next = hi;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn matref_rejects_wrong_length() {
        assert!(MatRef::new(2, 3, WeightData::F32(&[0.0; 5])).is_none());
        assert!(MatRef::new(2, 3, WeightData::F32(&[0.0; 6])).is_some());
        assert!(MatRef::new(usize::MAX, 3, WeightData::F32(&[])).is_none());
    }
}
