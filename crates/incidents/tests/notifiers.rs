//! Notifiers against a tiny local HTTP server per vendor that checks the
//! request shape of the vendor's documented API, through the real
//! dispatcher: Slack, Teams, Discord, Telegram, PagerDuty (trigger then
//! resolve with the same `dedup_key`), Opsgenie (create, close by alias),
//! templated webhooks; routing and `sendResolved`; a 429 with
//! `Retry-After` honoured; a 500 retried then dead-lettered without the
//! secrets.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use incidents::hooks::HooksConfig;
use incidents::notifiers::parse_notifiers;
use serde_json::{Value, json};
use support::*;

#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
    at: Instant,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Answers each request with the next of `answers` (status, Retry-After),
/// then 200; records every request.
struct Vendor {
    answers: Mutex<Vec<(u16, Option<&'static str>)>>,
    requests: Mutex<Vec<Request>>,
}

async fn handle(
    State(v): State<Arc<Vendor>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    // A vendor that echoes what it got: the path and body hold the
    // notifier's secrets, which must still not leak from the error.
    let echo = format!("rejected {} {}", uri.path(), body);
    v.requests.lock().unwrap().push(Request {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    let next = {
        let mut a = v.answers.lock().unwrap();
        if a.is_empty() {
            (200, None)
        } else {
            a.remove(0)
        }
    };
    let mut r = (StatusCode::from_u16(next.0).unwrap(), echo).into_response();
    if let Some(after) = next.1 {
        r.headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    r
}

async fn vendor(answers: Vec<(u16, Option<&'static str>)>) -> (String, Arc<Vendor>) {
    let v = Arc::new(Vendor {
        answers: Mutex::new(answers),
        requests: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(v.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), v)
}

fn got(v: &Vendor) -> Vec<Request> {
    v.requests.lock().unwrap().clone()
}

fn hooks_with(notifiers: &Value, extra: &Value) -> HooksConfig {
    let dir = std::env::temp_dir().join("bp-notifiers-no-hooks");
    let mut c = config(&dir, extra.clone());
    c.notifiers = parse_notifiers(
        Some(notifiers),
        "alerting.notifiers",
        Some("https://bp.example"),
    )
    .unwrap_or_else(|p| panic!("{p:?}"));
    c
}

fn v2_incident(rule: &str, host: &str) -> rules_engine::Incident {
    let mut inc = incident(rule, host, 1_700_000_000_000, 93.456);
    inc.instance = "/var".parse().ok();
    inc.severity = Some("critical".into());
    inc.labels = Some(Arc::new([("team".to_owned(), "ops".to_owned())].into()));
    inc
}

/// Delivers an open and a resolve of `inc` to the notifiers; returns the
/// completions.
async fn open_and_resolve(
    config: &HooksConfig,
    inc: &rules_engine::Incident,
) -> Vec<incidents::delivery::Completion> {
    let (dispatcher, mut rx) = start(config);
    dispatcher.submit(1, opened(inc)).unwrap();
    dispatcher
        .submit(2, resolved(inc, inc.start_time + 125_000))
        .unwrap();
    let c = completions(&mut rx, 2).await;
    dispatcher.shutdown(DEADLINE).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, clippy::many_single_char_names)] // four vendors, checked in turn
async fn chat_notifiers_send_their_vendors_formats() {
    capture_logs();
    let (slack, s) = vendor(vec![]).await;
    let (teams, t) = vendor(vec![]).await;
    let (discord, d) = vendor(vec![]).await;
    let (telegram, g) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([
            { "name": "slack", "type": "slack", "url": format!("{slack}/services/T0/B0/XYZ") },
            { "name": "teams", "type": "teams", "url": format!("{teams}/workflows/abc") },
            { "name": "discord", "type": "discord", "url": format!("{discord}/api/webhooks/1/tok") },
            { "name": "tg", "type": "telegram", "url": telegram, "botToken": "tg-SECRET-BOT-7", "chatId": -100_123 }
        ]),
        &json!({}),
    );
    let mut inc = v2_incident("Disk <full> & co", "web-1");
    inc.description = Some("@everyone clean /var/log".into());
    let c = open_and_resolve(&config, &inc).await;
    assert!(c.iter().all(|c| c.failures.is_empty()), "{c:?}");

    let s = got(&s);
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].method.as_str(), s[0].path.as_str()),
        ("POST", "/services/T0/B0/XYZ")
    );
    assert_eq!(s[0].headers["content-type"], "application/json");
    let (open, res) = (s[0].json(), s[1].json());
    assert_eq!(open["attachments"][0]["color"], "#d00000", "{open}");
    assert_eq!(res["attachments"][0]["color"], "#2eb886", "{res}");
    let title = open["text"].as_str().unwrap();
    assert!(
        title.starts_with("[FIRING] Disk &lt;full&gt; &amp; co on web-1 (/var)"),
        "{title}"
    );
    assert!(
        res["text"].as_str().unwrap().starts_with("[RESOLVED]"),
        "{res}"
    );
    let blocks = &open["attachments"][0]["blocks"];
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let text = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("Severity: critical") && text.contains("93.46"),
        "{text}"
    );
    assert!(
        text.contains("https://bp.example/#incident="),
        "the dashboard link: {text}"
    );
    assert!(
        res["attachments"][0]["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("after 2m 5s"),
        "{res}"
    );

    let t = got(&t);
    assert_eq!(t.len(), 2);
    let card = &t[0].json()["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["color"], "Attention");
    assert_eq!(
        t[1].json()["attachments"][0]["content"]["body"][0]["color"],
        "Good"
    );

    let d = got(&d);
    assert_eq!(d.len(), 2);
    let body = d[0].json();
    assert_eq!(
        body["allowed_mentions"],
        json!({ "parse": [] }),
        "no @everyone"
    );
    assert_eq!(body["embeds"][0]["color"], 0xd0_00_00);
    assert!(
        body["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .contains("Disk <full> & co"),
        "{body}"
    );
    assert_eq!(d[1].json()["embeds"][0]["color"], 0x2e_b8_86);

    let g = got(&g);
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].path, "/bottg-SECRET-BOT-7/sendMessage");
    let m = g[0].json();
    assert_eq!(m["chat_id"], "-100123");
    assert_eq!(m["parse_mode"], "HTML");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.starts_with("<b>[FIRING] Disk &lt;full&gt; &amp; co"),
        "{text}"
    );
    assert!(
        log_lines_with("tg-SECRET-BOT-7").is_empty(),
        "the bot token was logged: {:#?}",
        log_lines_with("tg-SECRET-BOT-7")
    );
    for r in s.iter().chain(&t).chain(&d).chain(&g) {
        assert!(
            r.headers["idempotency-key"]
                .to_str()
                .unwrap()
                .starts_with(&inc.id.to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_and_opsgenie_keep_one_alert_per_incident() {
    capture_logs();
    let (pd, p) = vendor(vec![]).await;
    let (og, o) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([
            { "name": "pd", "type": "pagerduty", "url": format!("{pd}/v2/enqueue"), "routingKey": "SECRET-ROUTING-KEY-1" },
            { "name": "og", "type": "opsgenie", "url": og, "apiKey": "og-SECRET-KEY-2" }
        ]),
        &json!({}),
    );
    let inc = v2_incident("High CPU", "db-2");
    let c = open_and_resolve(&config, &inc).await;
    assert!(c.iter().all(|c| c.failures.is_empty()), "{c:?}");
    let p = got(&p);
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].method.as_str(), p[0].path.as_str()),
        ("POST", "/v2/enqueue")
    );
    let (trigger, resolve) = (p[0].json(), p[1].json());
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["dedup_key"], inc.id.to_string());
    assert_eq!(
        resolve["dedup_key"], trigger["dedup_key"],
        "the same dedup_key"
    );
    assert_eq!(trigger["routing_key"], "SECRET-ROUTING-KEY-1");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "db-2");
    assert_eq!(trigger["payload"]["component"], "/var");
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("High CPU")
    );
    assert!(trigger["payload"]["timestamp"].is_string());
    assert!(
        trigger["client_url"]
            .as_str()
            .unwrap()
            .starts_with("https://bp.example/")
    );

    let o = got(&o);
    assert_eq!(o.len(), 2);
    assert_eq!(
        (o[0].method.as_str(), o[0].path.as_str()),
        ("POST", "/v2/alerts")
    );
    assert_eq!(o[0].headers["authorization"], "GenieKey og-SECRET-KEY-2");
    let create = o[0].json();
    assert_eq!(create["alias"], inc.id.to_string());
    assert_eq!(create["priority"], "P1");
    assert!(create["message"].as_str().unwrap().chars().count() <= 130);
    assert_eq!(o[1].path, format!("/v2/alerts/{}/close", inc.id));
    assert_eq!(o[1].query, "identifierType=alias");
    assert_eq!(o[1].headers["authorization"], "GenieKey og-SECRET-KEY-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_send_resolved_and_a_templated_webhook() {
    capture_logs();
    let (hook, h) = vendor(vec![]).await;
    let (chat, c) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([
            { "name": "put-hook", "type": "webhook", "url": format!("{hook}/in"), "method": "PUT",
              "headers": { "X-Api": "HDR-SECRET" }, "contentType": "text/plain",
              "template": { "body": "{{ status }}|{{ incident.ruleName }}|{{ incident.labels.team if incident.labels else '-' }}" },
              "match": { "labels": { "team": "ops" } } },
            { "name": "crit-only", "type": "slack", "url": format!("{chat}/s"), "sendResolved": false,
              "match": { "severity": ["critical", "page"], "host": "web-*" } }
        ]),
        &json!({}),
    );
    let (dispatcher, mut rx) = start(&config);
    let matching = v2_incident("Disk", "web-9");
    let mut other = incident("Disk", "db-1", 1_700_000_000_000, 1.0);
    other.severity = Some("warning".into());
    dispatcher.submit(1, opened(&matching)).unwrap();
    dispatcher.submit(2, opened(&other)).unwrap();
    dispatcher
        .submit(3, resolved(&matching, 1_700_000_090_000))
        .unwrap();
    dispatcher
        .submit(4, resolved(&other, 1_700_000_090_000))
        .unwrap();
    let done = completions(&mut rx, 4).await;
    assert!(done.iter().all(|c| c.failures.is_empty()), "{done:?}");
    dispatcher.shutdown(DEADLINE).await;
    let h = got(&h);
    assert_eq!(
        h.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(),
        ["firing|Disk|ops", "resolved|Disk|ops"],
        "only the incident labelled team=ops"
    );
    assert_eq!(h[0].method, Method::PUT);
    assert_eq!(h[0].headers["x-api"], "HDR-SECRET");
    assert_eq!(h[0].headers["content-type"], "text/plain");
    let c = got(&c);
    assert_eq!(
        c.len(),
        1,
        "the critical web incident's open only (sendResolved false)"
    );
    assert!(c[0].json()["text"].as_str().unwrap().contains("web-9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_retry_after_is_honoured_and_a_500_ends_in_a_dead_letter_without_secrets() {
    capture_logs();
    let (pd, p) = vendor(vec![(429, Some("1"))]).await;
    let (down, d) = vendor(vec![(500, None); 10]).await;
    let config = hooks_with(
        &json!([
            { "name": "pd", "type": "pagerduty", "url": pd, "routingKey": "SECRET-ROUTING-KEY-1" },
            { "name": "tg-down", "type": "telegram", "url": down, "botToken": "tg-SECRET-BOT-7", "chatId": "@ops" }
        ]),
        &json!({ "maxAttempts": 3, "retryBackoff": "10ms" }),
    );
    let inc = incident("Errors", "node-1", 1_700_000_000_000, 5.0);
    let (dispatcher, mut rx) = start(&config);
    dispatcher.submit(1, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    dispatcher.shutdown(DEADLINE).await;
    let p = got(&p);
    assert_eq!(p.len(), 2, "one 429, then the delivery");
    let waited = p[1].at - p[0].at;
    assert!(
        waited >= std::time::Duration::from_millis(950),
        "Retry-After: 1 honoured, not the 10 ms backoff: waited {waited:?}"
    );
    assert_eq!(got(&d).len(), 3, "maxAttempts");
    assert_eq!(c.failures.len(), 1, "{:?}", c.failures);
    let f = &c.failures[0];
    assert_eq!((f.hook.as_str(), f.attempts), ("tg-down", 3));
    assert!(f.error.contains("HTTP 500"), "{}", f.error);
    for secret in ["tg-SECRET-BOT-7", "SECRET-ROUTING-KEY-1"] {
        assert!(
            !f.error.contains(secret),
            "{secret} in the dead letter: {}",
            f.error
        );
        assert!(
            log_lines_with(secret).is_empty(),
            "{secret} was logged: {:#?}",
            log_lines_with(secret)
        );
    }
    assert!(format!("{config:?}").contains("<redacted>"));
    assert!(
        !format!("{config:?}").contains("SECRET"),
        "Debug shows a secret"
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a table of cases
fn bad_notifiers_are_named_by_path() {
    // SAFETY-free: a variable only this test reads.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "file-key-123\n").unwrap();
    let ok = parse_notifiers(
        Some(
            &json!([{ "name": "pd", "type": "pagerduty", "routingKey": { "file": file.path() } }]),
        ),
        "alerting.notifiers",
        None,
    )
    .unwrap();
    assert_eq!(
        ok[0].url.0.as_str(),
        "https://events.pagerduty.com/v2/enqueue",
        "the vendor's endpoint by default"
    );
    let cases = [
        (
            json!({ "type": "slack", "url": "http://x" }),
            "alerting.notifiers[0].name",
        ),
        (
            json!({ "name": "a", "type": "sms" }),
            "alerting.notifiers[0].type",
        ),
        (
            json!({ "name": "a", "type": "slack" }),
            "alerting.notifiers[0].url",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "ftp://x" }),
            "alerting.notifiers[0].url",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": { "env": "BP_TEST_SURELY_UNSET_VAR" } }),
            "alerting.notifiers[0].url.env",
        ),
        (
            json!({ "name": "a", "type": "telegram", "botToken": "t" }),
            "alerting.notifiers[0].chatId",
        ),
        (
            json!({ "name": "a", "type": "pagerduty" }),
            "alerting.notifiers[0].routingKey",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "routingKey": "k" }),
            "alerting.notifiers[0].routingKey",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "match": { "hots": "x" } }),
            "alerting.notifiers[0].match.hots",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "match": { "host": [] } }),
            "alerting.notifiers[0].match.host",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "match": { "labels": { "team": 3 } } }),
            "alerting.notifiers[0].match.labels.team",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "sendResolved": "no" }),
            "alerting.notifiers[0].sendResolved",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "template": { "text": "{% for %}" } }),
            "alerting.notifiers[0].template.text",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "template": { "title": "{{ incident.secret }}" } }),
            "alerting.notifiers[0].template.title",
        ),
        (
            json!({ "name": "a", "type": "webhook", "url": "http://x", "method": "GET" }),
            "alerting.notifiers[0].method",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "rateLimit": { "max": 0, "per": "1m" } }),
            "alerting.notifiers[0].rateLimit.max",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "rateLimit": { "max": 5, "per": "0s" } }),
            "alerting.notifiers[0].rateLimit.per",
        ),
        (
            json!({ "name": "a", "type": "slack", "url": "http://x", "rateLimit": { "max": 5, "per": "1m", "burst": 2 } }),
            "alerting.notifiers[0].rateLimit.burst",
        ),
    ];
    for (entry, path) in cases {
        let e = parse_notifiers(Some(&json!([entry])), "alerting.notifiers", None).unwrap_err();
        assert!(
            e.iter().any(|p| p.path == path),
            "{entry}: expected {path}, got {e:?}"
        );
        let text = format!("{e:?}");
        assert!(!text.contains("file-key-123"));
    }
    let dup = json!([{ "name": "a", "type": "slack", "url": "http://x" }, { "name": "a", "type": "slack", "url": "http://y" }]);
    let e = parse_notifiers(Some(&dup), "alerting.notifiers", None).unwrap_err();
    assert_eq!(e[0].path, "alerting.notifiers[1].name");
}

