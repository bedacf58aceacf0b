//! The offline subcommands: render, report, import and export. They read
//! recordings (or other tools' files) and feed the same outputs a live run
//! does; none needs root.

use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cli::{ExportArgs, ImportArgs, RenderArgs, ReportArgs, ServeArgs, TimeRange};
use crate::output::frames::FramesOutput;
use crate::output::{Output, Report, StackFormat};
use crate::profile::Profile;
use crate::recording::{Meta, RecordWriter, RecordingReader};
use crate::safe_file::Target;

/// A recording's intervals in a time range, read one at a time: memory
/// stays bounded by an interval whatever the file's length.
struct Intervals {
    reader: RecordingReader<std::io::BufReader<std::fs::File>>,
    range: TimeRange,
    path: std::path::PathBuf,
    first: Option<Profile>,
    used: usize,
}

impl Intervals {
    /// Opens the recording and reads up to its first interval in `range`,
    /// so that an empty file or range is an error before any output starts.
    fn open(path: &Path, range: &TimeRange) -> Result<Intervals> {
        range.validate()?;
        let mut it = Intervals {
            reader: RecordingReader::open(path)?,
            range: *range,
            path: path.to_path_buf(),
            first: None,
            used: 0,
        };
        it.first = it.next_in_range();
        if it.first.is_none() {
            it.warn_damage();
            if it.reader.intervals_read() == 0 {
                bail!("{} holds no whole interval", path.display());
            }
            bail!("{}: no interval in the time range given", path.display());
        }
        Ok(it)
    }

    fn next_in_range(&mut self) -> Option<Profile> {
        while let Some(p) = self.reader.next_interval() {
            if self.range.contains(p.start, p.duration) {
                return Some(p);
            }
        }
        None
    }

    fn meta(&self) -> &Meta {
        &self.reader.meta
    }

    /// Says on stderr where the recording was damaged, if it was.
    fn warn_damage(&self) {
        if let Some(damage) = &self.reader.damage {
            eprintln!(
                "profile: warning: {}: {damage}; using the {} whole intervals before it",
                self.path.display(),
                self.reader.intervals_read()
            );
        }
    }

    /// After the last interval: (intervals used, whole intervals in the
    /// file), with the damage warning printed.
    fn finish(&self) -> (usize, usize) {
        self.warn_damage();
        (self.used, self.reader.intervals_read())
    }
}

impl Iterator for Intervals {
    type Item = Profile;

    fn next(&mut self) -> Option<Profile> {
        let p = self.first.take().or_else(|| self.next_in_range())?;
        self.used += 1;
        Some(p)
    }
}

/// Merges consecutive intervals into frames of `secs` seconds, as they
/// come (only the frame being merged is held).
struct Regroup<I> {
    inner: I,
    secs: f64,
    current: Option<(u64, Profile)>,
    index: u64,
}

impl<I: Iterator<Item = Profile>> Iterator for Regroup<I> {
    type Item = Profile;

    fn next(&mut self) -> Option<Profile> {
        for p in self.inner.by_ref() {
            let group = (p.start.as_secs_f64() / self.secs).floor() as u64;
            match &mut self.current {
                Some((g, acc)) if *g == group => acc.merge(&p),
                _ => {
                    if let Some((_, mut done)) = self.current.replace((group, p)) {
                        done.index = self.index;
                        self.index += 1;
                        return Some(done);
                    }
                }
            }
        }
        let (_, mut last) = self.current.take()?;
        last.index = self.index;
        self.index += 1;
        Some(last)
    }
}

/// Merges consecutive intervals into frames of `secs` seconds.
pub fn regroup(intervals: Vec<Profile>, secs: f64) -> Vec<Profile> {
    Regroup {
        inner: intervals.into_iter(),
        secs,
        current: None,
        index: 0,
    }
    .collect()
}

/// `profile render`: frames are made as intervals are read.
pub fn render(args: RenderArgs) -> Result<()> {
    if let Some(secs) = args.regroup {
        if !(secs.is_finite() && (MIN_REGROUP..=MAX_REGROUP).contains(&secs)) {
            bail!("--regroup must be from {MIN_REGROUP} to {MAX_REGROUP} seconds");
        }
    }
    let intervals = Intervals::open(&args.recording, &args.range)?;
    let format = StackFormat {
        delimited: args.delimited,
        annotations: args.annotations,
        ..StackFormat::default()
    };
    if let Some(out) = &args.output {
        return render_video(&args, out, format, intervals);
    }
    let secs = interval_secs(&args, &intervals);
    let mut cfg = args.frames.frames_config(
        &args.frame_pattern,
        format,
        intervals.meta().target.clone(),
        secs,
    )?;
    cfg.fps = Some(args.frames.speed / secs);
    let dir = cfg.pattern.prepare(args.frames.overwrite)?;
    let mut frames = FramesOutput::new(cfg, dir)?;
    frames.wait_for_pool();
    draw_all(&mut frames, &args, intervals)
}

