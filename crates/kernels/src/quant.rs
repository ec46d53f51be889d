//! llama.cpp block-quantized weight formats and the kernels that multiply them.
//!
//! What it is: the byte layouts of `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1` (32 weights per block)
//! and `q4_k`, `q5_k`, `q6_k` (256-weight super-blocks), a reference quantizer and dequantizer for
//! each, and GEMV/GEMM of a quantized weight matrix against activations quantized to 8 bits per
//! block, as llama.cpp does: [`ActKind::Q8_0`] activations for the legacy formats and
//! [`ActKind::Q8K`] for the k-quants. Integer dot products run on AVX-512 VNNI (`vpdpbusd`,
//! `vpdpwssd`), AVX2 (`vpmaddubsw`/`vpmaddwd`) or scalar code, chosen at run time; the scalar
//! code is the twin and test oracle of the SIMD paths.
//!
//! What it is not: a bit-exact copy of llama.cpp's quantizers. The layouts and dequantization
//! formulas are llama.cpp's (ggml-common.h, ggml-quants.c: block structs, `get_scale_min_k4`,
//! `dequantize_row_q*`), so files written here decode identically there; the quantizers are our
//! own simpler round-to-nearest searches (their importance-matrix / iterative scale searches
//! give slightly lower error, which matters for quality, not for speed or bytes).
//!
//! Matrices follow ggml's convention: a weight of `rows x cols` stores each row contiguously
//! (`ne[0] = cols` is the reduction dimension) and `y = W x` reads every row once.

mod aarch64;
mod reference;
mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use reference::{dequantize, quantize};

use crate::isa::Isa;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

/// Elements per super-block of the k-quants (`QK_K` in ggml).
pub const QK_K: usize = 256;
/// Elements per block of the legacy formats (`QK4_0`, `QK8_0`, ...).
pub const QK: usize = 32;

/// A block-quantized weight format this crate can multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantType {
    /// `{f16 d; i8 qs[32]}`: `x = d q`. 8.5 bits per weight.
    Q8_0,
    /// `{f16 d; u8 qs[16]}`: `x = d (q - 8)`, q 4 bits. 4.5 bits per weight.
    Q4_0,
    /// `{f16 d, m; u8 qs[16]}`: `x = d q + m`. 5.0 bits per weight.
    Q4_1,
    /// `{f16 d; u8 qh[4]; u8 qs[16]}`: `x = d (q - 16)`, q 5 bits. 5.5 bits per weight.
    Q5_0,
    /// `{f16 d, m; u8 qh[4]; u8 qs[16]}`: `x = d q + m`. 6.0 bits per weight.
    Q5_1,
    /// `{f16 d, dmin; u8 scales[12]; u8 qs[128]}`: 8 sub-blocks of 32 with 6-bit scale and min.
    /// 4.5 bits per weight.
    Q4K,
    /// `{f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}`. 5.5 bits per weight.
    Q5K,
    /// `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`: 16 sub-blocks of 16, `x = d s (q - 32)`.
    /// 6.5625 bits per weight.
    Q6K,
}

impl QuantType {
    pub const ALL: [QuantType; 8] = [
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ];

    /// llama.cpp's name (`"q4_K"` is spelled `q4_k` here, case-insensitively parsed).
    pub fn name(self) -> &'static str {
        match self {
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
            QuantType::Q5_0 => "q5_0",
            QuantType::Q5_1 => "q5_1",
            QuantType::Q4K => "q4_k",
            QuantType::Q5K => "q5_k",
            QuantType::Q6K => "q6_k",
        }
    }

    pub fn parse(s: &str) -> Option<QuantType> {
        let s = s.to_ascii_lowercase();
        QuantType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Weights per block.
    pub fn block_elems(self) -> usize {
        match self {
            QuantType::Q8_0
            | QuantType::Q4_0
            | QuantType::Q4_1
            | QuantType::Q5_0
            | QuantType::Q5_1 => QK,
            QuantType::Q4K | QuantType::Q5K | QuantType::Q6K => QK_K,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q8_0 => 34,
            QuantType::Q4_0 => 18,
            QuantType::Q4_1 => 20,
            QuantType::Q5_0 => 22,
            QuantType::Q5_1 => 24,
            QuantType::Q4K => 144,
            QuantType::Q5K => 176,
            QuantType::Q6K => 210,
        }
    }

    /// Effective bits per weight, block scales included.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.block_elems() as f64
    }

    /// The activation format its dot products take.
    pub fn act_kind(self) -> ActKind {
        match self {
            QuantType::Q8_0
            | QuantType::Q4_0
            | QuantType::Q4_1
            | QuantType::Q5_0
            | QuantType::Q5_1 => ActKind::Q8_0,
            QuantType::Q4K | QuantType::Q5K | QuantType::Q6K => ActKind::Q8K,
        }
    }

    /// Bytes of `n` weights, or `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How activations are quantized for a dot product with a weight format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKind {
    /// Blocks of 32 `i8` with a scale (an `f16` value held as `f32`, as llama.cpp's `block_q8_0`
    /// stores it) and the block sum (llama.cpp's `block_q8_1`).
    Q8_0,
    /// Super-blocks of 256 `i8` with an `f32` scale and sums per 16 (llama.cpp's `block_q8_K`).
    Q8K,
}

