//! Redis loses its data while an incident is open — a restart without
//! persistence, or one Cluster master restarted empty — with real
//! `bp-alerter` processes, real `redis-server`s and a real hook that records
//! each call's idempotency key and payload size.
//!
//! The leader notices the new store epoch and writes its state back: the
//! open incident keeps its id, shows in `bp-alerter incidents` within 5 s,
//! and is resolved once; a standby waits instead of rebuilding from the
//! empty store; a new leader rebuilds its host list from the tick streams
//! that survived.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use metrics_model::Tick;
use serde_json::{Value, json};
use test_support::harness::{Call, Client, Proc, Setup, Transition, dedup, series, start_in};
use test_support::{RedisCluster, RedisServer, heavy_test_lock, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");

/// Records `key|event|rule|host|start|end|payload bytes` per call (the
/// fields `Call::parse` reads, then the size of the JSON read on stdin).
const HOOK: &str = "#!/bin/sh\npayload=$(cat)\nprintf '%s|%s|%s|%s|%s|%s|%s\\n' \"$BP_IDEMPOTENCY_KEY\" \"$BP_INCIDENT_EVENT\" \"$BP_INCIDENT_RULE_NAME\" \"$BP_INCIDENT_HOST_NAME\" \"$BP_INCIDENT_START_TIME\" \"$BP_INCIDENT_END_TIME\" \"${#payload}\" >> 'OUT'\n";

const RULES: &str = r#"[{ "name": "High CPU", "field": "cpu.usage", "aggregation": "avg",
    "operand": "equalOrMoreThan", "value": 80, "timeframe": "3s" }]"#;

/// High CPU for 6 s from `t0` on each host (phase 1, written before the
/// loss), then low for 6 s (phase 2, written after).
fn phases(hosts: &[&str], t0: i64) -> (Vec<Tick>, Vec<Tick>) {
    let mut high = Vec::new();
    let mut low = Vec::new();
    for h in hosts {
        high.extend(series(h, t0, "cpu.usage", &[(6, 90.0)]));
        low.extend(series(h, t0 + 6_000, "cpu.usage", &[(6, 10.0)]));
    }
    (high, low)
}

fn start(setup: &Setup, url: &str, name: &str, scope: &str) -> Proc {
    setup
        .alerter_with(Path::new(BIN), url, name, &[("BP_REDIS_SCOPE", scope)])
        .expect("bp-alerter starts")
}

fn calls_with_payload(setup: &Setup) -> Vec<(Call, usize)> {
    let text = std::fs::read_to_string(setup.dir().join("hook.out")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let bytes = l.rsplit('|').next()?.parse().ok()?;
            Some((Call::parse(l)?, bytes))
        })
        .collect()
}

