//! `bp-alerter`: the bp-monitoring alerter. Today it offers the offline
//! tools — `check-config`, `replay` and `test-rules` — which run the same
//! rules engine the live alerter is built on.

mod offline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use metrics_model::Duration;

/// Exit status for bad configuration, bad input or bad usage.
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "bp-alerter",
    version,
    about = "bp-monitoring alerter and offline rule tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file; print every problem (exit 0 if valid, 2 if not).
    CheckConfig {
        /// A botpress.config.json-style file or a { "monitoring", "alerting" } file.
        file: PathBuf,
    },
    /// Evaluate rules over ticks read as JSON lines on stdin; print one JSON line per transition.
    Replay {
        /// A JSON array of rules, or a configuration file holding them.
        #[arg(long)]
        rules: PathBuf,
        /// Evaluation instants are the multiples of this interval
        /// [default: the file's watcherInterval, else 10s].
        #[arg(long, value_parser = parse_duration)]
        watcher_interval: Option<Duration>,
    },
    /// Run rule unit tests (see docs/test-rules.md); exit 1 if one fails, 2 on a bad file.
    TestRules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d: Duration = text
        .parse()
        .map_err(|e: metrics_model::duration::DurationError| e.to_string())?;
    if d.is_zero() {
        Err("must be greater than 0".to_owned())
    } else {
        Ok(d)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::CheckConfig { file } => offline::check_config(&file),
        Command::Replay {
            rules,
            watcher_interval,
        } => offline::replay(&rules, watcher_interval),
        Command::TestRules { files } => offline::test_rules(&files),
    };
    ExitCode::from(code)
}
