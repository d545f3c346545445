//! The real-process harness of the binaries' tests and examples (feature
//! `harness`): what the `bp-alerter` tests (`tests/live.rs`), the fault
//! injection (`examples/faults.rs`) and the `bp-collector` tests share.
//!
//! - [`Client`]: a connection to a test Redis through the Redis store, the
//!   path `bp-collector` writes ticks through, with the runtime it lives on.
//! - [`Setup`]: an alerter's test directory: `config.json`, a hook in
//!   `hooks/` and the hook's output, read back as [`Call`]s; starts
//!   `bp-alerter run` ([`Setup::alerter`]) and asks `bp-alerter replay`
//!   ([`Setup::replay`]).
//! - [`Proc`]: a child process with its output in a log file, killed on drop.
//! - [`RECORD_HOOK`] / [`HANGING_HOOK`], [`hook_dir`], [`dedup`],
//!   [`start_in`], [`series`], [`collector_args`].
//!
//! Fallible steps return [`std::io::Result`] so that a caller can either
//! unwrap (tests) or report the failure and go on (the fault injection).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use metrics_model::store::TickStore;
use metrics_model::time::now_ms;
use metrics_model::{RedisUrl, Tick};
use redis_store::{RedisOptions, RedisStore};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::wait_until;

/// The Redis key scope the binaries use by default (`BP_REDIS_SCOPE`).
pub const SCOPE: &str = "bp";

/// A hook script that appends one line per call to the file `OUT` stands
/// for (see [`hook_dir`]): `key|event|rule|host|start|end`, from the
/// `BP_IDEMPOTENCY_KEY`, `BP_INCIDENT_EVENT`, `BP_INCIDENT_RULE_NAME`,
/// `BP_INCIDENT_HOST_NAME`, `BP_INCIDENT_START_TIME` and
/// `BP_INCIDENT_END_TIME` variables. [`Setup::calls`] reads the lines back.
pub const RECORD_HOOK: &str = "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s\\n' \"$BP_IDEMPOTENCY_KEY\" \"$BP_INCIDENT_EVENT\" \"$BP_INCIDENT_RULE_NAME\" \"$BP_INCIDENT_HOST_NAME\" \"$BP_INCIDENT_START_TIME\" \"$BP_INCIDENT_END_TIME\" >> 'OUT'\n";

/// A hook script that hangs (`sleep 600`): every call runs into the hook
/// timeout.
pub const HANGING_HOOK: &str = "#!/bin/sh\nexec sleep 600\n";

/// A transition as `bp-alerter replay` reports it and as a [`Call`] carries
/// it: `(event, rule, host, at)`.
pub type Transition = (String, String, String, i64);

/// A connection to a test Redis through [`RedisStore`] (scope [`SCOPE`]),
/// with the current-thread runtime it lives on: `c.rt.block_on(c.store.…)`.
#[derive(Debug)]
pub struct Client {
    /// The runtime of the connection.
    pub rt: tokio::runtime::Runtime,
    /// The store.
    pub store: RedisStore,
}

impl Client {
    /// Connects to `url` (any URL form the store accepts).
    pub fn connect(url: &str) -> io::Result<Client> {
        Self::connect_scoped(url, SCOPE)
    }

    /// Connects to `url` with the key scope `scope` (`BP_REDIS_SCOPE`).
    pub fn connect_scoped(url: &str, scope: &str) -> io::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let url = RedisUrl::parse(url).map_err(io::Error::other)?;
        let store = rt
            .block_on(RedisStore::connect(RedisOptions::new(url, scope)))
            .map_err(io::Error::other)?;
        Ok(Client { rt, store })
    }

    /// Appends `ticks` through [`TickStore::append`], as `bp-collector` does.
    pub fn append(&self, ticks: &[Tick]) -> io::Result<()> {
        self.rt
            .block_on(self.store.append(ticks))
            .map(drop)
            .map_err(io::Error::other)
    }
}

/// One call of [`RECORD_HOOK`]: one line of its output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// `BP_IDEMPOTENCY_KEY`: `<incident id>:<event>`.
    pub key: String,
    /// `opened` or `resolved`.
    pub event: String,
    /// The rule's name.
    pub rule: String,
    /// The host's name.
    pub host: String,
    /// The transition's time: the start time of an `opened`, the end time
    /// otherwise (ms since the epoch).
    pub at: i64,
}

