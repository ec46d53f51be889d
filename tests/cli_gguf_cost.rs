//! `analyze` and `params` on GGUF files: the cost model uses every tensor's real ggml type
//! read from the file, not the file's label (pitfall 24).

use assert_cmd::Command;
use rooflinebench_gguf::arch::ArchConfig;
use rooflinebench_gguf::writer::{fill_tensor, write_synthetic, GgufWriter, Init, WeightFormat};
use rooflinebench_gguf::{GgmlType, GgufFile};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn bin() -> Command {
    Command::cargo_bin("rooflinebench").unwrap()
}

/// A tiny llama whose hidden size (576) is not a multiple of 256, so a Q4_K_M file mixes
/// Q4_K/Q6_K (ffn_down, inner 1536) with the fallbacks Q5_0/Q8_0 (inner 576).
fn synthetic_q4km(dir: &Path, tied: bool, name: &str) -> PathBuf {
    let cfg = ArchConfig::from_hf(&json!({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 2, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 512, "tie_word_embeddings": tied, "max_position_embeddings": 8192
    }))
    .unwrap();
    let p = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    write_synthetic(&cfg, WeightFormat::Q4KM, 1, &mut f).unwrap();
    drop(f);
    p
}

/// Copies the GGUF `src` to `dst` with some tensors stored in other types: a file whose
/// types no recipe predicts (as an importance-matrix or hand-tuned quantization is).
fn retype(src: &Path, dst: &Path, changes: &[(&str, GgmlType)]) {
    let g = GgufFile::open(src).unwrap().header;
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.meta(k, v.clone());
    }
    for t in &g.tensors {
        let ty = changes
            .iter()
            .find(|(n, _)| *n == t.name)
            .map_or(t.ty, |(_, ty)| *ty);
        let init = if t.dims.len() == 1 {
            Init::Const(1.0)
        } else {
            Init::Uniform(0.03)
        };
        w.tensor(&t.name, &t.dims, ty, init).unwrap();
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(dst).unwrap());
    w.write(&mut f, |t, sink| fill_tensor(t, 7, sink)).unwrap();
}

/// Weight bytes one decode token reads, from the file's own tensor sizes: every tensor once,
/// except the embedding (one row); a tied LM head reads the whole embedding again.
fn expected_decode_weight_bytes(path: &Path) -> u64 {
    let g = GgufFile::open(path).unwrap().header;
    let mut sum = 0u64;
    let tied = g.tensor("output.weight").is_none();
    for t in &g.tensors {
        if t.name == "token_embd.weight" {
            let rows = t.dims[1];
            assert_eq!(t.n_bytes % rows, 0);
            sum += t.n_bytes / rows;
            if tied {
                sum += t.n_bytes;
            }
        } else {
            sum += t.n_bytes;
        }
    }
    sum
}

fn analyze_decode(path: &Path, extra: &[&str]) -> Value {
    let out = bin()
        .arg("analyze")
        .arg(path)
        .args(["--phase", "decode", "--context", "64", "--json"])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

fn weight_bytes(r: &Value) -> u64 {
    r["totals"]["weight_bytes"].as_u64().unwrap()
}

#[test]
fn pitfall_24_gguf_real_tensor_types_are_costed() {
    let dir = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let p = synthetic_q4km(dir.path(), tied, &format!("tiny-q4km-{tied}.gguf"));
        // The file really mixes types (the fallbacks of pitfall 24).
        let g = GgufFile::open(&p).unwrap().header;
        let ty = |n: &str| g.tensor(n).unwrap().ty;
        assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q5_0);
        assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q4_K);
        assert_eq!(ty("blk.1.ffn_down.weight"), GgmlType::Q6_K);
        assert_eq!(ty("blk.1.ffn_up.weight"), GgmlType::Q5_0);

        let r = analyze_decode(&p, &[]);
        assert_eq!(r["weights"], "gguf (per tensor)");
        assert_eq!(
            weight_bytes(&r),
            expected_decode_weight_bytes(&p),
            "tied {tied}"
        );
        // --weights overrides the file's types: a uniform q8_0 costs something else.
        let q8 = analyze_decode(&p, &["--weights", "q8_0"]);
        assert_eq!(q8["weights"], "q8_0");
        assert_ne!(weight_bytes(&q8), weight_bytes(&r));
    }
    // Types no recipe predicts: the label (q4_k_m) gives other bytes, the file's types win.
    let src = dir.path().join("tiny-q4km-true.gguf");
    let odd = dir.path().join("tiny-odd.gguf");
    retype(
        &src,
        &odd,
        &[
            ("blk.0.attn_q.weight", GgmlType::Q8_0),
            ("blk.1.ffn_gate.weight", GgmlType::F16),
            ("token_embd.weight", GgmlType::Q4_0),
        ],
    );
    let r = analyze_decode(&odd, &[]);
    let label = analyze_decode(&odd, &["--weights", "q4_k_m"]);
    assert_eq!(weight_bytes(&r), expected_decode_weight_bytes(&odd));
    assert_ne!(weight_bytes(&label), weight_bytes(&r));
}

