//! A family's outputs, rebuilt from its point files: a table (stdout), a CSV, and charts drawn
//! with the report's plotting API (roofline charts per family, line charts against depth).

use super::{Family, PhaseNumbers, SweepPoint};
use crate::report::plot::{
    line_svg, roofline_svg, ChartPoint, DeviceRoofs, LineChart, LineSeries, RooflineChart,
};
use crate::report::svg::{seconds, si, sig3};
use anyhow::Result;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use rooflinebench_model::hardware::{HardwareProfile, Precision};
use std::collections::BTreeMap;

fn bound(p: &PhaseNumbers) -> &'static str {
    match p.bound {
        rooflinebench_model::roofline::Bound::Memory => "mem",
        rooflinebench_model::roofline::Bound::Compute => "compute",
    }
}

/// The human table.
pub fn table(points: &[SweepPoint]) -> String {
    let measured = points.iter().any(|p| p.measured.is_some());
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    let mut h = vec![
        "variant",
        "scenario",
        "hardware",
        "OI prefill",
        "OI decode",
        "OI request",
        "bound p/d",
        "TTFT",
        "TPOT",
        "tok/s",
        "request",
        "MBU",
    ];
    if measured {
        h.extend(["meas TTFT", "meas TPOT", "meas/pred TPOT"]);
    }
    t.set_header(h);
    for p in points {
        let r = &p.predicted;
        let right = |x: String| Cell::new(x).set_alignment(CellAlignment::Right);
        let dl = r.decode_last.as_ref();
        let mut row = vec![
            Cell::new(&p.variant),
            Cell::new(&p.scenario.name),
            Cell::new(&p.hardware),
            right(sig3(r.prefill.intensity_flops_per_byte)),
            right(dl.map_or("-".into(), |d| sig3(d.intensity_flops_per_byte))),
            right(sig3(r.request.intensity_flops_per_byte)),
            Cell::new(format!("{}/{}", bound(&r.prefill), dl.map_or("-", bound))),
            right(seconds(r.ttft_seconds)),
            right(seconds(r.tpot_mean_seconds)),
            right(sig3(r.decode_tokens_per_second)),
            right(seconds(r.request.seconds)),
            right(format!("{:.0}%", 100.0 * r.mbu)),
        ];
        if measured {
            let m = p.measured.as_ref();
            let ttft = m.and_then(|m| m.prefill_seconds.as_ref()).map(|s| s.median);
            let tpot = m.and_then(|m| m.tpot_seconds());
            // Compare with the predicted step at the measured depth's context, the first step.
            let pred = r.decode_first.as_ref().map(|d| d.seconds);
            row.push(right(ttft.map_or("-".into(), seconds)));
            row.push(right(tpot.map_or("-".into(), seconds)));
            row.push(right(match (tpot, pred) {
                (Some(a), Some(b)) if b > 0.0 => sig3(a / b),
                _ => "-".into(),
            }));
        }
        t.add_row(row);
    }
    format!("{t}\n")
}

