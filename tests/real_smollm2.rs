//! The real model end to end (issue #6 item 5): SmolLM2-135M-Instruct in llama.cpp's Q4_1
//! GGUF, tokenized with the GGUF's own gpt2 BPE, run by the engine on its quantized weights.
//!
//! The file (98 MB) is fetched by `scripts/fetch-smollm2.sh` into `~/.cache/rooflinebench`
//! (or `$RB_CACHE`), never into the repository; without it these tests print a skip message
//! and pass.

use rooflinebench_engine::gguf_source::model_def;
use rooflinebench_engine::{load, LoadOptions, Logits, Model, NoopRecorder, WeightsFrom};
use rooflinebench_gguf::tokenizer::Tokenizer;
use rooflinebench_gguf::GgufFile;
use std::path::{Path, PathBuf};

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_file() -> Option<PathBuf> {
    let dirs = [
        std::env::var_os("RB_CACHE").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rooflinebench")),
    ];
    let found = dirs
        .into_iter()
        .flatten()
        .map(|d| d.join(FILE))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "skipped: {FILE} not found in $RB_CACHE or ~/.cache/rooflinebench \
             (run scripts/fetch-smollm2.sh to fetch it)"
        );
    }
    found
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

fn load_model(path: &Path, positions: usize) -> (Model, rooflinebench_engine::KvCache) {
    let (def, _) = model_def(path).expect("model definition from the GGUF");
    load(
        &def,
        &WeightsFrom::Gguf(path.to_path_buf()),
        &LoadOptions {
            dtype: None,
            threads: 2,
            isa: None,
            positions,
            max_tokens: positions,
        },
    )
    .expect("load the GGUF weights")
}

/// Greedy decoding of "The capital of France is" must name Paris.
#[test]
fn smollm2_q4_1_says_paris() {
    let Some(path) = model_file() else { return };
    let file = GgufFile::open(&path).expect("open GGUF");
    let tok = Tokenizer::from_gguf(&file.header).expect("GGUF tokenizer");
    let prompt = tok
        .encode("The capital of France is", false)
        .expect("tokenize");
    assert!(!prompt.is_empty());
    let (mut model, mut cache) = load_model(&path, 32);
    assert!(
        model.weights.is_quantized(),
        "Q4_1 weights must stay quantized"
    );
    let mut next = argmax(
        model
            .forward(&prompt, &mut cache, Logits::Last, &mut NoopRecorder)
            .expect("prefill"),
    );
    let mut out = vec![next];
    for _ in 0..4 {
        next = argmax(
            model
                .forward(&[next], &mut cache, Logits::Last, &mut NoopRecorder)
                .expect("decode step"),
        );
        out.push(next);
    }
    let text = tok.decode(&out);
    eprintln!("prompt ids {prompt:?} -> {out:?} = {text:?}");
    assert!(
        text.contains("Paris"),
        "greedy continuation of \"The capital of France is\" was {text:?}"
    );
}

/// The quantized path (8-bit activations, integer dot products) against the same weights
/// dequantized to f32 on the dense path: the logits must agree closely and pick the same token.
#[test]
fn smollm2_q4_1_logits_match_dequantized_f32() {
    let Some(path) = model_file() else { return };
    let file = GgufFile::open(&path).expect("open GGUF");
    let tok = Tokenizer::from_gguf(&file.header).expect("GGUF tokenizer");
    let prompt = tok
        .encode("The capital of France is", false)
        .expect("tokenize");
    let (mut quant, mut cache) = load_model(&path, 16);
    let q = quant
        .forward(&prompt, &mut cache, Logits::All, &mut NoopRecorder)
        .expect("quantized forward")
        .to_vec();
    let def = quant.def.clone();
    let dense_w = quant.weights.dequantized();
    assert!(!dense_w.is_quantized());
    let isa = quant.isa();
    drop(quant);
    let mut dense = Model::new(def, dense_w, 2, isa, 16).expect("dense model");
    let mut cache = dense.new_cache(16).expect("cache");
    let d = dense
        .forward(&prompt, &mut cache, Logits::All, &mut NoopRecorder)
        .expect("dense forward")
        .to_vec();
    assert_eq!(q.len(), d.len());
    let vocab = q.len() / prompt.len();
    for (t, (qr, dr)) in q.chunks(vocab).zip(d.chunks(vocab)).enumerate() {
        let dot: f64 = qr.iter().zip(dr).map(|(a, b)| (a * b) as f64).sum();
        let nq: f64 = qr.iter().map(|a| (a * a) as f64).sum::<f64>().sqrt();
        let nd: f64 = dr.iter().map(|a| (a * a) as f64).sum::<f64>().sqrt();
        let cos = dot / (nq * nd);
        let max_diff = qr
            .iter()
            .zip(dr)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let spread = dr.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        eprintln!("token {t}: cosine {cos:.5}, max |diff| {max_diff:.3} (max |logit| {spread:.2})");
        assert!(cos > 0.995, "token {t}: cosine {cos}");
        assert!(
            max_diff < 0.1 * spread,
            "token {t}: max diff {max_diff} vs {spread}"
        );
        assert_eq!(argmax(qr), argmax(dr), "token {t}: top-1 differs");
    }
}
