//! The SVG route: inferno draws the flame graph as SVG; usvg/resvg rasterize
//! it into a tiny-skia pixmap of the fixed canvas, under a header band; the
//! png crate encodes it with fast compression. Also writes `.svg` frames.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use inferno::flamegraph::{self, color::BackgroundColor, Options};
use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg;

use super::layout::{self, Canvas, FrameInfo, Scale, FONT_FAMILY, FONT_WIDTH};
use super::palette::{self, Colors, Look};

/// Renders frames; holds the font database, loaded once and shared.
pub struct SvgRenderer {
    canvas: Canvas,
    look: Look,
    usvg_options: usvg::Options<'static>,
}

impl SvgRenderer {
    /// Loads the fonts (hot colours, light theme).
    pub fn new(canvas: Canvas) -> Result<SvgRenderer> {
        Self::with_look(canvas, Look::default())
    }

    /// Loads the fonts. The monospace family is set explicitly: usvg's
    /// default ("Courier New") is absent on Debian and text would vanish.
    pub fn with_look(canvas: Canvas, look: Look) -> Result<SvgRenderer> {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        let family = db
            .faces()
            .find(|f| f.families.iter().any(|(name, _)| name == FONT_FAMILY))
            .map(|_| FONT_FAMILY.to_string())
            .or_else(|| {
                db.faces()
                    .find(|f| f.monospaced)
                    .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
            })
            .ok_or_else(|| {
                anyhow!("no monospace font found for frame labels; install fonts-dejavu-core")
            })?;
        db.set_monospace_family(family.clone());
        db.set_sans_serif_family(family);
        let usvg_options = usvg::Options {
            fontdb: Arc::new(db),
            // Bars are axis-aligned rectangles: anti-aliasing their edges
            // costs time and blurs the gaps between them.
            shape_rendering: usvg::ShapeRendering::CrispEdges,
            ..Default::default()
        };
        Ok(SvgRenderer {
            canvas,
            look,
            usvg_options,
        })
    }

