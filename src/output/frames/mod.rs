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
pub mod geometry;
pub mod layout;
pub mod palette;
pub mod pattern;
pub mod raster;
pub mod renderer;
pub mod svg;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rayon::iter::{ParallelBridge, ParallelIterator};

use self::arrange::Arranger;
use self::layout::{Canvas, FrameInfo};
use self::palette::Look;
use self::pattern::{FrameFormat, FramePattern};
use self::renderer::{FrameRenderer, RendererKind};
use super::{Output, StackFormat};
use crate::profile::modes::{FrameMode, FrameModeState};
use crate::profile::Profile;

/// Frames handed to the render pools and frames written, over the run: the
/// live status line shows them (one run per process).
pub static FRAMES_SUBMITTED: AtomicU64 = AtomicU64::new(0);
/// See [`FRAMES_SUBMITTED`].
pub static FRAMES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Characters of label a bar must have room for to count for the layout's
/// depth (`do_sys..`).
const LABEL_CHARS: f64 = 8.0;

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
}

/// A frame ready to draw: its folded lines (cut to fit, in the order to
/// draw them), how it fits the canvas, and what its header says.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Folded lines, `stack count`.
    pub lines: Vec<String>,
    /// Bar height, font size, depth cap.
    pub fit: layout::Fit,
    /// The header band.
    pub info: FrameInfo,
    /// `--colors diff`: how much each stack prefix grew since the previous
    /// frame, in points of the frame's share.
    pub deltas: Option<Arc<arrange::PrefixMap<f32>>>,
    /// `--colors comm`: each process's palette slot, given once per run
    /// (biggest first when the run is known), so colours never change.
    pub comm_slots: Option<Arc<std::collections::HashMap<String, usize>>>,
}

impl Default for layout::Fit {
    fn default() -> Self {
        layout::fit_canvas(Canvas::default(), 1)
    }
}

/// Turns interval profiles into frames: applies the frame mode, arranges
/// and fits the graph (see [`arrange`]) and numbers them. Shared by `-E`,
/// `render` and the live feed, so all draw the same frame from the same
/// intervals.
#[derive(Debug)]
pub struct FrameMaker {
    modes: FrameModeState,
    mode: FrameMode,
    canvas: Canvas,
    format: StackFormat,
    target: String,
    title: String,
    look: Look,
    arranger: Arranger,
    next_number: u64,
    /// The run's length, when known (render): the header's progress bar.
    run_end: Option<std::time::Duration>,
    /// See [`Frame::comm_slots`].
    comm_slots: Arc<std::collections::HashMap<String, usize>>,
}

impl FrameMaker {
    /// A maker numbering frames from `start_number`.
    pub fn new(
        mode: FrameMode,
        canvas: Canvas,
        format: StackFormat,
        target: String,
        start_number: u64,
    ) -> Self {
        FrameMaker {
            modes: FrameModeState::new(mode),
            mode,
            canvas,
            format,
            target,
            title: String::new(),
            look: Look::default(),
            arranger: Arranger::new(),
            next_number: start_number,
            run_end: None,
            comm_slots: Arc::default(),
        }
    }

