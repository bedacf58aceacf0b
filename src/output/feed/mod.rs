//! The live flame graph (`-T`): an HTTP server on its own tokio runtime that
//! shows each interval's frame in the browser as it ends, with history and an
//! MJPEG stream of the frames.
//!
//! The processing thread only publishes: it makes the frame (the same
//! [`FrameMaker`] as `-E`, so same colours and frame mode), appends it to a
//! bounded history and replaces the value of a `watch` channel. Each client
//! reads the newest value when it is ready for one, so a slow or stalled
//! client skips frames instead of holding anything up; nothing here ever
//! waits on a client.

mod access;
mod graph;
mod history;
mod limits;
mod routes;
mod server;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::watch;

use self::history::{History, Located};
use super::frames::layout::Canvas;
use super::frames::renderer::{FrameRenderer, RendererKind};
use super::frames::tree::FlameTree;
use super::frames::{Frame, FrameMaker};
use super::{Output, StackFormat};
use crate::profile::modes::FrameMode;
use crate::profile::Profile;

/// Defaults shared with the command line.
pub mod defaults {
    /// `-R`.
    pub const PORT: u16 = 9090;
    /// `-P`.
    pub const PATH: &str = "/";
    /// `--listen`.
    pub const LISTEN: &str = "127.0.0.1";
    /// `--history`: intervals kept for the timeline.
    pub const HISTORY: usize = 600;
    /// `--history-mb`: space the kept intervals may take, most of it in a
    /// temporary file (see [`history`]). A whole-system interval under a
    /// build loop and a JIT service holds ~280 KB of tree in memory and
    /// ~60 KB written compactly, so 600 such intervals fit.
    pub const HISTORY_MB: u64 = 128;
}

/// `--listen`: an address a server can listen on (not broadcast or
/// multicast).
pub fn validate_listen(ip: IpAddr) -> Result<()> {
    if ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        bail!("--listen {ip}: a broadcast or multicast address can't be listened on; use 127.0.0.1, an address of this machine, or 0.0.0.0");
    }
    Ok(())
}

/// Checks a `-P` prefix: `/`, or `/`-separated segments of letters, digits
/// and `-._~` (no empty, `.` or `..` segment; one trailing `/` allowed).
/// Anything else could never be served (or is route syntax to the router,
/// such as `{x}`, `*` or `:id`), so it is refused before sampling.
pub fn validate_prefix(path: &str) -> Result<()> {
    let Some(rest) = path.strip_prefix('/') else {
        bail!("-P/--serve-path must start with '/': {path:?}");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if path == "/" {
        return Ok(());
    }
    for seg in rest.split('/') {
        let ok_chars = seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if seg.is_empty() || seg == "." || seg == ".." || !ok_chars {
            bail!(
                "-P/--serve-path {path:?}: use /-separated names of letters, digits and -._~ (such as /live or /team/cpu)"
            );
        }
    }
    Ok(())
}

/// What `-T` serves and where.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// `--listen`.
    pub listen: IpAddr,
    /// `-R`.
    pub port: u16,
    /// `-P`: the URL prefix, starting with `/`.
    pub path: String,
    /// `--history`.
    pub history: usize,
    /// `--history-mb`, in bytes.
    pub history_bytes: u64,
    /// Frame canvas (PNG and MJPEG).
    pub canvas: Canvas,
    /// `--frame-mode`.
    pub mode: FrameMode,
    /// How stacks are named.
    pub format: StackFormat,
    /// What is profiled.
    pub target: String,
    /// `--renderer`, for PNG and MJPEG.
    pub renderer: RendererKind,
    /// `--no-token`: serve beyond loopback without an access token.
    pub no_token: bool,
    /// Frame title and look (PNG and MJPEG).
    pub title: String,
    /// See [`title`](FeedConfig::title).
    pub look: crate::output::frames::palette::Look,
}

/// One interval's frame (or a merged range of them), as served.
pub(crate) struct FeedFrame {
    index: u64,
    /// The last interval of a merged range (`index` for one interval).
    last: u64,
    frame: Frame,
    /// The interval's own samples, when the frame shows more (a window,
    /// decay or everything so far): what a range merges, so that each
    /// sample counts once.
    own: Option<Arc<FlameTree>>,
    /// The processes with the most samples, largest first, then "other":
    /// the timeline's stacked bars.
    top: Vec<(String, u64)>,
}

