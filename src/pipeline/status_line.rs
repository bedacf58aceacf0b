//! The capture's one-line status on a terminal.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cli::RunConfig;
use crate::profile::LossReport;

/// The one-line status a capture shows on a terminal (stderr), redrawn in
/// place: elapsed time, interval, sample rate, losses, frames written and
/// the render backlog. Only when stderr is a terminal and the run makes
/// frames, a video or a live feed (a report alone stays quiet, as
/// profile.py's does).
pub(super) struct StatusLine {
    on: bool,
    last: Instant,
    samples: u64,
    lost: u64,
    drawn: bool,
}

impl StatusLine {
    pub(super) fn new(cfg: &RunConfig) -> StatusLine {
        use std::io::IsTerminal;
        StatusLine {
            on: std::io::stderr().is_terminal()
                && (cfg.frames.is_some() || cfg.video.is_some() || cfg.feed.is_some()),
            last: Instant::now(),
            samples: 0,
            lost: 0,
            drawn: false,
        }
    }

    /// Adds an interval's accounting.
    pub(super) fn interval(&mut self, loss: &LossReport) {
        self.samples += loss.taken;
        self.lost += loss.lost();
    }

    pub(super) fn tick(&mut self, elapsed: Duration, index: u64) {
        if !self.on || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let queued = crate::output::frames::FRAMES_SUBMITTED.load(Ordering::Relaxed);
        let written = crate::output::frames::FRAMES_WRITTEN.load(Ordering::Relaxed);
        let mut line = format!(
            "{}  interval {index}  {:.0} samples/s",
            crate::output::frames::layout::clock(elapsed),
            self.samples as f64 / secs
        );
        if self.lost > 0 {
            line.push_str(&format!("  LOST {}", self.lost));
        }
        if queued > 0 {
            line.push_str(&format!(
                "  frames {written} written, {} rendering",
                queued.saturating_sub(written)
            ));
        }
        eprint!("\x1b[2K\r{line}");
        self.drawn = true;
    }

    pub(super) fn clear(&mut self) {
        if self.drawn {
            eprint!("\x1b[2K\r");
            self.drawn = false;
        }
    }
}
