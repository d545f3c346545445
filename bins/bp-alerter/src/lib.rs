//! The `bp-alerter` binary's wiring, as a library so that `main.rs` stays
//! the command line: [`run`] picks the mode from the environment (see
//! `docs/configuration.md`) — cluster mode with Redis when `REDIS_URL` is
//! set, standalone otherwise — and connects the rooms: the `alerter` crate
//! (leadership, evaluation, delivery, janitor), the `web` crate (dashboard,
//! API, `/metrics`) and, standalone, the `agent` crate collecting this
//! machine.
//!
//! - [`cli`]: the command line (clap), also rendered into man pages and
//!   completions;
//! - [`local`]: standalone mode's own collector for this machine;
//! - [`offline`]: `check-config`, `replay`, `test-rules`;
//! - [`silence_cli`]: `silence add|list|expire` and `ack`.

pub mod cli;
pub mod local;
pub mod offline;
pub mod silence_cli;

use std::path::PathBuf;
use std::sync::Arc;

use alerter::{AlerterSetup, AlerterStats, LoadedConfig, run_alerter};
use anyhow::Context as _;
use incidents::delivery::DispatcherOptions;
use incidents::hooks::HooksConfig;
use incidents::watchdog::Watchdog;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::{Deployment, HostName, MemoryAlertStore, MemoryStore, Mode};
use redis_store::{RedisOptions, RedisStore};
use rules_engine::Config;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};
use web as http;

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
    /// Standalone mode: where the state lives.
    pub storage: Storage,
}

/// Where standalone mode keeps its ticks and alert state.
#[derive(Debug, Clone)]
pub enum Storage {
    /// In this process's memory (`--ephemeral`): lost at exit.
    Memory,
    /// In the data directory (`--data-dir`), opened and locked.
    Disk(disk_store::DiskStore),
}

/// Copies the on-disk store's I/O failure count and ticks kept in memory
/// into the stats (for /metrics), every second.
fn copy_store_gauges(store: disk_store::DiskStore, stats: Arc<alerter::AlerterStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            stats.store_io_failures.store(store.io_failures(), Relaxed);
            stats
                .store_ticks_in_memory
                .store(store.ticks_in_memory() as u64, Relaxed);
        }
    });
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
    if let Some(w) = alerter::config::hook_directory_warning(&cfg.config, &cfg.hooks) {
        warn!("{w}");
    }
    // Every hook process through this binary's hook runner: complete
    // payloads only, and no hook outlives this process.
    match std::env::current_exe() {
        Ok(exe) => incidents::hooks::runner::use_runner(exe),
        Err(e) => warn!(error = %e, "cannot find this binary: hooks run without the hook runner"),
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
    let (hooks_tx, hooks_rx) = watch::channel(Arc::new(cfg.hooks.clone()));
    spawn_reloader(cfg.config_path.clone(), config_tx, hooks_tx);
    // `<node>:<pid>:<random>`: unique among live alerters even when two
    // share a node name and a pid (pid 1 in containers), since the lease and
    // the commit fence tell alerters apart by this name alone.
    let holder = format!(
        "{}:{}:{}",
        cfg.node,
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let setup = alerter_setup(holder, config_rx, &cfg.hooks)?;
    match cfg.deployment.mode {
        Mode::Standalone => match &cfg.storage {
            Storage::Memory => {
                info!(node = %cfg.node, rules = cfg.config.alerting.rules.len(), "standalone mode: this machine only, state in memory (--ephemeral): lost at exit");
                let ticks = MemoryStore::new();
                let rooms = standalone_rooms(&cfg, ticks.clone(), http_server, hooks_rx, &stopped);
                serve(
                    ticks,
                    MemoryAlertStore::new(),
                    setup,
                    &cfg,
                    stopped(),
                    rooms,
                )
                .await
            }
            Storage::Disk(store) => {
                copy_store_gauges(store.clone(), setup.stats.clone());
                info!(node = %cfg.node, rules = cfg.config.alerting.rules.len(), file = %store.path().display(), "standalone mode: this machine only, state on disk");
                let rooms = standalone_rooms(&cfg, store.clone(), http_server, hooks_rx, &stopped);
                serve(store.clone(), store.clone(), setup, &cfg, stopped(), rooms).await
            }
        },
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
            let rooms = Rooms {
                http,
                collector: None,
                hooks: hooks_rx,
            };
            Box::pin(serve(store.clone(), store, setup, &cfg, stopped(), rooms)).await
        }
    }
}

