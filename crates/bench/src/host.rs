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
    /// Groups of identical cores (Arm big.LITTLE, Apple P/E cores), biggest first; empty
    /// where the kernel does not describe cores individually (x86-64: one entry per core type
    /// is not exposed, so none is listed).
    pub clusters: Vec<CoreCluster>,
    /// What could not be determined (missing sysfs entries, an unknown core), one line each:
    /// the probe turns them into warnings.
    pub notes: Vec<String>,
    /// Why this process is believed to run under an instruction-set emulator (qemu-user,
    /// Rosetta 2, box64/FEX), or `None`. Emulated timings say nothing about the hardware:
    /// the probe refuses unless explicitly allowed. See [`emulation_signals`].
    pub emulation: Option<String>,
}

/// A group of identical cores: same implementer and part number, same `cpu_capacity`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoreCluster {
    /// Core name from the part-number table, e.g. `Cortex-A76`, or `unknown Arm core ...`.
    pub core: String,
    /// `CPU implementer` (e.g. `0x41` = Arm Ltd, `0x61` = Apple), when known.
    pub implementer: Option<String>,
    /// `CPU part` (e.g. `0xd0b` = Cortex-A76), when known.
    pub part: Option<String>,
    /// Logical CPU numbers of this cluster.
    pub cpus: Vec<u32>,
    /// sysfs `cpu_capacity` (1024 = the biggest core type), when exposed.
    pub capacity: Option<u32>,
    /// `cpufreq/cpuinfo_max_freq` of the first CPU, Hz, when exposed.
    pub frequency_max_reported_hz: Option<f64>,
    /// Clock measured on a thread pinned to the cluster's first CPU, Hz.
    pub frequency_hz: Option<f64>,
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

fn sysfs_caches(cpu: u32) -> Vec<CacheInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}/cache")) else {
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
    let mut notes = Vec::new();
    let clusters = detect_clusters(&mut notes);
    // caches of the biggest core type (on big.LITTLE parts cpu0 is often a little core)
    let cache_cpu = clusters
        .first()
        .and_then(|c| c.cpus.first().copied())
        .unwrap_or(0);
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut caches = sysfs_caches(cache_cpu);
    if caches.is_empty() {
        notes.push(format!(
            "no cache sizes in /sys/devices/system/cpu/cpu{cache_cpu}/cache: the bandwidth sweep uses default cache-level boundaries"
        ));
    }
    let mut cpu_model = cpuinfo_field("model name");
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut vendor = cpuinfo_field("vendor_id").or_else(|| {
        cpuinfo_field("CPU implementer")
            .map(|i| arm_implementer_name(parse_hex(&i).unwrap_or(u32::MAX)).unwrap_or(i))
    });
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
    if cpu_model.is_none() && !clusters.is_empty() {
        // aarch64 /proc/cpuinfo has no model name: describe the clusters
        cpu_model = Some(describe_clusters(&clusters));
    }
    if cpu_model.is_none() {
        cpu_model = cpuinfo_field("CPU part").map(|p| format!("CPU part {p}"));
    }
    #[cfg(target_os = "macos")]
    if let Some(m) = macos::brand() {
        cpu_model = Some(m);
        vendor = Some("Apple".into());
    }
    if hypervisor.is_none()
        && cpuinfo_field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"))
    {
        hypervisor = Some("unknown".into());
    }
    if hypervisor.is_none() {
        // Arm has no cpuid hypervisor leaf: the firmware's DMI strings name most VMs
        hypervisor = hypervisor_from_dmi(
            read_trim("/sys/class/dmi/id/sys_vendor").as_deref(),
            read_trim("/sys/class/dmi/id/product_name").as_deref(),
        )
        .or_else(|| read_trim("/sys/hypervisor/type"));
    }
    let emulation = detect_emulation();
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
        clusters,
        notes,
        emulation,
    }
}

