//! Running one hook process: no shell, its own process group, the payload on
//! stdin, stdout and stderr to the log line by line, and a timeout that kills
//! the whole process group.
//!
//! Output limits, per stream and per call: at most [`MAX_LOGGED_LINES`]
//! lines are logged, each cut at [`MAX_LINE_BYTES`] bytes (decoded as lossy
//! UTF-8); the rest is read and dropped, and one line says how many lines
//! were not logged. stdout lines are logged at `info`, stderr lines at
//! `warn`, both with the fields `hook` and `stream`. Lines written by the JS
//! wrapper's `bp.logger` carry their own level.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use metrics_model::Duration;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use super::HookError;

/// At most this many lines per stream and call are logged.
pub const MAX_LOGGED_LINES: usize = 200;
/// Longer lines are cut to this many bytes in the log.
pub const MAX_LINE_BYTES: usize = 4096;
/// After the hook process exits, its output is read for at most this long
/// (a background child holding the pipes open is then killed with the
/// process group).
pub const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// The prefix with which the JS wrapper's `bp.logger` marks a line's level:
/// `\u{1e}bp.<level> <text>`.
pub const LEVEL_MARK: &str = "\u{1e}bp.";
/// Environment variables removed from every hook's environment: they hold
/// credentials of the alerter itself. Every `BP_*` variable whose name
/// says it holds a secret ([`is_secret_env`]) is removed too, so that a
/// secret a later feature adds is covered by its name.
pub const REMOVED_ENV: [&str; 4] = [
    "REDIS_URL",
    "BP_API_TOKEN",
    "BP_COLLECTOR_TOKEN",
    "REDISCLI_AUTH",
];

/// Names of variables the configuration reads secrets from (a notifier's
/// `{"env": NAME}`): kept from hooks as well.
static SECRET_ENV: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Marks `name` as holding a secret: hooks never see it.
pub fn register_secret_env(name: &str) {
    if let Ok(mut names) = SECRET_ENV.write()
        && !names.iter().any(|n| n == name)
    {
        names.push(name.to_owned());
    }
}

/// Whether the environment variable `name` is kept from hooks: one of
/// [`REMOVED_ENV`], a variable a notifier's secret is read from
/// ([`register_secret_env`]), or a `BP_*` name containing `TOKEN`, `PASSWORD`,
/// `PASS`, `SECRET`, `KEY` or `CREDENTIAL` (case-insensitive).
pub fn is_secret_env(name: &str) -> bool {
    if REMOVED_ENV.contains(&name) {
        return true;
    }
    if SECRET_ENV
        .read()
        .is_ok_and(|names| names.iter().any(|n| n == name))
    {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    upper.starts_with("BP_")
        && ["TOKEN", "PASS", "SECRET", "KEY", "CREDENTIAL"]
            .iter()
            .any(|s| upper.contains(s))
}

#[cfg(test)]
mod secret_env_tests {
    use super::is_secret_env;

    #[test]
    fn secrets_by_name() {
        for n in [
            "REDIS_URL",
            "BP_API_TOKEN",
            "BP_COLLECTOR_TOKEN",
            "BP_SMTP_PASSWORD",
            "BP_SLACK_SECRET",
            "bp_pagerduty_routing_key",
        ] {
            assert!(is_secret_env(n), "{n}");
        }
        for n in ["PATH", "HOME", "BP_NODE_NAME", "BP_CONFIG", "MY_TOKEN"] {
            assert!(!is_secret_env(n), "{n}");
        }
        super::register_secret_env("SLACK_WEBHOOK_URL_FOR_TEST");
        assert!(is_secret_env("SLACK_WEBHOOK_URL_FOR_TEST"));
    }
}

/// One process to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The hook's name, for the log and errors.
    pub hook: String,
    /// The program (a path with a `/`, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Written to its stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// The process group is killed after this long.
    pub timeout: Duration,
}

