//! `rooflinebench bench <model>`: run the model with the built-in engine, time every operator,
//! and put each measurement next to its roofline prediction.
//!
//! Prefill of `--prompt` tokens, and `--gen` decode steps at depth `--depth` after a real
//! prefill to that depth (PITFALLS.md #15). Work and bytes per operator come from the cost model
//! (same operator ids); roofs from `--hw` (a profile file or device name), else from the quick
//! probe, else the roofline columns are left out with a warning. See
//! `rooflinebench_engine::bench` for the procedure.

use crate::output::{write_atomic, write_json};
use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use rooflinebench_engine::bench::{run_bench, BenchOptions, BenchResult, PhaseResult};
use rooflinebench_engine::{parse_dtype, ModelDef, WeightsFrom};
use rooflinebench_kernels::quant::QuantType;
use rooflinebench_model::hardware::{CeilingSource, HardwareProfile, Warning};
use rooflinebench_model::measure::MeasuredPoint;
use rooflinebench_model::roofline::{Ceilings, RoofOptions};
use rooflinebench_model::workload::Scenario;
use rooflinebench_model::zoo;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A config.json, a folder holding one (and maybe model.safetensors), a GGUF file (its
    /// weights run in their stored formats), or a built-in model name (`rooflinebench models`).
    pub model: String,
    /// Weight format: f32, f16 or bf16, or a block format for random weights quantized into
    /// real llama.cpp blocks: q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k [default: the
    /// checkpoint's, f32 for random weights; a GGUF always runs its stored formats].
    #[arg(long)]
    pub weights: Option<String>,
    /// Real weights: a .safetensors file, a model.safetensors.index.json, or a folder. Without
    /// it, a folder <model> holding model.safetensors is used; otherwise random weights.
    #[arg(long)]
    pub safetensors: Option<PathBuf>,
    /// Use random weights even when <model> is a folder with a checkpoint.
    #[arg(long = "random-weights")]
    pub random_weights: bool,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompt tokens of the prefill phase (0: skip prefill) [default: 128, or the scenario's].
    #[arg(long)]
    pub prompt: Option<usize>,
    /// Context depth the decode steps start at; a real prefill to it comes first
    /// [default: 128, or the scenario's prompt].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Decode steps per repetition (0: skip decode) [default: 8, or the scenario's generated
    /// tokens].
    #[arg(long)]
    pub gen: Option<usize>,
    /// A workload: SISO LISO SILO LILO or PROMPT/GENERATED (sets --prompt, --depth, --gen).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Timed repetitions of each phase.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Untimed warm-up repetitions of each phase.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hardware profile for the roofline columns: a file from `rooflinebench probe -o` or a
    /// device name (`rooflinebench devices`) [default: a quick probe of this machine].
    #[arg(long)]
    pub hw: Option<String>,
    /// Print JSON (every sample, every operator) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to this file (`-` = stdout).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// MLA models: execute (and cost) the absorbed form (latent KV cache) or the materialized
    /// one (per-head K and V cached).
    #[arg(long = "mla-form", default_value = "absorbed", value_parser = ["absorbed", "materialized"])]
    pub mla_form: String,
    /// Keep the first N layers (or repeat the last one up to N): quick runs of big models.
    #[arg(long)]
    pub layers: Option<u64>,
}

/// What `bench --json` prints: the engine's result plus measured points for the report.
#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    result: &'a BenchResult,
    points: Vec<MeasuredPoint>,
}

