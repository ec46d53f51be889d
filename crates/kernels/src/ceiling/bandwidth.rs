//! Bandwidth-ceiling kernels: unit-stride f32 streams over pre-written buffers.
//!
//! Five patterns, as in STREAM and likwid-bench (formats only): `read` (load every element and
//! XOR-reduce the 32-bit words, one read stream; the roof of LLM decode, whose weights and KV
//! cache are read-only), `write` (regular stores), `write_nt` (non-temporal stores, no
//! write-allocate), `copy` (`a[i] = b[i]`) and `triad` (`a[i] = b[i] + s * c[i]`). Every stream
//! is counted in the nominal bytes; regular stores additionally cause a write-allocate read of
//! each line, declared separately (PITFALLS.md #11). A call runs `passes` complete passes
//! without reducing in between, so L1-sized working sets are not dominated by per-call
//! overhead. The read kernel reduces with XOR rather than a float sum so that it needs one
//! vector ALU operation per two loads: with one `vaddps` per load the two 512-bit ALU ports,
//! not the loads, set the L1 limit (about 80 instead of 110 B/cycle on the machine this was
//! written on; likwid-bench's `load` kernel only loads).
//!
//! What the compiler made of them (rustc 1.95, `objdump -d`, looked at once): the read kernels
//! are `asm!` (8 x `vmovdqu32` + 8 x `vpternlogd zmm, zmm, [reg+disp], 0x96` per KiB; 16 x
//! `vpxor ymm, ymm, [reg+disp]` per 512 B); `write_f32_avx512` is 16 x `vmovups [mem], zmm`;
//! `write_nt_f32_avx512` 16 x `vmovntps`; `copy_f32_avx512` 16 x (`vmovups` load, store), no
//! `memcpy` call (the first version became `memcpy` calls: the `opaque!` barrier prevents
//! it); `triad_f32_avx512` 8 x (`vmovups`, `vfmadd213ps` with a memory operand, `vmovups`).
//! The scalar kernels are plain loops the compiler may vectorise for the baseline target (SSE2
//! on x86-64), except `copy`, which goes through a register per element: they are the portable
//! path, not a claim about scalar hardware. Arrays are staggered against 4K aliasing
//! ([`BwBuffers::new`]).

use super::buffer::AlignedF32;
use super::{CeilingError, Tally};
use crate::isa::Isa;
use std::hint::black_box;

/// The access pattern of a bandwidth kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BwOp {
    Read,
    Write,
    WriteNt,
    Copy,
    Triad,
}

impl BwOp {
    pub const ALL: [BwOp; 5] = [
        BwOp::Read,
        BwOp::Write,
        BwOp::WriteNt,
        BwOp::Copy,
        BwOp::Triad,
    ];
    pub fn name(self) -> &'static str {
        match self {
            BwOp::Read => "read",
            BwOp::Write => "write",
            BwOp::WriteNt => "write_nt",
            BwOp::Copy => "copy",
            BwOp::Triad => "triad",
        }
    }
    /// Number of arrays (streams) the pattern touches.
    pub fn arrays(self) -> usize {
        match self {
            BwOp::Read | BwOp::Write | BwOp::WriteNt => 1,
            BwOp::Copy => 2,
            BwOp::Triad => 3,
        }
    }
}

/// A bandwidth kernel's declared accounting, checked against its scalar twin's tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BwSpec {
    pub name: &'static str,
    pub isa: Isa,
    pub needs: &'static str,
    pub op: BwOp,
    pub read_streams: u32,
    pub write_streams: u32,
    /// Nominal bytes loaded per element index.
    pub bytes_read_per_elem: u64,
    /// Nominal bytes stored per element index.
    pub bytes_written_per_elem: u64,
    /// Write-allocate reads per element index (regular stores only).
    pub write_allocate_per_elem: u64,
    pub flops_per_elem: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BwKernel {
    ReadAvx512,
    ReadAvx2,
    ReadScalar,
    WriteAvx512,
    WriteAvx2,
    WriteScalar,
    WriteNtAvx512,
    WriteNtAvx2,
    CopyAvx512,
    CopyAvx2,
    CopyScalar,
    TriadAvx512,
    TriadAvx2,
    TriadScalar,
    ReadNeon,
    WriteNeon,
    CopyNeon,
    TriadNeon,
}

#[allow(clippy::too_many_arguments)]
const fn bw(
    name: &'static str,
    isa: Isa,
    needs: &'static str,
    op: BwOp,
    read_streams: u32,
    write_streams: u32,
    bytes_read_per_elem: u64,
    bytes_written_per_elem: u64,
    write_allocate_per_elem: u64,
    flops_per_elem: u64,
) -> BwSpec {
    BwSpec {
        name,
        isa,
        needs,
        op,
        read_streams,
        write_streams,
        bytes_read_per_elem,
        bytes_written_per_elem,
        write_allocate_per_elem,
        flops_per_elem,
    }
}

