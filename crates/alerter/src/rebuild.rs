//! Rebuilding an engine from the stores: the one way an [`Engine`] is made
//! out of stored ticks, used by the leader when it takes the lease and by
//! the dashboard's rules view (which evaluates a private copy and writes
//! nothing).

use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use metrics_model::store::{StoreError, TickStore};
use metrics_model::time::Millis;
use rules_engine::{Engine, EngineOptions, RuleSet};

/// What to rebuild.
#[derive(Debug, Clone)]
pub struct Rebuild {
    /// The rules.
    pub rules: RuleSet,
    /// Engine options.
    pub options: EngineOptions,
    /// The engine resumes after this instant (the next evaluated is the
    /// first multiple of the watcher interval after it).
    pub resume_after: Millis,
    /// Ticks stamped in `[from, to]` are loaded …
    pub from: Millis,
    /// … (inclusive).
    pub to: Millis,
    /// … of the hosts seen after this instant (older hosts are past the
    /// retention and skipped).
    pub seen_after: Millis,
}

/// Range reads in flight at once while rebuilding. One at a time, a
/// cluster of 100,000 hosts took minutes (one round trip each), longer
/// than the lease the leader rebuilds under; in flight together, the
/// store's client pipelines them.
pub const RANGE_READS_IN_FLIGHT: usize = 32;

/// The engine of `plan`, with its ticks; also returns how many ticks were
/// loaded. Hosts are read [`RANGE_READS_IN_FLIGHT`] at a time and ingested
/// in name order.
pub async fn rebuild<T: TickStore>(
    ticks: &T,
    plan: &Rebuild,
) -> Result<(Engine, usize), StoreError> {
    let mut engine = Engine::new(plan.rules.clone(), plan.options);
    engine.resume_after(plan.resume_after);
    // A host registry that lost its data (its shard restarted empty) is
    // refilled from the tick streams that survived; failing that, the
    // registry as it is.
    if let Err(e) = ticks.rediscover_hosts().await {
        tracing::warn!(error = %e, "cannot look for hosts missing from the registry; rebuilding from the hosts it lists");
    }
    let mut hosts = ticks.hosts().await?;
    hosts.retain(|h| h.last_seen > plan.seen_after);
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let mut reads = stream::iter(hosts)
        .map(|h| async move { ticks.range(&h.host, plan.from, plan.to).await })
        .buffered(RANGE_READS_IN_FLIGHT);
    let mut loaded = 0usize;
    while let Some(list) = reads.try_next().await? {
        for tick in list {
            engine.ingest(tick);
            loaded += 1;
        }
    }
    Ok((engine, loaded))
}
