//! Rebuilding an engine from the stores: the one way an [`Engine`] is made
//! out of stored ticks, used by the leader when it takes the lease and by
//! the dashboard's rules view (which evaluates a private copy and writes
//! nothing).

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

/// The engine of `plan`, with its ticks; also returns how many ticks were
/// loaded. Hosts are read in name order.
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
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let mut loaded = 0usize;
    for host in hosts {
        if host.last_seen <= plan.seen_after {
            continue;
        }
        for tick in ticks.range(&host.host, plan.from, plan.to).await? {
            engine.ingest(tick);
            loaded += 1;
        }
    }
    Ok((engine, loaded))
}
