//! Turns result documents into charts: which points go on which roofline, with which labels
//! and tooltips. Rendering is [`super::plot`]'s job.

use super::plot::{ChartPoint, DeviceRoofs, LineChart, LineSeries, RooflineChart};
use super::svg::{seconds, si, sig3};
use crate::result::{ResultDoc, ScenarioPrediction};
use rooflinebench_model::hardware::{CeilingSource, Precision};
use rooflinebench_model::measure::{MeasuredPoint, Scope};
use rooflinebench_model::roofline::{KindPrediction, Roof};
use rooflinebench_model::units::{Bytes, Flops};

/// One chart of the report.
pub enum Chart {
    Roofline(RooflineChart),
    Line(LineChart),
}

impl Chart {
    pub fn id(&self) -> &str {
        match self {
            Chart::Roofline(c) => &c.id,
            Chart::Line(c) => &c.id,
        }
    }
    pub fn title(&self) -> &str {
        match self {
            Chart::Roofline(c) => &c.title,
            Chart::Line(c) => &c.title,
        }
    }
    pub fn svg(&self) -> String {
        match self {
            Chart::Roofline(c) => super::plot::roofline_svg(c),
            Chart::Line(c) => super::plot::line_svg(c),
        }
    }
}

/// A file-name-safe version of `s`.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let t = out.trim_matches('-').to_string();
    if t.is_empty() {
        "result".into()
    } else {
        t.chars().take(60).collect()
    }
}

/// The source whose predictions are drawn as points: measured ceilings when the document has
/// them, else the first available.
pub fn primary_source(doc: &ResultDoc) -> Option<CeilingSource> {
    let sources: Vec<CeilingSource> = doc
        .scenarios
        .iter()
        .flat_map(|s| s.predictions.iter().map(|p| p.source))
        .collect();
    [
        CeilingSource::Measured,
        CeilingSource::Theoretical,
        CeilingSource::MeasuredElsewhere,
    ]
    .into_iter()
    .find(|s| sources.contains(s))
}

fn source_words(s: CeilingSource) -> &'static str {
    match s {
        CeilingSource::Measured => "measured ceilings",
        CeilingSource::Theoretical => "theoretical ceilings",
        CeilingSource::MeasuredElsewhere => "published measured ceilings",
    }
}

/// Precisions that matter for a document: every phase's main precision, every operator's and
/// every measured point's, plus f32 (the usual reference).
fn precisions(doc: &ResultDoc) -> Vec<Precision> {
    let mut v = vec![Precision::F32];
    for s in &doc.scenarios {
        for p in &s.predictions {
            v.push(p.request.prefill.roof.precision);
            v.extend(p.prefill_ops.iter().map(|k| k.compute));
            v.extend(p.decode_last_ops.iter().map(|k| k.compute));
        }
    }
    v.extend(doc.measurements.iter().map(|m| m.compute));
    v.sort();
    v.dedup();
    v
}

fn point_tooltip(
    title: &str,
    flops: Flops,
    bytes: Bytes,
    secs: f64,
    roof: &Roof,
    extra: &[String],
) -> String {
    let oi = flops / bytes;
    let perf = flops.as_f64() / secs;
    let att = roof.attainable(oi).0;
    let mut t = format!(
        "{title}\nintensity {} FLOP/byte ({}-bound; ridge {})\nperformance {}FLOP/s of {}FLOP/s attainable ({}%)\ntime {}\nwork {}FLOP, traffic {}B",
        sig3(oi.0),
        roof.bound(oi),
        sig3(roof.ridge().0),
        si(perf),
        si(att),
        sig3(100.0 * perf / att),
        seconds(secs),
        si(flops.as_f64()),
        si(bytes.as_f64()),
    );
    for e in extra {
        t.push('\n');
        t.push_str(e);
    }
    t
}

