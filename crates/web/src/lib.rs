//! The alerter's HTTP layer as a library: the dashboard page (embedded at
//! compile time), the JSON API and its parameter parsing, the dashboard's
//! read cache and roll-ups, `/metrics`, authentication and TLS (see
//! `docs/api.md` and `docs/dashboard.md`). [`router`] gives the routes
//! over any stores, so the whole API is testable without the binary;
//! [`bind`] and [`Server::run`] serve it.
//!
//! - [`auth`]: the access token (bearer or basic auth); `/healthz` and
//!   `/readyz` stay open;
//! - [`tls`]: optional TLS (rustls) on the same listener;
//! - [`cache`]: per-node columns of recent ticks and 5-minute rollups, from
//!   which ranges are downsampled without reading the store again;
//! - [`api`]: the JSON endpoints, [`params`]: their query parameters (pure
//!   parsers), [`rules`]: rules with their current window values,
//!   [`metrics`]: the Prometheus text, [`assets`]: the embedded page.
//!
//! - [`silences`]: silences and acknowledgements, the only writes, behind
//!   [`write`]'s write token and CSRF checks.
//!
//! **Invariant:** the server writes only silences and acknowledgements
//! (records, by compare-and-set; every alerter serves it, active or
//! standby, and none of its writes is fenced); no request can make it
//! allocate without bound
//! (`params::MAX_VALUES`, `params::MAX_SERIES`, at most `params::MAX_HEAVY`
//! heavy requests at once).
#![deny(missing_docs)]

pub mod api;
pub mod assets;
pub mod auth;
pub mod cache;
pub mod metrics;
pub mod params;
pub mod rules;
pub mod silences;
pub mod tls;
pub mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use metrics_model::store::{AlertStore, TickStore};
use rules_engine::Config;
use tokio::sync::watch;
use tracing::{info, warn};

use alerter::AlerterStats;

/// The default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

pub use metrics_model::token::Token;

/// Certificate and key files (PEM) for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the HTTP server is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The access token; `None`: no authentication.
    pub token: Option<Token>,
    /// Allow a non-loopback address without a token.
    pub insecure_no_auth: bool,
    /// TLS, if wanted.
    pub tls: Option<TlsFiles>,
    /// Who may write silences and acknowledgements (no tokens: nobody).
    pub write: write::WriteAccess,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token: None,
            insecure_no_auth: false,
            tls: None,
            write: write::WriteAccess::default(),
        }
    }
}

impl HttpConfig {
    /// Refuses a non-loopback address without a token unless
    /// `insecure_no_auth` (the message says what to do).
    pub fn check(&self) -> Result<(), String> {
        if let Some(read) = &self.token
            && self.write.tokens.iter().any(|w| &w.token == read)
        {
            return Err(
                "--write-token / BP_API_WRITE_TOKEN: a write token must differ from the read \
                 token (--token / BP_API_TOKEN)"
                    .to_owned(),
            );
        }
        if self.listen.ip().is_loopback() || self.token.is_some() || self.insecure_no_auth {
            return Ok(());
        }
        Err(format!(
            "--listen {}: refusing to serve the dashboard and API on a non-loopback address without \
             an access token; set --token or BP_API_TOKEN (clients send it as a bearer token or as \
             the basic-auth password), or pass --insecure-no-auth to accept anyone who can reach \
             the port",
            self.listen
        ))
    }
}

/// What the handlers share.
pub struct AppState<T, A> {
    /// Ticks.
    pub ticks: T,
    /// Incident states and history.
    pub alerts: A,
    /// The alerter's counters.
    pub stats: Arc<AlerterStats>,
    /// The current configuration (follows SIGHUP reloads).
    pub config: watch::Receiver<Arc<Config>>,
    /// Downsampling cache.
    pub cache: cache::SeriesCache,
    /// Rules with their window values, per evaluated instant.
    pub rules: rules::RulesCache,
    /// Store reads by the HTTP server that failed.
    pub store_errors: AtomicU64,
    /// Whether the server answers `/readyz` with 200.
    pub ready: std::sync::atomic::AtomicBool,
    /// Permits for heavy series requests ([`params::MAX_HEAVY`]).
    pub heavy: tokio::sync::Semaphore,
    /// Standalone mode: the counters of this machine's collector, which
    /// `/healthz` shows under `collector`.
    pub collector: Option<HealthSource>,
}

