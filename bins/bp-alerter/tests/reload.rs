//! SIGHUP reloads the hooks too, through the real binary and real HTTP
//! receivers: a webhook whose URL changes delivers its pending transition
//! with the new URL, and a removed webhook's pending transition becomes a
//! dead letter ("hook removed"), counted in `/metrics`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::harness::{Proc, send_statsd, start_standalone};
use test_support::wait_until;

const DEADLINE: Duration = Duration::from_mins(1);

/// A tiny HTTP receiver answering every request with `status`, keeping the
/// bodies it received.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, status, &kept));
            }
        });
        Receiver { url, bodies }
    }

    fn events(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter_map(|v| v["event"].as_str().map(str::to_owned))
            .collect()
    }
}

fn serve(stream: TcpStream, status: u16, kept: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        kept.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The rule's 8 s timeframe keeps the incident open well past the two
/// reloads that come before its resolve (each waits up to the 2 s hook
/// timeout for a delivery in flight).
fn config(webhooks: &Value, hooks_dir: &std::path::Path) -> String {
    json!({
        "monitoring": { "collectionInterval": "1s" },
        "alerting": { "watcherInterval": "1s", "evaluationDelay": "300ms",
            "rules": [{ "name": "Errors", "field": "errors.count", "aggregation": "sum",
                        "operand": "equalOrMoreThan", "value": 1, "timeframe": "8s" }],
            "hooks": { "directory": hooks_dir, "webhooks": webhooks, "timeout": "2s",
                       "maxAttempts": 100, "retryBackoff": "500ms" } }
    })
    .to_string()
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn sighup_applies_changed_and_removed_hooks_to_pending_transitions() {
    let failing = Receiver::start(500);
    let working = Receiver::start(200);
    let dir = tempfile::tempdir().unwrap();
    let hooks_dir = dir.path().join("hooks");
    std::fs::create_dir(&hooks_dir).unwrap();
    let path = dir.path().join("c.json");
    let write = |webhooks: Value| std::fs::write(&path, config(&webhooks, &hooks_dir)).unwrap();
    write(json!([{ "name": "ops", "url": failing.url }]));
    let (http, statsd) = (test_support::free_port(), test_support::free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bp-alerter"));
    cmd.args(["--config", path.to_str().unwrap(), "--node", "reloaded"])
        .args(["--listen", &format!("127.0.0.1:{http}")])
        .args(["--statsd", &format!("127.0.0.1:{statsd}")]);
    let child = start_standalone(cmd, dir.path().join("log")).unwrap();
    let log = || child.log();
    let hup = |child: &Proc| child.signal("-HUP").unwrap();
    send_statsd(statsd, b"bp.errors:2|c").unwrap();

    // The open is retried against the failing URL...
    assert!(
        wait_until(DEADLINE, || failing.events().iter().any(|e| e == "opened")),
        "{}",
        log()
    );
    // ... until a reload points the webhook elsewhere: delivered there.
    write(json!([{ "name": "ops", "url": working.url }]));
    hup(&child);
    assert!(
        wait_until(DEADLINE, || working.events().iter().any(|e| e == "opened")),
        "the changed webhook never delivered the pending open:\n{}",
        log()
    );
    assert!(log().contains("hooks reloaded"), "{}", log());

    // The resolve, pending at a webhook that fails, then removed by a
    // reload: a dead letter, counted.
    write(json!([{ "name": "stuck", "url": failing.url }]));
    hup(&child);
    assert!(
        wait_until(DEADLINE, || failing
            .events()
            .iter()
            .any(|e| e == "resolved")),
        "{}",
        log()
    );
    write(json!([]));
    hup(&child);
    assert!(
        wait_until(DEADLINE, || metric(
            http,
            "bp_hook_removed_dead_letters_total"
        ) == Some(1.0)),
        "no dead letter for the removed hook:\n{}",
        log()
    );
    assert!(
        !working.events().iter().any(|e| e == "resolved"),
        "the resolve went to a webhook that was no longer configured"
    );
    drop(child);
}
