//! Key layout 3 end to end: a running `bp-alerter`'s janitor seals ticks
//! older than the seal boundary into compressed chunks — in Redis and in
//! standalone's data directory — and the dashboard API serves them back
//! exactly as stored, beside the head's recent ticks.

use std::process::Command;
use std::time::Duration;

use metrics_model::chunk::seal_boundary;
use metrics_model::store::TickStore;
use metrics_model::time::now_ms;
use metrics_model::{RedisUrl, Tick};
use redis_store::{RedisOptions, RedisStore};
use serde_json::{Value, json};
use test_support::RedisServer;
use test_support::harness::{Proc, http_get, start_standalone};
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");
const HOST: &str = "old-node";
const STEP: i64 = 60_000;

/// Ten hours of one tick a minute, ending now, at the middle of each
/// minute (so every 1-minute bucket of the API holds exactly one), with
/// 2-decimal gauges and a mount.
fn history(now: i64) -> Vec<Tick> {
    let end = now - now.rem_euclid(STEP);
    (0..600)
        .map(|i| {
            let ts = end - (600 - i) * STEP + STEP / 2;
            Tick::new(
                HOST.parse().unwrap(),
                ts,
                [
                    ("cpu.usage".parse().unwrap(), 10.0 + (i % 40) as f64 / 4.0),
                    ("disk.usage[/var]".parse().unwrap(), (i % 90) as f64),
                    ("errors.count".parse().unwrap(), (i % 3) as f64),
                ],
            )
        })
        .collect()
}

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
            "rules": [{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
                        "operand": "equalOrMoreThan", "value": 1000, "timeframe": "1m",
                        "cooldown": "1m" }] }
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn get(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

/// Checks that `/api/v1/series` gives back every tick of `ticks` for
/// `field`, one per 1-minute bucket, and returns how many buckets it
/// compared.
fn check_series(port: u16, ticks: &[Tick], field: &str) -> usize {
    let from = ticks[0].ts - STEP / 2;
    let to = ticks.last().unwrap().ts;
    let path =
        format!("/api/v1/series?fields={field}&nodes={HOST}&from={from}&to={to}&step=1m&stats=avg");
    let body = get(port, &path).unwrap_or_else(|| panic!("no answer to {path}"));
    let t = body["t"].as_array().expect("t");
    let avg = body["series"][0]["avg"].as_array().expect("avg");
    assert_eq!(body["step"], STEP, "{body}");
    let key = field.parse().unwrap();
    let mut compared = 0;
    for (start, got) in t.iter().zip(avg) {
        let start = start.as_i64().unwrap();
        let want: Vec<f64> = ticks
            .iter()
            .filter(|x| (start..start + STEP).contains(&x.ts))
            .filter_map(|x| x.get(&key))
            .collect();
        if let [v] = want.as_slice() {
            assert_eq!(got.as_f64(), Some(*v), "bucket {start} of {field}: {body}");
            compared += 1;
        }
    }
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_seals_old_ticks_in_redis_and_the_api_reads_them() {
    let server = RedisServer::start();
    let url = RedisUrl::parse(&server.url()).unwrap();
    let store = RedisStore::connect(RedisOptions::new(url, "bp"))
        .await
        .unwrap();
    let now = now_ms();
    let ticks = history(now);
    store.append(&ticks).await.unwrap();
    assert_eq!(server.cli(&["get", "bp:layout"]).trim(), "2");
    let boundary = seal_boundary(now);
    let sealable = ticks.iter().filter(|t| t.ts < boundary).count();
    assert!(
        sealable >= 300,
        "at least 5 h of the 10 are sealable: {sealable}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let port = test_support::free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--node", "a", "--statsd", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("REDIS_URL", server.url())
        .env("RUST_LOG", "info")
        .env_remove("CLUSTER_ENABLED");
    let alerter = Proc::spawn(cmd, dir.path().join("alerter.log")).unwrap();
    // The janitor's first pass runs at start.
    let chunks_key = format!("bp:chunks:{{{HOST}}}");
    assert!(
        wait_until(Duration::from_secs(40), || {
            server.cli(&["get", "bp:layout"]).trim() == "3"
                && server.cli(&["hexists", &chunks_key, "h"]).trim() == "1"
        }),
        "no seal within 40 s:\n{}",
        alerter.log()
    );
    let windows = server
        .cli(&["hlen", &chunks_key])
        .trim()
        .parse::<usize>()
        .unwrap()
        - 2;
    assert!(windows >= 3, "{windows} chunks");
    assert_eq!(
        server.cli(&["hget", &chunks_key, "h"]).trim(),
        boundary.to_string()
    );
    let head: usize = server
        .cli(&["xlen", &format!("bp:ticks:{{{HOST}}}")])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        head,
        ticks.len() - sealable,
        "only the head stays in the stream"
    );
    // The store reads them back exactly; so does the API, sealed and head.
    assert_eq!(
        store
            .range(&HOST.parse().unwrap(), 0, i64::MAX)
            .await
            .unwrap(),
        ticks
    );
    assert!(
        wait_until(Duration::from_secs(20), || get(port, "/api/v1/nodes")
            .is_some()),
        "API down:\n{}",
        alerter.log()
    );
    assert_eq!(check_series(port, &ticks, "cpu.usage"), ticks.len());
    assert_eq!(check_series(port, &ticks, "disk.usage[/var]"), ticks.len());
    // A duplicate of a sealed tick stays a duplicate.
    let again = Tick::new(
        HOST.parse().unwrap(),
        ticks[3].ts,
        [("cpu.usage".parse().unwrap(), -5.0)],
    );
    let out = store.append(&[again]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (0, 1));
    assert!(ticks[3].ts < boundary, "the duplicate is of a sealed tick");
    drop(alerter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_seals_its_data_directory_and_the_api_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = now_ms();
    let ticks = history(now);
    {
        let store = disk_store::DiskStore::open(&data).unwrap();
        store.append(&ticks).await.unwrap();
    }
    let config = config(dir.path());
    let port = test_support::free_port();
    let statsd = test_support::free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--node", "a", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--statsd")
        .arg(format!("127.0.0.1:{statsd}"))
        .env("RUST_LOG", "info");
    let mut alerter = start_standalone(cmd, dir.path().join("alerter.log")).unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || alerter
            .log()
            .contains("janitor sealed older ticks into compressed chunks")),
        "no seal within 40 s:\n{}",
        alerter.log()
    );
    let boundary = seal_boundary(now);
    let sealable = ticks.iter().filter(|t| t.ts < boundary).count();
    assert!(
        alerter.log().contains(&format!("ticks_sealed={sealable}")),
        "{sealable} ticks sealed:\n{}",
        alerter.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || get(port, "/api/v1/nodes")
            .is_some()),
        "API down:\n{}",
        alerter.log()
    );
    assert_eq!(check_series(port, &ticks, "cpu.usage"), ticks.len());
    assert_eq!(check_series(port, &ticks, "disk.usage[/var]"), ticks.len());
    alerter.terminate();
    // After a restart the sealed ticks are still there, read from chunks.
    let store = disk_store::DiskStore::open(&data).unwrap();
    assert_eq!(
        store
            .range(&HOST.parse().unwrap(), 0, i64::MAX)
            .await
            .unwrap(),
        ticks
    );
}
