//! Retention janitors, run by every alerter (both are safe from several
//! processes at once): ticks older than `monitoring.retentionPeriod` every
//! `monitoring.janitorInterval`, and resolved incidents older than
//! `alerting.retentionPeriod` every `alerting.janitorInterval`.

use metrics_model::store::{AlertStore, TickStore};
use redis_store::{JanitorConfig, run_janitor};
use rules_engine::Config;
use tracing::{debug, warn};

use metrics_model::time::now_ms;

/// Starts both janitors as background tasks; they end with the runtime.
pub fn spawn<T, A>(ticks: T, alerts: A, config: &Config)
where
    T: TickStore + 'static,
    A: AlertStore + 'static,
{
    if config.monitoring.enabled {
        let tick_config = JanitorConfig {
            retention: config.monitoring.retention_period,
            interval: config.monitoring.janitor_interval,
        };
        tokio::spawn(async move {
            run_janitor(&ticks, tick_config, now_ms, std::future::pending::<()>()).await;
        });
    }
    let retention = config.alerting.retention_period.as_millis_i64();
    let every = config.alerting.janitor_interval.to_std();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match alerts.prune_resolved(now_ms() - retention).await {
                Ok(n) => debug!(removed = n, "resolved-incident janitor"),
                Err(e) => {
                    warn!(error = %e, "resolved-incident janitor failed; retrying at the next interval");
                }
            }
            // Silences and acknowledgements are kept for the incident
            // retention period after they end.
            match alerts.prune_records(now_ms() - retention).await {
                Ok(n) => debug!(removed = n, "silence and acknowledgement janitor"),
                Err(e) => {
                    warn!(error = %e, "silence janitor failed; retrying at the next interval");
                }
            }
        }
    });
}