/// `bp-alerter incidents --json` against `url`/`scope`.
fn incidents(url: &str, scope: &str) -> Option<Value> {
    let out = Command::new(BIN)
        .args(["incidents", "--json"])
        .env("REDIS_URL", url)
        .env("BP_REDIS_SCOPE", scope)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn open_ids(url: &str, scope: &str) -> BTreeSet<String> {
    incidents(url, scope)
        .and_then(|v| {
            v["open"].as_array().map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The delivered transitions, one per idempotency key, sorted; and checks
/// that every call had a whole payload and no (rule, host) got two ids.
fn delivered(setup: &Setup) -> Vec<Transition> {
    let calls = calls_with_payload(setup);
    for (c, bytes) in &calls {
        assert!(*bytes > 50, "call {} ran on a {bytes}-byte payload", c.key);
    }
    let calls: Vec<Call> = dedup(&calls.into_iter().map(|(c, _)| c).collect::<Vec<_>>());
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for c in &calls {
        let id = c.key.split(':').next().unwrap_or_default().to_owned();
        ids.entry((c.rule.clone(), c.host.clone()))
            .or_default()
            .insert(id);
    }
    for (subject, set) in &ids {
        assert_eq!(
            set.len(),
            1,
            "{subject:?} got incidents {set:?}: {calls:#?}"
        );
    }
    let mut out: Vec<Transition> = calls.iter().map(Call::transition).collect();
    out.sort_by(|a, b| (a.3, &a.1, &a.2, &a.0).cmp(&(b.3, &b.1, &b.2, &b.0)));
    out
}

fn sorted(mut v: Vec<Transition>) -> Vec<Transition> {
    v.sort_by(|a, b| (a.3, &a.1, &a.2, &a.0).cmp(&(b.3, &b.1, &b.2, &b.0)));
    v
}

/// Redis restarted empty while the leader holds token `token`, with or
/// without a standby running.
fn restarted_empty(token: u64, with_standby: bool) {
    let _heavy = heavy_test_lock();
    let mut redis = RedisServer::start();
    let url = redis.url();
    if token > 1 {
        redis.cli(&["set", "{bp:alerts}:token", &(token - 1).to_string()]);
    }
    let setup = Setup::new(RULES, HOOK, &json!({})).unwrap();
    let t0 = start_in(2000);
    let (high, low) = phases(&["node-s"], t0);
    Client::connect(&url).unwrap().append(&high).unwrap();
    let leader = start(&setup, &url, "leader", "bp");
    assert!(
        wait_until(Duration::from_secs(20), || redis
            .cli(&["get", "{bp:alerts}:lease"])
            .starts_with(&format!("{token}:leader:"))),
        "the leader did not take token {token}:\n{}",
        leader.log()
    );
    let standby = with_standby.then(|| start(&setup, &url, "standby", "bp"));
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "opened")),
        "no open delivered:\n{}",
        leader.log()
    );
    let id = setup.calls()[0].key.split(':').next().unwrap().to_owned();
    assert_eq!(open_ids(&url, "bp"), BTreeSet::from([id.clone()]));

    redis.stop();
    redis.restart(); // no persistence: empty
    let back = Instant::now();
    assert_eq!(redis.cli(&["dbsize"]).trim(), "0", "Redis came back empty");
    assert!(
        wait_until(Duration::from_secs(5), || open_ids(&url, "bp")
            .contains(&id)),
        "the open incident {id} was not in `bp-alerter incidents` within 5 s of Redis coming back:\n{}",
        leader.log()
    );
    let shown_after = back.elapsed();
    Client::connect(&url).unwrap().append(&low).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "resolved")),
        "the resolve was never delivered:\n{}",
        leader.log()
    );
    // Let a stray second open, if any, show.
    std::thread::sleep(Duration::from_secs(2));
    let got = delivered(&setup);
    let mut all = high;
    all.extend(low);
    let expected = setup.replay(Path::new(BIN), &all).unwrap();
    assert_eq!(got, sorted(expected), "(shown again after {shown_after:?})");
    assert!(
        got.iter()
            .all(|t| t.0 != "opened" || setup.calls()[0].key.starts_with(&id))
    );
    let log = leader.log();
    assert!(
        log.contains("wrote this alerter's state back"),
        "no write-back logged:\n{log}"
    );
    if let Some(standby) = standby {
        let slog = standby.log();
        assert!(
            !slog.contains("now active"),
            "the standby took over from the live leader:\n{slog}"
        );
    }
    // The token counter went on from the old token.
    let counter: u64 = redis
        .cli(&["get", "{bp:alerts}:token"])
        .trim()
        .parse()
        .unwrap();
    assert!(counter >= token, "token counter {counter} < {token}");
}

#[test]
fn redis_restarted_empty_at_token_1_keeps_the_incident_and_resolves_it_once() {
    restarted_empty(1, false);
}

#[test]
fn redis_restarted_empty_at_token_6_with_a_standby_keeps_the_incident_and_resolves_it_once() {
    restarted_empty(6, true);
}

