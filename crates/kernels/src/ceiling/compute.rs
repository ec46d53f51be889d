//! Compute-ceiling kernels: register-resident multiply-add chains, one family per arithmetic
//! path an LLM kernel executes (f64, f32, f16 via F16C, native f16, bf16 dot, int8 dot).
//!
//! Every kernel runs `iters` iterations of a fixed, fully unrolled body that updates
//! `accumulators` independent vector registers of `lanes` lanes each; the chain through each
//! accumulator hides the instruction's latency (4 cycles for FMA on Intel since Skylake and on
//! Zen; Intel 64 and IA-32 Optimization Reference Manual, Agner Fog's instruction tables) at two
//! issues per cycle. The result is a checksum of every lane, so nothing is dead code.
//!
//! What the compiler made of them (rustc 1.95, opt-level 3, `objdump -d -M intel` of the test
//! binary, looked at once):
//! - `fma_f32_avx512`: the loop is exactly 16 x `vfmadd213ps zmmN, zmm16, zmm17` (N = 0..15)
//!   then `dec rbx; jne`, no loads, no spills; the f64, AVX2, `vdpbf16ps` and `vpdpbusd`
//!   kernels have the same shape with their own instruction (12 ymm accumulators for AVX2).
//! - `f16c_fma_f32_avx512`: 12 x (`vcvtph2ps zmm14, ymm12{sae}` + `vfmadd213ps zmmN, zmm13,
//!   zmm14`): `h` stays in ymm12 and is converted afresh each time (the `opaque!` barrier).
//! - `dot_i8_avx2`: 8 x (`vpmaddubsw`, `vpmaddwd`, `vpaddd`).
//! - `fma_f16_avx512fp16` is hand-written `asm!` (the FP16 intrinsics are unstable on 1.95).
//! - `muladd_f32_scalar`: 16 x (`mulss`, `addss`), not packed into SIMD registers.
//! - aarch64 (`aarch64-linux-gnu-objdump -d` of the cross-built test binary): every NEON compute
//!   kernel except `f16cvt_fma_f32_neon` is `asm!`, so its loop is exactly 16 x the instruction
//!   (`fmla .4s/.2d/.8h`, `bfdot`, `bfmmla`, `sdot`, `smmla`) on v0-v15 with v16/v17 as
//!   operands, then `subs` + `b.ne`. The first intrinsics version of `fma_f32_neon`
//!   (`vfmaq_f32(c, a, m)`) compiled to one `mov` per `fmla`: hence the `asm!`, and the Arm
//!   recurrence `acc += M x C` (FMLA only accumulates) that the twin mirrors.
//!
//! Measured on a Granite Rapids-class Xeon (KVM guest, 4.0 GHz): 16-accumulator `fma_f32_avx512`
//! reaches 59.5 of 64 FLOP/cycle, `vdpbf16ps` issues once per 2 cycles whatever the number of
//! accumulators (4 to 30), `vpdpbusd` zmm twice per cycle.
//! FLOP accounting: one multiply-add is 2 FLOPs; `vdpbf16ps` does 2 multiply-adds per f32
//! lane (4 FLOPs); `vpdpbusd` does 4 u8 x s8 multiply-adds per i32 lane (8 ops); a
//! `vpmaddubsw`+`vpmaddwd`+`vpaddd` triple does the same 4 per i32 lane. The F16C kernels count
//! the conversion as free: they measure the f16 path that LLM kernels on x86 use (convert f16
//! weights to f32, multiply-add in f32), whose FLOPs are the f32 multiply-adds.

use super::{opaque_f32, opaque_int, CeilingError, Tally};
use crate::isa::{CpuFeatures, Isa};
use std::hint::black_box;
use std::sync::OnceLock;

/// The arithmetic a compute kernel exercises (maps onto the model's `Precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputePath {
    F64,
    F32,
    /// f16 storage, converted to f32 and multiplied-added in f32 (x86 F16C; the LLM path).
    F16ViaF32,
    /// Native half-precision multiply-add, f16 accumulation (AVX512-FP16, Arm FP16).
    F16Native,
    /// bf16 pairs dot-multiplied and accumulated into f32.
    Bf16Dot,
    /// u8 x s8 quadruples dot-multiplied and accumulated into i32.
    Int8Dot,
}

/// A compute kernel's declared accounting, checked by tests against its scalar twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComputeSpec {
    /// `<op>_<dtype>_<isa>`.
    pub name: &'static str,
    /// The ISA level the kernel belongs to (`ROOFLINEBENCH_FORCE_ISA` caps it).
    pub isa: Isa,
    /// Every CPU feature the kernel's `#[target_feature]` enables, for messages.
    pub needs: &'static str,
    pub path: ComputePath,
    /// Independent accumulator registers.
    pub accumulators: u32,
    /// Accumulator lanes per register.
    pub lanes: u32,
    /// FLOPs (or int8 ops) per loop iteration over all accumulators.
    pub flops_per_iter: u64,
    /// Arithmetic and conversion instructions per loop iteration (loop control excluded).
    pub instructions_per_iter: u32,
    /// Multiply-adds are fused (single rounding) rather than a multiply then an add.
    pub fused: bool,
}

/// Every compute-ceiling kernel, on every architecture (those the CPU lacks report so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputeKernel {
    FmaF64Avx512,
    FmaF64Avx2,
    FmaF64Neon,
    MulAddF64Scalar,
    FmaF32Avx512,
    FmaF32Avx2,
    FmaF32Neon,
    MulAddF32Scalar,
    F16cFmaF32Avx512,
    F16cFmaF32Avx2,
    F16MulAddF32Scalar,
    FmaF16Avx512fp16,
    DotBf16Avx512bf16,
    DotBf16Scalar,
    DotI8Avx512vnni,
    DotI8Avxvnni,
    DotI8Avx2,
    DotI8Scalar,
    FmaF16Neon,
    DotBf16Neon,
    MmlaBf16Neon,
    DotI8Neon,
    MmlaI8Neon,
    F16cvtFmaF32Neon,
}

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    isa: Isa,
    needs: &'static str,
    path: ComputePath,
    accumulators: u32,
    lanes: u32,
    flops_per_iter: u64,
    instructions_per_iter: u32,
    fused: bool,
) -> ComputeSpec {
    ComputeSpec {
        name,
        isa,
        needs,
        path,
        accumulators,
        lanes,
        flops_per_iter,
        instructions_per_iter,
        fused,
    }
}

