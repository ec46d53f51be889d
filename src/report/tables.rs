//! The report's tables, built once and rendered by the HTML, Markdown and CSV exporters.

use super::charts::primary_source;
use super::svg::{seconds, si, sig3};
use crate::result::{PointOrigin, ResultDoc};
use rooflinebench_model::hardware::{CeilingSource, MemLevel, Precision};
use rooflinebench_model::roofline::Bound;

/// A table: header and rows of already formatted cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub title: String,
    /// A sentence under the title: what the numbers mean, which scope, which denominators.
    pub note: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn h(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{}%", sig3(100.0 * v))
    } else {
        "-".into()
    }
}

fn bound_of(oi: f64, ridge: f64) -> Bound {
    if oi < ridge {
        Bound::Memory
    } else {
        Bound::Compute
    }
}

/// Ceilings of the document's profile.
pub fn ceilings(doc: &ResultDoc) -> Table {
    let mut rows = Vec::new();
    for c in &doc.hardware.compute {
        rows.push(vec![
            "compute".into(),
            c.precision.to_string(),
            c.source.name().into(),
            format!("{}FLOP/s", si(c.flops_per_second)),
            c.threads.map_or("-".into(), |t| t.to_string()),
            c.kernel.clone().unwrap_or_else(|| "-".into()),
            if c.unstable {
                "unstable".into()
            } else {
                String::new()
            },
            c.note.clone().unwrap_or_default(),
        ]);
    }
    for b in &doc.hardware.bandwidth {
        rows.push(vec![
            "bandwidth".into(),
            format!("{} ({:?})", b.level, b.pattern)
                .to_lowercase()
                .replace("dram", "DRAM"),
            b.source.name().into(),
            format!("{}B/s", si(b.bytes_per_second)),
            b.threads.map_or("-".into(), |t| t.to_string()),
            b.kernel.clone().unwrap_or_else(|| "-".into()),
            if b.unstable {
                "unstable".into()
            } else {
                String::new()
            },
            b.note.clone().unwrap_or_default(),
        ]);
    }
    Table {
        title: "Ceilings".into(),
        note: format!(
            "Hardware profile `{}`{}. Measured ceilings are the best trial; theoretical ones come from spec sheets or FLOPs-per-cycle tables.",
            doc.hardware.name,
            doc.hardware.source.as_deref().map(|s| format!(" (source: {s})")).unwrap_or_default()
        ),
        header: h(&["kind", "precision / level", "source", "value", "threads", "kernel", "flag", "note"]),
        rows,
    }
}

/// Ridge points per precision and source (against DRAM).
pub fn ridges(doc: &ResultDoc) -> Table {
    let mut rows = Vec::new();
    for s in [
        CeilingSource::Measured,
        CeilingSource::Theoretical,
        CeilingSource::MeasuredElsewhere,
    ] {
        let Some(bw) = doc.hardware.bandwidth(MemLevel::Dram, s, None) else {
            continue;
        };
        for p in Precision::ALL {
            if let Some(pi) = doc.hardware.peak(p, s, None) {
                rows.push(vec![
                    p.to_string(),
                    s.name().into(),
                    format!("{}FLOP/s", si(pi.0)),
                    format!("{}B/s", si(bw.0)),
                    sig3((pi / bw).0),
                ]);
            }
        }
    }
    Table {
        title: "Ridge points".into(),
        note: "Ridge = peak / DRAM bandwidth (FLOP/byte): left of it a workload is memory-bound, right of it compute-bound.".into(),
        header: h(&["precision", "source", "peak", "DRAM bandwidth", "ridge (FLOP/byte)"]),
        rows,
    }
}