const NE: &str = "neon";
pub const READ_F32_NEON: BwSpec = bw("read_f32_neon", Isa::Neon, NE, BwOp::Read, 1, 0, 4, 0, 0, 0);
pub const WRITE_F32_NEON: BwSpec = bw(
    "write_f32_neon",
    Isa::Neon,
    NE,
    BwOp::Write,
    0,
    1,
    0,
    4,
    4,
    0,
);
pub const COPY_F32_NEON: BwSpec = bw("copy_f32_neon", Isa::Neon, NE, BwOp::Copy, 1, 1, 4, 4, 4, 0);
pub const TRIAD_F32_NEON: BwSpec = bw(
    "triad_f32_neon",
    Isa::Neon,
    NE,
    BwOp::Triad,
    2,
    1,
    8,
    4,
    4,
    2,
);
const A5: &str = "avx512f";
const A2: &str = "avx2";
pub const READ_F32_AVX512: BwSpec = bw(
    "read_f32_avx512",
    Isa::Avx512,
    A5,
    BwOp::Read,
    1,
    0,
    4,
    0,
    0,
    0,
);
pub const READ_F32_AVX2: BwSpec = bw("read_f32_avx2", Isa::Avx2, A2, BwOp::Read, 1, 0, 4, 0, 0, 0);
pub const READ_F32_SCALAR: BwSpec = bw(
    "read_f32_scalar",
    Isa::Scalar,
    "",
    BwOp::Read,
    1,
    0,
    4,
    0,
    0,
    0,
);
pub const WRITE_F32_AVX512: BwSpec = bw(
    "write_f32_avx512",
    Isa::Avx512,
    A5,
    BwOp::Write,
    0,
    1,
    0,
    4,
    4,
    0,
);
pub const WRITE_F32_AVX2: BwSpec = bw(
    "write_f32_avx2",
    Isa::Avx2,
    A2,
    BwOp::Write,
    0,
    1,
    0,
    4,
    4,
    0,
);
pub const WRITE_F32_SCALAR: BwSpec = bw(
    "write_f32_scalar",
    Isa::Scalar,
    "",
    BwOp::Write,
    0,
    1,
    0,
    4,
    4,
    0,
);
pub const WRITE_NT_F32_AVX512: BwSpec = bw(
    "write_nt_f32_avx512",
    Isa::Avx512,
    A5,
    BwOp::WriteNt,
    0,
    1,
    0,
    4,
    0,
    0,
);
pub const WRITE_NT_F32_AVX2: BwSpec = bw(
    "write_nt_f32_avx2",
    Isa::Avx2,
    A2,
    BwOp::WriteNt,
    0,
    1,
    0,
    4,
    0,
    0,
);
pub const COPY_F32_AVX512: BwSpec = bw(
    "copy_f32_avx512",
    Isa::Avx512,
    A5,
    BwOp::Copy,
    1,
    1,
    4,
    4,
    4,
    0,
);
pub const COPY_F32_AVX2: BwSpec = bw("copy_f32_avx2", Isa::Avx2, A2, BwOp::Copy, 1, 1, 4, 4, 4, 0);
pub const COPY_F32_SCALAR: BwSpec = bw(
    "copy_f32_scalar",
    Isa::Scalar,
    "",
    BwOp::Copy,
    1,
    1,
    4,
    4,
    4,
    0,
);
pub const TRIAD_F32_AVX512: BwSpec = bw(
    "triad_f32_avx512",
    Isa::Avx512,
    A5,
    BwOp::Triad,
    2,
    1,
    8,
    4,
    4,
    2,
);
pub const TRIAD_F32_AVX2: BwSpec = bw(
    "triad_f32_avx2",
    Isa::Avx2,
    "avx2+fma",
    BwOp::Triad,
    2,
    1,
    8,
    4,
    4,
    2,
);
pub const TRIAD_F32_SCALAR: BwSpec = bw(
    "triad_f32_scalar",
    Isa::Scalar,
    "",
    BwOp::Triad,
    2,
    1,
    8,
    4,
    4,
    2,
);

impl BwKernel {
    pub const ALL: [BwKernel; 18] = [
        BwKernel::ReadAvx512,
        BwKernel::ReadAvx2,
        BwKernel::ReadScalar,
        BwKernel::WriteAvx512,
        BwKernel::WriteAvx2,
        BwKernel::WriteScalar,
        BwKernel::WriteNtAvx512,
        BwKernel::WriteNtAvx2,
        BwKernel::CopyAvx512,
        BwKernel::CopyAvx2,
        BwKernel::CopyScalar,
        BwKernel::TriadAvx512,
        BwKernel::TriadAvx2,
        BwKernel::TriadScalar,
        BwKernel::ReadNeon,
        BwKernel::WriteNeon,
        BwKernel::CopyNeon,
        BwKernel::TriadNeon,
    ];

