//! A small persistent thread pool with an explicit thread count.
//!
//! Decode runs a few hundred parallel kernels per token, each 10-500 us long; spawning threads
//! per kernel (`std::thread::scope`) would cost tens of microseconds each time. Workers here spin
//! briefly on an epoch counter after each job (the next kernel usually follows within
//! microseconds), then sleep on a condition variable so an idle pool costs no CPU.
//!
//! Not a general task scheduler: `run` executes one closure on every thread (the caller is
//! thread 0) and returns when all are done; work splitting is the kernel's business.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Incremented once per job; workers run the job when they see a new value.
    epoch: AtomicU64,
    /// The current job, valid while `remaining > 0` for the current epoch.
    job: UnsafeCell<Option<*const Job>>,
    /// Workers that have not finished the current job.
    remaining: AtomicUsize,
    /// Workers currently asleep (or about to sleep) on `cv`.
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

// SAFETY: `job` is written only by the thread inside `ThreadPool::run` while no worker reads it
// (all workers have finished the previous job: `remaining == 0`), and published to workers by
// the SeqCst epoch increment; the pointee is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A fixed set of `threads` threads (the caller plus `threads - 1` workers).
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// `run` is not re-entrant; this guards against nested or concurrent use.
    busy: AtomicBool,
}

/// Spin iterations before a worker sleeps or the caller yields. `pause` takes ~40-140 cycles
/// on current x86 cores, so this is roughly 30-100 us: long enough to bridge the gap between
/// two kernels of a decode step, short enough not to steal a busy machine's cores.
const SPIN: u32 = 2_000;

