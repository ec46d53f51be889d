//! The KV cache: per layer, keys and values in f32, laid out `[kv_head][position][head_dim]` so
//! one head's history streams contiguously through the attention kernels.
//!
//! MLA models cache what their execution form ([`MlaForm`]) needs, exactly the bytes the cost
//! model charges (`ModelSpec::kv_elems_per_token_per_layer`, PITFALLS.md #4):
//! - absorbed: one latent row per position, `[position][kv_lora_rank + qk_rope_head_dim]`
//!   (the normed `c_kv` then the roped shared key `k_pe`), read by every head;
//! - materialized: per-head keys `[head][position][qk_nope_head_dim + qk_rope_head_dim]` and
//!   values `[head][position][v_head_dim]`, like MHA with different key and value widths.
//!
//! Sized for exactly the positions a run needs (never `max_position_embeddings`), and filled
//! with NaN when allocated: every page is written before timing (PITFALLS.md #23), and a bug that
//! reads a position before it is written poisons the logits instead of passing silently.

use crate::error::EngineError;
use rooflinebench_kernels::ceiling::buffer::AlignedF32;
use rooflinebench_model::cost::MlaForm;
use rooflinebench_model::spec::{Attention, ModelSpec};

/// What one layer's cache rows hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvLayout {
    /// Per-head keys of `k_dim` and values of `v_dim` (MHA/GQA/MQA, materialized MLA).
    Heads {
        kv_heads: usize,
        k_dim: usize,
        v_dim: usize,
    },
    /// One row of `width` per position shared by all heads (absorbed MLA); no value buffer.
    Latent { width: usize },
}

impl KvLayout {
    /// The layout `spec` needs in `form` (the form only matters for MLA).
    pub fn of(spec: &ModelSpec, form: MlaForm) -> KvLayout {
        match (&spec.attention, form) {
            (Attention::Mla(m), MlaForm::Absorbed) => KvLayout::Latent {
                width: m.latent_elems() as usize,
            },
            (Attention::Mla(m), MlaForm::Materialized) => KvLayout::Heads {
                kv_heads: spec.num_attention_heads as usize,
                k_dim: m.qk_head_dim() as usize,
                v_dim: m.v_head_dim as usize,
            },
            (Attention::Mha | Attention::Gqa | Attention::Mqa, _) => KvLayout::Heads {
                kv_heads: spec.num_key_value_heads as usize,
                k_dim: spec.head_dim as usize,
                v_dim: spec.v_head_dim as usize,
            },
        }
    }
}

