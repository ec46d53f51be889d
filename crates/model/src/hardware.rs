//! The hardware profile: a device's roofline ceilings, measured or from spec sheets.
//!
//! This is a schema and selection logic only. The probe in `rooflinebench-bench` produces
//! measured profiles; the device database (spec-sheet profiles) and user-written files are
//! parsed here. Every ceiling says where it came from ([`CeilingSource`]) so that no figure
//! silently mixes a datasheet number with a measurement (PITFALLS.md #17).

use crate::units::{BytesPerSec, FlopsPerSec};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the hardware-profile JSON; bump on any incompatible change.
pub const HW_SCHEMA_VERSION: u32 = 1;

/// The arithmetic path a kernel executes: which compute roof applies to it (PITFALLS.md #12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F64,
    F32,
    F16,
    Bf16,
    /// 8-bit integer dot products accumulating into i32 (quantized weights x q8 activations).
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 5] = [
        Precision::F64,
        Precision::F32,
        Precision::F16,
        Precision::Bf16,
        Precision::Int8,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A level of the memory hierarchy whose bandwidth is a roof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemLevel {
    L1,
    L2,
    L3,
    Dram,
}

impl MemLevel {
    pub const ALL: [MemLevel; 4] = [MemLevel::L1, MemLevel::L2, MemLevel::L3, MemLevel::Dram];
    pub fn name(self) -> &'static str {
        match self {
            MemLevel::L1 => "L1",
            MemLevel::L2 => "L2",
            MemLevel::L3 => "L3",
            MemLevel::Dram => "DRAM",
        }
    }
}

impl fmt::Display for MemLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a ceiling's number comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeilingSource {
    /// Measured by rooflinebench on this device.
    Measured,
    /// From a spec sheet or a FLOPs-per-cycle table times frequency and cores.
    Theoretical,
    /// Measured by someone else, by a method we do not control (e.g. the RooflineBench paper's
    /// PyTorch `a + b` and `matmul`, Table 1). Never treated as truth.
    MeasuredElsewhere,
}

impl CeilingSource {
    pub fn name(self) -> &'static str {
        match self {
            CeilingSource::Measured => "measured",
            CeilingSource::Theoretical => "theoretical",
            CeilingSource::MeasuredElsewhere => "measured_elsewhere",
        }
    }
}

/// The memory access pattern of a bandwidth kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BwPattern {
    /// Load and reduce: 1 read stream. The roof for LLM decode (weights are read-only).
    Read,
    /// Regular stores: 1 write stream (plus write-allocate reads, reported separately).
    Write,
    /// Non-temporal (streaming) stores: 1 write stream, no write-allocate.
    WriteNt,
    /// `a[i] = b[i]`: 1 read + 1 write stream.
    Copy,
    /// `a[i] = b[i] + s * c[i]`: 2 read + 1 write streams.
    Triad,
    /// Not specified (spec sheets, published numbers).
    Unspecified,
}

/// Summary statistics of repeated trials (rates: larger is better).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleStats {
    /// Every trial's value, in the ceiling's unit, in the order measured.
    pub samples: Vec<f64>,
    pub best: f64,
    pub median: f64,
    /// Coefficient of variation (stddev / mean), dimensionless.
    pub cv: f64,
}

/// A compute roof for one precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeCeiling {
    pub precision: Precision,
    pub source: CeilingSource,
    pub flops_per_second: f64,
    /// Threads the number holds for; `None` for a whole-device spec-sheet figure.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Kernel name (`<op>_<dtype>_<isa>`), for measured ceilings.
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub isa: Option<String>,
    #[serde(default)]
    pub stats: Option<SampleStats>,
    #[serde(default)]
    pub unstable: bool,
    /// Provenance: how the number was obtained or which document it comes from.
    #[serde(default)]
    pub note: Option<String>,
}

/// A bandwidth roof for one memory level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandwidthCeiling {
    pub level: MemLevel,
    pub source: CeilingSource,
    pub pattern: BwPattern,
    /// Nominal traffic: every stream the kernel names, counted once.
    pub bytes_per_second: f64,
    /// Nominal traffic plus write-allocate reads that regular stores cause, when known.
    #[serde(default)]
    pub with_write_allocate_bytes_per_second: Option<f64>,
    #[serde(default)]
    pub threads: Option<u32>,
    #[serde(default)]
    pub working_set_bytes: Option<u64>,
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub isa: Option<String>,
    #[serde(default)]
    pub stats: Option<SampleStats>,
    #[serde(default)]
    pub unstable: bool,
    #[serde(default)]
    pub note: Option<String>,
}

