//! llama.cpp `llama-bench` results (`-o json`: one array; `-o jsonl`: one object per line)
//! turned into measured points on our cost model.
//!
//! What llama-bench times (tools/llama-bench/llama-bench.cpp, read for this module): per
//! repetition the KV cache is cleared, a depth prefill of `n_depth` tokens runs *untimed*, then
//! the timer covers a prefill of `n_prompt` tokens (in `llama_decode` calls of `n_batch`
//! tokens, each split by llama.cpp into micro-batches of `n_ubatch`) followed by `n_gen`
//! single-token decode steps. `samples_ns` holds one duration per repetition. So:
//!
//! - a **pp test** (`n_prompt > 0`, `n_gen == 0`) is a prefill of `n_prompt` tokens after
//!   `n_depth` cached. Weights are read once per micro-batch and the LM head runs on the last
//!   token of each `n_batch` call, so its work is the sum over the micro-batches, not one
//!   prefill of `n_prompt` tokens;
//! - a **tg test** (`n_gen > 0`, `n_prompt == 0`) is `n_gen` decode steps at contexts
//!   `n_depth + 1 ..= n_depth + n_gen` (cost-model convention), each costed at its own context;
//! - a **pg test** (both) is a whole request: the prefill, then the steps after it.
//!
//! Files from llama-bench versions before `-d/--n-depth` have no `n_depth`: their tg tests
//! decoded from an empty cache (PITFALLS.md #15), which we say in a warning.
//!
//! What it is not: a timing source for operators (llama-bench reports whole tests only), nor a
//! reader of llama-bench's CSV, SQL or Markdown output.

use anyhow::{bail, Context, Result};
use rooflinebench_model::cost::{CostModel, Phase};
use rooflinebench_model::format::{KvFormat, Recipe, RecipeContext, TensorRole, WeightFormat};
use rooflinebench_model::hardware::Precision;
use rooflinebench_model::measure::{MeasuredPoint, SampleSummary, Scope};
use rooflinebench_model::op::OpKind;
use rooflinebench_model::params::count_params;
use rooflinebench_model::roofline::{Ceilings, PhaseAccumulator};
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::units::{Bytes, Flops};
use rooflinebench_model::zoo;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Largest token count of one test we cost (prompt, generated or depth): 2^20.
pub const MAX_TEST_TOKENS: u64 = 1 << 20;
/// Most repetitions kept per test.
pub const MAX_SAMPLES: usize = 1 << 16;

/// One llama-bench test (one result object), with every field we use. Absent fields are
/// `None`; present fields with the wrong type are errors (see [`parse`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LbTest {
    /// 1-based position of the object in the file (JSONL: the line number).
    pub record: usize,
    pub build_commit: Option<String>,
    pub build_number: Option<u64>,
    pub cpu_info: Option<String>,
    pub gpu_info: Option<String>,
    pub backends: Option<String>,
    pub model_filename: Option<String>,
    /// `"<arch> <size> <file type>"`, e.g. `qwen2 1B Q4_K - Medium`.
    pub model_type: Option<String>,
    /// Bytes of the model's tensors.
    pub model_size: Option<u64>,
    pub model_n_params: Option<u64>,
    pub n_batch: Option<u64>,
    pub n_ubatch: Option<u64>,
    pub n_threads: Option<u64>,
    pub type_k: Option<String>,
    pub type_v: Option<String>,
    pub n_gpu_layers: Option<i64>,
    /// `Some(true/false)`, or `None` when absent or "auto" (`-1`).
    pub flash_attn: Option<bool>,
    /// Whether a `flash_attn` field was present at all (`auto` is present but `None`).
    pub flash_attn_field: bool,
    pub n_prompt: u64,
    pub n_gen: u64,
    /// `None` in files from llama-bench before `--n-depth` (decode from an empty cache).
    pub n_depth: Option<u64>,
    pub test_time: Option<String>,
    pub avg_ns: Option<f64>,
    /// Every repetition's duration, nanoseconds.
    pub samples_ns: Option<Vec<f64>>,
}

/// What kind of test a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// Prefill only.
    Pp,
    /// Decode steps only.
    Tg,
    /// Prefill then decode steps, timed together.
    Pg,
}

impl LbTest {
    pub fn kind(&self) -> Option<TestKind> {
        match (self.n_prompt > 0, self.n_gen > 0) {
            (true, false) => Some(TestKind::Pp),
            (false, true) => Some(TestKind::Tg),
            (true, true) => Some(TestKind::Pg),
            (false, false) => None,
        }
    }

    /// llama-bench's own name for the test: `pp512`, `tg128`, `pp512+tg128`, with ` @ d4096`.
    pub fn name(&self) -> String {
        let base = match self.kind() {
            Some(TestKind::Pp) => format!("pp{}", self.n_prompt),
            Some(TestKind::Tg) => format!("tg{}", self.n_gen),
            Some(TestKind::Pg) => format!("pp{}+tg{}", self.n_prompt, self.n_gen),
            None => "empty".to_string(),
        };
        match self.n_depth {
            Some(d) if d > 0 => format!("{base} @ d{d}"),
            _ => base,
        }
    }

