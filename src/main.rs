//! `rooflinebench`: how close on-device LLM inference comes to the device's physical limits.

mod cmd;
mod hw;
mod import;
mod output;
mod report;
mod result;
mod sweep;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "rooflinebench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: probe this machine, analyse and bench the default model, write a report.
    Run(cmd::run::Args),
    /// List the built-in model zoo.
    Models(cmd::models::Args),
    /// Count a model's parameters.
    Params(cmd::params::Args),
    /// Per-operator FLOPs and bytes of a phase or a whole scenario.
    Analyze(cmd::analyze::Args),
    /// Run a model with the built-in engine and time every operator against its roofline.
    Bench(cmd::bench::Args),
    /// Measure this device's compute and bandwidth ceilings.
    Probe(cmd::probe::Args),
    /// List the built-in device profiles (spec sheets and published measurements).
    Devices(cmd::devices::Args),
    /// Write the HTML and Markdown report (and plots) from result files.
    Report(cmd::report::Args),
    /// Compare models on one device, or one workload across devices.
    Compare(cmd::compare::Args),
    /// Show what a GGUF file holds: architecture, hyperparameters, tensors per real type.
    Inspect(cmd::inspect::Args),
    /// Import measurements from other tools (llama.cpp's llama-bench) onto a device's roofline.
    #[command(subcommand_required = true)]
    Import(cmd::import::Args),
    /// Run the paper's experiment families (scenarios, depth, precision, attention, devices), resumably.
    Sweep(cmd::sweep::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => cmd::run::run(cmd::run::Args::default()),
        Some(Command::Run(a)) => cmd::run::run(a),
        Some(Command::Models(a)) => cmd::models::run(a),
        Some(Command::Params(a)) => cmd::params::run(a),
        Some(Command::Analyze(a)) => cmd::analyze::run(a),
        Some(Command::Bench(a)) => cmd::bench::run(a),
        Some(Command::Probe(a)) => cmd::probe::run(a),
        Some(Command::Devices(a)) => cmd::devices::run(a),
        Some(Command::Report(a)) => cmd::report::run(a),
        Some(Command::Compare(a)) => cmd::compare::run(a),
        Some(Command::Inspect(a)) => cmd::inspect::run(a),
        Some(Command::Import(a)) => cmd::import::run(a),
        Some(Command::Sweep(a)) => cmd::sweep::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
