//! Attention over a KV cache, as three kernels the engine times separately (they are three
//! operators of the cost table): scores `S = scale * Q K^T`, row softmax, and `O = softmax(S) V`.
//!
//! Layouts (f32): queries and outputs `[n_q][n_heads * head_dim]` (token-major, as the
//! projections produce them); the cache of one layer `[n_kv_heads][kv_stride][head_dim]`, so one
//! head's keys stream contiguously; scores `[n_kv_heads][n_q][group][ctx]` with
//! `group = n_heads / n_kv_heads` and `ctx = q_pos0 + n_q`. Query `i` (absolute position
//! `q_pos0 + i`) attends to keys `[lo, q_pos0 + i]` (causal; `lo > 0` with a sliding window); the
//! other entries of its score row are never read. GQA/MQA: the `group` query heads sharing a KV
//! head are processed together so each key and value row is loaded once for all of them.
//!
//! Work is split across the pool by (KV head, block of queries), handed out dynamically so the
//! longer rows of a causal prefill balance themselves.
//!
//! Accounting (per query row of length L, per head): scores `2 * L * head_dim` FLOPs and
//! `L * head_dim * 4` key bytes per KV head; values the same with value bytes; softmax ~`5 L`.

use super::gemm::sgemm_strided;
use super::simd::{dispatch, exp_approx, has_x86_variant, hsum, isa_variants, tanh_approx, LANES};
use super::{SendPtr, ThreadPool};
use crate::isa::Isa;

/// Queries per work item for short calls (decode, small prefills).
const QBLOCK: usize = 8;
/// Queries per work item from [`GEMM_MIN_Q`] queries on, where scores and values run as small
/// matrix products (`gemm` crate) over each block's key rectangle.
const QBLOCK_GEMM: usize = 32;
/// Query count from which the matrix-product path is used.
const GEMM_MIN_Q: usize = 16;

/// The geometry of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    /// Query tokens in this call.
    pub n_q: usize,
    /// Absolute position of the first query (tokens already in the cache before it).
    pub q_pos0: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Positions per KV head in the cache buffer (its capacity).
    pub kv_stride: usize,
    /// Sliding window: a query attends to at most this many most recent positions.
    pub window: Option<usize>,
    /// Score scale, usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Gemma2's logit soft-cap: scores become `cap * tanh(score / cap)` before the softmax.
    pub softcap: Option<f32>,
}

impl AttnShape {
    /// Key positions of the last query: the score row stride.
    pub fn ctx(&self) -> usize {
        self.q_pos0 + self.n_q
    }
    pub fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }
    /// Elements of the scores buffer.
    pub fn scores_len(&self) -> usize {
        self.n_heads * self.n_q * self.ctx()
    }
    /// Keys `[lo, hi)` that query `i` attends to.
    pub fn keys(&self, i: usize) -> (usize, usize) {
        let hi = self.q_pos0 + i + 1;
        let lo = self.window.map_or(0, |w| hi.saturating_sub(w.max(1)));
        (lo, hi)
    }

    fn check(&self, q: usize, cache: usize, scores: usize, out: usize) {
        assert!(
            self.n_kv_heads > 0 && self.n_heads.is_multiple_of(self.n_kv_heads),
            "attn: heads"
        );
        assert!(self.ctx() <= self.kv_stride, "attn: cache too short");
        let row = self.n_heads * self.head_dim;
        assert_eq!(q, self.n_q * row, "attn: q/out length");
        assert_eq!(out, self.n_q * row, "attn: q/out length");
        assert_eq!(
            cache,
            self.n_kv_heads * self.kv_stride * self.head_dim,
            "attn: cache length"
        );
        assert_eq!(scores, self.scores_len(), "attn: scores length");
    }

    fn qblock(&self) -> usize {
        if self.n_q >= GEMM_MIN_Q {
            QBLOCK_GEMM
        } else {
            QBLOCK
        }
    }

    fn items(&self) -> usize {
        self.n_kv_heads * self.n_q.div_ceil(self.qblock())
    }

    /// (kv head, first query, end query) of work item `it`.
    fn item(&self, it: usize) -> (usize, usize, usize) {
        let qb = self.qblock();
        let blocks = self.n_q.div_ceil(qb);
        let (kvh, b) = (it / blocks, it % blocks);
        (kvh, b * qb, ((b + 1) * qb).min(self.n_q))
    }

    /// The keys any query of `i0..i1` attends to: `[lo of i0, hi of i1 - 1)`.
    fn rect(&self, i0: usize, i1: usize) -> (usize, usize) {
        (self.keys(i0).0, self.keys(i1 - 1).1)
    }

    /// Offset of score row (kv head, query i, head-in-group 0).
    fn srow(&self, kvh: usize, i: usize) -> usize {
        ((kvh * self.n_q + i) * self.group()) * self.ctx()
    }
}

