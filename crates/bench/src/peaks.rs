//! Theoretical compute peaks: FLOPs per cycle per core for each ceiling kernel's instruction
//! mix, times the measured clock, times the cores used.
//!
//! The per-core figure is `units x lanes x FLOPs-per-lane / cycles-per-instruction` for the
//! kernel's instruction on the detected core type. Unit counts and port assignments come from
//! the vendors' optimisation manuals, Agner Fog's microarchitecture guide and instruction
//! tables, and uops.info port measurements; each entry names its source. Two assumptions are
//! inherently uncertain and flagged: the number of 512-bit FMA units (Intel ships 1 or 2
//! depending on SKU; a hypervisor may mask the model), and instruction rates no vendor table
//! gives (e.g. `vdpbf16ps`). A kernel's measured ceiling above its theoretical one means this
//! table is wrong for the machine, never "more than 100%".
//! Not a cycle-accurate model: loop overhead and licence-based AVX-512 down-clocking are ignored
//! (the clock is measured with scalar code).

use crate::host::HostInfo;
use rooflinebench_kernels::ceiling::compute::{ComputeKernel, ComputePath};
use rooflinebench_kernels::isa::Isa;

/// Vector FMA resources of one core.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreModel {
    /// e.g. "Intel server core with AMX/AVX512-FP16 (Sapphire Rapids or later)".
    pub name: String,
    /// Family used for instruction-rate rules that differ by vendor.
    pub family: CoreFamily,
    /// 512-bit FMA issues per cycle (0 without AVX-512; 1 where 512-bit ops are split in two).
    pub fma512_per_cycle: f64,
    /// 256-bit FMA issues per cycle.
    pub fma256_per_cycle: f64,
    /// 128-bit FMA issues per cycle (Arm NEON).
    pub fma128_per_cycle: f64,
    /// Where the unit counts come from.
    pub source: String,
    /// An uncertain assumption a reader should check, if any.
    pub assumption: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreFamily {
    IntelAvx512Server,
    IntelAvx512Client,
    IntelAvx2,
    AmdZen4,
    AmdZen5,
    AmdAvx2,
    Arm,
    Other,
}

fn has(h: &HostInfo, f: &str) -> bool {
    h.features.iter().any(|x| x == f)
}

/// Family number from the recorded signature (`family 0x19 model ...`).
fn family_number(h: &HostInfo) -> Option<u32> {
    let sig = h.cpu_signature.as_deref()?;
    let hex = sig.strip_prefix("family 0x")?.split_whitespace().next()?;
    u32::from_str_radix(hex, 16).ok()
}

fn model_number(h: &HostInfo) -> Option<u32> {
    let sig = h.cpu_signature.as_deref()?;
    let hex = sig.split("model 0x").nth(1)?.split_whitespace().next()?;
    u32::from_str_radix(hex, 16).ok()
}