impl ActKind {
    pub fn block_elems(self) -> usize {
        match self {
            ActKind::Q8_0 => QK,
            ActKind::Q8K => QK_K,
        }
    }
}

/// What went wrong with a quantized operand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error("{ty}: {cols} columns is not a multiple of the block size {block}")]
    NotBlockMultiple {
        ty: &'static str,
        cols: usize,
        block: usize,
    },
    #[error("{ty} matrix of {rows} x {cols} needs {expected} bytes, got {actual}")]
    DataLength {
        ty: QuantType,
        rows: usize,
        cols: usize,
        expected: usize,
        actual: usize,
    },
    #[error("matrix size {rows} x {cols} overflows")]
    Overflow { rows: usize, cols: usize },
    #[error("{op}: {what} has length {actual}, expected {expected}")]
    ShapeMismatch {
        op: &'static str,
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{ty} weights need {needed:?} activations, got {got:?}")]
    ActKindMismatch {
        ty: QuantType,
        needed: ActKind,
        got: ActKind,
    },
    #[error("thread count must be at least 1")]
    ZeroThreads,
}

/// Activations quantized to 8 bits per element, `rows` vectors of `cols` each.
///
/// Struct of arrays so SIMD kernels load 32 contiguous `i8`. Reuse one value across steps:
/// [`Q8Activations::quantize`] keeps its buffers.
#[derive(Clone, Debug)]
pub struct Q8Activations {
    kind: ActKind,
    rows: usize,
    cols: usize,
    qs: Vec<i8>,
    /// Scale per block (32 or 256 elements).
    d: Vec<f32>,
    /// `Q8_0`: `d * sum(qs)` per block of 32, exact (the f16 `d` times an integer below
    /// 2^12); empty for `Q8K`. The zero-point term of q4_0/q5_0 (and VNNI's q8_0 offset), which
    /// llama.cpp computes exactly with signed quants.
    ds: Vec<f32>,
    /// `Q8_0`: llama.cpp's `block_q8_1.s`, `f16(amax / 127 * sum(qs))`, the sum its q4_1/q5_1
    /// dot products use ([`Q8Activations::row_for`] hands it to those formats' kernels as
    /// `ds`); empty for `Q8K`.
    ds16: Vec<f32>,
    /// `Q8K`: sum of `qs` per group of 16; empty for `Q8_0`.
    bsums: Vec<i16>,
    /// `Q8_0` with at most [`GEMV_LAYOUT_MAX_ROWS`] rows (decode): the GEMV layout of the
    /// x86 4-block kernel, see [`Q8Activations::gemv_layout`]; empty otherwise.
    qp: Vec<i8>,
    /// Per 4-block group, 16 lanes: `d` of block `k` in lanes `4k..4k+4`.
    dx: Vec<f32>,
    /// Per 4-block group, 16 lanes: `ds / 4` of block `k` in lanes `4k..4k+4`.
    sx: Vec<f32>,
    /// The same for `ds16`.
    sx16: Vec<f32>,
}

/// Activation rows up to which [`Q8Activations::quantize`] also builds the GEMV layout (decode
/// quantizes one row; prefill's many rows go through the GEMM micro-tile, which does not use it).
const GEMV_LAYOUT_MAX_ROWS: usize = 4;
/// Blocks per step of the GEMV layout.
const GEMV_GROUP: usize = 4;

/// One activation row, borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub ds: &'a [f32],
    pub bsums: &'a [i16],
    /// GEMV layout (x86 VNNI GEMV): per group of 4 blocks, 128 values: elements 0..16 of the
    /// 4 blocks, then elements 16..32 of the 4 blocks; a last partial group is padded with
    /// zero blocks (zero `dx`, `sx`). Empty when not built.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub qp: &'a [i8],
    /// 16 per group: `d` of block `k` of the group in lanes `4k..4k+4`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub dx: &'a [f32],
    /// 16 per group: `ds / 4` of block `k` in lanes `4k..4k+4` (4 lanes sum to `ds`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub sx: &'a [f32],
}

