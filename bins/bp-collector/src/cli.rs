//! Command line, configuration file and environment → [`AgentConfig`].
//!
//! Precedence: command-line flags, then their environment variables, then the
//! configuration file (`--config`), then defaults. Every error here is a
//! usage error: the binary prints it and exits with status 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use agent::AgentConfig;
use agent::config::{DEFAULT_MAX_CUSTOM_FIELDS, DEFAULT_STATSD_BUFFER, buffer_ticks};
use clap::{Args, Parser, Subcommand};
use collector::system::SystemOptions;
use metrics_model::config::MonitoringConfig;
use metrics_model::deployment::Deployment;
use metrics_model::duration::parse_positive;
use metrics_model::token::Token;
use metrics_model::{Duration, HostName};

/// The default StatsD address.
pub const DEFAULT_STATSD: &str = "127.0.0.1:8125";
/// The default HTTP address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9126";

/// bp-collector: one per node. Samples the system, receives application
/// metrics over StatsD (UDP) and HTTP (JSON), and writes one tick per
/// collection interval to Redis (`REDIS_URL`) or, without `REDIS_URL`, prints
/// the ticks as JSON lines (a dry run).
#[derive(Debug, Parser)]
#[command(name = "bp-collector", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read ticks as JSON lines on stdin and write them to the store
    /// (backfill, migration, benchmarks). Bad lines are reported with their
    /// line number and skipped; the exit status is 1 if any was rejected.
    Import(ImportArgs),
}

/// Options of `bp-collector import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Ticks per store write.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// Options of the collector itself.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A botpress-style configuration file; `pro.monitoring.collectionInterval`
    /// is read from it (or `monitoring.collectionInterval`).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// This node's name in ticks [default: the system host name].
    #[arg(long, env = "BP_NODE_NAME", value_name = "NAME")]
    pub node: Option<String>,
    /// Collection interval, e.g. 10s [default: the config file's, else 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive)]
    pub interval: Option<Duration>,
    /// StatsD UDP address, or "off".
    #[arg(long, value_name = "ADDR|off", default_value = DEFAULT_STATSD)]
    pub statsd: String,
    /// Receive buffer to ask the kernel for on the StatsD socket, bytes
    /// (`net.core.rmem_max` caps what is granted; /healthz shows both the
    /// size granted and the datagrams the kernel dropped).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_STATSD_BUFFER)]
    pub statsd_buffer: usize,
    /// HTTP JSON endpoint address, or "off". Off loopback it needs a token.
    #[arg(long, value_name = "ADDR|off", default_value = DEFAULT_HTTP)]
    pub http: String,
    /// Bearer token required by the HTTP endpoint (required off loopback).
    #[arg(
        long,
        env = "BP_COLLECTOR_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub http_token: Option<String>,
    /// At most this many distinct custom.* fields; more are dropped and counted.
    #[arg(long, default_value_t = DEFAULT_MAX_CUSTOM_FIELDS)]
    pub max_custom_fields: usize,
    /// How much time of ticks to keep while the store is unreachable; past
    /// it the oldest are dropped (and counted).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_positive)]
    pub buffer: Duration,
    /// Longest wait for the store when shutting down before the remaining
    /// buffered ticks are given up (and counted in the log).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub shutdown_timeout: Duration,
    /// Read `/proc/self/mountinfo`, `/proc/diskstats`, `/proc/net/dev`,
    /// `/proc/self/cgroup`, `/sys` and the mount points under this directory
    /// instead of `/` (fixture trees for tests and benchmarks). CPU, memory,
    /// swap, load and processes always come from this machine's `/proc`.
    #[arg(
        long,
        env = "BP_COLLECTOR_ROOTFS",
        value_name = "DIR",
        default_value = "/"
    )]
    pub rootfs: PathBuf,
}

