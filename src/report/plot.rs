//! Roofline and sweep charts as hand-written SVG.
//!
//! A roofline chart has log-log axes (operational intensity in FLOP/byte against performance
//! in FLOP/s), one horizontal compute roof per precision and one diagonal bandwidth roof per
//! memory level, each drawn per ceiling source (measured solid, theoretical dashed, measured
//! elsewhere dotted), ridge points marked, the inference-potential region shaded between a
//! measured point and its roof (ROOFLINEBENCH.md §1), and points with a legend, labels that
//! never overlap (a label that finds no room is dropped; the tooltip and tables keep it), and a
//! `<title>` tooltip on every point. Several devices can be overlaid.
//!
//! The SVG is the single source: the HTML report inlines it, the PNG is rendered from it by
//! [`super::png`].

use super::svg::{
    decade_label, decade_range, esc, nice_ticks, px, si, sig3, text, text_width, Placer, Rect,
    Scale, FONT,
};
use rooflinebench_model::hardware::{CeilingSource, HardwareProfile, MemLevel, Precision};
use std::fmt::Write as _;

/// Canvas size in SVG pixels.
pub const WIDTH: f64 = 1000.0;
pub const HEIGHT: f64 = 640.0;
const PLOT: Rect = Rect {
    x: 90.0,
    y: 62.0,
    w: 630.0,
    h: 500.0,
};
const LEGEND_X: f64 = 740.0;

/// Colour-blind-safe series palette (Okabe-Ito, plus darker extras).
const PALETTE: [&str; 10] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8B4513", "#444444",
    "#7B68EE", "#2F4F4F",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
}
const SHAPES: [Shape; 4] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
];

/// One compute roof.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputeRoof {
    pub precision: Precision,
    pub source: CeilingSource,
    pub flops_per_second: f64,
}

/// One bandwidth roof.
#[derive(Clone, Debug, PartialEq)]
pub struct BandwidthRoof {
    pub level: MemLevel,
    pub source: CeilingSource,
    pub bytes_per_second: f64,
}

/// The roofs of one device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRoofs {
    pub name: String,
    pub compute: Vec<ComputeRoof>,
    pub bandwidth: Vec<BandwidthRoof>,
}

impl DeviceRoofs {
    /// The best ceiling per (precision, source) for `precisions` (all precisions when empty)
    /// and per (level, source) from `profile`.
    pub fn from_profile(profile: &HardwareProfile, precisions: &[Precision]) -> DeviceRoofs {
        let sources = [
            CeilingSource::Theoretical,
            CeilingSource::MeasuredElsewhere,
            CeilingSource::Measured,
        ];
        let mut compute = Vec::new();
        let mut bandwidth = Vec::new();
        for s in sources {
            for p in Precision::ALL {
                if !precisions.is_empty() && !precisions.contains(&p) {
                    continue;
                }
                if let Some(v) = profile.peak(p, s, None) {
                    compute.push(ComputeRoof {
                        precision: p,
                        source: s,
                        flops_per_second: v.0,
                    });
                }
            }
            for l in MemLevel::ALL {
                if let Some(v) = profile.bandwidth(l, s, None) {
                    bandwidth.push(BandwidthRoof {
                        level: l,
                        source: s,
                        bytes_per_second: v.0,
                    });
                }
            }
        }
        DeviceRoofs {
            name: profile.name.clone(),
            compute,
            bandwidth,
        }
    }

    fn dram(&self, source: CeilingSource) -> Option<f64> {
        self.bandwidth
            .iter()
            .find(|b| b.level == MemLevel::Dram && b.source == source)
            .map(|b| b.bytes_per_second)
    }

    fn top_peak(&self, source: CeilingSource) -> Option<f64> {
        self.compute
            .iter()
            .filter(|c| c.source == source)
            .map(|c| c.flops_per_second)
            .max_by(f64::total_cmp)
    }

    /// Ridge points `(intensity, peak, roof)` of every compute roof against DRAM of its source.
    pub fn ridges(&self) -> Vec<(f64, f64, &ComputeRoof)> {
        self.compute
            .iter()
            .filter_map(|c| {
                self.dram(c.source)
                    .map(|b| (c.flops_per_second / b, c.flops_per_second, c))
            })
            .collect()
    }
}

/// A point on a roofline chart.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartPoint {
    /// Short text drawn beside the point (may be dropped when there is no room).
    pub label: String,
    /// Legend group: same series, same colour and shape.
    pub series: String,
    /// Index into the chart's devices.
    pub device: usize,
    pub intensity: f64,
    pub perf: f64,
    /// Measured points are filled; predicted points hollow.
    pub measured: bool,
    /// Every number of the point, one per line; shown on hover.
    pub tooltip: String,
    /// `(peak FLOP/s, bandwidth B/s)` of the roof above a measured point: shades the
    /// inference-potential region between the point and that roof, up to the ridge.
    pub roof: Option<(f64, f64)>,
}

/// A roofline chart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RooflineChart {
    /// Unique within one HTML page (used for clip-path ids).
    pub id: String,
    pub title: String,
    pub subtitle: String,
    pub devices: Vec<DeviceRoofs>,
    pub points: Vec<ChartPoint>,
}

