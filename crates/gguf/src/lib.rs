//! GGUF, the file format llama.cpp users hold their models in: reader, writer, architecture
//! mapping and tokenizer.
//!
//! - [`Gguf::parse`] reads a v2/v3 header (every metadata value type, tensor infos, alignment,
//!   data offset) from bytes, refusing hostile input with one error naming the field;
//!   [`GgufFile::open`] memory-maps a file and adds its path to errors.
//! - [`arch::hf_config`] turns llama.cpp's `<arch>.*` hyperparameters into a Hugging Face style
//!   `config.json` object, so the analytic model parses a GGUF like any config;
//!   [`summary::Summary`] counts tensors and bytes per real ggml type (a "Q4_K_M" or "Q4_1"
//!   file mixes several: pitfall 24).
//! - [`writer`] writes GGUF files, including synthetic models with random weights quantized
//!   into the real block layouts and a minimal vocabulary, named and shaped as llama.cpp loads
//!   them.
//! - [`model::model_spec`] builds the analytic model's `ModelSpec` from the header, and
//!   [`model::FileFormats`] gives the real format of every matrix by role and layer.
//! - [`tokenizer::Tokenizer`] is the GPT-2 byte-level BPE stored in `tokenizer.ggml.*`.
//!
//! Not here: executing the model (the engine crate) or dequantization kernels (the kernels
//! crate's `quant` module, which this crate's writer uses to quantize).
//! Reference: ggml's docs/gguf.md (format), llama.cpp's llama-arch.cpp (key and tensor names).

pub mod arch;
pub mod model;
pub mod reader;
pub mod summary;
pub mod tokenizer;
pub mod types;
pub mod writer;

pub use reader::{Gguf, TensorInfo};
pub use types::{Array, GgmlType, Value, ValueType};

use std::path::{Path, PathBuf};

/// Everything that can be wrong with a GGUF file or its use.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: it starts with {found:?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {version} (this reader supports versions 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error(
        "{what}: needs {need} bytes at offset {offset}, but the file ends at {len} (truncated?)"
    )]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        len: u64,
    },
    #[error("{what}: count {count} cannot fit in the {remaining} bytes left in the file (truncated or corrupt?)")]
    CountTooLarge {
        what: String,
        count: u64,
        remaining: u64,
    },
    #[error("metadata key {key:?}: unknown value type {ty}")]
    UnknownValueType { key: String, ty: u32 },
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep { key: String, max: u32 },
    #[error("{what}: not valid UTF-8")]
    InvalidUtf8 { what: String },
    #[error("metadata key {key:?} appears twice")]
    DuplicateKey { key: String },
    #[error("general.alignment = {value}: must be a power of two")]
    BadAlignment { value: String },
    #[error("tensor {tensor:?}: unknown ggml type {ty}")]
    UnknownTensorType { tensor: String, ty: u32 },
    #[error("tensor {tensor:?}: {n_dims} dimensions (ggml allows at most 4)")]
    TooManyDims { tensor: String, n_dims: u32 },
    #[error("tensor {tensor:?}: bad shape {dims:?}: {reason}")]
    BadShape {
        tensor: String,
        dims: Vec<u64>,
        reason: &'static str,
    },
    #[error("tensor {tensor:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor {tensor:?}: {size} bytes at data offset {data_offset} + {offset} lie beyond the end of the file ({len} bytes)")]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        size: u64,
        data_offset: u64,
        len: u64,
    },
    #[error("tensor name {tensor:?} appears twice")]
    DuplicateTensor { tensor: String },
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("metadata key {key:?} = {value}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: &'static str,
    },
    #[error("architecture {arch:?} is not supported (known: {known})")]
    UnsupportedArchitecture { arch: String, known: &'static str },
    #[error("config field {field:?}: {reason}")]
    Config { field: String, reason: String },
    #[error("tensor {tensor:?}: {reason}")]
    Tensor { tensor: String, reason: String },
    #[error("model spec from GGUF metadata: {reason}")]
    Spec { reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{path}: {inner}")]
    InFile {
        path: PathBuf,
        inner: Box<GgufError>,
    },
    #[error("cannot read {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("cannot write GGUF: {0}")]
    Write(std::io::Error),
}

impl GgufError {
    /// Attaches the file path to an error (once).
    pub fn in_file(self, path: &Path) -> GgufError {
        match self {
            e @ (GgufError::InFile { .. } | GgufError::Io { .. }) => e,
            e => GgufError::InFile {
                path: path.to_path_buf(),
                inner: Box::new(e),
            },
        }
    }
}

/// A memory-mapped GGUF file with its parsed header.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: Gguf,
    map: memmap2::Mmap,
}

impl GgufFile {
    /// Maps and parses `path`. Errors name the file and the field.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |err| GgufError::Io {
            path: path.to_path_buf(),
            err,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped
        // would fault (SIGBUS), the usual caveat of memory-mapped model loaders.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let header = Gguf::parse(&map).map_err(|e| e.in_file(path))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            header,
            map,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The bytes of tensor `name`.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8]), GgufError> {
        let t = self.header.tensor(name).ok_or_else(|| {
            GgufError::Tensor {
                tensor: name.to_string(),
                reason: "not in the file".to_string(),
            }
            .in_file(&self.path)
        })?;
        let d = self
            .header
            .tensor_data(&self.map, t)
            .map_err(|e| e.in_file(&self.path))?;
        Ok((t, d))
    }
}
