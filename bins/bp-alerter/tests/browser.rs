//! The dashboard in a real headless Chromium (Debian package `chromium`),
//! driven over the Chrome DevTools Protocol (a small client on
//! `tungstenite`), against the real `bp-alerter` binary in cluster mode on a
//! real `redis-server` seeded with ticks from 3 nodes and one open incident
//! (committed through the alert store with a lease token).
//!
//! Checks: the page loads; both main charts draw series with values; the
//! node filter changes the drawn series; the incident is listed; a rule name
//! with `<script>` and quotes shows as literal text and runs nothing; the
//! Disks panel lists mounts fullest first with free space and inodes (a
//! mount named like an `<img onerror>` tag as literal text) and says how many
//! more than 50 there are; the Network panel shows rx/tx sums, interfaces
//! and errors; the overview shows watched processes (one down, in red) and
//! the peak disk with its mount; the console has no error (console.error,
//! exceptions, failed loads, CSP violations). Saves
//! `test-artifacts/dashboard.png`.
//!
//! A second test, `silences_and_acks_in_headless_chromium`, runs the alerter
//! with alerting on and a write token, and drives silences, maintenance
//! windows, acknowledgements and the write-token dialog in the page (see its
//! doc comment). Saves `test-artifacts/silences.png`.
//!
//! Fails (never skips) when `chromium` is missing.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use incidents::persist;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::now_ms;
use metrics_model::time::{Millis, floor_to};
use metrics_model::{StandardField, Tick};
use redis_store::{RedisOptions, RedisStore};
use rules_engine::{Engine, EngineOptions};
use serde_json::{Value, json};
use test_support::{RedisServer, free_port, heavy_test_lock};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

const NASTY_RULE: &str = "CPU <script>window.__pwned=1</script> \"quoted\" 'single'";
/// An instance is arbitrary text (no control character, no `]`).
const NASTY_MOUNT: &str = "/data (x)*? <img src=x onerror=window.__pwned=2>";
const NASTY_PROCESS: &str = "<img src=x onerror=window.__pwned=3>";
/// node-c's many small mounts: more than the Disks panel's 50 rows.
const MANY_MOUNTS: i64 = 60;
const DEADLINE: Duration = Duration::from_mins(1);

fn rules_json() -> Value {
    json!([
        { "name": NASTY_RULE, "field": "cpu.usage", "aggregation": "avg",
          "operand": "equalOrMoreThan", "value": 50, "timeframe": "1m", "cooldown": "1m" },
        { "name": "Disk almost full", "field": "disk.usage", "aggregation": "max",
          "operand": "equalOrMoreThan", "value": 90, "timeframe": "1m", "severity": "critical" },
        { "name": "Requests across the cluster", "field": "requests.count", "aggregation": "sum",
          "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m", "scope": "cluster",
          "severity": "warning" }
    ])
}

/// 20 minutes of ticks: node-a (cpu 80, busy), node-b (cpu 20), node-c
/// (cpu 40, stopped reporting 3 minutes ago: stale). Their breadth:
/// - node-a: the nasty mount 95 % (1 GiB free, inodes 7 %), `/var` 50 %,
///   `/` 10 % (20 GiB free, no inode figure); eth0 rx 1 MiB/s tx 200 KiB/s,
///   eth1 rx 512 KiB/s and an error every 40 ticks; botpress ×2 and a
///   process with a nasty name ×1;
/// - node-b: `/home` 75 % (88 % five minutes ago: its peak), `/` 60 %; eth0
///   rx 2 KiB/s tx 1 KiB/s; botpress down (count 0), redis ×1;
/// - node-c: 60 mounts at 5 %, no interface, no process.
fn ticks(now: Millis) -> Vec<Tick> {
    let end = floor_to(now, 10_000);
    let f = metrics_model::Key::from;
    let mut out = Vec::new();
    for (n, (host, cpu, stop)) in [
        ("node-a", 80.0, 0),
        ("node-b", 20.0, 0),
        ("node-c", 40.0, 18),
    ]
    .into_iter()
    .enumerate()
    {
        for i in stop..120 {
            let ts = end - i * 10_000;
            let wave = ((i as f64) / 6.0).sin();
            out.push(Tick::new(
                host.parse().unwrap(),
                ts,
                [
                    (f(StandardField::CpuUsage), cpu + 5.0 * wave),
                    (f(StandardField::MemUsage), 30.0 + 10.0 * n as f64),
                    (f(StandardField::RequestsCount), 20.0 + 10.0 * wave.abs()),
                    (
                        f(StandardField::RequestsLatencyAvg),
                        15.0 + 5.0 * n as f64 + 3.0 * wave,
                    ),
                    (f(StandardField::EventsInCount), 5.0),
                    (f(StandardField::EventsOutCount), 4.0),
                    (f(StandardField::WarningsCount), f64::from(i % 7 == 0)),
                    (f(StandardField::ErrorsCount), f64::from(i % 11 == 0)),
                    (f(StandardField::Uptime), 5000.0 + (120 - i) as f64 * 10.0),
                ],
            ));
            let key = |k: String| metrics_model::Key::parse_tick_key(&k).unwrap();
            let tick = out.last_mut().unwrap();
            match host {
                "node-a" => tick.extend([
                    (key(format!("disk.usage[{NASTY_MOUNT}]")), 95.0),
                    (key(format!("disk.free[{NASTY_MOUNT}]")), 1_048_576.0),
                    (key(format!("disk.inodes.usage[{NASTY_MOUNT}]")), 7.0),
                    (key("disk.usage[/var]".into()), 50.0),
                    (key("disk.usage[/]".into()), 10.0),
                    (key("disk.free[/]".into()), 20_971_520.0),
                    (key("net.rx[eth0]".into()), 1_048_576.0),
                    (key("net.tx[eth0]".into()), 204_800.0),
                    (key("net.rx[eth1]".into()), 524_288.0),
                    (key("net.tx[eth1]".into()), 0.0),
                    (
                        key("net.errors.count[eth1]".into()),
                        // Ticks 5 and 45: well inside the 15-minute window.
                        f64::from(i % 40 == 5 && i < 60),
                    ),
                    (key("process.count[botpress]".into()), 2.0),
                    (key(format!("process.count[{NASTY_PROCESS}]")), 1.0),
                ]),
                "node-b" => tick.extend([
                    (
                        key("disk.usage[/home]".into()),
                        if i == 30 { 88.0 } else { 75.0 },
                    ),
                    (key("disk.usage[/]".into()), 60.0),
                    (key("net.rx[eth0]".into()), 2048.0),
                    (key("net.tx[eth0]".into()), 1024.0),
                    (key("process.count[botpress]".into()), 0.0),
                    (key("process.count[redis]".into()), 1.0),
                ]),
                _ => tick.extend(
                    (0..MANY_MOUNTS).map(|m| (key(format!("disk.usage[/mnt/d{m:02}]")), 5.0)),
                ),
            }
        }
    }
    out
}

