//! `rooflinebench run` (also what runs with no subcommand): the main job on a fresh machine.
//!
//! 1. a quick probe of this machine's ceilings (or `--hw` to use a device or profile instead);
//! 2. the analysis of the default model (or `--model`) for the paper's four scenarios;
//! 3. measurements with the built-in engine, when it exists ([`measure_with_engine`]);
//! 4. `result.json`, `hardware.json`, plots, `report.html` and `report.md` in `-o DIR`;
//! 5. a short summary and the report's path on stdout.

use crate::cmd::models::resolve_model_with_warnings;
use crate::hw::load_profile;
use crate::output::write_atomic;
use crate::report::analysis::{analyse, AnalysisInput, MemLevelArg};
use crate::report::charts::primary_source;
use crate::report::svg::{seconds, si, sig3};
use crate::report::{write_report, ReportOptions};
use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use rooflinebench_model::cost::CostOptions;
use rooflinebench_model::format::{KvFormat, Recipe};
use rooflinebench_model::hardware::{HardwareProfile, MemLevel, Warning};
use rooflinebench_model::measure::MeasuredPoint;
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::workload::Scenario;
use rooflinebench_model::zoo;
use std::path::PathBuf;
use std::time::Instant;

/// Where results go when `-o` is not given.
pub const DEFAULT_OUT: &str = "rooflinebench-out";

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Output directory [default: rooflinebench-out].
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Model: a config.json, a folder holding one, or a built-in name [default: smollm2-135m].
    #[arg(long)]
    pub model: Option<String>,
    /// Use this device name or profile file instead of probing this machine.
    #[arg(long)]
    pub hw: Option<String>,
    /// Scenarios (repeatable): SISO LISO SILO LILO or PROMPT/GENERATED[/BATCH]
    /// [default: the four built-in ones].
    #[arg(long)]
    pub scenario: Vec<String>,
    /// Weight format or llama.cpp recipe [default: f16].
    #[arg(long)]
    pub weights: Option<String>,
    /// KV-cache format [default: f16].
    #[arg(long)]
    pub kv: Option<String>,
    /// Skip the engine measurements (analysis only).
    #[arg(long)]
    pub no_engine: bool,
    /// Measured points to place on the roofline instead of running the engine: a JSON array
    /// of points (label, scope, op, phase, context, tokens, batch, threads, engine, compute,
    /// flops, bytes, seconds{median,min,max,samples}), e.g. timings from another engine.
    #[arg(long, value_name = "FILE")]
    pub measurements: Option<PathBuf>,
    /// Skip the PNG plots (SVG only).
    #[arg(long)]
    pub no_png: bool,
    /// Memory level whose bandwidth bounds each operator.
    #[arg(long, value_enum, default_value = "dram")]
    pub mem_level: MemLevelArg,
}

/// Quick probe of this machine (at most ~5 s), progress on stderr.
fn probe_this_machine() -> Result<HardwareProfile> {
    let opts = rooflinebench_bench::probe::ProbeOptions::quick();
    rooflinebench_bench::probe::run_probe(&opts, &mut |line| eprintln!("probe: {line}"))
        .context("probing this machine (use --hw <device|profile.json> to skip the probe)")
}