/// Each notifier has its own lane: one told to wait (429, Retry-After 3)
/// holds back only itself; the webhook in the main lane gets the open and
/// the resolve of the same incident meanwhile, in order; the entries
/// complete once the notifier is done too, and it too gets them in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_notifier_never_stalls_another_hook() {
    capture_logs();
    let (slow, s) = vendor(vec![(429, Some("3"))]).await;
    let (fast, f) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([{ "name": "slow-chat", "type": "discord", "url": format!("{slow}/w") }]),
        &json!({ "webhooks": [{ "name": "fast", "url": format!("{fast}/hook") }] }),
    );
    let inc = incident("Lanes", "node-l", 1_700_000_000_000, 1.0);
    let (dispatcher, mut rx) = start(&config);
    let started = Instant::now();
    dispatcher.submit(1, opened(&inc)).unwrap();
    dispatcher
        .submit(2, resolved(&inc, 1_700_000_010_000))
        .unwrap();
    let done = completions(&mut rx, 2).await;
    let completed_after = started.elapsed();
    dispatcher.shutdown(DEADLINE).await;
    assert!(done.iter().all(|c| c.failures.is_empty()), "{done:?}");
    let fast = got(&f);
    let events: Vec<String> = fast
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["opened", "resolved"]);
    assert!(
        fast[1].at - started < std::time::Duration::from_secs(2),
        "the webhook waited for the rate-limited notifier: {:?}",
        fast[1].at - started
    );
    let slow = got(&s);
    assert_eq!(slow.len(), 3, "429, then the open, then the resolve");
    assert!(slow[1].at - slow[0].at >= std::time::Duration::from_millis(2900));
    let colours: Vec<i64> = slow[1..]
        .iter()
        .map(|r| r.json()["embeds"][0]["color"].as_i64().unwrap())
        .collect();
    assert_eq!(colours, [0xd0_00_00, 0x2e_b8_86], "open then resolve");
    assert!(
        completed_after >= std::time::Duration::from_millis(2900),
        "entries complete when every lane is done, not when the fast one is: {completed_after:?}"
    );
}