/// The alerter's setup: counters, the commit notification for the
/// delivery loop, and the watchdog's ping after every evaluation.
fn alerter_setup(
    holder: String,
    config: watch::Receiver<Arc<Config>>,
    hooks: &HooksConfig,
) -> anyhow::Result<AlerterSetup> {
    let watchdog = match &hooks.watchdog {
        Some(w) => Some(Watchdog::new(w.clone()).context("watchdog")?),
        None => None,
    };
    Ok(AlerterSetup {
        holder,
        config,
        stats: Arc::new(AlerterStats::default()),
        committed: Arc::new(Notify::new()),
        on_evaluated: Box::new(move |_, _| {
            if let Some(w) = &watchdog {
                w.ping();
            }
        }),
    })
}

/// Standalone mode's rooms: this machine's collector into `ticks` (when
/// monitoring is enabled), the HTTP server, the hooks.
fn standalone_rooms<S, F>(
    cfg: &RunConfig,
    ticks: S,
    http_server: Option<http::Server>,
    hooks: watch::Receiver<Arc<HooksConfig>>,
    stopped: &(impl Fn() -> F + Send + Sync + 'static),
) -> Rooms
where
    S: TickStore + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let telemetry = cfg.config.monitoring.enabled.then(|| {
        let config =
            agent::AgentConfig::standalone(cfg.node.clone(), cfg.statsd, &cfg.config.monitoring);
        let telemetry = agent::Telemetry::new(&config);
        let collector = local::collect(ticks, config, telemetry.clone(), stopped());
        tokio::spawn(async move {
            if let Err(e) = collector.await {
                error!(error = %e, "this machine's collector stopped");
            }
        });
        telemetry
    });
    Rooms {
        http: http_server.map(|s| (s, http::boxed(stopped()))),
        collector: telemetry,
        hooks,
    }
}

/// What [`serve`] connects besides the stores and the alerter.
struct Rooms {
    /// The bound HTTP server and its shutdown signal, when served.
    http: Option<(http::Server, http::Shutdown)>,
    /// Standalone: this machine's collector (shown by `/healthz`).
    collector: Option<Arc<agent::Telemetry>>,
    /// The hooks configuration, following SIGHUP reloads.
    hooks: watch::Receiver<Arc<HooksConfig>>,
}

async fn serve<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    ticks: T,
    alerts: A,
    setup: AlerterSetup,
    cfg: &RunConfig,
    shutdown: impl Future<Output = ()>,
    rooms: Rooms,
) -> anyhow::Result<()> {
    let Rooms {
        http,
        collector,
        hooks,
    } = rooms;
    // The leader's copy of the alert store, shared by everything that
    // writes it (see alerter::mirror).
    let alerts = alerter::Mirrored::new(alerts);
    let http_task = http.map(|(server, stop)| {
        let state = Arc::new(
            http::AppState::new(
                ticks.clone(),
                alerts.clone(),
                setup.stats.clone(),
                setup.config.clone(),
            )
            .with_collector(
                collector.map(|t| Arc::new(move || t.health_json()) as http::HealthSource),
            ),
        );
        http::spawn(server, state, stop)
    });
    alerter::janitor::spawn(ticks.clone(), alerts.clone(), &cfg.config);
    if !cfg.config.alerting.enabled {
        info!("alerting is disabled in the configuration: no rule is evaluated");
        shutdown.await;
        http::join(http_task).await;
        return Ok(());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let delivery = tokio::spawn(alerter::delivery::delivery_loop(
        alerts.clone(),
        hooks,
        DispatcherOptions::default(),
        setup.stats.clone(),
        setup.committed.clone(),
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    run_alerter(ticks, alerts, setup, shutdown).await;
    let _ = stop_tx.send(true);
    match delivery.await {
        Ok(Err(e)) => return Err(anyhow::anyhow!(e).context("cannot start hook delivery")),
        Ok(Ok(())) => {}
        Err(e) => warn!(error = %e, "the delivery task ended abnormally"),
    }
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

/// On SIGHUP, re-reads the configuration file: new rules and settings for
/// the alerter, new hooks for the delivery loop (changed hooks deliver
/// their pending transitions with the new settings; removed hooks' pending
/// ones become dead letters). An invalid file is rejected (every problem
/// logged) and the old configuration kept. The watchdog is not reloaded.
fn spawn_reloader(
    path: Option<PathBuf>,
    tx: watch::Sender<Arc<Config>>,
    hooks_tx: watch::Sender<Arc<HooksConfig>>,
) {
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
            match alerter::load_config(path) {
                Ok(LoadedConfig { config, hooks }) => {
                    info!(file = %path.display(), "SIGHUP: configuration reloaded");
                    let _ = tx.send(Arc::new(config));
                    // Only a change replaces the hook dispatcher.
                    hooks_tx.send_if_modified(|h| {
                        let changed = **h != hooks;
                        if changed {
                            *h = Arc::new(hooks);
                        }
                        changed
                    });
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
