//! Standalone mode's own collector: this machine's ticks into the in-memory
//! store, through the same code as `bp-collector` (system sampling every
//! `collectionInterval`, aligned; StatsD from local programs). Retention is
//! the [`crate::janitor`]'s, as in cluster mode.

use std::net::SocketAddr;
use std::sync::Arc;

use bp_collector::Telemetry;

use bp_collector::writer::StoreSink;
use metrics_model::{Deployment, HostName, MemoryStore};
use rules_engine::MonitoringConfig;

/// The configuration of this machine's collector.
pub fn collector_config(
    node: HostName,
    statsd: Option<SocketAddr>,
    config: &MonitoringConfig,
) -> anyhow::Result<bp_collector::Config> {
    Ok(bp_collector::Config {
        node,
        interval: config.collection_interval,
        statsd,
        statsd_buffer: bp_collector::config::DEFAULT_STATSD_BUFFER,
        http: None,
        http_token: None,
        max_custom_fields: collector::recorder::DEFAULT_MAX_CUSTOM_FIELDS,
        buffer_ticks: 360,
        shutdown_timeout: std::time::Duration::from_secs(1),
        deployment: Deployment::from_env_values(None, None, None)?,
        monitoring_enabled: config.enabled,
        warnings: Vec::new(),
    })
}

/// Collects ticks of this machine into `store` until `shutdown`, counting
/// into `telemetry` (shown by the alerter's `/healthz`).
pub async fn collect(
    store: MemoryStore,
    config: bp_collector::Config,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    bp_collector::run_with(config, StoreSink(store), telemetry, shutdown).await
}
