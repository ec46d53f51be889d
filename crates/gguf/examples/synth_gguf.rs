//! Writes a synthetic GGUF (random weights in real block layouts) from an HF config.json.
//!
//! `cargo run --release -p rooflinebench-gguf --example synth_gguf -- <config.json> <format> <out.gguf> [seed]`
//!
//! `format`: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k or q4_k_m. Used by
//! benchmark scripts (side-by-side runs with llama.cpp) and to seed the GGUF fuzz corpus.

use rooflinebench_gguf::arch::ArchConfig;
use rooflinebench_gguf::writer::{write_synthetic, WeightFormat};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: synth_gguf <config.json> <format> <out.gguf> [seed]");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let text =
        std::fs::read_to_string(&args[0]).map_err(|e| format!("cannot read {}: {e}", args[0]))?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args[0]))?;
    let cfg = ArchConfig::from_hf(&cfg).map_err(|e| format!("{}: {e}", args[0]))?;
    let format = WeightFormat::parse(&args[1])
        .ok_or_else(|| format!("unknown weight format {:?}", args[1]))?;
    let seed = match args.get(3) {
        Some(s) => s
            .parse()
            .map_err(|_| format!("seed {s:?} is not an integer"))?,
        None => 0,
    };
    let tmp = format!("{}.tmp{}", args[2], std::process::id());
    let file = std::fs::File::create(&tmp).map_err(|e| format!("cannot create {tmp}: {e}"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let n =
        write_synthetic(&cfg, format, seed, &mut out).map_err(|e| format!("{}: {e}", args[2]))?;
    out.flush()
        .map_err(|e| format!("cannot write {tmp}: {e}"))?;
    std::fs::rename(&tmp, &args[2]).map_err(|e| format!("cannot write {}: {e}", args[2]))?;
    println!("{} ({:.1} MB, {})", args[2], n as f64 / 1e6, format.name());
    Ok(())
}