use ComputePath as P;
// Declared accounting: the FLOP figures are written out as numbers on purpose, so that the test
// against each twin's tally checks them rather than re-deriving them from the same fields.
pub const FMA_F64_AVX512: ComputeSpec = spec(
    "fma_f64_avx512",
    Isa::Avx512,
    "avx512f",
    P::F64,
    16,
    8,
    256,
    16,
    true,
);
pub const FMA_F64_AVX2: ComputeSpec = spec(
    "fma_f64_avx2",
    Isa::Avx2,
    "avx2+fma",
    P::F64,
    12,
    4,
    96,
    12,
    true,
);
pub const FMA_F64_NEON: ComputeSpec = spec(
    "fma_f64_neon",
    Isa::Neon,
    "neon",
    P::F64,
    16,
    2,
    64,
    16,
    true,
);
pub const MULADD_F64_SCALAR: ComputeSpec = spec(
    "muladd_f64_scalar",
    Isa::Scalar,
    "",
    P::F64,
    16,
    1,
    32,
    32,
    false,
);
pub const FMA_F32_AVX512: ComputeSpec = spec(
    "fma_f32_avx512",
    Isa::Avx512,
    "avx512f",
    P::F32,
    16,
    16,
    512,
    16,
    true,
);
pub const FMA_F32_AVX2: ComputeSpec = spec(
    "fma_f32_avx2",
    Isa::Avx2,
    "avx2+fma",
    P::F32,
    12,
    8,
    192,
    12,
    true,
);
pub const FMA_F32_NEON: ComputeSpec = spec(
    "fma_f32_neon",
    Isa::Neon,
    "neon",
    P::F32,
    16,
    4,
    128,
    16,
    true,
);
pub const MULADD_F32_SCALAR: ComputeSpec = spec(
    "muladd_f32_scalar",
    Isa::Scalar,
    "",
    P::F32,
    16,
    1,
    32,
    32,
    false,
);
pub const F16C_FMA_F32_AVX512: ComputeSpec = spec(
    "f16c_fma_f32_avx512",
    Isa::Avx512,
    "avx512f",
    P::F16ViaF32,
    12,
    16,
    384,
    24,
    true,
);
pub const F16C_FMA_F32_AVX2: ComputeSpec = spec(
    "f16c_fma_f32_avx2",
    Isa::Avx2,
    "avx2+fma+f16c",
    P::F16ViaF32,
    8,
    8,
    128,
    16,
    true,
);
pub const F16_MULADD_F32_SCALAR: ComputeSpec = spec(
    "f16_muladd_f32_scalar",
    Isa::Scalar,
    "",
    P::F16ViaF32,
    16,
    1,
    32,
    32,
    false,
);
pub const FMA_F16_AVX512FP16: ComputeSpec = spec(
    "fma_f16_avx512fp16",
    Isa::Avx512,
    "avx512f+avx512fp16",
    P::F16Native,
    16,
    32,
    1024,
    16,
    true,
);
pub const DOT_BF16_AVX512BF16: ComputeSpec = spec(
    "dot_bf16_avx512bf16",
    Isa::Avx512,
    "avx512f+avx512bf16",
    P::Bf16Dot,
    16,
    16,
    1024,
    16,
    true,
);
pub const DOT_BF16_SCALAR: ComputeSpec = spec(
    "dot_bf16_scalar",
    Isa::Scalar,
    "",
    P::Bf16Dot,
    8,
    1,
    32,
    32,
    false,
);
pub const DOT_I8_AVX512VNNI: ComputeSpec = spec(
    "dot_i8_avx512vnni",
    Isa::Avx512,
    "avx512f+avx512vnni",
    P::Int8Dot,
    16,
    16,
    2048,
    16,
    true,
);
pub const DOT_I8_AVXVNNI: ComputeSpec = spec(
    "dot_i8_avxvnni",
    Isa::Avx2,
    "avx2+avxvnni",
    P::Int8Dot,
    12,
    8,
    768,
    12,
    true,
);
pub const DOT_I8_AVX2: ComputeSpec = spec(
    "dot_i8_avx2",
    Isa::Avx2,
    "avx2",
    P::Int8Dot,
    8,
    8,
    512,
    24,
    true,
);
// aarch64 extensions (hand-written `asm!`: on Rust 1.95 the FP16 and dot-product intrinsics are
// unstable and there are no BF16 ones). The MMLA kernels do a 2x2 block of dot products per
// 128-bit register: each of the 4 i32/f32 lanes takes 8 (i8) or 4 (bf16) multiply-adds, twice
// the dot-product instructions' depth, so their FLOPs per lane are doubled.
/// The Arm f16 LLM path on cores without (or not using) FP16 arithmetic: `fcvtl` widens 4 f16
/// values, `fmla` accumulates in f32 (like the x86 F16C kernels; conversion counted as free).
pub const F16CVT_FMA_F32_NEON: ComputeSpec = spec(
    "f16cvt_fma_f32_neon",
    Isa::Neon,
    "neon",
    P::F16ViaF32,
    12,
    4,
    96,
    24,
    true,
);
pub const FMA_F16_NEON: ComputeSpec = spec(
    "fma_f16_neon",
    Isa::Neon,
    "neon+fp16",
    P::F16Native,
    16,
    8,
    256,
    16,
    true,
);
pub const DOT_BF16_NEON: ComputeSpec = spec(
    "dot_bf16_neon",
    Isa::Neon,
    "neon+bf16",
    P::Bf16Dot,
    16,
    4,
    256,
    16,
    true,
);
pub const MMLA_BF16_NEON: ComputeSpec = spec(
    "mmla_bf16_neon",
    Isa::Neon,
    "neon+bf16",
    P::Bf16Dot,
    16,
    4,
    512,
    16,
    true,
);
pub const DOT_I8_NEON: ComputeSpec = spec(
    "dot_i8_neon",
    Isa::Neon,
    "neon+dotprod",
    P::Int8Dot,
    16,
    4,
    512,
    16,
    true,
);
pub const MMLA_I8_NEON: ComputeSpec = spec(
    "mmla_i8_neon",
    Isa::Neon,
    "neon+i8mm",
    P::Int8Dot,
    16,
    4,
    1024,
    16,
    true,
);
pub const DOT_I8_SCALAR: ComputeSpec = spec(
    "dot_i8_scalar",
    Isa::Scalar,
    "",
    P::Int8Dot,
    8,
    1,
    64,
    64,
    true,
);

impl ComputeKernel {
    pub const ALL: [ComputeKernel; 24] = [
        ComputeKernel::FmaF64Avx512,
        ComputeKernel::FmaF64Avx2,
        ComputeKernel::FmaF64Neon,
        ComputeKernel::MulAddF64Scalar,
        ComputeKernel::FmaF32Avx512,
        ComputeKernel::FmaF32Avx2,
        ComputeKernel::FmaF32Neon,
        ComputeKernel::MulAddF32Scalar,
        ComputeKernel::F16cFmaF32Avx512,
        ComputeKernel::F16cFmaF32Avx2,
        ComputeKernel::F16MulAddF32Scalar,
        ComputeKernel::FmaF16Avx512fp16,
        ComputeKernel::DotBf16Avx512bf16,
        ComputeKernel::DotBf16Scalar,
        ComputeKernel::DotI8Avx512vnni,
        ComputeKernel::DotI8Avxvnni,
        ComputeKernel::DotI8Avx2,
        ComputeKernel::DotI8Scalar,
        ComputeKernel::FmaF16Neon,
        ComputeKernel::DotBf16Neon,
        ComputeKernel::MmlaBf16Neon,
        ComputeKernel::DotI8Neon,
        ComputeKernel::MmlaI8Neon,
        ComputeKernel::F16cvtFmaF32Neon,
    ];