/// A hypervisor named by the DMI (SMBIOS) system vendor or product, e.g. `QEMU`, `KVM`,
/// `VMware, Inc.`, `Microsoft Corporation` + `Virtual Machine`, Apple's Virtualization
/// framework, `Amazon EC2` (Nitro: real cores, but a hypervisor all the same).
pub fn hypervisor_from_dmi(vendor: Option<&str>, product: Option<&str>) -> Option<String> {
    let v = vendor.unwrap_or("");
    let p = product.unwrap_or("");
    let known = [
        ("QEMU", "QEMU/KVM"),
        ("KVM", "KVM"),
        ("VMware", "VMware"),
        ("VirtualBox", "VirtualBox"),
        ("innotek", "VirtualBox"),
        ("Xen", "Xen"),
        ("Parallels", "Parallels"),
        ("Virtualization", "Apple Virtualization framework"),
        ("Amazon EC2", "AWS Nitro"),
        ("Google Compute Engine", "Google Compute Engine"),
    ];
    for (needle, name) in known {
        if v.contains(needle) || p.contains(needle) {
            return Some(name.to_string());
        }
    }
    (v.contains("Microsoft") && p.contains("Virtual Machine")).then(|| "Hyper-V".to_string())
}

/// Signs that the process runs under an instruction-set emulator, one reason each.
///
/// Robust signals, checked under `qemu-aarch64` 7.2 on an x86-64 host:
/// - `/proc/self/status` `Name:` is the emulator's (`qemu-aarch64`): qemu-user rewrites
///   `/proc/self/exe`, `/proc/self/cmdline` and `/proc/self/maps` for the guest, but not
///   `status`;
/// - `/proc/thread-self/exe` points at the emulator (`/usr/bin/qemu-aarch64`): not rewritten;
/// - `/proc/cpuinfo` describes another architecture than the binary's (qemu-user passes the
///   host's file through: an aarch64 binary reading `vendor_id: GenuineIntel`; box64 or FEX
///   running an x86-64 binary on Arm shows `CPU implementer`).
///
/// Not used: `AT_PLATFORM` and `AT_HWCAP` (qemu synthesises plausible ones) and timing (an
/// emulator can be fast for some instructions).
pub fn emulation_signals(
    arch: &str,
    cpuinfo: Option<&str>,
    status_name: Option<&str>,
    thread_exe: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let emulator = |s: &str| {
        let base = s.rsplit('/').next().unwrap_or(s);
        base.starts_with("qemu-") || base.starts_with("box64") || base.starts_with("FEX")
    };
    if let Some(n) = status_name.filter(|n| emulator(n)) {
        out.push(format!("the process name in /proc/self/status is {n:?}"));
    }
    if let Some(e) = thread_exe.filter(|e| emulator(e)) {
        out.push(format!("/proc/thread-self/exe is {e}"));
    }
    if let Some(text) = cpuinfo {
        let has = |key: &str| {
            text.lines()
                .any(|l| l.split_once(':').is_some_and(|(k, _)| k.trim() == key))
        };
        match arch {
            "aarch64" | "arm" if has("vendor_id") => out.push(
                "/proc/cpuinfo describes an x86 CPU (it has vendor_id), but this binary is Arm"
                    .into(),
            ),
            "x86_64" | "x86" if has("CPU implementer") => out.push(
                "/proc/cpuinfo describes an Arm CPU (it has CPU implementer), but this binary is x86"
                    .into(),
            ),
            _ => {}
        }
    }
    out
}

/// This process's emulation signals joined into one reason, or `None` on real hardware.
pub fn detect_emulation() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let name = status.as_deref().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Name:").map(|v| v.trim().to_string()))
    });
    let exe = std::fs::read_link("/proc/thread-self/exe")
        .ok()
        .map(|p| p.display().to_string());
    #[allow(unused_mut)]
    let mut signals = emulation_signals(
        std::env::consts::ARCH,
        cpuinfo.as_deref(),
        name.as_deref(),
        exe.as_deref(),
    );
    #[cfg(target_os = "macos")]
    if macos::translated() {
        signals.push("sysctl.proc_translated = 1 (Rosetta 2 translates this x86-64 binary)".into());
    }
    (!signals.is_empty()).then(|| signals.join("; "))
}

