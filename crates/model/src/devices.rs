//! Device database: hardware profiles from spec sheets, and the RooflineBench paper's own
//! measurements kept apart as "measured elsewhere".
//!
//! Every theoretical figure is derived from published specifications, with the derivation in
//! the ceiling's `note`: memory bandwidth = bus width x transfer rate; compute = units x
//! FLOP per unit per clock x clock. Where a vendor publishes the aggregate (Apple's GPU
//! TFLOPS, NVIDIA's whitepaper tables) that figure is used and cited. Figures no spec sheet
//! gives (e.g. Apple's clocks for M3/M4, phone GPU rates) are left out rather than guessed: a
//! profile may have fewer ceilings than another. The paper's Table 1 measurements (PyTorch
//! `a + b` counting two streams, a 4096^2 `matmul`, no warm-up; ROOFLINEBENCH.md section 3)
//! are separate `<name>-paper` profiles with source `measured_elsewhere`, never mixed with
//! the spec sheet (PITFALLS.md #17). GPU entries describe the GPU and its memory, the
//! accelerator the paper ran on; CPU entries the CPU cluster.
//!
//! A user can write their own profile file in the same JSON schema (see `rooflinebench
//! devices <name> --json` for a template).

use crate::hardware::{
    BandwidthCeiling, BwPattern, CeilingSource, ComputeCeiling, HardwareProfile, MemLevel,
    Precision, HW_SCHEMA_VERSION,
};

const T: f64 = 1e12;
const G: f64 = 1e9;

/// One built-in device: spec-sheet ceilings (or published measurements) with provenance.
struct Device {
    name: &'static str,
    aliases: &'static [&'static str],
    description: &'static str,
    source: &'static str,
    measured_elsewhere: bool,
    /// (precision, FLOP/s, derivation)
    compute: &'static [(Precision, f64, &'static str)],
    /// DRAM (or GPU memory) bandwidth in bytes/s and its derivation.
    dram: Option<(f64, &'static str)>,
}

use Precision::*;

const PAPER_SRC: &str = "RooflineBench paper (arXiv 2602.11506), Table 1, measured values";
const PAPER_BW: &str = "PyTorch `c = a + b` with the write stream ignored (2 streams counted), no warm-up: a weak method, kept for comparison only";
const PAPER_MM: &str = "PyTorch 4096^2 `torch.matmul`, no warm-up (on GPUs FP16 uses tensor cores)";