    pub fn spec(self) -> &'static BwSpec {
        match self {
            BwKernel::ReadAvx512 => &READ_F32_AVX512,
            BwKernel::ReadAvx2 => &READ_F32_AVX2,
            BwKernel::ReadScalar => &READ_F32_SCALAR,
            BwKernel::WriteAvx512 => &WRITE_F32_AVX512,
            BwKernel::WriteAvx2 => &WRITE_F32_AVX2,
            BwKernel::WriteScalar => &WRITE_F32_SCALAR,
            BwKernel::WriteNtAvx512 => &WRITE_NT_F32_AVX512,
            BwKernel::WriteNtAvx2 => &WRITE_NT_F32_AVX2,
            BwKernel::CopyAvx512 => &COPY_F32_AVX512,
            BwKernel::CopyAvx2 => &COPY_F32_AVX2,
            BwKernel::CopyScalar => &COPY_F32_SCALAR,
            BwKernel::TriadAvx512 => &TRIAD_F32_AVX512,
            BwKernel::TriadAvx2 => &TRIAD_F32_AVX2,
            BwKernel::TriadScalar => &TRIAD_F32_SCALAR,
            BwKernel::ReadNeon => &READ_F32_NEON,
            BwKernel::WriteNeon => &WRITE_F32_NEON,
            BwKernel::CopyNeon => &COPY_F32_NEON,
            BwKernel::TriadNeon => &TRIAD_F32_NEON,
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn supported(self) -> bool {
        match self.spec().isa {
            Isa::Scalar => true,
            isa => isa.available(),
        }
    }

    /// Supported and within the ISA level `cap`.
    pub fn allowed(self, cap: Isa) -> bool {
        self.spec().isa.within(cap) && self.supported()
    }

    /// The best kernel for `op` within `cap` (non-temporal writes have no scalar kernel).
    pub fn best(op: BwOp, cap: Isa) -> Option<BwKernel> {
        BwKernel::ALL
            .into_iter()
            .filter(|k| k.spec().op == op && k.allowed(cap))
            .max_by_key(|k| match k.spec().isa {
                Isa::Scalar => 0,
                Isa::Avx2 | Isa::Neon => 1,
                Isa::Avx512 => 2,
            })
    }
}

/// A kernel's arrays: `a` is written (or read by `read`), `b` and `c` are read.
pub struct BwBuffers {
    pub a: AlignedF32,
    pub b: AlignedF32,
    pub c: AlignedF32,
}

impl BwBuffers {
    /// Arrays for `op` whose total size is at most `working_set_bytes`, each a whole number of
    /// 64-byte lines, every element written by the calling thread. The second and third arrays
    /// start 5 and 10 cache lines past a page boundary, the first on one, so that no two
    /// streams share their offset within a 4 KiB page (no 4K aliasing between them).
    pub fn new(op: BwOp, working_set_bytes: usize) -> Result<BwBuffers, CeilingError> {
        let per = working_set_bytes / op.arrays() / 64 * 16;
        let n = |k: usize| if op.arrays() >= k { per } else { 0 };
        Ok(BwBuffers {
            a: AlignedF32::filled(per, 1.0)?,
            b: AlignedF32::filled_skewed(n(2), 2.0, 5)?,
            c: AlignedF32::filled_skewed(n(3), 3.0, 10)?,
        })
    }

