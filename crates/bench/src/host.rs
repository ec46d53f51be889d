//! What machine the ceilings were measured on: CPU, caches, memory, OS, clock, thermal state.
//!
//! Sources, in order of trust: Linux sysfs/procfs (what the kernel was told by firmware or the
//! hypervisor), then `cpuid` (x86-64), cross-checked and both recorded. Inside a virtual machine
//! both may describe the host rather than the guest's share (e.g. a 480 MiB L3 reported to a
//! 2-vCPU guest): the probe's bandwidth sweep measures where the plateaus really end and says so.
//! The core clock is *measured* with a dependent-add chain ([`measure_frequency`]); VMs expose
//! no cpufreq and `/proc/cpuinfo` shows the TSC rate. Nothing here needs root. Not a topology
//! library: only what the probe and a reader of its report need.

use rooflinebench_kernels::ceiling::freq;
use rooflinebench_kernels::isa::CpuFeatures;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One cache as described by sysfs and by cpuid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CacheInfo {
    pub level: u32,
    /// `Data`, `Instruction` or `Unified`.
    pub kind: String,
    /// Size from sysfs (primary), bytes.
    pub size_bytes: Option<u64>,
    /// Size from cpuid (leaf 4 on Intel, 0x8000001D on AMD), bytes.
    pub cpuid_size_bytes: Option<u64>,
    /// Logical CPUs sharing one instance (sysfs `shared_cpu_list`, else cpuid).
    pub shared_by_cpus: Option<u32>,
    pub line_bytes: Option<u32>,
    pub ways: Option<u32>,
}

/// One `/sys/class/thermal` zone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThermalZone {
    pub name: String,
    pub celsius: f64,
}

/// The host description stored in the profile's `host` field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostInfo {
    pub cpu_model: String,
    pub vendor: String,
    pub arch: String,
    /// `family/model/stepping` on x86-64 (may be masked by a hypervisor).
    pub cpu_signature: Option<String>,
    /// Hypervisor vendor when running virtualised (cpuid leaf 0x40000000), else `None`.
    pub hypervisor: Option<String>,
    pub features: Vec<String>,
    /// Logical CPUs online.
    pub logical_cpus: u32,
    /// Distinct physical cores (sysfs topology), when known.
    pub physical_cores: Option<u32>,
    /// Logical CPUs this process may run on (its affinity mask): the most threads a probe uses.
    pub usable_cpus: u32,
    pub numa_nodes: Option<u32>,
    pub caches: Vec<CacheInfo>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    /// Measured core clock (best of several dependent-add chains), Hz.
    pub frequency_hz: Option<f64>,
    /// Measured clock while executing 256-bit FMAs, Hz.
    pub frequency_avx2_hz: Option<f64>,
    /// Measured clock while executing 512-bit FMAs, Hz (lower on cores with AVX-512 licences).
    pub frequency_avx512_hz: Option<f64>,
    /// `cpufreq` maximum, Hz, when exposed.
    pub frequency_max_reported_hz: Option<f64>,
    pub governor: Option<String>,
    pub transparent_hugepages: Option<String>,
    pub thermal: Vec<ThermalZone>,
}

impl HostInfo {
    /// The data cache (or unified cache) of `level`.
    pub fn cache(&self, level: u32) -> Option<&CacheInfo> {
        self.caches
            .iter()
            .find(|c| c.level == level && c.kind != "Instruction")
    }

    /// Size of the data/unified cache of `level`: sysfs, else cpuid.
    pub fn cache_bytes(&self, level: u32) -> Option<u64> {
        self.cache(level)
            .and_then(|c| c.size_bytes.or(c.cpuid_size_bytes))
    }