fn source_dash(s: CeilingSource) -> &'static str {
    match s {
        CeilingSource::Measured => "",
        CeilingSource::Theoretical => r#" stroke-dasharray="8 5""#,
        CeilingSource::MeasuredElsewhere => r#" stroke-dasharray="2 4""#,
    }
}

fn source_width(s: CeilingSource) -> f64 {
    match s {
        CeilingSource::Measured => 2.4,
        _ => 1.7,
    }
}

fn precision_colour(p: Precision) -> &'static str {
    match p {
        Precision::F64 => "#5f5f5f",
        Precision::F32 => "#1f3f7a",
        Precision::F16 => "#7b3294",
        Precision::Bf16 => "#c2185b",
        Precision::Int8 => "#1b7837",
    }
}

fn level_colour(l: MemLevel) -> &'static str {
    match l {
        MemLevel::Dram => "#b2182b",
        MemLevel::L3 => "#d6604d",
        MemLevel::L2 => "#e08214",
        MemLevel::L1 => "#b8a000",
    }
}

fn marker(out: &mut String, shape: Shape, x: f64, y: f64, r: f64, colour: &str, filled: bool) {
    let (fill, stroke) = if filled {
        (colour.to_string(), "#ffffff".to_string())
    } else {
        ("#ffffff".to_string(), colour.to_string())
    };
    let sw = if filled { 1.0 } else { 2.2 };
    let common = format!(r#"fill="{fill}" stroke="{stroke}" stroke-width="{sw}""#);
    let _ = match shape {
        Shape::Circle => write!(
            out,
            r#"<circle cx="{}" cy="{}" r="{}" {common}/>"#,
            px(x),
            px(y),
            px(r)
        ),
        Shape::Square => write!(
            out,
            r#"<rect x="{}" y="{}" width="{}" height="{}" {common}/>"#,
            px(x - r * 0.9),
            px(y - r * 0.9),
            px(1.8 * r),
            px(1.8 * r)
        ),
        Shape::Triangle => write!(
            out,
            r#"<path d="M{} {}L{} {}L{} {}Z" {common}/>"#,
            px(x),
            px(y - r * 1.2),
            px(x + r * 1.1),
            px(y + r * 0.8),
            px(x - r * 1.1),
            px(y + r * 0.8)
        ),
        Shape::Diamond => write!(
            out,
            r#"<path d="M{} {}L{} {}L{} {}L{} {}Z" {common}/>"#,
            px(x),
            px(y - r * 1.25),
            px(x + r * 1.25),
            px(y),
            px(x),
            px(y + r * 1.25),
            px(x - r * 1.25),
            px(y)
        ),
    };
}

fn header(out: &mut String, id: &str, title: &str, subtitle: &str) {
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}" class="rb-chart" data-chart="{id}">"##,
        w = WIDTH,
        h = HEIGHT,
        id = esc(id)
    );
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        WIDTH, HEIGHT
    );
    text(
        out,
        PLOT.x,
        26.0,
        18.0,
        "start",
        r##"font-weight="bold" fill="#111""##,
        title,
    );
    if !subtitle.is_empty() {
        text(
            out,
            PLOT.x,
            46.0,
            12.5,
            "start",
            r##"fill="#444""##,
            subtitle,
        );
    }
    let _ = writeln!(
        out,
        r#"<defs><clipPath id="clip-{}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath></defs>"#,
        esc(id),
        PLOT.x,
        PLOT.y,
        PLOT.w,
        PLOT.h
    );
}

/// Grid lines, frame, tick labels and axis titles for a pair of scales.
fn axes(
    out: &mut String,
    xs: &Scale,
    ys: &Scale,
    x_title: &str,
    y_title: &str,
    y_fmt: fn(f64) -> String,
) {
    out.push_str(r##"<g class="grid" stroke="#e4e4e4" stroke-width="1">"##);
    let mut xt: Vec<(f64, String, bool)> = Vec::new();
    let mut yt: Vec<(f64, String, bool)> = Vec::new();
    if xs.log {
        let (a, b) = (xs.lo.log10().round() as i32, xs.hi.log10().round() as i32);
        for k in a..=b {
            xt.push((10f64.powi(k), decade_label(k), true));
            if k < b {
                for m in 2..10 {
                    xt.push((m as f64 * 10f64.powi(k), String::new(), false));
                }
            }
        }
    } else {
        for t in nice_ticks(xs.lo, xs.hi, 8).2 {
            if xs.contains(t) {
                xt.push((t, sig3(t), true));
            }
        }
    }
    if ys.log {
        let (a, b) = (ys.lo.log10().round() as i32, ys.hi.log10().round() as i32);
        for k in a..=b {
            yt.push((10f64.powi(k), y_fmt(10f64.powi(k)), true));
            if k < b {
                for m in 2..10 {
                    yt.push((m as f64 * 10f64.powi(k), String::new(), false));
                }
            }
        }
    } else {
        for t in nice_ticks(ys.lo, ys.hi, 6).2 {
            if ys.contains(t) {
                yt.push((t, y_fmt(t), true));
            }
        }
    }
    for (v, _, major) in &xt {
        let x = xs.map(*v);
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}"{}/>"##,
            px(PLOT.y),
            px(PLOT.y + PLOT.h),
            if *major { "" } else { r##" stroke="#f3f3f3""## },
            x = px(x)
        );
    }
    for (v, _, major) in &yt {
        let y = ys.map(*v);
        let _ = write!(
            out,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}"{}/>"##,
            px(PLOT.x),
            px(PLOT.x + PLOT.w),
            if *major { "" } else { r##" stroke="#f3f3f3""## },
            y = px(y)
        );
    }
    out.push_str("</g>\n");
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333" stroke-width="1.2"/>"##,
        PLOT.x, PLOT.y, PLOT.w, PLOT.h
    );
    for (v, label, major) in &xt {
        if *major && !label.is_empty() {
            text(
                out,
                xs.map(*v),
                PLOT.y + PLOT.h + 18.0,
                12.5,
                "middle",
                r##"fill="#222""##,
                label,
            );
        }
    }
    for (v, label, major) in &yt {
        if *major && !label.is_empty() {
            text(
                out,
                PLOT.x - 8.0,
                ys.map(*v) + 4.5,
                12.5,
                "end",
                r##"fill="#222""##,
                label,
            );
        }
    }
    text(
        out,
        PLOT.x + PLOT.w / 2.0,
        PLOT.y + PLOT.h + 44.0,
        14.0,
        "middle",
        r##"fill="#111""##,
        x_title,
    );
    let _ = writeln!(
        out,
        r##"<text x="0" y="0" font-size="14" text-anchor="middle" fill="#111" transform="translate(22 {}) rotate(-90)">{}</text>"##,
        px(PLOT.y + PLOT.h / 2.0),
        esc(y_title)
    );
}

