//! The command line of `bp-alerter` (clap definitions): parsed by
//! `main.rs`, and rendered into the man pages and shell completions
//! (`examples/man.rs`, used by `scripts/package`), so all three come from
//! this one definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use metrics_model::Duration;
use metrics_model::duration::parse_positive;

/// The `clap` command, for generators (man pages, completions).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[derive(Debug, Parser)]
#[command(
    name = "bp-alerter",
    version,
    about = "bp-monitoring alerter and offline rule tools"
)]
pub struct Cli {
    // The subcommand (none: `run`).
    #[command(subcommand)]
    pub command: Option<Command>,
    // The options of `run`, global: every subcommand takes them.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (botpress.config.json-style or { "monitoring", "alerting" }).
    /// Without one: monitoring and alerting enabled, no rules.
    #[arg(long, short, env = "BP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// This machine's name [default: BP_NODE_NAME, else the host name].
    #[arg(long, env = "BP_NODE_NAME", global = true)]
    pub node: Option<String>,
    /// Standalone mode: UDP address where local programs send StatsD ("off" to disable).
    #[arg(
        long,
        env = "BP_STATSD",
        default_value = "127.0.0.1:8125",
        global = true
    )]
    pub statsd: String,
    /// Address of the dashboard, JSON API and /metrics ("off" to disable).
    /// A non-loopback address needs --token (or --insecure-no-auth).
    #[arg(long, env = "BP_LISTEN", default_value = web::DEFAULT_LISTEN, global = true)]
    pub listen: String,
    /// Access token for the dashboard, API and /metrics (bearer token, or the
    /// basic-auth password); /healthz and /readyz stay open. Never logged.
    #[arg(long, env = "BP_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Write tokens for silences and acknowledgements (POST/PUT under
    /// /api/v1/silences, /api/v1/incidents/{id}/ack): comma-separated,
    /// each `secret` or `name:secret` (the name is the default createdBy).
    /// Distinct from --token; needed even on loopback. Without one, writes
    /// are refused. Never logged.
    #[arg(
        long,
        env = "BP_API_WRITE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub write_token: Option<String>,
    /// Host names (comma-separated) writes may be addressed to, besides IP
    /// addresses and localhost (the DNS-rebinding check).
    #[arg(
        long,
        env = "BP_API_ALLOWED_HOSTS",
        global = true,
        value_delimiter = ','
    )]
    pub allowed_host: Vec<String>,
    /// Serve a non-loopback --listen address without a token.
    #[arg(long, global = true)]
    pub insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "BP_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "BP_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Standalone mode: the directory of the on-disk store (ticks, incidents,
    /// outbox), created with mode 0700; one bp-alerter per directory.
    #[arg(
        long,
        env = "BP_DATA_DIR",
        default_value = "data/monitoring",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Standalone mode: keep everything in memory instead (lost at exit).
    #[arg(long, global = true, conflicts_with = "data_dir")]
    pub ephemeral: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the alerter (the default): standalone without REDIS_URL, cluster mode with it.
    Run,
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
        #[arg(long, value_parser = parse_positive)]
        watcher_interval: Option<Duration>,
        /// A JSON array of silences: every output line then carries
        /// `notifyAt` (when the transition is notified, or null).
        #[arg(long)]
        silences: Option<PathBuf>,
    },
    /// List open and recent incidents, the outbox and dead letters: from Redis
    /// with REDIS_URL, else from --data-dir (when no alerter is running on it).
    Incidents {
        /// Resolved incidents that ended within this duration.
        #[arg(long, default_value = "24h", value_parser = parse_positive)]
        since: Duration,
        /// At most this many resolved incidents and dead letters.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write this deployment's whole state (ticks, open incidents, cooldowns,
    /// undelivered transitions, history, dead letters) as JSON lines: from
    /// Redis with REDIS_URL, else from --data-dir (stop the alerter first).
    Export {
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read an export (or a file of ticks) into this deployment's store:
    /// Redis with REDIS_URL, else --data-dir. Stop every alerter first.
    Import {
        /// Read this file instead of standard input.
        #[arg(long, short)]
        input: Option<PathBuf>,
    },
    /// Silences: stop notifications for matching incidents for a while
    /// (Redis with REDIS_URL, else the running standalone alerter's API).
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
        /// The standalone alerter's API [default: http:// + --listen].
        #[arg(long, env = "BP_API_URL", global = true)]
        api: Option<String>,
    },
    /// Acknowledge an open incident (shown everywhere the incident is, and
    /// in its resolve payload; no other effect).
    Ack {
        /// The incident's id.
        id: String,
        /// Who [default: the write token's name; against Redis, $USER].
        #[arg(long)]
        by: Option<String>,
        /// Why (at most 1,024 bytes).
        #[arg(long)]
        comment: Option<String>,
        /// The standalone alerter's API [default: http:// + --listen].
        #[arg(long, env = "BP_API_URL")]
        api: Option<String>,
    },
    /// Send a test incident (its open, then its resolve) through the
    /// notifiers of --config, or the one named; print each outcome; exit 1
    /// if one failed.
    NotifyTest {
        /// Only this notifier.
        #[arg(long)]
        notifier: Option<String>,
    },
    /// Run rule unit tests (see docs/test-rules.md); exit 1 if one fails, 2 on a bad file.
    TestRules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SilenceAction {
    /// Create a silence; prints its id. Matchers are globs (`*`, `?`,
    /// `\` escapes); an absent one matches everything.
    Add {
        /// Rule names to mute (glob).
        #[arg(long)]
        rule: Option<String>,
        /// Host names (glob).
        #[arg(long)]
        host: Option<String>,
        /// Instances (glob; "" is an incident without one).
        #[arg(long)]
        instance: Option<String>,
        /// Severities (glob).
        #[arg(long)]
        severity: Option<String>,
        /// How long (2h, 30m…), from --start.
        #[arg(long = "for", value_parser = parse_positive)]
        for_: Option<Duration>,
        /// Until when (RFC 3339 or ms since the epoch), instead of --for.
        #[arg(long)]
        until: Option<String>,
        /// From when [default: now].
        #[arg(long)]
        start: Option<String>,
        /// Why (at most 1,024 bytes).
        #[arg(long)]
        comment: Option<String>,
        /// Who [default: the write token's name; against Redis, $USER].
        #[arg(long)]
        created_by: Option<String>,
    },
    /// List silences: active, pending, then expired.
    List {
        /// Only these statuses (comma-separated: active,pending,expired).
        #[arg(long)]
        state: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence's id.
        id: String,
    },
}