impl Q8Activations {
    /// An empty set of activations of `kind`.
    pub fn new(kind: ActKind) -> Q8Activations {
        Q8Activations {
            kind,
            rows: 0,
            cols: 0,
            qs: Vec::new(),
            d: Vec::new(),
            ds: Vec::new(),
            ds16: Vec::new(),
            bsums: Vec::new(),
            qp: Vec::new(),
            dx: Vec::new(),
            sx: Vec::new(),
            sx16: Vec::new(),
        }
    }

    /// Quantizes `rows` row-major vectors of `cols` from `x` into `kind` blocks.
    pub fn from_f32(
        kind: ActKind,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let mut a = Q8Activations::new(kind);
        a.quantize(x, rows, cols)?;
        Ok(a)
    }

    /// Re-quantizes in place (buffers are reused, so decode steps do not allocate).
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) -> Result<(), QuantError> {
        let be = self.kind.block_elems();
        if !cols.is_multiple_of(be) {
            return Err(QuantError::NotBlockMultiple {
                ty: match self.kind {
                    ActKind::Q8_0 => "q8_0 activations",
                    ActKind::Q8K => "q8_K activations",
                },
                cols,
                block: be,
            });
        }
        let n = rows
            .checked_mul(cols)
            .ok_or(QuantError::Overflow { rows, cols })?;
        if x.len() != n {
            return Err(QuantError::ShapeMismatch {
                op: "quantize activations",
                what: "input",
                expected: n,
                actual: x.len(),
            });
        }
        self.rows = rows;
        self.cols = cols;
        let nb = n / be;
        self.qs.resize(n, 0);
        self.d.resize(nb, 0.0);
        match self.kind {
            ActKind::Q8_0 => {
                self.ds.resize(nb, 0.0);
                self.ds16.resize(nb, 0.0);
                self.bsums.clear();
                for b in 0..nb {
                    let xs = &x[b * be..(b + 1) * be];
                    let qs = &mut self.qs[b * be..(b + 1) * be];
                    let (amax, sum) = quantize_sym_i8(xs, qs, ActKind::Q8_0);
                    let d = q8_0_scale(amax);
                    self.d[b] = d;
                    // Exact: an f16 scale (11 significant bits) times |sum| <= 32 * 127.
                    self.ds[b] = d * sum as f32;
                    self.ds16[b] = q8_1_sum(amax, sum);
                }
                self.gemv_layout();
            }
            ActKind::Q8K => {
                self.ds.clear();
                self.ds16.clear();
                self.bsums.resize(n / 16, 0);
                for b in 0..nb {
                    let xs = &x[b * be..(b + 1) * be];
                    let qs = &mut self.qs[b * be..(b + 1) * be];
                    let (amax, _) = quantize_sym_i8(xs, qs, ActKind::Q8K);
                    self.d[b] = q8_k_scale(amax);
                    for g in 0..be / 16 {
                        let s: i32 = qs[g * 16..(g + 1) * 16].iter().map(|&q| q as i32).sum();
                        // |s| <= 16 * 127 fits in i16.
                        self.bsums[b * (be / 16) + g] = s as i16;
                    }
                }
            }
        }
        Ok(())
    }

    /// Builds `qp`, `dx`, `sx` for `Q8_0` activations of at most [`GEMV_LAYOUT_MAX_ROWS`]
    /// rows (cleared otherwise). The weights keep the GGUF block layout; reordering the
    /// activations instead (once per matmul, reused by every weight row) lets the x86 GEMV
    /// put the low nibbles of 4 blocks in one register and their high nibbles in another.
    fn gemv_layout(&mut self) {
        self.qp.clear();
        self.dx.clear();
        self.sx.clear();
        self.sx16.clear();
        if self.kind != ActKind::Q8_0 || self.rows > GEMV_LAYOUT_MAX_ROWS {
            return;
        }
        let nb = self.cols / QK;
        let groups = nb.div_ceil(GEMV_GROUP);
        for r in 0..self.rows {
            for g in 0..groups {
                // Blocks past the row end (last group) are zeros with zero scales.
                let present = |k: usize| g * GEMV_GROUP + k < nb;
                let b0 = r * nb + g * GEMV_GROUP;
                for half in 0..2 {
                    for k in 0..GEMV_GROUP {
                        if present(k) {
                            let s = (b0 + k) * QK + half * (QK / 2);
                            self.qp.extend_from_slice(&self.qs[s..s + QK / 2]);
                        } else {
                            self.qp.extend_from_slice(&[0; QK / 2]);
                        }
                    }
                }
                for k in 0..GEMV_GROUP {
                    let (d, ds, ds16) = if present(k) {
                        (self.d[b0 + k], self.ds[b0 + k], self.ds16[b0 + k])
                    } else {
                        (0.0, 0.0, 0.0)
                    };
                    self.dx.extend_from_slice(&[d; 4]);
                    self.sx.extend_from_slice(&[ds / 4.0; 4]);
                    self.sx16.extend_from_slice(&[ds16 / 4.0; 4]);
                }
            }
        }
    }

    pub fn kind(&self) -> ActKind {
        self.kind
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The quantized values of row `r` dequantized (for tests and error analysis).
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let row = self.row(r);
        let be = self.kind.block_elems();
        row.qs
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * row.d[i / be])
            .collect()
    }

    /// Row `r` as the kernels of weight format `ty` take it: llama.cpp's f16 block sums
    /// (`block_q8_1.s`) for q4_1 and q5_1, whose dot products add `m * s` per block, the exact
    /// sums otherwise (see the `ds` and `ds16` fields).
    pub(crate) fn row_for(&self, ty: QuantType, r: usize) -> ActRow<'_> {
        let mut row = self.row(r);
        if matches!(ty, QuantType::Q4_1 | QuantType::Q5_1) && !self.ds16.is_empty() {
            let nb = self.cols / QK;
            row.ds = &self.ds16[r * nb..(r + 1) * nb];
            if !self.sx16.is_empty() {
                let g = nb.div_ceil(GEMV_GROUP) * 16;
                row.sx = &self.sx16[r * g..(r + 1) * g];
            }
        }
        row
    }

    pub(crate) fn row(&self, r: usize) -> ActRow<'_> {
        let be = self.kind.block_elems();
        let nb = self.cols / be;
        let c = self.cols;
        ActRow {
            qs: &self.qs[r * c..(r + 1) * c],
            d: &self.d[r * nb..(r + 1) * nb],
            ds: if self.ds.is_empty() {
                &[]
            } else {
                &self.ds[r * nb..(r + 1) * nb]
            },
            bsums: if self.bsums.is_empty() {
                &[]
            } else {
                &self.bsums[r * c / 16..(r + 1) * c / 16]
            },
            qp: if self.qp.is_empty() {
                &[]
            } else {
                let g = nb.div_ceil(GEMV_GROUP) * GEMV_GROUP * QK;
                &self.qp[r * g..(r + 1) * g]
            },
            dx: if self.dx.is_empty() {
                &[]
            } else {
                let g = nb.div_ceil(GEMV_GROUP) * 16;
                &self.dx[r * g..(r + 1) * g]
            },
            sx: if self.sx.is_empty() {
                &[]
            } else {
                let g = nb.div_ceil(GEMV_GROUP) * 16;
                &self.sx[r * g..(r + 1) * g]
            },
        }
    }
}

