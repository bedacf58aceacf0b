//! One step to a video (`-o talk.mp4`, `render run.rsprof -o talk.mp4`):
//! frames are drawn on the render pool and piped, in order, as raw RGBA
//! into an ffmpeg child process: no PNG is encoded or written.
//!
//! The codec follows the extension: `.mp4` H.264 (`-crf 18 -tune
//! stillimage`: sharp labels), `.webm` VP9, `.gif` with a generated
//! palette. The video plays at real-time speed by default (one frame per
//! interval, so fps = 1 / interval), `--speed` changes that. ffmpeg writes
//! an exclusive temporary file beside the target, renamed into place at the
//! end (see [`crate::safe_file`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};

use super::frames::renderer::FrameRenderer;
use super::frames::{FrameMaker, FramesConfig};
use super::Output;
use crate::profile::Profile;
use crate::safe_file::TempFile;

/// A video container, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFormat {
    /// H.264 in MP4.
    Mp4,
    /// VP9 in WebM.
    Webm,
    /// Animated GIF.
    Gif,
}

impl VideoFormat {
    /// The format a file name asks for, if it is a video.
    pub fn from_path(path: &Path) -> Option<VideoFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "mp4" => Some(VideoFormat::Mp4),
            "webm" => Some(VideoFormat::Webm),
            "gif" => Some(VideoFormat::Gif),
            _ => None,
        }
    }

    /// ffmpeg's arguments after the input, up to the output.
    pub fn codec_args(self, transparent: bool) -> Vec<String> {
        let v: &[&str] = match self {
            VideoFormat::Mp4 => &[
                "-c:v",
                "libx264",
                "-crf",
                "18",
                "-tune",
                "stillimage",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
            VideoFormat::Webm => &[
                "-c:v",
                "libvpx-vp9",
                "-crf",
                "30",
                "-b:v",
                "0",
                "-pix_fmt",
                if transparent { "yuva420p" } else { "yuv420p" },
                "-f",
                "webm",
            ],
            VideoFormat::Gif => &[
                "-vf",
                "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse",
                "-f",
                "gif",
            ],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// What `-o VIDEO` needs.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// The video file.
    pub path: PathBuf,
    /// Its container and codec.
    pub format: VideoFormat,
    /// Frames: canvas, look, mode, title.
    pub frames: FramesConfig,
    /// Video frames per second.
    pub fps: f64,
    /// Replace an existing file.
    pub overwrite: bool,
}

/// Free space under which the video's disk counts as full: less than a
/// few frames of H.264.
const MIN_FREE: u64 = 256 << 10;

/// Bytes free for us on the file system of `file` (root may use the
/// reserved blocks too).
fn free_bytes(file: &std::fs::File) -> Result<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed statvfs is a valid out-buffer; the fd is open.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).context("fstatvfs");
    }
    let blocks = if unsafe { libc::geteuid() } == 0 {
        st.f_bfree
    } else {
        st.f_bavail
    };
    Ok(blocks.saturating_mul(st.f_frsize))
}

/// Frames drawn but not yet written; the pool is ahead by at most this.
const AHEAD: usize = 8;

/// The `-o VIDEO` output.
pub struct VideoOutput {
    maker: FrameMaker,
    renderer: Arc<FrameRenderer>,
    pool: rayon::ThreadPool,
    /// Drawn frames, numbered, to the writer thread.
    tx: Option<SyncSender<(u64, Result<Vec<u8>>)>>,
    writer: Option<JoinHandle<Result<u64>>>,
    next: u64,
    path: PathBuf,
    temp: Option<TempFile>,
    overwrite: bool,
    fps: f64,
    /// Frames being made, drawn or waiting for the writer.
    in_flight: Arc<super::frames::InFlight>,
}

