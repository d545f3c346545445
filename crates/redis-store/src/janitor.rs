//! The retention janitor: every `janitorInterval`, remove ticks older than
//! `retentionPeriod` from any [`TickStore`] (Redis or in-memory), then seal
//! ticks older than [`chunk::seal_boundary`] into compressed chunks.
//!
//! Several processes may run it against one Redis at once: `prune` counts
//! each removed tick and host in exactly one of them.

use std::future::Future;

use metrics_model::Duration;
use metrics_model::chunk;
use metrics_model::store::{PruneOutcome, TickStore};
use metrics_model::time::Millis;

/// When and how much the janitor removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JanitorConfig {
    /// Ticks with `ts < now − retention` are removed (`retentionPeriod`,
    /// default 10 days).
    pub retention: Duration,
    /// Time between two runs (`janitorInterval`, default 15 minutes).
    pub interval: Duration,
}

/// One janitor pass: lists again hosts the registry lost (so their ticks
/// are pruned too; see [`TickStore::rediscover_hosts`]), then removes ticks
/// with `ts < now − retention`.
pub async fn prune_once<S: TickStore>(
    store: &S,
    retention: Duration,
    now: Millis,
) -> Result<PruneOutcome, metrics_model::store::StoreError> {
    store.rediscover_hosts().await?;
    store
        .prune(now.saturating_sub(retention.as_millis_i64()))
        .await
}

/// Runs the janitor until `shutdown` completes: one pass at once, then one
/// every `interval` (a zero interval is taken as one second). `now` gives
/// the current time in ms. Failures are logged and retried at the next pass.
pub async fn run_janitor<S, N, F>(store: &S, config: JanitorConfig, now: N, shutdown: F)
where
    S: TickStore,
    N: Fn() -> Millis,
    F: Future<Output = ()>,
{
    let period = if config.interval.is_zero() {
        std::time::Duration::from_secs(1)
    } else {
        config.interval.to_std()
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match prune_once(store, config.retention, now()).await {
            Ok(out) if out.ticks_removed > 0 || out.hosts_removed > 0 => tracing::info!(
                ticks_removed = out.ticks_removed,
                hosts_removed = out.hosts_removed,
                "janitor removed ticks older than the retention period"
            ),
            Ok(_) => tracing::debug!("janitor: nothing to remove"),
            Err(e) => {
                tracing::warn!(error = %e, "janitor pass failed; retrying at the next interval");
            }
        }
        match store.seal(chunk::seal_boundary(now())).await {
            Ok(out) if out.ticks_sealed > 0 || out.hosts_skipped > 0 => tracing::info!(
                ticks_sealed = out.ticks_sealed,
                hosts_sealed = out.hosts_sealed,
                hosts_skipped = out.hosts_skipped,
                "janitor sealed older ticks into compressed chunks"
            ),
            Ok(_) => tracing::debug!("janitor: nothing to seal"),
            Err(e) => {
                tracing::warn!(error = %e, "janitor could not seal ticks; retrying at the next interval");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use metrics_model::{MemoryStore, StandardField, Tick};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn removes_old_ticks_every_interval_until_shutdown() {
        let store = MemoryStore::new();
        let host: metrics_model::HostName = "a".parse().unwrap();
        let ticks: Vec<Tick> = (0..100)
            .map(|i| {
                Tick::new(
                    host.clone(),
                    i * 1000,
                    [(StandardField::CpuUsage.into(), 1.0)],
                )
            })
            .collect();
        store.append(&ticks).await.unwrap();
        let clock = Arc::new(AtomicI64::new(50_000));
        let config = JanitorConfig {
            retention: Duration::from_secs(10).unwrap(),
            interval: Duration::from_secs(60).unwrap(),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let store = store.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                run_janitor(&store, config, || clock.load(Ordering::SeqCst), async {
                    let _ = stop_rx.await;
                })
                .await;
            })
        };
        // First pass at once: ts < 40,000 removed.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(store.len(), 60);
        clock.store(80_000, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        assert_eq!(store.len(), 60, "not before the interval");
        tokio::time::sleep(std::time::Duration::from_secs(31)).await;
        assert_eq!(store.len(), 30);
        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }
}
