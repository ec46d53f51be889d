//! `rooflinebench probe`: measure this device's compute and bandwidth ceilings.
//!
//! Progress goes to stderr, the human table to stdout (or the JSON profile with `--json`),
//! and `-o FILE` writes the versioned JSON profile atomically. The measuring itself is
//! `rooflinebench_bench::probe::run_probe`.

use crate::output::write_json;
use anyhow::{Context, Result};
use rooflinebench_bench::probe::{run_probe, Mode, ProbeOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// At most ~5 s: each precision's best kernel, read bandwidth per level and DRAM.
    #[arg(long, conflicts_with = "thorough")]
    pub quick: bool,
    /// Several times longer than the default (~30 s): more trials, finer sweep, every kernel at
    /// every thread count.
    #[arg(long)]
    pub thorough: bool,
    /// Thread counts to measure, comma-separated (default: 1 and all usable CPUs). Threads are
    /// pinned one per CPU.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub threads: Vec<u32>,
    /// Write the JSON hardware profile to this file (`-` = stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the JSON profile on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// DRAM working set of all threads together, e.g. 1GiB or 256MiB (default 1 GiB; shrunk
    /// with a warning to half the available memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub dram_size: Option<u64>,
    /// Largest working set of the cache sweep, e.g. 512MiB (default: 4x the reported
    /// last-level cache, at most a quarter of available memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub sweep_max: Option<u64>,
    /// Measure even under an emulator (qemu-user, Rosetta 2), which the probe otherwise
    /// refuses: every ceiling is then marked unstable and the profile carries an `emulated`
    /// warning.
    #[arg(long)]
    pub allow_emulated: bool,
}

/// Parses `4096`, `64KiB`, `64K`, `256MiB`, `1GiB`, `1G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use e.g. 256MiB or 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v < 4096 {
        return Err(format!("{s:?} is smaller than one 4 KiB page"));
    }
    Ok(v)
}

pub fn run(args: Args) -> Result<()> {
    let opts = ProbeOptions {
        mode: if args.quick {
            Mode::Quick
        } else if args.thorough {
            Mode::Thorough
        } else {
            Mode::Default
        },
        threads: args.threads.clone(),
        dram_bytes: args.dram_size,
        sweep_max_bytes: args.sweep_max,
        allow_emulated: args.allow_emulated,
        ..ProbeOptions::default()
    };
    // fail before a 30-second measurement, not after it
    if let Some(dir) = args
        .output
        .as_deref()
        .filter(|p| p.as_os_str() != "-")
        .and_then(|p| p.parent())
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    }
    let profile = run_probe(&opts, &mut |line| eprintln!("probe: {line}"))?;
    if let Some(path) = &args.output {
        write_json(path, &profile)
            .with_context(|| format!("cannot write the profile to {}", path.display()))?;
        if path.as_os_str() != "-" {
            eprintln!("probe: wrote {}", path.display());
        }
    }
    let to_stdout = args.output.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if args.json {
        if !to_stdout {
            write_json(std::path::Path::new("-"), &profile)?;
        }
    } else if !to_stdout {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(rooflinebench_bench::table::render(&profile).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("12").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
    }
}