/// `0x41` -> 65.
fn parse_hex(s: &str) -> Option<u32> {
    let s = s.trim();
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u32::from_str_radix(h, 16).ok()
}

/// Arm `MIDR_EL1` implementer codes (Linux `arch/arm64/include/asm/cputype.h`).
pub fn arm_implementer_name(implementer: u32) -> Option<String> {
    Some(
        match implementer {
            0x41 => "ARM",
            0x42 => "Broadcom",
            0x43 => "Cavium",
            0x46 => "Fujitsu",
            0x48 => "HiSilicon",
            0x4e => "NVIDIA",
            0x51 => "Qualcomm",
            0x61 => "Apple",
            0xc0 => "Ampere",
            _ => return None,
        }
        .to_string(),
    )
}

/// Core name of an Arm `MIDR_EL1` (implementer, part number) pair. Sources: Linux
/// `arch/arm64/include/asm/cputype.h` (Arm, NVIDIA, Qualcomm, Apple part numbers as the
/// kernel defines them) and each core's Technical Reference Manual (`MIDR_EL1` PartNum field).
pub fn arm_core_name(implementer: u32, part: u32) -> Option<&'static str> {
    Some(match (implementer, part) {
        (0x41, 0xd03) => "Cortex-A53",
        (0x41, 0xd04) => "Cortex-A35",
        (0x41, 0xd05) => "Cortex-A55",
        (0x41, 0xd07) => "Cortex-A57",
        (0x41, 0xd08) => "Cortex-A72",
        (0x41, 0xd09) => "Cortex-A73",
        (0x41, 0xd0a) => "Cortex-A75",
        (0x41, 0xd0b) => "Cortex-A76",
        (0x41, 0xd0c) => "Neoverse N1",
        (0x41, 0xd0d) => "Cortex-A77",
        (0x41, 0xd0e) => "Cortex-A76AE",
        (0x41, 0xd40) => "Neoverse V1",
        (0x41, 0xd41) => "Cortex-A78",
        (0x41, 0xd42) => "Cortex-A78AE",
        (0x41, 0xd44) => "Cortex-X1",
        (0x41, 0xd46) => "Cortex-A510",
        (0x41, 0xd47) => "Cortex-A710",
        (0x41, 0xd48) => "Cortex-X2",
        (0x41, 0xd49) => "Neoverse N2",
        (0x41, 0xd4a) => "Neoverse E1",
        (0x41, 0xd4b) => "Cortex-A78C",
        (0x41, 0xd4c) => "Cortex-X1C",
        (0x41, 0xd4d) => "Cortex-A715",
        (0x41, 0xd4e) => "Cortex-X3",
        (0x41, 0xd4f) => "Neoverse V2",
        (0x41, 0xd80) => "Cortex-A520",
        (0x41, 0xd81) => "Cortex-A720",
        (0x41, 0xd82) => "Cortex-X4",
        (0x41, 0xd84) => "Neoverse V3",
        (0x41, 0xd85) => "Cortex-X925",
        (0x41, 0xd87) => "Cortex-A725",
        (0x4e, 0x004) => "NVIDIA Carmel",
        (0x51, 0x802) => "Kryo 3xx Gold (Cortex-A75 based)",
        (0x51, 0x803) => "Kryo 3xx Silver (Cortex-A55 based)",
        (0x51, 0x804) => "Kryo 4xx Gold (Cortex-A76 based)",
        (0x51, 0x805) => "Kryo 4xx Silver (Cortex-A55 based)",
        (0x51, 0x001) => "Qualcomm Oryon",
        (0x61, 0x022) | (0x61, 0x024) | (0x61, 0x028) => "Apple M1 E-core (Icestorm)",
        (0x61, 0x023) | (0x61, 0x025) | (0x61, 0x029) => "Apple M1 P-core (Firestorm)",
        (0x61, 0x032) | (0x61, 0x034) | (0x61, 0x038) => "Apple M2 E-core (Blizzard)",
        (0x61, 0x033) | (0x61, 0x035) | (0x61, 0x039) => "Apple M2 P-core (Avalanche)",
        _ => return None,
    })
}

