//! The only wiring. Two threads:
//!
//! - the sampling thread (this one) keeps time: it starts the sampler, drains
//!   it at each interval boundary and collects the raw interval, and ends on
//!   the duration or a signal (the first Ctrl-C ends cleanly, a second one
//!   kills). It never waits on symbols or rendering, so intervals stay on
//!   time.
//! - the processing thread symbolizes each interval and feeds the outputs;
//!   it also caches the memory maps of newly seen processes, in order, before
//!   the interval that needs them.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::RunConfig;
use crate::collector::{self, Interval};
use crate::export::{ExportFormat, ExportOutput};
use crate::output::feed::FeedOutput;
use crate::output::frames::FramesOutput;
use crate::output::{Output, Report};
use crate::profile::Profile;
use crate::recording::{Meta, RecordWriter};
use crate::sampler::SampleRate;
use crate::sampler::Sampler;
use crate::symbolizer::Symbolizer;

/// Longest the sampling loop sleeps between looks at the clock and the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// What the sampling thread hands the processing thread.
enum Work {
    /// Processes seen for the first time: cache their maps now.
    NewProcesses(Vec<u32>),
    /// An interval to symbolize and output.
    Interval(Interval),
}

/// Installs the SIGINT/SIGTERM handler: the first signal asks the run to end
/// (the report is still printed), a second one exits at once.
fn install_stop_handler() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            crate::output::frames::remove_partial_frames();
            std::process::exit(130);
        }
    })
    .context("failed to install the signal handler")?;
    Ok(stop)
}

/// The processing thread: symbolizer and outputs. Returns the run's total.
fn start_processing(
    mut outputs: Vec<Box<dyn Output + Send>>,
    rx: mpsc::Receiver<Work>,
) -> Result<JoinHandle<Result<(Profile, u64)>>> {
    std::thread::Builder::new()
        .name("process".into())
        .spawn(move || {
            let mut symbolizer = Symbolizer::new();
            let mut total = Profile::default();
            let mut intervals = 0;
            for work in rx {
                match work {
                    Work::NewProcesses(pids) => {
                        for pid in pids {
                            symbolizer.remember_process(pid);
                        }
                    }
                    Work::Interval(interval) => {
                        let profile = symbolizer.symbolize(&interval);
                        for out in outputs.iter_mut() {
                            out.interval(&profile)?;
                        }
                        total.merge(&profile);
                        intervals += 1;
                    }
                }
            }
            for out in outputs.iter_mut() {
                out.finish(&total)?;
            }
            Ok((total, intervals))
        })
        .context("failed to start the processing thread")
}

/// What a recording or export says about this run.
fn run_meta(cfg: &RunConfig) -> Meta {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let (frequency, period) = match cfg.sampler.rate {
        SampleRate::Frequency(hz) => (Some(hz), None),
        SampleRate::Period(n) => (None, Some(n)),
    };
    Meta {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command_line: cfg.command_line.clone(),
        host: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        frequency,
        period,
        target: cfg.target.clone(),
        interval_ns: cfg.interval.as_nanos() as u64,
        started_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

/// Runs a profiling session to the end.
pub fn run(cfg: RunConfig) -> Result<()> {
    let stop = install_stop_handler()?;
    let mut outputs: Vec<Box<dyn Output + Send>> = Vec::new();
    if !cfg.record {
        outputs.push(Box::new(Report::new(
            BufWriter::new(std::io::stdout()),
            cfg.format,
            cfg.folded,
        )));
    }
    if let Some(path) = &cfg.output {
        let meta = run_meta(&cfg);
        let format = if cfg.record {
            ExportFormat::Recording
        } else {
            ExportFormat::from_path(path)?
        };
        if path.exists() && !cfg.overwrite {
            bail!(
                "{} already exists; use --overwrite to replace it",
                path.display()
            );
        }
        if format == ExportFormat::Recording {
            outputs.push(Box::new(RecordWriter::create(path, &meta, cfg.overwrite)?));
        } else {
            outputs.push(Box::new(ExportOutput::new(path, format, meta)));
        }
    }
    if let Some(frames) = &cfg.frames {
        // Refuse bad folders and earlier frames before sampling starts.
        frames.pattern.prepare(cfg.overwrite)?;
        outputs.push(Box::new(FramesOutput::new(frames.clone())?));
    }

    if let Some(feed) = &cfg.feed {
        // Binds the port now: a port in use is refused before sampling.
        outputs.push(Box::new(FeedOutput::new(feed.clone())?));
    }

    let mut sampler = Sampler::start(&cfg.sampler)?;
    if let Some(header) = &cfg.header {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", header.line())?;
        out.flush()?;
    }
    let (tx, rx) = mpsc::channel();
    let processing = start_processing(outputs, rx)?;

    let sampled = sample(&mut sampler, &cfg, &stop, &tx);
    // Detach as soon as sampling ends: nothing stays attached after the run,
    // whatever happens next.
    drop(sampler);
    drop(tx);
    let processed = processing
        .join()
        .map_err(|_| anyhow!("the processing thread panicked"))?;
    sampled?;
    let (total, intervals) = processed?;
    if cfg.stats {
        eprintln!("{}", crate::output::stats_line(&total, intervals));
    }
    Ok(())
}

/// The sampling loop: cuts time into intervals until the duration ends or a
/// signal arrives.
fn sample(
    sampler: &mut Sampler,
    cfg: &RunConfig,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Work>,
) -> Result<()> {
    let send = |work| {
        tx.send(work)
            .map_err(|_| anyhow!("the processing thread stopped"))
    };
    let t0 = Instant::now();
    let deadline = cfg.duration.map(|d| t0 + d);
    let mut interval_start = t0;
    let mut next_cut = t0 + cfg.interval;
    let mut index = 0;
    loop {
        let now = Instant::now();
        let end = stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| now >= d);
        if end || now >= next_cut {
            let batch = sampler.drain()?;
            let cut = Instant::now();
            send(Work::Interval(collector::collect(
                &batch,
                index,
                interval_start - t0,
                cut - interval_start,
            )))?;
            index += 1;
            interval_start = cut;
            while next_cut <= cut {
                next_cut += cfg.interval;
            }
            if end {
                return Ok(());
            }
        }
        let until = deadline.map_or(next_cut, |d| d.min(next_cut));
        let wait = until.saturating_duration_since(Instant::now()).min(TICK);
        let pids = sampler.poll_new_processes(wait)?;
        if !pids.is_empty() {
            send(Work::NewProcesses(pids))?;
        }
    }
}