    /// The last-level cache's level number.
    pub fn llc_level(&self) -> Option<u32> {
        self.caches
            .iter()
            .filter(|c| c.kind != "Instruction")
            .map(|c| c.level)
            .max()
    }
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Parses sysfs sizes such as `48K`, `2048K`, `491520K`, `1M`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 1u64 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        (i, 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Counts CPUs in a sysfs CPU list such as `0-3,8,10-11`.
pub fn count_cpu_list(s: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?);
                n = n.checked_add(b.checked_sub(a)?.checked_add(1)?)?;
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                n = n.checked_add(1)?;
            }
        }
    }
    Some(n)
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// Bytes of memory available for new allocations without swapping (`MemAvailable`).
pub fn memory_available_bytes() -> Option<u64> {
    meminfo("MemAvailable")
}

fn sysfs_caches() -> Vec<CacheInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else {
        return out;
    };
    let mut entries: Vec<_> = dir.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("index"))
        {
            continue;
        }
        let Some(level) = read_trim(p.join("level")).and_then(|s| s.parse().ok()) else {
            continue;
        };
        out.push(CacheInfo {
            level,
            kind: read_trim(p.join("type")).unwrap_or_else(|| "Unified".into()),
            size_bytes: read_trim(p.join("size")).and_then(|s| parse_size(&s)),
            cpuid_size_bytes: None,
            shared_by_cpus: read_trim(p.join("shared_cpu_list")).and_then(|s| count_cpu_list(&s)),
            line_bytes: read_trim(p.join("coherency_line_size")).and_then(|s| s.parse().ok()),
            ways: read_trim(p.join("ways_of_associativity")).and_then(|s| s.parse().ok()),
        });
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CacheInfo;
    use raw_cpuid::{CacheType, CpuId};

    pub struct CpuidInfo {
        pub brand: Option<String>,
        pub vendor: Option<String>,
        pub signature: Option<String>,
        pub hypervisor: Option<String>,
        pub caches: Vec<CacheInfo>,
        pub base_mhz: Option<u16>,
    }

    pub fn read() -> CpuidInfo {
        let c = CpuId::new();
        let caches = c
            .get_cache_parameters()
            .map(|it| {
                it.filter_map(|p| {
                    let kind = match p.cache_type() {
                        CacheType::Data => "Data",
                        CacheType::Instruction => "Instruction",
                        CacheType::Unified => "Unified",
                        _ => return None,
                    };
                    let size = (p.associativity()
                        * p.physical_line_partitions()
                        * p.coherency_line_size()
                        * p.sets()) as u64;
                    Some(CacheInfo {
                        level: p.level() as u32,
                        kind: kind.into(),
                        size_bytes: None,
                        cpuid_size_bytes: Some(size),
                        shared_by_cpus: Some(p.max_cores_for_cache() as u32),
                        line_bytes: Some(p.coherency_line_size() as u32),
                        ways: Some(p.associativity() as u32),
                    })
                })
                .collect()
            })
            .unwrap_or_default();
        CpuidInfo {
            brand: c
                .get_processor_brand_string()
                .map(|b| b.as_str().trim().to_string()),
            vendor: c.get_vendor_info().map(|v| v.as_str().to_string()),
            signature: c.get_feature_info().map(|f| {
                format!(
                    "family {:#x} model {:#x} stepping {}",
                    f.family_id(),
                    f.model_id(),
                    f.stepping_id()
                )
            }),
            hypervisor: c
                .get_hypervisor_info()
                .map(|h| format!("{:?}", h.identify())),
            caches,
            base_mhz: c
                .get_processor_frequency_info()
                .map(|f| f.processor_base_frequency())
                .filter(|&m| m > 0),
        }
    }
}

fn cpuinfo_field(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn physical_cores() -> Option<u32> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    let mut set = std::collections::BTreeSet::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name
            .strip_prefix("cpu")
            .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty())
        {
            continue;
        }
        let t = e.path().join("topology");
        let pkg = read_trim(t.join("physical_package_id"))?;
        let core = read_trim(t.join("core_id"))?;
        set.insert((pkg, core));
    }
    (!set.is_empty()).then_some(set.len() as u32)
}

