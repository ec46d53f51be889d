//! `rooflinebench sweep <family>...`: the paper's experiment families (scenarios, depth,
//! precision, attention, devices), each point predicted on a hardware profile and, with
//! `--engine builtin`, measured on this machine.
//!
//! Resumable: every finished point is its own JSON file written atomically under
//! `<out>/points/<family>/`; a re-run skips points whose file exists with a matching
//! fingerprint, and Ctrl-C loses at most the point in progress. The table, CSV and charts are
//! rebuilt from the point files at the end of every run. See [`crate::sweep`].

use crate::cmd::models::resolve_model_with_warnings;
use crate::hw::load_profile;
use crate::output::{write_atomic, write_json};
use crate::report::analysis::ceilings_of;
use crate::sweep::measure::measure_builtin;
use crate::sweep::plan::{parse_layers, plan, MeasureSettings, PlanInput, PointPlan};
use crate::sweep::predict::predict;
use crate::sweep::{
    load_all, load_finished, output, point_path, points_dir, EngineKind, Family, SweepPoint,
    POINT_KIND, POINT_SCHEMA_VERSION,
};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rooflinebench_model::format::{KvFormat, Recipe};
use rooflinebench_model::hardware::HardwareProfile;
use rooflinebench_model::params::count_params;
use rooflinebench_model::roofline::RoofOptions;
use rooflinebench_model::workload::Scenario;
use rooflinebench_model::zoo;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where sweeps go when `-o` is not given.
pub const DEFAULT_OUT: &str = "rooflinebench-sweep";

