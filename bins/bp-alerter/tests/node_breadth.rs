//! Issue 14's live check, through the real standalone `bp-alerter` sampling
//! this very machine: a per-mount rule on `disk.usage` whose threshold is
//! just below the root filesystem's current usage (as `df -P /` says) opens
//! for `"instance": "/"` — seen by a real exec hook and in the JSON API —
//! and a SIGHUP reload that raises the threshold above it resolves it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use test_support::harness::{http_get, start_standalone};
use test_support::wait_until;

const DEADLINE: Duration = Duration::from_mins(1);

fn get(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

fn config(threshold: f64, hooks: &Path) -> String {
    json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": {
            "watcherInterval": "1s",
            "evaluationDelay": "300ms",
            "rules": [{
                "name": "Filesystem almost full", "field": "disk.usage",
                "aggregation": "max", "operand": "equalOrMoreThan",
                "value": threshold, "timeframe": "2s", "severity": "critical"
            }],
            "hooks": { "directory": hooks, "timeout": "5s", "retryBackoff": "100ms" }
        }
    })
    .to_string()
}

/// The hook's lines: `event|rule|host|instance|severity`.
fn calls(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_per_mount_rule_on_the_root_filesystem_opens_and_a_reload_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let out = dir.path().join("calls");
    let script = hooks.join("record.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s\\n' \"$BP_INCIDENT_EVENT\" \"$BP_INCIDENT_RULE_NAME\" \
             \"$BP_INCIDENT_HOST_NAME\" \"$BP_INCIDENT_INSTANCE\" \"$BP_INCIDENT_SEVERITY\" >> '{}'\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let usage = test_support::df_used_percent("/");
    // just below: the root filesystem moves a little while tests write
    let below = (usage - 1.0).max(0.0);
    let path = dir.path().join("config.json");
    std::fs::write(&path, config(below, &hooks)).unwrap();
    let (http, statsd) = (test_support::free_port(), test_support::free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bp-alerter"));
    cmd.args(["--config", path.to_str().unwrap(), "--node", "this-machine"])
        .args(["--listen", &format!("127.0.0.1:{http}")])
        .args(["--statsd", &format!("127.0.0.1:{statsd}")])
        .env("RUST_LOG", "info");
    let child = start_standalone(cmd, dir.path().join("log")).unwrap();
    let opened = "opened|Filesystem almost full|this-machine|/|critical";
    assert!(
        wait_until(DEADLINE, || calls(&out).iter().any(|l| l == opened)),
        "root at {usage:.2} %, threshold {below:.2}: hook calls {:?}\n{}",
        calls(&out),
        child.log()
    );
    // the same incident in the JSON API, with its instance
    let open = get(http, "/api/v1/incidents").unwrap();
    let root: Vec<&Value> = open["open"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["instance"] == "/")
        .collect();
    assert_eq!(root.len(), 1, "{open}");
    assert_eq!(root[0]["ruleName"], "Filesystem almost full", "{open}");
    assert_eq!(root[0]["severity"], "critical", "{open}");
    let trigger = root[0]["triggerValue"].as_f64().unwrap();
    assert!(
        (trigger - usage).abs() <= 1.0,
        "triggerValue {trigger}, df {usage}"
    );

    // raise the threshold above the root's usage: the reload resolves it
    std::fs::write(&path, config(usage + 5.0, &hooks)).unwrap();
    child.signal("-HUP").unwrap();
    let resolved = "resolved|Filesystem almost full|this-machine|/|critical";
    assert!(
        wait_until(DEADLINE, || calls(&out).iter().any(|l| l == resolved)),
        "hook calls {:?}\n{}",
        calls(&out),
        child.log()
    );
    assert!(
        wait_until(DEADLINE, || get(http, "/api/v1/incidents").is_some_and(
            |v| v["open"]
                .as_array()
                .is_some_and(|a| !a.iter().any(|i| i["instance"] == "/"))
        )),
        "{:?}",
        get(http, "/api/v1/incidents")
    );
    drop(child);
}
