//! Fault injection with real processes (issue 6, item 2): a real
//! `redis-server`, the release `bp-collector` and `bp-alerter` binaries and a
//! real hook process. Each scenario injects one fault, measures what was
//! lost or duplicated, and the run ends with a markdown table.
//!
//! 1. `redis-kill`: Redis (append-only, `appendfsync always`) is killed with
//!    SIGKILL while `bp-collector` ticks every second, and restarted on the
//!    same port after a few seconds. Counts the ticks whose time falls in
//!    the outage (produced while Redis was down) and how many of them are
//!    stored after the restart; also gaps and duplicates over the whole run.
//! 2. `alerter-kill`: `bp-alerter` is killed (`kill -9`) right after it
//!    delivered an "opened"; a new one is started. Duplicate opens and lost
//!    resolves against `bp-alerter replay` of the same ticks.
//! 3. `leader-kill`: two alerters; the leader is killed. Takeover time (kill
//!    to the standby holding the lease) and deliveries: unique by
//!    idempotency key vs replay, redeliveries of the same key, other
//!    duplicates.
//! 4. `hanging-hook`: the hook runs `sleep 600` (timeout 1 s, one attempt).
//!    Worst evaluation lag while the hooks hang, and dead letters vs the
//!    transitions replay expects.
//! 5. `redis-unreachable`: `bp-alerter` starts while its Redis (with a
//!    password) is down; retries logged, still running, password not in the
//!    log; then Redis starts and the alerter takes the lease.
//! 6. `redis-empty`: Redis (no persistence) restarted empty while an
//!    incident is open and the leader holds fencing token 1, no standby
//!    (`tests/store_loss.rs`). Time from Redis being back to
//!    `bp-alerter incidents --json` showing the open incident's id again
//!    (at most 5 s), incident ids delivered for the subject (1), resolves
//!    (1), transitions vs replay, same-key redeliveries, the leader's
//!    write-back log line.
//! 7. `redis-empty-standby`: the same with the leader at token 6 and a
//!    second alerter standing by, which must never log "now active".
//! 8. `cluster-empty`: a three-master Redis Cluster; the master holding the
//!    alert state and the host registry (a key scope chosen so) restarted
//!    empty while six hosts' incidents are open. Time until every open
//!    incident shows again, transitions vs replay, redeliveries.
//! 9. `commit-window`: every alerter runs with the test-only failpoint
//!    `BP_FAILPOINT=after-commit` (it aborts right after committing
//!    transitions, before the acknowledgement); a new one takes over each
//!    time, then one without the failpoint drains the outbox
//!    (`tests/commit_window.rs`; 10 cycles, 20 kills, 5 cycles with
//!    `--quick`). Keys delivered, hook calls, same-key redeliveries per
//!    kill, empty or partial payloads, hook processes left alive.
//! 10. `hook-alerter-kill`: `kill -9` of the alerter while its hook (with a
//!     child of its own) runs (`tests/hook_runner.rs`): how soon the hook and
//!     its child are gone, then a second alerter redelivers the key, never
//!     running two copies of one key at once (`/proc` sampled every 50 ms).
//!
//! Every wait is bounded; every process is killed on the way out. Only
//! loopback. Exit status 1 when a scenario lost or duplicated something or
//! could not run.
//!
//! `scripts/faults` builds and runs it:
//! `cargo build --release -p bp-alerter -p bp-collector --bins --example faults && target/release/examples/faults [--quick] [--only NAME]`
//! (`--quick`: a 3 s Redis outage instead of 6 s, 5 commit-window cycles
//! instead of 10).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use metrics_model::Tick;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::now_ms;
use redis_store::RedisCursor;
use serde_json::{Value, json};
use test_support::harness::{
    Call, Client, HANGING_HOOK, Proc, RECORD_HOOK, SCOPE, Setup, Transition, collector_args, dedup,
    series, start_in,
};
use test_support::{RedisCluster, RedisServer, RedisServerOptions, heavy_test_lock, wait_until};

const RULES: &str = r#"[
  { "name": "High CPU", "field": "cpu.usage", "aggregation": "avg", "operand": "equalOrMoreThan",
    "value": 80, "timeframe": "3s", "cooldown": "6s" }
]"#;

/// One line of the summary table.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    injected: String,
    measured: String,
    lost: String,
    ok: bool,
}

#[derive(Debug)]
struct Bins {
    alerter: PathBuf,
    collector: PathBuf,
}

impl Bins {
    /// `bp-alerter run` as node `name` with `setup`'s config.
    fn alerter(&self, setup: &Setup, url: &str, name: &str) -> Result<Proc> {
        Ok(setup.alerter(&self.alerter, url, name)?)
    }

