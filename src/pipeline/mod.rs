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
use crate::collector::{self, Interval, WalkedSamples};
use crate::export::{ExportFormat, ExportOutput};
use crate::output::feed::FeedOutput;
use crate::output::frames::FramesOutput;
use crate::output::{Output, Report};
use crate::process::announced::ProcessMaps;
use crate::process::maps::Mapping;
use crate::process::query::MapsReader;
use crate::process::AspaceId;
use crate::profile::LossReport;
use crate::python::{Interpreters, PythonMode};
use crate::recording::{Meta, RecordWriter};
use crate::safe_file::Target;
use crate::sampler::SampleRate;
use crate::sampler::Sampler;
use crate::symbolizer::{Symbolizer, SymbolizerStats};
use crate::unwind::cache::TableCache;
use crate::unwind::{UnwindMode, Unwinder};

mod announcements;
mod stats;
mod status_line;

use self::announcements::take_announcements;
use self::status_line::StatusLine;

/// Longest the sampling loop sleeps between looks at the clock and the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// How long the sampling thread waits at most while processes come and
/// go: the announcements of processes whose executables are named already
/// do not wake it (see bpf/mappings.bpf.h), so this is how late their maps
/// are read (and their unwind tables loaded) if they still run.
const BUSY_TICK: Duration = Duration::from_millis(20);

/// What the sampling thread hands the processing thread.
enum Work {
    /// Address spaces sampled for the first time, with their executable
    /// mappings as read on the sampling thread as soon as they were
    /// announced (None: gone already), and processes that exited, in order.
    Processes(Vec<Seen>),
    /// An interval to symbolize and output, and (with how many there are)
    /// its deferred samples, walked by the unwinder thread.
    Interval(Box<Interval>, Option<Deferred>),
}

/// An interval's deferred samples: how many, and where the unwinder sends
/// them once walked.
type Deferred = (u64, mpsc::Receiver<WalkedSamples>);

/// One process event, with what was read of it.
enum Seen {
    /// With its maps and, for a CPython process, its interpreter.
    Sampled(
        AspaceId,
        Option<Arc<Vec<Mapping>>>,
        Option<crate::python::Found>,
    ),
    Exited(AspaceId),
}

/// Installs the SIGINT/SIGTERM handler: the first signal asks the run to end
/// (the report is still printed), a second one exits at once.
pub(crate) fn install_stop_handler() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            crate::safe_file::remove_temp_files();
            std::process::exit(130);
        }
    })
    .context("failed to install the signal handler")?;
    Ok(stop)
}

/// The outputs of a run, each isolated from the others: one that fails is
/// dropped at once (its error kept, the run asked to stop), and the others
/// go on and finish what they hold. A closed pipe (`profile | head`) ends
/// the report quietly, as `head` users expect; under a recording or an
/// export it is a failure like any other (the data is cut).
struct OutputSet {
    outputs: Vec<Box<dyn Output + Send>>,
    failures: Vec<String>,
    failed: Arc<AtomicBool>,
}

impl OutputSet {
    /// Calls `f` on every output still running.
    fn each(&mut self, mut f: impl FnMut(&mut dyn Output) -> Result<()>) {
        let mut i = 0;
        while i < self.outputs.len() {
            match f(self.outputs[i].as_mut()) {
                Ok(()) => i += 1,
                Err(err) => {
                    let out = self.outputs.remove(i);
                    if !(is_broken_pipe(&err) && out.quiet_on_broken_pipe()) {
                        self.failures.push(format!("{}: {err:#}", out.name()));
                        self.failed.store(true, Ordering::SeqCst);
                    }
                    // Dropping it here ends its threads and removes its
                    // temporary files.
                    drop(out);
                }
            }
        }
    }
}

/// Whether an error is a pipe closed by its reader.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// What the processing thread hands back at the end.
struct Processed {
    /// The run's sample accounting.
    loss: LossReport,
    intervals: u64,
    /// Each failed output's one-line error.
    failures: Vec<String>,
    /// What symbolizing cost.
    symbols: SymbolizerStats,
    /// How long each interval took to symbolize: wall clock, and the
    /// thread's CPU time (on a busy machine the wall time also counts
    /// waiting for a CPU).
    symbolize_wall: Vec<Duration>,
    symbolize_cpu: Vec<Duration>,
}

