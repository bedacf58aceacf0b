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

/// The sampling period in nanoseconds, from the run's rate, if known.
pub(crate) fn rate_period(meta: &Meta) -> Option<i64> {
    match (meta.frequency, meta.period) {
        (Some(hz), _) if hz > 0 => Some(1_000_000_000 / hz as i64),
        (_, Some(n)) if n > 0 => Some(i64::try_from(n).unwrap_or(i64::MAX)),
        _ => None,
    }
}

/// The period when the run's rate is unknown (imported folded files): the
/// time covered spread over the samples, so time-based views never show
/// zero.
pub(crate) fn fallback_period(covered_nanos: u128, samples: u64) -> i64 {
    (covered_nanos / u128::from(samples.max(1))).clamp(1, i64::MAX as u128) as i64
}

/// The sampling period in nanoseconds: from the run's rate, else
/// [`fallback_period`] over `intervals`.
pub(crate) fn period_nanos(meta: &Meta, intervals: &[Profile]) -> i64 {
    rate_period(meta).unwrap_or_else(|| {
        let nanos: u128 = intervals.iter().map(|p| p.duration.as_nanos()).sum();
        let samples: u64 = intervals.iter().map(Profile::samples).sum();
        fallback_period(nanos, samples)
    })
}

/// An export being built, one interval at a time: what it holds is what
/// the file will hold (a pprof profile's samples, a folded file's lines),
/// never the intervals themselves. A recording is written as it goes.
pub enum Exporter {
    /// pprof.
    Pprof(Box<pprof::Encoder>),
    /// speedscope: the intervals, or their merge.
    Speedscope {
        /// One per interval (or the merge, with `merge`).
        intervals: Vec<Profile>,
        /// `--merge`.
        merge: bool,
    },
    /// Folded lines with their counts.
    Folded(crate::output::PrintedLines),
    /// A recording.
    Recording(Box<crate::recording::RecordWriter>),
}

impl Exporter {
    /// An empty export of the run `meta` describes to `target`.
    pub fn new(
        target: &Target,
        format: ExportFormat,
        meta: &Meta,
        opts: ExportOptions,
    ) -> Result<Exporter> {
        Ok(match format {
            ExportFormat::Pprof => Exporter::Pprof(Box::new(pprof::Encoder::new(meta, opts.pprof))),
            ExportFormat::Speedscope => Exporter::Speedscope {
                intervals: Vec::new(),
                merge: opts.merge,
            },
            ExportFormat::Folded => Exporter::Folded(Default::default()),
            ExportFormat::Recording => Exporter::Recording(Box::new(
                crate::recording::RecordWriter::create(target, meta)?,
            )),
        })
    }

    /// Adds an interval.
    pub fn add(&mut self, p: &Profile) -> Result<()> {
        match self {
            Exporter::Pprof(e) => e.add(p),
            Exporter::Speedscope { intervals, merge } => match (intervals.first_mut(), *merge) {
                (Some(total), true) => total.merge(p),
                _ => intervals.push(p.clone()),
            },
            Exporter::Folded(lines) => folded::add_lines(lines, p, &StackFormat::default()),
            Exporter::Recording(w) => w.write_interval(p)?,
        }
        Ok(())
    }

    /// Encodes what was added and writes it to `target`.
    pub fn finish(self, target: &Target, meta: &Meta) -> Result<()> {
        let bytes = match self {
            Exporter::Pprof(e) => e.finish()?,
            Exporter::Speedscope { intervals, merge } => {
                speedscope::encode(meta, &intervals, merge)?
            }
            Exporter::Folded(lines) => {
                let mut out = Vec::new();
                folded::write_lines(&mut out, &lines)?;
                out
            }
            Exporter::Recording(mut w) => return w.close(),
        };
        target
            .write_all(&bytes)
            .with_context(|| format!("failed to export to {}", target.display()))
    }
}

/// Writes `intervals` to `target` in `format`, one interval at a time;
/// returns how many there were.
pub fn write(
    target: &Target,
    format: ExportFormat,
    meta: &Meta,
    intervals: impl IntoIterator<Item = Profile>,
    opts: ExportOptions,
) -> Result<usize> {
    let mut e = Exporter::new(target, format, meta, opts)?;
    let mut n = 0;
    for p in intervals {
        e.add(&p)?;
        n += 1;
    }
    e.finish(target, meta)?;
    Ok(n)
}

/// A live run's `-o`: builds the export as intervals end (a recording is
/// streamed by [`crate::recording::RecordWriter`] instead).
pub struct ExportOutput {
    target: Target,
    meta: Meta,
    exporter: Option<Exporter>,
}

impl ExportOutput {
    /// An export of the whole run to `target`.
    pub fn new(target: Target, format: ExportFormat, meta: Meta) -> Result<ExportOutput> {
        let exporter = Exporter::new(&target, format, &meta, ExportOptions::default())?;
        Ok(ExportOutput {
            target,
            meta,
            exporter: Some(exporter),
        })
    }
}

impl Output for ExportOutput {
    fn name(&self) -> String {
        format!("-o {}", self.target.display())
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        match &mut self.exporter {
            Some(e) => e.add(profile),
            None => Ok(()),
        }
    }

    fn finish(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
        match self.exporter.take() {
            Some(e) => e.finish(&self.target, &self.meta),
            None => Ok(()),
        }
    }
}