/// Predicted time and utilisation per scenario and ceiling source.
pub fn scenarios(doc: &ResultDoc) -> Table {
    let mut rows = Vec::new();
    for s in &doc.scenarios {
        let sc = &s.scenario;
        for p in &s.predictions {
            let r = &p.request;
            let ridge = r.prefill.roof.ridge().0;
            let pre_oi = (r.prefill.flops / r.prefill.bytes).0;
            let (dec_oi, dec_tps) = r
                .decode_last
                .as_ref()
                .map(|d| ((d.flops / d.bytes).0, d.tokens_per_second))
                .unwrap_or((f64::NAN, f64::NAN));
            rows.push(vec![
                sc.name.clone(),
                format!("{}/{}/{}", sc.prompt, sc.generate, sc.batch),
                p.source.name().into(),
                seconds(r.ttft_seconds.0),
                seconds(r.tpot_mean_seconds.0),
                sig3(r.decode_tokens_per_second),
                if dec_tps.is_finite() {
                    sig3(dec_tps)
                } else {
                    "-".into()
                },
                seconds(r.request_seconds.0),
                format!("{} ({})", sig3(pre_oi), bound_of(pre_oi, ridge)),
                if dec_oi.is_finite() {
                    format!("{} ({})", sig3(dec_oi), bound_of(dec_oi, ridge))
                } else {
                    "-".into()
                },
                pct(r.mbu),
                pct(r.mfu),
            ]);
        }
    }
    Table {
        title: "Scenarios (roofline predictions)".into(),
        note: "Every operator at max(FLOPs/peak, bytes/bandwidth) on the roof of its own precision and DRAM; a request is the prefill plus every decode step at its own context. TPOT = mean time per output token; MBU/MFU are whole-request utilisations against the named ceilings (scope: request).".into(),
        header: h(&[
            "scenario", "prompt/gen/batch", "ceilings", "TTFT", "TPOT (mean)", "decode tok/s (mean)",
            "tok/s at last step", "request time", "prefill OI", "last decode OI", "MBU", "MFU",
        ]),
        rows,
    }
}

/// Measured points next to their predictions.
pub fn measurements(doc: &ResultDoc) -> Table {
    let src = primary_source(doc).unwrap_or(CeilingSource::Measured);
    let mut rows = Vec::new();
    for m in &doc.measurements {
        let rec = doc
            .potential
            .iter()
            .find(|r| r.origin == PointOrigin::Measured && r.label == m.label && r.source == src);
        let pred = rec.and_then(|r| r.predicted_seconds);
        rows.push(vec![
            m.label.clone(),
            m.scope.to_string(),
            m.phase.clone(),
            m.context.to_string(),
            m.tokens.to_string(),
            m.batch.to_string(),
            m.threads.to_string(),
            m.compute.to_string(),
            seconds(m.seconds.median),
            format!("{} .. {}", seconds(m.seconds.min), seconds(m.seconds.max)),
            m.seconds.samples.len().to_string(),
            format!("{}FLOP/s", si(m.perf().0)),
            format!("{}B/s", si(m.bandwidth().0)),
            sig3(m.intensity().0),
            pred.map_or("-".into(), seconds),
            pred.map_or("-".into(), |p| sig3(m.seconds.median / p)),
            rec.map_or("-".into(), |r| pct(r.potential.efficiency)),
        ]);
    }
    Table {
        title: "Measurements".into(),
        note: format!(
            "Work (FLOPs, bytes) from the cost model, time measured (median of the samples). Predicted time and efficiency use {}; efficiency = performance / attainable at the point's intensity, scope as given.",
            match src {
                CeilingSource::Measured => "measured ceilings",
                CeilingSource::Theoretical => "theoretical ceilings",
                CeilingSource::MeasuredElsewhere => "published ceilings",
            }
        ),
        header: h(&[
            "label", "scope", "phase", "context", "tokens", "batch", "threads", "precision", "median",
            "min .. max", "samples", "performance", "bandwidth", "OI", "predicted", "measured/predicted",
            "efficiency",
        ]),
        rows,
    }
}