/// The FMA resources of the host's cores, from vendor, features and brand.
pub fn core_model(h: &HostInfo) -> CoreModel {
    let intel = h.vendor.contains("Intel");
    let amd = h.vendor.contains("AMD");
    let avx512 = has(h, "avx512f");
    let xeon = h.cpu_model.contains("Xeon");
    let masked = if h.hypervisor.is_some() {
        " The hypervisor may mask the exact model (brand here: \"".to_string()
            + &h.cpu_model
            + "\")."
    } else {
        String::new()
    };
    let model =
        |name: &str, fam, z: f64, y: f64, x: f64, src: &str, assume: Option<String>| CoreModel {
            name: name.into(),
            family: fam,
            fma512_per_cycle: z,
            fma256_per_cycle: y,
            fma128_per_cycle: x,
            source: src.into(),
            assumption: assume,
        };
    if h.arch == "x86_64" && intel && avx512 {
        if has(h, "amx_tile") || has(h, "avx512_fp16") {
            return model(
                "Intel Xeon server core with AMX / AVX512-FP16 (Sapphire Rapids, Emerald Rapids or Granite Rapids)",
                CoreFamily::IntelAvx512Server,
                2.0,
                2.0,
                0.0,
                "Intel 64 and IA-32 Architectures Optimization Reference Manual (Sapphire Rapids: 512-bit FMA on ports 0 (fused 0+1) and 5); Chips and Cheese, 'Sapphire Rapids' (2x512-bit FMA)",
                Some(format!(
                    "assumed 2 x 512-bit FMA units per core, as Intel ARK lists ('# of AVX-512 FMA Units: 2') for Xeon Scalable 4th-6th generation P-core SKUs; check your SKU.{masked}"
                )),
            );
        }
        if xeon {
            return model(
                "Intel Xeon server core with AVX-512 (Skylake-SP to Ice Lake-SP)",
                CoreFamily::IntelAvx512Server,
                2.0,
                2.0,
                0.0,
                "Intel Optimization Reference Manual (Skylake Server: second 512-bit FMA unit on port 5 on some SKUs); Intel ARK '# of AVX-512 FMA Units'",
                Some(format!(
                    "assumed 2 x 512-bit FMA units; Xeon Bronze, Silver and some Gold 5xxx SKUs of Skylake-SP/Cascade Lake have only 1 (halve the AVX-512 peaks).{masked}"
                )),
            );
        }
        return model(
            "Intel client core with AVX-512 (Ice Lake, Tiger Lake, Rocket Lake)",
            CoreFamily::IntelAvx512Client,
            1.0,
            2.0,
            0.0,
            "Intel Optimization Reference Manual (Ice Lake client: 512-bit FMA on fused ports 0+1 only)",
            Some(format!("assumed 1 x 512-bit FMA unit (client core).{masked}")),
        );
    }
    if h.arch == "x86_64" && amd {
        let fam = family_number(h).unwrap_or(0);
        if avx512 && fam >= 0x1A {
            return model(
                "AMD Zen 5",
                CoreFamily::AmdZen5,
                2.0,
                2.0,
                0.0,
                "AMD Zen 5 software optimization guide (four 512-bit FP pipes, two of them FMA); Chips and Cheese, 'Zen 5's AVX-512'",
                Some("assumed full 512-bit datapaths (desktop/server Zen 5); mobile Zen 5 (Strix Point) executes 512-bit FMA as two 256-bit halves (halve the AVX-512 peaks)".into()),
            );
        }
        if avx512 {
            return model(
                "AMD Zen 4",
                CoreFamily::AmdZen4,
                1.0,
                2.0,
                0.0,
                "AMD Zen 4 software optimization guide (two 256-bit FMA pipes; 512-bit operations take both)",
                None,
            );
        }
        let first_zen = fam == 0x17 && model_number(h).is_some_and(|m| m < 0x30);
        return model(
            if first_zen { "AMD Zen / Zen+" } else { "AMD Zen 2 / Zen 3" },
            CoreFamily::AmdAvx2,
            0.0,
            if first_zen { 1.0 } else { 2.0 },
            0.0,
            "AMD software optimization guides for family 17h/19h (Zen/Zen+: 2 x 128-bit FMA; Zen 2/3: 2 x 256-bit FMA)",
            None,
        );
    }
    if h.arch == "x86_64" && has(h, "avx2") {
        return model(
            "x86-64 core with AVX2 + FMA",
            CoreFamily::IntelAvx2,
            0.0,
            2.0,
            0.0,
            "Intel Optimization Reference Manual (Haswell to Alder Lake P-core: 256-bit FMA on ports 0 and 1)",
            Some("assumed 2 x 256-bit FMA units (true for Intel big cores since Haswell; Atom/E-cores have fewer)".into()),
        );
    }
    if h.arch == "aarch64" {
        let big = h.clusters.first();
        let core = big.map(|c| c.core.as_str()).unwrap_or("");
        let mixed = if h.clusters.len() > 1 {
            format!(
                " Heterogeneous CPU ({}): the table entry is the biggest cluster's core; all-core peaks overstate the little cores.",
                crate::host::describe_clusters(&h.clusters)
            )
        } else {
            String::new()
        };
        return match arm_fma128(core) {
            Some((pipes, src, assume)) => model(
                &format!("{core} ({pipes} x 128-bit FP/ASIMD FMA pipes)"),
                CoreFamily::Arm,
                0.0,
                0.0,
                pipes,
                src,
                match (assume, mixed.is_empty()) {
                    (None, true) => None,
                    (a, _) => Some(format!("{}{mixed}", a.unwrap_or(""))),
                },
            ),
            None => model(
                "Arm core with NEON",
                CoreFamily::Arm,
                0.0,
                0.0,
                2.0,
                "Arm Cortex-A76/A78 Software Optimization Guides (two 128-bit ASIMD FMA pipes)",
                Some(format!(
                    "core {:?} is not in the table: assumed 2 x 128-bit FMA pipes per core (Cortex-A76 class).{mixed}",
                    if core.is_empty() { "unknown" } else { core }
                )),
            ),
        };
    }
    model(
        "unknown core",
        CoreFamily::Other,
        0.0,
        0.0,
        0.0,
        "no table entry for this CPU",
        Some("no FMA-unit figure known for this CPU: theoretical peaks omitted".into()),
    )
}

