use super::*;

/// Deterministic pseudo-random values, roughly normal (sum of uniforms), with outliers.
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = crate::xorshift::XorShift64::new(seed);
    let mut next = move || r.unit_f32();
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
        // q4_1/q5_1 add `m * s` per block with llama.cpp's f16 block sum `s` (block_q8_1),
        // relative error up to 2^-11 on that term.
        let rel = if matches!(ty, QuantType::Q4_1 | QuantType::Q5_1) {
            5e-4
        } else {
            1e-5
        };
        assert!(
            (got - exact).abs() <= rel * mag + 1e-6,
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

/// Raw blocks of `ty` with random quants (every nibble / byte value) and sane `f16` scales, so
/// the SIMD paths see values the round-to-nearest quantizer rarely writes.
fn raw_blocks(ty: QuantType, blocks: usize, seed: u64, fill: Option<u8>) -> Vec<u8> {
    let mut r = crate::xorshift::XorShift64::new(seed);
    let mut next = move || (r.next_u64() >> 32) as u32;
    let bb = ty.block_bytes();
    let mut w = Vec::with_capacity(blocks * bb);
    for _ in 0..blocks {
        let mut blk: Vec<u8> = (0..bb)
            .map(|_| match fill {
                Some(f) => f,
                None => next() as u8,
            })
            .collect();
        // f16 scales in [0.5, 2) with a random sign: exponent bits 0x38..0x3F.
        let scale = |r: u32| -> [u8; 2] {
            let h = 0x3800u16 | (r as u16 & 0x07FF) | ((r >> 16) as u16 & 0x8000);
            h.to_le_bytes()
        };
        match ty {
            QuantType::Q8_0 => {
                blk[..2].copy_from_slice(&scale(next()));
                for q in &mut blk[2..] {
                    // i8 -127..=127 (never -128, as every quantizer writes).
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
            }
            QuantType::Q4_0 | QuantType::Q5_0 => blk[..2].copy_from_slice(&scale(next())),
            QuantType::Q4_1 | QuantType::Q5_1 => {
                blk[..2].copy_from_slice(&scale(next()));
                blk[2..4].copy_from_slice(&scale(next()));
            }
            _ => unreachable!("legacy formats only"),
        }
        w.extend_from_slice(&blk);
    }
    w
}

const LEGACY: [QuantType; 5] = [
    QuantType::Q8_0,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
];

/// Every SIMD GEMV against the scalar twin, row by row: 1..=13 blocks (tails of 1..3 blocks
/// after the 4-block groups of the x86 GEMV) and longer odd rows, several row counts, random
/// quants and activations including -127 and 127.
#[test]
fn simd_gemv_matches_scalar_twin_on_every_row_and_tail() {
    for isa in simd_isas() {
        for ty in LEGACY {
            for blocks in (1..=13).chain([27, 28, 29, 31, 152]) {
                for rows in [1usize, 2, 3, 7] {
                    let cols = blocks * QK;
                    let seed = (blocks * 7 + rows) as u64 + 100 * ty as u64;
                    let w = raw_blocks(ty, rows * blocks, seed, None);
                    let mut xf = rand_vec(cols, seed + 1);
                    xf[0] = 40.0; // the block's max: quantizes to 127
                    if cols > 40 {
                        xf[40] = -40.0; // -127
                    }
                    let x = Q8Activations::from_f32(ty.act_kind(), &xf, 1, cols).unwrap();
                    let mat = QuantMatrix::new(ty, rows, cols, &w).unwrap();
                    let mut simd = vec![0.0; rows];
                    mat.gemm_with(isa, &x, 1, &mut simd, 1).unwrap();
                    let mut slow = vec![0.0; rows];
                    mat.gemm_with(isa, &x, 1, &mut slow, 2).unwrap();
                    // The same rows without the VBMI kernel (x86 only).
                    #[cfg(target_arch = "x86_64")]
                    let old = {
                        let mut o = vec![0.0; rows];
                        super::x86::gemv_rows_with(
                            isa,
                            ty,
                            &w,
                            mat.row_bytes(),
                            0..rows,
                            &x.row_for(ty, 0),
                            &mut o,
                            false,
                        );
                        Some(o)
                    };
                    #[cfg(not(target_arch = "x86_64"))]
                    let old: Option<Vec<f32>> = None;
                    for r in 0..rows {
                        let s = dot_with(QuantIsa::Scalar, ty, mat.row_data(r), &x, 0).unwrap();
                        let mag: f32 = 40.0 * 2.0 * 16.0 * cols as f32 / 127.0;
                        for (what, v) in [("gemv", simd[r]), ("2 threads", slow[r])]
                            .into_iter()
                            .chain(old.as_ref().map(|o| ("no vbmi", o[r])))
                        {
                            assert!(
                                (s - v).abs() <= 2e-6 * mag.max(s.abs()),
                                "{isa} {ty} {what} blocks={blocks} rows={rows} row {r}: \
                                 {v} vs scalar {s}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// All-0 and all-15 nibbles (all-0x00 / all-0xFF quant bytes) against activations at +-127:
/// the largest integer sums the legacy kernels form.
#[test]
fn simd_gemv_extreme_nibbles_and_activations() {
    for isa in simd_isas() {
        for ty in LEGACY {
            for fill in [0x00u8, 0xFF, 0x88, 0x7F] {
                for xv in [1.0f32, -1.0] {
                    let blocks = 11;
                    let cols = blocks * QK;
                    let w = raw_blocks(ty, blocks, 5, Some(fill));
                    let x =
                        Q8Activations::from_f32(ty.act_kind(), &vec![xv; cols], 1, cols).unwrap();
                    let mat = QuantMatrix::new(ty, 1, cols, &w).unwrap();
                    let mut v = [0.0f32];
                    mat.gemm_with(isa, &x, 1, &mut v, 1).unwrap();
                    let s = dot_with(QuantIsa::Scalar, ty, &w, &x, 0).unwrap();
                    // Relative to the terms summed, not to `s`: VNNI's `w + 128` offset sums
                    // up to 255 * 127 per element and cancels most of it with `-128 ds`
                    // (|d_w| < 2, dequantized |a| = 1).
                    let mag = 2.0 * 256.0 * cols as f32;
                    assert!(
                        (s - v[0]).abs() <= 2e-7 * mag.max(s.abs()),
                        "{isa} {ty} fill {fill:#x} x {xv}: {} vs scalar {s}",
                        v[0]
                    );
                }
            }
        }
    }
}

/// Activations with more rows than the GEMV layout is built for take the other kernels: same
/// results as the scalar twin.
#[test]
fn gemv_without_the_activation_layout_matches_scalar_twin() {
    for isa in simd_isas() {
        for ty in LEGACY {
            let (blocks, rows, m) = (9, 3, 5);
            let cols = blocks * QK;
            let w = raw_blocks(ty, rows * blocks, 9, None);
            let xf = rand_vec(m * cols, 10);
            let x = Q8Activations::from_f32(ty.act_kind(), &xf, m, cols).unwrap();
            assert!(x.row(0).qp.is_empty());
            let mat = QuantMatrix::new(ty, rows, cols, &w).unwrap();
            let mut v = vec![0.0; rows];
            mat.gemm_with(isa, &x, 1, &mut v, 1).unwrap();
            for (r, v) in v.iter().enumerate() {
                let s = dot_with(QuantIsa::Scalar, ty, mat.row_data(r), &x, 0).unwrap();
                assert!(
                    (s - v).abs() <= 1e-5 * s.abs().max(10.0),
                    "{isa} {ty} row {r}: {v} vs {s}"
                );
            }
        }
    }
}

/// The AVX2 build of the activation quantizer equals the portable one bit for bit, ties,
/// NaN, infinities and subnormals included (ties to even, `f32::round_ties_even`).
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_activation_quantizer_equals_the_portable_one() {
    if !Isa::Avx2.available() {
        eprintln!("skipping: no AVX2");
        return;
    }
    let mut blocks: Vec<Vec<f32>> = (0..50).map(|s| rand_vec(QK, s)).collect();
    // Ties at +-k.5 after scaling by 127 / 127: d = 1, x / d = x.
    blocks.push(
        (0..QK)
            .map(|i| i as f32 - 15.5)
            .chain([127.0])
            .skip(1)
            .collect(),
    );
    blocks.push(vec![0.5; QK]);
    // With a 127 in the block, d = 1 and y = x: the values next to the rounding thresholds.
    let mut near = vec![
        0.499_999_97f32,
        -0.499_999_97,
        0.5,
        -0.5,
        1.499_999_9,
        1.5,
        -1.5,
        2.5,
        -2.5,
        126.5,
        -126.5,
        126.499_99,
        100.5,
    ];
    near.resize(QK - 1, 3.5);
    near.push(127.0);
    blocks.push(near.clone());
    near[31] = -127.0;
    blocks.push(near);
    blocks.push(vec![1e-42; QK * 8]);
    blocks.push(rand_vec(QK_K, 5));
    let mut special = rand_vec(QK, 99);
    special[3] = f32::NAN;
    special[4] = f32::INFINITY;
    special[5] = -f32::INFINITY;
    special[6] = 1e-40;
    blocks.push(special);
    blocks.push(vec![1e-42; QK]);
    blocks.push(vec![0.0; QK]);
    for x in &blocks {
        let (mut a, mut b) = (vec![0i8; x.len()], vec![0i8; x.len()]);
        let ra = quantize_sym_i8_body(x, &mut a, ActKind::Q8_0);
        // SAFETY: AVX2 is available (checked above); FMA and F16C come with it on every CPU
        // `Isa::Avx2.available()` accepts.
        let rb = unsafe { quantize_sym_i8_avx2(x, &mut b) };
        assert_eq!(a, b, "{x:?}");
        assert_eq!(ra.0.to_bits(), rb.0.to_bits(), "{x:?}");
        assert_eq!(ra.1, rb.1, "{x:?}");
    }
}
