//! Picks the renderer for raster frames (`--renderer`): the direct one by
//! default, the SVG route on request. `.svg` frames always come from inferno.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use resvg::tiny_skia::Pixmap;

use super::layout::Canvas;
use super::raster::DirectRenderer;
use super::svg::{encode_jpeg, encode_png, SvgRenderer};
use super::Frame;

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
}

impl FrameRenderer {
    /// Loads fonts (and, for the direct renderer, rasterizes glyphs) once.
    pub fn new(canvas: Canvas, kind: RendererKind) -> Result<FrameRenderer> {
        Ok(FrameRenderer {
            svg: SvgRenderer::new(canvas)?,
            direct: match kind {
                RendererKind::Direct => Some(DirectRenderer::new(canvas)?),
                RendererKind::Svg => None,
            },
        })
    }

    fn pixmap(&self, f: &Frame) -> Result<Pixmap> {
        match &self.direct {
            Some(d) => d.pixmap_frame(&f.lines, &f.fit, &f.info),
            None => self.svg.pixmap_frame(&f.lines, &f.fit, &f.info),
        }
    }

    /// The frame as PNG.
    pub fn png(&self, f: &Frame) -> Result<Vec<u8>> {
        encode_png(&self.pixmap(f)?)
    }

    /// The frame as JPEG.
    pub fn jpeg(&self, f: &Frame) -> Result<Vec<u8>> {
        encode_jpeg(&self.pixmap(f)?)
    }

    /// The frame as the live page shows it (fluid width, screen-sized
    /// labels).
    pub fn page_svg(&self, f: &Frame) -> Result<Vec<u8>> {
        self.svg.page_svg(&f.lines, &f.info)
    }

    /// The frame as inferno's interactive SVG.
    pub fn svg(&self, f: &Frame) -> Result<Vec<u8>> {
        self.svg.svg_frame(&f.lines, &f.fit, &f.info)
    }
}
