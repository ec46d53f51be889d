//! CLI tests of `sweep`: tiny sweeps on a hand-written device profile (no probe runs), the
//! resumability contract (finished points are reused, a deleted point alone is recomputed, a
//! changed profile invalidates every point), and bad input as one error line.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn bin() -> Command {
    Command::cargo_bin("rooflinebench").unwrap()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sweep")
        .join(name)
        .display()
        .to_string()
}

fn depth_sweep(out: &Path, extra: &[&str]) -> String {
    let o = bin()
        .args(["sweep", "depth", "--model"])
        .arg(fixture("tiny-llama.json"))
        .arg("--hw")
        .arg(fixture("toy-cpu.json"))
        .arg("-o")
        .arg(out)
        .args(["--layers", "2..6:2", "--scenario", "16/4", "--no-png"])
        .args(extra)
        .assert()
        .success();
    String::from_utf8(o.get_output().stdout.clone()).unwrap()
}

fn point_files(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("points/depth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn created(p: &Path) -> String {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["created_utc"].as_str().unwrap().to_string() + v["fingerprint"].as_str().unwrap()
}

#[test]
fn tiny_depth_sweep_writes_points_table_csv_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    let stdout = depth_sweep(&out, &[]);
    assert!(
        stdout.contains("3 points (0 already done, 3 computed)"),
        "{stdout}"
    );
    assert!(stdout.contains("4 layers"), "{stdout}");
    let files = point_files(&out);
    assert_eq!(files.len(), 3);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(v["kind"], "rooflinebench-sweep-point");
    assert_eq!(v["layers"], 2);
    assert_eq!(v["hardware"], "toy-cpu");
    assert_eq!(v["ceiling_source"], "measured");
    let r = &v["predicted"];
    // Request = prefill + decode steps (generate 4 -> 3 steps after the prefill).
    assert_eq!(
        r["request"]["flops"].as_u64().unwrap(),
        r["prefill"]["flops"].as_u64().unwrap() + r["decode"]["flops"].as_u64().unwrap()
    );
    let csv = std::fs::read_to_string(out.join("depth.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + 3 points: {csv}");
    assert!(csv.lines().next().unwrap().contains("request_intensity"));
    for c in ["sweep-depth-intensity.svg", "sweep-depth-performance.svg"] {
        let svg = std::fs::read_to_string(out.join("plots").join(c)).unwrap();
        assert!(svg.contains("layers"), "{c} has its axis label");
    }
}

#[test]
fn a_rerun_recomputes_only_the_deleted_point() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    depth_sweep(&out, &[]);
    let files = point_files(&out);
    let before: Vec<String> = files.iter().map(|f| created(f)).collect();
    // Nothing to do on a re-run.
    let s = depth_sweep(&out, &[]);
    assert!(s.contains("(3 already done, 0 computed)"), "{s}");
    // An interrupted write leaves a temporary file: it is cleaned, never read as a point.
    std::fs::write(out.join("points/depth/.x.json.tmp999"), "{").unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let s = depth_sweep(&out, &[]);
    assert!(s.contains("(2 already done, 1 computed)"), "{s}");
    let after: Vec<String> = point_files(&out).iter().map(|f| created(f)).collect();
    assert_eq!(after.len(), 3);
    assert_eq!(after[0], before[0], "untouched point reused");
    assert_eq!(after[2], before[2], "untouched point reused");
    assert_ne!(after[1], before[1], "deleted point recomputed");
    assert!(!out.join("points/depth/.x.json.tmp999").exists());
}

#[test]
fn a_changed_profile_invalidates_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    depth_sweep(&out, &[]);
    let o = bin()
        .args(["sweep", "depth", "--model"])
        .arg(fixture("tiny-llama.json"))
        .args(["--hw", "rpi5", "-o"])
        .arg(&out)
        .args(["--layers", "2..6:2", "--scenario", "16/4", "--no-png"])
        .assert()
        .success();
    let s = String::from_utf8(o.get_output().stdout.clone()).unwrap();
    assert!(s.contains("(0 already done, 3 computed)"), "{s}");
}

