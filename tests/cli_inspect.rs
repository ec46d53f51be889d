//! `rooflinebench inspect` on synthetic GGUF files and on broken ones.

use assert_cmd::Command;
use rooflinebench_gguf::arch::ArchConfig;
use rooflinebench_gguf::writer::{write_synthetic, WeightFormat};
use rooflinebench_kernels::quant::QuantType;
use serde_json::json;
use std::path::{Path, PathBuf};

fn synthetic_file(dir: &Path, format: WeightFormat) -> PathBuf {
    let cfg = ArchConfig::from_hf(&json!({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 2, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 512, "tie_word_embeddings": true, "max_position_embeddings": 8192
    }))
    .unwrap();
    let p = dir.join(format!("tiny-{}.gguf", format.name()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    write_synthetic(&cfg, format, 1, &mut f).unwrap();
    drop(f);
    p
}

fn inspect(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("rooflinebench")
        .unwrap()
        .arg("inspect")
        .args(args)
        .assert()
}

#[test]
fn inspect_prints_architecture_hyperparameters_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic_file(dir.path(), WeightFormat::Quant(QuantType::Q4_0));
    let out = inspect(&[p.to_str().unwrap()])
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("architecture:  llama (HF model_type llama)"),
        "{text}"
    );
    assert!(
        text.contains("num_key_value_heads                3"),
        "{text}"
    );
    assert!(text.contains("tokenizer:     gpt2"), "{text}");
    // 2 layers x 7 matrices + token_embd in Q4_0; 2 x 2 + 1 norms in F32.
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Q4_0") && l.contains(" 15 ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("F32") && l.contains(" 5 ")),
        "{text}"
    );
    assert!(text.contains("effective bits per weight"), "{text}");
}

#[test]
fn inspect_json_counts_real_types_of_a_q4_k_m_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic_file(dir.path(), WeightFormat::Q4KM);
    let out = inspect(&[p.to_str().unwrap(), "--json"])
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["file_type_name"], "MOSTLY_Q4_K_M");
    assert_eq!(v["config"]["hidden_size"], 576);
    let types: Vec<&str> = v["by_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    // Pitfall 24: 576 is not a multiple of 256, so most "Q4_K" tensors are Q5_0 / Q8_0.
    for t in ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let sum: u64 = v["by_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, v["tensor_bytes"].as_u64().unwrap());
}

#[test]
fn inspect_rejects_broken_files_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(synthetic_file(dir.path(), WeightFormat::F16)).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic.gguf", b"GGML\x03\0\0\0".to_vec(), "not a GGUF file"),
        ("empty.gguf", Vec::new(), "magic"),
        (
            "truncated.gguf",
            good[..good.len() / 3].to_vec(),
            "beyond the end of the file",
        ),
        ("header.gguf", good[..200].to_vec(), "truncated"),
    ];
    for (name, bytes, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = inspect(&[p.to_str().unwrap()]).code(1).get_output().clone();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
    let out = inspect(&["/nonexistent/model.gguf"])
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}
