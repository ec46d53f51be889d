//! Single-thread throughput of the quantized GEMV (decode) and GEMM (prefill) kernels.
//!
//! `cargo run --release -p rooflinebench-kernels --example quant_gemv [rows] [cols] [format]
//! [isa] [nogemm]`
//!
//! Prints GB/s of weight bytes for GEMV on a matrix larger than L2 (default 8192 x 4096), per
//! format and ISA, and GEMM throughput for 64 activation rows next to 64 separate GEMVs. A
//! printout, not a test: timings are noisy on a shared machine.

use rooflinebench_kernels::quant::{quantize, Q8Activations, QuantIsa, QuantMatrix, QuantType};
use std::time::Instant;

mod common;
use common::rand_vec;

/// Best of `reps` timings of `f`, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    // An optional non-numeric argument keeps only that format, e.g. `q4_0`.
    let only = std::env::args().skip(1).find_map(|a| QuantType::parse(&a));
    // An ISA name keeps only that path (`avx512vnni`); `nogemm` skips the GEMM column.
    let only_isa: Option<String> = std::env::args()
        .skip(1)
        .find(|a| QuantIsa::all_available().iter().any(|i| i.name() == a));
    let gemm = !std::env::args().any(|a| a == "nogemm");
    let rows = args.first().copied().unwrap_or(8192);
    let cols = args.get(1).copied().unwrap_or(4096);
    let m = 64;
    if std::env::args().any(|a| a == "quantize") {
        // Activation quantization (decode quantizes one row per matmul input).
        for (r, c) in [(1usize, 1024usize), (1, 4864), (512, 1024)] {
            let xf = rand_vec(r * c, 4);
            let mut q = Q8Activations::new(QuantType::Q4_0.act_kind());
            let t = best_of(20, || q.quantize(&xf, r, c).expect("whole blocks"));
            let mut qk = Q8Activations::new(QuantType::Q4K.act_kind()); // 4864 = 19 x 256
            let tk = best_of(20, || qk.quantize(&xf, r, c).expect("whole blocks"));
            println!(
                "quantize {r} x {c}: q8_0 {:.2} us, q8_K {:.2} us",
                t * 1e6,
                tk * 1e6
            );
        }
        return;
    }
    println!("GEMV {rows} x {cols}, 1 thread; GEMM with {m} activation rows");
    println!(
        "{:<6} {:<11} {:>9} {:>12} {:>14} {:>14} {:>8}",
        "format", "isa", "MB", "gemv GB/s", "gemv GMAC/s", "gemm GMAC/s", "gemm/gemv"
    );
    for ty in [
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ] {
        if only.is_some_and(|o| o != ty) {
            continue;
        }
        let w = quantize(ty, &rand_vec(rows * cols, 1)).expect("whole blocks");
        let mat = QuantMatrix::new(ty, rows, cols, &w).expect("consistent matrix");
        let x1 = Q8Activations::from_f32(ty.act_kind(), &rand_vec(cols, 2), 1, cols).expect("x");
        let xm =
            Q8Activations::from_f32(ty.act_kind(), &rand_vec(m * cols, 3), m, cols).expect("x");
        let mut y1 = vec![0.0f32; rows];
        let mut ym = vec![0.0f32; m * rows];
        for isa in QuantIsa::all_available() {
            if only_isa.as_ref().is_some_and(|o| o != isa.name()) {
                continue;
            }
            let t1 = best_of(5, || mat.gemm_with(isa, &x1, 1, &mut y1, 1).expect("gemv"));
            let tm = if gemm {
                best_of(2, || mat.gemm_with(isa, &xm, m, &mut ym, 1).expect("gemm"))
            } else {
                f64::NAN
            };
            let macs = (rows * cols) as f64;
            println!(
                "{:<6} {:<11} {:>9.1} {:>12.2} {:>14.2} {:>14.2} {:>8.2}",
                ty.name(),
                isa.name(),
                w.len() as f64 / 1e6,
                w.len() as f64 / t1 / 1e9,
                macs / t1 / 1e9,
                macs * m as f64 / tm / 1e9,
                (t1 * m as f64) / tm
            );
        }
    }
}
