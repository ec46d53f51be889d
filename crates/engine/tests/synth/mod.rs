//! Synthetic GGUF files for the engine's integration tests: our writer's layout of a Hugging
//! Face config, random weights from a seed.
#![allow(dead_code)]

use rooflinebench_gguf::arch::ArchConfig;
use rooflinebench_gguf::writer::{fill_tensor, synthetic, GgufWriter, WeightFormat};
use std::path::Path;

/// The writer's plan (tensor list and metadata) for `cfg` in `format` (`f32`, `q8_0`, ...).
pub fn plan(cfg: &str, format: &str) -> GgufWriter {
    let v: serde_json::Value = serde_json::from_str(cfg).unwrap();
    let c = ArchConfig::from_hf(&v).unwrap();
    synthetic(&c, WeightFormat::parse(format).unwrap()).unwrap()
}

/// Writes `plan` to `path` with random weights from `seed`.
pub fn write(plan: &GgufWriter, path: &Path, seed: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    plan.write(&mut out, |t, sink| fill_tensor(t, seed, sink))
        .unwrap();
    std::io::Write::flush(&mut out).unwrap();
}