    pub fn spec(self) -> &'static ComputeSpec {
        match self {
            ComputeKernel::FmaF64Avx512 => &FMA_F64_AVX512,
            ComputeKernel::FmaF64Avx2 => &FMA_F64_AVX2,
            ComputeKernel::FmaF64Neon => &FMA_F64_NEON,
            ComputeKernel::MulAddF64Scalar => &MULADD_F64_SCALAR,
            ComputeKernel::FmaF32Avx512 => &FMA_F32_AVX512,
            ComputeKernel::FmaF32Avx2 => &FMA_F32_AVX2,
            ComputeKernel::FmaF32Neon => &FMA_F32_NEON,
            ComputeKernel::MulAddF32Scalar => &MULADD_F32_SCALAR,
            ComputeKernel::F16cFmaF32Avx512 => &F16C_FMA_F32_AVX512,
            ComputeKernel::F16cFmaF32Avx2 => &F16C_FMA_F32_AVX2,
            ComputeKernel::F16MulAddF32Scalar => &F16_MULADD_F32_SCALAR,
            ComputeKernel::FmaF16Avx512fp16 => &FMA_F16_AVX512FP16,
            ComputeKernel::DotBf16Avx512bf16 => &DOT_BF16_AVX512BF16,
            ComputeKernel::DotBf16Scalar => &DOT_BF16_SCALAR,
            ComputeKernel::DotI8Avx512vnni => &DOT_I8_AVX512VNNI,
            ComputeKernel::DotI8Avxvnni => &DOT_I8_AVXVNNI,
            ComputeKernel::DotI8Avx2 => &DOT_I8_AVX2,
            ComputeKernel::DotI8Scalar => &DOT_I8_SCALAR,
            ComputeKernel::FmaF16Neon => &FMA_F16_NEON,
            ComputeKernel::DotBf16Neon => &DOT_BF16_NEON,
            ComputeKernel::MmlaBf16Neon => &MMLA_BF16_NEON,
            ComputeKernel::DotI8Neon => &DOT_I8_NEON,
            ComputeKernel::MmlaI8Neon => &MMLA_I8_NEON,
            ComputeKernel::F16cvtFmaF32Neon => &F16CVT_FMA_F32_NEON,
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Matrix-multiply-accumulate kernels (`smmla`, `bfmmla`): each lane takes twice the
    /// dot-product depth per instruction (8 i8 or 4 bf16 products).
    pub fn is_mmla(self) -> bool {
        matches!(
            self,
            ComputeKernel::MmlaBf16Neon | ComputeKernel::MmlaI8Neon
        )
    }

    /// Whether this CPU has every feature the kernel needs.
    pub fn supported(self) -> bool {
        let f = features();
        let avx2 = Isa::Avx2.available();
        let avx512 = Isa::Avx512.available();
        match self {
            ComputeKernel::MulAddF64Scalar
            | ComputeKernel::MulAddF32Scalar
            | ComputeKernel::F16MulAddF32Scalar
            | ComputeKernel::DotBf16Scalar
            | ComputeKernel::DotI8Scalar => true,
            ComputeKernel::FmaF64Avx2
            | ComputeKernel::FmaF32Avx2
            | ComputeKernel::F16cFmaF32Avx2
            | ComputeKernel::DotI8Avx2 => avx2,
            ComputeKernel::DotI8Avxvnni => avx2 && f.avx_vnni,
            ComputeKernel::FmaF64Avx512
            | ComputeKernel::FmaF32Avx512
            | ComputeKernel::F16cFmaF32Avx512 => avx512,
            ComputeKernel::FmaF16Avx512fp16 => avx512 && f.avx512_fp16,
            ComputeKernel::DotBf16Avx512bf16 => avx512 && f.avx512_bf16,
            ComputeKernel::DotI8Avx512vnni => avx512 && f.avx512_vnni,
            ComputeKernel::FmaF64Neon
            | ComputeKernel::FmaF32Neon
            | ComputeKernel::F16cvtFmaF32Neon => Isa::Neon.available(),
            ComputeKernel::FmaF16Neon => Isa::Neon.available() && f.fp16,
            ComputeKernel::DotBf16Neon | ComputeKernel::MmlaBf16Neon => {
                Isa::Neon.available() && f.bf16
            }
            ComputeKernel::DotI8Neon => Isa::Neon.available() && f.dotprod,
            ComputeKernel::MmlaI8Neon => Isa::Neon.available() && f.i8mm,
        }
    }

    /// Supported, and within the ISA level `cap` (the `ROOFLINEBENCH_FORCE_ISA` choice).
    pub fn allowed(self, cap: Isa) -> bool {
        self.spec().isa.within(cap) && self.supported()
    }
}

fn features() -> &'static CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    F.get_or_init(CpuFeatures::detect)
}

/// Runs `iters` iterations of `kernel`; returns the checksum of every accumulator lane.
/// Time this call: it is the timed entry, never inlined into the harness.
#[inline(never)]
pub fn run(kernel: ComputeKernel, iters: u64) -> Result<f64, CeilingError> {
    if !kernel.supported() {
        return Err(CeilingError::Unsupported {
            kernel: kernel.name(),
            needs: kernel.spec().needs,
        });
    }
    let n = black_box(iters);
    let r = match kernel {
        ComputeKernel::MulAddF64Scalar => scalar::muladd_f64(n),
        ComputeKernel::MulAddF32Scalar => scalar::muladd_f32(n),
        ComputeKernel::F16MulAddF32Scalar => scalar::f16_muladd_f32(n),
        ComputeKernel::DotBf16Scalar => scalar::dot_bf16(n),
        ComputeKernel::DotI8Scalar => scalar::dot_i8(n),
        // SAFETY: `kernel.supported()` above checked every CPU feature that the called
        // function's `#[target_feature]` enables (its spec's `needs`).
        #[cfg(target_arch = "x86_64")]
        k => unsafe {
            match k {
                ComputeKernel::FmaF64Avx512 => x86::fma_f64_avx512(n),
                ComputeKernel::FmaF64Avx2 => x86::fma_f64_avx2(n),
                ComputeKernel::FmaF32Avx512 => x86::fma_f32_avx512(n),
                ComputeKernel::FmaF32Avx2 => x86::fma_f32_avx2(n),
                ComputeKernel::F16cFmaF32Avx512 => x86::f16c_fma_f32_avx512(n),
                ComputeKernel::F16cFmaF32Avx2 => x86::f16c_fma_f32_avx2(n),
                ComputeKernel::FmaF16Avx512fp16 => x86::fma_f16_avx512fp16(n),
                ComputeKernel::DotBf16Avx512bf16 => x86::dot_bf16_avx512bf16(n),
                ComputeKernel::DotI8Avx512vnni => x86::dot_i8_avx512vnni(n),
                ComputeKernel::DotI8Avxvnni => x86::dot_i8_avxvnni(n),
                ComputeKernel::DotI8Avx2 => x86::dot_i8_avx2(n),
                _ => unreachable_kernel(k),
            }
        },
        // SAFETY: as above; NEON and each extension (fp16, bf16, dotprod, i8mm, detected with
        // `is_aarch64_feature_detected!`) are checked by `supported()`.
        #[cfg(target_arch = "aarch64")]
        k => unsafe {
            match k {
                ComputeKernel::FmaF64Neon => arm::fma_f64_neon(n),
                ComputeKernel::FmaF32Neon => arm::fma_f32_neon(n),
                ComputeKernel::FmaF16Neon => arm::fma_f16_neon(n),
                ComputeKernel::DotBf16Neon => arm::dot_bf16_neon(n),
                ComputeKernel::MmlaBf16Neon => arm::mmla_bf16_neon(n),
                ComputeKernel::DotI8Neon => arm::dot_i8_neon(n),
                ComputeKernel::MmlaI8Neon => arm::mmla_i8_neon(n),
                ComputeKernel::F16cvtFmaF32Neon => arm::f16cvt_fma_f32_neon(n),
                _ => unreachable_kernel(k),
            }
        },
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        k => unreachable_kernel(k),
    };
    Ok(black_box(r))
}