/// One `processor` block of an aarch64 `/proc/cpuinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmCpu {
    pub cpu: u32,
    pub implementer: Option<u32>,
    pub part: Option<u32>,
}

/// The per-CPU `CPU implementer` and `CPU part` lines of an aarch64 `/proc/cpuinfo`.
/// Blocks without a parseable `processor` number are skipped.
pub fn parse_arm_cpuinfo(text: &str) -> Vec<ArmCpu> {
    let mut out = Vec::new();
    let mut cur: Option<ArmCpu> = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "processor" => {
                out.extend(cur.take());
                cur = v.trim().parse().ok().map(|cpu| ArmCpu {
                    cpu,
                    implementer: None,
                    part: None,
                });
            }
            "CPU implementer" => {
                if let Some(c) = cur.as_mut() {
                    c.implementer = parse_hex(v);
                }
            }
            "CPU part" => {
                if let Some(c) = cur.as_mut() {
                    c.part = parse_hex(v);
                }
            }
            _ => {}
        }
    }
    out.extend(cur);
    out
}

/// Groups CPUs into clusters of identical cores, biggest first (by `cpu_capacity`, then by
/// reported maximum clock, then by CPU count), adding a note for every missing piece.
pub fn group_clusters(
    cpus: &[ArmCpu],
    capacity: impl Fn(u32) -> Option<u32>,
    max_hz: impl Fn(u32) -> Option<f64>,
    notes: &mut Vec<String>,
) -> Vec<CoreCluster> {
    let mut out: Vec<CoreCluster> = Vec::new();
    let mut unknown = Vec::new();
    let mut no_capacity = Vec::new();
    for c in cpus {
        let cap = capacity(c.cpu);
        if cap.is_none() {
            no_capacity.push(c.cpu);
        }
        let core = match (c.implementer, c.part) {
            (Some(i), Some(p)) => match arm_core_name(i, p) {
                Some(n) => n.to_string(),
                None => {
                    unknown.push(format!("implementer {i:#x} part {p:#x}"));
                    format!("unknown Arm core (implementer {i:#x}, part {p:#x})")
                }
            },
            _ => "unknown Arm core (no CPU implementer/part in /proc/cpuinfo)".to_string(),
        };
        let imp = c.implementer.map(|i| format!("{i:#x}"));
        let part = c.part.map(|p| format!("{p:#05x}"));
        match out
            .iter_mut()
            .find(|k| k.implementer == imp && k.part == part && k.capacity == cap)
        {
            Some(k) => k.cpus.push(c.cpu),
            None => out.push(CoreCluster {
                core,
                implementer: imp,
                part,
                cpus: vec![c.cpu],
                capacity: cap,
                frequency_max_reported_hz: max_hz(c.cpu),
                frequency_hz: None,
            }),
        }
    }
    unknown.sort();
    unknown.dedup();
    for u in unknown {
        notes.push(format!(
            "unknown Arm core ({u}) in /proc/cpuinfo: its theoretical peaks assume a generic 2 x 128-bit FMA core; add it to the table in crates/bench/src/host.rs"
        ));
    }
    if out.len() > 1 && !no_capacity.is_empty() {
        notes.push(format!(
            "no /sys/devices/system/cpu/cpuN/cpu_capacity for CPU(s) {no_capacity:?}: big and little clusters are told apart by part number and reported clock only"
        ));
    }
    out.sort_by(|a, b| {
        b.capacity
            .unwrap_or(0)
            .cmp(&a.capacity.unwrap_or(0))
            .then(
                b.frequency_max_reported_hz
                    .unwrap_or(0.0)
                    .total_cmp(&a.frequency_max_reported_hz.unwrap_or(0.0)),
            )
            .then(b.cpus.len().cmp(&a.cpus.len()))
    });
    out
}

