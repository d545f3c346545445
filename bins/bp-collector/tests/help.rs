//! The binary's `--help` is the clap definition of `bp_collector::cli`, the
//! one `bp-docs` renders into the man page and completions.

use std::process::Command;

use clap::CommandFactory as _;

#[test]
fn help_is_the_cli_definition() {
    let out = Command::new(env!("CARGO_BIN_EXE_bp-collector"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut cmd = bp_collector::cli::Cli::command();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        cmd.render_help().to_string()
    );
}