/// A kernel `supported()` accepted but this build has no code for: a bug, reported as NaN so a
/// test catches it without a panic path in the timed entry.
fn unreachable_kernel(_k: ComputeKernel) -> f64 {
    f64::NAN
}

// ---------------------------------------------------------------------------------------------
// Lane data shared by the kernels and their twins: every lane starts different, so a kernel
// with fewer accumulators or lanes than declared produces a different checksum.

/// Multiplier and addend of the `acc = acc * M + C` recurrences (fixed point 0.5).
const M_F: f64 = 0.75;
const C_F: f64 = 0.125;

fn lane_f64(i: usize) -> f64 {
    1.0 + (i % 13) as f64 * 0.0625
}
fn lane_f32(i: usize) -> f32 {
    lane_f64(i) as f32
}
/// f16 bits of 1 + (l mod 16)/32: the F16C kernels' converted operand, per lane.
fn lane_f16_operand(l: usize) -> u16 {
    0x3C00 | (((l % 16) as u16) << 5)
}
/// f16 bits of 1 + (i mod 32)/32: the native-f16 accumulators' start values.
fn lane_f16_acc(i: usize) -> u16 {
    0x3C00 | (((i % 32) as u16) << 5)
}
/// Native f16 recurrence constants: 0.5 and 0.25.
const M_F16: u16 = 0x3800;
const C_F16: u16 = 0x3400;
/// bf16 operand pairs: a = (0.5, 0.25), b = (1, 2); each lane gains 0.5 + 0.5 = 1 per iteration.
const BF16_A: [u16; 2] = [0x3F00, 0x3E80];
const BF16_B: [u16; 2] = [0x3F80, 0x4000];
/// int8 quadruples: u8 (1, 2, 3, 4) x s8 (1, -1, 2, -2); each lane gains -3 per iteration.
const I8_U: [u8; 4] = [1, 2, 3, 4];
const I8_S: [i8; 4] = [1, -1, 2, -2];
fn lane_i32(i: usize) -> i32 {
    (i % 17) as i32
}

/// IEEE binary16 bits to f32 (exact; handles subnormals, infinities and NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: value m * 2^-24
            let v = m as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1F, 0) => sign | 0x7F80_0000,
        (0x1F, m) => sign | 0x7FC0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Rounds a value of the normal f16 range to the nearest f16 (ties to even), as f64.
fn round_f16(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = ((x.abs().to_bits() >> 52) & 0x7FF) as i32 - 1023;
    let ulp = 2f64.powi(e.max(-14) - 10);
    (x / ulp).round_ties_even() * ulp
}

fn sum_f32(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}
fn sum_f64(v: &[f64]) -> f64 {
    v.iter().sum()
}
fn sum_i32(v: &[i32]) -> f64 {
    v.iter().map(|&x| x as i64).sum::<i64>() as f64
}

// ---------------------------------------------------------------------------------------------
// Scalar twins: the same recurrences, one lane at a time, counting every operation.

/// Re-executes `kernel` lane by lane; returns its checksum and what it counted.
pub fn twin(kernel: ComputeKernel, iters: u64) -> (f64, Tally) {
    let s = kernel.spec();
    let lanes = s.lanes as usize;
    let n = s.accumulators as usize * lanes;
    let mut t = Tally::default();
    // an MMLA lane takes the operand pair/quadruple twice per instruction
    let depth = if kernel.is_mmla() { 2 } else { 1 };
    // Arm's FMLA only accumulates (acc += m * c); the x86 FMAs compute acc * m + c
    let accumulate = matches!(
        kernel,
        ComputeKernel::FmaF64Neon | ComputeKernel::FmaF32Neon | ComputeKernel::FmaF16Neon
    );
    let sum = match s.path {
        P::F64 => {
            let mut acc: Vec<f64> = (0..n).map(lane_f64).collect();
            for _ in 0..iters {
                for a in &mut acc {
                    *a = if accumulate {
                        M_F.mul_add(C_F, *a)
                    } else if s.fused {
                        a.mul_add(M_F, C_F)
                    } else {
                        *a * M_F + C_F
                    };
                    t.flops += 2;
                }
            }
            sum_f64(&acc)
        }
        P::F32 => {
            let (m, c) = (M_F as f32, C_F as f32);
            let mut acc: Vec<f32> = (0..n).map(lane_f32).collect();
            for _ in 0..iters {
                for a in &mut acc {
                    *a = if accumulate {
                        m.mul_add(c, *a)
                    } else if s.fused {
                        a.mul_add(m, c)
                    } else {
                        *a * m + c
                    };
                    t.flops += 2;
                }
            }
            sum_f32(&acc)
        }
        P::F16ViaF32 => {
            let m = M_F as f32;
            let mut acc: Vec<f32> = (0..n).map(lane_f32).collect();
            for _ in 0..iters {
                for (i, a) in acc.iter_mut().enumerate() {
                    let x = f16_to_f32(lane_f16_operand(i % lanes));
                    *a = if s.fused { a.mul_add(m, x) } else { *a * m + x };
                    t.flops += 2;
                }
            }
            sum_f32(&acc)
        }
        P::F16Native => {
            let (m, c) = (f16_to_f32(M_F16) as f64, f16_to_f32(C_F16) as f64);
            let mut acc: Vec<f64> = (0..n).map(|i| f16_to_f32(lane_f16_acc(i)) as f64).collect();
            // Arm's sum stalls once the f16 spacing exceeds 2 x 0.125 (at 256)
            for _ in 0..iters {
                for a in &mut acc {
                    // product and sum are exact in f64 for these values: one rounding, like FMA
                    *a = if accumulate {
                        round_f16(*a + m * c)
                    } else {
                        round_f16(*a * m + c)
                    };
                    t.flops += 2;
                }
            }
            sum_f64(&acc)
        }
        P::Bf16Dot => {
            let a = BF16_A.map(bf16_to_f32);
            let b = BF16_B.map(bf16_to_f32);
            let mut acc: Vec<f32> = (0..n).map(lane_f32).collect();
            for _ in 0..iters {
                for x in &mut acc {
                    for _ in 0..depth {
                        *x += a[0] * b[0];
                        *x += a[1] * b[1];
                        t.flops += 4;
                    }
                }
            }
            sum_f32(&acc)
        }
        P::Int8Dot => {
            let mut acc: Vec<i32> = (0..n).map(lane_i32).collect();
            for _ in 0..iters {
                for x in &mut acc {
                    for q in (0..4).cycle().take(4 * depth) {
                        *x = x.wrapping_add(I8_U[q] as i32 * I8_S[q] as i32);
                        t.flops += 2;
                    }
                }
            }
            sum_i32(&acc)
        }
    };
    (sum, t)
}

