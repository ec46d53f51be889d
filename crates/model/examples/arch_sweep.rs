//! Architecture sweep benchmark: roofline-scores 50,000 candidate architectures (the scale of
//! the co-design paper's search, ROOFLINEBENCH.md §4) and reports configurations per second.
//!
//! Each configuration varies depth, width, heads, KV heads, FFN ratio and experts; it is costed
//! as a prefill of 1024 tokens plus 16 decode steps at contexts 1025..=1040, and its latency
//! predicted as `sum over operators of max(F / pi, B / beta)` on a fixed roof. Configurations
//! come from a fixed-seed generator, so every run sweeps the same set.
//!
//! Usage: `cargo run --release -p rooflinebench-model --example arch_sweep [-- N]`.
//! The last line is `CONFIGS_PER_SECOND <number>`.

use rooflinebench_model::cost::{CostModel, CostOptions, Phase};
use rooflinebench_model::hardware::Precision;
use rooflinebench_model::op::OpCost;
use rooflinebench_model::spec::{
    Activation, Attention, Ffn, LayerKind, ModelSpec, MoeSpec, NormKind,
};
use std::time::Instant;

/// xorshift64*: a tiny deterministic generator (no dependency needed for a benchmark).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn candidate(rng: &mut Rng) -> ModelSpec {
    let hidden = rng.pick(&[512u64, 768, 1024, 1536, 2048, 2560, 3072, 4096]);
    let head_dim = rng.pick(&[64u64, 128]);
    let heads = hidden / head_dim;
    let kv = rng.pick(&[1u64, 2, 4, 8, heads]).min(heads);
    let kv = if heads.is_multiple_of(kv) { kv } else { heads };
    let layers = 2 + 2 * (rng.next() % 32); // 2..=64, step 2
    let ratio_x2 = rng.pick(&[4u64, 5, 6, 7, 8]); // FFN ratio 2.0 .. 4.0
    let inter = (hidden * ratio_x2 / 2).div_ceil(64) * 64;
    let experts = rng.pick(&[0u64, 0, 8, 16, 64]);
    let ffn = if experts == 0 {
        Ffn::Dense {
            gated: true,
            act: Activation::Silu,
        }
    } else {
        let top_k = rng.pick(&[1u64, 2, 4, 8]).min(experts);
        Ffn::Moe {
            gated: true,
            act: Activation::Silu,
            moe: MoeSpec {
                num_experts: experts,
                top_k,
                expert_intermediate_size: (inter / 4).max(64),
                num_shared_experts: 0,
                shared_intermediate_size: 0,
                shared_expert_gate: false,
                router_bias: false,
            },
        }
    };
    ModelSpec {
        name: "candidate".into(),
        model_type: "llama".into(),
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim,
        v_head_dim: head_dim,
        vocab_size: 32_000,
        intermediate_size: inter,
        tie_word_embeddings: true,
        max_position_embeddings: 4096,
        attention: Attention::from_heads(heads, kv),
        ffn,
        norm: NormKind::RmsNorm,
        rotary_dims: head_dim,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: None,
        sliding_window: None,
        layers: vec![
            LayerKind {
                moe: experts > 0,
                window: None,
            };
            layers as usize
        ],
        parallel_residual: false,
        post_norms: false,
        embedding_scale: false,
        attn_softcap: false,
        final_softcap: false,
        fused_qkv: false,
    }
}

/// A Jetson-Orin-class roof: 2 TFLOP/s f16, 1 TFLOP/s f32, 4 TOP/s int8, 60 GB/s
/// (reciprocals, so the hot loop multiplies).
fn op_seconds(op: &OpCost) -> f64 {
    let inv_pi = match op.compute {
        Precision::F64 => 1.0 / 0.5e12,
        Precision::F32 => 1.0 / 1e12,
        Precision::F16 | Precision::Bf16 => 1.0 / 2e12,
        Precision::Int8 => 1.0 / 4e12,
    };
    (op.flops.as_f64() * inv_pi).max(op.bytes().as_f64() * (1.0 / 60e9))
}

/// CPU time of this thread in seconds (Linux `schedstat`), to tell contention from slowness.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

struct Outcome {
    wall: f64,
    cpu: Option<f64>,
    errors: u64,
    best: Option<(f64, ModelSpec)>,
}

/// One pass over `n` configurations: generate, prepare and cost each one.
fn sweep(n: u64, opts: &CostOptions) -> Outcome {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let mut best: Option<(f64, ModelSpec)> = None;
    let mut errors = 0u64;
    for _ in 0..n {
        let spec = candidate(&mut rng);
        let Ok(model) = CostModel::new(&spec, opts) else {
            errors += 1;
            continue;
        };
        let mut secs = 0.0;
        let mut add = |op: &OpCost, times: u64| secs += op_seconds(op) * times as f64;
        let mut ok = model
            .visit(
                Phase::Prefill {
                    tokens: 1024,
                    cached: 0,
                },
                &mut add,
            )
            .is_ok();
        for step in 1..=16 {
            ok &= model
                .visit(
                    Phase::Decode {
                        context: 1024 + step,
                    },
                    &mut add,
                )
                .is_ok();
        }
        if !ok {
            errors += 1;
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| secs.total_cmp(b).is_lt()) {
            best = Some((secs, spec.clone()));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Outcome {
        wall,
        cpu,
        errors,
        best,
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let opts = CostOptions::default();
    // Best of three identical passes (the minimum is the least disturbed by other load).
    let runs: Vec<Outcome> = (0..3).map(|_| sweep(n, &opts)).collect();
    for (i, r) in runs.iter().enumerate() {
        let cpu = r
            .cpu
            .map(|c| {
                format!(
                    ", {:.3} s on CPU ({:.0} configs per CPU-second)",
                    c,
                    n as f64 / c
                )
            })
            .unwrap_or_default();
        println!(
            "pass {}: {n} configurations in {:.3} s wall{cpu}",
            i + 1,
            r.wall
        );
    }
    let Some(fastest) = runs.iter().min_by(|a, b| a.wall.total_cmp(&b.wall)) else {
        return;
    };
    println!(
        "each configuration: prefill 1024 + 16 decode steps, roofline-timed per operator; {} rejected",
        fastest.errors
    );
    if let Some((secs, b)) = &fastest.best {
        println!(
            "fastest candidate: {} layers, hidden {}, {}/{} heads, FFN {}, {} -> {:.3} ms",
            b.num_hidden_layers,
            b.hidden_size,
            b.num_attention_heads,
            b.num_key_value_heads,
            b.intermediate_size,
            match b.ffn.moe() {
                Some(m) => format!("MoE {}x top-{}", m.num_experts, m.top_k),
                None => "dense".to_string(),
            },
            secs * 1e3
        );
    }
    println!("CONFIGS_PER_SECOND {:.0}", n as f64 / fastest.wall);
}