    /// inferno's options for a frame: monospace labels, and deterministic
    /// colours as a fallback (callers pass our palette as a palette map, so
    /// both renderers colour a function the same in every frame and run).
    fn inferno_options<'a>(
        &self,
        fit: &layout::Fit,
        title: String,
        subtitle: Option<String>,
    ) -> Options<'a> {
        let mut opt = Options::default();
        opt.deterministic = true;
        if self.look.icicle {
            opt.direction = inferno::flamegraph::Direction::Inverted;
        }
        opt.image_width = Some(self.canvas.width as usize);
        opt.frame_height = fit.frame_height;
        opt.font_size = fit.font_size;
        opt.font_type = "monospace".into();
        opt.font_width = FONT_WIDTH;
        // Lines are drawn in the order given (the frame tree's stable
        // order, see `drawn_in_order`): inferno's flame-chart mode is the
        // one that takes lines unsorted (it reverses them first); adjacent
        // lines sharing a prefix still merge into one bar.
        opt.flame_chart = true;
        let [r, g, b, _] = self.look.background();
        opt.bgcolors = Some(
            Look::hex([r, g, b])
                .parse::<BackgroundColor>()
                .expect("a valid #rrggbb colour"),
        );
        opt.title = title;
        opt.subtitle = subtitle;
        opt.count_name = "samples".into();
        opt
    }

    /// The colours of `lines` in the renderer's mode (by name only).
    fn palette_map(&self, lines: &[String]) -> inferno::flamegraph::color::PaletteMap {
        match self.look.colors {
            Colors::Kernel => palette::palette_map_by(lines, palette::kernel_color),
            _ => palette::palette_map(lines),
        }
    }

    /// The interactive SVG of a frame (for `.svg` patterns).
    pub fn svg_frame(
        &self,
        lines: &[String],
        fit: &layout::Fit,
        info: &FrameInfo,
    ) -> Result<Vec<u8>> {
        self.interactive_svg(lines, fit, info, false)
    }

    /// The live page's SVG of a frame: fluid width (it fills the browser's
    /// width whatever the window), and bars and labels sized for reading on
    /// a screen (15 px labels) rather than scaled down from the video
    /// canvas. The page hides inferno's own title and search button.
    pub fn page_svg(&self, lines: &[String], info: &FrameInfo) -> Result<Vec<u8>> {
        const PAGE_FIT: layout::Fit = layout::Fit {
            frame_height: 22,
            font_size: 15,
            depth_cap: None,
        };
        self.interactive_svg(lines, &PAGE_FIT, info, true)
    }

    /// inferno's interactive SVG of a frame, on the video canvas or (`page`)
    /// fluid and without the subtitle the page's header shows.
    fn interactive_svg(
        &self,
        lines: &[String],
        fit: &layout::Fit,
        info: &FrameInfo,
        page: bool,
    ) -> Result<Vec<u8>> {
        let (title, subtitle) = info.lines();
        if lines.is_empty() {
            return Ok(self
                .message_svg(
                    self.canvas.width,
                    self.canvas.height,
                    &title,
                    &subtitle,
                    info.progress,
                )
                .into_bytes());
        }
        let mut colors = self.palette_map(lines);
        let mut opt = self.inferno_options(fit, title, (!page).then_some(subtitle));
        if page {
            opt.image_width = None;
        }
        opt.palette_map = Some(&mut colors);
        let mut out = Vec::new();
        flamegraph::from_lines(&mut opt, drawn_in_order(lines), &mut out)
            .context("inferno failed to draw the frame")?;
        Ok(out)
    }

    /// The PNG of a frame on the fixed canvas.
    pub fn png_frame(
        &self,
        lines: &[String],
        fit: &layout::Fit,
        info: &FrameInfo,
    ) -> Result<Vec<u8>> {
        encode_png(&self.pixmap_frame(lines, fit, info)?)
    }

    /// The flame graph part of a PNG frame as inferno draws it (no title,
    /// no script, sub-pixel bars left out), stripped for rasterizing. The
    /// direct renderer is checked against it.
    pub fn graph_svg(&self, lines: &[String], fit: &layout::Fit) -> Result<Vec<u8>> {
        let mut colors = self.palette_map(lines);
        let mut opt = self.inferno_options(fit, String::new(), None);
        opt.palette_map = Some(&mut colors);
        opt.no_javascript = true;
        opt.min_width = layout::min_width_percent(self.canvas.width);
        let mut svg = Vec::new();
        flamegraph::from_lines(&mut opt, drawn_in_order(lines), &mut svg)
            .context("inferno failed to draw the frame")?;
        Ok(strip_tooltips(&svg))
    }

    /// A frame drawn on the fixed canvas.
    pub fn pixmap_frame(
        &self,
        lines: &[String],
        fit: &layout::Fit,
        info: &FrameInfo,
    ) -> Result<Pixmap> {
        let Canvas { width, height } = self.canvas;
        let mut pixmap = Pixmap::new(width, height).context("canvas size")?;
        let [r, g, b, a] = self.look.background();
        pixmap.fill(Color::from_rgba8(r, g, b, a));
        if !lines.is_empty() {
            let svg = self.graph_svg(lines, fit)?;
            let tree = usvg::Tree::from_data(&svg, &self.usvg_options)
                .context("failed to parse inferno's SVG")?;
            // The graph grows from the bottom edge; the header covers its
            // top. An icicle hangs from just under the header (inferno's
            // top pad, four font heights and 4 px, goes under the header).
            let dy = if self.look.icicle {
                (super::geometry::icicle_top(self.canvas, fit) - (4 * fit.font_size + 4) as f64)
                    as f32
            } else {
                height as f32 - tree.size().height()
            };
            resvg::render(
                &tree,
                Transform::from_translate(0.0, dy),
                &mut pixmap.as_mut(),
            );
        }
        let (title, subtitle) = info.lines();
        let band = if lines.is_empty() {
            self.message_svg(width, height, &title, &subtitle, info.progress)
        } else {
            self.header_svg(
                width,
                Scale::of(self.canvas).header,
                &title,
                &subtitle,
                "",
                info.progress,
            )
        };
        let tree = usvg::Tree::from_str(&band, &self.usvg_options)
            .context("failed to parse the header")?;
        resvg::render(&tree, Transform::identity(), &mut pixmap.as_mut());
        Ok(pixmap)
    }
}

