//! The bp-alerter library: what `bp-alerter` runs, usable from tests.
//!
//! - [`alerter`]: leadership (lease with fencing), the evaluation schedule,
//!   atomic commits of incident state and outbox;
//! - [`deliver`]: the outbox → hooks loop;
//! - [`janitor`]: retention of ticks and resolved incidents;
//! - [`list`]: `bp-alerter incidents`;
//! - [`local`]: standalone mode's own collector for this machine;
//! - [`offline`]: `check-config`, `replay`, `test-rules`.
//!
//! [`run`] picks the mode from the environment (see `docs/configuration.md`):
//! cluster mode with Redis when `REDIS_URL` is set, standalone otherwise.

pub mod alerter;
pub mod deliver;
pub mod http;
pub mod janitor;
pub mod list;
pub mod local;
pub mod offline;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use incidents::delivery::{Dispatcher, DispatcherOptions};
use incidents::hooks::HooksConfig;
use incidents::watchdog::Watchdog;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::{Deployment, HostName, MemoryAlertStore, MemoryStore, Mode};
use redis_store::{RedisOptions, RedisStore};
use rules_engine::Config;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use crate::alerter::{AlerterSetup, AlerterStats, run_alerter};

/// Exit status for bad configuration, bad input or bad usage.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Everything `bp-alerter run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The parsed configuration.
    pub config: Config,
    /// Where it came from (re-read on SIGHUP), if from a file.
    pub config_path: Option<PathBuf>,
    /// Mode, Redis URL and scope from the environment.
    pub deployment: Deployment,
    /// This machine's name (its ticks in standalone mode; the lease holder).
    pub node: HostName,
    /// Standalone mode: where local programs send StatsD (`None`: nowhere).
    pub statsd: Option<std::net::SocketAddr>,
    /// The validated `alerting.hooks`.
    pub hooks: HooksConfig,
    /// The dashboard, JSON API and /metrics server (`None`: not served).
    pub http: Option<http::HttpConfig>,
}

/// Loads and validates a configuration file, hooks included. Every problem
/// is returned, one per line. When alerting is disabled, problems in its
/// rules and hooks are warnings ([`Config::ignored`]), not errors.
///
/// Paths written in the file (`hooks.directory`, a `hooks.node` with a
/// `/`) are relative to the file's directory; defaults stay relative to
/// the working directory.
pub fn load_config(path: &std::path::Path) -> Result<(Config, HooksConfig), Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        Config::from_json_text(&text, &path.display().to_string())
            .err()
            .map(|e| e.problems())
            .unwrap_or_default()
    })?;
    let hooks_path = if value.get("pro").is_some() {
        "pro.alerting.hooks"
    } else {
        "alerting.hooks"
    };
    let config = Config::from_json(&value);
    let raw_hooks = value
        .get("pro")
        .unwrap_or(&value)
        .get("alerting")
        .and_then(|a| a.get("hooks"));
    let hooks = HooksConfig::from_optional(raw_hooks, hooks_path);
    match (config, hooks) {
        (Ok(c), Ok(mut h)) => {
            let base = config_dir(path);
            if raw_hooks.and_then(|h| h.get("directory")).is_some() {
                h.directory = relative_to(&base, &h.directory);
            }
            if raw_hooks.and_then(|h| h.get("node")).is_some() && h.node.components().count() > 1 {
                h.node = relative_to(&base, &h.node);
            }
            if !c.alerting.enabled {
                // Never used: the defaults, as if the section were absent.
                h = HooksConfig::default();
            }
            Ok((c, h))
        }
        (Ok(mut c), Err(problems)) if !c.alerting.enabled => {
            c.ignored.extend(problems.iter().map(ToString::to_string));
            Ok((c, HooksConfig::default()))
        }
        (c, h) => {
            let mut problems = c.err().map(|e| e.problems()).unwrap_or_default();
            problems.extend(h.err().unwrap_or_default().iter().map(ToString::to_string));
            Err(problems)
        }
    }
}

/// A warning when alerting is enabled and the hook directory does not
/// exist (then no file hook runs, which is rarely what was meant).
pub fn hook_directory_warning(config: &Config, hooks: &HooksConfig) -> Option<String> {
    (config.alerting.enabled && !hooks.directory.is_dir()).then(|| {
        format!(
            "the hook directory {} does not exist: no file hook will run (a hooks.directory \
             written in the configuration file is relative to the file's directory; the \
             default is relative to the working directory)",
            hooks.directory.display()
        )
    })
}