impl Call {
    /// Parses one output line of [`RECORD_HOOK`]; `None` when it has fewer
    /// than six fields or its time is not RFC 3339.
    pub fn parse(line: &str) -> Option<Call> {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 6 {
            return None;
        }
        let time = if f[1] == "opened" { f[4] } else { f[5] };
        Some(Call {
            key: f[0].to_owned(),
            event: f[1].to_owned(),
            rule: f[2].to_owned(),
            host: f[3].to_owned(),
            at: metrics_model::time::parse_rfc3339(time)?,
        })
    }

    /// The call's transition, `(event, rule, host, at)`.
    pub fn transition(&self) -> Transition {
        (
            self.event.clone(),
            self.rule.clone(),
            self.host.clone(),
            self.at,
        )
    }
}

/// The first call of each idempotency key, in call order.
pub fn dedup(calls: &[Call]) -> Vec<Call> {
    let mut seen = BTreeSet::new();
    calls
        .iter()
        .filter(|c| seen.insert(c.key.clone()))
        .cloned()
        .collect()
}

/// The first whole second at least `lead_ms` from now: a `t0` for ticks
/// that the alerter evaluates live as time reaches them.
pub fn start_in(lead_ms: i64) -> i64 {
    (now_ms() + lead_ms) / 1000 * 1000 + 1000
}

/// `host`'s ticks of one `field`, stamped `t0 + i s`, with `values` as
/// `(count, value)` runs.
///
/// # Panics
/// When `host` or `field` is not a valid name.
pub fn series(host: &str, t0: i64, field: &str, values: &[(usize, f64)]) -> Vec<Tick> {
    let host: metrics_model::HostName = host
        .parse()
        .unwrap_or_else(|e| panic!("host {host:?}: {e}"));
    let field: metrics_model::Key = field
        .parse()
        .unwrap_or_else(|e| panic!("field {field:?}: {e}"));
    let mut out = Vec::new();
    let mut slot = 0;
    for &(count, v) in values {
        for _ in 0..count {
            out.push(Tick::new(
                host.clone(),
                t0 + slot * 1000,
                [(field.clone(), v)],
            ));
            slot += 1;
        }
    }
    out
}

/// `bp-collector`'s arguments for node `node` ticking every second, with
/// StatsD on `statsd` and HTTP ingestion on `http` (each an address,
/// `127.0.0.1:0` for a free port, or `off`).
pub fn collector_args<'a>(node: &'a str, statsd: &'a str, http: &'a str) -> [&'a str; 8] {
    [
        "--node",
        node,
        "--interval",
        "1s",
        "--statsd",
        statsd,
        "--http",
        http,
    ]
}

/// Writes the hook `dir/hooks/record.sh` (executable) with `body`, where
/// `OUT` becomes the path of `dir/hook.out`; returns the hook directory and
/// that output file.
pub fn hook_dir(dir: &Path, body: &str) -> io::Result<(PathBuf, PathBuf)> {
    let hooks = dir.join("hooks");
    std::fs::create_dir(&hooks)?;
    let out = dir.join("hook.out");
    let script = hooks.join("record.sh");
    std::fs::write(&script, body.replace("OUT", &out.display().to_string()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((hooks, out))
}

/// A child process with its standard output and error in one log file;
/// killed (`SIGKILL`) on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with no standard input and its output in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> io::Result<Proc> {
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn {cmd:?}: {e}")))?;
        Ok(Proc { child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (`SIGKILL`) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `SIGTERM` and waits up to 10 s for the process to end; kills it
    /// after that.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            self.kill9();
        }
    }
}

impl Proc {
    /// Sends `signal` (a `kill` name such as `-HUP`) to the process.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()?
            .success();
        if ok {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill {signal} failed")))
        }
    }
}

/// Starts `cmd`, a standalone `bp-alerter` (its `REDIS_URL` removed) with
/// a `--statsd` address, its output in `log`, and waits (up to a minute)
/// until it listens for StatsD.
pub fn start_standalone(mut cmd: Command, log: PathBuf) -> io::Result<Proc> {
    cmd.env_remove("REDIS_URL").env_remove("CLUSTER_ENABLED");
    // The on-disk store beside the log (never in the test's working
    // directory, which tests share), unless the caller chose one.
    if !cmd.get_envs().any(|(k, _)| k == "BP_DATA_DIR")
        && !cmd
            .get_args()
            .any(|a| a == "--ephemeral" || a == "--data-dir")
        && let Some(dir) = log.parent()
    {
        cmd.env("BP_DATA_DIR", dir.join("data"));
    }
    let mut p = Proc::spawn(cmd, log)?;
    if !wait_until(Duration::from_mins(1), || {
        p.log().contains("statsd listening") || !p.running()
    }) || !p.running()
    {
        return Err(io::Error::other(format!(
            "the standalone alerter did not start listening for StatsD:\n{}",
            p.log()
        )));
    }
    Ok(p)
}