/// A legend being laid out on the right of the plot.
struct Legend {
    out: String,
    y: f64,
}

impl Legend {
    fn new() -> Legend {
        Legend {
            out: String::new(),
            y: PLOT.y + 4.0,
        }
    }
    fn room(&self) -> bool {
        self.y < HEIGHT - 24.0
    }
    fn heading(&mut self, s: &str) {
        if !self.room() {
            return;
        }
        self.y += 6.0;
        text(
            &mut self.out,
            LEGEND_X,
            self.y + 10.0,
            12.5,
            "start",
            r##"font-weight="bold" fill="#111""##,
            s,
        );
        self.y += 18.0;
    }
    fn line(&mut self, colour: &str, dash: &str, width: f64, s: &str) {
        if !self.room() {
            return;
        }
        let _ = write!(
            self.out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="{width}"{dash}/>"#,
            px(LEGEND_X),
            px(LEGEND_X + 30.0),
            y = px(self.y + 6.0)
        );
        self.label(s);
    }
    fn marker(&mut self, shape: Shape, colour: &str, filled: bool, s: &str) {
        if !self.room() {
            return;
        }
        marker(
            &mut self.out,
            shape,
            LEGEND_X + 15.0,
            self.y + 6.0,
            5.0,
            colour,
            filled,
        );
        self.label(s);
    }
    fn swatch(&mut self, colour: &str, s: &str) {
        if !self.room() {
            return;
        }
        let _ = write!(
            self.out,
            r#"<rect x="{}" y="{}" width="30" height="10" fill="{colour}" fill-opacity="0.25" stroke="{colour}"/>"#,
            px(LEGEND_X),
            px(self.y + 1.0)
        );
        self.label(s);
    }
    fn label(&mut self, s: &str) {
        // Truncate so the legend never runs off the canvas.
        let max = WIDTH - LEGEND_X - 42.0;
        let mut t = s.to_string();
        while text_width(&t, 12.0) > max && t.chars().count() > 4 {
            t.pop();
            while t.ends_with(' ') {
                t.pop();
            }
            if !t.ends_with('~') {
                t.pop();
                t.push('~');
            }
        }
        text(
            &mut self.out,
            LEGEND_X + 38.0,
            self.y + 10.5,
            12.0,
            "start",
            r##"fill="#222""##,
            &t,
        );
        self.y += 18.0;
    }
}

