//! Push to an existing Alertmanager (`POST <url>/api/v2/alerts`), so its
//! routing, grouping, inhibition and silences apply to our incidents.
//!
//! Each incident is one alert:
//!
//! ```json
//! [{"labels": {"alertname": "<rule name>", "host": "<host>",
//!              "instance": "/var", "severity": "critical", "team": "ops"},
//!   "annotations": {"summary": "<rule name> on <host>[ <instance>]: <trigger value>",
//!                   "description": "<the rule's description>",
//!                   "triggerValue": "75", "incidentId": "<uuid>",
//!                   "startTime": "<RFC 3339>"},
//!   "startsAt": "<start time>", "endsAt": "<see below>"}]
//! ```
//!
//! `instance`, `severity`, each of the rule's labels and `description`
//! appear only when the incident has them (a version-1 rule's alert is the
//! version-1 alert). The rule's labels cannot shadow `alertname`, `host`,
//! `instance` or `severity` (validation refuses those names).
//!
//! - Open: `endsAt` is now + 4 × `resendInterval`, as Prometheus does, so
//!   Alertmanager resolves the alert by itself if the alerter stops
//!   re-sending it (the watchdog is what reports a dead alerter).
//! - Every open alert is re-pushed every `resendInterval` (default 1 m), in
//!   one request; [`AlertmanagerHook::seed_open`] at start-up makes a
//!   restarted alerter re-send what is open at once.
//! - Resolve: the alert is pushed with `endsAt` = the incident's end time
//!   and stops being re-sent. If that push fails for good, Alertmanager
//!   still resolves it after the last `endsAt` it received.
//!
//! Pushes (deliveries and re-pushes) are serialised, so a re-push can never
//! re-open an alert just resolved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics_model::Duration;
use metrics_model::time::{Millis, format_rfc3339, now_ms};
use reqwest::Client;
use rules_engine::{Event, Incident};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify, watch};
use url::Url;
use uuid::Uuid;

use super::config::{AlertmanagerConfig, SecretUrl};
use super::webhook::send;
use super::{Delivery, Hook, HookError, HookFuture};

/// The hook's name.
pub const NAME: &str = "alertmanager";

/// The Alertmanager push, shared by the dispatcher and its re-push task
/// (cloning is cheap).
#[derive(Debug, Clone)]
pub struct AlertmanagerHook {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: AlertmanagerConfig,
    endpoint: SecretUrl,
    client: Client,
    timeout: Duration,
    /// Open incidents by id; the lock is held across every push.
    open: Mutex<BTreeMap<Uuid, Incident>>,
    wake: Notify,
    resends_ok: AtomicU64,
    resends_failed: AtomicU64,
}

/// Counters of the re-push task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResendStats {
    /// Open alerts now.
    pub open: usize,
    /// Re-pushes that succeeded.
    pub ok: u64,
    /// Re-pushes that failed.
    pub failed: u64,
}

impl AlertmanagerHook {
    /// The push of `config`, each request bounded by `timeout`.
    pub fn new(config: AlertmanagerConfig, client: Client, timeout: Duration) -> AlertmanagerHook {
        let mut base: Url = config.url.0.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = base.join("api/v2/alerts").unwrap_or(base);
        AlertmanagerHook {
            inner: Arc::new(Inner {
                config,
                endpoint: SecretUrl(endpoint),
                client,
                timeout,
                open: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                resends_ok: AtomicU64::new(0),
                resends_failed: AtomicU64::new(0),
            }),
        }
    }

    /// Adds incidents that are open (from the store, at start-up) to the
    /// alerts re-pushed, and wakes the re-push task so they are sent now.
    /// Resolved incidents in `incidents` are ignored.
    pub async fn seed_open(&self, incidents: &[Incident]) {
        let mut open = self.inner.open.lock().await;
        for inc in incidents.iter().filter(|i| i.is_open()) {
            open.insert(inc.id, inc.clone());
        }
        drop(open);
        self.inner.wake.notify_one();
    }

    /// Counters of the re-push task.
    pub async fn resend_stats(&self) -> ResendStats {
        ResendStats {
            open: self.inner.open.lock().await.len(),
            ok: self.inner.resends_ok.load(Ordering::Relaxed),
            failed: self.inner.resends_failed.load(Ordering::Relaxed),
        }
    }