fn measured_point(
    m: &MeasuredPoint,
    doc: &ResultDoc,
    device: usize,
    series: String,
) -> Option<ChartPoint> {
    let oi = m.intensity().0;
    let perf = m.perf().0;
    if !(oi.is_finite() && oi > 0.0 && perf.is_finite() && perf > 0.0) {
        return None;
    }
    let src = primary_source(doc).unwrap_or(CeilingSource::Measured);
    let peak = doc
        .hardware
        .peak(m.compute, src, None)
        .or_else(|| doc.hardware.peak(Precision::F32, src, None));
    let bw = doc
        .hardware
        .bandwidth(rooflinebench_model::hardware::MemLevel::Dram, src, None);
    let roof = peak.zip(bw).map(|(p, b)| (p.0, b.0));
    let rec = doc
        .potential
        .iter()
        .find(|r| r.label == m.label && r.source == src && r.measured_seconds.is_some());
    let mut tip = format!(
        "{} (measured, {} scope)\n{} {} threads, batch {}, {}\nintensity {} FLOP/byte\nperformance {}FLOP/s, bandwidth {}B/s\ntime median {} (min {}, max {}, {} samples)",
        m.label,
        m.scope,
        m.engine,
        m.threads,
        m.batch,
        m.compute,
        sig3(oi),
        si(perf),
        si(m.bandwidth().0),
        seconds(m.seconds.median),
        seconds(m.seconds.min),
        seconds(m.seconds.max),
        m.seconds.samples.len()
    );
    if let Some(r) = rec {
        tip.push_str(&format!(
            "\nvs {}: efficiency {}%, Phi {} (decades {}), {}-bound",
            source_words(src),
            sig3(100.0 * r.potential.efficiency),
            sig3(r.potential.phi),
            sig3(r.potential.phi_decades),
            r.potential.side
        ));
        if let Some(p) = r.predicted_seconds {
            tip.push_str(&format!(
                "\npredicted {} (measured/predicted {})",
                seconds(p),
                sig3(m.seconds.median / p)
            ));
        }
    }
    Some(ChartPoint {
        label: m.label.clone(),
        series,
        device,
        intensity: oi,
        perf,
        measured: true,
        tooltip: tip,
        roof,
    })
}

/// Predicted points of one scenario (prefill, last decode step, whole request) for `pred`.
fn scenario_points(
    name: &str,
    prompt: u64,
    pred: &ScenarioPrediction,
    device: usize,
    series_prefix: &str,
) -> Vec<ChartPoint> {
    let r = &pred.request;
    let roof = r.prefill.roof;
    let src = source_words(pred.source);
    let mut out = Vec::new();
    if r.prefill.seconds.0 > 0.0 {
        out.push(ChartPoint {
            label: format!("prefill {prompt}"),
            series: format!("{series_prefix}prefill"),
            device,
            intensity: (r.prefill.flops / r.prefill.bytes).0,
            perf: r.prefill.flops.as_f64() / r.prefill.seconds.0,
            measured: false,
            tooltip: point_tooltip(
                &format!("{name}: prefill of {prompt} tokens (predicted, {src})"),
                r.prefill.flops,
                r.prefill.bytes,
                r.prefill.seconds.0,
                &roof,
                &[format!(
                    "MBU {}%, MFU {}%",
                    sig3(100.0 * r.prefill.mbu),
                    sig3(100.0 * r.prefill.mfu)
                )],
            ),
            roof: None,
        });
    }
    if let Some(d) = &r.decode_last {
        if d.seconds_per_step.0 > 0.0 {
            out.push(ChartPoint {
                label: format!("decode@{}", d.context),
                series: format!("{series_prefix}decode step"),
                device,
                intensity: (d.flops / d.bytes).0,
                perf: d.flops.as_f64() / d.seconds_per_step.0,
                measured: false,
                tooltip: point_tooltip(
                    &format!(
                        "{name}: last decode step, context {} (predicted, {src})",
                        d.context
                    ),
                    d.flops,
                    d.bytes,
                    d.seconds_per_step.0,
                    &roof,
                    &[format!(
                        "{} tokens/s; MBU {}%, MFU {}%",
                        sig3(d.tokens_per_second),
                        sig3(100.0 * d.mbu),
                        sig3(100.0 * d.mfu)
                    )],
                ),
                roof: None,
            });
        }
    }
    if r.request_seconds.0 > 0.0 {
        out.push(ChartPoint {
            label: format!("{name} request"),
            series: format!("{series_prefix}whole request"),
            device,
            intensity: (r.flops / r.bytes).0,
            perf: r.flops.as_f64() / r.request_seconds.0,
            measured: false,
            tooltip: point_tooltip(
                &format!("{name}: whole request (predicted, {src})"),
                r.flops,
                r.bytes,
                r.request_seconds.0,
                &roof,
                &[format!(
                    "TTFT {}, mean TPOT {}, decode {} tokens/s",
                    seconds(r.ttft_seconds.0),
                    seconds(r.tpot_mean_seconds.0),
                    sig3(r.decode_tokens_per_second)
                )],
            ),
            roof: None,
        });
    }
    out
}