// ---------- scalar twins ----------

/// Scalar twin of [`attn_scores`].
pub fn attn_scores_scalar(s: &AttnShape, q: &[f32], k: &[f32], scores: &mut [f32]) {
    s.check(q.len(), k.len(), scores.len(), q.len());
    let (g, hd, ctx) = (s.group(), s.head_dim, s.ctx());
    for kvh in 0..s.n_kv_heads {
        for i in 0..s.n_q {
            let (lo, hi) = s.keys(i);
            for hg in 0..g {
                let h = kvh * g + hg;
                let qv = &q[(i * s.n_heads + h) * hd..][..hd];
                let row = s.srow(kvh, i) + hg * ctx;
                for j in lo..hi {
                    let kv = &k[(kvh * s.kv_stride + j) * hd..][..hd];
                    let mut acc = 0.0f32;
                    for d in 0..hd {
                        acc += qv[d] * kv[d];
                    }
                    scores[row + j] = acc * s.scale;
                }
            }
        }
    }
}

/// Scalar twin of [`attn_softmax`].
pub fn attn_softmax_scalar(s: &AttnShape, scores: &mut [f32]) {
    assert_eq!(scores.len(), s.scores_len(), "attn: scores length");
    let (g, ctx) = (s.group(), s.ctx());
    for kvh in 0..s.n_kv_heads {
        for i in 0..s.n_q {
            let (lo, hi) = s.keys(i);
            for hg in 0..g {
                let row = s.srow(kvh, i) + hg * ctx;
                let r = &mut scores[row + lo..row + hi];
                if let Some(cap) = s.softcap {
                    for v in r.iter_mut() {
                        *v = cap * (*v / cap).tanh();
                    }
                }
                softmax_scalar(r);
            }
        }
    }
}

/// Numerically stable softmax of one row, scalar twin of [`softmax`].
pub fn softmax_scalar(x: &mut [f32]) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Scalar twin of [`attn_values`].
pub fn attn_values_scalar(s: &AttnShape, p: &[f32], v: &[f32], out: &mut [f32]) {
    s.check(out.len(), v.len(), p.len(), out.len());
    let (g, hd, ctx) = (s.group(), s.head_dim, s.ctx());
    for kvh in 0..s.n_kv_heads {
        for i in 0..s.n_q {
            let (lo, hi) = s.keys(i);
            for hg in 0..g {
                let h = kvh * g + hg;
                let row = s.srow(kvh, i) + hg * ctx;
                let o = &mut out[(i * s.n_heads + h) * hd..][..hd];
                o.fill(0.0);
                for j in lo..hi {
                    let vv = &v[(kvh * s.kv_stride + j) * hd..][..hd];
                    for d in 0..hd {
                        o[d] += p[row + j] * vv[d];
                    }
                }
            }
        }
    }
}

