//! CLI tests of `import llama-bench` on hand-written fixtures in llama-bench's format
//! (tests/fixtures/llama-bench/README.md): the result schema is the one `report` reads, the
//! work comes from the cost model, and bad input gives one error line naming file and field.

use assert_cmd::Command;
use std::path::PathBuf;

fn bin() -> Command {
    Command::cargo_bin("rooflinebench").unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn toy_hw() -> PathBuf {
    fixture("sweep/toy-cpu.json")
}

fn import(file: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let out = bin()
        .args(["import", "llama-bench"])
        .arg(fixture(file))
        .arg("--hw")
        .arg(toy_hw())
        .arg("--json")
        .args(extra)
        .assert()
        .success();
    let o = out.get_output();
    (
        serde_json::from_slice(&o.stdout).unwrap(),
        String::from_utf8(o.stderr.clone()).unwrap(),
    )
}

#[test]
fn recent_llama_bench_json_becomes_a_result_document() {
    let (doc, stderr) = import("llama-bench/qwen2.5-0.5b-q8_0.json", &[]);
    assert_eq!(doc["kind"], "rooflinebench-result");
    assert_eq!(doc["model"]["name"], "qwen2.5-0.5b");
    assert_eq!(doc["model"]["weights"], "q8_0");
    assert!(
        stderr.contains("taken as zoo model qwen2.5-0.5b"),
        "never silent: {stderr}"
    );
    let m = doc["measurements"].as_array().unwrap();
    assert_eq!(m.len(), 5);
    let by = |label: &str| m.iter().find(|p| p["label"] == label).unwrap().clone();
    let tg = by("#4 tg128 @ d512");
    assert_eq!(tg["phase"], "decode");
    assert_eq!(
        tg["context"], 513,
        "first step attends to the 512 cached plus itself"
    );
    assert_eq!(tg["tokens"], 128);
    assert_eq!(tg["engine"], "llama.cpp b5163 (8cf427ff) CPU");
    assert_eq!(
        tg["compute"], "int8",
        "Q8_0 matrices run on int8 dot products"
    );
    assert_eq!(
        tg["seconds"]["samples"].as_array().unwrap().len(),
        3,
        "all samples kept"
    );
    // Decode at depth 512 does more work than decode from an empty cache.
    assert!(tg["flops"].as_u64() > by("#2 tg128")["flops"].as_u64());
    let pg = by("#5 pp512+tg128");
    assert_eq!(pg["scope"], "request");
    // The request is the prefill plus the steps after it.
    assert!(pg["flops"].as_u64().unwrap() > by("#1 pp512")["flops"].as_u64().unwrap());
    // Every measured point has a prediction of exactly the work timed.
    for r in doc["potential"].as_array().unwrap() {
        if r["origin"] == "measured" {
            assert!(r["predicted_seconds"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
}

#[test]
fn pitfall_15_old_llama_bench_without_n_depth_is_flagged() {
    let (doc, stderr) = import("llama-bench/smollm2-135m-old.jsonl", &[]);
    assert!(stderr.contains("empty KV cache"), "{stderr}");
    assert!(stderr.contains("PITFALLS.md #15"), "{stderr}");
    assert_eq!(doc["model"]["name"], "smollm2-135m");
    assert_eq!(
        doc["model"]["weights"], "q4_0",
        "`mostly Q4_0` label understood"
    );
    let w = doc["warnings"].as_array().unwrap();
    assert!(w
        .iter()
        .any(|x| x["code"] == "pitfall_15_decode_from_empty_cache"));
    let tg = doc["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "decode")
        .unwrap()
        .clone();
    assert_eq!(tg["context"], 1);
}

#[test]
fn the_output_is_read_by_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    bin()
        .args(["import", "llama-bench"])
        .arg(fixture("llama-bench/qwen2.5-0.5b-q8_0.json"))
        .arg("--hw")
        .arg(toy_hw())
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    bin()
        .arg("report")
        .arg(&out)
        .arg("-o")
        .arg(dir.path().join("rep"))
        .arg("--no-png")
        .assert()
        .success();
    let md = std::fs::read_to_string(dir.path().join("rep/report.md")).unwrap();
    assert!(
        md.contains("#4 tg128 @ d512"),
        "measured point in the report"
    );
}

#[test]
fn model_override_and_weights_override() {
    let (doc, stderr) = import(
        "llama-bench/smollm2-135m-old.jsonl",
        &["--model", "smollm2-360m", "--weights", "q8_0"],
    );
    assert_eq!(doc["model"]["name"], "smollm2-360m");
    assert_eq!(doc["model"]["weights"], "q8_0");
    assert!(
        stderr.contains("is --model the model that ran?"),
        "{stderr}"
    );
}

fn one_error_line(args: &[&str], needles: &[&str]) {
    let out = bin().args(args).assert().code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{stderr} lacks {n:?}");
    }
    assert!(!stderr.contains("panicked"));
}

#[test]
fn malformed_input_is_one_line_naming_file_and_field() {
    let bad = fixture("llama-bench/malformed.json");
    let bad = bad.to_str().unwrap();
    one_error_line(
        &["import", "llama-bench", bad, "--hw", "rpi5"],
        &["malformed.json", "`n_prompt`"],
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc.jsonl");
    std::fs::write(&p, "{\"n_prompt\": 512, \"n_gen\": 0,\n").unwrap();
    one_error_line(
        &["import", "llama-bench", p.to_str().unwrap(), "--hw", "rpi5"],
        &["trunc.jsonl", "line 1", "malformed JSON"],
    );
    let p = dir.path().join("iq.json");
    std::fs::write(
        &p,
        r#"[{"n_prompt":8,"n_gen":0,"samples_ns":[1000],"model_type":"llama 1B IQ2_XS - 2.3125 bpw","model_n_params":1235814400}]"#,
    )
    .unwrap();
    one_error_line(
        &["import", "llama-bench", p.to_str().unwrap(), "--hw", "rpi5"],
        &["iq.json", "`model_type`", "--weights"],
    );
    let p = dir.path().join("unknown.json");
    std::fs::write(
        &p,
        r#"[{"n_prompt":8,"n_gen":0,"samples_ns":[1000],"model_type":"llama 3B F16","model_n_params":3}]"#,
    )
    .unwrap();
    one_error_line(
        &["import", "llama-bench", p.to_str().unwrap(), "--hw", "rpi5"],
        &["unknown.json", "--model"],
    );
}