/// The directory that relative paths in the configuration file `path` are
/// relative to.
fn config_dir(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn relative_to(base: &std::path::Path, p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Runs the alerter until `shutdown` resolves.
pub async fn run(
    cfg: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    for w in &cfg.deployment.warnings {
        warn!("{w}");
    }
    for w in cfg.config.warnings() {
        warn!("{w}");
    }
    if let Some(w) = hook_directory_warning(&cfg.config, &cfg.hooks) {
        warn!("{w}");
    }
    let http_server = match &cfg.http {
        Some(h) => Some(http::bind(h).await?),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (config_tx, config_rx) = watch::channel(Arc::new(cfg.config.clone()));
    spawn_reloader(cfg.config_path.clone(), config_tx);
    // `<node>:<pid>:<random>`: unique among live alerters even when two
    // share a node name and a pid (pid 1 in containers), since the lease and
    // the commit fence tell alerters apart by this name alone.
    let holder = format!(
        "{}:{}:{}",
        cfg.node,
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let stats = Arc::new(AlerterStats::default());
    let watchdog = match &cfg.hooks.watchdog {
        Some(w) => Some(Watchdog::new(w.clone()).context("watchdog")?),
        None => None,
    };
    let setup = AlerterSetup {
        holder,
        config: config_rx,
        stats,
        committed: Arc::new(Notify::new()),
        on_evaluated: Box::new(move |_, _| {
            if let Some(w) = &watchdog {
                w.ping();
            }
        }),
    };
    match cfg.deployment.mode {
        Mode::Standalone => {
            info!(node = %cfg.node, rules = cfg.config.alerting.rules.len(), "standalone mode: this machine only, state in memory");
            let ticks = MemoryStore::new();
            let alerts = MemoryAlertStore::new();
            let telemetry = if cfg.config.monitoring.enabled {
                let config =
                    local::collector_config(cfg.node.clone(), cfg.statsd, &cfg.config.monitoring)?;
                let telemetry = bp_collector::Telemetry::new(&config);
                let collector = local::collect(ticks.clone(), config, telemetry.clone(), stopped());
                tokio::spawn(async move {
                    if let Err(e) = collector.await {
                        error!(error = %e, "this machine's collector stopped");
                    }
                });
                Some(telemetry)
            } else {
                None
            };
            let http = http_server.map(|s| (s, http::boxed(stopped())));
            serve(ticks, alerts, setup, &cfg, stopped(), http, telemetry).await
        }
        Mode::Cluster => {
            let url = cfg
                .deployment
                .redis_url
                .clone()
                .context("cluster mode without REDIS_URL")?;
            info!(redis = %url, scope = %cfg.deployment.scope, "cluster mode");
            let options = RedisOptions::new(url, cfg.deployment.scope.clone());
            // Bound and answering before Redis is: /healthz 200, /readyz 503.
            let starting = match &http_server {
                Some(s) => Some(s.spawn_starting("connecting to Redis")?),
                None => None,
            };
            let store = connect_with_retry(options, stopped()).await;
            if let Some(s) = starting {
                s.stop().await;
            }
            let Some(store) = store? else { return Ok(()) };
            let http = http_server.map(|s| (s, http::boxed(stopped())));
            serve(store.clone(), store, setup, &cfg, stopped(), http, None).await
        }
    }
}

async fn serve<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    ticks: T,
    alerts: A,
    setup: AlerterSetup,
    cfg: &RunConfig,
    shutdown: impl Future<Output = ()>,
    http: Option<(http::Server, http::Shutdown)>,
    collector: Option<Arc<bp_collector::Telemetry>>,
) -> anyhow::Result<()> {
    let http_task = http.map(|(server, stop)| {
        let state = Arc::new(
            http::AppState::new(
                ticks.clone(),
                alerts.clone(),
                setup.stats.clone(),
                setup.config.clone(),
            )
            .with_collector(collector),
        );
        http::spawn(server, state, stop)
    });
    janitor::spawn(ticks.clone(), alerts.clone(), &cfg.config);
    if !cfg.config.alerting.enabled {
        info!("alerting is disabled in the configuration: no rule is evaluated");
        shutdown.await;
        http::join(http_task).await;
        return Ok(());
    }
    let (dispatcher, completions) = Dispatcher::start(&cfg.hooks, DispatcherOptions::default())
        .context("cannot start hook delivery")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let delivery = tokio::spawn(deliver::delivery_loop(
        alerts.clone(),
        dispatcher,
        completions,
        setup.stats.clone(),
        setup.committed.clone(),
        cfg.hooks.timeout.to_std(),
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    run_alerter(ticks, alerts, setup, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = delivery.await;
    http::join(http_task).await;
    Ok(())
}

/// Connects to Redis, retrying with backoff while it is unreachable (the
/// error says why each time); `None` when shut down first.
async fn connect_with_retry(
    options: RedisOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Option<RedisStore>> {
    tokio::pin!(shutdown);
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        match RedisStore::connect(options.clone()).await {
            Ok(s) => return Ok(Some(s)),
            Err(
                e @ (redis_store::RedisStoreError::Incompatible(_)
                | redis_store::RedisStoreError::Config(_)),
            ) => {
                return Err(anyhow::anyhow!(e));
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot connect to Redis; retrying");
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(None),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
    }
}

/// On SIGHUP, re-reads the configuration file; an invalid one is rejected
/// (every problem logged) and the old one kept.
fn spawn_reloader(path: Option<PathBuf>, tx: watch::Sender<Arc<Config>>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; configuration reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            let Some(path) = &path else {
                warn!("SIGHUP: no configuration file to reload (started without --config)");
                continue;
            };
            match load_config(path) {
                Ok((config, _hooks)) => {
                    info!(file = %path.display(), "SIGHUP: configuration reloaded");
                    let _ = tx.send(Arc::new(config));
                }
                Err(problems) => {
                    for p in problems {
                        error!(problem = %p, "SIGHUP: invalid configuration rejected; keeping the old one");
                    }
                }
            }
        }
    });
}