// ---------- SIMD bodies ----------

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = hsum(&acc);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// Scores of the `g` query heads `q` (g x hd) of one token against keys `lo..hi` of one KV head
/// (`k`: that head's cache), into `out` (g rows of `ctx`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scores_row_lanes(
    q: &[f32],
    k: &[f32],
    hd: usize,
    lo: usize,
    hi: usize,
    ctx: usize,
    scale: f32,
    out: &mut [f32],
) {
    let g = q.len() / hd;
    for j in lo..hi {
        let kj = &k[j * hd..(j + 1) * hd];
        for h in 0..g {
            out[h * ctx + j] = dot_lanes(&q[h * hd..(h + 1) * hd], kj) * scale;
        }
    }
}
isa_variants!(scores_row_lanes => scores_row_avx2, scores_row_avx512;
    (q: &[f32], k: &[f32], hd: usize, lo: usize, hi: usize, ctx: usize, scale: f32,
     out: &mut [f32]));

#[inline(always)]
fn softmax_lanes(x: &mut [f32]) {
    let mut mx = [f32::NEG_INFINITY; LANES];
    let mut ch = x.chunks_exact(LANES);
    // `if a > b` rather than `f32::max`: the latter's NaN rule kept LLVM from emitting `vmaxps`
    // (the loop was scalarized); scores are never NaN.
    for c in &mut ch {
        for l in 0..LANES {
            mx[l] = if c[l] > mx[l] { c[l] } else { mx[l] };
        }
    }
    let mut m = ch
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for v in mx {
        m = m.max(v);
    }
    let mut acc = [0.0f32; LANES];
    let mut ch = x.chunks_exact_mut(LANES);
    for c in &mut ch {
        for l in 0..LANES {
            c[l] = exp_approx(c[l] - m);
            acc[l] += c[l];
        }
    }
    let mut sum = hsum(&acc);
    for v in ch.into_remainder() {
        *v = exp_approx(*v - m);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
isa_variants!(softmax_lanes => softmax_avx2, softmax_avx512; (x: &mut [f32]));

/// Numerically stable softmax of one row, in place.
pub fn softmax(isa: Isa, x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    dispatch!(isa,
        scalar => softmax_scalar(x),
        avx2 => softmax_avx2(x),
        avx512 => softmax_avx512(x))
}

#[inline(always)]
fn softcap_lanes(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x.iter_mut() {
        *v = cap * tanh_approx(*v * inv);
    }
}
isa_variants!(softcap_lanes => softcap_avx2, softcap_avx512; (x: &mut [f32], cap: f32));

/// `x = cap * tanh(x / cap)` in place (Gemma2 attention and final-logit soft-capping).
pub fn softcap(isa: Isa, x: &mut [f32], cap: f32) {
    dispatch!(isa,
        scalar => x.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh()),
        avx2 => softcap_avx2(x, cap),
        avx512 => softcap_avx512(x, cap))
}

/// `out` (g x hd) = probabilities `p` (g rows of `ctx`, keys `lo..hi`) times values `v`.
#[inline(always)]
fn values_row_lanes(
    p: &[f32],
    v: &[f32],
    hd: usize,
    lo: usize,
    hi: usize,
    ctx: usize,
    out: &mut [f32],
) {
    let g = out.len() / hd;
    out.fill(0.0);
    for j in lo..hi {
        let vj = &v[j * hd..(j + 1) * hd];
        for h in 0..g {
            let w = p[h * ctx + j];
            let o = &mut out[h * hd..(h + 1) * hd];
            for (a, b) in o.iter_mut().zip(vj) {
                *a += w * b;
            }
        }
    }
}
isa_variants!(values_row_lanes => values_row_avx2, values_row_avx512;
    (p: &[f32], v: &[f32], hd: usize, lo: usize, hi: usize, ctx: usize, out: &mut [f32]));

// ---------- threaded entry points ----------

thread_local! {
    /// Per-thread block of one KV head's query (or output) rows for the matrix-product path.
    static GROUP_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Queries `i0..i1` of the `g` heads sharing KV head `kvh`, as `(i - i0) * g + hg` rows of
/// `head_dim` in `buf`.
fn gather_group(s: &AttnShape, q: &[f32], kvh: usize, i0: usize, i1: usize, buf: &mut Vec<f32>) {
    let gw = s.group() * s.head_dim;
    buf.clear();
    for i in i0..i1 {
        let at = (i * s.n_heads + kvh * s.group()) * s.head_dim;
        buf.extend_from_slice(&q[at..at + gw]);
    }
}

/// `scores = scale * Q K^T` over each query's keys. See the module doc for layouts.
pub fn attn_scores(
    isa: Isa,
    pool: &ThreadPool,
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    scores: &mut [f32],
) {
    s.check(q.len(), k.len(), scores.len(), q.len());
    if !has_x86_variant(isa) {
        attn_scores_scalar(s, q, k, scores);
        return;
    }
    let (g, hd, ctx) = (s.group(), s.head_dim, s.ctx());
    let sp = SendPtr(scores.as_mut_ptr());
    if s.n_q >= GEMM_MIN_Q {
        pool.run_items(s.items(), &|it| {
            let (kvh, i0, i1) = s.item(it);
            let (r0, r1) = s.rect(i0, i1);
            GROUP_BUF.with(|b| {
                let mut b = b.borrow_mut();
                // The block's queries of this KV head's `g` heads, as (i, hg) rows of `hd`:
                // one matrix product for the whole group instead of `g` small ones (their rows
                // are `g * hd`-contiguous per token, but tokens are `n_heads * hd` apart).
                gather_group(s, q, kvh, i0, i1, &mut b);
                // SAFETY: reads stay inside the gathered block ((i1 - i0) * g rows of hd) and
                // `k` (kv head kvh, positions r0..r1 <= ctx <= kv_stride); writes go to score
                // rows (kvh, i0..i1, 0..g), which are consecutive rows of `ctx` from
                // `srow(kvh, i0)`, columns r0..r1 < ctx, and belong to this item alone.
                unsafe {
                    sgemm_strided(
                        (i1 - i0) * g,
                        r1 - r0,
                        hd,
                        sp.ptr().add(s.srow(kvh, i0) + r0),
                        ctx as isize,
                        b.as_ptr(),
                        hd as isize,
                        1,
                        k.as_ptr().add((kvh * s.kv_stride + r0) * hd),
                        1,
                        hd as isize,
                        s.scale,
                    )
                };
            });
        });
        return;
    }
    pool.run_items(s.items(), &|it| {
        let (kvh, i0, i1) = s.item(it);
        let kh = &k[kvh * s.kv_stride * hd..(kvh + 1) * s.kv_stride * hd];
        for i in i0..i1 {
            let (lo, hi) = s.keys(i);
            let qg = &q[(i * s.n_heads + kvh * g) * hd..][..g * hd];
            // SAFETY: score rows (kvh, i, 0..g) belong to this item alone; `scores` outlives
            // the pool run.
            let out =
                unsafe { std::slice::from_raw_parts_mut(sp.ptr().add(s.srow(kvh, i)), g * ctx) };
            dispatch!(isa,
                scalar => unreachable!(),
                avx2 => scores_row_avx2(qg, kh, hd, lo, hi, ctx, s.scale, out),
                avx512 => scores_row_avx512(qg, kh, hd, lo, hi, ctx, s.scale, out));
        }
    });
}

/// Softmax of every score row over its keys, in place.
pub fn attn_softmax(isa: Isa, pool: &ThreadPool, s: &AttnShape, scores: &mut [f32]) {
    assert_eq!(scores.len(), s.scores_len(), "attn: scores length");
    if !has_x86_variant(isa) {
        attn_softmax_scalar(s, scores);
        return;
    }
    let (g, ctx) = (s.group(), s.ctx());
    let sp = SendPtr(scores.as_mut_ptr());
    let gemm_path = s.n_q >= GEMM_MIN_Q;
    pool.run_items(s.items(), &|it| {
        let (kvh, i0, i1) = s.item(it);
        let (r0, r1) = s.rect(i0, i1);
        for i in i0..i1 {
            let (lo, hi) = s.keys(i);
            for hg in 0..g {
                let row = s.srow(kvh, i) + hg * ctx;
                if gemm_path {
                    // The value product runs over the block's whole key rectangle: masked
                    // entries must be exact zeros.
                    // SAFETY: as below; r0 <= lo <= hi <= r1 <= ctx.
                    unsafe {
                        std::slice::from_raw_parts_mut(sp.ptr().add(row + r0), lo - r0).fill(0.0);
                        std::slice::from_raw_parts_mut(sp.ptr().add(row + hi), r1 - hi).fill(0.0);
                    }
                }
                // SAFETY: as in `attn_scores`.
                let r = unsafe { std::slice::from_raw_parts_mut(sp.ptr().add(row + lo), hi - lo) };
                if let Some(cap) = s.softcap {
                    softcap(isa, r, cap);
                }
                softmax(isa, r);
            }
        }
    });
}

/// `out = P V` for every query and head. See the module doc for layouts.
pub fn attn_values(
    isa: Isa,
    pool: &ThreadPool,
    s: &AttnShape,
    p: &[f32],
    v: &[f32],
    out: &mut [f32],
) {
    s.check(out.len(), v.len(), p.len(), out.len());
    if !has_x86_variant(isa) {
        attn_values_scalar(s, p, v, out);
        return;
    }
    let (g, hd, ctx) = (s.group(), s.head_dim, s.ctx());
    let op = SendPtr(out.as_mut_ptr());
    if s.n_q >= GEMM_MIN_Q {
        pool.run_items(s.items(), &|it| {
            let (kvh, i0, i1) = s.item(it);
            let (r0, r1) = s.rect(i0, i1);
            let rows = (i1 - i0) * g;
            GROUP_BUF.with(|b| {
                let mut b = b.borrow_mut();
                b.resize(rows * hd, 0.0);
                // SAFETY: reads stay inside `p` (score rows (kvh, i0..i1, 0..g): consecutive
                // rows of `ctx` from `srow(kvh, i0)`, columns r0..r1, zero outside each row's
                // keys: see `attn_softmax`) and `v` (kv head kvh, positions r0..r1); writes go
                // to the block buffer (rows x hd), scattered below.
                unsafe {
                    sgemm_strided(
                        rows,
                        hd,
                        r1 - r0,
                        b.as_mut_ptr(),
                        hd as isize,
                        p.as_ptr().add(s.srow(kvh, i0) + r0),
                        ctx as isize,
                        1,
                        v.as_ptr().add((kvh * s.kv_stride + r0) * hd),
                        hd as isize,
                        1,
                        1.0,
                    )
                };
                for (i, src) in (i0..i1).zip(b.chunks_exact(g * hd)) {
                    // SAFETY: output heads (i, kvh*g .. kvh*g+g) belong to this item alone.
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            op.ptr().add((i * s.n_heads + kvh * g) * hd),
                            g * hd,
                        )
                    };
                    o.copy_from_slice(src);
                }
            });
        });
        return;
    }
    pool.run_items(s.items(), &|it| {
        let (kvh, i0, i1) = s.item(it);
        let vh = &v[kvh * s.kv_stride * hd..(kvh + 1) * s.kv_stride * hd];
        for i in i0..i1 {
            let (lo, hi) = s.keys(i);
            let pr = &p[s.srow(kvh, i)..][..g * ctx];
            // SAFETY: output heads (i, kvh*g .. kvh*g+g) belong to this item alone.
            let o = unsafe {
                std::slice::from_raw_parts_mut(op.ptr().add((i * s.n_heads + kvh * g) * hd), g * hd)
            };
            dispatch!(isa,
                scalar => unreachable!(),
                avx2 => values_row_avx2(pr, vh, hd, lo, hi, ctx, o),
                avx512 => values_row_avx512(pr, vh, hd, lo, hi, ctx, o));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testutil::{assert_close, isas, rand_vec, SIZES};

    #[test]
    fn softmax_matches_scalar_twin_on_every_isa() {
        for isa in isas() {
            for n in SIZES.into_iter().filter(|&n| n > 0) {
                let x: Vec<f32> = rand_vec(n, 21).iter().map(|v| v * 20.0).collect();
                let (mut want, mut got) = (x.clone(), x.clone());
                softmax_scalar(&mut want);
                softmax(isa, &mut got);
                assert_close(&got, &want, 1e-6, &format!("softmax {isa} n={n}"));
                assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            }
        }
    }

    fn run_case(s: AttnShape, threads: usize) {
        let pool = ThreadPool::new(threads);
        let row = s.n_heads * s.head_dim;
        let q = rand_vec(s.n_q * row, 31);
        let k = rand_vec(s.n_kv_heads * s.kv_stride * s.head_dim, 32);
        let v = rand_vec(s.n_kv_heads * s.kv_stride * s.head_dim, 33);
        let mut sc_want = vec![0.0; s.scores_len()];
        attn_scores_scalar(&s, &q, &k, &mut sc_want);
        attn_softmax_scalar(&s, &mut sc_want);
        let mut out_want = vec![0.0; s.n_q * row];
        attn_values_scalar(&s, &sc_want, &v, &mut out_want);
        for isa in isas() {
            let mut sc = sc_want.clone();
            attn_scores(isa, &pool, &s, &q, &k, &mut sc);
            attn_softmax(isa, &pool, &s, &mut sc);
            let mut out = vec![f32::NAN; s.n_q * row];
            attn_values(isa, &pool, &s, &sc, &v, &mut out);
            assert_close(&out, &out_want, 1e-5, &format!("attn {isa} {s:?}"));
        }
    }

    #[test]
    fn attention_matches_scalar_twin_mha_gqa_mqa_window() {
        for hd in [1usize, 7, 16, 17, 64, 65] {
            for (h, kv) in [(4usize, 4usize), (4, 2), (6, 1)] {
                for (n_q, pos0) in [(1usize, 0usize), (1, 9), (11, 0), (5, 20), (40, 0), (33, 7)] {
                    for (window, softcap) in [(None, None), (Some(4), None), (None, Some(2.0))] {
                        let s = AttnShape {
                            n_q,
                            q_pos0: pos0,
                            n_heads: h,
                            n_kv_heads: kv,
                            head_dim: hd,
                            kv_stride: pos0 + n_q + 3,
                            window,
                            scale: 1.0 / (hd as f32).sqrt(),
                            softcap,
                        };
                        run_case(s, 2);
                    }
                }
            }
        }
    }

    #[test]
    fn causal_mask_ignores_future_keys() {
        // Query 0 of a 3-token prefill sees only key 0: its output is exactly value 0.
        let s = AttnShape {
            n_q: 3,
            q_pos0: 0,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 2,
            kv_stride: 3,
            window: None,
            scale: 1.0,
            softcap: None,
        };
        let q = vec![1.0; 6];
        let k = vec![0.5; 6];
        let v = vec![1.0, 2.0, 30.0, 40.0, 500.0, 600.0];
        for isa in isas() {
            let pool = ThreadPool::new(1);
            let mut sc = vec![0.0; s.scores_len()];
            attn_scores(isa, &pool, &s, &q, &k, &mut sc);
            attn_softmax(isa, &pool, &s, &mut sc);
            let mut out = vec![0.0; 6];
            attn_values(isa, &pool, &s, &sc, &v, &mut out);
            assert_eq!(&out[..2], &[1.0, 2.0], "{isa}");
        }
    }
}
