//! Silences and acknowledgements through the real binary: `bp-alerter
//! silence add|list|expire` and `bp-alerter ack`, against a running
//! standalone alerter's API (with its on-disk store, across a `kill -9`)
//! and straight into a real Redis in cluster mode.
//!
//! Standalone drill, one incident (`Errors reported`, fed by real StatsD
//! datagrams): a silence created by the CLI before it opens → the open is
//! held (the API says `held` and `silencedBy`, the hook sees nothing); the
//! CLI acknowledges it; `kill -9`; the restarted alerter still holds it,
//! still shows the acknowledgement and the silence; `silence expire` → the
//! hook sees the open once, with its original start; the datagrams stop →
//! the hook sees the resolve, carrying `acknowledgedBy`/`acknowledgedAt`
//! (the open does not). Bad input at the CLI exits 2 naming the field.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_model::RedisUrl;
use metrics_model::store::{AlertStore, RecordKind};
use serde_json::{Value, json};
use test_support::harness::{Proc, http_get, start_standalone};
use test_support::{RedisServer, free_port, heavy_test_lock, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");
const WRITE: &str = "ops:w-secret";
const DEADLINE: Duration = Duration::from_secs(40);

fn get(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

/// `bp-alerter ARGS` with these variables (and no Redis unless given).
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("REDIS_URL")
        .env_remove("CLUSTER_ENABLED")
        .env_remove("BP_API_WRITE_TOKEN")
        .env_remove("BP_API_TOKEN")
        .env_remove("BP_API_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn start(dir: &Path, http: u16, statsd: u16, name: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", dir.join("config.json").to_str().unwrap()])
        .args([
            "--node",
            "laptop",
            "--data-dir",
            dir.join("data").to_str().unwrap(),
        ])
        .args(["--listen", &format!("127.0.0.1:{http}")])
        .args(["--statsd", &format!("127.0.0.1:{statsd}")])
        .env("BP_API_WRITE_TOKEN", WRITE)
        .env("RUST_LOG", "info");
    start_standalone(cmd, dir.join(format!("{name}.log"))).unwrap()
}

