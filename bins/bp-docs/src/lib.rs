//! The man pages and shell completions of both binaries, rendered from the
//! same clap definitions the binaries parse their command lines with
//! (`bp_alerter::cli`, `bp_collector::cli`): generated, never written by
//! hand, so they cannot drift from `--help`.
//!
//! [`write_all`] writes, for each binary, `man/<bin>.1` and one page per
//! subcommand (`man/<bin>-<sub>.1`, as `git` does), and
//! `completions/<bin>.bash`, `completions/_<bin>` (zsh) and
//! `completions/<bin>.fish`.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::Shell;

/// The binaries documented: name and clap command.
pub fn commands() -> Vec<clap::Command> {
    vec![
        bp_alerter::cli::command(),
        bp_collector::cli::Cli::command(),
    ]
}

/// What [`write_all`] wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Man pages (`.1`).
    pub man: Vec<PathBuf>,
    /// Completion scripts.
    pub completions: Vec<PathBuf>,
}

/// Writes the man pages and completions of every binary under `out`
/// (`out/man`, `out/completions`, created when missing).
pub fn write_all(out: &Path) -> io::Result<Written> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut written = Written::default();
    for cmd in commands() {
        let name = cmd.get_name().to_owned();
        write_pages(&cmd, &name, &man_dir, &mut written.man)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut c = cmd.clone();
            written
                .completions
                .push(clap_complete::generate_to(shell, &mut c, &name, &comp_dir)?);
        }
    }
    written.man.sort();
    written.completions.sort();
    Ok(written)
}

/// The page of `cmd` as `<page>.1`, then one per visible subcommand,
/// recursively (`<page>-<sub>.1`).
fn write_pages(
    cmd: &clap::Command,
    page: &str,
    dir: &Path,
    out: &mut Vec<PathBuf>,
) -> io::Result<()> {
    // A subcommand's page is titled by its full name (`bp-alerter-silence-add`).
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(page)
        .render(&mut buf)?;
    let path = dir.join(format!("{page}.1"));
    std::fs::write(&path, buf)?;
    out.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{page}-{}", sub.get_name()), dir, out)?;
    }
    Ok(())
}
