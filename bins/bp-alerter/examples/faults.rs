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
//!
//! Every wait is bounded; every process is killed on the way out. Only
//! loopback. Exit status 1 when a scenario lost or duplicated something or
//! could not run.
//!
//! `scripts/faults` builds and runs it:
//! `cargo build --release -p bp-alerter -p bp-collector --bins --example faults && target/release/examples/faults [--only NAME]`

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use metrics_model::Tick;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::now_ms;
use redis_store::RedisCursor;
use serde_json::json;
use test_support::harness::{
    Call, Client, HANGING_HOOK, Proc, RECORD_HOOK, Setup, Transition, collector_args, dedup,
    series, start_in,
};
use test_support::{RedisServer, RedisServerOptions, heavy_test_lock, wait_until};

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
    let mut outage = Duration::from_secs(6);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => only = Some(it.next().context("--only needs a scenario name")?),
            "--quick" => outage = Duration::from_secs(3),
            other => bail!(
                "unknown argument {other:?}; usage: faults [--quick] [--only redis-kill|alerter-kill|leader-kill|hanging-hook|redis-unreachable]"
            ),
        }
    }
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
    ];
    if let Some(o) = &only {
        ensure!(
            scenarios.iter().any(|(n, _)| n == o),
            "unknown scenario {o:?}"
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
        let row = f().unwrap_or_else(|e| Row {
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