// ---------------------------------------------------------------------------------------------
// Scalar kernels: portable fallbacks (the `scalar` ISA) and ceilings of the scalar path.

mod scalar {
    use super::*;

    macro_rules! muladd_scalar {
        ($name:ident, $t:ty, $lane:expr, $sum:ident, $acc_n:literal) => {
            pub(super) fn $name(iters: u64) -> f64 {
                let m: $t = black_box(M_F as $t);
                let c: $t = black_box(C_F as $t);
                let mut acc: [$t; $acc_n] = std::array::from_fn($lane);
                for _ in 0..iters {
                    for a in acc.iter_mut() {
                        *a = *a * m + c;
                        opaque_f32!(*a);
                    }
                }
                $sum(&acc)
            }
        };
    }
    muladd_scalar!(muladd_f64, f64, lane_f64, sum_f64, 16);
    muladd_scalar!(muladd_f32, f32, lane_f32, sum_f32, 16);

    pub(super) fn f16_muladd_f32(iters: u64) -> f64 {
        let m = black_box(M_F as f32);
        let mut h = black_box(lane_f16_operand(0) as u32);
        let mut acc: [f32; 16] = std::array::from_fn(lane_f32);
        for _ in 0..iters {
            for a in acc.iter_mut() {
                opaque_int!(h);
                *a = *a * m + f16_to_f32(h as u16);
                opaque_f32!(*a);
            }
        }
        sum_f32(&acc)
    }

    pub(super) fn dot_bf16(iters: u64) -> f64 {
        let mut ab = black_box([
            (BF16_A[0] as u32) | ((BF16_A[1] as u32) << 16),
            (BF16_B[0] as u32) | ((BF16_B[1] as u32) << 16),
        ]);
        let mut acc: [f32; 8] = std::array::from_fn(lane_f32);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                opaque_int!(ab[0]);
                opaque_int!(ab[1]);
                let a0 = f32::from_bits(ab[0] << 16);
                let a1 = f32::from_bits(ab[0] & 0xFFFF_0000);
                let b0 = f32::from_bits(ab[1] << 16);
                let b1 = f32::from_bits(ab[1] & 0xFFFF_0000);
                *x += a0 * b0;
                *x += a1 * b1;
                opaque_f32!(*x);
            }
        }
        sum_f32(&acc)
    }

    pub(super) fn dot_i8(iters: u64) -> f64 {
        let mut u = black_box(u32::from_le_bytes(I8_U));
        let mut s = black_box(u32::from_le_bytes(I8_S.map(|v| v as u8)));
        let mut acc: [i32; 8] = std::array::from_fn(lane_i32);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                opaque_int!(u);
                opaque_int!(s);
                let ub = u.to_le_bytes();
                let sb = s.to_le_bytes();
                let mut d = 0i32;
                for q in 0..4 {
                    d = d.wrapping_add(ub[q] as i32 * (sb[q] as i8) as i32);
                }
                *x = x.wrapping_add(d);
                opaque_int!(*x);
            }
        }
        sum_i32(&acc)
    }
}

