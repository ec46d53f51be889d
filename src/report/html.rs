//! The self-contained HTML report: inline SVG, inline CSS, a few lines of inline JavaScript for
//! tooltips, no external resource of any kind (it must work offline and from a file:// URL).

use super::svg::esc;
use super::tables::Table;
use super::Section;
use std::fmt::Write as _;

const CSS: &str = r#"
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#1a1a1a;background:#fff;line-height:1.45}
h1{font-size:1.6em;margin:.3em 0}h2{font-size:1.3em;margin-top:1.8em;border-bottom:2px solid #ddd;padding-bottom:.2em}h3{font-size:1.08em;margin:1.3em 0 .3em}
p.note{color:#444;font-size:.9em;margin:.2em 0 .6em}
.meta{color:#555;font-size:.88em}
table{border-collapse:collapse;font-size:.82em;margin:.4em 0 1em;display:block;overflow-x:auto}
th,td{border:1px solid #d4d4d4;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f4f8;white-space:nowrap}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0 1.6em}figure svg{max-width:100%;height:auto;border:1px solid #e2e2e2}
figcaption{font-size:.85em;color:#444}
#rb-tip{position:absolute;display:none;pointer-events:none;background:#fffff4;border:1px solid #888;border-radius:4px;padding:6px 9px;font-size:12px;white-space:pre;box-shadow:2px 2px 6px rgba(0,0,0,.2);z-index:10}
[data-tip]{cursor:pointer}
"#;

// Tooltips: the SVG keeps its <title> elements (native tooltips when scripts are off and in
// the standalone SVG files); with scripts on they are replaced by one positioned box.
const JS: &str = r#"
(function () {
  var tip = document.getElementById('rb-tip');
  if (!tip) { return; }
  var titles = document.querySelectorAll('svg [data-tip] > title');
  for (var i = 0; i < titles.length; i++) { titles[i].parentNode.removeChild(titles[i]); }
  document.addEventListener('mousemove', function (e) {
    var t = e.target && e.target.closest ? e.target.closest('[data-tip]') : null;
    if (!t) { tip.style.display = 'none'; return; }
    tip.textContent = t.getAttribute('data-tip');
    tip.style.display = 'block';
    var x = e.pageX + 14, y = e.pageY + 14;
    var w = tip.offsetWidth, vw = document.documentElement.clientWidth + window.pageXOffset;
    if (x + w > vw) { x = Math.max(0, e.pageX - w - 14); }
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  });
})();
"#;

pub fn table(out: &mut String, t: &Table) {
    if t.rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h3>{}</h3>", esc(&t.title));
    if !t.note.is_empty() {
        let _ = writeln!(out, r#"<p class="note">{}</p>"#, esc(&t.note));
    }
    out.push_str("<table><thead><tr>");
    for c in &t.header {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// The whole page.
pub fn render(title: &str, intro: &[String], sections: &[Section]) -> String {
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style></head>\n<body>\n<h1>{}</h1>\n",
        esc(title),
        esc(title)
    );
    for p in intro {
        let _ = writeln!(out, r#"<p class="meta">{}</p>"#, esc(p));
    }
    for s in sections {
        let _ = writeln!(out, "<section>\n<h2>{}</h2>", esc(&s.title));
        for p in &s.meta {
            let _ = writeln!(out, r#"<p class="meta">{}</p>"#, esc(p));
        }
        for f in &s.figures {
            let _ = writeln!(out, "<figure>\n{}", f.svg);
            let _ = writeln!(
                out,
                r#"<figcaption>{} (<a href="{}">SVG</a>{})</figcaption></figure>"#,
                esc(&f.title),
                esc(&f.svg_file),
                f.png_file
                    .as_ref()
                    .map(|p| format!(r#", <a href="{}">PNG</a>"#, esc(p)))
                    .unwrap_or_default()
            );
        }
        for t in &s.tables {
            table(&mut out, t);
        }
        out.push_str("</section>\n");
    }
    let _ = write!(
        out,
        "<div id=\"rb-tip\"></div>\n<script>{JS}</script>\n</body></html>\n"
    );
    out
}