/// `4x Cortex-A76`, `1x Cortex-X1 + 3x Cortex-A78 + 4x Cortex-A55`.
pub fn describe_clusters(clusters: &[CoreCluster]) -> String {
    clusters
        .iter()
        .map(|c| format!("{}x {}", c.cpus.len(), c.core))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Clusters of this machine: `/proc/cpuinfo` part numbers plus sysfs capacities on aarch64
/// Linux, `sysctl` performance levels on macOS, none elsewhere.
fn detect_clusters(notes: &mut Vec<String>) -> Vec<CoreCluster> {
    #[cfg(target_os = "macos")]
    {
        macos::clusters(notes)
    }
    #[cfg(not(target_os = "macos"))]
    {
        linux_clusters(notes)
    }
}

#[cfg(not(target_os = "macos"))]
fn linux_clusters(notes: &mut Vec<String>) -> Vec<CoreCluster> {
    if std::env::consts::ARCH != "aarch64" {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") else {
        notes.push("/proc/cpuinfo is unreadable: core types unknown".into());
        return Vec::new();
    };
    let cpus = parse_arm_cpuinfo(&text);
    if cpus.is_empty() {
        notes.push("/proc/cpuinfo lists no processors: core types unknown".into());
        return Vec::new();
    }
    let sys = |cpu: u32, f: &str| read_trim(format!("/sys/devices/system/cpu/cpu{cpu}/{f}"));
    let mut out = group_clusters(
        &cpus,
        |c| sys(c, "cpu_capacity").and_then(|s| s.parse().ok()),
        |c| sys(c, "cpufreq/cpuinfo_max_freq").and_then(|s| s.parse::<f64>().ok().map(|k| k * 1e3)),
        notes,
    );
    if out.iter().all(|c| c.frequency_max_reported_hz.is_none()) {
        notes.push(
            "no /sys/devices/system/cpu/cpuN/cpufreq: the clock is only measured, not cross-checked against the reported maximum".into(),
        );
    }
    out.retain(|c| !c.cpus.is_empty());
    out
}

/// Measures each cluster's clock on a thread pinned to the cluster's first CPU (the calling
/// thread's affinity is untouched). A cluster whose CPU cannot be pinned (outside this
/// process's affinity mask) keeps `frequency_hz = None` and gets a note.
pub fn measure_cluster_frequencies(host: &mut HostInfo, rounds: u32, chain_seconds: f64) {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    for cl in host.clusters.iter_mut() {
        let Some(&cpu) = cl.cpus.iter().find(|&&c| allowed.contains(&(c as usize))) else {
            host.notes.push(format!(
                "cannot pin to any CPU of the {} cluster {:?} (outside this process's affinity): its clock is not measured",
                cl.core, cl.cpus
            ));
            continue;
        };
        let hz = std::thread::scope(|s| {
            s.spawn(|| {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu as usize }) {
                    return None;
                }
                measure_frequency(rounds, chain_seconds)
            })
            .join()
            .ok()
            .flatten()
        });
        cl.frequency_hz = hz;
    }
}

/// Apple Silicon core names for the brand string `sysctl machdep.cpu.brand_string` reports
/// (`Apple M1 Pro`): (P-core, E-core). Core code names: Apple's and AnandTech's M1/M2/M3
/// launch coverage; M4 cores have no public code names.
pub fn apple_core_names(brand: &str) -> (String, String) {
    let gen = ["M1", "M2", "M3", "M4"]
        .into_iter()
        .find(|g| brand.split_whitespace().any(|w| w == *g));
    let (p, e) = match gen {
        Some("M1") => ("Firestorm", "Icestorm"),
        Some("M2") => ("Avalanche", "Blizzard"),
        Some("M3") => ("Everest", "Sawtooth"),
        _ => ("", ""),
    };
    let g = gen.unwrap_or("unknown");
    let name = |kind: &str, code: &str| {
        if code.is_empty() {
            format!("Apple {g} {kind}-core")
        } else {
            format!("Apple {g} {kind}-core ({code})")
        }
    };
    (name("P", p), name("E", e))
}

