//! Frame options shared by `-E` and `render`.

use anyhow::{bail, Result};
use clap::Args;

use crate::output::frames::layout::{self, Canvas, HEADER_HEIGHT};
use crate::output::frames::palette::{Colors, Look, Theme};
use crate::output::frames::pattern::FramePattern;
use crate::output::frames::renderer::RendererKind;
use crate::output::frames::FramesConfig;
use crate::output::StackFormat;
use crate::profile::modes::FrameMode;

/// The sample rate of a run that makes frames, a video or a live page
/// when neither -F nor -c is given (the text report keeps profile.py's
/// 49 Hz). Chosen by measurement (tests/frames_audience.rs): at 49 Hz an
/// interval has too few samples and bars jump from frame to frame.
pub const DEFAULT_VIDEO_FREQUENCY: u64 = 199;

/// Seconds of samples a frame shows when --frame-mode is not given: a
/// window of this many seconds' intervals (window:4 at 0.5 s intervals,
/// window:2 at 1 s). Measured (tests/frames_audience.rs) on a phased
/// whole-system recording at 199 Hz and 1080p: one interval a frame moved
/// a process's bar a median 27 px between frames (106 px at 49 Hz), a 2 s
/// window 19 px; the header names the window.
pub const DEFAULT_WINDOW_SECS: f64 = 2.0;

/// The frame mode when --frame-mode is not given, for frames that each
/// stand for `interval` seconds.
pub fn default_frame_mode(interval: f64) -> FrameMode {
    let n = (DEFAULT_WINDOW_SECS / interval.max(0.001)).round();
    if n <= 1.0 {
        FrameMode::Interval
    } else {
        FrameMode::Window(n.min(1000.0) as usize)
    }
}

/// The largest canvas: 8K UHD.
pub const MAX_WIDTH: u32 = 7680;
/// See [`MAX_WIDTH`].
pub const MAX_HEIGHT: u32 = 4320;
/// The largest first frame number: twelve digits, the widest `%0Nd` allows.
pub const MAX_START_NUMBER: u64 = 999_999_999_999;

/// How frames look and are numbered.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Frames and video")]
pub struct FrameOptions {
    /// What a frame shows: interval, cumulative, window:N (last N intervals)
    /// or decay:F [default: the last 2 s, e.g. window:4 at 0.5 s intervals;
    /// `interval` for one interval a frame].
    #[arg(long, value_name = "MODE")]
    pub frame_mode: Option<FrameMode>,

    /// Replace (remove) existing frames that match the pattern.
    #[arg(long)]
    pub overwrite: bool,

    /// Number of the first frame.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub start_number: u64,

    /// Frame width in pixels (even, for h264).
    #[arg(long, value_name = "PX", default_value_t = layout::DEFAULT_WIDTH)]
    pub width: u32,

    /// Frame height in pixels (even, for h264). Labels and bars scale with it.
    #[arg(long, value_name = "PX", default_value_t = layout::DEFAULT_HEIGHT)]
    pub height: u32,

    /// A canvas preset instead of --width/--height: 720p, 1080p, 1440p or 4k.
    #[arg(long, value_name = "SIZE", conflicts_with_all = ["width", "height"])]
    pub size: Option<SizePreset>,

    /// Title in each frame's header [default: the target and the host].
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// Bar colours: hot (by function name), comm (by process, with a
    /// legend), kernel (kernel orange, user red) or diff (red grew, blue
    /// shrank against the last ~4 frames, with a legend).
    #[arg(long, value_enum, value_name = "MODE", default_value = "hot")]
    pub colors: Colors,

    /// flame: the root at the bottom, stacks growing up; icicle: the root at
    /// the top, stacks growing down.
    #[arg(long, value_enum, value_name = "ORIENTATION", default_value = "flame")]
    pub orientation: Orientation,

    /// Frame theme.
    #[arg(long, value_enum, value_name = "THEME", default_value = "light")]
    pub theme: Theme,

    /// Frame background: the theme's, or transparent (PNG with alpha, for
    /// compositing in a video editor).
    #[arg(long, value_enum, value_name = "BG", default_value = "theme")]
    pub background: Background,

    /// How PNG frames are drawn: direct (fast) or svg (inferno + resvg, the reference).
    #[arg(long, value_name = "RENDERER", default_value = "direct")]
    pub renderer: RendererKind,

    /// Video speed against real time (`-o talk.mp4`): 2 plays a run twice as
    /// fast; 1 shows each interval for its own length.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,

    /// Threads rendering frames (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub render_threads: usize,
}

