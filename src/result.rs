//! The result document: one versioned JSON joining host, ceilings, model, costs, predictions,
//! measurements, Relative Inference Potential, sweeps, warnings and provenance.
//!
//! Written by `run` (and by anything else that analyses a model on a device); read by `report`
//! and `compare`. Units are SI with unit-suffixed field names where the type does not say it.
//! Per-operator data is stored summed per operator kind over the layers (about 20 rows per
//! phase, the granularity the plots use); `rooflinebench analyze --json` gives every layer.
//!
//! Reading is strict: a wrong `schema_version`, an empty or malformed file, a non-finite or
//! zero ceiling or timing each give one error naming the file (and the field when known).

use anyhow::{bail, Context, Result};
use rooflinebench_model::cost::{CostOptions, CostTotals, Phase};
use rooflinebench_model::hardware::{CeilingSource, HardwareProfile, Precision, Warning};
use rooflinebench_model::measure::{MeasuredPoint, Scope};
use rooflinebench_model::op::OpKind;
use rooflinebench_model::params::ParamCounts;
use rooflinebench_model::roofline::potential::Potential;
use rooflinebench_model::roofline::{KindPrediction, RequestPrediction};
use rooflinebench_model::workload::Scenario;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the result JSON; bump on any incompatible change.
pub const RESULT_SCHEMA_VERSION: u32 = 1;
/// The `kind` field, so a hardware profile or a config passed by mistake is recognised.
pub const RESULT_KIND: &str = "rooflinebench-result";

/// The whole document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultDoc {
    pub schema_version: u32,
    pub kind: String,
    pub provenance: Provenance,
    /// Host description from the probe (`None` for a device from the database).
    #[serde(default)]
    pub host: Option<serde_json::Value>,
    /// The ceilings every prediction and Phi in this document uses.
    pub hardware: HardwareProfile,
    pub model: ModelSummary,
    pub cost_options: CostOptions,
    pub scenarios: Vec<ScenarioResult>,
    /// Timed runs, with work from the cost model (empty when nothing was measured).
    #[serde(default)]
    pub measurements: Vec<MeasuredPoint>,
    /// Relative Inference Potential of measured points (and of predicted ones, flagged).
    #[serde(default)]
    pub potential: Vec<PotentialRecord>,
    /// Quantities against a swept parameter (context length, depth).
    #[serde(default)]
    pub sweeps: Vec<Sweep>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// Where and how the document was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub tool: String,
    pub version: String,
    /// `git rev-parse` of the source tree the binary was built from, when reachable.
    #[serde(default)]
    pub git_commit: Option<String>,
    pub command_line: Vec<String>,
    /// ISO 8601 UTC, e.g. `2026-03-01T12:00:00Z`.
    pub created_utc: String,
}

impl Provenance {
    /// This process's provenance.
    pub fn now() -> Provenance {
        Provenance {
            tool: "rooflinebench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: git_commit(),
            command_line: std::env::args().collect(),
            created_utc: utc_now(),
        }
    }
}

/// The commit of the source tree this binary was built from (`+dirty` when it has changes),
/// if that tree and `git` are still there. Kept simple on purpose: no build script.
fn git_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let run = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// Current UTC time in ISO 8601 (seconds).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian; the
/// days-to-civil conversion of H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// What was analysed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub model_type: String,
    /// `mha`, `gqa`, `mqa` or `mla`.
    pub attention: String,
    pub num_hidden_layers: u64,
    pub hidden_size: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_dim: u64,
    pub intermediate_size: u64,
    pub vocab_size: u64,
    pub moe: bool,
    #[serde(default)]
    pub params: Option<ParamCounts>,
    /// Weight format or recipe name, e.g. `f16`, `q4_k_m`.
    pub weights: String,
    pub kv: String,
}

/// One operator kind's work in one phase, summed over layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindCost {
    pub kind: OpKind,
    pub compute: Precision,
    pub totals: CostTotals,
}

/// The cost of one phase: totals and per-operator-kind rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseCost {
    pub phase: Phase,
    pub totals: CostTotals,
    pub by_kind: Vec<KindCost>,
}

/// The costs of one scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioCosts {
    pub prefill: PhaseCost,
    /// First and last decode step (absent when the scenario generates one token).
    #[serde(default)]
    pub decode_first: Option<PhaseCost>,
    #[serde(default)]
    pub decode_last: Option<PhaseCost>,
    /// Every decode step summed.
    pub decode_totals: CostTotals,
    /// Prefill plus every decode step.
    pub request_totals: CostTotals,
}

/// Predictions of one scenario against the ceilings of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioPrediction {
    pub source: CeilingSource,
    pub request: RequestPrediction,
    /// Operators of the prefill, per kind.
    pub prefill_ops: Vec<KindPrediction>,
    /// Operators of the last decode step, per kind.
    #[serde(default)]
    pub decode_last_ops: Vec<KindPrediction>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub costs: ScenarioCosts,
    /// One per ceiling source the profile has (measured, theoretical, measured elsewhere).
    pub predictions: Vec<ScenarioPrediction>,
}

