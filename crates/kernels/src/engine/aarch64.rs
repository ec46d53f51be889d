//! aarch64 NEON engine kernels: GEMV `y = W x (+ b)` for f32, f16 and bf16 weights.
//!
//! Shape: one row at a time (one sequential weight stream), four `float32x4_t` accumulators
//! (16 weights per step, independent FMA chains), f16 widened with `fcvtl`/`fcvtl2` (base
//! Armv8 Advanced SIMD; written in `asm!` because the `float16x4_t` intrinsics are unstable on
//! Rust 1.95), bf16 widened by a 16-bit left shift (`ushll`), one horizontal sum per row, scalar
//! tail. NEON is part of the aarch64 baseline, so `Isa::Neon` is always available there; the
//! dispatcher still checks it. The scalar twins in `gemv.rs` are the test oracle (the tests
//! iterate `Isa::all_available()`, which includes NEON on aarch64).
//!
//! Prefill GEMM on Arm goes through the `gemm` crate, which has its own NEON kernels.

use std::arch::aarch64::*;
use std::arch::asm;

/// `(lo, hi)` f32 vectors of 8 IEEE binary16 values.
#[inline(always)]
unsafe fn widen_f16(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    let lo: float32x4_t;
    let hi: float32x4_t;
    asm!(
        "fcvtl {lo:v}.4s, {h:v}.4h",
        "fcvtl2 {hi:v}.4s, {h:v}.8h",
        h = in(vreg) h,
        lo = out(vreg) lo,
        hi = out(vreg) hi,
        options(pure, nomem, nostack, preserves_flags),
    );
    (lo, hi)
}

/// `(lo, hi)` f32 vectors of 8 bfloat16 values (exact: bf16 is the top half of an f32).
#[inline(always)]
unsafe fn widen_bf16(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    (
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
        vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
    )
}

/// 16 weights of row `w` at `k` as four f32 vectors.
trait Weights: Copy {
    unsafe fn load16(p: *const Self) -> [float32x4_t; 4];
    fn widen(self) -> f32;
}

impl Weights for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> [float32x4_t; 4] {
        [
            vld1q_f32(p),
            vld1q_f32(p.add(4)),
            vld1q_f32(p.add(8)),
            vld1q_f32(p.add(12)),
        ]
    }
    fn widen(self) -> f32 {
        self
    }
}

/// IEEE binary16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct F16(u16);
/// bfloat16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Bf16(u16);

impl Weights for F16 {
    #[inline(always)]
    unsafe fn load16(p: *const F16) -> [float32x4_t; 4] {
        let p = p.cast::<u16>();
        let (a, b) = widen_f16(vld1q_u16(p));
        let (c, d) = widen_f16(vld1q_u16(p.add(8)));
        [a, b, c, d]
    }
    fn widen(self) -> f32 {
        crate::engine::convert::f16_to_f32(self.0)
    }
}

impl Weights for Bf16 {
    #[inline(always)]
    unsafe fn load16(p: *const Bf16) -> [float32x4_t; 4] {
        let p = p.cast::<u16>();
        let (a, b) = widen_bf16(vld1q_u16(p));
        let (c, d) = widen_bf16(vld1q_u16(p.add(8)));
        [a, b, c, d]
    }
    fn widen(self) -> f32 {
        crate::engine::convert::bf16_to_f32(self.0)
    }
}

#[inline(always)]
unsafe fn gemv_body<T: Weights>(
    w: &[T],
    cols: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let main = cols / 16 * 16;
    for (r, out) in y.iter_mut().enumerate() {
        let row = &w[r * cols..(r + 1) * cols];
        let (pw, px) = (row.as_ptr(), x.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut k = 0;
        while k < main {
            let v = T::load16(pw.add(k));
            for (j, a) in acc.iter_mut().enumerate() {
                *a = vfmaq_f32(*a, v[j], vld1q_f32(px.add(k + 4 * j)));
            }
            k += 16;
        }
        let mut s = vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ));
        for (a, b) in row[main..].iter().zip(&x[main..cols]) {
            s += a.widen() * b;
        }
        *out = s + bias.map_or(0.0, |b| b[r]);
    }
}

/// Callers (`gemv.rs`, through `dispatch!`) have checked the shapes: `w.len() == y.len() * cols`,
/// `x.len() == cols`, `bias` of `y.len()`; and NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemv_f32_neon(
    w: &[f32],
    cols: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    gemv_body(w, cols, x, bias, y)
}

/// As [`gemv_f32_neon`], for IEEE binary16 weights.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemv_f16_neon(
    w: &[u16],
    cols: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    // SAFETY: `F16` is a `repr(transparent)` newtype of `u16` with the same size and alignment; the
    // slice is only read through it.
    let w = std::slice::from_raw_parts(w.as_ptr().cast::<F16>(), w.len());
    gemv_body(w, cols, x, bias, y)
}

/// As [`gemv_f32_neon`], for bfloat16 weights.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemv_bf16_neon(
    w: &[u16],
    cols: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    // SAFETY: as above.
    let w = std::slice::from_raw_parts(w.as_ptr().cast::<Bf16>(), w.len());
    gemv_body(w, cols, x, bias, y)
}

/// f16 weights widened to f32 (`fcvtl`/`fcvtl2`, 8 per step), scalar tail; the `convert.rs`
/// dispatcher checked NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn f16_row_neon(s: &[u16], out: &mut [f32]) {
    let n = s.len().min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n bounds both slices.
        let (lo, hi) = widen_f16(vld1q_u16(s.as_ptr().add(i)));
        vst1q_f32(out.as_mut_ptr().add(i), lo);
        vst1q_f32(out.as_mut_ptr().add(i + 4), hi);
        i += 8;
    }
    for j in i..n {
        out[j] = crate::engine::convert::f16_to_f32(s[j]);
    }
}