/// Resolves the collector's configuration. `host_name` is the system's
/// host name (used when neither `--node` nor `BP_NODE_NAME` is given);
/// `deployment` is the environment's (`Deployment::from_env`).
pub fn resolve(
    args: &RunArgs,
    deployment: Deployment,
    host_name: Option<String>,
) -> Result<AgentConfig, String> {
    let node_text = match (&args.node, host_name) {
        (Some(n), _) => n.clone(),
        (None, Some(h)) => h,
        (None, None) => {
            return Err(
                "no node name: the system has no host name; pass --node or set BP_NODE_NAME"
                    .to_owned(),
            );
        }
    };
    let node: HostName = node_text
        .parse()
        .map_err(|e| format!("--node / BP_NODE_NAME / host name: {e}"))?;
    let (from_file, monitoring_enabled, warnings, system) = match &args.config {
        Some(path) => {
            let (m, warnings) = file_monitoring(path)?;
            (
                Some(m.collection_interval),
                m.enabled,
                warnings,
                SystemOptions::from_monitoring(&m),
            )
        }
        None => (None, true, Vec::new(), SystemOptions::default()),
    };
    if !args.rootfs.is_dir() {
        return Err(format!(
            "--rootfs / BP_COLLECTOR_ROOTFS: {} is not a directory",
            args.rootfs.display()
        ));
    }
    let system = SystemOptions {
        root: args.rootfs.clone(),
        ..system
    };
    let interval = args
        .interval
        .or(from_file)
        .unwrap_or(Duration::from_secs(10).unwrap_or(Duration::ZERO));
    if interval.as_millis() < 100 {
        return Err(format!(
            "--interval: {interval} is too short; use at least 100ms"
        ));
    }
    let statsd = parse_addr("--statsd", &args.statsd)?;
    if !(1024..=(1 << 30)).contains(&args.statsd_buffer) {
        return Err(format!(
            "--statsd-buffer: {} is outside 1024 .. 1073741824 bytes",
            args.statsd_buffer
        ));
    }
    let http = parse_addr("--http", &args.http)?;
    let http_token = args
        .http_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .and_then(Token::new);
    if let Some(addr) = http
        && !addr.ip().is_loopback()
        && http_token.is_none()
    {
        return Err(format!(
            "--http {addr} is not a loopback address: set a token with BP_COLLECTOR_TOKEN \
                 (or --http-token) so that only your applications can post metrics"
        ));
    }
    if args.max_custom_fields > 10_000 {
        return Err(format!(
            "--max-custom-fields: {} is above the limit of 10000",
            args.max_custom_fields
        ));
    }
    if args.buffer.is_zero() {
        return Err("--buffer: must be more than 0s".to_owned());
    }
    let buffer_ticks = Some(buffer_ticks(args.buffer.to_std(), interval))
        .filter(|n| *n <= 10_000_000)
        .ok_or_else(|| {
            format!(
                "--buffer: {} holds more than 10,000,000 ticks of {interval}",
                args.buffer
            )
        })?;
    Ok(AgentConfig {
        node,
        interval,
        statsd,
        statsd_buffer: args.statsd_buffer,
        http,
        http_token,
        max_custom_fields: args.max_custom_fields,
        buffer_ticks,
        shutdown_timeout: args.shutdown_timeout.to_std(),
        deployment,
        monitoring_enabled,
        warnings,
        system,
    })
}

fn parse_addr(flag: &str, text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!("{flag}: {text:?} is not an address; write IP:PORT (e.g. 127.0.0.1:8125) or off")
    })
}

