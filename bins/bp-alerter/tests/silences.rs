//! Silences live: real `bp-alerter` processes, a real `redis-server`, a real
//! exec hook. Silences are written into the store the way the API and CLI
//! will write them (`AlertStore::put_record`, compare-and-set on the
//! version): the alerter reads them at every pass.
//!
//! One run, four hosts (`node-a` … `node-d`), one rule:
//! - `node-a`: opens inside a silence, held; the leader is killed with
//!   `kill -9` while it is held; the new leader releases it exactly once
//!   when the silence is expired, with its original `startTime`; its
//!   resolve follows.
//! - `node-b`: opens and resolves inside a silence: nothing is delivered.
//! - `node-c`: notified before a silence on it starts; its resolve, during
//!   the silence, is delivered.

use std::path::Path;
use std::time::Duration;

use metrics_model::store::{AlertStore, RecordKind};
use metrics_model::time::now_ms;
use metrics_model::{RedisUrl, Tick};
use redis_store::{RedisOptions, RedisStore};
use rules_engine::silence::{Matchers, Silence};
use serde_json::json;
use test_support::harness::{Call, RECORD_HOOK, Setup, dedup, series};
use test_support::{RedisServer, heavy_test_lock, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");

const RULES: &str = r#"[
  { "name": "High CPU", "field": "cpu.usage", "aggregation": "avg", "operand": "equalOrMoreThan",
    "value": 80, "timeframe": "2s" }
]"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn store(url: &str) -> RedisStore {
    RedisStore::connect(RedisOptions::new(RedisUrl::parse(url).unwrap(), "bp"))
        .await
        .unwrap()
}

fn silence(host: &str, starts_at: i64, ends_at: i64) -> Silence {
    Silence {
        id: uuid::Uuid::new_v4(),
        matchers: Matchers {
            rule: Some(metrics_model::glob::Glob::with_escapes("High*")),
            host: Some(metrics_model::glob::Glob::with_escapes(host)),
            ..Matchers::default()
        },
        starts_at,
        ends_at,
        comment: "planned reboot".into(),
        created_by: "ops".into(),
        created_at: now_ms(),
        updated_at: now_ms(),
    }
}

/// Writes `s` as version `expected + 1`.
fn put(rt: &tokio::runtime::Runtime, s: &RedisStore, silence: &Silence, expected: u64) -> u64 {
    rt.block_on(s.put_record(
        RecordKind::Silence,
        &silence.id.to_string(),
        &silence.to_json().to_string(),
        silence.ends_at,
        expected,
    ))
    .unwrap()
}

fn calls_of(calls: &[Call], host: &str) -> Vec<Call> {
    dedup(calls)
        .into_iter()
        .filter(|c| c.host == host)
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // one drill, step by step
fn silences_hold_release_once_across_kill_9_and_keep_pairs_whole() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let rt = runtime();
    let s = rt.block_on(store(&redis.url()));
    let setup = Setup::new(RULES, RECORD_HOOK, &json!({})).unwrap();
    let t0 = test_support::harness::start_in(4000);
    let mut ticks: Vec<Tick> = Vec::new();
    // node-a: high for 30 s (held, then released), low after.
    ticks.extend(series("node-a", t0, "cpu.usage", &[(30, 95.0), (8, 5.0)]));
    // node-b: high 3 s, low after: inside its silence.
    ticks.extend(series("node-b", t0, "cpu.usage", &[(3, 95.0), (10, 5.0)]));
    // node-c: high 8 s (notified first), low after (during its silence).
    ticks.extend(series("node-c", t0, "cpu.usage", &[(8, 95.0), (10, 5.0)]));
    let writer = test_support::harness::Client::connect(&redis.url()).unwrap();
    writer.append(&ticks).unwrap();
    let sa = silence("node-a", t0 - 60_000, t0 + 3_600_000);
    let va = put(&rt, &s, &sa, 0);
    put(&rt, &s, &silence("node-b", t0 - 60_000, t0 + 3_600_000), 0);

    let mut first = setup
        .alerter(Path::new(BIN), &redis.url(), "first")
        .unwrap();
    // node-c's open is delivered; then its silence starts.
    assert!(
        wait_until(Duration::from_secs(30), || !calls_of(
            &setup.calls(),
            "node-c"
        )
        .is_empty()),
        "node-c's open never arrived:\n{}",
        first.log()
    );
    put(&rt, &s, &silence("node-c", now_ms(), t0 + 3_600_000), 0);
    // Kill once the held open is committed (its state says so).
    assert!(
        wait_until(Duration::from_secs(20), || rt
            .block_on(s.load())
            .unwrap()
            .states
            .iter()
            .any(|(k, v)| k.contains("node-a") && v.contains(r#""held":true"#))),
        "no open held:\n{}",
        first.log()
    );
    first.kill9();
    let second = setup
        .alerter(Path::new(BIN), &redis.url(), "second")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            // node-a's, and node-b's unless it resolved meanwhile.
            let log = second.log();
            log.contains("held_opens=1") || log.contains("held_opens=2")
        }),
        "the new leader did not find the held open:\n{}",
        second.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        calls_of(&setup.calls(), "node-a").is_empty(),
        "a held open was delivered: {:#?}",
        setup.calls()
    );
    // Expire node-a's silence (endsAt = now), by compare-and-set.
    let mut expired = sa.clone();
    expired.ends_at = now_ms();
    expired.updated_at = now_ms();
    assert!(matches!(
        rt.block_on(s.put_record(RecordKind::Silence, &sa.id.to_string(), "{}", 0, va + 5)),
        Err(metrics_model::store::StoreError::Conflict { .. })
    ));
    put(&rt, &s, &expired, va);
    assert!(
        wait_until(Duration::from_secs(30), || calls_of(
            &setup.calls(),
            "node-a"
        )
        .iter()
        .any(|c| c.event == "resolved")),
        "node-a's open and resolve did not arrive: {:#?}\n{}",
        setup.calls(),
        second.log()
    );
    // Let anything late arrive.
    std::thread::sleep(Duration::from_secs(3));
    let all = setup.calls();
    let a = calls_of(&all, "node-a");
    assert_eq!(
        a.iter().map(|c| c.event.as_str()).collect::<Vec<_>>(),
        ["opened", "resolved"],
        "{all:#?}"
    );
    assert_eq!(
        all.iter()
            .filter(|c| c.host == "node-a" && c.event == "opened")
            .count(),
        1,
        "the held open was delivered more than once: {all:#?}"
    );
    assert_eq!(a[0].at, t0, "the released open keeps its startTime");
    assert!(
        calls_of(&all, "node-b").is_empty(),
        "an incident inside a silence was delivered: {all:#?}"
    );
    let c = calls_of(&all, "node-c");
    assert_eq!(
        c.iter().map(|c| c.event.as_str()).collect::<Vec<_>>(),
        ["opened", "resolved"],
        "node-c's resolve must arrive although silenced: {all:#?}"
    );
    // What is true is unchanged: node-b's incident is in the history.
    let history = rt.block_on(s.resolved(t0 - 1, now_ms() + 1, 100)).unwrap();
    assert!(
        history.iter().any(|h| h.contains("node-b")),
        "node-b's incident is missing from the history: {history:?}"
    );
}
