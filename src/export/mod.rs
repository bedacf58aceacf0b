//! Writes profiles in other tools' formats: pprof (`go tool pprof`,
//! Pyroscope, Parca), speedscope, folded, and our own recording.

pub mod pprof;
pub mod speedscope;

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::output::{folded, Output, StackFormat};
use crate::profile::Profile;
use crate::recording::Meta;
use crate::safe_file::Target;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Gzipped pprof protobuf.
    Pprof,
    /// speedscope's JSON.
    Speedscope,
    /// profile.py's folded lines.
    Folded,
    /// An rs-profile recording (live runs' `-o` only).
    Recording,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pprof" => Ok(ExportFormat::Pprof),
            "speedscope" => Ok(ExportFormat::Speedscope),
            "folded" => Ok(ExportFormat::Folded),
            _ => Err(format!(
                "unknown format {s:?}; expected pprof, speedscope or folded"
            )),
        }
    }
}

impl ExportFormat {
    /// The format a live run's `-o FILE` asks for, by extension.
    pub fn from_path(path: &Path) -> Result<ExportFormat> {
        let name = path.to_string_lossy();
        Ok(if name.ends_with(".pb.gz") {
            ExportFormat::Pprof
        } else if name.ends_with(".speedscope.json") {
            ExportFormat::Speedscope
        } else if name.ends_with(".folded") {
            ExportFormat::Folded
        } else if name.ends_with(".rsprof") {
            ExportFormat::Recording
        } else {
            bail!(
                "-o {name}: unknown format; name it .pb.gz (pprof), .speedscope.json, .folded or .rsprof (recording)"
            )
        })
    }
}

/// How exports are shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// speedscope: one merged profile instead of one per interval.
    pub merge: bool,
    /// pprof's options.
    pub pprof: pprof::PprofOptions,
}

/// The sampling period in nanoseconds: from the run's rate, or, when the
/// recording does not say (imported folded files), the time covered spread
/// over the samples, so that time-based views never show zero.
pub(crate) fn period_nanos(meta: &Meta, intervals: &[Profile]) -> i64 {
    match (meta.frequency, meta.period) {
        (Some(hz), _) if hz > 0 => 1_000_000_000 / hz as i64,
        (_, Some(n)) if n > 0 => i64::try_from(n).unwrap_or(i64::MAX),
        _ => {
            let nanos: u128 = intervals.iter().map(|p| p.duration.as_nanos()).sum();
            let samples: u64 = intervals.iter().map(Profile::samples).sum();
            (nanos / u128::from(samples.max(1))).clamp(1, i64::MAX as u128) as i64
        }
    }
}

/// Writes `intervals` to `target` in `format`.
pub fn write(
    target: &Target,
    format: ExportFormat,
    meta: &Meta,
    intervals: &[Profile],
    opts: ExportOptions,
) -> Result<()> {
    let bytes = match format {
        ExportFormat::Pprof => pprof::encode(meta, intervals, opts.pprof)?,
        ExportFormat::Speedscope => speedscope::encode(meta, intervals, opts.merge)?,
        ExportFormat::Folded => {
            let mut total = Profile::default();
            intervals.iter().for_each(|p| total.merge(p));
            let mut out = Vec::new();
            folded::write_folded(&mut out, &total, &StackFormat::default())?;
            out
        }
        ExportFormat::Recording => {
            let mut w = crate::recording::RecordWriter::create(target, meta)?;
            for p in intervals {
                w.write_interval(p)?;
            }
            return Ok(());
        }
    };
    target
        .write_all(&bytes)
        .with_context(|| format!("failed to export to {}", target.display()))
}

/// A live run's `-o`: keeps the intervals and writes them at the end (a
/// recording is streamed instead, see [`crate::recording::RecordWriter`]).
pub struct ExportOutput {
    target: Target,
    format: ExportFormat,
    meta: Meta,
    intervals: Vec<Profile>,
}

impl ExportOutput {
    /// An export of the whole run to `target`.
    pub fn new(target: Target, format: ExportFormat, meta: Meta) -> ExportOutput {
        ExportOutput {
            target,
            format,
            meta,
            intervals: Vec::new(),
        }
    }
}

impl Output for ExportOutput {
    fn name(&self) -> String {
        format!("-o {}", self.target.display())
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        self.intervals.push(profile.clone());
        Ok(())
    }

    fn finish(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
        write(
            &self.target,
            self.format,
            &self.meta,
            &self.intervals,
            ExportOptions::default(),
        )
    }
}