    /// Elements per array.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// Bytes of all arrays together (the working set).
    pub fn bytes(&self) -> usize {
        self.a.bytes() + self.b.bytes() + self.c.bytes()
    }
}

/// Triad scalar.
const TRIAD_S: f32 = 0.5;

/// Runs `passes` passes of `kernel` over `bufs`; returns a checksum. The timed entry.
#[inline(never)]
pub fn run(kernel: BwKernel, bufs: &mut BwBuffers, passes: u64) -> Result<f64, CeilingError> {
    if !kernel.supported() {
        return Err(CeilingError::Unsupported {
            kernel: kernel.name(),
            needs: kernel.spec().needs,
        });
    }
    let op = kernel.spec().op;
    let n = bufs.a.len();
    for (arr, used) in [(&bufs.b, op.arrays() >= 2), (&bufs.c, op.arrays() >= 3)] {
        if used && arr.len() != n {
            return Err(CeilingError::LengthMismatch {
                kernel: kernel.name(),
                expected: n,
                got: arr.len(),
            });
        }
    }
    let passes = black_box(passes);
    let s = black_box(TRIAD_S);
    let (a, b, c) = (&mut bufs.a[..], &bufs.b[..], &bufs.c[..]);
    let r = match kernel {
        BwKernel::ReadScalar => scalar::read(a, passes),
        BwKernel::WriteScalar => scalar::write(a, passes),
        BwKernel::CopyScalar => scalar::copy(a, b, passes),
        BwKernel::TriadScalar => scalar::triad(a, b, c, s, passes),
        // SAFETY: `kernel.supported()` checked the ISA level (AVX-512 F/BW/VL/DQ or
        // AVX2+FMA+F16C) that every called function's `#[target_feature]` enables, and the
        // slices are valid for their lengths, which were checked equal above.
        #[cfg(target_arch = "x86_64")]
        k => unsafe {
            match k {
                BwKernel::ReadAvx512 => x86::read_avx512(a, passes),
                BwKernel::ReadAvx2 => x86::read_avx2(a, passes),
                BwKernel::WriteAvx512 => x86::write_avx512(a, passes),
                BwKernel::WriteAvx2 => x86::write_avx2(a, passes),
                BwKernel::WriteNtAvx512 => x86::write_nt_avx512(a, passes),
                BwKernel::WriteNtAvx2 => x86::write_nt_avx2(a, passes),
                BwKernel::CopyAvx512 => x86::copy_avx512(a, b, passes),
                BwKernel::CopyAvx2 => x86::copy_avx2(a, b, passes),
                BwKernel::TriadAvx512 => x86::triad_avx512(a, b, c, s, passes),
                BwKernel::TriadAvx2 => x86::triad_avx2(a, b, c, s, passes),
                _ => f64::NAN,
            }
        },
        // SAFETY: `kernel.supported()` checked NEON; slice lengths were checked above.
        #[cfg(target_arch = "aarch64")]
        k => unsafe {
            match k {
                BwKernel::ReadNeon => arm::read_neon(a, passes),
                BwKernel::WriteNeon => arm::write_neon(a, passes),
                BwKernel::CopyNeon => arm::copy_neon(a, b, passes),
                BwKernel::TriadNeon => arm::triad_neon(a, b, c, s, passes),
                _ => f64::NAN,
            }
        },
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        _ => f64::NAN,
    };
    Ok(black_box(r))
}

/// The value `write` stores in pass `p` (changes per pass so no pass is a no-op).
fn write_value(p: u64) -> f32 {
    (p % 1024) as f32 + 0.5
}

/// Re-executes `kernel` element by element on `bufs`, tallying every byte and FLOP.
pub fn twin(kernel: BwKernel, bufs: &mut BwBuffers, passes: u64) -> (f64, Tally) {
    let op = kernel.spec().op;
    let mut t = Tally::default();
    let mut xor = 0u32;
    let n = bufs.a.len();
    for p in 0..passes {
        for i in 0..n {
            match op {
                BwOp::Read => {
                    xor ^= bufs.a[i].to_bits();
                    t.bytes_read += 4;
                }
                BwOp::Write | BwOp::WriteNt => {
                    bufs.a[i] = write_value(p);
                    t.bytes_written += 4;
                    if op == BwOp::Write {
                        t.write_allocate_bytes += 4;
                    }
                }
                BwOp::Copy => {
                    bufs.a[i] = bufs.b[i];
                    t.bytes_read += 4;
                    t.bytes_written += 4;
                    t.write_allocate_bytes += 4;
                }
                BwOp::Triad => {
                    bufs.a[i] = TRIAD_S.mul_add(bufs.c[i], bufs.b[i]);
                    t.bytes_read += 8;
                    t.bytes_written += 4;
                    t.write_allocate_bytes += 4;
                    t.flops += 2;
                }
            }
        }
    }
    (xor as f64, t)
}

mod scalar {
    use super::*;

    pub(super) fn read(a: &[f32], passes: u64) -> f64 {
        let mut acc = [0u32; 8];
        for _ in 0..passes {
            let mut chunks = a.chunks_exact(8);
            for ch in &mut chunks {
                for (s, x) in acc.iter_mut().zip(ch) {
                    *s ^= x.to_bits();
                }
            }
            for x in chunks.remainder() {
                acc[0] ^= x.to_bits();
            }
        }
        acc.iter().fold(0, |x, v| x ^ v) as f64
    }

    pub(super) fn write(a: &mut [f32], passes: u64) -> f64 {
        for p in 0..passes {
            let v = black_box(write_value(p));
            for x in a.iter_mut() {
                *x = v;
            }
        }
        a.first().copied().unwrap_or(0.0) as f64
    }

    pub(super) fn copy(a: &mut [f32], b: &[f32], passes: u64) -> f64 {
        for _ in 0..passes {
            for (d, s) in a.iter_mut().zip(b) {
                // through a register, so the loop is not turned into a `memcpy` call (which
                // may switch to non-temporal stores and change what is measured)
                let mut v = *s;
                crate::ceiling::opaque_f32!(v);
                *d = v;
            }
        }
        a.first().copied().unwrap_or(0.0) as f64
    }

