//! The live alerter as operators run it: real `bp-alerter` processes, a real
//! `redis-server`, real hook processes. Ticks are written through
//! `RedisStore::append`, the path `bp-collector` writes through.
//!
//! Ticks are stamped a few seconds in the future when written, so the
//! alerter evaluates them live as time reaches them; the expected
//! transitions come from `bp-alerter replay` over the same ticks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metrics_model::Tick;
use metrics_model::store::AlertStore;
use metrics_model::time::now_ms;
use serde_json::{Value, json};
use test_support::harness::{
    Call, Client, HANGING_HOOK, Proc, RECORD_HOOK, Setup, Transition, dedup, hook_dir, series,
    start_in,
};
use test_support::{RedisServer, heavy_test_lock, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");

const RULES: &str = r#"[
  { "name": "High CPU", "field": "cpu.usage", "aggregation": "avg", "operand": "equalOrMoreThan",
    "value": 80, "timeframe": "3s", "cooldown": "6s" },
  { "name": "Errors", "field": "errors.count", "aggregation": "sum", "operand": "equalOrMoreThan",
    "value": 5, "timeframe": "5s" }
]"#;

/// A test directory with [`RULES`], the hook `hook_body` and `hooks_extra`.
fn new_setup(hook_body: &str, hooks_extra: &Value) -> Setup {
    Setup::new(RULES, hook_body, hooks_extra).expect("write the test directory")
}

/// `bp-alerter run` as node `name` against `redis_url`.
fn start_alerter(redis_url: &str, setup: &Setup, name: &str) -> Proc {
    setup
        .alerter(Path::new(BIN), redis_url, name)
        .expect("bp-alerter starts")
}

/// What `bp-alerter replay` says of the same ticks: `(event, rule, host, at)`.
fn replay(setup: &Setup, ticks: &[Tick]) -> Vec<Transition> {
    setup
        .replay(Path::new(BIN), ticks)
        .expect("bp-alerter replay")
}

/// Appends `ticks` to `redis` through the Redis store.
fn append(redis: &RedisServer, ticks: &[Tick]) -> Client {
    let c = Client::connect(&redis.url()).expect("connect to the test Redis");
    c.append(ticks).expect("append ticks");
    c
}

fn merge(ticks: Vec<Tick>) -> Vec<Tick> {
    let mut by: BTreeMap<(String, i64), Tick> = BTreeMap::new();
    for t in ticks {
        by.entry((t.host.to_string(), t.ts))
            .and_modify(|e| e.extend(t.values().clone()))
            .or_insert(t);
    }
    by.into_values().collect()
}

fn summary(calls: &[Call], until: i64) -> Vec<Transition> {
    sort_expected(
        calls
            .iter()
            .filter(|c| c.at <= until)
            .map(Call::transition)
            .collect(),
    )
}

fn sort_expected(mut v: Vec<Transition>) -> Vec<Transition> {
    v.sort_by(|a, b| (a.3, &a.1, &a.2).cmp(&(b.3, &b.1, &b.2)));
    v
}

