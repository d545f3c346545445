//! The breadth of a node through the real router over in-memory stores:
//! `GET /api/v1/disks` (every mount, worst first, capped by `limit`) and
//! the overview's `diskPeak`, `processes` and `network`; their parameter
//! errors; and their size bounds (`params::disks_response_bound`,
//! `params::overview_response_bound`) with names at their worst.

use std::sync::Arc;

use alerter::AlerterStats;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use metrics_model::store::TickStore as _;
use metrics_model::time::{Millis, floor_to, now_ms};
use metrics_model::{Key, MemoryAlertStore, MemoryStore, StandardField, Tick};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use web::cache::MAX_LATEST;
use web::params::{
    DISKS_LIMIT, MAX_INTERFACES_PER_NODE, MAX_PROCESSES_PER_NODE, disks_response_bound,
    overview_response_bound,
};
use web::{AppState, router};

fn app(ticks: &[Tick]) -> axum::Router {
    let store = MemoryStore::new();
    futures_block_on(store.append(ticks)).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(rules_engine::Config::default()));
    let state = Arc::new(AppState::new(
        store,
        MemoryAlertStore::new(),
        Arc::new(AlerterStats::default()),
        rx,
    ));
    router(state, None)
}

fn futures_block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value, usize) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{uri}: {e}"));
    (status, v, body.len())
}

fn tick(host: &str, ts: Millis, values: &[(&str, f64)]) -> Tick {
    Tick::new(
        host.parse().unwrap(),
        ts,
        values
            .iter()
            .map(|(k, v)| (Key::parse_tick_key(k).unwrap(), *v)),
    )
}

/// 20 minutes at 10 s, newest at `end`:
/// - node-a: `/` 40 % (1 GiB free, inodes 12 %), `/var` 91 % (97 % five
///   minutes ago; no inode figure), eth0 rx 1000 tx 200, eth1 rx 500 and an
///   error in three ticks, botpress ×2;
/// - node-b: `/` 95 %, botpress down (count 0), redis ×1;
/// - node-c: cpu only, and `/old` at 99 % 18 minutes ago and before.
fn fixture(end: Millis) -> Vec<Tick> {
    let mut out = Vec::new();
    for i in 0..120 {
        let ts = end - i * 10_000;
        let var = if i == 30 { 97.0 } else { 91.0 };
        out.push(tick(
            "node-a",
            ts,
            &[
                ("cpu.usage", 10.0),
                ("disk.usage[/]", 40.0),
                ("disk.free[/]", 1_048_576.0),
                ("disk.inodes.usage[/]", 12.0),
                ("disk.usage[/var]", var),
                ("disk.free[/var]", 2048.0),
                ("net.rx[eth0]", 1000.0 + if i == 10 { 4000.0 } else { 0.0 }),
                ("net.tx[eth0]", 200.0),
                ("net.rx[eth1]", 500.0),
                ("net.errors.count[eth1]", f64::from(i % 40 == 5)),
                ("process.count[botpress]", 2.0),
                ("process.cpu[botpress]", 12.5),
                ("process.mem[botpress]", 204_800.0),
            ],
        ));
        out.push(tick(
            "node-b",
            ts,
            &[
                ("cpu.usage", 20.0),
                ("disk.usage[/]", 95.0),
                ("disk.free[/]", 512.0),
                ("process.count[redis]", 1.0),
                ("process.count[botpress]", 0.0),
            ],
        ));
        let mut c = tick("node-c", ts, &[("cpu.usage", 30.0)]);
        if i >= 108 {
            c.extend([(Key::parse_tick_key("disk.usage[/old]").unwrap(), 99.0)]);
        }
        out.push(c);
    }
    out
}

