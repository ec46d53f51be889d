//! Small building blocks for hand-written SVG: escaping, number formatting, axis scales, and a
//! greedy label placer.
//!
//! Plots are written by hand rather than through a plotting crate so that every element
//! (roof styles, shaded regions, tooltips as `<title>`, data attributes for the HTML report) is
//! under our control and the output is stable text that tests can inspect.

use std::fmt::Write as _;

/// Font stack used everywhere. The PNG renderer loads the bundled DejaVu Sans under this name;
/// browsers fall back to any sans-serif font.
pub const FONT: &str = "DejaVu Sans, Verdana, sans-serif";

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("&#10;"),
            c if (c as u32) < 0x20 && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with 2 decimals (enough for pixels, keeps files small and stable).
pub fn px(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// `v` with 3 significant digits and an SI prefix: `78.6 G`, `3.98 G`, `512 k`, `0.5`.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    const PREFIXES: [(f64, &str); 6] = [
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
    ];
    let a = v.abs();
    for (scale, p) in PREFIXES {
        if a >= scale {
            return format!("{} {p}", sig3(v / scale)).trim_end().to_string();
        }
    }
    sig3(v)
}

/// Three significant digits without trailing zeros: 19.7387 -> `19.7`, 0.012345 -> `0.0123`.
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (2 - mag).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Seconds in the most readable unit: `1.23 s`, `45.6 ms`, `789 us`.
pub fn seconds(v: f64) -> String {
    let a = v.abs();
    if a >= 1.0 || a == 0.0 {
        format!("{} s", sig3(v))
    } else if a >= 1e-3 {
        format!("{} ms", sig3(v * 1e3))
    } else if a >= 1e-6 {
        format!("{} us", sig3(v * 1e6))
    } else {
        format!("{} ns", sig3(v * 1e9))
    }
}

/// A decade tick label: `0.01`, `1`, `1000`, or `1e6` outside `[1e-3, 1e4]`.
pub fn decade_label(k: i32) -> String {
    if (-3..=4).contains(&k) {
        sig3(10f64.powi(k))
    } else {
        format!("1e{k}")
    }
}

/// An axis mapping data to pixels, logarithmic or linear.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub px0: f64,
    pub px1: f64,
    pub log: bool,
}

impl Scale {
    pub fn map(&self, v: f64) -> f64 {
        let (a, b, x) = if self.log {
            (self.lo.log10(), self.hi.log10(), v.log10())
        } else {
            (self.lo, self.hi, v)
        };
        self.px0 + (x - a) / (b - a) * (self.px1 - self.px0)
    }

    pub fn contains(&self, v: f64) -> bool {
        v.is_finite() && v >= self.lo * (1.0 - 1e-12) && v <= self.hi * (1.0 + 1e-12)
    }
}

/// The decade range `[10^a, 10^b]` covering `[lo, hi]` with margin `pad` (a factor), at least
/// `min_decades` wide (grown on both sides) and at most `max_decades` (cut at the bottom).
pub fn decade_range(lo: f64, hi: f64, pad: f64, min_decades: i32, max_decades: i32) -> (f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && lo > 0.0 && hi >= lo {
        (lo, hi)
    } else {
        (1.0, 10.0)
    };
    let mut a = (lo / pad).log10().floor() as i32;
    let mut b = (hi * pad).log10().ceil() as i32;
    while b - a < min_decades {
        b += 1;
        if b - a < min_decades {
            a -= 1;
        }
    }
    if b - a > max_decades {
        a = b - max_decades;
    }
    (10f64.powi(a), 10f64.powi(b))
}

/// "Nice" linear ticks (1, 2, 5 x 10^k) covering `[lo, hi]`, about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> (f64, f64, Vec<f64>) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let end = (hi / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut t = start;
    while t <= end + step * 1e-9 && ticks.len() < 100 {
        ticks.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    (start, end, ticks)
}

/// Approximate rendered width of `s` in DejaVu Sans at `size` px (average advance ~0.6 em).
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | ' ' | '(' | ')' => 0.35,
            'm' | 'w' | 'M' | 'W' | '@' => 0.9,
            c if c.is_ascii_uppercase() => 0.7,
            c if c.is_ascii_digit() => 0.64,
            _ => 0.6,
        })
        .sum::<f64>()
        * size
}

/// An axis-aligned box in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
    pub fn inside(&self, o: &Rect) -> bool {
        self.x >= o.x
            && self.y >= o.y
            && self.x + self.w <= o.x + o.w
            && self.y + self.h <= o.y + o.h
    }
}

/// Greedy label placement: each label tries a list of positions around its anchor and takes
/// the first one that stays inside the area and overlaps nothing placed before. Drawn lines
/// are "soft" obstacles: a label may cross one (on a white background) when no position
/// avoids them. Labels that find no place at all are dropped (the point keeps its tooltip
/// and its row in the tables).
pub struct Placer {
    pub area: Rect,
    taken: Vec<Rect>,
    soft: Vec<Rect>,
}

impl Placer {
    pub fn new(area: Rect) -> Placer {
        Placer {
            area,
            taken: Vec::new(),
            soft: Vec::new(),
        }
    }