fn hook_lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn open_incidents(http: u16) -> Vec<Value> {
    get(http, "/api/v1/incidents")
        .and_then(|v| v["open"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
#[allow(clippy::too_many_lines)] // one drill, step by step
fn cli_silence_holds_an_open_across_kill_9_ack_reaches_the_resolve() {
    let _heavy = heavy_test_lock();
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let out = dir.path().join("calls.jsonl");
    let script = hooks.join("record.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat >> '{}'\n", out.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({
            "monitoring": { "collectionInterval": "1s" },
            "alerting": {
                "watcherInterval": "1s", "evaluationDelay": "300ms",
                "rules": [{ "name": "Errors reported", "field": "errors.count", "aggregation": "sum",
                            "operand": "equalOrMoreThan", "value": 3, "timeframe": "3s" }],
                "hooks": { "directory": hooks, "timeout": "5s", "retryBackoff": "100ms" }
            }
        })
        .to_string(),
    )
    .unwrap();
    let (http, statsd) = (free_port(), free_port());
    let mut first = start(dir.path(), http, statsd, "first");
    assert!(
        wait_until(DEADLINE, || get(http, "/readyz")
            .is_some_and(|v| v["status"] == "ready")),
        "{}",
        first.log()
    );
    let listen = format!("127.0.0.1:{http}");
    let env = [("BP_API_WRITE_TOKEN", WRITE)];

    // The CLI's bad input: exit 2, the field named; nothing stored.
    let long = "c".repeat(1025);
    let o = cli(
        &[
            "silence",
            "add",
            "--listen",
            &listen,
            "--for",
            "1h",
            "--comment",
            &long,
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("comment"), "{}", stderr(&o));
    let o = cli(
        &["silence", "add", "--listen", &listen, "--rule", "x"],
        &env,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--for"), "{}", stderr(&o));
    let o = cli(&["silence", "add", "--listen", &listen, "--for", "1h"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("BP_API_WRITE_TOKEN"), "{}", stderr(&o));
    let o = cli(
        &["silence", "add", "--listen", &listen, "--for", "1h"],
        &[("BP_API_WRITE_TOKEN", "ops:wrong")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    let o = cli(&["silence", "list", "--listen", &listen], &env);
    assert_eq!(stdout(&o), "no silences", "{}", stderr(&o));

    // The silence first; then the errors.
    let o = cli(
        &[
            "silence",
            "add",
            "--listen",
            &listen,
            "--rule",
            "Errors*",
            "--host",
            "lap?op",
            "--for",
            "1h",
            "--comment",
            "deploy",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let silence_id = stdout(&o);
    assert!(silence_id.parse::<uuid::Uuid>().is_ok(), "{silence_id:?}");
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let feeding = feeding.clone();
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            while feeding.load(Ordering::Relaxed) {
                let _ = socket.send_to(b"bp.errors:5|c", ("127.0.0.1", statsd));
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    assert!(
        wait_until(DEADLINE, || open_incidents(http)
            .iter()
            .any(|i| i["held"] == true)),
        "no held open: {:?}\n{}",
        get(http, "/api/v1/incidents"),
        first.log()
    );
    let incident = open_incidents(http).remove(0);
    let incident_id = incident["id"].as_str().unwrap().to_owned();
    assert_eq!(
        incident["silencedBy"],
        json!([{ "silence": silence_id }]),
        "{incident}"
    );
    let o = cli(
        &[
            "ack",
            &incident_id,
            "--listen",
            &listen,
            "--comment",
            "on it",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("by ops"), "{}", stdout(&o));
    let acked = open_incidents(http).remove(0);
    assert_eq!(acked["acknowledged"]["by"], "ops", "{acked}");
    assert_eq!(acked["acknowledged"]["comment"], "on it", "{acked}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        hook_lines(&out).is_empty(),
        "a held open was delivered: {:?}",
        hook_lines(&out)
    );

    // kill -9 while held; the restarted alerter holds it still.
    first.kill9();
    let second = start(dir.path(), http, statsd, "second");
    assert!(
        wait_until(DEADLINE, || get(http, "/readyz")
            .is_some_and(|v| v["status"] == "ready")),
        "{}",
        second.log()
    );
    assert!(
        wait_until(DEADLINE, || second.log().contains("held_opens=1")),
        "{}",
        second.log()
    );
    let after = open_incidents(http);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], json!(incident_id), "the same incident");
    assert_eq!(after[0]["held"], true);
    assert_eq!(after[0]["acknowledged"]["by"], "ops");
    let o = cli(&["silence", "list", "--listen", &listen], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains(&silence_id) && table.contains("active") && table.contains("rule=Errors*"),
        "{table}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(hook_lines(&out).is_empty(), "{:?}", hook_lines(&out));

    // Expire → the open, once, with its start; stop → the resolve with the ack.
    let o = cli(
        &["silence", "expire", &silence_id, "--listen", &listen],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("expired"), "{}", stdout(&o));
    assert!(
        wait_until(DEADLINE, || !hook_lines(&out).is_empty()),
        "the released open never arrived\n{}",
        second.log()
    );
    feeding.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
    assert!(
        wait_until(DEADLINE, || hook_lines(&out)
            .iter()
            .any(|c| c["event"] == "resolved")),
        "{:?}\n{}",
        hook_lines(&out),
        second.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let calls = hook_lines(&out);
    let events: Vec<&str> = calls.iter().map(|c| c["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["opened", "resolved"], "{calls:#?}");
    assert_eq!(calls[0]["incident"]["id"], json!(incident_id));
    assert_eq!(
        calls[0]["incident"]["startTime"], incident["startTime"],
        "{calls:#?}"
    );
    assert!(calls[0].get("acknowledgedBy").is_none(), "{:?}", calls[0]);
    assert_eq!(calls[1]["acknowledgedBy"], "ops", "{:?}", calls[1]);
    assert!(calls[1]["acknowledgedAt"].is_string(), "{:?}", calls[1]);
    let history = get(http, "/api/v1/incidents").unwrap();
    let resolved = history["resolved"].as_array().unwrap();
    assert_eq!(resolved.len(), 1, "{history}");
    assert_eq!(resolved[0]["acknowledged"]["by"], "ops", "{history}");
    let o = cli(&["silence", "list", "--json", "--listen", &listen], &env);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list[0]["id"], json!(silence_id));
    assert_eq!(list[0]["status"], "expired");
    assert_eq!(list[0]["createdBy"], "ops");
    // A resolved incident can no longer be acknowledged.
    let o = cli(&["ack", &incident_id, "--listen", &listen], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no open incident"), "{}", stderr(&o));
    drop(second);
}

#[test]
fn cli_writes_silences_straight_into_redis_in_cluster_mode() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("CLUSTER_ENABLED", "true"),
        ("BP_REDIS_SCOPE", "bp"),
        ("USER", "tester"),
    ];
    let o = cli(
        &[
            "silence",
            "add",
            "--host",
            "db-\\*",
            "--severity",
            "warning",
            "--for",
            "30m",
            "--comment",
            "backup",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(redis_store::RedisStore::connect(
            redis_store::RedisOptions::new(RedisUrl::parse(&url).unwrap(), "bp"),
        ))
        .unwrap();
    let records = rt.block_on(store.records(RecordKind::Silence)).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, id);
    let stored: Value = serde_json::from_str(&records[0].json).unwrap();
    assert_eq!(stored["createdBy"], "tester", "$USER against Redis");
    assert_eq!(
        stored["matchers"],
        json!({ "host": "db-\\*", "severity": "warning" })
    );
    let o = cli(&["silence", "list", "--json"], &env);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list[0]["status"], "active", "{list}");
    let o = cli(&["ack", &uuid::Uuid::new_v4().to_string()], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no open incident"), "{}", stderr(&o));
    let o = cli(&["silence", "expire", &id], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = rt.block_on(store.records(RecordKind::Silence)).unwrap();
    assert_eq!(records[0].version, 2, "expired by compare-and-set");
    let o = cli(&["silence", "list", "--state", "active"], &env);
    assert_eq!(stdout(&o), "no silences");
    let o = cli(&["silence", "expire", "not-an-id"], &env);
    assert_eq!(o.status.code(), Some(2));
    // Redis unreachable: exit 1, said plainly.
    drop(redis);
    let o = cli(&["silence", "list"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Redis"), "{}", stderr(&o));
}
