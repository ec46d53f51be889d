//! One module per subcommand; each has `Args` (clap) and `run(Args) -> Result<()>`.

pub mod analyze;
pub mod compare;
pub mod devices;
pub mod models;
pub mod params;
pub mod probe;
pub mod report;
pub mod run;
