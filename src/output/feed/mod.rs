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
mod routes;
mod server;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::watch;

use super::frames::layout::Canvas;
use super::frames::renderer::{FrameRenderer, RendererKind};
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
}

/// One interval's frame, as served.
pub(crate) struct FeedFrame {
    index: u64,
    frame: Frame,
}

impl FeedFrame {
    /// The frame's summary, as the page and `history.json` see it.
    fn summary(&self) -> serde_json::Value {
        let i = &self.frame.info;
        let secs = i.interval.as_secs_f64();
        serde_json::json!({
            "index": self.index,
            "start": i.start.as_secs_f64(),
            "end": (i.start + i.duration).as_secs_f64(),
            "samples": i.samples,
            "interval_samples": i.interval_samples,
            "rate": if secs > 0.0 { i.interval_samples as f64 / secs } else { 0.0 },
            "lost": i.lost,
            "target": i.target,
            "mode": i.mode,
        })
    }

    /// The frame's folded lines, as text.
    fn folded(&self) -> String {
        let mut s = self.frame.lines.join("\n");
        s.push('\n');
        s
    }
}

/// A rendered frame's identity: interval index, and PNG (true) or SVG.
type RenderKey = (u64, bool);

/// What the server's handlers share.
pub(crate) struct FeedState {
    prefix: String,
    /// The access token, when the feed listens beyond loopback.
    token: Option<String>,
    renderer: FrameRenderer,
    history_len: usize,
    history: Mutex<VecDeque<Arc<FeedFrame>>>,
    latest: watch::Sender<Option<Arc<FeedFrame>>>,
    jpeg: watch::Sender<Option<Arc<Vec<u8>>>>,
    jpeg_busy: AtomicBool,
    /// The last rendered (index, png?) -> bytes, so many clients asking for
    /// the newest frame cost one render.
    rendered: Mutex<VecDeque<(RenderKey, Arc<Vec<u8>>)>>,
}

impl FeedState {
    /// A frame as SVG or PNG, rendered once and kept among the last few.
    fn render(&self, frame: &FeedFrame, png: bool) -> Result<Arc<Vec<u8>>> {
        const KEEP: usize = 8;
        let key = (frame.index, png);
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
            self.renderer.svg(&frame.frame)?
        });
        let mut c = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        c.push_back((key, bytes.clone()));
        while c.len() > KEEP {
            c.pop_front();
        }
        Ok(bytes)
    }

    fn frame(&self, index: u64) -> Option<Arc<FeedFrame>> {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().find(|f| f.index == index).cloned()
    }
}

/// The `-T` output: owns the server's runtime.
pub struct FeedOutput {
    state: Arc<FeedState>,
    maker: FrameMaker,
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
            renderer: FrameRenderer::new(cfg.canvas, cfg.renderer)?,
            history_len: cfg.history.max(1),
            history: Mutex::new(VecDeque::new()),
            latest: watch::Sender::new(None),
            jpeg: watch::Sender::new(None),
            jpeg_busy: AtomicBool::new(false),
            rendered: Mutex::new(VecDeque::new()),
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
        Ok(FeedOutput {
            maker: FrameMaker::new(cfg.mode, cfg.canvas, cfg.format, cfg.target, 0),
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
        let frame = Arc::new(FeedFrame {
            index: profile.index,
            frame: self.maker.make(profile),
        });
        {
            let mut h = self.state.history.lock().unwrap_or_else(|e| e.into_inner());
            h.push_back(frame.clone());
            while h.len() > self.state.history_len {
                h.pop_front();
            }
        }
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
