//! MoE and MLA models from Hugging Face safetensors checkpoints give the same logits as the
//! same weights in a GGUF file, whose layout is checked against llama.cpp's own logits
//! (`src/sweep/llamacpp_logits_test.rs`).
//!
//! Each case writes a random f32 GGUF with our writer, then rewrites its tensors under their
//! Hugging Face names and shapes, the inverse of llama.cpp's `convert_hf_to_gguf.py` for these
//! families: names mapped one to one, 3-D expert tensors split into `mlp.experts.N.*`, and MLA's
//! split `attn_k_b`/`attn_v_b` joined back into `kv_b_proj` (`k_b` is `kv_b`'s key rows
//! transposed per head). MLA's q and shared-key RoPE rows are copied unpermuted, as the
//! converter copies them: both loaders must reorder the same stored rows. A checkpoint that
//! lacks an expert, or stores one with a wrong shape, gives one error naming file and tensor.
//!
//! Families our GGUF writer does not lay out (Qwen2-MoE's gated shared expert, Mixtral's
//! `block_sparse_moe`) are checked on random weights instead: each weight the engine asks for
//! is recorded, written under its Hugging Face name (`modeling_qwen2_moe.py`,
//! `modeling_mixtral.py`), and read back.

use rooflinebench_engine::gguf_source::model_def;
use rooflinebench_engine::weights::{build, Key, LKey, Mat, RandomSource, Source};
use rooflinebench_engine::{
    load, EngineError, LoadOptions, Logits, Model, ModelDef, NoopRecorder, WeightsFrom,
};
use rooflinebench_gguf::reader::Gguf;
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_model::cost::MlaForm;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod synth;

/// Qwen3-MoE: q/k norms, softmax router, no shared expert.
const QWEN3MOE: &str = include_str!("../../../tests/fixtures/tiny-moe/qwen3moe.json");

/// DeepSeek-V2: q LoRA, one dense first layer, a shared expert.
const DEEPSEEK2: &str = include_str!("../../../tests/fixtures/tiny-moe/deepseek2.json");

/// DeepSeek-V2-Lite/V3-style: no q LoRA (`q_proj`), sigmoid scores with the correction bias.
const DEEPSEEK3: &str = include_str!("../../../tests/fixtures/tiny-moe/deepseek3.json");

/// Checkpoint tensors by name: (shape, f32 values).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

const TOKENS: [u32; 6] = [5, 77, 280, 3, 140, 9];

fn opts() -> LoadOptions {
    LoadOptions {
        dtype: None,
        threads: 2,
        isa: None,
        positions: 16,
        max_tokens: 8,
    }
}

/// A random f32 GGUF of `cfg` at `path`.
fn write_gguf(cfg: &str, path: &Path) {
    synth::write(&synth::plan(cfg, "f32"), path, 11)
}

