//! `rooflinebench compare`: rank models on one device by Relative Inference Potential, or show
//! one workload across several devices (the paper's "efficiency trap").
//!
//! What is ranked:
//! - `compare m1 m2 ... --hw D`: without measurements, each model's *roofline-predicted*
//!   points (prefill, last decode step, whole request) for the scenario. Such a point sits on
//!   or just below the roof by construction (efficiency ~1), so its Phi measures how far the
//!   workload's intensity puts it from the ridge, not how well an engine runs it: the ranking
//!   says which model's shape suits the device, and the output says so.
//! - `compare --results a.json b.json ...`: the *measured* points in those files, grouped by
//!   device, scope, phase, context, tokens and batch; models are ranked within each group.
//! - `compare m --hw a,b,c`: per device, the ridge, where the workload sits relative to it,
//!   the compute share it can use at best (MFU), and the predicted times.
//!
//! Phi ranks only within one side of the ridge: memory- and compute-bound points are
//! incomparable (ROOFLINEBENCH.md §1) and shown in separate groups.

use crate::cmd::models::resolve_model_with_warnings;
use crate::hw::load_profile;
use crate::report::analysis::{analyse, ceilings_of, AnalysisInput, MemLevelArg};
use crate::report::svg::{seconds, si, sig3};
use crate::result::{PointOrigin, PotentialRecord, ResultDoc};
use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use rooflinebench_model::cost::CostOptions;
use rooflinebench_model::format::{KvFormat, Recipe};
use rooflinebench_model::roofline::{Bound, RoofOptions};
use rooflinebench_model::workload::Scenario;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Eq. 6/7 exactly as written (SI units; the performance term dominates).
    #[default]
    Phi,
    /// The same distances in decades on the log-log plot (dimensionless).
    Decades,
    /// Performance / attainable at the point's intensity (larger is better).
    Efficiency,
}

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Models: config.json files, folders, or built-in names.
    #[arg(value_name = "MODELS")]
    pub models: Vec<String>,
    /// Hardware: a device name or profile file, or several separated by commas.
    #[arg(long, value_delimiter = ',')]
    pub hw: Vec<String>,
    /// Scenario: SISO LISO SILO LILO or PROMPT/GENERATED[/BATCH].
    #[arg(long, default_value = "SISO")]
    pub scenario: String,
    /// Result files with measured points: rank those instead of predictions.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// Weight format or llama.cpp recipe for predictions.
    #[arg(long, default_value = "f16")]
    pub weights: String,
    /// KV-cache format for predictions.
    #[arg(long, default_value = "f16")]
    pub kv: String,
    /// Ranking key within each side of the ridge.
    #[arg(long, value_enum, default_value = "phi")]
    pub rank_by: RankBy,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Memory level whose bandwidth bounds each operator.
    #[arg(long, value_enum, default_value = "dram")]
    pub mem_level: MemLevelArg,
}

/// One ranked row.
#[derive(Serialize, Debug)]
struct Row {
    group: String,
    device: String,
    model: String,
    point: String,
    origin: PointOrigin,
    ceilings: String,
    side: Bound,
    /// 1-based rank within (group, ceilings, side); `None` when alone.
    rank: Option<usize>,
    intensity_flops_per_byte: f64,
    flops_per_second: f64,
    phi: f64,
    phi_decades: f64,
    efficiency: f64,
    ridge_flops_per_byte: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    predicted_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measured_seconds: Option<f64>,
}

/// One device row of the across-devices view.
#[derive(Serialize, Debug)]
struct DeviceRow {
    device: String,
    model: String,
    scenario: String,
    ceilings: String,
    precision: String,
    peak_flops_per_second: f64,
    dram_bytes_per_second: f64,
    ridge_flops_per_byte: f64,
    prefill_intensity: f64,
    prefill_bound: Bound,
    decode_intensity: Option<f64>,
    decode_bound: Option<Bound>,
    /// Best possible share of the compute peak in the last decode step: `min(1, OI / ridge)`.
    decode_max_compute_share: Option<f64>,
    ttft_seconds: f64,
    decode_tokens_per_second: f64,
    request_seconds: f64,
    mbu: f64,
    mfu: f64,
}

