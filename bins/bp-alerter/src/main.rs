//! `bp-alerter`: the bp-monitoring alerter (`run`, the default) and its
//! offline tools (`check-config`, `replay`, `test-rules`), which use the same
//! rules engine. The work is in the `bp_alerter` library; this is the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use bp_alerter::cli::{Cli, Command, RunArgs, SilenceAction};
use bp_alerter::{EXIT_BAD_INPUT, RunConfig, Storage, offline};
use clap::Parser;
use metrics_model::{Deployment, HostName, Mode};

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
