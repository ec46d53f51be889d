//! Property tests of the cost model and the config parser.
//!
//! - costs are monotone in sequence length, cached context, decode context and batch;
//! - GQA with `num_key_value_heads == num_attention_heads` is exactly MHA;
//! - totals equal the sum of the operators (table, fast visitor, per layer, per kind);
//! - distinct experts never exceed `min(E, tokens * k)`;
//! - a decode step is a one-token prefill;
//! - the parser never panics, whatever JSON (or text) it is given, and neither does costing
//!   whatever it accepts.

mod common;

use common::*;
use proptest::prelude::*;
use rooflinebench_model::cost::{
    expected_distinct_experts, CostModel, CostOptions, CostTotals, MlaForm, Phase,
};
use rooflinebench_model::format::{KvFormat, Recipe, WeightFormat};
use rooflinebench_model::params::count_params;
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::zoo;
use serde_json::{json, Value};

const MODELS: &[&str] = &[
    "pythia-160m",
    "smollm2-135m",
    "qwen2.5-0.5b",
    "qwen3-0.6b",
    "llama-3.2-1b",
    "mistral-7b",
    "deepseek-v2-lite",
    "qwen3-30b-a3b",
];

fn model() -> impl Strategy<Value = ModelSpec> {
    prop::sample::select(MODELS).prop_map(spec)
}

fn options() -> impl Strategy<Value = CostOptions> {
    let recipe = prop_oneof![
        prop::sample::select(WeightFormat::ALL.to_vec()).prop_map(Recipe::Uniform),
        Just(Recipe::Q4KM),
        Just(Recipe::Q5KM),
    ];
    (
        recipe,
        prop::sample::select(KvFormat::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![2u64, 4]),
        1u64..6,
    )
        .prop_map(
            |(weights, kv, lm_all, mat, flash, act, batch)| CostOptions {
                batch,
                weights,
                kv,
                lm_head_all_tokens: lm_all,
                mla_form: if mat {
                    MlaForm::Materialized
                } else {
                    MlaForm::Absorbed
                },
                activation_bytes: act,
                flash_attention: flash,
            },
        )
}

fn fields(t: &CostTotals) -> [u64; 6] {
    [
        t.flops.0,
        t.weight_bytes.0,
        t.act_read_bytes.0,
        t.act_write_bytes.0,
        t.kv_read_bytes.0,
        t.kv_write_bytes.0,
    ]
}

