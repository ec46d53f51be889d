//! Multi-head latent attention (DeepSeek-V2 §2.1; `modeling_deepseek.py` `DeepseekV2Attention`;
//! PLM uses the same block without q LoRA) in its two executable forms, operator by operator
//! under the cost model's ids (`crates/model/src/cost.rs` `mla_ops`, same order):
//!
//! - `MlaQDown` (`q_a_proj` + `q_a_layernorm`, only with `q_lora_rank`), `MlaQUp` (`q_b_proj`,
//!   or `q_proj` without q LoRA): per-head queries `[q_nope | q_pe]`;
//! - `MlaKvDown` (`kv_a_proj_with_mqa` + `kv_a_layernorm` on its first `kv_lora_rank` outputs):
//!   the latent `c_kv` and the shared RoPE key `k_pe`;
//! - materialized only, `MlaKvUp` (`kv_b_proj`): per-head `k_nope` and `v`, cached;
//! - `rope` on `q_pe` (every head) and `k_pe` (once), which writes the RoPE part of the cache;
//! - absorbed only, `MlaQAbsorb`: `q_lat[h] = W_UK[h]^T q_nope[h]` moves each query into the
//!   latent space, so `score = q_lat . c_kv + q_pe . k_pe` over the cached latent rows;
//! - `attn_score`, `attn_softmax`, `attn_value` (absorbed: the value is the latent row itself;
//!   materialized: the cached per-head `v`);
//! - absorbed only, `MlaVAbsorb`: `o[h] = W_UV[h] o_lat[h]`; then `o_proj` (in `model.rs`).
//!
//! The two forms compute the same function (the products are merely reassociated), which the
//! engine's tests check against each other and against an f64 reference.
//!
//! RoPE: Hugging Face's DeepSeek code rotates interleaved pairs of the rope dims (it permutes
//! them to halves first); this engine rotates halves, as for every other family. The two differ
//! only by a fixed permutation of the rope rows of `q_b`/`kv_a`: the GGUF loader reorders those
//! rows (llama.cpp keeps the interleaved order; `gguf_source`, checked against llama.cpp's
//! logits), and so does the safetensors loader (`weights::rope_pair_row`).
//!
//! Not here: the absorbed attention's value product is a plain loop on one thread (each
//! latent row is read once for all heads), not a SIMD kernel; sliding windows and soft-caps
//! (refused by `arch::check_supported`).

use crate::arch::ModelDef;
use crate::error::EngineError;
use crate::kv::KvCache;
use crate::recorder::Recorder;
use crate::rope::RopeTable;
use crate::weights::{Key, LKey, Mat, Source};
use rooflinebench_kernels::engine::attn::{self, AttnShape};
use rooflinebench_kernels::engine::{act, norm, ThreadPool, WeightDtype};
use rooflinebench_kernels::isa::Isa;
use rooflinebench_model::cost::MlaForm;
use rooflinebench_model::op::{OpId, OpKind};
use rooflinebench_model::spec::{Attention, MlaSpec};
use std::cell::RefCell;
use std::sync::Mutex;

/// Scores buffer budget per attention chunk, in f32 elements (64 MiB), as in `model.rs`.
const SCORE_BUDGET: usize = 16 << 20;

/// One layer's MLA weights. Row-major `[out, in]` like every engine matrix.
#[derive(Clone, Debug)]
pub struct MlaWeights {
    /// `q_a_proj` (`q_lora_rank x hidden`) and `q_a_layernorm`, with q LoRA.
    pub q_a: Option<(Mat, Vec<f32>)>,
    /// `q_b_proj` (`heads * qk_head_dim x q_lora_rank`), or `q_proj` (`... x hidden`).
    pub q_b: Mat,
    /// `kv_a_proj_with_mqa`: `(kv_lora_rank + qk_rope_head_dim) x hidden`.
    pub kv_a: Mat,
    /// `kv_a_layernorm` (`kv_lora_rank`).
    pub kv_a_norm: Vec<f32>,
    /// The form-specific up-projections, all from the same `kv_b_proj`.
    pub up: MlaUp,
}

/// `kv_b_proj` (`heads * (qk_nope_head_dim + v_head_dim) x kv_lora_rank`) as each form uses it.
#[derive(Clone, Debug)]
pub enum MlaUp {
    /// The matrix as stored.
    Materialized { kv_b: Mat },
    /// Per head: `W_UK[h]^T` (`kv_lora_rank x qk_nope_head_dim`) and `W_UV[h]`
    /// (`v_head_dim x kv_lora_rank`); together exactly `kv_b_proj`'s elements.
    Absorbed { uk_t: Vec<Mat>, uv: Vec<Mat> },
}