impl VideoOutput {
    /// Checks the target and ffmpeg, and starts ffmpeg. Call before
    /// sampling starts.
    pub fn new(cfg: VideoConfig) -> Result<VideoOutput> {
        crate::memory::keep_freed_memory();
        let target = crate::safe_file::Target::resolve(&cfg.path, cfg.overwrite)?;
        let crate::safe_file::Target::File { dir, name, .. } = &target else {
            bail!("-o {}: a video must go to a file", cfg.path.display());
        };
        if cfg.format == VideoFormat::Gif && cfg.frames.look.transparent {
            bail!("--background transparent: use .webm (GIF has no alpha channel)");
        }
        if cfg.format == VideoFormat::Mp4 && cfg.frames.look.transparent {
            bail!("--background transparent: use .webm (H.264 has no alpha channel)");
        }
        let temp = TempFile::new(dir, name)?;
        let canvas = cfg.frames.canvas;
        let renderer = Arc::new(FrameRenderer::new(
            canvas,
            cfg.frames.renderer,
            cfg.frames.look,
        )?);
        let mut child = spawn_ffmpeg(&cfg, &temp)?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let (tx, rx) = mpsc::sync_channel(AHEAD);
        let writer = std::thread::Builder::new()
            .name("video".into())
            .spawn(move || write_in_order(rx, stdin, child))
            .context("failed to start the video writer")?;
        let threads = if cfg.frames.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            cfg.frames.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("video-{i}"))
            .build()
            .context("failed to start the render pool")?;
        Ok(VideoOutput {
            maker: FrameMaker::new(
                cfg.frames.mode,
                canvas,
                cfg.frames.format,
                cfg.frames.target.clone(),
                0,
            )
            .styled(cfg.frames.title.clone(), cfg.frames.look),
            renderer,
            pool,
            tx: Some(tx),
            writer: Some(writer),
            next: 0,
            path: cfg.path,
            temp: Some(temp),
            overwrite: cfg.overwrite,
            fps: cfg.fps,
            in_flight: super::frames::InFlight::new(AHEAD + threads),
        })
    }

    /// `render`'s first pass (see [`FrameMaker::prime`]).
    pub fn prime(&mut self, intervals: impl Iterator<Item = Profile> + Send) {
        self.maker.prime(intervals);
    }
}

/// ffmpeg reading raw RGBA frames on stdin.
fn spawn_ffmpeg(cfg: &VideoConfig, out: &TempFile) -> Result<Child> {
    let canvas = cfg.frames.canvas;
    let mut args: Vec<String> = ["-f", "rawvideo", "-pix_fmt", "rgba", "-s"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("{}x{}", canvas.width, canvas.height));
    args.extend([
        "-framerate".into(),
        format!("{}", cfg.fps),
        "-i".into(),
        "-".into(),
    ]);
    args.extend(cfg.format.codec_args(cfg.frames.look.transparent));
    spawn_ffmpeg_into(&args, Stdio::piped(), out, &cfg.path)
}

/// Starts ffmpeg with `args` (inputs and codec) writing the video into
/// `out`: the file is handed over as the child's stdout, and ffmpeg is told
/// to write `/proc/self/fd/1`, which reopens that very file (seekable, so
/// MP4's index can go first). No path of ours reaches ffmpeg, so no name
/// someone swaps meanwhile can redirect what it writes.
pub fn spawn_ffmpeg_into(
    args: &[String],
    stdin: Stdio,
    out: &TempFile,
    shown: &Path,
) -> Result<Child> {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-xerror"])
        .args(args)
        .arg("file:/proc/self/fd/1")
        .stdin(stdin)
        .stdout(Stdio::from(out.share()?))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("-o {}: ffmpeg not found; install it (apt-get install ffmpeg) or write PNG frames with -E", shown.display())
            } else {
                anyhow!("failed to start ffmpeg: {e}")
            }
        })
}

/// Waits for ffmpeg; its failure is its last line of stderr.
pub fn wait_ffmpeg(child: Child) -> Result<()> {
    let out = child.wait_with_output().context("ffmpeg")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("ffmpeg failed ({}): {last}", out.status);
    }
    Ok(())
}