/// `profile serve rec.rsprof`: the live page for a recording. Every interval
/// goes through the same feed a live run serves (so the page, its graphs,
/// timeline and colours are the live ones); the server runs until Ctrl-C.
pub fn serve(args: ServeArgs) -> Result<()> {
    crate::output::feed::validate_prefix(&args.path)?;
    crate::output::feed::validate_listen(args.listen)?;
    let max_mb = crate::cli::MAX_HISTORY_MB;
    if !(1..=max_mb).contains(&args.history_mb) {
        bail!("--history-mb must be from 1 to {max_mb}");
    }
    let mut intervals = Intervals::open(&args.recording, &args.range)?;
    let format = StackFormat {
        delimited: args.delimited,
        annotations: args.annotations,
        ..StackFormat::default()
    };
    let secs = (intervals.meta().interval_ns as f64 / 1e9).max(0.001);
    let target = intervals.meta().target.clone();
    // Validates the canvas (and colours) as frames do.
    let fc = args.frames.frames_config(
        crate::output::frames::pattern::DEFAULT_PATTERN,
        format,
        target.clone(),
        secs,
    )?;
    let stop = crate::pipeline::install_stop_handler()?;
    let mut feed = crate::output::feed::FeedOutput::new(crate::output::feed::FeedConfig {
        listen: args.listen,
        port: args.port,
        path: args.path.clone(),
        history: usize::MAX,
        history_bytes: args.history_mb.saturating_mul(1 << 20),
        canvas: fc.canvas,
        mode: fc.mode,
        format,
        target,
        renderer: fc.renderer,
        no_token: args.no_token,
        title: fc.title,
        look: fc.look,
    })?;
    let mut n = 0u64;
    for p in intervals.by_ref() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        feed.interval(&p)?;
        n += 1;
    }
    intervals.warn_damage();
    eprintln!(
        "profile: serving {} ({n} intervals) at {} ; Ctrl-C ends",
        args.recording.display(),
        feed.url()
    );
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    feed.finish(&Default::default())
}

/// `render -o talk.mp4`: the frames straight into ffmpeg.
fn render_video(
    args: &RenderArgs,
    out: &Path,
    format: StackFormat,
    intervals: Intervals,
) -> Result<()> {
    let interval = interval_secs(args, &intervals);
    let Some(cfg) =
        args.frames
            .video_config(out, format, intervals.meta().target.clone(), interval)?
    else {
        bail!(
            "-o {}: name the video .mp4, .webm or .gif (frame files go with -g)",
            out.display()
        );
    };
    let mut video = crate::output::video::VideoOutput::new(cfg)?;
    draw_all(&mut video, args, intervals)
}

/// Seconds each frame stands for: `--regroup`, or the recording's interval.
fn interval_secs(args: &RenderArgs, intervals: &Intervals) -> f64 {
    args.regroup
        .unwrap_or(intervals.meta().interval_ns as f64 / 1e9)
        .max(0.001)
}

/// An output `render` draws a recording into: PNG/SVG frames or a video.
trait Drawing: Output {
    /// The first pass (see [`crate::output::frames::FrameMaker::prime`]).
    fn first_pass(&mut self, intervals: &mut (dyn Iterator<Item = Profile> + Send));
    /// The next interval, given away.
    fn draw(&mut self, interval: Profile) -> Result<()>;
    /// Ends early (Ctrl-C): as little more work as leaves whole files; a
    /// message of what was written.
    fn interrupt(&mut self) -> Result<String>;
}

impl Drawing for FramesOutput {
    fn first_pass(&mut self, intervals: &mut (dyn Iterator<Item = Profile> + Send)) {
        self.prime(intervals);
    }
    fn draw(&mut self, interval: Profile) -> Result<()> {
        self.interval_owned(interval)
    }
    fn interrupt(&mut self) -> Result<String> {
        let n = FramesOutput::interrupt(self)?;
        Ok(format!("{n} frames written, each one whole"))
    }
}

impl Drawing for crate::output::video::VideoOutput {
    fn first_pass(&mut self, intervals: &mut (dyn Iterator<Item = Profile> + Send)) {
        self.prime(intervals);
    }
    fn draw(&mut self, interval: Profile) -> Result<()> {
        self.interval_owned(interval)
    }
    fn interrupt(&mut self) -> Result<String> {
        // The encoder's held frames are flushed: a video that plays.
        self.finish(&crate::profile::LossReport::default())?;
        Ok("the video closed over the frames drawn".into())
    }
}

