//! `rooflinebench devices`: the built-in device profiles (spec sheets, and the RooflineBench
//! paper's measurements as separate `-paper` entries), or one of them (or a profile file) in
//! full. Any listed name works wherever a profile file does (`--hw rpi5`).

use crate::hw::load_profile;
use crate::output::write_json;
use anyhow::Result;
use comfy_table::{presets::ASCII_MARKDOWN, Cell, CellAlignment, Table};
use rooflinebench_model::devices;
use rooflinebench_model::hardware::{CeilingSource, HardwareProfile, MemLevel, Precision};
use std::io::Write;
use std::path::Path;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Show one device (or a profile file) in full instead of the list.
    #[arg(value_name = "NAME|FILE")]
    pub name: Option<String>,
    /// Print JSON (the full profiles) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `71.2 T`, `153.6 G`: FLOP/s or bytes/s with an SI prefix.
fn si(v: f64) -> String {
    if v >= 1e12 {
        format!("{:.1} T", v / 1e12)
    } else if v >= 1e9 {
        format!("{:.1} G", v / 1e9)
    } else {
        format!("{:.0} M", v / 1e6)
    }
}

fn roof_source(p: &HardwareProfile) -> CeilingSource {
    let any =
        |s| p.compute.iter().any(|c| c.source == s) || p.bandwidth.iter().any(|b| b.source == s);
    if any(CeilingSource::MeasuredElsewhere) {
        CeilingSource::MeasuredElsewhere
    } else if any(CeilingSource::Measured) {
        CeilingSource::Measured
    } else {
        CeilingSource::Theoretical
    }
}

pub fn run(args: Args) -> Result<()> {
    if let Some(name) = &args.name {
        let p = load_profile(name)?;
        if args.json {
            return write_json(Path::new("-"), &p);
        }
        let mut out = std::io::stdout().lock();
        out.write_all(rooflinebench_bench::table::render(&p).as_bytes())?;
        return Ok(out.flush()?);
    }
    let all = devices::all();
    if args.json {
        return write_json(Path::new("-"), &all);
    }
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    let mut header = vec!["name".to_string(), "source".to_string()];
    header.extend(Precision::ALL.iter().map(|p| format!("{p} FLOP/s")));
    header.push("DRAM B/s".into());
    header.push("aliases".into());
    t.set_header(header);
    for p in &all {
        let src = roof_source(p);
        let mut row = vec![Cell::new(&p.name), Cell::new(src.name())];
        for prec in Precision::ALL {
            row.push(
                Cell::new(p.peak(prec, src, None).map_or("-".into(), |f| si(f.0)))
                    .set_alignment(CellAlignment::Right),
            );
        }
        row.push(
            Cell::new(
                p.bandwidth(MemLevel::Dram, src, None)
                    .map_or("-".into(), |b| si(b.0)),
            )
            .set_alignment(CellAlignment::Right),
        );
        let aliases = devices::names()
            .into_iter()
            .find(|(n, _)| *n == p.name)
            .map(|(_, a)| a.join(", "))
            .unwrap_or_default();
        row.push(Cell::new(aliases));
        t.add_row(row);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{t}")?;
    writeln!(
        out,
        "Theoretical figures come from spec sheets (derivation in each ceiling's note: `rooflinebench devices <name>`); `-paper` entries are the RooflineBench paper's Table 1 measurements (weak method, for comparison). Use a name wherever a profile file is accepted, e.g. `--hw rpi5`."
    )?;
    Ok(out.flush()?)
}
