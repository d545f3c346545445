//! The disk-full drill through the binary, on a real full file system: the
//! standalone alerter's data directory is a 8 MiB tmpfs mounted in a user
//! and mount namespace of its own (`unshare --user --map-root-user
//! --mount`: no privilege needed, and the mount goes away with the
//! process). The test fills the tmpfs through `/proc/<pid>/root` while
//! StatsD errors come in, then frees the space: the I/O failures are
//! counted in /metrics, the dashboard API keeps answering, the incident of
//! that time opens and resolves once each (its hook runs once its commit is
//! stored), and no tick is lost — every error sent is in the history.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use test_support::harness::{Proc, http_get, send_statsd, start_standalone};
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_bp-alerter");

fn get(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let text = http_get(port, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Fills the file system under `dir` (seen through the alerter's mount
/// namespace) until it refuses: returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                break;
            }
        }
    }
    // A write smaller than a page may still fit in the filler's last page:
    // fill that too.
    while f.write(&[0x5a]).is_ok_and(|n| n > 0) {}
    path
}

#[test]
#[allow(clippy::too_many_lines)] // one drill, checked step by step
fn a_real_full_disk_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let calls = dir.path().join("calls");
    let exec = hooks.join("record.sh");
    std::fs::write(
        &exec,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$BP_IDEMPOTENCY_KEY\" >> '{}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
            "rules": [{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
                        "operand": "equalOrMoreThan", "value": 1, "timeframe": "2s" }],
            "hooks": { "directory": "hooks", "timeout": "10s", "retryBackoff": "100ms" } }
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mount = dir.path().join("data");
    std::fs::create_dir(&mount).unwrap();
    let (http, statsd) = (test_support::free_port(), test_support::free_port());
    let mut cmd = Command::new("unshare");
    cmd.current_dir(dir.path())
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=8m bp-drill "$0" && exec "$@""#)
        .arg(&mount)
        .arg(BIN)
        .args(["--config", "config.json", "--node", "drill"])
        .args(["--listen", &format!("127.0.0.1:{http}")])
        .args(["--statsd", &format!("127.0.0.1:{statsd}")])
        .arg("--data-dir")
        .arg(mount.join("monitoring"));
    let mut alerter: Proc =
        start_standalone(cmd, dir.path().join("alerter.log")).unwrap_or_else(|e| {
            panic!("cannot start bp-alerter on a tmpfs in a user namespace (unshare): {e}")
        });
    // The tmpfs as the alerter sees it (`sh` exec'd the alerter: same pid).
    let inside = PathBuf::from(format!("/proc/{}/root", alerter.pid()))
        .join(mount.strip_prefix("/").unwrap());
    assert!(
        inside.join("monitoring").is_dir(),
        "the data directory is not on the tmpfs: {}",
        inside.display()
    );
    let calls_of = || -> Vec<String> {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    std::thread::sleep(Duration::from_secs(2));

    // The disk fills; errors come in while it is full, with 90 custom
    // gauges whose values change every time: ticks of some 3 KB, so that
    // the file must grow soon (until then redb reuses its free pages, and
    // writes still succeed on a full disk).
    let filler = fill(&inside);
    let mut sent = 0u32;
    let mut round = 0u32;
    let mut send_round = |errors: bool| {
        round += 1;
        let mut lines: Vec<String> = (0..90)
            .map(|i| format!("custom.drill_gauge_{i}:{}.{round}|g", i * 7 + round))
            .collect();
        if errors {
            lines.push("bp.errors:1|c".to_owned());
            sent += 1;
        }
        for chunk in lines.chunks(30) {
            send_statsd(statsd, chunk.join("\n").as_bytes()).unwrap();
        }
    };
    for _ in 0..12 {
        send_round(true);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            send_round(false);
            metric(http, "bp_store_io_failures_total").is_some_and(|n| n > 0.0)
        }),
        "no I/O failure counted on a full disk\n{}",
        alerter.log()
    );
    assert!(
        alerter.log().contains("disk full or read-only"),
        "the failure is not logged\n{}",
        alerter.log()
    );
    // Evaluation goes on; the dashboard API answers from the full disk.
    std::thread::sleep(Duration::from_secs(4));
    assert!(alerter.running(), "{}", alerter.log());
    let incidents = get(http, "/api/v1/incidents");
    assert!(
        incidents.as_ref().is_some_and(|v| v["open"].is_array()),
        "the API does not answer on a full disk: {incidents:?}\n{}",
        alerter.log()
    );
    let during = calls_of();

    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || calls_of()
            .iter()
            .any(|k| k.ends_with(":resolved"))),
        "no resolve after space returned: {:?}\n{}",
        calls_of(),
        alerter.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            metric(http, "bp_store_ticks_in_memory") == Some(0.0)
                && metric(http, "bp_commits_waiting") == Some(0.0)
        }),
        "ticks or commits still wait\n{}",
        http_get(http, "/metrics").unwrap_or_default()
    );
    let mut keys = calls_of();
    keys.dedup(); // at least once: a repeat of a key is allowed
    assert_eq!(
        keys.len(),
        2,
        "one open, one resolve: {keys:?} (during: {during:?})"
    );
    let id = keys[0].strip_suffix(":opened").expect("the open first");
    assert_eq!(keys[1], format!("{id}:resolved"));
    // No tick lost: every error sent (all while the disk was full) is in
    // the stored history, read back through the API.
    let total = || -> f64 {
        get(
            http,
            "/api/v1/series?fields=errors.count&range=5m&step=1s&stats=sum",
        )
        .and_then(|s| {
            Some(
                s["series"][0]["sum"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_f64)
                    .sum(),
            )
        })
        .unwrap_or(-1.0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || (total() - f64::from(sent))
            .abs()
            < 1e-9),
        "errors in the history: {} of {sent}\n{}",
        total(),
        alerter.log()
    );
    alerter.kill9();
}