/// A failover to a replica that had not caught up: the store keeps its
/// epoch but lacks the leader's last commits (here: its last evaluated
/// instant rolled back and the incident states gone). The leader's next
/// commit is refused as behind; it writes its state back.
#[test]
fn a_store_missing_the_last_commits_gets_them_written_back() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(RULES, HOOK, &json!({})).unwrap();
    let t0 = start_in(2000);
    let (high, low) = phases(&["node-r"], t0);
    Client::connect(&url).unwrap().append(&high).unwrap();
    let leader = start(&setup, &url, "leader", "bp");
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "opened")),
        "no open delivered:\n{}",
        leader.log()
    );
    let id = setup.calls()[0].key.split(':').next().unwrap().to_owned();
    redis.cli(&["del", "{bp:alerts}:states"]);
    redis.cli(&[
        "hset",
        "{bp:alerts}:meta",
        "last_evaluated",
        &(t0 - 5_000).to_string(),
    ]);
    assert!(
        wait_until(Duration::from_secs(5), || open_ids(&url, "bp")
            .contains(&id)),
        "the open incident was not written back within 5 s:\n{}",
        leader.log()
    );
    Client::connect(&url).unwrap().append(&low).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "resolved")),
        "the resolve was never delivered:\n{}",
        leader.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut all = high;
    all.extend(low);
    let expected = setup.replay(Path::new(BIN), &all).unwrap();
    assert_eq!(delivered(&setup), sorted(expected));
    let log = leader.log();
    assert!(log.contains("lost commits of this alerter"), "{log}");
}

/// A scope whose alert keys and host registry sit on the same master
/// (`same`), or on different masters (`!same`).
fn scope_with(cluster: &RedisCluster, same: bool) -> (String, usize, usize) {
    for i in 0..200 {
        let scope = format!("s{i}");
        let alerts = cluster.owner_of(&format!("{{{scope}:alerts}}:lease"));
        let registry = cluster.owner_of(&format!("{scope}:hosts"));
        if (alerts == registry) == same {
            return (scope, alerts, registry);
        }
    }
    panic!("no scope found");
}

const HOSTS: [&str; 6] = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"];

#[test]
fn a_cluster_master_with_the_alert_state_and_the_registry_restarted_empty_loses_no_transition() {
    let _heavy = heavy_test_lock();
    let mut cluster = RedisCluster::start();
    let url = cluster.url();
    let (scope, node, _) = scope_with(&cluster, true);
    let setup = Setup::new(RULES, HOOK, &json!({})).unwrap();
    let t0 = start_in(2500);
    let (high, low) = phases(&HOSTS, t0);
    let client = Client::connect_scoped(&url, &scope).unwrap();
    client.append(&high).unwrap();
    let leader = start(&setup, &url, "leader", &scope);
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .filter(|c| c.event == "opened")
            .count()
            == HOSTS.len()),
        "not every open delivered:\n{}",
        leader.log()
    );
    cluster.restart_node_empty(node);
    assert!(
        wait_until(Duration::from_secs(5), || open_ids(&url, &scope).len()
            == HOSTS.len()),
        "the open incidents were not written back within 5 s:\n{}",
        leader.log()
    );
    drop(client);
    let client = Client::connect_scoped(&url, &scope).unwrap();
    client.append(&low).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .filter(|c| c.event == "resolved")
            .count()
            >= HOSTS.len()),
        "not every resolve delivered:\n{}",
        leader.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut all = high;
    all.extend(low);
    let expected = setup.replay(Path::new(BIN), &all).unwrap();
    assert_eq!(delivered(&setup), sorted(expected));
    assert!(leader.log().contains("wrote this alerter's state back"));
}

