//! Flame-graph frames (`-E`, `-g`): one numbered file per interval, rendered
//! on a rayon pool, ready for ffmpeg (scripts/make_video.sh).
//!
//! Sampling never waits for rendering: frames go to the pool through a
//! bounded queue, and when it is full they wait in a backlog on the sampling
//! side that is handed over as room frees up. At the end every frame still
//! queued is rendered (with a progress bar on a terminal); none is dropped.
//! A frame file appears only complete: written under a temporary name, then
//! renamed.

pub mod arrange;
pub mod encode;
pub mod geometry;
pub mod layout;
mod maker;
pub mod names;
pub mod palette;
pub mod pattern;
pub mod raster;
pub mod renderer;
pub mod svg;
pub mod tree;

pub use maker::{Frame, FrameMaker, PendingFrame};

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rayon::iter::{ParallelBridge, ParallelIterator};

use self::layout::Canvas;
use self::palette::Look;
use self::pattern::{FrameFormat, FramePattern};
use self::renderer::{FrameRenderer, RendererKind};
use super::{Output, StackFormat};
use crate::profile::modes::FrameMode;
use crate::profile::Profile;
use crate::safe_file::SafeDir;

/// Frames handed to the render pools and frames written, over the run: the
/// live status line shows them (one run per process).
pub static FRAMES_SUBMITTED: AtomicU64 = AtomicU64::new(0);
/// See [`FRAMES_SUBMITTED`].
pub static FRAMES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Frames waiting for the pool before the sampling side keeps them itself.
const QUEUE: usize = 8;

/// What `-E` / `-g` asked for.
#[derive(Debug, Clone)]
pub struct FramesConfig {
    /// Where frames go (`-g`).
    pub pattern: FramePattern,
    /// `--frame-mode`.
    pub mode: FrameMode,
    /// `--start-number`: the first frame's number.
    pub start_number: u64,
    /// `--width` x `--height`.
    pub canvas: Canvas,
    /// How stacks are named (`-d`, `-a`, `-U`, `-K`).
    pub format: StackFormat,
    /// What the header calls the target ("all threads", "PID 42").
    pub target: String,
    /// Render threads (0: one per CPU).
    pub threads: usize,
    /// `--renderer`, for PNG frames.
    pub renderer: RendererKind,
    /// `--title` (empty: the target, command line and host).
    pub title: String,
    /// `--colors`, `--theme`, `--background`.
    pub look: Look,
    /// Video frames per second for real-time playback (1 / interval, times
    /// `--speed`), written to the sidecar for scripts/make_video.sh.
    pub fps: Option<f64>,
    /// Say at the end how to make a video of the frames (not when the run
    /// made one already).
    pub video_hint: bool,
}

/// One frame to make and render, and where.
struct FrameJob {
    name: String,
    frame: PendingFrame,
    _ticket: Option<Ticket>,
}

/// A bound on frames in flight: `enter` blocks while `limit` are, each
/// [`Ticket`] leaves when dropped. Keeps a reader that is faster than the
/// render pool (`render`, a video) from piling up profiles in memory.
#[derive(Debug)]
pub struct InFlight {
    count: Mutex<usize>,
    left: std::sync::Condvar,
    limit: usize,
}

/// One frame in flight (see [`InFlight`]).
#[derive(Debug)]
pub struct Ticket(Arc<InFlight>);