static DEVICES: &[Device] = &[
    // ------------------------------------------------------------- paper Table 1: NVIDIA
    Device {
        name: "rtx3090",
        aliases: &["3090", "nvidia-rtx-3090", "geforce-rtx-3090"],
        description: "NVIDIA GeForce RTX 3090 (GA102), discrete GPU, 24 GB GDDR6X",
        source: "NVIDIA Ampere GA102 GPU Architecture whitepaper, appendix table for the RTX 3090",
        measured_elsewhere: false,
        compute: &[
            (F32, 35.58 * T, "10496 CUDA cores x 2 FLOP (FMA) x 1.695 GHz boost = 35.58 TFLOPS (whitepaper: 35.6)"),
            (F16, 71.16 * T, "328 tensor cores x 128 FLOP/clock (FP16 in, FP32 accumulate, dense) x 1.695 GHz = 71.2 TFLOPS (whitepaper: 71); the paper's 35.58 is the non-tensor CUDA-core FP16 rate"),
            (Bf16, 71.16 * T, "BF16 tensor rate equals FP16 with FP32 accumulate on GA102 (whitepaper: 71)"),
            (Int8, 284.6 * T, "INT8 tensor: 4x the FP32-accumulate FP16 rate, dense (whitepaper: 284 TOPS)"),
        ],
        dram: Some((936.0 * G, "384-bit GDDR6X x 19.5 Gbit/s per pin / 8 = 936 GB/s")),
    },
    Device {
        name: "rtx3090-paper",
        aliases: &["3090-paper"],
        description: "NVIDIA GeForce RTX 3090, as measured in the RooflineBench paper",
        source: PAPER_SRC,
        measured_elsewhere: true,
        compute: &[(F32, 24.28 * T, PAPER_MM), (F16, 66.20 * T, PAPER_MM)],
        dram: Some((560.02 * G, PAPER_BW)),
    },
    Device {
        name: "rtx3070ti-laptop",
        aliases: &["3070ti-laptop", "rtx-3070-ti-laptop"],
        description: "NVIDIA GeForce RTX 3070 Ti Laptop GPU (GA104), 8 GB GDDR6",
        source: "NVIDIA GeForce RTX 3070 Ti Laptop specifications (5888 CUDA cores, 1035-1485 MHz boost depending on TGP, 256-bit 14 Gbit/s GDDR6); Ampere GA10x whitepaper tensor rates",
        measured_elsewhere: false,
        compute: &[
            (F32, 16.60 * T, "5888 CUDA cores x 2 FLOP x 1.41 GHz = 16.6 TFLOPS; the boost clock depends on the laptop's power limit (1.035-1.485 GHz), 1.41 GHz reproduces the paper's figure"),
            (F16, 33.21 * T, "184 tensor cores x 128 FLOP/clock (FP16 in, FP32 accumulate, dense) x 1.41 GHz; the paper's 16.6 is the CUDA-core rate"),
            (Bf16, 33.21 * T, "as FP16 with FP32 accumulate"),
            (Int8, 132.8 * T, "INT8 tensor: 4x the FP32-accumulate FP16 rate, dense"),
        ],
        dram: Some((448.0 * G, "256-bit GDDR6 x 14 Gbit/s / 8 = 448 GB/s")),
    },
    Device {
        name: "rtx3070ti-laptop-paper",
        aliases: &["3070ti-laptop-paper"],
        description: "NVIDIA GeForce RTX 3070 Ti Laptop GPU, as measured in the RooflineBench paper",
        source: PAPER_SRC,
        measured_elsewhere: true,
        compute: &[(F32, 9.51 * T, PAPER_MM), (F16, 31.76 * T, PAPER_MM)],
        dram: Some((217.0 * G, PAPER_BW)),
    },
    // ------------------------------------------------------------- Apple silicon
    Device {
        name: "apple-m1",
        aliases: &["m1"],
        description: "Apple M1 (8-core GPU), unified LPDDR4X memory",
        source: "Apple M1 announcement (8-core GPU: 2.6 TFLOPS); LPDDR4X-4266 on a 128-bit bus",
        measured_elsewhere: false,
        compute: &[(F32, 2.6 * T, "Apple: 2.6 TFLOPS FP32 (8-core GPU)")],
        dram: Some((68.25 * G, "128-bit LPDDR4X x 4266 MT/s / 8 = 68.3 GB/s")),
    },
    Device {
        name: "apple-m1-pro",
        aliases: &["m1pro", "m1-pro"],
        description: "Apple M1 Pro (16-core GPU), unified LPDDR5 memory",
        source: "Apple M1 Pro/Max announcement (16-core GPU: 5.2 TFLOPS; 200 GB/s); LPDDR5-6400 on a 256-bit bus",
        measured_elsewhere: false,
        compute: &[(F32, 5.2 * T, "Apple: 5.2 TFLOPS FP32 (16-core GPU); the paper gives no FP16 figure either")],
        dram: Some((204.8 * G, "256-bit LPDDR5 x 6400 MT/s / 8 = 204.8 GB/s (Apple: 200 GB/s)")),
    },
    Device {
        name: "apple-m1-pro-paper",
        aliases: &["m1pro-paper", "m1-pro-paper"],
        description: "Apple M1 Pro, as measured in the RooflineBench paper",
        source: PAPER_SRC,
        measured_elsewhere: true,
        compute: &[(F32, 4.31 * T, PAPER_MM), (F16, 4.61 * T, PAPER_MM)],
        dram: Some((120.03 * G, PAPER_BW)),
    },
    Device {
        name: "apple-m1-max",
        aliases: &["m1max", "m1-max"],
        description: "Apple M1 Max (32-core GPU)",
        source: "Apple M1 Pro/Max announcement (32-core GPU: 10.4 TFLOPS; 400 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 10.4 * T, "Apple: 10.4 TFLOPS FP32 (32-core GPU)")],
        dram: Some((409.6 * G, "512-bit LPDDR5 x 6400 MT/s / 8 = 409.6 GB/s (Apple: 400 GB/s)")),
    },
    Device {
        name: "apple-m1-ultra",
        aliases: &["m1ultra", "m1-ultra"],
        description: "Apple M1 Ultra (64-core GPU)",
        source: "Apple M1 Ultra announcement (64-core GPU: 21 TFLOPS; 800 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 21.0 * T, "Apple: 21 TFLOPS FP32 (64-core GPU)")],
        dram: Some((819.2 * G, "1024-bit LPDDR5 x 6400 MT/s / 8 = 819.2 GB/s (Apple: 800 GB/s)")),
    },
    Device {
        name: "apple-m2",
        aliases: &["m2"],
        description: "Apple M2 (10-core GPU)",
        source: "Apple M2 announcement (10-core GPU: 3.6 TFLOPS; 100 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 3.6 * T, "Apple: 3.6 TFLOPS FP32 (10-core GPU)")],
        dram: Some((102.4 * G, "128-bit LPDDR5 x 6400 MT/s / 8 = 102.4 GB/s (Apple: 100 GB/s)")),
    },
    Device {
        name: "apple-m2-pro",
        aliases: &["m2pro", "m2-pro"],
        description: "Apple M2 Pro (19-core GPU)",
        source: "Apple M2 Pro/Max announcement (19-core GPU: 6.8 TFLOPS; 200 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 6.8 * T, "Apple: 6.8 TFLOPS FP32 (19-core GPU)")],
        dram: Some((204.8 * G, "256-bit LPDDR5 x 6400 MT/s / 8 = 204.8 GB/s (Apple: 200 GB/s)")),
    },
    Device {
        name: "apple-m2-max",
        aliases: &["m2max", "m2-max"],
        description: "Apple M2 Max (38-core GPU)",
        source: "Apple M2 Pro/Max announcement (38-core GPU: 13.6 TFLOPS; 400 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 13.6 * T, "Apple: 13.6 TFLOPS FP32 (38-core GPU)")],
        dram: Some((409.6 * G, "512-bit LPDDR5 x 6400 MT/s / 8 = 409.6 GB/s (Apple: 400 GB/s)")),
    },
    Device {
        name: "apple-m2-ultra",
        aliases: &["m2ultra", "m2-ultra"],
        description: "Apple M2 Ultra (76-core GPU)",
        source: "Apple M2 Ultra announcement (76-core GPU: 27.2 TFLOPS; 800 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 27.2 * T, "Apple: 27.2 TFLOPS FP32 (76-core GPU)")],
        dram: Some((819.2 * G, "1024-bit LPDDR5 x 6400 MT/s / 8 = 819.2 GB/s (Apple: 800 GB/s)")),
    },
    Device {
        name: "apple-m3",
        aliases: &["m3"],
        description: "Apple M3 (memory only: Apple publishes no GPU FLOPS or clocks for M3)",
        source: "Apple M3 specifications (100 GB/s unified memory bandwidth)",
        measured_elsewhere: false,
        compute: &[],
        dram: Some((102.4 * G, "128-bit LPDDR5 x 6400 MT/s / 8 = 102.4 GB/s (Apple: 100 GB/s)")),
    },
    Device {
        name: "apple-m3-pro",
        aliases: &["m3pro", "m3-pro"],
        description: "Apple M3 Pro (memory only)",
        source: "Apple M3 Pro specifications (150 GB/s)",
        measured_elsewhere: false,
        compute: &[],
        dram: Some((153.6 * G, "192-bit LPDDR5 x 6400 MT/s / 8 = 153.6 GB/s (Apple: 150 GB/s)")),
    },
    Device {
        name: "apple-m3-max",
        aliases: &["m3max", "m3-max"],
        description: "Apple M3 Max, 16-core CPU / 40-core GPU variant (memory only)",
        source: "Apple M3 Max specifications (400 GB/s; the 14-core CPU variant has 300 GB/s)",
        measured_elsewhere: false,
        compute: &[],
        dram: Some((409.6 * G, "512-bit LPDDR5 x 6400 MT/s / 8 = 409.6 GB/s (Apple: 400 GB/s)")),
    },
    Device {
        name: "apple-m4",
        aliases: &["m4"],
        description: "Apple M4 (memory only: Apple publishes no GPU FLOPS or clocks for M4)",
        source: "Apple M4 specifications (120 GB/s, LPDDR5X-7500)",
        measured_elsewhere: false,
        compute: &[],
        dram: Some((120.0 * G, "128-bit LPDDR5X x 7500 MT/s / 8 = 120 GB/s")),
    },
    Device {
        name: "apple-m4-pro",
        aliases: &["m4pro", "m4-pro"],
        description: "Apple M4 Pro (memory only)",
        source: "Apple M4 Pro specifications (273 GB/s, LPDDR5X-8533)",
        measured_elsewhere: false,
        compute: &[],
        dram: Some((273.1 * G, "256-bit LPDDR5X x 8533 MT/s / 8 = 273 GB/s")),
    },
    Device {
        name: "apple-m4-max",
        aliases: &["m4max", "m4-max"],
        description: "Apple M4 Max, 16-core CPU / 40-core GPU variant (memory only)",
        source: "Apple M4 Max specifications (546 GB/s; the 14-core CPU variant has 410 GB/s)",
        measured_elsewhere: false,
        compute: &[],
        dram: Some((546.1 * G, "512-bit LPDDR5X x 8533 MT/s / 8 = 546 GB/s")),
    },
    // ------------------------------------------------------------- NVIDIA Jetson Orin
    Device {
        name: "jetson-orin-nano-super",
        aliases: &["orin-nano-super", "jetson-orin-nano-super-8gb"],
        description: "NVIDIA Jetson Orin Nano Super 8GB developer kit (1024-core Ampere GPU at 1020 MHz)",
        source: "NVIDIA Jetson Orin Nano Super developer kit specifications (GPU 1020 MHz, 102 GB/s); Jetson Orin Nano module datasheet",
        measured_elsewhere: false,
        compute: &[
            (F32, 2.089 * T, "1024 CUDA cores x 2 FLOP x 1.02 GHz = 2.089 TFLOPS"),
            (F16, 4.178 * T, "2x the FP32 rate on the CUDA cores, as the paper assumes (tensor-core FP16 is higher; NVIDIA gives only sparse INT8 TOPS)"),
        ],
        dram: Some((102.4 * G, "128-bit LPDDR5 x 6400 MT/s / 8 = 102.4 GB/s (NVIDIA: 102 GB/s)")),
    },
    Device {
        name: "jetson-orin-nano-super-paper",
        aliases: &["orin-nano-super-paper"],
        description: "NVIDIA Jetson Orin Nano Super 8GB, as measured in the RooflineBench paper",
        source: PAPER_SRC,
        measured_elsewhere: true,
        compute: &[(F32, 1.34 * T, PAPER_MM), (F16, 9.56 * T, PAPER_MM)],
        dram: Some((59.40 * G, PAPER_BW)),
    },
    Device {
        name: "jetson-orin-nano-8gb",
        aliases: &["orin-nano", "orin-nano-8gb"],
        description: "NVIDIA Jetson Orin Nano 8GB, original power modes (GPU 625 MHz)",
        source: "NVIDIA Jetson Orin Nano series datasheet (1024 CUDA cores, 625 MHz, 128-bit LPDDR5 68 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 1.28 * T, "1024 CUDA cores x 2 FLOP x 0.625 GHz = 1.28 TFLOPS")],
        dram: Some((68.3 * G, "128-bit LPDDR5 x 4266 MT/s / 8 = 68.3 GB/s")),
    },
    Device {
        name: "jetson-orin-nano-4gb",
        aliases: &["orin-nano-4gb"],
        description: "NVIDIA Jetson Orin Nano 4GB (512-core GPU at 625 MHz)",
        source: "NVIDIA Jetson Orin Nano series datasheet (512 CUDA cores, 625 MHz, 64-bit LPDDR5 34 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 0.64 * T, "512 CUDA cores x 2 FLOP x 0.625 GHz = 0.64 TFLOPS")],
        dram: Some((34.1 * G, "64-bit LPDDR5 x 4266 MT/s / 8 = 34.1 GB/s")),
    },
    Device {
        name: "jetson-orin-nx-16gb",
        aliases: &["orin-nx", "orin-nx-16gb"],
        description: "NVIDIA Jetson Orin NX 16GB, original power modes (GPU 918 MHz)",
        source: "NVIDIA Jetson Orin NX series datasheet (1024 CUDA cores, 918 MHz, 128-bit LPDDR5 102.4 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 1.88 * T, "1024 CUDA cores x 2 FLOP x 0.918 GHz = 1.88 TFLOPS")],
        dram: Some((102.4 * G, "128-bit LPDDR5 x 6400 MT/s / 8 = 102.4 GB/s")),
    },
    Device {
        name: "jetson-orin-nx-8gb",
        aliases: &["orin-nx-8gb"],
        description: "NVIDIA Jetson Orin NX 8GB, original power modes (GPU 765 MHz)",
        source: "NVIDIA Jetson Orin NX series datasheet (1024 CUDA cores, 765 MHz, 128-bit LPDDR5 102.4 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 1.567 * T, "1024 CUDA cores x 2 FLOP x 0.765 GHz = 1.57 TFLOPS")],
        dram: Some((102.4 * G, "128-bit LPDDR5 x 6400 MT/s / 8 = 102.4 GB/s")),
    },
    Device {
        name: "jetson-agx-orin-32gb",
        aliases: &["agx-orin-32gb"],
        description: "NVIDIA Jetson AGX Orin 32GB (1792-core GPU at 930 MHz)",
        source: "NVIDIA Jetson AGX Orin series datasheet (1792 CUDA cores, 930 MHz, 256-bit LPDDR5 204.8 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 3.333 * T, "1792 CUDA cores x 2 FLOP x 0.93 GHz = 3.33 TFLOPS")],
        dram: Some((204.8 * G, "256-bit LPDDR5 x 6400 MT/s / 8 = 204.8 GB/s")),
    },
    Device {
        name: "jetson-agx-orin-64gb",
        aliases: &["agx-orin", "agx-orin-64gb"],
        description: "NVIDIA Jetson AGX Orin 64GB (2048-core GPU at 1.3 GHz)",
        source: "NVIDIA Jetson AGX Orin series datasheet (2048 CUDA cores, 1.3 GHz, 256-bit LPDDR5 204.8 GB/s)",
        measured_elsewhere: false,
        compute: &[(F32, 5.325 * T, "2048 CUDA cores x 2 FLOP x 1.3 GHz = 5.32 TFLOPS")],
        dram: Some((204.8 * G, "256-bit LPDDR5 x 6400 MT/s / 8 = 204.8 GB/s")),
    },
    // ------------------------------------------------------------- Raspberry Pi (CPU)
    Device {
        name: "rpi5",
        aliases: &["raspberry-pi-5", "pi5"],
        description: "Raspberry Pi 5 (BCM2712: 4x Cortex-A76 at 2.4 GHz), CPU",
        source: "Raspberry Pi 5 product brief (4x Cortex-A76 2.4 GHz, LPDDR4X-4267); Arm Cortex-A76 Software Optimization Guide (two 128-bit ASIMD FMA pipes, FP16 arithmetic, SDOT)",
        measured_elsewhere: false,
        compute: &[
            (F64, 76.8 * G, "4 cores x 2.4 GHz x 2 pipes x 2 lanes x 2 FLOP = 76.8 GFLOPS"),
            (F32, 153.6 * G, "4 cores x 2.4 GHz x 2 pipes x 4 lanes x 2 FLOP = 153.6 GFLOPS (paper: 153.60)"),
            (F16, 307.2 * G, "4 cores x 2.4 GHz x 2 pipes x 8 lanes x 2 FLOP (Armv8.2 FP16 FMLA) = 307.2 GFLOPS"),
            (Int8, 614.4 * G, "4 cores x 2.4 GHz x 2 pipes x 16 int8 MACs (SDOT) x 2 ops = 614.4 GOPS"),
        ],
        dram: Some((17.07 * G, "32-bit LPDDR4X x 4267 MT/s / 8 = 17.07 GB/s (paper: 17.10)")),
    },
    Device {
        name: "rpi5-paper",
        aliases: &["raspberry-pi-5-paper", "pi5-paper"],
        description: "Raspberry Pi 5, as measured in the RooflineBench paper (one thread)",
        source: PAPER_SRC,
        measured_elsewhere: true,
        compute: &[(F32, 78.56 * G, PAPER_MM), (F16, 1.48 * G, PAPER_MM)],
        dram: Some((3.98 * G, PAPER_BW)),
    },
    Device {
        name: "rpi4",
        aliases: &["raspberry-pi-4", "pi4"],
        description: "Raspberry Pi 4 Model B (BCM2711: 4x Cortex-A72 at 1.8 GHz), CPU",
        source: "Raspberry Pi 4 product brief (4x Cortex-A72, LPDDR4-3200; 1.8 GHz on board revision 1.4 and later firmware, 1.5 GHz before); Arm Cortex-A72 Software Optimization Guide (Q-form FMLA: one per cycle over both 64-bit FP pipes)",
        measured_elsewhere: false,
        compute: &[
            (F64, 28.8 * G, "4 cores x 1.8 GHz x 2 lanes x 2 FLOP = 28.8 GFLOPS (x 1.5/1.8 on older boards)"),
            (F32, 57.6 * G, "4 cores x 1.8 GHz x 4 lanes x 2 FLOP = 57.6 GFLOPS (x 1.5/1.8 on older boards)"),
        ],
        dram: Some((12.8 * G, "32-bit LPDDR4 x 3200 MT/s / 8 = 12.8 GB/s")),
    },
    // ------------------------------------------------------------- phone SoCs (CPU)
    Device {
        name: "snapdragon-8-gen-3",
        aliases: &["sd8gen3", "snapdragon-8gen3"],
        description: "Qualcomm Snapdragon 8 Gen 3, big CPU cores (1x Cortex-X4 3.3 GHz, 3x A720 3.15 GHz, 2x A720 2.96 GHz; the 2 A520 are left out)",
        source: "Qualcomm Snapdragon 8 Gen 3 product brief (CPU clocks, LPDDR5X 4800 MHz); Arm Cortex-X4 and Cortex-A720 Software Optimization Guides (4 and 2 128-bit FP/ASIMD pipes)",
        measured_elsewhere: false,
        compute: &[(F32, 351.5 * G, "X4: 3.3 GHz x 4 pipes x 8 FLOP + A720: (3 x 3.15 + 2 x 2.96) GHz x 2 pipes x 8 FLOP = 105.6 + 245.9 = 351.5 GFLOPS")],
        dram: Some((76.8 * G, "64-bit (4 x 16) LPDDR5X x 9600 MT/s / 8 = 76.8 GB/s")),
    },
    Device {
        name: "dimensity-9300",
        aliases: &["mediatek-dimensity-9300"],
        description: "MediaTek Dimensity 9300, CPU (1x Cortex-X4 3.25 GHz, 3x X4 2.85 GHz, 4x A720 2.0 GHz)",
        source: "MediaTek Dimensity 9300 specifications (CPU clocks, LPDDR5T 9600 Mbps); Arm Cortex-X4 and Cortex-A720 Software Optimization Guides",
        measured_elsewhere: false,
        compute: &[(F32, 505.6 * G, "X4: (3.25 + 3 x 2.85) GHz x 4 pipes x 8 FLOP + A720: 4 x 2.0 GHz x 2 pipes x 8 FLOP = 377.6 + 128 = 505.6 GFLOPS")],
        dram: Some((76.8 * G, "64-bit LPDDR5T x 9600 MT/s / 8 = 76.8 GB/s")),
    },
];

