//! The JSON API (`/api/v1/...`, `/healthz`, `/readyz`); see `docs/api.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use incidents::persist;
use metrics_model::store::{AlertStore, StoreError, TickStore};
use metrics_model::time::{Millis, format_rfc3339};
use metrics_model::{HostName, Instance, Key, StandardField};
use rules_engine::Incident;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::AppState;
use crate::cache::{self, Acc, Derived, HostCache, Stat};
use crate::params::{
    self, DisksQuery, IncidentsQuery, OverviewQuery, QueryMap, SeriesPlan, SeriesQuery,
};
use metrics_model::time::now_ms;

/// An API error: a status and a JSON body naming the bad parameter.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    parameter: Option<String>,
    message: String,
}

impl ApiError {
    /// 400: `parameter` is bad.
    pub fn bad(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            parameter: Some(parameter.to_owned()),
            message: format!("{parameter}: {}", message.into()),
        }
    }

    /// 400: field `parameter` is bad; `message` is the whole message
    /// (it may name several fields).
    pub fn field(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            parameter: Some(parameter.to_owned()),
            message: message.into(),
        }
    }

    /// Any status, with no parameter to blame.
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            parameter: None,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The bad parameter, when one is to blame.
    pub fn parameter(&self) -> Option<&str> {
        self.parameter.as_deref()
    }

    /// The message (starts with the parameter's name when one is to blame).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 503: the store cannot be read.
    pub fn unavailable(e: &StoreError) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            parameter: None,
            message: format!("cannot read the store: {e}"),
        }
    }

    /// 503 with `Retry-After`: too many heavy requests are being answered.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            parameter: None,
            message: message.into(),
        }
    }
}

/// Seconds a client is asked to wait (`Retry-After`) after a 503.
pub const RETRY_AFTER_SECS: u32 = 2;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.parameter {
            Some(p) => json!({ "error": self.message, "parameter": p }),
            None => json!({ "error": self.message }),
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        r
    }
}

type Params = Query<QueryMap>;

/// A node, as `/api/v1/nodes` lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeOut {
    node: HostName,
    last_seen: Millis,
    last_seen_at: String,
    age_ms: i64,
    stale: bool,
}

/// A node counts as stale when its newest tick is older than three
/// collection intervals (at least 30 s).
pub fn stale_after_ms<T, A>(state: &AppState<T, A>) -> i64 {
    let interval = state
        .config
        .borrow()
        .monitoring
        .collection_interval
        .as_millis_i64();
    (3 * interval).max(30_000)
}

async fn known_hosts<T: TickStore, A>(
    state: &AppState<T, A>,
) -> Result<Vec<metrics_model::store::HostInfo>, ApiError> {
    match state.ticks.hosts().await {
        Ok(mut h) => {
            h.sort_by(|a, b| a.host.cmp(&b.host));
            Ok(h)
        }
        Err(e) => {
            state.store_errors.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::unavailable(&e))
        }
    }
}

/// `GET /api/v1/nodes`.
pub async fn nodes<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    params::nodes_query(&q)?;
    let now = now_ms();
    let stale_ms = stale_after_ms(&state);
    let hosts = known_hosts(&state).await?;
    let nodes: Vec<NodeOut> = hosts
        .into_iter()
        .map(|h| NodeOut {
            last_seen_at: format_rfc3339(h.last_seen),
            age_ms: now - h.last_seen,
            stale: now - h.last_seen > stale_ms,
            node: h.host,
            last_seen: h.last_seen,
        })
        .collect();
    Ok(Json(json!({ "now": now, "staleAfterMs": stale_ms, "nodes": nodes })).into_response())
}

/// Refreshes the cache entries of `hosts` concurrently and returns them in
/// `hosts` order. No caller holds more than one entry's lock at a time, so
/// concurrent requests cannot deadlock.
async fn prepare<T: TickStore + Clone + 'static, A: Send + Sync + 'static>(
    state: &Arc<AppState<T, A>>,
    hosts: &[HostName],
    now: Millis,
    back_to: Millis,
) -> Result<Vec<(HostName, Arc<Mutex<HostCache>>)>, ApiError> {
    let mut set = tokio::task::JoinSet::new();
    for host in hosts {
        let state = state.clone();
        let host = host.clone();
        set.spawn(async move {
            let entry = state.cache.host(&host);
            let mut guard = entry.lock().await;
            state
                .cache
                .refresh(&state.ticks, &mut guard, &host, now, back_to)
                .await
        });
    }
    let mut error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error = Some(e),
            Err(e) => error = Some(StoreError::Other(e.to_string())),
        }
    }
    if let Some(e) = error {
        state.store_errors.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::unavailable(&e));
    }
    Ok(hosts
        .iter()
        .map(|h| (h.clone(), state.cache.host(h)))
        .collect())
}

