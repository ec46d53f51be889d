//! Decode-shaped GEMV sequences: `n` separate q4_0 matrices one after another (as a decode
//! step runs them) against the same matrices as consecutive slices of one allocation, and one
//! GEMV over all of them, on the engine's thread pool.
//!
//! `cargo run --release -p rooflinebench-kernels --example gemv_seq [rows] [cols] [n] [threads]`
//! (default 4864 896 72 1: Qwen2.5-0.5B's FFN matrices, 176 MB in all). Prints GB/s of weight
//! bytes per repetition and, for a few calls, when each pool thread started and how long it
//! ran. A printout, not a test: this is how the engine's weight storage was chosen
//! (`rooflinebench_engine::hugebuf`).

use rooflinebench_kernels::engine::ThreadPool;
use rooflinebench_kernels::quant::{quantize, Q8Activations, QuantIsa, QuantMatrix, QuantType};
use std::sync::Mutex;
use std::time::Instant;

mod common;
use common::rand_vec;

/// A copy of `src` on memory advised as transparent huge pages (written before use).
fn advised(src: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::with_capacity(src.len());
    rooflinebench_kernels::ceiling::buffer::advise_huge_pages(v.spare_capacity_mut());
    v.extend_from_slice(src);
    v
}

/// Raw output pointer for pool threads writing disjoint rows.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: threads write disjoint row ranges (see `per_thread_timeline`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    /// The pointer (a method, so closures capture the whole wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Start offset and duration of each pool thread for a few calls, in microseconds.
fn per_thread_timeline(mats: &[QuantMatrix<'_>], x: &Q8Activations, pool: &ThreadPool) {
    let isa = QuantIsa::best();
    let threads = pool.threads();
    let rows = mats[0].rows;
    let mut y = vec![0.0f32; rows];
    let out = Out(y.as_mut_ptr());
    let base = Instant::now();
    for (i, q) in mats.iter().enumerate().skip(mats.len() / 2).take(4) {
        let log = Mutex::new(Vec::new());
        let c0 = base.elapsed().as_secs_f64();
        pool.run(&|tid| {
            let s = base.elapsed().as_secs_f64();
            let r = rows * tid / threads..rows * (tid + 1) / threads;
            // SAFETY: `y` holds `rows` floats and each thread writes only its own rows `r`.
            unsafe { q.gemm_rows_shared(isa, x, 1, out.get(), r) }.expect("consistent shapes");
            let e = base.elapsed().as_secs_f64();
            log.lock().expect("log").push((tid, s - c0, e - s));
        });
        let total = base.elapsed().as_secs_f64() - c0;
        let mut line = format!("call {i}: {:.1} us", total * 1e6);
        for (tid, start, dur) in log.into_inner().expect("log") {
            line += &format!(" | thread {tid} +{:.1} ran {:.1}", start * 1e6, dur * 1e6);
        }
        println!("{line}");
    }
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let rows = a.first().copied().unwrap_or(4864);
    let cols = a.get(1).copied().unwrap_or(896);
    let n = a.get(2).copied().unwrap_or(72).max(1);
    let threads = a.get(3).copied().unwrap_or(1);
    let ty = QuantType::Q4_0;
    let one = quantize(ty, &rand_vec(rows * cols, 1)).expect("whole blocks");
    let separate: Vec<Vec<u8>> = (0..n).map(|_| advised(&one)).collect();
    let joined = advised(&separate.concat());
    let pool = ThreadPool::new(threads);
    let isa = QuantIsa::best();
    let x = Q8Activations::from_f32(ty.act_kind(), &rand_vec(cols, 2), 1, cols).expect("x");
    fn mat(ty: QuantType, rows: usize, cols: usize, d: &[u8]) -> QuantMatrix<'_> {
        QuantMatrix::new(ty, rows, cols, d).expect("consistent matrix")
    }
    let sep: Vec<QuantMatrix<'_>> = separate.iter().map(|d| mat(ty, rows, cols, d)).collect();
    let slices: Vec<QuantMatrix<'_>> = joined
        .chunks_exact(one.len())
        .map(|d| mat(ty, rows, cols, d))
        .collect();
    let all = QuantMatrix::new(ty, rows * n, cols, &joined).expect("consistent matrix");
    let mut y = vec![0.0f32; rows];
    let mut y_all = vec![0.0f32; rows * n];
    let gbs = |secs: f64| (one.len() * n) as f64 / secs / 1e9;
    let mut seq = |ms: &[QuantMatrix<'_>]| {
        let t = Instant::now();
        for q in ms {
            q.gemm_pool(isa, &x, 1, &mut y, &pool).expect("gemv");
        }
        t.elapsed().as_secs_f64()
    };
    println!(
        "{n} q4_0 matrices of {rows} x {cols} ({:.2} MB each), {threads} thread(s), GB/s:",
        one.len() as f64 / 1e6
    );
    for rep in 0..6 {
        let ts = seq(&sep);
        let tj = seq(&slices);
        let t = Instant::now();
        all.gemm_pool(isa, &x, 1, &mut y_all, &pool).expect("gemv");
        let ta = t.elapsed().as_secs_f64();
        println!(
            "rep {rep}: separate allocations {:.1}, slices of one allocation {:.1}, one GEMV {:.1}",
            gbs(ts),
            gbs(tj),
            gbs(ta)
        );
    }
    per_thread_timeline(&sep, &x, &pool);
}
