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
//! Two paths: from [`GEMM_MIN_Q`] queries on, scores and values are small matrix products
//! (`gemm` crate) over each block's key rectangle; below it (decode), explicit AVX-512/AVX2
//! kernels (`x86` below) per query: scores as tiles of 16 (8) keys, one accumulator vector per
//! key reduced by a transpose-add tree into one store per tile and head; values with up to
//! 4 heads x 64 (16) outputs held in registers while the value rows stream by once per block
//! of heads. Both prefetch the cache ahead (a decode step finds it in DRAM or L3). Measured with
//! `examples/attn_decode.rs`. Other ISAs run the scalar twins.
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
    // The lanes' maximum as a tree and the tail with `>` too: `f32::max` chains here were
    // scalar and serial (NaN checks), a large part of a decode row's time.
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            mx[l] = if mx[l + w] > mx[l] { mx[l + w] } else { mx[l] };
        }
        w /= 2;
    }
    let mut m = mx[0];
    for &v in ch.remainder() {
        m = if v > m { v } else { m };
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

/// Decode kernels (explicit intrinsics): scores as tiles of 16 (AVX-512) or 8 (AVX2) keys of one
/// head, one accumulator vector per key, reduced by a transpose-add tree so a tile's dots end in
/// one vector store (no horizontal sum per dot); values with a block of up to 4 heads x 64
/// (AVX-512) or 4 heads x 16 (AVX2) outputs held in registers while the value rows stream by.
///
/// Same arguments as the scalar twins' inner loops: `q` the group's `g` query rows of `hd`, `k`/`v`
/// one KV head's cache rows, keys `lo..hi`, score/probability rows of stride `ctx`.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Checks the slice bounds every pointer access below relies on.
    fn check(g: usize, hd: usize, kv: usize, lo: usize, hi: usize, ctx: usize, rows: usize) {
        assert!(lo < hi && hi <= ctx, "attn: key range");
        assert!(hi * hd <= kv, "attn: cache too short");
        assert!(rows >= (g.max(1) - 1) * ctx + hi, "attn: score rows");
    }

    /// Keys (scores) or value rows fetched ahead of use. In decode the cache of a layer comes
    /// from DRAM or L3 (the weights streamed in between evict it), and the hardware streamer
    /// stops at every 4 KiB page: one 16-key tile of head_dim 64.
    const AHEAD: usize = 32;

    /// Prefetches (into L1) the cache lines of `p[from..to]`; `p` is one KV head's cache.
    /// Prefetches never fault, so the addresses need not be inside the slice.
    #[inline(always)]
    fn prefetch(p: *const f32, from: usize, to: usize) {
        let mut at = from;
        while at < to {
            // SAFETY: a prefetch is a hint: it never faults and has no visible effect.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at) as *const i8) };
            at += 16;
        }
    }

    // ---- AVX-512 ----

    /// `r[t] = sum(a[t])` for the 16 lanes of each of 16 vectors: 15 adds and 30 shuffles.
    /// Stage by stage the partial sums of 2, 4, 8, 16 keys share a vector; the last stage leaves
    /// key `4m + l` at lane `4l + m`, so the inputs go in transposed (`a[4 (u % 4) + u / 4]`
    /// at slot `u`) and the result comes out in key order.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn reduce16(a: &[__m512; 16]) -> __m512 {
        let at = |u: usize| a[4 * (u % 4) + u / 4];
        let mut b = [_mm512_setzero_ps(); 8];
        for (i, b) in b.iter_mut().enumerate() {
            let (x, y) = (at(2 * i), at(2 * i + 1));
            // 128-bit lanes [x0 x1 y0 y1] + [x2 x3 y2 y3]
            *b = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(x, y),
                _mm512_shuffle_f32x4::<0xEE>(x, y),
            );
        }
        let mut c = [_mm512_setzero_ps(); 4];
        for (i, c) in c.iter_mut().enumerate() {
            let (x, y) = (b[2 * i], b[2 * i + 1]);
            // [x0 x2 y0 y2] + [x1 x3 y1 y3]: lane l holds 4 partials of key 4i + l
            *c = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(x, y),
                _mm512_shuffle_f32x4::<0xDD>(x, y),
            );
        }
        let mut d = [_mm512_setzero_ps(); 2];
        for (i, d) in d.iter_mut().enumerate() {
            let (x, y) = (_mm512_castps_pd(c[2 * i]), _mm512_castps_pd(c[2 * i + 1]));
            *d = _mm512_add_ps(
                _mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)),
            );
        }
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(d[0], d[1]),
            _mm512_shuffle_ps::<0xDD>(d[0], d[1]),
        )
    }

    /// Dots of `q` (`hd` floats) with the 16 consecutive key rows at `kb`, unscaled.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn dots16(q: *const f32, kb: *const f32, hd: usize) -> __m512 {
        let full = hd / 16 * 16;
        let mut acc = [_mm512_setzero_ps(); 16];
        let mut c = 0;
        while c < full {
            let qv = _mm512_loadu_ps(q.add(c));
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kb.add(t * hd + c)), *a);
            }
            c += 16;
        }
        if c < hd {
            let m = ((1u32 << (hd - c)) - 1) as __mmask16;
            let qv = _mm512_maskz_loadu_ps(m, q.add(c));
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, kb.add(t * hd + c)), *a);
            }
        }
        reduce16(&acc)
    }

    /// [`dots16`] for a head_dim known at compile time (a multiple of 16): constant
    /// displacements, no address arithmetic in the loop.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    unsafe fn dots16_fixed<const HD: usize>(q: *const f32, kb: *const f32) -> __m512 {
        let mut acc = [_mm512_setzero_ps(); 16];
        for c in 0..HD / 16 {
            let qv = _mm512_loadu_ps(q.add(16 * c));
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kb.add(t * HD + 16 * c)), *a);
            }
        }
        reduce16(&acc)
    }

    /// Dots of `q` with `n` (< 16) key rows at `kb`, in lanes `0..n` (the others zero).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline(never)]
    unsafe fn dots_short16(q: *const f32, kb: *const f32, hd: usize, n: usize) -> __m512 {
        let mut r = [0.0f32; 16];
        for (t, r) in r.iter_mut().enumerate().take(n) {
            let kt = kb.add(t * hd);
            let mut acc = _mm512_setzero_ps();
            let mut c = 0;
            while c < hd {
                let m = ((1u32 << (hd - c).min(16)) - 1) as __mmask16;
                let kv = _mm512_maskz_loadu_ps(m, kt.add(c));
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q.add(c)), kv, acc);
                c += 16;
            }
            *r = _mm512_reduce_add_ps(acc);
        }
        _mm512_loadu_ps(r.as_ptr())
    }

    /// Scores of keys `lo..hi` (see the module doc of `x86`): tiles of 16 keys, the last one
    /// moved back to end at `hi` (it recomputes, and rewrites with the same values, a few keys
    /// of the previous tile); fewer than 16 keys in all take the short path.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn scores_avx512(
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
        check(g, hd, k.len(), lo, hi, ctx, out.len());
        let vscale = _mm512_set1_ps(scale);
        let (qp, kp, op) = (q.as_ptr(), k.as_ptr(), out.as_mut_ptr());
        if hi - lo < 16 {
            let n = hi - lo;
            for h in 0..g {
                let r = _mm512_mul_ps(dots_short16(qp.add(h * hd), kp.add(lo * hd), hd, n), vscale);
                _mm512_mask_storeu_ps(op.add(h * ctx + lo), ((1u32 << n) - 1) as __mmask16, r);
            }
            return;
        }
        // Tiles outside, heads inside: a tile of keys is read from L2 once, then from L1.
        macro_rules! tiles {
            ($dots:expr) => {{
                let mut j0 = lo;
                while j0 < hi {
                    let j = j0.min(hi - 16);
                    // The tile AHEAD keys on, a share per head (a burst of misses stalls).
                    let (a0, a1) = ((j + AHEAD) * hd, (j + AHEAD + 16).min(hi) * hd);
                    for h in 0..g {
                        let span = a1.saturating_sub(a0);
                        prefetch(kp, a0 + span * h / g, a0 + span * (h + 1) / g);
                        let r = _mm512_mul_ps($dots(qp.add(h * hd), kp.add(j * hd)), vscale);
                        _mm512_storeu_ps(op.add(h * ctx + j), r);
                    }
                    j0 += 16;
                }
            }};
        }
        match hd {
            64 => tiles!(|q, k| dots16_fixed::<64>(q, k)),
            80 => tiles!(|q, k| dots16_fixed::<80>(q, k)),
            96 => tiles!(|q, k| dots16_fixed::<96>(q, k)),
            128 => tiles!(|q, k| dots16_fixed::<128>(q, k)),
            256 => tiles!(|q, k| dots16_fixed::<256>(q, k)),
            // MLA's absorbed attention (DeepSeek-V2: kv_lora_rank 512 + rope 64)
            576 => tiles!(|q, k| dots16_fixed::<576>(q, k)),
            _ => tiles!(|q, k| dots16(q, k, hd)),
        }
    }

    /// `out[h][c*16..] = sum_j p[h][j] v[j][c*16..]` for `H` heads and `C` chunks of 16
    /// (masks `m`: the last chunk of a row may be partial).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn values_block512<const H: usize, const C: usize>(
        p: *const f32,
        ctx: usize,
        v: *const f32,
        hd: usize,
        lo: usize,
        hi: usize,
        m: [__mmask16; C],
        out: *mut f32,
        ahead: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; H];
        for j in lo..hi {
            let vj = v.add(j * hd);
            if ahead && j + AHEAD < hi {
                prefetch(vj, AHEAD * hd, AHEAD * hd + 16 * C);
            }
            let mut vv = [_mm512_setzero_ps(); C];
            for (c, x) in vv.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(m[c], vj.add(16 * c));
            }
            for (h, a) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*p.add(h * ctx + j));
                for (a, x) in a.iter_mut().zip(vv) {
                    *a = _mm512_fmadd_ps(w, x, *a);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for (c, a) in a.iter().enumerate() {
                _mm512_mask_storeu_ps(out.add(h * hd + 16 * c), m[c], *a);
            }
        }
    }

    /// `out` (g x hd) = probabilities `p` (g rows of `ctx`, keys `lo..hi`) times values `v`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    pub(super) unsafe fn values_avx512(
        p: &[f32],
        v: &[f32],
        hd: usize,
        lo: usize,
        hi: usize,
        ctx: usize,
        out: &mut [f32],
    ) {
        let g = out.len() / hd;
        check(g, hd, v.len(), lo, hi, ctx, p.len());
        let chunks = hd.div_ceil(16);
        let mask = |c: usize| -> __mmask16 {
            let left = hd - 16 * c;
            if left >= 16 {
                0xFFFF
            } else {
                ((1u32 << left) - 1) as __mmask16
            }
        };
        let (vp, op) = (v.as_ptr(), out.as_mut_ptr());
        for h0 in (0..g).step_by(4) {
            let pp = p.as_ptr().add(h0 * ctx);
            for c0 in (0..chunks).step_by(4) {
                let o = op.add(h0 * hd + 16 * c0);
                let vc = vp.add(16 * c0);
                macro_rules! run {
                    ($h:literal, $c:literal) => {{
                        let m: [__mmask16; $c] = std::array::from_fn(|c| mask(c0 + c));
                        values_block512::<$h, $c>(pp, ctx, vc, hd, lo, hi, m, o, h0 == 0)
                    }};
                }
                match ((g - h0).min(4), (chunks - c0).min(4)) {
                    (1, 1) => run!(1, 1),
                    (1, 2) => run!(1, 2),
                    (1, 3) => run!(1, 3),
                    (1, _) => run!(1, 4),
                    (2, 1) => run!(2, 1),
                    (2, 2) => run!(2, 2),
                    (2, 3) => run!(2, 3),
                    (2, _) => run!(2, 4),
                    (3, 1) => run!(3, 1),
                    (3, 2) => run!(3, 2),
                    (3, 3) => run!(3, 3),
                    (3, _) => run!(3, 4),
                    (_, 1) => run!(4, 1),
                    (_, 2) => run!(4, 2),
                    (_, 3) => run!(4, 3),
                    (_, _) => run!(4, 4),
                }
            }
        }
    }

    // ---- AVX2 ----

    /// `r[t] = sum(a[t])` for 8 vectors of 8: `hadd` pairs, then the two 128-bit halves.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn reduce8(a: &[__m256; 8]) -> __m256 {
        let h01 = _mm256_hadd_ps(a[0], a[1]);
        let h23 = _mm256_hadd_ps(a[2], a[3]);
        let h45 = _mm256_hadd_ps(a[4], a[5]);
        let h67 = _mm256_hadd_ps(a[6], a[7]);
        // [a0 a1 a2 a3 | a0 a1 a2 a3] partials (low and high 128-bit halves of each input)
        let h0123 = _mm256_hadd_ps(h01, h23);
        let h4567 = _mm256_hadd_ps(h45, h67);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(h0123, h4567),
            _mm256_permute2f128_ps::<0x31>(h0123, h4567),
        )
    }

    /// `_mm256_maskload_ps` mask of the first `n` (< 8) lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn mask8(n: usize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane)
    }

    /// Dots of `q` (`hd` floats) with the 8 consecutive key rows at `kb`, unscaled.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dots8(q: *const f32, kb: *const f32, hd: usize) -> __m256 {
        let full = hd / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut c = 0;
        while c < full {
            let qv = _mm256_loadu_ps(q.add(c));
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kb.add(t * hd + c)), *a);
            }
            c += 8;
        }
        if c < hd {
            let m = mask8(hd - c);
            let qv = _mm256_maskload_ps(q.add(c), m);
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kb.add(t * hd + c), m), *a);
            }
        }
        reduce8(&acc)
    }

    /// [`dots8`] for a head_dim known at compile time (a multiple of 8).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dots8_fixed<const HD: usize>(q: *const f32, kb: *const f32) -> __m256 {
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in 0..HD / 8 {
            let qv = _mm256_loadu_ps(q.add(8 * c));
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kb.add(t * HD + 8 * c)), *a);
            }
        }
        reduce8(&acc)
    }

    /// Dots of `q` with `n` (< 8) key rows at `kb`, in lanes `0..n` (the others zero).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline(never)]
    unsafe fn dots_short8(q: *const f32, kb: *const f32, hd: usize, n: usize) -> __m256 {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (t, a) in acc.iter_mut().enumerate().take(n) {
            let kt = kb.add(t * hd);
            let mut c = 0;
            while c < hd {
                let m = mask8((hd - c).min(8));
                let kv = _mm256_maskload_ps(kt.add(c), m);
                *a = _mm256_fmadd_ps(_mm256_maskload_ps(q.add(c), m), kv, *a);
                c += 8;
            }
        }
        reduce8(&acc)
    }

    /// Scores of keys `lo..hi`, AVX2: as [`scores_avx512`] with tiles of 8 keys.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn scores_avx2(
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
        check(g, hd, k.len(), lo, hi, ctx, out.len());
        let vscale = _mm256_set1_ps(scale);
        let (qp, kp, op) = (q.as_ptr(), k.as_ptr(), out.as_mut_ptr());
        if hi - lo < 8 {
            let n = hi - lo;
            for h in 0..g {
                let r = _mm256_mul_ps(dots_short8(qp.add(h * hd), kp.add(lo * hd), hd, n), vscale);
                _mm256_maskstore_ps(op.add(h * ctx + lo), mask8(n), r);
            }
            return;
        }
        macro_rules! tiles {
            ($dots:expr) => {{
                let mut j0 = lo;
                while j0 < hi {
                    let j = j0.min(hi - 8);
                    // The tile AHEAD keys on, a share per head (a burst of misses stalls).
                    let (a0, a1) = ((j + AHEAD) * hd, (j + AHEAD + 8).min(hi) * hd);
                    for h in 0..g {
                        let span = a1.saturating_sub(a0);
                        prefetch(kp, a0 + span * h / g, a0 + span * (h + 1) / g);
                        let r = _mm256_mul_ps($dots(qp.add(h * hd), kp.add(j * hd)), vscale);
                        _mm256_storeu_ps(op.add(h * ctx + j), r);
                    }
                    j0 += 8;
                }
            }};
        }
        match hd {
            64 => tiles!(|q, k| dots8_fixed::<64>(q, k)),
            80 => tiles!(|q, k| dots8_fixed::<80>(q, k)),
            96 => tiles!(|q, k| dots8_fixed::<96>(q, k)),
            128 => tiles!(|q, k| dots8_fixed::<128>(q, k)),
            256 => tiles!(|q, k| dots8_fixed::<256>(q, k)),
            // MLA's absorbed attention (DeepSeek-V2: kv_lora_rank 512 + rope 64)
            576 => tiles!(|q, k| dots8_fixed::<576>(q, k)),
            _ => tiles!(|q, k| dots8(q, k, hd)),
        }
    }

    /// As [`values_block512`] with 8-lane chunks (`m`: maskload masks, `full`: chunk is whole).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn values_block256<const H: usize, const C: usize>(
        p: *const f32,
        ctx: usize,
        v: *const f32,
        hd: usize,
        lo: usize,
        hi: usize,
        m: [(bool, __m256i); C],
        out: *mut f32,
        ahead: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; H];
        for j in lo..hi {
            let vj = v.add(j * hd);
            if ahead && j + AHEAD < hi {
                prefetch(vj, AHEAD * hd, AHEAD * hd + 8 * C);
            }
            let mut vv = [_mm256_setzero_ps(); C];
            for (c, x) in vv.iter_mut().enumerate() {
                *x = if m[c].0 {
                    _mm256_loadu_ps(vj.add(8 * c))
                } else {
                    _mm256_maskload_ps(vj.add(8 * c), m[c].1)
                };
            }
            for (h, a) in acc.iter_mut().enumerate() {
                let w = _mm256_broadcast_ss(&*p.add(h * ctx + j));
                for (a, x) in a.iter_mut().zip(vv) {
                    *a = _mm256_fmadd_ps(w, x, *a);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for (c, a) in a.iter().enumerate() {
                let o = out.add(h * hd + 8 * c);
                if m[c].0 {
                    _mm256_storeu_ps(o, *a);
                } else {
                    _mm256_maskstore_ps(o, m[c].1, *a);
                }
            }
        }
    }

    /// `out` (g x hd) = probabilities `p` times values `v`, AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn values_avx2(
        p: &[f32],
        v: &[f32],
        hd: usize,
        lo: usize,
        hi: usize,
        ctx: usize,
        out: &mut [f32],
    ) {
        let g = out.len() / hd;
        check(g, hd, v.len(), lo, hi, ctx, p.len());
        let chunks = hd.div_ceil(8);
        let (vp, op) = (v.as_ptr(), out.as_mut_ptr());
        for h0 in (0..g).step_by(4) {
            let pp = p.as_ptr().add(h0 * ctx);
            for c0 in (0..chunks).step_by(2) {
                let o = op.add(h0 * hd + 8 * c0);
                let vc = vp.add(8 * c0);
                let m = |c: usize| {
                    let left = hd - 8 * (c0 + c);
                    (left >= 8, mask8(left.min(7)))
                };
                match ((g - h0).min(4), chunks - c0) {
                    (1, 1) => values_block256::<1, 1>(pp, ctx, vc, hd, lo, hi, [m(0)], o, h0 == 0),
                    (1, _) => {
                        values_block256::<1, 2>(pp, ctx, vc, hd, lo, hi, [m(0), m(1)], o, h0 == 0)
                    }
                    (2, 1) => values_block256::<2, 1>(pp, ctx, vc, hd, lo, hi, [m(0)], o, h0 == 0),
                    (2, _) => {
                        values_block256::<2, 2>(pp, ctx, vc, hd, lo, hi, [m(0), m(1)], o, h0 == 0)
                    }
                    (3, 1) => values_block256::<3, 1>(pp, ctx, vc, hd, lo, hi, [m(0)], o, h0 == 0),
                    (3, _) => {
                        values_block256::<3, 2>(pp, ctx, vc, hd, lo, hi, [m(0), m(1)], o, h0 == 0)
                    }
                    (_, 1) => values_block256::<4, 1>(pp, ctx, vc, hd, lo, hi, [m(0)], o, h0 == 0),
                    (_, _) => {
                        values_block256::<4, 2>(pp, ctx, vc, hd, lo, hi, [m(0), m(1)], o, h0 == 0)
                    }
                }
            }
        }
    }
}