/// Processes (first field of each folded line) shown by name on the
/// timeline; the rest are summed as "other".
const TOP_PROCESSES: usize = 5;

fn top_processes(tree: &FlameTree) -> Vec<(String, u64)> {
    let all = tree.processes();
    let mut top: Vec<(String, u64)> = all
        .iter()
        .take(TOP_PROCESSES)
        .map(|(c, n)| (c.to_string(), *n))
        .collect();
    let other: u64 = all.iter().skip(TOP_PROCESSES).map(|(_, n)| n).sum();
    if other > 0 {
        top.push(("other".into(), other));
    }
    top
}

/// This run's identity (pid and start time): a page that lost its profiler
/// knows a new run on the same port by it, and reloads.
fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{}-{ms}", std::process::id())
    })
}

impl FeedFrame {
    fn new(index: u64, last: u64, frame: Frame) -> FeedFrame {
        FeedFrame {
            top: top_processes(&frame.tree),
            index,
            last,
            frame,
            own: None,
        }
    }

    /// The tree of the interval's own samples.
    fn own_tree(&self) -> &FlameTree {
        self.own.as_deref().unwrap_or(&self.frame.tree)
    }

    /// The frame's summary, as the page and `history.json` see it.
    fn summary(&self) -> serde_json::Value {
        let i = &self.frame.info;
        let secs = i.interval.as_secs_f64();
        serde_json::json!({
            "index": self.index,
            "start": i.start.as_secs_f64(),
            "end": (i.start + i.duration).as_secs_f64(),
            // The newest interval's own start (a frame may show a window).
            "istart": (i.start + i.duration).saturating_sub(i.interval).as_secs_f64(),
            "samples": i.samples,
            "interval_samples": i.interval_samples,
            "rate": if secs > 0.0 { i.interval_samples as f64 / secs } else { 0.0 },
            "lost": i.lost,
            "target": i.target,
            "mode": i.mode,
            "top": self.top,
            "run": run_id(),
        })
    }

    /// About the memory the frame holds: its tree (names are shared
    /// between frames) and its bookkeeping.
    fn bytes(&self) -> u64 {
        (self.frame.tree.heap_bytes()
            + self.own.as_ref().map_or(0, |t| t.heap_bytes())
            + std::mem::size_of::<FeedFrame>()) as u64
    }

    /// The frame without its trees (and diff colours): what the history
    /// keeps in memory of a frame it wrote to its file.
    fn shell(&self) -> FeedFrame {
        FeedFrame {
            index: self.index,
            last: self.last,
            frame: Frame {
                tree: Arc::new(FlameTree::default()),
                deltas: None,
                fit: self.frame.fit,
                info: self.frame.info.clone(),
                comm_slots: self.frame.comm_slots.clone(),
            },
            own: None,
            top: self.top.clone(),
        }
    }

    /// The frame's folded lines, as text.
    fn folded(&self) -> String {
        let mut s = self.frame.lines().join("\n");
        s.push('\n');
        s
    }
}

/// A rendered frame's identity: first and last interval, and PNG (true)
/// or SVG.
type RenderKey = (u64, u64, bool);

/// What the server's handlers share.
pub(crate) struct FeedState {
    prefix: String,
    /// The access token, when the feed listens beyond loopback.
    token: Option<String>,
    renderer: FrameRenderer,
    /// Colours and theme, for the page's graphs as for the frames.
    look: crate::output::frames::palette::Look,
    /// Kept intervals (the newest in memory, the rest in a file).
    history: Mutex<History>,
    latest: watch::Sender<Option<Arc<FeedFrame>>>,
    jpeg: watch::Sender<Option<Arc<Vec<u8>>>>,
    jpeg_busy: AtomicBool,
    /// The last rendered (index, png?) -> bytes, so many clients asking for
    /// the newest frame cost one render.
    rendered: Mutex<VecDeque<(RenderKey, Arc<Vec<u8>>)>>,
    /// Streams being served (`events`, `stream.mjpeg`).
    streams: Arc<limits::Slots>,
    /// Renders and merges of past frames, a few at a time.
    renders: limits::RenderQueue,
}