#[test]
fn gguf_detected_by_magic_without_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic_q4km(dir.path(), true, "model.gguf");
    let q = dir.path().join("model.bin");
    std::fs::copy(&p, &q).unwrap();
    let r = analyze_decode(&q, &[]);
    assert_eq!(weight_bytes(&r), expected_decode_weight_bytes(&p));
    assert_eq!(r["model"], "model");
}

#[test]
fn params_accepts_a_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic_q4km(dir.path(), true, "tiny.gguf");
    let out = bin()
        .arg("params")
        .arg(&p)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let g = GgufFile::open(&p).unwrap().header;
    let total: u64 = g.tensors.iter().map(|t| t.n_elements).sum();
    assert_eq!(v["total"].as_u64().unwrap(), total);
}

#[test]
fn truncated_gguf_is_one_error_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic_q4km(dir.path(), true, "full.gguf");
    let bytes = std::fs::read(&p).unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, &bytes[..40]).unwrap();
    for sub in ["params", "analyze"] {
        let out = bin().arg(sub).arg(&bad).assert().code(1);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{sub}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains("bad.gguf"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn smollm2_q4_1_file_costs_q8_0_embedding_and_q4_1_layers() {
    let Some(home) = std::env::var_os("HOME") else {
        eprintln!("skipped: HOME is not set");
        return;
    };
    let p = Path::new(&home).join(".cache/rooflinebench/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.is_file() {
        eprintln!("skipped: {} not found", p.display());
        return;
    }
    let g = GgufFile::open(&p).unwrap().header;
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ty, GgmlType::Q8_0);
    assert!(g.tensor("output.weight").is_none(), "SmolLM2 ties its head");
    // Closed form from the types: Q8_0 = 34 bytes per 32, Q4_1 = 20 bytes per 32, norms f32.
    let (h, vocab) = (embd.dims[0], embd.dims[1]);
    let mut layer_q4_1 = 0u64;
    let mut norms = 0u64;
    for t in &g.tensors {
        if t.name.starts_with("blk.") && t.dims.len() == 2 {
            assert_eq!(t.ty, GgmlType::Q4_1, "{}", t.name);
            layer_q4_1 += t.n_elements / 32 * 20;
        } else if t.dims.len() == 1 {
            norms += t.n_elements * 4;
        }
    }
    let row = h / 32 * 34;
    let expect = layer_q4_1 + norms + row + vocab * row;
    let r = analyze_decode(&p, &[]);
    assert_eq!(weight_bytes(&r), expect);
    assert_eq!(weight_bytes(&r), expected_decode_weight_bytes(&p));
}

/// A whole scenario on a GGUF uses the real types for the prefill and every decode step: each
/// of the `generate - 1` decode steps reads exactly the file's per-token weight bytes.
#[test]
fn scenario_on_a_gguf_costs_every_decode_step_with_real_types() {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic_q4km(dir.path(), true, "scenario.gguf");
    let out = bin()
        .args([
            "analyze",
            p.to_str().unwrap(),
            "--scenario",
            "16/5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let decode = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phase"] == "decode")
        .expect("a decode section");
    let per_step = expected_decode_weight_bytes(&p);
    assert_eq!(weight_bytes_of(&decode["totals"]), 4 * per_step);
}

fn weight_bytes_of(totals: &Value) -> u64 {
    totals["weight_bytes"]
        .as_u64()
        .expect("totals.weight_bytes")
}
