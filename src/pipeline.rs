//! The only wiring: starts the sampler, cuts time into intervals, sends each
//! interval through collector -> symbolizer -> outputs, and ends on the
//! duration or a signal (the first Ctrl-C ends cleanly, a second one kills).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::RunConfig;
use crate::collector;
use crate::output::frames::FramesOutput;
use crate::output::{Output, Report};
use crate::profile::Profile;
use crate::sampler::Sampler;
use crate::symbolizer::Symbolizer;

/// Longest the loop sleeps between looks at the clock and the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// Installs the SIGINT/SIGTERM handler: the first signal asks the run to end
/// (the report is still printed), a second one exits at once.
fn install_stop_handler() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("failed to install the signal handler")?;
    Ok(stop)
}

/// Runs a profiling session to the end.
pub fn run(cfg: RunConfig) -> Result<()> {
    let stop = install_stop_handler()?;
    let mut outputs: Vec<Box<dyn Output>> = Vec::new();
    let stdout = std::io::stdout();
    outputs.push(Box::new(Report::new(stdout.lock(), cfg.format, cfg.folded)));

    if let Some(frames) = &cfg.frames {
        // Refuse bad folders and earlier frames before sampling starts.
        frames.pattern.prepare(cfg.overwrite)?;
        outputs.push(Box::new(FramesOutput::new(frames.clone())?));
    }

    let mut sampler = Sampler::start(&cfg.sampler)?;
    let mut symbolizer = Symbolizer::new();
    if let Some(header) = &cfg.header {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", header.line())?;
        out.flush()?;
    }

    let t0 = Instant::now();
    let deadline = cfg.duration.map(|d| t0 + d);
    let mut interval_start = t0;
    let mut next_cut = t0 + cfg.interval;
    let mut index = 0;
    let mut total = Profile::default();
    loop {
        let now = Instant::now();
        let end = stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| now >= d);
        if end || now >= next_cut {
            let batch = sampler.drain()?;
            let cut = Instant::now();
            let interval =
                collector::collect(&batch, index, interval_start - t0, cut - interval_start);
            let profile = symbolizer.symbolize(&interval);
            for out in outputs.iter_mut() {
                out.interval(&profile)?;
            }
            total.merge(&profile);
            index += 1;
            interval_start = cut;
            while next_cut <= cut {
                next_cut += cfg.interval;
            }
            if end {
                break;
            }
        }
        let until = deadline.map_or(next_cut, |d| d.min(next_cut));
        let wait = until.saturating_duration_since(Instant::now()).min(TICK);
        for pid in sampler.poll_new_processes(wait)? {
            symbolizer.remember_process(pid);
        }
    }
    // Detach before writing the report: nothing stays attached after the run.
    drop(sampler);
    for out in outputs.iter_mut() {
        out.finish(&total)?;
    }
    if cfg.stats {
        eprintln!("{}", crate::output::stats_line(&total, index));
    }
    Ok(())
}
