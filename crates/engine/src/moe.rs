//! Mixture-of-experts FFN layers, operator by operator under the cost model's ids
//! (`crates/model/src/cost.rs`): `MoeRouter` (router logits, scoring, top-k), `MoeExperts`
//! (every routed token through its experts' SwiGLU/GeGLU, weighted and summed), and
//! `MoeSharedExperts` (the always-on shared MLP, added in; Qwen2-MoE scales it by a sigmoid
//! gate). Dense layers of a MoE model (`first_k_dense_replace`, `mlp_only_layers`,
//! `decoder_sparse_step`, as `ModelSpec::layers` says) run the ordinary dense MLP in `model.rs`.
//!
//! Routing ([`route`]) follows DeepSeek-V2/V3's `MoEGate` and the Qwen/Mixtral sparse blocks:
//! softmax or sigmoid scores, optional `e_score_correction_bias` for the choice only
//! (`noaux_tc`), group-limited choice (`n_group`/`topk_group`: a group scores its best expert,
//! or the sum of its best two with `noaux_tc`), top-k (ties: the lower expert index),
//! `norm_topk_prob`, `routed_scaling_factor`.
//!
//! Each MoE layer reports the experts it chose to the [`Recorder`] (the bench's expert-hit
//! histogram): the weight bytes a MoE step really reads depend on which experts were hit.
//!
//! Not here: expert parallelism, capacity limits / token dropping, auxiliary losses.

use crate::arch::{ModelDef, RouterParams, Scoring, TopkMethod};
use crate::error::EngineError;
use crate::recorder::Recorder;
use crate::weights::{Key, LKey, Mat, Source};
use rooflinebench_kernels::engine::{act, ThreadPool, WeightDtype};
use rooflinebench_kernels::isa::Isa;
use rooflinebench_model::op::{OpId, OpKind};
use rooflinebench_model::spec::{Activation, ModelSpec};
use std::cell::RefCell;
use std::cmp::Ordering;

/// One SwiGLU/GeGLU MLP: `down(act(gate x) * up x)`.
#[derive(Clone, Debug)]
pub struct Expert {
    pub gate: Mat,
    pub up: Mat,
    pub down: Mat,
}

/// One MoE layer's weights.
#[derive(Clone, Debug)]
pub struct MoeWeights {
    /// `mlp.gate` (`experts x hidden`), f32 as the cost model counts it.
    pub router: Mat,
    /// DeepSeek-V3 `e_score_correction_bias` (`noaux_tc`).
    pub router_bias: Option<Vec<f32>>,
    pub experts: Vec<Expert>,
    /// Shared experts as one MLP of `shared_intermediate_size`.
    pub shared: Option<Expert>,
    /// Qwen2-MoE `shared_expert_gate` (`hidden`).
    pub shared_gate: Option<Vec<f32>>,
}

impl MoeWeights {
    /// Every matrix (router, experts, shared), for byte counts and tests.
    pub fn mats(&self) -> Vec<&Mat> {
        let mut v = vec![&self.router];
        for e in self.experts.iter().chain(&self.shared) {
            v.extend([&e.gate, &e.up, &e.down]);
        }
        v
    }

    pub fn bytes(&self) -> usize {
        let vecs = self.router_bias.as_ref().map_or(0, Vec::len)
            + self.shared_gate.as_ref().map_or(0, Vec::len);
        self.mats().iter().map(|m| m.bytes()).sum::<usize>() + 4 * vecs
    }
}

fn expert(
    src: &mut dyn Source,
    dtype: WeightDtype,
    keys: [LKey; 3],
    i: usize,
    h: usize,
    inter: usize,
) -> Result<Expert, EngineError> {
    let k = |lk| Key::Layer(i, lk);
    Ok(Expert {
        gate: src.mat(k(keys[0]), inter, h, dtype)?,
        up: src.mat(k(keys[1]), inter, h, dtype)?,
        down: src.mat(k(keys[2]), h, inter, dtype)?,
    })
}

