//! CLI tests of `run`, `report` and `compare`: the result schema, the report files, the
//! rankings, and one clear error line (naming the file) with nothing written on bad input.
//!
//! Hardware comes from hand-written fixture profiles (tests/fixtures/report/), never from a
//! probe, and measured points from a fixture file, so nothing here depends on timing.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(name)
}

fn bin() -> Command {
    Command::cargo_bin("rooflinebench").unwrap()
}

/// `run` on a fixture device with short scenarios (fast in debug builds), no PNG.
fn run_into(dir: &Path, hw: &str, measurements: bool) {
    let mut cmd = bin();
    cmd.args(["run", "--hw"])
        .arg(fixture(hw))
        .args(["--scenario", "SISO", "--scenario", "64/8", "--no-png", "-o"])
        .arg(dir);
    if measurements {
        cmd.arg("--measurements").arg(fixture("measurements.json"));
    } else {
        // The engine's own measurement is tested once, in `run_measures_with_the_engine`.
        cmd.arg("--no-engine");
    }
    cmd.assert()
        .success()
        .stdout(predicate::str::contains("report: "))
        .stdout(predicate::str::contains("TTFT"));
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn run_writes_a_versioned_result_and_a_self_contained_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_into(&out, "test-cpu.json", true);
    let doc = read_json(&out.join("result.json"));
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["kind"], "rooflinebench-result");
    for key in [
        "provenance",
        "hardware",
        "model",
        "cost_options",
        "scenarios",
        "measurements",
        "potential",
        "sweeps",
        "warnings",
    ] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
    assert_eq!(doc["provenance"]["tool"], "rooflinebench");
    assert!(doc["provenance"]["created_utc"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(doc["measurements"].as_array().unwrap().len(), 3);
    // Both ceiling sources of the profile are predicted.
    let preds = doc["scenarios"][0]["predictions"].as_array().unwrap();
    let sources: Vec<&str> = preds
        .iter()
        .map(|p| p["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["measured", "theoretical"]);
    // Measured points get Phi against both sources, and a joined prediction.
    let measured: Vec<&Value> = doc["potential"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["origin"] == "measured")
        .collect();
    assert_eq!(measured.len(), 6);
    assert!(measured.iter().all(|r| r["predicted_seconds"].is_number()));

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for needle in [
        "<svg",
        "data-tip=",
        "Relative Inference Potential",
        "inference-potential region of decode@128",
        "Scenarios (roofline predictions)",
        "Measurements",
        "Ridge points",
    ] {
        assert!(html.contains(needle), "report.html lacks {needle:?}");
    }
    // Self-contained: no external resource (the SVG namespace is an identifier, not a fetch).
    let external = html
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .contains("http");
    assert!(!external, "report.html references an external resource");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| scenario |"));
    assert!(md.contains("](plots/scenarios.svg)"));
    assert!(out.join("plots/scenarios.svg").exists());
    assert!(out.join("potential.csv").exists());
    assert!(out.join("hardware.json").exists());
}

#[test]
fn report_renders_png_plots_from_a_result() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    run_into(&a, "rpi5-paper.json", false);
    let rep = tmp.path().join("rep");
    bin()
        .args(["report"])
        .arg(a.join("result.json"))
        .arg("-o")
        .arg(&rep)
        .assert()
        .success()
        .stdout(predicate::str::contains("report.html"));
    let png = std::fs::read(rep.join("plots/scenarios.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "{} bytes", png.len());
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("](plots/scenarios.png)"));
    let svg = std::fs::read_to_string(rep.join("plots/scenarios.svg")).unwrap();
    assert!(svg.contains("Operational intensity (FLOP/byte)"));
    // The paper's RPi5 theoretical ridge: 153.6 / 17.1 = 8.98 FLOP/byte.
    assert!(svg.contains("ridge 8.98"), "ridge label missing");
}

#[test]
fn report_overlays_several_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_into(&a, "rpi5-paper.json", false);
    run_into(&b, "rtx3090-paper.json", false);
    let rep = tmp.path().join("rep");
    bin()
        .arg("report")
        .arg(a.join("result.json"))
        .arg(b.join("result.json"))
        .args(["--no-png", "-o"])
        .arg(&rep)
        .assert()
        .success();
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    assert!(html.contains("Across devices"));
    assert!(html.contains("efficiency trap"));
    assert!(rep.join("plots/devices.svg").exists());
}

/// Every bad result file: exit 1, one `error:` line naming the file, nothing written.
#[test]
fn report_rejects_bad_results_with_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    run_into(&good, "test-cpu.json", false);
    let text = std::fs::read_to_string(good.join("result.json")).unwrap();

    let mut newer: Value = serde_json::from_str(&text).unwrap();
    newer["schema_version"] = 99.into();
    let mut zero: Value = serde_json::from_str(&text).unwrap();
    zero["hardware"]["bandwidth"][0]["bytes_per_second"] = 0.0.into();
    let mut nan_timing: Value = serde_json::from_str(&text).unwrap();
    nan_timing["measurements"] = serde_json::json!([{
        "label": "x", "scope": "phase", "phase": "decode", "context": 1, "tokens": 1,
        "batch": 1, "threads": 1, "engine": "t", "compute": "f32", "flops": 1, "bytes": 1,
        "seconds": {"median": -1.0, "min": 1.0, "max": 1.0, "samples": []}
    }]);
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty.json", String::new(), "empty file"),
        (
            "truncated.json",
            text[..text.len() / 2].to_string(),
            "malformed JSON",
        ),
        ("newer.json", newer.to_string(), "schema_version 99"),
        (
            "profile.json",
            std::fs::read_to_string(fixture("test-cpu.json")).unwrap(),
            "hardware profile, not a rooflinebench result",
        ),
        (
            "zero.json",
            zero.to_string(),
            "bandwidth[0].bytes_per_second",
        ),
        (
            "timing.json",
            nan_timing.to_string(),
            "measurements[0].seconds.median",
        ),
    ];
    for (name, body, expect) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, body).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        let assert = bin()
            .arg("report")
            .arg(good.join("result.json"))
            .arg(&p)
            .arg("-o")
            .arg(&out)
            .assert()
            .code(1);
        let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: file not named: {stderr}");
        assert!(stderr.contains(expect), "{name}: {stderr}");
        assert!(!out.exists(), "{name}: output written despite the error");
    }
    bin()
        .args(["report", "/nonexistent/result.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/result.json"));
}

