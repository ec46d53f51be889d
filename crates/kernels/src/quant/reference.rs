//! Reference quantizers (f32 -> blocks) and dequantizers (blocks -> f32), scalar.
//!
//! Layouts and dequantization formulas follow llama.cpp's ggml-common.h / ggml-quants.c
//! (`block_q4_0`, `get_scale_min_k4`, `dequantize_row_q6_K`, ...). The q8_0, q4_0, q4_1, q5_0
//! and q5_1 quantizers write the bytes ggml's reference quantizers (`quantize_row_*_ref`, what
//! llama.cpp's quantize tool uses without an importance matrix) write; the k-quant ones are
//! plain round-to-nearest with per-block min/max scales (llama.cpp searches scales
//! iteratively) and produce valid blocks of the same layout.

use super::{QuantError, QuantType, QK, QK_K};
use half::f16;

#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

#[inline]
fn put_f16(out: &mut [u8], at: usize, v: f32) -> f32 {
    let h = f16::from_f32(v);
    out[at..at + 2].copy_from_slice(&h.to_bits().to_le_bytes());
    h.to_f32()
}

fn check_len(ty: QuantType, n: usize) -> Result<usize, QuantError> {
    ty.bytes_for(n).ok_or(QuantError::NotBlockMultiple {
        ty: ty.name(),
        cols: n,
        block: ty.block_elems(),
    })
}

/// Quantizes `x` (a whole number of blocks) into `ty` blocks.
pub fn quantize(ty: QuantType, x: &[f32]) -> Result<Vec<u8>, QuantError> {
    let bytes = check_len(ty, x.len())?;
    let mut out = vec![0u8; bytes];
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    for (xs, o) in x.chunks_exact(be).zip(out.chunks_exact_mut(bb)) {
        match ty {
            QuantType::Q8_0 => quantize_q8_0(xs, o),
            QuantType::Q4_0 => quantize_sym(xs, o, 4),
            QuantType::Q5_0 => quantize_sym(xs, o, 5),
            QuantType::Q4_1 => quantize_affine(xs, o, 4),
            QuantType::Q5_1 => quantize_affine(xs, o, 5),
            QuantType::Q4K => quantize_qk(xs, o, 4),
            QuantType::Q5K => quantize_qk(xs, o, 5),
            QuantType::Q6K => quantize_q6_k(xs, o),
        }
    }
    Ok(out)
}

/// Dequantizes `data` (whole blocks of `ty`) into `out`, whose length fixes the element count.
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let bytes = check_len(ty, out.len())?;
    if data.len() != bytes {
        return Err(QuantError::DataLength {
            ty,
            rows: 1,
            cols: out.len(),
            expected: bytes,
            actual: data.len(),
        });
    }
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    for (b, y) in data.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        match ty {
            QuantType::Q8_0 => {
                let d = f16_at(b, 0);
                for (yi, &q) in y.iter_mut().zip(&b[2..34]) {
                    *yi = d * (q as i8) as f32;
                }
            }
            QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 => {
                let mut q = [0u8; QK];
                let (d, m) = unpack_legacy(ty, b, &mut q);
                for (yi, &qi) in y.iter_mut().zip(&q) {
                    *yi = d * qi as f32 + m;
                }
            }
            QuantType::Q4K | QuantType::Q5K => {
                let mut q = [0u8; QK_K];
                let (sc, mn) = unpack_qk(ty, b, &mut q);
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                for j in 0..8 {
                    let (dj, mj) = (d * sc[j] as f32, dmin * mn[j] as f32);
                    for l in 0..32 {
                        y[32 * j + l] = dj * q[32 * j + l] as f32 - mj;
                    }
                }
            }
            QuantType::Q6K => {
                let mut q = [0u8; QK_K];
                unpack_q6_k(b, &mut q);
                let d = f16_at(b, 208);
                for (i, yi) in y.iter_mut().enumerate() {
                    let s = b[192 + i / 16] as i8 as f32;
                    *yi = d * s * (q[i] as i32 - 32) as f32;
                }
            }
        }
    }
    Ok(())
}

/// Unsigned quant values (element order) of a legacy 4/5-bit block and `(d, m)` such that
/// `x = d q + m` (`m = -8 d` for q4_0, `-16 d` for q5_0).
pub(crate) fn unpack_legacy(ty: QuantType, b: &[u8], q: &mut [u8; QK]) -> (f32, f32) {
    let d = f16_at(b, 0);
    let (m, qh, qs) = match ty {
        QuantType::Q4_0 => (-8.0 * d, 0u32, &b[2..18]),
        QuantType::Q4_1 => (f16_at(b, 2), 0, &b[4..20]),
        QuantType::Q5_0 => (
            -16.0 * d,
            u32::from_le_bytes([b[2], b[3], b[4], b[5]]),
            &b[6..22],
        ),
        QuantType::Q5_1 => (
            f16_at(b, 2),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            &b[8..24],
        ),
        _ => unreachable!("unpack_legacy called for {ty}"),
    };
    for j in 0..16 {
        let hi0 = ((qh >> j) & 1) as u8;
        let hi1 = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 0x0F) | (hi0 << 4);
        q[j + 16] = (qs[j] >> 4) | (hi1 << 4);
    }
    (d, m)
}

