//! llama.cpp per-node timings through ggml's graph-evaluation callback (`sweep --engine
//! llamacpp --nodes`), on a tiny synthetic GGUF written by our GGUF writer. Needs the
//! `llamacpp` feature (llama.cpp built from source): `scripts/test-llamacpp.sh`.
#![cfg(feature = "llamacpp")]

use assert_cmd::Command;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sweep")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn llamacpp_nodes_map_onto_our_operators_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    let o = Command::cargo_bin("rooflinebench")
        .unwrap()
        .args(["sweep", "depth", "--model"])
        .arg(fixture("tiny-llama.json"))
        .arg("--hw")
        .arg(fixture("toy-cpu.json"))
        .arg("-o")
        .arg(&out)
        .args(["--layers", "2", "--scenario", "16/4", "--no-png"])
        .args(["--engine", "llamacpp", "--nodes", "--threads", "1"])
        .args(["--reps", "2", "--warmup", "0", "--gen-steps", "2"])
        .assert()
        .success();
    let stderr = String::from_utf8(o.get_output().stderr.clone()).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(out.join("llamacpp-nodes/depth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one node file per measured point");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(v["kind"], "rooflinebench-llamacpp-nodes");
    assert!(
        !v["llama_cpp"]["ggml_version"].as_str().unwrap().is_empty(),
        "build info recorded: {}",
        v["llama_cpp"]
    );
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "prefill and decode");
    for ph in phases {
        let kinds: Vec<&str> = ph["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["label"].as_str().unwrap())
            .collect();
        for k in ["q_proj", "ffn_up", "ffn_down", "lm_head"] {
            assert!(kinds.contains(&k), "{k} in {kinds:?}");
        }
        let up = ph["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["label"] == "ffn_up")
            .unwrap();
        assert_eq!(up["instances"], 2, "one per layer");
        assert!(
            up["flops"].as_u64().unwrap() > 0,
            "work from the cost model"
        );
        assert_eq!(up["seconds"]["samples"].as_array().unwrap().len(), 2);
        // Every timed node is listed, mapped or "other": the kinds plus other add up to it.
        let nodes = ph["nodes"].as_array().unwrap();
        let node_sum: f64 = nodes
            .iter()
            .map(|n| n["seconds"]["median"].as_f64().unwrap())
            .sum();
        assert!(node_sum > 0.0);
        assert!(nodes.iter().all(|n| n["mapped_to"].is_string()));
        assert!(ph["callback_overhead"].as_f64().unwrap() > 0.0);
        let f = ph["attributed_fraction"].as_f64().unwrap();
        assert!(f > 0.0 && f <= 1.0 + 1e-9, "fraction {f}");
    }
    // The per-kind points join the sweep point's measured points.
    let point = std::fs::read_dir(out.join("points/depth"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(point).unwrap()).unwrap();
    let ops = p["measured"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["scope"] == "operator")
        .count();
    assert!(ops >= 2 * 10, "operator points for both phases: {ops}");
    assert!(stderr.contains("llama.cpp nodes, prefill 16"), "{stderr}");
}