/// The Hugging Face name of a GGUF tensor (`None` for MLA's split `attn_k_b`/`attn_v_b`,
/// and for the 3-D expert tensors, which are handled by the caller).
fn hf_name(gguf: &str) -> Option<String> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = gguf.strip_prefix("blk.").expect("a layer tensor");
    let (layer, part) = rest.split_once('.').unwrap();
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "attn_q_a.weight" => "self_attn.q_a_proj.weight",
        "attn_q_a_norm.weight" => "self_attn.q_a_layernorm.weight",
        "attn_q_b.weight" => "self_attn.q_b_proj.weight",
        "attn_kv_a_mqa.weight" => "self_attn.kv_a_proj_with_mqa.weight",
        "attn_kv_a_norm.weight" => "self_attn.kv_a_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "ffn_gate_inp.weight" => "mlp.gate.weight",
        "exp_probs_b.bias" => "mlp.gate.e_score_correction_bias",
        "ffn_gate_shexp.weight" => "mlp.shared_experts.gate_proj.weight",
        "ffn_up_shexp.weight" => "mlp.shared_experts.up_proj.weight",
        "ffn_down_shexp.weight" => "mlp.shared_experts.down_proj.weight",
        "attn_k_b.weight" | "attn_v_b.weight" => return None,
        p if p.ends_with("_exps.weight") => return None,
        other => panic!("no Hugging Face name for GGUF tensor {other}"),
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// f32 values of little-endian bytes.
fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The GGUF's tensors under Hugging Face names.
fn hf_tensors(gguf_path: &Path) -> Tensors {
    let bytes = std::fs::read(gguf_path).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let data = |name: &str| {
        let t = g.tensor(name).unwrap();
        f32s(g.tensor_data(&bytes, t).unwrap())
    };
    let mut out = BTreeMap::new();
    for t in &g.tensors {
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        if let Some(hf) = hf_name(&t.name) {
            out.insert(hf, (shape, data(&t.name)));
        } else if let Some(stem) = t.name.strip_suffix("_exps.weight") {
            // [experts, rows, cols] -> one [rows, cols] tensor per expert.
            let (layer, part) = stem.strip_prefix("blk.").unwrap().split_once('.').unwrap();
            let proj = &part["ffn_".len()..];
            let (e, per) = (shape[0], shape[1] * shape[2]);
            let v = data(&t.name);
            for x in 0..e {
                out.insert(
                    format!("model.layers.{layer}.mlp.experts.{x}.{proj}_proj.weight"),
                    (vec![shape[1], shape[2]], v[x * per..(x + 1) * per].to_vec()),
                );
            }
        } else if let Some(layer) = t
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.strip_suffix(".attn_k_b.weight"))
        {
            // k_b: [heads, kvl, nope] (each head's key rows of kv_b, transposed);
            // v_b: [heads, v, kvl]. kv_b_proj: per head, nope key rows then v value rows.
            let kb = &shape;
            let vb_t = g.tensor(&format!("blk.{layer}.attn_v_b.weight")).unwrap();
            let vb: Vec<usize> = vb_t.dims.iter().rev().map(|&d| d as usize).collect();
            let (heads, kvl, nope, dv) = (kb[0], kb[1], kb[2], vb[1]);
            let (k, v) = (data(&t.name), data(&vb_t.name));
            let mut kv_b = Vec::with_capacity(heads * (nope + dv) * kvl);
            for h in 0..heads {
                for d in 0..nope {
                    kv_b.extend((0..kvl).map(|c| k[(h * kvl + c) * nope + d]));
                }
                kv_b.extend_from_slice(&v[h * dv * kvl..(h + 1) * dv * kvl]);
            }
            out.insert(
                format!("model.layers.{layer}.self_attn.kv_b_proj.weight"),
                (vec![heads * (nope + dv), kvl], kv_b),
            );
        }
    }
    out
}

fn write_safetensors(tensors: &Tensors, path: &Path) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, v))| {
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), s.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn last_logits(def: &ModelDef, from: WeightsFrom) -> Vec<f32> {
    let (mut m, mut cache) = load(def, &from, &opts()).unwrap();
    m.forward(&TOKENS, &mut cache, Logits::Last, &mut NoopRecorder)
        .unwrap()
        .to_vec()
}

fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// A GGUF of `cfg` and the same weights as `model.safetensors` in `dir`.
fn pair(dir: &Path, cfg: &str) -> (PathBuf, PathBuf, Tensors) {
    let gguf = dir.join("model.gguf");
    write_gguf(cfg, &gguf);
    let tensors = hf_tensors(&gguf);
    let st = dir.join("model.safetensors");
    write_safetensors(&tensors, &st);
    (gguf, st, tensors)
}

