//! `rooflinebench import llama-bench <file.json|jsonl> --hw <profile|device> [--model M]`:
//! llama-bench results from any device as measured points on that device's roofline, in the
//! same result schema as our own measurements ([`crate::result::ResultDoc`]).
//!
//! Parsing and the mapping onto the cost model live in [`crate::import::llama_bench`]; this
//! file resolves the model, groups the tests (one result per model, weight format, KV format,
//! thread count and attention kernel), analyses each group against the profile and writes it.

use crate::cmd::models::resolve_model_full;
use crate::hw::load_profile;
use crate::import::llama_bench::{
    self, identify, kv_format, label_format, model_weight_bytes, test_point, test_work,
    LabelFormat, LbTest, TestKind,
};
use crate::output::{write_atomic, write_json};
use crate::report::analysis::{analyse, ceilings_of, AnalysisInput};
use crate::report::svg::{seconds, si, sig3};
use crate::result::{PointOrigin, ResultDoc};
use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use rooflinebench_model::cost::{CostModel, CostOptions};
use rooflinebench_model::format::{KvFormat, Recipe, TensorFormats};
use rooflinebench_model::hardware::{HardwareProfile, Warning};
use rooflinebench_model::measure::MeasuredPoint;
use rooflinebench_model::params::count_params;
use rooflinebench_model::roofline::RoofOptions;
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::workload::Scenario;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A llama-bench file larger than this is not llama-bench output.
const MAX_FILE_BYTES: u64 = 256 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub source: Source,
}

#[derive(clap::Subcommand, Debug)]
pub enum Source {
    /// llama.cpp llama-bench results (`-o json` or `-o jsonl`).
    #[command(name = "llama-bench")]
    LlamaBench(LlamaBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct LlamaBenchArgs {
    /// The llama-bench output file (JSON array or JSON lines).
    pub file: PathBuf,
    /// The device the tests ran on: a profile file (`rooflinebench probe -o`) or a device name
    /// (`rooflinebench devices`).
    #[arg(long)]
    pub hw: String,
    /// The model: a config.json, a folder holding one, a built-in name, or a GGUF file
    /// [default: identified from the file's model_type and model_n_params].
    #[arg(long)]
    pub model: Option<String>,
    /// Weight format or llama.cpp recipe (f16, q8_0, q4_k_m, ...) [default: from model_type].
    #[arg(long)]
    pub weights: Option<String>,
    /// KV-cache format [default: the file's type_k].
    #[arg(long)]
    pub kv: Option<String>,
    /// Write the result JSON here (`-` = stdout). Several groups (models, formats, thread
    /// counts) go to FILE, FILE-2.json, FILE-3.json, ...
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print the result JSON (an array when there are several groups) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.source {
        Source::LlamaBench(a) => run_llama_bench(a),
    }
}

/// Collects warnings once each, in order.
#[derive(Default)]
struct Warnings(Vec<Warning>);

impl Warnings {
    fn add(&mut self, code: &str, message: String) {
        if !self.0.iter().any(|w| w.message == message) {
            self.0.push(Warning {
                code: code.to_string(),
                message,
            });
        }
    }
}

/// What identifies the model of a test: `model_type`, `model_filename`, `model_n_params`.
type ModelKey = (Option<String>, Option<String>, Option<u64>);

/// Everything that puts two tests in the same result document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    model: String,
    weights: String,
    kv: String,
    flash: bool,
    threads: u64,
}

struct Group {
    spec: ModelSpec,
    /// The real per-tensor formats of a GGUF given with `--model` (pitfall 24).
    formats: Option<TensorFormats>,
    opts: CostOptions,
    threads: Option<u32>,
    tests: Vec<LbTest>,
}

fn run_llama_bench(a: LlamaBenchArgs) -> Result<()> {
    let file = a.file.display().to_string();
    let meta = std::fs::metadata(&a.file).with_context(|| format!("cannot read {file}"))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!(
            "{file}: {} bytes is more than the {} MiB accepted for llama-bench output",
            meta.len(),
            MAX_FILE_BYTES >> 20
        );
    }
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {file}"))?;
    let parsed = llama_bench::parse(&text).with_context(|| file.clone())?;
    if parsed.tests.is_empty() {
        bail!("{file}: no llama-bench results in the file");
    }
    let profile = load_profile(&a.hw)?;
    let given = match &a.model {
        Some(m) => {
            let r = resolve_model_full(m)?;
            Some((r.spec, r.source, r.warnings, r.formats))
        }
        None => None,
    };
    let weights_override = match &a.weights {
        Some(w) => Some(Recipe::parse(w).with_context(|| format!("--weights {w}"))?),
        None => None,
    };
    let kv_override = match &a.kv {
        Some(k) => Some(KvFormat::parse(k).with_context(|| format!("--kv {k}"))?),
        None => None,
    };