fn build(d: &Device) -> HardwareProfile {
    let source = if d.measured_elsewhere {
        CeilingSource::MeasuredElsewhere
    } else {
        CeilingSource::Theoretical
    };
    HardwareProfile {
        schema_version: HW_SCHEMA_VERSION,
        name: d.name.to_string(),
        description: Some(d.description.to_string()),
        source: Some(d.source.to_string()),
        host: None,
        compute: d
            .compute
            .iter()
            .map(|&(precision, v, note)| ComputeCeiling {
                precision,
                source,
                // whole FLOP/s: exact in JSON (a product like 4.31 * 1e12 is not)
                flops_per_second: v.round(),
                threads: None,
                kernel: None,
                isa: None,
                stats: None,
                unstable: false,
                note: Some(note.to_string()),
            })
            .collect(),
        bandwidth: d
            .dram
            .iter()
            .map(|&(v, note)| BandwidthCeiling {
                level: MemLevel::Dram,
                source,
                pattern: BwPattern::Unspecified,
                bytes_per_second: v.round(),
                with_write_allocate_bytes_per_second: None,
                threads: None,
                working_set_bytes: None,
                kernel: None,
                isa: None,
                stats: None,
                unstable: false,
                note: Some(note.to_string()),
            })
            .collect(),
        warnings: Vec::new(),
    }
}