async fn seed(redis_url: &str) {
    let url = metrics_model::RedisUrl::parse(redis_url).unwrap();
    let store = RedisStore::connect(RedisOptions::new(url, "bp"))
        .await
        .unwrap();
    let now = now_ms();
    let all = ticks(now);
    store.append(&all).await.unwrap();
    let rules = rules_engine::RuleSet::from_json(&rules_json(), "rules").unwrap();
    let mut engine = Engine::new(rules, EngineOptions::default());
    for t in all {
        engine.ingest(t);
    }
    let at = floor_to(now, 10_000);
    let transitions = engine.evaluate(at).unwrap();
    assert_eq!(
        transitions.len(),
        3,
        "the CPU, the disk and the cluster incidents open: {transitions:?}"
    );
    let commit = persist::commit_for(at, &transitions, &engine);
    let token = store
        .acquire_lease("seeder", 60_000)
        .await
        .unwrap()
        .unwrap();
    store.commit("seeder", token, &commit).await.unwrap();
    store.release_lease("seeder", token).await.unwrap();
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A minimal Chrome DevTools Protocol client: one page session.
struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: Option<String>,
    next: u64,
    /// Console errors, exceptions and error log entries seen so far.
    errors: Vec<String>,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let (ws, _) = tungstenite::connect(url).expect("connect to Chromium's DevTools");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        Cdp {
            ws,
            session: None,
            next: 0,
            errors: Vec::new(),
        }
    }

    #[allow(clippy::needless_pass_by_value)] // call sites build the JSON inline
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let m = self.ws.read().expect("read from Chromium (30 s timeout)");
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.event(&v);
        }
    }

    fn event(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.{}: {}", p["type"], p["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", p["exceptionDetails"]));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]));
            }
            _ => {}
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Removes the one error the page's refused request to `path` (ending
    /// with it) logged, failing unless it is there (with `status`).
    fn expect_refused_load(&mut self, status: u16, path: &str) {
        let matches = |e: &String| {
            e.starts_with("log: ")
                && serde_json::from_str::<Value>(&e[5..]).is_ok_and(|v| {
                    v["source"] == "network"
                        && v["url"].as_str().is_some_and(|u| u.ends_with(path))
                        && v["text"]
                            .as_str()
                            .is_some_and(|t| t.contains(&format!("status of {status} ")))
                })
        };
        let found = self.errors.iter().filter(|e| matches(e)).count();
        assert_eq!(
            found, 1,
            "one refused load of {path} ({status}): {:#?}",
            self.errors
        );
        self.errors.retain(|e| !matches(e));
    }

    /// Polls `expression` until it is `true`.
    fn wait_for(&mut self, expression: &str, what: &str) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if self.eval(expression) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let banner = self.eval(
            "(document.getElementById('banner') || {}).textContent + ' | status: ' + \
             (document.getElementById('status') || {}).textContent + ' | loaded: ' + \
             (document.body && document.body.dataset.loaded)",
        );
        panic!(
            "timed out waiting for {what} ({expression}); page: {banner}; console errors: {:?}",
            self.errors
        );
    }
}

fn start_chromium(dir: &std::path::Path) -> (Killed, String) {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--window-size=1440,900",
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `chromium` ({e}): install it with `apt-get install -y chromium`")
        });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(DEADLINE)
        .expect("Chromium did not print its DevTools address");
    (Killed(child), url)
}

fn base64_decode(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= u32::from(val(*c)) << (18 - 6 * i);
        }
        let n = chunk.len() * 3 / 4;
        out.extend_from_slice(&acc.to_be_bytes()[1..=n]);
    }
    out
}