impl MlaWeights {
    /// Every matrix, for byte counts and tests.
    pub fn mats(&self) -> Vec<&Mat> {
        let mut v: Vec<&Mat> = self.q_a.iter().map(|(m, _)| m).collect();
        v.extend([&self.q_b, &self.kv_a]);
        match &self.up {
            MlaUp::Materialized { kv_b } => v.push(kv_b),
            MlaUp::Absorbed { uk_t, uv } => v.extend(uk_t.iter().chain(uv)),
        }
        v
    }

    /// Bytes of all matrices and norms as stored.
    pub fn bytes(&self) -> usize {
        let norms = self.q_a.as_ref().map_or(0, |(_, n)| n.len()) + self.kv_a_norm.len();
        self.mats().iter().map(|m| m.bytes()).sum::<usize>() + 4 * norms
    }
}

/// The MLA dimensions of `def`, if it is an MLA model.
pub fn spec_of(def: &ModelDef) -> Option<&MlaSpec> {
    match &def.spec.attention {
        Attention::Mla(m) => Some(m),
        Attention::Mha | Attention::Gqa | Attention::Mqa => None,
    }
}

/// Builds layer `i`'s MLA weights for `def.arch.mla_form` (`None` for other attention kinds).
pub fn build_layer(
    def: &ModelDef,
    dtype: WeightDtype,
    src: &mut dyn Source,
    i: usize,
) -> Result<Option<MlaWeights>, EngineError> {
    let Some(m) = spec_of(def) else {
        return Ok(None);
    };
    let k = |lk| Key::Layer(i, lk);
    let h = def.spec.hidden_size as usize;
    let nh = def.spec.num_attention_heads as usize;
    let (kvl, rope, nope, dv) = (
        m.kv_lora_rank as usize,
        m.qk_rope_head_dim as usize,
        m.qk_nope_head_dim as usize,
        m.v_head_dim as usize,
    );
    let qk = nope + rope;
    let offset = def.arch.norm_weight_offset;
    let normv = |src: &mut dyn Source, key, len| -> Result<Vec<f32>, EngineError> {
        let mut v = src.vec(key, len)?;
        v.iter_mut().for_each(|x| *x += offset);
        Ok(v)
    };
    let q_a = match m.q_lora_rank {
        Some(ql) => {
            let ql = ql as usize;
            let mat = src.mat(k(LKey::MlaQA), ql, h, dtype)?;
            Some((mat, normv(src, k(LKey::MlaQANorm), ql)?))
        }
        None => None,
    };
    let q_in = m.q_lora_rank.map_or(h, |q| q as usize);
    let q_b = src.mat(k(LKey::MlaQB), nh * qk, q_in, dtype)?;
    let kv_a = src.mat(k(LKey::MlaKvA), kvl + rope, h, dtype)?;
    let kv_a_norm = normv(src, k(LKey::MlaKvANorm), kvl)?;
    let split = match def.arch.mla_form {
        MlaForm::Absorbed => src.mla_split(i, dtype)?,
        MlaForm::Materialized => None,
    };
    if let Some((uk_t, uv)) = split {
        return Ok(Some(MlaWeights {
            q_a,
            q_b,
            kv_a,
            kv_a_norm,
            up: MlaUp::Absorbed { uk_t, uv },
        }));
    }
    let kv_b = src.mat(k(LKey::MlaKvB), nh * (nope + dv), kvl, dtype)?;
    let up = match def.arch.mla_form {
        MlaForm::Materialized => MlaUp::Materialized { kv_b },
        MlaForm::Absorbed => {
            // Values already rounded to `dtype`: re-storing them in `dtype` is exact, so both
            // forms hold identical weights.
            let mut uk_t = Vec::with_capacity(nh);
            let mut uv = Vec::with_capacity(nh);
            for head in 0..nh {
                let base = head * (nope + dv);
                let mut t = vec![f32::NAN; kvl * nope];
                for c in 0..kvl {
                    for d in 0..nope {
                        t[c * nope + d] = kv_b.get(base + d, c);
                    }
                }
                uk_t.push(Mat::from_f32(kvl, nope, t, dtype));
                let mut v = vec![f32::NAN; dv * kvl];
                for r in 0..dv {
                    for c in 0..kvl {
                        v[r * kvl + c] = kv_b.get(base + nope + r, c);
                    }
                }
                uv.push(Mat::from_f32(dv, kvl, v, dtype));
            }
            MlaUp::Absorbed { uk_t, uv }
        }
    };
    Ok(Some(MlaWeights {
        q_a,
        q_b,
        kv_a,
        kv_a_norm,
        up,
    }))
}

