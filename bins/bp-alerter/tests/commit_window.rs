//! The commit → acknowledgement window, drilled with real processes: every
//! alerter runs with the test-only failpoint `BP_FAILPOINT=after-commit`,
//! so it aborts right after committing a transition and before any hook
//! sees it; a new alerter takes over each time. Then one without the
//! failpoint drains the outbox. Every transition `replay` expects is
//! delivered at least once, no hook ever ran on an empty or partial payload,
//! and no hook process outlived its alerter.
//!
//! Cycles: `BP_DRILL_CYCLES` (default 3: six kills; `scripts/faults` and the
//! note in docs/reliability.md use more).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::RedisServer;
use test_support::harness::{Client, Setup, series, start_in};

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");

/// Records the payload, then `key pid bytes` per call (so a recorded call
/// has its payload file whole; a hook killed before the line is recorded
/// is redelivered); lingers a little so that kills find hooks running.
const HOOK: &str = "#!/bin/sh\npayload=$(cat)\nprintf '%s' \"$payload\" > \"OUT.$BP_IDEMPOTENCY_KEY.$$.json\"\nprintf '%s %s %s\\n' \"$BP_IDEMPOTENCY_KEY\" \"$$\" \"${#payload}\" >> 'OUT'\nsleep 0.3\n";

const RULES: &str = r#"[{ "name": "Hot", "field": "cpu.usage", "aggregation": "max",
    "operand": "equalOrMoreThan", "value": 80, "timeframe": "1s" }]"#;

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

#[test]
#[allow(clippy::too_many_lines)] // one drill, checked step by step
fn kills_inside_the_commit_window_lose_nothing_and_feed_no_partial_payload() {
    let cycles: usize = std::env::var("BP_DRILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let redis = RedisServer::start();
    let setup = Setup::new(RULES, HOOK, &json!({ "timeout": "3s" })).unwrap();
    let out = setup.dir().join("hook.out");
    let t0 = start_in(4000);
    let blocks: Vec<(usize, f64)> = (0..cycles).flat_map(|_| [(2, 95.0), (2, 10.0)]).collect();
    let ticks = series("drill", t0, "cpu.usage", &blocks);
    Client::connect(&redis.url())
        .unwrap()
        .append(&ticks)
        .unwrap();
    let expected = setup.replay(Path::new(BIN), &ticks).unwrap();
    assert_eq!(expected.len(), 2 * cycles, "{expected:?}");
    // Alerters with the failpoint, one after the other: each commits one
    // transition and aborts, until every transition has been committed so.
    let mut kills = 0;
    let mut run = 0;
    let drill = Instant::now();
    while kills < expected.len() && drill.elapsed() < Duration::from_mins(3) {
        run += 1;
        let mut a = setup
            .alerter_with(
                Path::new(BIN),
                &redis.url(),
                &format!("a{run}"),
                &[("BP_FAILPOINT", "after-commit")],
            )
            .unwrap();
        let started = Instant::now();
        while a.running() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if a.running() {
            a.kill9();
        } else {
            assert!(a.log().contains("BP_FAILPOINT=after-commit"), "{}", a.log());
            kills += 1;
        }
    }
    assert_eq!(kills, expected.len(), "one kill per committed transition");
    // One without the failpoint delivers what the outbox holds.
    let mut last = setup
        .alerter(Path::new(BIN), &redis.url(), "drain")
        .unwrap();
    // Incidents are keyed `<id>:<event>`; replay cannot know the ids, so
    // the check is: `cycles` incidents, each opened and resolved, no more.
    let complete = |d: &BTreeMap<String, Vec<(String, usize)>>| {
        let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in d.keys() {
            if let Some((id, event)) = key.rsplit_once(':') {
                by_id.entry(id).or_default().push(event);
            }
        }
        by_id.len() == cycles && by_id.values().all(|e| e.len() == 2)
    };
    let delivered = || -> BTreeMap<String, Vec<(String, usize)>> {
        let mut m: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        for line in std::fs::read_to_string(&out).unwrap_or_default().lines() {
            let p: Vec<&str> = line.split(' ').collect();
            if let [key, pid, bytes] = p[..] {
                m.entry(key.to_owned())
                    .or_default()
                    .push((pid.to_owned(), bytes.parse().unwrap_or(0)));
            }
        }
        m
    };
    let ok = test_support::wait_until(Duration::from_mins(1), || complete(&delivered()));
    last.terminate();
    let d = delivered();
    assert!(
        ok,
        "not every transition was delivered once per incident: want {expected:?}, got {d:?}\n{}",
        last.log()
    );
    let mut calls = 0;
    for (key, runs) in &d {
        for (pid, bytes) in runs {
            calls += 1;
            assert!(*bytes > 0, "{key}: a hook ran with an empty stdin");
            let payload =
                std::fs::read_to_string(format!("{}.{key}.{pid}.json", out.display())).unwrap();
            let v: Value = serde_json::from_str(&payload)
                .unwrap_or_else(|e| panic!("{key}: partial payload ({e}): {payload:?}"));
            let id = v["incident"]["id"].as_str().unwrap_or_default();
            assert!(
                key.starts_with(id) && !id.is_empty(),
                "{key}: payload of {id}"
            );
            assert!(
                !alive(pid),
                "{key}: hook process {pid} outlived its alerter"
            );
        }
    }
    eprintln!(
        "commit-window drill: {kills} kills, {} transitions, {calls} hook calls ({} redeliveries)",
        d.len(),
        calls - d.len()
    );
}