/// 6-bit scale and min of sub-block `j` of a q4_K/q5_K block (llama.cpp `get_scale_min_k4`).
#[inline]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Unsigned quant values (element order) and the 8 sub-block scales and mins of a q4_K/q5_K block.
pub(crate) fn unpack_qk(ty: QuantType, b: &[u8], q: &mut [u8; QK_K]) -> ([u8; 8], [u8; 8]) {
    let scales = &b[4..16];
    let (qh, qs): (&[u8], &[u8]) = match ty {
        QuantType::Q4K => (&[], &b[16..144]),
        QuantType::Q5K => (&b[16..48], &b[48..176]),
        _ => unreachable!("unpack_qk called for {ty}"),
    };
    for c in 0..4 {
        for l in 0..32 {
            let v = qs[32 * c + l];
            let (mut lo, mut hi) = (v & 0x0F, v >> 4);
            if !qh.is_empty() {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            q[64 * c + l] = lo;
            q[64 * c + 32 + l] = hi;
        }
    }
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, scales);
    }
    (sc, mn)
}

/// Unsigned 6-bit quant values (element order, offset 32) of a q6_K block.
pub(crate) fn unpack_q6_k(b: &[u8], q: &mut [u8; QK_K]) {
    let (ql, qh) = (&b[0..128], &b[128..192]);
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
        for l in 0..32 {
            let h = qh[l];
            q[128 * n + l] = (ql[l] & 0x0F) | ((h & 3) << 4);
            q[128 * n + l + 32] = (ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4);
            q[128 * n + l + 64] = (ql[l] >> 4) | (((h >> 4) & 3) << 4);
            q[128 * n + l + 96] = (ql[l + 32] >> 4) | (((h >> 6) & 3) << 4);
        }
    }
}

/// `quantize_row_q8_0_ref` (ggml-quants.c, what llama.cpp's quantize tool writes): the
/// multiplier comes from the unrounded scale `amax / 127` (stored as f16), rounding is half
/// away from zero. `crates/kernels/tests/ggml_arm_q8.rs` requires the same bytes as ggml's.
fn quantize_q8_0(x: &[f32], o: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    put_f16(o, 0, d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (oi, &xi) in o[2..34].iter_mut().zip(x) {
        *oi = ((xi * id).round() as i32).clamp(-127, 127) as i8 as u8;
    }
}

/// Packs 32 unsigned values of `bits` (4 or 5) into the nibbles (and `qh` bits) of `qs`.
fn pack_legacy(q: &[u8; QK], qs: &mut [u8], qh: Option<&mut [u8]>) {
    let mut h = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        h |= (((q[j] >> 4) & 1) as u32) << j;
        h |= (((q[j + 16] >> 4) & 1) as u32) << (j + 16);
    }
    if let Some(qh) = qh {
        qh.copy_from_slice(&h.to_le_bytes());
    }
}

/// q4_0 / q5_0 as `quantize_row_q4_0_ref`/`q5_0_ref` do it: `d = max / -2^(bits-1)`, where
/// `max` is the value of largest magnitude (the first such), so that value lands exactly on the
/// lowest level; the multiplier comes from the unrounded `d`, and `q = min(top, trunc(x / d +
/// 2^(bits-1) + 0.5))` with the same f32 additions (an `as` cast truncates like C's).
fn quantize_sym(x: &[f32], o: &mut [u8], bits: u32) {
    let half = (1u32 << (bits - 1)) as f32;
    let top = (1i32 << bits) - 1;
    let max = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -half;
    put_f16(o, 0, d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0u8; QK];
    for (qi, &xi) in q.iter_mut().zip(x) {
        *qi = (((xi * id + (half + 0.5)) as i8) as i32).clamp(0, top) as u8;
    }
    if bits == 4 {
        pack_legacy(&q, &mut o[2..18], None);
    } else {
        let (qh, qs) = o[2..22].split_at_mut(4);
        pack_legacy(&q, qs, Some(qh));
    }
}

/// q4_1 / q5_1 as `quantize_row_q4_1_ref`/`q5_1_ref` do it: `d = (max - min) / (2^bits - 1)`,
/// `m = min`, both stored as f16 but quantized against the unrounded values:
/// `q = min(top, trunc((x - min) / d + 0.5))`.
fn quantize_affine(x: &[f32], o: &mut [u8], bits: u32) {
    let top = (1i32 << bits) - 1;
    let mn = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
    let mx = x.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let d = (mx - mn) / top as f32;
    put_f16(o, 0, d);
    put_f16(o, 2, mn);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0u8; QK];
    for (qi, &xi) in q.iter_mut().zip(x) {
        *qi = ((((xi - mn) * id + 0.5) as u8) as i32).min(top) as u8;
    }
    if bits == 4 {
        pack_legacy(&q, &mut o[4..20], None);
    } else {
        let (qh, qs) = o[4..24].split_at_mut(4);
        pack_legacy(&q, qs, Some(qh));
    }
}