/// Series names in first-seen order.
fn series_of<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|s| s == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Renders a roofline chart to SVG text.
pub fn roofline_svg(chart: &RooflineChart) -> String {
    let mut out = String::with_capacity(32 * 1024 + chart.points.len() * 600);
    header(&mut out, &chart.id, &chart.title, &chart.subtitle);

    // Ranges: every finite positive point, ridge and peak, padded, whole decades.
    let pts: Vec<&ChartPoint> = chart
        .points
        .iter()
        .filter(|p| {
            p.intensity.is_finite() && p.intensity > 0.0 && p.perf.is_finite() && p.perf > 0.0
        })
        .collect();
    let mut xv: Vec<f64> = pts.iter().map(|p| p.intensity).collect();
    let mut yv: Vec<f64> = pts.iter().map(|p| p.perf).collect();
    for d in &chart.devices {
        for (oi, peak, _) in d.ridges() {
            xv.push(oi);
            yv.push(peak);
        }
        yv.extend(d.compute.iter().map(|c| c.flops_per_second));
    }
    let (xlo, mut xhi) = finite_range(&xv);
    let (ylo, yhi) = finite_range(&yv);
    // Room right of the highest ridge for the compute roofs and their labels.
    let max_ridge = chart
        .devices
        .iter()
        .flat_map(|d| d.ridges().into_iter().map(|r| r.0))
        .filter(|r| r.is_finite())
        .fold(0.0f64, f64::max);
    if max_ridge > 0.0 {
        xhi = xhi.max(max_ridge * 40.0);
    }
    let (xa, xb) = decade_range(xlo, xhi, 2.5, 3, 9);
    let (ya, yb) = decade_range(ylo, yhi, 1.6, 3, 9);
    let xs = Scale {
        lo: xa,
        hi: xb,
        px0: PLOT.x,
        px1: PLOT.x + PLOT.w,
        log: true,
    };
    let ys = Scale {
        lo: ya,
        hi: yb,
        px0: PLOT.y + PLOT.h,
        px1: PLOT.y,
        log: true,
    };
    axes(
        &mut out,
        &xs,
        &ys,
        "Operational intensity (FLOP/byte)",
        "Performance (FLOP/s)",
        si,
    );

    let multi = chart.devices.len() > 1;
    let device_colour = |i: usize| PALETTE[i % PALETTE.len()];
    let mut placer = Placer::new(PLOT);
    let mut labels = String::new();
    let clip = format!(r#" clip-path="url(#clip-{})""#, esc(&chart.id));

    // Point positions first: markers are obstacles for every label.
    let series = series_of(chart.points.iter().map(|p| p.series.as_str()));
    let style = |name: &str| -> (Shape, &'static str) {
        let i = series.iter().position(|s| s == name).unwrap_or(0);
        (SHAPES[i % SHAPES.len()], PALETTE[i % PALETTE.len()])
    };
    let radius = if pts.len() > 200 { 3.5 } else { 5.5 };
    let mut anchors: Vec<(f64, f64, &ChartPoint)> = Vec::with_capacity(pts.len());
    for p in &pts {
        let (x, y) = (xs.map(p.intensity), ys.map(p.perf));
        if !(PLOT.x - 1.0..=PLOT.x + PLOT.w + 1.0).contains(&x)
            || !(PLOT.y - 1.0..=PLOT.y + PLOT.h + 1.0).contains(&y)
        {
            continue;
        }
        placer.block(Rect {
            x: x - radius - 1.0,
            y: y - radius - 1.0,
            w: 2.0 * radius + 2.0,
            h: 2.0 * radius + 2.0,
        });
        anchors.push((x, y, p));
    }

    // Roofs, theoretical first so measured ones are drawn on top. Identical compute roofs of
    // one device and source (e.g. f32 and f16 both at the spec-sheet peak) are drawn once.
    let _ = writeln!(out, r#"<g class="roofs" fill="none"{clip}>"#);
    // (priority, x start, y, text, colour): measured roofs are labelled first.
    let mut hlabels: Vec<(u8, f64, f64, String, String)> = Vec::new();
    let mut dlabels: Vec<(f64, f64, f64, f64, String, String)> = Vec::new();
    for (di, d) in chart.devices.iter().enumerate() {
        let dev = if multi {
            format!("{} ", d.name)
        } else {
            String::new()
        };
        let device_top = d
            .compute
            .iter()
            .map(|c| c.flops_per_second)
            .max_by(f64::total_cmp)
            .unwrap_or(yb);
        for b in &d.bandwidth {
            let top = d.top_peak(b.source).unwrap_or(device_top);
            let colour = if multi {
                device_colour(di)
            } else {
                level_colour(b.level)
            };
            let x_end = top / b.bytes_per_second;
            let (x0, y0) = (xs.map(xa), ys.map(xa * b.bytes_per_second));
            let (x1, y1) = (xs.map(x_end), ys.map(top));
            let tip = format!(
                "{dev}{} bandwidth roof ({}): {}B/s",
                b.level,
                b.source.name(),
                si(b.bytes_per_second)
            );
            let _ = writeln!(
                out,
                r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="{}"{} data-tip="{}"><title>{}</title></line>"#,
                px(x0),
                px(y0),
                px(x1),
                px(y1),
                source_width(b.source),
                source_dash(b.source),
                esc(&tip),
                esc(&tip)
            );
            block_segment(&mut placer, x0, y0, x1, y1);
            let vis_lo = xa.max(ya / b.bytes_per_second);
            let vis_hi = xb.min(x_end).min(yb / b.bytes_per_second);
            if vis_hi > vis_lo {
                let name = format!(
                    "{dev}{} {}B/s{}",
                    b.level,
                    si(b.bytes_per_second),
                    source_suffix(b.source)
                );
                dlabels.push((
                    vis_lo,
                    vis_hi,
                    b.bytes_per_second,
                    (y1 - y0).atan2(x1 - x0),
                    name,
                    colour.to_string(),
                ));
            }
        }
        let mut groups: Vec<(CeilingSource, f64, Vec<Precision>)> = Vec::new();
        for c in &d.compute {
            match groups
                .iter_mut()
                .find(|g| g.0 == c.source && (g.1 / c.flops_per_second - 1.0).abs() < 1e-9)
            {
                Some(g) => g.2.push(c.precision),
                None => groups.push((c.source, c.flops_per_second, vec![c.precision])),
            }
        }
        for (source, peak, precs) in groups {
            let colour = if multi {
                device_colour(di)
            } else {
                precision_colour(precs[0])
            };
            // Start at the ridge with DRAM of the same source, else with the measured DRAM
            // (a spec sheet may give compute peaks but no bandwidth).
            let start = d
                .dram(source)
                .or_else(|| d.dram(CeilingSource::Measured))
                .or_else(|| {
                    d.bandwidth
                        .iter()
                        .find(|b| b.level == MemLevel::Dram)
                        .or(d.bandwidth.first())
                        .map(|b| b.bytes_per_second)
                })
                .map(|b| peak / b)
                .unwrap_or(xa);
            let names = precs.iter().map(|p| p.name()).collect::<Vec<_>>().join("/");
            let y = ys.map(peak);
            let x0 = xs.map(start.max(xa));
            let tip = format!(
                "{dev}{names} compute roof ({}): {}FLOP/s",
                source.name(),
                si(peak)
            );
            let _ = writeln!(
                out,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="{}"{} data-tip="{}"><title>{}</title></line>"#,
                px(x0),
                px(PLOT.x + PLOT.w),
                source_width(source),
                source_dash(source),
                esc(&tip),
                esc(&tip),
                y = px(y)
            );
            placer.block_soft(Rect {
                x: x0,
                y: y - 1.5,
                w: PLOT.x + PLOT.w - x0,
                h: 3.0,
            });
            if ys.contains(peak) {
                let prio = match source {
                    CeilingSource::Measured => 0,
                    CeilingSource::Theoretical => 1,
                    CeilingSource::MeasuredElsewhere => 2,
                };
                hlabels.push((
                    prio,
                    x0,
                    y,
                    format!("{dev}{names} {}FLOP/s{}", si(peak), source_suffix(source)),
                    colour.to_string(),
                ));
            }
        }
    }
    out.push_str("</g>\n");

    // Inference-potential regions: between a measured point and the roof above it, up to the
    // ridge (memory-bound) or straight up to the compute roof (compute-bound).
    let _ = writeln!(out, r#"<g class="potential"{clip}>"#);
    for p in &pts {
        let Some((peak, bw)) = p.roof else { continue };
        if !(peak.is_finite() && bw.is_finite() && peak > 0.0 && bw > 0.0) {
            continue;
        }
        let ridge = peak / bw;
        let att = (p.intensity * bw).min(peak);
        if p.perf >= att {
            continue;
        }
        let colour = if multi {
            device_colour(p.device)
        } else {
            "#0072B2"
        };
        let (x, y) = (xs.map(p.intensity), ys.map(p.perf));
        let d = if p.intensity < ridge {
            format!(
                "M{} {}L{} {}L{} {}L{} {}Z",
                px(x),
                px(y),
                px(x),
                px(ys.map(att)),
                px(xs.map(ridge)),
                px(ys.map(peak)),
                px(xs.map(ridge)),
                px(y)
            )
        } else {
            format!(
                "M{} {}L{} {}L{} {}L{} {}Z",
                px(x - 4.0),
                px(y),
                px(x - 4.0),
                px(ys.map(peak)),
                px(x + 4.0),
                px(ys.map(peak)),
                px(x + 4.0),
                px(y)
            )
        };
        let _ = writeln!(
            out,
            r#"<path d="{d}" fill="{colour}" fill-opacity="0.13" stroke="{colour}" stroke-opacity="0.35" stroke-width="0.8"><title>inference-potential region of {}</title></path>"#,
            esc(&p.label)
        );
    }
    out.push_str("</g>\n");

    // Ridge points (one marker per distinct position).
    let _ = writeln!(out, r#"<g class="ridges">"#);
    let mut ridge_seen: Vec<(f64, f64)> = Vec::new();
    let mut ridge_labels: Vec<(f64, f64, String, String)> = Vec::new();
    for (di, d) in chart.devices.iter().enumerate() {
        for (oi, peak, c) in d.ridges() {
            if !(xs.contains(oi) && ys.contains(peak)) {
                continue;
            }
            let colour = if multi {
                device_colour(di)
            } else {
                precision_colour(c.precision)
            };
            let (x, y) = (xs.map(oi), ys.map(peak));
            let tip = format!(
                "{}ridge point {} / DRAM ({}): {} FLOP/byte at {}FLOP/s",
                if multi {
                    format!("{}: ", d.name)
                } else {
                    String::new()
                },
                c.precision,
                c.source.name(),
                sig3(oi),
                si(peak)
            );
            let dup = ridge_seen
                .iter()
                .any(|&(a, b)| (a - x).abs() < 0.5 && (b - y).abs() < 0.5);
            let _ = writeln!(
                out,
                r##"<g class="ridge" data-tip="{}"><title>{}</title><path d="M{} {}L{} {}L{} {}L{} {}Z" fill="#ffffff" stroke="{colour}" stroke-width="2"/></g>"##,
                esc(&tip),
                esc(&tip),
                px(x),
                px(y - 6.0),
                px(x + 6.0),
                px(y),
                px(x),
                px(y + 6.0),
                px(x - 6.0),
                px(y)
            );
            if dup {
                continue;
            }
            ridge_seen.push((x, y));
            placer.block(Rect {
                x: x - 7.0,
                y: y - 7.0,
                w: 14.0,
                h: 14.0,
            });
            ridge_labels.push((x, y, format!("ridge {}", sig3(oi)), colour.to_string()));
        }
    }
    out.push_str("</g>\n");

    // Roof labels: right end of the line, above it if possible.
    hlabels.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
    for (_, x0, y, s, colour) in &hlabels {
        let w = text_width(s, 11.5);
        let right = PLOT.x + PLOT.w - 6.0;
        'search: for relaxed in [false, true] {
            for dy in [-14.0, 2.0] {
                for shift in [0.0, 120.0, 240.0, 360.0] {
                    let lx = right - w - shift;
                    // Keep the label over its line (at least half of it).
                    if lx + w / 2.0 < *x0 {
                        continue;
                    }
                    let r = Rect {
                        x: lx,
                        y: y + dy,
                        w,
                        h: 13.0,
                    };
                    if placer.try_block(r, relaxed) {
                        if relaxed {
                            let _ = write!(
                                labels,
                                r##"<rect x="{}" y="{}" width="{}" height="13" fill="#ffffff" fill-opacity="0.85"/>"##,
                                px(lx - 1.0),
                                px(y + dy),
                                px(w + 2.0)
                            );
                        }
                        text(
                            &mut labels,
                            lx,
                            y + dy + 10.5,
                            11.5,
                            "start",
                            &format!(r#"fill="{colour}""#),
                            s,
                        );
                        break 'search;
                    }
                }
            }
        }
    }
    for (lo, hi, bw, angle, s, colour) in &dlabels {
        let w = text_width(s, 11.5);
        let (ca, sa) = (angle.cos(), angle.sin());
        for t in [0.04, 0.16, 0.28, 0.4, 0.52, 0.64] {
            let lx = 10f64.powf(lo.log10() + t * (hi.log10() - lo.log10()));
            // Baseline start a few pixels above the line (perpendicular offset).
            let (x, y) = (xs.map(lx) + 5.0 * sa, ys.map(lx * bw) - 5.0 * ca.abs());
            let boxes = rotated_boxes(x, y, ca, sa, w);
            if boxes
                .iter()
                .all(|b| b.inside(&PLOT) && !placer.overlaps_any(b))
            {
                for b in boxes {
                    placer.block(b);
                }
                let _ = writeln!(
                    labels,
                    r#"<text x="0" y="0" font-size="11.5" fill="{colour}" transform="translate({} {}) rotate({})">{}</text>"#,
                    px(x),
                    px(y),
                    px(angle.to_degrees()),
                    esc(s)
                );
                break;
            }
        }
    }
    for (x, y, s, colour) in &ridge_labels {
        let w = text_width(s, 11.0);
        if let Some((lx, ly, _)) = placer.place(*x, *y, w, 13.0) {
            let _ = write!(
                labels,
                r##"<rect x="{}" y="{}" width="{}" height="13" fill="#ffffff" fill-opacity="0.8"/>"##,
                px(lx - 1.0),
                px(ly),
                px(w + 2.0)
            );
            text(
                &mut labels,
                lx,
                ly + 10.0,
                11.0,
                "start",
                &format!(r#"fill="{colour}""#),
                s,
            );
        }
    }

    // Points.
    let _ = writeln!(out, r#"<g class="points">"#);
    for (x, y, p) in &anchors {
        let (shape, colour) = style(&p.series);
        let _ = write!(
            out,
            r#"<g class="pt" data-tip="{}"><title>{}</title>"#,
            esc(&p.tooltip),
            esc(&p.tooltip)
        );
        marker(&mut out, shape, *x, *y, radius, colour, p.measured);
        out.push_str("</g>\n");
    }
    out.push_str("</g>\n");
    // Labels last so they never hide a point; at most 60 so a dense chart stays readable.
    for (x, y, p) in anchors.iter().take(60) {
        if p.label.is_empty() {
            continue;
        }
        let (_, colour) = style(&p.series);
        let w = text_width(&p.label, 11.5);
        if let Some((lx, ly, far)) = placer.place(*x, *y, w, 14.0) {
            if far {
                // Leader from the marker's edge to the nearest point of the label box.
                let (cx, cy) = (x.clamp(lx, lx + w), y.clamp(ly, ly + 14.0));
                let d = ((cx - x).powi(2) + (cy - y).powi(2)).sqrt().max(1e-9);
                let _ = write!(
                    labels,
                    r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="0.9"/>"#,
                    px(x + (cx - x) * radius / d),
                    px(y + (cy - y) * radius / d),
                    px(cx),
                    px(cy)
                );
            }
            let _ = write!(
                labels,
                r##"<rect x="{}" y="{}" width="{}" height="14" fill="#ffffff" fill-opacity="0.8"/>"##,
                px(lx - 1.0),
                px(ly),
                px(w + 2.0)
            );
            text(
                &mut labels,
                lx,
                ly + 11.0,
                11.5,
                "start",
                &format!(r#"fill="{colour}""#),
                &p.label,
            );
        }
    }
    let _ = writeln!(out, r#"<g class="labels">"#);
    out.push_str(&labels);
    out.push_str("</g>\n");

    // Legend.
    let mut lg = Legend::new();
    lg.heading("Roofs");
    let has = |s: CeilingSource| {
        chart.devices.iter().any(|d| {
            d.compute.iter().any(|c| c.source == s) || d.bandwidth.iter().any(|b| b.source == s)
        })
    };
    for (s, name) in [
        (CeilingSource::Measured, "measured here"),
        (CeilingSource::Theoretical, "theoretical (theor.)"),
        (CeilingSource::MeasuredElsewhere, "published (publ.)"),
    ] {
        if has(s) {
            lg.line("#333", source_dash(s), source_width(s), name);
        }
    }
    if multi {
        for (i, d) in chart.devices.iter().enumerate() {
            lg.line(device_colour(i), "", 3.0, &d.name);
        }
    } else if let Some(d) = chart.devices.first() {
        let mut precs: Vec<Precision> = d.compute.iter().map(|c| c.precision).collect();
        precs.sort();
        precs.dedup();
        for p in precs {
            lg.line(precision_colour(p), "", 3.0, &format!("{p} compute"));
        }
        let mut levels: Vec<MemLevel> = d.bandwidth.iter().map(|b| b.level).collect();
        levels.sort();
        levels.dedup();
        for l in levels {
            lg.line(level_colour(l), "", 3.0, &format!("{l} bandwidth"));
        }
    }
    if !series.is_empty() {
        lg.heading("Points");
        let any_measured = chart.points.iter().any(|p| p.measured);
        let any_predicted = chart.points.iter().any(|p| !p.measured);
        for s in &series {
            let (shape, colour) = style(s);
            let filled = chart.points.iter().any(|p| &p.series == s && p.measured);
            lg.marker(shape, colour, filled, s);
        }
        if any_measured && any_predicted {
            lg.heading("Marker fill");
            lg.marker(Shape::Circle, "#333", false, "predicted");
            lg.marker(Shape::Circle, "#333", true, "measured");
        }
        if chart.points.iter().any(|p| p.roof.is_some() && p.measured) {
            lg.swatch("#0072B2", "inference potential");
        }
    }
    out.push_str(&lg.out);
    out.push_str("</svg>\n");
    out
}

fn finite_range(v: &[f64]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &x in v {
        if x.is_finite() && x > 0.0 {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    (lo, hi)
}

fn source_suffix(s: CeilingSource) -> &'static str {
    match s {
        CeilingSource::Measured => "",
        CeilingSource::Theoretical => " (theor.)",
        CeilingSource::MeasuredElsewhere => " (publ.)",
    }
}

/// Marks a drawn line segment as an obstacle for labels (small boxes every few pixels).
fn block_segment(placer: &mut Placer, x0: f64, y0: f64, x1: f64, y1: f64) {
    let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
    let n = (len / 6.0).ceil().clamp(1.0, 400.0) as usize;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        if (PLOT.x..=PLOT.x + PLOT.w).contains(&x) && (PLOT.y..=PLOT.y + PLOT.h).contains(&y) {
            placer.block_soft(Rect {
                x: x - 1.0,
                y: y - 1.0,
                w: 2.0,
                h: 2.0,
            });
        }
    }
}

/// Boxes covering text of width `w` rotated by (cos, sin) from its baseline start `(x, y)`.
fn rotated_boxes(x: f64, y: f64, ca: f64, sa: f64, w: f64) -> Vec<Rect> {
    let n = (w / 8.0).ceil().max(1.0) as usize;
    (0..n)
        .map(|i| {
            let d = (i as f64 + 0.5) * w / n as f64;
            // Centre of the glyph band: along the baseline, then 4.5 px "up" in text space.
            let cx = x + d * ca + 4.5 * sa;
            let cy = y + d * sa - 4.5 * ca;
            Rect {
                x: cx - 4.5,
                y: cy - 4.5,
                w: 9.0,
                h: 9.0,
            }
        })
        .collect()
}

/// One line of a sweep chart.
#[derive(Clone, Debug, PartialEq)]
pub struct LineSeries {
    pub name: String,
    /// `(x, y)` pairs in x order.
    pub points: Vec<(f64, f64)>,
}

/// A quantity against a swept parameter (context length, depth...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineChart {
    pub id: String,
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    pub series: Vec<LineSeries>,
}

/// Renders a sweep chart to SVG text.
pub fn line_svg(chart: &LineChart) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(&mut out, &chart.id, &chart.title, &chart.subtitle);
    let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|&(x, y)| ok(x, chart.x_log) && ok(y, chart.y_log))
        .collect();
    let range = |vals: Vec<f64>, log: bool| -> (f64, f64) {
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if log {
            decade_range(lo, hi, 1.05, 1, 9)
        } else {
            let lo = if lo > 0.0 { 0.0 } else { lo };
            let (a, b, _) = nice_ticks(lo, hi, 6);
            (a, b)
        }
    };
    let (xa, xb) = range(pts.iter().map(|p| p.0).collect(), chart.x_log);
    let (ya, yb) = range(pts.iter().map(|p| p.1).collect(), chart.y_log);
    let xs = Scale {
        lo: xa,
        hi: xb,
        px0: PLOT.x,
        px1: PLOT.x + PLOT.w,
        log: chart.x_log,
    };
    let ys = Scale {
        lo: ya,
        hi: yb,
        px0: PLOT.y + PLOT.h,
        px1: PLOT.y,
        log: chart.y_log,
    };
    axes(&mut out, &xs, &ys, &chart.x_label, &chart.y_label, |v| {
        if v.abs() >= 1e4 {
            si(v)
        } else {
            sig3(v)
        }
    });
    let mut lg = Legend::new();
    lg.heading("Series");
    for (i, s) in chart.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let shape = SHAPES[i % SHAPES.len()];
        let sp: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| ok(x, chart.x_log) && ok(y, chart.y_log))
            .collect();
        let mut d = String::new();
        for (j, (x, y)) in sp.iter().enumerate() {
            let _ = write!(
                d,
                "{}{} {}",
                if j == 0 { "M" } else { "L" },
                px(xs.map(*x)),
                px(ys.map(*y))
            );
        }
        if !d.is_empty() {
            let _ = writeln!(
                out,
                r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2.2"/>"#
            );
        }
        for (x, y) in &sp {
            let tip = format!(
                "{}\n{}: {}\n{}: {}",
                s.name,
                chart.x_label,
                sig3(*x),
                chart.y_label,
                sig3(*y)
            );
            let _ = write!(
                out,
                r#"<g class="pt" data-tip="{}"><title>{}</title>"#,
                esc(&tip),
                esc(&tip)
            );
            marker(&mut out, shape, xs.map(*x), ys.map(*y), 3.8, colour, true);
            out.push_str("</g>\n");
        }
        lg.marker(shape, colour, true, &s.name);
    }
    out.push_str(&lg.out);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_chart() -> RooflineChart {
        RooflineChart {
            id: "t".into(),
            title: "Roofline: test model on rpi5".into(),
            subtitle: "predicted with measured ceilings".into(),
            devices: vec![DeviceRoofs {
                name: "rpi5".into(),
                compute: vec![
                    ComputeRoof {
                        precision: Precision::F32,
                        source: CeilingSource::Theoretical,
                        flops_per_second: 153.6e9,
                    },
                    ComputeRoof {
                        precision: Precision::F32,
                        source: CeilingSource::Measured,
                        flops_per_second: 78.56e9,
                    },
                ],
                bandwidth: vec![
                    BandwidthRoof {
                        level: MemLevel::Dram,
                        source: CeilingSource::Theoretical,
                        bytes_per_second: 17.1e9,
                    },
                    BandwidthRoof {
                        level: MemLevel::Dram,
                        source: CeilingSource::Measured,
                        bytes_per_second: 3.98e9,
                    },
                    BandwidthRoof {
                        level: MemLevel::L2,
                        source: CeilingSource::Measured,
                        bytes_per_second: 60e9,
                    },
                ],
            }],
            points: vec![
                ChartPoint {
                    label: "prefill 128".into(),
                    series: "prefill".into(),
                    device: 0,
                    intensity: 60.0,
                    perf: 70e9,
                    measured: false,
                    tooltip: "prefill 128\nOI 60".into(),
                    roof: None,
                },
                ChartPoint {
                    label: "decode@4096".into(),
                    series: "decode".into(),
                    device: 0,
                    intensity: 0.9,
                    perf: 2.1e9,
                    measured: true,
                    tooltip: "decode@4096\nOI 0.9".into(),
                    roof: Some((78.56e9, 3.98e9)),
                },
            ],
        }
    }

    #[test]
    fn roofline_svg_has_labels_roofs_ridge_and_tooltips() {
        let svg = roofline_svg(&sample_chart());
        for needle in [
            "Operational intensity (FLOP/byte)",
            "Performance (FLOP/s)",
            "prefill 128",
            "decode@4096",
            "f32 78.6 GFLOP/s",
            "DRAM 3.98 GB/s",
            "ridge 19.7",
            "<title>decode@4096&#10;OI 0.9</title>",
            "inference-potential region of decode@4096",
            "measured here",
            "theoretical",
        ] {
            assert!(svg.contains(needle), "missing {needle:?}");
        }
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Balanced groups (a cheap structural check).
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
    }

    #[test]
    fn overlaid_devices_are_named_in_the_legend() {
        let mut c = sample_chart();
        let mut other = c.devices[0].clone();
        other.name = "rtx3090".into();
        for r in &mut other.compute {
            r.flops_per_second *= 200.0;
        }
        c.devices.push(other);
        let svg = roofline_svg(&c);
        assert!(svg.contains(">rtx3090<"));
        assert!(svg.contains(">rpi5<"));
    }

    #[test]
    fn degenerate_points_do_not_break_the_chart() {
        let mut c = sample_chart();
        c.points[0].intensity = f64::INFINITY;
        c.points[1].perf = 0.0;
        let svg = roofline_svg(&c);
        assert!(!svg.contains("NaN") && !svg.contains("\"inf") && !svg.contains("\"-inf"));
        let mut c = sample_chart();
        c.devices.clear();
        c.points.clear();
        let svg = roofline_svg(&c);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn line_chart_has_series_and_axis_labels() {
        let c = LineChart {
            id: "s".into(),
            title: "Decode tokens/s vs context".into(),
            subtitle: String::new(),
            x_label: "context (tokens)".into(),
            y_label: "tokens/s".into(),
            x_log: true,
            y_log: false,
            series: vec![LineSeries {
                name: "measured ceilings".into(),
                points: vec![(128.0, 40.0), (1024.0, 35.0), (8192.0, 20.0)],
            }],
        };
        let svg = line_svg(&c);
        for needle in [
            "context (tokens)",
            "tokens/s",
            "measured ceilings",
            "Decode tokens/s vs context",
        ] {
            assert!(svg.contains(needle), "missing {needle}");
        }
        assert!(!svg.contains("NaN"));
    }
}
