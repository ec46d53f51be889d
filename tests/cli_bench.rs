//! `rooflinebench bench`: real runs of the tiny HF fixture (text and JSON), roofline columns
//! from a profile file, and bad input (one clear error line, non-zero exit, no panic).

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama")
}

fn cmd() -> Command {
    Command::cargo_bin("rooflinebench").unwrap()
}

fn profile(dir: &Path) -> PathBuf {
    let p = dir.join("hw.json");
    std::fs::write(
        &p,
        r#"{"schema_version": 1, "name": "test-cpu",
            "compute": [{"precision": "f32", "source": "measured", "flops_per_second": 1e11}],
            "bandwidth": [{"level": "dram", "source": "measured", "pattern": "read",
                           "bytes_per_second": 1e10}]}"#,
    )
    .unwrap();
    p
}

const SMALL: [&str; 10] = [
    "--prompt", "6", "--depth", "5", "--gen", "2", "--reps", "2", "--warmup", "0",
];

#[test]
fn bench_prints_both_phases_per_operator_with_roof() {
    let dir = tempfile::tempdir().unwrap();
    let hw = profile(dir.path());
    cmd()
        .arg("bench")
        .arg(fixture())
        .args(SMALL)
        .args(["--threads", "1", "--hw"])
        .arg(&hw)
        .assert()
        .success()
        .stdout(predicate::str::contains("prefill of 6 tokens"))
        .stdout(predicate::str::contains(
            "decode at depth 5 (2 steps, contexts 6..7)",
        ))
        .stdout(predicate::str::contains("q_proj"))
        .stdout(predicate::str::contains("% roof"))
        .stdout(predicate::str::contains(
            "test-cpu (measured): DRAM 10.0 GB/s",
        ))
        .stdout(predicate::str::contains("bf16 weights"));
}

#[test]
fn bench_json_keeps_every_sample_and_points() {
    let dir = tempfile::tempdir().unwrap();
    let hw = profile(dir.path());
    let out = dir.path().join("bench.json");
    cmd()
        .arg("bench")
        .arg(fixture())
        .args(SMALL)
        .args(["--threads", "2", "--weights", "f32", "--json", "-o"])
        .arg(&out)
        .arg("--hw")
        .arg(&hw)
        .assert()
        .success();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["weights"], "f32");
    assert_eq!(v["threads"], 2);
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    for p in phases {
        assert_eq!(p["seconds"]["samples"].as_array().unwrap().len(), 2);
        for op in p["ops"].as_array().unwrap() {
            assert!(op["predicted_seconds"].as_f64().unwrap() > 0.0, "{op}");
            assert!(op["roof_fraction"].as_f64().unwrap() > 0.0);
        }
    }
    assert!(v["points"].as_array().unwrap().len() > 10);
}

#[test]
fn random_weights_for_a_zoo_model_shape_with_a_small_depth() {
    // `--layers`-free zoo model, but tiny run: 2 prompt tokens, 1 decode step.
    cmd()
        .args([
            "bench",
            "smollm2-135m",
            "--prompt",
            "2",
            "--depth",
            "2",
            "--gen",
            "1",
        ])
        .args([
            "--reps",
            "1",
            "--warmup",
            "0",
            "--threads",
            "2",
            "--weights",
            "bf16",
            "--json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "\"weights_source\": \"random (seed 0)\"",
        ));
}

fn fails_with(args: &[&str], needle: &str) {
    cmd()
        .arg("bench")
        .args(args)
        .assert()
        .failure()
        .stderr(predicate::str::contains(needle))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn bad_input_is_one_clear_error() {
    let f = fixture();
    let f = f.to_str().unwrap();
    fails_with(&[f, "--threads", "0"], "--threads 0");
    fails_with(&[f, "--reps", "0"], "--reps 0");
    fails_with(
        &[f, "--prompt", "4096", "--threads", "1"],
        "max_position_embeddings = 128",
    );
    fails_with(
        &[f, "--depth", "127", "--gen", "5", "--prompt", "1"],
        "depth + gen",
    );
    fails_with(&[f, "--weights", "q4_0"], "f32, f16 or bf16");
    fails_with(
        &["no-such-model"],
        "no config file, folder or built-in model",
    );
    fails_with(&[f, "--hw", "no-such-device"], "no-such-device");
}

#[test]
fn too_large_for_memory_is_refused_up_front() {
    // Qwen2.5-7B at f32 with a 32k context is far beyond this machine's memory: refused with the
    // sizes, before any allocation.
    cmd()
        .args([
            "bench",
            "qwen2.5-7b",
            "--weights",
            "f32",
            "--prompt",
            "32768",
            "--gen",
            "0",
        ])
        .args(["--threads", "1", "--reps", "1"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicate::str::contains("GiB"))
        .stderr(predicate::str::contains("weights"));
}

#[test]
fn broken_checkpoint_names_the_tensor_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    cmd()
        .arg("bench")
        .arg(dir.path())
        .args(SMALL)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "model.safetensors: not a readable safetensors file",
        ));
}