/// q4_K / q5_K: per sub-block of 32 a scale `(max - min) / (2^bits - 1)` and a min `-min(0, min)`,
/// both quantized to 6 bits against super-block `d` and `dmin`.
fn quantize_qk(x: &[f32], o: &mut [u8], bits: u32) {
    let top = (1i32 << bits) - 1;
    let mut scale = [0.0f32; 8];
    let mut minv = [0.0f32; 8];
    for j in 0..8 {
        let xs = &x[32 * j..32 * (j + 1)];
        let mn = xs.iter().fold(0.0f32, |m, &v| m.min(v));
        let mx = xs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        scale[j] = ((mx - mn) / top as f32).max(0.0);
        minv[j] = -mn;
    }
    let max_scale = scale.iter().fold(0.0f32, |m, &v| m.max(v));
    let max_min = minv.iter().fold(0.0f32, |m, &v| m.max(v));
    let d = put_f16(o, 0, max_scale / 63.0);
    let dmin = put_f16(o, 2, max_min / 63.0);
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let idmin = if dmin > 0.0 { 1.0 / dmin } else { 0.0 };
    let mut sc = [0u8; 8];
    let mut mq = [0u8; 8];
    for j in 0..8 {
        sc[j] = ((scale[j] * id).round() as i32).clamp(0, 63) as u8;
        mq[j] = ((minv[j] * idmin).round() as i32).clamp(0, 63) as u8;
    }
    let s = &mut o[4..16];
    s.fill(0);
    for j in 0..8 {
        if j < 4 {
            s[j] = sc[j];
            s[j + 4] = mq[j];
        } else {
            s[j + 4] = (sc[j] & 0x0F) | ((mq[j] & 0x0F) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (mq[j] >> 4) << 6;
        }
    }
    let mut q = [0u8; QK_K];
    for j in 0..8 {
        let ds = d * sc[j] as f32;
        let dm = dmin * mq[j] as f32;
        let ids = if ds > 0.0 { 1.0 / ds } else { 0.0 };
        for l in 0..32 {
            let v = ((x[32 * j + l] + dm) * ids).round() as i32;
            q[32 * j + l] = v.clamp(0, top) as u8;
        }
    }
    let (qh, qs) = if bits == 4 {
        (None, &mut o[16..144])
    } else {
        let (qh, qs) = o[16..176].split_at_mut(32);
        qh.fill(0);
        (Some(qh), qs)
    };
    let mut qh = qh;
    for c in 0..4 {
        for l in 0..32 {
            let (lo, hi) = (q[64 * c + l], q[64 * c + 32 + l]);
            qs[32 * c + l] = (lo & 0x0F) | ((hi & 0x0F) << 4);
            if let Some(qh) = qh.as_deref_mut() {
                qh[l] |= ((lo >> 4) & 1) << (2 * c);
                qh[l] |= ((hi >> 4) & 1) << (2 * c + 1);
            }
        }
    }
}

/// q6_K: per sub-block of 16 a scale `amax / 31`, quantized to `i8` against super-block `d`.
fn quantize_q6_k(x: &[f32], o: &mut [u8]) {
    let mut scale = [0.0f32; 16];
    for (g, s) in scale.iter_mut().enumerate() {
        *s = x[16 * g..16 * (g + 1)]
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            / 31.0;
    }
    let max_scale = scale.iter().fold(0.0f32, |m, &v| m.max(v));
    let d = put_f16(o, 208, max_scale / 127.0);
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0u8; QK_K];
    for g in 0..16 {
        let sc = ((scale[g] * id).round() as i32).clamp(0, 127);
        o[192 + g] = sc as i8 as u8;
        let ds = d * sc as f32;
        let ids = if ds > 0.0 { 1.0 / ds } else { 0.0 };
        for l in 0..16 {
            let v = (x[16 * g + l] * ids).round() as i32;
            q[16 * g + l] = (v.clamp(-32, 31) + 32) as u8;
        }
    }
    for n in 0..2 {
        for l in 0..32 {
            let b = 128 * n + l;
            let (q1, q2, q3, q4) = (q[b], q[b + 32], q[b + 64], q[b + 96]);
            o[64 * n + l] = (q1 & 0x0F) | ((q3 & 0x0F) << 4);
            o[64 * n + l + 32] = (q2 & 0x0F) | ((q4 & 0x0F) << 4);
            o[128 + 32 * n + l] =
                (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
}