/// Draws every interval (regrouped if asked) into `out`, after a cheap
/// first pass over the recording (decoded, not drawn) that fixes the
/// sibling order and the layout depth for the whole video, unless
/// `--as-live`.
///
/// Ctrl-C (or SIGTERM) stops it between two frames: the frames so far are
/// finished and the video closed over them; a second one exits at once,
/// leaving no temporary file.
fn draw_all(out: &mut impl Drawing, args: &RenderArgs, mut intervals: Intervals) -> Result<()> {
    let stop = crate::pipeline::install_stop_handler()?;
    let stopped = || stop.load(std::sync::atomic::Ordering::SeqCst);
    if !args.as_live {
        let mut first = Intervals::open(&args.recording, &args.range)?;
        out.first_pass(&mut regrouped(&mut first, args.regroup).take_while(|_| !stopped()));
    }
    let mut rendered = 0;
    let (mut samples, mut first, mut end) = (0u64, None, Duration::ZERO);
    for p in regrouped(&mut intervals, args.regroup) {
        if stopped() {
            break;
        }
        samples += p.samples();
        first.get_or_insert(p.start);
        end = end.max(p.start + p.duration);
        out.draw(p)?;
        rendered += 1;
    }
    if stopped() {
        let what = out.interrupt()?;
        bail!("interrupted after {rendered} of the recording's intervals: {what}");
    }
    out.finish(&crate::profile::LossReport::default())?;
    let (used, whole) = intervals.finish();
    let into = match &args.output {
        Some(video) => video.display().to_string(),
        None => args.frame_pattern.clone(),
    };
    let secs = end.saturating_sub(first.unwrap_or_default()).as_secs_f64();
    eprintln!(
        "rendered {into}: {rendered} frames from {used} of the recording's {whole} whole intervals, {samples} samples, {secs:.1} s"
    );
    Ok(())
}

/// The intervals of a recording, regrouped into `--regroup` seconds if
/// asked.
fn regrouped(
    intervals: &mut Intervals,
    regroup: Option<f64>,
) -> Box<dyn Iterator<Item = Profile> + Send + '_> {
    match regroup {
        Some(secs) => Box::new(Regroup {
            inner: intervals.by_ref(),
            secs,
            current: None,
            index: 0,
        }),
        None => Box::new(intervals.by_ref()),
    }
}

/// `profile report`: the report takes each interval as it is read.
pub fn report(args: ReportArgs) -> Result<()> {
    let mut intervals = Intervals::open(&args.recording, &args.range)?;
    let fmt = args.format.stack_format(true, true);
    let mut report = Report::new(
        BufWriter::new(std::io::stdout()),
        fmt,
        args.format.folded,
        args.format.text_style(),
    );
    let mut loss = crate::profile::LossReport::default();
    // Each interval's counts were checked on read; their sum over the run
    // can still pass what a count holds: then the report caps them, and
    // says so.
    let mut total: Option<u64> = Some(0);
    for p in intervals.by_ref() {
        report.interval(&p)?;
        loss.add(&p.loss);
        total = total.and_then(|t| t.checked_add(p.samples()));
    }
    intervals.finish();
    report.finish(&loss)?;
    if total.is_none() {
        bail!(
            "{}: the counts add up to more than {} over the intervals: damaged (the report above shows them capped)",
            args.recording.display(),
            u64::MAX
        );
    }
    Ok(())
}

/// `--regroup` bounds: a millisecond to a day.
const MIN_REGROUP: f64 = 0.001;
const MAX_REGROUP: f64 = 86_400.0;

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
    let report = crate::import::import_inputs_capped(
        &args.inputs,
        interval,
        &opts,
        args.max_line_bytes,
        &mut sink,
    )?;
    if let Some(w) = &mut sink.writer {
        w.close()?;
    }
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
        // Named only once the whole import succeeded: a failed one leaves
        // no half recording behind.
        self.writer = Some(RecordWriter::create_staged(self.target, &self.meta)?);
        Ok(())
    }

    fn interval(&mut self, p: Profile) -> Result<()> {
        match &mut self.writer {
            Some(w) => w.write_interval(&p),
            None => bail!("an interval before the recording was created"),
        }
    }
}

/// `profile export`: the export is built as intervals are read.
pub fn export(args: ExportArgs) -> Result<()> {
    let target = Target::resolve(&args.output, args.overwrite)?;
    let mut it = Intervals::open(&args.recording, &args.range)?;
    let opts = crate::export::ExportOptions {
        merge: args.merge,
        pprof: crate::export::pprof::PprofOptions {
            comm_frame: args.pprof_comm_frame,
            interval_labels: args.pprof_interval_labels,
        },
    };
    let meta = it.meta().clone();
    let n = crate::export::write(&target, args.format, &meta, it.by_ref(), opts).map_err(|e| {
        // Not `export | head` success: the export is cut.
        if crate::pipeline::is_broken_pipe(&e) {
            anyhow::anyhow!(
                "-o {}: the reader closed the pipe before the export was whole",
                target.display()
            )
        } else {
            e
        }
    })?;
    it.finish();
    eprintln!("exported {n} intervals to {}", target.display());
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