#[test]
fn moe_and_mla_safetensors_match_the_same_weights_in_gguf() {
    for (name, cfg) in [
        ("qwen3moe", QWEN3MOE),
        ("deepseek2", DEEPSEEK2),
        ("deepseek3", DEEPSEEK3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (gguf, st, _) = pair(dir.path(), cfg);
        let forms: &[MlaForm] = if name == "qwen3moe" {
            &[MlaForm::Absorbed]
        } else {
            &[MlaForm::Absorbed, MlaForm::Materialized]
        };
        for &form in forms {
            let (mut gdef, _) = model_def(&gguf).unwrap();
            gdef.arch.mla_form = form;
            let (mut hdef, _) = ModelDef::from_config_json(cfg).unwrap();
            hdef.arch.mla_form = form;
            let want = last_logits(&gdef, WeightsFrom::Gguf(gguf.clone()));
            let got = last_logits(&hdef, WeightsFrom::Safetensors(st.clone()));
            assert_eq!(got.len(), want.len());
            let err = max_rel_err(&got, &want);
            assert!(
                err < 1e-5,
                "{name} {form:?}: safetensors vs GGUF logits differ by {err:e}"
            );
        }
    }
}

#[test]
fn mla_rope_rows_are_reordered_from_interleaved_pairs() {
    // The test above would pass for any reordering both loaders apply alike; this one shows
    // the stored order matters: the same RoPE rows permuted within each block change the
    // logits, the other rows untouched.
    let dir = tempfile::tempdir().unwrap();
    let (gguf, st, mut tensors) = pair(dir.path(), DEEPSEEK2);
    let (nope, rope) = (32, 16);
    for (name, (shape, v)) in tensors.iter_mut() {
        let (block, offset) = if name.ends_with("q_b_proj.weight") {
            (nope + rope, nope)
        } else if name.ends_with("kv_a_proj_with_mqa.weight") {
            (shape[0], shape[0] - rope)
        } else {
            continue;
        };
        let cols = shape[1];
        let old = v.clone();
        for r in 0..shape[0] {
            let (b, i) = (r / block, r % block);
            if i >= offset {
                let (s, j) = ((i - offset) % 2, (i - offset) / 2);
                let src = b * block + offset + s * rope / 2 + j;
                v[r * cols..(r + 1) * cols].copy_from_slice(&old[src * cols..(src + 1) * cols]);
            }
        }
    }
    let swapped = dir.path().join("swapped.safetensors");
    write_safetensors(&tensors, &swapped);
    let (def, _) = ModelDef::from_config_json(DEEPSEEK2).unwrap();
    let (gdef, _) = model_def(&gguf).unwrap();
    let want = last_logits(&gdef, WeightsFrom::Gguf(gguf));
    let same = last_logits(&def, WeightsFrom::Safetensors(st));
    let wrong = last_logits(&def, WeightsFrom::Safetensors(swapped));
    assert!(max_rel_err(&same, &want) < 1e-5);
    assert!(
        max_rel_err(&wrong, &want) > 1e-3,
        "reordering the RoPE rows did not change the logits"
    );
}

#[test]
fn a_missing_or_misshaped_expert_is_one_error_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, tensors) = pair(dir.path(), QWEN3MOE);
    let (def, _) = ModelDef::from_config_json(QWEN3MOE).unwrap();
    let victim = "model.layers.1.mlp.experts.5.down_proj.weight";

    let mut missing = tensors.clone();
    missing.remove(victim);
    let p = dir.path().join("missing.safetensors");
    write_safetensors(&missing, &p);
    let e = match load(&def, &WeightsFrom::Safetensors(p), &opts()) {
        Ok(_) => panic!("a checkpoint without {victim} loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("missing.safetensors") && e.contains(victim) && !e.contains('\n'),
        "{e}"
    );

    let mut shape = tensors;
    shape.get_mut(victim).unwrap().0.swap(0, 1);
    let p = dir.path().join("shape.safetensors");
    write_safetensors(&shape, &p);
    let e = match load(&def, &WeightsFrom::Safetensors(p), &opts()) {
        Ok(_) => panic!("a mis-shaped {victim} loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("shape.safetensors") && e.contains(victim) && !e.contains('\n'),
        "{e}"
    );
}

/// Qwen2-MoE: q/k/v biases, a sigmoid-gated shared expert (`shared_expert_gate`, a
/// `[1, hidden]` matrix in the checkpoint).
const QWEN2MOE: &str = r#"{"model_type": "qwen2_moe", "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
    "vocab_size": 300, "max_position_embeddings": 64, "intermediate_size": 96,
    "moe_intermediate_size": 24, "num_experts": 8, "num_experts_per_tok": 2,
    "shared_expert_intermediate_size": 40, "norm_topk_prob": false,
    "tie_word_embeddings": false}"#;

/// Mixtral: `block_sparse_moe` with experts `w1` (gate), `w3` (up), `w2` (down).
const MIXTRAL: &str = r#"{"model_type": "mixtral", "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 300, "max_position_embeddings": 64, "intermediate_size": 48,
    "num_local_experts": 4, "num_experts_per_tok": 2, "rope_theta": 1000000.0,
    "tie_word_embeddings": false}"#;

/// Random weights, each one the engine asks for recorded as (key, shape, values).
struct Recording {
    inner: RandomSource,
    got: Vec<(Key, Vec<usize>, Vec<f32>)>,
}

impl Source for Recording {
    fn mat(
        &mut self,
        key: Key,
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
    ) -> Result<Mat, EngineError> {
        let m = self.inner.mat(key, rows, cols, dtype)?;
        if rows > 0 && cols > 0 {
            let f = m.to_f32();
            let v = (0..rows)
                .flat_map(|r| (0..cols).map(move |c| (r, c)))
                .map(|(r, c)| f.get(r, c))
                .collect();
            self.got.push((key, vec![rows, cols], v));
        }
        Ok(m)
    }