/// Measures real prefill and decode (per phase and per operator kind) of `spec` with the
/// built-in engine: random weights of the analysed dtype, written before timing, a short run
/// (prefill of 32 tokens, 4 decode steps after a real prefill to depth 32, 1 warm-up and 3
/// repetitions) at every available thread. The points' work comes from the cost model.
/// `Ok(None)` when the analysed weight format is one the engine cannot run yet (block-quantized).
fn measure_with_engine(
    spec: &ModelSpec,
    opts: &CostOptions,
    _scenarios: &[Scenario],
    _profile: &HardwareProfile,
) -> Result<Option<Vec<MeasuredPoint>>> {
    use rooflinebench_engine::bench::{run_bench, BenchOptions};
    use rooflinebench_engine::{parse_dtype, ModelDef};
    let dtype = match opts.weights {
        Recipe::Uniform(fmt) => match parse_dtype(fmt.name()) {
            Some(d) => d,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let def = ModelDef::from_spec(spec.clone()).context("preparing the engine model")?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bench = BenchOptions {
        dtype: Some(dtype),
        ..BenchOptions::quick(threads)
    };
    eprintln!(
        "run: measuring {} with the built-in engine ({} threads, {} weights)",
        spec.name,
        threads,
        fmt_name(opts.weights)
    );
    let result = run_bench(&def, &bench).context("engine measurement")?;
    Ok(Some(result.points().context("engine measurement")?))
}

fn fmt_name(r: Recipe) -> String {
    match r {
        Recipe::Uniform(f) => f.name().to_string(),
        other => format!("{other:?}"),
    }
}

/// Reads a JSON array of measured points; every point needs finite positive timings.
fn read_measurements(path: &std::path::Path) -> Result<Vec<MeasuredPoint>> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read measurements file {name}"))?;
    if text.trim().is_empty() {
        anyhow::bail!("{name}: empty file: expected a JSON array of measured points");
    }
    let points: Vec<MeasuredPoint> = serde_json::from_str(&text)
        .with_context(|| format!("{name}: malformed measurements (a JSON array of points)"))?;
    for (i, p) in points.iter().enumerate() {
        let s = &p.seconds;
        for (what, v) in [("median", s.median), ("min", s.min), ("max", s.max)] {
            if !(v.is_finite() && v > 0.0) {
                anyhow::bail!(
                    "{name}: field `[{i}].seconds.{what}` is {v}: a duration must be finite and positive"
                );
            }
        }
        if p.flops.0 == 0 || p.bytes.0 == 0 {
            anyhow::bail!("{name}: point [{i}] `{}` has zero flops or bytes", p.label);
        }
    }
    Ok(points)
}

pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    let model_arg = args
        .model
        .clone()
        .unwrap_or_else(|| zoo::DEFAULT_MODEL.to_string());
    let (spec, _src, spec_warnings) = resolve_model_with_warnings(&model_arg)?;
    let opts = CostOptions {
        weights: Recipe::parse(args.weights.as_deref().unwrap_or("f16")).context("--weights")?,
        kv: KvFormat::parse(args.kv.as_deref().unwrap_or("f16")).context("--kv")?,
        ..CostOptions::default()
    };
    let scenarios = if args.scenario.is_empty() {
        Scenario::builtin()
    } else {
        args.scenario
            .iter()
            .map(|s| Scenario::parse(s).with_context(|| format!("--scenario {s}")))
            .collect::<Result<Vec<_>>>()?
    };

    let (profile, probe_note) = match &args.hw {
        Some(hw) => (load_profile(hw)?, format!("profile {hw}")),
        None => {
            let t = Instant::now();
            let p = probe_this_machine()?;
            (
                p,
                format!("quick probe, {:.1} s", t.elapsed().as_secs_f64()),
            )
        }
    };

    let mut warnings: Vec<Warning> = spec_warnings;
    let measurements = if let Some(path) = &args.measurements {
        read_measurements(path)?
    } else if args.no_engine {
        Vec::new()
    } else {
        match measure_with_engine(&spec, &opts, &scenarios, &profile)? {
            Some(m) => m,
            None => {
                warnings.push(Warning {
                    code: "no_engine".into(),
                    message: format!(
                        "the built-in engine cannot run {} weights yet: the report holds \
                         roofline predictions only. Remedy: --weights f32, f16 or bf16",
                        fmt_name(opts.weights)
                    ),
                });
                Vec::new()
            }
        }
    };
    let n_measured = measurements.len();

    let doc = analyse(AnalysisInput {
        spec: &spec,
        spec_warnings: warnings,
        profile: profile.clone(),
        scenarios,
        cost_options: opts,
        roof: args.mem_level.roof_options(),
        measurements,
        sweeps: true,
    })?;

    // The result first: a later failure (plots, report) never loses it.
    let result_path = out.join("result.json");
    write_atomic(&result_path, &doc.to_json()?)?;
    let mut hw_json = serde_json::to_vec_pretty(&profile)?;
    hw_json.push(b'\n');
    write_atomic(&out.join("hardware.json"), &hw_json)?;
    let files = write_report(
        &[(result_path.display().to_string(), doc.clone())],
        &out,
        &ReportOptions { png: !args.no_png },
    )?;

    // Warnings first (the probe already printed its own), then the summary.
    let probed = args.hw.is_none();
    for w in &doc.warnings {
        if !(probed && profile.warnings.contains(w)) {
            eprintln!("warning: {}", w.message);
        }
    }

    // Summary.
    println!(
        "rooflinebench run: {} ({} weights, KV {}) on {} ({probe_note})",
        doc.model.name, doc.model.weights, doc.model.kv, doc.hardware.name
    );
    if let Some(src) = primary_source(&doc) {
        if let Some(first) = doc
            .scenarios
            .first()
            .and_then(|s| s.predictions.iter().find(|p| p.source == src))
        {
            let roof = first.request.prefill.roof;
            let dram = doc.hardware.bandwidth(MemLevel::Dram, src, None);
            println!(
                "roof ({} ceilings): {} {}FLOP/s, DRAM {}B/s, ridge {} FLOP/byte",
                src.name(),
                roof.precision,
                si(roof.peak_flops_per_second.0),
                dram.map_or("-".into(), |b| si(b.0)),
                sig3(roof.ridge().0)
            );
        }
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(vec![
            "scenario",
            "prompt/gen",
            "TTFT",
            "TPOT",
            "decode tok/s",
            "request",
            "prefill",
            "decode",
        ]);
        for s in &doc.scenarios {
            let Some(p) = s.predictions.iter().find(|p| p.source == src) else {
                continue;
            };
            let r = &p.request;
            let ridge = r.prefill.roof.ridge().0;
            let bound = |oi: f64| {
                if oi < ridge {
                    "memory-bound"
                } else {
                    "compute-bound"
                }
            };
            t.add_row(vec![
                s.scenario.name.clone(),
                format!("{}/{}", s.scenario.prompt, s.scenario.generate),
                seconds(r.ttft_seconds.0),
                seconds(r.tpot_mean_seconds.0),
                sig3(r.decode_tokens_per_second),
                seconds(r.request_seconds.0),
                bound((r.prefill.flops / r.prefill.bytes).0).to_string(),
                r.decode_last
                    .as_ref()
                    .map_or("-".into(), |d| bound((d.flops / d.bytes).0).to_string()),
            ]);
        }
        println!("predicted with {} ceilings:\n{t}", src.name());
    }
    println!(
        "measured points: {}",
        if n_measured == 0 {
            "none (engine step not available; predictions only)".to_string()
        } else {
            n_measured.to_string()
        }
    );
    println!(
        "wrote {} and {} more files in {:.1} s",
        result_path.display(),
        files.files.len() + 1,
        t0.elapsed().as_secs_f64()
    );
    println!("report: {}", files.html.display());
    Ok(())
}