/// The nodes a request is about: `nodes=` (each must be known) or all.
async fn selected<T: TickStore, A>(
    state: &AppState<T, A>,
    wanted: Option<Vec<HostName>>,
) -> Result<Vec<HostName>, ApiError> {
    let known: Vec<HostName> = known_hosts(state)
        .await?
        .into_iter()
        .map(|h| h.host)
        .collect();
    state.cache.retain(&known);
    match wanted {
        None => Ok(known),
        // Each node once (the parser removes repeats): a node's cache entry
        // is locked once per request.
        Some(wanted) => {
            for w in &wanted {
                if !known.contains(w) {
                    return Err(ApiError::bad(
                        "nodes",
                        format!("unknown node {:?}", w.as_str()),
                    ));
                }
            }
            Ok(wanted)
        }
    }
}

#[derive(Debug, Serialize)]
struct SeriesOut {
    node: HostName,
    field: Key,
    /// Per statistic, one value per bucket (`null`: no tick). `f32`, as
    /// the cache keeps them, so the JSON carries their shortest form.
    #[serde(flatten)]
    stats: std::collections::BTreeMap<&'static str, Vec<Option<f32>>>,
}

#[derive(Debug, Serialize)]
struct SeriesResponse {
    from: Millis,
    to: Millis,
    step: i64,
    t: Vec<Millis>,
    series: Vec<SeriesOut>,
}

fn stat_values(buckets: &[Acc], stat: Stat) -> Vec<Option<f32>> {
    buckets
        .iter()
        .map(|a| a.get(stat).map(|v| v as f32))
        .collect()
}

/// `GET /api/v1/series`: downsampled ranges per node and field.
pub async fn series<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let query = SeriesQuery::parse(&q, now)?;
    let SeriesPlan { cached, grid, .. } = query.plan(now);
    let SeriesQuery {
        from,
        to,
        fields,
        stats: wanted_stats,
        nodes,
        ..
    } = query;
    let step = grid.step;
    let hosts = selected(&state, nodes).await?;
    let values = params::check_values(hosts.len() * fields.len(), grid.n, wanted_stats.len())?;
    // Heavy requests (many values, or read from the store) at most
    // `MAX_HEAVY` at once; the others are told to come back.
    let _permit = if values > params::HEAVY_VALUES || !cached {
        Some(state.heavy.try_acquire().map_err(|_| {
            ApiError::busy(format!(
                "{} large series requests are being answered; retry in {RETRY_AFTER_SECS} s",
                params::MAX_HEAVY
            ))
        })?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(hosts.len() * fields.len());
    let has_custom = fields.iter().any(|k| cache::cached_field(k).is_none());
    let entries = if cached {
        prepare(&state, &hosts, now, from).await?
    } else {
        Vec::new()
    };
    for (i, host) in hosts.iter().enumerate() {
        let slow = if has_custom || !cached {
            Some(state.ticks.range(host, grid.t0, to).await.map_err(|e| {
                state.store_errors.fetch_add(1, Ordering::Relaxed);
                ApiError::unavailable(&e)
            })?)
        } else {
            None
        };
        let guard = match entries.get(i) {
            Some((_, e)) if slow.is_none() => Some(e.lock().await),
            _ => None,
        };
        for field in &fields {
            let buckets = match (cache::cached_field(field), &slow, guard.as_deref()) {
                (Some(f), None, Some(g)) => g.downsample(f, &grid),
                (_, Some(ticks), _) => cache::downsample_ticks(ticks, field, &grid),
                _ => vec![Acc::default(); grid.n],
            };
            let map = wanted_stats
                .iter()
                .map(|s| (s.as_str(), stat_values(&buckets, *s)))
                .collect();
            out.push(SeriesOut {
                node: host.clone(),
                field: field.clone(),
                stats: map,
            });
        }
    }
    let t: Vec<Millis> = (0..grid.n).map(|i| grid.t0 + i as i64 * step).collect();
    Ok(Json(SeriesResponse {
        from,
        to,
        step,
        t,
        series: out,
    })
    .into_response())
}

/// One row of the overview table.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OverviewRow {
    node: HostName,
    last_seen: Millis,
    stale: bool,
    uptime: Option<f64>,
    cpu: Option<f64>,
    cpu_peak: Option<f32>,
    mem: Option<f64>,
    mem_peak: Option<f32>,
    requests: f64,
    events_in: f64,
    events_out: f64,
    warnings: f64,
    errors: f64,
    criticals: f64,
    /// The highest disk usage of any mount over the window.
    disk_peak: Option<DiskPeakOut>,
    /// Watched processes (newest values in the window), by name.
    processes: Vec<ProcessOut>,
    /// Processes beyond [`params::MAX_PROCESSES_PER_NODE`].
    processes_more: usize,
    /// Receive and send rates; `None` when no interface reported in the
    /// window.
    network: Option<NetworkOut>,
}

