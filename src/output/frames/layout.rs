//! The fixed canvas of a video frame: how a flame graph of any depth fits it,
//! and what the header band says. Canvas and font metrics live here only.

use std::time::Duration;

/// Default `--width`.
pub const DEFAULT_WIDTH: u32 = 1920;
/// Default `--height`.
pub const DEFAULT_HEIGHT: u32 = 1080;
/// Height of the header band at 1080p (it scales with the canvas, see
/// [`Scale`]); the smallest canvas must leave room under it.
pub const HEADER_HEIGHT: u32 = 96;
/// Width of one DejaVu Sans Mono glyph, in em (a little over its 0.602 so
/// inferno's truncation never overflows a bar).
pub const FONT_WIDTH: f64 = 0.62;
/// The monospace family the frames use (Debian's fonts-dejavu-core).
pub const FONT_FAMILY: &str = "DejaVu Sans Mono";
/// Bars narrower than this many pixels are left out of PNG frames: a raster
/// frame can't draw them as bars (FlameGraph's `--minwidth`, in pixels).
/// Interactive SVG frames keep inferno's default, as zooming reveals them.
pub const MIN_BAR_PX: f64 = 1.0;
/// inferno's horizontal padding on each side.
pub const XPAD: f64 = 10.0;

/// [`MIN_BAR_PX`] as inferno's `min_width`, a percentage of the graph width.
pub fn min_width_percent(canvas_width: u32) -> f64 {
    100.0 * MIN_BAR_PX / (f64::from(canvas_width) - 2.0 * XPAD).max(1.0)
}

/// Background of the canvas and header band (light theme).
pub const BACKGROUND: &str = "#f8f8f8";

/// A frame's pixel size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
        }
    }
}

/// Sizes that scale with the canvas height, so a frame reads the same from
/// the back of a hall at 720p, 1080p or 4K: at 1080p labels are 16 to 22 px
/// on bars of 22 to 44 px, and twice that at 4K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Height of the header band.
    pub header: u32,
    /// Smallest bar height: below it, stacks are cut rather than shrunk.
    pub min_bar: usize,
    /// Largest bar height: a shallow graph stops growing here.
    pub max_bar: usize,
    /// Smallest label size.
    pub min_font: usize,
    /// Largest label size.
    pub max_font: usize,
    /// Header title size.
    pub title_font: u16,
    /// Header second line size.
    pub subtitle_font: u16,
}

impl Scale {
    /// The sizes for a canvas.
    pub fn of(canvas: Canvas) -> Scale {
        let k = f64::from(canvas.height) / 1080.0;
        let px = |v: f64, min: f64| (v * k).round().max(min);
        Scale {
            header: px(f64::from(HEADER_HEIGHT), 40.0) as u32,
            min_bar: px(22.0, 10.0) as usize,
            max_bar: px(64.0, 12.0) as usize,
            min_font: px(16.0, 8.0) as usize,
            max_font: px(26.0, 9.0) as usize,
            title_font: px(30.0, 12.0) as u16,
            subtitle_font: px(22.0, 10.0) as u16,
        }
    }

    /// Every label and header size a canvas uses (for glyph caches).
    pub fn font_sizes(&self) -> Vec<u16> {
        let mut v: Vec<u16> = (self.min_font..=self.max_font).map(|s| s as u16).collect();
        v.extend([self.title_font, self.subtitle_font, self.title_font * 3 / 2]);
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// How the flame graph fits the space under the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Bar height in pixels.
    pub frame_height: usize,
    /// Label font size in pixels.
    pub font_size: usize,
    /// Stacks deeper than this many frames are cut (None: nothing cut).
    pub depth_cap: Option<usize>,
}

/// inferno's padding below the graph for a font size (upright graph).
fn bottom_pad(font_size: usize) -> usize {
    2 * font_size + 10
}

/// Fits a flame graph `depth` frames deep (the root bar comes on top of
/// that) into a canvas: bars as tall as the space allows, between the
/// scale's smallest and largest, labels in proportion; deeper than the
/// smallest bars allow, stacks are cut.
pub fn fit_canvas(canvas: Canvas, depth: usize) -> Fit {
    let scale = Scale::of(canvas);
    let space = (canvas.height as usize).saturating_sub(scale.header as usize);
    let levels = depth + 1;
    let mut font_size = scale.max_font;
    let mut frame_height = scale.max_bar;
    for _ in 0..3 {
        let avail = space.saturating_sub(bottom_pad(font_size));
        frame_height = (avail / levels.max(1)).clamp(scale.min_bar, scale.max_bar);
        font_size = (frame_height * 7 / 10).clamp(scale.min_font, scale.max_font);
    }
    let room = space.saturating_sub(bottom_pad(font_size)) / frame_height;
    let depth_cap = (levels > room).then(|| room.saturating_sub(1).max(1));
    Fit {
        frame_height,
        font_size,
        depth_cap,
    }
}

/// What the header band of a frame says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameInfo {
    /// Frame number as in the file name (not drawn: the clock tells time).
    pub number: u64,
    /// What is profiled: "all threads", "PID 123", ...
    pub target: String,
    /// `--title`, or the default title (target, command line, host).
    pub title: String,
    /// Time range the frame covers, from the start of sampling.
    pub start: Duration,
    /// Length of that range.
    pub duration: Duration,
    /// Samples drawn in the frame.
    pub samples: u64,
    /// Samples of the frame's own interval.
    pub interval_samples: u64,
    /// Length of the frame's own interval.
    pub interval: Duration,
    /// Samples the frame's interval lost, with the reason.
    pub lost: Option<String>,
    /// `--frame-mode`, when not the default.
    pub mode: Option<String>,
    /// The counts are weighted (decay mode), not samples.
    pub weighted: bool,
    /// Depth cap applied, if any.
    pub depth_cap: Option<usize>,
    /// Where the frame is in the run, 0 to 1, when the run's length is
    /// known (render); drawn as a progress bar.
    pub progress: Option<f64>,
}