    pub(super) fn triad(a: &mut [f32], b: &[f32], c: &[f32], s: f32, passes: u64) -> f64 {
        for _ in 0..passes {
            for ((x, y), z) in a.iter_mut().zip(b).zip(c) {
                *x = s.mul_add(*z, *y);
            }
        }
        a.first().copied().unwrap_or(0.0) as f64
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::ceiling::opaque;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// `$v` lanes per register, 16 registers per unrolled step.
    macro_rules! bw_kernels {
        ($feat:literal, $lanes:literal, $load:ident, $store:ident,
         $stream:ident, $set1:ident, $fma:ident, $reg:ident,
         $write:ident, $write_nt:ident, $copy:ident, $triad:ident) => {
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $write(a: &mut [f32], passes: u64) -> f64 {
                const STEP: usize = 16 * $lanes;
                let (n, p) = (a.len(), a.as_mut_ptr());
                for pass in 0..passes {
                    let x = black_box(write_value(pass));
                    let v = $set1(x);
                    let mut i = 0;
                    while i + STEP <= n {
                        for j in 0..16 {
                            $store(p.add(i + j * $lanes), v);
                        }
                        i += STEP;
                    }
                    while i + $lanes <= n {
                        $store(p.add(i), v);
                        i += $lanes;
                    }
                    for k in i..n {
                        *p.add(k) = x;
                    }
                }
                a.first().copied().unwrap_or(0.0) as f64
            }

            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $write_nt(a: &mut [f32], passes: u64) -> f64 {
                const STEP: usize = 16 * $lanes;
                const ALIGN: usize = $lanes * 4;
                let (n, p) = (a.len(), a.as_mut_ptr());
                // regular stores up to the first aligned element (buffers are 64-byte aligned,
                // so only a sub-slice ever takes this path)
                let head = ((ALIGN - (p as usize) % ALIGN) % ALIGN / 4).min(n);
                for pass in 0..passes {
                    let x = black_box(write_value(pass));
                    let v = $set1(x);
                    for k in 0..head {
                        *p.add(k) = x;
                    }
                    let mut i = head;
                    while i + STEP <= n {
                        for j in 0..16 {
                            $stream(p.add(i + j * $lanes), v);
                        }
                        i += STEP;
                    }
                    while i + $lanes <= n {
                        $stream(p.add(i), v);
                        i += $lanes;
                    }
                    for k in i..n {
                        *p.add(k) = x;
                    }
                }
                // non-temporal stores are weakly ordered: fence before anyone reads
                _mm_sfence();
                a.first().copied().unwrap_or(0.0) as f64
            }

            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $copy(a: &mut [f32], b: &[f32], passes: u64) -> f64 {
                const STEP: usize = 16 * $lanes;
                let (n, d, s) = (a.len(), a.as_mut_ptr(), b.as_ptr());
                for _ in 0..passes {
                    let mut i = 0;
                    while i + STEP <= n {
                        for j in 0..16 {
                            // through a register the optimiser cannot see into: otherwise
                            // the loop becomes `memcpy` calls (seen in objdump)
                            let mut v = $load(s.add(i + j * $lanes));
                            opaque!(v, $reg);
                            $store(d.add(i + j * $lanes), v);
                        }
                        i += STEP;
                    }
                    while i + $lanes <= n {
                        let mut v = $load(s.add(i));
                        opaque!(v, $reg);
                        $store(d.add(i), v);
                        i += $lanes;
                    }
                    for k in i..n {
                        let mut x = *s.add(k);
                        crate::ceiling::opaque_f32!(x);
                        *d.add(k) = x;
                    }
                }
                a.first().copied().unwrap_or(0.0) as f64
            }

            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $triad(
                a: &mut [f32],
                b: &[f32],
                c: &[f32],
                s: f32,
                passes: u64,
            ) -> f64 {
                const STEP: usize = 8 * $lanes;
                let (n, d, pb, pc) = (a.len(), a.as_mut_ptr(), b.as_ptr(), c.as_ptr());
                let vs = $set1(s);
                for _ in 0..passes {
                    let mut i = 0;
                    while i + STEP <= n {
                        for j in 0..8 {
                            let k = i + j * $lanes;
                            $store(d.add(k), $fma(vs, $load(pc.add(k)), $load(pb.add(k))));
                        }
                        i += STEP;
                    }
                    while i + $lanes <= n {
                        $store(d.add(i), $fma(vs, $load(pc.add(i)), $load(pb.add(i))));
                        i += $lanes;
                    }
                    for k in i..n {
                        *d.add(k) = s.mul_add(*pc.add(k), *pb.add(k));
                    }
                }
                a.first().copied().unwrap_or(0.0) as f64
            }
        };
    }

    /// XOR of the 32-bit words of `a[..]` (outside the asm blocks: tails).
    fn xor_words(a: &[f32]) -> u32 {
        a.iter().fold(0, |x, v| x ^ v.to_bits())
    }

    /// Read: 16 zmm loads per 1 KiB step, XOR-reduced two at a time: `vmovdqu32` (a pure
    /// load) then `vpternlogd acc, t, [mem], 0x96` (acc ^= t ^ mem). One vector ALU op per two
    /// loads leaves the two 512-bit load ports as the only limit (with one `vaddps` per load,
    /// the two 512-bit ALU ports saturate first: 80 instead of ~110 B/cycle from L1 here).
    /// Base+displacement addressing keeps load+op micro-fused. Hand-written `asm!` so the
    /// loop is exactly this.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn read_avx512(a: &[f32], passes: u64) -> f64 {
        let main = a.len() / 256 * 256;
        let p = a.as_ptr();
        let mut out = [0u32; 16];
        if main > 0 && passes > 0 {
            asm!(
                "vpxord zmm0, zmm0, zmm0",
                "vpxord zmm1, zmm1, zmm1",
                "vpxord zmm2, zmm2, zmm2",
                "vpxord zmm3, zmm3, zmm3",
                "vpxord zmm4, zmm4, zmm4",
                "vpxord zmm5, zmm5, zmm5",
                "vpxord zmm6, zmm6, zmm6",
                "vpxord zmm7, zmm7, zmm7",
                "3:",
                "mov {cur}, {p}",
                "2:",
                "vmovdqu32 zmm16, [{cur}]",
                "vpternlogd zmm0, zmm16, [{cur} + 64], 0x96",
                "vmovdqu32 zmm17, [{cur} + 128]",
                "vpternlogd zmm1, zmm17, [{cur} + 192], 0x96",
                "vmovdqu32 zmm18, [{cur} + 256]",
                "vpternlogd zmm2, zmm18, [{cur} + 320], 0x96",
                "vmovdqu32 zmm19, [{cur} + 384]",
                "vpternlogd zmm3, zmm19, [{cur} + 448], 0x96",
                "vmovdqu32 zmm20, [{cur} + 512]",
                "vpternlogd zmm4, zmm20, [{cur} + 576], 0x96",
                "vmovdqu32 zmm21, [{cur} + 640]",
                "vpternlogd zmm5, zmm21, [{cur} + 704], 0x96",
                "vmovdqu32 zmm22, [{cur} + 768]",
                "vpternlogd zmm6, zmm22, [{cur} + 832], 0x96",
                "vmovdqu32 zmm23, [{cur} + 896]",
                "vpternlogd zmm7, zmm23, [{cur} + 960], 0x96",
                "add {cur}, 1024",
                "cmp {cur}, {end}",
                "jb 2b",
                "dec {n}",
                "jnz 3b",
                "vpternlogd zmm0, zmm1, zmm2, 0x96",
                "vpternlogd zmm3, zmm4, zmm5, 0x96",
                "vpternlogd zmm0, zmm6, zmm7, 0x96",
                "vpxord zmm0, zmm0, zmm3",
                "vmovdqu32 [{out}], zmm0",
                p = in(reg) p,
                end = in(reg) p.add(main),
                out = in(reg) out.as_mut_ptr(),
                cur = out(reg) _,
                n = inout(reg) passes => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
                options(nostack),
            );
        }
        let tail = if passes % 2 == 1 {
            xor_words(&a[main..])
        } else {
            0
        };
        (out.iter().fold(0, |x, v| x ^ v) ^ tail) as f64
    }

