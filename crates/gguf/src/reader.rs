//! GGUF v2/v3 parser over a byte slice (usually a memory map).
//!
//! Layout (ggml docs/gguf.md): `"GGUF"`, `u32 version`, `u64 tensor_count`,
//! `u64 metadata_kv_count`, the key/value pairs (`string key`, `u32 type`, value), the tensor
//! infos (`string name`, `u32 n_dims`, `u64 ne[n_dims]`, `u32 type`, `u64 offset`), padding
//! to `general.alignment` (default 32), then the tensor data; every tensor offset is relative
//! to that data section and aligned. All integers little-endian. Version 1 (32-bit counts) is
//! not supported.
//!
//! Hostile input: every count and length is checked against the bytes that remain before
//! anything is allocated, shapes use checked arithmetic, and every tensor's bytes must lie
//! inside the file. Errors name the field or tensor; [`crate::GgufFile::open`] adds the path.

use crate::types::{Array, GgmlType, Value, ValueType};
use crate::GgufError;
use std::collections::HashMap;

/// GGUF files start with these four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Nesting limit for arrays of arrays (bounds recursion on hostile input).
const MAX_ARRAY_DEPTH: u32 = 4;

/// One tensor's description; its bytes are at `data_offset + offset` in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` (`ne[0]`) is the contiguous dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// A parsed GGUF header: metadata and tensor infos (the data stays in the caller's bytes).
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    /// Key/value pairs in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
    index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                need: n,
                len: self.buf.len() as u64,
            });
        }
        let n = n as usize; // <= remaining, which is a usize
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("{} (string length)", what()))?;
        let bytes = self.take(len, &|| format!("{} (string of {len} bytes)", what()))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what: what() })
    }

    /// Checks that `count` elements of at least `min_size` bytes each can still fit.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &dyn Fn() -> String,
    ) -> Result<usize, GgufError> {
        let need = count.checked_mul(min_size);
        match need {
            Some(n) if n <= self.remaining() => Ok(count as usize),
            _ => Err(GgufError::CountTooLarge {
                what: what(),
                count,
                remaining: self.remaining(),
            }),
        }
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: u32) -> Result<Value, GgufError> {
        let what = || format!("metadata key {key:?} value");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(&what)?[0] != 0),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => Value::Array(self.array_value(key, depth)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> Result<Array, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep {
                key: key.to_string(),
                max: MAX_ARRAY_DEPTH,
            });
        }
        let what = || format!("metadata key {key:?} array header");
        let tid = self.u32(&what)?;
        let ety = ValueType::from_id(tid).ok_or_else(|| GgufError::UnknownValueType {
            key: key.to_string(),
            ty: tid,
        })?;
        let count = self.u64(&what)?;
        let n = self.check_count(count, ety.min_size(), &|| {
            format!("metadata key {key:?} array of {}", ety.name())
        })?;
        macro_rules! prim {
            ($variant:ident, $t:ty) => {{
                let bytes = self.take((n * std::mem::size_of::<$t>()) as u64, &|| {
                    format!("metadata key {key:?} array data")
                })?;
                Array::$variant(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                )
            }};
        }
        Ok(match ety {
            ValueType::U8 => prim!(U8, u8),
            ValueType::I8 => prim!(I8, i8),
            ValueType::U16 => prim!(U16, u16),
            ValueType::I16 => prim!(I16, i16),
            ValueType::U32 => prim!(U32, u32),
            ValueType::I32 => prim!(I32, i32),
            ValueType::F32 => prim!(F32, f32),
            ValueType::U64 => prim!(U64, u64),
            ValueType::I64 => prim!(I64, i64),
            ValueType::F64 => prim!(F64, f64),
            ValueType::Bool => {
                let bytes = self.take(n as u64, &|| format!("metadata key {key:?} array data"))?;
                Array::Bool(bytes.iter().map(|&b| b != 0).collect())
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.string(&|| format!("metadata key {key:?} element {i}"))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

impl Gguf {
    /// Parses the header of a GGUF file held in `bytes` and validates every tensor's extent.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        let mut c = Cursor { buf: bytes, pos: 0 };
        let magic: [u8; 4] = c.array(&|| "magic".to_string())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32(&|| "version".to_string())?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let n_tensors = c.u64(&|| "tensor count".to_string())?;
        let n_kv = c.u64(&|| "metadata key/value count".to_string())?;
        // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info
        // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
        let n_kv = c.check_count(n_kv, 13, &|| "metadata key/value count".to_string())?;
        let mut metadata = Vec::with_capacity(n_kv);
        let mut index = HashMap::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata key #{i}"))?;
            let tid = c.u32(&|| format!("metadata key {key:?} type"))?;
            let ty = ValueType::from_id(tid).ok_or_else(|| GgufError::UnknownValueType {
                key: key.clone(),
                ty: tid,
            })?;
            let value = c.value(ty, &key, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey { key });
            }
            metadata.push((key, value));
        }
        let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => return Err(GgufError::BadAlignment { value: v.summary() }),
            },
        };
        let n_tensors = c.check_count(n_tensors, 24, &|| "tensor count".to_string())?;
        let mut tensors = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&|| format!("tensor info #{i} name"))?;
            let what = || format!("tensor {name:?} info");
            let n_dims = c.u32(&what)?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::TooManyDims {
                    tensor: name,
                    n_dims,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&what)?);
            }
            let tid = c.u32(&what)?;
            let ty = GgmlType::from_id(tid).ok_or_else(|| GgufError::UnknownTensorType {
                tensor: name.clone(),
                ty: tid,
            })?;
            let offset = c.u64(&what)?;
            let (n_elements, n_bytes) = tensor_size(&name, &dims, ty)?;
            if offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor {
                    tensor: name,
                    offset,
                    alignment,
                });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor { tensor: name });
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_elements,
                n_bytes,
            });
        }
        let file_len = bytes.len() as u64;
        let data_offset = align_up(c.pos as u64, alignment).ok_or(GgufError::BadAlignment {
            value: alignment.to_string(),
        })?;
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            if end.is_none_or(|e| e > file_len) {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    size: t.n_bytes,
                    data_offset,
                    len: file_len,
                });
            }
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_len,
            index,
            tensor_index,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of tensor `t` inside `file` (the bytes this header was parsed from).
    pub fn tensor_data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> Result<&'a [u8], GgufError> {
        let start = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| usize::try_from(s).ok());
        let end = start.and_then(|s| s.checked_add(usize::try_from(t.n_bytes).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= file.len() => Ok(&file[s..e]),
            _ => Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                offset: t.offset,
                size: t.n_bytes,
                data_offset: self.data_offset,
                len: file.len() as u64,
            }),
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "string", v))
    }

    /// A non-negative integer of any integer type.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| wrong_type(key, "non-negative integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| wrong_type(key, "number", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong_type(key, "array", v))
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }
}

fn wrong_type(key: &str, expected: &'static str, v: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: v.value_type().name(),
    }
}

pub(crate) fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? / a * a)
}

/// Elements and bytes of a tensor, with checked arithmetic (ggml stores dims as `int64`).
pub(crate) fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<(u64, u64), GgufError> {
    let bad = |reason: &'static str| GgufError::BadShape {
        tensor: name.to_string(),
        dims: dims.to_vec(),
        reason,
    };
    let mut n: u64 = 1;
    for &d in dims {
        if d > i64::MAX as u64 {
            return Err(bad("a dimension exceeds i64::MAX"));
        }
        n = n
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad("element count overflows"))?;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ty.block_elems() != 0 {
        return Err(bad("ne[0] is not a multiple of the type's block size"));
    }
    let bytes = (n / ty.block_elems())
        .checked_mul(ty.block_bytes())
        .ok_or_else(|| bad("byte size overflows"))?;
    Ok((n, bytes))
}