/// Sliding-window check: no `per` span holds more than `max` requests, as
/// the receiver saw them. The pacer spaces the sends; arrivals can bunch
/// by the scheduling and connection jitter of a loaded 2-core machine
/// (a window's first request on a new connection arrives late), so a
/// quarter of a second of slack: without the limiter, 51 requests arrive
/// within a few tens of milliseconds, far inside it.
fn within_rate(times: &[Instant], max: usize, per: std::time::Duration) -> bool {
    let slack = std::time::Duration::from_millis(250);
    times.windows(max + 1).all(|w| w[max] - w[0] + slack >= per)
}

/// The tightest window of `max + 1` arrivals, for the failure message.
fn tightest(times: &[Instant], max: usize) -> Option<std::time::Duration> {
    times.windows(max + 1).map(|w| w[max] - w[0]).min()
}

/// A storm: 100 incidents open and resolve (200 transitions) on a chat
/// notifier limited to 10 messages per 2 s: it never sends more than 10
/// messages in any 2 s, digests list the rest, every transition is in
/// exactly one message, and every incident's open reaches the receiver
/// before its resolve. The same storm to PagerDuty limited to 50 per 1 s:
/// every event sent (queued, never combined), within the rate, trigger
/// before resolve for each dedup_key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one storm, two receivers
async fn a_storm_is_rate_limited_into_digests_with_every_pair_complete() {
    capture_logs();
    let (chat, c) = vendor(vec![]).await;
    let (pd, p) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([
            { "name": "storm-chat", "type": "discord", "url": format!("{chat}/w"),
              "rateLimit": { "max": 10, "per": "2s" } },
            { "name": "storm-pd", "type": "pagerduty", "url": pd, "routingKey": "rk",
              "rateLimit": { "max": 50, "per": "1s" } }
        ]),
        &json!({ "maxAttempts": 3 }),
    );
    let incidents: Vec<rules_engine::Incident> = (0..100)
        .map(|i| incident("Storm", &format!("n-{i:03}"), 1_700_000_000_000, 1.0))
        .collect();
    let (dispatcher, mut rx) = start(&config);
    let mut seq = 0;
    for inc in &incidents {
        seq += 1;
        dispatcher.submit(seq, opened(inc)).unwrap();
    }
    for inc in &incidents {
        seq += 1;
        dispatcher
            .submit(seq, resolved(inc, 1_700_000_060_000))
            .unwrap();
    }
    let done = completions(&mut rx, 200).await;
    dispatcher.shutdown(DEADLINE).await;
    assert!(
        done.iter().all(|c| c.failures.is_empty()),
        "{:?}",
        done.iter().find(|c| !c.failures.is_empty())
    );

    let msgs = got(&c);
    let times: Vec<Instant> = msgs.iter().map(|r| r.at).collect();
    assert!(
        within_rate(&times, 10, std::time::Duration::from_secs(2)),
        "more than 10 chat messages in 2 s: {:?}",
        times.iter().map(|t| *t - times[0]).collect::<Vec<_>>()
    );
    // Every transition in exactly one message, in the receiver's order.
    let mut seen: Vec<(String, &'static str)> = Vec::new();
    let mut digests = 0;
    for m in &msgs {
        let e = &m.json()["embeds"][0];
        let title = e["title"].as_str().unwrap();
        let lines: Vec<&str> = if title.contains("notifications in one message") {
            digests += 1;
            e["description"].as_str().unwrap().lines().collect()
        } else {
            vec![title]
        };
        for l in lines {
            let host = l.split(" on ").nth(1).unwrap().to_owned();
            seen.push((
                host,
                if l.starts_with("[RESOLVED]") {
                    "resolved"
                } else {
                    "opened"
                },
            ));
        }
    }
    assert!(digests > 0, "no digest was sent");
    assert!(
        msgs.len() < 200,
        "{} messages: nothing was combined",
        msgs.len()
    );
    assert_eq!(seen.len(), 200, "every transition exactly once: {seen:?}");
    for inc in &incidents {
        let host = inc.host_name.as_str();
        let mine: Vec<&str> = seen
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, e)| *e)
            .collect();
        assert_eq!(mine, ["opened", "resolved"], "{host}: the pair, open first");
    }

    let events = got(&p);
    assert_eq!(
        events.len(),
        200,
        "PagerDuty gets every event, never combined"
    );
    let times: Vec<Instant> = events.iter().map(|r| r.at).collect();
    assert!(
        within_rate(&times, 50, std::time::Duration::from_secs(1)),
        "PagerDuty over its rate: 51 events within {:?}",
        tightest(&times, 50)
    );
    for inc in &incidents {
        let id = inc.id.to_string();
        let actions: Vec<String> = events
            .iter()
            .map(Request::json)
            .filter(|b| b["dedup_key"] == id.as_str())
            .map(|b| b["event_action"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(actions, ["trigger", "resolve"], "{id}");
    }
}

/// `repeatInterval`: while an incident it told stays open, a notifier
/// reminds (`<id>:reminder:<n>`, one per whole interval since the start);
/// the resolve stops the reminders; an open incident seeded at start-up
/// (a restart) is reminded from the next whole interval on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_while_open_stop_at_the_resolve() {
    capture_logs();
    let (chat, c) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([{ "name": "remind", "type": "discord", "url": format!("{chat}/w"), "repeatInterval": "1s" }]),
        &json!({}),
    );
    let now = metrics_model::time::now_ms();
    let inc = incident("Still high", "node-r", now, 99.0);
    let (dispatcher, mut rx) = start(&config);
    dispatcher.submit(1, opened(&inc)).unwrap();
    completions(&mut rx, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    dispatcher.submit(2, resolved(&inc, now + 2_700)).unwrap();
    completions(&mut rx, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let keys: Vec<String> = got(&c)
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    let id = inc.id.to_string();
    // Reminders 1 and 2 fall in the 2.6 s the incident is open (a late
    // open delivery on a loaded machine may skip the first: never more).
    assert_eq!(keys.first(), Some(&format!("{id}:opened")), "{keys:?}");
    assert_eq!(
        keys.last(),
        Some(&format!("{id}:resolved")),
        "none after the resolve: {keys:?}"
    );
    let reminders: Vec<&String> = keys[1..keys.len() - 1].iter().collect();
    assert!(
        reminders == [&format!("{id}:reminder:1"), &format!("{id}:reminder:2")]
            || reminders == [&format!("{id}:reminder:2")],
        "{keys:?}"
    );
    let titles: Vec<String> = got(&c)
        .iter()
        .map(|r| r.json()["embeds"][0]["title"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        titles[1].starts_with("[STILL FIRING, reminder 1] Still high on node-r"),
        "{titles:?}"
    );
    dispatcher.shutdown(DEADLINE).await;

    // After a restart: seeded from the store, reminded from the next whole interval.
    let (chat2, c2) = vendor(vec![]).await;
    let config = hooks_with(
        &json!([{ "name": "remind", "type": "discord", "url": format!("{chat2}/w"), "repeatInterval": "1s" }]),
        &json!({}),
    );
    let started = metrics_model::time::now_ms() - 3_500;
    let old = incident("Still high", "node-s", started, 99.0);
    let (dispatcher, _rx) = start(&config);
    dispatcher.seed_open(std::slice::from_ref(&old)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1400)).await;
    dispatcher.shutdown(DEADLINE).await;
    let keys: Vec<String> = got(&c2)
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        [format!("{}:reminder:4", old.id)],
        "no burst of reminders 1-3 after a restart"
    );
}