    fn vec(&mut self, key: Key, len: usize) -> Result<Vec<f32>, EngineError> {
        let v = self.inner.vec(key, len)?;
        self.got.push((key, vec![len], v.clone()));
        Ok(v)
    }
}

/// The Hugging Face name (and stored shape) of an engine weight of Qwen2-MoE or Mixtral.
fn hf_key(key: Key, mixtral: bool, shape: &[usize]) -> (String, Vec<usize>) {
    let l = |i: usize, s: &str| format!("model.layers.{i}.{s}");
    let name = match key {
        Key::Embed => "model.embed_tokens.weight".to_string(),
        Key::FinalNorm => "model.norm.weight".to_string(),
        Key::LmHead => "lm_head.weight".to_string(),
        Key::Layer(i, lk) => match lk {
            LKey::AttnNorm => l(i, "input_layernorm.weight"),
            LKey::FfnNorm => l(i, "post_attention_layernorm.weight"),
            LKey::Q => l(i, "self_attn.q_proj.weight"),
            LKey::K => l(i, "self_attn.k_proj.weight"),
            LKey::V => l(i, "self_attn.v_proj.weight"),
            LKey::O => l(i, "self_attn.o_proj.weight"),
            LKey::QBias => l(i, "self_attn.q_proj.bias"),
            LKey::KBias => l(i, "self_attn.k_proj.bias"),
            LKey::VBias => l(i, "self_attn.v_proj.bias"),
            LKey::MoeRouter if mixtral => l(i, "block_sparse_moe.gate.weight"),
            LKey::MoeRouter => l(i, "mlp.gate.weight"),
            LKey::ExpGate(x) if mixtral => l(i, &format!("block_sparse_moe.experts.{x}.w1.weight")),
            LKey::ExpUp(x) if mixtral => l(i, &format!("block_sparse_moe.experts.{x}.w3.weight")),
            LKey::ExpDown(x) if mixtral => l(i, &format!("block_sparse_moe.experts.{x}.w2.weight")),
            LKey::ExpGate(x) => l(i, &format!("mlp.experts.{x}.gate_proj.weight")),
            LKey::ExpUp(x) => l(i, &format!("mlp.experts.{x}.up_proj.weight")),
            LKey::ExpDown(x) => l(i, &format!("mlp.experts.{x}.down_proj.weight")),
            LKey::ShGate => l(i, "mlp.shared_expert.gate_proj.weight"),
            LKey::ShUp => l(i, "mlp.shared_expert.up_proj.weight"),
            LKey::ShDown => l(i, "mlp.shared_expert.down_proj.weight"),
            LKey::ShGateVec => {
                let name = l(i, "mlp.shared_expert_gate.weight");
                return (name, vec![1, shape[0]]);
            }
            other => panic!("no Hugging Face name for {other:?}"),
        },
        other => panic!("no Hugging Face name for {other:?}"),
    };
    (name, shape.to_vec())
}

#[test]
fn qwen2_moe_and_mixtral_safetensors_names_load_the_same_weights() {
    for (name, cfg, mixtral) in [("qwen2-moe", QWEN2MOE, false), ("mixtral", MIXTRAL, true)] {
        let (def, _) = ModelDef::from_config_json(cfg).unwrap();
        let mut rec = Recording {
            inner: RandomSource {
                seed: 3,
                threads: 1,
                norm_offset: def.arch.norm_weight_offset,
                quant: None,
            },
            got: Vec::new(),
        };
        let w = build(&def, WeightDtype::F32, &mut rec).unwrap();
        let tensors: Tensors = rec
            .got
            .into_iter()
            .map(|(k, shape, v)| {
                let (n, s) = hf_key(k, mixtral, &shape);
                (n, (s, v))
            })
            .collect();
        assert!(
            tensors.keys().any(|k| k.contains("experts.3.")),
            "{name}: experts were recorded"
        );
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("model.safetensors");
        write_safetensors(&tensors, &st);
        let isa = rooflinebench_kernels::isa::best().unwrap();
        let mut m = Model::new(def.clone(), w, 2, isa, 16).unwrap();
        let mut cache = m.new_cache(16).unwrap();
        let want = m
            .forward(&TOKENS, &mut cache, Logits::Last, &mut NoopRecorder)
            .unwrap()
            .to_vec();
        let got = last_logits(&def, WeightsFrom::Safetensors(st));
        let err = max_rel_err(&got, &want);
        assert!(
            err < 1e-5,
            "{name}: safetensors vs random logits differ by {err:e}"
        );
    }
}
