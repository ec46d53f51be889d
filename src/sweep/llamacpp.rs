//! Measuring a sweep point with llama.cpp (cargo feature `llamacpp`, crate `llama-cpp-2`).
//!
//! llama.cpp needs a GGUF: one is written from the point's config (with its layer count) by
//! `rooflinebench_gguf::writer::write_synthetic`, with seeded random weights in the real block
//! layouts of the point's weight format, and cached under `<out>/cache/`. Then, as llama-bench
//! does but with the depth done right (PITFALLS.md #15): the prefill of the scenario's prompt
//! is timed per repetition from an empty cache (one `llama_decode` call, micro-batches of at
//! most 512); decode runs `gen_steps` single-token steps after an untimed prefill to the
//! prompt's depth, the cache rewound to that depth before each repetition. Warm-up repetitions
//! are discarded; every sample is kept. Work comes from the cost model exactly as for imported
//! llama-bench tests ([`crate::import::llama_bench::test_work`]): micro-batched prefill, each
//! decode step at its own context.
//!
//! Per-node timings ([`profile_nodes`], `sweep --nodes`) go through ggml's graph-evaluation
//! callback, which `llama-cpp-2` does not expose: the context is created with the raw C API in
//! [`super::llamacpp_ffi`] (the binary's only `unsafe`), and the nodes are mapped onto our
//! operator ids by [`super::llamacpp_nodes`]. Results carry llama.cpp's build info
//! ([`engine_name`], [`NodeProfile::llama_cpp`]).
//!
//! Not here: GPU offload; a real (non-synthetic) GGUF in sweeps.

use super::llamacpp_ffi::{
    build_info, BuildInfo, Context as RawContext, ContextSettings, Model as RawModel, NodeSample,
};
use super::llamacpp_nodes::{phase_nodes, PhaseNodes, PhaseRun, TimedNode};
use super::plan::{MeasureSettings, PointPlan};
use super::Measured;
use crate::import::llama_bench::{test_point, test_work, LbTest};
use anyhow::{anyhow, bail, Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use rooflinebench_model::cost::{CostModel, CostOptions, Phase};
use rooflinebench_model::measure::SampleSummary;
use rooflinebench_model::spec::ModelSpec;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// The version of the bindings (and of the llama.cpp they vendor).
const BINDINGS: &str = "llama-cpp-2 0.1.160";
/// Largest micro-batch (llama.cpp's default `n_ubatch`).
const UBATCH: u32 = 512;

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    // One initialisation at a time: a second concurrent `LlamaBackend::init` fails.
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let mut b = LlamaBackend::init().map_err(|e| anyhow!("cannot start llama.cpp: {e}"))?;
    b.void_logs();
    Ok(BACKEND.get_or_init(|| b))
}