#[derive(Serialize)]
struct Output<'a> {
    mode: &'a str,
    scenario: Option<String>,
    rank_by: RankBy,
    note: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ranking: Vec<Row>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<DeviceRow>,
}

/// Sort key, ascending = best first.
fn key(r: &Row, by: RankBy) -> f64 {
    match by {
        RankBy::Phi => r.phi,
        RankBy::Decades => r.phi_decades,
        // Larger is better: negate so that ascending order ranks best first.
        RankBy::Efficiency => -r.efficiency,
    }
}

fn row(group: &str, device: &str, model: &str, r: &PotentialRecord) -> Row {
    Row {
        group: group.to_string(),
        device: device.to_string(),
        model: model.to_string(),
        point: r.label.clone(),
        origin: r.origin,
        ceilings: r.source.name().to_string(),
        side: r.potential.side,
        rank: None,
        intensity_flops_per_byte: r.intensity_flops_per_byte,
        flops_per_second: r.flops_per_second,
        phi: r.potential.phi,
        phi_decades: r.potential.phi_decades,
        efficiency: r.potential.efficiency,
        ridge_flops_per_byte: r.potential.ridge.intensity.0,
        predicted_seconds: r.predicted_seconds,
        measured_seconds: r.measured_seconds,
    }
}

/// Ranks rows within (group, ceilings, side of the ridge), best first, and orders the output
/// that way. The two sides are never merged (the paper: incomparable).
fn rank_rows(rows: &mut Vec<Row>, by: RankBy) {
    let mut groups: Vec<(String, String)> = Vec::new();
    for r in rows.iter() {
        let g = (r.group.clone(), r.ceilings.clone());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut rest: Vec<Row> = std::mem::take(rows);
    for (g, c) in groups {
        for side in [Bound::Memory, Bound::Compute] {
            let (mut mine, others): (Vec<Row>, Vec<Row>) = rest
                .into_iter()
                .partition(|r| r.group == g && r.ceilings == c && r.side == side);
            rest = others;
            mine.sort_by(|a, b| key(a, by).total_cmp(&key(b, by)));
            let n = mine.len();
            for (i, r) in mine.iter_mut().enumerate() {
                r.rank = (n > 1).then_some(i + 1);
            }
            rows.extend(mine);
        }
    }
}

fn cost_options(args: &Args) -> Result<CostOptions> {
    Ok(CostOptions {
        weights: Recipe::parse(&args.weights).context("--weights")?,
        kv: KvFormat::parse(&args.kv).context("--kv")?,
        ..CostOptions::default()
    })
}

fn predict(
    model: &str,
    hw: &str,
    scenario: &Scenario,
    opts: &CostOptions,
    roof: &RoofOptions,
) -> Result<ResultDoc> {
    let (spec, _source, warnings) = resolve_model_with_warnings(model)?;
    let profile = load_profile(hw)?;
    analyse(AnalysisInput {
        spec: &spec,
        spec_warnings: warnings,
        profile,
        scenarios: vec![scenario.clone()],
        cost_options: *opts,
        roof: roof.clone(),
        measurements: Vec::new(),
        sweeps: false,
    })
    .with_context(|| format!("{model} on {hw}"))
    .inspect(|doc| {
        for w in &doc.warnings {
            eprintln!("warning: {model} on {hw}: {}", w.message);
        }
    })
}

fn print_rows(rows: &[Row], by: RankBy) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "group",
        "ceilings",
        "side",
        "rank",
        "model",
        "device",
        "point",
        "OI",
        "FLOP/s",
        "Phi (Eq.6/7)",
        "Phi (dec)",
        "efficiency",
        "time",
    ]);
    for r in rows {
        t.add_row(vec![
            r.group.clone(),
            r.ceilings.clone(),
            format!("{}-bound", r.side),
            r.rank.map_or("-".into(), |k| k.to_string()),
            r.model.clone(),
            r.device.clone(),
            r.point.clone(),
            sig3(r.intensity_flops_per_byte),
            si(r.flops_per_second),
            format!("{:.3e}", r.phi),
            sig3(r.phi_decades),
            format!("{}%", sig3(100.0 * r.efficiency)),
            r.measured_seconds
                .or(r.predicted_seconds)
                .map_or("-".into(), seconds),
        ]);
    }
    println!("{t}");
    println!(
        "ranked by {} within each (group, ceilings, side of the ridge); memory- and compute-bound points are incomparable and never ranked together",
        match by {
            RankBy::Phi => "Phi (Eq. 6/7, smaller = less headroom)",
            RankBy::Decades => "Phi in decades (smaller = less headroom)",
            RankBy::Efficiency => "efficiency (larger = better)",
        }
    );
}

