//! Instruction-set detection, done once at run time.
//!
//! `ROOFLINEBENCH_FORCE_ISA=scalar|avx2|avx512|neon` forces a path (CI uses `scalar` to test the
//! fallbacks); forcing an ISA the CPU lacks is an error, never a SIGILL.

use std::fmt;

/// A SIMD family a kernel can be written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Scalar,
    /// x86-64 AVX2 + FMA (+ F16C).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/DQ.
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s.to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }

    /// Whether this CPU can execute kernels of this ISA.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512dq")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Whether kernels of this ISA level may run when `cap` is the chosen level
    /// (`ROOFLINEBENCH_FORCE_ISA` or the best available): scalar always, AVX2 under AVX2 or
    /// AVX-512, AVX-512 only under AVX-512, NEON only under NEON.
    pub fn within(self, cap: Isa) -> bool {
        matches!(
            (self, cap),
            (Isa::Scalar, _)
                | (Isa::Avx2, Isa::Avx2 | Isa::Avx512)
                | (Isa::Avx512, Isa::Avx512)
                | (Isa::Neon, Isa::Neon)
        )
    }

    /// Every ISA this CPU can run, scalar first.
    pub fn all_available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon]
            .into_iter()
            .filter(|i| i.available())
            .collect()
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Individual instruction-set extensions that select ceiling and engine kernels.
///
/// Detected once from `cpuid` (x86-64, via `is_x86_feature_detected!`, which also checks that
/// the OS saves the wide registers) or from the kernel's hwcaps (aarch64). AMX is read straight
/// from `cpuid` leaf 7 (its detection macro is unstable on Rust 1.95) and is informational only:
/// using AMX additionally needs `arch_prctl(ARCH_REQ_XCOMP_PERM)`, which nothing here does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    pub sse2: bool,
    pub avx: bool,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512dq: bool,
    /// `vdpbf16ps`, `vcvtne2ps2bf16`.
    pub avx512_bf16: bool,
    /// `vpdpbusd` on zmm (and EVEX xmm/ymm).
    pub avx512_vnni: bool,
    /// VEX-encoded `vpdpbusd` on ymm (Alder Lake and later, Zen 5).
    pub avx_vnni: bool,
    /// Native half-precision arithmetic, e.g. `vfmadd231ph`.
    pub avx512_fp16: bool,
    pub amx_tile: bool,
    pub amx_bf16: bool,
    pub amx_int8: bool,
    pub neon: bool,
    /// aarch64 `sdot`/`udot`.
    pub dotprod: bool,
    /// aarch64 half-precision arithmetic (FEAT_FP16).
    pub fp16: bool,
    /// aarch64 `bfdot`/`bfmmla` (FEAT_BF16).
    pub bf16: bool,
    /// aarch64 `smmla` (FEAT_I8MM).
    pub i8mm: bool,
    pub sve: bool,
}

impl CpuFeatures {
    /// Features of the CPU this process runs on.
    pub fn detect() -> CpuFeatures {
        #[allow(unused_mut)]
        let mut f = CpuFeatures::default();
        #[cfg(target_arch = "x86_64")]
        {
            f.sse2 = is_x86_feature_detected!("sse2");
            f.avx = is_x86_feature_detected!("avx");
            f.avx2 = is_x86_feature_detected!("avx2");
            f.fma = is_x86_feature_detected!("fma");
            f.f16c = is_x86_feature_detected!("f16c");
            f.avx512f = is_x86_feature_detected!("avx512f");
            f.avx512bw = is_x86_feature_detected!("avx512bw");
            f.avx512vl = is_x86_feature_detected!("avx512vl");
            f.avx512dq = is_x86_feature_detected!("avx512dq");
            f.avx512_bf16 = is_x86_feature_detected!("avx512bf16");
            f.avx512_vnni = is_x86_feature_detected!("avx512vnni");
            f.avx_vnni = is_x86_feature_detected!("avxvnni");
            f.avx512_fp16 = is_x86_feature_detected!("avx512fp16");
            // cpuid leaf 7 sub-leaf 0, EDX bits 22 (AMX-BF16), 24 (AMX-TILE), 25 (AMX-INT8)
            // (Intel SDM vol. 2A, CPUID). Leaf 7 exists on every CPU with AVX2.
            if f.avx2 {
                let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
                f.amx_bf16 = edx & (1 << 22) != 0;
                f.amx_tile = edx & (1 << 24) != 0;
                f.amx_int8 = edx & (1 << 25) != 0;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
            f.dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
            f.fp16 = std::arch::is_aarch64_feature_detected!("fp16");
            f.bf16 = std::arch::is_aarch64_feature_detected!("bf16");
            f.i8mm = std::arch::is_aarch64_feature_detected!("i8mm");
            f.sve = std::arch::is_aarch64_feature_detected!("sve");
        }
        f
    }

    /// Names of the present features, in the spelling of `/proc/cpuinfo` where one exists.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.sse2, "sse2"),
            (self.avx, "avx"),
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vl, "avx512vl"),
            (self.avx512dq, "avx512dq"),
            (self.avx512_bf16, "avx512_bf16"),
            (self.avx512_vnni, "avx512_vnni"),
            (self.avx_vnni, "avx_vnni"),
            (self.avx512_fp16, "avx512_fp16"),
            (self.amx_tile, "amx_tile"),
            (self.amx_bf16, "amx_bf16"),
            (self.amx_int8, "amx_int8"),
            (self.neon, "neon"),
            (self.dotprod, "asimddp"),
            (self.fp16, "fphp"),
            (self.bf16, "bf16"),
            (self.i8mm, "i8mm"),
            (self.sve, "sve"),
        ];
        all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
}