/// The scale of a `q8_0` activation block of largest magnitude `amax`, as llama.cpp's
/// `quantize_row_q8_0` (ggml-cpu, x86 AVX2 path) stores it: `amax / 127` rounded to `f16`
/// (`block_q8_0.d` is an `ggml_half`), while [`quantize_sym_i8`] divides by the unrounded
/// scale. Using the f32 scale instead changed the logits of the synthetic models in
/// `src/sweep/llamacpp_logits_test.rs` by 1e-2 against llama.cpp's (the next layer's
/// requantization turns the 5e-4 scale differences into flipped roundings). A scale beyond
/// `f16`'s range (|x| > 8.3e6, where llama.cpp's own block overflows to inf) stays f32.
fn q8_0_scale(amax: f32) -> f32 {
    let d = amax / 127.0;
    let h = half::f16::from_f32(d).to_f32();
    if h.is_finite() {
        h
    } else {
        d
    }
}

/// llama.cpp's `block_q8_1.s` (x86 `quantize_row_q8_1`): the unrounded scale `amax / 127`
/// times the sum of the quants, rounded to `f16`; kept f32 where `f16` overflows (there
/// llama.cpp's is inf).
fn q8_1_sum(amax: f32, sum: i32) -> f32 {
    let s = amax / 127.0 * sum as f32;
    let h = half::f16::from_f32(s).to_f32();
    if h.is_finite() {
        h
    } else {
        s
    }
}

/// The scale of a `q8_K` activation super-block, as llama.cpp's `quantize_row_q8_K_ref`
/// computes it: `1 / (127 / amax)` in f32 (there with the sign of the largest element, which
/// flips both the scale and every quant, so the products are the same), 0 for a zero block.
fn q8_k_scale(amax: f32) -> f32 {
    if amax > 0.0 {
        1.0 / (127.0 / amax)
    } else {
        0.0
    }
}