#[test]
fn run_rejects_bad_measurements_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pts: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("measurements.json")).unwrap())
            .unwrap();
    pts[1]["seconds"]["median"] = 0.0.into();
    let p = tmp.path().join("m.json");
    std::fs::write(&p, pts.to_string()).unwrap();
    let out = tmp.path().join("out");
    bin()
        .args(["run", "--hw"])
        .arg(fixture("test-cpu.json"))
        .arg("--measurements")
        .arg(&p)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("[1].seconds.median"))
        .stderr(predicate::str::contains("m.json"));
    assert!(!out.exists());
}

#[test]
fn compare_ranks_models_on_one_device_and_says_what_it_ranks() {
    let assert = bin()
        .args(["compare", "smollm2-135m", "qwen2.5-0.5b", "--hw"])
        .arg(fixture("test-cpu.json"))
        .args(["--scenario", "SISO", "--json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(v["mode"], "models_on_one_device_predicted");
    assert!(v["note"].as_str().unwrap().contains("roofline-predicted"));
    let rows = v["ranking"].as_array().unwrap();
    // 2 models x 3 points (prefill, decode, request) x 2 ceiling sources.
    assert_eq!(rows.len(), 12);
    // Within one (group, ceilings, side) the ranks are 1..n in Phi order.
    for r in rows.iter().filter(|r| r["rank"] == 2) {
        let first = rows
            .iter()
            .find(|q| {
                q["rank"] == 1
                    && q["group"] == r["group"]
                    && q["ceilings"] == r["ceilings"]
                    && q["side"] == r["side"]
            })
            .expect("a rank 1 in the same group");
        assert!(first["phi"].as_f64().unwrap() <= r["phi"].as_f64().unwrap());
    }
    // Text mode names the caveat too.
    bin()
        .args(["compare", "smollm2-135m", "qwen2.5-0.5b", "--hw"])
        .arg(fixture("test-cpu.json"))
        .assert()
        .success()
        .stdout(predicate::str::contains("never ranked together"))
        .stdout(predicate::str::contains("no measurements"));
}

#[test]
fn compare_across_devices_shows_each_ridge() {
    let hw = format!(
        "{},{}",
        fixture("rpi5-paper.json").display(),
        fixture("rtx3090-paper.json").display()
    );
    let assert = bin()
        .args(["compare", "smollm2-135m", "--hw", &hw, "--json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(v["mode"], "one_workload_across_devices");
    let ridges: Vec<(String, String, f64)> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().to_string(),
                d["ceilings"].as_str().unwrap().to_string(),
                d["ridge_flops_per_byte"].as_f64().unwrap(),
            )
        })
        .collect();
    // The paper's finding 5 range: RPi5 theoretical f32 ridge 8.98, RTX 3090 f16 38.0.
    let find = |dev: &str, src: &str| {
        ridges
            .iter()
            .find(|r| r.0 == dev && r.1 == src)
            .map(|r| r.2)
            .unwrap()
    };
    assert!((find("rpi5-paper", "theoretical") - 8.982).abs() < 1e-3);
    assert!((find("rtx3090-paper", "theoretical") - 38.005).abs() < 1e-3);
}

/// A spec-sheet profile without a compute ceiling (Apple publishes none for M3) is left out of
/// a cross-device comparison with a warning naming it; alone, it is an error.
#[test]
fn compare_leaves_out_devices_without_a_roofline() {
    let assert = bin()
        .args(["compare", "smollm2-135m", "--hw", "rpi5,apple-m3", "--json"])
        .assert()
        .success()
        .stderr(predicate::str::contains("apple-m3 is left out"));
    let v: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    let devices: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert!(
        devices.contains(&"rpi5") && !devices.contains(&"apple-m3"),
        "{devices:?}"
    );
    bin()
        .args(["compare", "smollm2-135m", "--hw", "apple-m3"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("apple-m3"));
}

#[test]
fn compare_ranks_measured_points_from_results() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    run_into(&a, "test-cpu.json", true);
    bin()
        .args(["compare", "--results"])
        .arg(a.join("result.json"))
        .assert()
        .success()
        .stdout(predicate::str::contains("measured points"))
        .stdout(predicate::str::contains("decode@128"));
    // A result without measurements has nothing to rank: a clear error.
    let b = tmp.path().join("b");
    run_into(&b, "test-cpu.json", false);
    bin()
        .args(["compare", "--results"])
        .arg(b.join("result.json"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no measured points"));
}

/// Without `--measurements` or `--no-engine`, `run` measures the model with the built-in engine
/// and the result carries measured phase and operator points.
#[test]
fn run_measures_with_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    bin()
        .args(["run", "--hw"])
        .arg(fixture("test-cpu.json"))
        .args(["--weights", "f32", "--scenario", "64/8", "--no-png", "-o"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("measured points: "));
    let v = read_json(&out.join("result.json"));
    let text = v.to_string();
    assert!(
        text.contains("\"scope\":\"phase\""),
        "no measured phase point"
    );
    assert!(
        text.contains("\"scope\":\"operator\""),
        "no measured operator point"
    );
    assert!(
        !text.contains("no_engine"),
        "engine warning in an engine run"
    );
}
