//! Benchmark: one live evaluation of 10,000 hosts × 20 rules against Redis.
//!
//! The workload is the pure engine benchmark's
//! (`crates/rules-engine/benches/engine.rs`): the same 20 rules (10 fields,
//! all six aggregations, 2 m timeframes, about 1 % of hosts firing on the
//! even rules) and the same tick generator (10 s ticks, 12 per window).
//!
//! 1. A `redis-server` of its own (free loopback port, temporary directory)
//!    is pre-loaded through `RedisStore::append` with 12 ticks (10 s apart)
//!    of the 10 fields for every host.
//! 2. **Alerter passes**: the library's `run_alerter` runs in this process
//!    against that Redis (ticks and incident state, `watcherInterval` 10 s,
//!    `evaluationDelay` 1 s) for `--passes` steady-state passes. Before each
//!    instant `t` the next tick of every host (stamped `t`) is written; the
//!    pass then reads exactly one new tick per host. The time is the
//!    alerter's own `AlerterStats::last_evaluation_us` (read new ticks +
//!    evaluate + atomic commit). Redis commands per pass come from
//!    `INFO commandstats` deltas (they include the lease renewals that fall
//!    in the window).
//! 3. **Breakdown passes**: the same steps as the alerter's `evaluate_due`
//!    (`TickStore::read_new`, `Engine::ingest`/`evaluate`,
//!    `persist::commit_for` + `AlertStore::commit` with the lease's holder
//!    and fencing token), timed one by one, with nothing else talking to Redis, so the
//!    command deltas are exactly one evaluation's.
//! 4. **Round-trip probe**: the breakdown passes again through a loopback
//!    proxy that delays every reply chunk from Redis by `--probe-delay-ms`
//!    (a delay line: chunks in flight overlap). Each *sequential* round trip
//!    then costs that delay once more, so (probe time − direct time) / delay
//!    is the number of round trips each step makes, measured rather than
//!    inferred.
//!
//! **`--cluster`**: the same against a 3-master Redis Cluster on this
//! machine (`test_support::RedisCluster`; `INFO` figures are summed over the
//! masters). The round-trip probe is left out there: one delay line in
//! front of one master cannot stand for a cluster's redirections.
//!
//! **The writer** stands for the collector fleet: each instant's ticks (one
//! per host, all stamped with the same instant, as collectors aligned on
//! the interval write them) go through `RedisStore::append` in batches of
//! `--batch` ticks with `--writers` appends in flight. Its time per instant
//! is reported: it keeps up while that stays under the 10 s interval.
//! The process's RSS (the alerter's engine and state, plus the writer's
//! host names and the batches in flight) is read from `/proc/self/status`
//! after the passes.
//!
//! Run: `scripts/bench-alerter` or
//! `cargo run --release -p bp-alerter --example bench_live_eval -- [--quick]`
//! Options: `--hosts N` (10000), `--passes N` (12), `--breakdown-passes N`
//! (30), `--probe-passes N` (5), `--probe-delay-ms MS` (100, 0 = no probe),
//! `--quick` (4 / 10 / 3 passes), `--cluster`, `--batch N` (100),
//! `--writers N` (16), `--target-ms MS` (250: the p95 the summary checks),
//! `--warmup-passes N` (0: alerter passes run and reported apart before the
//! measured ones; the first pass after the take-over grows every window's
//! buffer once, which at 100,000 hosts costs about a second).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alerter::{AlerterSetup, AlerterStats, run_alerter};
use anyhow::{Context as _, bail};
use incidents::persist;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::now_ms;
use metrics_model::{Field, HostName, RedisUrl, StandardField, Tick};
use redis_store::{RedisCursor, RedisOptions, RedisStore};
use rules_engine::{Aggregation, Config, Engine, EngineOptions};
use serde_json::{Value, json};
use test_support::{RedisCluster, RedisServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, watch};

const STEP: i64 = 10_000;
const DELAY_MS: i64 = 1_000;
const SCOPE: &str = "bench";
/// The lease holder of the breakdown passes.
const BREAKDOWN_HOLDER: &str = "bench-breakdown";

/// The pure benchmark's fields, in its order.
const FIELDS: [StandardField; 10] = [
    StandardField::CpuUsage,
    StandardField::MemUsage,
    StandardField::MemFree,
    StandardField::RequestsCount,
    StandardField::RequestsLatencyAvg,
    StandardField::EventsInCount,
    StandardField::EventsOutCount,
    StandardField::WarningsCount,
    StandardField::ErrorsCount,
    StandardField::CriticalsCount,
];

