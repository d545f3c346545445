//! Webhooks, embedders' hooks and the watchdog against real HTTP servers on
//! loopback.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use incidents::delivery::{Dispatcher, DispatcherOptions};
use incidents::hooks::{Delivery, Hook, HookFuture, HooksConfig};
use incidents::watchdog::Watchdog;
use serde_json::{Value, json};
use support::*;

/// A tiny HTTP endpoint: answers `fail_first` requests with `fail_status`,
/// then 200 (or always `fail_status` when `fail_first` is `usize::MAX`),
/// after `delay`. Records every request.
struct Endpoint {
    fail_first: usize,
    fail_status: u16,
    delay: std::time::Duration,
    requests: Mutex<Vec<Request>>,
}

#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
    status: u16,
}

async fn handle(
    State(e): State<Arc<Endpoint>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, &'static str) {
    tokio::time::sleep(e.delay).await;
    let mut requests = e.requests.lock().unwrap();
    let status = if requests.len() < e.fail_first {
        e.fail_status
    } else {
        200
    };
    requests.push(Request {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        status,
    });
    let text = if status == 200 {
        "ok"
    } else {
        "down for maintenance"
    };
    (StatusCode::from_u16(status).unwrap(), text)
}

async fn serve(fail_first: usize, fail_status: u16, delay_ms: u64) -> (String, Arc<Endpoint>) {
    let endpoint = Arc::new(Endpoint {
        fail_first,
        fail_status,
        delay: std::time::Duration::from_millis(delay_ms),
        requests: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), endpoint)
}