/// One query's scores on the decode path (`isa` has an x86 variant: see [`attn_scores`]).
#[allow(clippy::too_many_arguments)]
fn decode_scores(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    hd: usize,
    lo: usize,
    hi: usize,
    ctx: usize,
    scale: f32,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the callers checked `has_x86_variant(isa)`: the CPU has the ISA's features.
        Isa::Avx512 => unsafe { x86::scores_avx512(q, k, hd, lo, hi, ctx, scale, out) },
        // SAFETY: as above.
        _ => unsafe { x86::scores_avx2(q, k, hd, lo, hi, ctx, scale, out) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, k, hd, lo, hi, ctx, scale, out);
        unreachable!("attn: decode scores without an x86 variant ({isa})")
    }
}

/// One query's outputs on the decode path (`isa` has an x86 variant: see [`attn_values`]).
#[allow(clippy::too_many_arguments)]
fn decode_values(
    isa: Isa,
    p: &[f32],
    v: &[f32],
    hd: usize,
    lo: usize,
    hi: usize,
    ctx: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the callers checked `has_x86_variant(isa)`: the CPU has the ISA's features.
        Isa::Avx512 => unsafe { x86::values_avx512(p, v, hd, lo, hi, ctx, out) },
        // SAFETY: as above.
        _ => unsafe { x86::values_avx2(p, v, hd, lo, hi, ctx, out) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, v, hd, lo, hi, ctx, out);
        unreachable!("attn: decode values without an x86 variant ({isa})")
    }
}

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
    if !has_x86_variant(isa) || s.head_dim == 0 {
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
            decode_scores(isa, qg, kh, hd, lo, hi, ctx, s.scale, out);
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
    if !has_x86_variant(isa) || s.head_dim == 0 {
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
            decode_values(isa, pr, vh, hd, lo, hi, ctx, o);
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

    /// One decode-path case (`n_q < GEMM_MIN_Q`): scores, then values from the scalar
    /// probabilities, each against its scalar twin; score entries outside a row's keys must be
    /// left as they were (the value products never read them, so nothing else would notice).
    fn decode_case(s: AttnShape, pool: &ThreadPool) {
        let row = s.n_heads * s.head_dim;
        let q = rand_vec(s.n_q * row, 41);
        let k = rand_vec(s.n_kv_heads * s.kv_stride * s.head_dim, 42);
        let v = rand_vec(s.n_kv_heads * s.kv_stride * s.head_dim, 43);
        let mut sc_want = vec![f32::NAN; s.scores_len()];
        attn_scores_scalar(&s, &q, &k, &mut sc_want);
        let mut p = sc_want.clone();
        attn_softmax_scalar(&s, &mut p);
        let mut out_want = vec![0.0; s.n_q * row];
        attn_values_scalar(&s, &p, &v, &mut out_want);
        for isa in isas() {
            let what = format!("{isa} threads {} {s:?}", pool.threads());
            let mut sc = vec![f32::NAN; s.scores_len()];
            attn_scores(isa, pool, &s, &q, &k, &mut sc);
            for (i, (x, y)) in sc.iter().zip(&sc_want).enumerate() {
                let ok = if y.is_nan() {
                    x.is_nan()
                } else {
                    (x - y).abs() <= 1e-5 * 1f32.max(y.abs())
                };
                assert!(ok, "scores {what}: element {i}: {x} vs {y}");
            }
            let mut out = vec![f32::NAN; s.n_q * row];
            attn_values(isa, pool, &s, &p, &v, &mut out);
            assert_close(&out, &out_want, 1e-5, &format!("values {what}"));
        }
    }

    #[test]
    fn decode_tiles_match_scalar_twin_for_groups_head_dims_and_ragged_contexts() {
        // Group sizes around the register blocks (values: 4 heads), head dims with and without
        // a fixed-size tile kernel and with partial vectors, contexts around the 8/16-key
        // tiles (1 key; fewer than a tile; a moved-back last tile), windows that start the
        // keys mid-cache and leave fewer or more than a tile, and Gemma's soft-cap.
        let pools: Vec<ThreadPool> = (1..=3).map(ThreadPool::new).collect();
        let mut case = 0usize;
        for group in [1usize, 2, 7, 8] {
            for hd in [64usize, 40, 80, 96, 128, 256, 576, 17, 8] {
                for ctx in [1usize, 7, 8, 15, 16, 17, 40] {
                    for (window, softcap) in [(None, None), (Some(5), None), (Some(20), Some(3.0))]
                    {
                        let n_q = [1, 1, 3][case % 3].min(ctx);
                        let s = AttnShape {
                            n_q,
                            q_pos0: ctx - n_q,
                            n_heads: 2 * group,
                            n_kv_heads: 2,
                            head_dim: hd,
                            // a tight cache (reads past the last key would leave it) every
                            // other case
                            kv_stride: ctx + (case % 2) * 5,
                            window,
                            scale: 1.0 / (hd as f32).sqrt(),
                            softcap,
                        };
                        decode_case(s, &pools[case % pools.len()]);
                        case += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn decode_attention_matches_scalar_twin_at_model_shapes() {
        // Qwen2.5-0.5B (14 heads, 2 KV heads) and SmolLM2-135M (9, 3) at head_dim 64, GQA
        // group 4 at head_dim 128, MQA at 256, at contexts that are not multiples of 16.
        for (h, kv, hd) in [
            (14usize, 2usize, 64usize),
            (9, 3, 64),
            (8, 2, 128),
            (4, 1, 256),
        ] {
            for ctx in [129usize, 300] {
                for threads in [1, 2] {
                    let s = AttnShape {
                        n_q: 1,
                        q_pos0: ctx - 1,
                        n_heads: h,
                        n_kv_heads: kv,
                        head_dim: hd,
                        kv_stride: ctx + 7,
                        window: None,
                        scale: 1.0 / (hd as f32).sqrt(),
                        softcap: None,
                    };
                    run_case(s, threads);
                    decode_case(s, &ThreadPool::new(threads));
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
