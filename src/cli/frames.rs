//! Frame options shared by `-E` and `render`.

use anyhow::{bail, Result};
use clap::Args;

use crate::output::frames::layout::{self, Canvas, HEADER_HEIGHT};
use crate::output::frames::pattern::FramePattern;
use crate::output::frames::renderer::RendererKind;
use crate::output::frames::FramesConfig;
use crate::output::StackFormat;
use crate::profile::modes::FrameMode;

/// The largest canvas: 8K UHD.
pub const MAX_WIDTH: u32 = 7680;
/// See [`MAX_WIDTH`].
pub const MAX_HEIGHT: u32 = 4320;
/// The largest first frame number: twelve digits, the widest `%0Nd` allows.
pub const MAX_START_NUMBER: u64 = 999_999_999_999;

/// How frames look and are numbered.
#[derive(Debug, Clone, Args)]
pub struct FrameOptions {
    /// What a frame shows: interval, cumulative, window:N (last N intervals) or decay:F.
    #[arg(long, value_name = "MODE", default_value = "interval")]
    pub frame_mode: FrameMode,

    /// Replace (remove) existing frames that match the pattern.
    #[arg(long)]
    pub overwrite: bool,

    /// Number of the first frame.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub start_number: u64,

    /// Frame width in pixels (even, for h264).
    #[arg(long, value_name = "PX", default_value_t = layout::DEFAULT_WIDTH)]
    pub width: u32,

    /// Frame height in pixels (even, for h264).
    #[arg(long, value_name = "PX", default_value_t = layout::DEFAULT_HEIGHT)]
    pub height: u32,

    /// How PNG frames are drawn: direct (fast) or svg (inferno + resvg, the reference).
    #[arg(long, value_name = "RENDERER", default_value = "direct")]
    pub renderer: RendererKind,

    /// Threads rendering frames (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub render_threads: usize,
}

impl FrameOptions {
    /// Validates the options into the frames output's config.
    pub fn frames_config(
        &self,
        pattern: &str,
        format: StackFormat,
        target: String,
    ) -> Result<FramesConfig> {
        if self.width < 64
            || self.height < HEADER_HEIGHT + 64
            || self.width > MAX_WIDTH
            || self.height > MAX_HEIGHT
            || self.width % 2 == 1
            || self.height % 2 == 1
        {
            bail!(
                "--width and --height must be even (h264 needs it), from 64x{} to {MAX_WIDTH}x{MAX_HEIGHT} (8K); got {}x{}",
                HEADER_HEIGHT + 64,
                self.width,
                self.height
            );
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
            mode: self.frame_mode,
            start_number: self.start_number,
            canvas: Canvas {
                width: self.width,
                height: self.height,
            },
            format,
            target,
            threads: self.render_threads,
            renderer: self.renderer,
        })
    }
}
