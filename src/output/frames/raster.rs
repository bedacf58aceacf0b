//! The direct renderer: draws a frame straight into a tiny-skia pixmap, with
//! no SVG in between. Bars come from [`geometry::place`] (inferno's layout
//! rules), colours from [`palette`], and labels from glyphs rasterized once
//! (fontdue) and blended in. About ten times faster than the SVG route,
//! which stays the reference and the source of `.svg` frames.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use resvg::tiny_skia::{Color, Paint, Pixmap, Rect, Transform};
use resvg::usvg::fontdb;

use super::geometry;
use super::layout::{self, Canvas, FrameInfo, Scale, FONT_FAMILY};
use super::palette::{self, Colors, Look};
use super::Frame;

const LABEL: [u8; 3] = [0, 0, 0];
/// The progress bar under the header.
const PROGRESS: [u8; 3] = [0x40, 0x70, 0xe0];

struct Glyph {
    xmin: i32,
    ymin: i32,
    width: usize,
    height: usize,
    advance: f32,
    coverage: Vec<u8>,
}

/// A range of canvas rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rows {
    start: u32,
    end: u32,
}

/// Draws frames; its font and glyph cache are built once and only read
/// afterwards, so one renderer serves every render thread.
pub struct DirectRenderer {
    canvas: Canvas,
    scale: Scale,
    look: Look,
    font: Arc<fontdue::Font>,
    glyphs: HashMap<(char, u16), Glyph>,
}

