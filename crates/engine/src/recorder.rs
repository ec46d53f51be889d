//! Per-operator timing, keyed by the cost model's [`OpId`] so measured and predicted costs join
//! on a key (STYLE.md "Names").
//!
//! The engine calls [`Recorder::op`] around every operator it executes. [`NoopRecorder`] just
//! runs the closure (inlined away: the engine runs at full speed); [`TimingRecorder`] takes an
//! `Instant` before and after and sums durations per id, in first-execution order (an operator
//! split into several calls, such as attention over query chunks, accumulates).
//!
//! MoE layers also report the experts they routed to ([`Recorder::experts`]); the
//! [`TimingRecorder`] keeps a per-layer hit histogram and the number of distinct experts each
//! call touched (what decides the expert weight bytes really read, PITFALLS.md #7).

use rooflinebench_model::op::OpId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Observes every operator the engine executes.
pub trait Recorder {
    /// Runs `f`, the body of operator `id`.
    fn op<T>(&mut self, id: OpId, f: impl FnOnce() -> T) -> T;

    /// MoE layer `layer` (of `num_experts` routed experts) routed its tokens to `chosen`
    /// (`top_k` expert indices per token). Default: ignored.
    #[inline(always)]
    fn experts(&mut self, _layer: u32, _num_experts: usize, _chosen: &[u32]) {}
}

/// Expert hits of one MoE layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpertHits {
    pub layer: u32,
    /// Token-expert assignments per expert.
    pub counts: Vec<u64>,
    /// Distinct experts touched, summed over forward passes.
    pub distinct: u64,
    /// Forward passes through the layer.
    pub calls: u64,
}

/// Records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopRecorder;

impl Recorder for NoopRecorder {
    #[inline(always)]
    fn op<T>(&mut self, _id: OpId, f: impl FnOnce() -> T) -> T {
        f()
    }
}

/// Sums wall time per operator id.
#[derive(Clone, Debug, Default)]
pub struct TimingRecorder {
    order: Vec<(OpId, Duration)>,
    index: HashMap<OpId, usize>,
    experts: Vec<ExpertHits>,
}

impl TimingRecorder {
    pub fn new() -> TimingRecorder {
        TimingRecorder::default()
    }

    /// The recorded `(id, seconds)` in first-execution order, and a reset.
    pub fn take(&mut self) -> Vec<(OpId, f64)> {
        self.index.clear();
        self.order
            .drain(..)
            .map(|(id, d)| (id, d.as_secs_f64()))
            .collect()
    }

    /// The expert hits recorded so far (by layer), and a reset.
    pub fn take_experts(&mut self) -> Vec<ExpertHits> {
        let mut v = std::mem::take(&mut self.experts);
        v.sort_by_key(|e| e.layer);
        v
    }

    /// Ids recorded so far.
    pub fn ids(&self) -> impl Iterator<Item = OpId> + '_ {
        self.order.iter().map(|(id, _)| *id)
    }
}

impl Recorder for TimingRecorder {
    #[inline]
    fn op<T>(&mut self, id: OpId, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        let dt = t0.elapsed();
        match self.index.get(&id) {
            Some(&i) => self.order[i].1 += dt,
            None => {
                self.index.insert(id, self.order.len());
                self.order.push((id, dt));
            }
        }
        r
    }

    fn experts(&mut self, layer: u32, num_experts: usize, chosen: &[u32]) {
        let i = match self.experts.iter().position(|e| e.layer == layer) {
            Some(i) => i,
            None => {
                self.experts.push(ExpertHits {
                    layer,
                    counts: vec![0; num_experts],
                    distinct: 0,
                    calls: 0,
                });
                self.experts.len() - 1
            }
        };
        let e = &mut self.experts[i];
        let mut seen = vec![false; e.counts.len()];
        for &x in chosen {
            if let Some(c) = e.counts.get_mut(x as usize) {
                *c += 1;
                if !seen[x as usize] {
                    seen[x as usize] = true;
                    e.distinct += 1;
                }
            }
        }
        e.calls += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rooflinebench_model::op::OpKind;

    #[test]
    fn repeated_ops_accumulate_in_first_seen_order() {
        let mut r = TimingRecorder::new();
        let a = OpId::layer(0, OpKind::AttnScore);
        let b = OpId::global(OpKind::LmHead);
        r.op(a, || std::thread::sleep(Duration::from_millis(2)));
        r.op(b, || ());
        r.op(a, || std::thread::sleep(Duration::from_millis(2)));
        let t = r.take();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, a);
        assert!(t[0].1 >= 0.004);
        assert!(r.take().is_empty());
        assert_eq!(NoopRecorder.op(a, || 7), 7);
    }
}
