//! `scripts/setup`, the one place that installs what the project needs:
//! with `--dry-run` it names the Debian packages that are missing (found by
//! presence on PATH) and installs nothing; it refuses a Rust toolchain older
//! than the workspace's rust-version and unknown options.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SETUP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/setup");

/// Stubs of every command that would install something. Each records its
/// arguments in `installs.log` and fails, so a dry run that installs anything
/// shows in the log (and in the exit status).
const INSTALLERS: &[&str] = &["apt-get", "apt", "sudo", "npm"];

fn real_path() -> OsString {
    std::env::var_os("PATH").expect("PATH is set")
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when `name` is an executable in one of the directories of the real PATH.
fn on_real_path(name: &str) -> bool {
    std::env::split_paths(&real_path()).any(|dir| is_executable_file(&dir.join(name)))
}

/// A directory of stubs for the installers, and their log.
fn installer_stubs(dir: &Path) -> (PathBuf, PathBuf) {
    let stubs = dir.join("stubs");
    std::fs::create_dir(&stubs).expect("create the stubs directory");
    let log = dir.join("installs.log");
    for name in INSTALLERS {
        let path = stubs.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 1\n",
                log.display()
            ),
        )
        .expect("write an installer stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make an installer stub executable");
    }
    (stubs, log)
}

/// A directory of symlinks to every executable of the real PATH (the first
/// of each name, in PATH order) except `hidden`.
fn path_without(dir: &Path, hidden: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("create the PATH directory");
    let mut seen = BTreeSet::new();
    for path_dir in std::env::split_paths(&real_path()) {
        let Ok(entries) = std::fs::read_dir(&path_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name_str) = name.to_str() else {
                continue;
            };
            if hidden.contains(&name_str) || seen.contains(name_str) {
                continue;
            }
            let target = entry.path();
            if !is_executable_file(&target) {
                continue;
            }
            seen.insert(name_str.to_owned());
            symlink(&target, bin.join(&name)).expect("symlink an executable of PATH");
        }
    }
    bin
}

fn run_setup(path: &OsString, args: &[&str]) -> Output {
    Command::new(SETUP)
        .args(args)
        .env("PATH", path)
        .output()
        .expect("run scripts/setup")
}

fn join_paths(dirs: &[PathBuf]) -> OsString {
    std::env::join_paths(dirs).expect("join PATH directories")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The packages of the `would install: …` line (empty for `nothing to install`).
fn would_install(output: &Output) -> BTreeSet<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(line) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("would install:"))
    {
        return line.split_whitespace().map(str::to_owned).collect();
    }
    assert!(
        stdout.lines().any(|l| l == "nothing to install"),
        "neither `would install:` nor `nothing to install`:\n{}",
        text(output)
    );
    BTreeSet::new()
}

fn assert_nothing_installed(log: &Path, output: &Output) {
    assert!(
        !log.exists(),
        "a dry run ran an installer:\n{}\n{}",
        std::fs::read_to_string(log).unwrap_or_default(),
        text(output)
    );
}

#[test]
fn dry_run_names_the_missing_packages_and_installs_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let hidden = ["node", "npm", "redis-server", "chromium"];
    let bin = path_without(dir.path(), &hidden);
    let (stubs, log) = installer_stubs(dir.path());
    // The stubs shadow the installers of `bin`; no stub for `npm`, which
    // must be missing.
    std::fs::remove_file(stubs.join("npm")).expect("remove the npm stub");
    let path = join_paths(&[stubs, bin]);

    let output = run_setup(&path, &["test", "--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let packages = would_install(&output);
    for package in ["nodejs", "npm", "redis-server", "chromium"] {
        assert!(
            packages.contains(package),
            "{package} not named:\n{}",
            text(&output)
        );
    }
    // What is present is not named: the commands detected on PATH that this
    // test does not hide.
    for (command, package) in [
        ("redis-cli", "redis-tools"),
        ("openssl", "openssl"),
        ("promtool", "prometheus"),
    ] {
        if on_real_path(command) {
            assert!(
                !packages.contains(package),
                "{package} named though {command} is present:\n{}",
                text(&output)
            );
        }
    }
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("would run: scripts/build-dashboard"),
        "{}",
        text(&output)
    );
    assert_nothing_installed(&log, &output);

    // The run mode needs only Node.js and npm.
    let output = run_setup(&path, &["run", "--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let packages = would_install(&output);
    assert_eq!(
        packages,
        ["nodejs", "npm"].into_iter().map(str::to_owned).collect(),
        "{}",
        text(&output)
    );
    assert_nothing_installed(&log, &output);
}

#[test]
fn dry_run_with_the_real_path_exits_0() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (stubs, log) = installer_stubs(dir.path());
    // Only the installers that are not on the real PATH anyway are shadowed
    // (npm is needed to tell whether it is present).
    std::fs::remove_file(stubs.join("npm")).expect("remove the npm stub");
    let mut dirs = vec![stubs];
    dirs.extend(std::env::split_paths(&real_path()));
    let path = join_paths(&dirs);

    for args in [
        &["--dry-run"][..],
        &["test", "--dry-run"],
        &["run", "--dry-run"],
    ] {
        let output = run_setup(&path, args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        would_install(&output);
        assert_nothing_installed(&log, &output);
    }
}

#[test]
fn an_old_rustc_is_refused_with_the_required_version() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).expect("create the stubs directory");
    let rustc = stubs.join("rustc");
    std::fs::write(
        &rustc,
        "#!/bin/sh\necho 'rustc 1.60.0 (7737e0b5c 2022-04-04)'\n",
    )
    .expect("write a rustc stub");
    std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755))
        .expect("make the rustc stub executable");
    let mut dirs = vec![stubs];
    dirs.extend(std::env::split_paths(&real_path()));

    let output = run_setup(&join_paths(&dirs), &["test", "--dry-run"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let required = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        stderr.contains(required),
        "the message does not name {required}:\n{}",
        text(&output)
    );
    assert!(
        stderr.contains("rustup"),
        "the message does not name rustup:\n{}",
        text(&output)
    );
}

#[test]
fn usage_and_unknown_options() {
    let path = real_path();
    let output = run_setup(&path, &["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("usage: scripts/setup"),
        "{}",
        text(&output)
    );

    for args in [&["--bogus"][..], &["test", "--dry-run", "extra"]] {
        let output = run_setup(&path, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("unknown argument"),
            "{args:?}: {}",
            text(&output)
        );
    }
}