/// The synthetic GGUF of a point (written once, atomically, then reused).
fn gguf_for(p: &PointPlan, cache: &Path) -> Result<PathBuf> {
    let cfg_text = p
        .config_json
        .as_deref()
        .context("llama.cpp needs a config.json to write the GGUF from")?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(cfg_text).context("the model's config.json")?;
    // Depth variants: the config's layer count is the spec's (in text_config when nested).
    let target = match cfg.get_mut("text_config") {
        Some(t) if t.get("num_hidden_layers").is_some() => t,
        _ => &mut cfg,
    };
    if let Some(o) = target.as_object_mut() {
        o.insert(
            "num_hidden_layers".into(),
            serde_json::Value::from(p.spec.num_hidden_layers),
        );
    }
    let arch = rooflinebench_gguf::arch::ArchConfig::from_hf(&cfg)
        .with_context(|| format!("writing a GGUF for {}", p.spec.name))?;
    let fmt = rooflinebench_gguf::writer::WeightFormat::parse(&p.opts.weights.name())
        .with_context(|| format!("the GGUF writer has no {} format", p.opts.weights.name()))?;
    let name = super::plan::slug(&p.spec.name);
    let layers = format!("-{}l", p.spec.num_hidden_layers);
    let path = cache.join(format!(
        "{name}{}-{}.gguf",
        if name.ends_with(&layers) { "" } else { &layers },
        p.opts.weights.name()
    ));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let tmp = path.with_extension(format!("gguf.tmp{}", std::process::id()));
    let written = (|| -> Result<()> {
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        rooflinebench_gguf::writer::write_synthetic(&arch, fmt, 0, &mut w)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::flush(&mut w)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn tokens(n: usize, vocab: u64, seed: u64) -> Vec<LlamaToken> {
    let mut r = rooflinebench_kernels::xorshift::XorShift64::new(seed);
    // `vocab` is bounded by the spec (2^24): fits in i32.
    (0..n)
        .map(|_| LlamaToken((r.next_u64() % vocab.max(1)) as i32))
        .collect()
}

fn secs(samples: Vec<f64>) -> Result<SampleSummary> {
    Ok(SampleSummary::from_samples(
        samples.into_iter().map(|s| s.max(1e-9)).collect(),
    )?)
}

/// Why this build's llama.cpp is slower than it could be on this CPU, if it is: llama-cpp-sys-2
/// compiles llama.cpp for the Rust target's CPU features, so without `-C target-cpu=native`
/// it is built for baseline x86-64 (SSE2) and runs several times below its real speed.
pub fn build_warning() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        if !cfg!(target_feature = "avx2") && std::arch::is_x86_feature_detected!("avx2") {
            return Some(
                "llama.cpp in this build was compiled without AVX2 (no -C target-cpu=native): \
                 its timings are far below what llama.cpp does on this CPU. Rebuild with \
                 RUSTFLAGS=\"-C target-cpu=native\" cargo build --release --features llamacpp"
                    .to_string(),
            );
        }
    }
    None
}

/// Measures `p` with llama.cpp.
pub fn measure_llamacpp(p: &PointPlan, m: &MeasureSettings, cache: &Path) -> Result<Measured> {
    let path = gguf_for(p, cache)?;
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
        .map_err(|e| anyhow!("llama.cpp cannot load {}: {e}", path.display()))?;
    let prompt = usize::try_from(p.scenario.prompt).context("prompt too long")?;
    let gen = usize::try_from(p.scenario.generate.min(m.gen_steps).max(1))?;
    let threads = i32::try_from(m.threads).context("too many threads")?;
    let n_ctx = u32::try_from(prompt + gen + 8).context("context too long")?;
    let n_batch = u32::try_from(prompt.max(1)).context("prompt too long")?;
    let n_ubatch = n_batch.min(UBATCH);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_ubatch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| anyhow!("llama.cpp cannot create a context of {n_ctx} tokens: {e}"))?;
    let toks = tokens(prompt + gen, p.spec.vocab_size, 1);
    let pos = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);

    // Prefill from an empty cache, one llama_decode call (llama.cpp splits it in micro-batches).
    let mut prefill = Vec::new();
    for rep in 0..(m.warmup + m.reps) {
        ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(prompt.max(1), 1);
        for (i, t) in toks[..prompt].iter().enumerate() {
            batch.add(*t, pos(i), &[0], i + 1 == prompt)?;
        }
        let t0 = Instant::now();
        ctx.decode(&mut batch)
            .map_err(|e| anyhow!("llama.cpp prefill failed: {e}"))?;
        ctx.synchronize();
        if rep >= m.warmup {
            prefill.push(t0.elapsed().as_secs_f64());
        }
    }
    // Decode after a real prefill to the prompt's depth; the cache rewound before each rep.
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(prompt.max(1), 1);
    for (i, t) in toks[..prompt].iter().enumerate() {
        batch.add(*t, pos(i), &[0], i + 1 == prompt)?;
    }
    ctx.decode(&mut batch)
        .map_err(|e| anyhow!("llama.cpp prefill to depth {prompt} failed: {e}"))?;
    let depth_u32 = u32::try_from(prompt).context("prompt too long")?;
    let mut decode = Vec::new();
    for rep in 0..(m.warmup + m.reps) {
        if !ctx.clear_kv_cache_seq(Some(0), Some(depth_u32), None)? {
            bail!("llama.cpp could not rewind its KV cache to depth {prompt}");
        }
        let t0 = Instant::now();
        for j in 0..gen {
            let mut b = LlamaBatch::new(1, 1);
            b.add(toks[prompt + j], pos(prompt + j), &[0], true)?;
            ctx.decode(&mut b)
                .map_err(|e| anyhow!("llama.cpp decode step failed: {e}"))?;
        }
        ctx.synchronize();
        if rep >= m.warmup {
            decode.push(t0.elapsed().as_secs_f64());
        }
    }

    // Work from the cost model, as for an imported llama-bench test.
    let opts = CostOptions {
        flash_attention: true, // llama.cpp's default policy (auto) enables it on the CPU
        activation_bytes: 4,
        ..p.opts
    };
    let cm = CostModel::new(&p.spec, &opts)?;
    let engine = engine_name();
    let to_ns = |v: &[f64]| v.iter().map(|s| (s * 1e9).max(1.0)).collect::<Vec<f64>>();
    let pp = LbTest {
        record: 1,
        n_prompt: p.scenario.prompt,
        n_depth: Some(0),
        n_batch: Some(u64::from(n_batch)),
        n_ubatch: Some(u64::from(n_ubatch)),
        n_threads: Some(m.threads as u64),
        samples_ns: Some(to_ns(&prefill)),
        ..LbTest::default()
    };
    let tg = LbTest {
        record: 2,
        n_gen: gen as u64,
        n_depth: Some(p.scenario.prompt),
        n_threads: Some(m.threads as u64),
        samples_ns: Some(to_ns(&decode)),
        ..LbTest::default()
    };
    let mut points = Vec::new();
    for t in [&pp, &tg] {
        let mut pt = test_point(t, &test_work(&cm, t, &[])?)?;
        pt.engine = engine.clone();
        pt.label = match t.n_gen {
            0 => format!("prefill {}", t.n_prompt),
            g => format!("decode@{} x{g}", t.n_depth.unwrap_or(0)),
        };
        points.push(pt);
    }
    Ok(Measured {
        engine,
        threads: u32::try_from(m.threads).unwrap_or(u32::MAX),
        prefill_seconds: Some(secs(prefill)?),
        decode_depth: p.scenario.prompt,
        decode_steps: gen as u64,
        decode_seconds: Some(secs(decode)?),
        points,
    })
}