    /// `llama.cpp b5163 (8cf427ff)`, with what is known.
    pub fn engine(&self) -> String {
        let mut s = "llama.cpp".to_string();
        if let Some(n) = self.build_number {
            s.push_str(&format!(" b{n}"));
        }
        if let Some(c) = &self.build_commit {
            s.push_str(&format!(" ({c})"));
        }
        if let Some(b) = self.backends.as_deref().filter(|b| !b.is_empty()) {
            s.push_str(&format!(" {b}"));
        }
        s
    }

    /// Repetition times in seconds: `samples_ns`, else the single `avg_ns`.
    pub fn seconds(&self) -> Result<SampleSummary> {
        let ns: Vec<f64> = match (&self.samples_ns, self.avg_ns) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(a)) => vec![a],
            _ => bail!(
                "record {}: no timing: fields `samples_ns` and `avg_ns` are both missing or empty",
                self.record
            ),
        };
        for (i, v) in ns.iter().enumerate() {
            if !(v.is_finite() && *v > 0.0) {
                bail!(
                    "record {}: field `samples_ns[{i}]` is {v}: a duration must be positive",
                    self.record
                );
            }
        }
        Ok(SampleSummary::from_samples(
            ns.iter().map(|v| v / 1e9).collect(),
        )?)
    }
}

/// The records of a file, in order.
#[derive(Debug, Default)]
pub struct Parsed {
    pub tests: Vec<LbTest>,
    /// `"json"` or `"jsonl"`.
    pub format: &'static str,
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut t: String = s.chars().take(40).collect();
            if s.chars().count() > 40 {
                t.push_str("...");
            }
            format!("{t:?}")
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Field access with errors naming the record and the field.
struct Rec<'a> {
    obj: &'a Map<String, Value>,
    record: usize,
}

impl Rec<'_> {
    fn get(&self, f: &str) -> Option<&Value> {
        self.obj.get(f).filter(|v| !v.is_null())
    }

    fn bad(&self, f: &str, v: &Value, expected: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "record {}: field `{f}` is {}: expected {expected}",
            self.record,
            type_name(v)
        )
    }

    fn string(&self, f: &str) -> Result<Option<String>> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // Older printers wrote some numbers where we read text (e.g. a numeric commit).
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(self.bad(f, v, "a string")),
        }
    }

    /// A non-negative integer; integral floats and digit strings (CSV-era printers) accepted.
    fn uint(&self, f: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(f) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0 && x.fract() == 0.0 && *x < 1.8e19)
                    .map(|x| x as u64)
            }),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        n.map(Some)
            .ok_or_else(|| self.bad(f, v, "a non-negative integer"))
    }

    fn int(&self, f: &str) -> Result<Option<i64>> {
        let Some(v) = self.get(f) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        n.map(Some).ok_or_else(|| self.bad(f, v, "an integer"))
    }

    fn float(&self, f: &str) -> Result<Option<f64>> {
        let Some(v) = self.get(f) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        n.filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| self.bad(f, v, "a finite number"))
    }

    /// `flash_attn`: a boolean (older versions), an integer (`-1` auto, `0` off, `1` on) or
    /// text (`auto`, `on`, `off`, `enabled`, `disabled`). Returns (present, value).
    fn flash(&self) -> Result<(bool, Option<bool>)> {
        let f = "flash_attn";
        let Some(v) = self.get(f) else {
            return Ok((false, None));
        };
        let val = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(-1) => None,
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => return Err(self.bad(f, v, "true, false, -1, 0 or 1")),
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "auto" | "-1" => None,
                "on" | "enabled" | "true" | "1" => Some(true),
                "off" | "disabled" | "false" | "0" => Some(false),
                _ => return Err(self.bad(f, v, "auto, on or off")),
            },
            _ => return Err(self.bad(f, v, "a boolean or an integer")),
        };
        Ok((true, val))
    }

    fn samples(&self, f: &str) -> Result<Option<Vec<f64>>> {
        let Some(v) = self.get(f) else {
            return Ok(None);
        };
        let Value::Array(a) = v else {
            return Err(self.bad(f, v, "an array of durations in nanoseconds"));
        };
        if a.len() > MAX_SAMPLES {
            bail!(
                "record {}: field `{f}` has {} entries, more than the {MAX_SAMPLES} accepted",
                self.record,
                a.len()
            );
        }
        let mut out = Vec::with_capacity(a.len());
        for (i, x) in a.iter().enumerate() {
            match x.as_f64().filter(|x| x.is_finite() && *x > 0.0) {
                Some(ns) => out.push(ns),
                None => {
                    return Err(self.bad(&format!("{f}[{i}]"), x, "a positive duration (ns)"));
                }
            }
        }
        Ok(Some(out))
    }
}