/// Relative Inference Potential, memory-bound and compute-bound points kept apart.
pub fn potential(doc: &ResultDoc) -> Table {
    let mut recs: Vec<_> = doc.potential.iter().collect();
    recs.sort_by(|a, b| {
        (a.origin as u8, a.source, a.potential.side)
            .cmp(&(b.origin as u8, b.source, b.potential.side))
            .then(a.potential.phi_decades.total_cmp(&b.potential.phi_decades))
    });
    let rows = recs
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                match r.origin {
                    PointOrigin::Measured => "measured".into(),
                    PointOrigin::Predicted => "predicted".into(),
                },
                r.scope.to_string(),
                r.source.name().into(),
                format!("{} ({})", r.precision, sig3(r.potential.ridge.intensity.0)),
                format!("{}-bound", r.potential.side),
                sig3(r.intensity_flops_per_byte),
                format!("{}FLOP/s", si(r.flops_per_second)),
                format!("{:.4e}", r.potential.phi),
                sig3(r.potential.phi_decades),
                pct(r.potential.efficiency),
            ]
        })
        .collect();
    Table {
        title: "Relative Inference Potential".into(),
        note: "Phi (Eq. 6 memory-bound: distance to the ridge point; Eq. 7 compute-bound: distance to the compute roof) in SI units (FLOP/byte and FLOP/s mixed, as in the paper, so the performance term dominates); Phi (decades) is the same distance on the log-log plot; efficiency = performance / attainable. Smaller Phi = less headroom. Memory- and compute-bound points are incomparable and never ranked together. Predicted points sit on or just below the roof by construction: their Phi only reflects where the workload's intensity lies, not how well anything runs.".into(),
        header: h(&[
            "point", "origin", "scope", "ceilings", "roof (ridge)", "side", "OI", "performance",
            "Phi (Eq. 6/7)", "Phi (decades)", "efficiency",
        ]),
        rows,
    }
}

/// Warnings of the document.
pub fn warnings(doc: &ResultDoc) -> Table {
    Table {
        title: "Warnings".into(),
        note: String::new(),
        header: h(&["code", "message"]),
        rows: doc
            .warnings
            .iter()
            .map(|w| vec![w.code.clone(), w.message.clone()])
            .collect(),
    }
}

/// One row per document: where each workload sits relative to each device's ridge.
pub fn efficiency_trap(docs: &[&ResultDoc]) -> Table {
    let mut rows = Vec::new();
    for doc in docs {
        let Some(src) = primary_source(doc) else {
            continue;
        };
        for s in &doc.scenarios {
            let Some(p) = s.predictions.iter().find(|p| p.source == src) else {
                continue;
            };
            let r = &p.request;
            let roof = r.prefill.roof;
            let ridge = roof.ridge().0;
            let oi = (r.flops / r.bytes).0;
            let dec = r.decode_last.as_ref().map(|d| (d.flops / d.bytes).0);
            rows.push(vec![
                doc.hardware.name.clone(),
                doc.model.name.clone(),
                s.scenario.name.clone(),
                src.name().into(),
                format!("{} ({})", sig3(ridge), roof.precision),
                format!("{} ({})", sig3(oi), bound_of(oi, ridge)),
                dec.map_or("-".into(), |d| {
                    format!("{} ({})", sig3(d), bound_of(d, ridge))
                }),
                pct(r.mfu),
                pct(r.mbu),
                seconds(r.request_seconds.0),
            ]);
        }
    }
    Table {
        title: "Across devices (the efficiency trap)".into(),
        note: "The same workload against each device's ridge: a workload left of a high ridge can use only a small share of that device's compute (MFU), however good the engine.".into(),
        header: h(&["device", "model", "scenario", "ceilings", "ridge", "request OI", "last decode OI", "MFU", "MBU", "request time"]),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_convention_matches_the_paper() {
        assert_eq!(bound_of(1.0, 2.0), Bound::Memory);
        assert_eq!(bound_of(2.0, 2.0), Bound::Compute);
        assert_eq!(pct(0.5), "50%");
        assert_eq!(pct(f64::NAN), "-");
    }
}