/// The multiplier that maps a block of largest magnitude `amax` onto `-127..=127`, as
/// llama.cpp's CPU backend computes it for activations of `kind` on this architecture:
/// - x86 (`quantize_row_q8_0/q8_1`, AVX2) and `q8_K` everywhere (`quantize_row_q8_K_ref`,
///   whose `-127 / max` is `127 / amax` with the sign of the largest element): `127 / amax`;
/// - aarch64 `q8_0/q8_1` (NEON): `1 / (amax / 127)`, 0 where `amax / 127` is 0.
///
/// The two differ in the last bit for most `amax` (3.0, say), and on a rounding tie that bit
/// moves a quant by one step (`crates/kernels/tests/ggml_arm_q8.rs` found 12 of 1024 such
/// elements against llama.cpp's NEON code before aarch64 took its own rule).
fn q8_multiplier(kind: ActKind, amax: f32) -> f32 {
    let neon_rule = cfg!(target_arch = "aarch64") && kind == ActKind::Q8_0;
    if amax > 0.0 && neon_rule {
        let d = amax / 127.0;
        if d != 0.0 {
            1.0 / d
        } else {
            0.0
        }
    } else if amax > 0.0 {
        127.0 / amax
    } else {
        0.0
    }
}

/// Symmetric 8-bit quantization of one block as llama.cpp's `quantize_row_q8_0` and
/// `quantize_row_q8_K_ref` do it: `q = round_half_even(x * m)` with `m` from
/// [`q8_multiplier`] (x86's `_mm256_round_ps` with `_MM_ROUND_NEAREST`, NEON's `vcvtnq_s32_f32`
/// and `nearest_int`'s magic-number rounding are all ties to even). Returns `(amax, sum(q))`;
/// the caller derives the stored scale ([`q8_0_scale`], [`q8_k_scale`]). Values stay in
/// `-127..=127` (never -128), which the AVX2 sign trick relies on. Ties are frequent, not a
/// corner case: a `q4_0` embedding row has `x / amax = k / 8`, so `x * 127 / amax = 63.5` for
/// every `k = +-4`.
fn quantize_sym_i8(x: &[f32], q: &mut [i8], kind: ActKind) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if matches!(QuantIsa::best(), QuantIsa::Avx2 | QuantIsa::Avx512Vnni) {
        // SAFETY: `best()` only returns an x86 SIMD path when the CPU has AVX2, FMA and F16C.
        return unsafe { quantize_sym_i8_avx2(x, q) };
    }
    quantize_sym_i8_body(x, q, kind)
}

/// [`quantize_sym_i8_body`] in AVX2 (x86, where every kind takes `127 / amax`), bit for bit
/// (tested on ties, NaN, infinities and subnormal scales): `vmaxps(|x|, m)` returns `m` for a
/// NaN `x` as `f32::max` does; the maximum does not depend on the order; `vroundps` to
/// nearest is `f32::round_ties_even`; NaN becomes 0 and +-inf saturates to +-127 as the `as`
/// cast and clamp do. 4864 values per row: 16.4 us portable, 11.3 us compiled for AVX2,
/// ~1.5 us here (`quant_gemv quantize`).
/// Lengths that are not a multiple of 32 take the portable code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_sym_i8_avx2(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    use std::arch::x86_64::*;
    let n = x.len();
    if !n.is_multiple_of(32) || q.len() != n {
        return quantize_sym_i8_body(x, q, ActKind::Q8_0);
    }
    let sign = _mm256_set1_ps(-0.0);
    let xp = x.as_ptr();
    let mut m = _mm256_setzero_ps();
    for i in (0..n).step_by(8) {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xp.add(i))), m);
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    let one = |i: usize| {
        let y = _mm256_mul_ps(_mm256_loadu_ps(xp.add(i)), idv);
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
        let c = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(y, y);
        _mm256_cvtps_epi32(_mm256_andnot_ps(nan, c))
    };
    let mut sum = _mm256_setzero_si256();
    let qp = q.as_mut_ptr();
    for i in (0..n).step_by(32) {
        let (a, b, c, e) = (one(i), one(i + 8), one(i + 16), one(i + 24));
        sum = _mm256_add_epi32(
            sum,
            _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, e)),
        );
        // packs work per 128-bit lane; the permute restores element order.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, e));
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qp.add(i) as *mut __m256i, p);
    }
    let s4 = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256(sum, 1),
    );
    let s2 = _mm_add_epi32(s4, _mm_shuffle_epi32::<0b00_00_11_10>(s4));
    let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32::<0b00_00_00_01>(s2));
    (amax, _mm_cvtsi128_si32(s1))
}

#[inline(always)]
fn quantize_sym_i8_body(x: &[f32], q: &mut [i8], kind: ActKind) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = q8_multiplier(kind, amax);
    let mut sum = 0i32;
    for (qi, &xi) in q.iter_mut().zip(x) {
        // `as` saturates (NaN -> 0); the clamp keeps -128 out.
        let v = ((xi * id).round_ties_even() as i32).clamp(-127, 127);
        *qi = v as i8;
        sum += v;
    }
    (amax, sum)
}