/// The devices compared by default: the paper's five (spec-sheet ceilings).
pub const DEFAULT_DEVICES: &[&str] = &[
    "rtx3090",
    "rtx3070ti-laptop",
    "apple-m1-pro",
    "jetson-orin-nano-super",
    "rpi5",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FamilyArg {
    Scenarios,
    Depth,
    Precision,
    Attention,
    Devices,
    /// Every family.
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// Roofline predictions only.
    #[default]
    None,
    /// Also measure with the built-in engine (f32/f16/bf16 dense models).
    Builtin,
    /// Also measure with llama.cpp (needs a build with the `llamacpp` feature).
    Llamacpp,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Experiment families to run.
    #[arg(value_enum, required = true, num_args = 1..)]
    pub families: Vec<FamilyArg>,
    /// Model for scenarios, depth, precision and devices: a config.json, a folder, or a
    /// built-in name [default: smollm2-135m]. The attention family uses its own matched trio.
    #[arg(long)]
    pub model: Option<String>,
    /// Hardware profile file or device name [default: <out>/hardware.json from an earlier run,
    /// else a quick probe of this machine, saved there].
    #[arg(long)]
    pub hw: Option<String>,
    /// Measure the points too.
    #[arg(long, value_enum, default_value_t = EngineArg::None)]
    pub engine: EngineArg,
    /// Output directory.
    #[arg(short = 'o', long = "out", default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Scenarios (repeatable): SISO LISO SILO LILO or PROMPT/GENERATED[/BATCH]
    /// [default: the four built-in ones].
    #[arg(long)]
    pub scenario: Vec<String>,
    /// Weight format or llama.cpp recipe (the precision family sets its own three).
    #[arg(long, default_value = "f16")]
    pub weights: String,
    /// KV-cache format.
    #[arg(long, default_value = "f16")]
    pub kv: String,
    /// Layer counts of the depth family: FROM..TO[:STEP] or a comma list.
    #[arg(long, default_value = "2..64:2")]
    pub layers: String,
    /// Devices of the devices family (comma-separated names or profile files); this machine's
    /// profile is always added [default: the paper's five devices].
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Engine threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed repetitions per measured phase.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Untimed warm-up repetitions per measured phase.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Decode steps measured per repetition (after a real prefill to the prompt's depth).
    #[arg(long, default_value_t = 8)]
    pub gen_steps: u64,
    /// Recompute every point even when a finished one exists.
    #[arg(long)]
    pub force: bool,
    /// SVG charts only (no PNG).
    #[arg(long)]
    pub no_png: bool,
    /// With `--engine llamacpp`: also time every llama.cpp graph node (ggml's evaluation
    /// callback), mapped onto our operator ids; written to `<out>/llamacpp-nodes/`.
    #[arg(long)]
    pub nodes: bool,
}

fn families(args: &[FamilyArg]) -> Vec<Family> {
    let mut v = Vec::new();
    for a in args {
        let f = match a {
            FamilyArg::Scenarios => Family::Scenarios,
            FamilyArg::Depth => Family::Depth,
            FamilyArg::Precision => Family::Precision,
            FamilyArg::Attention => Family::Attention,
            FamilyArg::Devices => Family::Devices,
            FamilyArg::All => {
                for f in Family::ALL {
                    if !v.contains(&f) {
                        v.push(f);
                    }
                }
                continue;
            }
        };
        if !v.contains(&f) {
            v.push(f);
        }
    }
    v
}

/// `--hw`, else the profile saved by an earlier run, else a quick probe (saved).
fn hardware(args: &Args) -> Result<(HardwareProfile, String)> {
    if let Some(h) = &args.hw {
        return Ok((load_profile(h)?, format!("profile {h}")));
    }
    let saved = args.out.join("hardware.json");
    if saved.exists() {
        let p = load_profile(&saved.display().to_string())?;
        return Ok((p, format!("{} (from an earlier run)", saved.display())));
    }
    eprintln!("sweep: no --hw: probing this machine (quick) ...");
    let t = Instant::now();
    let p = rooflinebench_bench::probe::run_probe(
        &rooflinebench_bench::probe::ProbeOptions::quick(),
        &mut |line| eprintln!("probe: {line}"),
    )?;
    write_json(&saved, &p)?;
    // Use the profile as a later run will read it, so point fingerprints match across runs.
    let p = load_profile(&saved.display().to_string())?;
    Ok((
        p,
        format!(
            "quick probe ({:.1} s), saved to {}",
            t.elapsed().as_secs_f64(),
            saved.display()
        ),
    ))
}

/// Where the per-node llama.cpp timings of a point go (when `--nodes` asks for them).
fn nodes_file(args: &Args, fam: Family, p: &PointPlan) -> Option<PathBuf> {
    (args.nodes && args.engine == EngineArg::Llamacpp && p.measure).then(|| {
        args.out
            .join("llamacpp-nodes")
            .join(fam.name())
            .join(format!("{}.json", p.id))
    })
}

/// The per-kind tables of a node-profile file.
#[cfg(feature = "llamacpp")]
fn nodes_summary(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let prof: crate::sweep::llamacpp::NodeProfile = serde_json::from_str(&text).ok()?;
    let mut s = format!("{}\n", file.display());
    for ph in &prof.phases {
        s.push_str(&crate::sweep::llamacpp_nodes::phase_table(ph));
    }
    Some(s)
}

/// Removes temporary files an interrupted write left behind (`.<name>.tmp<pid>`).
fn clean_temporaries(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn compute_point(
    p: &PointPlan,
    fingerprint: &str,
    settings: &MeasureSettings,
    engine: EngineArg,
    cache_dir: &Path,
    nodes_file: Option<&Path>,
) -> Result<SweepPoint> {
    let _ = (cache_dir, nodes_file);
    let mut roof = RoofOptions::default();
    if p.measure {
        roof.threads = u32::try_from(settings.threads).ok();
    }
    let ceilings = match ceilings_of(&p.profile, &roof) {
        Ok(c) => c,
        Err(_) => {
            roof.threads = None;
            ceilings_of(&p.profile, &roof)?
        }
    };
    let c = ceilings
        .first()
        .context("the hardware profile has no usable roofline")?;
    let predicted = predict(&p.spec, &p.opts, &p.scenario, c)
        .with_context(|| format!("predicting {}", p.id))?;
    #[allow(unused_mut)]
    let mut measured = match (p.measure, engine) {
        (true, EngineArg::Builtin) => Some(measure_builtin(p, settings)?),
        #[cfg(feature = "llamacpp")]
        (true, EngineArg::Llamacpp) => Some(crate::sweep::llamacpp::measure_llamacpp(
            p, settings, cache_dir,
        )?),
        _ => None,
    };
    #[cfg(feature = "llamacpp")]
    if let (Some(m), Some(file)) = (measured.as_mut(), nodes_file) {
        let prof = crate::sweep::llamacpp::profile_point(p, settings, cache_dir)
            .with_context(|| format!("timing the llama.cpp nodes of {}", p.id))?;
        for ph in &prof.phases {
            m.points.extend(ph.points(&m.engine, m.threads)?);
        }
        write_json(file, &prof)?;
    }
    #[allow(unused_mut)]
    let mut notes = p.notes.clone();
    #[cfg(feature = "llamacpp")]
    if measured.is_some() && engine == EngineArg::Llamacpp {
        notes.extend(crate::sweep::llamacpp::build_warning());
    }
    Ok(SweepPoint {
        schema_version: POINT_SCHEMA_VERSION,
        kind: POINT_KIND.to_string(),
        id: p.id.clone(),
        family: p.family,
        variant: p.variant.clone(),
        x: p.x,
        model: p.spec.name.clone(),
        layers: p.spec.num_hidden_layers,
        attention: p.spec.attention.name().to_string(),
        params_total: count_params(&p.spec).map_or(0, |c| c.total),
        weights: p.opts.weights.name(),
        kv: p.opts.kv.name().to_string(),
        scenario: p.scenario.clone(),
        hardware: p.profile.name.clone(),
        ceiling_source: c.source,
        fingerprint: fingerprint.to_string(),
        predicted,
        measured,
        notes,
        created_utc: crate::result::utc_now(),
    })
}

pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    if args.engine == EngineArg::Llamacpp && !cfg!(feature = "llamacpp") {
        bail!(
            "--engine llamacpp: this build has no llama.cpp; build with `cargo build --release \
             --features llamacpp` (needs `apt-get install -y cmake libclang-dev`), or use \
             --engine builtin, or measure with llama-bench and `rooflinebench import llama-bench`"
        );
    }
    if args.nodes && args.engine != EngineArg::Llamacpp {
        bail!("--nodes times llama.cpp's graph nodes: it needs --engine llamacpp");
    }
    if args.reps == 0 {
        bail!("--reps 0: at least one repetition is needed");
    }
    if args.gen_steps == 0 {
        bail!("--gen-steps 0: at least one decode step is needed");
    }
    let threads = match args.threads {
        Some(0) => bail!("--threads 0: at least one thread is needed"),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let fams = families(&args.families);
    let model_arg = args
        .model
        .clone()
        .unwrap_or_else(|| zoo::DEFAULT_MODEL.to_string());
    let (spec, source, spec_warnings) = resolve_model_with_warnings(&model_arg)?;
    for w in &spec_warnings {
        eprintln!("warning: {source}: {}", w.message);
    }
    // The config text gives the engines their value parameters (and llama.cpp its GGUF).
    let config_json = match zoo::lookup(&model_arg) {
        Some(e) => Some(e.config_json.to_string()),
        None if crate::cmd::models::is_gguf(Path::new(&source)) => None,
        None => std::fs::metadata(&source)
            .ok()
            .filter(|m| m.len() < 16 << 20)
            .and_then(|_| std::fs::read_to_string(&source).ok()),
    };
    let weights =
        Recipe::parse(&args.weights).with_context(|| format!("--weights {}", args.weights))?;
    let kv = KvFormat::parse(&args.kv).with_context(|| format!("--kv {}", args.kv))?;
    let scenarios = if args.scenario.is_empty() {
        Scenario::builtin()
    } else {
        args.scenario
            .iter()
            .map(|s| Scenario::parse(s).with_context(|| format!("--scenario {s}")))
            .collect::<Result<Vec<_>>>()?
    };
    let layers = parse_layers(&args.layers)
        .map_err(anyhow::Error::msg)
        .context("--layers")?;
    let (profile, hw_note) = hardware(&args)?;
    let mut devices = Vec::new();
    if fams.contains(&Family::Devices) {
        let names: Vec<String> = if args.devices.is_empty() {
            DEFAULT_DEVICES.iter().map(|s| s.to_string()).collect()
        } else {
            args.devices.clone()
        };
        for n in &names {
            devices.push(load_profile(n).with_context(|| format!("--devices {n}"))?);
        }
        if !devices.iter().any(|d| d.name == profile.name) {
            devices.push(profile.clone());
        }
    }
    let settings = MeasureSettings {
        engine: format!("{:?}", args.engine).to_ascii_lowercase(),
        threads,
        reps: args.reps,
        warmup: args.warmup,
        gen_steps: args.gen_steps,
    };
    #[cfg(feature = "llamacpp")]
    if args.engine == EngineArg::Llamacpp {
        if let Some(w) = crate::sweep::llamacpp::build_warning() {
            eprintln!("warning: {w}");
        }
    }
    let engine = match args.engine {
        EngineArg::None => None,
        EngineArg::Builtin => Some(EngineKind::Builtin),
        EngineArg::Llamacpp => Some(EngineKind::Llamacpp),
    };
    eprintln!(
        "sweep: {} on {} ({hw_note}), engine {}, output {}",
        spec.name,
        profile.name,
        settings.engine,
        args.out.display()
    );

    let mut failed = 0usize;
    for fam in &fams {
        let tf = Instant::now();
        let plans = plan(&PlanInput {
            family: *fam,
            spec: &spec,
            config_json: config_json.as_deref(),
            scenarios: &scenarios,
            weights,
            layers: &layers,
            profile: &profile,
            devices: &devices,
            engine,
        })?;
        let plans: Vec<PointPlan> = plans
            .into_iter()
            .map(|mut p| {
                p.opts.kv = kv;
                p
            })
            .collect();
        clean_temporaries(&points_dir(&args.out, *fam));
        let mut todo = Vec::new();
        let mut done = 0u64;
        for p in &plans {
            let fp = p.fingerprint(&settings);
            let path = point_path(&args.out, *fam, &p.id);
            let nodes_missing = nodes_file(&args, *fam, p).is_some_and(|f| !f.exists());
            if !args.force && !nodes_missing && load_finished(&path, &fp).is_some() {
                done += 1;
            } else {
                todo.push((p, fp, path));
            }
        }
        let pb =
            ProgressBar::with_draw_target(Some(plans.len() as u64), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} points, {elapsed} elapsed, ~{eta} left  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_prefix(format!("sweep {}", fam.name()));
        pb.set_position(done);
        pb.reset_eta();
        let mut computed = 0usize;
        for (p, fp, path) in &todo {
            pb.set_message(p.id.clone());
            let nf = nodes_file(&args, *fam, p);
            match compute_point(
                p,
                fp,
                &settings,
                args.engine,
                &args.out.join("cache"),
                nf.as_deref(),
            ) {
                Ok(sp) => {
                    write_json(path, &sp)?;
                    computed += 1;
                    #[cfg(feature = "llamacpp")]
                    if let Some(text) = nf.as_deref().and_then(nodes_summary) {
                        pb.suspend(|| eprint!("{}: {text}", p.id));
                    }
                }
                Err(e) => {
                    failed += 1;
                    pb.suspend(|| eprintln!("warning: point {}: {e:#}", p.id));
                }
            }
            pb.inc(1);
        }
        pb.finish_and_clear();

        // Outputs from the files of the current plan, in plan order.
        let all = load_all(&args.out, *fam)?;
        let points: Vec<SweepPoint> = plans
            .iter()
            .filter_map(|p| all.iter().find(|x| x.id == p.id).cloned())
            .collect();
        let profiles: Vec<HardwareProfile> = if *fam == Family::Devices {
            devices.clone()
        } else {
            vec![profile.clone()]
        };
        let csv_path = args.out.join(format!("{}.csv", fam.name()));
        write_atomic(&csv_path, output::csv(&points)?.as_bytes())?;
        let mut files = vec![csv_path.display().to_string()];
        for c in output::charts(*fam, &points, &profiles) {
            let svg = args.out.join("plots").join(format!("{}.svg", c.id));
            write_atomic(&svg, c.svg.as_bytes())?;
            files.push(svg.display().to_string());
            if !args.no_png {
                let png = crate::report::png::svg_to_png(&c.svg)
                    .with_context(|| format!("rendering {}", c.id))?;
                let pp = args.out.join("plots").join(format!("{}.png", c.id));
                write_atomic(&pp, &png)?;
                files.push(pp.display().to_string());
            }
        }
        println!(
            "sweep {}: {} points ({} already done, {} computed{}) in {:.1} s",
            fam.name(),
            plans.len(),
            done,
            computed,
            if todo.len() > computed {
                format!(", {} failed", todo.len() - computed)
            } else {
                String::new()
            },
            tf.elapsed().as_secs_f64()
        );
        let text = output::table(&points);
        write_atomic(Path::new("-"), text.as_bytes())?;
        let mut notes: Vec<&String> = Vec::new();
        for n in points.iter().flat_map(|p| &p.notes) {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        for n in notes {
            println!("note: {n}");
        }
        println!("wrote {}", files.join(", "));
    }
    if failed > 0 {
        bail!("{failed} point(s) failed (see the warnings); re-run the same command to retry only those");
    }
    eprintln!("sweep: done in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
