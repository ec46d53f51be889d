//! Elementwise kernels: gated activations (SwiGLU's `silu(g) * u`, GeGLU's `gelu(g) * u`),
//! plain GELU (erf and tanh forms), residual add, and rotary position embeddings.
//!
//! SiLU `x * sigmoid(x)` (Elfwing et al. 2017); GELU `x * Phi(x)` (Hendrycks & Gimpel 2016),
//! tanh form `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. The SIMD bodies use the
//! branch-free [`exp_approx`] and, for erf, Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7); the
//! scalar twins use `f32::exp`/`tanh` and the Numerical Recipes `erfc` Chebyshev fit
//! (relative error < 1.2e-7), so twin and SIMD path are independent.
//!
//! RoPE rotates pairs `(x[i], x[i + rot/2])` of each head's first `rot` dimensions (the
//! "rotate_half" layout of HF llama/qwen/gemma/phi3/gpt_neox; Su et al. 2021). The caller
//! supplies `cos`/`sin` per token for `rot/2` frequencies, so llama3 scaling and partial rotary
//! live in the table, not here.

use super::simd::{dispatch, exp_approx, isa_variants, tanh_approx};
use crate::isa::Isa;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

// ---------- SiLU x mul ----------

/// Scalar twin of [`silu_mul`].
pub fn silu_mul_scalar(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu_mul: lengths");
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

#[inline(always)]
fn silu_mul_lanes(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp_approx(-*g)) * u;
    }
}
isa_variants!(silu_mul_lanes => silu_mul_avx2, silu_mul_avx512; (gate: &mut [f32], up: &[f32]));

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(isa: Isa, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu_mul: lengths");
    dispatch!(isa,
        scalar => silu_mul_scalar(gate, up),
        avx2 => silu_mul_avx2(gate, up),
        avx512 => silu_mul_avx512(gate, up))
}

// ---------- GELU ----------

/// Which GELU: HF `gelu` (exact, erf) or `gelu_pytorch_tanh` / `gelu_new` (tanh approximation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gelu {
    Erf,
    Tanh,
}

/// erfc by the Numerical Recipes Chebyshev fit (fractional error < 1.2e-7 everywhere).
fn erfc_nr(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn gelu_scalar_one(x: f32, kind: Gelu) -> f32 {
    match kind {
        Gelu::Erf => {
            let xd = x as f64;
            (0.5 * xd * (2.0 - erfc_nr(xd / std::f64::consts::SQRT_2))) as f32
        }
        Gelu::Tanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh()),
    }
}

/// A&S 7.1.26 erf, branch-free.
#[inline(always)]
fn erf_as(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - p * exp_approx(-a * a);
    y.copysign(x)
}

#[inline(always)]
fn gelu_one(x: f32, kind: Gelu) -> f32 {
    match kind {
        Gelu::Erf => 0.5 * x * (1.0 + erf_as(x * std::f32::consts::FRAC_1_SQRT_2)),
        Gelu::Tanh => 0.5 * x * (1.0 + tanh_approx(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x))),
    }
}

/// Scalar twin of [`gelu`].
pub fn gelu_scalar(x: &mut [f32], kind: Gelu) {
    for v in x.iter_mut() {
        *v = gelu_scalar_one(*v, kind);
    }
}

#[inline(always)]
fn gelu_lanes(x: &mut [f32], tanh: bool) {
    if tanh {
        for v in x.iter_mut() {
            *v = gelu_one(*v, Gelu::Tanh);
        }
    } else {
        for v in x.iter_mut() {
            *v = gelu_one(*v, Gelu::Erf);
        }
    }
}
isa_variants!(gelu_lanes => gelu_avx2, gelu_avx512; (x: &mut [f32], tanh: bool));

/// `x[i] = gelu(x[i])` in place.
pub fn gelu(isa: Isa, x: &mut [f32], kind: Gelu) {
    let tanh = kind == Gelu::Tanh;
    dispatch!(isa,
        scalar => gelu_scalar(x, kind),
        avx2 => gelu_avx2(x, tanh),
        avx512 => gelu_avx512(x, tanh))
}