/// Builds layer `i`'s MoE weights (`None` for a dense layer or a dense model).
pub fn build_layer(
    def: &ModelDef,
    dtype: WeightDtype,
    src: &mut dyn Source,
    i: usize,
) -> Result<Option<MoeWeights>, EngineError> {
    let s = &def.spec;
    let Some(m) = s.ffn.moe().filter(|_| s.layers[i].moe) else {
        return Ok(None);
    };
    let h = s.hidden_size as usize;
    let k = |lk| Key::Layer(i, lk);
    let e = m.num_experts as usize;
    let router = src.mat(k(LKey::MoeRouter), e, h, WeightDtype::F32)?;
    let router_bias = if m.router_bias {
        Some(src.vec(k(LKey::MoeRouterBias), e)?)
    } else {
        None
    };
    let inter = m.expert_intermediate_size as usize;
    let experts = (0..e as u32)
        .map(|x| {
            let keys = [LKey::ExpGate(x), LKey::ExpUp(x), LKey::ExpDown(x)];
            expert(src, dtype, keys, i, h, inter)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = if m.shared_intermediate_size > 0 {
        let keys = [LKey::ShGate, LKey::ShUp, LKey::ShDown];
        Some(expert(
            src,
            dtype,
            keys,
            i,
            h,
            m.shared_intermediate_size as usize,
        )?)
    } else {
        None
    };
    let shared_gate = if m.shared_expert_gate {
        Some(src.vec(k(LKey::ShGateVec), h)?)
    } else {
        None
    };
    Ok(Some(MoeWeights {
        router,
        router_bias,
        experts,
        shared,
        shared_gate,
    }))
}

/// Bytes of all MoE layers' weights of `spec` at `esize` bytes per matrix element (router f32),
/// for the memory check before allocating; `None` on overflow.
pub fn weight_bytes(spec: &ModelSpec, esize: u64) -> Option<u64> {
    let Some(m) = spec.ffn.moe() else {
        return Some(0);
    };
    let h = spec.hidden_size;
    let experts = m
        .num_experts
        .checked_mul(3)?
        .checked_mul(h)?
        .checked_mul(m.expert_intermediate_size)?
        .checked_mul(esize)?;
    let shared = 3u64
        .checked_mul(h)?
        .checked_mul(m.shared_intermediate_size)?
        .checked_mul(esize)?;
    let router = 4u64.checked_mul(m.num_experts)?.checked_mul(h + 2)?;
    experts
        .checked_add(shared)?
        .checked_add(router)?
        .checked_mul(spec.moe_layers())
}

/// Chooses `chosen.len()` experts for one token from its router `logits` and writes their
/// weights. `scores` is scratch of at least `2 * logits.len()` elements. See the module doc.
pub fn route(
    p: &RouterParams,
    logits: &[f32],
    bias: Option<&[f32]>,
    scores: &mut [f32],
    chosen: &mut [u32],
    weights: &mut [f32],
) {
    let e = logits.len();
    let k = chosen.len();
    let (score, choice) = scores[..2 * e].split_at_mut(e);
    match p.scoring {
        Scoring::Softmax => {
            let max = logits
                .iter()
                .copied()
                .max_by(|a, b| a.total_cmp(b))
                .unwrap_or(0.0);
            let mut sum = 0.0f32;
            for (s, &x) in score.iter_mut().zip(logits) {
                *s = (x - max).exp();
                sum += *s;
            }
            score.iter_mut().for_each(|s| *s /= sum);
        }
        Scoring::Sigmoid => {
            for (s, &x) in score.iter_mut().zip(logits) {
                *s = 1.0 / (1.0 + (-x).exp());
            }
        }
    }
    for (j, c) in choice.iter_mut().enumerate() {
        *c = score[j] + bias.map_or(0.0, |b| b[j]);
    }
    // Group limit: experts outside the `topk_group` best groups cannot be chosen.
    let groups = p.n_group.max(1);
    if p.method != TopkMethod::Greedy && groups > 1 && p.topk_group < groups {
        let per = e / groups;
        let gscore = |g: usize| -> f32 {
            let members = &choice[g * per..(g + 1) * per];
            match p.method {
                TopkMethod::NoauxTc => {
                    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                    for &x in members {
                        if x > a {
                            b = a;
                            a = x;
                        } else if x > b {
                            b = x;
                        }
                    }
                    a + if b.is_finite() { b } else { 0.0 }
                }
                TopkMethod::Greedy | TopkMethod::GroupLimited => members
                    .iter()
                    .copied()
                    .max_by(|a, b| a.total_cmp(b))
                    .unwrap_or(f32::NEG_INFINITY),
            }
        };
        let mut kept = vec![false; groups];
        for _ in 0..p.topk_group {
            let best = (0..groups)
                .filter(|&g| !kept[g])
                .max_by(|&a, &b| gscore(a).total_cmp(&gscore(b)).then(b.cmp(&a)));
            if let Some(g) = best {
                kept[g] = true;
            }
        }
        for (g, keep) in kept.iter().enumerate() {
            if !keep {
                choice[g * per..(g + 1) * per].fill(f32::NEG_INFINITY);
            }
        }
    }
    // Top-k, ties to the lower index.
    for slot in 0..k {
        let mut best: Option<usize> = None;
        for j in 0..e {
            if chosen[..slot].contains(&(j as u32)) || choice[j] == f32::NEG_INFINITY {
                continue;
            }
            if best.is_none_or(|b| choice[j].total_cmp(&choice[b]) == Ordering::Greater) {
                best = Some(j);
            }
        }
        let b = best.unwrap_or(0);
        chosen[slot] = b as u32;
        weights[slot] = score[b];
    }
    let normalize = p.norm_topk_prob && (k > 1 || !p.norm_needs_k_gt_1);
    if normalize {
        let sum: f32 = weights.iter().sum::<f32>() + 1e-20;
        weights.iter_mut().for_each(|w| *w /= sum);
    }
    if p.method == TopkMethod::NoauxTc || !normalize {
        weights
            .iter_mut()
            .for_each(|w| *w *= p.routed_scaling_factor);
    }
}

#[derive(Default)]
struct Scratch {
    logits: Vec<f32>,
    scores: Vec<f32>,
    chosen: Vec<u32>,
    weights: Vec<f32>,
    /// Token-slot indices grouped by expert, and each expert's start in it.
    order: Vec<usize>,
    starts: Vec<usize>,
    xs: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    ys: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn buf<T: Copy>(v: &mut Vec<T>, n: usize, fill: T) -> &mut [T] {
    if v.len() < n {
        *v = vec![fill; n];
    }
    &mut v[..n]
}

/// What the MoE block needs from the model.
pub(crate) struct Ctx<'a> {
    pub def: &'a ModelDef,
    pub isa: Isa,
    pub pool: &'a ThreadPool,
}

/// `out (m x rows) = input (m x cols) W^T`, through the engine's projection dispatch (dense or
/// quantized weights).
fn matmul(c: &Ctx<'_>, w: &Mat, input: &[f32], m: usize, out: &mut [f32]) {
    crate::weights::matmul(c.isa, c.pool, input, m, w, None, out)
}

/// One gated MLP on `m` rows of `x`, result in `y` (`[m][hidden]`).
#[allow(clippy::too_many_arguments)]
fn mlp(c: &Ctx<'_>, e: &Expert, x: &[f32], m: usize, g: &mut [f32], u: &mut [f32], y: &mut [f32]) {
    let inter = e.gate.rows;
    let (g, u) = (&mut g[..m * inter], &mut u[..m * inter]);
    matmul(c, &e.gate, x, m, g);
    matmul(c, &e.up, x, m, u);
    match c.def.spec.ffn.act() {
        Activation::Gelu => act::gelu_mul(c.isa, g, u, c.def.arch.gelu.kernel()),
        // ReLU MoE is refused by arch::check_supported.
        Activation::Silu | Activation::Relu => act::silu_mul(c.isa, g, u),
    }
    matmul(c, &e.down, g, m, y);
}

/// Runs the MoE FFN of layer `l` on the `t` normed rows `xn`, writing the FFN output into `out`
/// (`[t][hidden]`).
pub(crate) fn ffn<R: Recorder>(
    c: &Ctx<'_>,
    w: &MoeWeights,
    l: usize,
    xn: &[f32],
    t: usize,
    out: &mut [f32],
    rec: &mut R,
) {
    let (Some(m), Some(rp)) = (c.def.spec.ffn.moe(), c.def.arch.router.as_ref()) else {
        return;
    };
    let id = |kind| OpId::layer(l as u32, kind);
    let h = c.def.spec.hidden_size as usize;
    let e = m.num_experts as usize;
    let k = m.top_k as usize;
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let Scratch {
            logits,
            scores,
            chosen,
            weights,
            order,
            starts,
            xs,
            g,
            u,
            ys,
        } = &mut *s;
        let logits = buf(logits, t * e, f32::NAN);
        let scores = buf(scores, 2 * e, f32::NAN);
        let chosen = buf(chosen, t * k, 0);
        let weights = buf(weights, t * k, f32::NAN);
        rec.op(id(OpKind::MoeRouter), || {
            matmul(c, &w.router, xn, t, logits);
            for i in 0..t {
                route(
                    rp,
                    &logits[i * e..(i + 1) * e],
                    w.router_bias.as_deref(),
                    scores,
                    &mut chosen[i * k..(i + 1) * k],
                    &mut weights[i * k..(i + 1) * k],
                );
            }
        });
        rec.experts(l as u32, e, chosen);

        let inter = m.expert_intermediate_size as usize;
        let order = buf(order, t * k, 0);
        let starts = buf(starts, e + 1, 0);
        let cap = t.max(1);
        let xs = buf(xs, cap * h, f32::NAN);
        let g = buf(
            g,
            cap * inter.max(m.shared_intermediate_size as usize),
            f32::NAN,
        );
        let u = buf(
            u,
            cap * inter.max(m.shared_intermediate_size as usize),
            f32::NAN,
        );
        let ys = buf(ys, cap * h, f32::NAN);
        let out = &mut out[..t * h];
        rec.op(id(OpKind::MoeExperts), || {
            // Counting sort of the token-slots by expert.
            starts.fill(0);
            for &x in chosen.iter() {
                starts[x as usize + 1] += 1;
            }
            for x in 0..e {
                starts[x + 1] += starts[x];
            }
            let mut fill = starts[..e].to_vec();
            for (slot, &x) in chosen.iter().enumerate() {
                order[fill[x as usize]] = slot;
                fill[x as usize] += 1;
            }
            out.fill(0.0);
            for (x, ex) in w.experts.iter().enumerate() {
                let slots = &order[starts[x]..starts[x + 1]];
                let n = slots.len();
                if n == 0 {
                    continue;
                }
                for (r, &slot) in slots.iter().enumerate() {
                    let tok = slot / k;
                    xs[r * h..(r + 1) * h].copy_from_slice(&xn[tok * h..(tok + 1) * h]);
                }
                mlp(c, ex, &xs[..n * h], n, g, u, &mut ys[..n * h]);
                for (r, &slot) in slots.iter().enumerate() {
                    let tok = slot / k;
                    let wt = weights[slot];
                    for (o, y) in out[tok * h..(tok + 1) * h]
                        .iter_mut()
                        .zip(&ys[r * h..(r + 1) * h])
                    {
                        *o += wt * y;
                    }
                }
            }
        });
        if let Some(sh) = &w.shared {
            rec.op(id(OpKind::MoeSharedExperts), || {
                mlp(c, sh, xn, t, g, u, &mut ys[..t * h]);
                for i in 0..t {
                    let gate = w.shared_gate.as_ref().map_or(1.0, |gw| {
                        let z: f32 = xn[i * h..(i + 1) * h]
                            .iter()
                            .zip(gw)
                            .map(|(a, b)| a * b)
                            .sum();
                        1.0 / (1.0 + (-z).exp())
                    });
                    for (o, y) in out[i * h..(i + 1) * h]
                        .iter_mut()
                        .zip(&ys[i * h..(i + 1) * h])
                    {
                        *o += gate * y;
                    }
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(method: TopkMethod, n_group: usize, topk_group: usize, norm: bool) -> RouterParams {
        RouterParams {
            scoring: Scoring::Softmax,
            method,
            n_group,
            topk_group,
            norm_topk_prob: norm,
            norm_needs_k_gt_1: true,
            routed_scaling_factor: 2.5,
        }
    }

    #[test]
    fn top_k_picks_the_largest_scores_in_order() {
        let logits = [0.1, 3.0, -1.0, 2.0, 2.5, 0.0, 1.0, -2.0];
        let p = params(TopkMethod::Greedy, 1, 1, false);
        let (mut s, mut c, mut w) = ([0.0; 16], [0u32; 3], [0.0; 3]);
        route(&p, &logits, None, &mut s, &mut c, &mut w);
        assert_eq!(c, [1, 4, 3]);
        // not normalised: softmax probabilities times routed_scaling_factor
        let z: f32 = logits.iter().map(|x| x.exp()).sum();
        assert!((w[0] - 2.5 * 3.0f32.exp() / z).abs() < 1e-6);
    }

    #[test]
    fn group_limit_is_respected() {
        // Groups of 2: {0,1} {2,3} {4,5} {6,7}. Best per group: 0.9, 5.0, 4.0, 1.0.
        let logits = [0.9, 0.0, 5.0, -3.0, 4.0, 3.9, 1.0, 0.5];
        let p = params(TopkMethod::GroupLimited, 4, 2, true);
        let (mut s, mut c, mut w) = ([0.0; 16], [0u32; 3], [0.0; 3]);
        route(&p, &logits, None, &mut s, &mut c, &mut w);
        assert_eq!(c, [2, 4, 5]);
        assert!(c.iter().all(|&x| (2..6).contains(&x)));
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6, "normalised");
    }

    #[test]
    fn noaux_tc_chooses_on_biased_scores_but_weighs_unbiased() {
        let logits = [0.0, 0.0, 0.0, 0.0];
        let bias = [0.0, 0.3, 0.0, 0.1];
        let mut p = params(TopkMethod::NoauxTc, 1, 1, true);
        p.scoring = Scoring::Sigmoid;
        let (mut s, mut c, mut w) = ([0.0; 8], [0u32; 2], [0.0; 2]);
        route(&p, &logits, Some(&bias), &mut s, &mut c, &mut w);
        assert_eq!(c, [1, 3]);
        // both unbiased scores are sigmoid(0): normalised 0.5 each, then scaled by 2.5
        assert!(w.iter().all(|&x| (x - 1.25).abs() < 1e-6), "{w:?}");
    }
}