/// Weight bytes of the MLA matrices of one layer in `dtype` (upper bound for memory checks).
pub fn layer_weight_bytes(def_spec: &rooflinebench_model::spec::ModelSpec, esize: u64) -> u64 {
    let Attention::Mla(m) = &def_spec.attention else {
        return 0;
    };
    let h = def_spec.hidden_size;
    let nh = def_spec.num_attention_heads;
    let ql = m.q_lora_rank.unwrap_or(0);
    let q_in = m.q_lora_rank.unwrap_or(h);
    let elems = ql * h
        + nh * m.qk_head_dim() * q_in
        + m.latent_elems() * h
        + nh * (m.qk_nope_head_dim + m.v_head_dim) * m.kv_lora_rank;
    elems * esize + 4 * (ql + m.kv_lora_rank)
}

/// Activation buffers of the MLA block, reused across calls (grown, never shrunk).
#[derive(Default)]
struct Scratch {
    qa: Vec<f32>,
    q: Vec<f32>,
    ckv: Vec<f32>,
    lat: Vec<f32>,
    kvb: Vec<f32>,
    qabs: Vec<f32>,
    olat: Vec<f32>,
    hin: Vec<f32>,
    hout: Vec<f32>,
    scores: Vec<f32>,
    /// A one-thread pool (runs inline) for the per-head maps run in parallel across heads.
    single: Option<ThreadPool>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `v[..n]`, reallocated (and written: NaN, PITFALLS.md #23) when too short.
fn buf(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        *v = vec![f32::NAN; n];
    }
    &mut v[..n]
}

/// What the MLA block needs from the model.
pub(crate) struct Ctx<'a> {
    pub def: &'a ModelDef,
    pub isa: Isa,
    pub pool: &'a ThreadPool,
    pub rope: &'a RopeTable,
}

/// A projection of `t` token rows: `(weight, bias, input, output)`, the model's own dispatch.
pub(crate) type Proj<'p> = dyn Fn(&Mat, &Option<Vec<f32>>, &[f32], &mut [f32]) + 'p;

/// Runs the MLA block of layer `l` on the `t` normed rows `xn` (`[t][hidden]`) at positions
/// `pos0..`, writing the attention output before `o_proj` into `att` (`[t][heads * v_head_dim]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention<R: Recorder>(
    c: &Ctx<'_>,
    w: &MlaWeights,
    l: usize,
    xn: &[f32],
    t: usize,
    pos0: usize,
    cache: &mut KvCache,
    proj: &Proj<'_>,
    att: &mut [f32],
    rec: &mut R,
) {
    let Some(m) = spec_of(c.def) else { return };
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        run(c, m, w, l, xn, t, pos0, cache, proj, att, rec, &mut s)
    })
}