#[test]
fn a_new_leader_finds_the_hosts_a_lost_registry_shard_forgot() {
    let _heavy = heavy_test_lock();
    let mut cluster = RedisCluster::start();
    let url = cluster.url();
    let (scope, _, registry) = scope_with(&cluster, false);
    let setup = Setup::new(RULES, HOOK, &json!({})).unwrap();
    let t0 = start_in(2500);
    let (high, low) = phases(&HOSTS, t0);
    // Every tick is written up front: the low phase is in the streams when
    // the registry's shard is lost.
    let mut all = high;
    all.extend(low);
    let client = Client::connect_scoped(&url, &scope).unwrap();
    client.append(&all).unwrap();
    drop(client);
    let mut first = start(&setup, &url, "first", &scope);
    assert!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .filter(|c| c.event == "opened")
            .count()
            == HOSTS.len()),
        "not every open delivered:\n{}",
        first.log()
    );
    first.kill9();
    // The registry's master restarts empty; the alert state (on another
    // master) and the streams of the hosts on the other masters survive.
    cluster.restart_node_empty(registry);
    let survivors: Vec<&str> = HOSTS
        .iter()
        .copied()
        .filter(|h| cluster.owner_of(&format!("{scope}:ticks:{{{h}}}")) != registry)
        .collect();
    assert!(
        !survivors.is_empty(),
        "every host's stream was on the lost shard"
    );
    let second = start(&setup, &url, "second", &scope);
    assert!(
        wait_until(Duration::from_secs(40), || {
            let resolved: BTreeSet<String> = setup
                .calls()
                .into_iter()
                .filter(|c| c.event == "resolved")
                .map(|c| c.host)
                .collect();
            survivors.iter().all(|h| resolved.contains(*h))
        }),
        "a host whose stream survived got no resolve (survivors {survivors:?}):\n{}",
        second.log()
    );
    assert!(
        second.log().contains("re-registered hosts"),
        "{}",
        second.log()
    );
    // For the hosts whose ticks survived, exactly what replay expects; one
    // id per subject for all (a host whose ticks were all lost has no tick
    // left, so the new leader forgets it and resolves its incident at once,
    // earlier than replay over the lost ticks says).
    let expected = setup.replay(Path::new(BIN), &all).unwrap();
    let of_survivors = |v: Vec<Transition>| -> Vec<Transition> {
        v.into_iter()
            .filter(|t| survivors.contains(&t.2.as_str()))
            .collect()
    };
    assert_eq!(
        of_survivors(delivered(&setup)),
        of_survivors(sorted(expected))
    );
}

/// `bp-alerter ARGS` against `url` (scope `bp`), as user `ops`.
fn cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("REDIS_URL", url)
        .env("CLUSTER_ENABLED", "true")
        .env("BP_REDIS_SCOPE", "bp")
        .env("USER", "ops")
        .output()
        .unwrap()
}

/// Records each call as its `Call` line and its whole stdin payload (one
/// JSON line in `hook.out.json`).
const PAYLOAD_HOOK: &str = "#!/bin/sh\npayload=$(cat)\nprintf '%s\\n' \"$payload\" >> 'OUT'.json\nprintf '%s|%s|%s|%s|%s|%s|%s\\n' \"$BP_IDEMPOTENCY_KEY\" \"$BP_INCIDENT_EVENT\" \"$BP_INCIDENT_RULE_NAME\" \"$BP_INCIDENT_HOST_NAME\" \"$BP_INCIDENT_START_TIME\" \"$BP_INCIDENT_END_TIME\" \"${#payload}\" >> 'OUT'\n";

