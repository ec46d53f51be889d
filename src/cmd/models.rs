//! `rooflinebench models`: the built-in model zoo; and [`resolve_model`], which every
//! subcommand uses to turn a `<model>` argument into a validated spec.

use crate::output::write_atomic;
use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use rooflinebench_gguf::model as gguf_model;
use rooflinebench_gguf::GgufFile;
use rooflinebench_model::format::TensorFormats;
use rooflinebench_model::hardware::Warning;
use rooflinebench_model::params::count_params;
use rooflinebench_model::spec::{Attention, Ffn, ModelSpec};
use rooflinebench_model::zoo;
use serde::Serialize;
use std::path::Path;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Resolves `<model>`: a path to a `config.json`, a folder holding one, a GGUF file, or a zoo
/// name. Spec
/// warnings are printed to stderr (`warning: <source>: <message>`).
pub fn resolve_model(arg: &str) -> Result<ModelSpec> {
    let (spec, source, warnings) = resolve_model_with_warnings(arg)?;
    for w in &warnings {
        eprintln!("warning: {source}: {}", w.message);
    }
    Ok(spec)
}

/// Like [`resolve_model`] but returns the warnings (to store them in a JSON result) and a
/// description of where the config came from, instead of printing them.
pub fn resolve_model_with_warnings(arg: &str) -> Result<(ModelSpec, String, Vec<Warning>)> {
    let r = resolve_model_full(arg)?;
    Ok((r.spec, r.source, r.warnings))
}

/// A resolved `<model>` argument.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    pub spec: ModelSpec,
    /// Where the spec came from (a file path or a zoo name).
    pub source: String,
    pub warnings: Vec<Warning>,
    /// For a GGUF file: the real format of every matrix (pitfall 24), to cost with
    /// `CostModel::with_formats`. `None` for a config or a built-in model.
    pub formats: Option<TensorFormats>,
}

/// Whether `path` is a GGUF file: named `*.gguf`, or starting with the GGUF magic.
pub fn is_gguf(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| &magic == b"GGUF")
}

fn resolve_gguf(path: &Path) -> Result<ResolvedModel> {
    let file = GgufFile::open(path)?;
    let source = path.display().to_string();
    let (mut spec, mut warnings) =
        gguf_model::model_spec(&file.header).with_context(|| source.clone())?;
    if let Some(s) = path.file_stem() {
        spec.name = s.to_string_lossy().into_owned();
    }
    let unmodelled = gguf_model::FileFormats::of(&file.header).unmodelled;
    if let Some((name, ty)) = unmodelled.first() {
        warnings.push(Warning {
            code: "unmodelled_tensor_type".to_string(),
            message: format!(
                "{} matri{} in types the cost model does not represent (first: {name} {ty:?}); \
                 costed with --weights instead",
                unmodelled.len(),
                if unmodelled.len() == 1 { "x" } else { "ces" }
            ),
        });
    }
    let formats = gguf_model::tensor_formats(&file.header);
    Ok(ResolvedModel {
        spec,
        source,
        warnings,
        formats: Some(formats),
    })
}

/// Resolves `<model>` like [`resolve_model_with_warnings`], and also accepts a GGUF file
/// (`*.gguf` or a file starting with the GGUF magic), whose per-tensor formats it returns.
pub fn resolve_model_full(arg: &str) -> Result<ResolvedModel> {
    let path = Path::new(arg);
    if is_gguf(path) {
        return resolve_gguf(path);
    }
    if path.exists() {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read model config {}", file.display()))?;
        let (mut spec, warnings) =
            ModelSpec::from_config_json(&text).with_context(|| file.display().to_string())?;
        // Name it after the folder (`Qwen--Qwen2.5-0.5B-Instruct`) or the file stem.
        let stem = if file.file_name().is_some_and(|n| n == "config.json") {
            file.parent().and_then(|p| p.file_name())
        } else {
            file.file_stem()
        };
        if let Some(s) = stem {
            spec.name = s.to_string_lossy().into_owned();
        }
        return Ok(ResolvedModel {
            spec,
            source: file.display().to_string(),
            warnings,
            formats: None,
        });
    }
    let entry = zoo::lookup(arg).with_context(|| {
        format!(
            "no config file, folder or built-in model named {arg:?} (see `rooflinebench models`)"
        )
    })?;
    let (spec, warnings) = entry
        .spec()
        .with_context(|| format!("built-in model {}", entry.name))?;
    Ok(ResolvedModel {
        spec,
        source: entry.name.to_string(),
        warnings,
        formats: None,
    })
}