impl InFlight {
    /// A bound of `limit` frames.
    pub fn new(limit: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            count: Mutex::new(0),
            left: std::sync::Condvar::new(),
            limit: limit.max(1),
        })
    }

    /// Waits for room, then takes it.
    pub fn enter(self: &Arc<Self>) -> Ticket {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= self.limit {
            n = self.left.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Ticket(self.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        drop(n);
        self.0.left.notify_one();
    }
}

/// The `-E` output.
pub struct FramesOutput {
    cfg: FramesConfig,
    maker: FrameMaker,
    submitted: u64,
    backlog: VecDeque<FrameJob>,
    tx: Option<SyncSender<FrameJob>>,
    pool: Option<JoinHandle<()>>,
    done: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    /// The frame folder, opened once (see [`crate::safe_file`]).
    dir: Arc<SafeDir>,
    /// Set when the output is dropped before it finished: frames still
    /// queued are skipped instead of written.
    cancelled: Arc<AtomicBool>,
    /// `render`: wait for the pool rather than keep a backlog (a live run
    /// never waits: its backlog is the sampling side's).
    in_flight: Option<Arc<InFlight>>,
    threads: usize,
}

impl FramesOutput {
    /// Prepares the frame folder (refusing to overwrite frames without
    /// `--overwrite`, already checked by the caller), loads fonts and starts
    /// the render pool. Call before sampling starts.
    pub fn new(cfg: FramesConfig, dir: Arc<SafeDir>) -> Result<FramesOutput> {
        crate::memory::keep_freed_memory();
        let renderer = Arc::new(FrameRenderer::new(cfg.canvas, cfg.renderer, cfg.look)?);
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            cfg.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("render-{i}"))
            .build()
            .context("failed to start the render pool")?;
        let (tx, rx) = mpsc::sync_channel::<FrameJob>(QUEUE);
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let cancelled = Arc::new(AtomicBool::new(false));
        let format = cfg.pattern.format;
        let handle = {
            let (done, errors, cancelled) = (done.clone(), errors.clone(), cancelled.clone());
            let dir = dir.clone();
            std::thread::Builder::new()
                .name("frames".into())
                .spawn(move || {
                    pool.install(|| {
                        rx.into_iter().par_bridge().for_each(|job| {
                            if cancelled.load(Ordering::SeqCst) {
                                return;
                            }
                            if let Err(err) = render_job(&renderer, format, &dir, job) {
                                errors
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(format!("{err:#}"));
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                            FRAMES_WRITTEN.fetch_add(1, Ordering::Relaxed);
                        })
                    })
                })
                .context("failed to start the frame thread")?
        };
        Ok(FramesOutput {
            maker: FrameMaker::new(
                cfg.mode,
                cfg.canvas,
                cfg.format,
                cfg.target.clone(),
                cfg.start_number,
            )
            .styled(cfg.title.clone(), cfg.look),
            submitted: 0,
            cfg,
            dir,
            backlog: VecDeque::new(),
            tx: Some(tx),
            pool: Some(handle),
            done,
            errors,
            cancelled,
            in_flight: None,
            threads,
        })
    }

    /// Makes `interval` wait while the pool is busy (offline rendering:
    /// memory stays bounded by a few frames whatever the recording's
    /// length).
    pub fn wait_for_pool(&mut self) {
        self.in_flight = Some(InFlight::new(QUEUE + self.threads));
    }

    /// `render`'s first pass (see [`FrameMaker::prime`]).
    pub fn prime(&mut self, intervals: impl Iterator<Item = Profile> + Send) {
        self.maker.prime(intervals);
    }

    /// The sidecar scripts/make_video.sh reads (fps, size, frames), and the
    /// command that makes the video.
    fn write_sidecar(&self, total: u64) -> Result<()> {
        let p = &self.cfg.pattern;
        let fps = self.cfg.fps.unwrap_or(1.0);
        let json = serde_json::json!({
            "pattern": p.display(),
            "first": self.cfg.start_number,
            "frames": total,
            "fps": fps,
            "width": self.cfg.canvas.width,
            "height": self.cfg.canvas.height,
        });
        let path = p.sidecar();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("the sidecar names no file")?;
        crate::safe_file::write_whole(&self.dir, name, format!("{json}\n").as_bytes(), true)
            .with_context(|| format!("failed to write {}", path.display()))?;
        if self.cfg.video_hint {
            eprintln!(
                "make the video: profile encode '{}' -o talk.mp4   ({fps} fps, real time; -o talk.mp4 does it in one step)",
                p.display()
            );
        }
        Ok(())
    }

    /// The first frame that failed to render or write, as an error.
    fn first_error(&self) -> Result<()> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        match errors.first() {
            Some(first) => bail!("{first}"),
            None => Ok(()),
        }
    }

    /// Hands an interval given away (a recording being rendered) to the
    /// pool, like [`Output::interval`] but without copying it.
    pub fn interval_owned(&mut self, interval: Profile) -> Result<()> {
        self.first_error()?;
        let ticket = self.in_flight.as_ref().map(|g| g.enter());
        let frame = self.maker.start_owned(interval);
        self.submit(frame, ticket)
    }

    fn submit(&mut self, frame: PendingFrame, ticket: Option<Ticket>) -> Result<()> {
        let job = FrameJob {
            name: self.cfg.pattern.file_name(frame.number()),
            frame,
            _ticket: ticket,
        };
        self.submitted += 1;
        FRAMES_SUBMITTED.fetch_add(1, Ordering::Relaxed);
        self.backlog.push_back(job);
        self.pump()
    }

    /// Hands backlogged frames to the pool without ever blocking.
    fn pump(&mut self) -> Result<()> {
        let tx = self.tx.as_ref().expect("the queue is open until finish");
        while let Some(job) = self.backlog.pop_front() {
            match tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    self.backlog.push_front(job);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => bail!("the render pool stopped"),
            }
        }
        Ok(())
    }
}

