//! Standalone mode's own collector: this machine's ticks into the in-memory
//! store, through the same code as `bp-collector` (system sampling every
//! `collectionInterval`, aligned; StatsD from local programs). Retention is
//! the [`crate::janitor`]'s, as in cluster mode.

use std::net::SocketAddr;

use bp_collector::writer::StoreSink;
use metrics_model::{Deployment, HostName, MemoryStore};
use rules_engine::MonitoringConfig;

/// Collects ticks of this machine into `store` until `shutdown`.
pub async fn collect(
    store: MemoryStore,
    node: HostName,
    statsd: Option<SocketAddr>,
    config: MonitoringConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let collector = bp_collector::Config {
        node,
        interval: config.collection_interval,
        statsd,
        http: None,
        http_token: None,
        max_custom_fields: collector::recorder::DEFAULT_MAX_CUSTOM_FIELDS,
        buffer_ticks: 360,
        shutdown_timeout: std::time::Duration::from_secs(1),
        deployment: Deployment::from_env_values(None, None, None)?,
    };
    bp_collector::run_with_sink(collector, StoreSink(store), shutdown).await
}