/// The label font, read once per process and shared by every renderer:
/// fontdue keeps each glyph's outline, 7.3 MB for DejaVu Sans Mono, and a
/// run that writes frames and serves the live page has two renderers.
fn label_font() -> Result<Arc<fontdue::Font>> {
    static FONT: OnceLock<std::result::Result<Arc<fontdue::Font>, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_system_fonts();
        let id = db
            .query(&fontdb::Query {
                families: &[fontdb::Family::Name(FONT_FAMILY), fontdb::Family::Monospace],
                ..Default::default()
            })
            .ok_or("no monospace font found for frame labels; install fonts-dejavu-core")?;
        db.with_face_data(id, |data, index| {
            fontdue::Font::from_bytes(
                data,
                fontdue::FontSettings {
                    collection_index: index,
                    ..Default::default()
                },
            )
        })
        .ok_or("failed to read the label font")?
        .map(Arc::new)
        .map_err(|e| format!("failed to load the label font: {e}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

impl DirectRenderer {
    /// Loads the monospace font and rasterizes ASCII at every size used.
    pub fn new(canvas: Canvas) -> Result<DirectRenderer> {
        Self::with_look(canvas, Look::default())
    }

    /// A renderer with `--colors`, `--theme` and `--background`.
    pub fn with_look(canvas: Canvas, look: Look) -> Result<DirectRenderer> {
        let font = label_font()?;
        let mut glyphs = HashMap::new();
        // ASCII, plus the separators the header uses and the tower mark.
        let chars: Vec<char> = (32u8..127)
            .map(char::from)
            .chain(['\u{b7}', '\u{2013}', '\u{d7}'])
            .collect();
        let scale = Scale::of(canvas);
        for size in scale.font_sizes() {
            for &c in &chars {
                glyphs.insert((c, size), rasterize(&font, c, size));
            }
        }
        Ok(DirectRenderer {
            canvas,
            scale,
            look,
            font,
            glyphs,
        })
    }

    /// A frame drawn on a new canvas, in the renderer's look.
    pub fn pixmap(&self, frame: &Frame) -> Result<Pixmap> {
        let mut pixmap = self.blank()?;
        self.draw_into(&mut pixmap, frame);
        Ok(pixmap)
    }

    /// Runs `f` on the frame drawn on this thread's canvas: one canvas per
    /// thread, reused from frame to frame.
    pub fn with_canvas<R>(&self, frame: &Frame, f: impl FnOnce(&Pixmap) -> R) -> Result<R> {
        thread_local! {
            /// The canvas, its look, and the rows the last frame drew bars
            /// or text on.
            static CANVAS: std::cell::RefCell<Option<(Pixmap, Look, Rows)>> =
                const { std::cell::RefCell::new(None) };
        }
        CANVAS.with(|c| {
            let mut c = c.borrow_mut();
            let fits = c.as_ref().is_some_and(|(p, look, _)| {
                p.width() == self.canvas.width
                    && p.height() == self.canvas.height
                    && *look == self.look
            });
            if !fits {
                *c = Some((self.blank()?, self.look, Rows::default()));
            }
            let (pixmap, _, dirty) = c.as_mut().expect("made above");
            // Only the rows the last frame drew on need clearing (the
            // header band is cleared as it is drawn): a nearly empty frame
            // costs a few rows, not the whole canvas.
            self.clear_rows(pixmap, *dirty);
            *dirty = self.draw(pixmap, frame);
            Ok(f(pixmap))
        })
    }

    /// Fills `rows` with the background.
    fn clear_rows(&self, pixmap: &mut Pixmap, rows: Rows) {
        let [r, g, b, a] = self.look.background();
        let c = Color::from_rgba8(r, g, b, a).premultiply().to_color_u8();
        let whole = [
            0.0,
            rows.start as f32,
            pixmap.width() as f32,
            rows.end as f32,
        ];
        fill_rect(pixmap, whole, [c.red(), c.green(), c.blue(), c.alpha()]);
    }

    /// Draws a frame over whatever `pixmap` held.
    pub fn draw_into(&self, pixmap: &mut Pixmap, frame: &Frame) {
        let [r, g, b, a] = self.look.background();
        pixmap.fill(Color::from_rgba8(r, g, b, a));
        self.draw(pixmap, frame);
    }

    /// Draws a frame on a clear canvas; returns the rows under the header
    /// it drew on.
    fn draw(&self, pixmap: &mut Pixmap, frame: &Frame) -> Rows {
        let placed = geometry::place_oriented(
            &frame.tree,
            self.canvas,
            &frame.fit,
            layout::min_width_percent(self.canvas.width),
            self.look.icicle,
        );
        self.draw_bars_in(pixmap, &placed, frame);
        self.draw_labels(pixmap, &placed, &frame.fit);
        self.draw_root_total(pixmap, &placed, &frame.fit, frame.info.samples);
        self.draw_header(pixmap, &frame.info, frame.tree.is_empty());
        match self.look.colors {
            Colors::Comm => self.draw_legend(pixmap, frame),
            Colors::Diff => self.draw_diff_legend(pixmap),
            _ => {}
        }
        // The bars with their labels (a label may pass its bar's edges by
        // a little), and the "no samples" line.
        let mut rows = Rows {
            start: pixmap.height(),
            end: 0,
        };
        let pad = frame.fit.font_size as f32;
        for p in &placed {
            rows.start = rows.start.min((p.rect[1] - pad).max(0.0) as u32);
            rows.end = rows.end.max((p.rect[3] + pad).ceil() as u32);
        }
        if frame.tree.is_empty() {
            // "no samples", on the middle row.
            let size = u32::from(self.scale.title_font) * 3 / 2;
            let middle = pixmap.height() / 2;
            rows = Rows {
                start: middle.saturating_sub(size * 2),
                end: middle + size,
            };
        }
        rows.end = rows.end.min(pixmap.height());
        rows.start = rows.start.min(rows.end);
        rows
    }

    /// Folded lines drawn on the fixed canvas (the hot colours).
    pub fn pixmap_frame(
        &self,
        lines: &[String],
        fit: &layout::Fit,
        info: &FrameInfo,
    ) -> Result<Pixmap> {
        self.pixmap(&Frame::from_lines(lines, *fit, info.clone()))
    }

    /// An empty canvas.
    pub fn blank(&self) -> Result<Pixmap> {
        let mut pixmap =
            Pixmap::new(self.canvas.width, self.canvas.height).context("canvas size")?;
        let [r, g, b, a] = self.look.background();
        pixmap.fill(Color::from_rgba8(r, g, b, a));
        Ok(pixmap)
    }

    /// A bar's colour in the renderer's `--colors` mode.
    fn bar_color(&self, p: &geometry::Placed<'_>, frame: &Frame) -> [u8; 3] {
        match self.look.colors {
            // By name alone: no lookup in the frame's tree.
            Colors::Hot => palette::color(p.name),
            Colors::Kernel => palette::kernel_color(p.name),
            Colors::Comm | Colors::Diff => bar_color(self.look.colors, frame, p.node),
        }
    }

    /// Fills the bars (hot colours).
    pub fn draw_bars(&self, pixmap: &mut Pixmap, placed: &[geometry::Placed<'_>]) {
        self.draw_bars_in(pixmap, placed, &Frame::default());
    }

    fn draw_bars_in(&self, pixmap: &mut Pixmap, placed: &[geometry::Placed<'_>], frame: &Frame) {
        for p in placed {
            let [r, g, b] = self.bar_color(p, frame);
            fill_rect(pixmap, p.rect, [r, g, b, 0xff]);
        }
    }

    /// Draws the bars' labels.
    pub fn draw_labels(
        &self,
        pixmap: &mut Pixmap,
        placed: &[geometry::Placed<'_>],
        fit: &layout::Fit,
    ) {
        let size = fit.font_size as u16;
        for p in placed.iter().filter(|p| !p.label.is_empty()) {
            self.text(pixmap, &p.label, p.label_at[0], p.label_at[1], size, LABEL);
        }
    }

    /// The root bar says how many samples the frame holds.
    fn draw_root_total(
        &self,
        pixmap: &mut Pixmap,
        placed: &[geometry::Placed<'_>],
        fit: &layout::Fit,
        samples: u64,
    ) {
        let Some(root) = placed.iter().find(|p| p.depth == 0) else {
            return;
        };
        let size = fit.font_size as u16;
        let text = format!("all \u{b7} {} samples", layout::fmt_count(samples));
        let room = root.rect[2] - root.label_at[0];
        if self.width_of(&text, size) < room {
            // Over the plain "all" label drawn with the other labels.
            let [r, g, b] = self.bar_color(root, &Frame::default());
            let paint_rect = Rect::from_ltrb(
                root.label_at[0] - 1.0,
                root.rect[1] + 1.0,
                root.label_at[0] + self.width_of("all", size) + 2.0,
                root.rect[3] - 1.0,
            );
            if let Some(rect) = paint_rect {
                let mut paint = Paint::default();
                paint.set_color_rgba8(r, g, b, 0xff);
                pixmap.fill_rect(rect, &paint, Transform::identity(), None);
            }
            self.text(
                pixmap,
                &text,
                root.label_at[0],
                root.label_at[1],
                size,
                LABEL,
            );
        }
    }

    /// The header band, over the graph's top padding: the title with the
    /// run clock, what the frame holds, and the run's progress when known;
    /// and "no samples" on an empty frame.
    pub fn draw_header(&self, pixmap: &mut Pixmap, info: &FrameInfo, empty: bool) {
        let (width, height) = (pixmap.width() as f32, pixmap.height() as f32);
        let s = self.scale;
        let band_h = s.header as f32;
        let mut paint = Paint::default();
        let [r, g, b, a] = self.look.background();
        paint.set_color_rgba8(r, g, b, a);
        let band = Rect::from_xywh(0.0, 0.0, width, band_h).expect("a valid band");
        // Clear, not blend: the graph's top padding may reach under it.
        paint.blend_mode = resvg::tiny_skia::BlendMode::Source;
        pixmap.fill_rect(band, &paint, Transform::identity(), None);
        let (title, subtitle) = info.lines();
        let left = (16.0 * band_h / 96.0).round();
        self.text(
            pixmap,
            &title,
            left,
            band_h * 0.40,
            s.title_font,
            self.look.title(),
        );
        self.text(
            pixmap,
            &subtitle,
            left,
            band_h * 0.78,
            s.subtitle_font,
            self.look.subtitle(),
        );
        if let Some(progress) = info.progress {
            let h = (band_h / 24.0).max(2.0);
            let mut paint = Paint::default();
            let [r, g, b] = PROGRESS;
            paint.set_color_rgba8(r, g, b, 0xff);
            if let Some(rect) =
                Rect::from_xywh(0.0, band_h - h, (width * progress as f32).max(1.0), h)
            {
                pixmap.fill_rect(rect, &paint, Transform::identity(), None);
            }
        }
        if empty {
            let msg = "no samples";
            let size = s.title_font * 3 / 2;
            let w = self.width_of(msg, size);
            self.text(
                pixmap,
                msg,
                width / 2.0 - w / 2.0,
                height / 2.0,
                size,
                self.look.subtitle(),
            );
        }
    }

    /// `--colors comm`: the top processes (1% or more) with their colour and
    /// share, at the header's right, biggest first (read left to right), as
    /// many as fit in the right 45% of the header (six at most).
    fn draw_legend(&self, pixmap: &mut Pixmap, frame: &Frame) {
        let total = frame.tree.total().max(1) as f64;
        let entries: Vec<(String, [u8; 3])> = frame
            .tree
            .processes()
            .into_iter()
            .take(6)
            // A process under 1% is not worth a place in the key.
            .filter(|(_, n)| *n as f64 * 100.0 >= total)
            .map(|(comm, n)| {
                let slot = frame.comm_slots.as_ref().and_then(|s| s.get(comm).copied());
                (
                    format!("{comm} {:.0}%", 100.0 * n as f64 / total),
                    palette::comm_color(comm, slot),
                )
            })
            .collect();
        self.draw_key(pixmap, &entries);
    }

    /// `--colors diff`: what the colours mean, at the header's right.
    fn draw_diff_legend(&self, pixmap: &mut Pixmap) {
        let entries = [
            ("grew or new".to_string(), palette::diff_color(10.0)),
            ("shrank".to_string(), palette::diff_color(-10.0)),
            (
                "steady, vs the last ~4 frames".to_string(),
                palette::diff_color(0.0),
            ),
        ];
        self.draw_key(pixmap, &entries);
    }

    /// A key at the header's right: a swatch and a text per entry, read
    /// left to right, as many entries (in order) as fit in the right 45%
    /// of the header.
    fn draw_key(&self, pixmap: &mut Pixmap, entries: &[(String, [u8; 3])]) {
        let size = self.scale.subtitle_font;
        let gap = f32::from(size);
        let sq = f32::from(size) * 0.8;
        let room = pixmap.width() as f32 * 0.45 - 16.0;
        let mut shown = Vec::new();
        let mut width = 0.0;
        for (text, color) in entries {
            let w = sq * 1.4 + self.width_of(text, size);
            let more = if shown.is_empty() { w } else { w + gap };
            if width + more > room {
                break;
            }
            width += more;
            shown.push((text, *color, w));
        }
        let y = self.scale.header as f32 * 0.40;
        let mut x = pixmap.width() as f32 - 16.0 - width;
        for (text, [r, g, b], w) in shown {
            let mut paint = Paint::default();
            paint.set_color_rgba8(r, g, b, 0xff);
            if let Some(rect) = Rect::from_xywh(x, y - sq, sq, sq) {
                pixmap.fill_rect(rect, &paint, Transform::identity(), None);
            }
            self.text(pixmap, text, x + sq * 1.4, y, size, self.look.title());
            x += w + gap;
        }
    }

    fn width_of(&self, text: &str, size: u16) -> f32 {
        text.chars()
            .map(|c| match self.glyphs.get(&(c, size)) {
                Some(g) => g.advance,
                None => self.font.metrics(c, f32::from(size)).advance_width,
            })
            .sum()
    }

    /// Blends `text` in at baseline `y`, starting at `x`.
    fn text(&self, pixmap: &mut Pixmap, text: &str, x: f32, y: f32, size: u16, color: [u8; 3]) {
        let mut pen = x;
        for c in text.chars() {
            match self.glyphs.get(&(c, size)) {
                Some(g) => {
                    blend(pixmap, g, pen, y, color);
                    pen += g.advance;
                }
                None => {
                    // Outside ASCII or the sizes cached: rasterize now.
                    let g = rasterize(&self.font, c, size);
                    blend(pixmap, &g, pen, y, color);
                    pen += g.advance;
                }
            }
        }
    }
}

/// Fills an axis-aligned rectangle with a colour (premultiplied), row by
/// row: the pixels whose centres are inside it, as a non-anti-aliased path
/// fill covers them. Nothing is blended: bars are opaque, and clearing
/// writes the background as it is.
fn fill_rect(pixmap: &mut Pixmap, rect: [f32; 4], rgba: [u8; 4]) {
    let (w, h) = (pixmap.width() as i64, pixmap.height() as i64);
    let edge = |v: f32, max: i64| ((v + 0.5).floor() as i64).clamp(0, max);
    let [x1, y1, x2, y2] = rect;
    let (x0, x1) = (edge(x1, w) as usize, edge(x2, w) as usize);
    let (y0, y1) = (edge(y1, h) as usize, edge(y2, h) as usize);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let stride = w as usize * 4;
    let data = pixmap.data_mut();
    let first = y0 * stride;
    for px in data[first + x0 * 4..first + x1 * 4].chunks_exact_mut(4) {
        px.copy_from_slice(&rgba);
    }
    for y in y0 + 1..y1 {
        data.copy_within(first + x0 * 4..first + x1 * 4, y * stride + x0 * 4);
    }
}

fn rasterize(font: &fontdue::Font, c: char, size: u16) -> Glyph {
    let (m, coverage) = font.rasterize(c, f32::from(size));
    Glyph {
        xmin: m.xmin,
        ymin: m.ymin,
        width: m.width,
        height: m.height,
        advance: m.advance_width,
        coverage,
    }
}

/// Source-over of a coverage mask in `color`.
fn blend(pixmap: &mut Pixmap, g: &Glyph, pen: f32, baseline: f32, color: [u8; 3]) {
    let (w, h) = (pixmap.width() as i32, pixmap.height() as i32);
    let left = pen.round() as i32 + g.xmin;
    let top = baseline.round() as i32 - g.height as i32 - g.ymin;
    let data = pixmap.data_mut();
    for row in 0..g.height as i32 {
        let y = top + row;
        if y < 0 || y >= h {
            continue;
        }
        for col in 0..g.width as i32 {
            let x = left + col;
            if x < 0 || x >= w {
                continue;
            }
            let a = u32::from(g.coverage[(row as usize) * g.width + col as usize]);
            if a == 0 {
                continue;
            }
            // Source-over onto premultiplied RGBA (also over transparent
            // pixels, for --background transparent).
            let i = ((y * w + x) * 4) as usize;
            for ch in 0..3 {
                let dst = u32::from(data[i + ch]);
                data[i + ch] = ((u32::from(color[ch]) * a + dst * (255 - a) + 127) / 255) as u8;
            }
            let dst_a = u32::from(data[i + 3]);
            data[i + 3] = (a + (dst_a * (255 - a) + 127) / 255) as u8;
        }
    }
}

/// The colour of bar `node` of a frame in a `--colors` mode: the one rule
/// for PNG frames, video and the live page.
pub fn bar_color(colors: Colors, frame: &Frame, node: usize) -> [u8; 3] {
    let nodes = frame.tree.nodes();
    let n = &nodes[node];
    match colors {
        Colors::Hot => palette::color(&n.name),
        Colors::Kernel => palette::kernel_color(&n.name),
        Colors::Comm => {
            if n.depth == 0 {
                return [0xb0, 0xb0, 0xb0];
            }
            let comm: &str = &nodes[n.comm as usize].name;
            let slot = frame.comm_slots.as_ref().and_then(|s| s.get(comm).copied());
            let base = palette::comm_color(comm, slot);
            if n.depth == 1 {
                base
            } else {
                palette::shade(base, &n.name)
            }
        }
        Colors::Diff => {
            let d = frame
                .deltas
                .as_ref()
                .and_then(|d| d.get(&n.hash).copied())
                .unwrap_or(0.0);
            palette::diff_color(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lines: &[&str], canvas: Canvas) -> Frame {
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        let depth = lines
            .iter()
            .map(|l| l.split(';').count())
            .max()
            .unwrap_or(1);
        let info = FrameInfo {
            samples: 10,
            ..Default::default()
        };
        Frame::from_lines(&lines, layout::fit_canvas(canvas, depth), info)
    }

    #[test]
    fn a_reused_canvas_draws_what_a_fresh_one_does() {
        let canvas = Canvas {
            width: 640,
            height: 360,
        };
        let r = DirectRenderer::new(canvas).unwrap();
        let full = frame(&["c;a;b;c;d;e;f 5", "c;x;y 5", "d;q 3"], canvas);
        let small = frame(&["c;a 1"], canvas);
        let empty = frame(&[], canvas);
        for f in [&full, &small, &empty, &full, &small] {
            let reused = r.with_canvas(f, |p| p.data().to_vec()).unwrap();
            assert!(reused == r.pixmap(f).unwrap().data(), "{:?}", f.lines());
        }
    }
}