/// Scalar twin of [`gelu_mul`].
pub fn gelu_mul_scalar(gate: &mut [f32], up: &[f32], kind: Gelu) {
    assert_eq!(gate.len(), up.len(), "gelu_mul: lengths");
    for (g, u) in gate.iter_mut().zip(up) {
        *g = gelu_scalar_one(*g, kind) * u;
    }
}

#[inline(always)]
fn gelu_mul_lanes(gate: &mut [f32], up: &[f32], tanh: bool) {
    let kind = if tanh { Gelu::Tanh } else { Gelu::Erf };
    for (g, u) in gate.iter_mut().zip(up) {
        *g = gelu_one(*g, kind) * u;
    }
}
isa_variants!(gelu_mul_lanes => gelu_mul_avx2, gelu_mul_avx512;
    (gate: &mut [f32], up: &[f32], tanh: bool));

/// `gate[i] = gelu(gate[i]) * up[i]` (GeGLU).
pub fn gelu_mul(isa: Isa, gate: &mut [f32], up: &[f32], kind: Gelu) {
    assert_eq!(gate.len(), up.len(), "gelu_mul: lengths");
    let tanh = kind == Gelu::Tanh;
    dispatch!(isa,
        scalar => gelu_mul_scalar(gate, up, kind),
        avx2 => gelu_mul_avx2(gate, up, tanh),
        avx512 => gelu_mul_avx512(gate, up, tanh))
}

// ---------- residual add ----------

/// Scalar twin of [`add`].
pub fn add_scalar(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len(), "add: lengths");
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[inline(always)]
fn add_lanes(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
isa_variants!(add_lanes => add_avx2, add_avx512; (x: &mut [f32], y: &[f32]));

/// `x[i] += y[i]`.
pub fn add(isa: Isa, x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len(), "add: lengths");
    dispatch!(isa,
        scalar => add_scalar(x, y),
        avx2 => add_avx2(x, y),
        avx512 => add_avx512(x, y))
}

// ---------- RoPE ----------

fn rope_check(x: &[f32], head_dim: usize, rot: usize, cos: &[f32], sin: &[f32]) {
    assert!(
        rot.is_multiple_of(2) && rot <= head_dim,
        "rope: rotary dims must be even and <= head_dim"
    );
    assert!(
        head_dim > 0 && x.len().is_multiple_of(head_dim),
        "rope: x is not whole heads"
    );
    assert!(
        cos.len() == rot / 2 && sin.len() == rot / 2,
        "rope: table length"
    );
}

