//! Weight storage packed into large 2 MiB-aligned regions advised as transparent huge pages.
//!
//! The probe measures DRAM bandwidth on huge-page buffers, so weights streamed from 4 KiB pages
//! would pay TLB misses and page-bounded hardware prefetch that the roof does not. Advising
//! each matrix's own allocation is not enough: a huge page needs an aligned 2 MiB run inside
//! the allocation, and a 2.45 MB matrix (Qwen2.5-0.5B's q4_0 FFN) has at most one, often none.
//! Measured with `examples/gemv_seq` (72 such q4_0 matrices, GEMV over each in turn): separate
//! advised allocations ran at 13.0 GB/s on 1 thread and 28.0 GB/s on 2, the same matrices as
//! consecutive slices of one advised region at 16.0 and 31.7 GB/s.
//!
//! So every weight buffer ([`WeightBuf`]) is carved, 64-byte aligned and in load order, out of
//! a shared [`SEGMENT`]-sized region (buffers larger than half a segment get a region of their
//! own). A region is freed when the last buffer in it is dropped; buffers are immutable once
//! built and clone by reference.

use rooflinebench_kernels::ceiling::buffer::{alloc_huge, HUGE};
use std::alloc::Layout;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

/// Bytes of one shared region.
const SEGMENT: usize = 64 << 20;
/// Alignment of every buffer (a cache line; the quantized kernels read whole lines).
const ALIGN: usize = 64;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for f32 {}
}

/// Element types a [`WeightBuf`] holds: plain data for which all-zero bytes are a valid value.
pub trait Plain: sealed::Sealed + Copy + Send + Sync + 'static {}
impl Plain for u8 {}
impl Plain for u16 {}
impl Plain for f32 {}

