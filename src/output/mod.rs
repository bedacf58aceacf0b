//! Outputs: everything that consumes profiles. Each implements [`Output`]
//! and sees only [`crate::profile`] types: none knows of BPF or symbols.

pub mod feed;
pub mod folded;
pub mod frames;
pub mod text;
pub mod video;

use rustc_hash::FxHashMap;
use std::io::Write;

use anyhow::Result;

use crate::profile::{LossReport, Profile};

/// A consumer of profiles, fed by the pipeline.
pub trait Output {
    /// What the output is and where it writes, for error messages
    /// ("frames out/fg%04d.png", "-o run.pb.gz").
    fn name(&self) -> String;

    /// Called once per interval, in order, with that interval's profile.
    fn interval(&mut self, _profile: &Profile) -> Result<()> {
        Ok(())
    }

    /// Called once at the end, with the run's sample accounting.
    fn finish(&mut self, _loss: &LossReport) -> Result<()> {
        Ok(())
    }

    /// Whether a reader closing its pipe early ends this output quietly
    /// (the text report: `profile | head`, as profile.py users expect).
    /// For a recording or an export it is a failure: the data is cut.
    fn quiet_on_broken_pipe(&self) -> bool {
        false
    }
}

/// Lines (folded) or records (multi-line) as they will be printed, with
/// their counts: what the end-of-run report needs and no more. Stacks that
/// print the same are one entry, so a long run with process churn holds its
/// distinct printed lines, not every address-level stack of every interval.
#[derive(Debug, Default)]
pub struct PrintedLines {
    /// Text -> (count, `[Missed ... Stack]` markers in it).
    lines: FxHashMap<String, (u64, u64)>,
}

impl PrintedLines {
    /// Adds `n` samples of a printed line with `markers` markers.
    pub fn add(&mut self, text: String, n: u64, markers: u64) {
        let e = self.lines.entry(text).or_insert((0, markers));
        e.0 = e.0.saturating_add(n);
    }

    /// Writes every entry by ascending count (ties by text), each followed
    /// by `tail(count)`; returns the markers printed.
    pub fn write(
        &self,
        out: &mut impl Write,
        tail: impl Fn(u64) -> String,
    ) -> std::io::Result<u64> {
        let mut sorted: Vec<_> = self.lines.iter().collect();
        sorted.sort_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| a.0.cmp(b.0)));
        let mut markers = 0;
        for (text, (n, m)) in sorted {
            markers += m;
            out.write_all(text.as_bytes())?;
            out.write_all(tail(*n).as_bytes())?;
        }
        Ok(markers)
    }
}

/// The end-of-run report in profile.py's multi-line or folded (`-f`) format,
/// with its warnings on stderr. Each interval is added as it ends.
pub struct Report<W: Write> {
    out: W,
    fmt: StackFormat,
    folded: bool,
    style: text::TextStyle,
    lines: PrintedLines,
}

impl<W: Write> Report<W> {
    /// A report written to `out`, folded or multi-line (in `style`).
    pub fn new(out: W, fmt: StackFormat, folded: bool, style: text::TextStyle) -> Self {
        Self {
            out,
            fmt,
            folded,
            style,
            lines: PrintedLines::default(),
        }
    }
}

impl<W: Write> Output for Report<W> {
    fn name(&self) -> String {
        "the report on standard output".into()
    }

    fn quiet_on_broken_pipe(&self) -> bool {
        true
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        if self.folded {
            folded::add_lines(&mut self.lines, profile, &self.fmt);
        } else {
            text::add_records(&mut self.lines, profile, &self.fmt, self.style);
        }
        Ok(())
    }

    fn finish(&mut self, loss: &LossReport) -> Result<()> {
        let markers = if self.folded {
            folded::write_lines(&mut self.out, &self.lines)?
        } else {
            text::write_records(&mut self.out, &self.lines)?
        };
        self.out.flush()?;
        // As profile.py: one missed stack per marker printed.
        let loss = LossReport {
            missing_stacks: markers,
            ..*loss
        };
        text::print_warnings(&loss);
        Ok(())
    }
}

/// How stacks are written, in profile.py's text and folded formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackFormat {
    /// `-d`: a delimiter between kernel and user stacks.
    pub delimited: bool,
    /// `-a`: `_[k]` after kernel frames.
    pub annotations: bool,
    /// User stacks were collected (not `-K`).
    pub user_stacks: bool,
    /// Kernel stacks were collected (not `-U`).
    pub kernel_stacks: bool,
}

impl Default for StackFormat {
    fn default() -> Self {
        Self {
            delimited: false,
            annotations: false,
            user_stacks: true,
            kernel_stacks: true,
        }
    }
}

/// The `--stats` line: where every sample the BPF program took went, and
/// which event took them.
pub fn stats_line(l: &LossReport, intervals: u64, event: &str) -> String {
    format!(
        "stats: intervals {intervals}, samples taken {}, counted {}, lost {} (hash full {}, in flight {}), with missed stacks {}, event {event}",
        l.taken, l.counted, l.lost(), l.lost_hash_full, l.lost_in_flight, l.missed_stack_samples
    )
}

/// profile.py's end-of-run warnings for a loss report, one line each.
pub fn warnings(loss: &crate::profile::LossReport) -> Vec<String> {
    let mut out = Vec::new();
    if loss.missing_stacks > 0 {
        let hint = if loss.stack_collision {
            " Consider increasing --stack-storage-size."
        } else {
            ""
        };
        out.push(format!(
            "WARNING: {} stack traces could not be displayed.{hint}",
            loss.missing_stacks
        ));
    }
    if loss.lost_hash_full > 0 {
        out.push("WARNING: hash table full. Consider increasing --hash-storage-size.".into());
        out.push(format!(
            "WARNING: {} of {} samples were dropped because the hash table was full.",
            loss.lost_hash_full, loss.taken
        ));
    }
    if loss.lost_in_flight > 0 {
        out.push(format!(
            "WARNING: {} of {} samples could not be collected (still being written when the interval ended).",
            loss.lost_in_flight, loss.taken
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod test_data;