/// 128-bit FP/ASIMD FMA issues per cycle of an Arm core (by the name `host::arm_core_name`
/// gives), the source, and the uncertain assumption if any. FP16 `fmla .8h`, `sdot`, `bfdot`
/// and `smmla`/`bfmmla` are assumed to issue on the same pipes at the same rate (true for
/// FMLA/SDOT on the Cortex-A76..X4 guides; the BF16/MMLA rates are flagged in `flops_per_cycle`).
pub fn arm_fma128(core: &str) -> Option<(f64, &'static str, Option<&'static str>)> {
    const A76: &str = "Arm Cortex-A76 Software Optimization Guide (ASIMD FP multiply-accumulate Q-form: pipes V0/V1, throughput 2/cycle)";
    const A78: &str = "Arm Cortex-A78 / A78AE / A77 Software Optimization Guides (ASIMD FMLA Q-form: V0/V1, throughput 2/cycle)";
    const A7XX: &str = "Arm Cortex-A710 / A715 / A720 Software Optimization Guides (ASIMD FMLA Q-form: V0/V1, throughput 2/cycle)";
    const X: &str = "Arm Cortex-X1 / X2 / X3 / X4 Software Optimization Guides (ASIMD FMLA Q-form: V0-V3, throughput 4/cycle)";
    const NEO: &str = "Arm Neoverse N1 / N2 / V1 / V2 Software Optimization Guides (N: 2 x 128-bit, V: 4 x 128-bit FP/ASIMD FMA)";
    const APPLE_P: &str = "Dougall Johnson, 'Apple M1 Firestorm microarchitecture' instruction tables (dougallj.github.io/applecpu): 4 FP/SIMD FMA pipes; same width on M2/M3/M4 P-cores per Chips and Cheese";
    const APPLE_E: &str = "Dougall Johnson, 'Apple M1 Icestorm' instruction tables (dougallj.github.io/applecpu): 2 FP/SIMD FMA pipes";
    const LITTLE: &str = "Arm Cortex-A53 / A55 Technical Reference Manuals (64-bit NEON datapath: a Q-form FMLA occupies it for 2 cycles on A53)";
    Some(match core {
        "Cortex-A76" | "Cortex-A76AE" | "Kryo 4xx Gold (Cortex-A76 based)" => (2.0, A76, None),
        "Cortex-A77" | "Cortex-A78" | "Cortex-A78AE" | "Cortex-A78C" => (2.0, A78, None),
        "Cortex-A710" | "Cortex-A715" | "Cortex-A720" | "Cortex-A725" => (2.0, A7XX, None),
        "Cortex-X1" | "Cortex-X1C" | "Cortex-X2" | "Cortex-X3" | "Cortex-X4" => (4.0, X, None),
        "Cortex-X925" => (
            6.0,
            "Arm Cortex-X925 Software Optimization Guide (6 x 128-bit ASIMD pipes)",
            Some("assumed all 6 ASIMD pipes take FMLA"),
        ),
        "Neoverse N1" | "Neoverse N2" => (2.0, NEO, None),
        "Neoverse V1" | "Neoverse V2" | "Neoverse V3" => (4.0, NEO, None),
        "Cortex-A72" | "Cortex-A73" | "Cortex-A75" | "Kryo 3xx Gold (Cortex-A75 based)" => (
            2.0,
            "Arm Cortex-A72 / A75 Software Optimization Guides (two FP/ASIMD pipes F0/F1)",
            Some("assumed Q-form FMLA issues on both FP pipes every cycle"),
        ),
        "Cortex-A53" => (0.5, LITTLE, Some("assumed one 64-bit FMA datapath: 0.5 Q-form FMLA per cycle")),
        "Cortex-A55" | "Kryo 3xx Silver (Cortex-A55 based)" | "Kryo 4xx Silver (Cortex-A55 based)" => (
            1.0,
            LITTLE,
            Some("assumed 1 Q-form FMLA per cycle (two 64-bit halves)"),
        ),
        "Cortex-A510" | "Cortex-A520" => (
            1.0,
            "Arm Cortex-A510 / A520 Technical Reference Manuals (vector unit shared by a core pair, 2 x 64- or 2 x 128-bit)",
            Some("assumed half of a shared 2 x 128-bit vector unit per core"),
        ),
        "NVIDIA Carmel" => (
            2.0,
            "NVIDIA Xavier Carmel: Chips and Cheese (2 x 128-bit FMA)",
            Some("assumed 2 x 128-bit FMA pipes"),
        ),
        c if c.starts_with("Apple M") && c.contains("P-core") => (
            4.0,
            APPLE_P,
            (!c.contains("M1")).then_some("M2-M4 P-core widths assumed equal to M1 Firestorm's"),
        ),
        c if c.starts_with("Apple M") && c.contains("E-core") => (
            2.0,
            APPLE_E,
            (!c.contains("M1")).then_some("M2-M4 E-core widths assumed equal to M1 Icestorm's"),
        ),
        _ => return None,
    })
}

