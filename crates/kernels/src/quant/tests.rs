use super::*;

/// Deterministic pseudo-random values, roughly normal (sum of uniforms), with outliers.
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|i| {
            let v = next() + next() + next() - 1.5;
            if i % 97 == 5 {
                v * 6.0
            } else {
                v
            }
        })
        .collect()
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32).sqrt()
}

/// Relative RMS error bounds of our round-to-nearest quantizers on roughly normal data
/// (a 4-bit code with a per-32 min/max scale has an RMS error near 1/(15 sqrt 12) of the
/// block range; outliers widen the range).
fn error_bound(ty: QuantType) -> f32 {
    match ty {
        QuantType::Q8_0 => 0.01,
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q4K => 0.15,
        QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q5K => 0.08,
        QuantType::Q6K => 0.04,
    }
}

#[test]
fn quantize_dequantize_error_is_bounded_for_every_format() {
    for ty in QuantType::ALL {
        let n = 4 * QK_K;
        let x = rand_vec(n, 7);
        let q = quantize(ty, &x).unwrap();
        assert_eq!(q.len(), ty.bytes_for(n).unwrap());
        let mut y = vec![0.0; n];
        dequantize(ty, &q, &mut y).unwrap();
        let err: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
        let rel = rms(&err) / rms(&x);
        eprintln!("{ty}: relative RMS error {rel:.4}");
        assert!(rel < error_bound(ty), "{ty}: relative RMS error {rel}");
        // A block of zeros and a constant block survive exactly (or nearly).
        let z = vec![0.0f32; ty.block_elems()];
        let mut y = vec![1.0; ty.block_elems()];
        dequantize(ty, &quantize(ty, &z).unwrap(), &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{ty}: zeros -> {y:?}");
        let c = vec![0.5f32; ty.block_elems()];
        dequantize(ty, &quantize(ty, &c).unwrap(), &mut y).unwrap();
        assert!(
            y.iter().all(|&v| (v - 0.5).abs() < 0.02),
            "{ty}: 0.5 -> {y:?}"
        );
    }
}

#[test]
fn quantize_rejects_partial_blocks() {
    for ty in QuantType::ALL {
        let x = vec![0.0f32; ty.block_elems() + 1];
        assert!(matches!(
            quantize(ty, &x),
            Err(QuantError::NotBlockMultiple { .. })
        ));
    }
}

#[test]
fn pitfall_24_k_quants_need_inner_dims_divisible_by_256() {
    // SmolLM2-135M's hidden size 576 = 2.25 x 256: no k-quant row of that length exists.
    for ty in [QuantType::Q4K, QuantType::Q5K, QuantType::Q6K] {
        assert_eq!(ty.bytes_for(576), None);
        assert!(QuantMatrix::new(ty, 1, 576, &[]).is_err());
    }
    assert_eq!(QuantType::Q8_0.bytes_for(576), Some(18 * 34));
}

#[test]
fn bits_per_weight_match_the_published_figures() {
    let expect = [
        (QuantType::Q8_0, 8.5),
        (QuantType::Q4_0, 4.5),
        (QuantType::Q4_1, 5.0),
        (QuantType::Q5_0, 5.5),
        (QuantType::Q5_1, 6.0),
        (QuantType::Q4K, 4.5),
        (QuantType::Q5K, 5.5),
        (QuantType::Q6K, 6.5625),
    ];
    for (ty, bpw) in expect {
        assert_eq!(ty.bits_per_weight(), bpw, "{ty}");
        assert_eq!(QuantType::parse(ty.name()), Some(ty));
    }
}

/// The scalar twin against an f64 dot of the dequantized operands.
#[test]
fn scalar_dot_equals_dot_of_dequantized_values() {
    for ty in QuantType::ALL {
        let n = 3 * QK_K;
        let w = quantize(ty, &rand_vec(n, 11)).unwrap();
        let x = Q8Activations::from_f32(ty.act_kind(), &rand_vec(n, 12), 1, n).unwrap();
        let mut wf = vec![0.0; n];
        dequantize(ty, &w, &mut wf).unwrap();
        let xf = x.dequantize_row(0);
        let exact: f64 = wf.iter().zip(&xf).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mag: f64 = wf
            .iter()
            .zip(&xf)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum();
        let got = dot_with(QuantIsa::Scalar, ty, &w, &x, 0).unwrap() as f64;
        assert!(
            (got - exact).abs() <= 1e-5 * mag + 1e-6,
            "{ty}: scalar {got} vs dequantized {exact}"
        );
    }
}

fn simd_isas() -> Vec<QuantIsa> {
    let all = QuantIsa::all_available();
    for isa in [QuantIsa::Avx2, QuantIsa::Avx512Vnni] {
        if !all.contains(&isa) {
            eprintln!("skipping {isa}: not available on this CPU");
        }
    }
    all.into_iter().filter(|&i| i != QuantIsa::Scalar).collect()
}

#[test]
fn simd_dot_matches_scalar_twin_on_every_isa() {
    for isa in simd_isas() {
        for ty in QuantType::ALL {
            for blocks in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] {
                let n = blocks * ty.block_elems();
                let seed = blocks as u64 * 31 + ty as u64;
                let w = quantize(ty, &rand_vec(n, seed)).unwrap();
                let xf = rand_vec(n, seed + 1);
                let x = Q8Activations::from_f32(ty.act_kind(), &xf, 1, n).unwrap();
                let s = dot_with(QuantIsa::Scalar, ty, &w, &x, 0).unwrap();
                let v = dot_with(isa, ty, &w, &x, 0).unwrap();
                let mag = n as f32 * 0.05 + 1e-3;
                assert!(
                    (s - v).abs() <= 1e-5 * mag.max(s.abs()),
                    "{isa} {ty} blocks={blocks}: simd {v} vs scalar {s}"
                );
            }
        }
    }
}

