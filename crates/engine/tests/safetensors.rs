//! Bad checkpoints: a missing tensor, a wrong shape or dtype, a truncated header or data. Each
//! gives one line naming the tensor and the file; nothing panics.

use rooflinebench_engine::{load, LoadOptions, ModelDef, WeightsFrom};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-llama")
}

fn def() -> ModelDef {
    let cfg = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    ModelDef::from_config_json(&cfg).unwrap().0
}

fn try_load(file: &Path) -> String {
    let r = load(
        &def(),
        &WeightsFrom::Safetensors(file.to_path_buf()),
        &LoadOptions {
            dtype: None,
            threads: 1,
            isa: None,
            positions: 8,
            max_tokens: 8,
        },
    );
    match r {
        Ok(_) => "loaded".into(),
        Err(e) => e.to_string(),
    }
}

/// Rewrites the fixture with `edit` applied to each (name, dtype, shape, data).
fn rewrite(
    dir: &Path,
    edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> PathBuf {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in st.tensors() {
        if let Some((d, s, data)) = edit(&name, v.dtype(), v.shape().to_vec(), v.data().to_vec()) {
            kept.push((name, d, s, data));
        }
    }
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, d, s, data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn the_fixture_itself_loads() {
    assert_eq!(try_load(&fixture().join("model.safetensors")), "loaded");
    assert_eq!(try_load(&fixture()), "loaded", "a folder works too");
}

#[test]
fn missing_tensor_names_tensor_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let victim = "model.layers.1.mlp.down_proj.weight";
    let p = rewrite(dir.path(), |n, d, s, b| (n != victim).then_some((d, s, b)));
    let e = try_load(&p);
    assert!(
        e.contains(victim) && e.contains(&p.display().to_string()),
        "{e}"
    );
    assert!(e.contains("missing tensor"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn wrong_shape_names_tensor_shapes_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let victim = "model.layers.0.self_attn.q_proj.weight";
    let p = rewrite(dir.path(), |n, d, s, b| {
        if n == victim {
            assert_eq!(s, vec![64, 64]);
            Some((d, vec![32, 128], b))
        } else {
            Some((d, s, b))
        }
    });
    let e = try_load(&p);
    assert!(
        e.contains(victim) && e.contains("[32, 128]") && e.contains("expected [64, 64]"),
        "{e}"
    );
}

#[test]
fn wrong_dtype_names_tensor_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let victim = "model.norm.weight";
    let p = rewrite(dir.path(), |n, d, s, b| {
        if n == victim {
            // Same bytes reinterpreted as 16-bit integers.
            Some((Dtype::I16, s, b))
        } else {
            Some((d, s, b))
        }
    });
    let e = try_load(&p);
    assert!(
        e.contains(victim) && e.contains("I16") && e.contains("expected F32, F16 or BF16"),
        "{e}"
    );
}

#[test]
fn truncated_header_and_truncated_data_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    for (what, len) in [
        ("header length", 5),
        ("header", 40),
        ("data", bytes.len() - 100),
    ] {
        let p = dir.path().join(format!("cut-{len}.safetensors"));
        std::fs::write(&p, &bytes[..len]).unwrap();
        let e = try_load(&p);
        assert!(
            e.contains(&p.display().to_string()) && e.contains("not a readable safetensors file"),
            "{what}: {e}"
        );
        assert_eq!(e.lines().count(), 1, "{what}: {e}");
    }
    // A header claiming an absurd length does not allocate it.
    let p = dir.path().join("huge.safetensors");
    let mut b = (u64::MAX / 2).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    std::fs::write(&p, b).unwrap();
    assert!(try_load(&p).contains("not a readable safetensors file"));
}

#[test]
fn a_missing_file_is_named() {
    let e = try_load(Path::new("/nonexistent/dir/model.safetensors"));
    assert!(e.contains("/nonexistent/dir/model.safetensors"), "{e}");
}