#[test]
fn builtin_engine_measures_each_point_after_a_real_prefill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    depth_sweep(
        &out,
        &[
            "--engine",
            "builtin",
            "--threads",
            "1",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--gen-steps",
            "2",
            "--weights",
            "f32",
        ],
    );
    let files = point_files(&out);
    assert_eq!(files.len(), 3);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let m = &v["measured"];
    assert!(
        m["engine"]
            .as_str()
            .unwrap()
            .starts_with("rooflinebench-engine"),
        "{m}"
    );
    assert_eq!(
        m["decode_depth"], 16,
        "decode after a prefill to the prompt's depth"
    );
    assert_eq!(m["decode_steps"], 2);
    assert_eq!(m["prefill_seconds"]["samples"].as_array().unwrap().len(), 2);
    assert!(!m["points"].as_array().unwrap().is_empty());
}

#[test]
fn attention_and_devices_families_on_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    let o = bin()
        .args(["sweep", "attention", "devices", "--hw"])
        .arg(fixture("toy-cpu.json"))
        .args([
            "--devices",
            "rpi5,rtx3090",
            "--scenario",
            "16/4",
            "--no-png",
            "-o",
        ])
        .arg(&out)
        .assert()
        .success();
    let s = String::from_utf8(o.get_output().stdout.clone()).unwrap();
    assert!(s.contains("sweep attention: 3 points"), "{s}");
    assert!(
        s.contains("MLA shape assumed"),
        "the MLA stand-in is labelled: {s}"
    );
    assert!(
        s.contains("sweep devices: 3 points"),
        "two devices plus this profile: {s}"
    );
    let csv = std::fs::read_to_string(out.join("attention.csv")).unwrap();
    for a in ["GQA", "MHA", "MLA"] {
        assert!(csv.contains(&format!(",{a},")), "{a} in {csv}");
    }
    assert!(out.join("plots/sweep-devices-roofline.svg").exists());
}

fn one_error_line(args: &[&str], needle: &str) {
    let o = bin().args(args).assert().code(1);
    let e = String::from_utf8(o.get_output().stderr.clone()).unwrap();
    let lines: Vec<&str> = e.lines().filter(|l| !l.starts_with("sweep:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{e}"
    );
}

#[test]
fn bad_options_are_one_error_line() {
    let hw = fixture("toy-cpu.json");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    one_error_line(
        &[
            "sweep", "depth", "--hw", &hw, "-o", &out, "--layers", "0..4",
        ],
        "--layers",
    );
    // Only a build without the feature refuses the engine.
    #[cfg(not(feature = "llamacpp"))]
    one_error_line(
        &[
            "sweep", "depth", "--hw", &hw, "-o", &out, "--engine", "llamacpp",
        ],
        "llamacpp",
    );
    one_error_line(
        &["sweep", "depth", "--hw", &hw, "-o", &out, "--nodes"],
        "--nodes",
    );
    one_error_line(
        &["sweep", "depth", "--hw", "no-such-device", "-o", &out],
        "no-such-device",
    );
    one_error_line(
        &[
            "sweep",
            "scenarios",
            "--hw",
            &hw,
            "-o",
            &out,
            "--scenario",
            "lots",
        ],
        "--scenario",
    );
}

/// Needs the `llamacpp` feature (llama.cpp built from source): `cargo test --features llamacpp`.
#[cfg(feature = "llamacpp")]
#[test]
fn llamacpp_engine_measures_a_synthetic_gguf_after_a_real_prefill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    depth_sweep(
        &out,
        &[
            "--engine",
            "llamacpp",
            "--threads",
            "1",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--gen-steps",
            "2",
        ],
    );
    let files = point_files(&out);
    assert_eq!(files.len(), 3);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let m = &v["measured"];
    assert!(
        m["engine"].as_str().unwrap().starts_with("llama.cpp"),
        "{m}"
    );
    assert_eq!(m["decode_depth"], 16);
    assert_eq!(m["decode_seconds"]["samples"].as_array().unwrap().len(), 2);
    let pts = m["points"].as_array().unwrap();
    assert_eq!(pts[1]["context"], 17, "first decode step after 16 cached");
    assert!(
        out.join("cache").read_dir().unwrap().count() >= 3,
        "one GGUF per depth"
    );
}
