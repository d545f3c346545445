//! `bp-alerter`: the bp-monitoring alerter (`run`, the default) and its
//! offline tools (`check-config`, `replay`, `test-rules`), which use the same
//! rules engine. The work is in the `bp_alerter` library; this is the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use bp_alerter::{EXIT_BAD_INPUT, RunConfig, Storage, offline};
use clap::{Args, Parser, Subcommand};
use metrics_model::duration::parse_positive;
use metrics_model::{Deployment, Duration, HostName, Mode};

#[derive(Debug, Parser)]
#[command(
    name = "bp-alerter",
    version,
    about = "bp-monitoring alerter and offline rule tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Configuration file (botpress.config.json-style or { "monitoring", "alerting" }).
    /// Without one: monitoring and alerting enabled, no rules.
    #[arg(long, short, env = "BP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// This machine's name [default: BP_NODE_NAME, else the host name].
    #[arg(long, env = "BP_NODE_NAME", global = true)]
    node: Option<String>,
    /// Standalone mode: UDP address where local programs send StatsD ("off" to disable).
    #[arg(
        long,
        env = "BP_STATSD",
        default_value = "127.0.0.1:8125",
        global = true
    )]
    statsd: String,
    /// Address of the dashboard, JSON API and /metrics ("off" to disable).
    /// A non-loopback address needs --token (or --insecure-no-auth).
    #[arg(long, env = "BP_LISTEN", default_value = web::DEFAULT_LISTEN, global = true)]
    listen: String,
    /// Access token for the dashboard, API and /metrics (bearer token, or the
    /// basic-auth password); /healthz and /readyz stay open. Never logged.
    #[arg(long, env = "BP_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
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
    write_token: Option<String>,
    /// Host names (comma-separated) writes may be addressed to, besides IP
    /// addresses and localhost (the DNS-rebinding check).
    #[arg(
        long,
        env = "BP_API_ALLOWED_HOSTS",
        global = true,
        value_delimiter = ','
    )]
    allowed_host: Vec<String>,
    /// Serve a non-loopback --listen address without a token.
    #[arg(long, global = true)]
    insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "BP_TLS_CERT", global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "BP_TLS_KEY", global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Standalone mode: the directory of the on-disk store (ticks, incidents,
    /// outbox), created with mode 0700; one bp-alerter per directory.
    #[arg(
        long,
        env = "BP_DATA_DIR",
        default_value = "data/monitoring",
        global = true
    )]
    data_dir: PathBuf,
    /// Standalone mode: keep everything in memory instead (lost at exit).
    #[arg(long, global = true, conflicts_with = "data_dir")]
    ephemeral: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum SilenceAction {
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

fn silence_command(args: &RunArgs, api: Option<&str>, op: &bp_alerter::silence_cli::Op) -> u8 {
    match bp_alerter::silence_cli::target(
        api,
        &args.listen,
        args.tls_cert.is_some(),
        args.write_token.as_deref(),
        args.token.as_deref(),
    ) {
        Ok(target) => bp_alerter::silence_cli::run(&target, op),
        Err(e) => bad(&e),
    }
}

fn silence_op(action: SilenceAction) -> Result<bp_alerter::silence_cli::Op, String> {
    use bp_alerter::silence_cli::{Op, silence_body};
    Ok(match action {
        SilenceAction::Add {
            rule,
            host,
            instance,
            severity,
            for_,
            until,
            start,
            comment,
            created_by,
        } => Op::Add(silence_body(
            &[
                ("rule", rule.as_deref()),
                ("host", host.as_deref()),
                ("instance", instance.as_deref()),
                ("severity", severity.as_deref()),
            ],
            start.as_deref(),
            for_,
            until.as_deref(),
            comment.as_deref(),
            created_by.as_deref(),
        )?),
        SilenceAction::List { state, json } => Op::List { state, json },
        SilenceAction::Expire { id } => Op::Expire(id),
    })
}

fn main() -> ExitCode {
    // The hidden hook runner (see `incidents::hooks::runner`): this binary
    // re-executed between the alerter and each hook process.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw
        .get(1)
        .is_some_and(|a| a == incidents::hooks::runner::SUBCOMMAND)
    {
        let code = incidents::hooks::runner::main(&raw[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    let code = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.run),
        Command::CheckConfig { file } => offline::check_config(&file),
        Command::Replay {
            rules,
            watcher_interval,
            silences,
        } => offline::replay(&rules, watcher_interval, silences.as_deref()),
        Command::TestRules { files } => offline::test_rules(&files),
        Command::Export { output } => transfer(&cli.run, &Transfer::Export(output)),
        Command::Import { input } => transfer(&cli.run, &Transfer::Import(input)),
        Command::Incidents { since, limit, json } => {
            list_incidents(&cli.run, alerter::list::ListOptions { since, limit, json })
        }
        Command::NotifyTest { notifier } => offline::notify_test(
            cli.run.config.as_deref(),
            notifier.as_deref(),
            &cli.run
                .node
                .clone()
                .unwrap_or_else(|| "bp-alerter".to_owned()),
        ),
        Command::Silence { action, api } => match silence_op(action) {
            Ok(op) => silence_command(&cli.run, api.as_deref(), &op),
            Err(e) => bad(&e),
        },
        Command::Ack {
            id,
            by,
            comment,
            api,
        } => {
            let mut body = serde_json::json!({});
            if let Some(b) = by {
                body["by"] = serde_json::json!(b);
            }
            if let Some(c) = comment {
                body["comment"] = serde_json::json!(c);
            }
            silence_command(
                &cli.run,
                api.as_deref(),
                &bp_alerter::silence_cli::Op::Ack(id, body),
            )
        }
    };
    ExitCode::from(code)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(collector::logging::EscapedFields)
        .with_ansi(collector::logging::ansi_for_stderr())
        .with_writer(std::io::stderr)
        .init();
}

fn bad(msg: &str) -> u8 {
    eprintln!("bp-alerter: {msg}");
    EXIT_BAD_INPUT
}

fn run(args: &RunArgs) -> u8 {
    let (config, hooks) = match &args.config {
        None => (
            rules_engine::Config::default(),
            incidents::hooks::HooksConfig::default(),
        ),
        Some(path) => match alerter::load_config(path) {
            Ok(alerter::LoadedConfig { config, hooks }) => (config, hooks),
            Err(problems) => {
                for p in &problems {
                    eprintln!("{p}");
                }
                return bad(&format!(
                    "invalid configuration ({} problems); nothing started",
                    problems.len()
                ));
            }
        },
    };
    let deployment = match Deployment::from_env() {
        Ok(d) => d,
        Err(e) => return bad(&e.to_string()),
    };
    let node_text = args
        .node
        .clone()
        .or_else(collector::system::host_name)
        .unwrap_or_else(|| "localhost".to_owned());
    let node: HostName = match node_text.parse() {
        Ok(n) => n,
        Err(e) => return bad(&format!("--node / BP_NODE_NAME: {e}")),
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return bad(&format!("cannot start the runtime: {e}")),
    };
    let statsd = match args.statsd.as_str() {
        "off" => None,
        text => match text.parse() {
            Ok(addr) => Some(addr),
            Err(e) => return bad(&format!("--statsd {text:?}: {e} (use host:port or off)")),
        },
    };
    let http = match http_config(args) {
        Ok(h) => h,
        Err(msg) => return bad(&msg),
    };
    // Opened (and locked) before anything starts: a second alerter on the
    // same directory, or a file it cannot read, stops here with exit 2.
    let storage = match deployment.mode {
        Mode::Standalone if !args.ephemeral => match disk_store::DiskStore::open(&args.data_dir) {
            Ok(store) => Storage::Disk(store.keeping_ticks_in_memory_when_full()),
            Err(e) => return bad(&e.to_string()),
        },
        _ => Storage::Memory,
    };
    let cfg = RunConfig {
        config,
        config_path: args.config.clone(),
        deployment,
        node,
        statsd,
        hooks,
        http,
        storage,
    };
    match runtime.block_on(bp_alerter::run(cfg, agent::shutdown_signal())) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "bp-alerter stopped");
            1
        }
    }
}