pub struct KvCache {
    capacity: usize,
    len: usize,
    layout: KvLayout,
    /// `(keys, values)` per layer (absorbed MLA: `(latent rows, empty)`), each 64-byte aligned
    /// (2 MiB from 2 MiB on), so a head's rows start on a cache line whenever its row width is
    /// a multiple of 16 elements. A `Vec<f32>` sits 16 bytes past a line in glibc's heap: the
    /// decode attention kernels ran ~10% slower on such rows in `examples/attn_decode`. In the
    /// engine (Qwen2.5-0.5B q4_0, depth 2048, 1 thread, 3 alternating runs) `attn_value` went
    /// 38.6-39.1 -> 36.7-37.7 ms per 384 calls; `attn_score` and tokens/s moved within noise.
    layers: Vec<(AlignedF32, AlignedF32)>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("layout", &self.layout)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl KvCache {
    /// Bytes a cache of `capacity` positions takes for `spec` (MLA: absorbed form).
    pub fn bytes_for(spec: &ModelSpec, capacity: usize) -> Option<u64> {
        KvCache::bytes_for_form(spec, capacity, MlaForm::default())
    }

    /// Bytes a cache of `capacity` positions takes for `spec` in MLA form `form`: the cost
    /// model's elements per token per layer, times layers, positions and 4 bytes.
    pub fn bytes_for_form(spec: &ModelSpec, capacity: usize, form: MlaForm) -> Option<u64> {
        spec.kv_elems_per_token_per_layer(form)
            .checked_mul(spec.num_hidden_layers)?
            .checked_mul(capacity as u64)?
            .checked_mul(4)
    }

    /// A cache for `spec` (MLA: absorbed form).
    pub fn new(spec: &ModelSpec, capacity: usize) -> Result<KvCache, EngineError> {
        KvCache::with_form(spec, capacity, MlaForm::default())
    }

    /// A cache for `spec` holding what MLA form `form` needs.
    pub fn with_form(
        spec: &ModelSpec,
        capacity: usize,
        form: MlaForm,
    ) -> Result<KvCache, EngineError> {
        KvCache::bytes_for_form(spec, capacity, form)
            .filter(|b| usize::try_from(*b).is_ok())
            .ok_or_else(|| EngineError::bad_option("cache capacity", capacity, "too large"))?;
        let layout = KvLayout::of(spec, form);
        let (nk, nv) = match layout {
            KvLayout::Heads {
                kv_heads,
                k_dim,
                v_dim,
            } => (kv_heads * capacity * k_dim, kv_heads * capacity * v_dim),
            KvLayout::Latent { width } => (capacity * width, 0),
        };
        let filled = |n: usize| {
            AlignedF32::filled(n, f32::NAN)
                .map_err(|e| EngineError::bad_option("cache capacity", capacity, e.to_string()))
        };
        let layers = (0..spec.num_hidden_layers)
            .map(|_| Ok((filled(nk)?, filled(nv)?)))
            .collect::<Result<_, EngineError>>()?;
        Ok(KvCache {
            capacity,
            len: 0,
            layout,
            layers,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn layout(&self) -> KvLayout {
        self.layout
    }

    /// Bytes allocated for keys and values (all layers).
    pub fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|(k, v)| 4 * (k.len() + v.len()) as u64)
            .sum()
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
        (&k[..], &v[..])
    }

    /// Writes token rows `src` (`[t][kv_heads * dim]`) at positions `pos0..` of the keys
    /// (`values == false`) or values of layer `l` (a [`KvLayout::Heads`] cache).
    pub(crate) fn store(&mut self, l: usize, values: bool, pos0: usize, src: &[f32]) {
        let KvLayout::Heads {
            kv_heads: nkv,
            k_dim,
            v_dim,
        } = self.layout
        else {
            debug_assert!(false, "store on a latent cache");
            return;
        };
        let hd = if values { v_dim } else { k_dim };
        let w = nkv * hd;
        self.store_heads(l, values, pos0, src, [w, hd, 0], 0, hd);
    }

    /// Writes columns `col..col + part` of every head's row at positions `pos0..` of layer
    /// `l`'s keys or values. Token `t`, head `h` take `part` elements of `src` from
    /// `t * at[0] + h * at[1] + at[2]` (`at[1] == 0` broadcasts one vector to every head, as
    /// materialized MLA does with the shared `k_pe`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store_heads(
        &mut self,
        l: usize,
        values: bool,
        pos0: usize,
        src: &[f32],
        at: [usize; 3],
        col: usize,
        part: usize,
    ) {
        let KvLayout::Heads {
            kv_heads: nkv,
            k_dim,
            v_dim,
        } = self.layout
        else {
            debug_assert!(false, "store on a latent cache");
            return;
        };
        let hd = if values { v_dim } else { k_dim };
        let cap = self.capacity;
        let (k, v) = &mut self.layers[l];
        let dst = if values { v } else { k };
        let tokens = src.len() / at[0].max(1);
        for t in 0..tokens {
            for h in 0..nkv {
                let from = t * at[0] + h * at[1] + at[2];
                let to = (h * cap + pos0 + t) * hd + col;
                dst[to..to + part].copy_from_slice(&src[from..from + part]);
            }
        }
    }

    /// Writes columns `col..col + part` of latent rows at positions `pos0..` of layer `l`
    /// (an absorbed MLA cache); token `t` takes `part` elements of `src` from
    /// `t * stride + off`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store_latent(
        &mut self,
        l: usize,
        pos0: usize,
        src: &[f32],
        stride: usize,
        off: usize,
        col: usize,
        part: usize,
    ) {
        let KvLayout::Latent { width } = self.layout else {
            debug_assert!(false, "store_latent on a per-head cache");
            return;
        };
        let (k, _) = &mut self.layers[l];
        for t in 0..src.len() / stride.max(1) {
            let to = (pos0 + t) * width + col;
            let from = t * stride + off;
            k[to..to + part].copy_from_slice(&src[from..from + part]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pitfall_04_latent_cache_is_rank_plus_rope_per_token_per_layer() {
        let cfg = r#"{"model_type":"deepseek_v2","hidden_size":64,"num_hidden_layers":3,
            "num_attention_heads":4,"vocab_size":50,"intermediate_size":96,"kv_lora_rank":32,
            "qk_nope_head_dim":16,"qk_rope_head_dim":8,"v_head_dim":12}"#;
        let (spec, _) = ModelSpec::from_config_json(cfg).unwrap();
        let a = KvCache::with_form(&spec, 10, MlaForm::Absorbed).unwrap();
        assert_eq!(a.bytes(), 3 * 10 * (32 + 8) * 4);
        let m = KvCache::with_form(&spec, 10, MlaForm::Materialized).unwrap();
        assert_eq!(m.bytes(), 3 * 10 * 4 * (16 + 8 + 12) * 4);
        for (c, f) in [(&a, MlaForm::Absorbed), (&m, MlaForm::Materialized)] {
            assert_eq!(Some(c.bytes()), KvCache::bytes_for_form(&spec, 10, f));
        }
    }

    #[test]
    fn absurd_capacity_is_an_error_not_an_abort() {
        let cfg = r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":50,
            "intermediate_size":96}"#;
        let (spec, _) = ModelSpec::from_config_json(cfg).unwrap();
        // 2^44 positions: 2^53 bytes per layer's keys, beyond any address space, yet the size
        // itself fits in usize, so it is the allocator's refusal that must become an error.
        let err = KvCache::new(&spec, 1 << 44).unwrap_err().to_string();
        assert!(err.contains("cache capacity"), "{err}");
    }
}