fn spawn_alerter(config: &std::path::Path, redis_url: &str, port: u16, extra: &[&str]) -> Killed {
    let alerter = Killed(
        Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
            .args(["--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--statsd", "off"])
            .args(extra)
            .env("REDIS_URL", redis_url)
            .env("CLUSTER_ENABLED", "true")
            .env("BP_REDIS_SCOPE", "bp")
            .env_remove("BP_API_TOKEN")
            .env_remove("BP_API_WRITE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        test_support::wait_until(DEADLINE, || http_status(port, "/readyz") == Some(200)),
        "bp-alerter did not become ready"
    );
    alerter
}

/// Chromium's profile directory, Chromium with one page attached (console,
/// log and page events on), and the DevTools client (bind them in this
/// order: Chromium stops before its profile is removed).
fn open_browser() -> (tempfile::TempDir, Killed, Cdp) {
    let profile = tempfile::tempdir().unwrap();
    let (chromium, browser_url) = start_chromium(profile.path());
    let mut cdp = Cdp::connect(&browser_url);
    let target = cdp.call("Target.createTarget", json!({ "url": "about:blank" }));
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({ "targetId": target["targetId"], "flatten": true }),
    );
    cdp.session = attached["sessionId"].as_str().map(str::to_owned);
    cdp.call("Runtime.enable", json!({}));
    cdp.call("Log.enable", json!({}));
    cdp.call("Page.enable", json!({}));
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    );
    (profile, chromium, cdp)
}

/// Loads the dashboard of the alerter on `port` and waits for its first
/// refresh.
fn open_dashboard(cdp: &mut Cdp, port: u16) {
    cdp.call(
        "Page.navigate",
        json!({ "url": format!("http://127.0.0.1:{port}/") }),
    );
    cdp.wait_for(
        "!!document.body && Number(document.body.dataset.loaded || 0) >= 1",
        "the first refresh",
    );
}

