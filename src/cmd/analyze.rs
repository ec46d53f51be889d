//! `rooflinebench analyze <model>`: per-operator FLOPs and bytes of one phase or a whole
//! scenario, with intensity per operator and totals.
//!
//! Without `--per-layer` operators are summed over layers (one row per operator kind); with it
//! every operator of every layer is listed. Counting conventions: `rooflinebench_model::cost`.

use crate::cmd::models::{attention_label, resolve_model_full, ResolvedModel};
use crate::output::write_atomic;
use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use rooflinebench_model::cost::{CostModel, CostOptions, CostTable, CostTotals, MlaForm, Phase};
use rooflinebench_model::format::{KvFormat, Recipe};
use rooflinebench_model::hardware::{Precision, Warning};
use rooflinebench_model::op::OpCost;
use rooflinebench_model::spec::{Attention, Overrides};
use rooflinebench_model::workload::{request_cost_with_formats, Scenario};
use serde::Serialize;
use std::path::Path;

/// Version of `analyze --json` output.
pub const ANALYZE_SCHEMA_VERSION: u32 = 1;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseArg {
    Prefill,
    Decode,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlaFormArg {
    Absorbed,
    Materialized,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A config.json, a folder holding one, a GGUF file, or a built-in model name
    /// (`rooflinebench models`).
    pub model: String,
    /// Phase to cost (default: prefill, or decode when only --context is given).
    #[arg(long, value_enum)]
    pub phase: Option<PhaseArg>,
    /// Prefill: new tokens per sequence [default: 128].
    #[arg(long)]
    pub seq: Option<u64>,
    /// Decode: positions attended by the new token, itself included [default: 1024].
    /// Prefill: positions already cached before it [default: 0].
    #[arg(long)]
    pub context: Option<u64>,
    /// Sequences per batch [default: 1, or the scenario's].
    #[arg(long)]
    pub batch: Option<u64>,
    /// Weight format or llama.cpp recipe: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k
    /// q4_k_m q5_k_m [default: f16; for a GGUF file, its real per-tensor types].
    #[arg(long)]
    pub weights: Option<String>,
    /// KV-cache format: f32 f16 bf16 q8_0 q4_0.
    #[arg(long, default_value = "f16")]
    pub kv: String,
    /// A whole request instead of one phase: SISO LISO SILO LILO, or PROMPT/GENERATED[/BATCH].
    #[arg(long)]
    pub scenario: Option<String>,
    /// Depth sweep: truncate to N layers or repeat the last layer up to N.
    #[arg(long)]
    pub layers: Option<u64>,
    /// Override the number of attention heads (head_dim is kept).
    #[arg(long)]
    pub heads: Option<u64>,
    /// Override the number of KV heads (MHA/GQA/MQA variants).
    #[arg(long = "kv-heads")]
    pub kv_heads: Option<u64>,
    /// Override MLA's kv_lora_rank (turns standard attention into MLA).
    #[arg(long = "kv-lora-rank")]
    pub kv_lora_rank: Option<u64>,
    /// MLA execution form.
    #[arg(long = "mla-form", value_enum, default_value = "absorbed")]
    pub mla_form: MlaFormArg,
    /// Apply the LM head to every prompt token (default: the last one).
    #[arg(long = "lm-head-all")]
    pub lm_head_all: bool,
    /// Fused attention: scores never written to memory.
    #[arg(long = "flash-attn")]
    pub flash_attn: bool,
    /// Bytes per activation element between operators (4 = f32, 2 = f16).
    #[arg(long = "act-bytes", default_value_t = 4)]
    pub act_bytes: u64,
    /// List every operator of every layer instead of summing over layers.
    #[arg(long = "per-layer")]
    pub per_layer: bool,
    /// JSON output.
    #[arg(long, conflicts_with_all = ["csv", "markdown"])]
    pub json: bool,
    /// CSV output.
    #[arg(long, conflicts_with = "markdown")]
    pub csv: bool,
    /// Markdown table output.
    #[arg(long)]
    pub markdown: bool,
}

/// One output row: an operator (per layer) or an operator kind (summed over layers).
#[derive(Serialize)]
struct Row {
    phase: &'static str,
    layer: Option<u32>,
    op: &'static str,
    compute: Precision,
    flops: u64,
    weight_bytes: u64,
    act_read_bytes: u64,
    act_write_bytes: u64,
    kv_read_bytes: u64,
    kv_write_bytes: u64,
    bytes: u64,
    /// FLOP/byte; `null` for an operator that moves no bytes.
    intensity: Option<f64>,
}

fn row(
    phase: &'static str,
    layer: Option<u32>,
    op: &'static str,
    compute: Precision,
    t: &CostTotals,
) -> Row {
    let bytes = t.bytes().0;
    Row {
        phase,
        layer,
        op,
        compute,
        flops: t.flops.0,
        weight_bytes: t.weight_bytes.0,
        act_read_bytes: t.act_read_bytes.0,
        act_write_bytes: t.act_write_bytes.0,
        kv_read_bytes: t.kv_read_bytes.0,
        kv_write_bytes: t.kv_write_bytes.0,
        bytes,
        intensity: (bytes > 0).then(|| t.intensity().0),
    }
}

fn op_totals(op: &OpCost) -> CostTotals {
    let mut t = CostTotals::default();
    t.add_op(op, 1);
    t
}

/// Rows of a list of operators: all of them, or summed per kind (first-appearance order).
fn rows_of(phase: &'static str, ops: &[OpCost], per_layer: bool) -> Vec<Row> {
    if per_layer {
        return ops
            .iter()
            .map(|o| {
                row(
                    phase,
                    o.id.layer,
                    o.id.kind.name(),
                    o.compute,
                    &op_totals(o),
                )
            })
            .collect();
    }
    let table = CostTable {
        phase: Phase::Decode { context: 1 },
        batch: 1,
        weights: Recipe::default(),
        kv: KvFormat::default(),
        mla_form: None,
        ops: ops.to_vec(),
    };
    table
        .by_kind()
        .into_iter()
        .map(|(k, c, t)| row(phase, None, k.name(), c, &t))
        .collect()
}

#[derive(Serialize)]
struct Totals {
    #[serde(flatten)]
    totals: CostTotals,
    bytes: u64,
    intensity: Option<f64>,
}

impl From<CostTotals> for Totals {
    fn from(t: CostTotals) -> Totals {
        let bytes = t.bytes().0;
        Totals {
            totals: t,
            bytes,
            intensity: (bytes > 0).then(|| t.intensity().0),
        }
    }
}

#[derive(Serialize)]
struct Section {
    label: String,
    phase: &'static str,
    rows: Vec<Row>,
    totals: Totals,
}

#[derive(Serialize)]
struct Report {
    schema_version: u32,
    model: String,
    attention: String,
    weights: String,
    kv: String,
    mla_form: Option<&'static str>,
    batch: u64,
    activation_bytes: u64,
    flash_attention: bool,
    lm_head_all_tokens: bool,
    scenario: Option<Scenario>,
    phase: Option<Phase>,
    sections: Vec<Section>,
    totals: Totals,
    warnings: Vec<Warning>,
}

pub fn run(args: Args) -> Result<()> {
    let ResolvedModel {
        spec,
        source,
        mut warnings,
        formats,
    } = resolve_model_full(&args.model)?;
    // A GGUF is costed with its real per-tensor types unless --weights overrides them
    // (pitfall 24); tensors the file lacks (e.g. after --layers) fall back to f16.
    let file_formats = match &args.weights {
        None => formats,
        Some(_) => None,
    };
    let overrides = Overrides {
        layers: args.layers,
        heads: args.heads,
        kv_heads: args.kv_heads,
        kv_lora_rank: args.kv_lora_rank,
    };
    let (spec, w2) = spec
        .with_overrides(&overrides)
        .with_context(|| format!("{source}: overrides"))?;
    warnings.extend(w2);
    for w in &warnings {
        eprintln!("warning: {source}: {}", w.message);
    }
    let weights = match &args.weights {
        Some(w) => Recipe::parse(w).context("--weights")?,
        None => Recipe::default(),
    };
    let kv = KvFormat::parse(&args.kv).context("--kv")?;
    let mut opts = CostOptions {
        batch: args.batch.unwrap_or(1),
        weights,
        kv,
        lm_head_all_tokens: args.lm_head_all,
        mla_form: match args.mla_form {
            MlaFormArg::Absorbed => MlaForm::Absorbed,
            MlaFormArg::Materialized => MlaForm::Materialized,
        },
        activation_bytes: args.act_bytes,
        flash_attention: args.flash_attn,
    };
    let is_mla = matches!(spec.attention, Attention::Mla(_));

    let mut report = Report {
        schema_version: ANALYZE_SCHEMA_VERSION,
        model: spec.name.clone(),
        attention: attention_label(&spec),
        weights: if file_formats.is_some() {
            "gguf (per tensor)".to_string()
        } else {
            weights.name()
        },
        kv: kv.name().to_string(),
        mla_form: is_mla.then(|| opts.mla_form.name()),
        batch: opts.batch,
        activation_bytes: opts.activation_bytes,
        flash_attention: opts.flash_attention,
        lm_head_all_tokens: opts.lm_head_all_tokens,
        scenario: None,
        phase: None,
        sections: Vec::new(),
        totals: CostTotals::default().into(),
        warnings,
    };

    if let Some(sc) = &args.scenario {
        if args.phase.is_some() || args.seq.is_some() || args.context.is_some() {
            bail!("--scenario fixes the phases: drop --phase, --seq and --context");
        }
        let mut scenario = Scenario::parse(sc).context("--scenario")?;
        if let Some(b) = args.batch {
            scenario.batch = b;
        }
        opts.batch = scenario.batch;
        report.batch = scenario.batch;
        let rc = request_cost_with_formats(&spec, &scenario, &opts, file_formats.as_ref())
            .with_context(|| source.clone())?;
        let end = scenario.prompt.saturating_add(scenario.generate);
        if let Some(w) = beyond_max_positions(&spec, end) {
            eprintln!("warning: {source}: {}", w.message);
            report.warnings.push(w);
        }
        report.sections.push(Section {
            label: format!("prefill of {} tokens", scenario.prompt),
            phase: "prefill",
            rows: rows_of("prefill", &rc.prefill.ops, args.per_layer),
            totals: rc.prefill_totals.into(),
        });
        let steps = scenario.decode_steps();
        if steps > 0 {
            report.sections.push(Section {
                label: format!(
                    "{steps} decode step{} at contexts {}..={}, summed",
                    if steps == 1 { "" } else { "s" },
                    scenario.decode_context(1),
                    scenario.decode_context(steps)
                ),
                phase: "decode",
                rows: rows_of("decode", &rc.decode_sum, args.per_layer),
                totals: rc.decode_totals.into(),
            });
        }
        report.totals = rc.totals.into();
        report.scenario = Some(scenario);
    } else {
        let phase_kind = match (args.phase, args.seq, args.context) {
            (Some(p), _, _) => p,
            (None, None, Some(_)) => PhaseArg::Decode,
            (None, _, _) => PhaseArg::Prefill,
        };
        let phase = match phase_kind {
            PhaseArg::Prefill => Phase::Prefill {
                tokens: args.seq.unwrap_or(128),
                cached: args.context.unwrap_or(0),
            },
            PhaseArg::Decode => {
                if args.seq.is_some() {
                    bail!("--seq applies to prefill; a decode step processes one token (use --context)");
                }
                Phase::Decode {
                    context: args.context.unwrap_or(1024),
                }
            }
        };
        let model = match &file_formats {
            Some(f) => CostModel::with_formats(&spec, &opts, f),
            None => CostModel::new(&spec, &opts),
        }
        .with_context(|| source.clone())?;
        let table = model.table(phase).with_context(|| source.clone())?;
        let end = phase.cached().saturating_add(phase.new_tokens());
        if let Some(w) = beyond_max_positions(&spec, end) {
            eprintln!("warning: {source}: {}", w.message);
            report.warnings.push(w);
        }
        let label = match phase {
            Phase::Prefill { tokens, cached } => {
                format!("prefill of {tokens} tokens after {cached} cached")
            }
            Phase::Decode { context } => format!("decode step at context {context}"),
        };
        let totals = table.totals();
        report.sections.push(Section {
            label,
            phase: phase.name(),
            rows: rows_of(phase.name(), &table.ops, args.per_layer),
            totals: totals.into(),
        });
        report.totals = totals.into();
        report.phase = Some(phase);
    }

    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else if args.csv {
        csv_text(&report)?
    } else if args.markdown {
        markdown_text(&report)
    } else {
        human_text(&report)
    };
    write_atomic(Path::new("-"), text.as_bytes())
}

/// A warning when a phase reaches past the context length the model was trained for.
fn beyond_max_positions(spec: &rooflinebench_model::spec::ModelSpec, end: u64) -> Option<Warning> {
    let max = spec.max_position_embeddings;
    (max > 0 && end > max).then(|| Warning {
        code: "beyond_max_position_embeddings".to_string(),
        message: format!(
            "{end} positions exceed max_position_embeddings = {max}: costs are extrapolated"
        ),
    })
}

/// SI-prefixed number with 3 significant digits (`1.23G`).
fn si(x: u64) -> String {
    let v = x as f64;
    let (d, p) = if v >= 1e15 {
        (1e15, "P")
    } else if v >= 1e12 {
        (1e12, "T")
    } else if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        return x.to_string();
    };
    let y = v / d;
    if y >= 100.0 {
        format!("{y:.0}{p}")
    } else if y >= 10.0 {
        format!("{y:.1}{p}")
    } else {
        format!("{y:.2}{p}")
    }
}