fn thermal_zones() -> Vec<ThermalZone> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/thermal") else {
        return out;
    };
    let mut paths: Vec<_> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("thermal_zone"))
        })
        .collect();
    paths.sort();
    for p in paths {
        let temp = read_trim(p.join("temp")).and_then(|s| s.parse::<f64>().ok());
        if let Some(milli) = temp {
            out.push(ThermalZone {
                name: read_trim(p.join("type")).unwrap_or_else(|| p.display().to_string()),
                celsius: milli / 1000.0,
            });
        }
    }
    out
}

/// The current thermal readings (for before/after comparisons).
pub fn thermal_now() -> Vec<ThermalZone> {
    thermal_zones()
}

/// Measures the clock of the CPU the calling thread runs on (pin it first): the best of
/// `rounds` dependent-add chains of about `chain_seconds` each, in Hz. `None` where the chain
/// is not implemented.
pub fn measure_frequency(rounds: u32, chain_seconds: f64) -> Option<f64> {
    if !freq::SUPPORTED {
        return None;
    }
    // calibrate the iteration count on a 1 GHz guess, then refine once
    let mut iters = ((chain_seconds * 1e9 / freq::CHAIN as f64) as u64).max(1000);
    let mut best: f64 = 0.0;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        std::hint::black_box(freq::add_chain(std::hint::black_box(iters)));
        let s = t.elapsed().as_secs_f64();
        if s > 0.0 {
            let hz = (iters * freq::CHAIN) as f64 / s;
            best = best.max(hz);
            iters = ((chain_seconds * hz / freq::CHAIN as f64) as u64).max(1000);
        }
    }
    (best > 0.0).then_some(best)
}

/// Clocks under vector FMA load, from the same moment as a scalar-clock reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct VectorClocks {
    /// Clock while executing a 256-bit FMA mix, Hz.
    pub avx2_hz: Option<f64>,
    /// Clock while executing a 512-bit FMA mix, Hz (Intel's AVX-512 "licence" lowers it).
    pub avx512_hz: Option<f64>,
}

/// Measures the clock while the core executes 256- and 512-bit FMAs (pin the thread first).
///
/// Each mix ([`freq::mix_chain`]) runs 16 FMAs beside a 24-add dependency chain; its clock is
/// `scalar_hz x t(scalar-FMA mix) / t(vector mix)`, best (shortest) times of `rounds`
/// interleaved runs: the scalar-FMA mix has the same shape, so the small cost of port sharing
/// cancels and only the frequency change remains. Capped at `scalar_hz`.
pub fn measure_vector_clocks(scalar_hz: f64, rounds: u32, chain_seconds: f64) -> VectorClocks {
    use freq::Mix;
    let iters = ((chain_seconds * scalar_hz / freq::MIX_CHAIN as f64) as u64).max(1000);
    let time = |mix: Mix| -> Option<f64> {
        let t = Instant::now();
        std::hint::black_box(freq::mix_chain(mix, std::hint::black_box(iters))?);
        Some(t.elapsed().as_secs_f64())
    };
    let (mut s, mut y, mut z) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let (mut has_y, mut has_z) = (false, false);
    for _ in 0..rounds.max(1) {
        let Some(ts) = time(Mix::ScalarFma) else {
            return VectorClocks::default();
        };
        s = s.min(ts);
        if let Some(t) = time(Mix::Avx2Fma) {
            y = y.min(t);
            has_y = true;
        }
        if let Some(t) = time(Mix::Avx512Fma) {
            z = z.min(t);
            has_z = true;
        }
    }
    let scaled = |t: f64, has: bool| (has && t > 0.0).then(|| (scalar_hz * s / t).min(scalar_hz));
    VectorClocks {
        avx2_hz: scaled(y, has_y),
        avx512_hz: scaled(z, has_z),
    }
}