impl FeedState {
    /// A frame as SVG or PNG, rendered once and kept among the last few.
    fn render(&self, frame: &FeedFrame, png: bool) -> Result<Arc<Vec<u8>>> {
        const KEEP: usize = 8;
        let key = (frame.index, frame.last, png);
        let cached = {
            let c = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
            c.iter().find(|(k, _)| *k == key).map(|(_, b)| b.clone())
        };
        if let Some(bytes) = cached {
            return Ok(bytes);
        }
        let bytes = Arc::new(if png {
            self.renderer.png(&frame.frame)?
        } else {
            self.renderer.page_svg(&frame.frame)?
        });
        let mut c = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        c.push_back((key, bytes.clone()));
        while c.len() > KEEP {
            c.pop_front();
        }
        Ok(bytes)
    }

    /// Adds a frame to the history (see [`History::push`]).
    fn remember(&self, frame: Arc<FeedFrame>) {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
    }

    /// Interval `index`, if the history still has it; read from the file
    /// after the lock is let go.
    fn frame(&self, index: u64) -> Option<Arc<FeedFrame>> {
        let found = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .locate(index);
        found?.load()
    }

    /// The intervals `first..=last` still in the history, merged into one
    /// frame (the timeline's drag-to-select).
    fn range(&self, first: u64, last: u64) -> Option<Arc<FeedFrame>> {
        let found = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .locate_range(first, last);
        // A part that fell out of the history meanwhile is left out.
        let parts: Vec<Arc<FeedFrame>> = found.into_iter().filter_map(Located::load).collect();
        let (head, tail) = (parts.first()?, parts.last()?);
        let mut merged: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for f in &parts {
            for line in f.own_tree().folded_lines() {
                if let Some((stack, n)) = line.rsplit_once(' ') {
                    *merged.entry(stack.to_string()).or_insert(0) += n.parse::<u64>().unwrap_or(0);
                }
            }
        }
        let mut lines: Vec<String> = merged.iter().map(|(s, n)| format!("{s} {n}")).collect();
        lines.sort_unstable();
        let samples = parts.iter().map(|f| f.frame.info.samples).sum();
        let end = tail.frame.info.start + tail.frame.info.duration;
        let duration = end.saturating_sub(head.frame.info.start);
        let info = super::frames::layout::FrameInfo {
            number: head.index,
            start: head.frame.info.start,
            duration,
            samples,
            interval_samples: samples,
            interval: duration,
            lost: None,
            mode: Some(format!("intervals {}-{} merged", head.index, tail.index)),
            depth_cap: None,
            ..head.frame.info.clone()
        };
        let frame = Frame {
            comm_slots: head.frame.comm_slots.clone(),
            ..Frame::from_lines(&lines, head.frame.fit, info)
        };
        Some(Arc::new(FeedFrame::new(head.index, tail.index, frame)))
    }
}

/// The `-T` output: owns the server's runtime.
pub struct FeedOutput {
    state: Arc<FeedState>,
    maker: FrameMaker,
    /// Each interval's own tree, when `maker`'s frames show more than
    /// their interval (see [`FeedFrame::own`]).
    own_maker: Option<FrameMaker>,
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
}

