//! The hook runner through the real binary: a hook never runs on an
//! incomplete payload, and hook processes (with their children) die with a
//! `kill -9`ed alerter instead of being re-parented and left running.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use test_support::harness::{send_statsd, start_standalone};
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");
const DEADLINE: Duration = Duration::from_mins(1);

fn runner(stdin: &[u8], script: &str, timeout_ms: u64) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["hook-runner", "--timeout-ms", &timeout_ms.to_string()])
        .args(["--parent", &std::process::id().to_string()])
        .args(["--", "/bin/sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn the_runner_starts_a_hook_only_on_a_whole_payload() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let script = format!("cat > '{}'; exit 3", marker.display());
    for partial in [
        &b""[..],
        b"{\"incident\":{\"id\":",
        b"{\"event\":\"opened\"} trailing",
    ] {
        let out = runner(partial, &script, 5_000);
        assert_eq!(
            out.status.code(),
            Some(incidents::hooks::runner::EXIT_INCOMPLETE),
            "{partial:?}"
        );
        assert!(!marker.exists(), "the hook ran on {partial:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not started"));
    }
    // A whole payload reaches the hook, and its exit status comes back.
    let payload = br#"{"event":"opened","incident":{"id":"x"}}"#;
    let out = runner(payload, &script, 5_000);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(std::fs::read(&marker).unwrap(), payload);
    // The timeout holds: the group (the hook and the runner) is killed.
    let out = runner(payload, "sleep 30", 300);
    assert_eq!(out.status.code(), None, "killed by a signal");
    // Not started by this process: refused.
    let out = Command::new(BIN)
        .args([
            "hook-runner",
            "--timeout-ms",
            "1000",
            "--parent",
            "1",
            "--",
            "/bin/true",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(incidents::hooks::runner::EXIT_ORPHANED)
    );
}

fn alive(pid: &str) -> bool {
    // A zombie is dead for our purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

#[test]
fn hook_processes_die_with_a_killed_alerter() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let pids = dir.path().join("pids");
    let script = hooks.join("slow.sh");
    // The hook and a child of its own, both long-lived.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > /dev/null\nsleep 60 &\necho \"$$ $!\" > '{}'\nwait\n",
            pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
            "rules": [{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
                        "operand": "equalOrMoreThan", "value": 1, "timeframe": "3s" }],
            "hooks": { "directory": hooks, "timeout": "30s" } }
    });
    std::fs::write(dir.path().join("c.json"), config.to_string()).unwrap();
    let statsd = test_support::free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", dir.path().join("c.json").to_str().unwrap()])
        .args(["--node", "doomed", "--listen", "off"])
        .args(["--statsd", &format!("127.0.0.1:{statsd}")]);
    let mut alerter = start_standalone(cmd, dir.path().join("log")).unwrap();
    send_statsd(statsd, b"bp.errors:1|c").unwrap();
    assert!(
        wait_until(DEADLINE, || std::fs::read_to_string(&pids)
            .is_ok_and(|p| p.split_whitespace().count() == 2)),
        "the hook never ran:\n{}",
        alerter.log()
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    let running: Vec<&str> = text.split_whitespace().collect();
    assert!(running.iter().all(|p| alive(p)), "{running:?}");
    alerter.kill9(); // SIGKILL: no cleanup of its own
    assert!(
        wait_until(Duration::from_secs(10), || running
            .iter()
            .all(|p| !alive(p))),
        "hook processes {running:?} outlived the alerter"
    );
}