// ---------------------------------------------------------------------------------------------
// x86-64 kernels. Each is only ever called by `run`, after `supported()`.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::ceiling::opaque;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// `acc = fma(acc, m, c)` on `$acc` registers of `$lanes` lanes.
    macro_rules! fma_kernel {
        ($name:ident, $feat:literal, $t:ty, $v:ty, $acc:literal, $lanes:literal, $lane:ident,
         $sum:ident, $set1:ident, $load:ident, $store:ident, $fma:ident) => {
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name(iters: u64) -> f64 {
                let init: [$t; $acc * $lanes] = std::array::from_fn($lane);
                let mut acc = [$set1(0.0); $acc];
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = $load(init.as_ptr().add(j * $lanes));
                }
                let m = $set1(black_box(M_F as $t));
                let c = $set1(black_box(C_F as $t));
                for _ in 0..iters {
                    for a in acc.iter_mut() {
                        *a = $fma(*a, m, c);
                    }
                }
                let mut out = [0.0 as $t; $acc * $lanes];
                for (j, a) in acc.iter().enumerate() {
                    $store(out.as_mut_ptr().add(j * $lanes), *a);
                }
                $sum(&out)
            }
        };
    }
    fma_kernel!(
        fma_f64_avx512,
        "avx512f",
        f64,
        __m512d,
        16,
        8,
        lane_f64,
        sum_f64,
        _mm512_set1_pd,
        _mm512_loadu_pd,
        _mm512_storeu_pd,
        _mm512_fmadd_pd
    );
    fma_kernel!(
        fma_f64_avx2,
        "avx2,fma",
        f64,
        __m256d,
        12,
        4,
        lane_f64,
        sum_f64,
        _mm256_set1_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_fmadd_pd
    );
    fma_kernel!(
        fma_f32_avx512,
        "avx512f",
        f32,
        __m512,
        16,
        16,
        lane_f32,
        sum_f32,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps
    );
    fma_kernel!(
        fma_f32_avx2,
        "avx2,fma",
        f32,
        __m256,
        12,
        8,
        lane_f32,
        sum_f32,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps
    );

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn f16c_fma_f32_avx512(iters: u64) -> f64 {
        const A: usize = 12;
        const L: usize = 16;
        let init: [f32; A * L] = std::array::from_fn(lane_f32);
        let hb: [u16; L] = std::array::from_fn(lane_f16_operand);
        let mut h = _mm256_loadu_si256(hb.as_ptr().cast());
        let mut acc = [_mm512_setzero_ps(); A];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = _mm512_loadu_ps(init.as_ptr().add(j * L));
        }
        let m = _mm512_set1_ps(black_box(M_F as f32));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                // a fresh-looking `h` for every conversion: no CSE, no hoisting
                opaque!(h, ymm_reg);
                *a = _mm512_fmadd_ps(*a, m, _mm512_cvtph_ps(h));
            }
        }
        let mut out = [0f32; A * L];
        for (j, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(j * L), *a);
        }
        sum_f32(&out)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn f16c_fma_f32_avx2(iters: u64) -> f64 {
        const A: usize = 8;
        const L: usize = 8;
        let init: [f32; A * L] = std::array::from_fn(lane_f32);
        let hb: [u16; L] = std::array::from_fn(lane_f16_operand);
        let mut h = _mm_loadu_si128(hb.as_ptr().cast());
        let mut acc = [_mm256_setzero_ps(); A];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(init.as_ptr().add(j * L));
        }
        let m = _mm256_set1_ps(black_box(M_F as f32));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                opaque!(h, xmm_reg);
                *a = _mm256_fmadd_ps(*a, m, _mm256_cvtph_ps(h));
            }
        }
        let mut out = [0f32; A * L];
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(j * L), *a);
        }
        sum_f32(&out)
    }

    /// Native f16: `vfmadd213ph` on 16 zmm accumulators (zmm0-15), zmm30 = M, zmm31 = C.
    /// Written in `asm!` because the AVX512-FP16 intrinsics are unstable on Rust 1.95.
    #[target_feature(enable = "avx512f,avx512fp16")]
    pub(super) unsafe fn fma_f16_avx512fp16(iters: u64) -> f64 {
        const N: usize = 16 * 32;
        let mut lanes: [u16; N] = std::array::from_fn(lane_f16_acc);
        let mc: [u16; 64] = std::array::from_fn(|i| if i < 32 { M_F16 } else { C_F16 });
        let p = lanes.as_mut_ptr();
        asm!(
            "vmovdqu16 zmm30, [{mc}]",
            "vmovdqu16 zmm31, [{mc} + 64]",
            "vmovdqu16 zmm0, [{p}]",
            "vmovdqu16 zmm1, [{p} + 64]",
            "vmovdqu16 zmm2, [{p} + 128]",
            "vmovdqu16 zmm3, [{p} + 192]",
            "vmovdqu16 zmm4, [{p} + 256]",
            "vmovdqu16 zmm5, [{p} + 320]",
            "vmovdqu16 zmm6, [{p} + 384]",
            "vmovdqu16 zmm7, [{p} + 448]",
            "vmovdqu16 zmm8, [{p} + 512]",
            "vmovdqu16 zmm9, [{p} + 576]",
            "vmovdqu16 zmm10, [{p} + 640]",
            "vmovdqu16 zmm11, [{p} + 704]",
            "vmovdqu16 zmm12, [{p} + 768]",
            "vmovdqu16 zmm13, [{p} + 832]",
            "vmovdqu16 zmm14, [{p} + 896]",
            "vmovdqu16 zmm15, [{p} + 960]",
            "test {n}, {n}",
            "jz 3f",
            "2:",
            "vfmadd213ph zmm0, zmm30, zmm31",
            "vfmadd213ph zmm1, zmm30, zmm31",
            "vfmadd213ph zmm2, zmm30, zmm31",
            "vfmadd213ph zmm3, zmm30, zmm31",
            "vfmadd213ph zmm4, zmm30, zmm31",
            "vfmadd213ph zmm5, zmm30, zmm31",
            "vfmadd213ph zmm6, zmm30, zmm31",
            "vfmadd213ph zmm7, zmm30, zmm31",
            "vfmadd213ph zmm8, zmm30, zmm31",
            "vfmadd213ph zmm9, zmm30, zmm31",
            "vfmadd213ph zmm10, zmm30, zmm31",
            "vfmadd213ph zmm11, zmm30, zmm31",
            "vfmadd213ph zmm12, zmm30, zmm31",
            "vfmadd213ph zmm13, zmm30, zmm31",
            "vfmadd213ph zmm14, zmm30, zmm31",
            "vfmadd213ph zmm15, zmm30, zmm31",
            "dec {n}",
            "jnz 2b",
            "3:",
            "vmovdqu16 [{p}], zmm0",
            "vmovdqu16 [{p} + 64], zmm1",
            "vmovdqu16 [{p} + 128], zmm2",
            "vmovdqu16 [{p} + 192], zmm3",
            "vmovdqu16 [{p} + 256], zmm4",
            "vmovdqu16 [{p} + 320], zmm5",
            "vmovdqu16 [{p} + 384], zmm6",
            "vmovdqu16 [{p} + 448], zmm7",
            "vmovdqu16 [{p} + 512], zmm8",
            "vmovdqu16 [{p} + 576], zmm9",
            "vmovdqu16 [{p} + 640], zmm10",
            "vmovdqu16 [{p} + 704], zmm11",
            "vmovdqu16 [{p} + 768], zmm12",
            "vmovdqu16 [{p} + 832], zmm13",
            "vmovdqu16 [{p} + 896], zmm14",
            "vmovdqu16 [{p} + 960], zmm15",
            n = inout(reg) iters => _,
            p = in(reg) p,
            mc = in(reg) mc.as_ptr(),
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
            out("zmm30") _, out("zmm31") _,
            options(nostack),
        );
        lanes.iter().map(|&h| f16_to_f32(h) as f64).sum()
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dot_bf16_avx512bf16(iters: u64) -> f64 {
        const A: usize = 16;
        const L: usize = 16;
        let init: [f32; A * L] = std::array::from_fn(lane_f32);
        let pair = |p: [u16; 2]| (p[0] as u32 | ((p[1] as u32) << 16)) as i32;
        let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(pair(BF16_A))));
        let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(pair(BF16_B))));
        let mut acc = [_mm512_setzero_ps(); A];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(init.as_ptr().add(j * L));
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbf16_ps(*x, a, b);
            }
        }
        let mut out = [0f32; A * L];
        for (j, x) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(j * L), *x);
        }
        sum_f32(&out)
    }

    fn quad_u() -> i32 {
        i32::from_le_bytes(I8_U)
    }
    fn quad_s() -> i32 {
        i32::from_le_bytes(I8_S.map(|v| v as u8))
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn dot_i8_avx512vnni(iters: u64) -> f64 {
        const A: usize = 16;
        const L: usize = 16;
        let init: [i32; A * L] = std::array::from_fn(lane_i32);
        let u = _mm512_set1_epi32(black_box(quad_u()));
        let s = _mm512_set1_epi32(black_box(quad_s()));
        let mut acc = [_mm512_setzero_si512(); A];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm512_loadu_si512(init.as_ptr().add(j * L).cast());
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, u, s);
            }
        }
        let mut out = [0i32; A * L];
        for (j, x) in acc.iter().enumerate() {
            _mm512_storeu_si512(out.as_mut_ptr().add(j * L).cast(), *x);
        }
        sum_i32(&out)
    }

    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn dot_i8_avxvnni(iters: u64) -> f64 {
        const A: usize = 12;
        const L: usize = 8;
        let init: [i32; A * L] = std::array::from_fn(lane_i32);
        let u = _mm256_set1_epi32(black_box(quad_u()));
        let s = _mm256_set1_epi32(black_box(quad_s()));
        let mut acc = [_mm256_setzero_si256(); A];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm256_loadu_si256(init.as_ptr().add(j * L).cast());
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_dpbusd_avx_epi32(*x, u, s);
            }
        }
        let mut out = [0i32; A * L];
        for (j, x) in acc.iter().enumerate() {
            _mm256_storeu_si256(out.as_mut_ptr().add(j * L).cast(), *x);
        }
        sum_i32(&out)
    }

    /// The AVX2 int8 dot path of quantized LLM kernels (e.g. llama.cpp's q8 dot on AVX2):
    /// `vpmaddubsw` (u8 x s8 pairs to i16), `vpmaddwd` with ones (pairs to i32), `vpaddd`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_i8_avx2(iters: u64) -> f64 {
        const A: usize = 8;
        const L: usize = 8;
        let init: [i32; A * L] = std::array::from_fn(lane_i32);
        let mut u = _mm256_set1_epi32(black_box(quad_u()));
        let s = _mm256_set1_epi32(black_box(quad_s()));
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); A];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm256_loadu_si256(init.as_ptr().add(j * L).cast());
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                opaque!(u, ymm_reg);
                let p16 = _mm256_maddubs_epi16(u, s);
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(p16, ones));
            }
        }
        let mut out = [0i32; A * L];
        for (j, x) in acc.iter().enumerate() {
            _mm256_storeu_si256(out.as_mut_ptr().add(j * L).cast(), *x);
        }
        sum_i32(&out)
    }
}