/// Writes frames to ffmpeg in their order, whatever order they were drawn
/// in; returns how many were written, or ffmpeg's own error.
fn write_in_order(
    rx: Receiver<(u64, Result<Vec<u8>>)>,
    mut stdin: ChildStdin,
    child: Child,
) -> Result<u64> {
    let mut waiting: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut next = 0;
    let mut failed: Option<anyhow::Error> = None;
    'frames: for (n, frame) in rx {
        match frame {
            Ok(bytes) => {
                waiting.insert(n, bytes);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        while let Some(bytes) = waiting.remove(&next) {
            if let Err(e) = stdin.write_all(&bytes) {
                failed = Some(anyhow!("ffmpeg stopped reading frames: {e}"));
                // Ends the thread: the output sees it at its next interval.
                break 'frames;
            }
            next += 1;
        }
    }
    drop(stdin);
    wait_ffmpeg(child)?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(next)
}

impl VideoOutput {
    /// ffmpeg gone (disk full, killed): stop the run now with its cause.
    /// The encoder holds back dozens of frames before it writes anything
    /// (x264's lookahead: 40 s at one frame a second), so a full disk is
    /// also checked directly, on the file ffmpeg writes.
    fn check_writer(&mut self) -> Result<()> {
        if let Some(temp) = &self.temp {
            let free = free_bytes(temp.file())?;
            if free < MIN_FREE {
                bail!(
                    "failed to write {}: No space left on device ({free} bytes free)",
                    self.path.display()
                );
            }
        }
        if self.writer.as_ref().is_some_and(|w| w.is_finished()) {
            let writer = self.writer.take().expect("checked");
            writer
                .join()
                .map_err(|_| anyhow!("the video writer panicked"))??;
            bail!("ffmpeg stopped before the end of the run");
        }
        Ok(())
    }

    /// Hands an interval given away (a recording being rendered) to the
    /// pool without copying it.
    pub fn interval_owned(&mut self, interval: Profile) -> Result<()> {
        self.check_writer()?;
        let ticket = self.in_flight.enter();
        let frame = self.maker.start_owned(interval);
        self.submit(frame, ticket)
    }

    fn submit(
        &mut self,
        frame: super::frames::PendingFrame,
        ticket: super::frames::Ticket,
    ) -> Result<()> {
        let n = self.next;
        self.next += 1;
        let tx = self.tx.clone().expect("open until finish");
        let renderer = self.renderer.clone();
        // Blocks when the writer is AHEAD frames behind: a live run then
        // waits here on the processing thread, never on the sampling one.
        super::frames::FRAMES_SUBMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pool.spawn(move || {
            let frame = frame.make();
            let bytes = renderer.with_pixels(&frame, |p| {
                let mut out = Vec::new();
                super::frames::encode::straight_rgba_into(p, &mut out);
                out
            });
            let _ = tx.send((n, bytes));
            drop(ticket);
            super::frames::FRAMES_WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        Ok(())
    }
}

impl Output for VideoOutput {
    fn name(&self) -> String {
        format!("the video {}", self.path.display())
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        self.check_writer()?;
        let ticket = self.in_flight.enter();
        let frame = self.maker.start(profile);
        self.submit(frame, ticket)
    }

    fn finish(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
        drop(self.tx.take());
        let writer = self.writer.take().expect("finish is called once");
        // The pool's jobs hold senders: the writer ends once all are done.
        let written = writer
            .join()
            .map_err(|_| anyhow!("the video writer panicked"))??;
        let temp = self.temp.take().expect("finish is called once");
        temp.persist(self.overwrite, true)?;
        let secs = written as f64 / self.fps;
        eprintln!(
            "wrote {} ({written} frames, {secs:.1} s at {} fps)",
            self.path.display(),
            self.fps
        );
        Ok(())
    }
}