/// Merges predicted points at the same place (e.g. SISO and SILO share the same prefill):
/// one point, the labels joined.
fn merge_duplicates(points: Vec<ChartPoint>) -> Vec<ChartPoint> {
    let mut out: Vec<ChartPoint> = Vec::new();
    for p in points {
        if let Some(q) = out.iter_mut().find(|q| {
            !q.measured
                && !p.measured
                && q.series == p.series
                && q.device == p.device
                && (q.intensity / p.intensity - 1.0).abs() < 1e-9
                && (q.perf / p.perf - 1.0).abs() < 1e-9
        }) {
            q.tooltip.push_str("\n\nsame point as:\n");
            q.tooltip.push_str(&p.tooltip);
            continue;
        }
        out.push(p);
    }
    out
}

fn kind_points(ops: &[KindPrediction], what: &str, src: CeilingSource) -> Vec<ChartPoint> {
    ops.iter()
        .filter(|k| k.flops.0 > 0 && k.bytes.0 > 0 && k.seconds.0 > 0.0)
        .map(|k| ChartPoint {
            label: k.kind.name().to_string(),
            series: format!(
                "{} ({})",
                if k.bound == rooflinebench_model::roofline::Bound::Memory {
                    "memory-bound"
                } else {
                    "compute-bound"
                },
                k.compute
            ),
            device: 0,
            intensity: (k.flops / k.bytes).0,
            perf: k.flops.as_f64() / k.seconds.0,
            measured: false,
            tooltip: point_tooltip(
                &format!(
                    "{} x{} in {what} (predicted, {}, {} roof)",
                    k.kind.name(),
                    k.count,
                    source_words(src),
                    k.roof.precision
                ),
                k.flops,
                k.bytes,
                k.seconds.0,
                &k.roof,
                &[],
            ),
            roof: None,
        })
        .collect()
}

