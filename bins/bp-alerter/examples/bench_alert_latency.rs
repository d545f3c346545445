//! Benchmark: alert latency, from the crossing tick landing in Redis to the
//! hook process starting.
//!
//! For each scenario (`watcherInterval`, `evaluationDelay`):
//! - a `redis-server` of its own (free loopback port, temporary directory;
//!   one per run, one key scope per scenario);
//! - the real `bp-alerter run` binary (release build, next to this example
//!   in `target/release/`, or `--alerter PATH`) in cluster mode against it,
//!   with one rule that flips on every crossing: `last` of `cpu.usage` ≥ 50,
//!   timeframe 1 h, cooldown 0;
//! - an executable hook in the hook directory: a copy of this very binary,
//!   which, started as a hook, first takes the wall-clock time (ns), then
//!   appends it with `BP_IDEMPOTENCY_KEY` and `BP_INCIDENT_EVENT` to a file;
//! - a writer (this process) that, in every watcher interval, waits a
//!   random offset (2–98 % of the interval), then writes one tick stamped
//!   `now` through `RedisStore::append` (the collector's path), alternately
//!   90 and 10, so every tick opens or resolves the incident.
//!
//! Latency = hook start − the moment `append` returned. The k-th hook call
//! belongs to the k-th tick (deliveries per (rule, host) are in order; the
//! events are checked to alternate opened/resolved).
//! Target (issue 4): p99 ≤ watcherInterval + evaluationDelay + 200 ms.
//!
//! Run: `scripts/bench-alerter` or
//! `cargo build --release -p bp-alerter --bin bp-alerter --example bench_alert_latency && target/release/examples/bench_alert_latency [--quick]`
//! Options: `--quick` (15 / 15 / 4 samples), `--scenarios LIST` with items
//! `W/D/N` (watcher interval, evaluation delay, samples), default
//! `1s/1s/60,1s/300ms/60,10s/1s/24`; `--alerter PATH`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::{HostName, RedisUrl, StandardField, Tick};
use redis_store::{RedisOptions, RedisStore};
use serde_json::json;
use test_support::RedisServer;

/// Set on the alerter's environment (hooks inherit it): where a hook run of
/// this binary records its call.
const HOOK_OUT_ENV: &str = "BP_BENCH_HOOK_OUT";

