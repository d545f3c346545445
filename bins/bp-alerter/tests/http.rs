//! The HTTP server over real sockets: the JSON API against a real
//! `redis-server` (seeded through `RedisStore::append` and the `AlertStore`
//! with a lease token) and against the in-memory stores, `/metrics` checked
//! by `promtool check metrics` (Debian package `prometheus`), the access
//! token, TLS, and the binary's refusal of a non-loopback address.

use std::process::{Command, Stdio};
use std::sync::Arc;

use alerter::AlerterStats;
use incidents::persist;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::now_ms;
use metrics_model::time::{Millis, floor_to};
use metrics_model::{MemoryAlertStore, MemoryStore, StandardField, Tick};
use redis_store::{RedisOptions, RedisStore};
use rules_engine::{Config, Engine, EngineOptions};
use serde_json::{Value, json};
use test_support::RedisServer;
use test_support::tls::{Certificates, make_certificates};
use web::{self as http, AppState, HttpConfig, TlsFiles, Token};

const NASTY_RULE: &str = "CPU <script>window.__pwned=1</script> \"quoted\" 'single' \\ back";

fn config() -> Config {
    Config::from_json(&json!({
        "alerting": { "rules": [
            { "name": NASTY_RULE, "field": "cpu.usage", "aggregation": "avg",
              "operand": "equalOrMoreThan", "value": 50, "timeframe": "1m", "cooldown": "1m" },
            { "name": "Errors", "field": "errors.count", "aggregation": "sum",
              "operand": "equalOrMoreThan", "value": 1000, "timeframe": "5m", "cooldown": "1m" }
        ]}
    }))
    .expect("valid test config")
}

fn field(f: StandardField) -> metrics_model::Key {
    f.into()
}

/// 30 minutes of ticks at 10 s for node-a (cpu 80), node-b (cpu 20) and
/// node-c (cpu 40), ending at the last 10 s boundary.
fn ticks(now: Millis) -> Vec<Tick> {
    let end = floor_to(now, 10_000);
    let mut out = Vec::new();
    for (host, cpu) in [("node-a", 80.0), ("node-b", 20.0), ("node-c", 40.0)] {
        for i in 0..180 {
            let ts = end - i * 10_000;
            out.push(Tick::new(
                host.parse().unwrap(),
                ts,
                [
                    (field(StandardField::CpuUsage), cpu),
                    (field(StandardField::MemUsage), 50.0),
                    (field(StandardField::RequestsCount), 3.0),
                    (field(StandardField::RequestsLatencyAvg), 12.5),
                    (field(StandardField::ErrorsCount), 1.0),
                    (field(StandardField::Uptime), 1000.0 + i as f64),
                ],
            ));
        }
    }
    out
}

/// Appends the ticks and commits the open incident of node-a through the
/// alert store with a lease token, as the active alerter would.
pub async fn seed<T: TickStore, A: AlertStore>(ticks_store: &T, alerts: &A, now: Millis) {
    let all = ticks(now);
    ticks_store.append(&all).await.unwrap();
    let mut engine = Engine::new(config().alerting.rules, EngineOptions::default());
    for t in all {
        engine.ingest(t);
    }
    let at = floor_to(now, 10_000);
    let transitions = engine.evaluate(at).unwrap();
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let commit = persist::commit_for(at, &transitions, &engine);
    let token = alerts
        .acquire_lease("test-seeder", 60_000)
        .await
        .unwrap()
        .unwrap();
    alerts.commit("test-seeder", token, &commit).await.unwrap();
    alerts.release_lease("test-seeder", token).await.unwrap();
}

struct Running {
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Permits of the heavy-request limit, to hold some from a test.
    heavy: Arc<dyn Fn(u32) -> Option<tokio::sync::SemaphorePermit<'static>> + Send + Sync>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start<T, A>(ticks_store: T, alerts: A, http_config: HttpConfig) -> Running
where
    T: TickStore + Clone + 'static,
    A: AlertStore + Clone + 'static,
{
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(config()));
    let state = Arc::new(AppState::new(
        ticks_store,
        alerts,
        Arc::new(AlerterStats::default()),
        rx,
    ));
    // Leaked: lives as long as the test process, so a test can hold
    // permits of its heavy-request semaphore.
    let state: &'static Arc<AppState<T, A>> = Box::leak(Box::new(state));
    let heavy = Arc::new(move |n: u32| state.heavy.try_acquire_many(n).ok());
    let state = state.clone();
    let server = http::bind(&http_config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    http::spawn(
        server,
        state,
        http::boxed(async move {
            let _ = stopped.await;
        }),
    );
    let scheme = if http_config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Running {
        base: format!("{scheme}://{addr}"),
        client: reqwest::Client::new(),
        stop: Some(stop),
        heavy,
    }
}

fn local() -> HttpConfig {
    HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    }
}