    /// Read with AVX2: 16 `vpxor ymmN, ymmN, [mem]` per 512 B (8 accumulators); integer
    /// vector ops have three ports on Intel cores, so the loads are the limit.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn read_avx2(a: &[f32], passes: u64) -> f64 {
        let main = a.len() / 128 * 128;
        let p = a.as_ptr();
        let mut out = [0u32; 8];
        if main > 0 && passes > 0 {
            asm!(
                "vpxor ymm0, ymm0, ymm0",
                "vpxor ymm1, ymm1, ymm1",
                "vpxor ymm2, ymm2, ymm2",
                "vpxor ymm3, ymm3, ymm3",
                "vpxor ymm4, ymm4, ymm4",
                "vpxor ymm5, ymm5, ymm5",
                "vpxor ymm6, ymm6, ymm6",
                "vpxor ymm7, ymm7, ymm7",
                "3:",
                "mov {cur}, {p}",
                "2:",
                "vpxor ymm0, ymm0, [{cur}]",
                "vpxor ymm1, ymm1, [{cur} + 32]",
                "vpxor ymm2, ymm2, [{cur} + 64]",
                "vpxor ymm3, ymm3, [{cur} + 96]",
                "vpxor ymm4, ymm4, [{cur} + 128]",
                "vpxor ymm5, ymm5, [{cur} + 160]",
                "vpxor ymm6, ymm6, [{cur} + 192]",
                "vpxor ymm7, ymm7, [{cur} + 224]",
                "vpxor ymm0, ymm0, [{cur} + 256]",
                "vpxor ymm1, ymm1, [{cur} + 288]",
                "vpxor ymm2, ymm2, [{cur} + 320]",
                "vpxor ymm3, ymm3, [{cur} + 352]",
                "vpxor ymm4, ymm4, [{cur} + 384]",
                "vpxor ymm5, ymm5, [{cur} + 416]",
                "vpxor ymm6, ymm6, [{cur} + 448]",
                "vpxor ymm7, ymm7, [{cur} + 480]",
                "add {cur}, 512",
                "cmp {cur}, {end}",
                "jb 2b",
                "dec {n}",
                "jnz 3b",
                "vpxor ymm0, ymm0, ymm1",
                "vpxor ymm2, ymm2, ymm3",
                "vpxor ymm4, ymm4, ymm5",
                "vpxor ymm6, ymm6, ymm7",
                "vpxor ymm0, ymm0, ymm2",
                "vpxor ymm4, ymm4, ymm6",
                "vpxor ymm0, ymm0, ymm4",
                "vmovdqu [{out}], ymm0",
                p = in(reg) p,
                end = in(reg) p.add(main),
                out = in(reg) out.as_mut_ptr(),
                cur = out(reg) _,
                n = inout(reg) passes => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                options(nostack),
            );
        }
        let tail = if passes % 2 == 1 {
            xor_words(&a[main..])
        } else {
            0
        };
        (out.iter().fold(0, |x, v| x ^ v) ^ tail) as f64
    }