#[derive(Serialize)]
struct Row {
    name: &'static str,
    hf_id: &'static str,
    model_type: String,
    attention: &'static str,
    moe: Option<String>,
    layers: u64,
    hidden_size: u64,
    params_total: u64,
    params_active: u64,
}

/// "128 x top-8" (plus shared experts) or `None` for a dense model.
pub fn moe_label(spec: &ModelSpec) -> Option<String> {
    match &spec.ffn {
        Ffn::Dense { .. } => None,
        Ffn::Moe { moe, .. } => {
            let mut s = format!("{}x top-{}", moe.num_experts, moe.top_k);
            if moe.num_shared_experts > 0 {
                s.push_str(&format!(" +{} shared", moe.num_shared_experts));
            }
            let dense = spec.num_hidden_layers - spec.moe_layers();
            if dense > 0 {
                s.push_str(&format!(", {dense} dense"));
            }
            Some(s)
        }
    }
}

/// Attention label with the head structure, e.g. `GQA 14/2`, `MLA r512`.
pub fn attention_label(spec: &ModelSpec) -> String {
    let mut s = match &spec.attention {
        Attention::Mla(m) => format!("MLA r{}", m.kv_lora_rank),
        Attention::Mha | Attention::Gqa | Attention::Mqa => format!(
            "{} {}/{}",
            spec.attention.name(),
            spec.num_attention_heads,
            spec.num_key_value_heads
        ),
    };
    if let Some(w) = spec.layers.iter().find_map(|l| l.window) {
        s.push_str(&format!(" sw{w}"));
    }
    s
}

/// Human-friendly count: `494.0M`, `15.71B`.
pub fn human_count(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2}B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}K", x / 1e3)
    } else {
        n.to_string()
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut rows = Vec::new();
    for e in zoo::all() {
        let (spec, _) = e
            .spec()
            .with_context(|| format!("built-in model {}", e.name))?;
        let p = count_params(&spec).with_context(|| format!("built-in model {}", e.name))?;
        rows.push((
            Row {
                name: e.name,
                hf_id: e.hf_id,
                model_type: spec.model_type.clone(),
                attention: spec.attention.name(),
                moe: moe_label(&spec),
                layers: spec.num_hidden_layers,
                hidden_size: spec.hidden_size,
                params_total: p.total,
                params_active: p.active,
            },
            attention_label(&spec),
        ));
    }
    let text = if args.json {
        let rows: Vec<&Row> = rows.iter().map(|(r, _)| r).collect();
        let mut s = serde_json::to_string_pretty(&rows)?;
        s.push('\n');
        s
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(vec![
            "name",
            "hf id",
            "type",
            "attention",
            "MoE",
            "layers",
            "hidden",
            "params",
            "active",
        ]);
        for (r, att) in &rows {
            t.add_row(vec![
                Cell::new(r.name),
                Cell::new(r.hf_id),
                Cell::new(&r.model_type),
                Cell::new(att),
                Cell::new(r.moe.as_deref().unwrap_or("-")),
                Cell::new(r.layers).set_alignment(CellAlignment::Right),
                Cell::new(r.hidden_size).set_alignment(CellAlignment::Right),
                Cell::new(human_count(r.params_total)).set_alignment(CellAlignment::Right),
                Cell::new(human_count(r.params_active)).set_alignment(CellAlignment::Right),
            ]);
        }
        format!("{t}\n")
    };
    write_atomic(Path::new("-"), text.as_bytes())
}
