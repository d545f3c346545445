//! Bytes per stored sample, measured with `INFO memory` (`used_memory`
//! delta), for 10 days of 10 s ticks of one node with the 10 seed fields:
//! 86,400 ticks × 10 = 864,000 samples with realistic values (CPU and
//! memory random walks with 2 decimals, small integer counters, latencies
//! with 3 decimals).
//!
//! In one run, on a `redis-server` it starts itself (default settings):
//! - this store's layout (ticks appended in order, 1,000 per call), with
//!   the import throughput;
//! - the same ticks appended shuffled (the late-tick path);
//! - the original system's layout: one sorted set, `ZADD <ts> <JSON of the tick>`;
//! - a plain stream per node with one entry per tick and one field per value;
//! - the time of a one-day range read (8,640 ticks) through the store;
//! - the larger tick of a node with the version-2 breadth (29 values: the
//!   10 above plus swap, load 1/5/15, 2 mounts × usage/free/inodes, 2
//!   interfaces × rx/tx/errors, 1 watched process × count/cpu/mem:
//!   `metrics_model::synthetic::node_ticks_wide`), 86,400 ticks again, in
//!   order and shuffled, each under its own scope (layout 2's keyed
//!   section), with its one-day range read;
//! - layout 3: each of those four stores again after the janitor's seal at
//!   the end of the 10 days (every window that ended an hour before the
//!   last tick becomes a compressed chunk; the last hours stay in the
//!   stream), with the seal's time and the one-day range read from chunks.
//!
//! `cargo run --release -p redis-store --example bytes_per_sample`

use std::time::{Duration, Instant};

use fred::prelude::*;
use metrics_model::store::TickStore;
use metrics_model::synthetic::{Rng, WIDE_FIELDS, node_ticks, node_ticks_wide};
use metrics_model::{HostName, RedisUrl, Tick};
use redis_store::{RedisOptions, RedisStore};
use test_support::RedisServer;

const TICKS: i64 = 86_400;
const STEP: i64 = 10_000;
const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const SAMPLES: f64 = (TICKS * 10) as f64;

