//! `bp-collector`: parses the command line, sets up logging, and calls the
//! library's `run` (or `import`). Exit status: 0 on success, 1 on a runtime
//! failure (or rejected import lines), 2 on bad usage or configuration.
// "StatsD" is a protocol name in prose (and in --help), not code to put in backticks.
#![allow(clippy::doc_markdown)]

use std::process::ExitCode;

use bp_collector::config::{self, Cli, Command, Config, Env};
use clap::Parser;
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
    let env = Env {
        redis_url: std::env::var("REDIS_URL").ok(),
        cluster_enabled: std::env::var("CLUSTER_ENABLED").ok(),
        scope: std::env::var("BP_REDIS_SCOPE").ok(),
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
            let deployment = match config::deployment(&env) {
                Ok(d) => d,
                Err(e) => return fail(2, &e),
            };
            match runtime.block_on(bp_collector::store::import_stdin(
                &deployment,
                args.batch as usize,
            )) {
                Ok(report) => {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    if report.rejected > 0 {
                        eprintln!("bp-collector: {} line(s) rejected", report.rejected);
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e @ bp_collector::store::OpenError::Config(_)) => fail(2, &e.to_string()),
                Err(e) => fail(1, &e.to_string()),
            }
        }
        None => {
            let config = match Config::resolve(&cli.run, &env, collector::system::host_name()) {
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
            match runtime.block_on(bp_collector::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e)
                    if matches!(
                        e.downcast_ref::<bp_collector::store::OpenError>(),
                        Some(bp_collector::store::OpenError::Config(_))
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

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
