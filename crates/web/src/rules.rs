//! `GET /api/v1/rules`: every rule with its window value per node at the
//! last evaluated instant, and whether its condition holds.
//!
//! Computed on demand from the store, so a standby alerter answers the same
//! as the active one: a fresh [`Engine`] takes in each node's ticks back to
//! the longest timeframe and evaluates once at the last committed instant
//! (from the store's snapshot). The answer is cached per (instant, rules).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use alerter::rebuild::{Rebuild, rebuild};
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use metrics_model::store::{AlertStore, StoreError, TickStore};
use metrics_model::time::{Millis, floor_to, format_rfc3339};
use metrics_model::{HostName, Instance};
use rules_engine::{EngineOptions, RuleSet};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::AppState;
use crate::api::ApiError;
use metrics_model::time::now_ms;

/// A series as the open incidents name it: (rule, host or `*`, instance).
type Series = (String, HostName, Option<Instance>);

/// What the cache keeps: the instant, the rules and maintenance windows
/// it was computed for, and the answer.
type Cached = (
    Millis,
    RuleSet,
    Vec<rules_engine::MaintenanceWindow>,
    Arc<RulesOut>,
);

/// The last answer, by instant and rule set.
#[derive(Debug, Default)]
pub struct RulesCache {
    last: Mutex<Option<Cached>>,
}

/// The answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesOut {
    /// The instant the values are for (ms); `None` before any evaluation.
    pub evaluated_at: Option<Millis>,
    /// The same in RFC 3339.
    pub evaluated_at_text: Option<String>,
    /// The rules, in configuration order (a rule set keeps its rules sorted
    /// by name).
    pub rules: Vec<RuleOut>,
}

/// One rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleOut {
    /// The rule as configured (`name`, `field`, `aggregation`, ...).
    pub rule: serde_json::Value,
    /// Per series: one row per node, or per (node, instance) for a rule
    /// over an instanced field; a cluster-wide rule's row is node `*`.
    pub nodes: Vec<RuleNode>,
    /// The maintenance windows whose `rule` matcher matches this rule (or
    /// that have none), each with its current or next opening.
    pub maintenance: Vec<RuleWindow>,
}

/// A maintenance window as a rule sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleWindow {
    /// The window's name.
    pub name: String,
    /// Whether it is open now.
    pub open: bool,
    /// The current opening (when open) or the next one, RFC 3339; `None`
    /// when it opens on no day within a week.
    pub starts_at: Option<String>,
    /// Its end.
    pub ends_at: Option<String>,
    /// The window's matchers (it mutes only the incidents they match).
    pub matchers: serde_json::Value,
}

/// The windows that may mute incidents of `rule` at `now`.
pub fn rule_windows(
    windows: &[rules_engine::MaintenanceWindow],
    rule: &str,
    now: Millis,
) -> Vec<RuleWindow> {
    windows
        .iter()
        .filter(|w| w.matchers.rule.as_ref().is_none_or(|g| g.matches(rule)))
        .map(|w| {
            let next = w.next_range(now);
            RuleWindow {
                name: w.name.clone(),
                open: w.is_open(now),
                starts_at: next.map(|(s, _)| format_rfc3339(s)),
                ends_at: next.map(|(_, e)| format_rfc3339(e)),
                matchers: w.matchers.to_json(),
            }
        })
        .collect()
}

/// One series of a rule: a node (or `*` for a cluster-wide rule) and, for
/// a per-mount (per-interface, per-process…) series, its instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleNode {
    /// The node, or `*`.
    pub node: HostName,
    /// The series' instance (`/var`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
    /// The window's value (`null`: no value, e.g. an empty `avg` window).
    pub value: Option<f64>,
    /// Whether the condition holds.
    pub holds: bool,
    /// The open incident's id, if one is open (from the store).
    pub open_incident: Option<String>,
}

/// The handler.
pub async fn handler<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(name) = q.keys().next() {
        return Err(ApiError::bad(
            name,
            "unknown parameter; this endpoint takes none",
        ));
    }
    match compute(&state).await {
        Ok(out) => Ok(Json(&*out).into_response()),
        Err(e) => {
            state.store_errors.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::unavailable(&e))
        }
    }
}

/// The rules' current values (cached per instant).
pub async fn compute<T: TickStore, A: AlertStore>(
    state: &AppState<T, A>,
) -> Result<Arc<RulesOut>, StoreError> {
    let config = state.config.borrow().clone();
    let rules = config.alerting.rules.clone();
    let snapshot = state.alerts.load().await?;
    let view = incidents::view::view(&snapshot);
    let w = config.alerting.watcher_interval.as_millis_i64();
    let instant = view.last_evaluated.unwrap_or_else(|| {
        floor_to(
            now_ms() - config.alerting.evaluation_delay.as_millis_i64(),
            w,
        )
    });
    // The windows' "open" and "next" are as of the computation: at most one
    // watcher interval old, like the values.
    let mut cached = state.rules.last.lock().await;
    if let Some((t, r, windows, out)) = cached.as_ref()
        && *t == instant
        && *r == rules
        && config.alerting.maintenance == *windows
    {
        return Ok(out.clone());
    }
    let (mut engine, _) = rebuild(
        &state.ticks,
        &Rebuild {
            rules: rules.clone(),
            options: EngineOptions::default(),
            resume_after: instant - 1,
            from: instant - rules.max_timeframe().as_millis_i64(),
            to: instant,
            seen_after: instant - config.monitoring.retention_period.as_millis_i64(),
        },
    )
    .await?;
    // Evaluating opens incidents in this private engine only; nothing is
    // written anywhere.
    let _ = engine.evaluate(instant);
    let open: std::collections::HashMap<Series, String> = view
        .open
        .iter()
        .map(|i| {
            (
                (
                    i.rule_name.to_string(),
                    i.host_name.clone(),
                    i.instance.clone(),
                ),
                i.id.to_string(),
            )
        })
        .collect();
    let mut per_rule: Vec<RuleOut> = rules
        .rules()
        .iter()
        .map(|r| RuleOut {
            rule: r.to_json(),
            nodes: Vec::new(),
            maintenance: rule_windows(&config.alerting.maintenance, r.name(), now_ms()),
        })
        .collect();
    for v in engine.window_values() {
        if let Some(i) = rules.rules().iter().position(|r| Arc::ptr_eq(r, v.rule)) {
            let instance = v.key.instance().cloned();
            per_rule[i].nodes.push(RuleNode {
                node: v.host.clone(),
                value: v.value,
                holds: v.holds,
                open_incident: open
                    .get(&(v.rule.name().to_owned(), v.host.clone(), instance.clone()))
                    .cloned(),
                instance,
            });
        }
    }
    let out = Arc::new(RulesOut {
        evaluated_at: view.last_evaluated.or(Some(instant)),
        evaluated_at_text: Some(format_rfc3339(instant)),
        rules: per_rule,
    });
    *cached = Some((
        instant,
        rules,
        config.alerting.maintenance.clone(),
        out.clone(),
    ));
    Ok(out)
}
