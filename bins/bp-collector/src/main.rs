//! `bp-collector`: parses the command line ([`cli`]), sets up logging, and
//! runs the `agent` crate's collector (or its `import`). Exit status: 0 on success, 1 on a runtime
//! failure (or rejected import lines), 2 on bad usage or configuration.
// "StatsD" is a protocol name in prose (and in --help), not code to put in backticks.
#![allow(clippy::doc_markdown)]

use std::process::ExitCode;

use bp_collector::cli::{self, Cli, Command};
use clap::Parser;
use metrics_model::Deployment;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 with clap's message on bad usage
    // `Targets` ("info", "warn,bp_collector=debug") rather than `EnvFilter`:
    // same syntax for levels and targets, without the regex engine, which
    // keeps the resident binary smaller (docs/benchmarks.md).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(collector::logging::EscapedFields)
                .with_writer(std::io::stderr)
                .with_ansi(collector::logging::ansi_for_stderr()),
        )
        .with(filter)
        .init();
    let deployment = match Deployment::from_env() {
        Ok(d) => d,
        Err(e) => return fail(2, &e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("cannot start the async runtime: {e}")),
    };
    match cli.command {
        Some(Command::Import(args)) => {
            match runtime.block_on(agent::store::import_stdin(&deployment, args.batch as usize)) {
                Ok(report) => {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    if report.rejected > 0 {
                        eprintln!("bp-collector: {} line(s) rejected", report.rejected);
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e @ agent::store::OpenError::Config(_)) => fail(2, &e.to_string()),
                Err(e) => fail(1, &e.to_string()),
            }
        }
        None => {
            let config = match cli::resolve(&cli.run, deployment, collector::system::host_name()) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            for w in &config.warnings {
                tracing::warn!("{w} (ignored: monitoring is disabled)");
            }
            if !config.monitoring_enabled {
                // As the original: with monitoring disabled nothing is collected.
                tracing::info!(
                    "monitoring is disabled in the configuration file (monitoring.enabled: \
                     false): nothing to collect, exiting"
                );
                return ExitCode::SUCCESS;
            }
            match runtime.block_on(agent::run(config, agent::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e)
                    if matches!(
                        e.downcast_ref::<agent::store::OpenError>(),
                        Some(agent::store::OpenError::Config(_))
                    ) =>
                {
                    fail(2, &format!("{e:#}"))
                }
                Err(e) => fail(1, &format!("{e:#}")),
            }
        }
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("bp-collector: error: {message}");
    ExitCode::from(code)
}