/// Clusters from macOS `sysctl` performance levels (`hw.perflevel0` = P cores,
/// `hw.perflevel1` = E cores). macOS exposes no per-CPU numbers: CPUs are numbered P first.
pub fn apple_clusters(brand: &str, p_cores: Option<u32>, e_cores: Option<u32>) -> Vec<CoreCluster> {
    let (pn, en) = apple_core_names(brand);
    let mut out = Vec::new();
    let mut next = 0u32;
    for (name, n, cap) in [(pn, p_cores, 1024), (en, e_cores, 0)] {
        let Some(n) = n.filter(|&n| n > 0 && n <= 1024) else {
            continue;
        };
        out.push(CoreCluster {
            core: name,
            implementer: Some("0x61".into()),
            part: None,
            cpus: (next..next + n).collect(),
            capacity: (cap > 0).then_some(cap),
            frequency_max_reported_hz: None,
            frequency_hz: None,
        });
        next += n;
    }
    out
}

#[cfg(target_os = "macos")]
mod macos {
    use super::{apple_clusters, CoreCluster};

    fn sysctl(key: &str) -> Option<String> {
        let out = std::process::Command::new("sysctl")
            .args(["-n", key])
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    }

    /// Rosetta 2 (an x86-64 binary on Apple Silicon).
    pub(super) fn translated() -> bool {
        sysctl("sysctl.proc_translated").is_some_and(|v| v == "1")
    }

    pub(super) fn brand() -> Option<String> {
        sysctl("machdep.cpu.brand_string")
    }