/// The CSV: one row per point, SI units in the column names.
pub fn csv(points: &[SweepPoint]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "family",
        "id",
        "variant",
        "x",
        "model",
        "layers",
        "attention",
        "params",
        "weights",
        "kv",
        "scenario",
        "prompt",
        "generate",
        "hardware",
        "ceiling_source",
        "ridge_flop_per_byte",
        "prefill_flops",
        "prefill_bytes",
        "prefill_intensity",
        "prefill_seconds",
        "prefill_flops_per_second",
        "decode_last_intensity",
        "decode_last_seconds",
        "request_flops",
        "request_bytes",
        "request_intensity",
        "request_seconds",
        "request_flops_per_second",
        "ttft_seconds",
        "tpot_mean_seconds",
        "decode_tokens_per_second",
        "mbu",
        "mfu",
        "measured_engine",
        "measured_prefill_seconds",
        "measured_decode_depth",
        "measured_tpot_seconds",
        "notes",
    ])?;
    let f = |v: f64| format!("{v:e}");
    for p in points {
        let r = &p.predicted;
        let m = p.measured.as_ref();
        w.write_record([
            p.family.name().to_string(),
            p.id.clone(),
            p.variant.clone(),
            p.x.to_string(),
            p.model.clone(),
            p.layers.to_string(),
            p.attention.clone(),
            p.params_total.to_string(),
            p.weights.clone(),
            p.kv.clone(),
            p.scenario.name.clone(),
            p.scenario.prompt.to_string(),
            p.scenario.generate.to_string(),
            p.hardware.clone(),
            p.ceiling_source.name().to_string(),
            f(r.ridge_flops_per_byte),
            r.prefill.flops.to_string(),
            r.prefill.bytes.to_string(),
            f(r.prefill.intensity_flops_per_byte),
            f(r.prefill.seconds),
            f(r.prefill.flops_per_second),
            r.decode_last
                .as_ref()
                .map_or(String::new(), |d| f(d.intensity_flops_per_byte)),
            r.decode_last
                .as_ref()
                .map_or(String::new(), |d| f(d.seconds)),
            r.request.flops.to_string(),
            r.request.bytes.to_string(),
            f(r.request.intensity_flops_per_byte),
            f(r.request.seconds),
            f(r.request.flops_per_second),
            f(r.ttft_seconds),
            f(r.tpot_mean_seconds),
            f(r.decode_tokens_per_second),
            f(r.mbu),
            f(r.mfu),
            m.map_or(String::new(), |m| m.engine.clone()),
            m.and_then(|m| m.prefill_seconds.as_ref())
                .map_or(String::new(), |s| f(s.median)),
            m.map_or(String::new(), |m| m.decode_depth.to_string()),
            m.and_then(|m| m.tpot_seconds()).map_or(String::new(), f),
            p.notes.join("; "),
        ])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// One rendered chart: file stem and SVG.
pub struct Chart {
    pub id: String,
    pub svg: String,
}

fn tip(p: &SweepPoint, what: &str, n: &PhaseNumbers) -> String {
    format!(
        "{} / {} / {}: {what}\nOI {} FLOP/byte\npredicted {}FLOP/s, {}\n{} on {} ({} ceilings)",
        p.variant,
        p.scenario.name,
        p.model,
        sig3(n.intensity_flops_per_byte),
        si(n.flops_per_second),
        seconds(n.seconds),
        p.weights,
        p.hardware,
        p.ceiling_source.name()
    )
}

fn precisions_of(points: &[SweepPoint]) -> Vec<Precision> {
    let mut v: Vec<Precision> = Vec::new();
    for p in points {
        if let Ok(pr) = serde_json::from_value::<Precision>(serde_json::Value::String(
            p.predicted.precision.clone(),
        )) {
            if !v.contains(&pr) {
                v.push(pr);
            }
        }
    }
    v
}

/// A roofline chart of the family's predicted (hollow) and measured (filled) points: the
/// prefill and the last decode step per variant and scenario.
fn roofline(
    family: Family,
    points: &[SweepPoint],
    profiles: &[HardwareProfile],
    title: String,
) -> Chart {
    let precisions = precisions_of(points);
    let devices: Vec<DeviceRoofs> = profiles
        .iter()
        .map(|p| DeviceRoofs::from_profile(p, &precisions))
        .collect();
    let dev_index = |name: &str| profiles.iter().position(|p| p.name == name).unwrap_or(0);
    let mut cp = Vec::new();
    for p in points {
        let d = dev_index(&p.hardware);
        let series = match family {
            Family::Scenarios => p.scenario.name.clone(),
            _ => p.variant.clone(),
        };
        let mut add = |what: &str, n: &PhaseNumbers, label: String| {
            if n.seconds > 0.0 && n.intensity_flops_per_byte.is_finite() {
                cp.push(ChartPoint {
                    label,
                    series: series.clone(),
                    device: d,
                    intensity: n.intensity_flops_per_byte,
                    perf: n.flops_per_second,
                    measured: false,
                    tooltip: tip(p, what, n),
                    roof: None,
                });
            }
        };
        add(
            "prefill",
            &p.predicted.prefill,
            format!("{} prefill", p.scenario.name),
        );
        if let Some(dl) = &p.predicted.decode_last {
            add(
                "last decode step",
                dl,
                format!("{} decode", p.scenario.name),
            );
        }
        if let Some(m) = &p.measured {
            for mp in m
                .points
                .iter()
                .filter(|x| x.scope != rooflinebench_model::measure::Scope::Operator)
            {
                cp.push(ChartPoint {
                    label: format!("measured {}", mp.label),
                    series: series.clone(),
                    device: d,
                    intensity: mp.intensity().0,
                    perf: mp.perf().0,
                    measured: true,
                    tooltip: format!(
                        "{} / {}: measured {}\n{}FLOP/s, median {}\n{}",
                        p.variant,
                        p.scenario.name,
                        mp.label,
                        si(mp.perf().0),
                        seconds(mp.seconds.median),
                        mp.engine
                    ),
                    roof: Some((
                        p.predicted.roof_flops_per_second,
                        p.predicted.roof_bytes_per_second,
                    )),
                });
            }
        }
    }
    let id = format!("sweep-{}-roofline", family.name());
    Chart {
        svg: roofline_svg(&RooflineChart {
            id: id.clone(),
            title,
            subtitle:
                "hollow: roofline prediction (prefill and last decode step); filled: measured"
                    .into(),
            devices,
            points: cp,
        }),
        id,
    }
}

/// Line charts against depth: operational intensity and predicted performance per scenario
/// and phase (the paper's finding 2), plus measured time per token when measured.
fn depth_lines(points: &[SweepPoint], who: &str) -> Vec<Chart> {
    let mut oi: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut perf: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut tpot: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for p in points {
        let sc = &p.scenario.name;
        let r = &p.predicted;
        oi.entry(format!("{sc} request"))
            .or_default()
            .push((p.x, r.request.intensity_flops_per_byte));
        // Scenarios sharing a prompt share a prefill: one series per prompt length.
        let pre = oi
            .entry(format!("prefill {}", p.scenario.prompt))
            .or_default();
        if !pre.iter().any(|q| q.0 == p.x) {
            pre.push((p.x, r.prefill.intensity_flops_per_byte));
        }
        if let Some(d) = &r.decode_last {
            let ctx = p.scenario.decode_context(p.scenario.decode_steps());
            let dec = oi.entry(format!("decode step @{ctx}")).or_default();
            if !dec.iter().any(|q| q.0 == p.x) {
                dec.push((p.x, d.intensity_flops_per_byte));
            }
        }
        perf.entry(format!("{sc} request"))
            .or_default()
            .push((p.x, r.request.flops_per_second));
        if let Some(m) = &p.measured {
            if let Some(t) = m.tpot_seconds() {
                tpot.entry(format!("{sc} measured"))
                    .or_default()
                    .push((p.x, t));
            }
            if let Some(d) = &r.decode_first {
                tpot.entry(format!("{sc} predicted"))
                    .or_default()
                    .push((p.x, d.seconds));
            }
        }
    }
    let series = |m: BTreeMap<String, Vec<(f64, f64)>>| -> Vec<LineSeries> {
        m.into_iter()
            .map(|(name, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                LineSeries { name, points }
            })
            .collect()
    };
    let mut out = vec![
        Chart {
            id: "sweep-depth-intensity".into(),
            svg: line_svg(&LineChart {
                id: "sweep-depth-intensity".into(),
                title: format!("{who}: operational intensity against depth"),
                subtitle: "layers cut, or the last layer repeated; whole request, prefill, last decode step".into(),
                x_label: "layers".into(),
                y_label: "operational intensity (FLOP/byte)".into(),
                x_log: false,
                y_log: true,
                series: series(oi),
            }),
        },
        Chart {
            id: "sweep-depth-performance".into(),
            svg: line_svg(&LineChart {
                id: "sweep-depth-performance".into(),
                title: format!("{who}: predicted whole-request performance against depth"),
                subtitle: "roofline prediction, every operator on its own roof".into(),
                x_label: "layers".into(),
                y_label: "FLOP/s".into(),
                x_log: false,
                y_log: true,
                series: series(perf),
            }),
        },
    ];
    if !tpot.is_empty() {
        out.push(Chart {
            id: "sweep-depth-tpot".into(),
            svg: line_svg(&LineChart {
                id: "sweep-depth-tpot".into(),
                title: format!("{who}: time per output token against depth"),
                subtitle: "measured (built-in engine) and predicted, decode at the prompt's depth"
                    .into(),
                x_label: "layers".into(),
                y_label: "seconds per token".into(),
                x_log: false,
                y_log: true,
                series: series(tpot),
            }),
        });
    }
    out
}

/// Every chart of a family.
pub fn charts(family: Family, points: &[SweepPoint], profiles: &[HardwareProfile]) -> Vec<Chart> {
    if points.is_empty() {
        return Vec::new();
    }
    let model = &points[0].model;
    let hw = &points[0].hardware;
    match family {
        Family::Depth => {
            // Depth variants are named `<model>-<L>L`.
            let base = model.rsplit_once('-').map_or(model.as_str(), |(a, _)| a);
            let who = format!("{base} ({} weights) on {hw}", points[0].weights);
            depth_lines(points, &who)
        }
        Family::Scenarios => vec![roofline(
            family,
            points,
            profiles,
            format!("Scenarios: {model} ({}) on {hw}", points[0].weights),
        )],
        Family::Precision => vec![roofline(
            family,
            points,
            profiles,
            format!("Weight precision: {model} on {hw}"),
        )],
        Family::Attention => vec![roofline(
            family,
            points,
            profiles,
            format!(
                "Attention at ~1.5B parameters on {hw} ({} weights)",
                points[0].weights
            ),
        )],
        Family::Devices => vec![roofline(
            family,
            points,
            profiles,
            format!(
                "One workload across devices: {model} ({})",
                points[0].weights
            ),
        )],
    }
}
