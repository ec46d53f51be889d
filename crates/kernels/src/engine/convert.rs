//! Conversions between f32 and the 16-bit weight formats.
//!
//! bf16 is the upper half of an f32 (widening is a shift; narrowing rounds to nearest even).
//! f16 uses the `half` crate for the scalar path and `vcvtph2ps` (F16C / AVX-512F) for SIMD.

use super::simd::{dispatch, isa_variants};
use super::WeightData;
use crate::isa::Isa;

#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Round to nearest even; NaN stays NaN.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Widens `src` into `out` (equal lengths), scalar twin.
pub fn to_f32_scalar(src: WeightData<'_>, out: &mut [f32]) {
    match src {
        WeightData::F32(s) => out.copy_from_slice(s),
        WeightData::F16(s) => {
            assert_eq!(s.len(), out.len());
            for (o, &h) in out.iter_mut().zip(s) {
                *o = f16_to_f32(h);
            }
        }
        WeightData::Bf16(s) => {
            assert_eq!(s.len(), out.len());
            for (o, &b) in out.iter_mut().zip(s) {
                *o = bf16_to_f32(b);
            }
        }
    }
}

#[inline(always)]
fn bf16_row_lanes(s: &[u16], out: &mut [f32]) {
    for (o, &b) in out.iter_mut().zip(s) {
        *o = bf16_to_f32(b);
    }
}
isa_variants!(bf16_row_lanes => bf16_row_avx2, bf16_row_avx512; (s: &[u16], out: &mut [f32]));

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_row_avx2(s: &[u16], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = s.len().min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n bounds both slices.
        let h = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
        _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for j in i..n {
        out[j] = f16_to_f32(s[j]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn f16_row_avx512(s: &[u16], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = s.len().min(out.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n bounds both slices.
        let h = _mm256_loadu_si256(s.as_ptr().add(i) as *const __m256i);
        _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
        i += 16;
    }
    for j in i..n {
        out[j] = f16_to_f32(s[j]);
    }
}

/// Widens `src` into `out` (equal lengths) with the kernels of `isa`.
pub fn to_f32(isa: Isa, src: WeightData<'_>, out: &mut [f32]) {
    match src {
        WeightData::F32(s) => out.copy_from_slice(s),
        WeightData::F16(s) => {
            assert_eq!(s.len(), out.len());
            dispatch!(isa,
                scalar => to_f32_scalar(src, out),
                avx2 => f16_row_avx2(s, out),
                avx512 => f16_row_avx512(s, out),
                neon => super::aarch64::f16_row_neon(s, out))
        }
        WeightData::Bf16(s) => {
            assert_eq!(s.len(), out.len());
            dispatch!(isa,
                scalar => to_f32_scalar(src, out),
                avx2 => bf16_row_avx2(s, out),
                avx512 => bf16_row_avx512(s, out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testutil::{isas, rand_vec, SIZES};

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0)), 1.0);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
    }

    #[test]
    fn widening_matches_scalar_on_every_isa() {
        for isa in isas() {
            for n in SIZES {
                let v = rand_vec(n, 3);
                let b: Vec<u16> = v.iter().map(|&x| f32_to_bf16(x)).collect();
                let h: Vec<u16> = v.iter().map(|&x| f32_to_f16(x)).collect();
                for data in [
                    WeightData::Bf16(&b),
                    WeightData::F16(&h),
                    WeightData::F32(&v),
                ] {
                    let mut want = vec![0.0; n];
                    let mut got = vec![0.0; n];
                    to_f32_scalar(data, &mut want);
                    to_f32(isa, data, &mut got);
                    assert_eq!(want, got, "{isa} n={n}");
                }
            }
        }
    }
}