    pub(super) fn clusters(notes: &mut Vec<String>) -> Vec<CoreCluster> {
        let Some(b) = brand() else {
            notes.push("sysctl machdep.cpu.brand_string failed: core types unknown".into());
            return Vec::new();
        };
        let p = sysctl("hw.perflevel0.physicalcpu").and_then(|s| s.parse().ok());
        let e = sysctl("hw.perflevel1.physicalcpu").and_then(|s| s.parse().ok());
        if p.is_none() {
            notes.push("sysctl hw.perflevel0.physicalcpu failed: P/E core counts unknown".into());
        }
        let c = apple_clusters(&b, p, e);
        if !b.contains("Apple") {
            notes.push(format!("unrecognised CPU brand {b:?}: core types unknown"));
        }
        c
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

    /// A Snapdragon-style 1 + 3 + 4 layout: three clusters, biggest first, unknown part noted.
    #[test]
    fn arm_cpuinfo_groups_into_clusters_biggest_first() {
        let mut text = String::new();
        let parts = [0xd05, 0xd05, 0xd05, 0xd05, 0xd41, 0xd41, 0xd41, 0xd44];
        for (i, p) in parts.iter().enumerate() {
            text += &format!(
                "processor\t: {i}\nBogoMIPS\t: 38.40\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: {p:#x}\n\n"
            );
        }
        let cpus = parse_arm_cpuinfo(&text);
        assert_eq!(cpus.len(), 8);
        let cap = |c: u32| {
            Some(match c {
                0..=3 => 250,
                4..=6 => 800,
                _ => 1024,
            })
        };
        let mut notes = Vec::new();
        let cl = group_clusters(&cpus, cap, |_| None, &mut notes);
        assert_eq!(
            describe_clusters(&cl),
            "1x Cortex-X1 + 3x Cortex-A78 + 4x Cortex-A55"
        );
        assert_eq!(cl[0].cpus, vec![7]);
        assert!(notes.is_empty(), "{notes:?}");
        // an unknown part and missing capacities: notes, no panic
        let cpus = parse_arm_cpuinfo(
            "processor : 0\nCPU implementer : 0x41\nCPU part : 0xfff\n\nprocessor : 1\nCPU part : 0xd0b\n",
        );
        let cl = group_clusters(&cpus, |_| None, |_| None, &mut notes);
        assert_eq!(cl.len(), 2);
        assert!(notes.iter().any(|n| n.contains("part 0xfff")), "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("cpu_capacity")),
            "{notes:?}"
        );
        assert!(parse_arm_cpuinfo("garbage\n:::\nprocessor : x\n").is_empty());
    }

    /// What qemu-aarch64 7.2 on an x86-64 host showed (see `emulation_signals`), and a real
    /// Raspberry Pi 5's files, which must not trigger.
    #[test]
    fn qemu_user_is_detected_and_real_hardware_is_not() {
        let x86_cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2\n";
        let s = emulation_signals(
            "aarch64",
            Some(x86_cpuinfo),
            Some("qemu-aarch64"),
            Some("/usr/bin/qemu-aarch64"),
        );
        assert_eq!(s.len(), 3, "{s:?}");
        let rpi5 = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n";
        assert!(emulation_signals(
            "aarch64",
            Some(rpi5),
            Some("rooflinebench"),
            Some("/usr/local/bin/rooflinebench")
        )
        .is_empty());
        assert!(emulation_signals("aarch64", None, None, None).is_empty());
        assert_eq!(emulation_signals("x86_64", Some(rpi5), None, None).len(), 1);
        // this very test process: under the CI's qemu run it must say so
        let here = detect_emulation();
        println!("emulation: {here:?}");
        if std::env::var_os("ROOFLINEBENCH_EXPECT_EMULATED").is_some() {
            assert!(here.is_some(), "qemu-user not detected");
        }
    }

    #[test]
    fn hypervisors_are_named_from_dmi() {
        assert_eq!(
            hypervisor_from_dmi(Some("QEMU"), Some("Standard PC (Q35 + ICH9, 2009)")).as_deref(),
            Some("QEMU/KVM")
        );
        assert_eq!(
            hypervisor_from_dmi(Some("Microsoft Corporation"), Some("Virtual Machine")).as_deref(),
            Some("Hyper-V")
        );
        assert_eq!(hypervisor_from_dmi(Some("Raspberry Pi"), None), None);
        assert_eq!(hypervisor_from_dmi(None, None), None);
    }

    #[test]
    fn paper_devices_cores_are_named() {
        assert_eq!(arm_core_name(0x41, 0xd0b), Some("Cortex-A76")); // Raspberry Pi 5
        assert_eq!(arm_core_name(0x41, 0xd42), Some("Cortex-A78AE")); // Jetson Orin
        assert_eq!(
            arm_core_name(0x61, 0x023),
            Some("Apple M1 P-core (Firestorm)")
        );
        let cl = apple_clusters("Apple M1 Pro", Some(8), Some(2));
        assert_eq!(
            describe_clusters(&cl),
            "8x Apple M1 P-core (Firestorm) + 2x Apple M1 E-core (Icestorm)"
        );
        assert_eq!(cl[1].cpus, vec![8, 9]);
        assert_eq!(apple_core_names("Apple M4 Max").0, "Apple M4 P-core");
        assert!(apple_clusters("Apple M9", None, Some(0)).is_empty());
    }

    #[test]
    fn every_cluster_clock_is_measured_or_noted() {
        let mut h = detect();
        measure_cluster_frequencies(&mut h, 2, 0.0002);
        for c in &h.clusters {
            assert!(
                c.frequency_hz.is_some_and(|f| f.is_finite() && f > 0.0)
                    || h.notes.iter().any(|n| n.contains(&c.core))
                    || !rooflinebench_kernels::ceiling::freq::SUPPORTED,
                "{c:?} {:?}",
                h.notes
            );
        }
    }

    #[test]
    fn measured_frequency_is_finite_and_positive() {
        match measure_frequency(3, 0.0005) {
            Some(hz) => assert!(hz.is_finite() && hz > 1e7, "{hz}"),
            None => println!("skip: no add chain on this architecture"),
        }
    }
}