fn used_memory(server: &RedisServer) -> i64 {
    let info = server.cli(&["info", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

fn original_json(t: &Tick) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "{{\"host\":\"{}\",\"serverId\":\"srv-1\",\"ts\":{}",
        t.host, t.ts
    );
    for (f, v) in t.values() {
        let _ = write!(s, ",\"{f}\":{v}");
    }
    s.push('}');
    s
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn report(label: &str, bytes: i64, extra: &str) {
    report_of(label, bytes, SAMPLES, extra);
}

fn report_of(label: &str, bytes: i64, samples: f64, extra: &str) {
    println!(
        "{label:<28} {bytes:>10} bytes  {:5.2} B/sample{extra}",
        bytes as f64 / samples
    );
}

/// Appends `ticks` 1,000 per call; returns (`used_memory` delta, ticks/s).
async fn load(server: &RedisServer, store: &RedisStore, ticks: &[Tick]) -> Res<(i64, f64)> {
    let m0 = used_memory(server);
    let (calls0, usec0) = evalsha_stats(server);
    let t0 = Instant::now();
    for batch in ticks.chunks(1000) {
        store.append(batch).await?;
    }
    let elapsed = t0.elapsed();
    let rate = ticks.len() as f64 / elapsed.as_secs_f64();
    let (calls1, usec1) = evalsha_stats(server);
    // Where an append's time goes: Redis running the append script (the
    // script's own time, from INFO commandstats) against the whole call.
    println!(
        "  append: {:.2} µs per tick in all, of which {:.2} µs in Redis's append script ({} calls)",
        elapsed.as_secs_f64() * 1e6 / ticks.len() as f64,
        (usec1 - usec0) as f64 / ticks.len() as f64,
        calls1 - calls0
    );
    Ok((used_memory(server) - m0, rate))
}

/// `INFO commandstats`' `cmdstat_evalsha`: calls and total µs.
fn evalsha_stats(server: &RedisServer) -> (u64, u64) {
    let info = server.cli(&["info", "commandstats"]);
    let Some(line) = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
    else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
}

/// When the janitor seals: `Live`, right after the last tick (the last 1–3
/// hours stay in the stream, as on a node that keeps sending); `Quiet`,
/// three hours later (every window sealed, late entries included: an
/// out-of-order entry is sealed once the window boundary passes its stream
/// ID, which is near the newest tick at its arrival).
#[derive(Clone, Copy)]
enum SealAt {
    Live,
    Quiet,
}

/// Seals `store` at `at` and reports its memory: `loaded` (what its load
/// took) plus the change the seal made; with the seal's time.
async fn seal_and_report(
    server: &RedisServer,
    store: &RedisStore,
    loaded: i64,
    samples: f64,
    at: SealAt,
    label: &str,
) -> Res<i64> {
    let end = START + TICKS * STEP;
    let now = match at {
        SealAt::Live => end,
        SealAt::Quiet => end + metrics_model::chunk::SEAL_AFTER_MS + metrics_model::chunk::CHUNK_MS,
    };
    let m0 = used_memory(server);
    let t0 = Instant::now();
    let out = store.seal(metrics_model::chunk::seal_boundary(now)).await?;
    let took = t0.elapsed();
    let bytes = loaded + used_memory(server) - m0;
    report_of(
        label,
        bytes,
        samples,
        &format!(
            "  seal {:.0} ms ({} ticks into chunks)",
            took.as_secs_f64() * 1e3,
            out.ticks_sealed
        ),
    );
    Ok(bytes)
}

async fn range_reads(store: &RedisStore, host: &HostName, label: &str) -> Res<()> {
    let mut times: Vec<Duration> = Vec::new();
    for d in 0..20i64 {
        let from = START + (d % 10) * 86_400_000;
        let t = Instant::now();
        let got = store.range(host, from, from + 86_400_000 - 1).await?;
        times.push(t.elapsed());
        assert_eq!(got.len(), 8_640);
    }
    times.sort();
    println!(
        "{label}one-day range read (8,640 ticks): median {:.1} ms, max {:.1} ms (20 reads)",
        times[10].as_secs_f64() * 1e3,
        times[19].as_secs_f64() * 1e3
    );
    Ok(())
}

/// The original system's layout: `ZADD monitoring <ts> <JSON>`.
async fn load_original(server: &RedisServer, client: &Client, ticks: &[Tick]) -> Res<i64> {
    let m0 = used_memory(server);
    for batch in ticks.chunks(1000) {
        let pipeline = client.pipeline();
        for t in batch {
            let _: () = pipeline
                .zadd(
                    "monitoring",
                    None,
                    None,
                    false,
                    false,
                    (t.ts as f64, original_json(t)),
                )
                .await?;
        }
        let _: Vec<Value> = pipeline.all().await?;
    }
    Ok(used_memory(server) - m0)
}

/// A plain stream: one entry per tick, one field per value.
async fn load_plain_stream(server: &RedisServer, client: &Client, ticks: &[Tick]) -> Res<i64> {
    let m0 = used_memory(server);
    for batch in ticks.chunks(1000) {
        let pipeline = client.pipeline();
        for t in batch {
            let fields: Vec<(String, String)> = t
                .values()
                .iter()
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect();
            let _: () = pipeline
                .xadd("plain-stream", false, None, format!("{}-0", t.ts), fields)
                .await?;
        }
        let _: Vec<Value> = pipeline.all().await?;
    }
    Ok(used_memory(server) - m0)
}

#[tokio::main]
#[allow(clippy::too_many_lines)] // one measurement after another, in the order printed
async fn main() -> Res<()> {
    let server = RedisServer::start();
    let url = RedisUrl::parse(&server.url())?;
    let host: HostName = "node-a".parse()?;
    let data = node_ticks(&host, START, STEP, TICKS, 7);
    let version = server.cli(&["info", "server"]);
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim();
    println!(
        "redis-server {version} (default settings) on port {}; {TICKS} ticks x 10 fields = {SAMPLES} samples",
        server.port()
    );

    let store = RedisStore::connect(RedisOptions::new(url.clone(), "bp")).await?;
    let (bytes, rate) = load(&server, &store, &data).await?;
    let plain_bytes = bytes;
    report(
        "store layout 1, in order:",
        bytes,
        &format!("  import {rate:.0} ticks/s"),
    );
    range_reads(&store, &host, "").await?;

    let mut shuffled = data.clone();
    Rng(99).shuffle(&mut shuffled);
    let shuffled_store = RedisStore::connect(RedisOptions::new(url, "shuffled")).await?;
    let (bytes, rate) = load(&server, &shuffled_store, &shuffled).await?;
    let shuffled_bytes = bytes;
    report(
        "store layout 1, shuffled:",
        bytes,
        &format!("  import {rate:.0} ticks/s"),
    );
    let back = shuffled_store
        .range(&host, START, START + TICKS * STEP)
        .await?;
    assert!(back == data, "a shuffled import must give the same data");
    let live = seal_and_report(
        &server,
        &store,
        plain_bytes,
        SAMPLES,
        SealAt::Live,
        "layout 3, in order, live:",
    )
    .await?;
    seal_and_report(
        &server,
        &store,
        live,
        SAMPLES,
        SealAt::Quiet,
        "layout 3, in order, sealed:",
    )
    .await?;
    seal_and_report(
        &server,
        &shuffled_store,
        shuffled_bytes,
        SAMPLES,
        SealAt::Quiet,
        "layout 3, shuffled, sealed:",
    )
    .await?;
    range_reads(&store, &host, "sealed: ").await?;
    let back = shuffled_store
        .range(&host, START, START + TICKS * STEP)
        .await?;
    assert!(back == data, "sealed chunks must give the same data");

    let client = Builder::from_config(Config::from_url(&server.url())?).build()?;
    client.init().await?;
    report(
        "original (ZADD JSON):",
        load_original(&server, &client, &data).await?,
        "",
    );
    report(
        "plain stream, 10 fields:",
        load_plain_stream(&server, &client, &data).await?,
        "",
    );
    client.quit().await?;

    // The larger tick, in the same server, each under its own scope.
    let wide = node_ticks_wide(&host, START, STEP, TICKS, 7);
    let wide_samples: usize = wide.iter().map(|t| t.values().len()).sum();
    assert_eq!(wide_samples, TICKS as usize * WIDE_FIELDS);
    let wide_samples = wide_samples as f64;
    println!("larger tick: {TICKS} ticks x {WIDE_FIELDS} values = {wide_samples} samples");
    let wide_store =
        RedisStore::connect(RedisOptions::new(RedisUrl::parse(&server.url())?, "wide")).await?;
    let (bytes, rate) = load(&server, &wide_store, &wide).await?;
    let wide_bytes = bytes;
    report_of(
        "larger tick, in order:",
        bytes,
        wide_samples,
        &format!("  import {rate:.0} ticks/s"),
    );
    range_reads(&wide_store, &host, "larger tick: ").await?;
    let mut shuffled = wide.clone();
    Rng(99).shuffle(&mut shuffled);
    let wide_shuffled = RedisStore::connect(RedisOptions::new(
        RedisUrl::parse(&server.url())?,
        "wide-shuffled",
    ))
    .await?;
    let (bytes, rate) = load(&server, &wide_shuffled, &shuffled).await?;
    let wide_shuffled_bytes = bytes;
    report_of(
        "larger tick, shuffled:",
        bytes,
        wide_samples,
        &format!("  import {rate:.0} ticks/s"),
    );
    let back = wide_shuffled
        .range(&host, START, START + TICKS * STEP)
        .await?;
    assert!(back == wide, "a shuffled import must give the same data");
    let live = seal_and_report(
        &server,
        &wide_store,
        wide_bytes,
        wide_samples,
        SealAt::Live,
        "larger tick, in order, live:",
    )
    .await?;
    seal_and_report(
        &server,
        &wide_store,
        live,
        wide_samples,
        SealAt::Quiet,
        "larger tick, in order, sealed:",
    )
    .await?;
    seal_and_report(
        &server,
        &wide_shuffled,
        wide_shuffled_bytes,
        wide_samples,
        SealAt::Quiet,
        "larger tick, shuffled, sealed:",
    )
    .await?;
    range_reads(&wide_store, &host, "larger tick sealed: ").await?;
    for (store, what) in [(&wide_store, "in order"), (&wide_shuffled, "shuffled")] {
        let back = store.range(&host, START, START + TICKS * STEP).await?;
        assert!(
            back == wide,
            "sealed chunks ({what}) must give the same data"
        );
    }
    Ok(())
}
