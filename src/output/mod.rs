//! Outputs: everything that consumes profiles. Each implements [`Output`]
//! and sees only [`crate::profile`] types: none knows of BPF or symbols.

pub mod feed;
pub mod folded;
pub mod frames;
pub mod text;

use std::io::Write;

use anyhow::Result;

use crate::profile::Profile;

/// A consumer of profiles, fed by the pipeline.
pub trait Output {
    /// What the output is and where it writes, for error messages
    /// ("frames out/fg%04d.png", "-o run.pb.gz").
    fn name(&self) -> String;

    /// Called once per interval, in order, with that interval's profile.
    fn interval(&mut self, _profile: &Profile) -> Result<()> {
        Ok(())
    }

    /// Called once at the end with every interval merged.
    fn finish(&mut self, _total: &Profile) -> Result<()> {
        Ok(())
    }
}

/// The end-of-run report in profile.py's multi-line or folded (`-f`) format,
/// with its warnings on stderr.
pub struct Report<W: Write> {
    out: W,
    fmt: StackFormat,
    folded: bool,
    style: text::TextStyle,
}

impl<W: Write> Report<W> {
    /// A report written to `out`, folded or multi-line (in `style`).
    pub fn new(out: W, fmt: StackFormat, folded: bool, style: text::TextStyle) -> Self {
        Self {
            out,
            fmt,
            folded,
            style,
        }
    }
}

impl<W: Write> Output for Report<W> {
    fn name(&self) -> String {
        "the report on standard output".into()
    }

    fn finish(&mut self, total: &Profile) -> Result<()> {
        let markers = if self.folded {
            folded::write_folded(&mut self.out, total, &self.fmt)?
        } else {
            text::write_text(&mut self.out, total, &self.fmt, self.style)?
        };
        self.out.flush()?;
        // As profile.py: one missed stack per marker printed.
        let loss = crate::profile::LossReport {
            missing_stacks: markers,
            ..total.loss
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
pub fn stats_line(total: &Profile, intervals: u64, event: &str) -> String {
    let l = &total.loss;
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