/// The code path a quantized dot product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantIsa {
    Scalar,
    /// `vpmaddubsw` + `vpmaddwd` on ymm.
    Avx2,
    /// AVX-512 VNNI `vpdpbusd` / `vpdpwssd` (EVEX, on ymm).
    Avx512Vnni,
    /// aarch64 NEON `sdot` (FEAT_DotProd); see `quant/aarch64.rs`.
    NeonDot,
}

impl QuantIsa {
    pub fn name(self) -> &'static str {
        match self {
            QuantIsa::Scalar => "scalar",
            QuantIsa::Avx2 => "avx2",
            QuantIsa::Avx512Vnni => "avx512vnni",
            QuantIsa::NeonDot => "neondot",
        }
    }

    pub fn available(self) -> bool {
        match self {
            QuantIsa::Scalar => true,
            QuantIsa::Avx2 => Isa::Avx2.available(),
            QuantIsa::NeonDot => aarch64::available(),
            QuantIsa::Avx512Vnni => {
                #[cfg(target_arch = "x86_64")]
                {
                    Isa::Avx2.available()
                        && Isa::Avx512.available()
                        && is_x86_feature_detected!("avx512vnni")
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    false
                }
            }
        }
    }

    /// Every path this CPU can run, scalar first.
    pub fn all_available() -> Vec<QuantIsa> {
        [
            QuantIsa::Scalar,
            QuantIsa::Avx2,
            QuantIsa::Avx512Vnni,
            QuantIsa::NeonDot,
        ]
        .into_iter()
        .filter(|i| i.available())
        .collect()
    }

    /// The quantized path matching a vector ISA: AVX-512 means VNNI when the CPU has it (else
    /// the AVX2 path), NEON has no quantized path yet (scalar).
    pub fn for_isa(isa: Isa) -> QuantIsa {
        let q = match isa {
            Isa::Scalar => QuantIsa::Scalar,
            Isa::Neon => QuantIsa::NeonDot,
            Isa::Avx2 => QuantIsa::Avx2,
            Isa::Avx512 => QuantIsa::Avx512Vnni,
        };
        if q.available() {
            q
        } else if q == QuantIsa::Avx512Vnni && QuantIsa::Avx2.available() {
            QuantIsa::Avx2
        } else {
            QuantIsa::Scalar
        }
    }

    /// The best path, honouring `ROOFLINEBENCH_FORCE_ISA` (decided once per process).
    pub fn best() -> QuantIsa {
        static BEST: OnceLock<QuantIsa> = OnceLock::new();
        *BEST.get_or_init(|| QuantIsa::for_isa(crate::isa::best().unwrap_or(Isa::Scalar)))
    }
}

impl fmt::Display for QuantIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A borrowed quantized weight matrix: `rows` rows of `cols` weights, each row a whole number
/// of blocks, rows contiguous (ggml: `ne[0] = cols`, `ne[1] = rows`).
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    pub ty: QuantType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

/// Activation rows per GEMM micro-tile: each weight block is unpacked once and multiplied with
/// this many activation rows while it sits in registers.
const GEMM_MR: usize = 4;
/// Target bytes of quantized activations kept hot (L2) while weight rows stream past.
const GEMM_ACT_BYTES: usize = 256 * 1024;

