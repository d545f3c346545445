//! The hook runner: a small supervisor between the alerter and every hook
//! process, so that a hook never runs on an incomplete payload and never
//! outlives its alerter.
//!
//! The alerter starts `<its own binary> hook-runner --timeout-ms N
//! --parent <pid> -- <program> <args…>` (see [`use_runner`]) in a new
//! process group, with the hook's environment and the payload on stdin.
//! The runner:
//!
//! 1. asks the kernel to send it `SIGTERM` when its parent dies
//!    (`PR_SET_PDEATHSIG`) and becomes a child subreaper
//!    (`PR_SET_CHILD_SUBREAPER`), then checks that its parent is still the
//!    alerter that started it (it may have died before the `prctl`);
//! 2. reads the **whole** payload and checks it is complete JSON; if the
//!    alerter died mid-write (or wrote nothing), the hook is **not started**
//!    (exit status [`EXIT_INCOMPLETE`]);
//! 3. runs the hook in its own process group (the runner's), gives it the
//!    payload on stdin, and waits for it at most the timeout;
//! 4. on the timeout, or on `SIGTERM` (the alerter died, or stops it),
//!    kills the whole group — the hook, its children, and itself — with
//!    `SIGKILL`.
//!
//! The workspace forbids `unsafe`, so this replaces a `pre_exec` in the
//! alerter: everything here goes through `nix`'s safe API.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpgrp, getpid, getppid, setpgid};

/// The runner's exit status when the payload was incomplete: the hook was
/// not started.
pub const EXIT_INCOMPLETE: i32 = 124;
/// The runner's exit status when its alerter was already gone.
pub const EXIT_ORPHANED: i32 = 125;
/// The runner's exit status on a bad command line.
pub const EXIT_USAGE: i32 = 2;
/// The hidden subcommand name.
pub const SUBCOMMAND: &str = "hook-runner";

static RUNNER: OnceLock<PathBuf> = OnceLock::new();

/// Runs every hook process of this process through the runner at `binary`
/// (an executable whose `hook-runner` subcommand calls [`main`]; the
/// alerter passes its own binary). Without it, hooks are started directly
/// (what embedders and unit tests get). Only the first call counts.
pub fn use_runner(binary: PathBuf) {
    let _ = RUNNER.set(binary);
}

/// The runner, when one is set.
pub(crate) fn runner() -> Option<&'static PathBuf> {
    RUNNER.get()
}

/// The runner's command line before the hook's program and arguments.
pub(crate) fn runner_args(timeout: Duration) -> Vec<OsString> {
    vec![
        SUBCOMMAND.into(),
        "--timeout-ms".into(),
        timeout.as_millis().to_string().into(),
        "--parent".into(),
        std::process::id().to_string().into(),
        "--".into(),
    ]
}

struct RunnerArgs {
    timeout: Duration,
    parent: i32,
    program: OsString,
    program_args: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<RunnerArgs, String> {
    let mut timeout = None;
    let mut parent = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        match a.as_ref() {
            "--timeout-ms" | "--parent" => {
                let v: u64 = args
                    .get(i + 1)
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{a} needs a number"))?;
                if a == "--timeout-ms" {
                    timeout = Some(Duration::from_millis(v));
                } else {
                    parent = Some(i32::try_from(v).map_err(|_| "--parent: not a pid")?);
                }
                i += 2;
            }
            "--" => {
                let program = args.get(i + 1).cloned().ok_or("no program after --")?;
                return Ok(RunnerArgs {
                    timeout: timeout.ok_or("--timeout-ms is required")?,
                    parent: parent.ok_or("--parent is required")?,
                    program,
                    program_args: args[i + 2..].to_vec(),
                });
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Err("no -- <program>".to_owned())
}

/// The `hook-runner` subcommand: `args` are the arguments after its name.
/// Returns the exit status: the hook's, `128 + signal` when it was killed,
/// or one of the `EXIT_*` constants.
pub fn main(args: &[OsString]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hook-runner: {e}");
            return EXIT_USAGE;
        }
    };
    // A process group of its own (the alerter already starts it as one):
    // killing "the group" must never reach whoever started the runner.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if getpgrp() != getpid() {
        eprintln!("hook-runner: cannot lead a process group of its own; not started");
        return EXIT_USAGE;
    }
    // Told when the alerter dies; then checked, in case it died first.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    let _ = nix::sys::prctl::set_child_subreaper(true);
    if getppid().as_raw() != args.parent {
        eprintln!("hook-runner: the alerter that started this hook is gone; not started");
        return EXIT_ORPHANED;
    }
    let mut payload = Vec::new();
    if std::io::stdin().read_to_end(&mut payload).is_err()
        || serde_json::from_slice::<serde_json::Value>(&payload).is_err()
    {
        eprintln!(
            "hook-runner: the payload on stdin is incomplete ({} bytes, not a whole JSON \
             document); the hook is not started",
            payload.len()
        );
        return EXIT_INCOMPLETE;
    }
    let terminated = match signal_flag() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hook-runner: cannot watch for SIGTERM: {e}");
            return EXIT_USAGE;
        }
    };
    let mut child = match Command::new(&args.program)
        .args(&args.program_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "hook-runner: cannot start {}: {e}",
                PathBuf::from(&args.program).display()
            );
            return 127;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read stdin may exit first: EPIPE is fine.
        let _ = stdin.write_all(&payload);
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt as _;
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            Ok(None) => {}
            Err(_) => kill_group(),
        }
        if terminated.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() >= deadline {
            kill_group();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills this process group (the hook, its children and the runner).
fn kill_group() -> ! {
    let _ = killpg(getpgrp(), Signal::SIGKILL);
    // Not reached: SIGKILL of our own group ends this process too.
    std::process::exit(137);
}

/// A flag set when SIGTERM arrives.
fn signal_flag() -> std::io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                set.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    });
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_line() {
        let a = parse(&os(&[
            "--timeout-ms",
            "3000",
            "--parent",
            "42",
            "--",
            "/bin/x",
            "-v",
        ]))
        .unwrap();
        assert_eq!(
            (a.timeout, a.parent, a.program, a.program_args),
            (
                Duration::from_secs(3),
                42,
                OsString::from("/bin/x"),
                os(&["-v"])
            )
        );
        for bad in [
            &["--", "x"][..],
            &["--timeout-ms", "x", "--parent", "1", "--", "x"],
            &["--timeout-ms", "1", "--parent", "1"],
            &["--what"],
        ] {
            assert!(parse(&os(bad)).is_err(), "{bad:?}");
        }
    }
}