    let mut warn = Warnings::default();
    if let Some((_, src, w, _)) = &given {
        for x in w {
            warn.add(&x.code, format!("{src}: {}", x.message));
        }
    }
    check_file_level(&parsed.tests, &file, &mut warn);

    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut identified: BTreeMap<ModelKey, ModelSpec> = BTreeMap::new();
    for t in &parsed.tests {
        let Some(kind) = t.kind() else {
            warn.add(
                "empty_test",
                format!(
                    "{file}: record {}: n_prompt and n_gen are both 0: skipped",
                    t.record
                ),
            );
            continue;
        };
        let _ = kind;
        // The model.
        let spec = match &given {
            Some((s, src, _, _)) => {
                if let (Some(n), Ok(p)) = (t.model_n_params, count_params(s)) {
                    let rel = (n as f64 - p.total as f64).abs() / (p.total as f64).max(1.0);
                    if rel > 0.02 {
                        warn.add(
                            "model_mismatch",
                            format!(
                                "{file}: record {}: the file's model has {} parameters, {src} has {} \
                                 ({:.1}% apart): is --model the model that ran?",
                                t.record,
                                n,
                                p.total,
                                100.0 * rel
                            ),
                        );
                    }
                }
                s.clone()
            }
            None => {
                let key = (
                    t.model_type.clone(),
                    t.model_filename.clone(),
                    t.model_n_params,
                );
                match identified.get(&key) {
                    Some(s) => s.clone(),
                    None => {
                        let id = identify(t).with_context(|| file.clone())?;
                        warn.add(
                            "model_identified",
                            format!(
                                "{file}: model {:?} ({} parameters{}) taken as {}; pass --model to \
                                 choose another",
                                t.model_type.as_deref().unwrap_or("?"),
                                t.model_n_params.unwrap_or(0),
                                t.model_filename
                                    .as_deref()
                                    .map(|f| format!(", file {f}"))
                                    .unwrap_or_default(),
                                id.how
                            ),
                        );
                        identified.insert(key, id.spec.clone());
                        id.spec
                    }
                }
            }
        };
        // Weights.
        let recipe = match weights_override {
            Some(r) => r,
            None => {
                let label = t.model_type.as_deref().unwrap_or("");
                match label_format(label) {
                    LabelFormat::Known { recipe, approx } => {
                        if approx {
                            warn.add(
                                "weights_approx",
                                format!(
                                    "{file}: {label:?} is costed as uniform {} (llama.cpp's _S recipe \
                                     differs in a few tensors); pass --weights to override",
                                    recipe.name()
                                ),
                            );
                        }
                        recipe
                    }
                    LabelFormat::Unsupported(ft) => bail!(
                        "{file}: record {}: field `model_type` {label:?}: weight type {ft:?} is not \
                         modelled; pass --weights (f16, q8_0, q4_0, q4_k_m, ...) for a stand-in",
                        t.record
                    ),
                    LabelFormat::Missing => bail!(
                        "{file}: record {}: field `model_type` {label:?} names no weight type; pass \
                         --weights",
                        t.record
                    ),
                }
            }
        };
        // KV cache.
        let kv = match kv_override {
            Some(k) => k,
            None => match kv_format(t) {
                Some(k) => {
                    if let (Some(tk), Some(tv)) = (&t.type_k, &t.type_v) {
                        if !tk.eq_ignore_ascii_case(tv) {
                            warn.add(
                                "kv_types_differ",
                                format!(
                                    "{file}: type_k {tk} and type_v {tv} differ; the KV cache is \
                                     costed as {tk} for both"
                                ),
                            );
                        }
                    }
                    k
                }
                None => {
                    warn.add(
                        "kv_assumed",
                        format!(
                            "{file}: KV-cache type {:?} is unknown or missing; costed as f16 \
                             (llama.cpp's default); pass --kv to override",
                            t.type_k.as_deref().unwrap_or("(none)")
                        ),
                    );
                    KvFormat::F16
                }
            },
        };
        let flash = match (t.flash_attn_field, t.flash_attn) {
            (_, Some(f)) => f,
            (true, None) => {
                warn.add(
                    "flash_attn_auto",
                    format!(
                        "{file}: flash_attn is auto (-1): costed as enabled, which llama.cpp \
                         chooses when the backend supports it (attention scores never reach memory)"
                    ),
                );
                true
            }
            (false, None) => false,
        };
        let opts = CostOptions {
            weights: recipe,
            kv,
            flash_attention: flash,
            activation_bytes: 4,
            lm_head_all_tokens: false,
            ..CostOptions::default()
        };
        // Label vs model_size: "read the file, not the label".
        if let (Some(size), Ok(ours)) = (t.model_size, model_weight_bytes(&spec, recipe)) {
            let rel = (size as f64 - ours as f64).abs() / (size as f64).max(1.0);
            if rel > 0.05 {
                warn.add(
                    "model_size_mismatch",
                    format!(
                        "{file}: model_size is {}B but {} in {} is {}B by our count ({:.0}% apart): \
                         the label may not describe the file's real tensor types; check with \
                         `rooflinebench inspect FILE.gguf` and pass --weights/--model",
                        si(size as f64),
                        spec.name,
                        recipe.name(),
                        si(ours as f64),
                        100.0 * rel
                    ),
                );
            }
        }
        let key = GroupKey {
            model: format!("{}#{}", spec.name, spec.num_hidden_layers),
            weights: recipe.name(),
            kv: kv.name().to_string(),
            flash,
            threads: t.n_threads.unwrap_or(0),
        };
        groups
            .entry(key)
            .or_insert_with(|| Group {
                spec: spec.clone(),
                formats: given.as_ref().and_then(|g| g.3.clone()),
                opts,
                threads: t.n_threads.and_then(|n| u32::try_from(n).ok()),
                tests: Vec::new(),
            })
            .tests
            .push(t.clone());
    }
    if groups.is_empty() {
        bail!("{file}: no test with prompt or generated tokens");
    }