impl<'a> QuantMatrix<'a> {
    /// Checks that `data` holds exactly `rows x cols` weights of `ty`.
    pub fn new(
        ty: QuantType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, QuantError> {
        let row_bytes = ty.bytes_for(cols).ok_or(QuantError::NotBlockMultiple {
            ty: ty.name(),
            cols,
            block: ty.block_elems(),
        })?;
        let expected = row_bytes
            .checked_mul(rows)
            .ok_or(QuantError::Overflow { rows, cols })?;
        if data.len() != expected {
            return Err(QuantError::DataLength {
                ty,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(QuantMatrix {
            ty,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_elems() * self.ty.block_bytes()
    }

    pub fn row_data(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Dequantizes row `r` into `out` (`cols` floats), e.g. an embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), QuantError> {
        if r >= self.rows {
            return Err(QuantError::ShapeMismatch {
                op: "dequantize_row",
                what: "row index",
                expected: self.rows,
                actual: r,
            });
        }
        dequantize(self.ty, self.row_data(r), out)
    }

    fn check_act(&self, x: &Q8Activations, op: &'static str) -> Result<(), QuantError> {
        if x.kind != self.ty.act_kind() {
            return Err(QuantError::ActKindMismatch {
                ty: self.ty,
                needed: self.ty.act_kind(),
                got: x.kind,
            });
        }
        if x.cols != self.cols {
            return Err(QuantError::ShapeMismatch {
                op,
                what: "activation columns",
                expected: self.cols,
                actual: x.cols,
            });
        }
        Ok(())
    }

    /// `out[r] = W[r] . x` for row 0 of `x`, on `threads` threads (split by weight rows), with
    /// the best ISA.
    pub fn gemv(
        &self,
        x: &Q8Activations,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), QuantError> {
        self.gemm_with(QuantIsa::best(), x, 1, out, threads)
    }

    /// `out[t * rows + r] = W[r] . x[t]` for all `x.rows()` activation rows (prefill).
    pub fn gemm(
        &self,
        x: &Q8Activations,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), QuantError> {
        self.gemm_with(QuantIsa::best(), x, x.rows, out, threads)
    }

    /// GEMM over the first `m` activation rows on an explicit ISA (GEMV is `m == 1`).
    pub fn gemm_with(
        &self,
        isa: QuantIsa,
        x: &Q8Activations,
        m: usize,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), QuantError> {
        self.check_act(x, "quantized gemm")?;
        if threads == 0 {
            return Err(QuantError::ZeroThreads);
        }
        if m > x.rows {
            return Err(QuantError::ShapeMismatch {
                op: "quantized gemm",
                what: "activation rows",
                expected: m,
                actual: x.rows,
            });
        }
        let need = m.checked_mul(self.rows).ok_or(QuantError::Overflow {
            rows: m,
            cols: self.rows,
        })?;
        if out.len() != need {
            return Err(QuantError::ShapeMismatch {
                op: "quantized gemm",
                what: "output",
                expected: need,
                actual: out.len(),
            });
        }
        let isa = if isa.available() {
            isa
        } else {
            QuantIsa::Scalar
        };
        let threads = threads.min(self.rows.max(1));
        if threads <= 1 {
            let ptr = OutPtr(out.as_mut_ptr());
            self.gemm_rows_raw(isa, x, m, ptr, 0..self.rows);
            return Ok(());
        }
        let ptr = OutPtr(out.as_mut_ptr());
        std::thread::scope(|s| {
            for t in 0..threads {
                let r = split_rows(self.rows, threads, t);
                s.spawn(move || self.gemm_rows_raw(isa, x, m, ptr, r));
            }
        });
        Ok(())
    }

    /// Like [`QuantMatrix::gemm_with`] on the engine's persistent thread pool (decode runs
    /// hundreds of GEMVs per token: spawning threads for each would cost more than the GEMV).
    pub fn gemm_pool(
        &self,
        isa: QuantIsa,
        x: &Q8Activations,
        m: usize,
        out: &mut [f32],
        pool: &crate::engine::ThreadPool,
    ) -> Result<(), QuantError> {
        self.check_act(x, "quantized gemm")?;
        let need = m.checked_mul(self.rows).ok_or(QuantError::Overflow {
            rows: m,
            cols: self.rows,
        })?;
        if m > x.rows || out.len() != need {
            return Err(QuantError::ShapeMismatch {
                op: "quantized gemm",
                what: "output",
                expected: need,
                actual: out.len(),
            });
        }
        let isa = if isa.available() {
            isa
        } else {
            QuantIsa::Scalar
        };
        let ptr = OutPtr(out.as_mut_ptr());
        let threads = pool.threads().max(1);
        pool.run(&|t| {
            let r = split_rows(self.rows, threads, t);
            self.gemm_rows_raw(isa, x, m, ptr, r);
        });
        Ok(())
    }

    /// Computes output columns `rows` (weight rows) for the first `m` activation rows into
    /// `out` (full `m x self.rows` output). For callers with their own thread pool: disjoint
    /// row ranges may run concurrently on the same `out` through [`QuantMatrix::gemm_rows_shared`].
    pub fn gemm_rows(
        &self,
        isa: QuantIsa,
        x: &Q8Activations,
        m: usize,
        out: &mut [f32],
        rows: Range<usize>,
    ) -> Result<(), QuantError> {
        self.check_act(x, "quantized gemm")?;
        if m > x.rows || out.len() != m * self.rows || rows.end > self.rows {
            return Err(QuantError::ShapeMismatch {
                op: "quantized gemm_rows",
                what: "output",
                expected: m * self.rows,
                actual: out.len(),
            });
        }
        let isa = if isa.available() {
            isa
        } else {
            QuantIsa::Scalar
        };
        self.gemm_rows_raw(isa, x, m, OutPtr(out.as_mut_ptr()), rows);
        Ok(())
    }

    /// Like [`QuantMatrix::gemm_rows`] through a shared output, for thread pools.
    ///
    /// # Safety
    /// `out` must point to `m * self.rows` writable floats, and no other thread may access
    /// the output columns in `rows` (for any of the `m` activation rows) during the call.
    pub unsafe fn gemm_rows_shared(
        &self,
        isa: QuantIsa,
        x: &Q8Activations,
        m: usize,
        out: *mut f32,
        rows: Range<usize>,
    ) -> Result<(), QuantError> {
        self.check_act(x, "quantized gemm")?;
        if m > x.rows || rows.end > self.rows {
            return Err(QuantError::ShapeMismatch {
                op: "quantized gemm_rows_shared",
                what: "rows",
                expected: self.rows,
                actual: rows.end,
            });
        }
        let isa = if isa.available() {
            isa
        } else {
            QuantIsa::Scalar
        };
        self.gemm_rows_raw(isa, x, m, OutPtr(out), rows);
        Ok(())
    }

    /// Cache-blocked loop: activation rows in chunks that fit in L2, weight rows streaming
    /// inside, and micro-tiles of [`GEMM_MR`] activation rows per unpacked weight block.
    fn gemm_rows_raw(
        &self,
        isa: QuantIsa,
        x: &Q8Activations,
        m: usize,
        out: OutPtr,
        rows: Range<usize>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if m == 1 && matches!(isa, QuantIsa::Avx2 | QuantIsa::Avx512Vnni) && rows.end > rows.start {
            // SAFETY: m == 1, so output column r is `out[r]`; `rows` is inside `0..self.rows`
            // (callers check) and this call owns those elements (caller's contract).
            let o = unsafe { std::slice::from_raw_parts_mut(out.0.add(rows.start), rows.len()) };
            x86::gemv_rows(
                isa,
                self.ty,
                self.data,
                self.row_bytes(),
                rows,
                &x.row_for(self.ty, 0),
                o,
            );
            return;
        }
        let chunk = (GEMM_ACT_BYTES / self.cols.max(1)).max(GEMM_MR) / GEMM_MR * GEMM_MR;
        let n = self.rows;
        let mut t0 = 0;
        // The chunk's activation rows are borrowed once, not once per weight row and
        // micro-tile: `Q8Activations::row` slices seven arrays, and with short weight rows
        // (576 columns, SmolLM2) that overhead cost 20% of a 512-token prefill.
        let mut act_rows: Vec<ActRow<'_>> = Vec::with_capacity(chunk.min(m));
        while t0 < m {
            let t1 = (t0 + chunk).min(m);
            act_rows.clear();
            act_rows.extend((t0..t1).map(|t| x.row_for(self.ty, t)));
            for r in rows.clone() {
                let w = self.row_data(r);
                let mut t = t0;
                while t < t1 {
                    let mr = (t1 - t).min(GEMM_MR);
                    let acts = &act_rows[t - t0..t - t0 + mr];
                    let mut res = [0.0f32; GEMM_MR];
                    dot_rows(isa, self.ty, w, acts, &mut res[..mr]);
                    for (i, v) in res.iter().enumerate().take(mr) {
                        // SAFETY: (t + i) < m and r < n, so the index is inside the
                        // m x n output; this call owns output column r (caller's contract).
                        unsafe { *out.0.add((t + i) * n + r) = *v };
                    }
                    t += mr;
                }
            }
            t0 = t1;
        }
    }
}

/// Raw output pointer shared by threads that write disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: threads write disjoint elements (distinct weight rows), see `gemm_rows_raw`.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Rows `[start, end)` of part `i` of `parts`, balanced to within one row.
fn split_rows(n: usize, parts: usize, i: usize) -> Range<usize> {
    let base = n / parts;
    let rem = n % parts;
    let start = i * base + i.min(rem);
    start..start + base + usize::from(i < rem)
}

/// Dot products of one weight row with 1..=4 activation rows: the single dispatch point.
fn dot_rows(isa: QuantIsa, ty: QuantType, w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        QuantIsa::Avx2 | QuantIsa::Avx512Vnni => x86::dot_rows(isa, ty, w, acts, out),
        QuantIsa::NeonDot => aarch64::dot_rows(ty, w, acts, out),
        _ => {
            for (a, o) in acts.iter().zip(out.iter_mut()) {
                *o = scalar::dot(ty, w, a);
            }
        }
    }
}

/// Dot product of one quantized weight row with one activation row on an explicit path
/// (the kernel-level entry the tests compare against the scalar twin).
pub fn dot_with(
    isa: QuantIsa,
    ty: QuantType,
    w: &[u8],
    x: &Q8Activations,
    row: usize,
) -> Result<f32, QuantError> {
    let m = QuantMatrix::new(ty, 1, x.cols, w)?;
    m.check_act(x, "quantized dot")?;
    if row >= x.rows {
        return Err(QuantError::ShapeMismatch {
            op: "quantized dot",
            what: "activation row",
            expected: x.rows,
            actual: row,
        });
    }
    let isa = if isa.available() {
        isa
    } else {
        QuantIsa::Scalar
    };
    let mut o = [0.0f32];
    dot_rows(isa, ty, w, &[x.row_for(ty, row)], &mut o);
    Ok(o[0])
}
