//! MoE (qwen3moe) and MLA + MoE (deepseek2) models from GGUF files written by our writer: they
//! load (3-D expert tensors sliced per expert, MLA tensors mapped, newer files' split
//! `attn_k_b`/`attn_v_b` rebuilt into `kv_b_proj`), run a forward pass, agree between the two
//! MLA forms, keep quantized experts quantized, and a file with a missing or mis-shaped expert
//! tensor gives one error naming the file and the tensor.
//!
//! Layout correctness against llama.cpp itself (logits on the same file) is checked under the
//! `llamacpp` feature: `src/sweep/llamacpp_logits_test.rs`, run by `scripts/test-llamacpp.sh`.

use common::l2_rel_err;
use rooflinebench_engine::gguf_source::model_def;
use rooflinebench_engine::weights::MatBuf;
use rooflinebench_engine::{load, LoadOptions, Logits, NoopRecorder, WeightsFrom};
use rooflinebench_gguf::writer::GgufWriter;
use rooflinebench_model::cost::MlaForm;
use std::path::{Path, PathBuf};
use synth::plan;

mod common;
mod synth;

const QWEN3MOE: &str = include_str!("../../../tests/fixtures/tiny-moe/qwen3moe.json");

const DEEPSEEK2: &str = include_str!("../../../tests/fixtures/tiny-moe/deepseek2.json");

/// Our writer's GGUF of `plan` at `path`, random weights from seed 7.
fn write(plan: &GgufWriter, path: &Path) {
    synth::write(plan, path, 7)
}

fn opts() -> LoadOptions {
    LoadOptions {
        dtype: None,
        threads: 2,
        isa: None,
        positions: 16,
        max_tokens: 8,
    }
}

/// Last-token logits of `tokens` on the GGUF at `path` (MLA form `form` when MLA).
fn logits(path: &Path, form: MlaForm) -> Vec<f32> {
    let (mut def, _) = model_def(path).unwrap();
    def.arch.mla_form = form;
    let (mut m, mut cache) = load(&def, &WeightsFrom::Gguf(path.to_path_buf()), &opts()).unwrap();
    m.forward(
        &[5, 77, 280, 3, 140, 9],
        &mut cache,
        Logits::Last,
        &mut NoopRecorder,
    )
    .unwrap()
    .to_vec()
}

fn file(dir: &tempfile::TempDir, name: &str, cfg: &str, format: &str) -> PathBuf {
    let p = dir.path().join(name);
    write(&plan(cfg, format), &p);
    p
}

#[test]
fn moe_and_mla_ggufs_load_and_run() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in [("qwen3moe", QWEN3MOE), ("deepseek2", DEEPSEEK2)] {
        for format in ["f32", "f16", "q8_0"] {
            let p = file(&dir, &format!("{name}-{format}.gguf"), cfg, format);
            let l = logits(&p, MlaForm::Absorbed);
            assert_eq!(l.len(), 300, "{name} {format}");
            assert!(l.iter().all(|x| x.is_finite()), "{name} {format}: {l:?}");
            let spread = l.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                - l.iter().copied().fold(f32::INFINITY, f32::min);
            assert!(spread > 0.0, "{name} {format}: constant logits");
        }
    }
}

/// The absorbed form runs on `attn_k_b`/`attn_v_b` as llama.cpp stores them (rebuilt into
/// `kv_b_proj` and split again), the materialized one on the rebuilt `kv_b_proj`: a wrong
/// transpose of `attn_k_b` would make them differ (or fail on non-square heads).
#[test]
fn mla_gguf_absorbed_and_materialized_agree() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "ds.gguf", DEEPSEEK2, "f32");
    let a = logits(&p, MlaForm::Absorbed);
    let b = logits(&p, MlaForm::Materialized);
    let rel = l2_rel_err(&a, &b);
    assert!(
        rel < 1e-4,
        "absorbed vs materialized relative error {rel:.2e}"
    );
}

#[test]
fn quantized_experts_stay_quantized_and_are_sliced_per_expert() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(&dir, "q.gguf", QWEN3MOE, "q8_0");
    let (def, _) = model_def(&p).unwrap();
    let (m, _) = load(&def, &WeightsFrom::Gguf(p.clone()), &opts()).unwrap();
    let moe = m.weights.layers[0].moe.as_ref().expect("a MoE layer");
    assert_eq!(moe.experts.len(), 8);
    for e in &moe.experts {
        assert!(
            matches!(e.gate.buf, MatBuf::Quant { .. }),
            "q8_0 expert kept"
        );
        assert_eq!((e.gate.rows, e.gate.cols), (32, 64));
        assert_eq!((e.down.rows, e.down.cols), (64, 32));
    }
    // Expert 3's first gate row is the file's row 3 * 32 of `ffn_gate_exps`.
    let f = rooflinebench_gguf::GgufFile::open(&p).unwrap();
    let (t, data) = f.tensor_data("blk.0.ffn_gate_exps.weight").unwrap();
    let row_bytes = (t.n_bytes / (8 * 32)) as usize;
    let MatBuf::Quant { data: got, .. } = &moe.experts[3].gate.buf else {
        unreachable!()
    };
    assert_eq!(
        &got.as_slice()[..row_bytes],
        &data[3 * 32 * row_bytes..(3 * 32 + 1) * row_bytes]
    );
}

