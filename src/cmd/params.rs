//! `rooflinebench params <model> [--json]`: parameter counts.
//!
//! JSON keys are exactly `total`, `embedding`, `non_embedding`, `active` (integers);
//! conventions in `rooflinebench_model::params`.

use crate::cmd::models::{attention_label, human_count, moe_label, resolve_model};
use crate::output::write_atomic;
use anyhow::{Context, Result};
use rooflinebench_model::params::count_params;
use std::path::Path;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// A config.json, a folder holding one, a GGUF file, or a built-in model name
    /// (`rooflinebench models`).
    pub model: String,
    /// Print `{"total", "embedding", "non_embedding", "active"}` as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let spec = resolve_model(&args.model)?;
    let p = count_params(&spec).with_context(|| args.model.clone())?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&p)?;
        s.push('\n');
        s
    } else {
        let line = |label: &str, n: u64| format!("{label:<14} {n:>16}  ({})\n", human_count(n));
        let mut s = format!(
            "{} ({}, {}{}, {} layers)\n",
            spec.name,
            spec.model_type,
            attention_label(&spec),
            moe_label(&spec)
                .map(|m| format!(", MoE {m}"))
                .unwrap_or_default(),
            spec.num_hidden_layers
        );
        s += &line("total", p.total);
        s += &line("embedding", p.embedding);
        s += &line("non_embedding", p.non_embedding);
        s += &line("active", p.active);
        s
    };
    write_atomic(Path::new("-"), text.as_bytes())
}
