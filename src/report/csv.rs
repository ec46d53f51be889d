//! CSV export of the report's tables (RFC 4180 quoting), one file per table.

use super::tables::Table;

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `tables` (same header) as one CSV, with a leading `document` column.
pub fn render(tables: &[(String, &Table)]) -> String {
    let mut out = String::new();
    let Some((_, first)) = tables.first() else {
        return out;
    };
    out.push_str("document");
    for h in &first.header {
        out.push(',');
        out.push_str(&field(h));
    }
    out.push('\n');
    for (doc, t) in tables {
        for r in &t.rows {
            out.push_str(&field(doc));
            for c in r {
                out.push(',');
                out.push_str(&field(c));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_needs_quoting() {
        let t = Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["x,y".into(), "say \"hi\"".into()]],
            ..Table::default()
        };
        assert_eq!(
            render(&[("d".into(), &t)]),
            "document,a,b\nd,\"x,y\",\"say \"\"hi\"\"\"\n"
        );
    }
}
