//! Quantized weights in the engine: for random weights quantized into every block format, the
//! forward pass (8-bit activations, integer dot products, dequantized embedding rows, tied LM
//! head on the quantized embedding) against the same weights dequantized to f32 on the dense
//! path; and a quantized bench run whose cost table joins every executed operator.

use rooflinebench_engine::bench::{run_bench, BenchOptions};
use rooflinebench_engine::{load, LoadOptions, Logits, Model, ModelDef, NoopRecorder, WeightsFrom};
use rooflinebench_kernels::isa::Isa;
use rooflinebench_kernels::quant::QuantType;

const TOKENS: [u32; 9] = [3, 17, 42, 0, 49, 8, 8, 21, 30];

/// Widths multiple of 256 so every k-quant applies without fallback; tied embeddings so the LM
/// head multiplies by the quantized token embedding; a qwen2-style bias on q/k/v.
fn config(tied: bool) -> String {
    format!(
        r#"{{"model_type": "qwen2", "hidden_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
        "vocab_size": 64, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "tie_word_embeddings": {tied}}}"#
    )
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn quant_vs_dequant(ty: QuantType, isa: Isa, tied: bool) -> f64 {
    let (def, _) = ModelDef::from_config_json(&config(tied)).expect("config parses");
    let (mut q, mut cache) = load(
        &def,
        &WeightsFrom::RandomQuant { seed: 5, quant: ty },
        &LoadOptions {
            dtype: None,
            threads: 2,
            isa: Some(isa),
            positions: 16,
            max_tokens: 16,
        },
    )
    .expect("quantized model builds");
    assert_eq!(q.weights.format_label(), ty.name(), "every matrix in {ty}");
    let got = q
        .forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
        .expect("quantized forward")
        .to_vec();
    let mut d = Model::new(def, q.weights.dequantized(), 2, isa, 16).expect("dense model");
    let mut cache = d.new_cache(16).expect("cache");
    let want = d
        .forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
        .expect("dense forward")
        .to_vec();
    assert!(got.iter().all(|v| v.is_finite()), "{ty} {isa}: non-finite");
    // Decode through the cache (GEMV path) must match the prefill (GEMM path) row.
    let mut cache = q.new_cache(16).expect("cache");
    q.forward(&TOKENS[..8], &mut cache, Logits::Last, &mut NoopRecorder)
        .expect("prefill");
    let step = q
        .forward(&TOKENS[8..], &mut cache, Logits::Last, &mut NoopRecorder)
        .expect("decode step")
        .to_vec();
    let vocab = step.len();
    let e = rel_err(&step, &got[8 * vocab..]);
    assert!(e < 1e-4, "{ty} {isa}: decode vs prefill rel err {e}");
    rel_err(&got, &want)
}

#[test]
fn quantized_forward_matches_dequantized_f32_for_every_format() {
    let best = rooflinebench_kernels::isa::best().unwrap_or(Isa::Scalar);
    for ty in QuantType::ALL {
        for isa in [Isa::Scalar, best] {
            for tied in [true, false] {
                let e = quant_vs_dequant(ty, isa, tied);
                eprintln!("{ty} {isa} tied={tied}: rel err vs dequantized f32 {e:.2e}");
                // Only the 8-bit activation rounding separates the two paths (~0.4% per
                // product, partly cancelling over two layers).
                assert!(e < 0.05, "{ty} {isa} tied={tied}: rel err {e}");
            }
        }
    }
}

/// PITFALLS.md #24: a k-quant request on a width not divisible by 256 falls back per tensor
/// (q4_K -> q5_0), and the run says so in its label.
#[test]
fn pitfall_24_kquant_falls_back_per_tensor() {
    let cfg = r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 256,
        "vocab_size": 40, "max_position_embeddings": 32, "tie_word_embeddings": false}"#;
    let (def, _) = ModelDef::from_config_json(cfg).unwrap();
    let (m, _) = load(
        &def,
        &WeightsFrom::RandomQuant {
            seed: 1,
            quant: QuantType::Q4K,
        },
        &LoadOptions {
            dtype: None,
            threads: 1,
            isa: None,
            positions: 8,
            max_tokens: 8,
        },
    )
    .unwrap();
    // Every matrix has 64 inputs except ffn_down (256): one q4_k, the rest q5_0.
    assert_eq!(m.weights.layers[0].down.format().name(), "q4_k");
    assert_eq!(m.weights.layers[0].q.format().name(), "q5_0");
    assert!(m.weights.format_label().contains("q5_0"));
}

/// The bench's cost join (every executed operator costed and vice versa) holds for quantized
/// weights, and the decode weight bytes are the quantized ones.
#[test]
fn quantized_bench_costs_every_operator_with_real_formats() {
    let (def, _) = ModelDef::from_config_json(&config(true)).unwrap();
    let run = |weights| {
        run_bench(
            &def,
            &BenchOptions {
                weights,
                prompt: 8,
                depth: 8,
                gen: 2,
                reps: 1,
                warmup: 0,
                threads: 2,
                ..BenchOptions::default()
            },
        )
        .expect("bench runs")
    };
    let q = run(WeightsFrom::RandomQuant {
        seed: 0,
        quant: QuantType::Q4_0,
    });
    assert!(
        q.warnings.iter().all(|w| w.code != "op_mismatch"),
        "{:?}",
        q.warnings
    );
    assert_eq!(q.weights, "q4_0");
    let f = run(WeightsFrom::Random { seed: 0 });
    let decode = |r: &rooflinebench_engine::bench::BenchResult| {
        r.phases
            .iter()
            .find(|p| p.phase == "decode")
            .expect("decode phase")
            .weight_bytes
            .0
    };
    // q4_0 is 4.5 bits per weight against f32's 32 (the tied head reads the whole table);
    // f32 norm weights keep the ratio a little below 32 / 4.5 = 7.1.
    let ratio = decode(&f) as f64 / decode(&q) as f64;
    assert!(
        ratio > 6.5 && ratio < 32.0 / 4.5 + 1e-9,
        "f32/q4_0 bytes {ratio}"
    );
}