/// Every chart of one document; `prefix` makes ids unique across documents.
pub fn doc_charts(doc: &ResultDoc, prefix: &str) -> Vec<Chart> {
    let mut charts = Vec::new();
    let device = DeviceRoofs::from_profile(&doc.hardware, &precisions(doc));
    let src = primary_source(doc);
    let who = format!("{} on {}", doc.model.name, doc.hardware.name);

    // 1. Scenarios.
    let mut points = Vec::new();
    if let Some(src) = src {
        for s in &doc.scenarios {
            if let Some(p) = s.predictions.iter().find(|p| p.source == src) {
                points.extend(scenario_points(
                    &s.scenario.name,
                    s.scenario.prompt,
                    p,
                    0,
                    "",
                ));
            }
        }
    }
    let mut points = merge_duplicates(points);
    for m in doc
        .measurements
        .iter()
        .filter(|m| m.scope != Scope::Operator)
    {
        if let Some(p) = measured_point(m, doc, 0, format!("measured {}", m.phase)) {
            points.push(p);
        }
    }
    charts.push(Chart::Roofline(RooflineChart {
        id: format!("{prefix}scenarios"),
        title: format!("Roofline: {who}"),
        subtitle: format!(
            "scenarios {}; hollow points predicted with {}{}",
            doc.scenarios
                .iter()
                .map(|s| s.scenario.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            src.map(source_words).unwrap_or("no ceilings"),
            if doc.measurements.is_empty() {
                "; no measurements"
            } else {
                ", filled points measured"
            }
        ),
        devices: vec![device.clone()],
        points,
    }));

    // 2-3. Operators of the longest decode and the longest prefill.
    if let Some(src) = src {
        let longest_decode = doc
            .scenarios
            .iter()
            .filter_map(|s| {
                let p = s.predictions.iter().find(|p| p.source == src)?;
                let d = p.request.decode_last.as_ref()?;
                Some((d.context, s, p))
            })
            .max_by_key(|(c, _, _)| *c);
        if let Some((ctx, s, p)) = longest_decode {
            let mut pts = kind_points(
                &p.decode_last_ops,
                &format!("decode step at context {ctx}"),
                src,
            );
            pts.extend(
                doc.measurements
                    .iter()
                    .filter(|m| m.scope == Scope::Operator && m.phase == "decode")
                    .filter_map(|m| {
                        measured_point(m, doc, 0, format!("measured decode@{}", m.context))
                    }),
            );
            charts.push(Chart::Roofline(RooflineChart {
                id: format!("{prefix}ops-decode"),
                title: format!("Operators of one decode step at context {ctx}: {who}"),
                subtitle: format!(
                    "{} (last step), summed over layers; predicted with {}",
                    s.scenario.name,
                    source_words(src)
                ),
                devices: vec![device.clone()],
                points: pts,
            }));
        }
        let longest_prefill = doc
            .scenarios
            .iter()
            .filter_map(|s| {
                Some((
                    s.scenario.prompt,
                    s,
                    s.predictions.iter().find(|p| p.source == src)?,
                ))
            })
            .max_by_key(|(n, _, _)| *n);
        if let Some((n, s, p)) = longest_prefill {
            let mut pts = kind_points(&p.prefill_ops, &format!("prefill of {n} tokens"), src);
            pts.extend(
                doc.measurements
                    .iter()
                    .filter(|m| m.scope == Scope::Operator && m.phase == "prefill")
                    .filter_map(|m| {
                        measured_point(m, doc, 0, format!("measured prefill {}", m.tokens))
                    }),
            );
            charts.push(Chart::Roofline(RooflineChart {
                id: format!("{prefix}ops-prefill"),
                title: format!("Operators of a prefill of {n} tokens: {who}"),
                subtitle: format!(
                    "{}, summed over layers; predicted with {}",
                    s.scenario.name,
                    source_words(src)
                ),
                devices: vec![device],
                points: pts,
            }));
        }
    }

    // 4. Sweeps.
    for sw in &doc.sweeps {
        charts.push(Chart::Line(LineChart {
            id: format!("{prefix}{}", slug(&sw.id)),
            title: sw.title.clone(),
            subtitle: format!("{who}; roofline predictions"),
            x_label: sw.x_label.clone(),
            y_label: sw.y_label.clone(),
            x_log: sw.x_log,
            y_log: sw.y_log,
            series: sw
                .series
                .iter()
                .map(|s| LineSeries {
                    name: s.name.clone(),
                    points: s.points.iter().map(|p| (p[0], p[1])).collect(),
                })
                .collect(),
        }));
    }
    charts
}

/// Several devices overlaid: each document's scenario points on its own device's roofs (the
/// paper's "efficiency trap": the same workload sits at a different place relative to each
/// device's ridge).
pub fn devices_chart(docs: &[&ResultDoc]) -> Option<Chart> {
    let mut names: Vec<&str> = Vec::new();
    for d in docs {
        if !names.contains(&d.hardware.name.as_str()) {
            names.push(&d.hardware.name);
        }
    }
    if names.len() < 2 {
        return None;
    }
    let mut devices = Vec::new();
    let mut points = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(doc) = docs.iter().find(|d| d.hardware.name == *name) else {
            continue;
        };
        // Only the DRAM roofs and the main precision, or the overlay becomes unreadable.
        let mut roofs = DeviceRoofs::from_profile(&doc.hardware, &precisions(doc));
        roofs
            .bandwidth
            .retain(|b| b.level == rooflinebench_model::hardware::MemLevel::Dram);
        devices.push(roofs);
        for doc in docs.iter().filter(|d| d.hardware.name == *name) {
            let Some(src) = primary_source(doc) else {
                continue;
            };
            for s in &doc.scenarios {
                if let Some(p) = s.predictions.iter().find(|p| p.source == src) {
                    for mut pt in scenario_points(&s.scenario.name, s.scenario.prompt, p, i, "") {
                        pt.series = name.to_string();
                        pt.label = format!(
                            "{} {}",
                            s.scenario.name,
                            pt.label.replace(&format!("{} ", s.scenario.name), "")
                        );
                        pt.tooltip = format!("{name} / {}\n{}", doc.model.name, pt.tooltip);
                        points.push(pt);
                    }
                }
            }
        }
    }
    let mut models: Vec<&str> = docs.iter().map(|d| d.model.name.as_str()).collect();
    models.dedup();
    Some(Chart::Roofline(RooflineChart {
        id: "devices".into(),
        title: format!("Devices overlaid: {}", names.join(", ")),
        subtitle: format!(
            "{}; one colour per device, its roofs and its predicted points",
            models.join(", ")
        ),
        devices,
        points: merge_duplicates(points),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(
            slug("SmolLM2-135M on Intel(R) Xeon(R) @ 2.1GHz"),
            "smollm2-135m-on-intel-r-xeon-r-2.1ghz"
        );
        assert_eq!(slug("///"), "result");
    }
}
