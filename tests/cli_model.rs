//! CLI tests of `models`, `params` and `analyze`, including bad input: every bad config or
//! option gives one `error:` line naming the file and the field, exit code 1, no panic.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;

fn bin() -> Command {
    Command::cargo_bin("rooflinebench").unwrap()
}

fn write_config(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"{"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 1536,
    "vocab_size": 32000, "tie_word_embeddings": true}"#;

/// Runs with a bad config and checks the single error line names the file and `needle`.
fn assert_bad_config(text: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(&dir, "config.json", text);
    for sub in ["params", "analyze"] {
        let out = bin().arg(sub).arg(&p).assert().code(1);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{sub}: expected one line, got {stderr:?}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(lines[0].contains(&*p.to_string_lossy()), "{stderr}");
        assert!(
            lines[0].contains(needle),
            "{sub}: {stderr} lacks {needle:?}"
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn params_json_has_exactly_the_published_counts() {
    let out = bin()
        .args(["params", "qwen2.5-0.5b", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["active", "embedding", "non_embedding", "total"]);
    assert_eq!(v["total"], 494_032_768u64);
    assert_eq!(v["non_embedding"], 357_898_112u64);
    assert_eq!(v["embedding"], 136_134_656u64);
    assert_eq!(v["active"], 494_032_768u64);
}

#[test]
fn params_human_and_from_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_config(&dir, "config.json", GOOD);
    bin()
        .arg("params")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("total").and(predicate::str::contains("GQA 8/2")));
}

#[test]
fn models_lists_every_zoo_entry() {
    let out = bin().arg("models").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for name in [
        "pythia-160m",
        "smollm2-135m",
        "qwen2.5-0.5b",
        "qwen3-30b-a3b",
        "deepseek-v2-lite",
        "mistral-7b",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(text.contains("MLA") && text.contains("64x top-6 +2 shared"));
    let out = bin().args(["models", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 19);
}

#[test]
fn analyze_json_totals_equal_the_sum_of_rows() {
    for extra in [&["--per-layer"][..], &[][..]] {
        let out = bin()
            .args([
                "analyze",
                "smollm2-135m",
                "--phase",
                "decode",
                "--context",
                "512",
                "--json",
            ])
            .args(extra)
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_eq!(v["schema_version"], 1);
        let sec = &v["sections"][0];
        for key in ["flops", "weight_bytes", "kv_read_bytes", "bytes"] {
            let sum: u64 = sec["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[key].as_u64().unwrap())
                .sum();
            assert_eq!(sum, v["totals"][key].as_u64().unwrap(), "{key}");
        }
        // 30 layers x 3 KV heads x 64 x 2 (K, V) x 2 bytes x 512 positions
        assert_eq!(v["totals"]["kv_read_bytes"], 30 * 3 * 64 * 2 * 2 * 512);
    }
}

#[test]
fn analyze_table_csv_markdown_and_scenario() {
    bin()
        .args(["analyze", "deepseek-v2-lite", "--seq", "64"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("mla_q_absorb")
                .and(predicate::str::contains("moe_experts"))
                .and(predicate::str::contains("MLA absorbed")),
        );
    let out = bin()
        .args([
            "analyze",
            "qwen2.5-0.5b",
            "--csv",
            "--per-layer",
            "--weights",
            "q4_k_m",
        ])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("phase,layer,op,compute,flops"));
    assert_eq!(lines.count(), 24 * 16 + 3);
    bin()
        .args(["analyze", "llama-3.2-1b", "--markdown", "--kv", "q8_0"])
        .assert()
        .success()
        .stdout(predicate::str::contains("| attn_score | int8 |"));
    bin()
        .args(["analyze", "smollm2-135m", "--scenario", "SISO"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("127 decode steps at contexts 129..=255")
                .and(predicate::str::contains("request total")),
        );
    bin()
        .args([
            "analyze",
            "smollm2-1.7b",
            "--layers",
            "21",
            "--kv-heads",
            "8",
            "--scenario",
            "512/8/4",
            "--json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"attention\": \"GQA 32/8\""));
}

#[test]
fn bad_config_malformed_json() {
    assert_bad_config("{\"hidden_size\": 5", "malformed JSON");
}

#[test]
fn bad_config_missing_field() {
    assert_bad_config(
        r#"{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 8,
            "intermediate_size": 64, "vocab_size": 100}"#,
        "`hidden_size`",
    );
}

#[test]
fn bad_config_zero_heads() {
    assert_bad_config(
        &GOOD.replace("\"num_attention_heads\": 8", "\"num_attention_heads\": 0"),
        "`num_attention_heads`",
    );
}

#[test]
fn bad_config_inconsistent_heads() {
    assert_bad_config(
        &GOOD.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
        "`num_key_value_heads` = 3",
    );
    assert_bad_config(
        &GOOD
            .replace("\"num_attention_heads\": 8", "\"num_attention_heads\": 6")
            .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3")
            .replace("512", "500"),
        "`hidden_size` = 500 is not divisible by `num_attention_heads`",
    );
}

#[test]
fn bad_config_absurd_and_negative_sizes() {
    assert_bad_config(
        &GOOD.replace("32000", "18446744073709551615"),
        "`vocab_size`",
    );
    assert_bad_config(
        &GOOD.replace("\"hidden_size\": 512", "\"hidden_size\": -512"),
        "`hidden_size`",
    );
    assert_bad_config(
        &GOOD.replace(
            "\"num_hidden_layers\": 4",
            "\"num_hidden_layers\": 100000000",
        ),
        "`num_hidden_layers`",
    );
}

#[test]
fn bad_options_name_the_option() {
    for (args, needle) in [
        (
            &["--weights", "q3_k_m"][..],
            "--weights: unknown weight format \"q3_k_m\"",
        ),
        (&["--kv", "q4_k"][..], "--kv: unknown KV-cache format"),
        (&["--scenario", "huge"][..], "--scenario: unknown scenario"),
        (
            &["--phase", "decode", "--context", "0"][..],
            "option `context` = 0",
        ),
        (&["--seq", "2000000000000"][..], "option `seq`"),
        (&["--batch", "0"][..], "option `batch` = 0"),
        (
            &["--kv-heads", "4"][..],
            "`num_attention_heads` = 9 is not divisible",
        ),
    ] {
        let out = bin()
            .args(["analyze", "smollm2-135m"])
            .args(args)
            .assert()
            .code(1);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    bin()
        .args(["analyze", "no-such-model"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no config file, folder or built-in model named \"no-such-model\"",
        ));
}
