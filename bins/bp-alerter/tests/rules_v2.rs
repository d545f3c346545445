//! Rules version 2, live: a real `bp-alerter` against a real `redis-server`,
//! a real hook process and a real Alertmanager. Ticks carry instances
//! (`disk.usage[/var]`) and are written through `RedisStore::append`, the
//! path `bp-collector` writes through; the live transitions must be what
//! `bp-alerter replay` says of the same ticks, whole incident objects
//! included (ids aside).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use metrics_model::Tick;
use metrics_model::time::now_ms;
use serde_json::{Value, json};
use test_support::alertmanager::Alertmanager;
use test_support::harness::{Client, Setup, series, start_in};
use test_support::{RedisServer, heavy_test_lock, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");

const RULES: &str = r#"[
  { "name": "Disk almost full", "field": "disk.usage", "aggregation": "max",
    "operand": "equalOrMoreThan", "value": 90, "timeframe": "3s",
    "severity": "critical", "labels": { "team": "ops" },
    "description": "Clean /var/log or grow the volume" },
  { "name": "Errors across the cluster", "field": "errors.count", "aggregation": "sum",
    "operand": "equalOrMoreThan", "value": 30, "timeframe": "3s", "scope": "cluster",
    "severity": "warning" },
  { "name": "Web CPU", "field": "cpu.usage", "aggregation": "avg",
    "operand": "equalOrMoreThan", "value": 80, "timeframe": "3s",
    "hosts": ["web-*", "!web-canary"] }
]"#;

/// The hook: one line per call, the JSON it got on stdin.
const JSON_HOOK: &str = "#!/bin/sh\ncat >> 'OUT'\n";

fn merge(ticks: Vec<Tick>) -> Vec<Tick> {
    let mut by: std::collections::BTreeMap<(String, i64), Tick> = std::collections::BTreeMap::new();
    for t in ticks {
        by.entry((t.host.to_string(), t.ts))
            .and_modify(|e| e.extend(t.values().clone()))
            .or_insert(t);
    }
    by.into_values().collect()
}

/// `(event, at, incident without its id)` of a transition JSON object.
fn strip(v: &Value) -> (String, i64, Value) {
    let mut incident = v["incident"].clone();
    if let Some(o) = incident.as_object_mut() {
        o.remove("id");
    }
    (
        v["event"].as_str().unwrap_or_default().to_owned(),
        v["at"].as_i64().unwrap_or_default(),
        incident,
    )
}

