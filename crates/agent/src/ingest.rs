//! The receivers: StatsD over UDP and JSON over HTTP, both counting into the
//! node's [`Recorder`]. Malformed input is counted and dropped with a
//! rate-limited warning; nothing in it can stop the collector.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use collector::{Recorder, StatsdSink};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::ratelimit::RateLimited;
use crate::writer::WriterStats;
use metrics_model::token::Token;

/// Counters of the receivers.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// StatsD datagrams received.
    pub statsd_datagrams: AtomicU64,
    /// StatsD datagrams the kernel dropped because the socket's receive
    /// buffer was full (the `drops` of `/proc/net/udp`, since the socket was
    /// opened), as of the last check (every second, and on `/healthz`).
    pub statsd_kernel_drops: AtomicU64,
    /// The receive buffer the kernel granted the StatsD socket, bytes (as
    /// `SO_RCVBUF` reports it; `net.core.rmem_max` caps what is asked).
    pub statsd_receive_buffer: AtomicU64,
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

/// Receives StatsD datagrams on `socket` until `shutdown` fires. Every
/// second it reads the kernel's drop counter of the socket and warns (rate
/// limited) when it grew.
pub async fn statsd(
    socket: UdpSocket,
    recorder: Recorder,
    stats: Arc<IngestStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sink = StatsdSink::new(recorder);
    // Never zeroed: the kernel writes each datagram into the spare capacity,
    // so only the pages datagrams reach become resident (not all 64 KiB).
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_DATAGRAM);
    let mut warn = RateLimited::new(Duration::from_secs(10));
    let mut drops_warn = RateLimited::new(Duration::from_secs(10));
    let drops = KernelDrops::of(&socket);
    // Every 10 s, as often as the warning may be logged: reading
    // /proc/net/udp renders every UDP socket of the machine (≈ 0.15 ms);
    // /healthz reads it afresh on each request.
    let mut drops_check = tokio::time::interval(Duration::from_secs(10));
    drops_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drops_seen = 0;
    loop {
        buf.clear();
        let n = tokio::select! {
            r = socket.recv_buf_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    // e.g. ICMP errors surfacing on Linux; keep receiving.
                    tracing::debug!(error = %e, "statsd receive error");
                    continue;
                }
            },
            _ = drops_check.tick() => {
                if let Some(total) = drops.as_ref().and_then(|d| d.read(&stats)) && total > drops_seen {
                    if let Some(suppressed) = drops_warn.allow() {
                        tracing::warn!(
                            dropped = total - drops_seen,
                            dropped_total = total,
                            receive_buffer = stats.statsd_receive_buffer.load(Ordering::Relaxed),
                            suppressed,
                            "the kernel dropped statsd datagrams: the receive buffer was full \
                             (raise --statsd-buffer, and net.core.rmem_max which caps it)"
                        );
                    }
                    drops_seen = total;
                }
                continue;
            }
            _ = shutdown.changed() => break,
        };
        stats.statsd_datagrams.fetch_add(1, Ordering::Relaxed);
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

/// The kernel's drop counter of one UDP socket: the `drops` column of
/// `/proc/net/udp` (or `udp6`) on the line of the socket's inode.
#[derive(Debug, Clone)]
pub struct KernelDrops {
    inode: String,
}

impl KernelDrops {
    /// The counter of `socket`; `None` where `/proc` does not tell (not
    /// Linux).
    pub fn of(socket: &impl std::os::fd::AsRawFd) -> Option<KernelDrops> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
        let inode = link
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .to_owned();
        Some(KernelDrops { inode })
    }

    /// Reads the counter now (and stores it in `stats`).
    pub fn read(&self, stats: &IngestStats) -> Option<u64> {
        let drops = ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .find_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                udp_drops(&text, &self.inode)
            })?;
        stats.statsd_kernel_drops.store(drops, Ordering::Relaxed);
        Some(drops)
    }
}

/// The `drops` (last column) of the line whose `inode` (tenth column) is
/// `inode`, in the text of `/proc/net/udp`.
fn udp_drops(text: &str, inode: &str) -> Option<u64> {
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() >= 13 && cols[9] == inode)
            .then(|| cols.last()?.parse().ok())
            .flatten()
    })
}

struct HttpState {
    recorder: Recorder,
    kernel_drops: Option<KernelDrops>,
    token: Option<Token>,
    stats: Arc<IngestStats>,
    writer: Arc<WriterStats>,
    node: String,
    warn: std::sync::Mutex<RateLimited>,
}

/// A response: small bodies, built whole.
type Reply = Response<Full<Bytes>>;