    let mut docs = Vec::new();
    for g in groups.values() {
        docs.push(group_doc(g, &profile, &file, &mut warn)?);
    }
    // Warnings: printed once, stored in every document.
    for d in &mut docs {
        for w in &warn.0 {
            if !d.warnings.iter().any(|x| x.message == w.message) {
                d.warnings.push(w.clone());
            }
        }
    }
    for w in &warn.0 {
        eprintln!("warning: {}", w.message);
    }
    let paths = output_paths(a.output.as_deref(), docs.len());
    for (d, p) in docs.iter().zip(&paths) {
        write_atomic(p, &d.to_json()?)?;
        if p.as_os_str() != "-" {
            eprintln!("wrote {}", p.display());
        }
    }
    let to_stdout = a.output.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if a.json {
        if !to_stdout {
            if docs.len() == 1 {
                write_json(Path::new("-"), &docs[0])?;
            } else {
                write_json(Path::new("-"), &docs)?;
            }
        }
    } else if !to_stdout {
        let mut s = String::new();
        for d in &docs {
            s.push_str(&render(d, &file, parsed.format));
        }
        write_atomic(Path::new("-"), s.as_bytes())?;
    }
    Ok(())
}

/// Warnings about the file as a whole: decode from an empty cache, offloading, old fields.
fn check_file_level(tests: &[LbTest], file: &str, warn: &mut Warnings) {
    let decodes: Vec<&LbTest> = tests
        .iter()
        .filter(|t| matches!(t.kind(), Some(TestKind::Tg | TestKind::Pg)))
        .collect();
    if decodes.iter().any(|t| t.n_depth.is_none()) {
        warn.add(
            "pitfall_15_decode_from_empty_cache",
            format!(
                "{file}: no n_depth field (llama-bench before -d/--n-depth): its tg tests decoded \
                 from an empty KV cache (PITFALLS.md #15), so they are decode at contexts 1..n_gen, \
                 not decode after a prompt. Re-run a recent llama-bench with -d 512,4096 to measure \
                 decode at depth"
            ),
        );
    } else if !decodes.is_empty() && decodes.iter().all(|t| t.n_depth == Some(0)) {
        warn.add(
            "decode_only_at_depth_0",
            format!(
                "{file}: every tg test ran at depth 0 (empty KV cache): short-context decode hides \
                 the attention cost (PITFALLS.md #16); add -d 512,4096 to llama-bench"
            ),
        );
    }
    if tests.iter().any(|t| t.n_threads.is_none()) {
        warn.add(
            "threads_unknown",
            format!("{file}: n_threads missing: points carry 0 threads and the profile's best ceilings are used"),
        );
    }
    if tests.iter().any(|t| t.n_prompt > 0 && t.n_ubatch.is_none()) {
        warn.add(
            "ubatch_assumed",
            format!(
                "{file}: n_ubatch missing (llama-bench before micro-batches): prefill costed in \
                 micro-batches of n_batch (or 512 when that is missing too)"
            ),
        );
    }
    if tests
        .iter()
        .any(|t| t.samples_ns.as_ref().is_none_or(|s| s.is_empty()) && t.avg_ns.is_some())
    {
        warn.add(
            "no_samples",
            format!("{file}: samples_ns missing: only avg_ns is kept (one sample, spread unknown)"),
        );
    }
    for t in tests {
        let backend = t.backends.as_deref().unwrap_or("");
        let gpu = !backend.is_empty()
            && backend.split(',').any(|b| {
                !b.trim().eq_ignore_ascii_case("CPU") && !b.trim().eq_ignore_ascii_case("BLAS")
            });
        if gpu && t.n_gpu_layers.unwrap_or(0) != 0 {
            warn.add(
                "offloaded",
                format!(
                    "{file}: tests ran on {backend} with n_gpu_layers {}{}: --hw must describe that \
                     device, not the host CPU",
                    t.n_gpu_layers.unwrap_or(0),
                    t.gpu_info
                        .as_deref()
                        .filter(|g| !g.is_empty())
                        .map(|g| format!(" ({g})"))
                        .unwrap_or_default()
                ),
            );
            break;
        }
    }
}