// One scenario, step by step: splitting it would hide the order that matters.
#[allow(clippy::too_many_lines)]
#[test]
fn dashboard_in_headless_chromium() {
    let _lock = heavy_test_lock();
    let redis = RedisServer::start();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(seed(&redis.url()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({ "monitoring": { "enabled": true }, "alerting": { "enabled": false, "rules": rules_json() } })
            .to_string(),
    )
    .unwrap();
    let port = free_port();
    let alerter = spawn_alerter(&config, &redis.url(), port, &[]);

    let (_profile, _chromium, mut cdp) = open_browser();
    open_dashboard(&mut cdp, port);

    // Both main charts draw series with values: 2 averages + CPU and memory
    // of 3 nodes; 6 counter totals.
    assert_eq!(
        cdp.eval("document.getElementById('chart-cpu').dataset.series"),
        json!("8")
    );
    assert_eq!(
        cdp.eval("document.getElementById('chart-metrics').dataset.series"),
        json!("6")
    );
    let drawn = "(() => { const c = window.bpDashboard.charts; \
        const has = (u, i) => u.data[i].some(v => v != null); \
        return [1,2,3,4,5,6,7,8].every(i => has(c.cpu, i)) && has(c.metrics, 1) && has(c.latency, 1) \
          && document.querySelectorAll('#chart-cpu canvas, #chart-metrics canvas').length === 2; })()";
    assert_eq!(cdp.eval(drawn), json!(true));
    let legend = "Array.from(document.querySelectorAll('#chart-cpu .u-legend .u-series')).map(e => e.textContent).join('|')";
    let before = cdp.eval(legend).as_str().unwrap().to_owned();
    assert!(before.contains("node-b CPU %"), "{before}");

    // The incident is listed, its rule name as literal text; no script ran.
    cdp.wait_for(
        "document.querySelectorAll('#incidents-active tbody tr[data-incident]').length === 3",
        "the open incidents",
    );
    // Rows as [rule, host, instance, severity] texts, in table order.
    let rows = |table: &str| {
        format!(
            "Array.from(document.querySelectorAll('{table} tbody tr')).map(r => Array.from(r.cells).slice(0, 5).map(c => c.textContent))"
        )
    };
    let active = cdp.eval(&rows("#incidents-active"));
    let active = active.as_array().unwrap();
    let row_of = |rule: &str| {
        active
            .iter()
            .find(|r| r[0] == rule)
            .unwrap_or_else(|| panic!("{rule} in {active:?}"))
            .clone()
    };
    assert_eq!(row_of(NASTY_RULE)[1], json!("node-a"));
    assert_eq!(row_of(NASTY_RULE)[2], json!("–"));
    let disk = row_of("Disk almost full");
    assert_eq!(disk[1], json!("node-a"));
    assert_eq!(disk[2], json!(NASTY_MOUNT), "the instance as literal text");
    assert_eq!(disk[3], json!("critical"));
    let cluster = row_of("Requests across the cluster");
    assert_eq!(cluster[1], json!("*"));
    assert_eq!(cluster[3], json!("warning"));
    // Severity is a coloured badge.
    assert_eq!(
        cdp.eval("Array.from(document.querySelectorAll('#incidents-active span.badge.sev')).map(b => b.className + ':' + b.textContent).sort().join('|')"),
        json!("badge sev sev-critical:critical|badge sev sev-warning:warning")
    );
    // The rules view: one row per series; the cluster rule's row is `*`.
    let rules = cdp.eval(&rows("#rules"));
    let rules = rules.as_array().unwrap();
    assert!(rules.iter().any(|r| r[0] == NASTY_RULE), "{rules:?}");
    assert!(
        rules
            .iter()
            .any(|r| r[0] == "Disk almost full" && r[2] == "node-a" && r[3] == NASTY_MOUNT),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r[0] == "Disk almost full" && r[2] == "node-a" && r[3] == "/"),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r[0] == "Requests across the cluster" && r[2] == "*" && r[3] == "–"),
        "{rules:?}"
    );

    // The Disks panel: fullest first across nodes, free space in binary
    // units, inodes blank when absent, the nasty mount as literal text; 50
    // rows of 65, and it says so.
    let cells = |rows: &str| {
        format!(
            "Array.from(document.querySelectorAll('{rows}')).map(r => Array.from(r.cells).map(c => c.textContent.trim()))"
        )
    };
    let disks = cdp.eval(&cells("#disks tbody tr"));
    let disks = disks.as_array().unwrap();
    assert_eq!(disks.len(), 50, "{disks:?}");
    assert_eq!(
        disks[..5],
        [
            json!(["node-a", NASTY_MOUNT, "95.0 %", "1.0 GB", "7.0 %"]),
            json!(["node-b", "/home", "75.0 %", "–", ""]),
            json!(["node-b", "/", "60.0 %", "–", ""]),
            json!(["node-a", "/var", "50.0 %", "–", ""]),
            json!(["node-a", "/", "10.0 %", "20.0 GB", ""]),
        ]
    );
    for (k, row) in disks[5..].iter().enumerate() {
        assert_eq!(
            row,
            &json!(["node-c", format!("/mnt/d{k:02}"), "5.0 %", "–", ""]),
            "row {}",
            k + 5
        );
    }
    assert_eq!(
        cdp.eval("document.getElementById('disks-count').textContent"),
        json!(format!("({} mounts)", MANY_MOUNTS + 5))
    );
    assert_eq!(
        cdp.eval("document.getElementById('disks-more').hidden ? 'hidden' : document.getElementById('disks-more').textContent"),
        json!(format!(
            "Showing the fullest 50 of {} mounts; {} more.",
            MANY_MOUNTS + 5,
            MANY_MOUNTS + 5 - 50
        ))
    );
    assert_eq!(
        cdp.eval("document.querySelector('#disks tbody tr').className"),
        json!("level-bad"),
        "a disk over 90 % is marked"
    );

    // The Network panel: per node, the interfaces' rates summed, peaks,
    // errors over the window, each interface; node-c has none.
    assert_eq!(
        cdp.eval(&cells("#network tbody tr")),
        json!([
            [
                "node-a",
                "1.5 MB/s",
                "200 KB/s",
                "1.5 MB/s",
                "200 KB/s",
                "2",
                "eth0 ↓1.0 MB/s ↑200 KB/s eth1 ↓512 KB/s ↑0 B/s"
            ],
            [
                "node-b",
                "2.0 KB/s",
                "1.0 KB/s",
                "2.0 KB/s",
                "1.0 KB/s",
                "–",
                "eth0 ↓2.0 KB/s ↑1.0 KB/s"
            ],
        ])
    );

    // The overview: watched processes (one down, in red), and the peak disk
    // over the window with its mount (node-b's is not its newest value).
    let processes = |node: &str| {
        format!(
            "Array.from(document.querySelectorAll('#overview tr[data-node=\"{node}\"] span.proc')).map(b => b.className + ':' + b.textContent)"
        )
    };
    assert_eq!(
        cdp.eval(&processes("node-b")),
        json!(["badge proc down:botpress ✕", "badge proc up:redis"])
    );
    assert_eq!(
        cdp.eval(&processes("node-a")),
        json!([
            format!("badge proc up:{NASTY_PROCESS}"),
            "badge proc up:botpress ×2"
        ])
    );
    assert_eq!(
        cdp.eval(
            "getComputedStyle(document.querySelector('#overview span.proc.down')).backgroundColor"
        ),
        json!("rgb(185, 28, 28)"),
        "a process that is down is red"
    );
    let overview_cell = |node: &str, column: usize| {
        format!(
            "document.querySelector('#overview tr[data-node=\"{node}\"]').cells[{column}].textContent.trim()"
        )
    };
    let headers = cdp.eval(
        "Array.from(document.querySelectorAll('#overview thead th')).map(h => h.textContent)",
    );
    let peak_disk = headers
        .as_array()
        .unwrap()
        .iter()
        .position(|h| h == "Peak disk")
        .expect("a Peak disk column");
    let procs = headers
        .as_array()
        .unwrap()
        .iter()
        .position(|h| h == "Processes")
        .unwrap();
    assert_eq!(
        cdp.eval(&overview_cell("node-a", peak_disk)),
        json!(format!("95.0 % {NASTY_MOUNT}"))
    );
    assert_eq!(
        cdp.eval(&overview_cell("node-b", peak_disk)),
        json!("88.0 % /home")
    );
    assert_eq!(
        cdp.eval(&overview_cell("node-c", peak_disk)),
        json!("5.0 % /mnt/d00")
    );
    assert_eq!(cdp.eval(&overview_cell("node-c", procs)), json!("–"));

    assert_eq!(
        cdp.eval("document.querySelectorAll('#content script, #content img').length"),
        json!(0)
    );
    assert_eq!(cdp.eval("typeof window.__pwned"), json!("undefined"));

    // The stale node is marked in the overview.
    assert_eq!(
        cdp.eval("document.querySelector('#overview tr[data-node=\"node-c\"]').classList.contains('stale')"),
        json!(true)
    );
    assert_eq!(
        cdp.eval("document.querySelector('#overview tr[data-node=\"node-a\"]').classList.contains('stale')"),
        json!(false)
    );

    // The screenshot, before filtering (all nodes shown).
    let shot = cdp.call(
        "Page.captureScreenshot",
        json!({ "format": "png", "captureBeyondViewport": true }),
    );
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(artifacts.join("dashboard.png"), &png).unwrap();

    // The node filter: unticking node-b removes its series.
    cdp.eval("document.querySelector('#node-list input[data-node=\"node-b\"]').click(); true");
    cdp.wait_for(
        "document.getElementById('chart-cpu').dataset.series === '6'",
        "the CPU chart without node-b",
    );
    let after = cdp.eval(legend).as_str().unwrap().to_owned();
    assert!(
        !after.contains("node-b") && after.contains("node-a CPU %"),
        "{after}"
    );
    cdp.wait_for(
        "document.querySelectorAll('#overview tbody tr').length === 2",
        "the overview without node-b",
    );
    cdp.wait_for(
        &format!(
            "document.getElementById('disks-count').textContent === '({} mounts)' \
             && !document.querySelector('#disks tr[data-node=\"node-b\"], #network tr[data-node=\"node-b\"]')",
            MANY_MOUNTS + 3
        ),
        "the Disks and Network panels without node-b",
    );

    // Let an auto-refresh pass run, then check the console.
    cdp.eval("new Promise(r => setTimeout(r, 500)).then(() => true)");
    assert!(cdp.errors.is_empty(), "console errors: {:#?}", cdp.errors);
    drop(alerter);
}

