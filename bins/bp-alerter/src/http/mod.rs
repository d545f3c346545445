//! The alerter's HTTP server: the dashboard page, the JSON API and
//! `/metrics` (see `docs/api.md` and `docs/dashboard.md`).
//!
//! - [`auth`]: the access token (bearer or basic auth); `/healthz` and
//!   `/readyz` stay open;
//! - [`tls`]: optional TLS (rustls) on the same listener;
//! - [`cache`]: per-node columns of recent ticks and 5-minute rollups, from
//!   which ranges are downsampled without reading Redis again;
//! - [`api`]: the JSON endpoints; [`rules`]: rules with their current window
//!   values; [`metrics`]: the Prometheus text; [`assets`]: the embedded page.
//!
//! Every alerter serves it, active or standby: it only reads the stores.

pub mod api;
pub mod assets;
pub mod auth;
pub mod cache;
pub mod metrics;
pub mod params;
pub mod rules;
pub mod tls;

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

use crate::alerter::AlerterStats;

/// The default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// An access token. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token; `None` when empty.
    pub fn new(text: &str) -> Option<Token> {
        (!text.is_empty()).then(|| Token(text.to_owned()))
    }

    /// Compares in time independent of where the texts differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = want.len() ^ given.len();
        for (i, w) in want.iter().enumerate() {
            diff |= usize::from(w ^ given.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token: None,
            insecure_no_auth: false,
            tls: None,
        }
    }
}

impl HttpConfig {
    /// Refuses a non-loopback address without a token unless
    /// `insecure_no_auth` (the message says what to do).
    pub fn check(&self) -> Result<(), String> {
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
}

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
        }
    }
}

/// The routes, with authentication applied when a token is configured.
pub fn router<T, A>(state: Arc<AppState<T, A>>, token: Option<Token>) -> Router
where
    T: TickStore + Clone + 'static,
    A: AlertStore + Clone + 'static,
{
    let protected = Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::file))
        .route("/api/v1/nodes", get(api::nodes::<T, A>))
        .route("/api/v1/series", get(api::series::<T, A>))
        .route("/api/v1/overview", get(api::overview::<T, A>))
        .route("/api/v1/incidents", get(api::incidents::<T, A>))
        .route("/api/v1/rules", get(rules::handler::<T, A>))
        .route("/metrics", get(metrics::handler::<T, A>))
        .fallback(api::not_found);
    let protected = match token {
        Some(t) => protected.layer(axum::middleware::from_fn_with_state(
            Arc::new(t),
            auth::require_token,
        )),
        None => protected,
    };
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz::<T, A>))
        .merge(protected)
        .with_state(state)
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    token: Option<Token>,
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
    })
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("token", &self.token)
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
            "dashboard, API and /metrics listening"
        );
        let warm = state.clone();
        tokio::spawn(async move {
            if let Err(e) = api::warm_up(&warm).await {
                warn!(error = %e, "cannot preload the dashboard cache; it fills on demand");
            }
            warm.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let app = router(state, self.token);
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
