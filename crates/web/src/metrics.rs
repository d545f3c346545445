//! `GET /metrics`: the Prometheus text format (version 0.0.4).
//!
//! - `bp_metric{node,field}`: the latest value of every field of every node
//!   (one family for all fields, custom ones included, so that field names
//!   need no mangling); `bp_node_last_seen_timestamp_seconds{node}`;
//! - `bp_incidents_open{rule}`: open incidents per rule;
//! - the alerter's health: `bp_alerter_leader`, `bp_evaluation_duration_seconds`
//!   (summary: `_sum`, `_count`) and `bp_last_evaluation_duration_seconds`,
//!   `bp_evaluations_total`, `bp_transitions_total`,
//!   `bp_last_evaluated_timestamp_seconds`, `bp_late_ticks_total`,
//!   `bp_future_ticks_total`, `bp_hook_removed_dead_letters_total`,
//!   `bp_alert_store_write_backs_total`, `bp_store_io_failures_total`,
//!   `bp_store_ticks_in_memory`, `bp_commits_waiting`,
//!   `bp_silences_active`, `bp_notifications_held`, `bp_notifications_suppressed_total`,
//!   `bp_store_errors_total{component}`,
//!   `bp_outbox_entries`, `bp_hook_deliveries_total{hook,outcome}`,
//!   `bp_hook_retries_total{hook}`, `bp_hook_timeouts_total{hook}`,
//!   `bp_hook_queue_entries`, `bp_hook_processes`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_model::HostName;
use metrics_model::store::{AlertStore, TickStore};