/// One 2 MiB-aligned region.
struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a region is plain memory. Each byte range is written once, by the thread building the
// buffer that owns the range, before that buffer is shared; afterwards it is only read.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// A region of at least `bytes`, from the probe's huge-page allocator.
    ///
    /// # Panics
    /// (Aborts) when the allocation fails, as a `Vec` would: callers checked beforehand that
    /// the model fits in memory (`mem::check_fits`).
    fn new(bytes: usize) -> Region {
        match alloc_huge(bytes) {
            Ok((ptr, layout)) => Region { ptr, layout },
            Err(_) => std::alloc::handle_alloc_error(
                Layout::from_size_align(bytes.max(1), HUGE).unwrap_or(Layout::new::<u8>()),
            ),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc_huge` with this layout; no buffer refers to it any more
        // (each holds an `Arc<Region>`).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The region new buffers are carved from, and how much of it is taken. Held weakly: once
/// every buffer in it is dropped, the region is freed and the next buffer starts a new one.
struct Cursor {
    region: Weak<Region>,
    used: usize,
}

static CURSOR: Mutex<Option<Cursor>> = Mutex::new(None);

/// `bytes` bytes (64-byte aligned, uninitialised): the region and the offset inside it.
fn reserve(bytes: usize) -> (Arc<Region>, usize) {
    let bytes = bytes.max(1).next_multiple_of(ALIGN);
    if bytes > SEGMENT / 2 {
        return (Arc::new(Region::new(bytes)), 0);
    }
    let mut cur = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cur.as_mut() {
        if let Some(region) = c.region.upgrade() {
            if c.used + bytes <= region.layout.size() {
                let off = c.used;
                c.used += bytes;
                return (region, off);
            }
        }
    }
    let region = Arc::new(Region::new(SEGMENT));
    *cur = Some(Cursor {
        region: Arc::downgrade(&region),
        used: bytes,
    });
    (region, 0)
}

/// An immutable buffer of weights on huge-page-advised memory (see the module docs).
pub struct WeightBuf<T: Plain> {
    region: Option<Arc<Region>>,
    ptr: NonNull<T>,
    len: usize,
    _t: PhantomData<T>,
}

// SAFETY: the elements are never written after construction, and `T` is `Send + Sync`.
unsafe impl<T: Plain> Send for WeightBuf<T> {}
unsafe impl<T: Plain> Sync for WeightBuf<T> {}

impl<T: Plain> WeightBuf<T> {
    /// An empty buffer (no region).
    pub fn empty() -> WeightBuf<T> {
        WeightBuf {
            region: None,
            ptr: NonNull::dangling(),
            len: 0,
            _t: PhantomData,
        }
    }

    /// The first `n` items of `items`; if it yields fewer, the rest are zero. Every element is
    /// written here, before anything can time it (PITFALLS.md #23).
    ///
    /// # Panics
    /// When `n` elements do not fit in the address space (callers size `n` from a checked
    /// tensor shape or a file's length).
    pub fn from_iter(n: usize, items: impl Iterator<Item = T>) -> WeightBuf<T> {
        if n == 0 {
            return WeightBuf::empty();
        }
        let bytes = n
            .checked_mul(std::mem::size_of::<T>())
            .expect("weight buffer size overflows");
        let (region, off) = reserve(bytes);
        // SAFETY: `off + bytes` lies inside the region (`reserve`), the offset is 64-byte
        // aligned (enough for `T`), and this range belongs to no other buffer.
        let base = unsafe { region.ptr.as_ptr().add(off).cast::<T>() };
        let mut written = 0;
        for x in items.take(n) {
            // SAFETY: written < n, inside the reserved range.
            unsafe { base.add(written).write(x) };
            written += 1;
        }
        // SAFETY: the unwritten tail [written, n) is inside the range; all-zero bytes are a
        // valid `T` (`Plain`).
        unsafe { std::ptr::write_bytes(base.add(written), 0, n - written) };
        WeightBuf {
            region: Some(region),
            // SAFETY: derived from the region's non-null pointer.
            ptr: unsafe { NonNull::new_unchecked(base) },
            len: n,
            _t: PhantomData,
        }
    }

    /// A copy of `s`.
    pub fn from_slice(s: &[T]) -> WeightBuf<T> {
        WeightBuf::from_iter(s.len(), s.iter().copied())
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `len` elements were written at `ptr` in `from_iter` (or `len == 0` with a
        // dangling, aligned pointer), and `region` keeps them alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> std::ops::Deref for WeightBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Plain> Clone for WeightBuf<T> {
    /// Another handle on the same (immutable) elements.
    fn clone(&self) -> Self {
        WeightBuf {
            region: self.region.clone(),
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Plain> From<Vec<T>> for WeightBuf<T> {
    fn from(v: Vec<T>) -> Self {
        WeightBuf::from_slice(&v)
    }
}

impl<T: Plain> std::fmt::Debug for WeightBuf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WeightBuf({} x {})",
            self.len,
            std::any::type_name::<T>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_hold_their_values_are_aligned_and_pack_into_shared_regions() {
        let a = WeightBuf::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = WeightBuf::from_iter(5, [7u16, 8].into_iter());
        let c = WeightBuf::from_slice(&[9u8; 100]);
        assert_eq!(&*a, &[1.0, 2.0, 3.0]);
        assert_eq!(
            &*b,
            &[7, 8, 0, 0, 0],
            "a short iterator leaves zeros, not garbage"
        );
        assert_eq!(&*c, &[9u8; 100][..]);
        for p in [
            a.as_ptr() as usize,
            b.as_ptr() as usize,
            c.as_ptr() as usize,
        ] {
            assert_eq!(p % ALIGN, 0);
        }
        assert!(WeightBuf::<f32>::empty().is_empty());
        let a2 = a.clone();
        drop(a);
        assert_eq!(&*a2, &[1.0, 2.0, 3.0], "a clone keeps the region alive");
    }

    #[test]
    fn buffers_built_on_several_threads_do_not_overlap() {
        let bufs: Vec<Vec<WeightBuf<u16>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u16)
                .map(|t| {
                    s.spawn(move || {
                        (0..300u16)
                            .map(|i| {
                                WeightBuf::from_iter(
                                    1 + i as usize * 37,
                                    std::iter::repeat(t * 1000 + i),
                                )
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("builder thread"))
                .collect()
        });
        for (t, v) in bufs.iter().enumerate() {
            for (i, b) in v.iter().enumerate() {
                assert_eq!(b.len(), 1 + i * 37);
                assert!(
                    b.iter().all(|&x| x as usize == t * 1000 + i),
                    "buffer {t}/{i} overwritten"
                );
            }
        }
    }

    #[test]
    fn a_large_buffer_gets_its_own_huge_page_aligned_region() {
        let n = SEGMENT / 2 + 1;
        let big = WeightBuf::from_iter(n, std::iter::repeat(5u8));
        assert_eq!(big.as_ptr() as usize % HUGE, 0);
        assert_eq!(big.len(), n);
        assert!(big.iter().all(|&x| x == 5));
    }
}