    bw_kernels!(
        "avx512f",
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_stream_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        zmm_reg,
        write_avx512,
        write_nt_avx512,
        copy_avx512,
        triad_avx512
    );
    bw_kernels!(
        "avx2,fma",
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_stream_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        ymm_reg,
        write_avx2,
        write_nt_avx2,
        copy_avx2,
        triad_avx2
    );
}

/// aarch64 NEON streams (intrinsics): 128-bit loads/stores, 16 registers (256 B) per unrolled
/// step for write and copy, 8 for read (XOR into 8 accumulators) and triad. No non-temporal
/// kernel: Arm's `stnp` is only a hint and most cores still allocate.
#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use crate::ceiling::opaque;
    use std::arch::aarch64::*;

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn read_neon(a: &[f32], passes: u64) -> f64 {
        const STEP: usize = 32;
        let n = a.len();
        let mut acc = [vdupq_n_u32(0); 8];
        let mut tail = 0u32;
        for _ in 0..passes {
            // a fresh-looking base each pass: XOR-ing a pass twice must not cancel out
            let p = black_box(a.as_ptr()).cast::<u32>();
            let mut i = 0;
            while i + STEP <= n {
                for (j, x) in acc.iter_mut().enumerate() {
                    *x = veorq_u32(*x, vld1q_u32(p.add(i + 4 * j)));
                }
                i += STEP;
            }
            while i + 4 <= n {
                acc[0] = veorq_u32(acc[0], vld1q_u32(p.add(i)));
                i += 4;
            }
            for k in i..n {
                tail ^= *p.add(k);
            }
        }
        let mut out = [0u32; 32];
        for (j, x) in acc.iter().enumerate() {
            vst1q_u32(out.as_mut_ptr().add(4 * j), *x);
        }
        (out.iter().fold(tail, |x, v| x ^ v)) as f64
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn write_neon(a: &mut [f32], passes: u64) -> f64 {
        const STEP: usize = 64;
        let (n, p) = (a.len(), a.as_mut_ptr());
        for pass in 0..passes {
            let x = black_box(write_value(pass));
            let v = vdupq_n_f32(x);
            let mut i = 0;
            while i + STEP <= n {
                for j in 0..16 {
                    vst1q_f32(p.add(i + 4 * j), v);
                }
                i += STEP;
            }
            while i + 4 <= n {
                vst1q_f32(p.add(i), v);
                i += 4;
            }
            for k in i..n {
                *p.add(k) = x;
            }
        }
        a.first().copied().unwrap_or(0.0) as f64
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn copy_neon(a: &mut [f32], b: &[f32], passes: u64) -> f64 {
        const STEP: usize = 64;
        let (n, d, s) = (a.len(), a.as_mut_ptr(), b.as_ptr());
        for _ in 0..passes {
            let mut i = 0;
            while i + STEP <= n {
                for j in 0..16 {
                    // through a register the optimiser cannot see into (no `memcpy` calls)
                    let mut v = vld1q_f32(s.add(i + 4 * j));
                    opaque!(v, vreg);
                    vst1q_f32(d.add(i + 4 * j), v);
                }
                i += STEP;
            }
            while i + 4 <= n {
                let mut v = vld1q_f32(s.add(i));
                opaque!(v, vreg);
                vst1q_f32(d.add(i), v);
                i += 4;
            }
            for k in i..n {
                let mut x = *s.add(k);
                crate::ceiling::opaque_f32!(x);
                *d.add(k) = x;
            }
        }
        a.first().copied().unwrap_or(0.0) as f64
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn triad_neon(
        a: &mut [f32],
        b: &[f32],
        c: &[f32],
        s: f32,
        passes: u64,
    ) -> f64 {
        const STEP: usize = 32;
        let (n, d, pb, pc) = (a.len(), a.as_mut_ptr(), b.as_ptr(), c.as_ptr());
        let vs = vdupq_n_f32(s);
        for _ in 0..passes {
            let mut i = 0;
            while i + STEP <= n {
                for j in 0..8 {
                    let k = i + 4 * j;
                    // vfmaq(b, s, c) = b + s * c, one rounding: the twin's s.mul_add(c, b)
                    vst1q_f32(
                        d.add(k),
                        vfmaq_f32(vld1q_f32(pb.add(k)), vs, vld1q_f32(pc.add(k))),
                    );
                }
                i += STEP;
            }
            while i + 4 <= n {
                vst1q_f32(
                    d.add(i),
                    vfmaq_f32(vld1q_f32(pb.add(i)), vs, vld1q_f32(pc.add(i))),
                );
                i += 4;
            }
            for k in i..n {
                *d.add(k) = s.mul_add(*pc.add(k), *pb.add(k));
            }
        }
        a.first().copied().unwrap_or(0.0) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [usize; 12] = [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100_003];

    /// Buffers of exactly `n` elements with small-integer contents (exact f32 sums).
    fn bufs(op: BwOp, n: usize) -> BwBuffers {
        let mk = |k: usize| {
            let mut b = AlignedF32::filled(if op.arrays() >= k { n } else { 0 }, 0.0).unwrap();
            for (i, x) in b.iter_mut().enumerate() {
                *x = ((i * (k + 3)) % 7) as f32;
            }
            b
        };
        BwBuffers {
            a: mk(1),
            b: mk(2),
            c: mk(3),
        }
    }

    #[test]
    fn every_kernel_matches_its_scalar_twin_on_every_isa_this_cpu_has() {
        for k in BwKernel::ALL {
            if !k.supported() {
                println!("skip {}: this CPU lacks {}", k.name(), k.spec().needs);
                continue;
            }
            let op = k.spec().op;
            for n in SIZES {
                for passes in [1u64, 3] {
                    let mut got = bufs(op, n);
                    let mut want = bufs(op, n);
                    let r = run(k, &mut got, passes).unwrap();
                    let (s, _) = twin(k, &mut want, passes);
                    assert_eq!(
                        &got.a[..],
                        &want.a[..],
                        "{} n={n} passes={passes}",
                        k.name()
                    );
                    if op == BwOp::Read {
                        assert_eq!(r, s, "{} sum n={n}", k.name());
                    }
                }
            }
        }
    }

    #[test]
    fn declared_bytes_and_streams_match_what_the_twin_counts() {
        for k in BwKernel::ALL {
            let s = k.spec();
            for n in [0usize, 17, 1000] {
                let mut b = bufs(s.op, n);
                let (_, t) = twin(k, &mut b, 2);
                let e = 2 * n as u64;
                assert_eq!(t.bytes_read, s.bytes_read_per_elem * e, "{} read", s.name);
                assert_eq!(
                    t.bytes_written,
                    s.bytes_written_per_elem * e,
                    "{} written",
                    s.name
                );
                assert_eq!(
                    t.write_allocate_bytes,
                    s.write_allocate_per_elem * e,
                    "{} WA",
                    s.name
                );
                assert_eq!(t.flops, s.flops_per_elem * e, "{} flops", s.name);
            }
            // every stream is 4 bytes per element: the nominal traffic counts each one
            assert_eq!(
                s.bytes_read_per_elem,
                4 * s.read_streams as u64,
                "{}",
                s.name
            );
            assert_eq!(
                s.bytes_written_per_elem,
                4 * s.write_streams as u64,
                "{}",
                s.name
            );
            assert_eq!(
                (s.read_streams + s.write_streams) as usize,
                s.op.arrays(),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn pitfall_11_write_allocate_is_declared_for_regular_stores_only() {
        for k in BwKernel::ALL {
            let s = k.spec();
            let expect = if s.op == BwOp::WriteNt {
                0
            } else {
                s.bytes_written_per_elem
            };
            assert_eq!(s.write_allocate_per_elem, expect, "{}", s.name);
        }
    }

    #[test]
    fn buffers_split_the_working_set_into_whole_lines() {
        let b = BwBuffers::new(BwOp::Triad, 3 * 4096 + 100).unwrap();
        assert_eq!(b.len(), 1024);
        assert_eq!(b.bytes(), 3 * 4096);
        let b = BwBuffers::new(BwOp::Read, 10).unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn mismatched_buffers_are_an_error() {
        let mut b = BwBuffers::new(BwOp::Copy, 8192).unwrap();
        b.b = AlignedF32::filled(3, 0.0).unwrap();
        assert!(matches!(
            run(BwKernel::CopyScalar, &mut b, 1),
            Err(CeilingError::LengthMismatch { .. })
        ));
    }
}