pub fn run(args: Args) -> Result<()> {
    if !args.results.is_empty() {
        return run_measured(&args);
    }
    if args.models.is_empty() {
        bail!("name at least one model (or pass --results with measured result files)");
    }
    if args.hw.is_empty() {
        bail!("--hw is required: a device name (`rooflinebench devices`) or a profile file");
    }
    let scenario =
        Scenario::parse(&args.scenario).with_context(|| format!("--scenario {}", args.scenario))?;
    let opts = cost_options(&args)?;
    if args.hw.len() > 1 {
        return run_devices(&args, &scenario, &opts);
    }
    let hw = &args.hw[0];
    let mut rows = Vec::new();
    for m in &args.models {
        let doc = predict(m, hw, &scenario, &opts, &args.mem_level.roof_options())?;
        for r in doc
            .potential
            .iter()
            .filter(|r| r.origin == PointOrigin::Predicted)
        {
            let group = r
                .label
                .trim_start_matches(&format!("{} ", scenario.name))
                .to_string();
            let group = if group.starts_with("decode") {
                "decode (last step)".to_string()
            } else {
                group
            };
            rows.push(row(&group, &doc.hardware.name, &doc.model.name, r));
        }
    }
    rank_rows(&mut rows, args.rank_by);
    let note = "no measurements: these are roofline-predicted points, on or just below the roof by construction (efficiency ~100%), so Phi here reflects where each model's intensity lies relative to the ridge, not how well an engine runs it. Pass --results with measured result files to rank measured points.".to_string();
    if args.json {
        let out = Output {
            mode: "models_on_one_device_predicted",
            scenario: Some(scenario.name.clone()),
            rank_by: args.rank_by,
            note,
            ranking: rows,
            devices: vec![],
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "scenario {} ({}/{}), device {hw}",
            scenario.name, scenario.prompt, scenario.generate
        );
        print_rows(&rows, args.rank_by);
        println!("note: {note}");
    }
    Ok(())
}

