//! Decode-shaped attention (one query token) per call: scores, softmax and values on the
//! engine's pool, against the scalar twins, for the shapes of Qwen2.5-0.5B (14 heads, 2 KV
//! heads) and SmolLM2-135M (9 heads, 3 KV heads), head_dim 64, at two context lengths.
//!
//! `cargo run --release -p rooflinebench-kernels --example attn_decode [reps] [layers] [skew]`
//! (honours `ROOFLINEBENCH_FORCE_ISA`). Like the engine, it cycles through `layers` caches
//! (default 24: K and V mostly from L2/L3; 1 keeps them in L1/L2; a few hundred sends them to
//! DRAM as the weights do in the engine). `skew`: place the caches that many floats past a
//! 64-byte boundary (default: where the allocator puts them, usually 16 bytes past one).
//! Prints the median microseconds per call over `reps` batches (default 15). A printout, not a
//! test: this is how the decode attention kernels of `engine::attn` were chosen.

use rooflinebench_kernels::engine::attn::{self, AttnShape};
use rooflinebench_kernels::engine::ThreadPool;
use rooflinebench_kernels::isa::{self, Isa};
use std::time::Instant;

mod common;
use common::rand_vec;

/// `v` copied `skew` floats past a 64-byte boundary (`None`: as the allocator placed it; a large
/// `Vec<f32>` from glibc usually starts 16 bytes past one).
fn placed(v: Vec<f32>, skew: Option<usize>) -> (Vec<f32>, usize) {
    let Some(skew) = skew else {
        return (v, 0);
    };
    let mut buf = vec![0.0f32; v.len() + 32];
    let at = buf.as_ptr().align_offset(64) + skew % 16;
    buf[at..at + v.len()].copy_from_slice(&v);
    (buf, at)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median microseconds per call of `f(layer)` over `reps` batches of one call per layer.
fn time(reps: usize, layers: usize, mut f: impl FnMut(usize)) -> f64 {
    for l in 0..layers {
        f(l);
    }
    let samples = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for l in 0..layers {
                f(l);
            }
            t.elapsed().as_secs_f64() * 1e6 / layers as f64
        })
        .collect();
    median(samples)
}

fn main() {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (reps, layers) = (arg(1, 15), arg(2, 24).max(1));
    let skew = std::env::args()
        .nth(3)
        .and_then(|a| a.parse::<usize>().ok());
    let isa = isa::best().unwrap_or(Isa::Scalar);
    println!("isa {isa}, median us per call over {reps} batches of {layers} layers' caches");
    for (name, nh, nkv, hd) in [("qwen2.5-0.5b", 14, 2, 64), ("smollm2-135m", 9, 3, 64)] {
        for ctx in [144usize, 1024] {
            let s = AttnShape {
                n_q: 1,
                q_pos0: ctx - 1,
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                kv_stride: ctx + 256,
                window: None,
                scale: 1.0 / (hd as f32).sqrt(),
                softcap: None,
            };
            let q = rand_vec(nh * hd, 1);
            let cache_len = nkv * s.kv_stride * hd;
            let place = |seed: u64| placed(rand_vec(cache_len, seed), skew);
            let ks: Vec<(Vec<f32>, usize)> = (0..layers).map(|l| place(10 + l as u64)).collect();
            let vs: Vec<(Vec<f32>, usize)> = (0..layers).map(|l| place(100 + l as u64)).collect();
            let ks: Vec<&[f32]> = ks.iter().map(|(b, at)| &b[*at..*at + cache_len]).collect();
            let vs: Vec<&[f32]> = vs.iter().map(|(b, at)| &b[*at..*at + cache_len]).collect();
            let mut sc = vec![0.0f32; s.scores_len()];
            let mut out = vec![0.0f32; nh * hd];
            let pool1 = ThreadPool::new(1);
            let scalar_score = time(reps, layers, |l| {
                attn::attn_scores_scalar(&s, &q, ks[l], &mut sc)
            });
            let scalar_value = time(reps, layers, |l| {
                attn::attn_values_scalar(&s, &sc, vs[l], &mut out)
            });
            for threads in [1usize, 2] {
                let pool = if threads == 1 {
                    &pool1
                } else {
                    &ThreadPool::new(threads)
                };
                let score = time(reps, layers, |l| {
                    attn::attn_scores(isa, pool, &s, &q, ks[l], &mut sc)
                });
                let softmax = time(reps, layers, |_| attn::attn_softmax(isa, pool, &s, &mut sc));
                let value = time(reps, layers, |l| {
                    attn::attn_values(isa, pool, &s, &sc, vs[l], &mut out)
                });
                println!(
                    "{name:13} ctx {ctx:5} threads {threads}: score {score:7.2}  softmax \
                     {softmax:6.2}  value {value:7.2}   (scalar twin, 1 thread: score \
                     {scalar_score:7.2} value {scalar_value:7.2})"
                );
            }
        }
    }
}
