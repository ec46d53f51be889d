//! One regression test per pitfall of `reference/PITFALLS.md` that the cost model touches
//! (1-10, 13, 18, 21, 24). Each pitfall was found at source level in an existing LLM roofline
//! tool; the test pins the correct behaviour with hand-derived numbers.

mod common;

use common::*;
use rooflinebench_model::cost::{expected_distinct_experts, CostOptions, MlaForm, Phase};
use rooflinebench_model::format::{KvFormat, Recipe, WeightFormat};
use rooflinebench_model::hardware::Precision;
use rooflinebench_model::op::OpKind;
use rooflinebench_model::params::count_params;
use rooflinebench_model::spec::{Attention, Overrides};
use rooflinebench_model::workload::{request_cost, Scenario};

/// #1: the activation runs on `intermediate_size` (or the expert's `moe_intermediate_size`),
/// not on `hidden_size`.
#[test]
fn pitfall_01_activation_on_intermediate_size() {
    let s = spec("smollm2-135m"); // hidden 576, intermediate 1536, SiLU gated
    let t = table(&s, prefill(16), &CostOptions::default());
    let act = op(&t, Some(0), OpKind::FfnAct);
    assert_eq!(act.flops.0, 16 * 1536 * (4 + 1)); // SiLU 4 + gate multiply 1
    assert_eq!(act.act_read_bytes.0, 2 * 16 * 1536 * 4);
    assert_eq!(act.act_write_bytes.0, 16 * 1536 * 4);

    // DeepSeek-V2-Lite: dense layer 0 uses intermediate_size 10944, MoE experts 1408.
    let d = spec("deepseek-v2-lite");
    let t = table(&d, decode(10), &CostOptions::default());
    assert_eq!(op(&t, Some(0), OpKind::FfnAct).flops.0, 10944 * 5);
    let (h, i, k) = (2048u64, 1408u64, 6u64);
    let experts = op(&t, Some(1), OpKind::MoeExperts);
    let expected = 2 * 2 * k * h * i   // gate + up
        + k * i * 5                     // SiLU + gate multiply on 1408, per routed token
        + 2 * k * i * h                 // down
        + 2 * k * h; // weighted combine of the k outputs
    assert_eq!(experts.flops.0, expected);
}