/// Reads the monitoring section of a configuration file (botpress-style
/// `pro.monitoring`, or `monitoring`); every problem in it is reported. The
/// rest of the file (rules, hooks) is not the collector's business and is
/// not looked at.
fn file_monitoring(path: &std::path::Path) -> Result<(MonitoringConfig, Vec<String>), String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {shown}: cannot read: {e}"))?;
    MonitoringConfig::from_json_text(&text, &shown.to_string()).map_err(|e| {
        format!(
            "--config {shown}: invalid configuration:\n  {}",
            e.problems().join("\n  ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], host: Option<&str>) -> Result<AgentConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("bp-collector").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        super::resolve(&cli.run, Deployment::default(), host.map(str::to_owned))
    }

    #[test]
    fn defaults() {
        let c = resolve(&["--node", "n1"], None).unwrap();
        assert_eq!(c.node.as_str(), "n1");
        assert_eq!(c.interval.as_millis(), 10_000);
        assert_eq!(c.statsd.unwrap().to_string(), DEFAULT_STATSD);
        assert_eq!(c.http.unwrap().to_string(), DEFAULT_HTTP);
        assert_eq!(c.buffer_ticks, 360);
        assert_eq!(c.max_custom_fields, 100);
        let c = resolve(&["--interval", "1s", "--buffer", "2h"], Some("host-1")).unwrap();
        assert_eq!((c.node.as_str(), c.buffer_ticks), ("host-1", 7200));
    }

    #[test]
    fn usage_errors_name_the_option() {
        for (args, host, part) in [
            (
                &["--node", "a b"][..],
                None,
                "--node / BP_NODE_NAME / host name: invalid host name",
            ),
            (&[][..], None, "no node name"),
            (&["--interval", "2x"][..], Some("h"), "not a duration"),
            (
                &["--interval", "10ms"][..],
                Some("h"),
                "--interval: 10ms is too short",
            ),
            (
                &["--statsd", "nowhere"][..],
                Some("h"),
                "--statsd: \"nowhere\"",
            ),
            (
                &["--http", "0.0.0.0:9126"][..],
                Some("h"),
                "not a loopback address",
            ),
            (&["--buffer", "0s"][..], Some("h"), "--buffer"),
        ] {
            let e = resolve(args, host).unwrap_err();
            assert!(e.contains(part), "{args:?}: {e}");
        }
        let c = resolve(
            &[
                "--http",
                "0.0.0.0:9126",
                "--http-token",
                "s3cret",
                "--statsd",
                "off",
            ],
            Some("h"),
        )
        .unwrap();
        assert!(c.statsd.is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.http_token.unwrap().matches(b"s3cret"));
    }

    #[test]
    fn interval_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("botpress.config.json");
        std::fs::write(&p, r#"{"pro":{"monitoring":{"collectionInterval":"5s"}}}"#).unwrap();
        let path = p.to_str().unwrap();
        let c = resolve(&["--config", path, "--node", "n"], None).unwrap();
        assert_eq!(c.interval.as_millis(), 5000);
        let c = resolve(&["--config", path, "--node", "n", "--interval", "1s"], None).unwrap();
        assert_eq!(c.interval.as_millis(), 1000, "the flag wins");
        // Every form of the npm `ms` library, as the original read it.
        std::fs::write(
            &p,
            r#"{"pro":{"monitoring":{"collectionInterval":"5 seconds"}}}"#,
        )
        .unwrap();
        let c = resolve(&["--config", path, "--node", "n"], None).unwrap();
        assert_eq!(c.interval.as_millis(), 5000);
        std::fs::write(&p, r#"{"pro":{"monitoring":{"collectionInterval":"5 x"}}}"#).unwrap();
        let e = resolve(&["--config", path, "--node", "n"], None).unwrap_err();
        assert!(
            e.contains("pro.monitoring.collectionInterval") && e.contains("\"5 x\""),
            "{e}"
        );
        std::fs::write(&p, "{").unwrap();
        assert!(
            resolve(&["--config", path, "--node", "n"], None)
                .unwrap_err()
                .contains("invalid JSON")
        );
        // Only the monitoring section is the collector's: a bad rule (as
        // Botpress ≤ 12.21.1 wrote) does not stop it.
        std::fs::write(
            &p,
            r#"{"pro":{"monitoring":{"collectionInterval":"3s"},"alerting":{"rules":[{}]}}}"#,
        )
        .unwrap();
        let c = resolve(&["--config", path, "--node", "n"], None).unwrap();
        assert_eq!((c.interval.as_millis(), c.monitoring_enabled), (3000, true));
        std::fs::write(
            &p,
            r#"{"pro":{"monitoring":{"enabled":false,"collectionInterval":"nope"}}}"#,
        )
        .unwrap();
        let c = resolve(&["--config", path, "--node", "n"], None).unwrap();
        assert!(!c.monitoring_enabled);
        assert!(
            c.warnings[0].contains("pro.monitoring.collectionInterval"),
            "{:?}",
            c.warnings
        );
        std::fs::write(&p, r#"{"monitoring":{"collectionInterval":"nope"}}"#).unwrap();
        let e = resolve(&["--config", path, "--node", "n"], None).unwrap_err();
        assert!(e.contains("monitoring.collectionInterval"), "{e}");
        let e = resolve(&["--config", "/nonexistent/x.json", "--node", "n"], None).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