impl Running {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install it with `apt-get install -y prometheus`");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the dashboard reads, checked against the seeded data.
async fn check_api(s: &Running) {
    let nodes = s.json("/api/v1/nodes").await;
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"]);
    assert!(nodes["nodes"][0]["lastSeen"].as_i64().unwrap() > 0);

    let series = s
        .json("/api/v1/series?fields=cpu.usage,requests.count&range=15m&step=1m&stats=avg,max,sum&nodes=node-a,node-b")
        .await;
    assert_eq!(series["step"], 60_000);
    let list = series["series"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(
        (list[0]["node"].as_str(), list[0]["field"].as_str()),
        (Some("node-a"), Some("cpu.usage"))
    );
    let full_bucket = list[0]["avg"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .nth(1)
        .unwrap()
        .clone();
    assert_eq!(full_bucket, json!(80.0));
    let sum = list[1]["sum"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .nth(1)
        .unwrap()
        .clone();
    assert_eq!(sum, json!(18.0), "6 ticks of 3 requests in a full minute");
    assert_eq!(
        list[2]["avg"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .nth(1)
            .unwrap(),
        &json!(20.0)
    );

    // A 7 d range stays within ~2,000 points per series.
    let wide = s
        .json("/api/v1/series?fields=cpu.usage&range=7d&step=10s")
        .await;
    let points = wide["t"].as_array().unwrap().len();
    assert!(points <= 2_001, "{points} points");
    assert_eq!(wide["series"][0]["avg"].as_array().unwrap().len(), points);

    let overview = s.json("/api/v1/overview?range=5m").await;
    let a = &overview["nodes"][0];
    assert_eq!(a["node"], "node-a");
    assert_eq!(a["cpu"], json!(80.0));
    assert_eq!(a["cpuPeak"], json!(80.0));
    let requests = a["requests"].as_f64().unwrap();
    assert!(
        requests == 90.0 || requests == 93.0,
        "30 or 31 ticks of 3: {requests}"
    );
    assert_eq!(a["stale"], false);

    let incidents = s.json("/api/v1/incidents?range=1h").await;
    let open = incidents["open"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{incidents}");
    assert_eq!(open[0]["ruleName"], NASTY_RULE);
    assert_eq!(open[0]["hostName"], "node-a");
    assert_eq!(open[0]["triggerValue"], json!(80.0));

    let rules = s.json("/api/v1/rules").await;
    let first = &rules["rules"][0];
    assert_eq!(first["rule"]["name"], NASTY_RULE);
    let per_node = first["nodes"].as_array().unwrap();
    assert_eq!(per_node.len(), 3);
    assert_eq!(per_node[0]["value"], json!(80.0));
    assert_eq!(per_node[0]["holds"], true);
    assert!(per_node[0]["openIncident"].is_string());
    assert_eq!(per_node[1]["holds"], false);

    check_metrics_and_page(s).await;
}

async fn check_metrics_and_page(s: &Running) {
    let (status, metrics) = s.get("/metrics").await;
    assert_eq!(status, 200);
    promtool_check(&metrics);
    assert!(
        metrics.contains("bp_metric{node=\"node-a\",field=\"cpu.usage\"} 80\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "bp_incidents_open{rule=\"CPU <script>window.__pwned=1</script> \\\"quoted\\\" 'single' \\\\ back\"} 1\n"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("bp_evaluation_duration_seconds_count 0\n"));
    assert!(metrics.contains("bp_outbox_entries 1\n"), "{metrics}");

    let (status, page) = s.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("assets/uPlot.iife.min.js"));
    let (status, lib) = s.get("/assets/uPlot.iife.min.js").await;
    assert_eq!(status, 200);
    assert!(lib.contains("uPlot"));
}

async fn check_bad_parameters(s: &Running) {
    for (path, parameter) in [
        ("/api/v1/series?range=15m", "fields"),
        ("/api/v1/series?fields=cpu.bogus", "fields"),
        ("/api/v1/series?fields=cpu.usage&range=2x", "range"),
        ("/api/v1/series?fields=cpu.usage&step=-1s", "step"),
        ("/api/v1/series?fields=cpu.usage&stats=median", "stats"),
        ("/api/v1/series?fields=cpu.usage&from=yesterday", "from"),
        ("/api/v1/series?fields=cpu.usage&from=10&to=5", "from"),
        ("/api/v1/series?fields=cpu.usage&range=90d", "range"),
        ("/api/v1/series?fields=cpu.usage&nodes=nobody", "nodes"),
        (
            "/api/v1/series?fields=cpu.usage&nodes=%3Cscript%3E",
            "nodes",
        ),
        ("/api/v1/series?fields=cpu.usage&colour=red", "colour"),
        ("/api/v1/overview?to=soon", "to"),
        // Extreme times are refused, not wrapped (i64::MIN / i64::MAX).
        (
            "/api/v1/series?fields=cpu.usage&to=-9223372036854775808",
            "to",
        ),
        (
            "/api/v1/series?fields=cpu.usage&from=-9223372036854775808&to=9223372036854775807",
            "to",
        ),
        ("/api/v1/incidents?from=-1", "from"),
        ("/api/v1/incidents?limit=0", "limit"),
        ("/api/v1/rules?x=1", "x"),
        ("/api/v1/nodes?verbose=1", "verbose"),
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["parameter"], parameter, "{path}: {body}");
        assert!(
            v["error"].as_str().unwrap().starts_with(parameter),
            "{body}"
        );
    }
    let (status, _) = s.get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    // The node as the user wrote it, not a Rust `Debug` form.
    let (_, body) = s.get("/api/v1/series?fields=cpu.usage&nodes=n0").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "nodes: unknown node \"n0\"", "{body}");
}

/// The outside test's amplification: 6,500 copies of one field over 31 d
/// with every statistic answered 116,757,003 bytes. Repeats are merged,
/// a request is capped at 1,000,000 values, and at most 4 heavy requests
/// run at once (the others: 503 with `Retry-After`).
async fn check_amplification(s: &Running) {
    let repeated = vec!["cpu.usage"; 4_500].join(",");
    let path =
        format!("/api/v1/series?fields={repeated}&range=31d&stats=avg,min,max,sum,count,avg");
    let (status, body) = s.get(&path).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.len() < 600_000, "{} bytes", body.len());
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["series"].as_array().unwrap().len(),
        3,
        "one series per node"
    );
    let distinct: Vec<String> = (0..600).map(|i| format!("custom.f{i}")).collect();
    let (status, body) = s
        .get(&format!(
            "/api/v1/series?fields={}&range=31d",
            distinct.join(",")
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["parameter"], "fields");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("the limit is 1000000"),
        "{body}"
    );
    // Four heavy requests in progress (held here): the fifth is told to wait.
    let held = (s.heavy)(4).expect("4 permits");
    let r = s
        .client
        .get(format!(
            "{}/api/v1/series?fields=cpu.usage&range=31d",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    // A light request (cached, few values) is still answered.
    let (status, _) = s.get("/api/v1/series?fields=cpu.usage&range=15m").await;
    assert_eq!(status, 200);
    drop(held);
    let (status, _) = s.get("/api/v1/series?fields=cpu.usage&range=31d").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_over_redis() {
    let redis = RedisServer::start();
    let url = metrics_model::RedisUrl::parse(&redis.url()).unwrap();
    let store = RedisStore::connect(RedisOptions::new(url, "http-test"))
        .await
        .unwrap();
    seed(&store, &store, now_ms()).await;
    let s = start(store.clone(), store, local()).await;
    check_api(&s).await;
    check_bad_parameters(&s).await;
    let ready = s.json("/readyz").await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_over_memory_stores() {
    let ticks_store = MemoryStore::new();
    let alerts = MemoryAlertStore::new();
    seed(&ticks_store, &alerts, now_ms()).await;
    let s = start(ticks_store, alerts, local()).await;
    check_api(&s).await;
    check_bad_parameters(&s).await;
    check_amplification(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_required_except_health() {
    let token = "s3cret-token";
    let s = start(
        MemoryStore::new(),
        MemoryAlertStore::new(),
        HttpConfig {
            token: Token::new(token),
            ..local()
        },
    )
    .await;
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/readyz").await.0 / 100, 2);
    for path in [
        "/",
        "/api/v1/nodes",
        "/metrics",
        "/assets/app.js",
        "/api/v1/nothing",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 401, "{path}");
        assert!(!body.contains(token));
    }
    let url = format!("{}/api/v1/nodes", s.base);
    let wrong = s.client.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("www-authenticate").is_some());
    let bearer = s.client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let basic = s
        .client
        .get(&url)
        .basic_auth("anyone", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
}

#[test]
fn non_loopback_needs_a_token() {
    let open = HttpConfig {
        listen: "0.0.0.0:8081".parse().unwrap(),
        ..HttpConfig::default()
    };
    assert!(open.check().unwrap_err().contains("--token"));
    assert!(
        HttpConfig {
            token: Token::new("t"),
            ..open.clone()
        }
        .check()
        .is_ok()
    );
    assert!(
        HttpConfig {
            insecure_no_auth: true,
            ..open.clone()
        }
        .check()
        .is_ok()
    );
    assert!(HttpConfig::default().check().is_ok());

    // The binary exits 2 with the message, and logs no token.
    let out = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args(["--listen", "0.0.0.0:0", "--statsd", "off"])
        .env_remove("REDIS_URL")
        .env_remove("BP_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-loopback") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args(["--listen", "localhost", "--statsd", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls() {
    let dir = tempfile::tempdir().unwrap();
    let Certificates { ca_cert, cert, key } = make_certificates(dir.path());
    let mut s = start(
        MemoryStore::new(),
        MemoryAlertStore::new(),
        HttpConfig {
            tls: Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            ..local()
        },
    )
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_cert).unwrap()).unwrap();
    s.client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    assert_eq!(s.json("/healthz").await["status"], "ok");
    // A missing key file is a configuration error naming the flag.
    let bad = http::bind(&HttpConfig {
        tls: Some(TlsFiles {
            cert,
            key: dir.path().join("missing.pem"),
        }),
        ..local()
    })
    .await
    .unwrap_err();
    assert!(format!("{bad:#}").contains("--tls-key"), "{bad:#}");
}