/// The result document of one group.
fn group_doc(
    g: &Group,
    profile: &HardwareProfile,
    file: &str,
    warn: &mut Warnings,
) -> Result<ResultDoc> {
    let mut roof = RoofOptions {
        threads: g.threads,
        ..RoofOptions::default()
    };
    let ceilings = match ceilings_of(profile, &roof) {
        Ok(c) => c,
        Err(_) if g.threads.is_some() => {
            warn.add(
                "roof_thread_mismatch",
                format!(
                    "hardware profile `{}` has no ceilings measured at {} threads; its best ones \
                     are used. Remedy: probe that device with --threads {}",
                    profile.name,
                    g.threads.unwrap_or(0),
                    g.threads.unwrap_or(0)
                ),
            );
            roof.threads = None;
            ceilings_of(profile, &roof)?
        }
        Err(e) => return Err(e),
    };
    let has_measured = profile
        .compute
        .iter()
        .any(|c| c.source == rooflinebench_model::hardware::CeilingSource::Measured);
    if has_measured
        && g.threads.is_some()
        && !ceilings
            .iter()
            .any(|c| c.source == rooflinebench_model::hardware::CeilingSource::Measured)
    {
        warn.add(
            "roof_thread_mismatch",
            format!(
                "hardware profile `{}` has measured ceilings, but none at the {} threads the \
                 tests used: predictions use its other ceilings. Remedy: probe with --threads {}",
                profile.name,
                g.threads.unwrap_or(0),
                g.threads.unwrap_or(0)
            ),
        );
    }
    let model = match &g.formats {
        Some(f) => CostModel::with_formats(&g.spec, &g.opts, f),
        None => CostModel::new(&g.spec, &g.opts),
    }
    .with_context(|| format!("model {}", g.spec.name))?;
    let mut points: Vec<MeasuredPoint> = Vec::new();
    let mut predicted: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for t in &g.tests {
        let w = test_work(&model, t, &ceilings)
            .with_context(|| format!("{file}: record {}", t.record))?;
        let p = test_point(t, &w).with_context(|| file.to_string())?;
        predicted.insert(p.label.clone(), w.predicted_seconds.clone());
        points.push(p);
    }
    // One scenario for the report's predicted points: the largest prompt and generation.
    let p = g.tests.iter().map(|t| t.n_prompt).max().unwrap_or(0).max(1);
    let n = g.tests.iter().map(|t| t.n_gen).max().unwrap_or(0).max(1);
    let scenario = Scenario::new(&format!("pp{p}/tg{n}"), p, n, 1)?;
    let mut doc = analyse(AnalysisInput {
        spec: &g.spec,
        spec_warnings: Vec::new(),
        profile: profile.clone(),
        scenarios: vec![scenario],
        cost_options: g.opts,
        roof,
        measurements: points,
        sweeps: false,
    })?;
    // The analysis joins a decode point to one step; a llama-bench tg test is n_gen steps and
    // a prefill n_ubatch micro-batches: use the prediction of exactly the work timed.
    for r in doc
        .potential
        .iter_mut()
        .filter(|r| r.origin == PointOrigin::Measured)
    {
        if let (Some(v), Some(i)) = (
            predicted.get(&r.label),
            ceilings.iter().position(|c| c.source == r.source),
        ) {
            r.predicted_seconds = v.get(i).copied();
        }
    }
    Ok(doc)
}