#[derive(Debug, Serialize)]
struct DiskPeakOut {
    /// `None` when the node has more mounts than the cache numbers.
    mount: Option<Instance>,
    usage: f32,
}

#[derive(Debug, Serialize)]
struct ProcessOut {
    name: Instance,
    count: Option<f64>,
    cpu: Option<f64>,
    mem: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkOut {
    /// Bytes/s: the newest rate of each interface, summed.
    rx: Option<f64>,
    tx: Option<f64>,
    /// The highest per-tick sum over the interfaces in the window.
    rx_peak: Option<f32>,
    tx_peak: Option<f32>,
    /// Errors of all interfaces over the window (`None`: none reported).
    errors: Option<f64>,
    interfaces: Vec<InterfaceOut>,
    interfaces_more: usize,
}

#[derive(Debug, Serialize)]
struct InterfaceOut {
    name: Instance,
    rx: Option<f64>,
    tx: Option<f64>,
}

/// The newest values of `fields` (instanced standard fields) per instance
/// in the window: instances in byte order, one value per field.
fn by_instance<const N: usize>(
    g: &HostCache,
    fields: [StandardField; N],
    from: Millis,
    to: Millis,
) -> std::collections::BTreeMap<&Instance, [Option<f64>; N]> {
    let mut out = std::collections::BTreeMap::new();
    for (k, f) in fields.into_iter().enumerate() {
        for (i, v) in g.latest_in(f, from, to) {
            out.entry(i).or_insert([None; N])[k] = Some(v);
        }
    }
    out
}

fn processes(g: &HostCache, from: Millis, to: Millis) -> (Vec<ProcessOut>, usize) {
    use StandardField::{ProcessCount, ProcessCpu, ProcessMem};
    let all = by_instance(g, [ProcessCount, ProcessCpu, ProcessMem], from, to);
    let more = all.len().saturating_sub(params::MAX_PROCESSES_PER_NODE);
    let list = all
        .into_iter()
        .take(params::MAX_PROCESSES_PER_NODE)
        .map(|(name, [count, cpu, mem])| ProcessOut {
            name: name.clone(),
            count,
            cpu,
            mem,
        })
        .collect();
    (list, more)
}

fn network(g: &HostCache, from: Millis, to: Millis) -> Option<NetworkOut> {
    use StandardField::{NetErrorsCount, NetRx, NetTx};
    let all = by_instance(g, [NetRx, NetTx, NetErrorsCount], from, to);
    let rx_peak = g.aggregate_derived(Derived::NetRx, from, to);
    let tx_peak = g.aggregate_derived(Derived::NetTx, from, to);
    let errors = g.aggregate_derived(Derived::NetErrors, from, to);
    if all.is_empty() && rx_peak.n == 0 && tx_peak.n == 0 && errors.n == 0 {
        return None;
    }
    let sum = |k: usize| {
        all.values()
            .filter_map(|v| v[k])
            .fold(None, |s: Option<f64>, v| Some(s.unwrap_or(0.0) + v))
    };
    Some(NetworkOut {
        rx: sum(0),
        tx: sum(1),
        rx_peak: rx_peak.get(Stat::Max).map(|v| v as f32),
        tx_peak: tx_peak.get(Stat::Max).map(|v| v as f32),
        errors: errors.get(Stat::Sum),
        interfaces_more: all.len().saturating_sub(params::MAX_INTERFACES_PER_NODE),
        interfaces: all
            .iter()
            .take(params::MAX_INTERFACES_PER_NODE)
            .map(|(name, [rx, tx, _])| InterfaceOut {
                name: (*name).clone(),
                rx: *rx,
                tx: *tx,
            })
            .collect(),
    })
}

/// `GET /api/v1/overview`: one row per node over the window.
pub async fn overview<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let OverviewQuery { from, to, nodes } = OverviewQuery::parse(&q, now)?;
    let hosts = selected(&state, nodes).await?;
    let last_seen: HashMap<HostName, Millis> = known_hosts(&state)
        .await?
        .into_iter()
        .map(|h| (h.host, h.last_seen))
        .collect();
    let stale_ms = stale_after_ms(&state);
    let entries = prepare(&state, &hosts, now, from).await?;
    let mut rows: Vec<OverviewRow> = Vec::with_capacity(entries.len());
    for (host, entry) in &entries {
        let g = entry.lock().await;
        rows.push({
            let sum = |f| g.aggregate(f, from, to).get(Stat::Sum).unwrap_or(0.0);
            let peak = |f| g.aggregate(f, from, to).get(Stat::Max).map(|v| v as f32);
            let last = g.last().filter(|t| t.ts >= from && t.ts <= to);
            let cur = |f: StandardField| last.and_then(|t| t.standard(f));
            let seen = last_seen.get(host).copied().unwrap_or(Millis::MIN);
            let (procs, procs_more) = processes(&g, from, to);
            OverviewRow {
                node: host.clone(),
                last_seen: seen,
                stale: now - seen > stale_ms,
                uptime: g.last().and_then(|t| t.standard(StandardField::Uptime)),
                cpu: cur(StandardField::CpuUsage),
                cpu_peak: peak(StandardField::CpuUsage),
                mem: cur(StandardField::MemUsage),
                mem_peak: peak(StandardField::MemUsage),
                requests: sum(StandardField::RequestsCount),
                events_in: sum(StandardField::EventsInCount),
                events_out: sum(StandardField::EventsOutCount),
                warnings: sum(StandardField::WarningsCount),
                errors: sum(StandardField::ErrorsCount),
                criticals: sum(StandardField::CriticalsCount),
                disk_peak: g.disk_peak(from, to).map(|(usage, mount)| DiskPeakOut {
                    mount: mount.cloned(),
                    usage,
                }),
                processes: procs,
                processes_more: procs_more,
                network: network(&g, from, to),
            }
        });
    }
    Ok(
        Json(
            json!({ "from": from, "to": to, "now": now, "staleAfterMs": stale_ms, "nodes": rows }),
        )
        .into_response(),
    )
}

