//! The forward pass: a dense decoder run operator by operator, each wrapped in the recorder
//! under the same [`OpId`] the cost model gives it (`crates/model/src/cost.rs` lists them in the
//! same order: embedding; per layer attn_norm, q/k/v, q/k norm, rope, score, softmax, value,
//! o_proj, post-attention norm, residual, ffn_norm, gate, up, act, down, post-FFN norm,
//! residual; final norm; LM head).
//!
//! What each operator covers, so a measured time means what the cost table counts:
//! `v_proj` includes writing V into the cache and `rope` writing K (the cost model charges the
//! KV writes there); `attn_score`/`attn_softmax`/`attn_value` may run in query chunks whose
//! times add up; biases are part of their projection; the final norm and LM head run on the last
//! token only ([`Logits::Last`], the cost model's default) or on every token ([`Logits::All`]).
//! Parallel residual (GPT-NeoX): `attn_residual` forms `x + attn` in a side buffer, `ffn_norm`
//! reads the layer input, `ffn_residual` adds the MLP output to the side buffer.
//! MLA layers run `mla::attention` (its operators, then `o_proj` here) in place of q/k/v ..
//! `attn_value`; MoE layers run `moe::ffn` (router, experts, shared experts) in place of the MLP.
//!
//! Batch 1. Activations f32; weights f32/f16/bf16 or llama.cpp blocks (every projection and the
//! LM head go through [`crate::weights::matmul`], which quantizes the activations to 8 bits
//! inside the timed operator; quantized embedding rows are dequantized in the lookup); KV cache
//! f32.

use crate::arch::ModelDef;
use crate::error::EngineError;
use crate::kv::KvCache;
use crate::recorder::Recorder;
use crate::rope::RopeTable;
use crate::weights::{Mat, Norm, Weights};
use rooflinebench_kernels::engine::act::{self, Gelu};
use rooflinebench_kernels::engine::attn::{self, AttnShape};
use rooflinebench_kernels::engine::{norm, ThreadPool};
use rooflinebench_kernels::isa::Isa;
use rooflinebench_model::op::{OpId, OpKind};
use rooflinebench_model::spec::{Activation, NormKind, QkNorm};

/// Which tokens the LM head runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The last token of the call (prefill default; every decode step).
    Last,
    /// Every token of the call (tests against a reference).
    All,
}

/// Scores buffer budget per attention chunk, in f32 elements (64 MiB).
const SCORE_BUDGET: usize = 16 << 20;
/// Elements from which a row-wise operator (norm, residual add, activation, RoPE) is split
/// across the pool by token rows: below it one core finishes before a pool dispatch (a few
/// microseconds) pays off, so decode steps keep them on the calling thread. Measured on
/// Qwen2.5-0.5B f32, 512-token prefill, 2 threads: these operators took 129 ms of 1444 on one
/// core (see the commit message for the figures after).
const PAR_MIN_ELEMS: usize = 32 * 1024;

#[derive(Default)]
struct Scratch {
    tokens: usize,
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    resid: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
    logits: Vec<f32>,
}

/// A model ready to run: weights, RoPE tables, a thread pool and scratch buffers.
pub struct Model {
    pub def: ModelDef,
    pub weights: Weights,
    isa: Isa,
    pool: ThreadPool,
    rope: RopeTable,
    /// Sliding-window layers' table when their base differs (Gemma3).
    rope_local: Option<RopeTable>,
    scratch: Scratch,
}

/// Activation buffers (f32 elements) a forward pass of `tokens` tokens needs.
pub fn scratch_elems(def: &ModelDef, tokens: usize, ctx: usize, logits: Logits) -> u64 {
    let s = &def.spec;
    let t = tokens as u64;
    let h = s.hidden_size;
    let q = s.num_attention_heads * s.head_dim;
    let kv = s.num_key_value_heads * s.head_dim;
    let i = s.intermediate_size;
    let per_token = 4 * h + 2 * q + 2 * kv + 2 * i;
    let lt = if logits == Logits::All { t } else { 1 };
    let scores = (SCORE_BUDGET as u64).max(s.num_attention_heads * ctx as u64);
    per_token * t + scores + lt * s.vocab_size
}

fn filled(n: usize) -> Vec<f32> {
    // NaN, not zero: allocation by `vec![0.0; n]` would be calloc's untouched pages.
    vec![f32::NAN; n]
}

