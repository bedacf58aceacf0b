//! The feed's accept loop, built so that no client can hold the profiler
//! up: a cap on concurrent connections (below the open-file limit, which is
//! raised to its hard limit first, so the profiler's own files never run
//! out of descriptors), newcomers over it taking the place of the oldest
//! connections of the busiest peer address (see [`super::limits`]); a deadline for
//! each request's headers (slowloris) and an idle deadline between
//! requests on a kept-alive connection; and a connection whose client has
//! stopped reading (our writes blocked for [`STALL_TIMEOUT`]) is dropped.
//! A connection that finds no descriptor free gets a short `503`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::limits::{Peer, Slots};

/// How long a client may take to send a request's headers, and may stay
/// idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long our writes to a client may stay blocked (it reads nothing)
/// before its connection is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Descriptors kept free for the profiler itself (frames, recordings,
/// /proc reads, BPF), whatever clients do.
const RESERVED_FDS: u64 = 256;
/// At most this many connections, even with a high open-file limit.
const MAX_CONNECTIONS: u64 = 512;

/// Raises the soft open-file limit to the hard one and returns how many
/// connections the feed may hold: the limit less what the profiler keeps
/// for itself, at most [`MAX_CONNECTIONS`].
pub fn connection_cap() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let usable = lim.rlim_cur.saturating_sub(RESERVED_FDS);
    usable.clamp(16, MAX_CONNECTIONS) as usize
}

/// Connections one peer address may hold before its own oldest make room:
/// the whole cap (all of loopback is one address, and a room of viewers
/// may be too); when the cap is reached, the busiest address gives way.
fn per_peer(cap: usize) -> usize {
    cap
}

/// Serves `app` on `listener` until the runtime shuts down.
pub async fn serve(listener: TcpListener, app: Router, cap: usize) {
    // Descriptors: the hard cap, never exceeded (a newcomer over it waits
    // a moment for an evicted connection to close, else gets 503).
    let permits = Arc::new(Semaphore::new(cap));
    let slots = Slots::new(cap, per_peer(cap));
    let start = Instant::now();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of descriptors or a connection reset before accept: back
            // off a little instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = addr.ip();
        // Takes a place, pushing out the oldest connection of this peer
        // (or of the peer holding the most) when the budget is full.
        let ticket = slots.admit(ip);
        let permits = permits.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let permit =
                match tokio::time::timeout(Duration::from_secs(1), permits.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return refuse(stream).await,
                };
            let service = TowerToHyperService::new(app.layer(axum::Extension(Peer(ip))));
            let blocked = Arc::new(AtomicU64::new(0));
            let io = StallGuard {
                inner: stream,
                blocked_since: blocked.clone(),
                start,
            };
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), service);
            tokio::select! {
                _ = conn => {}
                _ = stalled(&blocked, start) => {}
                _ = ticket.evicted.notified() => {}
            }
            drop(permit);
            drop(ticket);
        });
    }
}

/// Returns once the connection's writes have been blocked for longer
/// than [`STALL_TIMEOUT`].
async fn stalled(blocked_since: &AtomicU64, start: Instant) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let since = blocked_since.load(Ordering::Relaxed);
        if since != 0 {
            let now = start.elapsed().as_millis() as u64 + 1;
            if now.saturating_sub(since) > STALL_TIMEOUT.as_millis() as u64 {
                return;
            }
        }
    }
}

/// A connection that notes since when its writes have been blocked (the
/// client reads nothing and the socket's buffers are full).
struct StallGuard {
    inner: TcpStream,
    /// Milliseconds since `start` (+1) when a write last found the socket
    /// full; 0 while writes go through.
    blocked_since: Arc<AtomicU64>,
    start: Instant,
}

impl StallGuard {
    fn note(&self, pending: bool) {
        if pending {
            let now = self.start.elapsed().as_millis() as u64 + 1;
            let _ =
                self.blocked_since
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.blocked_since.store(0, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(r.is_pending());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r.is_pending());
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Tells a client over a cap to come back later, without waiting on it.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Retry-After: 1\r\nContent-Length: 18\r\n\r\ntoo many clients\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}