fn parse_record(v: &Value, record: usize) -> Result<LbTest> {
    let obj = v.as_object().with_context(|| {
        format!(
            "record {record} is {}, not a llama-bench result object",
            type_name(v)
        )
    })?;
    let r = Rec { obj, record };
    let req = |f: &str| -> Result<u64> {
        r.uint(f)?.with_context(|| {
            format!(
                "record {record}: field `{f}` is missing (is this llama-bench output from -o json or -o jsonl?)"
            )
        })
    };
    let (flash_attn_field, flash_attn) = r.flash()?;
    let t = LbTest {
        record,
        build_commit: r.string("build_commit")?,
        build_number: r.uint("build_number")?,
        cpu_info: r.string("cpu_info")?,
        gpu_info: r.string("gpu_info")?,
        backends: r.string("backends")?,
        model_filename: r.string("model_filename")?,
        model_type: r.string("model_type")?,
        model_size: r.uint("model_size")?,
        model_n_params: r.uint("model_n_params")?,
        n_batch: r.uint("n_batch")?,
        n_ubatch: r.uint("n_ubatch")?,
        n_threads: r.uint("n_threads")?,
        type_k: r.string("type_k")?,
        type_v: r.string("type_v")?,
        n_gpu_layers: r.int("n_gpu_layers")?,
        flash_attn,
        flash_attn_field,
        n_prompt: req("n_prompt")?,
        n_gen: req("n_gen")?,
        n_depth: r.uint("n_depth")?,
        test_time: r.string("test_time")?,
        avg_ns: r.float("avg_ns")?,
        samples_ns: r.samples("samples_ns")?,
    };
    for (f, v) in [
        ("n_prompt", t.n_prompt),
        ("n_gen", t.n_gen),
        ("n_depth", t.n_depth.unwrap_or(0)),
    ] {
        if v > MAX_TEST_TOKENS {
            bail!("record {record}: field `{f}` is {v}: more than the {MAX_TEST_TOKENS} tokens accepted");
        }
    }
    for f in ["n_batch", "n_ubatch"] {
        if r.uint(f)? == Some(0) {
            bail!("record {record}: field `{f}` is 0: a batch holds at least one token");
        }
    }
    Ok(t)
}

/// Parses llama-bench JSON (an array of objects) or JSONL (one object per line). Errors name
/// the record (the line for JSONL) and the field; the caller adds the file name.
pub fn parse(text: &str) -> Result<Parsed> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        bail!("empty file: expected llama-bench output from -o json or -o jsonl");
    }
    if trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(trimmed).map_err(|e| {
            anyhow::anyhow!(
                "malformed JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                json_reason(&e)
            )
        })?;
        let arr = v.as_array().context("expected a JSON array")?;
        let tests = arr
            .iter()
            .enumerate()
            .map(|(i, v)| parse_record(v, i + 1))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Parsed {
            tests,
            format: "json",
        });
    }
    if !trimmed.starts_with('{') {
        bail!(
            "not llama-bench JSON or JSONL (it starts with {:?}); CSV, SQL and Markdown output \
             are not read: re-run llama-bench with -o json or -o jsonl",
            trimmed.chars().take(12).collect::<String>()
        );
    }
    let mut tests = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "line {}: malformed JSON at column {}: {}",
                i + 1,
                e.column(),
                json_reason(&e)
            )
        })?;
        tests.push(parse_record(&v, i + 1)?);
    }
    Ok(Parsed {
        tests,
        format: "jsonl",
    })
}

fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// The model and its formats, from the file's metadata.

/// llama.cpp's file-type name inside `model_type` (`llama_model_ftype_name`), mapped to our
/// recipe. `approx` = the recipe is close but not llama.cpp's exact tensor mix.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelFormat {
    Known {
        recipe: Recipe,
        approx: bool,
    },
    /// A type the cost model does not have (IQ*, Q2_K, Q3_K, TQ*, MXFP4, ...).
    Unsupported(String),
    /// No file type in the label.
    Missing,
}

/// The file-type part of `model_type`: everything after the architecture and size words,
/// without `mostly` and ` (guessed)`.
pub fn ftype_part(model_type: &str) -> String {
    let words: Vec<&str> = model_type.split_whitespace().collect();
    let rest = words.get(2..).unwrap_or(&[]).join(" ");
    rest.replace("(guessed)", "")
        .trim()
        .trim_start_matches("mostly")
        .trim()
        .to_string()
}