/// Kills the process group when dropped while armed: a delivery future that
/// is cancelled (shutdown) leaves no hook process behind.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (already gone) is fine.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the process to completion or timeout. `Ok` when it exits with
/// status 0.
pub async fn run(spec: ProcessSpec) -> Result<(), HookError> {
    // Through the hook runner when one is set (the alerter): the payload is
    // checked whole before the hook starts, and the hook dies with the
    // alerter. The runner leads the process group, so the group kill below
    // ends it and the hook alike.
    let mut cmd = match super::runner::runner() {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.args(super::runner::runner_args(spec.timeout.to_std()))
                .arg(&spec.program);
            c
        }
        None => Command::new(&spec.program),
    };
    cmd.args(&spec.args)
        .envs(
            spec.env
                .iter()
                .map(|(k, v)| (k, v.replace('\0', "\u{fffd}"))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in REMOVED_ENV {
        cmd.env_remove(var);
    }
    // Inherited secrets only: the variables the product sets for the hook
    // (`BP_IDEMPOTENCY_KEY`, …) stay.
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| is_secret_env(n) && !spec.env.iter().any(|(k, _)| k == n))
        {
            cmd.env_remove(&name);
        }
    }
    let deadline = Instant::now() + spec.timeout.to_std();
    let mut child = cmd.spawn().map_err(|e| HookError::Spawn {
        hook: spec.hook.clone(),
        program: spec.program.display().to_string(),
        message: e.to_string(),
    })?;
    let mut guard = GroupGuard {
        pgid: child.id().and_then(|id| i32::try_from(id).ok()),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let payload = spec.stdin;
        // A hook that does not read stdin may exit first: EPIPE is fine.
        tokio::spawn(async move {
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(log_stream(s, spec.hook.clone(), Stream::Stdout)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(log_stream(s, spec.hook.clone(), Stream::Stderr)));

    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            guard.kill();
            return Err(HookError::Other {
                hook: spec.hook,
                message: format!("waiting for the process failed: {e}"),
            });
        }
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            finish_output(out, err, &guard).await;
            guard.pgid = None;
            return Err(HookError::Timeout {
                hook: spec.hook,
                timeout: spec.timeout.to_string(),
                killed: true,
            });
        }
    };
    let last_stderr = finish_output(out, err, &guard).await;
    // The group is reaped and its pipes closed: nothing left to kill.
    guard.pgid = None;
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Exit {
            hook: spec.hook,
            status: describe(status),
            last_stderr,
        })
    }
}

type Reader = Option<tokio::task::JoinHandle<Option<String>>>;

/// Waits for both readers up to [`OUTPUT_GRACE`]; if a leftover child
/// still holds the pipes, kills the group and stops reading. Returns the
/// last stderr line.
async fn finish_output(out: Reader, err: Reader, guard: &GroupGuard) -> Option<String> {
    let both = async {
        let _ = match out {
            Some(h) => h.await.ok().flatten(),
            None => None,
        };
        match err {
            Some(h) => h.await.ok().flatten(),
            None => None,
        }
    };
    tokio::pin!(both);
    if let Ok(last) = tokio::time::timeout(OUTPUT_GRACE, &mut both).await {
        return last;
    }
    guard.kill();
    tokio::time::timeout(OUTPUT_GRACE, both)
        .await
        .ok()
        .flatten()
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Reads a stream to its end, logging bounded lines; returns the last
/// non-empty line (cut at 300 characters).
async fn log_stream(stream: impl AsyncRead + Unpin, hook: String, which: Stream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    let mut logged = 0usize;
    let mut dropped = 0usize;
    let mut last: Option<String> = None;
    loop {
        line.clear();
        match read_line_bounded(&mut reader, &mut line).await {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                tracing::debug!(hook = %hook, stream = which.as_str(), error = %e, "reading hook output failed");
                break;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            last = Some(text.chars().take(300).collect());
        }
        if logged < MAX_LOGGED_LINES {
            logged += 1;
            log_line(&hook, which, text);
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!(hook = %hook, stream = which.as_str(), dropped, "hook output: {dropped} more lines not logged (limit {MAX_LOGGED_LINES} lines per stream and call)");
    }
    last
}

/// Reads one line into `buf`, keeping at most [`MAX_LINE_BYTES`] of it and
/// discarding the rest up to the newline. `Ok(false)` at end of stream.
async fn read_line_bounded<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(any);
        }
        any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        if done {
            return Ok(true);
        }
    }
}

fn log_line(hook: &str, which: Stream, text: &str) {
    let stream = which.as_str();
    if let Some(rest) = text.strip_prefix(LEVEL_MARK) {
        let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        match level {
            "error" => tracing::error!(hook = %hook, stream, "{msg}"),
            "warn" => tracing::warn!(hook = %hook, stream, "{msg}"),
            "debug" => tracing::debug!(hook = %hook, stream, "{msg}"),
            _ => tracing::info!(hook = %hook, stream, "{msg}"),
        }
        return;
    }
    match which {
        Stream::Stdout => tracing::info!(hook = %hook, stream, "{text}"),
        Stream::Stderr => tracing::warn!(hook = %hook, stream, "{text}"),
    }
}
