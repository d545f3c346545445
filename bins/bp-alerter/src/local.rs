//! Standalone mode's own collector: this machine's ticks into the local
//! store (on disk by default, in memory with `--ephemeral`), through the
//! same agent as `bp-collector` (system sampling every `collectionInterval`,
//! aligned; StatsD from local programs). Retention is the alerter's
//! janitor's, as in cluster mode.

use std::sync::Arc;

use agent::writer::StoreSink;
use agent::{AgentConfig, Telemetry};
use metrics_model::store::TickStore;

/// Collects ticks of this machine into `store` until `shutdown`, counting
/// into `telemetry` (shown by the alerter's `/healthz`).
pub async fn collect<S: TickStore + 'static>(
    store: S,
    config: AgentConfig,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    agent::run_with(config, StoreSink(store), telemetry, shutdown).await
}
