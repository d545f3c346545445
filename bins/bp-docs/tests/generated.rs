//! The generated man pages and completions hold every subcommand and every
//! long option of the clap definitions (the binaries' own: see
//! `bins/bp-alerter/tests/offline.rs::help_is_the_cli_definition` and the
//! collector's twin), so none can be missing or stale.

use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every visible (sub)command as `(page name, command)`.
fn pages(cmd: &clap::Command, page: &str, out: &mut Vec<(String, clap::Command)>) {
    out.push((page.to_owned(), cmd.clone()));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, &format!("{page}-{}", sub.get_name()), out);
    }
}

fn longs(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

#[test]
fn every_subcommand_and_option_is_in_the_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let written = bp_docs::write_all(dir.path()).unwrap();
    let mut checked_options = 0;
    for cmd in bp_docs::commands() {
        let name = cmd.get_name().to_owned();
        let mut all = Vec::new();
        pages(&cmd, &name, &mut all);
        let bash = read(&dir.path().join(format!("completions/{name}.bash")));
        let zsh = read(&dir.path().join(format!("completions/_{name}")));
        let fish = read(&dir.path().join(format!("completions/{name}.fish")));
        for (page, sub) in &all {
            let path = dir.path().join(format!("man/{page}.1"));
            assert!(written.man.contains(&path), "{page}.1 not written");
            let man = read(&path);
            assert!(
                man.starts_with(".ie") || man.contains(".TH"),
                "{page}.1 is not roff"
            );
            assert!(
                man.contains(&format!(".TH {page} 1")),
                "{page}.1 is not titled {page}"
            );
            // roff writes `-` as `\-`.
            if let Some(about) = sub.get_about() {
                // Its first words, in the page's text without roff's
                // escapes of `-` and `'`.
                let text = man.replace("\\-", "-").replace("\\*(Aq", "'");
                let about = about.to_string();
                let start: Vec<&str> = about.split_whitespace().take(5).collect();
                assert!(
                    text.contains(&start.join(" ")),
                    "{page}.1 lacks its summary {about}"
                );
            }
            for long in longs(sub) {
                let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(man.contains(&flag), "{page}.1 lacks --{long}");
                assert!(
                    bash.contains(&format!("--{long}")),
                    "{name}.bash lacks --{long}"
                );
                assert!(zsh.contains(&format!("--{long}")), "_{name} lacks --{long}");
                assert!(
                    fish.contains(&format!("-l {long}")),
                    "{name}.fish lacks --{long}"
                );
                checked_options += 1;
            }
            for s in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
                let n = s.get_name();
                assert!(
                    man.contains(&n.replace('-', "\\-")),
                    "{page}.1 does not list {n}"
                );
                assert!(
                    bash.contains(n) && zsh.contains(n) && fish.contains(n),
                    "completions lack {n}"
                );
            }
        }
    }
    // The two CLIs have dozens of options: a definition that lost them all
    // would pass the loops above vacuously.
    assert!(
        checked_options > 40,
        "only {checked_options} options checked"
    );
    assert!(written.man.len() > 15, "{:?}", written.man);
    assert_eq!(written.completions.len(), 6);
}

#[test]
fn usage_errors_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bp-docs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: bp-docs OUT_DIR"));
}
