//! Store selection: Redis when the deployment says so (`REDIS_URL`), else the
//! dry run (ticks printed to stdout; `import` checks its input in memory).

use metrics_model::deployment::{Deployment, Mode};
use metrics_model::memory::MemoryStore;
use metrics_model::store::{AppendOutcome, StoreError, TickStore};
use metrics_model::tick::Tick;
use redis_store::{RedisOptions, RedisStore, RedisStoreError};

use crate::import::{ImportReport, import};
use crate::writer::TickSink;

/// What [`open`] selected.
#[derive(Debug)]
pub enum Opened {
    /// Write ticks to Redis.
    Redis(RedisSink),
    /// Print ticks to stdout.
    DryRun,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is wrong (exit status 2).
    #[error("{0}")]
    Config(String),
    /// Redis refused us for good (too old, unknown key layout, auth).
    #[error("{0}")]
    Fatal(String),
}

/// The Redis sink: connects at start-up, or later (inside the writer's
/// retries) when Redis is down when the collector starts.
#[derive(Debug)]
pub struct RedisSink {
    options: RedisOptions,
    store: Option<RedisStore>,
}

impl TickSink for RedisSink {
    async fn write(&mut self, ticks: &[Tick]) -> Result<AppendOutcome, StoreError> {
        if self.store.is_none() {
            let store = RedisStore::connect(self.options.clone())
                .await
                .map_err(StoreError::from)?;
            tracing::info!(redis = %self.options.url, "connected to redis");
            self.store = Some(store);
        }
        match &self.store {
            Some(store) => store.append(ticks).await,
            None => Err(StoreError::Unavailable("not connected".to_owned())),
        }
    }
}

fn redis_options(deployment: &Deployment) -> Option<RedisOptions> {
    match (deployment.mode, &deployment.redis_url) {
        (Mode::Cluster, Some(url)) => Some(RedisOptions::new(url.clone(), &deployment.scope)),
        _ => None,
    }
}

/// Opens what `deployment` selects. When Redis is unreachable the collector
/// still starts (ticks are buffered until it is back).
pub async fn open(deployment: &Deployment) -> Result<Opened, OpenError> {
    let Some(options) = redis_options(deployment) else {
        return Ok(Opened::DryRun);
    };
    tracing::info!(redis = %options.url, scope = %options.scope, "connecting to redis");
    match RedisStore::connect(options.clone()).await {
        Ok(store) => Ok(Opened::Redis(RedisSink {
            options,
            store: Some(store),
        })),
        Err(RedisStoreError::Unavailable(e)) => {
            tracing::warn!(error = %e, "redis is unreachable; starting anyway and buffering ticks");
            Ok(Opened::Redis(RedisSink {
                options,
                store: None,
            }))
        }
        Err(RedisStoreError::Config(e)) => Err(OpenError::Config(e)),
        Err(e) => Err(OpenError::Fatal(e.to_string())),
    }
}

/// `bp-collector import` on stdin.
pub async fn import_stdin(
    deployment: &Deployment,
    batch: usize,
) -> Result<ImportReport, OpenError> {
    let stdin = tokio::io::BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut errors = std::io::stderr();
    let fatal = |e: StoreError| OpenError::Fatal(e.to_string());
    match redis_options(deployment) {
        None => {
            tracing::info!(
                "REDIS_URL is not set: dry run, the input is checked and nothing is stored"
            );
            import(&MemoryStore::new(), stdin, batch, &mut errors)
                .await
                .map_err(fatal)
        }
        Some(options) => {
            let store = RedisStore::connect(options).await.map_err(|e| match e {
                RedisStoreError::Config(m) => OpenError::Config(m),
                other => OpenError::Fatal(other.to_string()),
            })?;
            let report = import(&store, stdin, batch, &mut errors)
                .await
                .map_err(fatal);
            store.close().await;
            report
        }
    }
}