/// Something whose counters `/healthz` shows (standalone mode: this
/// machine's collector); called on every `/healthz`.
pub type HealthSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl<T, A> std::fmt::Debug for AppState<T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl<T, A> AppState<T, A> {
    /// State over these stores.
    pub fn new(
        ticks: T,
        alerts: A,
        stats: Arc<AlerterStats>,
        config: watch::Receiver<Arc<Config>>,
    ) -> Self {
        AppState {
            ticks,
            alerts,
            stats,
            config,
            cache: cache::SeriesCache::new(cache::RAW_SPAN_MS),
            rules: rules::RulesCache::default(),
            store_errors: AtomicU64::new(0),
            ready: std::sync::atomic::AtomicBool::new(false),
            heavy: tokio::sync::Semaphore::new(params::MAX_HEAVY),
            collector: None,
        }
    }

    /// The same, showing `collector`'s counters in `/healthz`.
    #[must_use]
    pub fn with_collector(mut self, collector: Option<HealthSource>) -> Self {
        self.collector = collector;
        self
    }
}

/// The routes, with authentication applied when a token is configured;
/// writes disabled.
pub fn router<T, A>(state: Arc<AppState<T, A>>, token: Option<Token>) -> Router
where
    T: TickStore + Clone + 'static,
    A: AlertStore + Clone + 'static,
{
    router_with_writes(state, token, write::WriteAccess::default())
}

/// The routes, reads behind `token` (when set; a write token reads too),
/// writes behind `write` ([`write::require_write`]).
pub fn router_with_writes<T, A>(
    state: Arc<AppState<T, A>>,
    token: Option<Token>,
    write: write::WriteAccess,
) -> Router
where
    T: TickStore + Clone + 'static,
    A: AlertStore + Clone + 'static,
{
    use axum::routing::{post, put};
    let write = Arc::new(write);
    let writes = Router::new()
        .route("/api/v1/silences", post(silences::create::<T, A>))
        .route("/api/v1/silences/{id}", put(silences::update::<T, A>))
        .route(
            "/api/v1/silences/{id}/expire",
            post(silences::expire::<T, A>),
        )
        .route("/api/v1/incidents/{id}/ack", post(silences::ack::<T, A>))
        .layer(axum::extract::DefaultBodyLimit::max(silences::BODY_MAX))
        .layer(axum::middleware::from_fn_with_state(
            write.clone(),
            write::require_write,
        ));
    let protected = Router::new()
        .route("/api/v1/silences", get(silences::list::<T, A>))
        .route("/api/v1/silences/{id}", get(silences::get::<T, A>))
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::file))
        .route("/api/v1/nodes", get(api::nodes::<T, A>))
        .route("/api/v1/series", get(api::series::<T, A>))
        .route("/api/v1/overview", get(api::overview::<T, A>))
        .route("/api/v1/disks", get(api::disks::<T, A>))
        .route("/api/v1/incidents", get(api::incidents::<T, A>))
        .route("/api/v1/rules", get(rules::handler::<T, A>))
        .route("/metrics", get(metrics::handler::<T, A>))
        .fallback(api::not_found);
    let protected = match token {
        Some(t) => protected.layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::ReadAccess { token: t, write }),
            auth::require_token,
        )),
        None => protected,
    };
    Router::new()
        .route("/healthz", get(api::healthz::<T, A>))
        .route("/readyz", get(api::readyz::<T, A>))
        .merge(writes)
        .merge(protected)
        .with_state(state)
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    token: Option<Token>,
    write: write::WriteAccess,
}

