//! Regression tests of the outside test's findings (issue 10) through the
//! real `bp-alerter` binary: hooks never see the product's secrets, a rule
//! name cannot forge a log line, logs into a file carry no colour codes,
//! paths in a configuration file are relative to it, the standalone
//! `/healthz` shows the collector's StatsD counters, a cluster alerter
//! answers `/healthz` and `/readyz` while Redis is down, Redis credentials
//! in query parameters never show, configurations Botpress wrote are
//! accepted, and durations in every form of the `ms` library.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::harness::{send_statsd, start_standalone};
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");
const DEADLINE: Duration = Duration::from_mins(1);

/// GET over a real socket: (status, headers and body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, resp))
}

fn body(resp: &str) -> Value {
    let text = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(text).unwrap_or(Value::Null)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SECRETS: [(&str, &str); 4] = [
    ("BP_API_TOKEN", "api-t0ken-sekrit"),
    ("BP_COLLECTOR_TOKEN", "c0llector-sekrit"),
    ("BP_SMTP_PASSWORD", "smtp-sekrit"),
    ("REDIS_URL", ""),
];

#[test]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
fn standalone_secrets_log_lines_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    // The configuration file and its hooks in one directory; the alerter
    // runs from another, so a hook directory resolved against the working
    // directory would silently run nothing.
    let conf = dir.path().join("conf");
    let hooks = conf.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let out = dir.path().join("calls");
    std::fs::create_dir(&out).unwrap();
    let script = hooks.join("dump.sh");
    std::fs::write(
        &script,
        format!(
            // Written whole, then renamed: a reader never sees a half file.
            "#!/bin/sh\nenv > '{0}/tmp.'$$\nmv '{0}/tmp.'$$ '{0}/'\"$BP_IDEMPOTENCY_KEY\".env\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let forged = "Errors\nINFO bp_alerter: forged line";
    let config = json!({
        "monitoring": { "collectionInterval": "1 second" },
        "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
            "rules": [{ "name": forged, "field": "errors.count", "aggregation": "sum",
                        "operand": "equalOrMoreThan", "value": 1, "timeframe": "3 seconds" }],
            "hooks": { "directory": "hooks" } }
    });
    std::fs::write(conf.join("c.json"), config.to_string()).unwrap();
    let cwd = dir.path().join("elsewhere");
    std::fs::create_dir(&cwd).unwrap();
    let (http, statsd) = (test_support::free_port(), test_support::free_port());
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&cwd)
        .args(["--config", "../conf/c.json", "--node", "box-1"])
        .args(["--listen", &format!("127.0.0.1:{http}")])
        .args(["--statsd", &format!("127.0.0.1:{statsd}")]);
    for (k, v) in SECRETS {
        if !v.is_empty() {
            cmd.env(k, v);
        }
    }
    let alerter = start_standalone(cmd, dir.path().join("log")).unwrap();
    let log = || alerter.log();
    send_statsd(statsd, b"bp.errors:2|c").unwrap();
    let env_file = || {
        std::fs::read_dir(&out)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(":opened.env"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
    };
    assert!(
        wait_until(DEADLINE, || env_file().is_some()),
        "the hook in the configuration file's directory never ran:\n{}",
        log()
    );
    let env = env_file().unwrap();
    assert!(env.contains("BP_INCIDENT_RULE_NAME="), "{env}");
    assert!(env.contains("BP_IDEMPOTENCY_KEY="), "{env}");
    for (k, v) in SECRETS {
        assert!(
            !env.contains(&format!("{k}=")),
            "{k} reached the hook:\n{env}"
        );
        if !v.is_empty() {
            assert!(!env.contains(v), "{k}'s value reached the hook");
        }
    }
    // The standalone /healthz shows the collector's StatsD counters.
    let (status, resp) = get(http, "/healthz").unwrap();
    assert_eq!(status, 200, "{resp}");
    let h = body(&resp);
    assert!(
        h["collector"]["statsd"]["datagrams"].as_u64().unwrap() >= 1,
        "{h}"
    );
    assert!(
        h["collector"]["statsd"]["receiveBuffer"].as_u64().unwrap() > 0,
        "{h}"
    );
    assert!(h["collector"]["statsd"]["kernelDrops"].is_u64(), "{h}");
    // The log: the rule name escaped, no forged line, no colour codes.
    assert!(
        wait_until(DEADLINE, || log().contains("incident opened")),
        "{}",
        log()
    );
    let text = log();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{text}"
    );
    assert!(
        text.contains(r"Errors\nINFO bp_alerter: forged line"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("INFO bp_alerter: forged")),
        "a rule name forged a log line:\n{text}"
    );
    for (_, v) in SECRETS {
        assert!(
            v.is_empty() || !text.contains(v),
            "a secret in the log:\n{text}"
        );
    }
}

#[test]
fn a_missing_hook_directory_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({ "alerting": { "rules": [], "hooks": { "directory": "nope" } } });
    std::fs::write(dir.path().join("c.json"), config.to_string()).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", dir.path().join("c.json").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let want = format!(
        "warning: the hook directory {} does not exist",
        dir.path().join("nope").display()
    );
    assert!(text.contains(&want), "{text}");
}