/// The pure benchmark's 20 rules, as configuration JSON.
fn twenty_rules() -> Value {
    let rules: Vec<Value> = (0..20)
        .map(|i| {
            let (aggregation, agg_name) = Aggregation::ALL[i % 6];
            let (operand, value) = match (i % 2, aggregation) {
                (0, Aggregation::Sum) => ("equalOrMoreThan", 50.0 * 12.0),
                (0, Aggregation::Count) => ("equalOrMoreThan", 13.0),
                (0, _) => ("equalOrMoreThan", 50.0),
                _ => ("equalOrLessThan", -1.0),
            };
            json!({
                "name": format!("rule-{i:02}"),
                "field": Field::Standard(FIELDS[i % FIELDS.len()]).as_str(),
                "aggregation": agg_name,
                "operand": operand,
                "value": value,
                "timeframe": "2m",
                "cooldown": "1m",
            })
        })
        .collect();
    Value::Array(rules)
}

/// The pure benchmark's tick: each host has its own level (20–39, or 80 for
/// 1 % of hosts) with a little noise.
fn host_tick(host: &HostName, i: usize, ts: i64) -> Tick {
    let level = if i.is_multiple_of(100) {
        80.0
    } else {
        20.0 + (i % 20) as f64
    };
    let noise = ((i as i64 * 7919 + ts / STEP * 104_729).rem_euclid(100)) as f64 / 100.0;
    Tick::new(
        host.clone(),
        ts,
        FIELDS
            .iter()
            .enumerate()
            .map(|(k, f)| (Field::Standard(*f).into(), level + noise + k as f64)),
    )
}

struct Args {
    hosts: usize,
    passes: usize,
    breakdown_passes: usize,
    probe_passes: usize,
    probe_delay_ms: u64,
    cluster: bool,
    warmup_passes: usize,
    batch: usize,
    writers: usize,
    target_ms: f64,
}