impl Output for FramesOutput {
    fn name(&self) -> String {
        format!("frames {}", self.cfg.pattern.display())
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        // A frame that could not be written (disk full, folder gone) stops
        // the run now, not at its end.
        self.first_error()?;
        let ticket = self.in_flight.as_ref().map(|g| g.enter());
        let frame = self.maker.start(profile);
        self.submit(frame, ticket)
    }

    fn finish(&mut self, loss: &crate::profile::LossReport) -> Result<()> {
        self.finish_frames(loss)
    }
}

impl FramesOutput {
    /// Ends early (Ctrl-C under `render`): frames not started are dropped,
    /// those being drawn finish, and the count says what was written.
    /// Returns how many frames are on disk.
    pub fn interrupt(&mut self) -> Result<u64> {
        self.cancelled.store(true, Ordering::SeqCst);
        self.backlog.clear();
        drop(self.tx.take());
        if let Some(handle) = self.pool.take() {
            handle
                .join()
                .map_err(|_| anyhow!("a render thread panicked"))?;
        }
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let done = self.done.load(Ordering::SeqCst) - errors.len() as u64;
        if let Some(first) = errors.first() {
            bail!("{} frames failed; first: {first}", errors.len());
        }
        Ok(done)
    }

    fn finish_frames(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
        let total = self.submitted;
        let bar = (std::io::stderr().is_terminal() && self.done.load(Ordering::SeqCst) < total)
            .then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "rendering frames {bar:40} {pos}/{len} [{elapsed_precise}, {eta} left]",
                    )
                    .expect("a valid progress template"),
                );
                bar
            });
        let tx = self.tx.take().expect("finish is called once");
        for job in self.backlog.drain(..) {
            tx.send(job)
                .map_err(|_| anyhow!("the render pool stopped"))?;
            if let Some(bar) = &bar {
                bar.set_position(self.done.load(Ordering::SeqCst));
            }
        }
        drop(tx);
        let handle = self.pool.take().expect("finish is called once");
        while !handle.is_finished() {
            if let Some(bar) = &bar {
                bar.set_position(self.done.load(Ordering::SeqCst));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle
            .join()
            .map_err(|_| anyhow!("a render thread panicked"))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = errors.first() {
            bail!("{} of {total} frames failed; first: {first}", errors.len());
        }
        let first = self.cfg.start_number;
        let range = match total {
            0 => String::new(),
            1 => format!(" ({})", self.cfg.pattern.file_name(first)),
            n => format!(
                " ({} to {})",
                self.cfg.pattern.file_name(first),
                self.cfg.pattern.file_name(first + n - 1)
            ),
        };
        eprintln!(
            "wrote {total} frames to {}{range}",
            self.cfg.pattern.display()
        );
        if total > 0 && self.cfg.pattern.format == pattern::FrameFormat::Png {
            self.write_sidecar(total)?;
        }
        Ok(())
    }
}

impl Drop for FramesOutput {
    /// Dropped before `finish` (another output failed, or this one did):
    /// skip what is queued and wait for frames in flight, so no thread is
    /// still writing (or leaves a temporary file) when the process exits.
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.backlog.clear();
        drop(self.tx.take());
        if let Some(handle) = self.pool.take() {
            let _ = handle.join();
        }
    }
}

fn render_job(
    renderer: &FrameRenderer,
    format: FrameFormat,
    dir: &Arc<SafeDir>,
    job: FrameJob,
) -> Result<()> {
    let frame = job.frame.make();
    let bytes = match format {
        FrameFormat::Png => renderer.png(&frame)?,
        FrameFormat::Svg => renderer.svg(&frame)?,
    };
    write_frame(dir, &job.name, &bytes)
}

/// Writes a frame under an exclusive temporary name in its folder, then
/// renames it into place, so a reader (ffmpeg, a file watcher) never sees half
/// a frame and no planted link is followed (see [`crate::safe_file`]).
pub fn write_frame(dir: &Arc<SafeDir>, name: &str, bytes: &[u8]) -> Result<()> {
    crate::safe_file::write_whole_unsynced(dir, name, bytes)
}
