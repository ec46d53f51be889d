//! The instrumented CPU inference engine: runs dense decoder models operator by operator and
//! times each operator under the cost model's [`OpId`](rooflinebench_model::op::OpId), so every
//! measured time sits next to its predicted one.
//!
//! What it is: batch-1 inference of llama / mistral / qwen2 / qwen3 / gemma / gemma2 / gemma3 /
//! phi3 / gpt_neox-style models (RMSNorm or LayerNorm, RoPE with llama3/linear scaling and
//! partial rotary, q/k norm, qkv and MLP biases, SwiGLU / GeGLU / GELU, tied embeddings, parallel
//! residual, sandwich norms, soft-caps, sliding windows, MHA/GQA/MQA) with f32, f16 or bf16
//! weights (random from a seed, or from safetensors) and an f32 KV cache, on an explicit number
//! of threads. [`bench::run_bench`] measures prefill and decode at a real depth.
//!
//! MLA (DeepSeek-V2/V3, PLM; absorbed or materialized, [`mla`]) and MoE ([`moe`]) models run
//! with random weights, from GGUF files (qwen3moe, deepseek2: [`gguf_source`]) or from
//! safetensors checkpoints (DeepSeek, Qwen2/3-MoE and Mixtral names: [`weights`]).
//!
//! Quantized weights: llama.cpp block formats (q8_0 ... q6_K) from a GGUF file
//! ([`gguf_source`]) or random weights quantized into real blocks, multiplied against
//! activations quantized to 8 bits ([`weights::matmul`]).
//!
//! What it is not: a serving engine (no sampling loop, no tokenizer, no batching). The numerics live in
//! `rooflinebench-kernels`; this crate is model logic, weights, timing and statistics.

pub mod arch;
pub mod bench;
pub mod error;
pub mod gguf_source;
pub mod hugebuf;
pub mod kv;
pub mod mem;
pub mod mla;
pub mod model;
pub mod moe;
pub mod recorder;
pub mod rope;
pub mod weights;

pub use arch::ModelDef;
pub use error::EngineError;
pub use kv::KvCache;
pub use model::{Logits, Model};
pub use recorder::{NoopRecorder, Recorder, TimingRecorder};

use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_kernels::isa::Isa;
use std::path::PathBuf;

/// Where the weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsFrom {
    /// Random weights from this seed (deterministic for any thread count).
    Random { seed: u64 },
    /// A `.safetensors` file, a `model.safetensors.index.json`, or a folder holding either.
    Safetensors(PathBuf),
    /// A GGUF file: every tensor runs in its stored format (quantized blocks stay quantized,
    /// F32/F16/BF16 stay dense).
    Gguf(PathBuf),
    /// Random weights from this seed, the matrices quantized into real blocks of `quant`
    /// (written before anything is timed).
    RandomQuant {
        seed: u64,
        quant: rooflinebench_kernels::quant::QuantType,
    },
}

/// How to build a [`Model`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Weight dtype; `None`: the checkpoint's own (f32 for random weights).
    pub dtype: Option<WeightDtype>,
    pub threads: usize,
    /// Kernel ISA; `None`: the best this CPU has (or `ROOFLINEBENCH_FORCE_ISA`).
    pub isa: Option<Isa>,
    /// Positions the KV cache and RoPE tables must hold.
    pub positions: usize,
    /// Most tokens one forward pass will process (sizes the activation buffers).
    pub max_tokens: usize,
}

/// Parses a weight dtype name.
pub fn parse_dtype(s: &str) -> Option<WeightDtype> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Some(WeightDtype::F32),
        "f16" | "float16" | "fp16" => Some(WeightDtype::F16),
        "bf16" | "bfloat16" => Some(WeightDtype::Bf16),
        _ => None,
    }
}

/// Checks the run fits in memory, then builds the model (weights written, buffers allocated
/// and written) and a KV cache of `opts.positions` positions.
pub fn load(
    def: &ModelDef,
    from: &WeightsFrom,
    opts: &LoadOptions,
) -> Result<(Model, KvCache), EngineError> {
    if opts.threads == 0 {
        return Err(EngineError::bad_option("threads", 0, "must be at least 1"));
    }
    let isa = match opts.isa {
        Some(i) => i,
        None => rooflinebench_kernels::isa::best()?,
    };
    let max_pos = def.spec.max_position_embeddings as usize;
    if max_pos > 0 && opts.positions > max_pos {
        return Err(EngineError::bad_option(
            "context",
            opts.positions,
            format!(
                "longer than the model's maximum context (max_position_embeddings = {max_pos})"
            ),
        ));
    }
    let mut st = match from {
        WeightsFrom::Safetensors(p) => Some(weights::SafetensorsSource::open(p, def)?),
        WeightsFrom::Random { .. } | WeightsFrom::Gguf(_) | WeightsFrom::RandomQuant { .. } => None,
    };
    let mut gg = match from {
        WeightsFrom::Gguf(p) => Some(gguf_source::GgufSource::open(p, def)?),
        _ => None,
    };
    let dtype = opts
        .dtype
        .or_else(|| st.as_ref().and_then(|s| s.stored_dtype()))
        .unwrap_or(WeightDtype::F32);
    let wbytes = match (&gg, from) {
        (Some(g), _) => g.tensor_bytes(),
        // Quantized: at most ~1.06 bytes per weight, plus one f32 tensor while quantizing.
        (None, WeightsFrom::RandomQuant { .. }) => {
            weights::weight_bytes(&def.spec, WeightDtype::F16)?
        }
        _ => weights::weight_bytes(&def.spec, dtype)?,
    };
    let kv = KvCache::bytes_for_form(&def.spec, opts.positions, def.arch.mla_form)
        .ok_or_else(|| EngineError::bad_option("context", opts.positions, "too large"))?;
    let act =
        model::scratch_elems(def, opts.max_tokens, opts.positions, Logits::Last).saturating_mul(4);
    mem::check_fits(
        &[("weights", wbytes), ("KV cache", kv), ("activations", act)],
        mem::available_bytes(),
    )?;
    let w = match (st.as_mut(), gg.as_mut(), from) {
        (Some(src), _, _) => weights::build(def, dtype, src)?,
        (None, Some(src), _) => weights::build(def, WeightDtype::F32, src)?,
        (None, None, _) => {
            let (seed, quant) = match from {
                WeightsFrom::Random { seed } => (*seed, None),
                WeightsFrom::RandomQuant { seed, quant } => (*seed, Some(*quant)),
                WeightsFrom::Safetensors(_) | WeightsFrom::Gguf(_) => (0, None),
            };
            let mut src = weights::RandomSource {
                seed,
                threads: opts.threads,
                norm_offset: def.arch.norm_weight_offset,
                quant,
            };
            weights::build(def, dtype, &mut src)?
        }
    };
    let mut m = Model::new(def.clone(), w, opts.threads, isa, opts.positions)?;
    m.prepare(opts.max_tokens.max(1), opts.positions, Logits::Last);
    let cache = m.new_cache(opts.positions)?;
    Ok((m, cache))
}