    /// Marks a region (a point marker, a label, a legend) as occupied.
    pub fn block(&mut self, r: Rect) {
        self.taken.push(r);
    }

    /// Marks a region a label should avoid but may cross (a roof line).
    pub fn block_soft(&mut self, r: Rect) {
        self.soft.push(r);
    }

    pub fn overlaps_hard(&self, r: &Rect) -> bool {
        self.taken.iter().any(|t| t.overlaps(r))
    }

    pub fn overlaps_any(&self, r: &Rect) -> bool {
        self.overlaps_hard(r) || self.soft.iter().any(|t| t.overlaps(r))
    }

    /// Blocks `r` if it is inside the area and overlaps nothing (or, `relaxed`, nothing hard);
    /// true when it did.
    pub fn try_block(&mut self, r: Rect, relaxed: bool) -> bool {
        let free = if relaxed {
            !self.overlaps_hard(&r)
        } else {
            !self.overlaps_any(&r)
        };
        if !r.inside(&self.area) || !free {
            return false;
        }
        self.block(r);
        true
    }

    /// Places a `w` x `h` label near `(ax, ay)`: first right next to the anchor, then on rings
    /// further out (the caller draws a leader line for those). Returns the top-left corner and
    /// whether the label is away from its anchor.
    pub fn place(&mut self, ax: f64, ay: f64, w: f64, h: f64) -> Option<(f64, f64, bool)> {
        for relaxed in [false, true] {
            for (ring, g) in [6.0, 22.0, 40.0].into_iter().enumerate() {
                let v = if ring == 0 { 2.0 } else { g * 0.7 };
                let candidates = [
                    (ax + g, ay - h / 2.0),
                    (ax + g, ay - h - v),
                    (ax + g, ay + v),
                    (ax - g - w, ay - h / 2.0),
                    (ax - w / 2.0, ay - h - g),
                    (ax - w / 2.0, ay + g),
                    (ax - g - w, ay - h - v),
                    (ax - g - w, ay + v),
                ];
                for (x, y) in candidates {
                    if self.try_block(Rect { x, y, w, h }, relaxed) {
                        return Some((x, y, ring > 0));
                    }
                }
            }
        }
        None
    }
}

/// Appends `<text>` (one `<tspan>` per line) at `(x, y)` (baseline of the first line).
pub fn text(out: &mut String, x: f64, y: f64, size: f64, anchor: &str, attrs: &str, s: &str) {
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}" {attrs}>{}</text>"#,
        px(x),
        px(y),
        px(size),
        esc(s)
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_readably() {
        assert_eq!(sig3(19.738_69), "19.7");
        assert_eq!(sig3(0.012_345), "0.0123");
        assert_eq!(sig3(100.0), "100");
        assert_eq!(si(78.56e9), "78.6 G");
        assert_eq!(si(3.98e9), "3.98 G");
        assert_eq!(si(0.5), "0.5");
        assert_eq!(seconds(0.0123), "12.3 ms");
        assert_eq!(decade_label(-2), "0.01");
        assert_eq!(decade_label(6), "1e6");
        assert_eq!(px(1.254), "1.25");
        assert_eq!(px(2.0), "2");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(esc("x\ny"), "x&#10;y");
    }

    #[test]
    fn decade_range_is_bounded_and_padded() {
        assert_eq!(decade_range(2.0, 50.0, 1.5, 1, 10), (1.0, 100.0));
        let (a, b) = decade_range(5.0, 5.0, 1.0, 3, 10);
        assert!((b / a - 1000.0).abs() < 1e-6);
        let (a, b) = decade_range(1e-12, 1e12, 1.0, 1, 8);
        assert!((b / a - 1e8).abs() / 1e8 < 1e-9);
        assert_eq!(decade_range(f64::NAN, 1.0, 1.0, 1, 8), (1.0, 10.0));
    }

    #[test]
    fn log_scale_maps_decades_evenly() {
        let s = Scale {
            lo: 1.0,
            hi: 100.0,
            px0: 0.0,
            px1: 200.0,
            log: true,
        };
        assert!((s.map(10.0) - 100.0).abs() < 1e-9);
        assert!((s.map(100.0) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn placer_avoids_overlap_and_drops_when_full() {
        let mut p = Placer::new(Rect {
            x: 0.0,
            y: 0.0,
            w: 200.0,
            h: 100.0,
        });
        let a = p.place(100.0, 50.0, 30.0, 10.0).unwrap();
        let b = p.place(100.0, 50.0, 30.0, 10.0).unwrap();
        assert_ne!(a, b);
        assert!(!a.2, "first label sits next to its anchor");
        let mut n = 2;
        while p.place(100.0, 50.0, 30.0, 10.0).is_some() {
            n += 1;
            assert!(n < 40);
        }
    }

    #[test]
    fn nice_ticks_cover_the_range() {
        let (lo, hi, t) = nice_ticks(0.3, 9.2, 5);
        assert!(lo <= 0.3 && hi >= 9.2);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() >= 4 && t.len() <= 12, "{t:?}");
    }
}