impl ThreadPool {
    /// A pool of `threads` threads in total; `threads == 0` is treated as 1.
    pub fn new(threads: usize) -> ThreadPool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            remaining: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|tid| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("rooflinebench-worker-{tid}"))
                    .spawn(move || worker(s, tid))
                    .expect("cannot spawn a worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            threads,
            busy: AtomicBool::new(false),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(item)` for every `item` in `0..items`, handing items to threads dynamically
    /// (uneven items such as causal attention rows balance themselves).
    pub fn run_items(&self, items: usize, f: &(dyn Fn(usize) + Sync)) {
        if items == 0 {
            return;
        }
        if self.threads == 1 || items == 1 {
            (0..items).for_each(f);
            return;
        }
        let next = AtomicUsize::new(0);
        self.run(&|_tid| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= items {
                break;
            }
            f(i);
        });
    }

    /// Splits `data`, rows of `width` elements, into one contiguous run of whole rows per thread
    /// and calls `f(first_row, rows)` on each run. Below `min_elems` elements, or with one
    /// row, it runs `f(0, data)` on the calling thread (a pool dispatch costs microseconds).
    /// For the engine's row-wise elementwise operators (norms, residual adds, activations,
    /// RoPE), which are memory-bound and would otherwise use one core during a prefill.
    ///
    /// # Panics
    /// When `width` is 0 or does not divide `data.len()` (a caller bug).
    pub fn for_rows_mut<T: Send>(
        &self,
        data: &mut [T],
        width: usize,
        min_elems: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        assert!(
            width > 0 && data.len().is_multiple_of(width),
            "for_rows_mut: row width"
        );
        let rows = data.len() / width;
        if self.threads == 1 || rows < 2 || data.len() < min_elems {
            f(0, data);
            return;
        }
        let parts = self.threads.min(rows);
        let base = RowsPtr(data.as_mut_ptr());
        self.run(&|tid| {
            if tid >= parts {
                return;
            }
            let (r0, r1) = (tid * rows / parts, (tid + 1) * rows / parts);
            // SAFETY: the runs [r0, r1) of different threads are disjoint and inside `data`
            // (r1 <= rows), and `data` stays mutably borrowed until `run` returns.
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(base.get().add(r0 * width), (r1 - r0) * width)
            };
            f(r0, chunk);
        });
    }

    /// Runs `f(tid)` for every `tid` in `0..threads` (the caller runs `tid = 0`) and returns
    /// when all have returned. A panic on any thread is re-raised here.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        assert!(
            !self.busy.swap(true, Ordering::Acquire),
            "ThreadPool::run is not re-entrant"
        );
        let s = &*self.shared;
        // SAFETY: the lifetime of `f` is erased; every worker finishes with it before this
        // function returns (we wait for `remaining == 0` below, even if `f(0)` panics).
        let ptr: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(f) };
        // SAFETY: no worker reads `job` now: the previous job's `remaining` reached 0.
        unsafe { *s.job.get() = Some(ptr) };
        s.remaining.store(self.threads - 1, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.cv.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut spins = 0u32;
        while s.remaining.load(Ordering::Acquire) != 0 {
            spins = spins.saturating_add(1);
            if spins < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.busy.store(false, Ordering::Release);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a thread-pool worker panicked");
        }
    }
}

/// A slice's base pointer handed to the threads of [`ThreadPool::for_rows_mut`].
struct RowsPtr<T>(*mut T);
// SAFETY: each thread derives a disjoint sub-slice from it (see `for_rows_mut`).
unsafe impl<T: Send> Sync for RowsPtr<T> {}
impl<T> RowsPtr<T> {
    /// The pointer (a method, so closures capture the whole wrapper, not its raw field).
    fn get(&self) -> *mut T {
        self.0
    }
}

fn worker(s: Arc<Shared>, tid: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let epoch = loop {
            let e = s.epoch.load(Ordering::SeqCst);
            if e != seen || s.shutdown.load(Ordering::SeqCst) {
                break e;
            }
            spins += 1;
            if spins < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let mut g = g;
            while s.epoch.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
                g = s.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(g);
            spins = 0;
        };
        if s.shutdown.load(Ordering::SeqCst) {
            return;
        }
        seen = epoch;
        // SAFETY: `run` stored the job before publishing the epoch and keeps it alive until
        // `remaining` reaches 0, which this worker's decrement below contributes to.
        let job = unsafe { (*s.job.get()).expect("job published with the epoch") };
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(tid) }));
        if r.is_err() {
            s.panicked.store(true, Ordering::SeqCst);
        }
        s.remaining.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.cv.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadPool({} threads)", self.threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_rows_mut_visits_every_row_once_with_its_index() {
        for threads in 1..4 {
            let pool = ThreadPool::new(threads);
            for rows in [1usize, 2, 3, 7, 64] {
                for min_elems in [0, usize::MAX] {
                    let width = 5;
                    let mut data = vec![0u32; rows * width];
                    pool.for_rows_mut(&mut data, width, min_elems, &|r0, chunk| {
                        for (i, row) in chunk.chunks_exact_mut(width).enumerate() {
                            for v in row.iter_mut() {
                                *v += (r0 + i) as u32 + 1;
                            }
                        }
                    });
                    let want: Vec<u32> =
                        (0..rows * width).map(|e| (e / width) as u32 + 1).collect();
                    assert_eq!(data, want, "threads {threads} rows {rows} min {min_elems}");
                }
            }
        }
    }

    #[test]
    fn every_thread_runs_each_job_once() {
        for n in 1..4 {
            let pool = ThreadPool::new(n);
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(&|tid| {
                    hits[tid].fetch_add(1, Ordering::SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
            }
        }
    }

    #[test]
    fn run_items_covers_each_item_once() {
        for n in 1..4 {
            let pool = ThreadPool::new(n);
            for items in [0usize, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                pool.run_items(items, &|i| {
                    hits[i].fetch_add(1, Ordering::SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
            }
        }
    }

    #[test]
    fn sleeping_workers_wake_up() {
        let pool = ThreadPool::new(2);
        let count = AtomicUsize::new(0);
        pool.run(&|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.run(&|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|tid| {
                if tid == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        // The pool is still usable afterwards.
        let count = AtomicUsize::new(0);
        pool.run(&|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
