//! `rooflinebench devices` (placeholder until its issue lands).

use anyhow::Result;

#[derive(clap::Args, Debug, Default)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("`devices` is not built yet")
}
