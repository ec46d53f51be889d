//! Our aarch64 activation quantization and quantized dot products (and, on any architecture, our
//! q8_0/q4_0/q4_1/q5_0/q5_1 weight quantizers) against llama.cpp's aarch64
//! CPU backend, on the inputs and results that `scripts/ggml-arm-q8/harness.c` wrote with
//! llama.cpp's own NEON code (built and run under qemu by `scripts/test-aarch64.sh`, which
//! passes the file in `ROOFLINEBENCH_GGML_ARM_Q8`).
//!
//! llama.cpp's NEON `quantize_row_q8_0`/`q8_1` multiply by `1 / (amax / 127)`, its x86 path by
//! `127 / amax`; the two differ in the last bit for most `amax`, and on a rounding tie that
//! bit moves a quant by one step. `src/sweep/llamacpp_logits_test.rs` holds the x86 twin of
//! this test (through FFI, with the `llamacpp` feature).
#![cfg(target_arch = "aarch64")]

use rooflinebench_kernels::quant::{
    dequantize, quantize, ActKind, Q8Activations, QuantIsa, QuantMatrix, QuantType,
};

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "harness output truncated");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.take(4 * n)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn ggml_type(id: u32) -> QuantType {
    // ggml.h's `enum ggml_type`.
    match id {
        2 => QuantType::Q4_0,
        3 => QuantType::Q4_1,
        6 => QuantType::Q5_0,
        7 => QuantType::Q5_1,
        8 => QuantType::Q8_0,
        12 => QuantType::Q4K,
        13 => QuantType::Q5K,
        14 => QuantType::Q6K,
        _ => panic!("unexpected ggml type {id} in the harness output"),
    }
}

fn assert_bits_eq(ours: &[f32], theirs: &[f32], what: &str) {
    let diff: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i].to_bits() != theirs[i].to_bits())
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: {} of {} elements differ from llama.cpp's NEON code, first at {}: {} vs {}",
        diff.len(),
        ours.len(),
        diff[0],
        ours[diff[0]],
        theirs[diff[0]]
    );
}

#[test]
fn activation_quantization_and_dots_match_ggml_neon() {
    let Some(path) = std::env::var_os("ROOFLINEBENCH_GGML_ARM_Q8") else {
        assert!(
            std::env::var_os("ROOFLINEBENCH_EXPECT_GGML_ARM_Q8").is_none(),
            "ROOFLINEBENCH_EXPECT_GGML_ARM_Q8 is set but ROOFLINEBENCH_GGML_ARM_Q8 is not"
        );
        eprintln!("skipped: ROOFLINEBENCH_GGML_ARM_Q8 not set (scripts/test-aarch64.sh sets it)");
        return;
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = Reader(&bytes);
    assert_eq!(
        r.take(8),
        b"RBGGARM1",
        "{}: not harness output",
        path.display()
    );
    let n = r.u32() as usize;
    assert!(n > 0 && n.is_multiple_of(256), "odd n {n}");
    let x = r.f32s(n);
    let w = r.f32s(n);
    let q80 = r.take(n / 32 * 34).to_vec();
    let q81 = r.take(n / 32 * 36).to_vec();
    let q8k = r.take(n / 256 * 292).to_vec();

    // q8_0: f16 d and 32 quants per block, read with our q8_0 weight dequantizer.
    let ours = Q8Activations::from_f32(ActKind::Q8_0, &x, 1, n).unwrap();
    let o = ours.dequantize_row(0);
    let mut t = vec![0f32; n];
    dequantize(QuantType::Q8_0, &q80, &mut t).unwrap();
    assert_bits_eq(&o, &t, "q8_0 activations");
    // q8_1: the same d and quants (then f16 s).
    let as_q8_0: Vec<u8> = q81
        .chunks_exact(36)
        .flat_map(|b| b[..2].iter().chain(&b[4..]).copied())
        .collect();
    dequantize(QuantType::Q8_0, &as_q8_0, &mut t).unwrap();
    assert_bits_eq(&o, &t, "q8_1 activations");
    // q8_K: f32 d carrying the sign of the largest element, 256 quants, 16 sums. Compare
    // products by value (a zero quant times a negative d is -0).
    let ok = Q8Activations::from_f32(ActKind::Q8K, &x, 1, n)
        .unwrap()
        .dequantize_row(0);
    for (b, blk) in q8k.chunks_exact(292).enumerate() {
        let d = f32::from_le_bytes(blk[..4].try_into().unwrap());
        for j in 0..256 {
            let i = b * 256 + j;
            assert_eq!(ok[i], (blk[4 + j] as i8) as f32 * d, "q8_K element {i}");
        }
    }

    // Dot products: llama.cpp's weight row (its reference quantizer) times its activations,
    // by its NEON `ggml_vec_dot_*`, against ours on every quantized ISA this CPU has.
    let types = r.u32();
    assert_eq!(types, 8, "harness writes 8 weight types");
    for _ in 0..types {
        let ty = ggml_type(r.u32());
        let len = r.u32() as usize;
        let row = r.take(len).to_vec();
        let theirs = r.f32s(1)[0];
        // Our weight quantizer writes ggml's reference bytes for the legacy formats (the
        // k-quants search their scales in ggml and are round-to-nearest here).
        if !matches!(ty, QuantType::Q4K | QuantType::Q5K | QuantType::Q6K) {
            let ours = quantize(ty, &w).unwrap();
            let bb = ty.block_bytes();
            let first = (0..row.len() / bb).find(|&b| ours[b * bb..][..bb] != row[b * bb..][..bb]);
            assert!(
                first.is_none(),
                "{ty}: our quantization of w differs from quantize_row_{ty}_ref, first in block {}",
                first.unwrap_or(0)
            );
        }
        let m = QuantMatrix::new(ty, 1, n, &row).unwrap();
        let mut wd = vec![0f32; n];
        dequantize(ty, &row, &mut wd).unwrap();
        let act = Q8Activations::from_f32(ty.act_kind(), &x, 1, n).unwrap();
        let xd = act.dequantize_row(0);
        let mag: f32 = wd.iter().zip(&xd).map(|(a, b)| (a * b).abs()).sum();
        // The weights are llama.cpp's quantization of w (|w| < 1), so they must dequantize
        // to within a quantization step of w (q4_0's is max|w| / 8); a misread layout is ~1 off.
        let werr = wd
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(werr < 0.2, "{ty}: ggml's row decodes {werr} away from w");
        for isa in QuantIsa::all_available() {
            let mut v = [0f32];
            m.gemm_with(isa, &act, 1, &mut v, 1).unwrap();
            println!("DOT {ty} {}: ours {} ggml {theirs}", isa.name(), v[0]);
            assert!(
                (v[0] - theirs).abs() <= 1e-6 * mag,
                "{ty} on {}: {} vs ggml {theirs} (sum of |terms| {mag})",
                isa.name(),
                v[0]
            );
        }
    }
    assert!(r.0.is_empty(), "trailing bytes in the harness output");
}