/// The write token the alerter of the silences test accepts (named: it is
/// the default `createdBy` and `by`).
const WRITE_TOKEN: &str = "w-secret";
/// A rule only the alerter has (not the seeder): it opens on node-b at the
/// alerter's first evaluation, inside the seeded silence, so it is held.
const HELD_RULE: &str = "Memory watch";
const SEEDED_COMMENT: &str = "<img src=x onerror=window.__pwned=4> seeded";
const SILENCE_COMMENT: &str = "disk swap <img src=x onerror=window.__pwned=5>";
const ACK_COMMENT: &str = "rebooting <b onmouseover=window.__pwned=6>now</b>";
const ACK_DIALOG: &str = "document.getElementById('ack-dialog').open";
const TOKEN_DIALOG: &str = "document.getElementById('token-dialog').open";
const TOKEN_KEY: &str = "bp-monitoring.writeToken";

/// `GET path` as JSON.
fn get_json(port: u16, path: &str) -> Value {
    let body = test_support::harness::http_get(port, path)
        .unwrap_or_else(|| panic!("GET {path}: no answer"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `POST path` (same-origin: no `Origin`), with `token` as the bearer
/// token when given: the status and the JSON body.
fn post_json(port: u16, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = text.split_once("\r\n\r\n").map_or(Value::Null, |(_, b)| {
        serde_json::from_str(b).unwrap_or(Value::Null)
    });
    (status, json)
}

/// A JS string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// `HH:MM` (UTC) `minutes` from `now`.
fn hhmm(now: Millis, minutes: i64) -> String {
    let m = (now / 60_000 + minutes).rem_euclid(1440);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// An RFC 3339 UTC time as the page shows it in UTC (`2025-01-01 02:00:00`).
fn shown_time(rfc3339: &str) -> String {
    assert!(rfc3339.ends_with('Z'), "{rfc3339}");
    rfc3339[..19].replace('T', " ")
}

/// The text glob matching only `text` (as the page pre-fills it).
fn glob_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('*', "\\*")
        .replace('?', "\\?")
}

/// Page helpers: an open incident's row by rule, its badges and their
/// tooltips, a silence's row by comment.
const PAGE_HELPERS: &str = "window.__t = {
  row: (rule) => Array.from(document.querySelectorAll('#incidents-active tbody tr[data-incident]')).find(r => r.cells[0].textContent === rule),
  flags: (rule) => { const r = window.__t.row(rule); return r ? Array.from(r.querySelectorAll('td.flags .badge')).map(b => b.textContent) : null; },
  titles: (rule) => { const r = window.__t.row(rule); return r ? Array.from(r.querySelectorAll('td.flags .badge')).map(b => b.title) : null; },
  silence: (comment) => Array.from(document.querySelectorAll('#silences tbody tr[data-silence]')).find(r => r.cells[5].textContent === comment),
  cells: (r) => r ? Array.from(r.cells).map(c => c.textContent) : null,
  field: (name) => document.getElementById('silence-form').elements[name].value,
}; true";

/// Silences, maintenance windows and acknowledgements in the page, against
/// an alerter with alerting on and a write token: the `Silence` action
/// pre-fills the form from an incident (globs escaped), the write token is
/// asked in the page (a wrong one refused with the server's message and
/// forgotten), the silence is listed and mutes the incident, `Ack` marks the
/// incident, `Expire` ends the silence; a held incident, a maintenance
/// window open now and one to come; every text from the data as literal
/// text; and an alerter without a write token refuses with its message.
#[allow(clippy::too_many_lines)] // one scenario, in order
#[test]
fn silences_and_acks_in_headless_chromium() {
    let _lock = heavy_test_lock();
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(seed(&redis.url()));
    let now = now_ms();
    // A silence on the rule only the alerter has, stored before it starts:
    // its incident opens muted (held).
    let seeded = rules_engine::Silence {
        id: uuid::Uuid::new_v4(),
        matchers: rules_engine::silence::Matchers {
            rule: Some(metrics_model::glob::Glob::with_escapes(HELD_RULE)),
            ..Default::default()
        },
        starts_at: now - 60_000,
        ends_at: now + 3_600_000,
        comment: SEEDED_COMMENT.into(),
        created_by: "seed".into(),
        created_at: now,
        updated_at: now,
    };
    rt.block_on(async {
        let url = metrics_model::RedisUrl::parse(&redis.url()).unwrap();
        let store = RedisStore::connect(RedisOptions::new(url, "bp"))
            .await
            .unwrap();
        store
            .put_record(
                metrics_model::store::RecordKind::Silence,
                &seeded.id.to_string(),
                &seeded.to_json().to_string(),
                seeded.ends_at,
                0,
            )
            .await
            .unwrap();
    });
    let mut rules = rules_json();
    rules.as_array_mut().unwrap().push(json!({
        "name": HELD_RULE, "field": "mem.usage", "aggregation": "avg",
        "operand": "equalOrMoreThan", "value": 35, "timeframe": "1m" }));
    // "nightly" opens in 2 hours (on the disk rule), "open-now" opened an
    // hour ago (on the cluster rule): it mutes the cluster incident.
    let maintenance = json!([
        { "name": "nightly", "start": hhmm(now, 120), "end": hhmm(now, 180),
          "matchers": { "rule": "Disk almost full" } },
        { "name": "open-now", "start": hhmm(now, -60), "end": hhmm(now, 60),
          "matchers": { "rule": "Requests across the cluster" } },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({ "monitoring": { "enabled": true },
                "alerting": { "enabled": true, "watcherInterval": "1s", "rules": rules,
                              "maintenance": maintenance } })
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let alerter = spawn_alerter(
        &config,
        &redis.url(),
        port,
        &["--write-token", &format!("ops:{WRITE_TOKEN}")],
    );
    // The alerter (the leader) evaluates: the held incident opens beside the
    // three seeded ones.
    let open_of = |v: &Value, rule: &str| {
        v["open"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["ruleName"] == rule)
            .cloned()
    };
    assert!(
        test_support::wait_until(DEADLINE, || {
            let v = get_json(port, "/api/v1/incidents");
            v["open"].as_array().is_some_and(|o| o.len() == 4)
                && open_of(&v, HELD_RULE).is_some_and(|i| i["held"] == json!(true))
        }),
        "the held incident did not open: {}",
        get_json(port, "/api/v1/incidents")
    );

    let (_profile, _chromium, mut cdp) = open_browser();
    cdp.call(
        "Emulation.setTimezoneOverride",
        json!({ "timezoneId": "UTC" }),
    );
    open_dashboard(&mut cdp, port);
    cdp.eval(PAGE_HELPERS);
    cdp.wait_for(
        "document.querySelectorAll('#incidents-active tbody tr[data-incident]').length === 4",
        "the four open incidents",
    );
    let flags = |cdp: &mut Cdp, rule: &str| cdp.eval(&format!("window.__t.flags({})", js(rule)));
    let titles = |cdp: &mut Cdp, rule: &str| cdp.eval(&format!("window.__t.titles({})", js(rule)));
    // Badges as the API says: held and silenced by the seeded silence;
    // silenced by the open maintenance window; nothing on the others.
    assert_eq!(flags(&mut cdp, HELD_RULE), json!(["silenced", "held"]));
    assert_eq!(
        titles(&mut cdp, HELD_RULE)[0],
        json!(format!("muted now by silence {}", seeded.id))
    );
    let cluster = "Requests across the cluster";
    assert_eq!(flags(&mut cdp, cluster), json!(["silenced"]));
    assert_eq!(
        titles(&mut cdp, cluster),
        json!(["muted now by maintenance window 'open-now'"])
    );
    assert_eq!(flags(&mut cdp, NASTY_RULE), json!([]));
    assert_eq!(flags(&mut cdp, "Disk almost full"), json!([]));

    // The seeded silence: active, its comment as literal text.
    let seeded_row = format!(
        "window.__t.cells(window.__t.silence({}))",
        js(SEEDED_COMMENT)
    );
    let row = cdp.eval(&seeded_row);
    assert_eq!(row[0], json!("active"), "{row}");
    assert_eq!(row[1], json!(format!("rule={HELD_RULE}")));
    assert_eq!(row[4], json!("seed"));
    assert_eq!(row[6], json!("Expire"));

    // The rules view: each rule's windows, with times from the API.
    let api_rules = get_json(port, "/api/v1/rules");
    let window_of = |rule: &str| {
        api_rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"]["name"] == rule)
            .unwrap()["maintenance"][0]
            .clone()
    };
    let nightly = window_of("Disk almost full");
    assert_eq!(nightly["open"], json!(false), "{nightly}");
    let starts = nightly["startsAt"].as_str().unwrap();
    assert_eq!(&starts[11..16], hhmm(now, 120), "{nightly}");
    let open_now = window_of(cluster);
    assert_eq!(open_now["open"], json!(true), "{open_now}");
    let maintenance_texts = |rule: &str| {
        format!(
            "Array.from(document.querySelectorAll('#rules tbody tr')).filter(r => r.cells[0].textContent === {}).map(r => r.cells[r.cells.length - 1].textContent)",
            js(rule)
        )
    };
    let disk_windows = cdp.eval(&maintenance_texts("Disk almost full"));
    let expected = format!(
        "maintenance 'nightly' next: {} – {}",
        shown_time(starts),
        shown_time(nightly["endsAt"].as_str().unwrap())
    );
    assert!(
        !disk_windows.as_array().unwrap().is_empty()
            && disk_windows
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t == &json!(expected)),
        "{disk_windows} vs {expected}"
    );
    assert_eq!(
        cdp.eval(&maintenance_texts(cluster)),
        json!([format!(
            "maintenance 'open-now' open until {}",
            shown_time(open_now["endsAt"].as_str().unwrap())
        )])
    );
    let cpu_windows = cdp.eval(&maintenance_texts(NASTY_RULE));
    assert!(
        cpu_windows
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|t| t == "–")),
        "no window on the CPU rule: {cpu_windows}"
    );

    // "Silence" on the cluster incident: its host `*` escaped, no instance.
    let click_in_row = |cdp: &mut Cdp, rule: &str, action: &str| {
        cdp.eval(&format!(
            "window.__t.row({}).querySelector('button[data-action=\"{action}\"]').click(); true",
            js(rule)
        ));
    };
    let form_fields =
        "['rule','host','instance','severity','comment','createdBy'].map(window.__t.field)";
    click_in_row(&mut cdp, cluster, "silence");
    assert_eq!(
        cdp.eval("document.getElementById('silence-form').hidden"),
        json!(false)
    );
    assert_eq!(
        cdp.eval(form_fields),
        json!([cluster, "\\*", "", "", "", ""])
    );
    // On the disk incident: its instance's `*` and `?` escaped.
    click_in_row(&mut cdp, "Disk almost full", "silence");
    let escaped_mount = glob_escaped(NASTY_MOUNT);
    assert_ne!(escaped_mount, NASTY_MOUNT);
    assert_eq!(
        cdp.eval(form_fields),
        json!(["Disk almost full", "node-a", escaped_mount, "", "", ""])
    );
    assert_eq!(
        cdp.eval(&format!("sessionStorage.getItem({})", js(TOKEN_KEY))),
        Value::Null
    );
    cdp.eval(&format!(
        "(() => {{ const f = document.getElementById('silence-form').elements; \
         f.comment.value = {}; f.duration.value = '1h'; \
         document.getElementById('silence-submit').click(); return true; }})()",
        js(SILENCE_COMMENT)
    ));
    // The first write asks for the token; a wrong one is refused with the
    // server's message, forgotten, and asked again.
    cdp.wait_for(TOKEN_DIALOG, "the write token dialog");
    cdp.eval(
        "document.getElementById('token-input').value = 'not-the-token'; \
         document.getElementById('token-submit').click(); true",
    );
    let (status, refused) = post_json(port, "/api/v1/silences", "{}", Some("not-the-token"));
    assert_eq!(status, 401, "{refused}");
    let refused = format!(
        "The write token was refused: {}",
        refused["error"].as_str().unwrap()
    );
    cdp.wait_for(
        &format!(
            "{TOKEN_DIALOG} && document.getElementById('token-error').textContent === {}",
            js(&refused)
        ),
        "the wrong token refused in the page",
    );
    assert_eq!(
        cdp.eval(&format!("sessionStorage.getItem({})", js(TOKEN_KEY))),
        Value::Null
    );
    cdp.expect_refused_load(401, "/api/v1/silences");
    cdp.eval(&format!(
        "document.getElementById('token-input').value = {}; \
         document.getElementById('token-submit').click(); true",
        js(WRITE_TOKEN)
    ));
    let new_row = format!(
        "window.__t.cells(window.__t.silence({}))",
        js(SILENCE_COMMENT)
    );
    cdp.wait_for(&format!("!!{new_row}"), "the new silence in the table");
    let row = cdp.eval(&new_row);
    assert_eq!(row[0], json!("active"), "{row}");
    assert_eq!(
        row[1],
        json!(format!(
            "rule=Disk almost full host=node-a instance={escaped_mount}"
        ))
    );
    assert_eq!(row[4], json!("ops"));
    assert_eq!(row[5], json!(SILENCE_COMMENT));
    assert_eq!(
        cdp.eval("document.getElementById('silence-form').hidden"),
        json!(true)
    );
    // The token: in this tab's sessionStorage only, never in a URL.
    assert_eq!(
        cdp.eval(&format!("sessionStorage.getItem({})", js(TOKEN_KEY))),
        json!(WRITE_TOKEN)
    );
    assert_eq!(cdp.eval("localStorage.length"), json!(0));
    assert_eq!(
        cdp.eval(&format!(
            "[location.href].concat(performance.getEntriesByType('resource').map(e => e.name)).some(u => u.includes({}))",
            js(WRITE_TOKEN)
        )),
        json!(false)
    );
    // As the API lists it.
    let listed = get_json(port, "/api/v1/silences");
    let created = listed["silences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["comment"] == SILENCE_COMMENT)
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(created["status"], json!("active"), "{created}");
    assert_eq!(created["createdBy"], json!("ops"));
    assert_eq!(
        created["matchers"],
        json!({ "rule": "Disk almost full", "host": "node-a", "instance": escaped_mount })
    );
    let span = metrics_model::time::parse_rfc3339(created["endsAt"].as_str().unwrap()).unwrap()
        - metrics_model::time::parse_rfc3339(created["startsAt"].as_str().unwrap()).unwrap();
    assert!((3_590_000..=3_610_000).contains(&span), "1h: {created}");
    let created_id = created["id"].as_str().unwrap().to_owned();
    // It mutes the disk incident (and only it: the escaped globs).
    cdp.wait_for(
        &format!(
            "JSON.stringify(window.__t.flags('Disk almost full')) === '[\"silenced\"]' \
             && window.__t.titles('Disk almost full')[0] === {}",
            js(&format!("muted now by silence {created_id}"))
        ),
        "the disk incident silenced",
    );
    assert_eq!(flags(&mut cdp, NASTY_RULE), json!([]));

    // Ack the CPU incident with a comment: no token asked this time.
    click_in_row(&mut cdp, NASTY_RULE, "ack");
    cdp.wait_for(ACK_DIALOG, "the ack dialog");
    cdp.eval(&format!(
        "document.getElementById('ack-comment').value = {}; \
         document.getElementById('ack-submit').click(); true",
        js(ACK_COMMENT)
    ));
    cdp.wait_for(
        &format!(
            "!{ACK_DIALOG} && JSON.stringify(window.__t.flags({})) === '[\"acknowledged by ops\"]'",
            js(NASTY_RULE)
        ),
        "the CPU incident acknowledged by ops",
    );
    assert_eq!(cdp.eval(TOKEN_DIALOG), json!(false));
    let acked = open_of(&get_json(port, "/api/v1/incidents"), NASTY_RULE).unwrap();
    assert_eq!(acked["acknowledged"]["by"], json!("ops"), "{acked}");
    assert_eq!(acked["acknowledged"]["comment"], json!(ACK_COMMENT));
    assert_eq!(
        titles(&mut cdp, NASTY_RULE),
        json!([format!(
            "at {}: {ACK_COMMENT}",
            shown_time(acked["acknowledged"]["at"].as_str().unwrap())
        )])
    );

    // Expire the new silence: listed as expired, without its button; the
    // disk incident is no longer silenced.
    cdp.eval(&format!(
        "window.__t.silence({}).querySelector('button[data-action=\"expire\"]').click(); true",
        js(SILENCE_COMMENT)
    ));
    cdp.wait_for(
        &format!(
            "(() => {{ const c = window.__t.cells(window.__t.silence({})); return !!c && c[0] === 'expired' && c[6] === ''; }})()",
            js(SILENCE_COMMENT)
        ),
        "the silence expired",
    );
    cdp.wait_for(
        "JSON.stringify(window.__t.flags('Disk almost full')) === '[]'",
        "the disk incident no longer silenced",
    );
    let listed = get_json(port, &format!("/api/v1/silences/{created_id}"));
    assert_eq!(listed["status"], json!("expired"), "{listed}");

    // The screenshot: the incidents with their badges, the silences.
    cdp.eval("document.getElementById('incidents-active').scrollIntoView(); true");
    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("silences.png"), &png).unwrap();

    // Nothing from the data ran or became an element.
    assert_eq!(
        cdp.eval("document.querySelectorAll('body img, body script, #content b').length"),
        json!(0)
    );
    assert_eq!(cdp.eval("typeof window.__pwned"), json!("undefined"));
    assert!(cdp.errors.is_empty(), "console errors: {:#?}", cdp.errors);

    // An alerter without a write token: the page shows its refusal.
    let config_ro = dir.path().join("config-ro.json");
    std::fs::write(
        &config_ro,
        json!({ "monitoring": { "enabled": true }, "alerting": { "enabled": false, "rules": rules_json() } })
            .to_string(),
    )
    .unwrap();
    let port_ro = free_port();
    let read_only = spawn_alerter(&config_ro, &redis.url(), port_ro, &[]);
    let incident = open_of(&get_json(port_ro, "/api/v1/incidents"), HELD_RULE).unwrap();
    let (status, disabled) = post_json(
        port_ro,
        &format!("/api/v1/incidents/{}/ack", incident["id"].as_str().unwrap()),
        "{}",
        Some(WRITE_TOKEN),
    );
    assert_eq!(status, 403, "{disabled}");
    let disabled = disabled["error"].as_str().unwrap().to_owned();
    assert!(disabled.starts_with("writes are disabled"), "{disabled}");
    open_dashboard(&mut cdp, port_ro);
    cdp.eval(PAGE_HELPERS);
    // A notifier's link to the incident marks its row.
    let id = incident["id"].as_str().unwrap();
    cdp.eval(&format!(
        "location.hash = {}",
        js(&format!("#incident={id}"))
    ));
    cdp.wait_for(
        &format!("!!document.querySelector('tr.linked[data-incident=\"{id}\"]') && document.querySelectorAll('tr.linked').length === 1"),
        "the linked incident's row marked",
    );
    cdp.wait_for(
        &format!("!!window.__t.row({})", js(HELD_RULE)),
        "the held incident on the read-only alerter",
    );
    click_in_row(&mut cdp, HELD_RULE, "ack");
    cdp.wait_for(ACK_DIALOG, "the ack dialog (read-only alerter)");
    cdp.eval("document.getElementById('ack-submit').click(); true");
    // Another origin: its own sessionStorage, so the token is asked again.
    cdp.wait_for(TOKEN_DIALOG, "the write token dialog (read-only alerter)");
    cdp.eval(&format!(
        "document.getElementById('token-input').value = {}; \
         document.getElementById('token-submit').click(); true",
        js(WRITE_TOKEN)
    ));
    cdp.wait_for(
        &format!(
            "{ACK_DIALOG} && !document.getElementById('ack-error').hidden \
             && document.getElementById('ack-error').textContent === {}",
            js(&format!("Not acknowledged: {disabled}"))
        ),
        "the server's refusal in the page",
    );
    cdp.expect_refused_load(403, "/ack");
    assert!(cdp.errors.is_empty(), "console errors: {:#?}", cdp.errors);
    drop(read_only);
    drop(alerter);
}