/// The weight recipe named by a `model_type` label such as `qwen2 1B Q4_K - Medium`.
pub fn label_format(model_type: &str) -> LabelFormat {
    let ft = ftype_part(model_type);
    if ft.is_empty() {
        return LabelFormat::Missing;
    }
    let norm = ft.to_ascii_uppercase().replace(' ', "");
    let known = |r: Recipe| LabelFormat::Known {
        recipe: r,
        approx: false,
    };
    let approx = |r: Recipe| LabelFormat::Known {
        recipe: r,
        approx: true,
    };
    match norm.as_str() {
        "ALLF32" | "F32" => known(Recipe::Uniform(WeightFormat::F32)),
        "F16" => known(Recipe::Uniform(WeightFormat::F16)),
        "BF16" => known(Recipe::Uniform(WeightFormat::Bf16)),
        "Q4_0" => known(Recipe::Uniform(WeightFormat::Q4_0)),
        "Q4_1" => known(Recipe::Uniform(WeightFormat::Q4_1)),
        "Q5_0" => known(Recipe::Uniform(WeightFormat::Q5_0)),
        "Q5_1" => known(Recipe::Uniform(WeightFormat::Q5_1)),
        "Q8_0" => known(Recipe::Uniform(WeightFormat::Q8_0)),
        "Q4_K-MEDIUM" | "Q4_K_M" => known(Recipe::Q4KM),
        "Q5_K-MEDIUM" | "Q5_K_M" => known(Recipe::Q5KM),
        // llama.cpp's Q6_K keeps every matrix Q6_K; its output/embedding rules match ours.
        "Q6_K" => known(Recipe::Uniform(WeightFormat::Q6K)),
        // The _S recipes differ from the uniform K-quant in a few tensors only.
        "Q4_K-SMALL" | "Q4_K_S" => approx(Recipe::Uniform(WeightFormat::Q4K)),
        "Q5_K-SMALL" | "Q5_K_S" => approx(Recipe::Uniform(WeightFormat::Q5K)),
        _ => LabelFormat::Unsupported(ft),
    }
}

/// Total bytes of the model's weights under `recipe` (every tensor once, the embedding table
/// whole), to compare with llama-bench's `model_size`.
pub fn model_weight_bytes(spec: &ModelSpec, recipe: Recipe) -> Result<u64> {
    let opts = rooflinebench_model::cost::CostOptions {
        weights: recipe,
        ..Default::default()
    };
    let model = CostModel::new(spec, &opts)?;
    // One decode step reads every weight once, except that the embedding gathers one row.
    let t = model.totals(Phase::Decode { context: 1 })?;
    let ctx = RecipeContext {
        n_layers: spec.num_hidden_layers,
        n_experts: spec.ffn.moe().map_or(0, |m| m.num_experts),
        has_output: !spec.tie_word_embeddings,
    };
    let extra = if spec.tie_word_embeddings {
        0 // the LM head already read the whole (shared) matrix
    } else {
        let f = recipe.format_for(TensorRole::TokenEmbd, 0, spec.hidden_size, &ctx);
        let row = spec.hidden_size.div_ceil(f.block_size()) * f.bytes_per_block();
        row.saturating_mul(spec.vocab_size.saturating_sub(1))
    };
    // A MoE decode step reads only the routed experts; their totals are not needed here.
    Ok(t.weight_bytes.0.saturating_add(extra))
}

/// How the model of a test was found.
#[derive(Clone, Debug)]
pub struct Identified {
    pub spec: ModelSpec,
    /// Human description, e.g. `zoo model qwen2.5-0.5b` or `zoo model qwen2.5-1.5b cut to 12 layers`.
    pub how: String,
}

fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn close(a: u64, b: u64, rel: f64) -> bool {
    let (a, b) = (a as f64, b as f64);
    (a - b).abs() <= rel * a.max(b)
}

