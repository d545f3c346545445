//! Node breadth through the real `bp-collector` binary (issue 14): a
//! configuration's `monitoring.processes`, `interfaces` and `filesystems`
//! show in the ticks it prints (a dry run: no `REDIS_URL`), and every
//! mistake in them exits 2 naming its JSON path.

mod common;

use std::process::Command;

use common::{BIN, Collector, DEADLINE};
use serde_json::Value;
use test_support::wait_until;

#[test]
fn watched_process_loopback_and_root_filesystem_in_the_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let arg = format!("86398.{}", std::process::id());
    let path = dir.path().join("botpress.config.json");
    std::fs::write(
        &path,
        serde_json::json!({ "pro": { "monitoring": {
            "collectionInterval": "1s",
            "interfaces": { "include": ["lo"] },
            "filesystems": { "exclude": ["/nonexistent/*"] },
            "processes": [
                { "name": "napper", "match": { "cmdline": format!("sleep {arg}") } },
                { "name": "ghost", "match": { "comm": "no-such-process" } }
            ]
        } } })
        .to_string(),
    )
    .unwrap();
    let mut sleeper = Command::new("sleep").arg(&arg).spawn().unwrap();
    let mut c = Collector::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--node",
            "bp-1",
            "--statsd",
            "off",
            "--http",
            "off",
        ],
        &[],
    );
    // the second tick has rates (the first reading is the collector's start)
    assert!(
        wait_until(DEADLINE, || c.stdout().len() >= 2),
        "stderr:\n{}",
        c.stderr().join("\n")
    );
    let tick: Value = serde_json::from_str(&c.stdout()[1]).unwrap();
    let v = &tick["values"];
    assert_eq!(v["process.count[napper]"], 1.0, "{tick}");
    assert_eq!(v["process.count[ghost]"], 0.0, "{tick}");
    assert!(v["process.mem[napper]"].as_f64().unwrap() > 0.0, "{tick}");
    assert!(v["net.rx[lo]"].is_number(), "{tick}");
    let usage = v["disk.usage[/]"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&usage), "{tick}");
    assert!(
        v["load.1"].is_number() && v["load.15"].is_number(),
        "{tick}"
    );
    // the memory figure in use is said once at start
    assert!(
        c.stderr()
            .iter()
            .filter(|l| l.contains("mem.usage and mem.free are against"))
            .count()
            == 1,
        "{}",
        c.stderr().join("\n")
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let n = c.stdout().len();
    assert!(wait_until(DEADLINE, || c.stdout().len() >= n + 2));
    let tick: Value = serde_json::from_str(c.stdout().last().unwrap()).unwrap();
    assert_eq!(tick["values"]["process.count[napper]"], 0.0, "{tick}");
    c.terminate();
}

#[test]
fn mistakes_in_the_node_options_exit_2_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let cases: &[(&str, &str)] = &[
        (
            r#"{"processes": {"name": "x"}}"#,
            "monitoring.processes: expected a list of watched processes",
        ),
        (
            r#"{"processes": [{"match": {"comm": "node"}}]}"#,
            "monitoring.processes[0].name: required",
        ),
        (
            r#"{"processes": [{"name": "a]b", "match": {"comm": "node"}}]}"#,
            "monitoring.processes[0].name: an instance must not hold ']'",
        ),
        (
            r#"{"processes": [{"name": "bot"}]}"#,
            "monitoring.processes[0].match: required",
        ),
        (
            r#"{"processes": [{"name": "bot", "match": {"comm": "a", "exe": "b"}}]}"#,
            "monitoring.processes[0].match: expected an object with exactly one of comm, exe, cmdline, got 2",
        ),
        (
            r#"{"processes": [{"name": "bot", "match": {"pid": 1}}]}"#,
            "monitoring.processes[0].match.pid: unknown key",
        ),
        (
            r#"{"processes": [{"name": "bot", "match": {"comm": ""}}]}"#,
            "monitoring.processes[0].match.comm: a pattern must be non-empty",
        ),
        (
            r#"{"processes": [{"name": "bot", "match": {"comm": "a"}}, {"name": "bot", "match": {"comm": "b"}}]}"#,
            "monitoring.processes[1].name: \"bot\" is already the name of another watched process",
        ),
        (
            r#"{"filesystems": ["/"]}"#,
            "monitoring.filesystems: expected an object with include and/or exclude, got an array",
        ),
        (
            r#"{"interfaces": {"include": "lo"}}"#,
            "monitoring.interfaces.include: expected a list of patterns, got a string",
        ),
        (
            r#"{"blockDevices": {"exclude": [3]}}"#,
            "monitoring.blockDevices.exclude[0]: expected a string, got a number",
        ),
        (
            r#"{"filesystems": {"only": ["/"]}}"#,
            "monitoring.filesystems.only: unknown key; valid keys are include, exclude",
        ),
    ];
    for (monitoring, expected) in cases {
        std::fs::write(&path, format!(r#"{{"monitoring": {monitoring}}}"#)).unwrap();
        let out = Command::new(BIN)
            .args(["--config", path.to_str().unwrap(), "--node", "n1"])
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{monitoring}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{monitoring}: expected {expected:?} in\n{stderr}"
        );
        assert!(out.stdout.is_empty(), "{monitoring}");
    }
}