/// Drops what a still frame can't use from inferno's SVG: the per-frame
/// `<title>` tooltips and empty `<text>` labels (together about half of what
/// usvg would parse) and the "Search" / "Reset Zoom" buttons (drawn even
/// without JavaScript).
fn strip_tooltips(svg: &[u8]) -> Vec<u8> {
    const CUTS: [(&[u8], &[u8]); 3] = [
        (b"<title>", b"</title>"),
        (b"<text id=\"search\"", b"</text>"),
        (b"<text id=\"unzoom\"", b"</text>"),
    ];
    let mut out = Vec::with_capacity(svg.len());
    let mut i = 0;
    // One pass: at each '<', cut up to the matching close tag if it opens
    // one of CUTS.
    while let Some(lt) = svg[i..].iter().position(|b| *b == b'<') {
        let at = i + lt;
        let cut = CUTS.iter().find(|(open, _)| svg[at..].starts_with(open));
        let close_at = match cut {
            Some((_, close)) => svg[at..]
                .windows(close.len())
                .position(|w| w == *close)
                .map(|j| at + j + close.len()),
            // inferno writes an empty <text> for bars too narrow for a label.
            None if svg[at..].starts_with(b"<text ") => svg[at..]
                .iter()
                .position(|b| *b == b'>')
                .filter(|gt| svg[at + gt + 1..].starts_with(b"</text>"))
                .map(|gt| at + gt + 1 + b"</text>".len()),
            None => None,
        };
        out.extend_from_slice(&svg[i..at]);
        match close_at {
            Some(end) => i = end,
            None => {
                out.push(b'<');
                i = at + 1;
            }
        }
    }
    out.extend_from_slice(&svg[i..]);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl SvgRenderer {
    /// The header band: the title with the clock on the first line, counts
    /// on the second, the run's progress under them, in an SVG `height`
    /// pixels high; `extra` is drawn after it.
    fn header_svg(
        &self,
        width: u32,
        height: u32,
        title: &str,
        subtitle: &str,
        extra: &str,
        progress: Option<f64>,
    ) -> String {
        let s = Scale::of(self.canvas);
        let h = f64::from(s.header);
        let [r, g, b, a] = self.look.background();
        let bg = Look::hex([r, g, b]);
        let opacity = f64::from(a) / 255.0;
        let left = (16.0 * h / 96.0).round();
        let bar = progress.map_or(String::new(), |p| {
            let ph = (h / 24.0).max(2.0);
            format!(
                r##"<rect x="0" y="{}" width="{}" height="{ph}" fill="#4070e0"/>"##,
                h - ph,
                (f64::from(width) * p).max(1.0)
            )
        });
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"><rect width="100%" height="{h}" fill="{bg}" fill-opacity="{opacity}"/><text x="{left}" y="{ty}" font-family="monospace" font-size="{tf}" font-weight="bold" fill="{tc}">{t}</text><text x="{left}" y="{sy}" font-family="monospace" font-size="{sf}" fill="{sc}">{st}</text>{bar}{extra}</svg>"##,
            ty = (h * 0.40).round(),
            sy = (h * 0.78).round(),
            tf = s.title_font,
            sf = s.subtitle_font,
            tc = Look::hex(self.look.title()),
            sc = Look::hex(self.look.subtitle()),
            t = escape(title),
            st = escape(subtitle),
        )
    }

    /// A whole frame with only the header and a message (an empty interval
    /// is still a frame, so video time stays linear).
    fn message_svg(
        &self,
        width: u32,
        height: u32,
        title: &str,
        subtitle: &str,
        progress: Option<f64>,
    ) -> String {
        let s = Scale::of(self.canvas);
        let message = format!(
            r##"<text x="{}" y="{}" text-anchor="middle" font-family="monospace" font-size="{}" fill="{}">no samples</text>"##,
            width / 2,
            height / 2,
            s.title_font * 3 / 2,
            Look::hex(self.look.subtitle())
        );
        self.header_svg(width, height, title, subtitle, &message, progress)
    }
}

/// The canvas is opaque, so premultiplied RGBA is plain RGBA: drop alpha.
/// Lines for inferno in flame-chart mode, which reverses them: given
/// reversed, they are drawn left to right in the order of `lines`.
fn drawn_in_order(lines: &[String]) -> impl Iterator<Item = &str> {
    lines.iter().rev().map(String::as_str)
}

pub use super::encode::{encode_jpeg, encode_png, encode_png_rgba};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_keep_the_order_given() {
        let r = SvgRenderer::new(Canvas::default()).unwrap();
        let lines: Vec<String> = ["c;zeta;x 5", "c;zeta;y 1", "c;alpha 4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let fit = layout::fit_canvas(Canvas::default(), 3);
        let info = FrameInfo::default();
        let svg = String::from_utf8(r.svg_frame(&lines, &fit, &info).unwrap()).unwrap();
        let x_of = |name: &str| -> f64 {
            let i = svg.find(&format!("<title>{name} (")).unwrap();
            let j = i + svg[i..].find("x=\"").unwrap() + 3;
            svg[j..j + svg[j..].find('%').unwrap()].parse().unwrap()
        };
        // zeta first, as given (sorted, alpha would come first), and one
        // bar for it although its lines are split by nothing.
        assert!(x_of("zeta") < x_of("alpha"), "{svg}");
        assert!(x_of("x") < x_of("y"));
        assert_eq!(svg.matches("<title>zeta (").count(), 1);
    }

    #[test]
    fn tooltips_are_stripped() {
        let svg = b"<text id=\"search\" x=\"1\">Search</text><g><title>f (1 samples)</title><rect/><text x=\"1%\"></text></g><g><title>g</title><text x=\"2\">g</text></g>";
        assert_eq!(
            strip_tooltips(svg),
            b"<g><rect/></g><g><text x=\"2\">g</text></g>".to_vec()
        );
    }
}
