//! `rooflinebench analyze` (placeholder until its issue lands).

use anyhow::Result;

#[derive(clap::Args, Debug, Default)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("`analyze` is not built yet")
}