/// Per-node timing settings.
#[derive(Clone, Copy, Debug)]
pub struct NodeRun {
    /// Prompt tokens (also the depth decode runs at).
    pub prompt: usize,
    /// Decode steps per repetition (0: no decode phase).
    pub gen: usize,
    pub reps: usize,
    pub warmup: usize,
    pub threads: usize,
}

/// Everything one per-node run measured.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeProfile {
    pub kind: String,
    pub schema_version: u32,
    pub model: String,
    pub gguf: String,
    /// The llama.cpp that ran (bindings, ggml version and commit, CPU features).
    pub llama_cpp: BuildInfo,
    pub threads: u32,
    pub reps: u64,
    pub warmup: u64,
    pub phases: Vec<PhaseNodes>,
    pub notes: Vec<String>,
}

/// The `kind` of a node-profile JSON file.
pub const NODE_PROFILE_KIND: &str = "rooflinebench-llamacpp-nodes";

/// The engine string of results: bindings, ggml version and commit.
pub fn engine_name() -> String {
    let b = build_info(BINDINGS);
    format!(
        "llama.cpp ({}, ggml {} commit {}) CPU",
        b.bindings, b.ggml_version, b.ggml_commit
    )
}

fn llama_tokens(n: usize, vocab: u32) -> Vec<i32> {
    tokens(n, u64::from(vocab), 1).iter().map(|t| t.0).collect()
}