impl Model {
    /// A model on `threads` threads using the kernels of `isa`, with RoPE tables for
    /// `positions` positions.
    pub fn new(
        def: ModelDef,
        weights: Weights,
        threads: usize,
        isa: Isa,
        positions: usize,
    ) -> Result<Model, EngineError> {
        if threads == 0 {
            return Err(EngineError::bad_option("threads", 0, "must be at least 1"));
        }
        let (rope, rope_local) = rope_tables(&def, positions);
        Ok(Model {
            def,
            weights,
            isa,
            pool: ThreadPool::new(threads),
            rope,
            rope_local,
            scratch: Scratch::default(),
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// A KV cache of `capacity` positions for this model.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache, EngineError> {
        KvCache::with_form(&self.def.spec, capacity, self.def.arch.mla_form)
    }

    /// Allocates (and writes) every buffer a forward pass of up to `tokens` tokens with the
    /// given logits mode needs, and RoPE tables for `positions` positions, so nothing is
    /// allocated while timing.
    pub fn prepare(&mut self, tokens: usize, positions: usize, logits: Logits) {
        if self.rope.positions() < positions {
            let (r, l) = rope_tables(&self.def, positions);
            self.rope = r;
            self.rope_local = l;
        }
        let s = &self.def.spec;
        let h = s.hidden_size as usize;
        let q = (s.num_attention_heads * s.head_dim) as usize;
        let kv = (s.num_key_value_heads * s.head_dim) as usize;
        let i = s.intermediate_size as usize;
        let sc = &mut self.scratch;
        if sc.tokens < tokens {
            sc.tokens = tokens;
            sc.x = filled(tokens * h);
            sc.xn = filled(tokens * h);
            sc.o = filled(tokens * h);
            sc.resid = filled(tokens * h);
            sc.q = filled(tokens * q);
            sc.att = filled(tokens * q);
            sc.k = filled(tokens * kv);
            sc.v = filled(tokens * kv);
            sc.gate = filled(tokens * i);
            sc.up = filled(tokens * i);
        }
        let heads = s.num_attention_heads as usize;
        let scores = SCORE_BUDGET.max(heads * positions);
        if sc.scores.len() < scores {
            sc.scores = filled(scores);
        }
        let lt = if logits == Logits::All { tokens } else { 1 };
        let nl = lt * s.vocab_size as usize;
        if sc.logits.len() < nl {
            sc.logits = filled(nl);
        }
    }

    /// Runs `tokens` at the next positions of `cache` and returns the logits (`vocab` values,
    /// or `tokens.len() x vocab` with [`Logits::All`]).
    pub fn forward<R: Recorder>(
        &mut self,
        tokens: &[u32],
        cache: &mut KvCache,
        logits: Logits,
        rec: &mut R,
    ) -> Result<&[f32], EngineError> {
        let t = tokens.len();
        if t == 0 {
            return Err(EngineError::bad_option(
                "tokens",
                0,
                "a forward pass needs at least one token",
            ));
        }
        let pos0 = cache.len();
        let end = pos0 + t;
        if end > cache.capacity() {
            return Err(EngineError::CacheFull {
                capacity: cache.capacity(),
                needed: end,
            });
        }
        let vocab = self.def.spec.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&tok| tok as u64 >= vocab) {
            return Err(EngineError::BadToken { token: bad, vocab });
        }
        self.prepare(t, end, logits);

        let Model {
            def,
            weights,
            isa,
            pool,
            rope,
            rope_local,
            scratch: sc,
        } = self;
        let isa = *isa;
        let s = &def.spec;
        let a = &def.arch;
        let h = s.hidden_size as usize;
        let hd = s.head_dim as usize;
        let nh = s.num_attention_heads as usize;
        let nkv = s.num_key_value_heads as usize;
        let nq = nh * hd;
        let nk = nkv * hd;
        let inter = s.intermediate_size as usize;
        let rot = s.rotary_dims as usize;
        let layer_norm = s.norm == NormKind::LayerNorm;
        let eps = a.norm_eps;
        let apply_norm = |x: &mut [f32], n: &Norm| {
            if layer_norm {
                norm::layernorm(isa, x, &n.weight, n.bias.as_deref(), eps)
            } else {
                norm::rmsnorm(isa, x, &n.weight, eps)
            }
        };
        // Row-wise operators on the pool's threads (by token rows; see `PAR_MIN_ELEMS`).
        let copy_norm = |src: &[f32], dst: &mut [f32], n: &Norm| {
            pool.for_rows_mut(dst, h, PAR_MIN_ELEMS, &|r0, rows| {
                rows.copy_from_slice(&src[r0 * h..r0 * h + rows.len()]);
                apply_norm(rows, n);
            })
        };
        let add_rows = |dst: &mut [f32], y: &[f32]| {
            pool.for_rows_mut(dst, h, PAR_MIN_ELEMS, &|r0, rows| {
                act::add(isa, rows, &y[r0 * h..r0 * h + rows.len()])
            })
        };
        let x = &mut sc.x[..t * h];
        let xn = &mut sc.xn[..t * h];
        let q = &mut sc.q[..t * nq];
        let k = &mut sc.k[..t * nk];
        let v = &mut sc.v[..t * nk];
        let att = &mut sc.att[..t * nq];
        let o = &mut sc.o[..t * h];
        let resid = &mut sc.resid[..t * h];
        let gate = &mut sc.gate[..t * inter];
        let up = &mut sc.up[..t * inter];
        let proj = |w: &Mat, bias: &Option<Vec<f32>>, input: &[f32], out: &mut [f32]| {
            crate::weights::matmul(isa, pool, input, t, w, bias.as_deref(), out)
        };

        rec.op(OpId::global(OpKind::Embedding), || {
            // Quantized tables dequantize the looked-up rows here (timed with the lookup).
            let e = &weights.embed;
            for (row, &tok) in x.chunks_exact_mut(h).zip(tokens) {
                e.row_to_f32(tok as usize, row);
                if let Some(scale) = a.embed_scale {
                    // Gemma multiplies by sqrt(hidden) rounded to the activation dtype.
                    row.iter_mut().for_each(|v| *v *= scale);
                }
            }
        });

        for (l, lw) in weights.layers.iter().enumerate() {
            let id = |kind| OpId::layer(l as u32, kind);
            let window = s.layers[l].window.map(|w| w as usize);
            rec.op(id(OpKind::AttnNorm), || copy_norm(x, xn, &lw.attn_norm));
            if let Some(mw) = &lw.mla {
                let mctx = crate::mla::Ctx {
                    def: &*def,
                    isa,
                    pool: &*pool,
                    rope: &*rope,
                };
                let nv = t * nh * s.v_head_dim as usize;
                crate::mla::attention(&mctx, mw, l, xn, t, pos0, cache, &proj, att, rec);
                rec.op(id(OpKind::OProj), || proj(&lw.o, &lw.o_bias, &att[..nv], o));
            } else {
                rec.op(id(OpKind::QProj), || proj(&lw.q, &lw.q_bias, xn, q));
                rec.op(id(OpKind::KProj), || proj(&lw.k, &lw.k_bias, xn, k));
                rec.op(id(OpKind::VProj), || {
                    proj(&lw.v, &lw.v_bias, xn, v);
                    cache.store(l, true, pos0, v);
                });
                if let (Some(QkNorm::PerHead), Some(qn), Some(kn)) =
                    (s.qk_norm, &lw.q_norm, &lw.k_norm)
                {
                    rec.op(id(OpKind::QNorm), || norm::rmsnorm(isa, q, qn, eps));
                    rec.op(id(OpKind::KNorm), || norm::rmsnorm(isa, k, kn, eps));
                }
                let table = match (window, rope_local.as_ref()) {
                    (Some(_), Some(local)) => local,
                    _ => &*rope,
                };
                rec.op(id(OpKind::Rope), || {
                    for (buf, width) in [(&mut *q, nq), (&mut *k, nk)] {
                        pool.for_rows_mut(buf, width, PAR_MIN_ELEMS, &|r0, rows| {
                            for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                                let (c, sn) = table.at(pos0 + r0 + i);
                                act::rope(isa, row, hd, rot, c, sn);
                            }
                        });
                    }
                    cache.store(l, false, pos0, k);
                });
                // Attention in query chunks that keep the scores buffer within budget.
                let chunk = (SCORE_BUDGET / (nh * end).max(1)).clamp(1, t);
                let mut c0 = 0;
                while c0 < t {
                    let c1 = (c0 + chunk).min(t);
                    let shape = AttnShape {
                        n_q: c1 - c0,
                        q_pos0: pos0 + c0,
                        n_heads: nh,
                        n_kv_heads: nkv,
                        head_dim: hd,
                        kv_stride: cache.capacity(),
                        window,
                        scale: a.attn_scale,
                        softcap: a.attn_softcap,
                    };
                    let (kc, vc) = cache.layer(l);
                    let scores = &mut sc.scores[..shape.scores_len()];
                    let qc = &q[c0 * nq..c1 * nq];
                    rec.op(id(OpKind::AttnScore), || {
                        attn::attn_scores(isa, pool, &shape, qc, kc, scores)
                    });
                    rec.op(id(OpKind::AttnSoftmax), || {
                        attn::attn_softmax(isa, pool, &shape, scores)
                    });
                    let out = &mut att[c0 * nq..c1 * nq];
                    rec.op(id(OpKind::AttnValue), || {
                        attn::attn_values(isa, pool, &shape, scores, vc, out)
                    });
                    c0 = c1;
                }
                rec.op(id(OpKind::OProj), || proj(&lw.o, &lw.o_bias, att, o));
            }
            if let Some(n) = &lw.attn_post_norm {
                rec.op(id(OpKind::AttnPostNorm), || apply_norm(o, n));
            }
            rec.op(id(OpKind::AttnResidual), || {
                if s.parallel_residual {
                    resid.copy_from_slice(x);
                    add_rows(resid, o);
                } else {
                    add_rows(x, o);
                }
            });
            rec.op(id(OpKind::FfnNorm), || copy_norm(x, xn, &lw.ffn_norm));
            if let Some(mw) = &lw.moe {
                let mctx = crate::moe::Ctx {
                    def: &*def,
                    isa,
                    pool: &*pool,
                };
                crate::moe::ffn(&mctx, mw, l, xn, t, o, rec);
            } else {
                if let Some(g) = &lw.gate {
                    rec.op(id(OpKind::FfnGate), || proj(g, &lw.gate_bias, xn, gate));
                }
                rec.op(id(OpKind::FfnUp), || proj(&lw.up, &lw.up_bias, xn, up));
                let gated = lw.gate.is_some();
                rec.op(id(OpKind::FfnAct), || {
                    let gk = a.gelu.kernel();
                    if gated {
                        let up = &*up;
                        pool.for_rows_mut(gate, inter, PAR_MIN_ELEMS, &|r0, rows| {
                            let u = &up[r0 * inter..r0 * inter + rows.len()];
                            match s.ffn.act() {
                                Activation::Silu => act::silu_mul(isa, rows, u),
                                Activation::Gelu => act::gelu_mul(isa, rows, u, gk),
                                // Refused when the model is built (arch::check_supported).
                                Activation::Relu => act::gelu_mul(isa, rows, u, Gelu::Tanh),
                            }
                        });
                    } else {
                        pool.for_rows_mut(up, inter, PAR_MIN_ELEMS, &|_, rows| {
                            match s.ffn.act() {
                                Activation::Gelu => act::gelu(isa, rows, gk),
                                // Refused when the model is built (arch::check_supported).
                                Activation::Silu | Activation::Relu => {
                                    act::gelu(isa, rows, Gelu::Tanh)
                                }
                            }
                        });
                    }
                });
                let hidden = if gated { &*gate } else { &*up };
                rec.op(id(OpKind::FfnDown), || {
                    proj(&lw.down, &lw.down_bias, hidden, o)
                });
            }
            if let Some(n) = &lw.ffn_post_norm {
                rec.op(id(OpKind::FfnPostNorm), || apply_norm(o, n));
            }
            rec.op(id(OpKind::FfnResidual), || {
                if s.parallel_residual {
                    add_rows(resid, o);
                    x.copy_from_slice(resid);
                } else {
                    add_rows(x, o);
                }
            });
        }

        let (first, rows) = match logits {
            Logits::Last => (t - 1, 1),
            Logits::All => (0, t),
        };
        let xs = &mut xn[..rows * h];
        rec.op(OpId::global(OpKind::FinalNorm), || {
            xs.copy_from_slice(&x[first * h..(first + rows) * h]);
            apply_norm(xs, &weights.final_norm);
        });
        let vocab = vocab as usize;
        let out = &mut sc.logits[..rows * vocab];
        rec.op(OpId::global(OpKind::LmHead), || {
            crate::weights::matmul(isa, pool, xs, rows, weights.head(), None, out);
            if let Some(cap) = a.final_softcap {
                attn::softcap(isa, out, cap);
            }
        });
        cache.set_len(end);
        Ok(&sc.logits[..rows * vocab])
    }
}

fn rope_tables(def: &ModelDef, positions: usize) -> (RopeTable, Option<RopeTable>) {
    let rot = def.spec.rotary_dims as usize;
    let a = &def.arch;
    let global = RopeTable::new(rot, a.rope_theta, &a.rope_scaling, positions);
    let local = a
        .rope_local_theta
        .map(|theta| RopeTable::new(rot, theta, &a.rope_local_scaling, positions));
    (global, local)
}