#[test]
fn a_cluster_alerter_answers_health_while_redis_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (http, redis) = (test_support::free_port(), test_support::free_port());
    let err = dir.path().join("err");
    let _alerter = Running(
        Command::new(BIN)
            .args([
                "--node",
                "waiting",
                "--listen",
                &format!("127.0.0.1:{http}"),
                "--statsd",
                "off",
            ])
            .env(
                "REDIS_URL",
                format!("redis://u@127.0.0.1:{redis}?password=qu3ry-s3cret"),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || get(http, "/healthz")
            .is_some_and(|(s, _)| s == 200)),
        "/healthz never answered while Redis was down:\n{}",
        log()
    );
    let (status, resp) = get(http, "/readyz").unwrap();
    assert_eq!(status, 503, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 2"),
        "{resp}"
    );
    assert_eq!(body(&resp)["status"], "starting", "{resp}");
    let (status, _) = get(http, "/api/v1/nodes").unwrap();
    assert_eq!(status, 503);
    assert!(
        wait_until(DEADLINE, || log()
            .matches("cannot connect to Redis")
            .count()
            >= 2),
        "{}",
        log()
    );
    assert!(!log().contains("qu3ry-s3cret"), "{}", log());
    assert!(log().contains("password=***"), "{}", log());
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    // In memory: these runs must leave nothing in the working directory.
    cmd.args(args)
        .arg("--ephemeral")
        .stdin(Stdio::null())
        .env_remove("REDIS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn incidents_never_prints_redis_credentials() {
    let port = test_support::free_port();
    for url in [
        format!("redis://u@127.0.0.1:{port}?password=qu3ry-s3cret"),
        format!("redis://127.0.0.1:{port}/0?pass=qu3ry-s3cret"),
        format!("redis://:qu3ry-s3cret@127.0.0.1:{port}"),
    ] {
        let out = run(&["incidents"], &[("REDIS_URL", &url)]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(!text.contains("qu3ry-s3cret"), "{url}: {text}");
        assert!(text.contains("***"), "{url}: {text}");
    }
}

fn check_config(dir: &Path, config: &Value) -> (Option<i32>, String) {
    let path = dir.join("botpress.config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], &[]);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn configurations_botpress_wrote_and_ms_durations() {
    let dir = tempfile::tempdir().unwrap();
    // Botpress ≤ 12.21.1's default configuration: alerting disabled with
    // an empty rule.
    let written = json!({ "pro": {
        "monitoring": { "enabled": true, "collectionInterval": "10s", "retentionPeriod": "10d",
                        "janitorInterval": "15m" },
        "alerting": { "enabled": false, "watcherInterval": "10s", "retentionPeriod": "10d",
                      "janitorInterval": "15m", "rules": [{}] } } });
    let (code, text) = check_config(dir.path(), &written);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warning: pro.alerting.rules[0]: missing keys")),
        "{text}"
    );
    // The alerter runs with it (standalone, no Redis).
    let path = dir.path().join("botpress.config.json");
    let port = test_support::free_port();
    let mut alerter = Running(
        Command::new(BIN)
            .args([
                "--config",
                path.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--statsd", "off", "--ephemeral"])
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(DEADLINE, || get(port, "/healthz").is_some()));
    assert!(alerter.0.try_wait().unwrap().is_none());
    drop(alerter);
    // Enabled, the same rule is an error.
    let mut enabled = written.clone();
    enabled["pro"]["alerting"]["enabled"] = json!(true);
    let (code, text) = check_config(dir.path(), &enabled);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("pro.alerting.rules[0]: missing keys"),
        "{text}"
    );
    assert!(!text.contains("warning:"), "{text}");

    // Durations as the original's `ms` library read them, wherever a file
    // configures one.
    let ms_forms = json!({ "pro": {
        "monitoring": { "collectionInterval": "10 seconds", "retentionPeriod": "2 weeks",
                        "janitorInterval": "1.5h" },
        "alerting": { "watcherInterval": "10000", "retentionPeriod": "1w",
            "rules": [{ "name": "cpu", "field": "cpu.usage", "aggregation": "avg",
                        "operand": "equalOrMoreThan", "value": 90, "timeframe": "2 Minutes",
                        "cooldown": "30 secs" }],
            "hooks": { "timeout": "5 seconds", "directory": "." } } } });
    let (code, text) = check_config(dir.path(), &ms_forms);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("every 10s, kept 14d"), "{text}");
    assert!(
        text.contains("alerting enabled (every 10s, 1 rule)"),
        "{text}"
    );
    // Flags keep the strict grammar.
    let rules = dir.path().join("rules.json");
    std::fs::write(&rules, "[]").unwrap();
    let out = run(
        &[
            "replay",
            "--rules",
            rules.to_str().unwrap(),
            "--watcher-interval",
            "10 seconds",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}