/// Times every graph node of a prefill of `run.prompt` tokens and of `run.gen` decode steps
/// at that depth, through ggml's evaluation callback, each repetition also run on a context
/// without the callback to measure what the callback costs. Work per operator kind comes from
/// `spec` with `opts` (flash attention on: llama.cpp's default on the CPU).
pub fn profile_nodes(
    gguf: &Path,
    spec: &ModelSpec,
    opts: &CostOptions,
    run: &NodeRun,
) -> Result<NodeProfile> {
    if run.reps == 0 || run.prompt == 0 {
        bail!("per-node timing needs at least one repetition and one prompt token");
    }
    backend()?;
    let model = RawModel::load(gguf)?;
    let vocab = model.n_vocab().max(1);
    let threads = i32::try_from(run.threads).context("too many threads")?;
    let n_batch = u32::try_from(run.prompt).context("prompt too long")?;
    let n_ubatch = n_batch.min(UBATCH);
    let n_ctx = u32::try_from(run.prompt + run.gen + 8).context("context too long")?;
    let settings = |profile| ContextSettings {
        n_ctx,
        n_batch,
        n_ubatch,
        threads,
        profile,
    };
    let mut plain = RawContext::new(&model, settings(false))?;
    let mut prof = RawContext::new(&model, settings(true))?;
    let toks = llama_tokens(run.prompt + run.gen, vocab);
    let cost_opts = CostOptions {
        flash_attention: true,
        activation_bytes: 4,
        ..*opts
    };
    let cm = CostModel::new(spec, &cost_opts)?;
    let mut phases = Vec::new();

    // Prefill from an empty cache; plain and profiled interleaved so noise hits both alike.
    let mut pre = PhaseRun {
        phase: "prefill".into(),
        tokens: run.prompt as u64,
        ..PhaseRun::default()
    };
    for rep in 0..(run.warmup + run.reps) {
        plain.clear();
        let t0 = Instant::now();
        plain.decode(&toks[..run.prompt])?;
        let a = t0.elapsed().as_secs_f64();
        prof.clear();
        prof.record(true);
        let t0 = Instant::now();
        prof.decode(&toks[..run.prompt])?;
        let b = t0.elapsed().as_secs_f64();
        prof.record(false);
        let nodes = prof.take_nodes();
        let g = prof.take_span();
        if rep >= run.warmup {
            pre.plain.push(a);
            pre.profiled.push(b);
            pre.graph.push(g);
            pre.reps.push(timed(nodes));
        }
    }
    let mut passes = Vec::new();
    let mut done = 0u64;
    let prompt = run.prompt as u64;
    while done < prompt {
        let u = (prompt - done).min(u64::from(n_ubatch));
        passes.push(Phase::Prefill {
            tokens: u,
            cached: done,
        });
        done += u;
    }
    phases.push(phase_nodes(pre, &cm, &passes)?);

    if run.gen > 0 {
        for c in [&mut plain, &mut prof] {
            c.clear();
            c.decode(&toks[..run.prompt])?;
        }
        let depth = u32::try_from(run.prompt).context("prompt too long")?;
        let mut dec = PhaseRun {
            phase: "decode".into(),
            tokens: run.gen as u64,
            depth: prompt,
            ..PhaseRun::default()
        };
        for rep in 0..(run.warmup + run.reps) {
            plain.truncate(depth)?;
            let t0 = Instant::now();
            for j in 0..run.gen {
                plain.decode(&toks[run.prompt + j..run.prompt + j + 1])?;
            }
            let a = t0.elapsed().as_secs_f64();
            prof.truncate(depth)?;
            prof.record(true);
            let t0 = Instant::now();
            let mut g = 0.0;
            for j in 0..run.gen {
                prof.decode(&toks[run.prompt + j..run.prompt + j + 1])?;
                g += prof.take_span();
            }
            let b = t0.elapsed().as_secs_f64();
            prof.record(false);
            let nodes = prof.take_nodes();
            if rep >= run.warmup {
                dec.plain.push(a);
                dec.profiled.push(b);
                dec.graph.push(g);
                dec.reps.push(timed(nodes));
            }
        }
        let passes: Vec<Phase> = (1..=run.gen as u64)
            .map(|j| Phase::Decode {
                context: prompt + j,
            })
            .collect();
        phases.push(phase_nodes(dec, &cm, &passes)?);
    }
    let mut notes = vec![
        "per-node times include one thread-pool dispatch and synchronisation per node (ggml \
         computes one node per call when a callback asks for every node): compare kinds with \
         each other, and read whole-phase speed from the plain timings"
            .to_string(),
        "llama.cpp computes the last layer's FFN (and the LM head) for the output token only; \
         the cost model charges the last layer for every prompt token"
            .to_string(),
    ];
    notes.extend(build_warning());
    Ok(NodeProfile {
        kind: NODE_PROFILE_KIND.to_string(),
        schema_version: 1,
        model: spec.name.clone(),
        gguf: gguf.display().to_string(),
        llama_cpp: build_info(BINDINGS),
        threads: u32::try_from(run.threads).unwrap_or(u32::MAX),
        reps: run.reps as u64,
        warmup: run.warmup as u64,
        phases,
        notes,
    })
}

fn timed(nodes: Vec<NodeSample>) -> Vec<TimedNode> {
    nodes
        .into_iter()
        .map(|n| TimedNode {
            name: n.name,
            op: n.op,
            seconds: n.seconds,
        })
        .collect()
}

/// Per-node timing of a sweep point on its synthetic GGUF.
pub fn profile_point(p: &PointPlan, m: &MeasureSettings, cache: &Path) -> Result<NodeProfile> {
    let path = gguf_for(p, cache)?;
    let prompt = usize::try_from(p.scenario.prompt).context("prompt too long")?;
    let gen = usize::try_from(p.scenario.generate.min(m.gen_steps).max(1))?;
    profile_nodes(
        &path,
        &p.spec,
        &p.opts,
        &NodeRun {
            prompt,
            gen,
            reps: m.reps,
            warmup: m.warmup,
            threads: m.threads,
        },
    )
}