/// A measurement-quality or input problem, with a remedy in its text; printed and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Stable machine-readable code, e.g. `unstable_ceiling`, `throttling_suspected`.
    pub code: String,
    pub message: String,
}

/// A device's ceilings. Produced by `probe`, by the device database, or written by a user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HardwareProfile {
    pub schema_version: u32,
    /// Short name, e.g. `rpi5` or the probed host's CPU model.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Where the numbers come from (document, URL, or `rooflinebench probe`).
    #[serde(default)]
    pub source: Option<String>,
    /// Host description as written by the probe (opaque to this crate).
    #[serde(default)]
    pub host: Option<serde_json::Value>,
    #[serde(default)]
    pub compute: Vec<ComputeCeiling>,
    #[serde(default)]
    pub bandwidth: Vec<BandwidthCeiling>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("malformed hardware profile: {0}")]
    Json(String),
    #[error(
        "hardware profile schema_version {found} is not supported (this build reads {supported})"
    )]
    SchemaVersion { found: u32, supported: u32 },
    #[error("hardware profile field `{field}` is {value}: a ceiling must be finite and positive")]
    BadCeiling { field: String, value: f64 },
    #[error("hardware profile has no {what} ceiling")]
    Missing { what: String },
}

impl HardwareProfile {
    /// Parses and validates a profile from JSON text.
    pub fn from_json(text: &str) -> Result<HardwareProfile, ProfileError> {
        let p: HardwareProfile =
            serde_json::from_str(text).map_err(|e| ProfileError::Json(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Every ceiling finite and positive, the schema version one we read.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.schema_version != HW_SCHEMA_VERSION {
            return Err(ProfileError::SchemaVersion {
                found: self.schema_version,
                supported: HW_SCHEMA_VERSION,
            });
        }
        for (i, c) in self.compute.iter().enumerate() {
            if !(c.flops_per_second.is_finite() && c.flops_per_second > 0.0) {
                return Err(ProfileError::BadCeiling {
                    field: format!("compute[{i}].flops_per_second"),
                    value: c.flops_per_second,
                });
            }
        }
        for (i, b) in self.bandwidth.iter().enumerate() {
            if !(b.bytes_per_second.is_finite() && b.bytes_per_second > 0.0) {
                return Err(ProfileError::BadCeiling {
                    field: format!("bandwidth[{i}].bytes_per_second"),
                    value: b.bytes_per_second,
                });
            }
        }
        Ok(())
    }

    /// The compute roof for `precision` from `source`. With `threads`, the ceiling measured at
    /// exactly that thread count (or a thread-less spec-sheet figure); without, the highest.
    pub fn compute_roof(
        &self,
        precision: Precision,
        source: CeilingSource,
        threads: Option<u32>,
    ) -> Option<&ComputeCeiling> {
        self.compute
            .iter()
            .filter(|c| c.precision == precision && c.source == source)
            .filter(|c| threads.is_none() || c.threads.is_none() || c.threads == threads)
            .max_by(|a, b| a.flops_per_second.total_cmp(&b.flops_per_second))
    }

    /// The bandwidth roof of `level` from `source`: the read pattern if present (LLM inference
    /// traffic is dominated by reads of weights and KV cache), otherwise the best of any pattern.
    pub fn bandwidth_roof(
        &self,
        level: MemLevel,
        source: CeilingSource,
        threads: Option<u32>,
    ) -> Option<&BandwidthCeiling> {
        let matches = |b: &&BandwidthCeiling| {
            b.level == level
                && b.source == source
                && (threads.is_none() || b.threads.is_none() || b.threads == threads)
        };
        let by_rate = |a: &&BandwidthCeiling, b: &&BandwidthCeiling| {
            a.bytes_per_second.total_cmp(&b.bytes_per_second)
        };
        self.bandwidth
            .iter()
            .filter(matches)
            .filter(|b| b.pattern == BwPattern::Read)
            .max_by(by_rate)
            .or_else(|| self.bandwidth.iter().filter(matches).max_by(by_rate))
    }

    pub fn peak(
        &self,
        precision: Precision,
        source: CeilingSource,
        threads: Option<u32>,
    ) -> Option<FlopsPerSec> {
        self.compute_roof(precision, source, threads)
            .map(|c| FlopsPerSec(c.flops_per_second))
    }

    pub fn bandwidth(
        &self,
        level: MemLevel,
        source: CeilingSource,
        threads: Option<u32>,
    ) -> Option<BytesPerSec> {
        self.bandwidth_roof(level, source, threads)
            .map(|b| BytesPerSec(b.bytes_per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(p: Precision, src: CeilingSource, threads: Option<u32>, v: f64) -> ComputeCeiling {
        ComputeCeiling {
            precision: p,
            source: src,
            flops_per_second: v,
            threads,
            kernel: None,
            isa: None,
            stats: None,
            unstable: false,
            note: None,
        }
    }

    fn profile() -> HardwareProfile {
        HardwareProfile {
            schema_version: HW_SCHEMA_VERSION,
            name: "t".into(),
            description: None,
            source: None,
            host: None,
            compute: vec![
                compute(Precision::F32, CeilingSource::Measured, Some(1), 1e11),
                compute(Precision::F32, CeilingSource::Measured, Some(2), 2e11),
                compute(Precision::F32, CeilingSource::Theoretical, None, 3e11),
            ],
            bandwidth: vec![BandwidthCeiling {
                level: MemLevel::Dram,
                source: CeilingSource::Measured,
                pattern: BwPattern::Read,
                bytes_per_second: 5e10,
                with_write_allocate_bytes_per_second: None,
                threads: Some(2),
                working_set_bytes: Some(1 << 30),
                kernel: None,
                isa: None,
                stats: None,
                unstable: false,
                note: None,
            }],
            warnings: vec![],
        }
    }

    #[test]
    fn roof_selection_respects_source_and_threads() {
        let p = profile();
        assert_eq!(
            p.peak(Precision::F32, CeilingSource::Measured, None),
            Some(FlopsPerSec(2e11))
        );
        assert_eq!(
            p.peak(Precision::F32, CeilingSource::Measured, Some(1)),
            Some(FlopsPerSec(1e11))
        );
        assert_eq!(
            p.peak(Precision::F32, CeilingSource::Theoretical, Some(1)),
            Some(FlopsPerSec(3e11))
        );
        assert_eq!(p.peak(Precision::Bf16, CeilingSource::Measured, None), None);
        assert_eq!(
            p.bandwidth(MemLevel::Dram, CeilingSource::Measured, None),
            Some(BytesPerSec(5e10))
        );
    }

    #[test]
    fn nan_or_zero_ceiling_is_rejected_naming_the_field() {
        let mut p = profile();
        p.compute[1].flops_per_second = f64::NAN;
        let e = p.validate().unwrap_err();
        assert!(e.to_string().contains("compute[1].flops_per_second"), "{e}");
        let mut p = profile();
        p.bandwidth[0].bytes_per_second = 0.0;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bandwidth[0]"));
    }

    #[test]
    fn round_trips_through_json() {
        let p = profile();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(HardwareProfile::from_json(&text).unwrap(), p);
        assert!(matches!(
            HardwareProfile::from_json("{\"schema_version\": 99, \"name\": \"x\"}"),
            Err(ProfileError::SchemaVersion { found: 99, .. })
        ));
    }

    /// A saved profile read back must give the same ceilings to the last bit (serde_json's
    /// default float parser is off by one ulp on some values; `float_roundtrip` is enabled).
    #[test]
    fn profile_floats_survive_a_json_round_trip_exactly() {
        let mut p = profile();
        let mut x = 1.234_567_890_123_456_7e11_f64;
        for i in 0..200 {
            x = x * 1.000_000_119 + i as f64 * 0.1;
            p.compute.push(compute(
                Precision::F32,
                CeilingSource::Measured,
                Some(i),
                x / 3.0,
            ));
        }
        let text = serde_json::to_string(&p).unwrap();
        let back: HardwareProfile = serde_json::from_str(&text).unwrap();
        for (a, b) in p.compute.iter().zip(&back.compute) {
            assert_eq!(a.flops_per_second.to_bits(), b.flops_per_second.to_bits());
        }
    }
}
