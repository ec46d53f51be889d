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
//! Not here: per-node timings through ggml's graph-evaluation callback (`llama-cpp-2` does not
//! expose `cb_eval`; it would need `unsafe` FFI in the binary), GPU offload.

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
use rooflinebench_model::cost::{CostModel, CostOptions};
use rooflinebench_model::measure::SampleSummary;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// The version of the bindings (and of the llama.cpp they vendor).
const BINDINGS: &str = "llama-cpp-2 0.1.160";
/// Largest micro-batch (llama.cpp's default `n_ubatch`).
const UBATCH: u32 = 512;

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend> {
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
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // `vocab` is bounded by the spec (2^24): fits in i32.
            LlamaToken((s % vocab.max(1)) as i32)
        })
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
    let engine = format!("llama.cpp ({BINDINGS}) CPU");
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