#[test]
fn three_nodes_open_resolve_respect_cooldown_and_match_replay() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let setup = new_setup(RECORD_HOOK, &json!({}));
    let t0 = start_in(5000);
    // node-a: high, a dip long enough to resolve, high again.
    let mut ticks = series(
        "node-a",
        t0,
        "cpu.usage",
        &[(8, 90.0), (6, 10.0), (8, 90.0)],
    );
    // node-b: calm CPU; a burst of errors.
    ticks.extend(series("node-b", t0, "cpu.usage", &[(22, 10.0)]));
    ticks.extend(series(
        "node-b",
        t0,
        "errors.count",
        &[(5, 0.0), (4, 2.0), (13, 0.0)],
    ));
    // node-c: high, a short dip (resolves), high again inside the 6 s
    // cooldown: the reopen waits for the cooldown to end.
    ticks.extend(series(
        "node-c",
        t0,
        "cpu.usage",
        &[(5, 95.0), (2, 10.0), (15, 95.0)],
    ));
    let ticks = merge(ticks);
    let last = ticks.iter().map(|t| t.ts).max().unwrap();
    append(&redis, &ticks);

    let alerter = start_alerter(&redis.url(), &setup, "alerter-1");
    let expected = sort_expected(replay(&setup, &ticks));
    assert!(
        expected.len() >= 7,
        "the scenario makes transitions: {expected:?}"
    );
    // node-c resolves at slot 5 and reopens at slot 11 (cooldown until 11), not 9.
    assert!(expected.contains(&(
        "resolved".into(),
        "High CPU".into(),
        "node-c".into(),
        t0 + 5000
    )));
    assert!(expected.contains(&(
        "opened".into(),
        "High CPU".into(),
        "node-c".into(),
        t0 + 11_000
    )));

    let done = wait_until(
        Duration::from_secs((last - now_ms()) as u64 / 1000 + 30),
        || summary(&setup.calls(), last).len() >= expected.len() && now_ms() > last + 2000,
    );
    let calls = setup.calls();
    assert!(
        done,
        "hook calls {:#?}\nexpected {expected:#?}\nlog:\n{}",
        calls,
        alerter.log()
    );
    // Live and replay agree on every transition up to the last tick.
    assert_eq!(summary(&calls, last), expected, "log:\n{}", alerter.log());
    // No crash: every transition delivered exactly once.
    assert_eq!(
        dedup(&calls).len(),
        calls.len(),
        "duplicate deliveries: {calls:#?}"
    );
    // A resolve is never delivered before its open.
    for (i, c) in calls.iter().enumerate() {
        if c.event == "resolved" {
            let id = c.key.split(':').next().unwrap();
            assert!(
                calls[..i].iter().any(|o| o.key == format!("{id}:opened")),
                "resolve before open: {c:?}"
            );
        }
    }
}

#[test]
fn kill_9_mid_incident_loses_no_resolve_and_opens_no_duplicate() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let setup = new_setup(RECORD_HOOK, &json!({}));
    let t0 = start_in(3000);
    let ticks = series("node-x", t0, "cpu.usage", &[(10, 90.0), (12, 10.0)]);
    append(&redis, &ticks);
    let mut first = start_alerter(&redis.url(), &setup, "first");
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "opened")),
        "no open delivered:\n{}",
        first.log()
    );
    first.kill9();
    let second = start_alerter(&redis.url(), &setup, "second");
    assert!(
        wait_until(Duration::from_secs(40), || setup
            .calls()
            .iter()
            .any(|c| c.event == "resolved")),
        "the resolve was lost after kill -9: {:#?}\nfirst:\n{}\nsecond:\n{}",
        setup.calls(),
        first.log(),
        second.log()
    );
    let calls = dedup(&setup.calls());
    let ids: BTreeSet<&str> = calls
        .iter()
        .map(|c| c.key.split(':').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "a second incident was opened: {calls:#?}");
    assert_eq!(calls.iter().filter(|c| c.event == "opened").count(), 1);
    assert_eq!(calls.iter().filter(|c| c.event == "resolved").count(), 1);
    let expected = replay(&setup, &ticks);
    assert_eq!(summary(&calls, i64::MAX), sort_expected(expected));
}

#[test]
fn standby_takes_over_within_two_intervals_and_every_transition_arrives_once() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let setup = new_setup(RECORD_HOOK, &json!({}));
    let t0 = start_in(4000);
    // Alternating high and low CPU: a transition every few seconds.
    let ticks = series(
        "node-y",
        t0,
        "cpu.usage",
        &[(4, 90.0), (10, 10.0), (4, 90.0), (10, 10.0), (4, 90.0)],
    );
    let last = ticks.last().unwrap().ts;
    let c = append(&redis, &ticks);
    let mut a = start_alerter(&redis.url(), &setup, "alerter-a");
    let mut b = start_alerter(&redis.url(), &setup, "alerter-b");
    let holder = || c.rt.block_on(c.store.lease()).unwrap().map(|l| l.holder);
    assert!(wait_until(Duration::from_secs(20), || holder().is_some()));
    // Let the leader deliver something, then kill it.
    assert!(
        wait_until(Duration::from_secs(40), || !setup.calls().is_empty()),
        "nothing delivered:\n{}\n{}",
        a.log(),
        b.log()
    );
    let leader = holder().unwrap();
    let (victim, survivor_pid) = if leader.contains(&format!(":{}:", a.pid())) {
        (&mut a, b.pid())
    } else {
        (&mut b, a.pid())
    };
    victim.kill9();
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || holder()
            .is_some_and(|h| h.contains(&format!(":{survivor_pid}:")))),
        "the standby never took over"
    );
    let takeover = killed.elapsed();
    eprintln!("takeover after kill -9: {takeover:?} (watcher interval 1 s)");
    // 2 × watcherInterval, with slack for a loaded 2-core machine.
    assert!(
        takeover <= 2 * Duration::from_secs(1) + Duration::from_secs(2),
        "takeover took {takeover:?}"
    );

    let expected = sort_expected(replay(&setup, &ticks));
    let done = wait_until(
        Duration::from_secs((last - now_ms()).max(0) as u64 / 1000 + 30),
        || summary(&dedup(&setup.calls()), last).len() >= expected.len() && now_ms() > last + 2000,
    );
    let calls = setup.calls();
    assert!(
        done,
        "{calls:#?}\nexpected {expected:#?}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    // Deduplicated by idempotency key, every transition exactly once.
    assert_eq!(summary(&dedup(&calls), last), expected);
    // Duplicates may only be redeliveries of the same key.
    let keys: BTreeMap<&str, Vec<&Call>> = calls.iter().fold(BTreeMap::new(), |mut m, c| {
        m.entry(c.key.as_str()).or_default().push(c);
        m
    });
    for (key, same) in keys {
        assert!(
            same.windows(2)
                .all(|w| w[0].event == w[1].event && w[0].at == w[1].at),
            "{key}: {same:?}"
        );
    }
}

