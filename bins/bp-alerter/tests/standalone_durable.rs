//! Standalone mode on its on-disk store (the default): `kill -9` and a
//! restart on the same data directory keep the open incident (same id,
//! resolved once), the cooldown in progress and the history; a second
//! alerter on the directory exits 2.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::harness::{Proc, http_get, send_statsd, start_standalone};
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");
const DEADLINE: Duration = Duration::from_secs(40);

fn get(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

/// The lines both hooks wrote: `(hook, key)`.
fn calls(out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (hook, key) = l.split_once(' ')?;
            Some((hook.to_owned(), key.to_owned()))
        })
        .collect()
}

struct Box_ {
    dir: tempfile::TempDir,
    http: u16,
    statsd: u16,
}

impl Box_ {
    fn new() -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        let out = dir.path().join("calls");
        // The seed's kind of hook (Node.js, `incident` in scope) and an
        // executable one; each appends one line per call.
        std::fs::write(
            hooks.join("alert.js"),
            format!(
                "require('fs').appendFileSync({:?}, 'js ' + incident.id + ':' + (incident.endTime ? 'resolved' : 'opened') + '\\n')\n",
                out.display().to_string()
            ),
        )
        .unwrap();
        let exec = hooks.join("record.sh");
        std::fs::write(
            &exec,
            format!(
                "#!/bin/sh\nprintf 'exec %s\\n' \"$BP_IDEMPOTENCY_KEY\" >> '{}'\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = json!({
            "monitoring": { "collectionInterval": "1s" },
            "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
                "rules": [{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
                            "operand": "equalOrMoreThan", "value": 1, "timeframe": "3s",
                            "cooldown": "10s" }],
                "hooks": { "directory": "hooks", "timeout": "10s", "retryBackoff": "100ms" } }
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        Box_ {
            dir,
            http: test_support::free_port(),
            statsd: test_support::free_port(),
        }
    }