/// Every HTTP type, each against its own endpoint: a 429 with
/// `Retry-After: 1` once is honoured (the retry a second later, not after
/// the 10 ms backoff); a receiver that always answers 500 is retried
/// `maxAttempts` times, then a dead letter naming the notifier, without
/// its secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_honours_retry_after_and_dead_letters_after_500s() {
    capture_logs();
    let entry = |name: &str, kind: &str, url: &str| match kind {
        "telegram" => {
            json!({ "name": name, "type": kind, "url": url, "botToken": "SECRET-T-1", "chatId": 1 })
        }
        "pagerduty" => {
            json!({ "name": name, "type": kind, "url": url, "routingKey": "SECRET-R-2" })
        }
        "opsgenie" => json!({ "name": name, "type": kind, "url": url, "apiKey": "SECRET-A-3" }),
        _ => json!({ "name": name, "type": kind, "url": format!("{url}/SECRET-PATH-4") }),
    };
    let kinds = [
        "slack",
        "teams",
        "discord",
        "telegram",
        "pagerduty",
        "opsgenie",
        "webhook",
    ];
    for (answers, attempts) in [(vec![(429, Some("1"))], 2usize), (vec![(500, None); 9], 3)] {
        let mut vendors = Vec::new();
        let mut entries = Vec::new();
        for k in kinds {
            let (url, v) = vendor(answers.clone()).await;
            entries.push(entry(&format!("n-{k}"), k, &url));
            vendors.push((k, v));
        }
        let config = hooks_with(
            &json!(entries),
            &json!({ "maxAttempts": 3, "retryBackoff": "10ms" }),
        );
        let inc = incident("Every type", "node-e", 1_700_000_000_000, 1.0);
        let (dispatcher, mut rx) = start(&config);
        dispatcher.submit(1, opened(&inc)).unwrap();
        let c = completions(&mut rx, 1).await.remove(0);
        dispatcher.shutdown(DEADLINE).await;
        for (k, v) in &vendors {
            let r = got(v);
            assert_eq!(r.len(), attempts, "{k}: {r:?}");
            if answers[0].0 == 429 {
                assert!(
                    r[1].at - r[0].at >= std::time::Duration::from_millis(950),
                    "{k}: Retry-After ignored"
                );
            }
        }
        if answers[0].0 == 429 {
            assert!(c.failures.is_empty(), "{:?}", c.failures);
        } else {
            let names: Vec<&str> = c.failures.iter().map(|f| f.hook.as_str()).collect();
            let mut want: Vec<String> = kinds.iter().map(|k| format!("n-{k}")).collect();
            want.sort();
            assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>());
            for f in &c.failures {
                assert!(
                    f.error.starts_with(&format!("hook {}: ", f.hook))
                        && f.error.contains("HTTP 500"),
                    "{}",
                    f.error
                );
                assert!(
                    !f.error.contains("SECRET"),
                    "a secret in the dead letter: {}",
                    f.error
                );
            }
        }
    }
    assert!(
        log_lines_with("SECRET-").is_empty(),
        "{:#?}",
        log_lines_with("SECRET-")
    );
}
