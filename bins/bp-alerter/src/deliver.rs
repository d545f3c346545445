//! The outbox → hooks loop of the active alerter.
//!
//! Transitions are committed to the outbox with the incident state (see
//! [`crate::alerter`]); this loop, on the leader only, reads the oldest
//! entries, hands them to the [`Dispatcher`] (which keeps them in order per
//! (rule, host), bounds hook processes and retries), and acks each entry
//! once every hook has delivered it or given up (those become dead letters).
//! A crash before the ack means the next leader delivers the entry again
//! with the same idempotency key: at-least-once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use incidents::delivery::{Completion, Dispatcher, SubmitError};
use incidents::persist;
use metrics_model::store::AlertStore;
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use crate::alerter::{AlerterStats, now_ms};

/// How often the outbox is read when nothing wakes the loop (to pick up
/// entries left by a previous leader, and to retry failed acks).
const POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries read from the outbox at a time.
const BATCH: usize = 256;

/// Runs until `shutdown`; then lets in-flight deliveries finish for `grace`.
pub async fn delivery_loop<A: AlertStore>(
    alerts: A,
    dispatcher: Dispatcher,
    mut completions: mpsc::UnboundedReceiver<Completion>,
    stats: Arc<AlerterStats>,
    committed: Arc<Notify>,
    grace: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Submitted and not yet acked in the store: never submitted twice.
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut unacked: Vec<Completion> = Vec::new();
    let mut was_leader = false;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(c) = completions.recv() => unacked.push(c),
            () = committed.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
        while let Ok(c) = completions.try_recv() {
            unacked.push(c);
        }
        // Ack what is done before reading the outbox again.
        let mut still = Vec::new();
        for c in unacked.drain(..) {
            if finish(&alerts, &c).await {
                in_flight.remove(&c.seq);
            } else {
                still.push(c);
            }
        }
        unacked = still;
        if let Ok(mut slot) = stats.hooks.lock() {
            *slot = Some(dispatcher.stats());
        }
        let leader = stats.leader.load(Ordering::Relaxed);
        if leader && !was_leader {
            seed_open(&alerts, &dispatcher).await;
        }
        was_leader = leader;
        if !leader {
            continue;
        }
        match alerts.outbox(BATCH).await {
            Ok(entries) => {
                if let Ok(depth) = alerts.outbox_len().await {
                    stats.outbox_depth.store(depth, Ordering::Relaxed);
                }
                for entry in entries {
                    if in_flight.contains(&entry.seq) {
                        continue;
                    }
                    match dispatcher.submit_entry(&entry) {
                        Ok(_) => {
                            in_flight.insert(entry.seq);
                        }
                        Err(SubmitError::Full { .. }) => break,
                        Err(SubmitError::Decode { seq, message }) => {
                            // Unreadable entry: keep it for operators, take it out of the way.
                            let letter = metrics_model::store::DeadLetter {
                                at: now_ms(),
                                hook: "outbox".to_owned(),
                                error: message,
                                payload: entry.payload.clone(),
                            };
                            if alerts.dead_letter(&letter).await.is_ok() {
                                let _ = alerts.ack(&[seq]).await;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, seq = entry.seq, "outbox entry not delivered");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                stats.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "cannot read the outbox; retrying");
            }
        }
    }
    let report = dispatcher.shutdown(grace).await;
    info!(?report, "hook delivery stopped");
    while let Ok(c) = completions.try_recv() {
        unacked.push(c);
    }
    for c in &unacked {
        finish(&alerts, c).await;
    }
}

/// Stores the dead letters of a completed entry and acks it; `false` when
/// the store refused (tried again on the next pass).
async fn finish<A: AlertStore>(alerts: &A, c: &Completion) -> bool {
    for letter in c.dead_letters(now_ms()) {
        warn!(hook = %letter.hook, key = %c.idempotency_key, error = %letter.error, "delivery failed for good; kept as a dead letter");
        if let Err(e) = alerts.dead_letter(&letter).await {
            warn!(error = %e, "cannot store a dead letter; retrying");
            return false;
        }
    }
    match alerts.ack(&[c.seq]).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, seq = c.seq, "cannot ack a delivered outbox entry; retrying");
            false
        }
    }
}

/// A new leader tells the Alertmanager hook what is open, so it re-sends it.
async fn seed_open<A: AlertStore>(alerts: &A, dispatcher: &Dispatcher) {
    match alerts.load().await {
        Ok(snapshot) => {
            let (restored, _) = persist::decode(&snapshot);
            let open: Vec<_> = restored
                .states
                .into_iter()
                .filter_map(|(_, _, s)| s.open)
                .collect();
            dispatcher.seed_open(&open).await;
        }
        Err(e) => warn!(error = %e, "cannot read open incidents for the Alertmanager re-push"),
    }
}
