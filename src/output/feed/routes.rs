//! The feed's routes, all under the `-P` prefix; everything else is 404.
//! Nothing is served from the file system: the page is compiled in.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt;

use super::limits::Peer;
use super::{FeedFrame, FeedState};

type St = State<Arc<FeedState>>;

const PAGE: &str = include_str!("page.html");
/// The MJPEG part boundary.
const BOUNDARY: &str = "rsprofileframe";

/// The router for a feed.
pub(super) fn router(state: Arc<FeedState>) -> Router {
    let p = state.prefix.clone();
    let mut r = Router::new()
        .route(&p, get(page))
        .route(&format!("{p}events"), get(events))
        .route(&format!("{p}history.json"), get(history))
        .route(&format!("{p}latest.svg"), get(latest_svg))
        .route(&format!("{p}latest.png"), get(latest_png))
        .route(&format!("{p}latest.folded"), get(latest_folded))
        .route(&format!("{p}frames/{{file}}"), get(past_frame))
        .route(&format!("{p}range/{{file}}"), get(range))
        .route(&format!("{p}stream.mjpeg"), get(mjpeg));
    if p.len() > 1 {
        // `-P /live` also answers at /live, sending the browser to /live/ so
        // the page's relative links resolve under the prefix.
        let to = p.clone();
        r = r.route(
            p.trim_end_matches('/'),
            get(move || async move { Redirect::permanent(&to) }),
        );
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::access::check,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

fn latest(state: &FeedState) -> Option<Arc<FeedFrame>> {
    state.latest.borrow().clone()
}

/// A stream's items until the stream is pushed out of its place (see
/// [`super::limits`]); the place is held as long as the stream lives.
fn until_evicted<S: tokio_stream::Stream + Send + 'static>(
    state: &FeedState,
    peer: Peer,
    stream: S,
) -> impl tokio_stream::Stream<Item = S::Item> + Send + 'static {
    let ticket = state.streams.admit(peer.0);
    let evicted = ticket.evicted.clone();
    let ended = async move { evicted.notified().await };
    futures_util::StreamExt::take_until(stream, ended).map(move |item| {
        let _held = &ticket;
        item
    })
}

async fn events(State(state): St, Extension(peer): Extension<Peer>) -> Response {
    let stream = WatchStream::new(state.latest.subscribe()).filter_map(|frame| {
        frame.map(|f| {
            Ok::<_, Infallible>(
                Event::default()
                    .event("frame")
                    .data(f.summary().to_string()),
            )
        })
    });
    Sse::new(until_evicted(&state, peer, stream))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

async fn history(State(state): St) -> Response {
    let list: Vec<serde_json::Value> = state
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .summaries();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::Value::Array(list).to_string(),
    )
        .into_response()
}

/// The answer when the render queue (or the client's share of it) is full.
fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "busy rendering; try again in a moment\n",
    )
        .into_response()
}

/// Renders off the runtime's workers, through the render queue: an SVG or
/// PNG can take tens of ms, a merged range more.
async fn render(
    state: Arc<FeedState>,
    peer: Peer,
    frame: impl FnOnce(&FeedState) -> Option<Arc<FeedFrame>> + Send + 'static,
    kind: Kind,
) -> Response {
    let Some(_ticket) = state.renders.admit(peer.0) else {
        return busy();
    };
    let _turn = state.renders.turn().await;
    let st = state.clone();
    let made = tokio::task::spawn_blocking(move || -> Option<anyhow::Result<Made>> {
        let frame = frame(&st)?;
        Some(match kind {
            Kind::Folded => Ok(Made::Text(frame.folded())),
            Kind::Json => Ok(Made::Text(
                super::graph::graph_json(&frame.frame, &st.look).to_string(),
            )),
            Kind::Png => st.render(&frame, true).map(Made::Bytes),
            Kind::Svg => st.render(&frame, false).map(Made::Bytes),
        })
    })
    .await;
    let ty = match kind {
        Kind::Png => "image/png",
        Kind::Svg => "image/svg+xml",
        Kind::Folded => "text/plain; charset=utf-8",
        Kind::Json => "application/json",
    };
    match made {
        Ok(Some(Ok(made))) => {
            let body = match made {
                // One copy per response; the render itself is shared.
                Made::Bytes(b) => Bytes::from(b.to_vec()),
                Made::Text(t) => Bytes::from(t),
            };
            (
                [
                    (header::CONTENT_TYPE, ty),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body,
            )
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such interval in the history\n").into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response(),
    }
}

/// What a render route makes.
#[derive(Clone, Copy)]
enum Kind {
    Svg,
    Png,
    Folded,
    /// The graph for the page to lay out (see [`super::graph`]).
    Json,
}

enum Made {
    Bytes(Arc<Vec<u8>>),
    Text(String),
}

fn folded(frame: Option<Arc<FeedFrame>>) -> Response {
    match frame {
        Some(f) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            f.folded(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no frame yet\n").into_response(),
    }
}

async fn latest_svg(State(state): St, Extension(peer): Extension<Peer>) -> Response {
    render(state, peer, latest, Kind::Svg).await
}

async fn latest_png(State(state): St, Extension(peer): Extension<Peer>) -> Response {
    render(state, peer, latest, Kind::Png).await
}

async fn latest_folded(State(state): St) -> Response {
    folded(latest(&state))
}

/// `frames/N.svg`, `.png`, `.json` or `.folded`: a past interval.
async fn past_frame(
    State(state): St,
    Extension(peer): Extension<Peer>,
    Path(file): Path<String>,
) -> Response {
    let Some((n, ext)) = file.split_once('.') else {
        return not_found().await;
    };
    let Ok(n) = n.parse::<u64>() else {
        return not_found().await;
    };
    let kind = match ext {
        "svg" => Kind::Svg,
        "png" => Kind::Png,
        "json" => Kind::Json,
        "folded" => return folded(state.frame(n)),
        _ => return not_found().await,
    };
    render(state, peer, move |s| s.frame(n), kind).await
}

/// `range/A-B.svg`, `.json` or `.folded`: intervals A to B of the
/// history, merged (only those still held: a range is capped to the
/// history whatever numbers it names).
async fn range(
    State(state): St,
    Extension(peer): Extension<Peer>,
    Path(file): Path<String>,
) -> Response {
    let Some((span, ext)) = file.split_once('.') else {
        return not_found().await;
    };
    let Some((a, b)) = span.split_once('-') else {
        return not_found().await;
    };
    let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
        return not_found().await;
    };
    let kind = match ext {
        "svg" => Kind::Svg,
        "json" => Kind::Json,
        "folded" => Kind::Folded,
        _ => return not_found().await,
    };
    render(state, peer, move |s| s.range(a.min(b), a.max(b)), kind).await
}

async fn mjpeg(State(state): St, Extension(peer): Extension<Peer>) -> Response {
    let stream = WatchStream::new(state.jpeg.subscribe()).filter_map(|jpeg| {
        jpeg.map(|j| {
            let mut part = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                j.len()
            )
            .into_bytes();
            part.extend_from_slice(&j);
            part.extend_from_slice(b"\r\n");
            Ok::<_, Infallible>(Bytes::from(part))
        })
    });
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(until_evicted(&state, peer, stream)),
    )
        .into_response()
}