/// The body of `GET path` from the HTTP server on `127.0.0.1:port` (no
/// token, `Connection: close`, 10 s read timeout); `None` when it does not
/// answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    Some(resp.split_once("\r\n\r\n")?.1.to_owned())
}

/// Sends one StatsD datagram to `127.0.0.1:port`.
pub fn send_statsd(port: u16, datagram: &[u8]) -> io::Result<()> {
    std::net::UdpSocket::bind("127.0.0.1:0")?
        .send_to(datagram, ("127.0.0.1", port))
        .map(|_| ())
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An alerter's test directory, removed on drop: `config.json` with a 1 s
/// collection and watcher interval, a 300 ms evaluation delay, the rules
/// given and hooks from `hooks/` (timeout 5 s, retry backoff 100 ms, then
/// the extra hook settings given); the hook `hooks/record.sh` and its
/// output `hook.out` (see [`hook_dir`]).
#[derive(Debug)]
pub struct Setup {
    dir: TempDir,
}

impl Setup {
    /// Writes the directory: `rules` is the JSON array of rules,
    /// `hook_body` the hook script ([`RECORD_HOOK`], [`HANGING_HOOK`], …)
    /// and `hooks_extra` an object of hook settings that override or add to
    /// the defaults (`json!({})` for none).
    pub fn new(rules: &str, hook_body: &str, hooks_extra: &Value) -> io::Result<Setup> {
        let dir = tempfile::Builder::new().prefix("bp-alerter-").tempdir()?;
        let (hooks, _) = hook_dir(dir.path(), hook_body)?;
        let mut hooks_cfg = json!({ "directory": hooks, "timeout": "5s", "retryBackoff": "100ms" });
        if let (Some(cfg), Some(extra)) = (hooks_cfg.as_object_mut(), hooks_extra.as_object()) {
            for (k, v) in extra {
                cfg.insert(k.clone(), v.clone());
            }
        }
        let config = json!({
            "monitoring": { "collectionInterval": "1s" },
            "alerting": {
                "watcherInterval": "1s",
                "evaluationDelay": "300ms",
                "rules": serde_json::from_str::<Value>(rules)?,
                "hooks": hooks_cfg,
            }
        });
        std::fs::write(dir.path().join("config.json"), config.to_string())?;
        Ok(Setup { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// The hook calls so far, in call order (lines that are not a whole
    /// call are left out).
    pub fn calls(&self) -> Vec<Call> {
        std::fs::read_to_string(self.dir.path().join("hook.out"))
            .unwrap_or_default()
            .lines()
            .filter_map(Call::parse)
            .collect()
    }

    /// Starts `bin run` (the `bp-alerter` binary) with this configuration as
    /// node `name`, with `REDIS_URL=redis_url`, the API on a free port, no
    /// StatsD and `RUST_LOG=info`; its output goes to `<dir>/<name>.log`.
    pub fn alerter(&self, bin: &Path, redis_url: &str, name: &str) -> io::Result<Proc> {
        self.alerter_with(bin, redis_url, name, &[])
    }

    /// [`Setup::alerter`] with these environment variables added.
    pub fn alerter_with(
        &self,
        bin: &Path,
        redis_url: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> io::Result<Proc> {
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--config"])
            .arg(self.config())
            .args(["--node", name, "--listen", "127.0.0.1:0", "--statsd", "off"])
            .env("REDIS_URL", redis_url)
            .env("RUST_LOG", "info")
            .env_remove("CLUSTER_ENABLED");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(cmd, self.dir.path().join(format!("{name}.log")))
    }

    /// What `bin replay` (the `bp-alerter` binary) says of `ticks` with
    /// these rules and a 1 s watcher interval: the transitions, sorted.
    pub fn replay(&self, bin: &Path, ticks: &[Tick]) -> io::Result<Vec<Transition>> {
        let mut child = Command::new(bin)
            .args(["replay", "--rules"])
            .arg(self.config())
            .args(["--watcher-interval", "1s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin of bp-alerter replay"))?;
        for t in ticks {
            writeln!(stdin, "{}", t.to_json_line())?;
        }
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "bp-alerter replay failed ({})",
                out.status
            )));
        }
        let text = String::from_utf8(out.stdout).map_err(io::Error::other)?;
        let mut v = Vec::new();
        for l in text.lines() {
            let j: Value = serde_json::from_str(l)?;
            let i = &j["incident"];
            let text = |v: &Value, what: &str| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| io::Error::other(format!("no {what} in replay line {l}")))
            };
            v.push((
                text(&j["event"], "event")?,
                text(&i["ruleName"], "ruleName")?,
                text(&i["hostName"], "hostName")?,
                j["at"]
                    .as_i64()
                    .ok_or_else(|| io::Error::other(format!("no at in replay line {l}")))?,
            ));
        }
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisServer;
    use metrics_model::time::format_rfc3339;

    #[test]
    fn calls_parse_the_record_hook_lines() {
        let opened = Call::parse("id-1:opened|opened|High CPU|node-a|2024-05-01T10:00:00Z|")
            .expect("an opened call");
        assert_eq!(opened.key, "id-1:opened");
        assert_eq!(opened.at, 1_714_557_600_000);
        let resolved = Call::parse(
            "id-1:resolved|resolved|High CPU|node-a|2024-05-01T10:00:00Z|2024-05-01T10:00:05Z",
        )
        .expect("a resolved call");
        assert_eq!(
            resolved.transition(),
            (
                "resolved".into(),
                "High CPU".into(),
                "node-a".into(),
                1_714_557_605_000
            )
        );
        assert_eq!(Call::parse("id-1:opened|opened|r|h"), None);
        assert_eq!(Call::parse("id-1:opened|opened|r|h|yesterday|"), None);
        let again = opened.clone();
        assert_eq!(
            dedup(&[opened.clone(), resolved.clone(), again]),
            [opened, resolved]
        );
    }

    #[test]
    fn ticks_start_on_a_whole_second_and_count_up() {
        let before = now_ms();
        let t0 = start_in(2000);
        assert_eq!(t0 % 1000, 0);
        assert!(t0 > before + 2000 && t0 <= now_ms() + 3000, "{t0}");
        let ticks = series("node-a", t0, "cpu.usage", &[(2, 90.0), (1, 10.0)]);
        let ts: Vec<i64> = ticks.iter().map(|t| t.ts).collect();
        assert_eq!(ts, [t0, t0 + 1000, t0 + 2000]);
        assert_eq!(
            ticks[2].get(&"cpu.usage".parse().unwrap()),
            Some(10.0),
            "{}",
            ticks[2].to_json_line()
        );
        assert_eq!(
            collector_args("n", "off", "127.0.0.1:0"),
            [
                "--node",
                "n",
                "--interval",
                "1s",
                "--statsd",
                "off",
                "--http",
                "127.0.0.1:0"
            ]
        );
    }

    #[test]
    fn setup_writes_config_and_an_executable_recording_hook() {
        let setup = Setup::new(
            r#"[{ "name": "r" }]"#,
            RECORD_HOOK,
            &json!({ "timeout": "1s", "maxAttempts": 1 }),
        )
        .unwrap();
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(setup.config()).unwrap()).unwrap();
        let hooks = &config["alerting"]["hooks"];
        assert_eq!(hooks["timeout"], "1s");
        assert_eq!(hooks["maxAttempts"], 1);
        assert_eq!(hooks["retryBackoff"], "100ms");
        assert_eq!(config["alerting"]["rules"][0]["name"], "r");
        // The hook records a call as one line that reads back as a Call.
        let start = format_rfc3339(1_714_557_600_000);
        let status = Command::new(setup.dir().join("hooks/record.sh"))
            .env("BP_IDEMPOTENCY_KEY", "id-1:opened")
            .env("BP_INCIDENT_EVENT", "opened")
            .env("BP_INCIDENT_RULE_NAME", "r")
            .env("BP_INCIDENT_HOST_NAME", "node-a")
            .env("BP_INCIDENT_START_TIME", &start)
            .env("BP_INCIDENT_END_TIME", "")
            .status()
            .unwrap();
        assert!(status.success());
        let calls = setup.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].at, 1_714_557_600_000);
    }

    #[test]
    fn client_appends_through_the_store() {
        let redis = RedisServer::start();
        let c = Client::connect(&redis.url()).unwrap();
        let t0 = 1_714_557_600_000;
        c.append(&series("node-a", t0, "cpu.usage", &[(3, 50.0)]))
            .unwrap();
        let host = "node-a".parse().unwrap();
        let stored =
            c.rt.block_on(c.store.range(&host, t0, t0 + 10_000))
                .unwrap();
        assert_eq!(stored.len(), 3);
        assert!(Client::connect("http://not-redis").is_err());
    }
}
