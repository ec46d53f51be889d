//! `rooflinebench report <results.json...> [-o DIR]`: the HTML and Markdown report, plots and
//! CSV from one or more result files (as written by `run`). Several files with different
//! devices are also overlaid on one roofline.

use crate::report::{write_report, ReportOptions};
use crate::result::ResultDoc;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Result files (JSON written by `rooflinebench run`).
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
    /// Output directory for report.html, report.md, the CSV files and plots/.
    #[arg(short = 'o', long = "out", default_value = "rooflinebench-report")]
    pub out: PathBuf,
    /// Skip the PNG plots (SVG only; the Markdown then links the SVGs).
    #[arg(long)]
    pub no_png: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.results.is_empty() {
        bail!("no result files given");
    }
    // Read and validate everything before writing anything.
    let mut docs = Vec::with_capacity(args.results.len());
    for p in &args.results {
        docs.push((p.display().to_string(), ResultDoc::load(p)?));
    }
    let t = std::time::Instant::now();
    let files = write_report(&docs, &args.out, &ReportOptions { png: !args.no_png })?;
    eprintln!(
        "wrote {} files ({} points) in {:.2} s",
        files.files.len(),
        files.points,
        t.elapsed().as_secs_f64()
    );
    println!("{}", files.html.display());
    println!("{}", files.markdown.display());
    Ok(())
}
