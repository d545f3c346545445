//! The binary's `--help` is the clap definition of `bp_alerter::cli`, the
//! one `bp-docs` renders into the man pages and completions: so the three
//! agree (`bins/bp-docs/tests/generated.rs` checks the other half).

use std::process::Command;

fn help_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_is_the_cli_definition() {
    let mut cmd = bp_alerter::cli::command();
    assert_eq!(help_of(&["--help"]), cmd.render_help().to_string());
    cmd.build();
    let mut checked = 0;
    for sub in cmd.get_subcommands_mut() {
        let name = sub.get_name().to_owned();
        if name == "help" || sub.is_hide_set() {
            continue; // clap's own
        }
        assert_eq!(
            help_of(&[&name, "--help"]),
            sub.render_help().to_string(),
            "bp-alerter {name} --help"
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked} subcommands");
}
