//! Arguments of the offline subcommands: render, report, import, export,
//! encode.
//! None of them needs root or BPF.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{FormatArgs, FrameOptions};

/// `--from` / `--to`: a time range of a recording, in seconds from its start.
/// An interval belongs to the range when its midpoint does, so intervals cut
/// a little late or early still land on the side they mostly cover.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct TimeRange {
    /// Only intervals whose midpoint is at or after this many seconds from the start.
    #[arg(long, value_name = "SECS")]
    pub from: Option<f64>,

    /// Only intervals whose midpoint is before this many seconds from the start.
    #[arg(long, value_name = "SECS")]
    pub to: Option<f64>,
}

impl TimeRange {
    /// Checks the range makes sense.
    pub fn validate(&self) -> Result<()> {
        for (flag, v) in [("--from", self.from), ("--to", self.to)] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                bail!("{flag} must be a number of seconds, 0 or more");
            }
        }
        if let (Some(a), Some(b)) = (self.from, self.to) {
            if b <= a {
                bail!("--to ({b}) must be after --from ({a})");
            }
        }
        Ok(())
    }

    /// Whether the interval [start, start + duration) belongs to the range.
    pub fn contains(&self, start: Duration, duration: Duration) -> bool {
        let mid = (start + duration / 2).as_secs_f64();
        self.from.is_none_or(|f| mid >= f) && self.to.is_none_or(|t| mid < t)
    }
}

/// `profile render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The recording to render.
    pub recording: PathBuf,

    /// Frame file pattern, with exactly one %d or %0Nd; .png or .svg.
    #[arg(short = 'g', long = "frame-pattern", value_name = "PATTERN",
          default_value = crate::output::frames::pattern::DEFAULT_PATTERN)]
    pub frame_pattern: String,

    #[command(flatten)]
    pub frames: FrameOptions,

    #[command(flatten)]
    pub range: TimeRange,

    /// Merge consecutive intervals into frames of this many seconds.
    #[arg(long, value_name = "SECS")]
    pub regroup: Option<f64>,

    /// Write a video instead of frame files (.mp4, .webm or .gif; needs
    /// ffmpeg): frames go straight to ffmpeg, at real-time speed unless
    /// --speed.
    #[arg(short = 'o', long = "output", value_name = "VIDEO")]
    pub output: Option<PathBuf>,

    /// Draw the frames exactly as the live run drew them: no first pass,
    /// so no layout locked for the whole video, no fixed sibling order and
    /// no progress bar.
    #[arg(long)]
    pub as_live: bool,

    /// Insert delimiter between kernel/user stacks.
    #[arg(short = 'd', long = "delimited")]
    pub delimited: bool,

    /// Add _[k] annotations to kernel frames.
    #[arg(short = 'a', long = "annotations")]
    pub annotations: bool,
}

/// `profile serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The recording to serve.
    pub recording: PathBuf,

    /// Port of the page.
    #[arg(short = 'R', long = "serve-port", value_name = "PORT",
          default_value_t = crate::output::feed::defaults::PORT)]
    pub port: u16,

    /// URL path of the page.
    #[arg(short = 'P', long = "serve-path", value_name = "PATH",
          default_value = crate::output::feed::defaults::PATH)]
    pub path: String,

    /// Address the page listens on.
    #[arg(long, value_name = "ADDR", default_value = crate::output::feed::defaults::LISTEN)]
    pub listen: std::net::IpAddr,

    /// Serve beyond loopback without the access token.
    #[arg(long)]
    pub no_token: bool,

    /// Space (MB) the served intervals may take (the newest two in memory,
    /// the rest in an unnamed temporary file); beyond it the oldest are
    /// left out of the timeline.
    #[arg(long, value_name = "MB", default_value_t = 512)]
    pub history_mb: u64,

    #[command(flatten)]
    pub frames: FrameOptions,

    #[command(flatten)]
    pub range: TimeRange,

    /// Insert delimiter between kernel/user stacks.
    #[arg(short = 'd', long = "delimited")]
    pub delimited: bool,

    /// Add _[k] annotations to kernel frames.
    #[arg(short = 'a', long = "annotations")]
    pub annotations: bool,
}