#[allow(clippy::too_many_arguments)]
fn run<R: Recorder>(
    c: &Ctx<'_>,
    m: &MlaSpec,
    w: &MlaWeights,
    l: usize,
    xn: &[f32],
    t: usize,
    pos0: usize,
    cache: &mut KvCache,
    proj: &Proj<'_>,
    att: &mut [f32],
    rec: &mut R,
    s: &mut Scratch,
) {
    let id = |kind| OpId::layer(l as u32, kind);
    let (isa, pool) = (c.isa, c.pool);
    let eps = c.def.arch.norm_eps;
    let scale = c.def.arch.attn_scale;
    let nh = c.def.spec.num_attention_heads as usize;
    let (kvl, rope, nope, dv) = (
        m.kv_lora_rank as usize,
        m.qk_rope_head_dim as usize,
        m.qk_nope_head_dim as usize,
        m.v_head_dim as usize,
    );
    let (qk, lw) = (nope + rope, kvl + rope);
    let end = pos0 + t;
    let cap = cache.capacity();
    let Scratch {
        qa,
        q,
        ckv,
        lat,
        kvb,
        qabs,
        olat,
        hin,
        hout,
        scores,
        single,
    } = s;
    let q = buf(q, t * nh * qk);
    let ckv = buf(ckv, t * lw);
    let hin = buf(hin, nh * t * kvl.max(nope));
    let hout = buf(hout, nh * t * kvl.max(dv));
    let single = &*single.get_or_insert_with(|| ThreadPool::new(1));

    // Queries: [t][heads][q_nope | q_pe].
    match &w.q_a {
        Some((qa_w, qa_norm)) => {
            let ql = qa_w.rows;
            let qa = buf(qa, t * ql);
            rec.op(id(OpKind::MlaQDown), || {
                proj(qa_w, &None, xn, qa);
                for row in qa.chunks_exact_mut(ql) {
                    norm::rmsnorm(isa, row, qa_norm, eps);
                }
            });
            rec.op(id(OpKind::MlaQUp), || proj(&w.q_b, &None, qa, q));
        }
        None => rec.op(id(OpKind::MlaQUp), || proj(&w.q_b, &None, xn, q)),
    }
    // Latent and shared RoPE key: [t][c_kv | k_pe].
    let absorbed = matches!(w.up, MlaUp::Absorbed { .. });
    let lat = buf(lat, if absorbed { 0 } else { t * kvl });
    rec.op(id(OpKind::MlaKvDown), || {
        proj(&w.kv_a, &None, xn, ckv);
        for row in ckv.chunks_exact_mut(lw) {
            norm::rmsnorm(isa, &mut row[..kvl], &w.kv_a_norm, eps);
        }
        if absorbed {
            cache.store_latent(l, pos0, ckv, lw, 0, 0, kvl);
        } else {
            for (dst, row) in lat.chunks_exact_mut(kvl).zip(ckv.chunks_exact(lw)) {
                dst.copy_from_slice(&row[..kvl]);
            }
        }
    });
    if let MlaUp::Materialized { kv_b } = &w.up {
        let kvb = buf(kvb, t * nh * (nope + dv));
        rec.op(id(OpKind::MlaKvUp), || {
            proj(kv_b, &None, lat, kvb);
            let row = nh * (nope + dv);
            cache.store_heads(l, false, pos0, kvb, [row, nope + dv, 0], 0, nope);
            cache.store_heads(l, true, pos0, kvb, [row, nope + dv, nope], 0, dv);
        });
    }
    rec.op(id(OpKind::Rope), || {
        for i in 0..t {
            let (cs, sn) = c.rope.at(pos0 + i);
            for h in 0..nh {
                let at = (i * nh + h) * qk + nope;
                act::rope(isa, &mut q[at..at + rope], rope, rope, cs, sn);
            }
            let at = i * lw + kvl;
            act::rope(isa, &mut ckv[at..at + rope], rope, rope, cs, sn);
        }
        if absorbed {
            cache.store_latent(l, pos0, ckv, lw, kvl, kvl, rope);
        } else {
            cache.store_heads(l, false, pos0, ckv, [lw, 0, kvl], nope, rope);
        }
    });

    let att = &mut att[..t * nh * dv];
    let chunk = (SCORE_BUDGET / (nh * end).max(1)).clamp(1, t);
    match &w.up {
        MlaUp::Absorbed { uk_t, uv } => {
            let qabs = buf(qabs, t * nh * lw);
            rec.op(id(OpKind::MlaQAbsorb), || {
                gather_heads(q, [t, nh], [qk, 0], nope, hin);
                per_head(pool, single, isa, uk_t, &hin[..nh * t * nope], t, hout);
                scatter_heads(hout, [t, nh], kvl, qabs, [lw, 0]);
                for r in 0..t * nh {
                    let from = r * qk + nope;
                    qabs[r * lw + kvl..(r + 1) * lw].copy_from_slice(&q[from..from + rope]);
                }
            });
            let olat = buf(olat, t * nh * kvl);
            let mut c0 = 0;
            while c0 < t {
                let c1 = (c0 + chunk).min(t);
                let shape = AttnShape {
                    n_q: c1 - c0,
                    q_pos0: pos0 + c0,
                    n_heads: nh,
                    n_kv_heads: 1,
                    head_dim: lw,
                    kv_stride: cap,
                    window: None,
                    scale,
                    softcap: None,
                };
                let (kc, _) = cache.layer(l);
                let sc = buf(scores, shape.scores_len());
                let qc = &qabs[c0 * nh * lw..c1 * nh * lw];
                rec.op(id(OpKind::AttnScore), || {
                    attn::attn_scores(isa, pool, &shape, qc, kc, sc)
                });
                rec.op(id(OpKind::AttnSoftmax), || {
                    attn::attn_softmax(isa, pool, &shape, sc)
                });
                let out = &mut olat[c0 * nh * kvl..c1 * nh * kvl];
                rec.op(id(OpKind::AttnValue), || {
                    latent_values(&shape, sc, kc, kvl, out)
                });
                c0 = c1;
            }
            rec.op(id(OpKind::MlaVAbsorb), || {
                gather_heads(olat, [t, nh], [kvl, 0], kvl, hin);
                per_head(pool, single, isa, uv, &hin[..nh * t * kvl], t, hout);
                scatter_heads(hout, [t, nh], dv, att, [dv, 0]);
            });
        }
        MlaUp::Materialized { .. } => {
            let mut c0 = 0;
            while c0 < t {
                let c1 = (c0 + chunk).min(t);
                let shape = AttnShape {
                    n_q: c1 - c0,
                    q_pos0: pos0 + c0,
                    n_heads: nh,
                    n_kv_heads: nh,
                    head_dim: qk,
                    kv_stride: cap,
                    window: None,
                    scale,
                    softcap: None,
                };
                let vshape = AttnShape {
                    head_dim: dv,
                    ..shape
                };
                let (kc, vc) = cache.layer(l);
                let sc = buf(scores, shape.scores_len());
                let qc = &q[c0 * nh * qk..c1 * nh * qk];
                rec.op(id(OpKind::AttnScore), || {
                    attn::attn_scores(isa, pool, &shape, qc, kc, sc)
                });
                rec.op(id(OpKind::AttnSoftmax), || {
                    attn::attn_softmax(isa, pool, &shape, sc)
                });
                let out = &mut att[c0 * nh * dv..c1 * nh * dv];
                rec.op(id(OpKind::AttnValue), || {
                    attn::attn_values(isa, pool, &vshape, sc, vc, out)
                });
                c0 = c1;
            }
        }
    }
}

