//! Aligned, pre-written f32 buffers for the bandwidth kernels.
//!
//! A buffer is always written in full by its constructor (PITFALLS.md #23: untouched pages are
//! the shared zero page or not yet mapped, and timing them measures page faults or nothing), by
//! the thread that calls it, so that first-touch places its pages on that thread's NUMA node.
//! Buffers of 2 MiB or more are 2 MiB aligned and, on Linux, `madvise(MADV_HUGEPAGE)`d before
//! being touched (unless [`set_huge_pages`] turned that off), so that DRAM bandwidth is not
//! limited by 4 KiB-page TLB misses; the kernel's THP setting decides whether it is honoured.
//!
//! Faulting in (and, with THP `defrag=madvise`, compacting memory for) a 1 GiB buffer can take
//! seconds, more than measuring it. [`reserve_arena`] sets aside one large region from which
//! later large buffers are carved (2 MiB granules, best fit, freed ranges coalesced), so its
//! pages are faulted in once per probe rather than once per measurement; every carved buffer
//! is still written in full. The probe uses an arena only on single-NUMA-node machines, where
//! first-touch placement cannot matter, and releases it when done.

use super::CeilingError;
use std::alloc::Layout;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Cache-line (and AVX-512 non-temporal store) alignment.
pub const LINE: usize = 64;
/// Transparent huge page size (x86-64 and most aarch64 Linux kernels).
pub const HUGE: usize = 2 << 20;

static HUGE_PAGES: AtomicBool = AtomicBool::new(true);

/// Whether new large allocations ask for transparent huge pages (default: yes).
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

pub fn huge_pages() -> bool {
    HUGE_PAGES.load(Ordering::Relaxed)
}

/// One reserved region (address as `usize` so the registry is `Send`).
struct Arena {
    id: usize,
    addr: usize,
    layout: Layout,
    /// Free (offset, length) ranges, sorted by offset, coalesced.
    free: Vec<(usize, usize)>,
    outstanding: usize,
    closing: bool,
}

struct Registry {
    arenas: Vec<Arena>,
    next_id: usize,
}