/// Extreme values: q8_0 weights and activations at +-127, all-max nibbles, the maximal q6_K
/// scales: the integer paths must not saturate (the `vpmaddubsw` bounds in x86.rs).
#[test]
fn simd_dot_does_not_saturate_on_extreme_values() {
    for isa in simd_isas() {
        for ty in QuantType::ALL {
            let n = 2 * QK_K;
            for (wv, xv) in [(1.0f32, 1.0f32), (-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0)] {
                let wf: Vec<f32> = (0..n)
                    .map(|i| if i % 3 == 0 { wv } else { -wv * 0.99 })
                    .collect();
                let xf: Vec<f32> = (0..n)
                    .map(|i| if i % 3 == 0 { xv } else { xv * 0.99 })
                    .collect();
                let w = quantize(ty, &wf).unwrap();
                let x = Q8Activations::from_f32(ty.act_kind(), &xf, 1, n).unwrap();
                let s = dot_with(QuantIsa::Scalar, ty, &w, &x, 0).unwrap();
                let v = dot_with(isa, ty, &w, &x, 0).unwrap();
                assert!(
                    (s - v).abs() <= 1e-4 * s.abs().max(1.0),
                    "{isa} {ty}: {v} vs {s}"
                );
            }
        }
    }
}

#[test]
fn gemm_matches_gemv_row_by_row_on_every_isa() {
    for isa in QuantIsa::all_available() {
        for ty in QuantType::ALL {
            let (rows, cols, m) = (13, 2 * QK_K, 11);
            let w = quantize(ty, &rand_vec(rows * cols, 3)).unwrap();
            let mat = QuantMatrix::new(ty, rows, cols, &w).unwrap();
            let xf = rand_vec(m * cols, 4);
            let x = Q8Activations::from_f32(ty.act_kind(), &xf, m, cols).unwrap();
            let mut gemm = vec![0.0; m * rows];
            mat.gemm_with(isa, &x, m, &mut gemm, 1).unwrap();
            let mut gemm2 = vec![0.0; m * rows];
            mat.gemm_with(isa, &x, m, &mut gemm2, 3).unwrap();
            assert_eq!(gemm, gemm2, "{isa} {ty}: threads changed the result");
            let pool = crate::engine::ThreadPool::new(2);
            let mut gemm3 = vec![0.0; m * rows];
            mat.gemm_pool(isa, &x, m, &mut gemm3, &pool).unwrap();
            assert_eq!(gemm, gemm3, "{isa} {ty}: the pool changed the result");
            for t in 0..m {
                let xt =
                    Q8Activations::from_f32(ty.act_kind(), &xf[t * cols..(t + 1) * cols], 1, cols)
                        .unwrap();
                let mut gemv = vec![0.0; rows];
                mat.gemm_with(isa, &xt, 1, &mut gemv, 2).unwrap();
                // The AVX-512 GEMV of the legacy formats sums two blocks per 512-bit register,
                // the GEMM one per 256-bit register: same products, another summation order (f32
                // rounding of a 512-term sum of O(1) terms: well under 1e-4).
                for (r, (a, b)) in gemm[t * rows..(t + 1) * rows].iter().zip(&gemv).enumerate() {
                    let scale = a.abs().max(b.abs()).max(1.0);
                    assert!(
                        (a - b).abs() <= 1e-4 * scale,
                        "{isa} {ty} row {t} col {r}: gemm {a} vs gemv {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn bad_operands_are_errors_not_panics() {
    let w = vec![0u8; 34 * 2];
    assert!(matches!(
        QuantMatrix::new(QuantType::Q8_0, 1, 64, &w[..60]),
        Err(QuantError::DataLength { .. })
    ));
    let mat = QuantMatrix::new(QuantType::Q8_0, 1, 64, &w).unwrap();
    let xk = Q8Activations::from_f32(ActKind::Q8K, &[0.0; 256], 1, 256).unwrap();
    let mut out = [0.0f32; 1];
    assert!(matches!(
        mat.gemv(&xk, &mut out, 1),
        Err(QuantError::ActKindMismatch { .. })
    ));
    let x = Q8Activations::from_f32(ActKind::Q8_0, &[0.0; 64], 1, 64).unwrap();
    assert!(matches!(
        mat.gemv(&x, &mut out, 0),
        Err(QuantError::ZeroThreads)
    ));
    assert!(matches!(
        mat.gemv(&x, &mut [0.0; 2], 1),
        Err(QuantError::ShapeMismatch { .. })
    ));
    assert!(mat.gemv(&x, &mut out, 1).is_ok());
    assert!(Q8Activations::from_f32(ActKind::Q8_0, &[0.0; 63], 1, 63).is_err());
    assert!(Q8Activations::from_f32(ActKind::Q8_0, &[0.0; 64], 2, 64).is_err());
    let mut row = [0.0f32; 64];
    assert!(mat.dequantize_row(1, &mut row).is_err());
}