fn le(a: &CostTotals, b: &CostTotals) -> bool {
    fields(a).iter().zip(fields(b).iter()).all(|(x, y)| x <= y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn monotone_in_sequence_length(s in model(), o in options(), a in 1u64..3000, d in 1u64..3000) {
        let m = CostModel::new(&s, &o).unwrap();
        let t1 = m.totals(Phase::Prefill { tokens: a, cached: 0 }).unwrap();
        let t2 = m.totals(Phase::Prefill { tokens: a + d, cached: 0 }).unwrap();
        prop_assert!(le(&t1, &t2), "{:?} vs {:?}", t1, t2);
        prop_assert!(t1.flops < t2.flops);
    }

    #[test]
    fn monotone_in_cached_and_decode_context(s in model(), o in options(), c in 1u64..20_000, d in 1u64..5000) {
        let m = CostModel::new(&s, &o).unwrap();
        let t1 = m.totals(Phase::Decode { context: c }).unwrap();
        let t2 = m.totals(Phase::Decode { context: c + d }).unwrap();
        prop_assert!(le(&t1, &t2));
        let p1 = m.totals(Phase::Prefill { tokens: 7, cached: c }).unwrap();
        let p2 = m.totals(Phase::Prefill { tokens: 7, cached: c + d }).unwrap();
        prop_assert!(le(&p1, &p2));
    }

    #[test]
    fn monotone_in_batch(s in model(), o in options(), b in 1u64..64, d in 1u64..64, c in 1u64..5000) {
        let at = |batch| {
            let o = CostOptions { batch, ..o };
            let m = CostModel::new(&s, &o).unwrap();
            (m.totals(Phase::Decode { context: c }).unwrap(),
             m.totals(Phase::Prefill { tokens: 16, cached: c }).unwrap())
        };
        let (d1, p1) = at(b);
        let (d2, p2) = at(b + d);
        prop_assert!(le(&d1, &d2) && le(&p1, &p2));
        prop_assert!(d1.flops < d2.flops);
    }

    #[test]
    fn totals_equal_the_sum_of_operators(s in model(), o in options(), tokens in 1u64..600, cached in 0u64..600) {
        let m = CostModel::new(&s, &o).unwrap();
        for phase in [Phase::Prefill { tokens, cached }, Phase::Decode { context: cached + 1 }] {
            let t = m.table(phase).unwrap();
            let fast = m.totals(phase).unwrap();
            let mut by_hand = [0u64; 6];
            for op in &t.ops {
                let mut one = CostTotals::default();
                one.add_op(op, 1);
                for (acc, x) in by_hand.iter_mut().zip(fields(&one)) {
                    *acc += x;
                }
            }
            prop_assert_eq!(fields(&t.totals()), by_hand);
            prop_assert_eq!(t.totals(), fast);
            let mut per_layer = CostTotals::default();
            for l in t.per_layer() { per_layer.add(&l.totals); }
            for op in t.ops.iter().filter(|o| o.id.layer.is_none()) { per_layer.add_op(op, 1); }
            prop_assert_eq!(per_layer, fast);
            let mut kinds = CostTotals::default();
            for (_, _, k) in t.by_kind() { kinds.add(&k); }
            prop_assert_eq!(kinds, fast);
            prop_assert_eq!(t.per_layer().len() as u64, s.num_hidden_layers);
        }
    }

    #[test]
    fn decode_is_a_one_token_prefill(s in model(), o in options(), c in 1u64..100_000) {
        let m = CostModel::new(&s, &o).unwrap();
        let d = m.table(Phase::Decode { context: c }).unwrap();
        let p = m.table(Phase::Prefill { tokens: 1, cached: c - 1 }).unwrap();
        prop_assert_eq!(d.ops, p.ops);
    }

    #[test]
    fn gqa_with_kv_equal_heads_is_mha(heads in 1u64..33, head_dim in prop::sample::select(vec![32u64, 64, 128]),
                                      layers in 1u64..5, tokens in 1u64..300, c in 1u64..3000) {
        let base = json!({
            "model_type": "llama", "hidden_size": heads * head_dim, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": 4 * heads * head_dim,
            "vocab_size": 1000, "tie_word_embeddings": false
        });
        let mut gqa = base.clone();
        gqa["num_key_value_heads"] = json!(heads);
        let a = parse(&base.to_string());
        let b = parse(&gqa.to_string());
        prop_assert_eq!(&a, &b);
        let o = CostOptions::default();
        for phase in [Phase::Prefill { tokens, cached: 0 }, Phase::Decode { context: c }] {
            prop_assert_eq!(table(&a, phase, &o).ops, table(&b, phase, &o).ops);
        }
    }

    #[test]
    fn distinct_experts_never_exceed_min_e_tk(e in 1u64..1024, k_frac in 0.0f64..1.0, t in 1u64..2_000_000) {
        let k = 1 + ((e - 1) as f64 * k_frac) as u64;
        let d = expected_distinct_experts(e, k, t);
        prop_assert!(d <= (e as f64).min(t as f64 * k as f64), "{} > min({}, {})", d, e, t * k);
        prop_assert!(d >= k as f64 - 1e-9);
        prop_assert!(expected_distinct_experts(e, k, t + 1) >= d);
    }

    #[test]
    fn depth_sweep_scales_layers(s in model(), n in 1u64..80) {
        let d = s.with_layers(n).unwrap();
        prop_assert_eq!(d.layers.len() as u64, n);
        let keep = (n as usize).min(s.layers.len());
        prop_assert_eq!(&d.layers[..keep], &s.layers[..keep]);
        if let Some(last) = s.layers.last() {
            prop_assert!(d.layers[keep..].iter().all(|l| l == last));
        }
        prop_assert!(count_params(&d).is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Parser robustness.

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        (0u64..5000).prop_map(|u| json!(u)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,10}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const KEYS: &[&str] = &[
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "n_shared_experts",
    "shared_expert_intermediate_size",
    "first_k_dense_replace",
    "moe_layer_freq",
    "decoder_sparse_step",
    "mlp_only_layers",
    "kv_lora_rank",
    "q_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "sliding_window",
    "use_sliding_window",
    "max_window_layers",
    "layer_types",
    "tie_word_embeddings",
    "partial_rotary_factor",
    "rotary_pct",
    "hidden_act",
    "model_type",
    "text_config",
];

/// Everything the parser accepts must also be costed without a panic.
fn exercise(text: &str) {
    if let Ok((s, _)) = ModelSpec::from_config_json(text) {
        let _ = count_params(&s);
        for o in [
            CostOptions::default(),
            CostOptions {
                weights: Recipe::Q4KM,
                batch: 7,
                mla_form: MlaForm::Materialized,
                ..CostOptions::default()
            },
        ] {
            if let Ok(m) = CostModel::new(&s, &o) {
                let _ = m.totals(Phase::Prefill {
                    tokens: 33,
                    cached: 5,
                });
                let _ = m.totals(Phase::Decode { context: 1 << 39 });
                if s.num_hidden_layers <= 64 {
                    let _ = m.table(Phase::Decode { context: 100 });
                }
            }
        }
        let _ = s.with_layers(3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_never_panics_on_arbitrary_json(v in arb_json()) {
        exercise(&v.to_string());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in ".{0,200}") {
        exercise(&s);
    }

    #[test]
    fn parser_never_panics_on_mutated_real_configs(
        idx in 0usize..64,
        edits in prop::collection::vec((prop::sample::select(KEYS), arb_json()), 1..4),
    ) {
        let all = zoo::all();
        let entry = &all[idx % all.len()];
        let mut v: Value = serde_json::from_str(entry.config_json).unwrap();
        for (k, val) in edits {
            v[k] = val;
        }
        exercise(&v.to_string());
    }

    #[test]
    fn parser_never_panics_on_mutated_sizes(
        idx in 0usize..64,
        key in prop::sample::select(KEYS),
        val in prop_oneof![Just(0u64), Just(1u64), Just(u64::MAX), Just(1u64 << 24), Just((1u64 << 24) + 1), 0u64..100_000],
    ) {
        let all = zoo::all();
        let mut v: Value = serde_json::from_str(all[idx % all.len()].config_json).unwrap();
        v[key] = json!(val);
        exercise(&v.to_string());
    }
}
