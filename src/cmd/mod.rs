//! One module per subcommand; each has `Args` (clap) and `run(Args) -> Result<()>`.

pub mod analyze;
pub mod bench;
pub mod compare;
pub mod devices;
pub mod import;
pub mod inspect;
pub mod models;
pub mod params;
pub mod probe;
pub mod report;
pub mod run;
pub mod sweep;