/// Describes this host. `frequency_hz` is left for the caller, which measures it on a pinned
/// thread (see [`measure_frequency`]).
pub fn detect() -> HostInfo {
    let feats = CpuFeatures::detect();
    let logical = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| count_cpu_list(&s))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u32)
        })
        .unwrap_or(1);
    let usable = core_affinity::get_core_ids()
        .map(|v| v.len() as u32)
        .filter(|&n| n > 0)
        .unwrap_or(1);
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut caches = sysfs_caches();
    let mut cpu_model = cpuinfo_field("model name");
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut vendor = cpuinfo_field("vendor_id").or_else(|| cpuinfo_field("CPU implementer"));
    #[cfg(target_arch = "x86_64")]
    let (signature, mut hypervisor, base_hz) = {
        let c = x86::read();
        cpu_model = c.brand.or(cpu_model);
        vendor = c.vendor.or(vendor);
        // cross-check: attach cpuid's view to the sysfs entry of the same level and type
        for cc in c.caches {
            match caches
                .iter_mut()
                .find(|s| s.level == cc.level && s.kind == cc.kind)
            {
                Some(s) => {
                    s.cpuid_size_bytes = cc.cpuid_size_bytes;
                    s.line_bytes = s.line_bytes.or(cc.line_bytes);
                    s.ways = s.ways.or(cc.ways);
                    s.shared_by_cpus = s.shared_by_cpus.or(cc.shared_by_cpus);
                }
                None => caches.push(cc),
            }
        }
        (
            c.signature,
            c.hypervisor,
            c.base_mhz.map(|m| m as f64 * 1e6),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (signature, mut hypervisor, base_hz): (Option<String>, Option<String>, Option<f64>) =
        (None, None, None);
    if cpu_model.is_none() {
        // aarch64 /proc/cpuinfo has no model name: use the part number
        cpu_model = cpuinfo_field("CPU part").map(|p| format!("CPU part {p}"));
    }
    if hypervisor.is_none()
        && cpuinfo_field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"))
    {
        hypervisor = Some("unknown".into());
    }
    let max_khz = read_trim("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .and_then(|s| s.parse::<f64>().ok());
    let numa = std::fs::read_dir("/sys/devices/system/node").ok().map(|d| {
        d.flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_prefix("node")
                    .is_some_and(|r| r.parse::<u32>().is_ok())
            })
            .count() as u32
    });
    HostInfo {
        cpu_model: cpu_model.unwrap_or_else(|| "unknown CPU".into()),
        vendor: vendor.unwrap_or_else(|| "unknown".into()),
        arch: std::env::consts::ARCH.into(),
        cpu_signature: signature,
        hypervisor,
        features: feats.names().into_iter().map(String::from).collect(),
        logical_cpus: logical,
        physical_cores: physical_cores(),
        usable_cpus: usable,
        numa_nodes: numa.filter(|&n| n > 0),
        caches,
        memory_total_bytes: meminfo("MemTotal"),
        memory_available_bytes: memory_available_bytes(),
        os: read_trim("/etc/os-release").and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        }),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        frequency_hz: None,
        frequency_avx2_hz: None,
        frequency_avx512_hz: None,
        frequency_max_reported_hz: max_khz.map(|k| k * 1e3).or(base_hz),
        governor: read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        transparent_hugepages: read_trim("/sys/kernel/mm/transparent_hugepage/enabled"),
        thermal: thermal_zones(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_sizes_and_cpu_lists_parse() {
        assert_eq!(parse_size("48K"), Some(48 << 10));
        assert_eq!(parse_size("491520K"), Some(480 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size("99999999999999999999K"), None);
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn host_description_is_plausible() {
        let h = detect();
        assert!(h.logical_cpus >= 1 && h.usable_cpus >= 1);
        assert!(h.usable_cpus <= h.logical_cpus.max(h.usable_cpus));
        assert!(!h.arch.is_empty());
        for c in &h.caches {
            assert!(c.level >= 1 && c.level <= 4, "{c:?}");
        }
        println!("{}", serde_json::to_string_pretty(&h).unwrap());
    }

    #[test]
    fn measured_frequency_is_finite_and_positive() {
        match measure_frequency(3, 0.0005) {
            Some(hz) => assert!(hz.is_finite() && hz > 1e7, "{hz}"),
            None => println!("skip: no add chain on this architecture"),
        }
    }
}