/// `out`, `out-2.json`, `out-3.json`, ... (or nothing without `-o`).
fn output_paths(out: Option<&Path>, n: usize) -> Vec<PathBuf> {
    let Some(out) = out else {
        return Vec::new();
    };
    if n <= 1 || out.as_os_str() == "-" {
        return vec![out.to_path_buf(); n.min(1)];
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "result".into());
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "json".into());
    (0..n)
        .map(|i| {
            if i == 0 {
                out.to_path_buf()
            } else {
                out.with_file_name(format!("{stem}-{}.{ext}", i + 1))
            }
        })
        .collect()
}

/// The human table of one document.
fn render(d: &ResultDoc, file: &str, format: &str) -> String {
    let src = crate::report::charts::primary_source(d);
    let engine = d
        .measurements
        .first()
        .map(|m| m.engine.clone())
        .unwrap_or_default();
    let threads = d.measurements.first().map_or(0, |m| m.threads);
    let mut s =
        format!(
        "{file} ({format}, {engine}): {} ({} weights, {} KV cache, {} layers), {} threads, on {}\n",
        d.model.name,
        d.model.weights,
        d.model.kv,
        d.model.num_hidden_layers,
        if threads == 0 { "?".into() } else { threads.to_string() },
        d.hardware.name
    );
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "test",
        "phase",
        "context",
        "median",
        "tokens/s",
        "FLOP/s",
        "B/s",
        "FLOP/B",
        "predicted",
        "meas/pred",
        "% of roof",
    ]);
    for m in &d.measurements {
        let rec = d.potential.iter().find(|r| {
            r.origin == PointOrigin::Measured && r.label == m.label && Some(r.source) == src
        });
        let pred = rec.and_then(|r| r.predicted_seconds);
        let right = |x: String| Cell::new(x).set_alignment(CellAlignment::Right);
        t.add_row(vec![
            Cell::new(&m.label),
            Cell::new(&m.phase),
            right(m.context.to_string()),
            right(seconds(m.seconds.median)),
            right(sig3(m.tokens as f64 / m.seconds.median)),
            right(si(m.perf().0)),
            right(si(m.bandwidth().0)),
            right(sig3(m.intensity().0)),
            right(pred.map_or("-".into(), seconds)),
            right(pred.map_or("-".into(), |p| sig3(m.seconds.median / p))),
            right(rec.map_or("-".into(), |r| {
                format!("{:.0}%", 100.0 * r.potential.efficiency)
            })),
        ]);
    }
    s.push_str(&format!("{t}\n"));
    s.push_str(&format!(
        "work from the cost model; predicted and % of roof against {} ceilings of `{}`\n",
        src.map_or("no", |x| x.name()),
        d.hardware.name
    ));
    s
}
