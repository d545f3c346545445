//! The receivers: StatsD over UDP and JSON over HTTP, both counting into the
//! node's [`Recorder`]. Malformed input is counted and dropped with a
//! rate-limited warning; nothing in it can stop the collector.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use collector::{Recorder, StatsdSink};
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::config::Token;
use crate::ratelimit::RateLimited;
use crate::writer::WriterStats;

/// Counters of the receivers.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// StatsD lines applied.
    pub statsd_lines: AtomicU64,
    /// StatsD lines dropped as malformed (or over the custom-field bound).
    pub statsd_rejected: AtomicU64,
    /// HTTP bodies applied.
    pub http_bodies: AtomicU64,
    /// HTTP bodies refused as malformed.
    pub http_rejected: AtomicU64,
    /// HTTP requests refused for a missing or wrong token.
    pub http_unauthorized: AtomicU64,
}

/// The largest StatsD datagram read (bigger ones are cut by the kernel).
const MAX_DATAGRAM: usize = 65_535;
/// The largest HTTP body accepted.
const MAX_BODY: usize = 1 << 20;

/// Receives StatsD datagrams on `socket` until `shutdown` fires.
pub async fn statsd(
    socket: UdpSocket,
    recorder: Recorder,
    stats: Arc<IngestStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sink = StatsdSink::new(recorder);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut warn = RateLimited::new(Duration::from_secs(10));
    loop {
        let n = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    // e.g. ICMP errors surfacing on Linux; keep receiving.
                    tracing::debug!(error = %e, "statsd receive error");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let report = sink.ingest(&buf[..n]);
        stats
            .statsd_lines
            .fetch_add(report.accepted as u64, Ordering::Relaxed);
        if let Some(first) = report.rejected.first() {
            let total = stats
                .statsd_rejected
                .fetch_add(report.rejected.len() as u64, Ordering::Relaxed)
                + report.rejected.len() as u64;
            if let Some(suppressed) = warn.allow() {
                tracing::warn!(
                    error = %first,
                    in_datagram = report.rejected.len(),
                    rejected_total = total,
                    suppressed,
                    "malformed statsd input dropped"
                );
            }
        }
    }
}

#[derive(Clone)]
struct HttpState {
    recorder: Recorder,
    token: Option<Token>,
    stats: Arc<IngestStats>,
    writer: Arc<WriterStats>,
    node: String,
    warn: Arc<std::sync::Mutex<RateLimited>>,
}

/// Serves the HTTP endpoint on `listener` until `shutdown` fires:
/// `POST /v1/metrics` (a JSON body, see `collector::json`) and
/// `GET /healthz` (the collector's own counters).
pub async fn http(
    listener: TcpListener,
    recorder: Recorder,
    token: Option<Token>,
    node: String,
    stats: Arc<IngestStats>,
    writer: Arc<WriterStats>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let shared = HttpState {
        recorder,
        token,
        stats,
        writer,
        node,
        warn: Arc::new(std::sync::Mutex::new(RateLimited::new(
            Duration::from_secs(10),
        ))),
    };
    let app = Router::new()
        .route("/v1/metrics", post(post_metrics))
        .route("/healthz", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| token.matches(given.trim()))
}

async fn post_metrics(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        state
            .stats
            .http_unauthorized
            .fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <token>",
        );
    }
    match collector::json::parse(&body) {
        Ok(metrics) => {
            let outcome = metrics.apply(&state.recorder);
            state.stats.http_bodies.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                axum::Json(json!({ "ok": true, "dropped": outcome.dropped })),
            )
                .into_response()
        }
        Err(e) => {
            let total = state.stats.http_rejected.fetch_add(1, Ordering::Relaxed) + 1;
            let allowed = state
                .warn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .allow();
            if let Some(suppressed) = allowed {
                tracing::warn!(error = %e, rejected_total = total, suppressed, "malformed http body dropped");
            }
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

async fn health(State(state): State<HttpState>) -> Response {
    let s = &state.stats;
    let w = &state.writer;
    let r = state.recorder.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    axum::Json(json!({
        "node": state.node,
        "statsd": { "lines": load(&s.statsd_lines), "rejected": load(&s.statsd_rejected) },
        "http": {
            "bodies": load(&s.http_bodies),
            "rejected": load(&s.http_rejected),
            "unauthorized": load(&s.http_unauthorized),
        },
        "custom": { "fields": r.custom_fields, "dropped": r.custom_dropped },
        "ticks": {
            "written": load(&w.written),
            "duplicates": load(&w.duplicates),
            "buffered": load(&w.buffered),
            "dropped": load(&w.dropped),
            "failures": load(&w.failures),
        },
    }))
    .into_response()
}

/// Binds the StatsD socket.
pub async fn bind_statsd(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Binds the HTTP listener.
pub async fn bind_http(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
