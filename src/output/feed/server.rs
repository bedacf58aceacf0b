//! The feed's accept loop, built so that no client can hold the profiler
//! up: a cap on concurrent connections (below the open-file limit, which is
//! raised to its hard limit first, so the profiler's own files never run
//! out of descriptors), a deadline for each request's headers (slowloris),
//! and an idle deadline between requests on a kept-alive connection. A
//! connection over the cap gets a short `503` and is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers, and may stay
/// idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Serves `app` on `listener` until the runtime shuts down.
pub async fn serve(listener: TcpListener, app: Router, cap: usize) {
    let permits = Arc::new(Semaphore::new(cap));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of descriptors or a connection reset before accept: back
            // off a little instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// Tells a client over the cap to come back later, without waiting on it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Retry-After: 1\r\nContent-Length: 18\r\n\r\ntoo many clients\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}