/// Whether a point was measured or predicted by the roofline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointOrigin {
    Measured,
    /// A roofline prediction: on or just below the roof by construction, so its Phi only
    /// reflects the workload's intensity, not how well anything runs.
    Predicted,
}

/// Phi, Phi in decades and efficiency of one point against one source's ceilings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PotentialRecord {
    pub label: String,
    pub scope: Scope,
    pub origin: PointOrigin,
    /// Scenario name for predicted points.
    #[serde(default)]
    pub scenario: Option<String>,
    pub phase: String,
    pub context: u64,
    pub source: CeilingSource,
    /// The compute roof used (the point's precision, or its fallback).
    pub precision: Precision,
    pub intensity_flops_per_byte: f64,
    pub flops_per_second: f64,
    pub potential: Potential,
    /// The roofline's predicted time for the same work, when it could be joined.
    #[serde(default)]
    pub predicted_seconds: Option<f64>,
    #[serde(default)]
    pub measured_seconds: Option<f64>,
}

/// One line of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSeries {
    pub name: String,
    /// `[x, y]` pairs.
    pub points: Vec<[f64; 2]>,
}

/// A quantity against a swept parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Short identifier used in file names, e.g. `decode-context`.
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    pub series: Vec<SweepSeries>,
}

impl ResultDoc {
    /// Serializes to pretty JSON (with a trailing newline).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).context("cannot serialize the result")?;
        v.push(b'\n');
        Ok(v)
    }

    /// Reads and validates a result file; every error names `path`.
    pub fn load(path: &Path) -> Result<ResultDoc> {
        let name = path.display();
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read result file {name}"))?;
        // A result is a few MB at most; refuse anything absurd before reading it.
        if meta.len() > 512 << 20 {
            bail!(
                "{name}: result file is {} bytes, more than the 512 MiB accepted",
                meta.len()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read result file {name}"))?;
        ResultDoc::from_json(&text).with_context(|| format!("{name}"))
    }

    /// Parses and validates a result from JSON text.
    pub fn from_json(text: &str) -> Result<ResultDoc> {
        if text.trim().is_empty() {
            bail!("empty file: expected a rooflinebench result (JSON)");
        }
        let v: serde_json::Value = serde_json::from_str(text).context("malformed JSON")?;
        let obj = v
            .as_object()
            .context("not a rooflinebench result: the top level is not a JSON object")?;
        if obj.get("kind").and_then(|k| k.as_str()) != Some(RESULT_KIND) {
            if obj.contains_key("compute") || obj.contains_key("bandwidth") {
                bail!("this is a hardware profile, not a rooflinebench result (pass it with --hw)");
            }
            bail!("not a rooflinebench result: field `kind` is not {RESULT_KIND:?}");
        }
        match obj.get("schema_version").and_then(|s| s.as_u64()) {
            Some(n) if n == RESULT_SCHEMA_VERSION as u64 => {}
            Some(n) => bail!(
                "result schema_version {n} is not supported (this build reads {RESULT_SCHEMA_VERSION}); \
                 re-run the analysis with this version of rooflinebench"
            ),
            None => bail!("missing or non-integer field `schema_version`"),
        }
        let doc: ResultDoc = serde_json::from_value(v).context("malformed result")?;
        doc.validate()?;
        Ok(doc)
    }

    /// Ceilings finite and positive; measured timings finite and positive.
    pub fn validate(&self) -> Result<()> {
        self.hardware.validate().context("field `hardware`")?;
        for (i, m) in self.measurements.iter().enumerate() {
            let s = &m.seconds;
            for (what, v) in [("median", s.median), ("min", s.min), ("max", s.max)] {
                if !(v.is_finite() && v > 0.0) {
                    bail!("field `measurements[{i}].seconds.{what}` is {v}: a duration must be finite and positive");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day) = 951827696.
        assert_eq!(format_utc(951_827_696), "2000-02-29T12:34:56Z");
        // 2026-01-01T00:00:00Z = 1767225600.
        assert_eq!(format_utc(1_767_225_600), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn bad_documents_give_one_clear_error() {
        let e = ResultDoc::from_json("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = format!("{:#}", ResultDoc::from_json("{").unwrap_err());
        assert!(e.contains("malformed JSON"), "{e}");
        let e = ResultDoc::from_json(r#"{"kind":"rooflinebench-result","schema_version":99}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema_version 99"), "{e}");
        let e = ResultDoc::from_json(r#"{"schema_version":1,"name":"x","compute":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hardware profile"), "{e}");
        let e = ResultDoc::from_json("[1,2]").unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
    }
}
