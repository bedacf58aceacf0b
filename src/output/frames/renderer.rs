//! Picks the renderer for raster frames (`--renderer`): the direct one by
//! default, the SVG route on request. `.svg` frames always come from inferno.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use resvg::tiny_skia::Pixmap;

use super::encode::{encode_png_of, Content};
use super::layout::Canvas;
use super::palette::{Colors, Look};
use super::raster::DirectRenderer;
use super::svg::{encode_jpeg, encode_png_rgba, SvgRenderer};
use super::Frame;

/// Frames of fewer bars than this are encoded as [`Content::Sparse`].
const SPARSE_BARS: usize = 64;

/// `--renderer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RendererKind {
    /// Bars and glyphs straight into a pixmap (the default).
    #[default]
    Direct,
    /// inferno's SVG rasterized by resvg (the reference).
    Svg,
}

impl FromStr for RendererKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(RendererKind::Direct),
            "svg" => Ok(RendererKind::Svg),
            _ => Err(format!("unknown renderer {s:?}; expected direct or svg")),
        }
    }
}

impl fmt::Display for RendererKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RendererKind::Direct => "direct",
            RendererKind::Svg => "svg",
        })
    }
}

/// Renders frames as PNG, JPEG or SVG; built once, shared by render threads.
pub struct FrameRenderer {
    svg: SvgRenderer,
    direct: Option<DirectRenderer>,
    look: Look,
}

/// Whether the SVG route can draw a colour mode: it colours by function
/// name only, so per-process and differential colours need the direct
/// renderer (and PNG frames).
pub fn svg_supports(colors: Colors) -> bool {
    matches!(colors, Colors::Hot | Colors::Kernel)
}

impl FrameRenderer {
    /// Loads fonts (and, for the direct renderer, rasterizes glyphs) once.
    pub fn new(canvas: Canvas, kind: RendererKind, look: Look) -> Result<FrameRenderer> {
        Ok(FrameRenderer {
            svg: SvgRenderer::with_look(canvas, look)?,
            direct: match kind {
                RendererKind::Direct => Some(DirectRenderer::with_look(canvas, look)?),
                RendererKind::Svg => None,
            },
            look,
        })
    }

    /// The frame as a new pixmap (premultiplied RGBA).
    pub fn pixmap(&self, f: &Frame) -> Result<Pixmap> {
        match &self.direct {
            Some(d) => d.pixmap(f),
            None => self.svg.pixmap_frame(&f.lines(), &f.fit, &f.info),
        }
    }

    /// Runs `out` on the frame's pixels: drawn on the render thread's own
    /// canvas (direct renderer), or a pixmap of the SVG route.
    pub fn with_pixels<R>(&self, f: &Frame, out: impl FnOnce(&Pixmap) -> R) -> Result<R> {
        match &self.direct {
            Some(d) => d.with_canvas(f, out),
            None => Ok(out(&self.pixmap(f)?)),
        }
    }

    /// The frame as PNG (with alpha for `--background transparent`).
    pub fn png(&self, f: &Frame) -> Result<Vec<u8>> {
        let transparent = self.look.transparent;
        let content = if f.tree.nodes().len() < SPARSE_BARS {
            Content::Sparse
        } else {
            Content::Busy
        };
        self.with_pixels(f, |pixmap| {
            if transparent {
                encode_png_rgba(pixmap)
            } else {
                encode_png_of(pixmap, content)
            }
        })?
    }

    /// The frame as JPEG.
    pub fn jpeg(&self, f: &Frame) -> Result<Vec<u8>> {
        self.with_pixels(f, encode_jpeg)?
    }

    /// The frame as the live page shows it (fluid width, screen-sized
    /// labels).
    pub fn page_svg(&self, f: &Frame) -> Result<Vec<u8>> {
        self.svg.page_svg(&f.lines(), &f.info)
    }

    /// The frame as inferno's interactive SVG.
    pub fn svg(&self, f: &Frame) -> Result<Vec<u8>> {
        self.svg.svg_frame(&f.lines(), &f.fit, &f.info)
    }
}
