//! `rooflinebench inspect <file.gguf> [--json]`: what a GGUF file really holds.
//!
//! Architecture and hyperparameters (mapped to Hugging Face config names, as the cost model
//! reads them), the tokenizer, and tensors counted per real ggml type with their bytes and the
//! effective bits per weight. The file-type label is a recipe name; the per-type table is what
//! decode actually streams (pitfall 24).

use anyhow::{Context, Result};
use rooflinebench_gguf::arch::hf_config;
use rooflinebench_gguf::summary::{file_type_name, Summary};
use rooflinebench_gguf::{Gguf, GgufFile};
use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Version of the `inspect --json` schema.
const SCHEMA_VERSION: u32 = 1;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A GGUF model file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let f = GgufFile::open(&args.file).context("cannot inspect GGUF file")?;
    let report = build(&f.header, &args.file);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        render(&report)
    };
    crate::output::write_atomic(std::path::Path::new("-"), text.as_bytes())
}

fn build(g: &Gguf, path: &std::path::Path) -> Json {
    let s = Summary::of(g);
    let by_type: Vec<Json> = s
        .by_type
        .iter()
        .map(|(t, st)| {
            json!({
                "type": t.name(),
                "tensors": st.tensors,
                "elements": st.elements,
                "bytes": st.bytes,
                "bits_per_weight": if st.elements == 0 { 0.0 } else { st.bytes as f64 * 8.0 / st.elements as f64 },
            })
        })
        .collect();
    let (config, config_error) = match hf_config(g) {
        Ok(c) => (c, Json::Null),
        Err(e) => (Json::Null, Json::String(e.to_string())),
    };
    let ftype = g.get("general.file_type").and_then(|v| v.as_u64());
    let tokens = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .map(|a| a.len());
    let merges = g
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.as_array())
        .map(|a| a.len());
    let str_of = |k: &str| g.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let u_of = |k: &str| g.get(k).and_then(|v| v.as_u64());
    json!({
        "schema_version": SCHEMA_VERSION,
        "file": path.display().to_string(),
        "file_bytes": g.file_len,
        "gguf_version": g.version,
        "alignment_bytes": g.alignment,
        "data_offset_bytes": g.data_offset,
        "metadata_keys": g.metadata.len(),
        "name": str_of("general.name"),
        "architecture": str_of("general.architecture"),
        "file_type": ftype,
        "file_type_name": ftype.and_then(file_type_name),
        "config": config,
        "config_error": config_error,
        "tokenizer": {
            "model": str_of("tokenizer.ggml.model"),
            "pre": str_of("tokenizer.ggml.pre"),
            "tokens": tokens,
            "merges": merges,
            "bos_token_id": u_of("tokenizer.ggml.bos_token_id"),
            "eos_token_id": u_of("tokenizer.ggml.eos_token_id"),
        },
        "tensors": s.tensors,
        "elements": s.elements,
        "tensor_bytes": s.bytes,
        "bits_per_weight": s.bits_per_weight(),
        "by_type": by_type,
    })
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Integer with thousands separators.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render(r: &Json) -> String {
    let mut o = String::new();
    let u = |k: &str| r[k].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "file:          {} ({}, GGUF v{}, {} metadata keys, alignment {})",
        r["file"].as_str().unwrap_or(""),
        mb(u("file_bytes")),
        u("gguf_version"),
        u("metadata_keys"),
        u("alignment_bytes")
    );
    if let Some(n) = r["name"].as_str() {
        let _ = writeln!(o, "name:          {n}");
    }
    let arch = r["architecture"].as_str().unwrap_or("(none)");
    match r["config"]["model_type"].as_str() {
        Some(mt) => {
            let _ = writeln!(o, "architecture:  {arch} (HF model_type {mt})");
        }
        None => {
            let _ = writeln!(o, "architecture:  {arch}");
        }
    }
    if let Some(ft) = r["file_type"].as_u64() {
        let name = r["file_type_name"].as_str().unwrap_or("unknown");
        let _ = writeln!(
            o,
            "file type:     {ft} ({name}: a label; the real per-tensor types are below)"
        );
    }
    if let Some(e) = r["config_error"].as_str() {
        let _ = writeln!(o, "warning:       hyperparameters not mapped: {e}");
    }
    if let Some(c) = r["config"].as_object() {
        let _ = writeln!(o, "hyperparameters (Hugging Face names):");
        for (k, v) in c {
            if k == "model_type" || k == "gguf_architecture" {
                continue;
            }
            let _ = writeln!(o, "  {k:<34} {v}");
        }
    }
    let t = &r["tokenizer"];
    if let Some(m) = t["model"].as_str() {
        let _ = writeln!(
            o,
            "tokenizer:     {m} (pre {}), {} tokens, {} merges, bos {}, eos {}",
            t["pre"].as_str().unwrap_or("-"),
            t["tokens"].as_u64().unwrap_or(0),
            t["merges"].as_u64().unwrap_or(0),
            t["bos_token_id"],
            t["eos_token_id"]
        );
    }
    let _ = writeln!(
        o,
        "tensors:       {} tensors, {} weights, {}",
        u("tensors"),
        grouped(u("elements")),
        mb(u("tensor_bytes"))
    );
    let _ = writeln!(
        o,
        "  {:<8} {:>8} {:>15} {:>14} {:>12}",
        "type", "tensors", "weights", "bytes", "bits/weight"
    );
    for row in r["by_type"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {:<8} {:>8} {:>15} {:>14} {:>12.4}",
            row["type"].as_str().unwrap_or(""),
            row["tensors"].as_u64().unwrap_or(0),
            grouped(row["elements"].as_u64().unwrap_or(0)),
            grouped(row["bytes"].as_u64().unwrap_or(0)),
            row["bits_per_weight"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        o,
        "effective bits per weight: {:.4} (all tensors)",
        r["bits_per_weight"].as_f64().unwrap_or(0.0)
    );
    o
}