/// Finds the zoo model of a test from its `model_type` architecture word and
/// `model_n_params` (within 1%), using `model_filename` to break ties; failing an exact match,
/// a zoo model cut or grown to some layer count (the paper's depth sweep) within 0.5%. Errors
/// say what was tried and ask for `--model`.
pub fn identify(t: &LbTest) -> Result<Identified> {
    let ask = "pass --model <config.json|zoo name|file.gguf>";
    let mt = t.model_type.as_deref().with_context(|| {
        format!(
            "record {}: field `model_type` is missing: cannot tell the model; {ask}",
            t.record
        )
    })?;
    let arch = mt.split_whitespace().next().unwrap_or("");
    let hf_type = rooflinebench_gguf::arch::model_type(arch).with_context(|| {
        format!("record {}: field `model_type` {mt:?}: architecture {arch:?} has no built-in model; {ask}", t.record)
    })?;
    let n = t.model_n_params.with_context(|| {
        format!("record {}: field `model_n_params` is missing: cannot tell which {arch} model this is; {ask}", t.record)
    })?;
    let mut family: Vec<(ModelSpec, &'static zoo::ZooEntry, u64)> = Vec::new();
    for e in zoo::all() {
        let Ok((spec, _)) = e.spec() else { continue };
        if spec.model_type != hf_type {
            continue;
        }
        let Ok(p) = count_params(&spec) else { continue };
        family.push((spec, e, p.total));
    }
    let file = t
        .model_filename
        .as_deref()
        .map(normalise)
        .unwrap_or_default();
    let in_file = |e: &zoo::ZooEntry| {
        let repo = e.hf_id.rsplit('/').next().unwrap_or(e.hf_id);
        !file.is_empty() && (file.contains(&normalise(repo)) || file.contains(&normalise(e.name)))
    };
    let exact: Vec<&(ModelSpec, &zoo::ZooEntry, u64)> = family
        .iter()
        .filter(|(_, _, p)| close(*p, n, 0.01))
        .collect();
    let pick = |cands: Vec<(ModelSpec, String)>| -> Result<Option<Identified>> {
        let Some((first, how)) = cands.first().cloned() else {
            return Ok(None);
        };
        let same = |a: &ModelSpec, b: &ModelSpec| {
            let mut b = b.clone();
            b.name = a.name.clone();
            *a == b
        };
        if cands.iter().all(|(s, _)| same(&first, s)) {
            return Ok(Some(Identified { spec: first, how }));
        }
        let names: Vec<&str> = cands.iter().map(|(_, h)| h.as_str()).collect();
        bail!(
            "record {}: {mt:?} with {n} parameters matches several built-in models ({}); {ask}",
            t.record,
            names.join(", ")
        )
    };
    let narrow = |v: Vec<(ModelSpec, String, bool)>| -> Vec<(ModelSpec, String)> {
        let named: Vec<_> = v.iter().filter(|c| c.2).cloned().collect();
        let use_v = if named.is_empty() { v } else { named };
        use_v.into_iter().map(|(s, h, _)| (s, h)).collect()
    };
    let cands = narrow(
        exact
            .iter()
            .map(|(s, e, _)| (s.clone(), format!("zoo model {}", e.name), in_file(e)))
            .collect(),
    );
    if let Some(id) = pick(cands)? {
        return Ok(id);
    }
    // Depth variants: the same family cut or grown to L layers.
    let mut variants = Vec::new();
    for (spec, e, _) in &family {
        for layers in 1..=128u64 {
            let Ok(s) = spec.with_layers(layers) else {
                continue;
            };
            let Ok(p) = count_params(&s) else { continue };
            if close(p.total, n, 0.005) {
                let mut s = s;
                s.name = format!("{}-{layers}L", e.name);
                variants.push((
                    s,
                    format!("zoo model {} cut to {layers} layers", e.name),
                    in_file(e),
                ));
            }
        }
    }
    if let Some(id) = pick(narrow(variants))? {
        return Ok(id);
    }
    bail!(
        "record {}: no built-in {hf_type} model has {n} parameters (model_type {mt:?}), nor does one \
         cut to any depth; {ask}",
        t.record
    )
}

// ---------------------------------------------------------------------------------------------
// Work of a test.

/// Work of one test from the cost model, and its predicted time per ceiling source.
#[derive(Clone, Debug, PartialEq)]
pub struct TestWork {
    pub flops: Flops,
    pub bytes: Bytes,
    /// The precision carrying most FLOPs (the compute roof the point is drawn against).
    pub compute: Precision,
    /// Predicted seconds, one per entry of the `ceilings` given to [`test_work`].
    pub predicted_seconds: Vec<f64>,
    /// Forward passes costed (micro-batches plus decode steps).
    pub passes: u64,
}

struct Acc<'c> {
    ceilings: &'c [Ceilings],
    flops: u64,
    bytes: u64,
    by_prec: BTreeMap<Precision, u64>,
    accs: Vec<PhaseAccumulator<'c>>,
    seconds: Vec<f64>,
    passes: u64,
}