/// `out[h] = input[h] W[h]^T` for every head `h` (`input` `[heads][t][cols]`, `out`
/// `[heads][t][rows]`): the absorbed per-head maps, heads spread over the pool's threads, each
/// head's product on one thread (many tiny products would otherwise each pay the pool's
/// dispatch).
/// Copies `width` values at `offset` of every (token, head) row of the token-major `src`
/// (`[tokens, heads]` rows of `stride`) into the head-major `dst` (`heads x tokens` rows of
/// `width`), the layout the per-head products take.
fn gather_heads(
    src: &[f32],
    [t, nh]: [usize; 2],
    [stride, offset]: [usize; 2],
    width: usize,
    dst: &mut [f32],
) {
    for h in 0..nh {
        for i in 0..t {
            let from = (i * nh + h) * stride + offset;
            let to = (h * t + i) * width;
            dst[to..to + width].copy_from_slice(&src[from..from + width]);
        }
    }
}

/// The inverse of [`gather_heads`]: head-major rows of `width` into `width` values at `offset`
/// of the token-major rows of `stride` of `dst`.
fn scatter_heads(
    src: &[f32],
    [t, nh]: [usize; 2],
    width: usize,
    dst: &mut [f32],
    [stride, offset]: [usize; 2],
) {
    for h in 0..nh {
        for i in 0..t {
            let from = (h * t + i) * width;
            let to = (i * nh + h) * stride + offset;
            dst[to..to + width].copy_from_slice(&src[from..from + width]);
        }
    }
}

fn per_head(
    pool: &ThreadPool,
    single: &ThreadPool,
    isa: Isa,
    w: &[Mat],
    input: &[f32],
    t: usize,
    out: &mut [f32],
) {
    let (rows, cols) = (w[0].rows, w[0].cols);
    let outs: Vec<Mutex<&mut [f32]>> = out
        .chunks_mut(t * rows)
        .take(w.len())
        .map(Mutex::new)
        .collect();
    pool.run_items(w.len(), &|h| {
        let mut o = outs[h].lock().unwrap_or_else(|e| e.into_inner());
        let x = &input[h * t * cols..(h + 1) * t * cols];
        crate::weights::matmul(isa, single, x, t, &w[h], None, &mut o);
    });
}

/// Absorbed MLA's value product: `out[i][h] = sum_j p[i][h][j] * c_kv[j]` over query `i`'s
/// keys, the latent rows being the first `kvl` elements of each cache row. Scores are laid out
/// `[n_q][heads][ctx]` (one KV head, see `attn`); each latent row is read once for all heads.
fn latent_values(s: &AttnShape, p: &[f32], cache: &[f32], kvl: usize, out: &mut [f32]) {
    let (nh, lw, ctx) = (s.n_heads, s.head_dim, s.ctx());
    for (i, orow) in out.chunks_exact_mut(nh * kvl).enumerate() {
        orow.fill(0.0);
        let (lo, hi) = s.keys(i);
        for j in lo..hi {
            let row = &cache[j * lw..j * lw + kvl];
            for (h, o) in orow.chunks_exact_mut(kvl).enumerate() {
                let w = p[(i * nh + h) * ctx + j];
                for (a, b) in o.iter_mut().zip(row) {
                    *a += w * b;
                }
            }
        }
    }
}
