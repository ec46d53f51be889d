//! The human-readable probe report: host summary, compute and bandwidth tables, sweep, warnings.
//!
//! Markdown-compatible tables (comfy-table's ASCII_MARKDOWN preset) so a report can be pasted
//! into a README unchanged. Reads only the profile, so it renders device-database entries and
//! profiles written by other runs too. Not an exporter: JSON is the profile itself.

use comfy_table::{presets::ASCII_MARKDOWN, Cell, CellAlignment, Table};
use rooflinebench_model::hardware::{BwPattern, CeilingSource, ComputeCeiling, HardwareProfile};
use serde_json::Value;
use std::fmt::Write;

fn gib(b: f64) -> String {
    // 1023.9 MiB (a triad's three whole-line arrays) reads better as 1.0 GiB
    if b >= 0.999 * (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn pattern_name(p: BwPattern) -> &'static str {
    match p {
        BwPattern::Read => "read",
        BwPattern::Write => "write",
        BwPattern::WriteNt => "write_nt",
        BwPattern::Copy => "copy",
        BwPattern::Triad => "triad",
        BwPattern::Unspecified => "unspecified",
    }
}

fn right(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

fn host_summary(out: &mut String, host: &Value) {
    let s = |k: &str| {
        host.get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let n = |k: &str| host.get(k).and_then(Value::as_f64);
    let _ = writeln!(
        out,
        "Host: {} ({}, {}{}), {} usable CPUs{}",
        s("cpu_model"),
        s("vendor"),
        s("arch"),
        host.get("hypervisor")
            .and_then(Value::as_str)
            .map(|h| format!(", virtualised: {h}"))
            .unwrap_or_default(),
        n("usable_cpus").unwrap_or(0.0),
        n("physical_cores")
            .map(|c| format!(" ({c} physical cores)"))
            .unwrap_or_default()
    );
    let mut caches = Vec::new();
    if let Some(list) = host.get("caches").and_then(Value::as_array) {
        for c in list {
            if c.get("kind").and_then(Value::as_str) == Some("Instruction") {
                continue;
            }
            let lvl = c.get("level").and_then(Value::as_u64).unwrap_or(0);
            let sys = c.get("size_bytes").and_then(Value::as_f64);
            let cpuid = c.get("cpuid_size_bytes").and_then(Value::as_f64);
            let shared = c.get("shared_by_cpus").and_then(Value::as_u64).unwrap_or(1);
            let mut t = format!(
                "L{lvl} {}",
                sys.or(cpuid).map(gib).unwrap_or_else(|| "?".into())
            );
            if let (Some(a), Some(b)) = (sys, cpuid) {
                if a != b {
                    let _ = write!(t, " (cpuid {})", gib(b));
                }
            }
            if shared > 1 {
                let _ = write!(t, " shared by {shared}");
            }
            caches.push(t);
        }
    }
    let probe = host.get("probe");
    let dram_start = probe
        .and_then(|p| p.get("dram_level_start_bytes"))
        .and_then(Value::as_f64);
    let _ = writeln!(
        out,
        "Caches: {}{}",
        if caches.is_empty() {
            "unknown".into()
        } else {
            caches.join(", ")
        },
        dram_start
            .map(|b| format!(
                "; measured: read bandwidth at the DRAM level from {}",
                gib(b)
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Memory: {} total, {} available; OS: {}; kernel {}; governor {}; THP {}",
        n("memory_total_bytes")
            .map(gib)
            .unwrap_or_else(|| "?".into()),
        n("memory_available_bytes")
            .map(gib)
            .unwrap_or_else(|| "?".into()),
        s("os"),
        s("kernel"),
        host.get("governor")
            .and_then(Value::as_str)
            .unwrap_or("n/a"),
        host.get("transparent_hugepages")
            .and_then(Value::as_str)
            .unwrap_or("n/a"),
    );
    let temps: Vec<String> = host
        .get("thermal")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|z| {
                    Some(format!(
                        "{} {:.0} C",
                        z.get("name")?.as_str()?,
                        z.get("celsius")?.as_f64()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let vec_clock = |k: &str, name: &str| {
        n(k).map(|f| format!(", {:.2} GHz under {name} FMA load", f / 1e9))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "Clock: {} measured (dependent-add chain){}{}{}; thermal: {}",
        n("frequency_hz")
            .map(|f| format!("{:.2} GHz", f / 1e9))
            .unwrap_or_else(|| "not".into()),
        vec_clock("frequency_avx2_hz", "256-bit"),
        vec_clock("frequency_avx512_hz", "512-bit"),
        probe
            .and_then(|p| p.get("frequency_end_hz"))
            .and_then(Value::as_f64)
            .map(|f| format!(", {:.2} GHz at the end", f / 1e9))
            .unwrap_or_default(),
        if temps.is_empty() {
            "not readable".into()
        } else {
            temps.join(", ")
        }
    );
    if let Some(p) = probe {
        let _ = writeln!(
            out,
            "Probe: {} mode, threads {}, ISA {}, {:.1} s; core model: {}",
            p.get("mode").and_then(Value::as_str).unwrap_or("?"),
            p.get("threads")
                .and_then(Value::as_array)
                .map(|a| a
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            p.get("isa").and_then(Value::as_str).unwrap_or("?"),
            p.get("duration_seconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            p.get("core_model")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?"),
        );
    }
}

fn compute_table(out: &mut String, rows: &[&ComputeCeiling], theo: &[&ComputeCeiling]) {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header(vec![
        "precision",
        "kernel",
        "threads",
        "best GFLOP/s",
        "median",
        "CV %",
        "theoretical",
        "% of theo",
        "flags",
    ]);
    for c in rows {
        let th = theo
            .iter()
            .find(|x| x.kernel == c.kernel && x.threads == c.threads)
            .map(|x| x.flops_per_second);
        let (median, cv) = c
            .stats
            .as_ref()
            .map_or((None, None), |s| (Some(s.median), Some(s.cv)));
        t.add_row(vec![
            Cell::new(c.precision.name()),
            Cell::new(c.kernel.as_deref().unwrap_or("-")),
            right(c.threads.map_or("-".into(), |t| t.to_string())),
            right(format!("{:.1}", c.flops_per_second / 1e9)),
            right(median.map_or("-".into(), |m| format!("{:.1}", m / 1e9))),
            right(cv.map_or("-".into(), |v| format!("{:.1}", v * 100.0))),
            right(th.map_or("-".into(), |v| format!("{:.1}", v / 1e9))),
            right(th.map_or("-".into(), |v| {
                format!("{:.0}%", c.flops_per_second / v * 100.0)
            })),
            Cell::new(if c.unstable { "unstable" } else { "" }),
        ]);
    }
    let _ = writeln!(out, "{t}");
}

/// Renders a profile as text for a terminal.
pub fn render(p: &HardwareProfile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", p.name);
    if let Some(d) = &p.description {
        let _ = writeln!(out, "{d}");
    }
    if let Some(s) = &p.source {
        let _ = writeln!(out, "Source: {s}");
    }
    if let Some(h) = &p.host {
        host_summary(&mut out, h);
    }
    let measured: Vec<&ComputeCeiling> = p
        .compute
        .iter()
        .filter(|c| c.source == CeilingSource::Measured)
        .collect();
    let theo: Vec<&ComputeCeiling> = p
        .compute
        .iter()
        .filter(|c| c.source == CeilingSource::Theoretical)
        .collect();
    if !measured.is_empty() {
        let _ = writeln!(
            out,
            "\nCompute ceilings (best trial, median, coefficient of variation; theoretical = table FLOP/cycle x measured clock x cores):"
        );
        compute_table(&mut out, &measured, &theo);
    }
    // spec-sheet and published figures (no samples): with their derivation
    let sourced: Vec<&ComputeCeiling> = p.compute.iter().filter(|c| c.stats.is_none()).collect();
    if measured.is_empty() && !sourced.is_empty() {
        let _ = writeln!(out, "\nCompute ceilings:");
        let mut t = Table::new();
        t.load_preset(ASCII_MARKDOWN);
        t.set_header(vec![
            "precision",
            "GFLOP/s",
            "threads",
            "source",
            "derivation / method",
        ]);
        for c in &sourced {
            t.add_row(vec![
                Cell::new(c.precision.name()),
                right(format!("{:.1}", c.flops_per_second / 1e9)),
                right(c.threads.map_or("all".into(), |t| t.to_string())),
                Cell::new(c.source.name()),
                Cell::new(c.note.as_deref().unwrap_or("")),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    let info: Vec<ComputeCeiling> = p
        .host
        .as_ref()
        .and_then(|h| h.get("probe"))
        .and_then(|pr| pr.get("informational_compute"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if !info.is_empty() {
        let m: Vec<&ComputeCeiling> = info
            .iter()
            .filter(|c| c.source == CeilingSource::Measured)
            .collect();
        let th: Vec<&ComputeCeiling> = info
            .iter()
            .filter(|c| c.source == CeilingSource::Theoretical)
            .collect();
        let _ = writeln!(
            out,
            "\nInformational, not a roof (f16 accumulation; LLM kernels accumulate in f32):"
        );
        compute_table(&mut out, &m, &th);
    }
    if !p.bandwidth.is_empty() {
        let _ = writeln!(
            out,
            "\nBandwidth ceilings (nominal: every stream counted once; +WA: including write-allocate reads):"
        );
        let mut t = Table::new();
        t.load_preset(ASCII_MARKDOWN);
        t.set_header(vec![
            "level",
            "pattern",
            "threads",
            "working set",
            "best GB/s",
            "median",
            "CV %",
            "+WA GB/s",
            "source",
            "flags",
        ]);
        for b in &p.bandwidth {
            let (median, cv) = b
                .stats
                .as_ref()
                .map_or((None, None), |s| (Some(s.median), Some(s.cv)));
            t.add_row(vec![
                Cell::new(b.level.name()),
                Cell::new(pattern_name(b.pattern)),
                right(b.threads.map_or("-".into(), |t| t.to_string())),
                right(b.working_set_bytes.map_or("-".into(), |w| gib(w as f64))),
                right(format!("{:.1}", b.bytes_per_second / 1e9)),
                right(median.map_or("-".into(), |m| format!("{:.1}", m / 1e9))),
                right(cv.map_or("-".into(), |v| format!("{:.1}", v * 100.0))),
                right(
                    b.with_write_allocate_bytes_per_second
                        .map_or("-".into(), |v| format!("{:.1}", v / 1e9)),
                ),
                Cell::new(b.source.name()),
                Cell::new(if b.unstable { "unstable" } else { "" }),
            ]);
        }
        let _ = writeln!(out, "{t}");
        for b in p.bandwidth.iter().filter(|b| b.stats.is_none()) {
            if let Some(n) = &b.note {
                let _ = writeln!(out, "{} ({}): {n}", b.level, b.source.name());
            }
        }
    }
    if let Some(sweep) = p
        .host
        .as_ref()
        .and_then(|h| h.get("probe"))
        .and_then(|pr| pr.get("sweep"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        let _ = writeln!(out, "\nRead sweep, 1 thread (working set: GB/s):");
        let cells: Vec<String> = sweep
            .iter()
            .filter_map(|pt| {
                Some(format!(
                    "{}: {:.1}",
                    gib(pt.get("working_set_bytes")?.as_f64()?),
                    pt.get("bytes_per_second")?.as_f64()? / 1e9
                ))
            })
            .collect();
        for chunk in cells.chunks(6) {
            let _ = writeln!(out, "  {}", chunk.join(" | "));
        }
        if let Some(s) = p
            .host
            .as_ref()
            .and_then(|h| h.get("probe"))
            .and_then(|pr| pr.get("sweep_stop"))
            .and_then(Value::as_str)
        {
            let _ = writeln!(out, "  sweep {s}");
        }
    }
    if !p.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &p.warnings {
            let _ = writeln!(out, "- [{}] {}", w.code, w.message);
        }
    }
    out
}
