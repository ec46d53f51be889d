//! Sweeps: the paper's experiment families (ROOFLINEBENCH.md §2) run point by point, each
//! point predicted by the roofline on one hardware profile and, with an engine, measured.
//!
//! A sweep is a list of [`plan::PointPlan`]s. Each finished point is one JSON file
//! (`<dir>/points/<family>/<id>.json`) written atomically, so a re-run skips what exists
//! (when its fingerprint still matches the model, options, workload and ceilings) and an
//! interrupted run loses at most the point in progress. Tables, CSV and charts are rebuilt
//! from the point files after every run.
//!
//! What it is not: a search over architectures (the co-design Pareto search is a separate
//! job), nor a statistics package: each measured point keeps all its samples, nothing more.

#[cfg(feature = "llamacpp")]
pub mod llamacpp;
#[cfg(feature = "llamacpp")]
pub mod llamacpp_ffi;
// Pure Rust (name mapping, aggregation): unit-tested in every build, used with the feature.
#[cfg(any(feature = "llamacpp", test))]
pub mod llamacpp_nodes;
pub mod measure;
pub mod output;
pub mod plan;
pub mod predict;

use anyhow::{Context, Result};
use rooflinebench_model::hardware::CeilingSource;
use rooflinebench_model::measure::{MeasuredPoint, SampleSummary};
use rooflinebench_model::roofline::Bound;
use rooflinebench_model::workload::Scenario;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the point JSON; bump on any incompatible change (old points are then recomputed).
pub const POINT_SCHEMA_VERSION: u32 = 1;
/// The `kind` field of a point file.
pub const POINT_KIND: &str = "rooflinebench-sweep-point";

/// The experiment families.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The four scenarios SISO/LISO/SILO/LILO on one model.
    Scenarios,
    /// 2..64 layers in steps of 2 (layers cut, or the last one repeated).
    Depth,
    /// F16, Q8_0 and Q4_K_M weights.
    Precision,
    /// MHA vs GQA vs MLA at about 1.5B parameters.
    Attention,
    /// One workload across device profiles (the efficiency trap).
    Devices,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Scenarios,
        Family::Depth,
        Family::Precision,
        Family::Attention,
        Family::Devices,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Family::Scenarios => "scenarios",
            Family::Depth => "depth",
            Family::Precision => "precision",
            Family::Attention => "attention",
            Family::Devices => "devices",
        }
    }
}

/// The engine that measures sweep points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// `rooflinebench-engine` (f32/f16/bf16 dense models, standard attention).
    Builtin,
    /// llama.cpp through the `llama-cpp-2` crate (cargo feature `llamacpp`), on a synthetic
    /// GGUF with random weights written from the model's config.
    Llamacpp,
}

/// Totals and roofline prediction of one phase (or a sum of phases).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseNumbers {
    pub flops: u64,
    pub bytes: u64,
    pub intensity_flops_per_byte: f64,
    /// Predicted time (sum of `max(F/pi, B/beta)` over operators and steps).
    pub seconds: f64,
    /// `flops / seconds`.
    pub flops_per_second: f64,
    /// Against the ridge of the phase's main-precision DRAM roof.
    pub bound: Bound,
}

/// The roofline prediction of one point (one workload on one device).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predicted {
    pub prefill: PhaseNumbers,
    /// First and last decode step (absent when the scenario generates one token).
    #[serde(default)]
    pub decode_first: Option<PhaseNumbers>,
    #[serde(default)]
    pub decode_last: Option<PhaseNumbers>,
    /// Every decode step together.
    #[serde(default)]
    pub decode: Option<PhaseNumbers>,
    /// Prefill plus every decode step.
    pub request: PhaseNumbers,
    pub ttft_seconds: f64,
    pub tpot_mean_seconds: f64,
    pub decode_tokens_per_second: f64,
    /// Whole-request utilisation against the main-precision DRAM roof.
    pub mbu: f64,
    pub mfu: f64,
    /// The compute roof of the prefill's main precision and the DRAM bandwidth used.
    pub roof_flops_per_second: f64,
    pub roof_bytes_per_second: f64,
    pub ridge_flops_per_byte: f64,
    pub precision: String,
}