/// The Redis the benchmark runs against.
enum Target {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::Single(r) => r.url(),
            Target::Cluster(c) => c.url(),
        }
    }

    /// `redis-cli` on every master.
    fn cli_each(&self, args: &[&str]) -> Vec<String> {
        match self {
            Target::Single(r) => vec![r.cli(args)],
            Target::Cluster(c) => (0..c.ports().len()).map(|i| c.node_cli(i, args)).collect(),
        }
    }

    fn masters(&self) -> u64 {
        match self {
            Target::Single(_) => 1,
            Target::Cluster(c) => c.ports().len() as u64,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Target::Single(_) => "one redis-server",
            Target::Cluster(_) => "a 3-master Redis Cluster",
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        hosts: 10_000,
        passes: 12,
        breakdown_passes: 30,
        probe_passes: 5,
        probe_delay_ms: 100,
        cluster: false,
        warmup_passes: 0,
        batch: 100,
        writers: 16,
        target_ms: 250.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> anyhow::Result<u64> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .with_context(|| format!("{name}: {v:?} is not a whole number"))
        };
        match arg.as_str() {
            "--quick" => {
                a.passes = 4;
                a.breakdown_passes = 10;
                a.probe_passes = 3;
            }
            "--hosts" => a.hosts = num("--hosts")? as usize,
            "--passes" => a.passes = num("--passes")? as usize,
            "--breakdown-passes" => a.breakdown_passes = num("--breakdown-passes")? as usize,
            "--probe-passes" => a.probe_passes = num("--probe-passes")? as usize,
            "--probe-delay-ms" => a.probe_delay_ms = num("--probe-delay-ms")?,
            "--cluster" => a.cluster = true,
            "--warmup-passes" => a.warmup_passes = num("--warmup-passes")? as usize,
            "--batch" => a.batch = num("--batch")? as usize,
            "--writers" => a.writers = num("--writers")? as usize,
            "--target-ms" => a.target_ms = num("--target-ms")? as f64,
            other => bail!("unknown argument {other:?} (see the file's doc comment)"),
        }
    }
    if a.hosts == 0 || a.passes == 0 || a.breakdown_passes == 0 || a.batch == 0 || a.writers == 0 {
        bail!("--hosts, --passes, --breakdown-passes, --batch and --writers must be at least 1");
    }
    if a.cluster {
        a.probe_passes = 0;
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_live_eval: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = parse_args()?;
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(std::io::stderr)
        .init();
    let redis = if args.cluster {
        Target::Cluster(RedisCluster::start())
    } else {
        Target::Single(RedisServer::start())
    };
    println!(
        "# bench_live_eval: {} hosts × 20 rules, 10 s ticks, 12 per window, against {}",
        args.hosts,
        redis.describe()
    );
    println!(
        "# machine: {} CPUs, load average at start: {}",
        cpus(),
        loadavg()
    );
    println!(
        "# {}",
        redis.cli_each(&["INFO", "server"])[0]
            .lines()
            .find(|l| l.starts_with("redis_version"))
            .unwrap_or("redis_version:?")
            .trim()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench(&args, &redis))?;
    println!("# load average at end: {}", loadavg());
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<RedisStore> {
    let url = RedisUrl::parse(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(RedisStore::connect(RedisOptions::new(url, SCOPE)).await?)
}

/// The writer: appends the ticks stamped `ts` of every host, `batch` hosts
/// per append, `writers` appends in flight. Returns how long it took.
async fn write_all(
    store: &RedisStore,
    hosts: &Arc<Vec<HostName>>,
    ts: i64,
    batch: usize,
    writers: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut first = 0;
    while first < hosts.len() || !set.is_empty() {
        while first < hosts.len() && set.len() < writers {
            let (store, hosts) = (store.clone(), hosts.clone());
            let range = first..(first + batch).min(hosts.len());
            first = range.end;
            set.spawn(async move {
                let ticks: Vec<Tick> = range.map(|i| host_tick(&hosts[i], i, ts)).collect();
                store.append(&ticks).await
            });
        }
        if let Some(done) = set.join_next().await {
            done??;
        }
    }
    Ok(started.elapsed())
}

/// The process's resident set now and at its peak, in MB.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1000.0, kb("VmHWM:") / 1000.0)
}

/// Redis `used_memory` summed over the masters, in MB.
fn redis_used_mb(redis: &Target) -> f64 {
    redis
        .cli_each(&["INFO", "memory"])
        .iter()
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("used_memory:"))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1e6
}

