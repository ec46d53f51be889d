//! Quantized weights in the engine: for random weights quantized into every block format, the
//! forward pass (8-bit activations, integer dot products, dequantized embedding rows, tied LM
//! head on the quantized embedding) against the same weights dequantized to f32 on the dense
//! path; and a quantized bench run whose cost table joins every executed operator.

mod common;

use common::l2_rel_err;
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
    let e = l2_rel_err(&step, &got[8 * vocab..]);
    assert!(e < 1e-4, "{ty} {isa}: decode vs prefill rel err {e}");
    l2_rel_err(&got, &want)
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
    assert!(
        q.warnings.iter().any(|w| w.code == "no_warmup"),
        "--warmup 0 is flagged: {:?}",
        q.warnings
    );
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

/// A profile with distinct f32 and int8 compute ceilings and a DRAM bandwidth.
fn two_roof_profile() -> rooflinebench_model::hardware::HardwareProfile {
    use rooflinebench_model::hardware::*;
    let compute = |precision, v| ComputeCeiling {
        precision,
        source: CeilingSource::Measured,
        flops_per_second: v,
        threads: None,
        kernel: None,
        isa: None,
        stats: None,
        unstable: false,
        note: None,
    };
    HardwareProfile {
        schema_version: HW_SCHEMA_VERSION,
        name: "two roofs".into(),
        description: None,
        source: None,
        host: None,
        compute: vec![
            compute(Precision::F32, 1e11),
            compute(Precision::Int8, 4e11),
        ],
        bandwidth: vec![BandwidthCeiling {
            level: MemLevel::Dram,
            source: CeilingSource::Measured,
            pattern: BwPattern::Read,
            bytes_per_second: 1e10,
            with_write_allocate_bytes_per_second: None,
            threads: None,
            working_set_bytes: None,
            kernel: None,
            isa: None,
            stats: None,
            unstable: false,
            note: None,
        }],
        warnings: vec![],
    }
}

/// PITFALLS.md #12 (the paper's released code used an FP32 matmul as the roof of Q4 runs): a
/// quantized matrix product, which runs int8 dot products, is predicted against the int8
/// ceiling; f32/bf16 weights (widened to f32 by the engine) and every other operator against
/// the f32 one.
#[test]
fn pitfall_12_quantized_products_are_held_to_the_int8_roof() {
    use rooflinebench_model::hardware::Precision;
    use rooflinebench_model::op::OpKind;
    use rooflinebench_model::roofline::{Ceilings, RoofOptions};
    let (def, _) = ModelDef::from_config_json(&config(true)).unwrap();
    let ceilings = Ceilings::from_profile(&two_roof_profile(), &RoofOptions::default()).unwrap();
    let run = |weights| {
        let mut r = run_bench(
            &def,
            &BenchOptions {
                weights,
                prompt: 64,
                depth: 0,
                gen: 0,
                reps: 1,
                warmup: 0,
                threads: 1,
                ..BenchOptions::default()
            },
        )
        .expect("bench runs");
        r.evaluate(&ceilings);
        r
    };
    let q = run(WeightsFrom::RandomQuant {
        seed: 0,
        quant: QuantType::Q8_0,
    });
    let f = run(WeightsFrom::Random { seed: 0 });
    let op = |r: &rooflinebench_engine::bench::BenchResult, kind| {
        r.phases[0]
            .ops
            .iter()
            .find(|o| o.id.kind == kind)
            .cloned()
            .expect("operator ran")
    };
    let (qq, fq) = (op(&q, OpKind::QProj), op(&f, OpKind::QProj));
    assert_eq!(qq.compute, Precision::Int8);
    assert_eq!(fq.compute, Precision::F32);
    assert_eq!(op(&q, OpKind::AttnScore).compute, Precision::F32);
    // Same FLOPs and intensity far above both ridges (64 tokens reuse each weight): the int8
    // prediction is the f32 one divided by the peak ratio, up to the different weight bytes.
    let q_attain = qq.attainable_flops_per_second.unwrap();
    let f_attain = fq.attainable_flops_per_second.unwrap();
    assert!(
        q_attain > 2.0 * f_attain && q_attain <= 4e11,
        "{q_attain} vs {f_attain}"
    );
    let roof = q.roof.as_ref().unwrap();
    assert!(roof.int8_operators);
    assert_eq!(roof.int8_ops_per_second, Some(4e11));
    let froof = f.roof.as_ref().unwrap();
    assert!(!froof.int8_operators && froof.int8_ops_per_second.is_none());
    let points = q.points().unwrap();
    let qp = points
        .iter()
        .find(|p| p.op.is_some_and(|o| o.kind == OpKind::QProj))
        .unwrap();
    assert_eq!(
        qp.compute,
        Precision::Int8,
        "the report draws it under the int8 roof"
    );
    assert_eq!(
        points[0].compute,
        Precision::Int8,
        "prefill is mostly quantized products"
    );
}