    /// [`Bins::alerter`] with these environment variables added.
    fn alerter_with(
        &self,
        setup: &Setup,
        url: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<Proc> {
        Ok(setup.alerter_with(&self.alerter, url, name, env)?)
    }

    /// `bp-alerter incidents --json` against `url` with key scope `scope`.
    fn incidents(&self, url: &str, scope: &str) -> Option<Value> {
        let out = Command::new(&self.alerter)
            .args(["incidents", "--json"])
            .env("REDIS_URL", url)
            .env("BP_REDIS_SCOPE", scope)
            .env_remove("CLUSTER_ENABLED")
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The ids of the open incidents `bp-alerter incidents` shows (empty
    /// when it fails).
    fn open_ids(&self, url: &str, scope: &str) -> BTreeSet<String> {
        self.incidents(url, scope)
            .and_then(|v| {
                v["open"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|i| i["id"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// What `bp-alerter replay` says of `ticks`, sorted.
    fn replay(&self, setup: &Setup, ticks: &[Tick]) -> Result<Vec<Transition>> {
        setup
            .replay(&self.alerter, ticks)
            .context("bp-alerter replay")
    }
}

/// A scenario's name and body.
type Scenario<'a> = (&'static str, Box<dyn Fn() -> Result<Row> + 'a>);

fn transitions(calls: &[Call]) -> Vec<Transition> {
    let mut v: Vec<_> = calls.iter().map(Call::transition).collect();
    v.sort();
    v
}

/// Expected transitions missing from `got`, and transitions in `got` not expected.
fn diff(expected: &[Transition], got: &[Transition]) -> (usize, usize) {
    let count = |v: &[Transition]| {
        v.iter().fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t.clone()).or_insert(0usize) += 1;
            m
        })
    };
    let (e, g) = (count(expected), count(got));
    let missing = e
        .iter()
        .map(|(k, n)| n.saturating_sub(*g.get(k).unwrap_or(&0)))
        .sum();
    let extra = g
        .iter()
        .map(|(k, n)| n.saturating_sub(*e.get(k).unwrap_or(&0)))
        .sum();
    (missing, extra)
}

fn redis_pid(redis: &RedisServer) -> Result<u32> {
    redis
        .cli(&["info", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .context("no process_id in INFO server")
}

/// 1. Redis SIGKILLed and restarted while `bp-collector` ticks every second.
fn redis_kill(bins: &Bins, outage: Duration) -> Result<Row> {
    let mut redis = RedisServer::start_with(RedisServerOptions {
        appendonly: true,
        ..RedisServerOptions::default()
    });
    let url = redis.url();
    let dir = tempfile::Builder::new().prefix("bp-faults-").tempdir()?;
    let mut cmd = Command::new(&bins.collector);
    cmd.args(collector_args("fault-c", "off", "127.0.0.1:0"))
        .env("REDIS_URL", &url)
        .env("RUST_LOG", "info");
    let mut collector = Proc::spawn(cmd, dir.path().join("collector.log"))?;
    let host: metrics_model::HostName = "fault-c".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let stored = |c: &Client| -> Vec<Tick> {
        c.rt.block_on(c.store.range(&host, 0, now_ms() + 86_400_000))
            .unwrap_or_default()
    };
    {
        let c = Client::connect(&url)?;
        ensure!(
            wait_until(Duration::from_secs(30), || stored(&c).len() >= 3),
            "no ticks before the outage:\n{}",
            collector.log()
        );
    }
    let pid = redis_pid(&redis)?;
    let killed_at = now_ms();
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -9 redis-server {pid} failed");
    std::thread::sleep(outage);
    redis.restart();
    let back_at = now_ms();
    let c = Client::connect(&url)?;
    let flushed = wait_until(Duration::from_secs(30), || {
        stored(&c).last().is_some_and(|t| t.ts >= back_at + 2000)
    });
    ensure!(
        flushed,
        "no ticks after Redis came back:\n{}",
        collector.log()
    );
    ensure!(
        collector.running(),
        "bp-collector exited:\n{}",
        collector.log()
    );
    collector.terminate();
    let all = stored(&c);
    let arrivals =
        c.rt.block_on(c.store.read_new(&RedisCursor::default()))?
            .ticks;
    let first = all.first().context("no ticks")?.ts;
    let last = all.last().context("no ticks")?.ts;
    let slots = (last - first) / 1000 + 1;
    let in_outage = |ts: i64| ts > killed_at && ts < back_at;
    let produced_down = (0..slots)
        .map(|i| first + i * 1000)
        .filter(|&ts| in_outage(ts))
        .count();
    let stored_down = all.iter().filter(|t| in_outage(t.ts)).count();
    let unique: BTreeSet<i64> = arrivals.iter().map(|t| t.ts).collect();
    let duplicates = arrivals.len() - unique.len();
    let gaps = slots as usize - all.len();
    let lost_ticks = produced_down.saturating_sub(stored_down);
    let buffered_log = collector.log().contains("store write failed; buffering");
    Ok(Row {
        scenario: "Redis SIGKILL + restart during collection",
        injected: format!(
            "`kill -9` redis-server (appendonly, fsync always), down {:.1} s, restarted on the same port; bp-collector at 1 s",
            (back_at - killed_at) as f64 / 1000.0
        ),
        measured: format!(
            "{produced_down} ticks produced while down, {stored_down} of them stored after restart; {} ticks in run, {gaps} gaps, {duplicates} stored twice; buffering logged: {buffered_log}",
            all.len()
        ),
        lost: format!("lost {lost_ticks}, duplicated {duplicates}"),
        ok: lost_ticks == 0 && gaps == 0 && duplicates == 0 && produced_down > 0,
    })
}

/// 2. `kill -9` of the alerter mid-incident, then a new one.
fn alerter_kill(bins: &Bins) -> Result<Row> {
    let redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(RULES, RECORD_HOOK, &json!({}))?;
    let t0 = start_in(3000);
    let ticks = series("node-x", t0, "cpu.usage", &[(10, 90.0), (12, 10.0)]);
    let c = Client::connect(&url)?;
    c.append(&ticks)?;
    let expected = bins.replay(&setup, &ticks)?;
    let mut first = bins.alerter(&setup, &url, "first")?;
    ensure!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "opened")),
        "no open delivered:\n{}",
        first.log()
    );
    first.kill9();
    let killed = Instant::now();
    let second = bins.alerter(&setup, &url, "second")?;
    let expected_resolves = expected.iter().filter(|t| t.0 == "resolved").count();
    let resolved = wait_until(Duration::from_secs(40), || {
        dedup(&setup.calls())
            .iter()
            .filter(|c| c.event == "resolved")
            .count()
            >= expected_resolves
    });
    let resolve_after = killed.elapsed();
    // Time for a late duplicate to show.
    std::thread::sleep(Duration::from_secs(2));
    drop(second);
    let calls = setup.calls();
    let unique = dedup(&calls);
    let opens: BTreeSet<&str> = unique
        .iter()
        .filter(|c| c.event == "opened")
        .filter_map(|c| c.key.split(':').next())
        .collect();
    let expected_opens = expected.iter().filter(|t| t.0 == "opened").count();
    let delivered_resolves = unique.iter().filter(|c| c.event == "resolved").count();
    let dup_opens = opens.len().saturating_sub(expected_opens);
    let lost_resolves = expected_resolves.saturating_sub(delivered_resolves);
    let (missing, extra) = diff(&expected, &transitions(&unique));
    Ok(Row {
        scenario: "alerter `kill -9` mid-incident",
        injected:
            "`kill -9` bp-alerter right after it delivered \"opened\"; a new bp-alerter started"
                .into(),
        measured: format!(
            "replay expects {expected_opens} open + {expected_resolves} resolve; delivered {} open, {delivered_resolves} resolve ({} calls, {} same-key redeliveries); resolve {} {:.1} s after the kill",
            opens.len(),
            calls.len(),
            calls.len() - unique.len(),
            if resolved { "arrived" } else { "missing" },
            resolve_after.as_secs_f64()
        ),
        lost: format!("duplicate opens {dup_opens}, lost resolves {lost_resolves}"),
        ok: dup_opens == 0 && lost_resolves == 0 && missing == 0 && extra == 0,
    })
}

/// 3. The leader is killed while a standby runs.
fn leader_kill(bins: &Bins) -> Result<Row> {
    let redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(RULES, RECORD_HOOK, &json!({}))?;
    let t0 = start_in(4000);
    let ticks = series(
        "node-y",
        t0,
        "cpu.usage",
        &[(4, 90.0), (10, 10.0), (4, 90.0), (10, 10.0), (4, 90.0)],
    );
    let last = ticks.last().context("ticks")?.ts;
    let c = Client::connect(&url)?;
    c.append(&ticks)?;
    let expected = bins.replay(&setup, &ticks)?;
    let mut a = bins.alerter(&setup, &url, "alerter-a")?;
    let mut b = bins.alerter(&setup, &url, "alerter-b")?;
    let holder = || {
        c.rt.block_on(c.store.lease())
            .ok()
            .flatten()
            .map(|l| l.holder)
    };
    ensure!(
        wait_until(Duration::from_secs(20), || holder().is_some()),
        "nobody took the lease"
    );
    ensure!(
        wait_until(Duration::from_secs(40), || !setup.calls().is_empty()),
        "nothing delivered:\n{}\n{}",
        a.log(),
        b.log()
    );
    let leader = holder().context("lease lost")?;
    let a_pid = a.pid();
    let (victim, survivor_pid) = if leader.contains(&format!(":{a_pid}:")) {
        (&mut a, b.pid())
    } else {
        (&mut b, a_pid)
    };
    victim.kill9();
    let killed = Instant::now();
    let took = wait_until(Duration::from_secs(20), || {
        holder().is_some_and(|h| h.contains(&format!(":{survivor_pid}:")))
    });
    let takeover = killed.elapsed();
    ensure!(took, "the standby never took over");
    let done = wait_until(
        Duration::from_secs((last - now_ms()).max(0) as u64 / 1000 + 30),
        || dedup(&setup.calls()).len() >= expected.len() && now_ms() > last + 2000,
    );
    std::thread::sleep(Duration::from_secs(1));
    drop(a);
    drop(b);
    let calls = setup.calls();
    let unique = dedup(&calls);
    let (missing, extra) = diff(&expected, &transitions(&unique));
    // Several calls with one key must carry the same transition.
    let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in &calls {
        by_key.entry(c.key.as_str()).or_default().push(c);
    }
    let conflicting = by_key
        .values()
        .filter(|v| {
            v.windows(2)
                .any(|w| w[0].event != w[1].event || w[0].at != w[1].at)
        })
        .count();
    let redeliveries = calls.len() - unique.len();
    Ok(Row {
        scenario: "leader killed with a standby",
        injected:
            "two bp-alerters (watcher 1 s); `kill -9` of the lease holder after its first delivery"
                .into(),
        measured: format!(
            "takeover {} ms (lease held by the standby); replay expects {} transitions, {} delivered (unique keys), {redeliveries} same-key redeliveries{}",
            takeover.as_millis(),
            expected.len(),
            unique.len(),
            if done { "" } else { " (timed out waiting)" }
        ),
        lost: format!(
            "duplicates beyond same-key redeliveries {}, missing {missing}",
            extra + conflicting
        ),
        ok: done && missing == 0 && extra == 0 && conflicting == 0,
    })
}

/// 4. A hook that hangs.
fn hanging_hook(bins: &Bins) -> Result<Row> {
    let redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(
        RULES,
        HANGING_HOOK,
        &json!({ "timeout": "1s", "maxAttempts": 1 }),
    )?;
    let t0 = start_in(2000);
    let ticks = series(
        "node-h",
        t0,
        "cpu.usage",
        &[(3, 90.0), (6, 10.0), (3, 90.0)],
    );
    let last = ticks.last().context("ticks")?.ts;
    let c = Client::connect(&url)?;
    c.append(&ticks)?;
    let expected = bins.replay(&setup, &ticks)?;
    let alerter = bins.alerter(&setup, &url, "alerter-h")?;
    let evaluated = || {
        c.rt.block_on(c.store.load())
            .ok()
            .and_then(|s| s.last_evaluated)
            .unwrap_or(0)
    };
    // Worst lag of the evaluated instant behind the clock, sampled every
    // 200 ms while the hooks hang (after the first evaluation).
    ensure!(
        wait_until(Duration::from_secs(20), || evaluated() > 0),
        "no evaluation:\n{}",
        alerter.log()
    );
    let mut worst_lag = 0;
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end && evaluated() <= last + 3000 {
        worst_lag = worst_lag.max(now_ms() - evaluated());
        std::thread::sleep(Duration::from_millis(200));
    }
    let kept_schedule = evaluated() > last + 3000;
    let dead_ok = wait_until(Duration::from_secs(20), || {
        c.rt.block_on(c.store.dead_letters(100))
            .map_or(0, |d| d.len())
            >= expected.len()
    });
    let dead = c.rt.block_on(c.store.dead_letters(100))?;
    let timed_out = dead
        .iter()
        .filter(|d| d.error.contains("timed out") || d.error.contains("timeout"))
        .count();
    let outbox = c.rt.block_on(c.store.outbox_len())?;
    drop(alerter);
    Ok(Row {
        scenario: "hook hangs",
        injected:
            "hook is `sleep 600`; timeout 1 s, maxAttempts 1; watcher 1 s, evaluationDelay 300 ms"
                .into(),
        measured: format!(
            "worst evaluation lag {worst_lag} ms while hooks hung; {} dead letters for {} transitions ({timed_out} timed out){}; outbox left {outbox}",
            dead.len(),
            expected.len(),
            if dead_ok { "" } else { " (timed out waiting)" }
        ),
        lost: format!(
            "transitions neither delivered nor dead-lettered {}",
            expected.len().saturating_sub(dead.len())
        ),
        ok: kept_schedule && dead_ok && timed_out == dead.len() && outbox == 0 && worst_lag < 3000,
    })
}

/// 5. Redis unreachable when the alerter starts.
fn redis_unreachable(bins: &Bins) -> Result<Row> {
    let mut redis = RedisServer::start_with(RedisServerOptions {
        requirepass: Some("s3cret-pw".into()),
        ..RedisServerOptions::default()
    });
    let url = redis.url_with_auth("default", "s3cret-pw");
    redis.stop();
    let setup = Setup::new(RULES, RECORD_HOOK, &json!({}))?;
    let mut alerter = bins.alerter(&setup, &url, "patient")?;
    let retries = || {
        alerter_log_retries(
            &std::fs::read_to_string(setup.dir().join("patient.log")).unwrap_or_default(),
        )
    };
    let down_for = Duration::from_secs(5);
    let started = Instant::now();
    while started.elapsed() < down_for {
        std::thread::sleep(Duration::from_millis(200));
    }
    let n = retries();
    let alive = alerter.running();
    let leaked = alerter.log().contains("s3cret-pw");
    redis.restart();
    let back = Instant::now();
    let c = Client::connect(&url)?;
    let active = wait_until(Duration::from_secs(30), || {
        c.rt.block_on(c.store.lease())
            .ok()
            .flatten()
            .is_some_and(|l| l.holder.starts_with("patient:"))
    });
    let to_active = back.elapsed();
    let alive_after = alerter.running();
    let log = strip_ansi(&alerter.log());
    let first_line = log
        .lines()
        .find_map(|l| l.find("cannot connect to Redis").map(|i| l[i..].to_owned()))
        .unwrap_or_default();
    drop(alerter);
    Ok(Row {
        scenario: "Redis unreachable at alerter start-up",
        injected: "bp-alerter started with Redis (password) down for 5 s, then Redis started"
            .into(),
        measured: format!(
            "{n} retries logged, running: {alive}, password in log: {leaked}; active {} ms after Redis came; log: `{}`",
            to_active.as_millis(),
            first_line
                .chars()
                .take(140)
                .collect::<String>()
                .replace('`', "'")
        ),
        lost: format!("crashes {}", u8::from(!(alive && alive_after))),
        ok: n >= 2 && alive && alive_after && !leaked && active,
    })
}

/// Rules of the store-loss drills (`tests/store_loss.rs`): no cooldown.
const STORE_RULES: &str = r#"[{ "name": "High CPU", "field": "cpu.usage", "aggregation": "avg",
    "operand": "equalOrMoreThan", "value": 80, "timeframe": "3s" }]"#;

/// Records `key|event|rule|host|start|end|payload bytes` per call (the
/// fields `Call::parse` reads, then the size of the JSON read on stdin).
const PAYLOAD_HOOK: &str = "#!/bin/sh\npayload=$(cat)\nprintf '%s|%s|%s|%s|%s|%s|%s\\n' \"$BP_IDEMPOTENCY_KEY\" \"$BP_INCIDENT_EVENT\" \"$BP_INCIDENT_RULE_NAME\" \"$BP_INCIDENT_HOST_NAME\" \"$BP_INCIDENT_START_TIME\" \"$BP_INCIDENT_END_TIME\" \"${#payload}\" >> 'OUT'\n";

/// The hosts of the cluster drill.
const HOSTS: [&str; 6] = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"];

/// [`PAYLOAD_HOOK`]'s calls with the payload size of each.
fn calls_with_payload(setup: &Setup) -> Vec<(Call, usize)> {
    let text = std::fs::read_to_string(setup.dir().join("hook.out")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let bytes = l.rsplit('|').next()?.parse().ok()?;
            Some((Call::parse(l)?, bytes))
        })
        .collect()
}

/// The incident ids (the part of the idempotency key before `:`) of
/// `calls`, per (rule, host).
fn ids_per_subject(calls: &[Call]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for c in calls {
        let id = c.key.split(':').next().unwrap_or_default().to_owned();
        ids.entry((c.rule.clone(), c.host.clone()))
            .or_default()
            .insert(id);
    }
    ids
}

/// High CPU for 6 s from `t0` on each host (written before the loss), then
/// low for 6 s (written after).
fn phases(hosts: &[&str], t0: i64) -> (Vec<Tick>, Vec<Tick>) {
    let mut high = Vec::new();
    let mut low = Vec::new();
    for h in hosts {
        high.extend(series(h, t0, "cpu.usage", &[(6, 90.0)]));
        low.extend(series(h, t0 + 6_000, "cpu.usage", &[(6, 10.0)]));
    }
    (high, low)
}

/// Whether process `pid` runs (a zombie is dead for our purpose).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

/// The processes (not zombies) whose command line has an argument
/// containing `needle`, with their arguments.
fn processes_with_arg(needle: &str) -> Vec<(String, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid = e.ok()?.file_name().into_string().ok()?;
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (args.iter().any(|a| a.contains(needle)) && alive(&pid)).then_some((pid, args))
    })
    .collect()
}

