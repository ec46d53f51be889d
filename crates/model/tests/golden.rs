//! Golden cost tables for real configs, anchored by hand-derived numbers.
//!
//! Each snapshot holds one prefill (S = 128) and one decode step (context 1024) per model: the
//! global operators, the operators of one representative layer (two for DeepSeek-V2-Lite,
//! whose layer 0 is dense), and the phase totals. Counts are exact integers, so a snapshot
//! only changes when the cost model does. The anchors below tie the tables to published
//! parameter counts and to the textbook decode estimate.

mod common;

use common::*;
use rooflinebench_model::cost::{CostOptions, CostTable, MlaForm, Phase};
use rooflinebench_model::params::count_params;
use rooflinebench_model::spec::Attention;
use std::fmt::Write;

fn render(t: &CostTable, layers: &[u32]) -> String {
    let mut s = format!(
        "phase {:?} batch {} weights {} kv {} mla_form {:?}\n",
        t.phase,
        t.batch,
        t.weights,
        t.kv,
        t.mla_form.map(MlaForm::name)
    );
    let _ = writeln!(
        s,
        "{:<22} {:>5} {:>16} {:>13} {:>12} {:>12} {:>11} {:>9}",
        "op", "path", "flops", "weight_B", "act_rd_B", "act_wr_B", "kv_rd_B", "kv_wr_B"
    );
    for o in t
        .ops
        .iter()
        .filter(|o| o.id.layer.is_none_or(|l| layers.contains(&l)))
    {
        let _ = writeln!(
            s,
            "{:<22} {:>5} {:>16} {:>13} {:>12} {:>12} {:>11} {:>9}",
            o.id.to_string(),
            o.compute.name(),
            o.flops.0,
            o.weight_bytes.0,
            o.act_read_bytes.0,
            o.act_write_bytes.0,
            o.kv_read_bytes.0,
            o.kv_write_bytes.0
        );
    }
    let tt = t.totals();
    let _ = writeln!(
        s,
        "{:<22} {:>5} {:>16} {:>13} {:>12} {:>12} {:>11} {:>9}",
        format!("TOTAL ({} ops)", t.ops.len()),
        "",
        tt.flops.0,
        tt.weight_bytes.0,
        tt.act_read_bytes.0,
        tt.act_write_bytes.0,
        tt.kv_read_bytes.0,
        tt.kv_write_bytes.0
    );
    s
}

fn golden(name: &str, layers: &[u32], opts: &CostOptions, decode_ctx: u64) -> String {
    let s = spec(name);
    let mut out = String::new();
    for phase in [prefill(128), decode(decode_ctx)] {
        out.push_str(&render(&table(&s, phase, opts), layers));
        out.push('\n');
    }
    out
}

#[test]
fn golden_pythia_160m_mha_gelu_parallel_untied() {
    insta::assert_snapshot!(golden("pythia-160m", &[0], &CostOptions::default(), 1024));
}

#[test]
fn golden_smollm2_135m_gqa_tied() {
    insta::assert_snapshot!(golden("smollm2-135m", &[0], &CostOptions::default(), 1024));
}

#[test]
fn golden_qwen2_5_0_5b_qkv_bias() {
    insta::assert_snapshot!(golden("qwen2.5-0.5b", &[0], &CostOptions::default(), 1024));
}

#[test]
fn golden_qwen3_0_6b_qk_norm() {
    insta::assert_snapshot!(golden("qwen3-0.6b", &[0], &CostOptions::default(), 1024));
}

#[test]
fn golden_mistral_7b_sliding_window() {
    // Decode at 8192 > window 4096: the window caps the attended context.
    insta::assert_snapshot!(golden("mistral-7b", &[0], &CostOptions::default(), 8192));
}

#[test]
fn golden_deepseek_v2_lite_mla_absorbed() {
    insta::assert_snapshot!(golden(
        "deepseek-v2-lite",
        &[0, 1],
        &CostOptions::default(),
        1024
    ));
}

#[test]
fn golden_deepseek_v2_lite_mla_materialized() {
    let opts = CostOptions {
        mla_form: MlaForm::Materialized,
        ..CostOptions::default()
    };
    insta::assert_snapshot!(golden("deepseek-v2-lite", &[0, 1], &opts, 1024));
}

#[test]
fn golden_qwen3_30b_a3b_moe() {
    insta::assert_snapshot!(golden("qwen3-30b-a3b", &[0], &CostOptions::default(), 1024));
}

#[test]
fn golden_qwen2_5_0_5b_q4_k_m() {
    let opts = CostOptions {
        weights: rooflinebench_model::format::Recipe::Q4KM,
        ..CostOptions::default()
    };
    insta::assert_snapshot!(golden("qwen2.5-0.5b", &[0, 3], &opts, 1024));
}

// ---------------------------------------------------------------------------------------------
// Hand-derived anchors.

