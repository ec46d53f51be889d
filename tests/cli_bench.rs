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
    fails_with(
        &[f, "--weights", "q4_0"],
        "quantized formats are for random weights",
    );
    fails_with(&[f, "--weights", "q3_x"], "expected f32, f16, bf16, q8_0");
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

/// A tiny llama-shaped synthetic GGUF in `format` (our writer: real block layouts, minimal
/// vocabulary), with widths multiple of 256 so every block format applies.
fn synthetic_gguf(dir: &Path, format: &str) -> PathBuf {
    use rooflinebench_gguf::arch::ArchConfig;
    use rooflinebench_gguf::writer::{write_synthetic, WeightFormat};
    let cfg: serde_json::Value = serde_json::from_str(
        r#"{"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
            "vocab_size": 300, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": true}"#,
    )
    .unwrap();
    let cfg = ArchConfig::from_hf(&cfg).unwrap();
    let p = dir.join(format!("tiny-{format}.gguf"));
    let mut f = std::fs::File::create(&p).unwrap();
    write_synthetic(&cfg, WeightFormat::parse(format).unwrap(), 3, &mut f).unwrap();
    p
}

/// Byte offset of tensor `name`'s ggml type id in the header of `bytes`.
fn type_offset(bytes: &[u8], name: &str) -> usize {
    let pos = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("tensor name in header");
    let after = pos + name.len();
    let n_dims = u32::from_le_bytes(bytes[after..after + 4].try_into().unwrap()) as usize;
    after + 4 + 8 * n_dims
}

#[test]
fn bench_runs_a_quantized_gguf_with_its_stored_formats() {
    let dir = tempfile::tempdir().unwrap();
    let hw = profile(dir.path());
    let g = synthetic_gguf(dir.path(), "q4_0");
    cmd()
        .arg("bench")
        .arg(&g)
        .args(SMALL)
        .args(["--threads", "1", "--hw"])
        .arg(&hw)
        .assert()
        .success()
        .stdout(predicate::str::contains("tiny-q4_0 (llama): q4_0"))
        .stdout(predicate::str::contains("q_proj"))
        .stderr(predicate::str::contains("disagree").not());
    // Random weights in real blocks for a config: the label names the format.
    cmd()
        .args(["bench", fixture().to_str().unwrap(), "--random-weights"])
        .args(["--weights", "q8_0"])
        .args(SMALL)
        .args(["--threads", "1", "--hw"])
        .arg(&hw)
        .assert()
        .success()
        .stdout(predicate::str::contains("q8_0"));
}

#[test]
fn bad_gguf_is_one_clear_error_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let hw = profile(dir.path());
    let g = synthetic_gguf(dir.path(), "q4_0");
    let bytes = std::fs::read(&g).unwrap();
    let run = |p: &Path, needles: &[&str]| {
        let out = cmd()
            .arg("bench")
            .arg(p)
            .args(SMALL)
            .args(["--threads", "1", "--hw"])
            .arg(&hw)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: should fail", p.display());
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    };
    // Truncated: the tensor data ends early.
    let t = dir.path().join("truncated.gguf");
    std::fs::write(&t, &bytes[..bytes.len() * 2 / 3]).unwrap();
    run(&t, &["truncated.gguf", "beyond the end of the file"]);
    // A ggml type id that does not exist.
    let mut b = bytes.clone();
    let at = type_offset(&b, "blk.0.attn_q.weight");
    b[at..at + 4].copy_from_slice(&999u32.to_le_bytes());
    let u = dir.path().join("unknown-type.gguf");
    std::fs::write(&u, &b).unwrap();
    run(
        &u,
        &[
            "unknown-type.gguf",
            "blk.0.attn_q.weight",
            "unknown ggml type 999",
        ],
    );
    // A real ggml type with the same block size the engine has no kernel for (IQ4_NL, 20).
    let mut b = bytes.clone();
    let at = type_offset(&b, "blk.1.ffn_down.weight");
    b[at..at + 4].copy_from_slice(&20u32.to_le_bytes());
    let n = dir.path().join("iq4.gguf");
    std::fs::write(&n, &b).unwrap();
    run(
        &n,
        &["iq4.gguf", "blk.1.ffn_down.weight", "IQ4_NL", "cannot run"],
    );
}