/// The value of `var` in the environment of process `pid`.
fn env_of(pid: &str, var: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    environ.split(|b| *b == 0).find_map(|kv| {
        String::from_utf8_lossy(kv)
            .strip_prefix(&prefix)
            .map(str::to_owned)
    })
}

/// Samples `/proc` every 50 ms until stopped: the most copies of the hook
/// `script` (the shell running it, not its runner) that ran at once per
/// idempotency key, and the number of samples taken.
fn sample_hook_copies(
    script: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(BTreeMap<String, usize>, usize)> {
    std::thread::spawn(move || {
        let mut most: BTreeMap<String, usize> = BTreeMap::new();
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut now: BTreeMap<String, usize> = BTreeMap::new();
            for (pid, args) in processes_with_arg(&script) {
                let is_runner = args.iter().any(|a| a == "hook-runner");
                if is_runner || args.get(1) != Some(&script) {
                    continue;
                }
                let key = env_of(&pid, "BP_IDEMPOTENCY_KEY").unwrap_or_else(|| "?".into());
                *now.entry(key).or_default() += 1;
            }
            for (k, n) in now {
                let m = most.entry(k).or_default();
                *m = (*m).max(n);
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (most, samples)
    })
}

/// 6. and 7. Redis restarted empty with an incident open while the leader
///    holds fencing token `token`, with or without a standby
///    (`tests/store_loss.rs`, `restarted_empty`).
#[allow(clippy::too_many_lines)] // one drill, measured step by step
fn redis_empty(bins: &Bins, token: u64, with_standby: bool) -> Result<Row> {
    let mut redis = RedisServer::start();
    let url = redis.url();
    if token > 1 {
        redis.cli(&["set", "{bp:alerts}:token", &(token - 1).to_string()]);
    }
    let setup = Setup::new(STORE_RULES, PAYLOAD_HOOK, &json!({}))?;
    let t0 = start_in(2000);
    let (high, low) = phases(&["node-s"], t0);
    Client::connect(&url)?.append(&high)?;
    let leader = bins.alerter(&setup, &url, "leader")?;
    ensure!(
        wait_until(Duration::from_secs(20), || redis
            .cli(&["get", "{bp:alerts}:lease"])
            .starts_with(&format!("{token}:leader:"))),
        "the leader did not take token {token}:\n{}",
        leader.log()
    );
    let standby = if with_standby {
        Some(bins.alerter(&setup, &url, "standby")?)
    } else {
        None
    };
    ensure!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .any(|c| c.event == "opened")),
        "no open delivered:\n{}",
        leader.log()
    );
    let id = setup.calls()[0]
        .key
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let before = bins.open_ids(&url, SCOPE);
    ensure!(
        before == BTreeSet::from([id.clone()]),
        "before the restart `bp-alerter incidents` shows {before:?}, not {id}"
    );

    redis.stop();
    redis.restart(); // no persistence: empty
    let back = Instant::now();
    let keys_at_restart = redis.cli(&["dbsize"]).trim().to_owned();
    ensure!(
        keys_at_restart == "0",
        "Redis did not come back empty ({keys_at_restart} keys)"
    );
    let shown = wait_until(Duration::from_secs(30), || {
        bins.open_ids(&url, SCOPE).contains(&id)
    });
    let shown_after = back.elapsed();
    Client::connect(&url)?.append(&low)?;
    let resolved = wait_until(Duration::from_secs(30), || {
        setup.calls().iter().any(|c| c.event == "resolved")
    });
    // Let a stray second open, if any, show.
    std::thread::sleep(Duration::from_secs(2));
    let log = leader.log();
    let standby_active = standby
        .as_ref()
        .is_some_and(|s| s.log().contains("now active"));
    let counter: u64 = redis
        .cli(&["get", "{bp:alerts}:token"])
        .trim()
        .parse()
        .unwrap_or(0);
    drop(standby);
    drop(leader);
    let with_bytes = calls_with_payload(&setup);
    let short = with_bytes.iter().filter(|(_, b)| *b <= 50).count();
    let calls: Vec<Call> = with_bytes.into_iter().map(|(c, _)| c).collect();
    let unique = dedup(&calls);
    let ids = ids_per_subject(&unique)
        .get(&("High CPU".to_owned(), "node-s".to_owned()))
        .map_or(0, BTreeSet::len);
    let resolve_keys = unique.iter().filter(|c| c.event == "resolved").count();
    let mut all = high;
    all.extend(low);
    let expected = bins.replay(&setup, &all)?;
    let (missing, extra) = diff(&expected, &transitions(&unique));
    let redeliveries = calls.len() - unique.len();
    let wrote_back = log.contains("wrote this alerter's state back");
    let shown_ok = shown && shown_after <= Duration::from_secs(5);
    Ok(Row {
        scenario: if with_standby {
            "Redis restarted empty, leader at token 6, standby running"
        } else {
            "Redis restarted empty, leader at token 1"
        },
        injected: format!(
            "Redis without persistence stopped and restarted empty while an incident was open; leader at fencing token {token}, {}",
            if with_standby {
                "a second bp-alerter standing by"
            } else {
                "no standby"
            }
        ),
        measured: format!(
            "open incident {} by `bp-alerter incidents` {} ms after Redis was back; {ids} incident id(s) delivered for the subject; {resolve_keys} resolve(s) (unique keys){}; replay expects {} transitions, {} delivered, {redeliveries} same-key redeliveries; {short} calls on a payload of ≤ 50 bytes; write-back logged: {wrote_back}; {}token counter {counter}",
            if shown {
                "shown again"
            } else {
                "NOT shown again"
            },
            shown_after.as_millis(),
            if resolved { "" } else { " (timed out waiting)" },
            expected.len(),
            unique.len(),
            if with_standby {
                format!("standby logged \"now active\": {standby_active}; ")
            } else {
                String::new()
            }
        ),
        lost: format!(
            "missing {missing}, extra {extra}, incident ids beyond the first {}",
            ids.saturating_sub(1)
        ),
        ok: shown_ok
            && ids == 1
            && resolve_keys == 1
            && missing == 0
            && extra == 0
            && short == 0
            && wrote_back
            && !standby_active
            && counter >= token,
    })
}