#[allow(clippy::too_many_lines)]
async fn bench(args: &Args, redis: &Target) -> anyhow::Result<()> {
    let store = connect(&redis.url()).await?;
    let hosts: Vec<HostName> = (0..args.hosts)
        .map(|i| format!("node-{i:06}").parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("host name: {e:?}"))?;
    let hosts = Arc::new(hosts);
    let config_json = json!({
        "monitoring": { "collectionInterval": "10s" },
        "alerting": { "watcherInterval": "10s", "evaluationDelay": "1s", "rules": twenty_rules() }
    });
    let config = Config::from_json(&config_json)
        .map_err(|e| anyhow::anyhow!("config: {:?}", e.problems()))?;

    // 1. Pre-load 12 ticks per host, the newest at the current instant
    // (each append: 12 ticks of 500 hosts).
    let last = now_ms().div_euclid(STEP) * STEP;
    let started = Instant::now();
    for (c, chunk) in hosts.chunks(500).enumerate() {
        let ticks: Vec<Tick> = chunk
            .iter()
            .enumerate()
            .flat_map(|(j, h)| (0..12).map(move |k| host_tick(h, c * 500 + j, last - k * STEP)))
            .collect();
        store.append(&ticks).await?;
    }
    let preload = started.elapsed();
    println!(
        "# pre-loaded {} ticks ({} hosts × 12) in {:.1} s; Redis used_memory {:.1} MB",
        hosts.len() * 12,
        hosts.len(),
        preload.as_secs_f64(),
        redis_used_mb(redis)
    );

    // 2. The alerter's own passes.
    let stats = Arc::new(AlerterStats::default());
    let (_config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let setup = AlerterSetup {
        holder: "bench-live-eval".to_owned(),
        config: config_rx,
        stats: stats.clone(),
        committed: Arc::new(Notify::new()),
        on_evaluated: Box::new(|_, _| {}),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let alerter = tokio::spawn(run_alerter(
        store.clone(),
        alerter::Mirrored::new(store.clone()),
        setup,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let startup = Instant::now();
    wait_for(&stats, 0, Duration::from_mins(10)).await?;
    println!(
        "# alerter: first pass (state rebuilt from Redis, then one evaluation) after {:.1} s; that evaluation {:.1} ms",
        startup.elapsed().as_secs_f64(),
        stats.last_evaluation_us.load(Ordering::Relaxed) as f64 / 1000.0
    );
    let mut alerter_ms = Vec::new();
    let mut alerter_cmds: Vec<BTreeMap<String, u64>> = Vec::new();
    let mut write_s: Vec<f64> = Vec::new();
    let mut warmup_ms: Vec<f64> = Vec::new();
    let mut written_until = last;
    let mut late_writes = 0usize;
    for pass in 0..args.warmup_passes + args.passes {
        // Instants the alerter evaluated before their ticks were written
        // (a long start-up: 100,000 hosts take 10–20 s) are written now,
        // unmeasured and late, so each measured write is one instant's.
        let evaluated = stats.last_evaluated.load(Ordering::Relaxed) as i64;
        while written_until + STEP <= evaluated {
            written_until += STEP;
            write_all(&store, &hosts, written_until, args.batch, args.writers).await?;
        }
        // The next instant whose ticks are not written yet, with at least
        // 3 s left to write them: earlier passes run unmeasured.
        let (t, count) = loop {
            let evaluated = stats.last_evaluated.load(Ordering::Relaxed) as i64;
            let count = stats.evaluations.load(Ordering::Relaxed);
            let t = evaluated + STEP;
            if t > written_until && now_ms() < t - 3_000 {
                break (t, count);
            }
            wait_for(&stats, count, Duration::from_mins(1)).await?;
        };
        // Write the instant's ticks well before it is due (t + 1 s), well
        // after the previous pass.
        let write_at = t - 6_000;
        let now = now_ms();
        if write_at > now {
            tokio::time::sleep(Duration::from_millis((write_at - now) as u64)).await;
        }
        for ts in (written_until + STEP..=t).step_by(STEP as usize) {
            let took = write_all(&store, &hosts, ts, args.batch, args.writers).await?;
            write_s.push(took.as_secs_f64());
        }
        written_until = written_until.max(t);
        if now_ms() > t + DELAY_MS - 500 {
            // The writer fell behind: the pass may now overlap the writes.
            late_writes += 1;
        }
        let before = command_stats(redis);
        wait_for(&stats, count, Duration::from_mins(1)).await?;
        let after = command_stats(redis);
        let took = stats.last_evaluation_us.load(Ordering::Relaxed) as f64 / 1000.0;
        if pass < args.warmup_passes {
            warmup_ms.push(took);
            continue;
        }
        alerter_ms.push(took);
        alerter_cmds.push(delta(&before, &after, redis.masters()));
    }
    let (rss, rss_peak) = rss_mb();
    let redis_mb = redis_used_mb(redis);
    let _ = stop_tx.send(());
    alerter.await?;
    let transitions_total = stats.transitions.load(Ordering::Relaxed);

    // 3. Breakdown passes, mirroring evaluate_due.
    let token = store
        .acquire_lease(BREAKDOWN_HOLDER, 3_600_000)
        .await?
        .context("the lease is held by someone else")?;
    let snapshot = store.load().await?;
    let (restored, _) = persist::decode(&snapshot);
    let mut engine = Engine::new(
        config.alerting.rules.clone(),
        EngineOptions {
            retention: Some(config.monitoring.retention_period),
        },
    );
    let t_last = restored
        .last_evaluated
        .context("no evaluation was committed")?;
    engine.resume_after(t_last);
    for k in 0..12 {
        let ts = t_last - k * STEP;
        for (i, h) in hosts.iter().enumerate() {
            engine.ingest(host_tick(h, i, ts));
        }
    }
    let restored_states = restored.states.len();
    persist::restore_into(&mut engine, restored.states);
    let mut cursor = store.cursor_now().await?;
    let mut t = t_last;
    let mut direct = Vec::new();
    for _ in 0..args.breakdown_passes {
        t += STEP;
        let p = breakdown_pass(
            &store,
            &store,
            redis,
            args,
            &hosts,
            &mut engine,
            &mut cursor,
            token,
            t,
        )
        .await?;
        direct.push(p);
    }
    // 4. Round-trip probe through a delay line.
    let mut probed = Vec::new();
    if let Target::Single(server) = redis
        && args.probe_delay_ms > 0
        && args.probe_passes > 0
    {
        let delay = Duration::from_millis(args.probe_delay_ms);
        let addr = delay_proxy(([127, 0, 0, 1], server.port()).into(), delay).await?;
        let slow = connect(&format!("redis://{addr}")).await?;
        for _ in 0..args.probe_passes {
            t += STEP;
            let p = breakdown_pass(
                &slow,
                &store,
                redis,
                args,
                &hosts,
                &mut engine,
                &mut cursor,
                token,
                t,
            )
            .await?;
            probed.push(p);
        }
        slow.close().await;
    }
    store.release_lease(BREAKDOWN_HOLDER, token).await?;

    report(
        args,
        redis,
        &Measured {
            late_writes,
            warmup_ms,
            alerter_ms,
            alerter_cmds,
            write_s,
            rss,
            rss_peak,
            redis_mb,
            transitions_total,
            restored_states,
            direct,
            probed,
        },
    );
    store.close().await;
    Ok(())
}

/// One measured breakdown pass at instant `t`: ticks written (untimed)
/// through `writer`, then read, evaluated and committed through `via`.
#[allow(clippy::too_many_arguments)]
async fn breakdown_pass(
    via: &RedisStore,
    writer: &RedisStore,
    redis: &Target,
    args: &Args,
    hosts: &Arc<Vec<HostName>>,
    engine: &mut Engine,
    cursor: &mut RedisCursor,
    token: u64,
    t: i64,
) -> anyhow::Result<Pass> {
    write_all(writer, hosts, t, args.batch, args.writers).await?;
    let before = command_stats(redis);
    let start = Instant::now();
    let fresh = via.read_new(cursor).await?;
    let read = start.elapsed();
    let ticks = fresh.ticks.len();
    for tick in fresh.ticks {
        engine.ingest(tick);
    }
    *cursor = fresh.cursor;
    let transitions = engine.evaluate(t)?;
    let evaluated = start.elapsed();
    let commit = persist::commit_for(t, &transitions, engine);
    via.commit(BREAKDOWN_HOLDER, token, &commit).await?;
    let total = start.elapsed();
    let after = command_stats(redis);
    Ok(Pass {
        read_ms: ms(read),
        eval_ms: ms(evaluated.saturating_sub(read)),
        commit_ms: ms(total.saturating_sub(evaluated)),
        total_ms: ms(total),
        ticks,
        transitions: transitions.len(),
        commands: delta(&before, &after, redis.masters()),
    })
}

#[derive(Debug)]
struct Pass {
    read_ms: f64,
    eval_ms: f64,
    commit_ms: f64,
    total_ms: f64,
    ticks: usize,
    transitions: usize,
    commands: BTreeMap<String, u64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_for(stats: &AlerterStats, count: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while stats.evaluations.load(Ordering::Relaxed) <= count {
        if Instant::now() > deadline {
            bail!(
                "the alerter made no evaluation within {limit:?} (store errors: {})",
                stats.store_errors.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// `INFO commandstats` calls per command, plus `net_in`/`net_out` bytes and
/// `commands` (total_commands_processed) from `INFO stats`, summed over the
/// masters.
fn command_stats(redis: &Target) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for text in redis.cli_each(&["INFO", "everything"]) {
        add_command_stats(&text, &mut out);
    }
    out
}

fn add_command_stats(text: &str, out: &mut BTreeMap<String, u64>) {
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("cmdstat_")
            && let Some((name, fields)) = rest.split_once(':')
            && let Some(calls) = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|c| c.parse::<u64>().ok())
        {
            *out.entry(name.to_owned()).or_default() += calls;
        }
        for (key, name) in [
            ("total_commands_processed:", "commands"),
            ("total_net_input_bytes:", "net_in"),
            ("total_net_output_bytes:", "net_out"),
        ] {
            if let Some(v) = line.strip_prefix(key).and_then(|v| v.parse::<u64>().ok()) {
                *out.entry(name.to_owned()).or_default() += v;
            }
        }
    }
}

/// What changed between two [`command_stats`], without the `INFO` of the
/// first snapshot itself (one per master).
fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    masters: u64,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in after {
        let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
        let d = if k == "info" || k == "commands" {
            d.saturating_sub(masters)
        } else {
            d
        };
        if d > 0 {
            out.insert(k.clone(), d);
        }
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
}

/// Nearest-rank percentile of `values` (`q` in 0..=1).
fn pct(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn median_of<F: Fn(&Pass) -> f64>(passes: &[Pass], f: F) -> f64 {
    pct(&passes.iter().map(f).collect::<Vec<_>>(), 0.5)
}

/// Commands per pass as `name=calls` (the same in every pass, or min–max).
fn commands_summary(all: &[BTreeMap<String, u64>]) -> String {
    let mut keys: Vec<&String> = all.iter().flat_map(BTreeMap::keys).collect();
    keys.sort();
    keys.dedup();
    keys.iter()
        .filter(|k| !["net_in", "net_out", "commands"].contains(&k.as_str()))
        .map(|k| {
            let vals: Vec<u64> = all
                .iter()
                .map(|m| m.get(*k).copied().unwrap_or(0))
                .collect();
            let (lo, hi) = (
                vals.iter().min().copied().unwrap_or(0),
                vals.iter().max().copied().unwrap_or(0),
            );
            if lo == hi {
                format!("{k}={lo}")
            } else {
                format!("{k}={lo}–{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything the passes measured.
struct Measured {
    /// Instants whose ticks were not all written 500 ms before they were due.
    late_writes: usize,
    warmup_ms: Vec<f64>,
    alerter_ms: Vec<f64>,
    alerter_cmds: Vec<BTreeMap<String, u64>>,
    /// The writer's time per instant (all hosts' ticks), in seconds.
    write_s: Vec<f64>,
    rss: f64,
    rss_peak: f64,
    redis_mb: f64,
    transitions_total: u64,
    restored_states: usize,
    direct: Vec<Pass>,
    probed: Vec<Pass>,
}

#[allow(clippy::too_many_lines)] // one report, section by section
fn report(args: &Args, redis: &Target, m: &Measured) {
    let alerter_ms = &m.alerter_ms;
    println!();
    println!(
        "## 1. run_alerter, steady state ({} passes; watcherInterval 10 s, evaluationDelay 1 s)",
        alerter_ms.len()
    );
    println!(
        "evaluation (AlerterStats.last_evaluation_us: read_new + evaluate + commit): median {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
        pct(alerter_ms, 0.5),
        pct(alerter_ms, 0.95),
        pct(alerter_ms, 0.0),
        pct(alerter_ms, 1.0)
    );
    if !m.warmup_ms.is_empty() {
        println!(
            "warm-up passes before these (not in the figures above), ms: {}",
            m.warmup_ms
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "each pass (ms): {}",
        alerter_ms
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "Redis commands between ticks written and pass done (lease renewals included): {}",
        commands_summary(&m.alerter_cmds)
    );
    println!(
        "transitions committed by the alerter, start-up pass included: {}; incident states in Redis after: {}",
        m.transitions_total, m.restored_states
    );
    let w_med = pct(&m.write_s, 0.5);
    let w_max = pct(&m.write_s, 1.0);
    println!(
        "writer: {} ticks per instant ({} per append, {} appends in flight): median {w_med:.2} s, max {w_max:.2} s per instant of 10 s ({:.0} ticks/s at the median); {}; {} of {} instants written less than 500 ms before due",
        args.hosts,
        args.batch,
        args.writers,
        args.hosts as f64 / w_med,
        if w_max < 10.0 {
            "keeps up"
        } else {
            "FALLS BEHIND"
        },
        m.late_writes,
        m.write_s.len()
    );
    println!(
        "process RSS after the passes (alerter + writer): {:.1} MB, peak {:.1} MB; Redis used_memory {:.1} MB ({})",
        m.rss,
        m.rss_peak,
        m.redis_mb,
        redis.describe()
    );
    println!();
    println!(
        "## 2. the same steps timed one by one ({} passes, nothing else on Redis)",
        m.direct.len()
    );
    print_passes(&m.direct);
    if !m.probed.is_empty() {
        let d = args.probe_delay_ms as f64;
        println!();
        println!(
            "## 3. round-trip probe: {} passes through a proxy adding {} ms to every reply chunk",
            m.probed.len(),
            args.probe_delay_ms
        );
        print_passes(&m.probed);
        let rt = |f: fn(&Pass) -> f64| (median_of(&m.probed, f) - median_of(&m.direct, f)) / d;
        println!(
            "sequential round trips per pass ≈ (probe − direct) / delay: read_new {:.2}, evaluate {:.2}, commit {:.2}, whole pass {:.2}",
            rt(|p| p.read_ms),
            rt(|p| p.eval_ms),
            rt(|p| p.commit_ms),
            rt(|p| p.total_ms)
        );
    } else if args.cluster {
        println!();
        println!("## 3. round-trip probe: not run against a cluster (see the file's doc comment)");
    }
    println!();
    let a50 = pct(alerter_ms, 0.5);
    let a95 = pct(alerter_ms, 0.95);
    let b50 = median_of(&m.direct, |p| p.total_ms);
    let on = if args.cluster {
        ", 3-master Redis Cluster"
    } else {
        ""
    };
    println!("## summary");
    println!("| measure | median | p95 | target / anchor |");
    println!("|---|---|---|---|");
    println!(
        "| run_alerter pass, {} hosts × 20 rules{on} | {a50:.0} ms | {a95:.0} ms | ≤ {:.0} ms ({}); Prometheus: scripts/bench-prometheus |",
        args.hosts,
        args.target_ms,
        if a95 <= args.target_ms {
            "met"
        } else if a50 <= args.target_ms {
            "median met, p95 missed"
        } else {
            "MISSED"
        }
    );
    println!(
        "| breakdown pass total | {b50:.0} ms | {:.0} ms | |",
        pct(
            &m.direct.iter().map(|p| p.total_ms).collect::<Vec<_>>(),
            0.95
        )
    );
    println!(
        "| read_new | {:.0} ms | | |",
        median_of(&m.direct, |p| p.read_ms)
    );
    println!(
        "| ingest + evaluate | {:.0} ms | | pure engine bench: see cargo bench -p rules-engine |",
        median_of(&m.direct, |p| p.eval_ms)
    );
    println!(
        "| commit | {:.1} ms | | |",
        median_of(&m.direct, |p| p.commit_ms)
    );
}

fn print_passes(passes: &[Pass]) {
    let col = |f: fn(&Pass) -> f64| {
        let v: Vec<f64> = passes.iter().map(f).collect();
        format!(
            "median {:.1} / p95 {:.1} / max {:.1}",
            pct(&v, 0.5),
            pct(&v, 0.95),
            pct(&v, 1.0)
        )
    };
    println!("read_new (ms):           {}", col(|p| p.read_ms));
    println!("ingest + evaluate (ms):  {}", col(|p| p.eval_ms));
    println!("commit (ms):             {}", col(|p| p.commit_ms));
    println!("whole pass (ms):         {}", col(|p| p.total_ms));
    let ticks: Vec<usize> = passes.iter().map(|p| p.ticks).collect();
    let trans: usize = passes.iter().map(|p| p.transitions).sum();
    println!(
        "ticks read per pass: {}–{}; transitions in all these passes: {trans}",
        ticks.iter().min().copied().unwrap_or(0),
        ticks.iter().max().copied().unwrap_or(0)
    );
    let cmds: Vec<BTreeMap<String, u64>> = passes.iter().map(|p| p.commands.clone()).collect();
    println!(
        "Redis commands per pass (INFO commandstats deltas): {}",
        commands_summary(&cmds)
    );
    println!(
        "  (commandstats also counts commands run inside Lua scripts: GET/HGET/HSET/TYPE here come from the commit's one EVALSHA, not from the network)"
    );
    let bytes =
        |k: &str| median_of(passes, |p| p.commands.get(k).copied().unwrap_or(0) as f64) / 1024.0;
    println!(
        "network per pass (median): {:.0} KiB to Redis, {:.0} KiB from Redis",
        bytes("net_in"),
        bytes("net_out")
    );
}

/// A loopback TCP proxy to `upstream` that holds every chunk Redis sends
/// back for `delay` (measured from when the chunk arrived; chunks overlap,
/// so a pipelined batch costs the delay once, each sequential round trip
/// once more). Requests are forwarded at once.
async fn delay_proxy(
    upstream: std::net::SocketAddr,
    delay: Duration,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_r, &mut server_w).await;
                });
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match server_r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx
                                    .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                                    .is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                });
                while let Some((at, chunk)) = rx.recv().await {
                    tokio::time::sleep_until(at + delay).await;
                    if client_w.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}