    /// Runs the re-push loop until `shutdown` becomes true: every
    /// `resendInterval`, and whenever [`AlertmanagerHook::seed_open`] is
    /// called, pushes every open alert. Failures are logged (the first, then
    /// at most one line per 10 failures).
    pub async fn resend_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.inner.config.resend_interval.to_std());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; open alerts were just pushed
        let mut failures_in_row = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.inner.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            match self.resend().await {
                Ok(0) => {}
                Ok(n) => {
                    self.inner.resends_ok.fetch_add(1, Ordering::Relaxed);
                    if failures_in_row > 0 {
                        tracing::info!(hook = NAME, alerts = n, "alertmanager re-push works again");
                    }
                    failures_in_row = 0;
                }
                Err(e) => {
                    self.inner.resends_failed.fetch_add(1, Ordering::Relaxed);
                    if failures_in_row.is_multiple_of(10) {
                        tracing::warn!(hook = NAME, error = %e, failures_in_row = failures_in_row + 1, "alertmanager re-push of open alerts failed");
                    }
                    failures_in_row += 1;
                }
            }
        }
    }

    /// Pushes every open alert now; returns how many.
    async fn resend(&self) -> Result<usize, HookError> {
        let open = self.inner.open.lock().await;
        if open.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let alerts: Vec<Value> = open.values().map(|i| self.alert(i, now)).collect();
        self.push(&Value::Array(alerts)).await?;
        Ok(open.len())
    }

    /// The alert of an incident at wall-clock `now`.
    fn alert(&self, inc: &Incident, now: Millis) -> Value {
        let ends_at = inc.end_time.unwrap_or_else(|| {
            now.saturating_add(
                self.inner
                    .config
                    .resend_interval
                    .as_millis_i64()
                    .saturating_mul(4),
            )
        });
        let value = format_value(inc.trigger_value);
        let mut labels = serde_json::Map::new();
        if let Some(rule_labels) = &inc.labels {
            for (k, v) in rule_labels.iter() {
                labels.insert(k.clone(), v.clone().into());
            }
        }
        labels.insert("alertname".into(), (*inc.rule_name).into());
        labels.insert("host".into(), inc.host_name.as_str().into());
        let on = match &inc.instance {
            Some(i) => {
                labels.insert("instance".into(), i.as_str().into());
                format!("{} {}", inc.host_name.as_str(), i.as_str())
            }
            None => inc.host_name.as_str().to_owned(),
        };
        if let Some(s) = &inc.severity {
            labels.insert("severity".into(), (**s).into());
        }
        let mut annotations = serde_json::Map::new();
        annotations.insert(
            "summary".into(),
            format!("{} on {on}: {value}", inc.rule_name).into(),
        );
        if let Some(d) = &inc.description {
            annotations.insert("description".into(), (**d).into());
        }
        annotations.insert("triggerValue".into(), value.into());
        annotations.insert("incidentId".into(), inc.id.to_string().into());
        annotations.insert("startTime".into(), format_rfc3339(inc.start_time).into());
        json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": format_rfc3339(inc.start_time),
            "endsAt": format_rfc3339(ends_at),
        })
    }

    async fn push(&self, body: &Value) -> Result<(), HookError> {
        let request = self
            .inner
            .client
            .post(self.inner.endpoint.0.clone())
            .json(body);
        send(
            NAME,
            &self.inner.endpoint,
            &self.inner.config.headers,
            request,
            self.inner.timeout,
        )
        .await
    }
}

impl Hook for AlertmanagerHook {
    fn name(&self) -> &str {
        NAME
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> HookFuture<'a> {
        Box::pin(async move {
            let inc = &delivery.transition.incident;
            let mut open = self.inner.open.lock().await;
            match delivery.transition.event {
                Event::Opened => {
                    open.insert(inc.id, inc.clone());
                }
                Event::Resolved => {
                    open.remove(&inc.id);
                }
            }
            let mut incident = inc.clone();
            if delivery.transition.event == Event::Resolved && incident.end_time.is_none() {
                incident.end_time = Some(delivery.transition.at);
            }
            let alert = self.alert(&incident, now_ms());
            let result = self.push(&json!([alert])).await;
            drop(open);
            result
        })
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}