/// 8. The Cluster master with the alert state and the host registry
///    restarted empty while six hosts' incidents are open
///    (`tests/store_loss.rs`).
#[allow(clippy::too_many_lines)] // one drill, measured step by step
fn cluster_empty(bins: &Bins) -> Result<Row> {
    let mut cluster = RedisCluster::start();
    let url = cluster.url();
    let (scope, node) = (0..200)
        .find_map(|i| {
            let scope = format!("s{i}");
            let alerts = cluster.owner_of(&format!("{{{scope}:alerts}}:lease"));
            (alerts == cluster.owner_of(&format!("{scope}:hosts"))).then_some((scope, alerts))
        })
        .context("no scope with the alert keys and the registry on one master")?;
    let setup = Setup::new(STORE_RULES, PAYLOAD_HOOK, &json!({}))?;
    let t0 = start_in(2500);
    let (high, low) = phases(&HOSTS, t0);
    let client = Client::connect_scoped(&url, &scope)?;
    client.append(&high)?;
    let leader = bins.alerter_with(&setup, &url, "leader", &[("BP_REDIS_SCOPE", &scope)])?;
    ensure!(
        wait_until(Duration::from_secs(30), || setup
            .calls()
            .iter()
            .filter(|c| c.event == "opened")
            .count()
            == HOSTS.len()),
        "not every open delivered:\n{}",
        leader.log()
    );
    let before = bins.open_ids(&url, &scope);
    ensure!(
        before.len() == HOSTS.len(),
        "before the restart `bp-alerter incidents` shows {before:?}"
    );
    let killed = Instant::now();
    cluster.restart_node_empty(node);
    let back = Instant::now();
    let mut after = BTreeSet::new();
    let shown = wait_until(Duration::from_secs(30), || {
        after = bins.open_ids(&url, &scope);
        after.len() == HOSTS.len()
    });
    let shown_after = back.elapsed();
    drop(client);
    let client = Client::connect_scoped(&url, &scope)?;
    client.append(&low)?;
    let resolved = wait_until(Duration::from_secs(30), || {
        dedup(&setup.calls())
            .iter()
            .filter(|c| c.event == "resolved")
            .count()
            >= HOSTS.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    let wrote_back = leader.log().contains("wrote this alerter's state back");
    drop(leader);
    let with_bytes = calls_with_payload(&setup);
    let short = with_bytes.iter().filter(|(_, b)| *b <= 50).count();
    let calls: Vec<Call> = with_bytes.into_iter().map(|(c, _)| c).collect();
    let unique = dedup(&calls);
    let second_ids: usize = ids_per_subject(&unique)
        .values()
        .map(|s| s.len().saturating_sub(1))
        .sum();
    let mut all = high;
    all.extend(low);
    let expected = bins.replay(&setup, &all)?;
    let (missing, extra) = diff(&expected, &transitions(&unique));
    let redeliveries = calls.len() - unique.len();
    let same_ids = after == before;
    Ok(Row {
        scenario: "Cluster master with alert state + registry restarted empty",
        injected: format!(
            "three-master Redis Cluster, scope `{scope}` (alert keys and host registry on master {node}); that master killed and restarted empty (back after {:.1} s) with {} incidents open",
            (back - killed).as_secs_f64(),
            HOSTS.len()
        ),
        measured: format!(
            "{} of {} open incidents shown again {} ms after the master was back ({} ms after the kill), same ids: {same_ids}; replay expects {} transitions, {} delivered{}, {redeliveries} same-key redeliveries; {short} calls on a payload of ≤ 50 bytes; write-back logged: {wrote_back}",
            after.len(),
            HOSTS.len(),
            shown_after.as_millis(),
            (back - killed + shown_after).as_millis(),
            expected.len(),
            unique.len(),
            if resolved { "" } else { " (timed out waiting)" }
        ),
        lost: format!("missing {missing}, extra {extra}, second incident ids {second_ids}"),
        ok: shown
            && shown_after <= Duration::from_secs(5)
            && same_ids
            && missing == 0
            && extra == 0
            && second_ids == 0
            && short == 0
            && wrote_back,
    })
}

/// Records the payload, then `key pid bytes` per call (so a recorded call
/// has its payload file whole; a hook killed before the line is recorded
/// is redelivered); lingers a little so that kills find hooks running
/// (`tests/commit_window.rs`).
const WINDOW_HOOK: &str = "#!/bin/sh\npayload=$(cat)\nprintf '%s' \"$payload\" > \"OUT.$BP_IDEMPOTENCY_KEY.$$.json\"\nprintf '%s %s %s\\n' \"$BP_IDEMPOTENCY_KEY\" \"$$\" \"${#payload}\" >> 'OUT'\nsleep 0.3\n";

const WINDOW_RULES: &str = r#"[{ "name": "Hot", "field": "cpu.usage", "aggregation": "max",
    "operand": "equalOrMoreThan", "value": 80, "timeframe": "1s" }]"#;

