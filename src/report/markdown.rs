//! The Markdown twin of the HTML report: the same tables, the plots as PNG (or SVG) links.

use super::tables::Table;
use super::Section;
use std::fmt::Write as _;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn table(out: &mut String, t: &Table) {
    if t.rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "### {}\n", t.title);
    if !t.note.is_empty() {
        let _ = writeln!(out, "{}\n", t.note);
    }
    let _ = writeln!(
        out,
        "| {} |",
        t.header
            .iter()
            .map(|c| cell(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|{}", "---|".repeat(t.header.len()));
    for r in &t.rows {
        let _ = writeln!(
            out,
            "| {} |",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out.push('\n');
}

pub fn render(title: &str, intro: &[String], sections: &[Section]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = writeln!(out, "# {title}\n");
    for p in intro {
        let _ = writeln!(out, "{p}\n");
    }
    for s in sections {
        let _ = writeln!(out, "## {}\n", s.title);
        for p in &s.meta {
            let _ = writeln!(out, "{p}  ");
        }
        out.push('\n');
        for f in &s.figures {
            let img = f.png_file.as_ref().unwrap_or(&f.svg_file);
            let _ = writeln!(out, "![{}]({})\n", cell(&f.title), img);
        }
        for t in &s.tables {
            table(&mut out, t);
        }
    }
    out
}