fn run_measured(args: &Args) -> Result<()> {
    let mut rows = Vec::new();
    for p in &args.results {
        let doc = ResultDoc::load(p)?;
        if !args.models.is_empty() && !args.models.contains(&doc.model.name) {
            continue;
        }
        if !args.hw.is_empty() && !args.hw.contains(&doc.hardware.name) {
            continue;
        }
        for r in doc
            .potential
            .iter()
            .filter(|r| r.origin == PointOrigin::Measured)
        {
            let m = doc.measurements.iter().find(|m| m.label == r.label);
            let group = match m {
                Some(m) => format!(
                    "{} {} {} ctx {} tokens {} batch {}{}",
                    doc.hardware.name,
                    m.scope,
                    m.phase,
                    m.context,
                    m.tokens,
                    m.batch,
                    m.op.map(|o| format!(" {o}")).unwrap_or_default()
                ),
                None => format!("{} {}", doc.hardware.name, r.label),
            };
            rows.push(row(&group, &doc.hardware.name, &doc.model.name, r));
        }
    }
    if rows.is_empty() {
        bail!("no measured points in the given result files (for the models/devices named); run `rooflinebench run` with the engine first");
    }
    rank_rows(&mut rows, args.rank_by);
    let note = "measured points; work from the cost model, time measured. Points are ranked only against points of the same device, scope, phase, context, tokens and batch.".to_string();
    if args.json {
        let out = Output {
            mode: "measured",
            scenario: None,
            rank_by: args.rank_by,
            note,
            ranking: rows,
            devices: vec![],
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_rows(&rows, args.rank_by);
        println!("note: {note}");
    }
    Ok(())
}

fn run_devices(args: &Args, scenario: &Scenario, opts: &CostOptions) -> Result<()> {
    let mut rows = Vec::new();
    let roof_opts = args.mem_level.roof_options();
    let mut usable = Vec::new();
    for hw in &args.hw {
        // a spec-sheet profile may lack a compute ceiling (Apple publishes none for M3/M4):
        // skip it with a warning when other devices remain to compare
        match ceilings_of(&load_profile(hw)?, &roof_opts) {
            Ok(_) => usable.push(hw),
            Err(e) if args.hw.len() > 1 => eprintln!("warning: {hw} is left out: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    if usable.is_empty() {
        bail!("none of the devices given to --hw has a usable roofline (see the warnings above)");
    }
    for m in &args.models {
        for &hw in &usable {
            let doc = predict(m, hw, scenario, opts, &roof_opts)?;
            let Some(s) = doc.scenarios.first() else {
                continue;
            };
            for p in &s.predictions {
                let r = &p.request;
                let roof = r.prefill.roof;
                let ridge = roof.ridge().0;
                let pre_oi = (r.prefill.flops / r.prefill.bytes).0;
                let dec_oi = r.decode_last.as_ref().map(|d| (d.flops / d.bytes).0);
                let side = |oi: f64| {
                    if oi < ridge {
                        Bound::Memory
                    } else {
                        Bound::Compute
                    }
                };
                rows.push(DeviceRow {
                    device: doc.hardware.name.clone(),
                    model: doc.model.name.clone(),
                    scenario: scenario.name.clone(),
                    ceilings: p.source.name().to_string(),
                    precision: roof.precision.to_string(),
                    peak_flops_per_second: roof.peak_flops_per_second.0,
                    dram_bytes_per_second: roof.bandwidth_bytes_per_second.0,
                    ridge_flops_per_byte: ridge,
                    prefill_intensity: pre_oi,
                    prefill_bound: side(pre_oi),
                    decode_intensity: dec_oi,
                    decode_bound: dec_oi.map(side),
                    decode_max_compute_share: dec_oi.map(|oi| (oi / ridge).min(1.0)),
                    ttft_seconds: r.ttft_seconds.0,
                    decode_tokens_per_second: r.decode_tokens_per_second,
                    request_seconds: r.request_seconds.0,
                    mbu: r.mbu,
                    mfu: r.mfu,
                });
            }
        }
    }
    let note = "the efficiency trap: ridge points differ across devices, so the same workload sits at a different place relative to each; 'max compute share' = min(1, OI / ridge) is the most of the compute peak the last decode step could use on that device, however good the engine.".to_string();
    if args.json {
        let out = Output {
            mode: "one_workload_across_devices",
            scenario: Some(scenario.name.clone()),
            rank_by: args.rank_by,
            note,
            ranking: vec![],
            devices: rows,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "device",
        "model",
        "ceilings",
        "peak",
        "DRAM",
        "ridge",
        "prefill OI",
        "decode OI",
        "max compute share (decode)",
        "TTFT",
        "decode tok/s",
        "request",
        "MFU",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.device.clone(),
            r.model.clone(),
            r.ceilings.clone(),
            format!("{} {}FLOP/s", r.precision, si(r.peak_flops_per_second)),
            format!("{}B/s", si(r.dram_bytes_per_second)),
            sig3(r.ridge_flops_per_byte),
            format!("{} ({})", sig3(r.prefill_intensity), r.prefill_bound),
            r.decode_intensity
                .zip(r.decode_bound)
                .map_or("-".into(), |(oi, b)| format!("{} ({b})", sig3(oi))),
            r.decode_max_compute_share
                .map_or("-".into(), |s| format!("{}%", sig3(100.0 * s))),
            seconds(r.ttft_seconds),
            sig3(r.decode_tokens_per_second),
            seconds(r.request_seconds),
            format!("{}%", sig3(100.0 * r.mfu)),
        ]);
    }
    println!(
        "scenario {} ({}/{})",
        scenario.name, scenario.prompt, scenario.generate
    );
    println!("{t}");
    println!("note: {note}");
    Ok(())
}