fn replay(setup: &Setup, ticks: &[Tick]) -> Vec<(String, i64, Value)> {
    let mut child = Command::new(BIN)
        .args(["replay", "--rules"])
        .arg(setup.config())
        .args(["--watcher-interval", "1s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for t in ticks {
            writeln!(stdin, "{}", t.to_json_line()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut v: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| strip(&serde_json::from_str(l).unwrap()))
        .collect();
    v.sort_by(|a, b| (a.1, &a.0, a.2.to_string()).cmp(&(b.1, &b.0, b.2.to_string())));
    v
}

fn delivered(setup: &Setup, until: i64) -> Vec<(String, i64, Value)> {
    let text = std::fs::read_to_string(setup.dir().join("hook.out")).unwrap_or_default();
    let mut v: Vec<_> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|j| strip(&j))
        .filter(|(_, at, _)| *at <= until)
        .collect();
    v.sort_by(|a, b| (a.1, &a.0, a.2.to_string()).cmp(&(b.1, &b.0, b.2.to_string())));
    v
}

#[test]
#[allow(clippy::too_many_lines)] // One scenario, checked point by point.
fn instances_cluster_scope_and_host_patterns_live() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let am = Alertmanager::start();
    let setup = Setup::new(
        RULES,
        JSON_HOOK,
        &json!({ "alertmanager": { "url": am.url, "resendInterval": "10m" } }),
    )
    .unwrap();
    let t0 = start_in(5000);
    let mut ticks = Vec::new();
    // web-1: / stays at 40 %; /var fills up to 95 % and is cleaned; its CPU
    // is high.
    ticks.extend(series("web-1", t0, "disk.usage[/]", &[(14, 40.0)]));
    ticks.extend(series(
        "web-1",
        t0,
        "disk.usage[/var]",
        &[(3, 50.0), (5, 95.0), (6, 50.0)],
    ));
    ticks.extend(series("web-1", t0, "cpu.usage", &[(14, 90.0)]));
    // Errors: 4 + 4 + 4 per second across three nodes: 36 per 3 s ≥ 30
    // cluster-wide, while no node alone comes near.
    for host in ["web-1", "web-2", "db-1"] {
        ticks.extend(series(
            host,
            t0,
            "errors.count",
            &[(2, 0.0), (8, 4.0), (4, 0.0)],
        ));
    }
    // Out of the CPU rule's scope: excluded by name, and not a web node.
    ticks.extend(series("web-canary", t0, "cpu.usage", &[(14, 99.0)]));
    ticks.extend(series("db-1", t0, "cpu.usage", &[(14, 99.0)]));
    ticks.extend(series("web-2", t0, "cpu.usage", &[(14, 10.0)]));
    let ticks = merge(ticks);
    let last = ticks.iter().map(|t| t.ts).max().unwrap();
    Client::connect(&redis.url())
        .expect("connect to the test Redis")
        .append(&ticks)
        .expect("append ticks");

    let alerter = setup
        .alerter(Path::new(BIN), &redis.url(), "alerter-1")
        .expect("bp-alerter starts");
    let expected = replay(&setup, &ticks);
    // Alertmanager lists an alert while it is open: watch it meanwhile.
    let mut disk_alert = None;
    let mut cluster_alert = None;
    let done = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut disk, mut cluster) = (None, None);
            while now_ms() < last + 3000 && (disk.is_none() || cluster.is_none()) {
                disk = disk.or_else(|| am.find("Disk almost full", "web-1", Some("/var")));
                cluster = cluster.or_else(|| am.find("Errors across the cluster", "*", None));
                std::thread::sleep(Duration::from_millis(100));
            }
            (disk, cluster)
        });
        let done = wait_until(
            Duration::from_secs((last - now_ms()).max(0) as u64 / 1000 + 30),
            || delivered(&setup, last).len() >= expected.len() && now_ms() > last + 2000,
        );
        (disk_alert, cluster_alert) = watcher.join().unwrap();
        done
    });
    let got = delivered(&setup, last);
    assert!(
        done,
        "delivered {got:#?}\nexpected {expected:#?}\nlog:\n{}",
        alerter.log()
    );
    assert_eq!(
        got,
        expected,
        "live and replay differ; log:\n{}",
        alerter.log()
    );

    // A per-mount rule opens for /var only, and says so.
    let opened = |rule: &str| -> Vec<&Value> {
        got.iter()
            .filter(|(e, _, i)| e == "opened" && i["ruleName"] == rule)
            .map(|(_, _, i)| i)
            .collect()
    };
    let disk = opened("Disk almost full");
    assert_eq!(disk.len(), 1, "{got:#?}");
    assert_eq!(disk[0]["hostName"], "web-1");
    assert_eq!(disk[0]["instance"], "/var");
    assert_eq!(disk[0]["severity"], "critical");
    assert_eq!(disk[0]["labels"], json!({ "team": "ops" }));
    assert_eq!(disk[0]["description"], "Clean /var/log or grow the volume");
    assert_eq!(disk[0]["triggerValue"], 95.0);
    // A cluster-wide sum opens once, for `*`.
    let cluster = opened("Errors across the cluster");
    assert_eq!(cluster.len(), 1, "{got:#?}");
    assert_eq!(cluster[0]["hostName"], "*");
    assert!(cluster[0].get("instance").is_none());
    assert_eq!(cluster[0]["triggerValue"], 36.0);
    // A host-pattern rule: web-1 only (web-canary excluded, db-1 not web-*).
    let cpu = opened("Web CPU");
    assert_eq!(cpu.len(), 1, "{got:#?}");
    assert_eq!(cpu[0]["hostName"], "web-1");
    // A version-2 rule without the new keys gives the version-1 object.
    let keys: Vec<&String> = cpu[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        // (serde_json's map is sorted: the set of keys.)
        [
            "endTime",
            "hostName",
            "ruleName",
            "startTime",
            "triggerValue"
        ],
        "{:#}",
        cpu[0]
    );

    // Alertmanager got instance and severity as labels.
    assert!(
        disk_alert.is_some() && cluster_alert.is_some(),
        "alerts {:#?}\nlog:\n{}",
        am.alerts(),
        am.log()
    );
    let d = disk_alert.unwrap();
    assert_eq!(d["labels"]["severity"], "critical", "{d:#}");
    assert_eq!(d["labels"]["instance"], "/var", "{d:#}");
    assert_eq!(d["labels"]["team"], "ops", "{d:#}");
    let c = cluster_alert.unwrap();
    assert_eq!(c["labels"]["severity"], "warning", "{c:#}");
}