impl<'c> Acc<'c> {
    fn new(ceilings: &'c [Ceilings]) -> Acc<'c> {
        Acc {
            ceilings,
            flops: 0,
            bytes: 0,
            by_prec: BTreeMap::new(),
            accs: ceilings.iter().map(PhaseAccumulator::new).collect(),
            seconds: vec![0.0; ceilings.len()],
            passes: 0,
        }
    }

    /// Adds one forward pass; `skip_head` leaves out the final norm and LM head (a micro-batch
    /// that produces no logits).
    fn pass(&mut self, model: &CostModel<'_>, phase: Phase, skip_head: bool) -> Result<()> {
        let mut overflow = false;
        let (mut f, mut b) = (0u64, 0u64);
        let by_prec = &mut self.by_prec;
        let accs = &mut self.accs;
        model.visit(phase, |op, n| {
            if skip_head && matches!(op.id.kind, OpKind::LmHead | OpKind::FinalNorm) {
                return;
            }
            let of = op.flops.0.checked_mul(n);
            let ob = op.bytes().0.checked_mul(n);
            match (
                of.and_then(|x| f.checked_add(x)),
                ob.and_then(|x| b.checked_add(x)),
            ) {
                (Some(nf), Some(nb)) => (f, b) = (nf, nb),
                _ => overflow = true,
            }
            let e = by_prec.entry(op.compute).or_insert(0);
            *e = e.saturating_add(op.flops.0.saturating_mul(n));
            for a in accs.iter_mut() {
                a.add(op, n);
            }
        })?;
        let (nf, nb) = (self.flops.checked_add(f), self.bytes.checked_add(b));
        let (false, Some(nf), Some(nb)) = (overflow, nf, nb) else {
            bail!("the work of this test overflows 64-bit counts");
        };
        (self.flops, self.bytes) = (nf, nb);
        // Close the pass: predicted time is a sum over passes.
        let ceilings = self.ceilings;
        let done = std::mem::replace(
            &mut self.accs,
            ceilings.iter().map(PhaseAccumulator::new).collect(),
        );
        for (i, a) in done.into_iter().enumerate() {
            self.seconds[i] += a.finish().seconds.0;
        }
        self.passes += 1;
        Ok(())
    }
}

/// Costs a test on `model`: micro-batched prefill (`n_ubatch`, LM head once per `n_batch`
/// call) and/or one decode step per generated token at its own context.
pub fn test_work(model: &CostModel<'_>, t: &LbTest, ceilings: &[Ceilings]) -> Result<TestWork> {
    let depth = t.n_depth.unwrap_or(0);
    let n_batch = t.n_batch.unwrap_or(512).max(1);
    let n_ubatch = t.n_ubatch.unwrap_or(n_batch).clamp(1, n_batch);
    let mut acc = Acc::new(ceilings);
    // Prefill: llama_decode calls of n_batch tokens, each run as micro-batches of n_ubatch.
    let mut done = 0u64;
    while done < t.n_prompt {
        let call = (t.n_prompt - done).min(n_batch);
        let mut in_call = 0u64;
        while in_call < call {
            let u = (call - in_call).min(n_ubatch);
            let last_of_call = in_call + u == call;
            acc.pass(
                model,
                Phase::Prefill {
                    tokens: u,
                    cached: depth + done + in_call,
                },
                !last_of_call,
            )?;
            in_call += u;
        }
        done += call;
    }
    // Decode: the first generated token attends to everything before it plus itself.
    let start = depth + t.n_prompt;
    for j in 1..=t.n_gen {
        acc.pass(model, Phase::Decode { context: start + j }, false)?;
    }
    let compute = acc
        .by_prec
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(p, _)| *p)
        .unwrap_or(Precision::F32);
    Ok(TestWork {
        flops: Flops(acc.flops),
        bytes: Bytes(acc.bytes),
        compute,
        predicted_seconds: acc.seconds,
        passes: acc.passes,
    })
}

/// The measured point of a test. Label `#<record> <name>` (unique in a file).
pub fn test_point(t: &LbTest, w: &TestWork) -> Result<MeasuredPoint> {
    let kind = t
        .kind()
        .with_context(|| format!("record {}: n_prompt and n_gen are both 0", t.record))?;
    let depth = t.n_depth.unwrap_or(0);
    let (scope, phase, context, tokens) = match kind {
        TestKind::Pp => (Scope::Phase, "prefill", depth, t.n_prompt),
        TestKind::Tg => (Scope::Phase, "decode", depth + 1, t.n_gen),
        TestKind::Pg => (Scope::Request, "request", depth, t.n_prompt + t.n_gen),
    };
    Ok(MeasuredPoint {
        label: format!("#{} {}", t.record, t.name()),
        scope,
        op: None,
        phase: phase.to_string(),
        context,
        tokens,
        batch: 1,
        threads: t.n_threads.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        engine: t.engine(),
        compute: w.compute,
        flops: w.flops,
        bytes: w.bytes,
        seconds: t.seconds()?,
    })
}