/// `mm:ss` (or `h:mm:ss`) of a run time.
pub fn clock(t: Duration) -> String {
    let s = t.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

impl FrameInfo {
    /// The header's two lines: the title with the clock, then what the
    /// frame holds.
    pub fn lines(&self) -> (String, String) {
        let end = self.start + self.duration;
        let title = if self.title.is_empty() {
            &self.target
        } else {
            &self.title
        };
        let first = format!("{}  {}", clock(end), title);
        let secs = self.interval.as_secs_f64();
        let rate = if secs > 0.0 {
            self.interval_samples as f64 / secs
        } else {
            0.0
        };
        let mut second = if self.samples == 0 {
            "no samples".to_string()
        } else if self.weighted {
            format!(
                "{} samples/s \u{b7} weighted total {}",
                fmt_count(rate.round() as u64),
                fmt_count(self.samples)
            )
        } else {
            format!(
                "{} samples \u{b7} {} samples/s",
                fmt_count(self.samples),
                fmt_count(rate.round() as u64)
            )
        };
        second.push_str(&format!(
            " \u{b7} {:.1}s \u{2013} {:.1}s",
            self.start.as_secs_f64(),
            end.as_secs_f64()
        ));
        if let Some(mode) = &self.mode {
            second.push_str(&format!(" \u{b7} {mode}"));
        }
        if let Some(lost) = &self.lost {
            second.push_str(&format!(" \u{b7} LOST {lost}"));
        }
        if let Some(cap) = self.depth_cap {
            second.push_str(&format!(" \u{b7} stacks cut at {cap} frames"));
        }
        (first, second)
    }
}

/// 12345 -> "12,345".
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_graphs_get_the_largest_bars() {
        let f = fit_canvas(Canvas::default(), 10);
        let s = Scale::of(Canvas::default());
        assert_eq!(f.frame_height, s.max_bar);
        assert_eq!(f.font_size, s.max_font);
        assert_eq!(f.depth_cap, None);
    }

    #[test]
    fn graphs_fill_the_height_then_cap() {
        let c = Canvas::default();
        let s = Scale::of(c);
        for depth in [10, 20, 30, 40, 60, 100, 150, 500] {
            let f = fit_canvas(c, depth);
            let shown = f.depth_cap.unwrap_or(depth);
            let height = (shown + 1) * f.frame_height + bottom_pad(f.font_size);
            assert!(
                height <= (c.height - s.header) as usize,
                "depth {depth}: {f:?} needs {height}"
            );
            assert!(f.frame_height >= s.min_bar && f.font_size >= 16);
            if f.depth_cap.is_none() && f.frame_height < s.max_bar {
                // Bars grow until the graph fills the height.
                assert!(height + shown + 1 > (c.height - s.header) as usize - f.frame_height);
            }
        }
        assert!(fit_canvas(c, 30).depth_cap.is_none());
        assert!(fit_canvas(c, 500).depth_cap.is_some());
    }

    #[test]
    fn type_scales_with_the_canvas() {
        let hd = fit_canvas(Canvas::default(), 20);
        let uhd = fit_canvas(
            Canvas {
                width: 3840,
                height: 2160,
            },
            20,
        );
        assert!(hd.font_size >= 16);
        // Twice the size, give or take inferno's fixed 10 px bottom pad.
        let ratio = |a: usize, b: usize| a as f64 / b as f64;
        assert!(
            (ratio(uhd.font_size, hd.font_size) - 2.0).abs() < 0.1,
            "{hd:?} {uhd:?}"
        );
        assert!((ratio(uhd.frame_height, hd.frame_height) - 2.0).abs() < 0.1);
        let (a, b) = (
            fit_canvas(Canvas::default(), 6),
            fit_canvas(
                Canvas {
                    width: 3840,
                    height: 2160,
                },
                6,
            ),
        );
        assert_eq!(
            (b.font_size, b.frame_height),
            (2 * a.font_size, 2 * a.frame_height)
        );
    }

    #[test]
    fn header_lines() {
        let info = FrameInfo {
            target: "all threads".into(),
            title: "xz vs gzip".into(),
            start: Duration::from_millis(83_500),
            duration: Duration::from_millis(500),
            samples: 12_345,
            interval_samples: 12_345,
            interval: Duration::from_millis(500),
            ..Default::default()
        };
        let (a, b) = info.lines();
        assert_eq!(a, "01:24  xz vs gzip");
        assert!(
            b.starts_with("12,345 samples \u{b7} 24,690 samples/s"),
            "{b}"
        );
        let w = FrameInfo {
            weighted: true,
            ..info
        };
        assert!(w.lines().1.contains("weighted"));
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }
}