use crate::AppState;
use alerter::AlerterStats;
use metrics_model::time::now_ms;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value (`\`, `"` and newlines).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// The handler.
pub async fn handler<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
) -> Response {
    let text = render(&state).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// The whole exposition. Store failures are counted and reported in
/// `bp_store_errors_total{component="http"}`; what could be read is shown.
pub async fn render<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    state: &Arc<AppState<T, A>>,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let now = now_ms();
    let hosts = if let Ok(mut h) = state.ticks.hosts().await {
        h.sort_by(|a, b| a.host.cmp(&b.host));
        h
    } else {
        state.store_errors.fetch_add(1, Ordering::Relaxed);
        Vec::new()
    };
    // Latest values from the cache (refreshed at most once a second).
    let names: Vec<HostName> = hosts.iter().map(|h| h.host.clone()).collect();
    let mut latest = Vec::new();
    for host in &names {
        let entry = state.cache.host(host);
        let mut g = entry.lock().await;
        if state
            .cache
            .refresh(&state.ticks, &mut g, host, now, now)
            .await
            .is_err()
        {
            state.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = g.last() {
            latest.push(t.clone());
        }
    }
    family(
        &mut out,
        "bp_metric",
        "gauge",
        "Latest value of a field (label field; label instance for a key with one, such as disk.usage[/var]) reported by a node (label node).",
    );
    for t in &latest {
        for (key, v) in t.values() {
            let instance = key
                .instance()
                .map(|i| format!(",instance=\"{}\"", escape_label(i.as_str())))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "bp_metric{{node=\"{}\",field=\"{}\"{instance}}} {}",
                escape_label(t.host.as_str()),
                escape_label(key.field().as_str()),
                num(*v)
            );
        }
    }
    family(
        &mut out,
        "bp_node_last_seen_timestamp_seconds",
        "gauge",
        "Time of the newest tick stored for a node.",
    );
    for h in &hosts {
        let _ = writeln!(
            out,
            "bp_node_last_seen_timestamp_seconds{{node=\"{}\"}} {}",
            escape_label(h.host.as_str()),
            num(h.last_seen as f64 / 1000.0)
        );
    }
    let config = state.config.borrow().clone();
    let mut open: BTreeMap<String, u64> = config
        .alerting
        .rules
        .rules()
        .iter()
        .map(|r| (r.name().to_owned(), 0))
        .collect();
    match state.alerts.load().await {
        Ok(snapshot) => {
            for i in incidents::view::view(&snapshot).open {
                *open.entry(i.rule_name.to_string()).or_default() += 1;
            }
        }
        Err(_) => {
            state.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    family(
        &mut out,
        "bp_incidents_open",
        "gauge",
        "Open incidents per rule.",
    );
    for (rule, n) in &open {
        let _ = writeln!(
            out,
            "bp_incidents_open{{rule=\"{}\"}} {n}",
            escape_label(rule)
        );
    }
    alerter_health(state, &mut out).await;
    out
}

fn simple(out: &mut String, (name, kind, help): (&str, &str, &str), value: &str) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

async fn alerter_health<T: TickStore, A: AlertStore>(state: &AppState<T, A>, out: &mut String) {
    let s = &state.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let secs = |us: u64| num(us as f64 / 1e6);
    let outbox = if let Ok(n) = state.alerts.outbox_len().await {
        n
    } else {
        state.store_errors.fetch_add(1, Ordering::Relaxed);
        load(&s.outbox_depth)
    };
    let simple_ones = evaluation_values(s);
    for (meta, value) in &simple_ones {
        simple(out, *meta, value);
    }
    simple(
        out,
        (
            "bp_outbox_entries",
            "gauge",
            "Transitions waiting in the outbox for hook delivery.",
        ),
        &outbox.to_string(),
    );
    family(
        out,
        "bp_evaluation_duration_seconds",
        "summary",
        "Time to read, evaluate and commit one instant.",
    );
    let _ = writeln!(
        out,
        "bp_evaluation_duration_seconds_sum {}",
        secs(load(&s.evaluation_us_total))
    );
    let _ = writeln!(
        out,
        "bp_evaluation_duration_seconds_count {}",
        load(&s.evaluations)
    );
    family(
        out,
        "bp_store_errors_total",
        "counter",
        "Store (Redis) operations that failed, by component.",
    );
    let _ = writeln!(
        out,
        "bp_store_errors_total{{component=\"alerter\"}} {}",
        load(&s.store_errors)
    );
    let _ = writeln!(
        out,
        "bp_store_errors_total{{component=\"http\"}} {}",
        load(&state.store_errors)
    );
    hook_metrics(out, s);
}

type Meta = (&'static str, &'static str, &'static str);

#[allow(clippy::too_many_lines)] // a table, one entry per metric
fn evaluation_values(s: &AlerterStats) -> [(Meta, String); 15] {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let secs = |us: u64| num(us as f64 / 1e6);
    [
        (
            (
                "bp_alerter_leader",
                "gauge",
                "1 when this alerter holds the lease (is the active one).",
            ),
            u8::from(s.leader.load(Ordering::Relaxed)).to_string(),
        ),
        (
            (
                "bp_last_evaluation_duration_seconds",
                "gauge",
                "Duration of the last evaluation.",
            ),
            secs(load(&s.last_evaluation_us)),
        ),
        (
            (
                "bp_evaluations_total",
                "counter",
                "Instants evaluated and committed by this process.",
            ),
            load(&s.evaluations).to_string(),
        ),
        (
            (
                "bp_transitions_total",
                "counter",
                "Incident transitions committed by this process.",
            ),
            load(&s.transitions).to_string(),
        ),
        (
            (
                "bp_last_evaluated_timestamp_seconds",
                "gauge",
                "The last instant this process evaluated (0 before the first).",
            ),
            num(load(&s.last_evaluated) as f64 / 1000.0),
        ),
        (
            (
                "bp_late_ticks_total",
                "counter",
                "Ticks that arrived after their instant was evaluated.",
            ),
            load(&s.late_ticks).to_string(),
        ),
        (
            (
                "bp_future_ticks_total",
                "counter",
                "Ticks stamped more than a minute in the future.",
            ),
            load(&s.future_ticks).to_string(),
        ),
        (
            (
                "bp_hook_removed_dead_letters_total",
                "counter",
                "Pending deliveries of hooks removed by a configuration reload, kept as dead letters.",
            ),
            load(&s.hook_removed_dead_letters).to_string(),
        ),
        (
            (
                "bp_alert_store_write_backs_total",
                "counter",
                "Times this alerter found the alert store emptied (a new store epoch) and wrote its state back.",
            ),
            load(&s.write_backs).to_string(),
        ),
        (
            (
                "bp_store_io_failures_total",
                "counter",
                "Operations of the on-disk store (standalone) that failed with an I/O error: disk full, read-only file system.",
            ),
            load(&s.store_io_failures).to_string(),
        ),
        (
            (
                "bp_store_ticks_in_memory",
                "gauge",
                "Ticks the on-disk store (standalone) keeps in memory because its file refuses writes; written first once it takes them again.",
            ),
            load(&s.store_ticks_in_memory).to_string(),
        ),
        (
            (
                "bp_commits_waiting",
                "gauge",
                "Evaluated instants whose commits wait for the store (it refuses writes); their hooks run once they are stored.",
            ),
            load(&s.commits_waiting).to_string(),
        ),
        (
            (
                "bp_silences_active",
                "gauge",
                "Silences active at the last instant this alerter evaluated (0 on a standby).",
            ),
            load(&s.silences_active).to_string(),
        ),
        (
            (
                "bp_notifications_held",
                "gauge",
                "Opens held by a silence or maintenance window, to be notified when nothing mutes them (leader only).",
            ),
            load(&s.notifications_held).to_string(),
        ),
        (
            (
                "bp_notifications_suppressed_total",
                "counter",
                "Transitions never notified: an open held until its incident resolved, and that resolve.",
            ),
            load(&s.notifications_suppressed).to_string(),
        ),
    ]
}

type HookCounter = fn(&incidents::delivery::HookStats) -> u64;

fn hook_metrics(out: &mut String, s: &AlerterStats) {
    let hooks = match s.hooks.lock() {
        Ok(h) => h.clone(),
        Err(p) => p.into_inner().clone(),
    }
    .unwrap_or_default();
    family(
        out,
        "bp_hook_deliveries_total",
        "counter",
        "Transitions delivered by a hook (outcome ok) or given up (outcome failed).",
    );
    for h in &hooks.hooks {
        let name = escape_label(&h.hook);
        let _ = writeln!(
            out,
            "bp_hook_deliveries_total{{hook=\"{name}\",outcome=\"ok\"}} {}",
            h.delivered
        );
        let _ = writeln!(
            out,
            "bp_hook_deliveries_total{{hook=\"{name}\",outcome=\"failed\"}} {}",
            h.failed
        );
    }
    let per_hook: [(&str, &str, HookCounter); 2] = [
        ("bp_hook_retries_total", "Hook delivery retries.", |h| {
            h.retries
        }),
        (
            "bp_hook_timeouts_total",
            "Hook attempts that timed out.",
            |h| h.timeouts,
        ),
    ];
    for (name, help, get) in per_hook {
        family(out, name, "counter", help);
        for h in &hooks.hooks {
            let _ = writeln!(
                out,
                "{name}{{hook=\"{}\"}} {}",
                escape_label(&h.hook),
                get(h)
            );
        }
    }
    simple(
        out,
        (
            "bp_hook_queue_entries",
            "gauge",
            "Transitions submitted to hooks and not completed.",
        ),
        &hooks.pending.to_string(),
    );
    simple(
        out,
        ("bp_hook_processes", "gauge", "Hook processes running now."),
        &hooks.running_processes.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(3.0), "3");
    }
}
