//! The fixed canvas of a video frame: how a flame graph of any depth fits it,
//! and what the header band says. Canvas and font metrics live here only.

use std::collections::HashMap;
use std::time::Duration;

use crate::output::folded::folded_stack;
use crate::output::StackFormat;
use crate::profile::Profile;

/// Default `--width`.
pub const DEFAULT_WIDTH: u32 = 1920;
/// Default `--height`.
pub const DEFAULT_HEIGHT: u32 = 1080;
/// Height of the header band at the top of every PNG frame.
pub const HEADER_HEIGHT: u32 = 72;
/// Frame (bar) height when the stacks are shallow enough.
const MAX_FRAME_HEIGHT: usize = 18;
/// Below this, bars are capped in number instead of shrunk.
const MIN_FRAME_HEIGHT: usize = 6;
/// Label size when bars are tall enough for it.
const MAX_FONT_SIZE: usize = 13;
/// Smallest label size.
const MIN_FONT_SIZE: usize = 5;
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

/// Background of the canvas and header band.
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

/// inferno's vertical padding for a font size (no subtitle, upright graph):
/// three font heights on top, two plus 10 px below.
fn pads(font_size: usize) -> usize {
    3 * font_size + 2 * font_size + 10
}

/// Fits a flame graph whose deepest stack has `depth` frames into `space`
/// pixels: inferno draws depth + 1 levels (its root "all" included).
pub fn fit(space: u32, depth: usize) -> Fit {
    let space = space as usize;
    let mut font_size = MAX_FONT_SIZE;
    let mut frame_height = MAX_FRAME_HEIGHT;
    for _ in 0..3 {
        let avail = space.saturating_sub(pads(font_size));
        frame_height = (avail / (depth + 2)).clamp(MIN_FRAME_HEIGHT, MAX_FRAME_HEIGHT);
        font_size = frame_height
            .saturating_sub(3)
            .clamp(MIN_FONT_SIZE, MAX_FONT_SIZE);
    }
    let levels = space.saturating_sub(pads(font_size)) / frame_height;
    let depth_cap = (depth + 2 > levels).then(|| levels.saturating_sub(2).max(1));
    Fit {
        frame_height,
        font_size,
        depth_cap,
    }
}

/// A frame's stacks, folded (without counts), with their counts: built once
/// per frame, then measured ([`max_depth`]) and cut ([`frame_lines`]).
pub fn folded_stacks(profile: &Profile, fmt: &StackFormat) -> Vec<(String, u64)> {
    profile
        .counts
        .iter()
        .map(|(key, n)| (folded_stack(key, fmt), *n))
        .collect()
}

/// Frames in the deepest of the stacks (comm included).
pub fn max_depth(stacks: &[(String, u64)]) -> usize {
    stacks
        .iter()
        .map(|(s, _)| s.matches(';').count() + 1)
        .max()
        .unwrap_or(0)
}

/// The folded lines of a frame (`stack count`, sorted), cut to `depth_cap`
/// frames (root side kept) and merged.
pub fn frame_lines(stacks: Vec<(String, u64)>, depth_cap: Option<usize>) -> Vec<String> {
    let mut merged: HashMap<String, u64> = HashMap::new();
    for (mut stack, n) in stacks {
        if let Some(cap) = depth_cap {
            // `cap` frames end at the cap-th `;` (the comm is a frame too).
            if let Some((i, _)) = stack.match_indices(';').nth(cap.saturating_sub(1)) {
                stack.truncate(i);
            }
        }
        *merged.entry(stack).or_insert(0) += n;
    }
    let mut lines: Vec<String> = merged
        .into_iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    lines.sort_unstable();
    lines
}

/// What the header band of a frame says.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInfo {
    /// Frame number as in the file name.
    pub number: u64,
    /// What is profiled: "all threads", "PID 123", ...
    pub target: String,
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
    /// Depth cap applied, if any.
    pub depth_cap: Option<usize>,
}

impl FrameInfo {
    /// The header's two lines.
    pub fn lines(&self) -> (String, String) {
        let end = self.start + self.duration;
        let mut first = format!(
            "{} \u{b7} {:.2}s \u{2013} {:.2}s",
            self.target,
            self.start.as_secs_f64(),
            end.as_secs_f64()
        );
        if let Some(mode) = &self.mode {
            first.push_str(&format!(" \u{b7} {mode}"));
        }
        let secs = self.interval.as_secs_f64();
        let rate = if secs > 0.0 {
            self.interval_samples as f64 / secs
        } else {
            0.0
        };
        let mut second = if self.samples == 0 {
            "no samples".to_string()
        } else {
            format!("{} samples \u{b7} {rate:.0} samples/s", self.samples)
        };
        if let Some(lost) = &self.lost {
            second.push_str(&format!(" \u{b7} LOST {lost}"));
        }
        if let Some(cap) = self.depth_cap {
            second.push_str(&format!(" \u{b7} stacks cut at {cap} frames"));
        }
        second.push_str(&format!(" \u{b7} frame {}", self.number));
        (first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_graphs_get_full_bars() {
        let f = fit(1080 - HEADER_HEIGHT, 10);
        assert_eq!(f.frame_height, MAX_FRAME_HEIGHT);
        assert_eq!(f.font_size, MAX_FONT_SIZE);
        assert_eq!(f.depth_cap, None);
    }

    #[test]
    fn deep_graphs_shrink_then_cap() {
        let space = 1080 - HEADER_HEIGHT;
        for depth in [40, 60, 100, 150, 500] {
            let f = fit(space, depth);
            let shown = f.depth_cap.unwrap_or(depth);
            let height = (shown + 2) * f.frame_height + pads(f.font_size);
            assert!(
                height <= space as usize,
                "depth {depth}: {f:?} needs {height}"
            );
            assert!(f.frame_height >= MIN_FRAME_HEIGHT);
        }
        assert!(fit(space, 60).depth_cap.is_none());
        assert!(fit(space, 500).depth_cap.is_some());
    }

    #[test]
    fn cutting_keeps_the_root_side_and_merges() {
        use crate::profile::{Frame, Stack, StackKey};
        let mut p = Profile::default();
        for leaf in ["x", "y"] {
            p.add(
                StackKey {
                    comm: "c".into(),
                    pid: 1,
                    user: Stack::Frames(vec![
                        Frame::from(leaf),
                        Frame::from("b"),
                        Frame::from("a"),
                    ]),
                    kernel: Stack::Absent,
                },
                2,
            );
        }
        let stacks = folded_stacks(&p, &StackFormat::default());
        assert_eq!(max_depth(&stacks), 4);
        assert_eq!(
            frame_lines(stacks.clone(), None),
            vec!["c;a;b;x 2", "c;a;b;y 2"]
        );
        assert_eq!(frame_lines(stacks, Some(3)), vec!["c;a;b 4"]);
    }
}