/// Binds the address and loads the TLS files (errors name the flag and the
/// file).
pub async fn bind(config: &HttpConfig) -> anyhow::Result<Server> {
    config.check().map_err(|e| anyhow::anyhow!(e))?;
    let tls = match &config.tls {
        Some(files) => Some(tls::acceptor(files)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", config.listen))?;
    Ok(Server {
        listener,
        tls,
        token: config.token.clone(),
        write: config.write.clone(),
    })
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("token", &self.token)
            .field("write", &self.write)
            .finish()
    }
}

impl Server {
    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`; warms the cache in the background first.
    pub async fn run<T, A>(
        self,
        state: Arc<AppState<T, A>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()>
    where
        T: TickStore + Clone + 'static,
        A: AlertStore + Clone + 'static,
    {
        let addr = self.local_addr()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        info!(
            url = %format!("{scheme}://{addr}/"),
            auth = if self.token.is_some() { "token" } else { "none" },
            writes = if self.write.tokens.is_empty() { "disabled" } else { "write token" },
            "dashboard, API and /metrics listening"
        );
        let warm = state.clone();
        tokio::spawn(async move {
            if let Err(e) = api::warm_up(&warm).await {
                warn!(error = %e, "cannot preload the dashboard cache; it fills on demand");
            }
            warm.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let app = router_with_writes(state, self.token, self.write);
        match self.tls {
            None => axum::serve(self.listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .context("HTTP server")?,
            Some(acceptor) => {
                axum::serve(tls::TlsListener::new(self.listener, acceptor), app)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .context("HTTPS server")?;
            }
        }
        Ok(())
    }
}

/// The answers of a server whose stores are not connected yet: see
/// [`Server::spawn_starting`].
fn starting_router(reason: &'static str) -> Router {
    use axum::response::IntoResponse as _;
    let unavailable = move || async move {
        api::ApiError::busy(format!("the alerter is starting: {reason}")).into_response()
    };
    Router::new()
        .route(
            "/healthz",
            get(move || async move {
                axum::Json(serde_json::json!({ "status": "ok", "starting": reason }))
            }),
        )
        .route(
            "/readyz",
            get(move || async move {
                let mut r = (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({ "status": "starting", "error": reason })),
                )
                    .into_response();
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(api::RETRY_AFTER_SECS),
                );
                r
            }),
        )
        .fallback(unavailable)
}

/// A server answering "starting" until [`Starting::stop`].
#[derive(Debug)]
pub struct Starting {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Starting {
    /// Stops answering "starting" (requests in progress are answered
    /// first); connections arriving meanwhile wait in the listen queue for
    /// the real server.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl Server {
    /// Answers on the bound address while the stores are not connected
    /// yet (Redis down at start-up): `/healthz` 200, `/readyz` and every
    /// other path 503 with `Retry-After`, naming `reason`. The listener
    /// stays bound for [`Server::run`] afterwards.
    pub fn spawn_starting(&self, reason: &'static str) -> anyhow::Result<Starting> {
        let dup = socket2::SockRef::from(&self.listener)
            .try_clone()
            .context("cannot share the HTTP listener")?;
        let std_listener: std::net::TcpListener = dup.into();
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = starting_router(reason);
        let tls = self.tls.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let result = match tls {
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                Some(acceptor) => {
                    axum::serve(tls::TlsListener::new(listener, acceptor), app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
            };
            if let Err(e) = result {
                warn!(error = %e, "the start-up HTTP server stopped");
            }
        });
        info!(
            addr = %self.local_addr()?,
            "HTTP listening; /readyz answers 503 until {reason} succeeds",
        );
        Ok(Starting { stop, task })
    }
}

/// The server's shutdown signal.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Boxes a shutdown future.
pub fn boxed(f: impl Future<Output = ()> + Send + 'static) -> Shutdown {
    Box::pin(f)
}

/// Runs the server in its own task; a failure is logged.
pub fn spawn<T, A>(
    server: Server,
    state: Arc<AppState<T, A>>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()>
where
    T: TickStore + Clone + 'static,
    A: AlertStore + Clone + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = server.run(state, shutdown).await {
            tracing::error!(error = %format!("{e:#}"), "the HTTP server stopped");
        }
    })
}

/// Waits (a few seconds at most) for the server task to end after shutdown.
pub async fn join(task: Option<tokio::task::JoinHandle<()>>) {
    if let Some(task) = task
        && tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .is_err()
    {
        warn!("the HTTP server did not stop within 5 s");
    }
}