/// A kernel's theoretical FLOPs (or int8 ops) per cycle per core, with its derivation.
#[derive(Clone, Debug, PartialEq)]
pub struct PeakEntry {
    pub flops_per_cycle: f64,
    pub derivation: String,
    pub source: String,
    /// Rests on an uncertain assumption (see the core model or the derivation).
    pub flagged: bool,
}

/// Theoretical FLOP/cycle/core of `kernel` on core model `m`, or `None` where unknown.
pub fn flops_per_cycle(kernel: ComputeKernel, m: &CoreModel) -> Option<PeakEntry> {
    let s = kernel.spec();
    let flagged_core = m.assumption.is_some();
    let entry = |fpc: f64, der: String, src: &str, flag: bool| {
        (fpc > 0.0).then(|| PeakEntry {
            flops_per_cycle: fpc,
            derivation: der,
            source: src.to_string(),
            flagged: flag,
        })
    };
    let intel = matches!(
        m.family,
        CoreFamily::IntelAvx512Server | CoreFamily::IntelAvx512Client | CoreFamily::IntelAvx2
    );
    let lanes = s.lanes as f64;
    // FLOPs per lane per instruction of the path
    let per_lane = match s.path {
        ComputePath::Bf16Dot => 4.0,
        ComputePath::Int8Dot => 8.0,
        _ => 2.0,
    } * if kernel.is_mmla() { 2.0 } else { 1.0 };
    let units = match s.isa {
        Isa::Avx512 => m.fma512_per_cycle,
        Isa::Avx2 => m.fma256_per_cycle,
        Isa::Neon => m.fma128_per_cycle,
        Isa::Scalar => [m.fma512_per_cycle, m.fma256_per_cycle, m.fma128_per_cycle]
            .into_iter()
            .fold(0.0, f64::max),
    };
    let src_core = m.source.as_str();
    match (kernel, s.path) {
        (_, _) if s.isa == Isa::Scalar => entry(
            units * 2.0,
            format!(
                "upper bound: {units} FP pipes x 1 lane x 2 FLOP (one scalar multiply-add per pipe per cycle); the unfused scalar kernel and any software conversion stay below it"
            ),
            src_core,
            true,
        ),
        (ComputeKernel::F16cFmaF32Avx512, _) if intel => entry(
            // per 16 lanes: vcvtph2ps zmm = 1 uop p0 + 1 uop p5, FMA = 1 uop p0|p5: 3 uops on
            // the 2 FMA ports -> 1.5 cycles per converted-and-accumulated vector
            units * lanes * 2.0 / 3.0,
            format!(
                "{units} x 512-bit FMA ports; each vcvtph2ps zmm takes one slot on each FMA port (p0 + p5), so one convert + one FMA = 3 slots on {units} ports: {units} x 16 lanes x 2 FLOP / 3"
            ),
            "uops.info (VCVTPH2PS zmm, ymm: 1*p0 + 1*p5 on Skylake-X / Ice Lake); Intel Optimization Reference Manual",
            flagged_core,
        ),
        (ComputeKernel::F16cFmaF32Avx2, _) if intel => entry(
            // per 8 lanes: vcvtph2ps ymm = 1 uop p01 + 1 uop p5; FMA = 1 uop p01 -> p0/p1 carry
            // two uops per vector: one vector per cycle
            units * lanes * 2.0 / 2.0,
            format!(
                "{units} x 256-bit FMA ports (p0, p1); each vcvtph2ps ymm takes one p0/p1 slot (+ one p5), so one convert + one FMA = 2 slots on {units} ports: {units} x 8 lanes x 2 FLOP / 2"
            ),
            "uops.info (VCVTPH2PS ymm, xmm: 1*p01 + 1*p5 on Haswell to Alder Lake-P)",
            flagged_core,
        ),
        (ComputeKernel::F16cFmaF32Avx512 | ComputeKernel::F16cFmaF32Avx2, _) => entry(
            units * lanes * 2.0,
            format!("upper bound: {units} FMA units x {lanes} lanes x 2 FLOP, conversion assumed free (its port use on this core type is not in the table)"),
            src_core,
            true,
        ),
        (ComputeKernel::DotBf16Avx512bf16, _) if m.family == CoreFamily::IntelAvx512Server => entry(
            0.5 * lanes * 4.0,
            "vdpbf16ps zmm issues once per 2 cycles on Sapphire/Granite Rapids cores (rooflinebench's own throughput microbenchmark: 0.43 instr/cycle with 4 to 30 independent accumulators, i.e. not latency-bound; no vendor figure found): 0.5 x 16 lanes x 2 pairs x 2 FLOP".into(),
            "rooflinebench microbenchmark (no vendor table)",
            true,
        ),
        (ComputeKernel::F16cvtFmaF32Neon, _) => entry(
            units * lanes * 2.0 / 2.0,
            format!(
                "{units} x 128-bit ASIMD pipes; each fcvtl takes an ASIMD pipe slot like the fmla it feeds, so 2 slots per 4 lanes: {units} x 4 lanes x 2 FLOP / 2"
            ),
            src_core,
            true,
        ),
        (
            ComputeKernel::DotBf16Neon | ComputeKernel::MmlaBf16Neon | ComputeKernel::MmlaI8Neon,
            _,
        ) => entry(
            units * lanes * per_lane,
            format!(
                "{units} x 128-bit pipes x {lanes} lanes x {per_lane} ops per lane per instruction, assuming {} issues at the FMLA rate (not given for every core)",
                s.name
            ),
            src_core,
            true,
        ),
        (ComputeKernel::DotI8Avx2, _) => entry(
            // vpmaddubsw + vpmaddwd both need a multiplier port: 2 multiply uops per 8 lanes
            units * lanes * per_lane / 2.0,
            format!(
                "vpmaddubsw + vpmaddwd (+ vpaddd): 2 multiply uops per 8 i32 lanes x 4 u8*s8 MACs on {units} vector multiply ports: {units} x 8 x 8 / 2"
            ),
            "uops.info (VPMADDUBSW/VPMADDWD ymm: p01 on Intel since Skylake; FP/INT multiply pipes on Zen 2-4)",
            flagged_core,
        ),
        _ => entry(
            units * lanes * per_lane,
            format!(
                "{units} x {bits}-bit units x {lanes} lanes x {per_lane} FLOP per lane per instruction",
                bits = match s.isa {
                    Isa::Avx512 => 512,
                    Isa::Avx2 => 256,
                    _ => 128,
                }
            ),
            src_core,
            flagged_core,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::detect;

    fn host(vendor: &str, model: &str, feats: &[&str], sig: &str) -> HostInfo {
        let mut h = detect();
        h.arch = "x86_64".into();
        h.vendor = vendor.into();
        h.cpu_model = model.into();
        h.features = feats.iter().map(|s| s.to_string()).collect();
        h.cpu_signature = Some(sig.into());
        h.hypervisor = None;
        h
    }

    #[test]
    fn two_fma_units_give_64_f32_flops_per_cycle() {
        let h = host(
            "GenuineIntel",
            "Intel(R) Xeon(R) Platinum 8480+",
            &["avx2", "avx512f", "amx_tile"],
            "family 0x6 model 0x8f stepping 8",
        );
        let m = core_model(&h);
        assert_eq!(m.fma512_per_cycle, 2.0);
        let f32 = flops_per_cycle(ComputeKernel::FmaF32Avx512, &m).unwrap();
        assert_eq!(f32.flops_per_cycle, 64.0); // 2 x 16 x 2, issue 3's example
        assert_eq!(
            flops_per_cycle(ComputeKernel::FmaF64Avx512, &m)
                .unwrap()
                .flops_per_cycle,
            32.0
        );
        assert_eq!(
            flops_per_cycle(ComputeKernel::FmaF32Avx2, &m)
                .unwrap()
                .flops_per_cycle,
            32.0
        );
        assert_eq!(
            flops_per_cycle(ComputeKernel::DotI8Avx512vnni, &m)
                .unwrap()
                .flops_per_cycle,
            256.0
        );
        assert_eq!(
            flops_per_cycle(ComputeKernel::FmaF16Avx512fp16, &m)
                .unwrap()
                .flops_per_cycle,
            128.0
        );
        assert!(
            m.assumption.is_some(),
            "the FMA-unit count is an assumption and says so"
        );
    }

    #[test]
    fn zen4_double_pumps_512_bit() {
        let h = host(
            "AuthenticAMD",
            "AMD Ryzen 9 7950X",
            &["avx2", "avx512f"],
            "family 0x19 model 0x61 stepping 2",
        );
        let m = core_model(&h);
        assert_eq!(
            flops_per_cycle(ComputeKernel::FmaF32Avx512, &m)
                .unwrap()
                .flops_per_cycle,
            32.0
        );
        assert_eq!(
            flops_per_cycle(ComputeKernel::FmaF32Avx2, &m)
                .unwrap()
                .flops_per_cycle,
            32.0
        );
    }

    fn arm_host(cores: &[(&str, u32)]) -> HostInfo {
        let mut h = host("ARM", "", &["neon", "asimddp"], "");
        h.arch = "aarch64".into();
        h.cpu_signature = None;
        let mut next = 0;
        h.clusters = cores
            .iter()
            .map(|&(core, n)| {
                let c = crate::host::CoreCluster {
                    core: core.into(),
                    implementer: None,
                    part: None,
                    cpus: (next..next + n).collect(),
                    capacity: None,
                    frequency_max_reported_hz: None,
                    frequency_hz: None,
                };
                next += n;
                c
            })
            .collect();
        h
    }

    /// Raspberry Pi 5 (4 x Cortex-A76): 2 pipes x 4 lanes x 2 = 16 f32 FLOP/cycle, 64 int8
    /// ops/cycle with SDOT; Jetson Orin's A78AE the same; Apple M1 P-cores twice that.
    #[test]
    fn arm_cores_from_the_paper_have_table_entries() {
        let f32_of = |h: &HostInfo| {
            flops_per_cycle(ComputeKernel::FmaF32Neon, &core_model(h))
                .unwrap()
                .flops_per_cycle
        };
        let rpi5 = arm_host(&[("Cortex-A76", 4)]);
        assert_eq!(f32_of(&rpi5), 16.0);
        let m = core_model(&rpi5);
        assert!(m.assumption.is_none(), "{m:?}");
        assert_eq!(
            flops_per_cycle(ComputeKernel::DotI8Neon, &m)
                .unwrap()
                .flops_per_cycle,
            64.0
        );
        assert_eq!(
            flops_per_cycle(ComputeKernel::MmlaI8Neon, &m)
                .unwrap()
                .flops_per_cycle,
            128.0
        );
        assert_eq!(f32_of(&arm_host(&[("Cortex-A78AE", 12)])), 16.0);
        let m1 = arm_host(&[
            ("Apple M1 P-core (Firestorm)", 8),
            ("Apple M1 E-core (Icestorm)", 2),
        ]);
        assert_eq!(f32_of(&m1), 32.0);
        let a = core_model(&m1).assumption.unwrap();
        assert!(a.contains("Heterogeneous"), "{a}");
        assert_eq!(f32_of(&arm_host(&[("Apple M4 E-core", 4)])), 16.0);
        for core in [
            "Cortex-A55",
            "Cortex-X1",
            "Cortex-X2",
            "Cortex-X3",
            "Cortex-X4",
            "Cortex-A510",
            "Cortex-A520",
            "Cortex-A710",
            "Cortex-A715",
            "Cortex-A720",
            "Neoverse N1",
            "Neoverse V1",
            "Neoverse V2",
            "Apple M2 P-core (Avalanche)",
            "Apple M3 P-core (Everest)",
        ] {
            assert!(arm_fma128(core).is_some(), "{core}");
        }
        // an unknown core: a generic entry that says so, no panic
        let u = core_model(&arm_host(&[(
            "unknown Arm core (implementer 0x41, part 0xfff)",
            1,
        )]));
        assert!(u.assumption.unwrap().contains("not in the table"));
    }

    #[test]
    fn unknown_cpu_has_no_theoretical_peak() {
        let mut h = host("Weird", "x", &[], "");
        h.arch = "riscv64".into();
        let m = core_model(&h);
        assert!(flops_per_cycle(ComputeKernel::FmaF32Avx512, &m).is_none());
    }
}