/// Serves the HTTP endpoint on `listener` until `shutdown` fires:
/// `POST /v1/metrics` (a JSON body, see `collector::json`) and
/// `GET /healthz` (the collector's own counters).
///
/// HTTP/1.1 through hyper (keep-alive, chunked bodies, `Expect:
/// 100-continue`); at shutdown no new connection is accepted, idle ones are
/// closed, and requests in progress are answered first.
#[allow(clippy::too_many_arguments)]
pub async fn http(
    listener: TcpListener,
    recorder: Recorder,
    kernel_drops: Option<KernelDrops>,
    token: Option<Token>,
    node: String,
    stats: Arc<IngestStats>,
    writer: Arc<WriterStats>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let shared = Arc::new(HttpState {
        recorder,
        kernel_drops,
        token,
        stats,
        writer,
        node,
        warn: std::sync::Mutex::new(RateLimited::new(Duration::from_secs(10))),
    });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // e.g. EMFILE: wait for descriptors to be released.
                    tracing::error!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(stream, shared.clone(), shutdown.clone()));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One connection, until the client closes it or `shutdown` fires (then
/// the request in progress, if any, is answered before closing).
async fn serve_connection(
    stream: TcpStream,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

async fn route(state: &HttpState, req: Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/metrics") => post_metrics(state, req).await,
        (&Method::GET | &Method::HEAD, "/healthz") => health(state),
        (_, "/v1/metrics") => method_not_allowed("POST"),
        (_, "/healthz") => method_not_allowed("GET,HEAD"),
        _ => empty(StatusCode::NOT_FOUND),
    }
}

fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::default());
    *r.status_mut() = status;
    r
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn json_reply(status: StatusCode, body: &serde_json::Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn too_large() -> Reply {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is over the limit of 1 MiB",
    )
}

fn authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| token.matches(given.trim().as_bytes()))
}

async fn post_metrics(state: &HttpState, req: Request<Incoming>) -> Reply {
    if !authorized(state, req.headers()) {
        state
            .stats
            .http_unauthorized
            .fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <token>",
        );
    }
    // A declared length over the limit is refused before reading anything;
    // a chunked body is cut when it goes over.
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(e) => {
            tracing::debug!(error = %e, "http body could not be read");
            return error(StatusCode::BAD_REQUEST, "the body could not be read");
        }
    };
    match collector::json::parse(&body) {
        Ok(metrics) => {
            let outcome = metrics.apply(&state.recorder);
            state.stats.http_bodies.fetch_add(1, Ordering::Relaxed);
            json_reply(
                StatusCode::OK,
                &json!({ "ok": true, "dropped": outcome.dropped }),
            )
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

fn health(state: &HttpState) -> Reply {
    if let Some(d) = &state.kernel_drops {
        d.read(&state.stats);
    }
    json_reply(
        StatusCode::OK,
        &health_json(&state.node, &state.stats, &state.writer, &state.recorder),
    )
}

/// The collector's counters as `/healthz` shows them (the standalone
/// alerter's `/healthz` shows the same under `collector`).
pub fn health_json(
    node: &str,
    s: &IngestStats,
    w: &WriterStats,
    recorder: &Recorder,
) -> serde_json::Value {
    let r = recorder.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "node": node,
        "statsd": {
            "datagrams": load(&s.statsd_datagrams),
            "lines": load(&s.statsd_lines),
            "rejected": load(&s.statsd_rejected),
            "kernelDrops": load(&s.statsd_kernel_drops),
            "receiveBuffer": load(&s.statsd_receive_buffer),
        },
        "http": {
            "bodies": load(&s.http_bodies),
            "rejected": load(&s.http_rejected),
            "unauthorized": load(&s.http_unauthorized),
        },
        "custom": { "fields": r.custom_fields, "dropped": r.custom_dropped },
        "counters": {
            "tooLarge": r.too_large,
            "saturated": r.saturated,
            "setValuesDropped": r.set_values_dropped,
        },
        "ticks": {
            "written": load(&w.written),
            "duplicates": load(&w.duplicates),
            "buffered": load(&w.buffered),
            "dropped": load(&w.dropped),
            "failures": load(&w.failures),
        },
    })
}

/// Binds the StatsD socket, asking the kernel for a receive buffer of
/// `receive_buffer` bytes; records (and returns) the size granted, which
/// `net.core.rmem_max` caps.
pub fn bind_statsd(
    addr: SocketAddr,
    receive_buffer: usize,
    stats: &IngestStats,
) -> std::io::Result<(UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(receive_buffer) {
        tracing::warn!(error = %e, requested = receive_buffer, "cannot set the statsd receive buffer");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    stats
        .statsd_receive_buffer
        .store(granted as u64, Ordering::Relaxed);
    let socket = UdpSocket::from_std(socket.into())?;
    Ok((socket, granted))
}

/// Binds the HTTP listener.
pub async fn bind_http(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_from_proc_net_udp() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1234: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
             1235: 0100007F:1FBE 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0\n";
        assert_eq!(udp_drops(text, "4242"), Some(17));
        assert_eq!(udp_drops(text, "999"), Some(0));
        assert_eq!(udp_drops(text, "1"), None);
    }
}