static ARENAS: Mutex<Registry> = Mutex::new(Registry {
    arenas: Vec::new(),
    next_id: 0,
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    ARENAS.lock().unwrap_or_else(|e| e.into_inner())
}

fn alloc_raw(bytes: usize, align: usize) -> Result<(NonNull<u8>, Layout), CeilingError> {
    let layout =
        Layout::from_size_align(bytes, align).map_err(|_| CeilingError::Alloc { bytes })?;
    // SAFETY: `layout` has a non-zero size (callers never ask for 0 bytes).
    let raw = unsafe { std::alloc::alloc(layout) };
    let ptr = NonNull::new(raw).ok_or(CeilingError::Alloc { bytes })?;
    #[cfg(target_os = "linux")]
    if align == HUGE && huge_pages() {
        // SAFETY: the range is our own fresh allocation; advice never changes contents.
        // Failure (e.g. THP compiled out) only costs TLB misses, so it is ignored.
        unsafe {
            libc::madvise(raw.cast(), bytes, libc::MADV_HUGEPAGE);
        }
    }
    Ok((ptr, layout))
}

/// A fresh 2 MiB-aligned allocation of `bytes` rounded up to whole 2 MiB pages, advised as
/// transparent huge pages (as [`reserve_arena`]'s), untouched. The caller owns it and frees it
/// with `std::alloc::dealloc(ptr, layout)`. For long-lived buffers outside the probe (the
/// engine's weight storage).
pub fn alloc_huge(bytes: usize) -> Result<(NonNull<u8>, Layout), CeilingError> {
    let bytes = bytes
        .max(1)
        .checked_next_multiple_of(HUGE)
        .ok_or(CeilingError::Alloc { bytes })?;
    alloc_raw(bytes, HUGE)
}

/// Asks the kernel to back the 2 MiB-aligned part of `region` with transparent huge pages, as
/// the probe's own buffers are (a DRAM ceiling measured on huge pages and weights streamed
/// through 4 KiB pages would not compare like with like). Call it before the region is first
/// written. Linux only; elsewhere, for regions under 2 MiB, or when [`set_huge_pages`] turned
/// huge pages off, it does nothing. The kernel's THP setting decides whether it is honoured.
pub fn advise_huge_pages<T>(region: &mut [std::mem::MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    if huge_pages() {
        let start = region.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(region);
        let (a, b) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if b > a {
            // SAFETY: [a, b) lies inside `region`, memory this caller owns; MADV_HUGEPAGE only
            // changes how the kernel backs those pages, never their contents. Failure (THP
            // compiled out) only costs TLB misses, so it is ignored.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = region;
}

/// Sets aside `bytes` (rounded up to 2 MiB) from which buffers of 2 MiB or more are carved
/// until [`release_arenas`]. The pages are not touched here.
pub fn reserve_arena(bytes: usize) -> Result<(), CeilingError> {
    let bytes = bytes.div_ceil(HUGE).max(1) * HUGE;
    let (ptr, layout) = alloc_raw(bytes, HUGE)?;
    let mut r = registry();
    let id = r.next_id;
    r.next_id += 1;
    r.arenas.push(Arena {
        id,
        addr: ptr.as_ptr() as usize,
        layout,
        free: vec![(0, bytes)],
        outstanding: 0,
        closing: false,
    });
    Ok(())
}

/// Frees every arena; one still lending memory is freed when its last buffer drops.
pub fn release_arenas() {
    let mut r = registry();
    let mut keep = Vec::new();
    for mut a in std::mem::take(&mut r.arenas) {
        if a.outstanding == 0 {
            // SAFETY: allocated by `reserve_arena` with this layout; nothing borrows from it.
            unsafe { std::alloc::dealloc(a.addr as *mut u8, a.layout) }
        } else {
            a.closing = true;
            keep.push(a);
        }
    }
    r.arenas = keep;
}

/// Bytes reserved in arenas (lent out or free).
pub fn arena_bytes() -> usize {
    registry()
        .arenas
        .iter()
        .filter(|a| !a.closing)
        .map(|a| a.layout.size())
        .sum()
}

/// Carves `bytes` (a multiple of 2 MiB) from the best-fitting free range of an open arena.
fn carve(bytes: usize) -> Option<(usize, usize, usize)> {
    let mut r = registry();
    let (ai, fi) = r
        .arenas
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.closing)
        .flat_map(|(ai, a)| a.free.iter().enumerate().map(move |(fi, f)| (ai, fi, f.1)))
        .filter(|&(_, _, len)| len >= bytes)
        .min_by_key(|&(_, _, len)| len)
        .map(|(ai, fi, _)| (ai, fi))?;
    let a = &mut r.arenas[ai];
    let (off, len) = a.free[fi];
    if len == bytes {
        a.free.remove(fi);
    } else {
        a.free[fi] = (off + bytes, len - bytes);
    }
    a.outstanding += 1;
    Some((a.id, a.addr + off, off))
}

/// Returns a carved range; frees a closing arena once nothing is lent.
fn give_back(id: usize, off: usize, bytes: usize) {
    let mut r = registry();
    let Some(ai) = r.arenas.iter().position(|a| a.id == id) else {
        return;
    };
    let a = &mut r.arenas[ai];
    insert_coalesced(&mut a.free, off, bytes);
    a.outstanding -= 1;
    if a.closing && a.outstanding == 0 {
        let a = r.arenas.remove(ai);
        // SAFETY: allocated by `reserve_arena` with this layout; its last loan just returned.
        unsafe { std::alloc::dealloc(a.addr as *mut u8, a.layout) }
    }
}

/// Inserts the free range (`off`, `len`) into a sorted, coalesced list, merging neighbours.
fn insert_coalesced(free: &mut Vec<(usize, usize)>, off: usize, len: usize) {
    let at = free.partition_point(|f| f.0 < off);
    free.insert(at, (off, len));
    if at + 1 < free.len() && free[at].0 + free[at].1 == free[at + 1].0 {
        free[at].1 += free[at + 1].1;
        free.remove(at + 1);
    }
    if at > 0 && free[at - 1].0 + free[at - 1].1 == free[at].0 {
        free[at - 1].1 += free[at].1;
        free.remove(at);
    }
}

/// Where a buffer's memory came from.
enum Origin {
    Empty,
    Own(Layout),
    Arena {
        id: usize,
        offset: usize,
        bytes: usize,
    },
}

/// A heap buffer of `f32`, aligned to at least 64 bytes, every element written.
pub struct AlignedF32 {
    ptr: NonNull<f32>,
    len: usize,
    /// Elements between the allocation's start and `ptr` (see [`AlignedF32::filled_skewed`]).
    skew: usize,
    origin: Origin,
}

// SAFETY: the buffer owns its memory exclusively, like a `Vec<f32>`.
unsafe impl Send for AlignedF32 {}
// SAFETY: shared references only read, like `&[f32]`.
unsafe impl Sync for AlignedF32 {}

impl AlignedF32 {
    /// `len` elements, each set to `value` (the write that makes every page real).
    pub fn filled(len: usize, value: f32) -> Result<AlignedF32, CeilingError> {
        let bytes = len
            .checked_mul(4)
            .ok_or(CeilingError::Alloc { bytes: usize::MAX })?;
        if bytes == 0 {
            return Ok(AlignedF32 {
                ptr: NonNull::dangling(),
                len: 0,
                skew: 0,
                origin: Origin::Empty,
            });
        }
        let (ptr, origin) = if bytes >= HUGE {
            let rounded = bytes.div_ceil(HUGE) * HUGE;
            match carve(rounded) {
                Some((id, addr, offset)) => (
                    NonNull::new(addr as *mut u8).ok_or(CeilingError::Alloc { bytes })?,
                    Origin::Arena {
                        id,
                        offset,
                        bytes: rounded,
                    },
                ),
                None => {
                    let (p, l) = alloc_raw(bytes, HUGE)?;
                    (p, Origin::Own(l))
                }
            }
        } else {
            let (p, l) = alloc_raw(bytes, LINE)?;
            (p, Origin::Own(l))
        };
        let ptr = ptr.cast::<f32>();
        // SAFETY: `ptr` points to `len` properly aligned, uninitialised f32 slots that we own.
        unsafe {
            for i in 0..len {
                ptr.as_ptr().add(i).write(value);
            }
        }
        Ok(AlignedF32 {
            ptr,
            len,
            skew: 0,
            origin,
        })
    }

    /// Like [`AlignedF32::filled`], but starting `skew_lines` cache lines past a 2 MiB (or
    /// 64-byte) boundary. Streams that start at the same offset within a 4 KiB page make loads
    /// falsely wait for unrelated stores ("4K aliasing", Intel Optimization Reference Manual);
    /// STREAM-like kernels therefore stagger their arrays, and so do ours.
    pub fn filled_skewed(
        len: usize,
        value: f32,
        skew_lines: usize,
    ) -> Result<AlignedF32, CeilingError> {
        let skew = skew_lines
            .checked_mul(LINE / 4)
            .ok_or(CeilingError::Alloc { bytes: usize::MAX })?;
        if len == 0 || skew == 0 {
            return AlignedF32::filled(len, value);
        }
        let total = len
            .checked_add(skew)
            .ok_or(CeilingError::Alloc { bytes: usize::MAX })?;
        let mut b = AlignedF32::filled(total, value)?;
        // SAFETY: `skew < total`, so the new start stays inside the allocation.
        b.ptr = unsafe { NonNull::new_unchecked(b.ptr.as_ptr().add(skew)) };
        b.len = len;
        b.skew = skew;
        Ok(b)
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.len * 4
    }
}

impl Deref for AlignedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `ptr` is valid for `len` initialised elements (or dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedF32 {
    fn drop(&mut self) {
        match self.origin {
            Origin::Empty => {}
            // SAFETY: allocated in `filled` with exactly this layout, starting `skew` elements
            // before `ptr`.
            Origin::Own(layout) => unsafe {
                std::alloc::dealloc(self.ptr.as_ptr().sub(self.skew).cast(), layout)
            },
            Origin::Arena { id, offset, bytes } => give_back(id, offset, bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pitfall_23_buffers_are_aligned_and_fully_written_before_use() {
        for len in [0usize, 1, 7, 16, 65, 1 << 20] {
            let b = AlignedF32::filled(len, 2.5).unwrap();
            assert_eq!(b.len(), len);
            assert!(len == 0 || (b.as_ptr() as usize).is_multiple_of(LINE));
            assert!(b.iter().all(|&x| x == 2.5));
        }
    }

    #[test]
    fn arena_loans_are_carved_coalesced_and_rewritten() {
        // other tests may carve from this arena too: assert only what holds regardless
        reserve_arena(16 << 20).unwrap();
        let a = AlignedF32::filled(1 << 20, 1.0).unwrap(); // 4 MiB
        let b = AlignedF32::filled(1 << 20, 2.0).unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert!(a.iter().all(|&x| x == 1.0) && b.iter().all(|&x| x == 2.0));
        assert_eq!(a.as_ptr() as usize % HUGE, 0);
        drop(a);
        drop(b);
        // after coalescing, 12 MiB fits again and is written with its own value
        let c = AlignedF32::filled(3 << 20, 7.0).unwrap();
        assert!(c.iter().all(|&x| x == 7.0));
        release_arenas(); // c still borrows: its arena is freed when c drops
        drop(c);
    }

    #[test]
    fn freed_ranges_coalesce() {
        let mut free = vec![(3, 1)];
        insert_coalesced(&mut free, 1, 1);
        assert_eq!(free, vec![(1, 1), (3, 1)]);
        insert_coalesced(&mut free, 0, 1);
        assert_eq!(free, vec![(0, 2), (3, 1)]);
        insert_coalesced(&mut free, 2, 1);
        assert_eq!(free, vec![(0, 4)]);
        insert_coalesced(&mut free, 10, 5);
        assert_eq!(free, vec![(0, 4), (10, 5)]);
    }

    #[test]
    fn skewed_buffers_start_past_the_boundary_and_are_written() {
        for (len, lines) in [(0usize, 3usize), (5, 0), (1000, 1), (1 << 20, 5)] {
            let b = AlignedF32::filled_skewed(len, 4.0, lines).unwrap();
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 4.0));
            assert!(len == 0 || (b.as_ptr() as usize).is_multiple_of(LINE));
            if len * 4 >= HUGE {
                // large buffers start on a 2 MiB boundary, so the skew is the page offset
                assert_eq!(b.as_ptr() as usize % 4096, (lines * LINE) % 4096);
            }
        }
    }

    #[test]
    fn absurd_size_is_an_error_not_an_abort() {
        assert!(AlignedF32::filled(usize::MAX / 2, 0.0).is_err());
    }
}