fn row<'a>(overview: &'a Value, node: &str) -> &'a Value {
    overview["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == node)
        .unwrap_or_else(|| panic!("{node} in {overview}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn disks_are_listed_worst_first_with_free_space_and_inodes() {
    let end = floor_to(now_ms(), 10_000);
    let app = tokio::task::spawn_blocking(move || app(&fixture(end)))
        .await
        .unwrap();
    let (status, v, _) = get(&app, "/api/v1/disks?range=15m").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(
        v["disks"],
        json!([
            { "node": "node-b", "mount": "/", "usage": 95.0, "free": 512.0, "inodes": null },
            { "node": "node-a", "mount": "/var", "usage": 91.0, "free": 2048.0, "inodes": null },
            { "node": "node-a", "mount": "/", "usage": 40.0, "free": 1_048_576.0, "inodes": 12.0 },
        ])
    );
    // The cap keeps the worst; `total` still counts them all.
    let (_, v, _) = get(&app, "/api/v1/disks?range=15m&limit=2").await;
    assert_eq!(v["total"], 3);
    let mounts: Vec<(&str, &str)> = v["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["node"].as_str().unwrap(), d["mount"].as_str().unwrap()))
        .collect();
    assert_eq!(mounts, [("node-b", "/"), ("node-a", "/var")]);
    // A wider window reaches node-c's old mount (its newest value, 99 %,
    // is 18 minutes old): now the worst.
    let (_, v, _) = get(&app, "/api/v1/disks?range=30m&limit=1").await;
    assert_eq!(v["total"], 4);
    assert_eq!(v["disks"][0]["node"], "node-c");
    assert_eq!(v["disks"][0]["mount"], "/old");
    // Only the nodes asked for.
    let (_, v, _) = get(&app, "/api/v1/disks?nodes=node-a").await;
    assert_eq!(v["total"], 2);
    assert!(
        v["disks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["node"] == "node-a")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overview_rows_carry_the_peak_disk_processes_and_network() {
    let end = floor_to(now_ms(), 10_000);
    let app = tokio::task::spawn_blocking(move || app(&fixture(end)))
        .await
        .unwrap();
    let (status, v, _) = get(&app, "/api/v1/overview?range=15m").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let a = row(&v, "node-a");
    // The peak over the window, not the newest value, with its mount.
    assert_eq!(a["diskPeak"], json!({ "mount": "/var", "usage": 97.0 }));
    assert_eq!(
        row(&v, "node-b")["diskPeak"],
        json!({ "mount": "/", "usage": 95.0 })
    );
    assert_eq!(row(&v, "node-c")["diskPeak"], Value::Null);
    // node-c's old mount is its peak once the window reaches it.
    let (_, wide, _) = get(&app, "/api/v1/overview?range=30m").await;
    assert_eq!(
        row(&wide, "node-c")["diskPeak"],
        json!({ "mount": "/old", "usage": 99.0 })
    );

    assert_eq!(
        a["processes"],
        json!([{ "name": "botpress", "count": 2.0, "cpu": 12.5, "mem": 204_800.0 }])
    );
    // A process that is down is listed with count 0; by name.
    assert_eq!(
        row(&v, "node-b")["processes"],
        json!([
            { "name": "botpress", "count": 0.0, "cpu": null, "mem": null },
            { "name": "redis", "count": 1.0, "cpu": null, "mem": null },
        ])
    );
    assert_eq!(row(&v, "node-c")["processes"], json!([]));
    assert_eq!(a["processesMore"], 0);

    // rx/tx: the newest rate of each interface, summed; peaks per tick;
    // errors summed over the window (ticks 5, 45, 85 of the last 90).
    assert_eq!(
        a["network"],
        json!({
            "rx": 1500.0, "tx": 200.0, "rxPeak": 5500.0, "txPeak": 200.0, "errors": 3.0,
            "interfaces": [
                { "name": "eth0", "rx": 1000.0, "tx": 200.0 },
                { "name": "eth1", "rx": 500.0, "tx": null },
            ],
            "interfacesMore": 0,
        })
    );
    assert_eq!(row(&v, "node-b")["network"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_disks_parameters_are_refused_naming_them() {
    let end = floor_to(now_ms(), 10_000);
    let app = tokio::task::spawn_blocking(move || app(&fixture(end)))
        .await
        .unwrap();
    for (uri, parameter, text) in [
        ("/api/v1/disks?limit=0", "limit", "1 to 1000"),
        ("/api/v1/disks?limit=1001", "limit", "1 to 1000"),
        ("/api/v1/disks?limit=ten", "limit", "1 to 1000"),
        ("/api/v1/disks?range=9d", "range", "8d"),
        ("/api/v1/disks?range=-5m", "range", ""),
        ("/api/v1/disks?range=1h&from=0", "range", "not both"),
        ("/api/v1/disks?nodes=node-z", "nodes", "unknown node"),
        ("/api/v1/disks?nodes=-bad", "nodes", "invalid host name"),
        (
            "/api/v1/disks?fields=disk.usage",
            "fields",
            "unknown parameter",
        ),
        ("/api/v1/disks?to=soon", "to", ""),
    ] {
        let (status, v, _) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["parameter"], parameter, "{uri}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("{parameter}: ")) && error.contains(text),
            "{uri}: {error}"
        );
    }
    let (status, v, _) = get(&app, &format!("/api/v1/disks?limit={}", DISKS_LIMIT.1)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// The longest instance with the most escaping: 256 bytes, each `"` or `\`
/// (JSON doubles them), distinct per `n`.
fn worst_instance(n: usize) -> String {
    let tail = format!("{n:06}");
    let mut s: String = (0..256 - tail.len())
        .map(|i| if i % 2 == 0 { '"' } else { '\\' })
        .collect();
    s.push_str(&tail);
    s
}

#[test]
fn responses_stay_under_their_bounds_with_names_at_their_worst() {
    let end = floor_to(now_ms(), 10_000);
    // Three nodes with 253-byte names, each with 100 processes, 50
    // interfaces and 400 mounts of the worst names, values of the longest
    // JSON form.
    let long = -2.225_073_858_507_201_4e-308_f64;
    let mut ticks = Vec::new();
    for n in 0..3 {
        let host = format!("{n}{}", "x".repeat(252));
        let mut values = vec![(Key::from(StandardField::CpuUsage), long)];
        let key = |field: &str, i: usize| {
            Key::parse_tick_key(&format!("{field}[{}]", worst_instance(i))).unwrap()
        };
        for i in 0..100 {
            for f in ["process.count", "process.cpu", "process.mem"] {
                values.push((key(f, i), long));
            }
        }
        for i in 0..50 {
            for f in ["net.rx", "net.tx", "net.errors.count"] {
                values.push((key(f, i), long));
            }
        }
        for i in 0..400 {
            for f in ["disk.usage", "disk.free", "disk.inodes.usage"] {
                values.push((key(f, i), long - i as f64));
            }
        }
        // More mounts than the cache keeps (MAX_LATEST per field).
        ticks.push(Tick::new(host.parse().unwrap(), end, values));
    }
    let app = app(&ticks);
    futures_block_on(async {
        let (status, v, len) = get(&app, "/api/v1/overview").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(len <= overview_response_bound(3), "{len}");
        for r in v["nodes"].as_array().unwrap() {
            assert_eq!(
                r["processes"].as_array().unwrap().len(),
                MAX_PROCESSES_PER_NODE
            );
            assert_eq!(r["processesMore"], 100 - MAX_PROCESSES_PER_NODE);
            let net = &r["network"];
            assert_eq!(
                net["interfaces"].as_array().unwrap().len(),
                MAX_INTERFACES_PER_NODE
            );
            assert_eq!(net["interfacesMore"], 50 - MAX_INTERFACES_PER_NODE);
            assert_eq!(
                r["diskPeak"]["mount"].as_str().unwrap(),
                worst_instance(0),
                "the highest usage is the first mount's"
            );
        }
        for limit in [1, 50, 1000] {
            let (status, v, len) = get(&app, &format!("/api/v1/disks?limit={limit}")).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let rows = v["disks"].as_array().unwrap().len();
            assert_eq!(rows, limit.min(v["total"].as_u64().unwrap() as usize));
            assert!(len <= disks_response_bound(rows), "{len} for {rows} rows");
        }
        // The cache keeps the newest values of MAX_LATEST mounts per node.
        let (_, v, _) = get(&app, "/api/v1/disks?limit=1").await;
        assert_eq!(v["total"], 3 * MAX_LATEST, "{}", v["total"]);
    });
}