/// #2: every attention path (prefill, decode, cached prefill, fused or not, any KV format)
/// uses `num_key_value_heads` for KV bytes; GQA does not lower attention FLOPs.
#[test]
fn pitfall_02_gqa_kv_bytes_on_every_path() {
    let s = spec("qwen2.5-0.5b"); // 14 heads, 2 KV heads, head_dim 64
    let (mha, _) = s
        .with_overrides(&Overrides {
            kv_heads: Some(14),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(mha.attention, Attention::Mha);
    let phases = [
        (prefill(64), 64u64),
        (
            Phase::Prefill {
                tokens: 16,
                cached: 100,
            },
            116,
        ),
        (decode(300), 300),
    ];
    for kv in KvFormat::ALL {
        for flash in [false, true] {
            for batch in [1u64, 3] {
                let opts = CostOptions {
                    kv,
                    flash_attention: flash,
                    batch,
                    ..CostOptions::default()
                };
                for (phase, rows) in phases {
                    let g = table(&s, phase, &opts);
                    let m = table(&mha, phase, &opts);
                    let row =
                        kv.as_weight().bytes_per_block() * (2 * 64) / kv.as_weight().block_size();
                    for kind in [OpKind::AttnScore, OpKind::AttnValue] {
                        let (og, om) = (op(&g, Some(0), kind), op(&m, Some(0), kind));
                        assert_eq!(og.kv_read_bytes.0, batch * rows * row, "{kind:?} {kv:?}");
                        assert_eq!(om.kv_read_bytes.0, 7 * og.kv_read_bytes.0);
                        assert_eq!(og.flops, om.flops, "GQA must not lower attention FLOPs");
                    }
                }
            }
        }
    }
}

/// #3: the KV cache is `2 * n_layers * n_kv * head_dim * ctx * bytes`.
#[test]
fn pitfall_03_kv_cache_size_uses_kv_heads() {
    let s = spec("llama-3.2-1b"); // 16 layers, 8 KV heads of 64
    let t = table(&s, decode(1000), &CostOptions::default());
    assert_eq!(t.kv_write_bytes().0, 2 * 16 * 8 * 64 * 2);
    assert_eq!(t.kv_read_bytes().0, 2 * 16 * 8 * 64 * 1000 * 2);
    let q8 = CostOptions {
        kv: KvFormat::Q8_0,
        ..CostOptions::default()
    };
    let t = table(&s, decode(1000), &q8);
    // q8_0: 34 bytes per 32 values
    assert_eq!(t.kv_read_bytes().0, 2 * 16 * (8 * 64 / 32 * 34) * 1000);
    assert_eq!(
        s.kv_elems_per_token_per_layer(MlaForm::Absorbed),
        2 * 8 * 64
    );
}

/// #4: the MLA latent cache is `kv_lora_rank + qk_rope_head_dim` per token per layer, not
/// `2 * kv_lora_rank` and not without the RoPE key.
#[test]
fn pitfall_04_mla_latent_cache_includes_rope() {
    let d = spec("deepseek-v2-lite");
    assert_eq!(d.kv_elems_per_token_per_layer(MlaForm::Absorbed), 576);
    let t = table(&d, decode(4096), &CostOptions::default());
    // 27 layers x 576 elements x 2 bytes (f16) written per token ...
    assert_eq!(t.kv_write_bytes().0, 27 * 576 * 2);
    // ... and read once per attended position.
    assert_eq!(t.kv_read_bytes().0, 27 * 576 * 2 * 4096);
    assert_ne!(t.kv_write_bytes().0, 27 * 2 * 512 * 2);
}

/// #5: MLA is modelled as MLA (detected from `kv_lora_rank`), in both execution forms.
#[test]
fn pitfall_05_mla_not_approximated_as_gqa() {
    let d = spec("deepseek-v2-lite");
    let Attention::Mla(m) = d.attention else {
        panic!("DeepSeek-V2-Lite must be MLA, got {:?}", d.attention)
    };
    assert_eq!(
        (
            m.kv_lora_rank,
            m.q_lora_rank,
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim
        ),
        (512, None, 128, 64, 128)
    );
    let abs = table(&d, decode(4096), &CostOptions::default());
    let mat = table(
        &d,
        decode(4096),
        &CostOptions {
            mla_form: MlaForm::Materialized,
            ..CostOptions::default()
        },
    );
    assert_eq!(abs.mla_form, Some(MlaForm::Absorbed));
    assert_eq!(mat.mla_form, Some(MlaForm::Materialized));
    for kind in [OpKind::KProj, OpKind::VProj] {
        assert!(!has(&abs, Some(0), kind) && !has(&mat, Some(0), kind));
    }
    assert!(has(&abs, Some(0), OpKind::MlaQAbsorb) && has(&abs, Some(0), OpKind::MlaVAbsorb));
    assert!(has(&mat, Some(0), OpKind::MlaKvUp) && !has(&mat, Some(0), OpKind::MlaQAbsorb));
    // Materialized caches per-head K (192) and V (128): 16 * 320 values per token per layer.
    assert_eq!(mat.kv_write_bytes().0, 27 * 16 * 320 * 2);
    // Attention intensity: absorbed reads 576 values per position for 16 heads x (576 + 512)
    // MACs; materialized reads 16 x 320 values for 16 x 320 MACs (MHA-like, ~1 FLOP/byte).
    let attn = |t: &rooflinebench_model::cost::CostTable| {
        let s = op(t, Some(3), OpKind::AttnScore);
        let v = op(t, Some(3), OpKind::AttnValue);
        (s.flops.0 + v.flops.0) as f64 / (s.kv_read_bytes.0 + v.kv_read_bytes.0) as f64
    };
    let (ia, im) = (attn(&abs), attn(&mat));
    assert!((ia - 2.0 * 16.0 * 1088.0 / 1152.0).abs() < 1e-9, "{ia}");
    assert!((im - 1.0).abs() < 1e-9, "{im}");
    // Same weights either way (W_UK/W_UV are kv_b_proj, absorbed or not).
    assert_eq!(abs.weight_bytes(), mat.weight_bytes());
}

/// #6: experts are sized with `moe_intermediate_size`; shared experts with
/// `n_shared_experts * moe_intermediate_size` or `shared_expert_intermediate_size`.
#[test]
fn pitfall_06_moe_expert_and_shared_sizes() {
    let d = spec("deepseek-v2-lite");
    let t = table(&d, prefill(1024), &CostOptions::default());
    let per_expert = 3 * 2048 * 1408 * 2; // f16
                                          // 1024 routed tokens hit all 64 experts (1 - (58/64)^1024 rounds to 1).
    assert_eq!(
        op(&t, Some(1), OpKind::MoeExperts).weight_bytes.0,
        64 * per_expert
    );
    assert_eq!(
        op(&t, Some(1), OpKind::MoeSharedExperts).weight_bytes.0,
        3 * 2048 * (2 * 1408) * 2
    );
    assert_eq!(
        op(&t, Some(0), OpKind::FfnGate).weight_bytes.0,
        10944 * 2048 * 2
    );

    // Qwen1.5-MoE-A2.7B: one shared expert of 5632 behind a sigmoid gate.
    let q = parse(include_str!("fixtures/qwen2_moe.json"));
    let p = count_params(&q).unwrap();
    assert_eq!(p.total, 14_315_784_192); // "14.3B"
    assert_eq!(p.active, 2_689_173_504); // "2.7B activated"
    let t = table(&q, decode(100), &CostOptions::default());
    let shared = op(&t, Some(0), OpKind::MoeSharedExperts);
    assert_eq!(shared.weight_bytes.0, 3 * 2048 * 5632 * 2 + 2048 * 4);
}

/// #7: MoE weight bytes depend on how many distinct experts the batch's tokens hit:
/// `E * (1 - (1 - k/E)^T)` under uniform routing.
#[test]
fn pitfall_07_moe_bytes_depend_on_batch() {
    let q = spec("qwen3-30b-a3b"); // 128 experts, top-8, expert FFN 768
    let per_expert = 3 * 2048 * 768 * 2;
    let bytes = |batch: u64, phase: Phase| {
        let t = table(
            &q,
            phase,
            &CostOptions {
                batch,
                ..CostOptions::default()
            },
        );
        op(&t, Some(0), OpKind::MoeExperts).weight_bytes.0
    };
    assert_eq!(bytes(1, decode(100)), 8 * per_expert);
    let d4 = 128.0 * (1.0 - (120.0f64 / 128.0).powi(4));
    assert!((bytes(4, decode(100)) as f64 - d4 * per_expert as f64).abs() <= 1.0);
    let mut last = 0;
    for b in [1, 2, 4, 8, 16, 32, 64, 256] {
        let now = bytes(b, decode(100));
        assert!(now > last && now <= 128 * per_expert, "batch {b}");
        last = now;
    }
    assert_eq!(bytes(1, prefill(1024)), 128 * per_expert);
    assert_eq!(expected_distinct_experts(128, 8, 1), 8.0);
}

/// #8: prefill attention is causal: `S(S+1)/2` query-key pairs, not `S^2`.
#[test]
fn pitfall_08_causal_prefill_pairs() {
    let s = spec("smollm2-135m"); // 9 heads of 64
    let t = table(&s, prefill(128), &CostOptions::default());
    let pairs = 128 * 129 / 2;
    assert_eq!(
        op(&t, Some(0), OpKind::AttnScore).flops.0,
        2 * 9 * 64 * pairs
    );
    assert_eq!(
        op(&t, Some(0), OpKind::AttnValue).flops.0,
        2 * 9 * 64 * pairs
    );
    assert_eq!(op(&t, Some(0), OpKind::AttnSoftmax).flops.0, 5 * 9 * pairs);
    let t = table(
        &s,
        Phase::Prefill {
            tokens: 128,
            cached: 100,
        },
        &CostOptions::default(),
    );
    assert_eq!(
        op(&t, Some(0), OpKind::AttnScore).flops.0,
        2 * 9 * 64 * (128 * 100 + pairs)
    );
}

/// #9: the LM head is `2 * hidden * vocab` per token it is applied to: the last prompt token
/// of each sequence by default, every prompt token on request, the new token in decode.
#[test]
fn pitfall_09_lm_head_factor_two_and_tokens() {
    let s = spec("qwen2.5-0.5b");
    let per_token = 2 * 896 * 151_936;
    let lm = |phase: Phase, batch: u64, all: bool| {
        let t = table(
            &s,
            phase,
            &CostOptions {
                batch,
                lm_head_all_tokens: all,
                ..CostOptions::default()
            },
        );
        op(&t, None, OpKind::LmHead).flops.0
    };
    assert_eq!(lm(prefill(128), 1, false), per_token);
    assert_eq!(lm(prefill(128), 3, false), 3 * per_token);
    assert_eq!(lm(prefill(128), 1, true), 128 * per_token);
    assert_eq!(lm(decode(500), 2, false), 2 * per_token);
}

/// #10: each decode step reads the cache up to its own length and writes one new entry;
/// a request is the prefill plus every step at its own context.
#[test]
fn pitfall_10_decode_steps_at_own_context() {
    let s = spec("smollm2-135m"); // 30 layers, 3 KV heads of 64
    let sc = Scenario::parse("100/8").unwrap();
    let rc = request_cost(&s, &sc, &CostOptions::default()).unwrap();
    let ctx: Vec<u64> = rc.decode_steps.iter().map(|d| d.context).collect();
    assert_eq!(ctx, (101..=107).collect::<Vec<_>>());
    let entry = 2 * 30 * 3 * 64 * 2; // K and V, every layer, f16
    for st in &rc.decode_steps {
        assert_eq!(st.totals.kv_write_bytes.0, entry);
        assert_eq!(st.totals.kv_read_bytes.0, entry * st.context);
    }
    let mut sum = rooflinebench_model::cost::CostTotals::default();
    for j in 1..=7 {
        sum.add(&table(&s, decode(100 + j), &CostOptions::default()).totals());
    }
    assert_eq!(rc.decode_totals, sum);
    let last = table(&s, decode(107), &CostOptions::default()).totals();
    assert!(rc.decode_totals.kv_read_bytes.0 < 7 * last.kv_read_bytes.0);
    // The on-demand per-step tables agree with the stored step totals.
    for (j, tab) in rc.decode_tables().enumerate() {
        assert_eq!(tab.unwrap().totals(), rc.decode_steps[j].totals);
    }
    // The per-operator decode sum adds up to the decode totals, also when layers differ
    // (dense first layer, per-layer Q4_K_M types).
    let d = spec("deepseek-v2-lite");
    let o = CostOptions {
        weights: Recipe::Q4KM,
        ..CostOptions::default()
    };
    let rc = request_cost(&d, &Scenario::parse("64/5/2").unwrap(), &o).unwrap();
    let mut sum = rooflinebench_model::cost::CostTotals::default();
    for op in &rc.decode_sum {
        sum.add_op(op, 1);
    }
    assert_eq!(sum, rc.decode_totals);
    assert_eq!(rc.decode_sum.len(), rc.prefill.ops.len());
    let mut steps = rooflinebench_model::cost::CostTotals::default();
    for tab in rc.decode_tables() {
        steps.add(&tab.unwrap().totals());
    }
    assert_eq!(steps, rc.decode_totals);
}

/// #13: traffic is bytes moved per operator (not RSS x time), and FLOPs include the FFN, the
/// LM head and every decode step.
#[test]
fn pitfall_13_all_operators_and_phases_counted() {
    let s = spec("smollm2-135m");
    let t = table(&s, decode(1), &CostOptions::default());
    for kind in [
        OpKind::FfnGate,
        OpKind::FfnUp,
        OpKind::FfnDown,
        OpKind::LmHead,
    ] {
        assert!(sum_kind(&t, kind).flops.0 > 0, "{kind:?}");
    }
    // Decode reads every f16 matrix once, norms in f32, one embedding row, the tied head.
    let layer_mats = 576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536;
    let expect = 30 * (layer_mats * 2 + 2 * 576 * 4) + 576 * 4 + 49152 * 576 * 2 + 576 * 2;
    assert_eq!(t.weight_bytes().0, expect);
    let rc = request_cost(
        &s,
        &Scenario::parse("SISO").unwrap(),
        &CostOptions::default(),
    )
    .unwrap();
    assert_eq!(rc.decode_steps.len(), 127);
    let mut both = rc.prefill_totals;
    both.add(&rc.decode_totals);
    assert_eq!(rc.totals, both);
    assert!(rc.decode_totals.flops.0 > 0 && rc.decode_totals.weight_bytes.0 > 100 * expect);
}

/// #18: the embedding gathers one row per token; a tied LM head still reads the whole matrix.
#[test]
fn pitfall_18_embedding_reads_one_row_per_token() {
    let s = spec("smollm2-135m"); // tied, vocab 49152, hidden 576
    let t = table(&s, prefill(10), &CostOptions::default());
    assert_eq!(op(&t, None, OpKind::Embedding).weight_bytes.0, 10 * 576 * 2);
    assert_eq!(op(&t, None, OpKind::LmHead).weight_bytes.0, 49152 * 576 * 2);
    let q8 = CostOptions {
        weights: Recipe::Uniform(WeightFormat::Q8_0),
        ..CostOptions::default()
    };
    let t = table(&s, prefill(10), &q8);
    assert_eq!(
        op(&t, None, OpKind::Embedding).weight_bytes.0,
        10 * (576 / 32 * 34)
    );
}

/// #21: attention and FFN kinds come from config fields, never from the model's name.
#[test]
fn pitfall_21_architecture_from_fields_not_name() {
    // Named like an MLA MoE model, configured as plain GQA.
    let gqa = parse(
        r#"{"_name_or_path": "deepseek-ai/DeepSeek-V2-MoE-MLA", "model_type": "llama",
            "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
            "num_key_value_heads": 2, "intermediate_size": 1024, "vocab_size": 1000}"#,
    );
    assert_eq!(gqa.attention, Attention::Gqa);
    assert!(gqa.ffn.moe().is_none());
    // Named like a dense MHA model, configured with an MLA latent and experts.
    let mla = parse(
        r#"{"_name_or_path": "tiny-mha-dense", "model_type": "llama",
            "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
            "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
            "v_head_dim": 32, "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 256, "vocab_size": 1000}"#,
    );
    assert!(matches!(mla.attention, Attention::Mla(_)));
    assert_eq!(mla.ffn.moe().map(|m| m.num_experts), Some(4));
    // MHA vs GQA vs MQA from head counts alone.
    let heads = |kv: u64| {
        parse(&format!(
            r#"{{"model_type": "mystery", "hidden_size": 512, "num_hidden_layers": 1,
                "num_attention_heads": 8, "num_key_value_heads": {kv},
                "intermediate_size": 1024, "vocab_size": 1000}}"#
        ))
        .attention
    };
    assert_eq!(heads(8), Attention::Mha);
    assert_eq!(heads(4), Attention::Gqa);
    assert_eq!(heads(1), Attention::Mqa);
    // A Qwen2.5 config carries sliding_window but does not use it.
    assert!(!spec("qwen2.5-0.5b").uses_sliding_window());
    assert!(spec("mistral-7b").uses_sliding_window());
}