fn intensity_text(i: Option<f64>) -> String {
    match i {
        None => "-".to_string(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

const HEADER: [&str; 10] = [
    "op",
    "compute",
    "FLOPs",
    "weights B",
    "act rd B",
    "act wr B",
    "KV rd B",
    "KV wr B",
    "total B",
    "FLOP/B",
];

fn cells(r: &Row) -> [String; 10] {
    [
        match r.layer {
            Some(l) => format!("L{l}.{}", r.op),
            None => r.op.to_string(),
        },
        r.compute.name().to_string(),
        si(r.flops),
        si(r.weight_bytes),
        si(r.act_read_bytes),
        si(r.act_write_bytes),
        si(r.kv_read_bytes),
        si(r.kv_write_bytes),
        si(r.bytes),
        intensity_text(r.intensity),
    ]
}

fn totals_cells(label: &str, t: &Totals) -> [String; 10] {
    let c = &t.totals;
    [
        label.to_string(),
        String::new(),
        si(c.flops.0),
        si(c.weight_bytes.0),
        si(c.act_read_bytes.0),
        si(c.act_write_bytes.0),
        si(c.kv_read_bytes.0),
        si(c.kv_write_bytes.0),
        si(t.bytes),
        intensity_text(t.intensity),
    ]
}

fn right_aligned(cells: [String; 10]) -> Vec<Cell> {
    cells
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let cell = Cell::new(c);
            if i >= 2 {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        })
        .collect()
}

fn heading(r: &Report) -> String {
    let mut s = format!(
        "{} ({}), weights {}, KV {}, batch {}",
        r.model, r.attention, r.weights, r.kv, r.batch
    );
    if let Some(f) = r.mla_form {
        s.push_str(&format!(", MLA {f}"));
    }
    if let Some(sc) = &r.scenario {
        s.push_str(&format!(
            ", scenario {} ({} prompt / {} generated)",
            sc.name, sc.prompt, sc.generate
        ));
    }
    s
}

fn human_text(r: &Report) -> String {
    let mut out = format!("{}\n", heading(r));
    for sec in &r.sections {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(HEADER.to_vec());
        for row in &sec.rows {
            t.add_row(right_aligned(cells(row)));
        }
        t.add_row(right_aligned(totals_cells("total", &sec.totals)));
        out.push_str(&format!("\n{}\n{t}\n", sec.label));
    }
    if r.sections.len() > 1 {
        let t = &r.totals;
        out.push_str(&format!(
            "\nrequest total: {} FLOPs, {} bytes, {} FLOP/byte\n",
            si(t.totals.flops.0),
            si(t.bytes),
            intensity_text(t.intensity)
        ));
    }
    out
}

fn markdown_text(r: &Report) -> String {
    let mut out = format!("**{}**\n", heading(r));
    for sec in &r.sections {
        out.push_str(&format!("\n{}\n\n| {} |\n", sec.label, HEADER.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
        for row in &sec.rows {
            out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
        }
        out.push_str(&format!(
            "| {} |\n",
            totals_cells("**total**", &sec.totals).join(" | ")
        ));
    }
    out
}

fn csv_text(r: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for sec in &r.sections {
        for row in &sec.rows {
            w.serialize(row)?;
        }
    }
    w.flush()?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    Ok(String::from_utf8(bytes)?)
}
