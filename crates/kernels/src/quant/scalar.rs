//! Scalar dot products of one quantized weight row with one 8-bit activation row: the fallback
//! and the test oracle of the SIMD kernels.
//!
//! Per block the products are summed exactly in integers; only the per-block scale factors are
//! floating point, as in llama.cpp's `ggml_vec_dot_*_q8_*` reference loops.

use super::reference::{f16_at, unpack_legacy, unpack_q6_k, unpack_qk};
use super::{ActRow, QuantType, QK, QK_K};

pub(crate) fn dot(ty: QuantType, w: &[u8], a: &ActRow<'_>) -> f32 {
    match ty {
        QuantType::Q8_0 => dot_q8_0_scalar(w, a),
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 => {
            dot_legacy_scalar(ty, w, a)
        }
        QuantType::Q4K | QuantType::Q5K => dot_qk_scalar(ty, w, a),
        QuantType::Q6K => dot_q6_k_scalar(w, a),
    }
}

fn dot_q8_0_scalar(w: &[u8], a: &ActRow<'_>) -> f32 {
    let mut acc = 0.0f32;
    for (b, blk) in w.chunks_exact(34).enumerate() {
        let qa = &a.qs[b * QK..(b + 1) * QK];
        let s: i32 = blk[2..34]
            .iter()
            .zip(qa)
            .map(|(&q, &x)| (q as i8) as i32 * x as i32)
            .sum();
        acc += f16_at(blk, 0) * a.d[b] * s as f32;
    }
    acc
}

/// `x = d q + m` per weight, so `sum x a = d da sum(q a) + m (da sum a)`.
fn dot_legacy_scalar(ty: QuantType, w: &[u8], a: &ActRow<'_>) -> f32 {
    let bb = ty.block_bytes();
    let mut acc = 0.0f32;
    let mut q = [0u8; QK];
    for (b, blk) in w.chunks_exact(bb).enumerate() {
        let (d, m) = unpack_legacy(ty, blk, &mut q);
        let qa = &a.qs[b * QK..(b + 1) * QK];
        let s: i32 = q.iter().zip(qa).map(|(&q, &x)| q as i32 * x as i32).sum();
        acc += d * a.d[b] * s as f32 + m * a.ds[b];
    }
    acc
}

/// `x = d sc_j q - dmin m_j` per weight of sub-block `j`.
fn dot_qk_scalar(ty: QuantType, w: &[u8], a: &ActRow<'_>) -> f32 {
    let bb = ty.block_bytes();
    let mut acc = 0.0f32;
    let mut q = [0u8; QK_K];
    for (b, blk) in w.chunks_exact(bb).enumerate() {
        let (sc, mn) = unpack_qk(ty, blk, &mut q);
        let qa = &a.qs[b * QK_K..(b + 1) * QK_K];
        let bs = &a.bsums[b * 16..(b + 1) * 16];
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let s: i32 = q[32 * j..32 * (j + 1)]
                .iter()
                .zip(&qa[32 * j..32 * (j + 1)])
                .map(|(&q, &x)| q as i32 * x as i32)
                .sum();
            isum += sc[j] as i32 * s;
            msum += mn[j] as i32 * (bs[2 * j] as i32 + bs[2 * j + 1] as i32);
        }
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        acc += a.d[b] * (d * isum as f32 - dmin * msum as f32);
    }
    acc
}

/// `x = d s_g (q - 32)` per weight of group `g` of 16.
fn dot_q6_k_scalar(w: &[u8], a: &ActRow<'_>) -> f32 {
    let mut acc = 0.0f32;
    let mut q = [0u8; QK_K];
    for (b, blk) in w.chunks_exact(210).enumerate() {
        unpack_q6_k(blk, &mut q);
        let qa = &a.qs[b * QK_K..(b + 1) * QK_K];
        let bs = &a.bsums[b * 16..(b + 1) * 16];
        let mut isum = 0i32;
        for g in 0..16 {
            let s: i32 = q[16 * g..16 * (g + 1)]
                .iter()
                .zip(&qa[16 * g..16 * (g + 1)])
                .map(|(&q, &x)| q as i32 * x as i32)
                .sum();
            isum += (blk[192 + g] as i8) as i32 * (s - 32 * bs[g] as i32);
        }
        acc += f16_at(blk, 208) * a.d[b] * isum as f32;
    }
    acc
}
