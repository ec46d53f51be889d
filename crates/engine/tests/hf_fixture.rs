//! Engine logits against Hugging Face `transformers` (CPU, float32) on the committed tiny
//! fixtures written by `scripts/make-hf-fixture.py`: the config is parsed, the safetensors
//! checkpoint loaded by its HF tensor names, and every position's logits compared.

use rooflinebench_engine::{load, LoadOptions, Logits, ModelDef, NoopRecorder, WeightsFrom};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_kernels::isa::Isa;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut v = vec![root.join("tiny-llama")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("tiny-hf"))
        .expect("tests/fixtures/tiny-hf exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    more.sort();
    v.extend(more);
    v
}

fn check(dir: &Path, dtype: Option<WeightDtype>, isa: Isa) -> f64 {
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let (def, _) =
        ModelDef::from_config_json(&cfg).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_logits.json")).unwrap())
            .unwrap();
    let tokens: Vec<u32> = expected["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let want: Vec<f64> = expected["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let (mut m, mut cache) = load(
        &def,
        &WeightsFrom::Safetensors(dir.to_path_buf()),
        &LoadOptions {
            dtype,
            threads: 2,
            isa: Some(isa),
            positions: tokens.len(),
            max_tokens: tokens.len(),
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let got = m
        .forward(&tokens, &mut cache, Logits::All, &mut NoopRecorder)
        .unwrap();
    assert_eq!(got.len(), want.len(), "{}", dir.display());
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    got.iter()
        .zip(&want)
        .fold(0.0f64, |a, (g, w)| a.max((*g as f64 - w).abs()))
        / scale
}

#[test]
fn logits_match_transformers_for_every_fixture() {
    let mut failures = Vec::new();
    for dir in fixtures() {
        for isa in Isa::all_available() {
            for dtype in [None, Some(WeightDtype::F32)] {
                let e = check(&dir, dtype, isa);
                if e.is_nan() || e >= 2e-5 {
                    failures.push(format!(
                        "{} {isa} {dtype:?}: relative error {e}",
                        dir.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