fn payloads(setup: &Setup) -> Vec<Value> {
    std::fs::read_to_string(setup.dir().join("hook.out.json"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The store-loss drill with a silence, an acknowledgement and a held open:
/// Redis comes back empty while the open is held; the leader writes back
/// the silence and the acknowledgement (same versions) with the held
/// state, keeps holding, and delivers the open once when the CLI expires
/// the silence — then the resolve, with `acknowledgedBy`.
#[test]
#[allow(clippy::too_many_lines)] // one drill, step by step
fn redis_restarted_empty_while_an_open_is_held_keeps_the_silence_the_ack_and_the_hold() {
    use metrics_model::store::{AlertStore as _, RecordKind};
    let _heavy = heavy_test_lock();
    let mut redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(RULES, PAYLOAD_HOOK, &json!({})).unwrap();
    let o = cli(
        &url,
        &[
            "silence",
            "add",
            "--rule",
            "High*",
            "--host",
            "node-h",
            "--for",
            "1h",
            "--comment",
            "reboot",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let silence = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let t0 = start_in(2000);
    let mut high = series("node-h", t0, "cpu.usage", &[(30, 90.0)]);
    Client::connect(&url).unwrap().append(&high).unwrap();
    let leader = start(&setup, &url, "leader", "bp");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(redis_store::RedisStore::connect(
            redis_store::RedisOptions::new(metrics_model::RedisUrl::parse(&url).unwrap(), "bp"),
        ))
        .unwrap();
    let held = || {
        rt.block_on(store.load())
            .is_ok_and(|s| s.states.iter().any(|(_, v)| v.contains(r#""held":true"#)))
    };
    assert!(
        wait_until(Duration::from_secs(30), held),
        "no held open:\n{}",
        leader.log()
    );
    let id = open_ids(&url, "bp")
        .into_iter()
        .next()
        .expect("an open incident");
    let o = cli(&url, &["ack", &id, "--comment", "looking"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = |kind| {
        rt.block_on(store.records(kind))
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.version, r.json))
            .collect::<Vec<_>>()
    };
    let silences = before(RecordKind::Silence);
    let acks = before(RecordKind::Acknowledgement);
    assert_eq!((silences.len(), acks.len()), (1, 1));
    // Let the leader read the acknowledgement into its mirror.
    std::thread::sleep(Duration::from_secs(2));

    redis.stop();
    redis.restart(); // no persistence: empty
    assert_eq!(redis.cli(&["dbsize"]).trim(), "0", "Redis came back empty");
    assert!(
        wait_until(Duration::from_secs(10), || leader
            .log()
            .contains("wrote this alerter's state back")),
        "no write-back:\n{}",
        leader.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || before(RecordKind::Silence)
            == silences
            && before(RecordKind::Acknowledgement) == acks),
        "the silence and the acknowledgement were not written back as they were: {:?} {:?}\n{}",
        before(RecordKind::Silence),
        before(RecordKind::Acknowledgement),
        leader.log()
    );
    assert!(held(), "the held flag was not written back");
    assert_eq!(open_ids(&url, "bp"), BTreeSet::from([id.clone()]));
    // `bp-alerter incidents` shows the hold and the acknowledgement.
    let listed = incidents(&url, "bp").unwrap();
    assert_eq!(listed["open"][0]["held"], true, "{listed}");
    assert_eq!(listed["open"][0]["acknowledged"]["by"], "ops", "{listed}");
    assert_eq!(
        listed["open"][0]["acknowledged"]["comment"], "looking",
        "{listed}"
    );
    let table = cli(&url, &["incidents"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().any(|l| l.contains(&id)
            && l.contains("held (muted, not notified yet)")
            && l.contains("acknowledged by ops")),
        "{table}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        setup.calls().is_empty(),
        "a held open was delivered: {:?}",
        setup.calls()
    );

    let o = cli(&url, &["silence", "expire", &silence]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        wait_until(Duration::from_secs(20), || setup
            .calls()
            .iter()
            .any(|c| c.event == "opened")),
        "the held open was not released:\n{}",
        leader.log()
    );
    let low = series("node-h", t0 + 30_000, "cpu.usage", &[(6, 10.0)]);
    Client::connect(&url).unwrap().append(&low).unwrap();
    assert!(
        wait_until(Duration::from_mins(1), || setup
            .calls()
            .iter()
            .any(|c| c.event == "resolved")),
        "the resolve was never delivered:\n{}",
        leader.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let got = delivered(&setup);
    high.extend(low);
    let expected = setup.replay(Path::new(BIN), &high).unwrap();
    assert_eq!(
        got,
        sorted(expected),
        "one open (its original start) and one resolve"
    );
    let p = payloads(&setup);
    let resolve = p.iter().find(|v| v["event"] == "resolved").unwrap();
    assert_eq!(resolve["acknowledgedBy"], "ops", "{resolve}");
    assert!(
        p.iter()
            .find(|v| v["event"] == "opened")
            .unwrap()
            .get("acknowledgedBy")
            .is_none()
    );
}