/// [`WINDOW_HOOK`]'s calls: `(pid, payload bytes)` per idempotency key.
fn window_calls(out: &Path) -> BTreeMap<String, Vec<(String, usize)>> {
    let mut m: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    for line in std::fs::read_to_string(out).unwrap_or_default().lines() {
        let p: Vec<&str> = line.split(' ').collect();
        if let [key, pid, bytes] = p[..] {
            m.entry(key.to_owned())
                .or_default()
                .push((pid.to_owned(), bytes.parse().unwrap_or(0)));
        }
    }
    m
}

/// 9. Kills inside the commit → acknowledgement window
///    (`tests/commit_window.rs`).
#[allow(clippy::too_many_lines)] // one drill, measured step by step
fn commit_window(bins: &Bins, cycles: usize) -> Result<Row> {
    let redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(WINDOW_RULES, WINDOW_HOOK, &json!({ "timeout": "3s" }))?;
    let out = setup.dir().join("hook.out");
    let t0 = start_in(4000);
    let blocks: Vec<(usize, f64)> = (0..cycles).flat_map(|_| [(2, 95.0), (2, 10.0)]).collect();
    let ticks = series("drill", t0, "cpu.usage", &blocks);
    Client::connect(&url)?.append(&ticks)?;
    let expected = bins.replay(&setup, &ticks)?;
    ensure!(
        expected.len() == 2 * cycles,
        "replay expects {} transitions, not {}: {expected:?}",
        expected.len(),
        2 * cycles
    );
    // Alerters with the failpoint, one after the other: each commits
    // transitions and aborts, until every transition has been committed so.
    let mut kills = 0;
    let mut stuck = 0;
    let mut run = 0;
    let drill = Instant::now();
    let limit = Duration::from_secs(60 + 12 * cycles as u64);
    while kills < expected.len() && drill.elapsed() < limit {
        run += 1;
        let mut a = bins.alerter_with(
            &setup,
            &url,
            &format!("a{run}"),
            &[("BP_FAILPOINT", "after-commit")],
        )?;
        let started = Instant::now();
        while a.running() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if a.running() {
            a.kill9();
            stuck += 1;
        } else {
            ensure!(
                a.log().contains("BP_FAILPOINT=after-commit"),
                "alerter a{run} exited without the failpoint:\n{}",
                a.log()
            );
            kills += 1;
        }
    }
    let drill_took = drill.elapsed();
    // One without the failpoint delivers what the outbox holds. Incidents
    // are keyed `<id>:<event>`; replay cannot know the ids, so complete is
    // `cycles` incidents, each opened and resolved, no more.
    let mut last = bins.alerter(&setup, &url, "drain")?;
    let complete = |d: &BTreeMap<String, Vec<(String, usize)>>| {
        let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in d.keys() {
            if let Some((id, event)) = key.rsplit_once(':') {
                by_id.entry(id).or_default().push(event);
            }
        }
        by_id.len() == cycles && by_id.values().all(|e| e.len() == 2)
    };
    let delivered_all = wait_until(Duration::from_mins(1), || complete(&window_calls(&out)));
    last.terminate();
    let d = window_calls(&out);
    let mut calls = 0;
    let mut empty = 0;
    let mut partial = 0;
    let mut orphans = BTreeSet::new();
    for (key, runs) in &d {
        for (pid, bytes) in runs {
            calls += 1;
            if *bytes == 0 {
                empty += 1;
            }
            let payload = std::fs::read_to_string(format!("{}.{key}.{pid}.json", out.display()))
                .unwrap_or_default();
            let whole = serde_json::from_str::<Value>(&payload).is_ok_and(|v| {
                let id = v["incident"]["id"].as_str().unwrap_or_default();
                !id.is_empty() && key.starts_with(id)
            });
            if !whole {
                partial += 1;
            }
            if alive(pid) {
                orphans.insert(pid.clone());
            }
        }
    }
    // Also hook processes that never recorded a call (killed early).
    let hooks_dir = setup.dir().join("hooks").display().to_string();
    for (pid, _) in processes_with_arg(&hooks_dir) {
        orphans.insert(pid);
    }
    let redeliveries = calls - d.len();
    Ok(Row {
        scenario: "leader killed inside the commit window",
        injected: format!(
            "every bp-alerter with `BP_FAILPOINT=after-commit` (abort right after a commit, before the acknowledgement), a new one each time; {cycles} cycles of 2 s high / 2 s low; then one without the failpoint drains the outbox"
        ),
        measured: format!(
            "{kills} kills in {:.1} s ({stuck} alerters killed for not aborting); replay expects {} transitions; {} unique keys delivered{}, {calls} hook calls, {redeliveries} same-key redeliveries ({:.2} per kill); {empty} calls on an empty stdin, {partial} on a partial payload; {} hook processes alive after the drill",
            drill_took.as_secs_f64(),
            expected.len(),
            d.len(),
            if delivered_all {
                ""
            } else {
                " (not every incident opened and resolved)"
            },
            redeliveries as f64 / kills.max(1) as f64,
            orphans.len()
        ),
        lost: format!(
            "keys never delivered {}, empty {empty}, partial {partial}, orphans {}",
            expected.len().saturating_sub(d.len()),
            orphans.len()
        ),
        ok: kills == expected.len()
            && delivered_all
            && d.len() == expected.len()
            && empty == 0
            && partial == 0
            && orphans.is_empty(),
    })
}

