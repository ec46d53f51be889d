//! Per-operator timing, keyed by the cost model's [`OpId`] so measured and predicted costs join
//! on a key (STYLE.md "Names").
//!
//! The engine calls [`Recorder::op`] around every operator it executes. [`NoopRecorder`] just
//! runs the closure (inlined away: the engine runs at full speed); [`TimingRecorder`] takes an
//! `Instant` before and after and sums durations per id, in first-execution order (an operator
//! split into several calls, such as attention over query chunks, accumulates).

use rooflinebench_model::op::OpId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Observes every operator the engine executes.
pub trait Recorder {
    /// Runs `f`, the body of operator `id`.
    fn op<T>(&mut self, id: OpId, f: impl FnOnce() -> T) -> T;
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