// ---------------------------------------------------------------------------------------------
// aarch64 kernels: NEON f32/f64 FMA (intrinsics), and `asm!` for FP16 FMLA, BF16 BFDOT/BFMMLA,
// int8 SDOT and SMMLA, each behind its own `is_aarch64_feature_detected!` flag.

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use std::arch::aarch64::*;
    use std::arch::asm;

    /// A 16-accumulator loop of one aarch64 instruction `ins v<acc>.<da>, v16.<sa>, v17.<sa>`
    /// over v0-v15 (loaded from and stored back to the 256 bytes at `lanes`), with v16 and
    /// v17 loaded from the 32 bytes at `ops`. The loop is exactly the 16 instructions, then
    /// `subs` + `b.ne`: written in `asm!` because the FP16, dot-product and MMLA intrinsics
    /// are unstable (or missing, for BF16) on Rust 1.95.
    macro_rules! asm16 {
        ($name:ident, $feat:literal, $arch:literal, $ins:literal, $da:literal, $sa:literal) => {
            #[target_feature(enable = $feat)]
            unsafe fn $name(lanes: &mut [u8; 256], ops: &[u8; 32], iters: u64) {
                macro_rules! i {
                    ($r:literal) => {
                        concat!($ins, " v", $r, ".", $da, ", v16.", $sa, ", v17.", $sa)
                    };
                }
                asm!(
                    concat!(".arch_extension ", $arch),
                    "ldp q0, q1, [{p}]",
                    "ldp q2, q3, [{p}, #32]",
                    "ldp q4, q5, [{p}, #64]",
                    "ldp q6, q7, [{p}, #96]",
                    "ldp q8, q9, [{p}, #128]",
                    "ldp q10, q11, [{p}, #160]",
                    "ldp q12, q13, [{p}, #192]",
                    "ldp q14, q15, [{p}, #224]",
                    "ldp q16, q17, [{o}]",
                    "cbz {n}, 3f",
                    "2:",
                    i!("0"), i!("1"), i!("2"), i!("3"), i!("4"), i!("5"), i!("6"), i!("7"),
                    i!("8"), i!("9"), i!("10"), i!("11"), i!("12"), i!("13"), i!("14"), i!("15"),
                    "subs {n}, {n}, #1",
                    "b.ne 2b",
                    "3:",
                    "stp q0, q1, [{p}]",
                    "stp q2, q3, [{p}, #32]",
                    "stp q4, q5, [{p}, #64]",
                    "stp q6, q7, [{p}, #96]",
                    "stp q8, q9, [{p}, #128]",
                    "stp q10, q11, [{p}, #160]",
                    "stp q12, q13, [{p}, #192]",
                    "stp q14, q15, [{p}, #224]",
                    n = inout(reg) iters => _,
                    p = in(reg) lanes.as_mut_ptr(),
                    o = in(reg) ops.as_ptr(),
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    out("v16") _, out("v17") _,
                    options(nostack),
                );
            }
        };
    }
    asm16!(fmla_s, "neon", "simd", "fmla", "4s", "4s");
    asm16!(fmla_d, "neon", "simd", "fmla", "2d", "2d");
    asm16!(fmla_h, "neon,fp16", "fp16", "fmla", "8h", "8h");
    asm16!(bfdot_s, "neon,bf16", "bf16", "bfdot", "4s", "8h");
    asm16!(bfmmla_s, "neon,bf16", "bf16", "bfmmla", "4s", "8h");
    asm16!(sdot_s, "neon,dotprod", "dotprod", "sdot", "4s", "16b");
    asm16!(smmla_s, "neon,i8mm", "i8mm", "smmla", "4s", "16b");

    /// 16 bytes made of `pat` repeated.
    fn splat<const K: usize>(pat: [u8; K]) -> [u8; 16] {
        std::array::from_fn(|i| pat[i % K])
    }
    fn ops_of(a: [u8; 16], b: [u8; 16]) -> [u8; 32] {
        std::array::from_fn(|i| if i < 16 { a[i] } else { b[i - 16] })
    }
    fn bf16_pair_bytes(p: [u16; 2]) -> [u8; 4] {
        let (x, y) = (p[0].to_le_bytes(), p[1].to_le_bytes());
        [x[0], x[1], y[0], y[1]]
    }
    fn f32_lanes() -> [u8; 256] {
        let mut b = [0u8; 256];
        for (i, c) in b.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&lane_f32(i).to_le_bytes());
        }
        b
    }
    fn i32_lanes() -> [u8; 256] {
        let mut b = [0u8; 256];
        for (i, c) in b.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&lane_i32(i).to_le_bytes());
        }
        b
    }
    fn sum_f32_bytes(b: &[u8; 256]) -> f64 {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .sum()
    }
    fn sum_i32_bytes(b: &[u8; 256]) -> f64 {
        b.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .sum::<i64>() as f64
    }

    /// `fcvtl` of 4 f16 values to f32 (base Advanced SIMD; `asm!` because `float16x4_t` is
    /// unstable on Rust 1.95).
    #[inline(always)]
    unsafe fn fcvtl(h: uint16x4_t) -> float32x4_t {
        let r: float32x4_t;
        asm!("fcvtl {r:v}.4s, {h:v}.4h", h = in(vreg) h, r = out(vreg) r,
             options(pure, nomem, nostack, preserves_flags));
        r
    }

    /// f16 via f32: 12 x (`fcvtl` + `fmla`) per iteration; `h` is re-hidden before every
    /// conversion so the compiler can neither hoist nor share it (the x86 F16C kernels' shape).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn f16cvt_fma_f32_neon(iters: u64) -> f64 {
        const A: usize = 12;
        const L: usize = 4;
        let init: [f32; A * L] = std::array::from_fn(lane_f32);
        let hb: [u16; L] = std::array::from_fn(lane_f16_operand);
        let mut h = vld1_u16(hb.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); A];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = vld1q_f32(init.as_ptr().add(j * L));
        }
        let m = vdupq_n_f32(black_box(M_F as f32));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                crate::ceiling::opaque!(h, vreg);
                // x + acc * m, one rounding: the twin's acc.mul_add(m, x)
                *a = vfmaq_f32(fcvtl(h), *a, m);
            }
        }
        let mut out = [0f32; A * L];
        for (j, a) in acc.iter().enumerate() {
            vst1q_f32(out.as_mut_ptr().add(j * L), *a);
        }
        sum_f32(&out)
    }

    /// `fmla v.4s` accumulating M x C into 64 f32 lanes. Hand-written: with `vfmaq_f32(c, a, m)`
    /// (the x86 kernels' `a * m + c`) rustc 1.95 emitted a `mov` per `fmla` to copy `c` into
    /// the destination (seen in `objdump -d`), and vector moves take the same ASIMD pipes on
    /// Cortex-A76-class cores: half the roof. FMLA only accumulates, hence `acc += M x C`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn fma_f32_neon(iters: u64) -> f64 {
        let mut lanes = f32_lanes();
        let m = (M_F as f32).to_le_bytes();
        let ops = ops_of(splat(m), splat(black_box(C_F as f32).to_le_bytes()));
        fmla_s(&mut lanes, &ops, iters);
        sum_f32_bytes(&lanes)
    }

    /// `fmla v.2d` accumulating M x C into 32 f64 lanes (see [`fma_f32_neon`]).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn fma_f64_neon(iters: u64) -> f64 {
        let mut lanes = [0u8; 256];
        for (i, c) in lanes.chunks_exact_mut(8).enumerate() {
            c.copy_from_slice(&lane_f64(i).to_le_bytes());
        }
        let ops = ops_of(
            splat(M_F.to_le_bytes()),
            splat(black_box(C_F).to_le_bytes()),
        );
        fmla_d(&mut lanes, &ops, iters);
        lanes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .sum()
    }

    /// Native f16: `fmla v.8h` accumulating M x C into 128 f16 lanes.
    #[target_feature(enable = "neon,fp16")]
    pub(super) unsafe fn fma_f16_neon(iters: u64) -> f64 {
        let mut lanes = [0u8; 256];
        for (i, c) in lanes.chunks_exact_mut(2).enumerate() {
            c.copy_from_slice(&lane_f16_acc(i).to_le_bytes());
        }
        let ops = ops_of(
            splat(M_F16.to_le_bytes()),
            splat(black_box(C_F16).to_le_bytes()),
        );
        fmla_h(&mut lanes, &ops, iters);
        lanes
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64)
            .sum()
    }

    /// `bfdot v.4s, v.8h, v.8h`: 2 bf16 products per f32 lane.
    #[target_feature(enable = "neon,bf16")]
    pub(super) unsafe fn dot_bf16_neon(iters: u64) -> f64 {
        let mut lanes = f32_lanes();
        let ops = ops_of(
            splat(bf16_pair_bytes(BF16_A)),
            splat(black_box(bf16_pair_bytes(BF16_B))),
        );
        bfdot_s(&mut lanes, &ops, iters);
        sum_f32_bytes(&lanes)
    }

    /// `bfmmla v.4s, v.8h, v.8h`: a 2x4 by 4x2 bf16 block, 4 products per f32 lane.
    #[target_feature(enable = "neon,bf16")]
    pub(super) unsafe fn mmla_bf16_neon(iters: u64) -> f64 {
        let mut lanes = f32_lanes();
        let ops = ops_of(
            splat(bf16_pair_bytes(BF16_A)),
            splat(black_box(bf16_pair_bytes(BF16_B))),
        );
        bfmmla_s(&mut lanes, &ops, iters);
        sum_f32_bytes(&lanes)
    }

    /// `sdot v.4s, v.16b, v.16b`: 4 s8 products per i32 lane (the u8 operand is below 128).
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dot_i8_neon(iters: u64) -> f64 {
        let mut lanes = i32_lanes();
        let ops = ops_of(splat(I8_U), splat(black_box(I8_S.map(|v| v as u8))));
        sdot_s(&mut lanes, &ops, iters);
        sum_i32_bytes(&lanes)
    }

    /// `smmla v.4s, v.16b, v.16b`: a 2x8 by 8x2 s8 block, 8 products per i32 lane.
    #[target_feature(enable = "neon,i8mm")]
    pub(super) unsafe fn mmla_i8_neon(iters: u64) -> f64 {
        let mut lanes = i32_lanes();
        let ops = ops_of(splat(I8_U), splat(black_box(I8_S.map(|v| v as u8))));
        smmla_s(&mut lanes, &ops, iters);
        sum_i32_bytes(&lanes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITERS: [u64; 12] = [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000];

    fn path_flops_per_lane(p: ComputePath) -> u64 {
        match p {
            P::F64 | P::F32 | P::F16ViaF32 | P::F16Native => 2,
            P::Bf16Dot => 4,
            P::Int8Dot => 8,
        }
    }

    #[test]
    fn every_kernel_matches_its_scalar_twin_on_every_isa_this_cpu_has() {
        for k in ComputeKernel::ALL {
            if !k.supported() {
                println!("skip {}: this CPU lacks {}", k.name(), k.spec().needs);
                continue;
            }
            for n in ITERS {
                let got = run(k, n).unwrap();
                let (want, _) = twin(k, n);
                assert_eq!(got, want, "{} after {n} iterations", k.name());
            }
        }
    }

    #[test]
    fn declared_flops_match_what_the_twin_counts() {
        for k in ComputeKernel::ALL {
            let s = k.spec();
            for n in [0u64, 1, 17, 65] {
                let (_, t) = twin(k, n);
                assert_eq!(t.flops, s.flops_per_iter * n, "{} flops", s.name);
                assert_eq!(
                    (t.bytes_read, t.bytes_written),
                    (0, 0),
                    "{} is register-only",
                    s.name
                );
            }
            let depth = if k.is_mmla() { 2 } else { 1 };
            assert_eq!(
                s.flops_per_iter,
                s.accumulators as u64 * s.lanes as u64 * path_flops_per_lane(s.path) * depth,
                "{}",
                s.name
            );
            assert!(s.name.contains(match s.isa {
                Isa::Scalar => "scalar",
                Isa::Avx2 => "avx",
                Isa::Avx512 => "avx512",
                Isa::Neon => "neon",
            }));
        }
    }

    #[test]
    fn forced_isa_caps_the_kernels() {
        for k in ComputeKernel::ALL {
            if k.allowed(Isa::Scalar) {
                assert_eq!(k.spec().isa, Isa::Scalar, "{}", k.name());
            }
        }
        assert!(ComputeKernel::MulAddF32Scalar.allowed(Isa::Scalar));
    }

    #[test]
    fn unsupported_kernel_is_an_error_not_a_sigill() {
        for k in ComputeKernel::ALL {
            if !k.supported() {
                let e = run(k, 1).unwrap_err();
                assert!(e.to_string().contains(k.name()), "{e}");
            }
        }
    }

    #[test]
    fn f16_decoding_is_exact() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert!(f16_to_f32(0x7C00).is_infinite());
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(round_f16(1.0 + 2f64.powi(-11)), 1.0); // tie to even
        assert_eq!(round_f16(1.0 + 3.0 * 2f64.powi(-11)), 1.0 + 2f64.powi(-9));
    }
}
