//! Who may read the feed. It shows process names and stacks, so:
//!
//! - the Host header must be an IP address or `localhost` (with any port):
//!   a web page that rebinds its own domain name to 127.0.0.1 (DNS
//!   rebinding) sends its own name and is refused with 421;
//! - exactly one Host header (two: 400, as RFC 9110 says; a proxy and we
//!   could otherwise read different ones);
//! - off loopback, every request needs the run's random token in its URL
//!   (`?token=...`, printed at start, as samply and Jupyter do); the page
//!   adds it to each request it makes. It is never put in a cookie:
//!   cookies are not scoped by port, so every other service on the host
//!   would receive it. Without it: 403.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::FeedState;

/// A new random token: 128 bits from the kernel's generator, hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a Host header names this machine by address or as localhost.
pub fn host_allowed(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// Equal in length and content, compared without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries in its query, if any.
fn presented(req: &Request) -> Option<&str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
}

/// The check in front of every route.
pub(super) async fn check(
    State(state): State<Arc<FeedState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next().and_then(|h| h.to_str().ok()).unwrap_or("");
    if hosts.next().is_some() {
        return (StatusCode::BAD_REQUEST, "more than one Host header\n").into_response();
    }
    if !host_allowed(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this feed answers to an IP address or localhost only\n",
        )
            .into_response();
    }
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    if !presented(&req).is_some_and(|g| same(g, token)) {
        return (
            StatusCode::FORBIDDEN,
            "this feed needs its token: open the URL the profiler printed at start\n",
        )
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1:9090",
            "localhost:9090",
            "LOCALHOST",
            "10.1.2.3",
            "[::1]:9090",
            "[fe80::1]",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:9090",
            "",
            "127.0.0.1.nip.io",
            "[::1",
            "localhost.evil",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[..31]));
    }
}