/// What an engine measured for the point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub engine: String,
    pub threads: u32,
    /// Prefill of the scenario's prompt.
    #[serde(default)]
    pub prefill_seconds: Option<SampleSummary>,
    /// Decode steps measured after a real prefill to `decode_depth`.
    #[serde(default)]
    pub decode_depth: u64,
    #[serde(default)]
    pub decode_steps: u64,
    /// Per repetition: the `decode_steps` steps together.
    #[serde(default)]
    pub decode_seconds: Option<SampleSummary>,
    /// The measured points (phases and operator kinds), work from the cost model.
    #[serde(default)]
    pub points: Vec<MeasuredPoint>,
}

impl Measured {
    /// Median seconds per decode step.
    pub fn tpot_seconds(&self) -> Option<f64> {
        let s = self.decode_seconds.as_ref()?;
        (self.decode_steps > 0).then(|| s.median / self.decode_steps as f64)
    }
}

/// One finished point, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub schema_version: u32,
    pub kind: String,
    pub id: String,
    pub family: Family,
    /// What distinguishes this point within its family, e.g. `12 layers`, `q4_k_m`.
    pub variant: String,
    /// The swept value on a numeric axis (layers for depth, an index otherwise).
    pub x: f64,
    pub model: String,
    pub layers: u64,
    pub attention: String,
    pub params_total: u64,
    pub weights: String,
    pub kv: String,
    pub scenario: Scenario,
    pub hardware: String,
    pub ceiling_source: CeilingSource,
    /// Changes whenever anything that determines the point changes.
    pub fingerprint: String,
    pub predicted: Predicted,
    #[serde(default)]
    pub measured: Option<Measured>,
    #[serde(default)]
    pub notes: Vec<String>,
    pub created_utc: String,
}

/// 64-bit FNV-1a of `bytes` as 16 hex digits: a stable fingerprint (not a security hash).
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Where the points of a family live.
pub fn points_dir(out: &Path, family: Family) -> PathBuf {
    out.join("points").join(family.name())
}

/// The file of one point.
pub fn point_path(out: &Path, family: Family, id: &str) -> PathBuf {
    points_dir(out, family).join(format!("{id}.json"))
}

/// A finished point whose fingerprint matches, or `None` (absent, unreadable, stale: every
/// such point is recomputed, never trusted).
pub fn load_finished(path: &Path, fingerprint: &str) -> Option<SweepPoint> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > 64 << 20 {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let p: SweepPoint = serde_json::from_str(&text).ok()?;
    (p.schema_version == POINT_SCHEMA_VERSION
        && p.kind == POINT_KIND
        && p.fingerprint == fingerprint)
        .then_some(p)
}

/// Every readable point of a family (in file-name order), for the outputs.
pub fn load_all(out: &Path, family: Family) -> Result<Vec<SweepPoint>> {
    let dir = points_dir(out, family);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        if let Ok(p) = serde_json::from_str::<SweepPoint>(&text) {
            if p.kind == POINT_KIND && p.schema_version == POINT_SCHEMA_VERSION {
                out.push(p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_sensitive() {
        assert_eq!(fnv1a(b""), "cbf29ce484222325");
        assert_eq!(fnv1a(b"a"), "af63dc4c8601ec8c");
        assert_ne!(fnv1a(b"depth-8"), fnv1a(b"depth-9"));
    }

    #[test]
    fn stale_or_broken_point_files_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert!(load_finished(&p, "f").is_none(), "absent");
        std::fs::write(&p, "{\"half\": ").unwrap();
        assert!(load_finished(&p, "f").is_none(), "truncated");
    }
}
