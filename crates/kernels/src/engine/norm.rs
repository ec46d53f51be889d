//! Normalisations over rows of activations: RMSNorm (llama, qwen, gemma; also the per-head q/k
//! norm of Qwen3/Gemma3) and LayerNorm (gpt_neox, phi-2 style), in place.
//!
//! RMSNorm: `y = x / sqrt(mean(x^2) + eps) * w` (Zhang & Sennrich 2019). Gemma's `(1 + w)`
//! variant is folded into `w` by the caller at load time. LayerNorm: `y = (x - mean) /
//! sqrt(var + eps) * w + b` (Ba et al. 2016), population variance, two passes.
//!
//! Both sum in f64 (RMSNorm the f32 squares, LayerNorm the values and the f32 squared
//! deviations) and divide by `n` there, as ggml does
//! (`ggml_compute_forward_rms_norm_f32`: `ggml_float sum += (ggml_float)(x * x)`, `mean = sum /
//! n` to f32). Quantized models requantize the normalised row to 8 bits, where values often sit
//! exactly on a rounding tie (a q4_0 embedding row: `x * 127 / amax = 63.5`), so the last bit of
//! the scale decides whole quantization steps; an f32 sum made our q4_0/q5_0 logits differ from
//! llama.cpp's by ~1e-2 on most seeds (`src/sweep/llamacpp_logits_test.rs`).
//!
//! Accounting: reads `rows * n * 4` activation bytes and `n * 4` weight bytes, writes
//! `rows * n * 4`; ~`4 * rows * n` FLOPs (RMSNorm), ~`7 * rows * n` (LayerNorm).

use super::simd::{dispatch, isa_variants, LANES};
use crate::isa::Isa;

fn check(x: &[f32], w: &[f32], b: Option<&[f32]>) {
    assert!(
        w.is_empty() && x.is_empty() || !w.is_empty() && x.len().is_multiple_of(w.len()),
        "norm: x length is not a multiple of the weight length"
    );
    if let Some(b) = b {
        assert_eq!(b.len(), w.len(), "norm: bias length");
    }
}

/// Scalar twin of [`rmsnorm`].
pub fn rmsnorm_scalar(x: &mut [f32], w: &[f32], eps: f32) {
    check(x, w, None);
    if w.is_empty() {
        return;
    }
    for row in x.chunks_exact_mut(w.len()) {
        let mut ss = 0.0f64;
        for v in row.iter() {
            ss += f64::from(v * v);
        }
        let inv = 1.0 / ((ss / w.len() as f64) as f32 + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}

/// Sum of the f32 squares, accumulated in f64 (see the module docs).
#[inline(always)]
fn sum_sq_lanes(row: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f64::from(c[l] * c[l]);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for v in chunks.remainder() {
        s += f64::from(v * v);
    }
    s
}

/// Sum, accumulated in f64.
#[inline(always)]
fn sum_lanes(row: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f64::from(c[l]);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for v in chunks.remainder() {
        s += f64::from(*v);
    }
    s
}

#[inline(always)]
fn rmsnorm_lanes(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let inv = 1.0 / ((sum_sq_lanes(row) / w.len() as f64) as f32 + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}
isa_variants!(rmsnorm_lanes => rmsnorm_avx2, rmsnorm_avx512; (x: &mut [f32], w: &[f32], eps: f32));

/// RMSNorm of every `w.len()`-long row of `x`, in place.
pub fn rmsnorm(isa: Isa, x: &mut [f32], w: &[f32], eps: f32) {
    check(x, w, None);
    if w.is_empty() {
        return;
    }
    dispatch!(isa,
        scalar => rmsnorm_scalar(x, w, eps),
        avx2 => rmsnorm_avx2(x, w, eps),
        avx512 => rmsnorm_avx512(x, w, eps))
}

/// Scalar twin of [`layernorm`].
pub fn layernorm_scalar(x: &mut [f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    check(x, w, b);
    if w.is_empty() {
        return;
    }
    let n = w.len() as f64;
    for row in x.chunks_exact_mut(w.len()) {
        let mut s = 0.0f64;
        for v in row.iter() {
            s += f64::from(*v);
        }
        let mean = (s / n) as f32;
        let mut var = 0.0f64;
        for v in row.iter() {
            var += f64::from((v - mean) * (v - mean));
        }
        let inv = 1.0 / ((var / n) as f32 + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * w[i] + b.map_or(0.0, |b| b[i]);
        }
    }
}

#[inline(always)]
fn layernorm_lanes(x: &mut [f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    let n = w.len() as f64;
    for row in x.chunks_exact_mut(w.len()) {
        let mean = (sum_lanes(row) / n) as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let inv = 1.0 / ((sum_sq_lanes(row) / n) as f32 + eps).sqrt();
        match b {
            Some(b) => {
                for ((v, g), bb) in row.iter_mut().zip(w).zip(b) {
                    *v = *v * inv * g + bb;
                }
            }
            None => {
                for (v, g) in row.iter_mut().zip(w) {
                    *v = *v * inv * g;
                }
            }
        }
    }
}
isa_variants!(layernorm_lanes => layernorm_avx2, layernorm_avx512;
    (x: &mut [f32], w: &[f32], b: Option<&[f32]>, eps: f32));

/// LayerNorm of every `w.len()`-long row of `x`, in place.
pub fn layernorm(isa: Isa, x: &mut [f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    check(x, w, b);
    if w.is_empty() {
        return;
    }
    dispatch!(isa,
        scalar => layernorm_scalar(x, w, b, eps),
        avx2 => layernorm_avx2(x, w, b, eps),
        avx512 => layernorm_avx512(x, w, b, eps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testutil::{assert_close, isas, rand_vec, SIZES};

    #[test]
    fn norms_match_scalar_twins_on_every_isa() {
        for isa in isas() {
            for n in SIZES.into_iter().filter(|&n| n > 0) {
                let w = rand_vec(n, 5);
                let b = rand_vec(n, 6);
                let x: Vec<f32> = rand_vec(3 * n, 7).iter().map(|v| v * 3.0 + 0.5).collect();
                let mut want = x.clone();
                let mut got = x.clone();
                rmsnorm_scalar(&mut want, &w, 1e-6);
                rmsnorm(isa, &mut got, &w, 1e-6);
                assert_close(&got, &want, 2e-6, &format!("rmsnorm {isa} n={n}"));
                for bias in [None, Some(&b[..])] {
                    let mut want = x.clone();
                    let mut got = x.clone();
                    layernorm_scalar(&mut want, &w, bias, 1e-5);
                    layernorm(isa, &mut got, &w, bias, 1e-5);
                    assert_close(&got, &want, 1e-5, &format!("layernorm {isa} n={n}"));
                }
            }
            let mut empty: Vec<f32> = vec![];
            rmsnorm(isa, &mut empty, &[], 1e-6);
            layernorm(isa, &mut empty, &[], None, 1e-6);
        }
    }

    #[test]
    fn rmsnorm_of_a_constant_row_is_the_weight() {
        let mut x = vec![2.0f32; 8];
        let w: Vec<f32> = (0..8).map(|i| i as f32).collect();
        rmsnorm_scalar(&mut x, &w, 0.0);
        assert_close(&x, &w, 1e-6, "rmsnorm constant");
    }
}