    fn start(&self, name: &str) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .args(["--config", "config.json", "--node", "box-1"])
            .args(["--listen", &format!("127.0.0.1:{}", self.http)])
            .args(["--statsd", &format!("127.0.0.1:{}", self.statsd)])
            // The default data directory (data/monitoring under the working
            // directory), named so that the harness leaves it alone.
            .args(["--data-dir", "data/monitoring"])
            .env_remove("BP_DATA_DIR");
        start_standalone(cmd, self.dir.path().join(format!("{name}.log"))).unwrap()
    }

    fn calls(&self) -> Vec<(String, String)> {
        calls(&self.dir.path().join("calls"))
    }

    fn errors(&self) {
        send_statsd(self.statsd, b"bp.errors:1|c").unwrap();
    }

    fn open_ids(&self) -> Vec<String> {
        get(self.http, "/api/v1/incidents")
            .and_then(|v| {
                v["open"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|i| i["id"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
fn kill_9_and_restart_keep_the_incident_the_cooldown_and_the_history() {
    let b = Box_::new();
    let mut first = b.start("first");
    b.errors();
    assert!(
        wait_until(DEADLINE, || b.calls().len() >= 2),
        "the hooks never saw the open: {:?}\n{}",
        b.calls(),
        first.log()
    );
    let key = b.calls()[0].1.clone();
    let id = key.split(':').next().unwrap().to_owned();
    assert!(key.ends_with(":opened"), "{key}");
    // Ticks of at least one more whole second before the kill.
    std::thread::sleep(Duration::from_millis(1500));
    let before_kill = metrics_model::time::now_ms();
    // Keep the condition true across the kill and the restart.
    b.errors();
    first.kill9();
    let data = b.dir.path().join("data/monitoring");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data directory mode {mode:o}");

    let second = b.start("second");
    b.errors();
    assert!(
        wait_until(Duration::from_secs(10), || b.open_ids() == [id.clone()]),
        "the open incident {id} is not open after the restart: {:?}\n{}",
        b.open_ids(),
        second.log()
    );
    // The store's I/O failures are a /metrics series (none here).
    let metrics = http_get(b.http, "/metrics").unwrap_or_default();
    assert!(
        metrics.lines().any(|l| l == "bp_store_io_failures_total 0"),
        "{metrics}"
    );
    // A second alerter on the same directory (the default one) stops at
    // once with exit 2.
    let out = Command::new(BIN)
        .current_dir(b.dir.path())
        .args(["--config", "config.json", "--node", "box-1"])
        .args(["--listen", "off", "--statsd", "off"])
        .env_remove("REDIS_URL")
        .env_remove("BP_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another bp-alerter"), "{err}");
    // The history from before the kill is there.
    let series = get(
        b.http,
        "/api/v1/series?fields=errors.count&range=5m&step=1s&stats=sum",
    )
    .unwrap();
    let t: Vec<i64> = serde_json::from_value(series["t"].clone()).unwrap();
    let sums = series["series"][0]["sum"].as_array().unwrap().clone();
    let before: f64 = t
        .iter()
        .zip(&sums)
        .filter(|(t, _)| **t + 1_000 <= before_kill)
        .filter_map(|(_, v)| v.as_f64())
        .sum();
    assert!(before >= 1.0, "no errors before the kill in {series}");

    // The condition clears: one resolve, same id, seen by both hooks.
    assert!(
        wait_until(DEADLINE, || b
            .calls()
            .iter()
            .filter(|(_, k)| k.ends_with(":resolved"))
            .count()
            >= 2),
        "no resolve: {:?}\n{}",
        b.calls(),
        second.log()
    );
    let resolved_at = Instant::now();
    let mut second = second;
    // Restart inside the cooldown: errors right away open nothing until it
    // ends, then they do.
    second.kill9();
    let third = b.start("third");
    let mut opened_again = None;
    while resolved_at.elapsed() < Duration::from_secs(30) {
        b.errors();
        if b.calls()
            .iter()
            .any(|(_, k)| k.ends_with(":opened") && !k.starts_with(&id))
        {
            opened_again = Some(resolved_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let opened_again = opened_again.unwrap_or_else(|| {
        panic!(
            "no open after the cooldown: {:?}\n{}",
            b.calls(),
            third.log()
        )
    });
    assert!(
        opened_again >= Duration::from_secs(7),
        "opened again {opened_again:?} after the resolve, inside the 10 s cooldown"
    );
    // Per hook: the first incident opened once and resolved once (one key
    // each; a redelivery after the kill would repeat a key, not add one).
    let all = b.calls();
    for hook in ["js", "exec"] {
        let mut keys: Vec<&str> = all
            .iter()
            .filter(|(h, k)| h == hook && k.starts_with(&id))
            .map(|(_, k)| k.as_str())
            .collect();
        let calls = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys,
            [format!("{id}:opened"), format!("{id}:resolved")],
            "{hook}: {calls} calls"
        );
    }
}

/// `kill -9` of the standalone alerter again and again while local programs
/// send StatsD: the store opens every time, what was received before a kill
/// is lost only for the interval being collected, and the transitions
/// delivered (one per idempotency key) are exactly those `bp-alerter
/// replay` finds in the stored ticks. `BP_DRILL_KILLS` kills (default 4;
/// `scripts/faults` runs 50).
#[test]
#[allow(clippy::too_many_lines)] // one drill, checked step by step
fn repeated_kill_9_under_statsd_loses_at_most_the_interval_being_collected() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics_model::store::TickStore;
    use test_support::harness::{RECORD_HOOK, Setup, dedup};

    let kills: usize = std::env::var("BP_DRILL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let rules = r#"[{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
        "operand": "equalOrMoreThan", "value": 3, "timeframe": "2s" }]"#;
    let setup = Setup::new(rules, RECORD_HOOK, &json!({})).unwrap();
    let data = setup.dir().join("data");
    let statsd = test_support::free_port();
    let start = |n: usize| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(setup.config())
            .args(["--node", "drill", "--listen", "off"])
            .args(["--statsd", &format!("127.0.0.1:{statsd}")])
            .arg("--data-dir")
            .arg(&data);
        start_standalone(cmd, setup.dir().join(format!("a{n}.log")))
            .unwrap_or_else(|e| panic!("start {n}: the store did not open: {e}"))
    };
    // A local program: one datagram every 100 ms, 3 s on, 3 s off; counts
    // what it sent while an alerter was listening.
    let up = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent_up = Arc::new(AtomicU64::new(0));
    let sender = {
        let (up, stop, sent_up) = (up.clone(), stop.clone(), sent_up.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let on = (t0.elapsed().as_millis() / 3000).is_multiple_of(2);
                if on {
                    let was_up = up.load(Ordering::Relaxed);
                    if send_statsd(statsd, b"bp.errors:1|c").is_ok() && was_up {
                        sent_up.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let downs = Mutex::new(Vec::new());
    for n in 0..kills {
        let mut a = start(n);
        up.store(true, Ordering::Relaxed);
        // Up for 1.5–3.3 s, varying against the 1 s ticks.
        std::thread::sleep(Duration::from_millis(1500 + (n as u64 * 370) % 1800));
        up.store(false, Ordering::Relaxed);
        a.kill9();
        downs.lock().unwrap().push(metrics_model::time::now_ms());
    }
    // The last one runs until every transition is delivered, then stops.
    let mut last = start(kills);
    up.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(4));
    up.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    // Quiet for the windows to empty and the last resolve to be delivered.
    std::thread::sleep(Duration::from_secs(5));
    last.terminate();
    let deadline = Instant::now() + Duration::from_secs(20);
    while last.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!last.running(), "the last alerter did not stop on SIGTERM");

    // What is stored.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = disk_store::DiskStore::open(&data).expect("the store opens after the drill");
    let host: metrics_model::HostName = "drill".parse().unwrap();
    let ticks = rt.block_on(store.range(&host, 0, i64::MAX)).unwrap();
    drop(store);
    let errors = metrics_model::Key::from(metrics_model::StandardField::ErrorsCount);
    let stored: f64 = ticks.iter().filter_map(|t| t.get(&errors)).sum();
    let sent = sent_up.load(Ordering::Relaxed) as f64;
    let dropped = sent - stored;
    eprintln!(
        "kill drill: {kills} kills, {} ticks stored, {sent} datagrams sent while listening, {stored} stored, {dropped} lost",
        ticks.len()
    );
    // At most the interval being collected at each kill (10 datagrams a
    // second), and a little for datagrams in flight at a start.
    assert!(
        dropped <= (kills as f64 + 1.0) * 12.0,
        "{dropped} datagrams lost over {kills} kills (sent {sent}, stored {stored})"
    );
    assert!(stored > 0.0);

    // Transitions: one per key, exactly replay's over the stored ticks.
    let expected = setup.replay(Path::new(BIN), &ticks).unwrap();
    let got: Vec<_> = dedup(&setup.calls())
        .iter()
        .map(test_support::harness::Call::transition)
        .collect();
    let count = |v: &[test_support::harness::Transition]| {
        v.iter().fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t.clone()).or_insert(0usize) += 1;
            m
        })
    };
    assert_eq!(
        count(&got),
        count(&expected),
        "delivered (one per key) vs replay of the stored ticks"
    );
    assert!(!expected.is_empty(), "the drill made no incident");
}

/// From standalone to a cluster with an incident open: `export` from the
/// data directory, `import` into Redis, a cluster alerter resolves the same
/// incident once; no receiver keeps a dangling incident.
#[test]
#[allow(clippy::too_many_lines)] // one migration, checked step by step
fn an_open_incident_moves_from_standalone_to_redis_and_resolves_once() {
    let b = Box_::new();
    let mut first = b.start("first");
    b.errors();
    assert!(
        wait_until(DEADLINE, || b.calls().len() >= 2),
        "the hooks never saw the open: {:?}\n{}",
        b.calls(),
        first.log()
    );
    let id = b.calls()[0].1.split(':').next().unwrap().to_owned();
    first.terminate();
    assert!(wait_until(DEADLINE, || !first.running()), "{}", first.log());

    let run = |args: &[&str], redis: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(b.dir.path())
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("BP_DATA_DIR")
            .env("BP_REDIS_SCOPE", "bp");
        if let Some(url) = redis {
            cmd.env("REDIS_URL", url);
        }
        cmd.output().unwrap()
    };
    // With the alerter stopped, `incidents` reads the data directory.
    let out = run(
        &["incidents", "--json", "--data-dir", "data/monitoring"],
        None,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        v["open"][0]["id"],
        id.as_str(),
        "{v} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &[
            "export",
            "--data-dir",
            "data/monitoring",
            "-o",
            "export.jsonl",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let redis = test_support::RedisServer::start();
    let url = redis.url();
    let out = run(&["import", "-i", "export.jsonl"], Some(&url));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("1 incident states"), "{msg}");
    // A broken file is refused, naming the line, and writes nothing.
    std::fs::write(b.dir.path().join("bad.jsonl"), "{\"record\":\"nope\"}\n").unwrap();
    let out = run(&["import", "-i", "bad.jsonl"], Some(&url));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));

    let out = run(&["incidents", "--json"], Some(&url));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["open"][0]["id"], id.as_str(), "{v}");

    // A cluster alerter with the same configuration and hooks.
    let mut cmd = Command::new(BIN);
    cmd.current_dir(b.dir.path())
        .args(["--config", "config.json", "--node", "alerter-1"])
        .args(["--listen", "off", "--statsd", "off"])
        .env("REDIS_URL", &url)
        .env("RUST_LOG", "info");
    let cluster = Proc::spawn(cmd, b.dir.path().join("cluster.log")).unwrap();
    assert!(
        wait_until(DEADLINE, || b
            .calls()
            .iter()
            .filter(|(_, k)| k.ends_with(":resolved"))
            .count()
            >= 2),
        "the imported incident was not resolved: {:?}\n{}",
        b.calls(),
        cluster.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let all = b.calls();
    for hook in ["js", "exec"] {
        let mut keys: Vec<&str> = all
            .iter()
            .filter(|(h, _)| h == hook)
            .map(|(_, k)| k.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys,
            [format!("{id}:opened"), format!("{id}:resolved")],
            "{hook}: {all:?}"
        );
    }
}
