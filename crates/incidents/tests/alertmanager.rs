//! The Alertmanager push against a real Alertmanager (Debian's
//! `prometheus-alertmanager`), started on a free loopback port with a
//! temporary storage directory.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use metrics_model::time::parse_rfc3339;
use serde_json::{Value, json};
use support::*;

const INSTALL_HINT: &str = "the Alertmanager tests need Alertmanager: apt-get install prometheus-alertmanager \
     (binary /usr/bin/prometheus-alertmanager), or set BP_ALERTMANAGER to its path";

fn alertmanager_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BP_ALERTMANAGER") {
        return PathBuf::from(path);
    }
    let mut candidates = vec![PathBuf::from("/usr/bin/prometheus-alertmanager")];
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("prometheus-alertmanager"));
            candidates.push(dir.join("alertmanager"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// An Alertmanager child process, killed on drop.
struct Alertmanager {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        let binary = alertmanager_binary();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let port = test_support::free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", binary.display()));
        let am = Alertmanager {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/-/ready", am.url);
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(r) = client.get(&ready).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "Alertmanager did not become ready; its log:\n{}",
                am.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        am
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// Alertmanager's `GET /api/v2/alerts`.
    async fn alerts(&self) -> Vec<Value> {
        let r = reqwest::get(format!("{}/api/v2/alerts", self.url))
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "GET /api/v2/alerts: {}",
            r.status()
        );
        r.json().await.unwrap()
    }

    /// The alert with these labels, if Alertmanager returns one.
    async fn find(&self, rule: &str, host: &str) -> Option<Value> {
        self.alerts()
            .await
            .into_iter()
            .find(|a| a["labels"]["alertname"] == json!(rule) && a["labels"]["host"] == json!(host))
    }

    /// Polls until the alert is active.
    async fn wait_active(&self, rule: &str, host: &str) -> Value {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(a) = self.find(rule, host).await
                && a["status"]["state"] == json!("active")
            {
                return a;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "alert {rule}/{host} never became active; alerts: {:#?}",
                self.alerts().await
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
        let alert = am.find(rule, host).await;
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
    assert_eq!(hook.resend_stats().await.open, 3, "Seeded Rule, Disk almost full, Errors across the cluster");
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
    assert!(is_resolved(am.find("Repush Rule", "node-r").await.as_ref()));
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