#[test]
fn a_hanging_hook_is_killed_and_evaluation_keeps_its_schedule() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let setup = new_setup(HANGING_HOOK, &json!({ "timeout": "1s", "maxAttempts": 1 }));
    let t0 = start_in(2000);
    let ticks = series(
        "node-h",
        t0,
        "cpu.usage",
        &[(3, 90.0), (6, 10.0), (3, 90.0)],
    );
    let c = append(&redis, &ticks);
    let alerter = start_alerter(&redis.url(), &setup, "alerter-h");
    // The hook hangs; the alerter keeps evaluating every second regardless.
    let evaluated = || {
        c.rt.block_on(c.store.load())
            .unwrap()
            .last_evaluated
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || evaluated() > t0 + 12_000),
        "evaluation stalled:\n{}",
        alerter.log()
    );
    // Each delivery timed out and became a dead letter.
    assert!(
        wait_until(Duration::from_secs(20), || c
            .rt
            .block_on(c.store.dead_letters(10))
            .unwrap()
            .len()
            >= 3),
        "no dead letters:\n{}",
        alerter.log()
    );
    let dead = c.rt.block_on(c.store.dead_letters(10)).unwrap();
    assert!(
        dead.iter()
            .all(|d| d.error.contains("timed out") || d.error.contains("timeout")),
        "{dead:#?}"
    );
    assert_eq!(
        c.rt.block_on(c.store.outbox_len()).unwrap(),
        0,
        "dead letters are acked out of the outbox"
    );
}

#[test]
fn incidents_command_lists_open_and_resolved() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let setup = new_setup(RECORD_HOOK, &json!({}));
    let t0 = start_in(2000);
    let mut ticks = series("node-l", t0, "cpu.usage", &[(3, 90.0), (4, 10.0)]);
    ticks.extend(series("node-m", t0, "cpu.usage", &[(7, 99.0)]));
    append(&redis, &ticks);
    let alerter = start_alerter(&redis.url(), &setup, "alerter-l");
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .filter(|c| c.event == "resolved")
            .count()
            >= 1),
        "{}",
        alerter.log()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args(["incidents", "--json"])
        .env("REDIS_URL", redis.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["open"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["open"][0]["hostName"], "node-m");
    assert_eq!(v["resolved"][0]["hostName"], "node-l");
    assert!(
        v["activeAlerter"]["holder"]
            .as_str()
            .unwrap()
            .starts_with("alerter-l:")
    );
    let table = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .arg("incidents")
        .env("REDIS_URL", redis.url())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("OPEN INCIDENTS (1)") && text.contains("node-m") && text.contains("node-l"),
        "{text}"
    );
    let no_redis = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .arg("incidents")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(no_redis.status.code(), Some(2));
}