/// `profile report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The recording to print.
    pub recording: PathBuf,

    #[command(flatten)]
    pub format: FormatArgs,

    #[command(flatten)]
    pub range: TimeRange,
}

/// `profile import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// `perf script` output (of `perf record`, with or without -g), or folded
    /// files (each one interval); `-` reads standard input.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// The recording to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,

    /// Seconds per interval when cutting `perf script` samples by timestamp.
    #[arg(long, value_name = "SECS", default_value_t = super::DEFAULT_INTERVAL)]
    pub interval: f64,

    /// Replace the output file if it exists.
    #[arg(long)]
    pub overwrite: bool,

    /// perf script: import this event only (default: the first in the file).
    #[arg(long, value_name = "EVENT")]
    pub event_filter: Option<String>,

    /// perf script: what a sample counts for: 1 (samples) or its period.
    #[arg(long, value_name = "WEIGHT", default_value = "samples")]
    pub weight: crate::import::perf_script::Weight,

    /// Longest input line accepted, in bytes (1024 to 1073741824); a
    /// longer one is an error, so memory stays bounded whatever the input.
    #[arg(long, value_name = "BYTES", default_value_t = crate::import::DEFAULT_MAX_LINE,
          value_parser = max_line_bytes)]
    pub max_line_bytes: usize,
}

/// `profile encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// The -g pattern the PNG frames were written with, e.g.
    /// frames/flamegraph%04d.png.
    pub pattern: String,

    /// The video: .mp4 (H.264), .webm (VP9, keeps transparency) or .gif.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,

    /// Frames per second (default: from the frames' sidecar, real time).
    #[arg(long, value_name = "N")]
    pub fps: Option<f64>,

    /// Number of the first frame (default: the lowest one found).
    #[arg(long, value_name = "N")]
    pub start_number: Option<u64>,

    /// Replace the video if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// `--max-line-bytes`: 1 KiB to 1 GiB.
fn max_line_bytes(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (1024..=1 << 30).contains(&n) => Ok(n),
        _ => Err("must be a whole number of bytes from 1024 to 1073741824".into()),
    }
}

/// `profile export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The recording to export.
    pub recording: PathBuf,

    /// pprof (gzipped protobuf), speedscope (JSON) or folded.
    #[arg(long, value_name = "FORMAT")]
    pub format: crate::export::ExportFormat,

    /// The file to write (`-`: standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,

    /// Replace the output file if it exists.
    #[arg(long)]
    pub overwrite: bool,

    #[command(flatten)]
    pub range: TimeRange,

    /// speedscope: one merged profile instead of one per interval.
    #[arg(long)]
    pub merge: bool,

    /// pprof: also push the process name as a root frame (as folded output
    /// shows it); by default it is only the `comm` label.
    #[arg(long)]
    pub pprof_comm_frame: bool,

    /// pprof: label each sample with its interval's start (`interval_start`,
    /// seconds); off by default: a label per interval multiplies the series
    /// a store like Pyroscope keeps.
    #[arg(long)]
    pub pprof_interval_labels: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = TimeRange {
            from: Some(1.0),
            to: Some(3.0),
        };
        r.validate().unwrap();
        let s = Duration::from_secs_f64;
        assert!(!r.contains(s(0.0), s(1.0)));
        assert!(r.contains(s(0.5), s(1.0)));
        assert!(r.contains(s(2.0), s(1.0)));
        assert!(!r.contains(s(3.0), s(1.0)));
        assert!(TimeRange {
            from: Some(2.0),
            to: Some(1.0)
        }
        .validate()
        .is_err());
        assert!(TimeRange {
            from: Some(-1.0),
            to: None
        }
        .validate()
        .is_err());
        assert!(TimeRange::default().contains(s(100.0), s(1.0)));
    }
}