/// #24: K-quants need inner dimensions divisible by 256; llama.cpp falls back per tensor
/// (Q4_K -> Q5_0, Q6_K -> Q8_0) and we count the real type.
#[test]
fn pitfall_24_k_quant_fallback() {
    let s = spec("qwen2.5-0.5b"); // hidden 896 = 3.5 x 256; intermediate 4864 = 19 x 256
    let opts = CostOptions {
        weights: Recipe::Q4KM,
        ..CostOptions::default()
    };
    let t = table(&s, decode(10), &opts);
    let q = op(&t, Some(0), OpKind::QProj);
    assert_eq!(q.weight_bytes.0, 896 * (896 / 32 * 22) + 896 * 4); // Q5_0 + f32 bias
    assert_eq!(q.compute, Precision::Int8);
    // attn_v on a "more bits" layer wants Q6_K: inner 896 -> Q8_0.
    assert_eq!(
        op(&t, Some(0), OpKind::VProj).weight_bytes.0,
        128 * (896 / 32 * 34) + 128 * 4
    );
    // ffn_down reads 4864-wide rows: K-quants fit. Layer 0 gets Q6_K, layer 3 Q4_K.
    assert_eq!(
        op(&t, Some(0), OpKind::FfnDown).weight_bytes.0,
        896 * 19 * 210
    );
    assert_eq!(
        op(&t, Some(3), OpKind::FfnDown).weight_bytes.0,
        896 * 19 * 144
    );
    // The tied output matrix wants Q6_K, 896 is not a multiple of 256: Q8_0.
    assert_eq!(
        op(&t, None, OpKind::LmHead).weight_bytes.0,
        151_936 * (896 / 32 * 34)
    );
    // With 256-divisible rows (Llama-3.2-1B, hidden 2048) Q4_K stays.
    let l = spec("llama-3.2-1b");
    let t = table(&l, decode(10), &opts);
    assert_eq!(
        op(&t, Some(3), OpKind::QProj).weight_bytes.0,
        2048 * 8 * 144
    );
    assert_eq!(WeightFormat::Q4K.fit(896), WeightFormat::Q5_0);
    assert_eq!(WeightFormat::Q5K.fit(896), WeightFormat::Q5_1);
    assert_eq!(WeightFormat::Q6K.fit(896), WeightFormat::Q8_0);
    assert_eq!(WeightFormat::Q4K.fit(100), WeightFormat::F16);
}