/// `--size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SizePreset {
    /// 1280x720.
    #[value(name = "720p")]
    P720,
    /// 1920x1080.
    #[value(name = "1080p")]
    P1080,
    /// 2560x1440.
    #[value(name = "1440p")]
    P1440,
    /// 3840x2160.
    #[value(name = "4k")]
    K4,
}

impl SizePreset {
    fn canvas(self) -> Canvas {
        let (width, height) = match self {
            SizePreset::P720 => (1280, 720),
            SizePreset::P1080 => (1920, 1080),
            SizePreset::P1440 => (2560, 1440),
            SizePreset::K4 => (3840, 2160),
        };
        Canvas { width, height }
    }
}

/// `--orientation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Orientation {
    /// Root at the bottom.
    Flame,
    /// Root at the top.
    Icicle,
}

/// `--background`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Background {
    /// The theme's background.
    Theme,
    /// Transparent (PNG frames with alpha).
    Transparent,
}

/// The default frame title: what is profiled, and on which host.
pub fn default_title(target: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if host.is_empty() {
        target.to_string()
    } else {
        format!("{target} on {host}")
    }
}

impl FrameOptions {
    /// The video output `-o PATH` asks for, if PATH names a video: frames
    /// at `interval` seconds of run time each, played at `--speed`.
    pub fn video_config(
        &self,
        path: &std::path::Path,
        format: StackFormat,
        target: String,
        interval: f64,
    ) -> Result<Option<crate::output::video::VideoConfig>> {
        let Some(vf) = crate::output::video::VideoFormat::from_path(path) else {
            return Ok(None);
        };
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1000.0) {
            bail!("--speed must be a positive number up to 1000");
        }
        let fps = self.speed / interval;
        if !(0.01..=240.0).contains(&fps) {
            bail!("--speed {} at {interval} s intervals gives {fps} frames per second; keep it between 0.01 and 240", self.speed);
        }
        let frames = self.frames_config(
            crate::output::frames::pattern::DEFAULT_PATTERN,
            format,
            target,
            interval,
        )?;
        Ok(Some(crate::output::video::VideoConfig {
            path: path.to_path_buf(),
            format: vf,
            frames,
            fps,
            overwrite: self.overwrite,
        }))
    }

    /// The canvas asked for.
    pub fn canvas(&self) -> Canvas {
        self.size.map_or(
            Canvas {
                width: self.width,
                height: self.height,
            },
            SizePreset::canvas,
        )
    }

    /// The look asked for.
    pub fn look(&self) -> Look {
        Look {
            colors: self.colors,
            theme: self.theme,
            transparent: self.background == Background::Transparent,
            icicle: self.orientation == Orientation::Icicle,
        }
    }

    /// Validates the options into the frames output's config, for frames
    /// that each stand for `interval` seconds.
    pub fn frames_config(
        &self,
        pattern: &str,
        format: StackFormat,
        target: String,
        interval: f64,
    ) -> Result<FramesConfig> {
        let Canvas { width, height } = self.canvas();
        if width < 64
            || height < HEADER_HEIGHT + 64
            || width > MAX_WIDTH
            || height > MAX_HEIGHT
            || width % 2 == 1
            || height % 2 == 1
        {
            bail!(
                "--width and --height must be even (h264 needs it), from 64x{} to {MAX_WIDTH}x{MAX_HEIGHT} (8K); got {width}x{height}",
                HEADER_HEIGHT + 64,
            );
        }
        let svg_route = pattern.ends_with(".svg") || self.renderer == RendererKind::Svg;
        if svg_route && !crate::output::frames::renderer::svg_supports(self.colors) {
            bail!(
                "--colors {:?} needs PNG frames drawn by the direct renderer (inferno's SVG colours by function name only)",
                self.colors
            );
        }
        if pattern.ends_with(".svg") && self.background == Background::Transparent {
            bail!("--background transparent is for PNG frames");
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.render_threads > 4 * cpus {
            bail!(
                "--render-threads {}: at most {} (4 per CPU; 0 means one per CPU)",
                self.render_threads,
                4 * cpus
            );
        }
        if self.start_number > MAX_START_NUMBER {
            bail!("--start-number must be at most {MAX_START_NUMBER}");
        }
        Ok(FramesConfig {
            pattern: FramePattern::parse(pattern)?,
            mode: self
                .frame_mode
                .unwrap_or_else(|| default_frame_mode(interval)),
            start_number: self.start_number,
            canvas: self.canvas(),
            format,
            title: self.title.clone().unwrap_or_else(|| default_title(&target)),
            look: self.look(),
            fps: None,
            video_hint: true,
            target,
            threads: self.render_threads,
            renderer: self.renderer,
        })
    }
}