/// This thread's CPU time so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The processing thread: symbolizer and outputs. It never stops early: an
/// output that fails is dropped and `failed` set, so the sampling side ends
/// the run, and every interval already sampled still reaches the others.
fn start_processing(
    outputs: Vec<Box<dyn Output + Send>>,
    source_lines: bool,
    kernel_cache: Option<Arc<crate::safe_file::SafeDir>>,
    own_programs: Vec<crate::sampler::own_symbols::KernelSymbol>,
    failed: Arc<AtomicBool>,
    rx: mpsc::Receiver<Work>,
) -> Result<JoinHandle<Processed>> {
    std::thread::Builder::new()
        .name("process".into())
        .spawn(move || {
            let mut set = OutputSet {
                outputs,
                failures: Vec::new(),
                failed,
            };
            let mut symbolizer = Symbolizer::with_source_lines(source_lines)
                .with_kernel_cache(kernel_cache)
                .with_own_programs(own_programs);
            // Only the accounting is kept for the whole run: each output
            // keeps what it needs of each interval.
            let mut loss = LossReport::default();
            let mut symbolize_wall = Vec::new();
            let mut symbolize_cpu = Vec::new();
            let mut intervals = 0;
            for work in rx {
                match work {
                    Work::Processes(seen) => {
                        for s in seen {
                            match s {
                                Seen::Sampled(id, maps, python) => {
                                    symbolizer.remember_process(id, maps);
                                    if let Some(interp) = python {
                                        symbolizer.remember_interpreter(id, interp);
                                    }
                                }
                                Seen::Exited(id) => symbolizer.process_exited(id),
                            }
                        }
                    }
                    Work::Interval(mut interval, deferred) => {
                        if let Some((n, rx)) = deferred {
                            join_deferred(&mut interval, n, rx.recv().ok());
                        }
                        let t = Instant::now();
                        let cpu = thread_cpu_time();
                        let profile = symbolizer.symbolize(&interval);
                        symbolize_wall.push(t.elapsed());
                        symbolize_cpu.push(thread_cpu_time().saturating_sub(cpu));
                        set.each(|out| out.interval(&profile));
                        loss.add(&profile.loss);
                        intervals += 1;
                        drop(profile);
                        crate::memory::release_freed_memory();
                    }
                }
            }
            set.each(|out| out.finish(&loss));
            Processed {
                loss,
                intervals,
                failures: set.failures,
                symbols: symbolizer.stats(),
                symbolize_wall,
                symbolize_cpu,
            }
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
    if !cfg.quiet {
        outputs.push(Box::new(Report::new(
            BufWriter::new(std::io::stdout()),
            cfg.format,
            cfg.folded,
            cfg.text_style,
        )));
    }
    if let Some(path) = &cfg.output {
        let meta = run_meta(&cfg);
        let format = if cfg.record {
            ExportFormat::Recording
        } else {
            ExportFormat::from_path(path)?
        };
        // Decided before sampling: an existing file, a planted link or a
        // folder is refused now, not after the run.
        let target = Target::resolve(path, cfg.overwrite)?;
        if format == ExportFormat::Recording {
            outputs.push(Box::new(RecordWriter::create(&target, &meta)?));
        } else {
            if let Target::File { dir, .. } = &target {
                dir.check_writable()?;
            }
            outputs.push(Box::new(ExportOutput::new(target, format, meta)?));
        }
    }
    if let Some(frames) = &cfg.frames {
        // Refuse bad folders and earlier frames before sampling starts.
        let dir = frames.pattern.prepare(cfg.overwrite)?;
        outputs.push(Box::new(FramesOutput::new(frames.clone(), dir)?));
    }

    if let Some(video) = &cfg.video {
        // Starts ffmpeg now: a missing ffmpeg or a bad target is refused
        // before sampling.
        outputs.push(Box::new(crate::output::video::VideoOutput::new(
            video.clone(),
        )?));
    }

    if let Some(feed) = &cfg.feed {
        // Binds the port now: a port in use is refused before sampling.
        outputs.push(Box::new(FeedOutput::new(feed.clone())?));
    }

    let mut sampler = Sampler::start(&cfg.sampler)?;
    let tables = cfg.sampler.unwind != UnwindMode::Fp && cfg.sampler.user_stacks;
    // One folder (opened once) holds the unwind tables and the boot's copy
    // of the core kernel's symbols; `--no-cache` bypasses both.
    let cache_dir = cfg
        .sampler
        .unwind_cache
        .as_deref()
        .filter(|_| tables || cfg.sampler.kernel_stacks)
        .and_then(crate::unwind::cache::open_dir);
    let unwinder = if tables {
        let cache = TableCache::in_dir(cache_dir.clone(), crate::unwind::cache::DEFAULT_MAX_BYTES);
        let u = Unwinder::start(
            sampler.unwind_maps()?,
            cfg.sampler.unwind_memory,
            cache,
            cfg.sampler.unwind,
        )?;
        preload(&u, &cfg.sampler);
        Some(u)
    } else {
        None
    };
    sampler.attach()?;
    if let Some(header) = &cfg.header {
        let mut out = std::io::stdout().lock();
        // A reader gone already (`| head -0`) ends the report, not the run.
        let _ = writeln!(out, "{}", header.line()).and_then(|()| out.flush());
    }
    let (tx, rx) = mpsc::channel();
    let failed = Arc::new(AtomicBool::new(false));
    let kernel_cache = cache_dir.filter(|_| cfg.sampler.kernel_stacks);
    // Only -o outputs (pprof, speedscope, recordings) keep source lines.
    let processing = start_processing(
        outputs,
        cfg.output.is_some(),
        kernel_cache,
        sampler.own_kernel_symbols(),
        failed.clone(),
        rx,
    )?;

    let mut drain_times = Vec::new();
    // The owner of BPF's Python process map, on the sampling thread:
    // processes are found when their maps are read.
    let mut python = if cfg.sampler.python == PythonMode::Auto && cfg.sampler.user_stacks {
        Some(Interpreters::new(Some(sampler.python_procs()?)))
    } else {
        None
    };
    // Each announced process's mappings (on the sampling thread).
    let mut reader = ProcessMaps::default();
    let sampled = sample(
        &mut sampler,
        unwinder.as_ref(),
        python.as_mut(),
        &cfg,
        &stop,
        &failed,
        &tx,
        &mut drain_times,
        &mut reader,
    );
    let event = sampler.event().name();
    let start_cost = sampler.start_cost.clone();
    // Detach as soon as sampling ends: nothing stays attached after the run,
    // whatever happens next.
    drop(sampler);
    let unwind_stats = unwinder.map(Unwinder::finish);
    if cfg.header.is_some() {
        // profile.py's blank line between sampling and the stacks. Printed
        // before the channel closes, so before the report starts.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out).and_then(|()| out.flush());
    }
    drop(tx);
    let Processed {
        loss,
        intervals,
        failures,
        symbols,
        symbolize_wall,
        symbolize_cpu,
    } = processing
        .join()
        .map_err(|_| anyhow!("the processing thread panicked"))?;
    if cfg.stats {
        stats::print(&stats::RunStats {
            loss: &loss,
            intervals,
            event,
            symbols: &symbols,
            start_cost: &start_cost,
            drain_times: &drain_times,
            symbolize_wall: &symbolize_wall,
            symbolize_cpu: &symbolize_cpu,
            unwind: unwind_stats.as_ref(),
            python: python.as_ref(),
            maps: reader.stats(),
        });
    }
    sampled?;
    if let Some((last, others)) = failures.split_last() {
        for f in others {
            eprintln!("profile: {f}");
        }
        bail!("{last}");
    }
    if cfg.record {
        // `record` prints no report: one line says what it wrote.
        if let Some(path) = &cfg.output {
            eprintln!(
                "recorded {}: {intervals} intervals, {} samples{}, {:.1} s",
                path.display(),
                loss.counted,
                if loss.lost() > 0 {
                    format!(" ({} lost)", loss.lost())
                } else {
                    String::new()
                },
                intervals as f64 * cfg.interval.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Loads the unwind tables of the `-p` targets before sampling starts
/// (waiting at most PRELOAD_WAIT), so that their first samples are walked
/// with them. In a whole-system run nothing is preloaded: work follows
/// samples, and each process's tables are loaded when it is first sampled
/// (the tables of the files it maps built, or read from the cache, then).
fn preload(unwinder: &Unwinder, cfg: &crate::sampler::SamplerConfig) {
    const PRELOAD_WAIT: Duration = Duration::from_secs(2);
    let mut reader = MapsReader::new();
    for &pid in &cfg.pids {
        if let Some(maps) = reader.read(pid) {
            // Running before the sampler loaded: address space 0.
            if !maps.is_empty() {
                unwinder.process(AspaceId { pid, aspace: 0 }, Arc::new(maps));
            }
        }
    }
    if !cfg.pids.is_empty() {
        unwinder.wait_loaded(PRELOAD_WAIT);
    }
}

/// The sampling loop: cuts time into intervals on a fixed grid until the
/// duration ends, a signal arrives or an output fails.
///
/// Interval N covers [N x interval, (N+1) x interval) of run time, give or
/// take the cut delay: a late cut ends its interval late and the next one
/// short, so a whole run has exactly duration / interval intervals and video
/// time does not drift. Each interval carries its real start and length.
#[allow(clippy::too_many_arguments)]
fn sample(
    sampler: &mut Sampler,
    unwinder: Option<&Unwinder>,
    mut python: Option<&mut Interpreters>,
    cfg: &RunConfig,
    stop: &AtomicBool,
    failed: &AtomicBool,
    tx: &mpsc::Sender<Work>,
    drain_times: &mut Vec<Duration>,
    reader: &mut ProcessMaps,
) -> Result<()> {
    let send = |work| {
        tx.send(work)
            .map_err(|_| anyhow!("the processing thread stopped"))
    };
    let t0 = Instant::now();
    let mut status = StatusLine::new(cfg);
    // A duration too long to represent is the same as none.
    let deadline = cfg.duration.and_then(|d| t0.checked_add(d));
    let mut interval_start = t0;
    let mut next_cut = t0 + cfg.interval;
    let mut seen = Vec::new();
    let mut index = 0;
    let mut busy = false;
    loop {
        let now = Instant::now();
        let end = stop.load(Ordering::SeqCst)
            || failed.load(Ordering::SeqCst)
            || deadline.is_some_and(|d| now >= d);
        // A grid boundary passed before the deadline is a cut of its own,
        // however late; the end is one more.
        let boundary = now >= next_cut && deadline.is_none_or(|d| next_cut < d);
        if boundary || end {
            let t = Instant::now();
            let mut batch = sampler.drain()?;
            drain_times.push(t.elapsed());
            let cut = Instant::now();
            // Announcements of processes sampled just before the cut: the
            // unwinder loads them before it walks the deferred samples.
            take_announcements(
                sampler,
                Duration::ZERO,
                reader,
                unwinder,
                python.as_deref_mut(),
                &mut seen,
            )?;
            let mut interval =
                collector::collect(&batch, index, interval_start - t0, cut - interval_start);
            let pending = collector::pending(&mut batch);
            let n = pending.len() as u64;
            let deferred = match unwinder {
                Some(u) => u.end_interval(pending).map(|rx| (n, rx)),
                None => {
                    // Nothing defers without an unwinder: report, never hide.
                    join_deferred(&mut interval, n, None);
                    None
                }
            };
            // What the processing thread needs before this interval, in one
            // hand-off (one wake-up) per interval.
            if !seen.is_empty() {
                send(Work::Processes(std::mem::take(&mut seen)))?;
            }
            status.interval(&interval.loss);
            send(Work::Interval(Box::new(interval), deferred))?;
            index += 1;
            interval_start = cut;
            if boundary {
                // Look again at once: more boundaries may have passed, and
                // the end still needs its own cut.
                next_cut += cfg.interval;
                continue;
            }
            status.clear();
            return Ok(());
        }
        status.tick(now - t0, index);
        let until = deadline.map_or(next_cut, |d| d.min(next_cut));
        let tick = if busy { BUSY_TICK } else { TICK };
        let wait = until.saturating_duration_since(Instant::now()).min(tick);
        busy = take_announcements(
            sampler,
            wait,
            reader,
            unwinder,
            python.as_deref_mut(),
            &mut seen,
        )?;
        // All in one hand-off to the unwinder.
        if let Some(u) = unwinder {
            u.flush();
        }
    }
}

/// Adds an interval's `n` deferred samples, walked; if the unwinder could
/// not answer, they are reported lost instead of counted.
fn join_deferred(interval: &mut Interval, n: u64, walked: Option<WalkedSamples>) {
    match walked {
        Some(w) => {
            interval.samples.extend(w.samples);
            interval.loss.unwind.add(&w.unwind);
        }
        None => {
            interval.loss.counted = interval.loss.counted.saturating_sub(n);
            interval.loss.lost_in_flight = interval.loss.lost_in_flight.saturating_add(n);
        }
    }
}