/// A hook that logs `start`/`end <key> <pid> <ms>` lines; its first call
/// starts a long-lived child and waits for it (writing both pids to
/// `OUT.pids`), later calls linger 0.5 s and end.
const CHILD_HOOK: &str = "#!/bin/sh\ncat > /dev/null\necho \"start $BP_IDEMPOTENCY_KEY $$ $(date +%s%3N)\" >> 'OUT'\nif mkdir 'OUT.first' 2>/dev/null; then\n  sleep 60 &\n  echo \"$$ $!\" > 'OUT.pids'\n  wait\nfi\nsleep 0.5\necho \"end $BP_IDEMPOTENCY_KEY $$ $(date +%s%3N)\" >> 'OUT'\n";

/// [`CHILD_HOOK`]'s lines: `(what, key, pid, ms)`.
fn child_hook_lines(out: &Path) -> Vec<(String, String, String, i64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            match f[..] {
                [what, key, pid, ms] => Some((
                    what.to_owned(),
                    key.to_owned(),
                    pid.to_owned(),
                    ms.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

/// 10. `kill -9` of the alerter while its hook runs, then a new alerter
///     (`tests/hook_runner.rs`, `hook_processes_die_with_a_killed_alerter`).
#[allow(clippy::too_many_lines)] // one drill, measured step by step
fn hook_alerter_kill(bins: &Bins) -> Result<Row> {
    let redis = RedisServer::start();
    let url = redis.url();
    let setup = Setup::new(STORE_RULES, CHILD_HOOK, &json!({ "timeout": "30s" }))?;
    let out = setup.dir().join("hook.out");
    let pids_file = setup.dir().join("hook.out.pids");
    let script = setup.dir().join("hooks/record.sh").display().to_string();
    let t0 = start_in(2000);
    let ticks = series("node-k", t0, "cpu.usage", &[(8, 90.0), (8, 10.0)]);
    Client::connect(&url)?.append(&ticks)?;
    let expected = bins.replay(&setup, &ticks)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_hook_copies(script, stop.clone());
    let mut first = bins.alerter(&setup, &url, "first")?;
    let ran = wait_until(Duration::from_secs(40), || {
        std::fs::read_to_string(&pids_file).is_ok_and(|p| p.split_whitespace().count() == 2)
    });
    if !ran {
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        bail!("the hook never ran:\n{}", first.log());
    }
    let text = std::fs::read_to_string(&pids_file)?;
    let running: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let were_alive = running.iter().all(|p| alive(p));
    let opened_key = child_hook_lines(&out)
        .first()
        .map(|l| l.1.clone())
        .unwrap_or_default();
    first.kill9(); // SIGKILL: no cleanup of its own
    let killed = Instant::now();
    let killed_ms = now_ms();
    let mut gone = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if running.iter().all(|p| !alive(p)) {
            gone = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = bins.alerter(&setup, &url, "second")?;
    let ended = |lines: &[(String, String, String, i64)]| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l.0 == "end")
            .map(|l| l.1.clone())
            .collect()
    };
    let done = wait_until(Duration::from_secs(40), || {
        ended(&child_hook_lines(&out)).len() >= expected.len()
    });
    // Time for a late or concurrent copy to show.
    std::thread::sleep(Duration::from_secs(1));
    drop(second);
    stop.store(true, Ordering::Relaxed);
    let (most, sample_count) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the /proc sampler panicked"))?;
    let lines = child_hook_lines(&out);
    let starts = |key: &str| {
        lines
            .iter()
            .filter(|l| l.0 == "start" && l.1 == key)
            .count()
    };
    let opened_starts = starts(&opened_key);
    let redelivered_at = lines
        .iter()
        .filter(|l| l.0 == "start" && l.1 == opened_key)
        .nth(1)
        .map(|l| l.3 - killed_ms);
    let completed = ended(&lines);
    let worst_copies = most.values().copied().max().unwrap_or(0);
    let left: Vec<String> = running.iter().filter(|p| alive(p)).cloned().collect();
    let gone_ms = gone.map_or(-1, |g| g.as_millis() as i64);
    Ok(Row {
        scenario: "alerter `kill -9` while its hook runs",
        injected: "`kill -9` bp-alerter while its hook (which started `sleep 60 &` and waits) runs; hook timeout 30 s; a second bp-alerter started after the kill".into(),
        measured: format!(
            "hook and child alive before the kill: {were_alive}; both gone {} after the kill{}; key `{opened_key}` started {opened_starts} times, redelivered {} after the kill; {} of {} keys completed{}; most copies of one key at once: {worst_copies} ({sample_count} samples of /proc, 50 ms)",
            if gone.is_some() {
                format!("{gone_ms} ms")
            } else {
                "NOT within 10 s".into()
            },
            if left.is_empty() {
                String::new()
            } else {
                format!(" (still alive: {left:?})")
            },
            redelivered_at.map_or_else(|| "never".into(), |ms| format!("{ms} ms")),
            completed.len(),
            expected.len(),
            if done { "" } else { " (timed out waiting)" }
        ),
        lost: format!(
            "hook processes outliving the alerter {}, keys not delivered {}, concurrent copies {}",
            left.len(),
            expected.len().saturating_sub(completed.len()),
            worst_copies.saturating_sub(1)
        ),
        ok: were_alive
            && gone.is_some_and(|g| g <= Duration::from_secs(1))
            && opened_starts >= 2
            && completed.contains(&opened_key)
            && completed.len() >= expected.len()
            && worst_copies == 1,
    })
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn alerter_log_retries(log: &str) -> usize {
    log.matches("cannot connect to Redis; retrying").count()
}

const USAGE: &str = "usage: faults [--quick] [--only redis-kill|alerter-kill|leader-kill|hanging-hook|redis-unreachable|redis-empty|redis-empty-standby|cluster-empty|commit-window|hook-alerter-kill]";

fn main() {
    let code = match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("faults: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run() -> Result<bool> {
    let mut only: Option<String> = None;
    let mut quick = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => only = Some(it.next().context("--only needs a scenario name")?),
            "--quick" => quick = true,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let outage = Duration::from_secs(if quick { 3 } else { 6 });
    let cycles = if quick { 5 } else { 10 };
    let me = std::env::current_exe().context("cannot find this executable")?;
    let dir = me
        .parent()
        .and_then(Path::parent)
        .context("cannot locate target/<profile>")?;
    let bins = Bins {
        alerter: dir.join("bp-alerter"),
        collector: dir.join("bp-collector"),
    };
    for b in [&bins.alerter, &bins.collector] {
        if !b.is_file() {
            bail!(
                "{} not found: cargo build --release -p bp-alerter -p bp-collector --bins",
                b.display()
            );
        }
    }
    let scenarios: Vec<Scenario> = vec![
        ("redis-kill", Box::new(|| redis_kill(&bins, outage))),
        ("alerter-kill", Box::new(|| alerter_kill(&bins))),
        ("leader-kill", Box::new(|| leader_kill(&bins))),
        ("hanging-hook", Box::new(|| hanging_hook(&bins))),
        ("redis-unreachable", Box::new(|| redis_unreachable(&bins))),
        ("redis-empty", Box::new(|| redis_empty(&bins, 1, false))),
        (
            "redis-empty-standby",
            Box::new(|| redis_empty(&bins, 6, true)),
        ),
        ("cluster-empty", Box::new(|| cluster_empty(&bins))),
        ("commit-window", Box::new(|| commit_window(&bins, cycles))),
        ("hook-alerter-kill", Box::new(|| hook_alerter_kill(&bins))),
    ];
    if let Some(o) = &only {
        ensure!(
            scenarios.iter().any(|(n, _)| n == o),
            "unknown scenario {o:?}; {USAGE}"
        );
    }
    // Other test runs on this machine take the same lock for their heavy tests.
    let _heavy = heavy_test_lock();
    let mut rows = Vec::new();
    for (name, f) in &scenarios {
        if only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("faults: running {name}");
        let started = Instant::now();
        // The test-support helpers panic when a server cannot start: that
        // scenario's row says so, and the others still run.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".into());
                Err(anyhow::anyhow!("panicked: {why}"))
            });
        let row = result.unwrap_or_else(|e| Row {
            scenario: name,
            injected: "—".into(),
            measured: format!("could not run: {e:#}").replace('\n', " "),
            lost: "?".into(),
            ok: false,
        });
        eprintln!(
            "faults: {name} done in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    println!("| fault | injected | measured | lost / duplicated | result |\n|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario,
            r.injected,
            r.measured,
            r.lost,
            if r.ok { "ok" } else { "**FAIL**" }
        );
    }
    Ok(rows.iter().all(|r| r.ok))
}