/// The KV-cache format of a test (`type_k`; `type_v` when they differ is reported apart).
pub fn kv_format(t: &LbTest) -> Option<KvFormat> {
    t.type_k.as_deref().and_then(|k| KvFormat::parse(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rooflinebench_model::cost::CostOptions;

    const PP: &str = r#"{"build_commit":"8cf427ff","build_number":5163,"cpu_info":"Test CPU",
        "gpu_info":"","backends":"CPU","model_filename":"models/Qwen2.5-0.5B-Instruct-Q8_0.gguf",
        "model_type":"qwen2 1B Q8_0","model_size":531068928,"model_n_params":494032768,
        "n_batch":2048,"n_ubatch":512,"n_threads":2,"type_k":"f16","type_v":"f16",
        "n_gpu_layers":0,"flash_attn":false,"n_prompt":512,"n_gen":0,"n_depth":0,
        "test_time":"2025-04-24T11:58:50Z","avg_ns":2000000000,"stddev_ns":1000,
        "avg_ts":256.0,"stddev_ts":0.1,"samples_ns":[2100000000,1900000000,2000000000],
        "samples_ts":[243.8,269.5,256.0]}"#;

    fn pp() -> LbTest {
        parse(&format!("[{PP}]")).unwrap().tests.remove(0)
    }

    #[test]
    fn json_and_jsonl_give_the_same_records() {
        let a = parse(&format!("[{PP},{PP}]")).unwrap();
        let one_line = PP.replace('\n', " ");
        let b = parse(&format!("{one_line}\n\n{one_line}\n")).unwrap();
        assert_eq!(a.format, "json");
        assert_eq!(b.format, "jsonl");
        assert_eq!(a.tests.len(), 2);
        assert_eq!(b.tests.len(), 2);
        assert_eq!(b.tests[1].record, 3, "JSONL records are numbered by line");
        let t = &a.tests[0];
        assert_eq!((t.n_prompt, t.n_gen, t.n_depth), (512, 0, Some(0)));
        assert_eq!(t.kind(), Some(TestKind::Pp));
        assert_eq!(t.engine(), "llama.cpp b5163 (8cf427ff) CPU");
        let s = t.seconds().unwrap();
        assert_eq!(
            s.samples,
            vec![2.1, 1.9, 2.0],
            "every sample kept, in order"
        );
        assert_eq!(s.median, 2.0);
    }

    #[test]
    fn malformed_values_name_the_record_and_field() {
        let e = parse(&format!(
            "[{}]",
            PP.replace("\"n_prompt\":512", "\"n_prompt\":\"lots\"")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("record 1") && e.contains("`n_prompt`"), "{e}");
        let e = parse(&format!("[{}]", PP.replace("\"n_gen\":0,", "")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`n_gen` is missing"), "{e}");
        let e = parse(&format!("[{}]", PP.replace("1900000000", "-5")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`samples_ns[1]`"), "{e}");
        let e = parse("{\"n_prompt\": 1,\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("malformed JSON"), "{e}");
        let e = parse("model,size\n").unwrap_err().to_string();
        assert!(e.contains("-o json"), "{e}");
        assert!(parse("   ").unwrap_err().to_string().contains("empty"));
        let e = parse("[1]").unwrap_err().to_string();
        assert!(e.contains("record 1"), "{e}");
    }

    #[test]
    fn missing_optional_fields_are_none_not_errors() {
        let t = parse(r#"[{"n_prompt":0,"n_gen":16,"avg_ns":1e9}]"#)
            .unwrap()
            .tests
            .remove(0);
        assert_eq!(t.n_depth, None);
        assert_eq!(t.kind(), Some(TestKind::Tg));
        assert_eq!(t.engine(), "llama.cpp");
        assert_eq!(t.seconds().unwrap().samples, vec![1.0]);
        let t = parse(r#"[{"n_prompt":0,"n_gen":16}]"#)
            .unwrap()
            .tests
            .remove(0);
        assert!(t.seconds().unwrap_err().to_string().contains("samples_ns"));
    }

    #[test]
    fn flash_attn_in_every_historical_shape() {
        for (v, want) in [
            ("true", Some(true)),
            ("false", Some(false)),
            ("-1", None),
            ("1", Some(true)),
            ("\"auto\"", None),
            ("\"off\"", Some(false)),
        ] {
            let t = parse(&format!(r#"[{{"n_prompt":1,"n_gen":0,"flash_attn":{v}}}]"#))
                .unwrap()
                .tests
                .remove(0);
            assert_eq!(t.flash_attn, want, "{v}");
            assert!(t.flash_attn_field);
        }
        assert!(parse(r#"[{"n_prompt":1,"n_gen":0,"flash_attn":7}]"#).is_err());
    }

    #[test]
    fn file_type_labels_map_to_recipes() {
        let k = |r| LabelFormat::Known {
            recipe: r,
            approx: false,
        };
        assert_eq!(label_format("qwen2 7B Q4_K - Medium"), k(Recipe::Q4KM));
        assert_eq!(
            label_format("llama 7B mostly Q4_0"),
            k(Recipe::Uniform(WeightFormat::Q4_0))
        );
        assert_eq!(
            label_format("llama 1B F16"),
            k(Recipe::Uniform(WeightFormat::F16))
        );
        assert_eq!(
            label_format("llama 1B all F32"),
            k(Recipe::Uniform(WeightFormat::F32))
        );
        assert_eq!(
            label_format("qwen2 1B Q8_0"),
            k(Recipe::Uniform(WeightFormat::Q8_0))
        );
        assert_eq!(
            label_format("llama ?B Q5_K - Medium (guessed)"),
            k(Recipe::Q5KM)
        );
        assert!(matches!(
            label_format("llama 8B Q4_K - Small"),
            LabelFormat::Known { approx: true, .. }
        ));
        assert_eq!(
            label_format("llama 8B IQ2_XS - 2.3125 bpw"),
            LabelFormat::Unsupported("IQ2_XS - 2.3125 bpw".into())
        );
        assert_eq!(label_format("llama 8B"), LabelFormat::Missing);
    }

    #[test]
    fn model_is_identified_by_architecture_and_parameter_count() {
        let id = identify(&pp()).unwrap();
        assert_eq!(id.spec.name, "qwen2.5-0.5b");
        // Cut to 12 layers (the paper's depth sweep files).
        let cut = zoo::lookup("qwen2.5-1.5b")
            .unwrap()
            .spec()
            .unwrap()
            .0
            .with_layers(12)
            .unwrap();
        let mut t = pp();
        t.model_type = Some("qwen2 ?B F16".into());
        t.model_n_params = Some(count_params(&cut).unwrap().total);
        t.model_filename = Some("Qwen2.5-1.5B-Instruct-12-layers-f16.gguf".into());
        let id = identify(&t).unwrap();
        assert_eq!(id.spec.num_hidden_layers, 12);
        assert!(id.how.contains("cut to 12 layers"), "{}", id.how);
        // Unknown size: an error asking for --model, never a silent guess.
        t.model_n_params = Some(123);
        let e = identify(&t).unwrap_err().to_string();
        assert!(e.contains("--model"), "{e}");
        t.model_type = Some("mamba 1B F16".into());
        assert!(identify(&t).unwrap_err().to_string().contains("--model"));
    }

    #[test]
    fn identical_instruct_and_base_configs_are_not_ambiguous() {
        // llama-3.1-8b and llama-3.1-8b-instruct have identical shapes: either is right.
        let s = zoo::lookup("llama-3.1-8b").unwrap().spec().unwrap().0;
        let t = LbTest {
            model_type: Some("llama 8B Q4_K - Medium".into()),
            model_n_params: Some(count_params(&s).unwrap().total),
            ..LbTest::default()
        };
        let id = identify(&t).unwrap();
        assert!(id.spec.name.starts_with("llama-3.1-8b"));
    }

    #[test]
    fn model_size_cross_check_is_close_for_q8_0() {
        // Qwen2.5-0.5B in Q8_0: every matrix Q8_0 (8.5 bits) plus f32 norms: ~525 MB.
        let s = zoo::lookup("qwen2.5-0.5b").unwrap().spec().unwrap().0;
        let b = model_weight_bytes(&s, Recipe::Uniform(WeightFormat::Q8_0)).unwrap();
        let expect = 494_032_768f64 * 34.0 / 32.0;
        assert!((b as f64 / expect - 1.0).abs() < 0.02, "{b} vs {expect}");
    }

    fn model_and_opts() -> (ModelSpec, CostOptions) {
        let s = zoo::lookup("smollm2-135m").unwrap().spec().unwrap().0;
        (s, CostOptions::default())
    }

    #[test]
    fn pitfall_15_tg_is_costed_at_every_step_from_its_depth() {
        let (s, o) = model_and_opts();
        let m = CostModel::new(&s, &o).unwrap();
        let mut t = LbTest {
            n_gen: 4,
            n_depth: Some(100),
            ..LbTest::default()
        };
        let w = test_work(&m, &t, &[]).unwrap();
        let mut f = 0;
        for c in 101..=104 {
            f += m.totals(Phase::Decode { context: c }).unwrap().flops.0;
        }
        assert_eq!(w.flops.0, f);
        assert_eq!(w.passes, 4);
        // Without n_depth (old llama-bench) the steps start from an empty cache.
        t.n_depth = None;
        let w0 = test_work(&m, &t, &[]).unwrap();
        assert!(w0.flops < w.flops);
        let p = test_point(&t, &w0);
        assert!(p.is_err(), "no timing fields: an error, not a panic");
    }

    #[test]
    fn prefill_is_costed_per_micro_batch_with_one_lm_head_per_call() {
        let (s, o) = model_and_opts();
        let m = CostModel::new(&s, &o).unwrap();
        let one = LbTest {
            n_prompt: 512,
            n_batch: Some(512),
            n_ubatch: Some(512),
            ..LbTest::default()
        };
        let whole = m
            .totals(Phase::Prefill {
                tokens: 512,
                cached: 0,
            })
            .unwrap();
        let w = test_work(&m, &one, &[]).unwrap();
        assert_eq!((w.flops, w.passes), (whole.flops, 1));
        assert_eq!(w.bytes, whole.bytes());
        // Four micro-batches in one call: weights read four times, the LM head run once.
        let split = LbTest {
            n_ubatch: Some(128),
            ..one.clone()
        };
        let w4 = test_work(&m, &split, &[]).unwrap();
        assert_eq!(w4.passes, 4);
        assert!(
            w4.bytes.0 > 3 * whole.weight_bytes.0,
            "weights re-read per micro-batch"
        );
        // Causal attention: the same query-key pairs in either split, so FLOPs differ only by
        // nothing at all (the LM head runs once either way).
        assert_eq!(w4.flops, w.flops);
    }

    #[test]
    fn points_carry_the_test_geometry() {
        let (s, o) = model_and_opts();
        let m = CostModel::new(&s, &o).unwrap();
        let t = pp();
        let w = test_work(&m, &t, &[]).unwrap();
        let p = test_point(&t, &w).unwrap();
        assert_eq!((p.phase.as_str(), p.context, p.tokens), ("prefill", 0, 512));
        assert_eq!(p.label, "#1 pp512");
        assert_eq!(p.threads, 2);
        assert_eq!(p.compute, Precision::F16);
        let mut tg = t.clone();
        (tg.n_prompt, tg.n_gen, tg.n_depth) = (0, 128, Some(4096));
        let p = test_point(&tg, &test_work(&m, &tg, &[]).unwrap()).unwrap();
        assert_eq!(
            (p.phase.as_str(), p.context, p.tokens),
            ("decode", 4097, 128)
        );
        assert_eq!(p.label, "#1 tg128 @ d4096");
    }
}
