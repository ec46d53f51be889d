//! Engine logits against the naive f64 reference forward (tests/common), for random tiny models
//! of every supported family, in f32, f16 and bf16 weights and on every ISA this CPU has; plus
//! the KV cache path (prefill then decode) against a single prefill.

mod common;

use common::{reference_forward, rel_err, tiny_configs};
use rooflinebench_engine::{load, LoadOptions, Logits, ModelDef, NoopRecorder, WeightsFrom};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_kernels::isa::Isa;

const TOKENS: [u32; 9] = [3, 17, 42, 0, 49, 8, 8, 21, 30];

fn load_tiny(
    cfg: &str,
    dtype: WeightDtype,
    isa: Isa,
    threads: usize,
) -> (
    ModelDef,
    rooflinebench_engine::Model,
    rooflinebench_engine::KvCache,
) {
    let (def, _) = ModelDef::from_config_json(cfg).expect("tiny config parses");
    let (m, c) = load(
        &def,
        &WeightsFrom::Random { seed: 7 },
        &LoadOptions {
            dtype: Some(dtype),
            threads,
            isa: Some(isa),
            positions: 32,
            max_tokens: 16,
        },
    )
    .expect("tiny model builds");
    (def, m, c)
}

#[test]
fn every_family_matches_the_f64_reference_on_every_isa() {
    for (name, cfg) in tiny_configs() {
        let best = *Isa::all_available().last().unwrap();
        for isa in Isa::all_available() {
            // Every dtype on the best ISA, f32 on the others (keeps the suite fast).
            let dtypes: &[WeightDtype] = if isa == best {
                &[WeightDtype::F32, WeightDtype::Bf16, WeightDtype::F16]
            } else {
                &[WeightDtype::F32]
            };
            for &dtype in dtypes {
                let (def, mut m, mut cache) = load_tiny(&cfg, dtype, isa, 2);
                let want = reference_forward(&def, &m.weights, &TOKENS);
                let got = m
                    .forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
                    .expect("forward")
                    .to_vec();
                assert!(
                    got.iter().all(|v| v.is_finite()),
                    "{name} {isa}: non-finite logits"
                );
                let e = rel_err(&got, &want);
                assert!(e < 2e-5, "{name} {isa} {dtype:?}: relative error {e}");
            }
        }
    }
}

#[test]
fn decode_after_prefill_matches_one_long_prefill() {
    for (name, cfg) in tiny_configs() {
        let isa = *Isa::all_available().last().unwrap();
        let (_, mut m, mut cache) = load_tiny(&cfg, WeightDtype::F32, isa, 2);
        let all = m
            .forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
            .unwrap()
            .to_vec();
        let vocab = all.len() / TOKENS.len();
        cache.truncate(0);
        m.forward(&TOKENS[..5], &mut cache, Logits::Last, &mut NoopRecorder)
            .unwrap();
        for (i, tok) in TOKENS.iter().enumerate().skip(5) {
            let got = m
                .forward(
                    std::slice::from_ref(tok),
                    &mut cache,
                    Logits::Last,
                    &mut NoopRecorder,
                )
                .unwrap();
            let want: Vec<f64> = all[i * vocab..(i + 1) * vocab]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let e = rel_err(got, &want);
            assert!(
                e < 1e-5,
                "{name}: decode step {i} differs from prefill by {e}"
            );
        }
    }
}

#[test]
fn pitfall_15_decode_depth_changes_the_result() {
    // Decode at depth D must really attend to D cached positions: the same token decoded after
    // a different history gives different logits.
    let cfg = &tiny_configs()[0].1;
    let isa = *Isa::all_available().last().unwrap();
    let (_, mut m, mut cache) = load_tiny(cfg, WeightDtype::F32, isa, 1);
    m.forward(&TOKENS[..6], &mut cache, Logits::Last, &mut NoopRecorder)
        .unwrap();
    let a = m
        .forward(&[5], &mut cache, Logits::Last, &mut NoopRecorder)
        .unwrap()
        .to_vec();
    cache.truncate(0);
    let b = m
        .forward(&[5], &mut cache, Logits::Last, &mut NoopRecorder)
        .unwrap()
        .to_vec();
    assert_ne!(a, b);
}

#[test]
fn thread_counts_agree() {
    let cfg = &tiny_configs()[3].1;
    let isa = *Isa::all_available().last().unwrap();
    let mut outs = Vec::new();
    for threads in [1, 2, 3] {
        let (_, mut m, mut cache) = load_tiny(cfg, WeightDtype::Bf16, isa, threads);
        outs.push(
            m.forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
                .unwrap()
                .to_vec(),
        );
    }
    for o in &outs[1..] {
        let want: Vec<f64> = outs[0].iter().map(|&v| v as f64).collect();
        assert!(rel_err(o, &want) < 1e-5);
    }
}

#[test]
fn pitfall_23_every_weight_is_written_before_timing() {
    // Random weights are generated into buffers pre-filled with NaN: any element left unwritten
    // (an untouched page that would make decode look faster) would still be NaN.
    for (name, cfg) in tiny_configs() {
        let isa = *Isa::all_available().last().unwrap();
        let (_, m, _) = load_tiny(&cfg, WeightDtype::F32, isa, 3);
        let w = &m.weights;
        let mut mats = vec![&w.embed];
        mats.extend(w.lm_head.as_ref());
        for l in &w.layers {
            mats.extend([&l.q, &l.k, &l.v, &l.o, &l.up, &l.down]);
            mats.extend(l.gate.as_ref());
        }
        for mat in mats {
            for r in 0..mat.rows {
                for c in 0..mat.cols {
                    assert!(
                        mat.get(r, c).is_finite(),
                        "{name}: element ({r},{c}) unwritten"
                    );
                }
            }
        }
    }
}

#[test]
fn pitfall_19_thread_count_is_explicit() {
    let cfg = &tiny_configs()[0].1;
    let isa = *Isa::all_available().last().unwrap();
    for threads in [1, 2, 5] {
        let (_, m, _) = load_tiny(cfg, WeightDtype::F32, isa, threads);
        assert_eq!(m.threads(), threads);
    }
}

#[test]
fn long_prefill_takes_the_matrix_product_attention_path() {
    // From 16 query tokens on, attention scores and values run as blocked matrix products with
    // masked rectangles; check them against the reference with windows and soft-caps too.
    let tokens: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % 50).collect();
    for (name, cfg) in tiny_configs().into_iter().filter(|(n, _)| {
        [
            "llama-gqa-untied",
            "mistral-window",
            "gemma2-softcap-window",
        ]
        .contains(n)
    }) {
        let isa = *Isa::all_available().last().unwrap();
        let (def, _) = ModelDef::from_config_json(&cfg).unwrap();
        let (mut m, mut cache) = load(
            &def,
            &WeightsFrom::Random { seed: 3 },
            &LoadOptions {
                dtype: Some(WeightDtype::F32),
                threads: 2,
                isa: Some(isa),
                positions: 48,
                max_tokens: 40,
            },
        )
        .unwrap();
        let want = reference_forward(&def, &m.weights, &tokens);
        let got = m
            .forward(&tokens, &mut cache, Logits::All, &mut NoopRecorder)
            .unwrap()
            .to_vec();
        let e = rel_err(&got, &want);
        assert!(e < 2e-5, "{name}: relative error {e}");
    }
}