fn http_config(args: &RunArgs) -> Result<Option<web::HttpConfig>, String> {
    if args.listen == "off" {
        return Ok(None);
    }
    let listen = args
        .listen
        .parse()
        .map_err(|e| format!("--listen {:?}: {e} (use ip:port or off)", args.listen))?;
    let token = match args.token.as_deref() {
        None => None,
        Some(t) => Some(web::Token::new(t).ok_or("--token / BP_API_TOKEN: the token is empty")?),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(web::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let tokens = match args.write_token.as_deref() {
        None => Vec::new(),
        Some(text) => web::write::parse_write_tokens(text)?,
    };
    let config = web::HttpConfig {
        listen,
        token,
        insecure_no_auth: args.insecure_no_auth,
        tls,
        write: web::write::WriteAccess {
            tokens,
            allowed_hosts: args
                .allowed_host
                .iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect(),
        },
    };
    config.check()?;
    Ok(Some(config))
}

enum Transfer {
    Export(Option<PathBuf>),
    Import(Option<PathBuf>),
}

/// `export` / `import` against the deployment's store.
fn transfer(args: &RunArgs, what: &Transfer) -> u8 {
    let deployment = match Deployment::from_env() {
        Ok(d) => d,
        Err(e) => return bad(&e.to_string()),
    };
    // An import is read and checked whole before anything is written.
    let file = match what {
        Transfer::Export(_) => None,
        Transfer::Import(input) => {
            let read = match input {
                Some(p) => std::fs::File::open(p)
                    .map_err(|e| format!("{}: {e}", p.display()))
                    .and_then(|f| alerter::transfer::read(std::io::BufReader::new(f))),
                None => alerter::transfer::read(std::io::stdin().lock()),
            };
            match read {
                Ok(f) => Some(f),
                Err(e) => return bad(&format!("import: {e}; nothing was written")),
            }
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return bad(&format!("cannot start the runtime: {e}")),
    };
    let holder = format!("import:{}", std::process::id());
    let run = |ticks_alerts: Stores| -> Result<alerter::transfer::Moved, String> {
        runtime.block_on(async {
            match (what, &file, ticks_alerts) {
                (Transfer::Export(output), _, stores) => {
                    let mut out: Box<dyn std::io::Write> = match output {
                        Some(p) => Box::new(std::io::BufWriter::new(
                            std::fs::File::create(p)
                                .map_err(|e| format!("{}: {e}", p.display()))?,
                        )),
                        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                    };
                    match stores {
                        Stores::Redis(s) => alerter::transfer::export(&s, &s, &mut out).await,
                        Stores::Disk(s) => alerter::transfer::export(&s, &s, &mut out).await,
                    }
                }
                (Transfer::Import(_), Some(file), stores) => match stores {
                    Stores::Redis(s) => alerter::transfer::import(&s, &s, file, &holder).await,
                    Stores::Disk(s) => {
                        let moved = alerter::transfer::import(&s, &s, file, &holder).await?;
                        // No reader follows an import's arrival order (the
                        // directory is locked while an alerter runs).
                        s.drop_arrival_index().await.map_err(|e| e.to_string())?;
                        Ok(moved)
                    }
                },
                (Transfer::Import(_), None, _) => Err("no input".into()),
            }
        })
    };
    let stores = match deployment.redis_url {
        Some(url) => {
            let options = redis_store::RedisOptions::new(url, deployment.scope);
            match runtime.block_on(redis_store::RedisStore::connect(options)) {
                Ok(s) => Stores::Redis(s),
                Err(e) => {
                    eprintln!("bp-alerter: {e}");
                    return 1;
                }
            }
        }
        None => match disk_store::DiskStore::open(&args.data_dir) {
            Ok(s) => Stores::Disk(s),
            Err(e) => return bad(&e.to_string()),
        },
    };
    let verb = match what {
        Transfer::Export(_) => "exported",
        Transfer::Import(_) => "imported",
    };
    match run(stores) {
        Ok(moved) => {
            eprintln!("bp-alerter: {verb} {moved}");
            0
        }
        Err(e) => {
            eprintln!("bp-alerter: {e}");
            if e.contains("holds the lease") {
                EXIT_BAD_INPUT
            } else {
                1
            }
        }
    }
}

enum Stores {
    Redis(redis_store::RedisStore),
    Disk(disk_store::DiskStore),
}

fn list_incidents(args: &RunArgs, options: alerter::list::ListOptions) -> u8 {
    let deployment = match Deployment::from_env() {
        Ok(d) => d,
        Err(e) => return bad(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return bad(&format!("cannot start the runtime: {e}")),
    };
    let Some(url) = deployment.redis_url else {
        // Standalone: the data directory, when no alerter holds it.
        if !args.data_dir.is_dir() {
            return bad(&format!(
                "incidents: REDIS_URL is not set and there is no standalone data directory {} (--data-dir)",
                args.data_dir.display()
            ));
        }
        let store = match disk_store::DiskStore::open(&args.data_dir) {
            Ok(s) => s,
            Err(disk_store::DiskStoreError::Locked { dir, .. }) => {
                return bad(&format!(
                    "incidents: the standalone alerter using {} is running; ask it instead: GET /api/v1/incidents on its --listen address",
                    dir.display()
                ));
            }
            Err(e) => return bad(&e.to_string()),
        };
        return match runtime.block_on(alerter::list::incidents(&store, options)) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("bp-alerter incidents: {e:#}");
                1
            }
        };
    };
    let result = runtime.block_on(async {
        let store =
            redis_store::RedisStore::connect(redis_store::RedisOptions::new(url, deployment.scope))
                .await?;
        alerter::list::incidents(&store, options).await
    });
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("bp-alerter incidents: {e:#}");
            1
        }
    }
}