/// One row of the disks view: a mount of a node.
#[derive(Debug, Serialize)]
struct DiskOut {
    node: HostName,
    mount: Instance,
    /// % used (newest value in the window).
    usage: Option<f64>,
    /// KB available.
    free: Option<f64>,
    /// % of inodes used (`None`: no inode limit, or not reported).
    inodes: Option<f64>,
}

/// `GET /api/v1/disks`: every mount of the selected nodes with its newest
/// values in the window, highest usage first, at most `limit`.
pub async fn disks<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    use StandardField::{DiskFree, DiskInodesUsage, DiskUsage};
    let now = now_ms();
    let DisksQuery {
        from,
        to,
        nodes,
        limit,
    } = DisksQuery::parse(&q, now)?;
    let hosts = selected(&state, nodes).await?;
    let entries = prepare(&state, &hosts, now, from).await?;
    let mut rows: Vec<DiskOut> = Vec::new();
    for (host, entry) in &entries {
        let g = entry.lock().await;
        let mounts = by_instance(&g, [DiskUsage, DiskFree, DiskInodesUsage], from, to);
        rows.extend(
            mounts
                .into_iter()
                .map(|(mount, [usage, free, inodes])| DiskOut {
                    node: host.clone(),
                    mount: mount.clone(),
                    usage,
                    free,
                    inodes,
                }),
        );
    }
    let total = rows.len();
    // Worst first: highest usage (a mount without one last), then by node
    // and mount.
    let order = |a: &DiskOut, b: &DiskOut| {
        let ua = a.usage.unwrap_or(f64::NEG_INFINITY);
        let ub = b.usage.unwrap_or(f64::NEG_INFINITY);
        ub.total_cmp(&ua)
            .then_with(|| a.node.cmp(&b.node))
            .then_with(|| a.mount.cmp(&b.mount))
    };
    if rows.len() > limit {
        rows.select_nth_unstable_by(limit, order);
        rows.truncate(limit);
    }
    rows.sort_unstable_by(order);
    Ok(
        Json(json!({ "from": from, "to": to, "now": now, "total": total, "disks": rows }))
            .into_response(),
    )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IncidentOut {
    #[serde(flatten)]
    incident: Incident,
    duration_ms: i64,
    /// `{"by","at","comment"}` when acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    acknowledged: Option<serde_json::Value>,
    /// Open, muted when it opened, and not notified yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    held: bool,
    /// What mutes it now: `{"silence": id}` or `{"maintenance": name}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    silenced_by: Vec<serde_json::Value>,
}

