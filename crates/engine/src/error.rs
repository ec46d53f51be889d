//! The engine's error type: one structured variant per way a model, a weight file or a run
//! request can be unusable. Every variant names its culprit (tensor, file, option) so the binary
//! prints one line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model uses something this engine does not execute (yet).
    #[error("the engine cannot run this model: {feature} is not supported{hint}")]
    Unsupported { feature: String, hint: &'static str },

    /// A config field the engine needs (beyond the analytic spec) is malformed.
    #[error("config field `{field}`: {reason}")]
    Config { field: String, reason: String },

    /// The model spec itself is invalid or a cost query failed.
    #[error(transparent)]
    Model(#[from] rooflinebench_model::error::ModelError),

    /// A bad run option (zero threads, zero repetitions, a prompt beyond the context...).
    #[error("{option} = {value}: {reason}")]
    BadOption {
        option: &'static str,
        value: String,
        reason: String,
    },

    /// Not enough memory: refused before allocating anything big.
    #[error(
        "the model needs {need_gib:.2} GiB ({detail}) but only {avail_gib:.2} GiB of memory is \
         available: use a smaller model, a 16-bit --weights format, or a shorter --prompt/--depth"
    )]
    OutOfMemory {
        need_gib: f64,
        avail_gib: f64,
        detail: String,
    },

    /// An I/O failure on a weight file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A safetensors file whose header cannot be read (truncated, malformed).
    #[error("{}: not a readable safetensors file: {reason}", path.display())]
    BadSafetensors { path: PathBuf, reason: String },

    /// A tensor the model needs is absent from every weight file.
    #[error("{}: missing tensor `{tensor}`", path.display())]
    MissingTensor { path: PathBuf, tensor: String },

    /// A tensor with the wrong shape.
    #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", path.display())]
    TensorShape {
        path: PathBuf,
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },

    /// A tensor stored in a dtype the engine does not read.
    #[error("{}: tensor `{tensor}` has dtype {found}, expected F32, F16 or BF16", path.display())]
    TensorDtype {
        path: PathBuf,
        tensor: String,
        found: String,
    },

    /// A GGUF file that cannot be read (its error names the file and the field).
    #[error(transparent)]
    Gguf(#[from] rooflinebench_gguf::GgufError),

    /// A tensor stored in a format the engine has no kernel for.
    #[error(
        "{}: tensor `{tensor}` is stored as {found}, which the engine cannot run (it runs f32, \
         f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k and q6_k)", path.display()
    )]
    TensorFormat {
        path: PathBuf,
        tensor: String,
        found: String,
    },

    /// A token id beyond the vocabulary.
    #[error("token id {token} is outside the vocabulary (vocab_size {vocab})")]
    BadToken { token: u32, vocab: u64 },

    /// The KV cache is full.
    #[error("the KV cache holds {capacity} positions; {needed} were needed")]
    CacheFull { capacity: usize, needed: usize },

    /// Timing statistics could not be formed (e.g. a zero-duration sample).
    #[error("timing: {0}")]
    Timing(#[from] rooflinebench_model::measure::SampleError),

    /// The ISA override is invalid.
    #[error(transparent)]
    Isa(#[from] rooflinebench_kernels::isa::IsaError),
}

impl EngineError {
    pub(crate) fn bad_option(
        option: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> EngineError {
        EngineError::BadOption {
            option,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(feature: impl Into<String>) -> EngineError {
        EngineError::Unsupported {
            feature: feature.into(),
            hint: " (llama/mistral/qwen2/qwen3/gemma/gemma2/gemma3/phi3/gpt_neox decoders are, \
                   and MLA (deepseek_v2/v3) and gated mixture-of-experts (qwen3_moe, deepseek) \
                   layers)",
        }
    }
}