#[test]
fn standalone_mode_opens_and_resolves_from_statsd() {
    let dir = tempfile::tempdir().unwrap();
    let (hooks, out) = hook_dir(dir.path(), RECORD_HOOK).unwrap();
    let config = json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
            "rules": [{ "name": "Errors reported", "field": "errors.count", "aggregation": "sum",
                        "operand": "equalOrMoreThan", "value": 3, "timeframe": "3s" }],
            "hooks": { "directory": hooks } }
    });
    std::fs::write(dir.path().join("c.json"), config.to_string()).unwrap();
    let port = test_support::free_port();
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args([
            "--config",
            dir.path().join("c.json").to_str().unwrap(),
            "--node",
            "laptop",
            "--listen",
            "127.0.0.1:0",
            "--statsd",
            &format!("127.0.0.1:{port}"),
        ])
        .env_remove("REDIS_URL")
        .env("BP_DATA_DIR", dir.path().join("data"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(dir.path().join("err")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || read_log()
            .contains("statsd listening")),
        "{}",
        read_log()
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"bp.errors:5|c", ("127.0.0.1", port))
        .unwrap();
    let lines = || std::fs::read_to_string(&out).unwrap_or_default();
    let ok = wait_until(Duration::from_secs(30), || lines().contains("|resolved|"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "hook lines:\n{}\nlog:\n{}", lines(), read_log());
    let text = lines();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("|opened|Errors reported|laptop|"),
        "{text}"
    );
    assert!(read_log().contains("standalone mode"));
}

#[test]
fn redis_unreachable_at_start_up_is_retried_until_it_comes() {
    let _heavy = heavy_test_lock();
    let mut redis = RedisServer::start_with(test_support::RedisServerOptions {
        requirepass: Some("s3cret-pw".into()),
        ..Default::default()
    });
    let url = redis.url_with_auth("default", "s3cret-pw");
    redis.stop();
    let setup = new_setup(RECORD_HOOK, &json!({}));
    let mut child = start_alerter(&url, &setup, "patient");
    assert!(
        wait_until(Duration::from_secs(20), || child
            .log()
            .matches("cannot connect to Redis; retrying")
            .count()
            >= 2),
        "{}",
        child.log()
    );
    assert!(
        child.running(),
        "bp-alerter exited while Redis was down:\n{}",
        child.log()
    );
    assert!(
        !child.log().contains("s3cret-pw"),
        "the password leaked into the log:\n{}",
        child.log()
    );
    redis.restart();
    let holder = || {
        let c = Client::connect(&url).unwrap();
        c.rt.block_on(c.store.lease()).unwrap().map(|l| l.holder)
    };
    assert!(
        wait_until(Duration::from_secs(30), || holder()
            .is_some_and(|h| h.starts_with("patient:"))),
        "the alerter never became active after Redis came back:\n{}",
        child.log()
    );
    child.kill9();
}

#[test]
fn sighup_reloads_rules_and_rejects_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let (hooks, out) = hook_dir(dir.path(), RECORD_HOOK).unwrap();
    let config = |rules: Value| {
        json!({
            "monitoring": { "collectionInterval": "1s" },
            "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms", "rules": rules, "hooks": { "directory": hooks } }
        })
        .to_string()
    };
    // "Always" holds as long as this machine reports uptime.
    let always = json!({ "name": "Always", "field": "uptime", "aggregation": "count",
                         "operand": "equalOrMoreThan", "value": 1, "timeframe": "10s" });
    let path = dir.path().join("c.json");
    std::fs::write(&path, config(json!([always]))).unwrap();
    let err_path = dir.path().join("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--node",
            "reloader",
            "--listen",
            "127.0.0.1:0",
            "--statsd",
            "off",
        ])
        .env_remove("REDIS_URL")
        .arg("--ephemeral")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let err = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let lines = || std::fs::read_to_string(&out).unwrap_or_default();
    let hup = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    assert!(
        wait_until(Duration::from_secs(30), || lines()
            .contains("|opened|Always|")),
        "{}",
        err()
    );
    // An invalid file is rejected and the old rules stay.
    std::fs::write(
        &path,
        config(json!([{ "name": "broken", "timeframe": "2x" }])),
    )
    .unwrap();
    hup(child.id());
    assert!(
        wait_until(Duration::from_secs(20), || err()
            .contains("invalid configuration rejected")),
        "{}",
        err()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "bp-alerter exited on an invalid reload:\n{}",
        err()
    );
    assert!(!lines().contains("|resolved|"), "{}", lines());
    // Removing the rule resolves its open incident at the next evaluation.
    std::fs::write(&path, config(json!([]))).unwrap();
    hup(child.id());
    let ok = wait_until(Duration::from_secs(20), || {
        lines().contains("|resolved|Always|")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "removed rule's incident not resolved:\n{}\n{}",
        lines(),
        err()
    );
    assert_eq!(lines().lines().count(), 2, "{}", lines());
}