    /// Gives processes not seen before the next palette slots.
    fn assign_slots<'a>(&mut self, comms: impl Iterator<Item = &'a str>) {
        let mut new: Vec<&str> = comms
            .filter(|c| !self.comm_slots.contains_key(*c))
            .collect();
        if new.is_empty() {
            return;
        }
        new.dedup();
        let slots = Arc::make_mut(&mut self.comm_slots);
        for c in new {
            let n = slots.len();
            slots.entry(c.to_string()).or_insert(n);
        }
    }

    /// Sets the title and the look.
    pub fn styled(mut self, title: String, look: Look) -> Self {
        self.title = title;
        self.look = look;
        self
    }

    /// The share of a frame a bar needs to count for the layout's depth:
    /// room for a short label ([`LABEL_CHARS`] characters of the smallest
    /// size). Narrower stacks are still drawn, but never shrink the bars.
    fn min_share(&self) -> f64 {
        let scale = layout::Scale::of(self.canvas);
        let px = LABEL_CHARS * scale.min_font as f64 * layout::FONT_WIDTH;
        px / (f64::from(self.canvas.width) - 2.0 * layout::XPAD).max(1.0)
    }

    /// A frame's stacks as the graph draws them: folded, towers collapsed.
    fn stacks(&self, frame: &Profile) -> Vec<(String, u64)> {
        let folded = if self.look.colors == palette::Colors::Kernel {
            layout::folded_stacks_annotated(frame, &self.format)
        } else {
            layout::folded_stacks(frame, &self.format)
        };
        folded
            .into_iter()
            .map(|(s, n)| match arrange::collapse_runs(&s) {
                std::borrow::Cow::Borrowed(_) => (s, n),
                std::borrow::Cow::Owned(c) => (c, n),
            })
            .collect()
    }

    /// `render`'s first pass: sees every interval once (with the frame
    /// mode applied) so that sibling order and layout depth are fixed for
    /// the whole run, and the header can show progress.
    pub fn prime(&mut self, intervals: impl Iterator<Item = Profile>) {
        let mut modes = FrameModeState::new(self.mode);
        let mut totals = arrange::PrefixMap::default();
        let mut by_comm: std::collections::HashMap<String, u64> = Default::default();
        let mut depth = 0;
        let mut end = std::time::Duration::ZERO;
        let min_share = self.min_share();
        for p in intervals {
            let frame = modes.next(&p);
            let stacks = self.stacks(&frame);
            let prefixes = arrange::Prefixes::of(&stacks);
            depth = depth.max(prefixes.visible_depth(min_share));
            Arranger::add_totals(&mut totals, &prefixes);
            if self.look.colors == palette::Colors::Comm {
                for (s, n) in &stacks {
                    let comm = s.split(';').next().unwrap_or(s);
                    match by_comm.get_mut(comm) {
                        Some(t) => *t += n,
                        None => {
                            by_comm.insert(comm.to_string(), *n);
                        }
                    }
                }
            }
            end = end.max(p.start + p.duration);
        }
        // Processes by their samples over the run: the biggest get the
        // first palette slots.
        let mut comms: Vec<(String, u64)> = by_comm.into_iter().collect();
        comms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.assign_slots(comms.iter().map(|(c, _)| c.as_str()));
        self.arranger.freeze(&totals, depth);
        self.run_end = (end > std::time::Duration::ZERO).then_some(end);
    }

    /// The next frame, from the next interval.
    pub fn make(&mut self, interval: &Profile) -> Frame {
        let frame = self.modes.next(interval);
        let stacks = self.stacks(&frame);
        let prefixes = arrange::Prefixes::of(&stacks);
        let visible = prefixes.visible_depth(self.min_share());
        let depth = self.arranger.observe(&prefixes, visible);
        let fit = layout::fit_canvas(self.canvas, depth);
        let lines = self.arranger.lines(stacks, fit.depth_cap);
        let deltas = (self.look.colors == palette::Colors::Diff)
            .then(|| Arc::new(self.arranger.deltas(&lines)));
        let comm_slots = (self.look.colors == palette::Colors::Comm).then(|| {
            let comms: Vec<String> = lines
                .iter()
                .map(|l| l.split([';', ' ']).next().unwrap_or("").to_string())
                .collect();
            self.assign_slots(comms.iter().map(String::as_str));
            self.comm_slots.clone()
        });
        let loss = &interval.loss;
        let lost = (loss.lost() > 0).then(|| {
            let mut why = Vec::new();
            if loss.lost_hash_full > 0 {
                why.push(format!("{} hash full", loss.lost_hash_full));
            }
            if loss.lost_in_flight > 0 {
                why.push(format!("{} in flight", loss.lost_in_flight));
            }
            why.join(", ")
        });
        let number = self.next_number;
        self.next_number += 1;
        let end = frame.start + frame.duration;
        Frame {
            lines,
            fit,
            deltas,
            comm_slots,
            info: FrameInfo {
                number,
                target: self.target.clone(),
                title: self.title.clone(),
                start: frame.start,
                duration: frame.duration,
                samples: frame.samples(),
                interval_samples: interval.samples(),
                interval: interval.duration,
                lost,
                mode: (self.mode != FrameMode::Interval).then(|| self.mode.to_string()),
                weighted: matches!(self.mode, FrameMode::Decay(_)),
                depth_cap: fit.depth_cap,
                progress: self
                    .run_end
                    .map(|e| (end.as_secs_f64() / e.as_secs_f64()).clamp(0.0, 1.0)),
            },
        }
    }
}

/// One frame to render, and where.
struct FrameJob {
    path: PathBuf,
    frame: Frame,
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
    /// Set when the output is dropped before it finished: frames still
    /// queued are skipped instead of written.
    cancelled: Arc<AtomicBool>,
}

impl FramesOutput {
    /// Prepares the frame folder (refusing to overwrite frames without
    /// `--overwrite`, already checked by the caller), loads fonts and starts
    /// the render pool. Call before sampling starts.
    pub fn new(cfg: FramesConfig) -> Result<FramesOutput> {
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
            std::thread::Builder::new()
                .name("frames".into())
                .spawn(move || {
                    pool.install(|| {
                        rx.into_iter().par_bridge().for_each(|job| {
                            if cancelled.load(Ordering::SeqCst) {
                                return;
                            }
                            if let Err(err) = render_job(&renderer, format, &job) {
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
            backlog: VecDeque::new(),
            tx: Some(tx),
            pool: Some(handle),
            done,
            errors,
            cancelled,
        })
    }

    /// `render`'s first pass (see [`FrameMaker::prime`]).
    pub fn prime(&mut self, intervals: impl Iterator<Item = Profile>) {
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
        crate::safe_file::write_whole(&path, format!("{json}\n").as_bytes(), true)
            .with_context(|| format!("failed to write {}", path.display()))?;
        eprintln!(
            "make the video: scripts/make_video.sh '{}' talk.mp4   ({fps} fps, real time; -o talk.mp4 does it in one step)",
            p.display()
        );
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

    fn job(&mut self, interval: &Profile) -> FrameJob {
        let frame = self.maker.make(interval);
        FrameJob {
            path: self.cfg.pattern.path(frame.info.number),
            frame,
        }
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
        let job = self.job(profile);
        self.submitted += 1;
        FRAMES_SUBMITTED.fetch_add(1, Ordering::Relaxed);
        self.backlog.push_back(job);
        self.pump()
    }

    fn finish(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
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

fn render_job(renderer: &FrameRenderer, format: FrameFormat, job: &FrameJob) -> Result<()> {
    let bytes = match format {
        FrameFormat::Png => renderer.png(&job.frame)?,
        FrameFormat::Svg => renderer.svg(&job.frame)?,
    };
    write_frame(&job.path, &bytes)
}

/// Writes a frame under an exclusive temporary name in its folder, then
/// renames it into place, so a reader (ffmpeg, a file watcher) never sees half
/// a frame and no planted link is followed (see [`crate::safe_file`]).
pub fn write_frame(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::safe_file::write_whole(path, bytes, false)
}
