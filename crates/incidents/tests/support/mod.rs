//! Helpers shared by the hook tests: transitions, a tracing capture, hook
//! files, dispatchers with test settings, and async polling.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration as StdDuration;

use incidents::delivery::{Completion, Dispatcher, DispatcherOptions};
use incidents::hooks::HooksConfig;
use metrics_model::HostName;
use rules_engine::{Event, Incident, Transition};
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

/// A generous deadline for functional waits.
pub const DEADLINE: StdDuration = StdDuration::from_mins(1);

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global tracing subscriber writing every
/// event at debug level and above into a buffer.
pub fn capture_logs() {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = BufWriter(buf.clone());
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .init();
        buf
    });
}

/// Everything logged so far (by every test of this binary).
pub fn logs() -> String {
    let buf = LOG.get().expect("capture_logs() first");
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// The log lines containing `needle`.
pub fn log_lines_with(needle: &str) -> Vec<String> {
    logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Fails with a clear message when Node.js is missing.
pub fn require_node() {
    match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "Node.js (`node`) is required by the .js hook tests and was not found in PATH: install it (apt-get install nodejs)"
        ),
    }
}

/// An incident opened at `start` (ms) with `value`.
pub fn incident(rule: &str, host: &str, start: i64, value: f64) -> Incident {
    Incident {
        id: Uuid::new_v4(),
        rule_name: Arc::from(rule),
        host_name: HostName::parse_subject(host).expect("valid host name"),
        instance: None,
        severity: None,
        labels: None,
        description: None,
        start_time: start,
        end_time: None,
        trigger_value: value,
    }
}

/// The open transition of `inc`.
pub fn opened(inc: &Incident) -> Transition {
    Transition::new(Event::Opened, inc.start_time, inc.clone())
}

/// The resolve transition of `inc` at `end` (ms).
pub fn resolved(inc: &Incident, end: i64) -> Transition {
    let mut incident = inc.clone();
    incident.end_time = Some(end);
    Transition::new(Event::Resolved, end, incident)
}

/// Writes an executable file (mode 0755).
pub fn write_executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A hooks configuration for tests: `directory`, with fast retries.
pub fn config(directory: &Path, extra: serde_json::Value) -> HooksConfig {
    let mut v = serde_json::json!({
        "directory": directory.to_str().unwrap(),
        "retryBackoff": "10ms",
    });
    if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    HooksConfig::from_json(&v, "hooks").unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
}

/// Starts a dispatcher.
pub fn start(config: &HooksConfig) -> (Dispatcher, UnboundedReceiver<Completion>) {
    Dispatcher::start(config, DispatcherOptions::default()).expect("dispatcher starts")
}

/// Receives `n` completions (deadline [`DEADLINE`]), in arrival order.
pub async fn completions(rx: &mut UnboundedReceiver<Completion>, n: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(c)) => out.push(c),
            Ok(None) => panic!("completion channel closed after {} of {n}", out.len()),
            Err(tokio::time::error::Elapsed { .. }) => {
                panic!("only {} of {n} completions within {DEADLINE:?}", out.len())
            }
        }
    }
    out
}

/// Polls `cond` every 20 ms until it holds or [`DEADLINE`] passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// Lines of a file (empty when it does not exist).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `name=value` lines of an `env` dump, as pairs.
pub fn env_file(path: &Path) -> Vec<(String, String)> {
    read_lines(path)
        .into_iter()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}