fn requests(e: &Endpoint) -> Vec<Request> {
    e.requests.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_fails_twice_then_succeeds_receives_the_transition_once() {
    capture_logs();
    let empty = tempfile::tempdir().unwrap();
    let (base, endpoint) = serve(2, 500, 0).await;
    let config = config(
        empty.path(),
        json!({"webhooks": [{
            "url": format!("{base}/PATHSECRET-77/hook?token=QUERYSECRET-88"),
            "headers": {"X-Token": "HEADERSECRET-99", "Authorization": "Bearer HEADERSECRET-99"}
        }]}),
    );
    let name = config.webhooks[0].name.clone();
    assert_eq!(
        name,
        format!("webhook:{}", base.trim_start_matches("http://"))
    );
    let (dispatcher, mut rx) = start(&config);
    let inc = incident("Webhook Rule", "node-w", 1_700_000_000_000, 66.5);
    dispatcher.submit(7, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert_eq!(c.seq, 7);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    let got = requests(&endpoint);
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "two failures, then exactly one success"
    );
    let key = format!("{}:opened", inc.id);
    for r in &got {
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/PATHSECRET-77/hook");
        assert_eq!(r.headers["x-token"], "HEADERSECRET-99");
        assert_eq!(r.headers["authorization"], "Bearer HEADERSECRET-99");
        assert_eq!(r.headers["idempotency-key"], key.as_str());
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(
        body,
        json!({
            "id": inc.id.to_string(), "ruleName": "Webhook Rule", "hostName": "node-w",
            "startTime": "2023-11-14T22:13:20.000Z", "endTime": null, "triggerValue": 66.5,
            "event": "opened", "at": "2023-11-14T22:13:20.000Z", "idempotencyKey": key
        })
    );
    let stats = dispatcher.stats();
    let w = stats.hooks.iter().find(|h| h.hook == name).unwrap();
    assert_eq!((w.delivered, w.failed, w.retries), (1, 0, 2));
    let retries = log_lines_with("will retry");
    assert!(
        retries
            .iter()
            .any(|l| l.contains("answered HTTP 500: down for maintenance")),
        "{retries:#?}"
    );
    let all = logs();
    for secret in ["HEADERSECRET-99", "PATHSECRET-77", "QUERYSECRET-88"] {
        assert!(!all.contains(secret), "{secret} was logged");
    }
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_become_dead_letters_in_the_completion() {
    capture_logs();
    let empty = tempfile::tempdir().unwrap();
    let (down, down_endpoint) = serve(usize::MAX, 503, 0).await;
    let (slow, _slow_endpoint) = serve(0, 200, 5_000).await;
    let closed_port = test_support::free_port();
    let config = config(
        empty.path(),
        json!({
            "maxAttempts": 3, "timeout": "500ms",
            "webhooks": [
                {"name": "always-down", "url": format!("{down}/x")},
                {"name": "nowhere", "url": format!("http://127.0.0.1:{closed_port}/x")},
                {"name": "slow", "url": format!("{slow}/x")}
            ]
        }),
    );
    let (dispatcher, mut rx) = start(&config);
    let inc = incident("Dead Rule", "node-d", 1_700_000_000_000, 1.0);
    let t = resolved(&inc, 1_700_000_050_000);
    dispatcher.submit(3, t.clone()).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    let summary: Vec<(&str, u32)> = c
        .failures
        .iter()
        .map(|f| (f.hook.as_str(), f.attempts))
        .collect();
    assert_eq!(summary, [("always-down", 3), ("nowhere", 3), ("slow", 3)]);
    assert_eq!(
        c.failures[0].error,
        format!("hook always-down: {down} answered HTTP 503: down for maintenance")
    );
    assert!(
        c.failures[1].error.starts_with(&format!(
            "hook nowhere: request to http://127.0.0.1:{closed_port} failed: "
        )),
        "{}",
        c.failures[1].error
    );
    assert_eq!(c.failures[2].error, "hook slow: timed out after 500ms");
    assert_eq!(requests(&down_endpoint).len(), 3);
    let letters = c.dead_letters(1_700_000_099_000);
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0].hook, "always-down");
    assert_eq!(letters[0].at, 1_700_000_099_000);
    assert_eq!(letters[0].payload, t.to_json_line());
    assert_eq!(c.idempotency_key, format!("{}:resolved", inc.id));
    let stats = dispatcher.stats();
    for h in &stats.hooks {
        assert_eq!((h.delivered, h.failed, h.retries), (0, 1, 2), "{h:?}");
    }
    assert_eq!(
        stats
            .hooks
            .iter()
            .find(|h| h.hook == "slow")
            .unwrap()
            .timeouts,
        3
    );
    dispatcher.shutdown(DEADLINE).await;
}

/// An embedder's hook: counts calls; hangs forever for rule "never".
#[derive(Debug, Default)]
struct Counting {
    calls: AtomicUsize,
    keys: Mutex<Vec<String>>,
}

impl Hook for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> HookFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.keys.lock().unwrap().push(d.idempotency_key.clone());
            if &*d.transition.incident.rule_name == "never" {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedders_hook_is_called_and_bounded_by_the_timeout() {
    capture_logs();
    let empty = tempfile::tempdir().unwrap();
    let hook = Arc::new(Counting::default());
    let config = config(empty.path(), json!({"timeout": "300ms", "maxAttempts": 2}));
    let (dispatcher, mut rx) = Dispatcher::start(
        &config,
        DispatcherOptions {
            extra_hooks: vec![hook.clone()],
            ..DispatcherOptions::default()
        },
    )
    .unwrap();
    let ok = incident("fine", "node-e", 1, 1.0);
    let never = incident("never", "node-e", 1, 1.0);
    dispatcher.submit(1, opened(&ok)).unwrap();
    dispatcher.submit(2, opened(&never)).unwrap();
    let mut done = completions(&mut rx, 2).await;
    done.sort_by_key(|c| c.seq);
    assert!(done[0].failures.is_empty());
    assert_eq!(done[1].failures.len(), 1);
    assert_eq!(
        done[1].failures[0].error,
        "hook counting: timed out after 300ms"
    );
    assert_eq!(done[1].failures[0].attempts, 2);
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);
    let mut keys = hook.keys.lock().unwrap().clone();
    keys.sort();
    let mut expected = vec![
        format!("{}:opened", ok.id),
        format!("{}:opened", never.id),
        format!("{}:opened", never.id),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    dispatcher.shutdown(DEADLINE).await;
}

fn watchdog_config(url: &str) -> incidents::hooks::WatchdogConfig {
    HooksConfig::from_json(&json!({"watchdog": {"url": url, "timeout": "2s"}}), "hooks")
        .unwrap()
        .watchdog
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_pings_and_counts_failures_without_logging_its_url() {
    capture_logs();
    let (base, endpoint) = serve(0, 200, 0).await;
    let watchdog = Watchdog::new(watchdog_config(&format!("{base}/ping/WDSECRET-1"))).unwrap();
    watchdog.ping();
    eventually("the watchdog ping to arrive", || watchdog.stats().ok == 1).await;
    let got = requests(&endpoint);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, Method::GET);
    assert_eq!(got[0].path, "/ping/WDSECRET-1");

    let (down, _) = serve(usize::MAX, 500, 0).await;
    let failing = Watchdog::new(watchdog_config(&format!("{down}/ping/WDSECRET-2"))).unwrap();
    for n in 1..=3 {
        failing.ping();
        eventually("the failed ping to be counted", || {
            failing.stats().failed == n
        })
        .await;
    }
    // Rate-limited: one warning for three failures within a minute.
    let warned: Vec<String> = log_lines_with("watchdog ping failed")
        .into_iter()
        .filter(|l| l.contains(&down))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        !logs().contains("WDSECRET"),
        "the watchdog URL path was logged"
    );
}