impl IncidentOut {
    fn new(incident: Incident, duration_ms: i64) -> IncidentOut {
        IncidentOut {
            incident,
            duration_ms,
            acknowledged: None,
            held: false,
            silenced_by: Vec::new(),
        }
    }
}

/// `GET /api/v1/incidents`: open incidents, and those resolved in the window.
pub async fn incidents<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let IncidentsQuery { from, to, limit } = IncidentsQuery::parse(&q, now)?;
    let fail = |e: StoreError| {
        state.store_errors.fetch_add(1, Ordering::Relaxed);
        ApiError::unavailable(&e)
    };
    let snapshot = state.alerts.load().await.map_err(fail)?;
    let view = incidents::view::view(&snapshot);
    let acks = crate::silences::acknowledgements(&state.alerts)
        .await
        .map_err(fail)?;
    let silences = crate::silences::silences(&state.alerts)
        .await
        .map_err(fail)?;
    let windows = state.config.borrow().alerting.maintenance.clone();
    let ack_json = |id: &uuid::Uuid| {
        acks.get(id).map(|a| {
            let mut v = a.to_json();
            if let Some(o) = v.as_object_mut() {
                o.remove("incidentId");
            }
            v
        })
    };
    let mut open: Vec<IncidentOut> = view
        .open
        .into_iter()
        .map(|i| {
            let mut out = IncidentOut::new(i, 0);
            out.duration_ms = now - out.incident.start_time;
            out.acknowledged = ack_json(&out.incident.id);
            out.held = view.held.contains(&out.incident.id);
            out.silenced_by = silences
                .iter()
                .filter(|s| s.mutes(&out.incident, now))
                .map(|s| json!({ "silence": s.id.to_string() }))
                .chain(
                    windows
                        .iter()
                        .filter(|w| w.mutes(&out.incident, now))
                        .map(|w| json!({ "maintenance": w.name })),
                )
                .collect();
            out
        })
        .collect();
    open.sort_by_key(|o| std::cmp::Reverse(o.incident.start_time));
    let mut unreadable = view.unreadable;
    let mut resolved = Vec::new();
    for text in state.alerts.resolved(from, to, limit).await.map_err(fail)? {
        match persist::decode_incident(&text) {
            Ok(i) => {
                let mut out = IncidentOut::new(i, 0);
                out.duration_ms = out.incident.end_time.unwrap_or(now) - out.incident.start_time;
                out.acknowledged = ack_json(&out.incident.id);
                resolved.push(out);
            }
            Err(_) => unreadable += 1,
        }
    }
    resolved.reverse();
    Ok(Json(json!({
        "from": from, "to": to, "now": now,
        "lastEvaluated": view.last_evaluated,
        "open": open, "resolved": resolved, "unreadableRecords": unreadable,
    }))
    .into_response())
}

/// `GET /healthz`: the process answers; in standalone mode with the
/// counters of this machine's collector (StatsD datagrams, kernel drops,
/// the receive buffer granted, refused and saturated counters).
pub async fn healthz<T, A>(State(state): State<Arc<AppState<T, A>>>) -> Response {
    match &state.collector {
        Some(c) => Json(json!({ "status": "ok", "collector": c() })).into_response(),
        None => Json(json!({ "status": "ok" })).into_response(),
    }
}

/// `GET /readyz`: the store answers and the cache warm-up is done.
pub async fn readyz<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
) -> Response {
    if let Err(e) = state.ticks.hosts().await {
        state.store_errors.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "unavailable", "error": format!("cannot read the store: {e}") }),
            ),
        )
            .into_response();
    }
    if !state.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "error": "loading recent ticks into the cache" })),
        )
            .into_response();
    }
    Json(json!({ "status": "ready", "leader": state.stats.leader.load(Ordering::Relaxed) }))
        .into_response()
}

/// Unknown paths: 404 with a JSON body.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no such page or endpoint: {}", uri.path()) })),
    )
        .into_response()
}

/// Loads the last 24 h of every node into the cache.
pub async fn warm_up<T: TickStore + Clone + 'static, A: Send + Sync + 'static>(
    state: &Arc<AppState<T, A>>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let hosts: Vec<HostName> = state
        .ticks
        .hosts()
        .await?
        .into_iter()
        .map(|h| h.host)
        .collect();
    prepare(state, &hosts, now, now - 86_400_000)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::Other(e.message))
}
