//! The Alertmanager push against a real Alertmanager (Debian's
//! `prometheus-alertmanager`), started on a free loopback port with a
//! temporary storage directory.

mod support;

use std::time::SystemTime;

use metrics_model::time::parse_rfc3339;
use serde_json::{Value, json};
use support::*;

/// The shared Alertmanager launcher (`test_support::alertmanager`), with
/// the async helpers these tests use.
struct Alertmanager {
    inner: test_support::alertmanager::Alertmanager,
    url: String,
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        let inner = tokio::task::spawn_blocking(test_support::alertmanager::Alertmanager::start)
            .await
            .unwrap();
        let url = inner.url.clone();
        Alertmanager { inner, url }
    }

    fn log(&self) -> String {
        self.inner.log()
    }

    /// Alertmanager's `GET /api/v2/alerts`.
    fn alerts(&self) -> Vec<Value> {
        self.inner.alerts()
    }

    /// The alert with these labels, if Alertmanager returns one.
    fn find(&self, rule: &str, host: &str) -> Option<Value> {
        self.inner.find(rule, host, None)
    }

    /// Polls until the alert is active.
    async fn wait_active(&self, rule: &str, host: &str) -> Value {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(a) = self.find(rule, host)
                && a["status"]["state"] == json!("active")
            {
                return a;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "alert {rule}/{host} never became active; alerts: {:#?}",
                self.alerts()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Resolved: gone from the list, or listed with `endsAt` in the past and
/// not active.
fn is_resolved(alert: Option<&Value>) -> bool {
    match alert {
        None => true,
        Some(a) => {
            let ends = a["endsAt"]
                .as_str()
                .and_then(parse_rfc3339)
                .unwrap_or(i64::MAX);
            ends <= now_ms() && a["status"]["state"] != json!("active")
        }
    }
}

/// Polls until the alert is resolved; when Alertmanager still lists it,
/// its `endsAt` must be `end_ms`.
async fn wait_resolved(am: &Alertmanager, rule: &str, host: &str, end_ms: i64) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let alert = am.find(rule, host);
        if is_resolved(alert.as_ref()) {
            if let Some(a) = alert {
                assert_eq!(
                    a["endsAt"].as_str().and_then(parse_rfc3339),
                    Some(end_ms),
                    "{a:#}"
                );
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "alert {rule}/{host} was not resolved: {alert:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_appears_while_open_and_is_resolved_by_the_resolve_push() {
    capture_logs();
    let am = Alertmanager::start().await;
    let empty = tempfile::tempdir().unwrap();
    // Each push says "valid for 4 × 10m": within this test only our resolve
    // push can resolve the alert.
    let config = config(
        empty.path(),
        json!({"alertmanager": {"url": am.url, "resendInterval": "10m"}}),
    );
    let (dispatcher, mut rx) = start(&config);

    // A restarted alerter: an incident opened before the restart is sent at
    // start-up without any delivery.
    let seeded = incident("Seeded Rule", "node-s", now_ms() - 120_000, 5.0);
    dispatcher.seed_open(std::slice::from_ref(&seeded)).await;
    let s = am.wait_active("Seeded Rule", "node-s").await;
    assert_eq!(s["annotations"]["incidentId"], json!(seeded.id.to_string()));

    // Open.
    let start_ms = now_ms() - 60_000;
    let inc = incident("AM Rule", "node-am", start_ms, 93.25);
    dispatcher.submit(1, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert!(
        c.failures.is_empty(),
        "{:?}\nAlertmanager log:\n{}",
        c.failures,
        am.log()
    );
    let a = am.wait_active("AM Rule", "node-am").await;
    assert_eq!(a["annotations"]["triggerValue"], json!("93.25"));
    assert_eq!(a["annotations"]["incidentId"], json!(inc.id.to_string()));
    assert_eq!(
        a["annotations"]["summary"],
        json!("AM Rule on node-am: 93.25")
    );
    assert_eq!(
        a["startsAt"].as_str().and_then(parse_rfc3339),
        Some(start_ms),
        "{a:#}"
    );
    let ends = a["endsAt"].as_str().and_then(parse_rfc3339).unwrap();
    assert!(
        ends > now_ms() + 30 * 60_000,
        "open alerts are valid for 4 × resendInterval: {a:#}"
    );
    // A version-1 incident gives exactly the version-1 labels.
    let names: Vec<&String> = a["labels"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["alertname", "host"], "{a:#}");

    // Version 2: instance, severity and the rule's labels become labels,
    // the description an annotation; a cluster rule's host is `*`.
    let mut disk = incident("Disk almost full", "node-am", start_ms, 95.0);
    disk.instance = Some("/var".parse().unwrap());
    disk.severity = Some("critical".into());
    disk.labels = Some(std::sync::Arc::new(
        [("team".to_owned(), "ops".to_owned())]
            .into_iter()
            .collect(),
    ));
    disk.description = Some("Clean /var/log or grow the volume".into());
    let mut cluster = incident("Errors across the cluster", "*", start_ms, 108.0);
    cluster.severity = Some("warning".into());
    dispatcher.submit(3, opened(&disk)).unwrap();
    dispatcher.submit(4, opened(&cluster)).unwrap();
    let done = completions(&mut rx, 2).await;
    assert!(
        done.iter().all(|c| c.failures.is_empty()),
        "{:?}\n{}",
        done.iter().map(|c| &c.failures).collect::<Vec<_>>(),
        am.log()
    );
    let d = am.wait_active("Disk almost full", "node-am").await;
    assert_eq!(d["labels"]["instance"], json!("/var"), "{d:#}");
    assert_eq!(d["labels"]["severity"], json!("critical"), "{d:#}");
    assert_eq!(d["labels"]["team"], json!("ops"), "{d:#}");
    assert_eq!(
        d["annotations"]["description"],
        json!("Clean /var/log or grow the volume")
    );
    assert_eq!(
        d["annotations"]["summary"],
        json!("Disk almost full on node-am /var: 95")
    );
    let c = am.wait_active("Errors across the cluster", "*").await;
    assert_eq!(c["labels"]["severity"], json!("warning"), "{c:#}");
    assert!(c["labels"].get("instance").is_none(), "{c:#}");

    // Resolve.
    let end_ms = now_ms() - 1_000;
    dispatcher.submit(2, resolved(&inc, end_ms)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    wait_resolved(&am, "AM Rule", "node-am", end_ms).await;
    am.wait_active("Seeded Rule", "node-s").await;
    let hook = dispatcher.alertmanager().unwrap();
    assert_eq!(
        hook.resend_stats().await.open,
        3,
        "Seeded Rule, Disk almost full, Errors across the cluster"
    );
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_alerts_are_re_pushed_every_resend_interval_and_never_re_opened() {
    capture_logs();
    let am = Alertmanager::start().await;
    let empty = tempfile::tempdir().unwrap();
    let config = config(
        empty.path(),
        json!({"alertmanager": {"url": am.url, "resendInterval": "1s"}}),
    );
    let (dispatcher, mut rx) = start(&config);
    let hook = dispatcher
        .alertmanager()
        .expect("alertmanager configured")
        .clone();
    let inc = incident("Repush Rule", "node-r", now_ms() - 60_000, 7.0);
    dispatcher.submit(1, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    let a = am.wait_active("Repush Rule", "node-r").await;

    // The first push is valid for 4 × 1 s: only re-pushes keep the alert
    // active after that.
    let first_ends = a["endsAt"].as_str().and_then(parse_rfc3339).unwrap();
    eventually("the first push's endsAt to pass", || {
        now_ms() > first_ends + 1_000
    })
    .await;
    let stats = hook.resend_stats().await;
    assert_eq!(stats.open, 1);
    assert!(stats.ok >= 3, "{stats:?}");
    let a = am.wait_active("Repush Rule", "node-r").await;
    assert!(
        a["endsAt"].as_str().and_then(parse_rfc3339).unwrap() > now_ms(),
        "{a:#}"
    );

    // Resolve; later re-pushes never re-open it.
    let end_ms = now_ms() - 1_000;
    dispatcher.submit(2, resolved(&inc, end_ms)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    wait_resolved(&am, "Repush Rule", "node-r", end_ms).await;
    // Re-pushes only happen while something is open: open another alert.
    let other = incident("Repush Rule", "node-other", now_ms(), 7.0);
    dispatcher.submit(3, opened(&other)).unwrap();
    completions(&mut rx, 1).await;
    let after = hook.resend_stats().await.ok;
    let end = tokio::time::Instant::now() + DEADLINE;
    while hook.resend_stats().await.ok < after + 2 {
        assert!(
            tokio::time::Instant::now() < end,
            "no re-push after the resolve"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(is_resolved(am.find("Repush Rule", "node-r").as_ref()));
    am.wait_active("Repush Rule", "node-other").await;
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_alertmanager_is_a_dead_letter_after_retries() {
    capture_logs();
    let empty = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    let config = config(
        empty.path(),
        json!({"maxAttempts": 2, "alertmanager": {"url": format!("http://127.0.0.1:{port}/am/")}}),
    );
    let (dispatcher, mut rx) = start(&config);
    dispatcher
        .submit(1, opened(&incident("Unreachable", "node-u", 1, 1.0)))
        .unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert_eq!(c.failures.len(), 1);
    assert_eq!(c.failures[0].hook, "alertmanager");
    assert_eq!(c.failures[0].attempts, 2);
    assert!(
        c.failures[0].error.starts_with(&format!(
            "hook alertmanager: request to http://127.0.0.1:{port} failed: "
        )),
        "{}",
        c.failures[0].error
    );
    dispatcher.shutdown(DEADLINE).await;
}
