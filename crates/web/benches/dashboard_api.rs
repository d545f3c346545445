//! Latency of the JSON API for one full dashboard refresh, 24 h range over
//! 50 nodes, served from a real `redis-server` on this machine.
//!
//! `cargo bench -p bp-alerter --bench dashboard_api [-- NODES HOURS ROUNDS]`
//!
//! Loads NODES × HOURS of 10 s ticks (12 fields) through `RedisStore::append`,
//! starts the HTTP server over that store on 127.0.0.1:0, waits for
//! `/readyz`, then runs ROUNDS refreshes: each sends the dashboard's seven
//! requests at once (nodes, three series, overview, incidents, rules), as
//! the page does. Prints the first (cold) refresh, then p50/p95/max per
//! endpoint and over all requests, and the anchor: one raw `range` read of
//! one node-day from Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alerter::AlerterStats;
use metrics_model::store::TickStore;
use metrics_model::time::floor_to;
use metrics_model::time::now_ms;
use metrics_model::{StandardField, Tick};
use redis_store::{RedisOptions, RedisStore};
use test_support::RedisServer;
use web::{self as http, AppState, HttpConfig};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let nodes = arg(1, 50);
    let hours = arg(2, 24);
    let rounds = arg(3, 30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = RedisServer::start();
    runtime.block_on(run(&redis, nodes, hours, rounds));
}

/// Appends the ticks and prints the anchor (one raw node-day read).
async fn load(store: &RedisStore, nodes: usize, hours: usize) {
    let now = now_ms();
    let end = floor_to(now, 10_000);
    let per_node = hours * 360;
    let started = Instant::now();
    for n in 0..nodes {
        let host: metrics_model::HostName = format!("node-{n:02}").parse().unwrap();
        let ticks: Vec<Tick> = (0..per_node)
            .map(|i| {
                let ts = end - (per_node - 1 - i) as i64 * 10_000;
                let x = i as f64;
                Tick::new(
                    host.clone(),
                    ts,
                    StandardField::V1.iter().enumerate().map(|(k, f)| {
                        (
                            metrics_model::Key::from(*f),
                            ((x + k as f64) * 0.37).sin().abs() * 90.0,
                        )
                    }),
                )
            })
            .collect();
        for chunk in ticks.chunks(2_000) {
            store.append(chunk).await.unwrap();
        }
    }
    println!(
        "loaded {nodes} nodes x {hours} h = {} ticks in {:.1} s",
        nodes * per_node,
        started.elapsed().as_secs_f64()
    );
    // Anchor: one raw node-day range read.
    let host: metrics_model::HostName = "node-00".parse().unwrap();
    let mut raw = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let got = store.range(&host, end - 86_400_000, end).await.unwrap();
        raw.push(t.elapsed());
        assert!(!got.is_empty());
    }
    raw.sort();
    println!(
        "anchor: raw range read of one node-day: median {:.1} ms",
        pct(&raw, 0.5)
    );
}

// A linear script: setup, measure, print.
#[allow(clippy::too_many_lines)]
async fn run(redis: &RedisServer, nodes: usize, hours: usize, rounds: usize) {
    let url = metrics_model::RedisUrl::parse(&redis.url()).unwrap();
    let store = RedisStore::connect(RedisOptions::new(url, "bench"))
        .await
        .unwrap();
    load(&store, nodes, hours).await;
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(rules_engine::Config::default()));
    let state = Arc::new(AppState::new(
        store.clone(),
        store,
        Arc::new(AlerterStats::default()),
        rx,
    ));
    let server = http::bind(&HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let started = Instant::now();
    let _task = http::spawn(server, state, http::boxed(std::future::pending()));
    let client = reqwest::Client::new();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
        != 200
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "cache warm-up (24 h of every node): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let range = format!("{hours}h");
    let paths = [
        ("nodes", "/api/v1/nodes".to_owned()),
        (
            "series cpu+mem",
            format!("/api/v1/series?fields=cpu.usage,mem.usage&stats=avg&step=auto&range={range}"),
        ),
        (
            "series counters",
            format!(
                "/api/v1/series?fields=requests.count,eventsIn.count,eventsOut.count,warnings.count,errors.count,criticals.count&stats=sum&step=auto&range={range}"
            ),
        ),
        (
            "series latency",
            format!("/api/v1/series?fields=requests.latency_avg&stats=avg&step=auto&range={range}"),
        ),
        ("overview", format!("/api/v1/overview?range={range}")),
        ("incidents", "/api/v1/incidents?range=24h".to_owned()),
        ("rules", "/api/v1/rules".to_owned()),
    ];
    let mut per: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    let mut refreshes = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (i, (_, p)) in paths.iter().enumerate() {
            let client = client.clone();
            let url = format!("{base}{p}");
            set.spawn(async move {
                let t = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap();
                assert_eq!(
                    status,
                    200,
                    "{url}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                );
                (i, t.elapsed(), body.len())
            });
        }
        let mut sizes = vec![0; paths.len()];
        while let Some(r) = set.join_next().await {
            let (i, d, len) = r.unwrap();
            sizes[i] = len;
            if round > 0 {
                per[i].push(d);
            }
        }
        if round == 0 {
            println!(
                "first refresh: {:.1} ms; response sizes: {:?}",
                t.elapsed().as_secs_f64() * 1000.0,
                sizes
            );
        } else {
            refreshes.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    println!(
        "{:<18} {:>8} {:>8} {:>8}",
        "request", "p50 ms", "p95 ms", "max ms"
    );
    let mut all = Vec::new();
    for (i, (name, _)) in paths.iter().enumerate() {
        per[i].sort();
        all.extend_from_slice(&per[i]);
        println!(
            "{:<18} {:>8.1} {:>8.1} {:>8.1}",
            name,
            pct(&per[i], 0.5),
            pct(&per[i], 0.95),
            pct(&per[i], 1.0)
        );
    }
    all.sort();
    refreshes.sort();
    println!(
        "{:<18} {:>8.1} {:>8.1} {:>8.1}",
        "all requests",
        pct(&all, 0.5),
        pct(&all, 0.95),
        pct(&all, 1.0)
    );
    println!(
        "{:<18} {:>8.1} {:>8.1} {:>8.1}",
        "whole refresh",
        pct(&refreshes, 0.5),
        pct(&refreshes, 0.95),
        pct(&refreshes, 1.0)
    );
}