/// The built-in profile named `name` or one of its aliases (case-insensitive, `_` = `-`).
pub fn lookup(name: &str) -> Option<HardwareProfile> {
    let key = name.trim().to_ascii_lowercase().replace('_', "-");
    DEVICES
        .iter()
        .find(|d| d.name == key || d.aliases.contains(&key.as_str()))
        .map(build)
}

/// Every built-in profile, in database order (paper devices first).
pub fn all() -> Vec<HardwareProfile> {
    DEVICES.iter().map(build).collect()
}

/// Every built-in device's name and aliases.
pub fn names() -> Vec<(&'static str, &'static [&'static str])> {
    DEVICES.iter().map(|d| (d.name, d.aliases)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{BytesPerSec, FlopsPerSec};

    #[test]
    fn every_profile_is_valid_sourced_and_round_trips() {
        for p in all() {
            p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(
                p.source.as_deref().is_some_and(|s| !s.is_empty()),
                "{}",
                p.name
            );
            for c in &p.compute {
                assert!(
                    c.note.as_deref().is_some_and(|n| !n.is_empty()),
                    "{} {}",
                    p.name,
                    c.precision
                );
            }
            for b in &p.bandwidth {
                assert!(
                    b.note.as_deref().is_some_and(|n| !n.is_empty()),
                    "{}",
                    p.name
                );
            }
            assert!(
                !p.bandwidth.is_empty(),
                "{} has no memory bandwidth",
                p.name
            );
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(HardwareProfile::from_json(&text).unwrap(), p);
        }
    }

    #[test]
    fn names_and_aliases_are_unique_and_lookup_is_forgiving() {
        let mut seen = std::collections::BTreeSet::new();
        for (n, aliases) in names() {
            assert!(seen.insert(n), "duplicate {n}");
            for a in aliases {
                assert!(seen.insert(a), "duplicate alias {a}");
            }
        }
        assert_eq!(lookup("RPI5").unwrap().name, "rpi5");
        assert_eq!(lookup("m1pro").unwrap().name, "apple-m1-pro");
        assert_eq!(
            lookup("orin_nano_super").unwrap().name,
            "jetson-orin-nano-super"
        );
        assert!(lookup("no-such-device").is_none());
    }

    #[test]
    fn pitfall_17_paper_measurements_stay_apart_from_spec_sheets() {
        let p = lookup("rpi5-paper").unwrap();
        assert_eq!(
            p.peak(Precision::F32, CeilingSource::MeasuredElsewhere, None),
            Some(FlopsPerSec(78.56e9_f64.round()))
        );
        assert_eq!(
            p.bandwidth(MemLevel::Dram, CeilingSource::MeasuredElsewhere, None),
            Some(BytesPerSec(3.98e9_f64.round()))
        );
        assert_eq!(
            p.peak(Precision::F32, CeilingSource::Theoretical, None),
            None
        );
        let t = lookup("rpi5").unwrap();
        // 4 cores x 2.4 GHz x 16 FLOP/cycle: the paper's theoretical 153.60 GFLOPS
        assert_eq!(
            t.peak(Precision::F32, CeilingSource::Theoretical, None),
            Some(FlopsPerSec(153.6e9_f64.round()))
        );
        for (theo, paper) in [
            ("rtx3090", "rtx3090-paper"),
            ("rtx3070ti-laptop", "rtx3070ti-laptop-paper"),
            ("apple-m1-pro", "apple-m1-pro-paper"),
            ("jetson-orin-nano-super", "jetson-orin-nano-super-paper"),
            ("rpi5", "rpi5-paper"),
        ] {
            let (t, m) = (lookup(theo).unwrap(), lookup(paper).unwrap());
            let tb = t
                .bandwidth(MemLevel::Dram, CeilingSource::Theoretical, None)
                .unwrap();
            let mb = m
                .bandwidth(MemLevel::Dram, CeilingSource::MeasuredElsewhere, None)
                .unwrap();
            assert!(
                mb.0 < tb.0,
                "{paper}: measured bandwidth above the spec sheet"
            );
        }
    }

    #[test]
    fn derivations_match_their_numbers() {
        // bus width (bits) x MT/s / 8, the formula every bandwidth note states
        let bw = |bits: f64, mts: f64| bits * mts * 1e6 / 8.0;
        let near = |a: f64, b: f64| (a - b).abs() / b < 0.005;
        let dram = |n: &str| lookup(n).unwrap().bandwidth[0].bytes_per_second;
        assert!(near(dram("rtx3090"), bw(384.0, 19_500.0)));
        assert!(near(dram("rpi5"), bw(32.0, 4267.0)));
        assert!(near(dram("apple-m1-pro"), bw(256.0, 6400.0)));
        assert!(near(dram("apple-m4-pro"), bw(256.0, 8533.0)));
        assert!(near(dram("jetson-orin-nano-super"), bw(128.0, 6400.0)));
        let f32 = |n: &str| {
            lookup(n)
                .unwrap()
                .peak(Precision::F32, CeilingSource::Theoretical, None)
                .unwrap()
                .0
        };
        assert!(near(f32("rtx3090"), 10496.0 * 2.0 * 1.695e9));
        assert!(near(f32("jetson-orin-nano-super"), 1024.0 * 2.0 * 1.02e9));
        assert!(near(f32("jetson-agx-orin-64gb"), 2048.0 * 2.0 * 1.3e9));
        assert!(near(
            f32("snapdragon-8-gen-3"),
            3.3e9 * 32.0 + (3.0 * 3.15e9 + 2.0 * 2.96e9) * 16.0
        ));
    }
}
