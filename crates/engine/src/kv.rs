//! The KV cache: per layer, keys and values in f32, laid out `[kv_head][position][head_dim]` so
//! one head's history streams contiguously through the attention kernels.
//!
//! Sized for exactly the positions a run needs (never `max_position_embeddings`), and filled
//! with NaN when allocated: every page is written before timing (PITFALLS.md #23), and a bug that
//! reads a position before it is written poisons the logits instead of passing silently.

use crate::error::EngineError;
use rooflinebench_model::spec::ModelSpec;

#[derive(Clone, Debug)]
pub struct KvCache {
    capacity: usize,
    len: usize,
    kv_heads: usize,
    head_dim: usize,
    /// `(keys, values)` per layer.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl KvCache {
    /// Bytes a cache of `capacity` positions takes for `spec`.
    pub fn bytes_for(spec: &ModelSpec, capacity: usize) -> Option<u64> {
        2u64.checked_mul(spec.num_hidden_layers)?
            .checked_mul(spec.num_key_value_heads)?
            .checked_mul(spec.head_dim)?
            .checked_mul(capacity as u64)?
            .checked_mul(4)
    }

    pub fn new(spec: &ModelSpec, capacity: usize) -> Result<KvCache, EngineError> {
        KvCache::bytes_for(spec, capacity)
            .ok_or_else(|| EngineError::bad_option("cache capacity", capacity, "too large"))?;
        let kv_heads = spec.num_key_value_heads as usize;
        let head_dim = spec.head_dim as usize;
        let n = kv_heads * capacity * head_dim;
        let layers = (0..spec.num_hidden_layers)
            .map(|_| (vec![f32::NAN; n], vec![f32::NAN; n]))
            .collect();
        Ok(KvCache {
            capacity,
            len: 0,
            kv_heads,
            head_dim,
            layers,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets positions `len..` (they are overwritten by the next forward pass).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        self.len = len;
    }

    pub(crate) fn layer(&self, l: usize) -> (&[f32], &[f32]) {
        let (k, v) = &self.layers[l];
        (k, v)
    }

    /// Writes token rows `src` (`[t][kv_heads * head_dim]`) at positions `pos0..` of the keys
    /// (`values == false`) or values of layer `l`.
    pub(crate) fn store(&mut self, l: usize, values: bool, pos0: usize, src: &[f32]) {
        let (hd, nkv, cap) = (self.head_dim, self.kv_heads, self.capacity);
        let (k, v) = &mut self.layers[l];
        let dst = if values { v } else { k };
        for (t, row) in src.chunks_exact(nkv * hd).enumerate() {
            for h in 0..nkv {
                let at = (h * cap + pos0 + t) * hd;
                dst[at..at + hd].copy_from_slice(&row[h * hd..(h + 1) * hd]);
            }
        }
    }
}
