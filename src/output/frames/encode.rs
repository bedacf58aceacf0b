//! Frame pixels to bytes: PNG, JPEG and the raw RGBA ffmpeg reads. Each
//! render thread converts through one buffer it keeps, so a frame costs no
//! fresh multi-megabyte allocation (and its page faults).

use std::cell::RefCell;

use anyhow::{Context, Result};
use resvg::tiny_skia::Pixmap;

thread_local! {
    /// The thread's conversion buffer (RGB or straight RGBA).
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the thread's conversion buffer.
fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUFFER.with(|b| f(&mut b.borrow_mut()))
}

/// An opaque pixmap's RGB bytes (its alpha is 255 everywhere, so
/// premultiplied and straight are the same).
pub fn rgb_into(pixmap: &Pixmap, out: &mut Vec<u8>) {
    let data = pixmap.data();
    out.resize(data.len() / 4 * 3, 0);
    for (d, s) in out.chunks_exact_mut(3).zip(data.chunks_exact(4)) {
        d.copy_from_slice(&s[..3]);
    }
}

/// Straight (not premultiplied) RGBA, as PNG and ffmpeg's `rgba` want.
pub fn straight_rgba_into(pixmap: &Pixmap, out: &mut Vec<u8>) {
    let data = pixmap.data();
    out.clear();
    out.extend_from_slice(data);
    for px in out.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        if a != 255 && a != 0 {
            for c in &mut px[..3] {
                *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
}

/// What a frame holds, for the choice of PNG row filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Many bars and labels: each row's best filter (adaptive).
    Busy,
    /// A few bars on the background: rows are runs of one colour, which
    /// the Sub filter turns to zeros at a third less CPU than trying every
    /// filter (files about a third larger, still small).
    Sparse,
}

fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    data: &[u8],
    content: Content,
) -> Result<Vec<u8>> {
    // Small to start: a near-empty frame is tens of kilobytes, and a large
    // first allocation is an mmap and page faults on every frame.
    let mut out = Vec::with_capacity(64 << 10);
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    // fdeflate with adaptive filters: Up or Sub alone (png's "Fastest")
    // made flame-graph frames 1.7-2.5x larger and no faster.
    enc.set_compression(png::Compression::Fast);
    if content == Content::Sparse {
        enc.set_filter(png::Filter::Sub);
    }
    let mut w = enc.write_header().context("PNG header")?;
    w.write_image_data(data).context("PNG data")?;
    w.finish().context("PNG end")?;
    Ok(out)
}

/// PNG, fast compression (tiny-skia's own encoder is ~10x slower),
/// straight from the opaque pixmap's RGBA.
pub fn encode_png(pixmap: &Pixmap) -> Result<Vec<u8>> {
    encode_png_of(pixmap, Content::Busy)
}

/// [`encode_png`] with the filters for `content`.
pub fn encode_png_of(pixmap: &Pixmap, content: Content) -> Result<Vec<u8>> {
    png(
        pixmap.width(),
        pixmap.height(),
        png::ColorType::Rgba,
        pixmap.data(),
        content,
    )
}

/// PNG with alpha (`--background transparent`).
pub fn encode_png_rgba(pixmap: &Pixmap) -> Result<Vec<u8>> {
    with_buffer(|rgba| {
        straight_rgba_into(pixmap, rgba);
        png(
            pixmap.width(),
            pixmap.height(),
            png::ColorType::Rgba,
            rgba,
            Content::Busy,
        )
    })
}

/// JPEG (the live feed's MJPEG stream).
pub fn encode_jpeg(pixmap: &Pixmap) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // Labels are thin dark strokes on saturated bars: quality 92 without
    // chroma subsampling keeps them sharp (at 85 with 4:2:0 they blurred).
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 92);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    with_buffer(|rgb| {
        rgb_into(pixmap, rgb);
        enc.encode(
            rgb,
            pixmap.width() as u16,
            pixmap.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
    })
    .context("JPEG encoding")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use resvg::tiny_skia::Color;

    #[test]
    fn straight_alpha_undoes_premultiplication() {
        let mut p = Pixmap::new(2, 1).unwrap();
        p.fill(Color::from_rgba8(200, 100, 50, 128));
        let mut out = Vec::new();
        straight_rgba_into(&p, &mut out);
        for c in out.chunks_exact(4) {
            assert_eq!(c[3], 128);
            assert!(c[0].abs_diff(200) <= 2 && c[1].abs_diff(100) <= 2, "{c:?}");
        }
        let png = encode_png_rgba(&p).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
