//! The report: roofline and sweep charts (SVG by hand, PNG via resvg), the self-contained HTML
//! page, its Markdown twin and CSV exports, all built from result documents
//! ([`crate::result::ResultDoc`]) and never from a live measurement.
//!
//! Everything is generated in memory first and written only when all of it succeeded, each
//! file atomically, so a failure never leaves a half-written report.

pub mod analysis;
pub mod charts;
pub mod csv;
pub mod html;
pub mod markdown;
pub mod plot;
pub mod png;
pub mod svg;
pub mod tables;

use crate::output::write_atomic;
use crate::result::ResultDoc;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A rendered chart and the files it is saved as (relative to the report directory).
pub struct Figure {
    pub title: String,
    pub svg: String,
    pub svg_file: String,
    pub png_file: Option<String>,
    png: Option<Vec<u8>>,
}

/// One section of the report (one result document, or the cross-device comparison).
pub struct Section {
    pub title: String,
    pub meta: Vec<String>,
    pub figures: Vec<Figure>,
    pub tables: Vec<tables::Table>,
}

/// How to write the report.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Also render every chart to PNG (the Markdown then links the PNGs).
    pub png: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { png: true }
    }
}

/// What was written.
#[derive(Debug)]
pub struct ReportFiles {
    pub html: PathBuf,
    pub markdown: PathBuf,
    /// Every file written, the two above included.
    pub files: Vec<PathBuf>,
    /// Points drawn on all roofline charts together.
    pub points: usize,
}

fn figure(chart: &charts::Chart) -> Figure {
    let id = chart.id().to_string();
    Figure {
        title: chart.title().to_string(),
        svg: chart.svg(),
        svg_file: format!("plots/{id}.svg"),
        png_file: None,
        png: None,
    }
}

/// Renders every figure's PNG, on all CPUs (rasterising dominates the report's time).
fn render_pngs(sections: &mut [Section]) -> Result<()> {
    let mut figs: Vec<&mut Figure> = sections
        .iter_mut()
        .flat_map(|s| s.figures.iter_mut())
        .collect();
    let svgs: Vec<&str> = figs.iter().map(|f| f.svg.as_str()).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(svgs.len().max(1));
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Result<Vec<u8>>)>> = Mutex::new(Vec::with_capacity(svgs.len()));
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(svg) = svgs.get(i) else { break };
                let r = png::svg_to_png(svg);
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    for (i, r) in done {
        let f = &mut figs[i];
        let bytes = r.with_context(|| format!("rendering {}", f.svg_file))?;
        f.png_file = Some(f.svg_file.replace(".svg", ".png"));
        f.png = Some(bytes);
    }
    Ok(())
}

fn doc_meta(doc: &ResultDoc, source: &str) -> Vec<String> {
    let p = &doc.provenance;
    let m = &doc.model;
    let mut v = vec![
        format!(
            "Model {} ({}, {}, {} layers, hidden {}, {} heads / {} KV heads{}), weights {}, KV cache {}.",
            m.name,
            m.model_type,
            m.attention,
            m.num_hidden_layers,
            m.hidden_size,
            m.num_attention_heads,
            m.num_key_value_heads,
            m.params
                .map(|p| format!(", {} parameters", svg::si(p.total as f64)))
                .unwrap_or_default(),
            m.weights,
            m.kv
        ),
        format!(
            "Hardware {}{}.",
            doc.hardware.name,
            doc.hardware
                .description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        format!(
            "From {source}: {} {}{}, {} (UTC), command `{}`.",
            p.tool,
            p.version,
            p.git_commit
                .as_deref()
                .map(|c| format!(" (commit {c})"))
                .unwrap_or_default(),
            p.created_utc,
            p.command_line.join(" ")
        ),
    ];
    if doc.measurements.is_empty() {
        v.push("No measurements in this result: every point is a roofline prediction.".into());
    }
    v
}

/// Builds every chart, table and page in memory.
pub fn build(docs: &[(String, ResultDoc)], opts: &ReportOptions) -> Result<(Vec<Section>, usize)> {
    let mut sections = Vec::new();
    let mut points = 0usize;
    let multi = docs.len() > 1;
    let refs: Vec<&ResultDoc> = docs.iter().map(|(_, d)| d).collect();
    if let Some(chart) = charts::devices_chart(&refs) {
        if let charts::Chart::Roofline(c) = &chart {
            points += c.points.len();
        }
        sections.push(Section {
            title: "Across devices".into(),
            meta: vec![],
            figures: vec![figure(&chart)],
            tables: vec![tables::efficiency_trap(&refs)],
        });
    }
    for (i, (source, doc)) in docs.iter().enumerate() {
        let prefix = if multi {
            format!(
                "{}-{}-",
                i + 1,
                charts::slug(&format!("{}-{}", doc.model.name, doc.hardware.name))
            )
        } else {
            String::new()
        };
        let mut figures = Vec::new();
        for c in charts::doc_charts(doc, &prefix) {
            if let charts::Chart::Roofline(r) = &c {
                points += r.points.len();
            }
            figures.push(figure(&c));
        }
        sections.push(Section {
            title: format!("{} on {}", doc.model.name, doc.hardware.name),
            meta: doc_meta(doc, source),
            figures,
            tables: vec![
                tables::scenarios(doc),
                tables::measurements(doc),
                tables::potential(doc),
                tables::ceilings(doc),
                tables::ridges(doc),
                tables::warnings(doc),
            ],
        });
    }
    if opts.png {
        render_pngs(&mut sections)?;
    }
    Ok((sections, points))
}

/// Writes `report.html`, `report.md`, `scenarios.csv`, `potential.csv` and `plots/*` into
/// `dir`. Nothing is written unless everything rendered.
pub fn write_report(
    docs: &[(String, ResultDoc)],
    dir: &Path,
    opts: &ReportOptions,
) -> Result<ReportFiles> {
    let (sections, points) = build(docs, opts)?;
    let title = "rooflinebench report";
    let intro = vec![format!(
        "{} result file{}: {}. Hover a point for its numbers.",
        docs.len(),
        if docs.len() == 1 { "" } else { "s" },
        docs.iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let html = html::render(title, &intro, &sections);
    let md = markdown::render(title, &intro, &sections);
    let scen: Vec<(String, tables::Table)> = docs
        .iter()
        .map(|(s, d)| (s.clone(), tables::scenarios(d)))
        .collect();
    let pot: Vec<(String, tables::Table)> = docs
        .iter()
        .map(|(s, d)| (s.clone(), tables::potential(d)))
        .collect();
    let scen_csv = csv::render(&scen.iter().map(|(s, t)| (s.clone(), t)).collect::<Vec<_>>());
    let pot_csv = csv::render(&pot.iter().map(|(s, t)| (s.clone(), t)).collect::<Vec<_>>());

    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        write_atomic(&p, bytes)?;
        files.push(p);
        Ok(())
    };
    for s in &sections {
        for f in &s.figures {
            put(&f.svg_file, f.svg.as_bytes())?;
            if let (Some(name), Some(bytes)) = (&f.png_file, &f.png) {
                put(name, bytes)?;
            }
        }
    }
    put("scenarios.csv", scen_csv.as_bytes())?;
    put("potential.csv", pot_csv.as_bytes())?;
    put("report.md", md.as_bytes())?;
    // The HTML last: its presence means the whole report is there.
    put("report.html", html.as_bytes())?;
    Ok(ReportFiles {
        html: dir.join("report.html"),
        markdown: dir.join("report.md"),
        files,
        points,
    })
}