/// Resolves `<model>` to a model definition (spec plus the engine's value parameters) and, for
/// a folder, a checkpoint beside its config.
pub fn resolve(arg: &str) -> Result<(ModelDef, String, Vec<Warning>, Option<PathBuf>)> {
    let path = Path::new(arg);
    if crate::cmd::models::is_gguf(path) {
        // The hyperparameters and the weights both come from the file.
        let (def, warnings) = rooflinebench_engine::gguf_source::model_def(path)?;
        return Ok((
            def,
            path.display().to_string(),
            warnings,
            Some(path.to_path_buf()),
        ));
    }
    if path.exists() {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read model config {}", file.display()))?;
        let (mut def, warnings) =
            ModelDef::from_config_json(&text).with_context(|| file.display().to_string())?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let stem = if file.file_name().is_some_and(|n| n == "config.json") {
            dir.file_name()
        } else {
            file.file_stem()
        };
        if let Some(s) = stem {
            def.spec.name = s.to_string_lossy().into_owned();
        }
        let ckpt = ["model.safetensors", "model.safetensors.index.json"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        return Ok((def, file.display().to_string(), warnings, ckpt));
    }
    let entry = zoo::lookup(arg).with_context(|| {
        format!(
            "no config file, folder or built-in model named {arg:?} (see `rooflinebench models`)"
        )
    })?;
    let (mut def, warnings) = ModelDef::from_config_json(entry.config_json)
        .with_context(|| format!("built-in model {}", entry.name))?;
    def.spec.name = entry.name.to_string();
    Ok((def, entry.name.to_string(), warnings, None))
}

/// Ceilings from `--hw`, or from a quick probe; `None` (with a warning) when neither works.
fn ceilings(
    hw: Option<&str>,
    threads: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Ceilings>> {
    let profile: HardwareProfile = match hw {
        Some(h) => crate::hw::load_profile(h)?,
        None => match quick_probe(threads) {
            Some(p) => p,
            None => {
                warnings.push(Warning {
                    code: "no_roof".into(),
                    message: "no hardware profile: the roofline columns are left out. Remedy: \
                              pass --hw with a file from `rooflinebench probe -o FILE` or a \
                              device name from `rooflinebench devices`"
                        .into(),
                });
                return Ok(None);
            }
        },
    };
    for source in [
        CeilingSource::Measured,
        CeilingSource::Theoretical,
        CeilingSource::MeasuredElsewhere,
    ] {
        let mut opts = RoofOptions::new(source);
        opts.threads = Some(threads as u32);
        if let Ok(c) = Ceilings::from_profile(&profile, &opts) {
            return Ok(Some(c));
        }
        opts.threads = None;
        if let Ok(c) = Ceilings::from_profile(&profile, &opts) {
            warnings.push(Warning {
                code: "roof_thread_mismatch".into(),
                message: format!(
                    "profile `{}` has no {} ceilings measured at {threads} threads; using its best \
                     ones. Remedy: probe with --threads {threads}",
                    profile.name,
                    source.name()
                ),
            });
            return Ok(Some(c));
        }
    }
    bail!(
        "hardware profile `{}` lacks a DRAM bandwidth or a compute ceiling",
        profile.name
    )
}

/// A quick probe of this machine's ceilings at the bench's thread count (a few seconds);
/// `None` with the reason on stderr if it fails.
fn quick_probe(threads: usize) -> Option<HardwareProfile> {
    use rooflinebench_bench::probe::{run_probe, ProbeOptions};
    eprintln!("bench: no --hw given, running a quick probe of this machine at {threads} threads");
    let opts = ProbeOptions {
        threads: vec![threads as u32],
        ..ProbeOptions::quick()
    };
    match run_probe(&opts, &mut |_line: &str| {}) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: the quick probe failed: {e}");
            None
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let (mut def, source, mut warnings, ckpt) = resolve(&args.model)?;
    if let Some(n) = args.layers {
        def.spec = def
            .spec
            .with_layers(n)
            .with_context(|| format!("--layers {n}"))?;
    }
    def.arch.mla_form = match args.mla_form.as_str() {
        "materialized" => rooflinebench_model::cost::MlaForm::Materialized,
        _ => rooflinebench_model::cost::MlaForm::Absorbed,
    };
    if def.arch.mla_form == rooflinebench_model::cost::MlaForm::Absorbed {
        // The absorbed form multiplies split MLA tensors as stored: nothing is dequantized.
        warnings.retain(|w| w.code != rooflinebench_engine::gguf_source::DEQUANTIZED_KV_B);
    }
    let is_gguf = ckpt.as_deref().is_some_and(crate::cmd::models::is_gguf);
    let mut quant = None;
    let dtype = match &args.weights {
        Some(w) if is_gguf && !args.random_weights => bail!(
            "--weights {w:?}: a GGUF runs the formats stored in it; drop --weights (or pass \
             its config with --weights to run random weights)"
        ),
        Some(w) => match (parse_dtype(w), QuantType::parse(w)) {
            (Some(d), _) => Some(d),
            (None, Some(q)) => {
                quant = Some(q);
                None
            }
            (None, None) => bail!(
                "--weights {w:?}: expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, \
                 q5_k or q6_k"
            ),
        },
        None => None,
    };
    if quant.is_some() && (args.safetensors.is_some() || (ckpt.is_some() && !args.random_weights)) {
        bail!(
            "--weights {}: quantized formats are for random weights (add --random-weights) or \
             a GGUF file",
            args.weights.as_deref().unwrap_or_default()
        );
    }
    let scenario = match &args.scenario {
        Some(s) => Some(Scenario::parse(s).with_context(|| format!("--scenario {s:?}"))?),
        None => None,
    };
    let sc_prompt = scenario.as_ref().map(|s| s.prompt as usize);
    let sc_gen = scenario.as_ref().map(|s| s.generate as usize);
    let threads = match args.threads {
        Some(0) => bail!("--threads 0: at least one thread is needed"),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if args.reps == 0 {
        bail!("--reps 0: at least one repetition is needed");
    }
    let weights = if let Some(q) = quant {
        WeightsFrom::RandomQuant {
            seed: args.seed,
            quant: q,
        }
    } else if args.random_weights {
        WeightsFrom::Random { seed: args.seed }
    } else if is_gguf && args.safetensors.is_none() {
        WeightsFrom::Gguf(ckpt.clone().unwrap_or_default())
    } else if let Some(p) = args.safetensors.clone().or(ckpt) {
        WeightsFrom::Safetensors(p)
    } else {
        WeightsFrom::Random { seed: args.seed }
    };
    let opts = BenchOptions {
        weights,
        dtype,
        prompt: args.prompt.or(sc_prompt).unwrap_or(128),
        depth: args.depth.or(sc_prompt).unwrap_or(128),
        gen: args.gen.or(sc_gen).unwrap_or(8),
        reps: args.reps,
        warmup: args.warmup,
        threads,
        isa: None,
        token_seed: 1,
    };
    let ceil = ceilings(args.hw.as_deref(), threads, &mut warnings)?;
    let mut result = run_bench(&def, &opts).with_context(|| format!("bench {source}"))?;
    if let Some(c) = &ceil {
        result.evaluate(c);
    }
    result.warnings.splice(0..0, warnings);
    let out = Output {
        points: result.points()?,
        result: &result,
    };
    if let Some(path) = &args.output {
        write_json(path, &out)?;
    }
    if args.json {
        if args.output.as_deref() != Some(Path::new("-")) {
            write_json(Path::new("-"), &out)?;
        }
    } else {
        write_atomic(Path::new("-"), render(&result).as_bytes())?;
    }
    Ok(())
}

fn ms(s: f64) -> String {
    format!("{:.3}", s * 1e3)
}

fn rate(v: f64, unit: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", v / unit)
    } else {
        "-".into()
    }
}

fn phase_title(p: &PhaseResult) -> String {
    match p.phase.as_str() {
        "decode" => format!(
            "decode at depth {} ({} steps, contexts {}..{}): median {} ms/token = {:.1} tokens/s \
             (per repetition: median {} ms, min {}, max {}, {} reps)",
            p.depth,
            p.steps,
            p.context_first,
            p.context_last,
            ms(p.seconds_per_token()),
            1.0 / p.seconds_per_token(),
            ms(p.seconds.median),
            ms(p.seconds.min),
            ms(p.seconds.max),
            p.seconds.samples.len()
        ),
        _ => format!(
            "prefill of {} tokens: median {} ms = {:.1} tokens/s (min {}, max {}, {} reps)",
            p.tokens,
            ms(p.seconds.median),
            p.tokens as f64 / p.seconds.median,
            ms(p.seconds.min),
            ms(p.seconds.max),
            p.seconds.samples.len()
        ),
    }
}

/// The human-readable report: a header, then per phase a summary and one row per operator kind.
pub fn render(r: &BenchResult) -> String {
    let mut s = format!(
        "{} ({}): {} weights ({}), {} KV cache, {} threads, {} kernels; model built in {:.2} s\n",
        r.model,
        r.model_type,
        r.weights,
        r.weights_source,
        r.kv_cache,
        r.threads,
        r.isa,
        r.load_seconds
    );
    match &r.roof {
        Some(roof) => {
            let compute = match (roof.int8_operators, roof.int8_ops_per_second) {
                (false, _) => "every engine operator computes in f32".to_string(),
                (true, Some(v)) => format!(
                    "int8 peak {:.1} GOP/s for the quantized matrix products (int8 dot \
                     products), f32 for the rest",
                    v / 1e9
                ),
                (true, None) => "the profile has no int8 ceiling: the f32 peak stands in for \
                                 the quantized matrix products (int8 dot products)"
                    .to_string(),
            };
            s += &format!(
                "roof: {} ({}): DRAM {:.1} GB/s, f32 peak {:.1} GFLOP/s; {compute}\n",
                roof.profile,
                roof.source,
                roof.dram_bytes_per_second / 1e9,
                roof.f32_flops_per_second / 1e9
            )
        }
        None => s += "roof: none (no hardware profile)\n",
    }
    s += &r.mla_text();
    for p in &r.phases {
        s += "\n";
        s += &phase_title(p);
        s += "\n";
        let t = p.seconds.median;
        s += &format!(
            "  measured {} GFLOP/s, {} GB/s ({:.2} GB moved, {:.2} GFLOP, intensity {:.2} FLOP/B)",
            rate(p.flops.as_f64() / t, 1e9),
            rate(p.bytes.as_f64() / t, 1e9),
            p.bytes.as_f64() / 1e9,
            p.flops.as_f64() / 1e9,
            p.flops.as_f64() / p.bytes.as_f64()
        );
        if let (Some(pred), Some(frac)) = (p.predicted_seconds, p.roof_fraction) {
            s += &format!(
                "; roofline predicts {} ms: {:.0}% of the roof",
                ms(pred),
                frac * 100.0
            );
        }
        s += &format!("; unattributed {} ms\n", ms(p.unattributed_seconds));
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY);
        let mut header = vec!["operator", "n", "ms", "% time", "GFLOP/s", "GB/s", "FLOP/B"];
        let roofed = p.predicted_seconds.is_some();
        if roofed {
            header.extend(["pred ms", "meas/pred", "% roof"]);
        }
        table.set_header(header);
        for k in p.by_kind() {
            let m = k.median();
            let mut row = vec![
                Cell::new(k.kind.name()),
                Cell::new(k.count).set_alignment(CellAlignment::Right),
                Cell::new(ms(m)).set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.1}", 100.0 * m / t)).set_alignment(CellAlignment::Right),
                Cell::new(rate(k.flops.as_f64() / m, 1e9)).set_alignment(CellAlignment::Right),
                Cell::new(rate(k.bytes.as_f64() / m, 1e9)).set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.2}", k.flops.as_f64() / k.bytes.as_f64()))
                    .set_alignment(CellAlignment::Right),
            ];
            if let Some(pred) = k.predicted_seconds.filter(|_| roofed) {
                row.push(Cell::new(ms(pred)).set_alignment(CellAlignment::Right));
                row.push(Cell::new(format!("{:.2}", m / pred)).set_alignment(CellAlignment::Right));
                row.push(
                    Cell::new(format!("{:.0}", 100.0 * pred / m))
                        .set_alignment(CellAlignment::Right),
                );
            }
            table.add_row(row);
        }
        for line in table.to_string().lines() {
            s += "  ";
            s += line;
            s += "\n";
        }
        s += &p.experts_text();
        if p.ops
            .iter()
            .any(|o| o.roof_fraction.is_some_and(|f| f > 1.0))
        {
            s += "  (% roof > 100: that operator's data was cache-resident; the bandwidth roof \
                  is DRAM's)\n";
        }
    }
    for w in &r.warnings {
        s += &format!("warning: {}\n", w.message);
    }
    s
}
