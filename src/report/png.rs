//! SVG to PNG with `resvg`, using the bundled DejaVu Sans so text never depends on system
//! fonts (with no font loaded, resvg silently drops text: the tests check text pixels exist).

use anyhow::{Context, Result};
use resvg::tiny_skia;
use resvg::usvg;
use std::sync::{Arc, OnceLock};

/// DejaVu Sans 2.37 (Debian fonts-dejavu-core), license in `assets/fonts/LICENSE-DejaVu.txt`.
pub static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Pixel density of the PNG relative to the SVG's user units.
pub const SCALE: f32 = 1.5;

fn fontdb() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(FONT_BYTES.to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// Renders SVG text to an RGBA pixmap at [`SCALE`]; `with_font = false` renders with no font
/// at all (used by tests to prove the text pixels come from the bundled font).
pub fn render(svg: &str, with_font: bool) -> Result<tiny_skia::Pixmap> {
    let mut opt = usvg::Options {
        font_family: "DejaVu Sans".into(),
        ..usvg::Options::default()
    };
    if with_font {
        opt.fontdb = fontdb();
    }
    let tree =
        usvg::Tree::from_str(svg, &opt).context("internal error: generated SVG is invalid")?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(SCALE)
        .context("empty SVG")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).context("empty SVG")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(SCALE, SCALE),
        &mut pixmap.as_mut(),
    );
    Ok(pixmap)
}

/// Renders SVG text to PNG bytes.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    render(svg, true)?.encode_png().context("cannot encode PNG")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plot;

    fn dark_pixels(p: &tiny_skia::Pixmap) -> usize {
        p.pixels()
            .iter()
            .filter(|c| (c.red() as u32 + c.green() as u32 + c.blue() as u32) < 3 * 160)
            .count()
    }

    #[test]
    fn png_is_non_empty_and_has_text_pixels_from_the_bundled_font() {
        let svg = plot::roofline_svg(&plot::tests::sample_chart());
        let png = svg_to_png(&svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 10_000, "{} bytes", png.len());
        let with = render(&svg, true).unwrap();
        let without = render(&svg, false).unwrap();
        assert_eq!(with.width(), (plot::WIDTH * SCALE as f64) as u32);
        let text_px = dark_pixels(&with).saturating_sub(dark_pixels(&without));
        // Titles, tick labels and point labels: thousands of dark pixels at 1.5x.
        assert!(text_px > 5_000, "only {text_px} text pixels");
    }

    #[test]
    fn text_only_svg_renders_glyphs() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="5" y="30" font-size="24" font-family="DejaVu Sans">Roofline</text></svg>"#;
        let p = render(svg, true).unwrap();
        assert!(dark_pixels(&p) > 200);
        assert_eq!(dark_pixels(&render(svg, false).unwrap()), 0);
    }
}
