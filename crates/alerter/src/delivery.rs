//! The outbox → hooks loop of the active alerter.
//!
//! Transitions are committed to the outbox with the incident state (see
//! [`crate::leader`]); this loop, on the leader only, reads the oldest
//! entries, hands them to the [`Dispatcher`] (which keeps them in order per
//! (rule, host), bounds hook processes and retries), and acks each entry
//! once every hook has delivered it or given up (those become dead letters).
//! A crash before the ack means the next leader delivers the entry again
//! with the same idempotency key: at-least-once.
//!
//! A new `hooks` configuration (SIGHUP) replaces the dispatcher: deliveries
//! in flight finish (for at most the old hook timeout), those not finished
//! are submitted again to the new dispatcher — a changed hook delivers its
//! pending transitions with its new settings — and a hook the reload
//! removed gets a dead letter (`hook removed`, counted) for each transition
//! it had pending.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use incidents::delivery::{Completion, Dispatcher, DispatcherOptions, SubmitError};
use incidents::hooks::{HookError, HooksConfig};
use metrics_model::store::{AlertStore, DeadLetter};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

use metrics_model::time::now_ms;

use crate::stats::AlerterStats;

/// How often the outbox is read when nothing wakes the loop (to pick up
/// entries left by a previous leader, and to retry failed acks).
const POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries read from the outbox at a time.
const BATCH: usize = 256;

/// Runs until `shutdown`, delivering with the hooks of `hooks` (and
/// following its changes); then lets in-flight deliveries finish for the
/// hook timeout. Fails only when the first dispatcher cannot start.
pub async fn delivery_loop<A: AlertStore>(
    alerts: A,
    mut hooks: watch::Receiver<Arc<HooksConfig>>,
    options: DispatcherOptions,
    stats: Arc<AlerterStats>,
    committed: Arc<Notify>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HookError> {
    let mut current = hooks.borrow_and_update().clone();
    let (mut dispatcher, mut completions) = Dispatcher::start(&current, options.clone())?;
    tokio::pin!(shutdown);
    // Submitted and not yet acked in the store: never submitted twice.
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut unacked: Vec<Completion> = Vec::new();
    let mut was_leader = false;
    // Until the sender of `hooks` is dropped (no reload after that).
    let mut hooks_open = true;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(c) = completions.recv() => unacked.push(c),
            () = committed.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            changed = hooks.changed(), if hooks_open => {
                hooks_open = changed.is_ok();
                let new = hooks.borrow_and_update().clone();
                if hooks_open && new != current {
                    let swap = Swap {
                        alerts: &alerts,
                        stats: &stats,
                        options: &options,
                        in_flight: &mut in_flight,
                        unacked: &mut unacked,
                    };
                    if swap.run(&mut dispatcher, &mut completions, &current, &new).await {
                        current = new;
                        // The new dispatcher's Alertmanager push is told
                        // what is open, as at a takeover.
                        was_leader = false;
                    }
                }
            }
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
        submit_outbox(&alerts, &dispatcher, &mut in_flight, &stats).await;
    }
    let report = dispatcher.shutdown(current.timeout.to_std()).await;
    info!(?report, "hook delivery stopped");
    while let Ok(c) = completions.try_recv() {
        unacked.push(c);
    }
    for c in &unacked {
        finish(&alerts, c).await;
    }
    Ok(())
}

/// What a dispatcher swap (a reload of the hooks) works on.
struct Swap<'a, A> {
    alerts: &'a A,
    stats: &'a AlerterStats,
    options: &'a DispatcherOptions,
    in_flight: &'a mut HashSet<u64>,
    unacked: &'a mut Vec<Completion>,
}

impl<A: AlertStore> Swap<'_, A> {
    /// Replaces `dispatcher` by one of `new`; `false` (the old one kept)
    /// when the new one cannot start.
    async fn run(
        self,
        dispatcher: &mut Dispatcher,
        completions: &mut mpsc::UnboundedReceiver<Completion>,
        old: &HooksConfig,
        new: &HooksConfig,
    ) -> bool {
        let (next, next_completions) = match Dispatcher::start(new, self.options.clone()) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "reloaded hooks cannot start; keeping the old ones");
                return false;
            }
        };
        let old_names = dispatcher.hook_names();
        let new_names = next.hook_names();
        let previous = std::mem::replace(dispatcher, next);
        let mut previous_completions = std::mem::replace(completions, next_completions);
        // Deliveries in flight finish (or are cancelled after the old
        // timeout); what did not finish is submitted again, to the new hooks.
        let report = previous.shutdown(old.timeout.to_std()).await;
        while let Ok(c) = previous_completions.try_recv() {
            self.unacked.push(c);
        }
        for seq in &report.abandoned {
            self.in_flight.remove(seq);
        }
        let removed: Vec<&String> = old_names
            .iter()
            .filter(|n| !new_names.contains(n))
            .collect();
        let mut letters = 0u64;
        if !removed.is_empty() && !report.abandoned.is_empty() {
            match self.alerts.outbox(BATCH.max(report.abandoned.len())).await {
                Ok(entries) => {
                    for entry in entries.iter().filter(|e| report.abandoned.contains(&e.seq)) {
                        for hook in &removed {
                            let letter = DeadLetter {
                                at: now_ms(),
                                hook: (*hook).clone(),
                                error:
                                    "hook removed by a configuration reload before it delivered \
                                        this transition"
                                        .to_owned(),
                                payload: entry.payload.clone(),
                            };
                            if self.alerts.dead_letter(&letter).await.is_ok() {
                                letters += 1;
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the outbox for the removed hooks' dead letters");
                }
            }
            self.stats
                .hook_removed_dead_letters
                .fetch_add(letters, Ordering::Relaxed);
        }
        info!(
            hooks = ?new_names,
            removed = ?removed,
            redelivered = report.abandoned.len(),
            dead_letters = letters,
            "hooks reloaded"
        );
        true
    }
}

/// Submits the outbox's oldest entries that are not in flight yet; an
/// unreadable entry becomes a dead letter ("outbox") and is taken out of
/// the way.
async fn submit_outbox<A: AlertStore>(
    alerts: &A,
    dispatcher: &Dispatcher,
    in_flight: &mut HashSet<u64>,
    stats: &AlerterStats,
) {
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
                        let letter = DeadLetter {
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
            dispatcher
                .seed_open(&incidents::view::view(&snapshot).open)
                .await;
        }
        Err(e) => warn!(error = %e, "cannot read open incidents for the Alertmanager re-push"),
    }
}