/// Scalar twin of [`rope`].
pub fn rope_scalar(x: &mut [f32], head_dim: usize, rot: usize, cos: &[f32], sin: &[f32]) {
    rope_check(x, head_dim, rot, cos, sin);
    let half = rot / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos[i] - b * sin[i];
            head[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

#[inline(always)]
fn rope_lanes(x: &mut [f32], head_dim: usize, rot: usize, cos: &[f32], sin: &[f32]) {
    let half = rot / 2;
    for head in x.chunks_exact_mut(head_dim) {
        let (lo, hi) = head[..rot].split_at_mut(half);
        for i in 0..half {
            let (a, b) = (lo[i], hi[i]);
            lo[i] = a * cos[i] - b * sin[i];
            hi[i] = b * cos[i] + a * sin[i];
        }
    }
}
isa_variants!(rope_lanes => rope_avx2, rope_avx512;
    (x: &mut [f32], head_dim: usize, rot: usize, cos: &[f32], sin: &[f32]));

/// Rotates the first `rot` dims of every `head_dim`-long head in `x` (one token's heads) by the
/// angles whose cosines and sines are `cos`, `sin` (`rot / 2` each).
pub fn rope(isa: Isa, x: &mut [f32], head_dim: usize, rot: usize, cos: &[f32], sin: &[f32]) {
    rope_check(x, head_dim, rot, cos, sin);
    dispatch!(isa,
        scalar => rope_scalar(x, head_dim, rot, cos, sin),
        avx2 => rope_avx2(x, head_dim, rot, cos, sin),
        avx512 => rope_avx512(x, head_dim, rot, cos, sin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testutil::{assert_close, isas, rand_vec, SIZES};

    #[test]
    fn activations_match_scalar_twins_on_every_isa() {
        for isa in isas() {
            for n in SIZES {
                let g: Vec<f32> = rand_vec(n, 1).iter().map(|v| v * 12.0).collect();
                let u = rand_vec(n, 2);
                let (mut want, mut got) = (g.clone(), g.clone());
                silu_mul_scalar(&mut want, &u);
                silu_mul(isa, &mut got, &u);
                assert_close(&got, &want, 2e-6, &format!("silu_mul {isa} n={n}"));
                for kind in [Gelu::Erf, Gelu::Tanh] {
                    let (mut want, mut got) = (g.clone(), g.clone());
                    gelu_scalar(&mut want, kind);
                    gelu(isa, &mut got, kind);
                    assert_close(&got, &want, 2e-6, &format!("gelu {kind:?} {isa} n={n}"));
                    let (mut want, mut got) = (g.clone(), g.clone());
                    gelu_mul_scalar(&mut want, &u, kind);
                    gelu_mul(isa, &mut got, &u, kind);
                    assert_close(&got, &want, 2e-6, &format!("gelu_mul {kind:?} {isa} n={n}"));
                }
                let (mut want, mut got) = (g.clone(), g.clone());
                add_scalar(&mut want, &u);
                add(isa, &mut got, &u);
                assert_eq!(got, want, "add {isa} n={n}");
            }
        }
    }

    #[test]
    fn gelu_known_values() {
        // GELU(1) = 0.8413447 (erf form), 0.8411920 (tanh form).
        let mut v = [1.0f32, 0.0, -10.0];
        gelu_scalar(&mut v, Gelu::Erf);
        assert!((v[0] - 0.841_344_7).abs() < 1e-6 && v[1] == 0.0 && v[2].abs() < 1e-6);
        let mut v = [1.0f32];
        gelu_scalar(&mut v, Gelu::Tanh);
        assert!((v[0] - 0.841_192).abs() < 1e-5);
    }

    #[test]
    fn rope_matches_scalar_twin_on_every_isa() {
        for isa in isas() {
            for hd in [2usize, 8, 16, 18, 64, 130] {
                for rot in [hd, hd / 2 / 2 * 2] {
                    let x = rand_vec(3 * hd, 9);
                    let cos = rand_vec(rot / 2, 10);
                    let sin = rand_vec(rot / 2, 11);
                    let (mut want, mut got) = (x.clone(), x.clone());
                    rope_scalar(&mut want, hd, rot, &cos, &sin);
                    rope(isa, &mut got, hd, rot, &cos, &sin);
                    assert_close(&got, &want, 1e-6, &format!("rope {isa} hd={hd} rot={rot}"));
                    if rot < hd {
                        assert_eq!(got[rot..hd], x[rot..hd], "pass-through dims untouched");
                    }
                }
            }
        }
    }

    #[test]
    fn rope_preserves_pair_norms() {
        let mut x = rand_vec(8, 4);
        let before: Vec<f32> = (0..4).map(|i| x[i].hypot(x[i + 4])).collect();
        let ang = [0.3f32, 1.0, 2.0, -0.5];
        let cos: Vec<f32> = ang.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = ang.iter().map(|a| a.sin()).collect();
        rope_scalar(&mut x, 8, 8, &cos, &sin);
        let after: Vec<f32> = (0..4).map(|i| x[i].hypot(x[i + 4])).collect();
        assert_close(&after, &before, 1e-6, "rope norm");
    }
}
