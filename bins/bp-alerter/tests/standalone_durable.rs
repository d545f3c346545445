//! Standalone mode on its on-disk store (the default): `kill -9` and a
//! restart on the same data directory keep the open incident (same id,
//! resolved once), the cooldown in progress and the history; a second
//! alerter on the directory exits 2.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::harness::{Proc, send_statsd, start_standalone};
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");
const DEADLINE: Duration = Duration::from_secs(40);

fn get(port: u16, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (_, body) = resp.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// The lines both hooks wrote: `(hook, key)`.
fn calls(out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (hook, key) = l.split_once(' ')?;
            Some((hook.to_owned(), key.to_owned()))
        })
        .collect()
}

struct Box_ {
    dir: tempfile::TempDir,
    http: u16,
    statsd: u16,
}

impl Box_ {
    fn new() -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        let out = dir.path().join("calls");
        // The seed's kind of hook (Node.js, `incident` in scope) and an
        // executable one; each appends one line per call.
        std::fs::write(
            hooks.join("alert.js"),
            format!(
                "require('fs').appendFileSync({:?}, 'js ' + incident.id + ':' + (incident.endTime ? 'resolved' : 'opened') + '\\n')\n",
                out.display().to_string()
            ),
        )
        .unwrap();
        let exec = hooks.join("record.sh");
        std::fs::write(
            &exec,
            format!(
                "#!/bin/sh\nprintf 'exec %s\\n' \"$BP_IDEMPOTENCY_KEY\" >> '{}'\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = json!({
            "monitoring": { "collectionInterval": "1s" },
            "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
                "rules": [{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
                            "operand": "equalOrMoreThan", "value": 1, "timeframe": "3s",
                            "cooldown": "10s" }],
                "hooks": { "directory": "hooks", "timeout": "10s", "retryBackoff": "100ms" } }
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        Box_ {
            dir,
            http: test_support::free_port(),
            statsd: test_support::free_port(),
        }
    }

    fn start(&self, name: &str) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .args(["--config", "config.json", "--node", "box-1"])
            .args(["--listen", &format!("127.0.0.1:{}", self.http)])
            .args(["--statsd", &format!("127.0.0.1:{}", self.statsd)])
            // The default data directory (data/monitoring under the working
            // directory), named so that the harness leaves it alone.
            .args(["--data-dir", "data/monitoring"])
            .env_remove("BP_DATA_DIR");
        start_standalone(cmd, self.dir.path().join(format!("{name}.log"))).unwrap()
    }

    fn calls(&self) -> Vec<(String, String)> {
        calls(&self.dir.path().join("calls"))
    }

    fn errors(&self) {
        send_statsd(self.statsd, b"bp.errors:1|c").unwrap();
    }

    fn open_ids(&self) -> Vec<String> {
        get(self.http, "/api/v1/incidents")
            .and_then(|v| {
                v["open"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|i| i["id"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
fn kill_9_and_restart_keep_the_incident_the_cooldown_and_the_history() {
    let b = Box_::new();
    let mut first = b.start("first");
    b.errors();
    assert!(
        wait_until(DEADLINE, || b.calls().len() >= 2),
        "the hooks never saw the open: {:?}\n{}",
        b.calls(),
        first.log()
    );
    let key = b.calls()[0].1.clone();
    let id = key.split(':').next().unwrap().to_owned();
    assert!(key.ends_with(":opened"), "{key}");
    // Ticks of at least one more whole second before the kill.
    std::thread::sleep(Duration::from_millis(1500));
    let before_kill = metrics_model::time::now_ms();
    // Keep the condition true across the kill and the restart.
    b.errors();
    first.kill9();
    let data = b.dir.path().join("data/monitoring");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data directory mode {mode:o}");

    let second = b.start("second");
    b.errors();
    assert!(
        wait_until(Duration::from_secs(10), || b.open_ids() == [id.clone()]),
        "the open incident {id} is not open after the restart: {:?}\n{}",
        b.open_ids(),
        second.log()
    );
    // A second alerter on the same directory (the default one) stops at
    // once with exit 2.
    let out = Command::new(BIN)
        .current_dir(b.dir.path())
        .args(["--config", "config.json", "--node", "box-1"])
        .args(["--listen", "off", "--statsd", "off"])
        .env_remove("REDIS_URL")
        .env_remove("BP_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another bp-alerter"), "{err}");
    // The history from before the kill is there.
    let series = get(
        b.http,
        "/api/v1/series?fields=errors.count&range=5m&step=1s&stats=sum",
    )
    .unwrap();
    let t: Vec<i64> = serde_json::from_value(series["t"].clone()).unwrap();
    let sums = series["series"][0]["sum"].as_array().unwrap().clone();
    let before: f64 = t
        .iter()
        .zip(&sums)
        .filter(|(t, _)| **t + 1_000 <= before_kill)
        .filter_map(|(_, v)| v.as_f64())
        .sum();
    assert!(before >= 1.0, "no errors before the kill in {series}");

    // The condition clears: one resolve, same id, seen by both hooks.
    assert!(
        wait_until(DEADLINE, || b
            .calls()
            .iter()
            .filter(|(_, k)| k.ends_with(":resolved"))
            .count()
            >= 2),
        "no resolve: {:?}\n{}",
        b.calls(),
        second.log()
    );
    let resolved_at = Instant::now();
    let mut second = second;
    // Restart inside the cooldown: errors right away open nothing until it
    // ends, then they do.
    second.kill9();
    let third = b.start("third");
    let mut opened_again = None;
    while resolved_at.elapsed() < Duration::from_secs(30) {
        b.errors();
        if b.calls()
            .iter()
            .any(|(_, k)| k.ends_with(":opened") && !k.starts_with(&id))
        {
            opened_again = Some(resolved_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let opened_again = opened_again.unwrap_or_else(|| {
        panic!(
            "no open after the cooldown: {:?}\n{}",
            b.calls(),
            third.log()
        )
    });
    assert!(
        opened_again >= Duration::from_secs(7),
        "opened again {opened_again:?} after the resolve, inside the 10 s cooldown"
    );
    // Per hook: the first incident opened once and resolved once (one key
    // each; a redelivery after the kill would repeat a key, not add one).
    let all = b.calls();
    for hook in ["js", "exec"] {
        let mut keys: Vec<&str> = all
            .iter()
            .filter(|(h, k)| h == hook && k.starts_with(&id))
            .map(|(_, k)| k.as_str())
            .collect();
        let calls = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys,
            [format!("{id}:opened"), format!("{id}:resolved")],
            "{hook}: {calls} calls"
        );
    }
}