#[test]
fn published_parameter_counts() {
    let check = |name: &str, total: u64, non_emb: Option<u64>| {
        let p = count_params(&spec(name)).unwrap();
        assert_eq!(p.total, total, "{name} total");
        if let Some(n) = non_emb {
            assert_eq!(p.non_embedding, n, "{name} non-embedding");
        }
        assert_eq!(p.total, p.embedding + p.non_embedding);
        p
    };
    check("qwen2.5-0.5b", 494_032_768, Some(357_898_112));
    check("smollm2-135m", 134_515_008, None);
    check("llama-3.2-1b", 1_235_814_400, None);
    check("llama-3.1-8b", 8_030_261_248, None);
    // Pythia's card: 162,322,944 total, 85,056,000 non-embedding (untied embed_out).
    check("pythia-160m", 162_322_944, Some(85_056_000));
    // Qwen3-0.6B card: 0.6B total, 0.44B non-embedding.
    let q = check("qwen3-0.6b", 596_049_920, Some(440_467_456));
    assert_eq!(q.active, q.total);
    // Qwen3-30B-A3B card: 30.5B total, 3.3B activated (embeddings included).
    let q = count_params(&spec("qwen3-30b-a3b")).unwrap();
    assert_eq!(q.total / 100_000_000, 305);
    assert_eq!(q.active / 100_000_000, 33);
    // DeepSeek-V2-Lite paper: 15.7B total, 2.4B activated (without the input embedding).
    let d = count_params(&spec("deepseek-v2-lite")).unwrap();
    assert_eq!(d.total / 100_000_000, 157);
    let input_embedding = 102_400 * 2048;
    assert_eq!((d.active - input_embedding) / 100_000_000, 24);
}

/// Decode FLOPs per token ~ `2 * N_matmul + 4 * n_layers * n_heads * head_dim * ctx`, where
/// `N_matmul` is the active parameter count minus an untied input embedding (a gather does no
/// FLOPs; a tied one is the LM head and does). The residual (< 0.6% here) is elementwise work the estimate leaves out: norms,
/// RoPE, softmax, activations, residual adds and biases.
#[test]
fn decode_flops_match_the_textbook_estimate() {
    let ctx = 1024;
    for name in [
        "pythia-160m",
        "smollm2-135m",
        "qwen2.5-0.5b",
        "qwen3-0.6b",
        "llama-3.2-1b",
        "llama-3.1-8b",
        "qwen3-30b-a3b",
    ] {
        let s = spec(name);
        let p = count_params(&s).unwrap();
        let matmul = p.active - untied_input(&s);
        let est = 2 * matmul + 4 * s.num_hidden_layers * s.num_attention_heads * s.head_dim * ctx;
        let got = table(&s, decode(ctx), &CostOptions::default()).flops().0;
        let rel = (got as f64 - est as f64) / est as f64;
        assert!(
            (0.0..0.006).contains(&rel),
            "{name}: {got} vs {est} ({rel:+.5})"
        );
    }
    // MLA (absorbed): attention runs in the latent space, 2 * heads * (kv_lora_rank +
    // qk_rope_head_dim + kv_lora_rank) FLOPs per attended position per layer.
    let d = spec("deepseek-v2-lite");
    let Attention::Mla(m) = d.attention else {
        unreachable!()
    };
    let p = count_params(&d).unwrap();
    let matmul = p.active - untied_input(&d);
    let attn = 2 * 27 * 16 * (m.kv_lora_rank + m.qk_rope_head_dim + m.kv_lora_rank) * ctx;
    let est = 2 * matmul + attn;
    let got = table(&d, decode(ctx), &CostOptions::default()).flops().0;
    let rel = (got as f64 - est as f64) / est as f64;
    assert!(
        (0.0..0.006).contains(&rel),
        "deepseek: {got} vs {est} ({rel:+.5})"
    );
}

fn untied_input(s: &rooflinebench_model::spec::ModelSpec) -> u64 {
    if s.tie_word_embeddings {
        0
    } else {
        s.vocab_size * s.hidden_size
    }
}

/// DeepSeek-V2-Lite's latent cache: 27 layers x 576 values per token.
#[test]
fn deepseek_latent_cache_is_27_x_576_per_token() {
    let d = spec("deepseek-v2-lite");
    let t = table(&d, prefill(128), &CostOptions::default());
    assert_eq!(t.kv_write_bytes().0, 128 * 27 * 576 * 2);
}

/// Mistral's 4096 window: a decode step at 8192 reads 4096 positions, like one at 4096.
#[test]
fn sliding_window_caps_attended_context() {
    let s = spec("mistral-7b");
    let o = CostOptions::default();
    let at = |c| table(&s, decode(c), &o).totals();
    assert_eq!(at(8192), at(4096));
    assert!(at(4096).kv_read_bytes > at(4095).kv_read_bytes);
    // Prefill of 8192: the last 4096 queries attend to 4096 positions each.
    let t = table(
        &s,
        Phase::Prefill {
            tokens: 8192,
            cached: 0,
        },
        &o,
    );
    let pairs = 4096 * 4097 / 2 + 4096 * 4096;
    assert_eq!(
        op(&t, Some(0), rooflinebench_model::op::OpKind::AttnScore)
            .flops
            .0,
        2 * 32 * 128 * pairs
    );
}