impl FeedOutput {
    /// Binds the port (before sampling starts, so a port in use is one clear
    /// error) and starts serving.
    pub fn new(cfg: FeedConfig) -> Result<FeedOutput> {
        validate_prefix(&cfg.path)?;
        let addr = SocketAddr::new(cfg.listen, cfg.port);
        let listener =
            TcpListener::bind(addr).map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        // `-R 0` lets the kernel pick: say the port actually bound.
        let port = listener.local_addr().map_or(cfg.port, |a| a.port());
        let prefix = if cfg.path.ends_with('/') {
            cfg.path.clone()
        } else {
            format!("{}/", cfg.path)
        };
        // Beyond loopback the feed shows process names and stacks to the
        // network: it then takes a random token, unless told not to.
        let token = if cfg.listen.is_loopback() || cfg.no_token {
            None
        } else {
            Some(access::new_token().context("cannot make an access token")?)
        };
        let state = Arc::new(FeedState {
            prefix: prefix.clone(),
            token: token.clone(),
            renderer: FrameRenderer::new(cfg.canvas, cfg.renderer, cfg.look)?,
            look: cfg.look,
            history: Mutex::new(History::new(cfg.history, cfg.history_bytes)),
            latest: watch::Sender::new(None),
            jpeg: watch::Sender::new(None),
            jpeg_busy: AtomicBool::new(false),
            rendered: Mutex::new(VecDeque::new()),
            streams: limits::Slots::streams(),
            renders: limits::RenderQueue::new(2),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Renders queue here instead of each taking a thread: however
            // many clients ask, at most two frames render at once.
            .max_blocking_threads(2)
            .thread_name("feed")
            .enable_io()
            .enable_time()
            .build()
            .context("failed to start the feed's runtime")?;
        let app = routes::router(state.clone());
        let server = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let cap = server::connection_cap();
        runtime.spawn(server::serve(server, app, cap));
        let host = match cfg.listen {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let mut url = format!("http://{host}:{port}{prefix}");
        if !cfg.listen.is_loopback() {
            eprintln!(
                "profile: warning: the live feed listens on {}, beyond this machine; it shows process names and stacks{}",
                cfg.listen,
                if token.is_some() {
                    " to whoever has the URL below (its token)"
                } else {
                    " to anyone (--no-token)"
                }
            );
        }
        if let Some(t) = &token {
            url.push_str(&format!("?token={t}"));
        }
        eprintln!("live flame graph at {url}");
        let own_maker = (cfg.mode != FrameMode::Interval).then(|| {
            FrameMaker::new(
                FrameMode::Interval,
                cfg.canvas,
                cfg.format,
                cfg.target.clone(),
                0,
            )
        });
        Ok(FeedOutput {
            maker: FrameMaker::new(cfg.mode, cfg.canvas, cfg.format, cfg.target, 0)
                .styled(cfg.title, cfg.look),
            own_maker,
            state,
            runtime: Some(runtime),
            url,
        })
    }

    /// Where the page is served.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Renders the newest frame as JPEG for MJPEG clients, off this thread;
    /// if the last one is still rendering, this frame is skipped for them.
    fn publish_jpeg(&self, frame: Arc<FeedFrame>) {
        if self.state.jpeg.receiver_count() == 0
            || self.state.jpeg_busy.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let state = self.state.clone();
        if let Some(rt) = &self.runtime {
            rt.spawn_blocking(move || {
                if let Ok(jpeg) = state.renderer.jpeg(&frame.frame) {
                    state.jpeg.send_replace(Some(Arc::new(jpeg)));
                }
                state.jpeg_busy.store(false, Ordering::SeqCst);
            });
        }
    }
}

impl Output for FeedOutput {
    fn name(&self) -> String {
        format!("the live feed at {}", self.url)
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        let mut frame = FeedFrame::new(profile.index, profile.index, self.maker.make(profile));
        frame.own = self.own_maker.as_mut().map(|m| m.make(profile).tree);
        let frame = Arc::new(frame);
        self.state.remember(frame.clone());
        self.state.latest.send_replace(Some(frame.clone()));
        self.publish_jpeg(frame);
        Ok(())
    }

    fn finish(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
        // Closes every connection and stops the server.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        Ok(())
    }
}

impl Drop for FeedOutput {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::validate_prefix;

    #[test]
    fn the_timeline_gets_the_top_processes_and_the_rest() {
        let lines: Vec<String> = (0..8)
            .map(|i| format!("p{i};f {}", 10 * (i + 1)))
            .chain(["p7;g 5".to_string()])
            .collect();
        let top = super::top_processes(&super::FlameTree::from_folded(&lines));
        assert_eq!(top[0], ("p7".to_string(), 85));
        assert_eq!(top.len(), super::TOP_PROCESSES + 1);
        assert_eq!(top.last().unwrap(), &("other".to_string(), 10 + 20 + 30));
    }

    #[test]
    fn prefixes() {
        for ok in ["/", "/live", "/live/", "/a/b-c_d.e~f"] {
            validate_prefix(ok).unwrap();
        }
        for bad in [
            "", "live", "//", "/{x}", "/*", "/:id", "/a//b", "/..", "/a b", "/%2e",
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