fn main() -> std::process::ExitCode {
    // Started as the hook: record the time first, before anything else.
    if let (Some(out), Some(key)) = (
        std::env::var_os(HOOK_OUT_ENV),
        std::env::var_os("BP_IDEMPOTENCY_KEY"),
    ) {
        let at = wall_ns();
        return record_hook_call(Path::new(&out), &key.to_string_lossy(), at);
    }
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_alert_latency: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn record_hook_call(out: &Path, key: &str, at: i128) -> std::process::ExitCode {
    let event = std::env::var("BP_INCIDENT_EVENT").unwrap_or_default();
    let line = format!("{at} {key} {event}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    // Take the payload so the alerter's write to stdin never fails.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench hook: {}: {e}", out.display());
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    watcher: metrics_model::Duration,
    delay: metrics_model::Duration,
    samples: usize,
}

fn parse_scenarios(text: &str) -> anyhow::Result<Vec<Scenario>> {
    text.split(',')
        .map(|item| {
            let parts: Vec<&str> = item.trim().split('/').collect();
            let [w, d, n] = parts[..] else {
                bail!("--scenarios: {item:?} is not WATCHER/DELAY/SAMPLES (e.g. 1s/300ms/60)");
            };
            let dur = |s: &str| {
                s.parse::<metrics_model::Duration>()
                    .map_err(|e| anyhow::anyhow!("--scenarios: {s:?}: {e}"))
            };
            let scenario = Scenario {
                watcher: dur(w)?,
                delay: dur(d)?,
                samples: n
                    .parse()
                    .with_context(|| format!("--scenarios: {n:?} is not a number of samples"))?,
            };
            if scenario.watcher.is_zero() || scenario.samples == 0 {
                bail!("--scenarios: {item:?}: the interval and the samples must be > 0");
            }
            Ok(scenario)
        })
        .collect()
}

fn real_main() -> anyhow::Result<()> {
    let mut scenarios = "1s/1s/60,1s/300ms/60,10s/1s/24".to_owned();
    let mut alerter: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => "1s/1s/15,1s/300ms/15,10s/1s/4".clone_into(&mut scenarios),
            "--scenarios" => scenarios = it.next().context("--scenarios needs a value")?,
            "--alerter" => alerter = Some(it.next().context("--alerter needs a path")?.into()),
            other => bail!("unknown argument {other:?} (see the file's doc comment)"),
        }
    }
    let scenarios = parse_scenarios(&scenarios)?;
    let me = std::env::current_exe().context("cannot find this executable")?;
    let alerter = match alerter {
        Some(p) => p,
        None => me
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("bp-alerter"))
            .context("cannot locate target/<profile>/bp-alerter")?,
    };
    if !alerter.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p bp-alerter --bin bp-alerter) or pass --alerter PATH",
            alerter.display()
        );
    }
    println!("# bench_alert_latency: alerter {}", alerter.display());
    println!(
        "# machine: {} CPUs, load average at start: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        loadavg()
    );
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        let r = run_scenario(&rt, &redis, &alerter, &me, s, i)
            .with_context(|| format!("scenario {}/{}", s.watcher, s.delay))?;
        results.push((s.clone(), r));
    }
    println!();
    println!("## alert latency: tick written (append returned) → hook process started");
    println!(
        "| watcherInterval | evaluationDelay | samples | min | p50 | p99 | max | target p99 ≤ W + D + 200 ms | |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (s, r) in &results {
        let target = (s.watcher.as_millis_i64() + s.delay.as_millis_i64() + 200) as f64;
        let p99 = pct(&r.latencies, 0.99);
        println!(
            "| {} | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {target:.0} ms | {} |",
            s.watcher,
            s.delay,
            r.latencies.len(),
            pct(&r.latencies, 0.0),
            pct(&r.latencies, 0.5),
            p99,
            pct(&r.latencies, 1.0),
            if p99 <= target { "met" } else { "MISSED" }
        );
    }
    println!();
    println!(
        "## latency minus the wait for the instant (hook start − (next instant + delay)): pipeline overhead"
    );
    for (s, r) in &results {
        println!(
            "{} / {}: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            s.watcher,
            s.delay,
            pct(&r.overheads, 0.5),
            pct(&r.overheads, 0.99),
            pct(&r.overheads, 1.0)
        );
    }
    println!("# load average at end: {}", loadavg());
    Ok(())
}

struct ScenarioResult {
    /// ms, per transition.
    latencies: Vec<f64>,
    /// ms: hook start − (instant covering the tick + evaluation delay).
    overheads: Vec<f64>,
}

struct AlerterProcess(Child);