/// Why an ISA cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IsaError {
    #[error("ROOFLINEBENCH_FORCE_ISA={0:?} is not an ISA (use scalar, avx2, avx512 or neon)")]
    Unknown(String),
    #[error("ROOFLINEBENCH_FORCE_ISA={0} but this CPU lacks it")]
    Unavailable(Isa),
}

/// The best ISA for vector kernels on this CPU, or the one `ROOFLINEBENCH_FORCE_ISA` names.
pub fn best() -> Result<Isa, IsaError> {
    match std::env::var("ROOFLINEBENCH_FORCE_ISA") {
        Ok(v) if !v.is_empty() => {
            let isa = Isa::parse(&v).ok_or(IsaError::Unknown(v))?;
            if isa.available() {
                Ok(isa)
            } else {
                Err(IsaError::Unavailable(isa))
            }
        }
        _ => Ok(*Isa::all_available().last().unwrap_or(&Isa::Scalar)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_flags_are_consistent_with_isa_levels() {
        let f = CpuFeatures::detect();
        if Isa::Avx512.available() {
            assert!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq);
        }
        if Isa::Avx2.available() {
            assert!(f.avx2 && f.fma && f.f16c);
        }
        // Extensions imply their base: a VNNI or BF16 flag without AVX-512F would be a
        // detection bug that lets a kernel SIGILL.
        if f.avx512_vnni || f.avx512_bf16 || f.avx512_fp16 {
            assert!(f.avx512f);
        }
        let names = f.names();
        println!("detected: {}", names.join(" "));
        assert_eq!(names.contains(&"avx512_fp16"), f.avx512_fp16);
    }

    /// CI runs the aarch64 tests under `qemu-aarch64 -cpu max` and sets
    /// `ROOFLINEBENCH_EXPECT_FEATURES=neon,asimddp,fphp,bf16,i8mm`: a CPU model without them
    /// would make every kernel test skip its kernel and pass without checking anything.
    #[test]
    fn expected_features_are_detected_so_no_kernel_test_is_silently_skipped() {
        let Ok(want) = std::env::var("ROOFLINEBENCH_EXPECT_FEATURES") else {
            println!("skip: ROOFLINEBENCH_EXPECT_FEATURES is not set");
            return;
        };
        let f = CpuFeatures::detect();
        let have = f.names();
        for w in want.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            assert!(
                have.contains(&w),
                "expected feature {w} not detected (have: {have:?})"
            );
        }
        if f.dotprod || f.fp16 || f.bf16 || f.i8mm {
            assert!(
                f.neon,
                "an Advanced SIMD extension without NEON is a detection bug"
            );
        }
    }

    #[test]
    fn scalar_is_always_available_and_names_round_trip() {
        assert!(Isa::Scalar.available());
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon] {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse("sse9"), None);
        assert!(Isa::Avx2.within(Isa::Avx512) && !Isa::Avx512.within(Isa::Avx2));
        assert!(Isa::Scalar.within(Isa::Neon) && !Isa::Neon.within(Isa::Avx512));
    }
}
