//! The offline subcommands: render, report, import and export. They read
//! recordings (or other tools' files) and feed the same outputs a live run
//! does; none needs root.

use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cli::{ExportArgs, ImportArgs, RenderArgs, ReportArgs, TimeRange};
use crate::output::frames::FramesOutput;
use crate::output::{Output, Report, StackFormat};
use crate::profile::Profile;
use crate::recording::{read_recording, Meta, RecordWriter, Recording};
use crate::safe_file::Target;

/// Reads a recording, says on stderr where it was damaged (if it was), and
/// keeps the intervals in `range`.
fn load(path: &Path, range: &TimeRange) -> Result<(Recording, Vec<Profile>)> {
    range.validate()?;
    let mut rec = read_recording(path)?;
    if let Some(damage) = &rec.damage {
        eprintln!(
            "profile: warning: {}: {damage}; using the {} whole intervals before it",
            path.display(),
            rec.intervals.len()
        );
    }
    if rec.intervals.is_empty() {
        bail!("{} holds no whole interval", path.display());
    }
    let intervals: Vec<Profile> = std::mem::take(&mut rec.intervals)
        .into_iter()
        .filter(|p| range.contains(p.start, p.duration))
        .collect();
    if intervals.is_empty() {
        bail!("{}: no interval in the time range given", path.display());
    }
    Ok((rec, intervals))
}

/// Merges consecutive intervals into frames of `secs` seconds.
pub fn regroup(intervals: Vec<Profile>, secs: f64) -> Vec<Profile> {
    let mut out: Vec<Profile> = Vec::new();
    let mut current: Option<(u64, Profile)> = None;
    for p in intervals {
        let group = (p.start.as_secs_f64() / secs).floor() as u64;
        match &mut current {
            Some((g, acc)) if *g == group => acc.merge(&p),
            _ => {
                if let Some((_, acc)) = current.take() {
                    out.push(acc);
                }
                current = Some((group, p));
            }
        }
    }
    out.extend(current.map(|(_, acc)| acc));
    for (i, p) in out.iter_mut().enumerate() {
        p.index = i as u64;
    }
    out
}

/// `profile render`.
pub fn render(args: RenderArgs) -> Result<()> {
    let (rec, mut intervals) = load(&args.recording, &args.range)?;
    let used = intervals.len();
    let whole = rec.whole_intervals;
    if let Some(secs) = args.regroup {
        if !secs.is_finite() || secs <= 0.0 {
            bail!("--regroup must be a positive number of seconds");
        }
        intervals = regroup(intervals, secs);
    }
    let format = StackFormat {
        delimited: args.delimited,
        annotations: args.annotations,
        ..StackFormat::default()
    };
    let cfg = args
        .frames
        .frames_config(&args.frame_pattern, format, rec.meta.target.clone())?;
    cfg.pattern.prepare(args.frames.overwrite)?;
    let mut frames = FramesOutput::new(cfg)?;
    for p in &intervals {
        frames.interval(p)?;
    }
    frames.finish(&crate::profile::LossReport::default())?;
    eprintln!(
        "rendered {} frames from {used} of the recording's {whole} whole intervals",
        intervals.len()
    );
    Ok(())
}

/// `profile report`.
pub fn report(args: ReportArgs) -> Result<()> {
    let (_, intervals) = load(&args.recording, &args.range)?;
    let fmt = args.format.stack_format(true, true);
    let mut report = Report::new(
        BufWriter::new(std::io::stdout()),
        fmt,
        args.format.folded,
        args.format.text_style(),
    );
    let mut loss = crate::profile::LossReport::default();
    for p in &intervals {
        report.interval(p)?;
        loss.add(&p.loss);
    }
    report.finish(&loss)
}

/// `profile import`: each interval is written to the recording as soon as
/// the input has moved past it.
pub fn import(args: ImportArgs) -> Result<()> {
    if !(crate::cli::MIN_INTERVAL..=crate::cli::MAX_INTERVAL).contains(&args.interval) {
        bail!(
            "--interval must be from {} to {} seconds",
            crate::cli::MIN_INTERVAL,
            crate::cli::MAX_INTERVAL
        );
    }
    let target = Target::resolve(&args.output, args.overwrite)?;
    let interval = Duration::from_secs_f64(args.interval);
    let names: Vec<String> = args
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut sink = RecordingSink {
        target: &target,
        meta: Meta {
            tool_version: env!("CARGO_PKG_VERSION").into(),
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
            target: format!("imported from {}", names.join(", ")),
            interval_ns: interval.as_nanos() as u64,
            ..Default::default()
        },
        writer: None,
    };
    let opts = crate::import::perf_script::Options {
        event_filter: args.event_filter.clone(),
        weight: args.weight,
    };
    let report = crate::import::import_inputs(&args.inputs, interval, &opts, &mut sink)?;
    for n in &report.notes {
        eprintln!("profile: {n}");
    }
    eprintln!(
        "imported {} intervals, {} samples into {}",
        report.intervals,
        report.samples,
        target.display()
    );
    Ok(())
}

/// Writes imported intervals to a recording, created once the capture's
/// period is known (it goes in the recording's metadata).
struct RecordingSink<'a> {
    target: &'a Target,
    meta: Meta,
    writer: Option<RecordWriter>,
}

impl crate::import::ImportSink for RecordingSink<'_> {
    fn begin(&mut self, info: &crate::import::CaptureInfo) -> Result<()> {
        self.meta.period = info.period;
        if let Some(ev) = &info.event {
            self.meta.target = format!("{} ({ev})", self.meta.target);
        }
        self.writer = Some(RecordWriter::create(self.target, &self.meta)?);
        Ok(())
    }

    fn interval(&mut self, p: Profile) -> Result<()> {
        match &mut self.writer {
            Some(w) => w.write_interval(&p),
            None => bail!("an interval before the recording was created"),
        }
    }
}

/// `profile export`.
pub fn export(args: ExportArgs) -> Result<()> {
    let target = Target::resolve(&args.output, args.overwrite)?;
    let (rec, intervals) = load(&args.recording, &args.range)?;
    let opts = crate::export::ExportOptions {
        merge: args.merge,
        pprof: crate::export::pprof::PprofOptions {
            comm_frame: args.pprof_comm_frame,
        },
    };
    crate::export::write(&target, args.format, &rec.meta, &intervals, opts)?;
    eprintln!(
        "exported {} intervals to {}",
        intervals.len(),
        target.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regroup_merges_by_time() {
        let ps: Vec<Profile> = (0..5u64)
            .map(|i| {
                let mut p = crate::output::test_data::sample_profile();
                p.index = i;
                p.start = Duration::from_millis(500 * i);
                p.duration = Duration::from_millis(500);
                p
            })
            .collect();
        let one = ps[0].samples();
        let g = regroup(ps, 1.0);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].samples(), 2 * one);
        assert_eq!(g[0].duration, Duration::from_secs(1));
        assert_eq!(g[2].samples(), one);
        assert_eq!(g[2].index, 2);
    }
}