impl Drop for AlerterProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[allow(clippy::too_many_lines)]
fn run_scenario(
    rt: &tokio::runtime::Runtime,
    redis: &RedisServer,
    alerter: &Path,
    me: &Path,
    s: &Scenario,
    index: usize,
) -> anyhow::Result<ScenarioResult> {
    let w = s.watcher.as_millis_i64();
    let d = s.delay.as_millis_i64();
    println!(
        "# scenario watcherInterval {} evaluationDelay {}: {} transitions (≈ {} s)",
        s.watcher,
        s.delay,
        s.samples,
        (s.samples as i64 + 3) * w / 1000
    );
    let dir = tempfile::Builder::new()
        .prefix("bp-bench-latency-")
        .tempdir()?;
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks)?;
    // A copy of this binary is the hook (fs::copy keeps the execute bit).
    std::fs::copy(me, hooks.join("record")).context("copying the hook")?;
    let out = dir.path().join("hook.out");
    let config = json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": {
            "watcherInterval": s.watcher.to_string(),
            "evaluationDelay": s.delay.to_string(),
            "rules": [{
                "name": "flip", "field": "cpu.usage", "aggregation": "last",
                "operand": "equalOrMoreThan", "value": 50, "timeframe": "1h", "cooldown": "0s"
            }],
            "hooks": { "directory": hooks, "timeout": "10s" },
        }
    });
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string())?;
    let scope = format!("lat{index}");
    let log = std::fs::File::create(dir.path().join("alerter.log"))?;
    let child = Command::new(alerter)
        .args(["run", "--config"])
        .arg(&config_path)
        .args(["--node", "bench", "--statsd", "off"])
        .env("REDIS_URL", redis.url())
        .env("BP_REDIS_SCOPE", &scope)
        .env(HOOK_OUT_ENV, &out)
        .env("RUST_LOG", "warn")
        .env_remove("CLUSTER_ENABLED")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", alerter.display()))?;
    let _alerter = AlerterProcess(child);
    let url = RedisUrl::parse(&redis.url()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = rt.block_on(RedisStore::connect(RedisOptions::new(url, scope)))?;
    let host: HostName = "bench-host".parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let cpu = metrics_model::Key::from(StandardField::CpuUsage);
    let tick = |ts: i64, v: f64| Tick::new(host.clone(), ts, [(cpu.clone(), v)]);

    // A first, low tick (no incident), then wait until the alerter leads
    // and has evaluated an instant after it.
    let first = now_ms();
    rt.block_on(store.append(&[tick(first, 10.0)]))?;
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let lease = rt.block_on(store.lease())?;
        let snapshot = rt.block_on(store.load())?;
        if lease.is_some() && snapshot.last_evaluated.is_some_and(|t| t >= first) {
            break;
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(dir.path().join("alerter.log")).unwrap_or_default();
            bail!("the alerter did not start evaluating within 60 s; its log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut rng = XorShift::seeded();
    let mut written: Vec<(i128, i64)> = Vec::new(); // (append returned, ns; tick ts, ms)
    for i in 0..s.samples {
        let slot = now_ms().div_euclid(w) * w + w;
        let offset = (w as f64 * (0.02 + 0.96 * rng.unit())) as i64;
        sleep_until_ms(slot + offset);
        let ts = now_ms();
        let value = if i % 2 == 0 { 90.0 } else { 10.0 };
        rt.block_on(store.append(&[tick(ts, value)]))?;
        written.push((wall_ns(), ts));
    }
    // Every transition's hook call, with a generous deadline.
    let deadline = Instant::now() + Duration::from_millis((w + d) as u64) + Duration::from_secs(30);
    let calls = loop {
        let calls = read_calls(&out)?;
        if calls.len() >= written.len() || Instant::now() > deadline {
            break calls;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if calls.len() != written.len() {
        bail!(
            "{} ticks written but {} hook calls recorded (see {})",
            written.len(),
            calls.len(),
            dir.path().display()
        );
    }
    let mut latencies = Vec::new();
    let mut overheads = Vec::new();
    for (i, ((returned, ts), (at, key, event))) in written.iter().zip(&calls).enumerate() {
        let expected = if i % 2 == 0 { "opened" } else { "resolved" };
        if event != expected || !key.ends_with(expected) {
            bail!(
                "hook call {i} is {event} ({key}), expected {expected}: transitions out of order?"
            );
        }
        latencies.push((at - returned) as f64 / 1e6);
        let due_ns =
            i128::from(ts.div_euclid(w) * w + if ts % w == 0 { 0 } else { w } + d) * 1_000_000;
        overheads.push((at - due_ns) as f64 / 1e6);
    }
    rt.block_on(store.close());
    println!(
        "#   p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; load average {}",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0),
        loadavg()
    );
    Ok(ScenarioResult {
        latencies,
        overheads,
    })
}

fn read_calls(out: &Path) -> anyhow::Result<Vec<(i128, String, String)>> {
    let text = match std::fs::read_to_string(out) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| out.display().to_string()),
    };
    text.lines()
        .map(|l| {
            let mut f = l.split(' ');
            let at = f
                .next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("bad hook record {l:?}"))?;
            let key = f.next().unwrap_or_default().to_owned();
            let event = f.next().unwrap_or_default().to_owned();
            Ok((at, key, event))
        })
        .collect()
}

fn now_ms() -> i64 {
    (wall_ns() / 1_000_000) as i64
}

fn sleep_until_ms(at: i64) {
    let now = now_ms();
    if at > now {
        std::thread::sleep(Duration::from_millis((at - now) as u64));
    }
}

/// A small xorshift generator (random offsets; no statistical claims).
struct XorShift(u64);

impl XorShift {
    fn seeded() -> XorShift {
        XorShift((wall_ns() as u64) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// Nearest-rank percentile (`q` in 0..=1).
fn pct(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