fn load_err(path: &Path) -> String {
    let (def, _) = match model_def(path) {
        Ok(d) => d,
        Err(e) => return e.to_string(),
    };
    match load(&def, &WeightsFrom::Gguf(path.to_path_buf()), &opts()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_or_misshaped_expert_tensor_names_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    // Missing: drop layer 1's up experts.
    let mut w = plan(QWEN3MOE, "f32");
    w.tensors.retain(|t| t.name != "blk.1.ffn_up_exps.weight");
    let p = dir.path().join("missing.gguf");
    write(&w, &p);
    let e = load_err(&p);
    println!("{e}");
    assert!(
        e.contains("missing.gguf") && e.contains("blk.1.ffn_up_exps.weight"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    // Wrong expert count: the metadata says 6 experts, the tensors hold 8.
    let mut w = plan(QWEN3MOE, "f32");
    w.meta("qwen3moe.expert_count", rooflinebench_gguf::Value::U32(6));
    let p = dir.path().join("count.gguf");
    write(&w, &p);
    let e = load_err(&p);
    println!("{e}");
    assert!(
        e.contains("count.gguf") && e.contains("blk.0.ffn_gate_inp.weight"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    // Wrong expert shape: layer 0's down experts transposed.
    let mut w = plan(DEEPSEEK2, "f32");
    for t in &mut w.tensors {
        if t.name == "blk.1.ffn_down_exps.weight" {
            t.dims.swap(0, 1);
        }
    }
    let p = dir.path().join("shape.gguf");
    write(&w, &p);
    let e = load_err(&p);
    println!("{e}");
    assert!(
        e.contains("shape.gguf") && e.contains("blk.1.ffn_down_exps.weight"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

/// PITFALLS.md #24 for MoE and MLA files: the cost table takes every matrix's stored format,
/// experts and MLA projections included. Before this test they were missing from the engine's
/// format list and were costed in the dense default (f32), four times the q8_0 bytes read.
#[test]
fn pitfall_24_quantized_moe_and_mla_ggufs_are_costed_in_their_stored_formats() {
    use rooflinebench_model::cost::{CostModel, Phase};
    use rooflinebench_model::format::{TensorRole, WeightFormat as Wf};
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg, roles) in [
        (
            "qwen3moe",
            QWEN3MOE,
            &[
                TensorRole::FfnGateExps,
                TensorRole::FfnUpExps,
                TensorRole::FfnDownExps,
            ][..],
        ),
        (
            "deepseek2",
            DEEPSEEK2,
            &[
                TensorRole::MlaQA,
                TensorRole::MlaQB,
                TensorRole::MlaKvA,
                TensorRole::FfnGateExps,
                TensorRole::FfnDownShexp,
            ][..],
        ),
    ] {
        let decode_weight_bytes = |format: &str| {
            let p = file(&dir, &format!("{name}-{format}.gguf"), cfg, format);
            let (def, _) = model_def(&p).unwrap();
            let (m, _) = load(&def, &WeightsFrom::Gguf(p.clone()), &opts()).unwrap();
            let formats = m.weights.tensor_formats(def.spec.fused_qkv);
            let want = if format == "q8_0" { Wf::Q8_0 } else { Wf::F32 };
            if name == "deepseek2" {
                // Absorbed (the default): the split attn_k_b/attn_v_b run as stored.
                assert_eq!(formats.get(TensorRole::MlaKvB, Some(1)), Some(want));
                // Materialized: rebuilt into one kv_b_proj, dequantized to f32.
                let mut mdef = def.clone();
                mdef.arch.mla_form = MlaForm::Materialized;
                let (mm, _) = load(&mdef, &WeightsFrom::Gguf(p), &opts()).unwrap();
                let mf = mm.weights.tensor_formats(def.spec.fused_qkv);
                assert_eq!(mf.get(TensorRole::MlaKvB, Some(1)), Some(Wf::F32));
            }
            for &role in roles {
                assert_eq!(
                    formats.get(role, Some(1)),
                    Some(want),
                    "{name} {format} {role:?}"
                );
            }
            let opts = rooflinebench_engine::bench::cost_options(m.weights.dtype);
            let cm = CostModel::with_formats(&def.spec, &opts, &formats).unwrap();
            let t = cm.table(Phase::Decode { context: 4 }).unwrap();
            t.ops.iter().map(|o| o.weight_bytes.0).sum::<u64>() as f64
        };
        // q8_0 stores 34 bytes per 32 weights against f32's 128: 3.76x, less for the f32
        // norms and router, and for deepseek2's kv_b, which the loader rebuilds in f32 from the
        // split attn_k_b/attn_v_b (a warning says so) and which is costed as the f32 it is.
        let ratio = decode_weight_bytes("f32") / decode_weight_bytes("q8_0");
        let floor = if name == "deepseek2" { 2.0 } else { 3.0 };
        assert!(
            ratio > floor && ratio < 3.77,
            "{name}: f32 / q8_0 decode weight bytes {ratio}"
        );
    }
}
