//! The dispatcher: delivers outbox entries to every hook, in order per
//! (rule, host), with retries, a process limit and dead letters, without
//! ever making its caller wait on a hook.
//!
//! ```text
//! alerter ──submit(seq, transition)──▶ queue per (lane, rule, host) ──▶ one task per queue
//!    ▲                                                                 │ every hook of the lane
//!    └──── Completion { seq, failures } once every lane is done ◀──────┘ at once, retries
//! ```
//!
//! - [`Dispatcher::submit`] never blocks: it refuses with
//!   [`SubmitError::Full`] when `queue_capacity` entries (default
//!   [`DEFAULT_QUEUE_CAPACITY`]) are pending; the entry stays in the outbox
//!   and is submitted again later. Submitting a seq that is still pending is
//!   a no-op (`Ok(false)`).
//! - Order: entries with the same (rule, host) are delivered one after the
//!   other in submission (seq) order — a resolve is never delivered before
//!   its open — within each *lane*: the next starts when every hook of the
//!   lane is done with the previous one (delivered or given up). Different
//!   keys run in parallel, and so do lanes: the file hooks, webhooks,
//!   Alertmanager and embedders' hooks share the main lane; each notifier
//!   has its own, which gets only the transitions its route matches. A
//!   slow or rate-limited notifier therefore holds back only itself. An
//!   entry completes when every lane is done with it.
//! - For one entry, every hook (webhooks, Alertmanager, embedders' hooks,
//!   and the files found in the hook directory at that moment) is called at
//!   once; each failure is retried after `retryBackoff`, doubled every time
//!   up to [`MAX_RETRY_BACKOFF`](crate::hooks::config::MAX_RETRY_BACKOFF),
//!   until `maxAttempts`; then it is a dead letter in the
//!   [`Completion`].
//! - Limits: at most `concurrency` hook processes at once (a semaphore held
//!   around each attempt, not during backoff); at most
//!   [`TASK_CONCURRENCY`] other hook calls (HTTP) at once.
//! - Timeouts: process hooks kill their process group at `timeout`; other
//!   hooks are cancelled at `timeout`.
//! - [`Completion`]s come out on an unbounded channel (at most
//!   `queue_capacity` are ever outstanding); the caller acks the outbox
//!   entry and stores the dead letters ([`Completion::dead_letters`]).
//! - [`Dispatcher::shutdown`] stops accepting, lets in-flight deliveries
//!   finish until a deadline, then cancels the rest (killing their
//!   processes); entries not completed stay in the outbox for the next run.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics_model::store::{DeadLetter, OutboxEntry};
use metrics_model::time::Millis;
use metrics_model::{Duration, HostName};
use rules_engine::Transition;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::hooks::alertmanager::AlertmanagerHook;
use crate::hooks::config::{HooksConfig, MAX_RETRY_BACKOFF};
use crate::hooks::files::HookDirectory;
use crate::hooks::webhook::{WebhookHook, http_client};
use crate::hooks::{Delivery, Hook, HookError, HookKind};
use crate::persist::decode_transition;

/// Default bound on pending (submitted, not completed) entries.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// At most this many non-process hook calls (HTTP, embedders' hooks) run at
/// once.
pub const TASK_CONCURRENCY: usize = 64;
/// Process hooks enforce the timeout themselves; the dispatcher cancels them
/// only if they overrun it by this much more.
const PROCESS_SAFETY_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Options of the dispatcher beyond the `hooks` configuration.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Bound on pending entries (≥ 1).
    pub queue_capacity: usize,
    /// Hooks added by the embedder, called like the configured ones.
    pub extra_hooks: Vec<Arc<dyn Hook>>,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            extra_hooks: Vec::new(),
        }
    }
}

/// A hook that gave up on an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// The hook's name.
    pub hook: String,
    /// The last error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
}

/// The end of one entry's delivery: every hook succeeded or gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The outbox entry: ack it.
    pub seq: u64,
    /// The delivery's idempotency key.
    pub idempotency_key: String,
    /// The transition as stored in the outbox (its JSON line).
    pub payload: String,
    /// Hooks that gave up (empty when every hook succeeded).
    pub failures: Vec<DeadLetterInfo>,
}

impl Completion {
    /// The failures as dead letters for [`metrics_model::store::AlertStore::dead_letter`].
    pub fn dead_letters(&self, at: Millis) -> Vec<DeadLetter> {
        self.failures
            .iter()
            .map(|f| DeadLetter {
                at,
                hook: f.hook.clone(),
                error: format!("{} (after {} attempts)", f.error, f.attempts),
                payload: self.payload.clone(),
            })
            .collect()
    }
}

/// Why an entry was not accepted; it stays in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// `queue_capacity` entries are pending; submit it again later.
    #[error("hook delivery queue full ({capacity} entries pending); outbox entry {seq} waits")]
    Full {
        /// The entry.
        seq: u64,
        /// The bound.
        capacity: usize,
    },
    /// The dispatcher is shutting down.
    #[error("hook dispatcher is shut down; outbox entry {seq} waits for the next run")]
    Closed {
        /// The entry.
        seq: u64,
    },
    /// The outbox entry is not a transition (store it as a dead letter).
    #[error("outbox entry {seq}: {message}")]
    Decode {
        /// The entry.
        seq: u64,
        /// What is wrong.
        message: String,
    },
}

/// Counters of one hook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookStats {
    /// The hook's name.
    pub hook: String,
    /// Entries delivered (`bp_hook_deliveries_total{outcome="ok"}`).
    pub delivered: u64,
    /// Entries given up (`bp_hook_deliveries_total{outcome="failed"}`).
    pub failed: u64,
    /// Retries (`bp_hook_retries_total`).
    pub retries: u64,
    /// Attempts that timed out (`bp_hook_timeouts_total`).
    pub timeouts: u64,
}

/// A snapshot of the dispatcher's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DispatcherStats {
    /// Entries submitted and not completed (`bp_hook_queue_entries`).
    pub pending: usize,
    /// Hook processes running now (`bp_hook_processes`).
    pub running_processes: usize,
    /// Per hook, by name.
    pub hooks: Vec<HookStats>,
}

/// What [`Dispatcher::shutdown`] left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Entries not completed (cancelled or never started): they stay in the
    /// outbox and are delivered by the next run.
    pub abandoned: Vec<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    timeouts: AtomicU64,
}

#[derive(Debug, Default)]
struct Stats {
    hooks: Mutex<BTreeMap<String, Arc<Counters>>>,
}

impl Stats {
    fn of(&self, hook: &str) -> Arc<Counters> {
        let mut map = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(hook) {
            return c.clone();
        }
        let c = Arc::new(Counters::default());
        map.insert(hook.to_owned(), c.clone());
        c
    }
}

/// Hooks delivered in order per (rule, host), independently of other lanes.
#[derive(Debug)]
struct Lane {
    /// Its hooks.
    hooks: Vec<Arc<dyn Hook>>,
    /// Whether the hook directory's files are part of it (the main lane).
    files: bool,
    /// A notifier's lane takes only what the notifier wants.
    notifier: Option<Arc<crate::notifiers::NotifierHook>>,
}

/// Everything a delivery task needs.
#[derive(Debug)]
struct Context {
    lanes: Vec<Lane>,
    directory: HookDirectory,
    timeout: Duration,
    max_attempts: u32,
    retry_backoff: Duration,
    processes: Arc<Semaphore>,
    tasks: Semaphore,
    stats: Stats,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<HashSet<u64>>,
    capacity: usize,
    closed: AtomicBool,
}

/// The hook dispatcher. Create it inside a tokio runtime.
#[derive(Debug)]
pub struct Dispatcher {
    submit_tx: mpsc::UnboundedSender<Delivery>,
    shared: Arc<Shared>,
    context: Arc<Context>,
    concurrency: usize,
    alertmanager: Option<AlertmanagerHook>,
    shutdown_tx: watch::Sender<Option<tokio::time::Instant>>,
    resend_stop: watch::Sender<bool>,
    main: tokio::task::JoinHandle<Vec<u64>>,
    resender: Option<tokio::task::JoinHandle<()>>,
}

type Key = (std::sync::Arc<str>, HostName);

impl Dispatcher {
    /// Starts the dispatcher of `config` (and the Alertmanager re-push task
    /// when configured). Returns it with the channel of [`Completion`]s.
    pub fn start(
        config: &HooksConfig,
        options: DispatcherOptions,
    ) -> Result<(Dispatcher, mpsc::UnboundedReceiver<Completion>), HookError> {
        let client = http_client()?;
        let mut main_hooks: Vec<Arc<dyn Hook>> = Vec::new();
        for w in &config.webhooks {
            main_hooks.push(Arc::new(WebhookHook::new(
                w.clone(),
                client.clone(),
                config.timeout,
            )));
        }
        let alertmanager = config
            .alertmanager
            .as_ref()
            .map(|am| AlertmanagerHook::new(am.clone(), client.clone(), config.timeout));
        if let Some(am) = &alertmanager {
            main_hooks.push(Arc::new(am.clone()));
        }
        main_hooks.extend(options.extra_hooks);
        let mut lanes = vec![Lane {
            hooks: main_hooks,
            files: true,
            notifier: None,
        }];
        for n in &config.notifiers {
            let hook = Arc::new(crate::notifiers::NotifierHook::new(
                n.clone(),
                client.clone(),
                config.timeout,
            ));
            lanes.push(Lane {
                hooks: vec![hook.clone()],
                files: false,
                notifier: Some(hook),
            });
        }
        let concurrency = config.concurrency.max(1);
        let context = Arc::new(Context {
            lanes,
            directory: HookDirectory::new(
                config.directory.clone(),
                config.node.clone(),
                config.timeout,
            ),
            timeout: config.timeout,
            max_attempts: config.max_attempts.max(1),
            retry_backoff: config.retry_backoff,
            processes: Arc::new(Semaphore::new(concurrency)),
            tasks: Semaphore::new(TASK_CONCURRENCY),
            stats: Stats::default(),
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashSet::new()),
            capacity: options.queue_capacity.max(1),
            closed: AtomicBool::new(false),
        });
        let (submit_tx, submit_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let (resend_stop, resend_rx) = watch::channel(false);
        let main = tokio::spawn(main_loop(
            context.clone(),
            shared.clone(),
            submit_rx,
            done_tx,
            shutdown_rx,
        ));
        let resender = alertmanager
            .as_ref()
            .map(|am| tokio::spawn(am.clone().resend_loop(resend_rx)));
        tracing::info!(
            directory = %config.directory.display(),
            webhooks = config.webhooks.len(),
            alertmanager = alertmanager.is_some(),
            concurrency,
            timeout = %config.timeout,
            max_attempts = config.max_attempts,
            "hook dispatcher started"
        );
        Ok((
            Dispatcher {
                submit_tx,
                shared,
                context,
                concurrency,
                alertmanager,
                shutdown_tx,
                resend_stop,
                main,
                resender,
            },
            done_rx,
        ))
    }

    /// Queues the delivery of outbox entry `seq` without waiting. `Ok(true)`
    /// when queued, `Ok(false)` when `seq` is already pending. Entries must
    /// be submitted in seq order.
    pub fn submit(&self, seq: u64, transition: Transition) -> Result<bool, SubmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed { seq });
        }
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending.contains(&seq) {
            return Ok(false);
        }
        if pending.len() >= self.shared.capacity {
            return Err(SubmitError::Full {
                seq,
                capacity: self.shared.capacity,
            });
        }
        if self.submit_tx.send(Delivery::new(seq, transition)).is_err() {
            return Err(SubmitError::Closed { seq });
        }
        pending.insert(seq);
        Ok(true)
    }

    /// [`Dispatcher::submit`] of an outbox entry as read from the store.
    pub fn submit_entry(&self, entry: &OutboxEntry) -> Result<bool, SubmitError> {
        let transition =
            decode_transition(&entry.payload).map_err(|message| SubmitError::Decode {
                seq: entry.seq,
                message,
            })?;
        self.submit(entry.seq, transition)
    }

    /// The names of the configured hooks (webhooks, Alertmanager, the
    /// embedder's, then the notifiers; file hooks are read from the
    /// directory at each delivery and are not listed).
    pub fn hook_names(&self) -> Vec<String> {
        self.context
            .lanes
            .iter()
            .flat_map(|l| &l.hooks)
            .map(|h| h.name().to_owned())
            .collect()
    }

    /// Whether `seq` is submitted and not completed.
    pub fn is_pending(&self, seq: u64) -> bool {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&seq)
    }

    /// The Alertmanager push, when configured (for
    /// [`AlertmanagerHook::seed_open`] and its counters).
    pub fn alertmanager(&self) -> Option<&AlertmanagerHook> {
        self.alertmanager.as_ref()
    }

    /// Re-pushes these open incidents to Alertmanager (if configured) from
    /// now on; call it at start-up with the open incidents from the store.
    pub async fn seed_open(&self, incidents: &[rules_engine::Incident]) {
        if let Some(am) = &self.alertmanager {
            am.seed_open(incidents).await;
        }
        // Notifiers with repeatInterval remind of them from now on.
        for lane in &self.context.lanes {
            if let Some(n) = &lane.notifier {
                n.seed_open(incidents);
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DispatcherStats {
        let pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let hooks = self
            .context
            .stats
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, c)| HookStats {
                hook: name.clone(),
                delivered: c.delivered.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                retries: c.retries.load(Ordering::Relaxed),
                timeouts: c.timeouts.load(Ordering::Relaxed),
            })
            .collect();
        DispatcherStats {
            pending,
            running_processes: self.concurrency - self.context.processes.available_permits(),
            hooks,
        }
    }

    /// Stops accepting entries, lets deliveries in flight finish for up to
    /// `grace`, then cancels what is left (killing hook processes). Entries
    /// queued behind an in-flight one of the same key are not started.
    /// Completions of finished entries are still sent.
    pub async fn shutdown(self, grace: std::time::Duration) -> ShutdownReport {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.resend_stop.send(true);
        let _ = self
            .shutdown_tx
            .send(Some(tokio::time::Instant::now() + grace));
        let mut abandoned = self.main.await.unwrap_or_default();
        if let Some(r) = self.resender {
            let _ = r.await;
        }
        abandoned.sort_unstable();
        tracing::info!(abandoned = abandoned.len(), "hook dispatcher stopped");
        ShutdownReport { abandoned }
    }
}

/// An entry on its way through the lanes.
struct Progress {
    delivery: Arc<Delivery>,
    remaining: usize,
    failures: Vec<DeadLetterInfo>,
}

/// A queue: one lane's deliveries of one (rule, host).
type LaneKey = (usize, Key);

/// Receives submissions, keeps one delivery in flight per (lane, key),
/// emits a completion when every lane is done with an entry. Returns the
/// seqs abandoned at shutdown.
async fn main_loop(
    context: Arc<Context>,
    shared: Arc<Shared>,
    mut submit_rx: mpsc::UnboundedReceiver<Delivery>,
    done_tx: mpsc::UnboundedSender<Completion>,
    mut shutdown_rx: watch::Receiver<Option<tokio::time::Instant>>,
) -> Vec<u64> {
    let mut queues: HashMap<LaneKey, VecDeque<Arc<Delivery>>> = HashMap::new();
    let mut progress: HashMap<u64, Progress> = HashMap::new();
    let mut running: JoinSet<(LaneKey, u64, Vec<DeadLetterInfo>)> = JoinSet::new();
    let deadline = loop {
        tokio::select! {
            msg = submit_rx.recv() => {
                let Some(d) = msg else { break None };
                let d = Arc::new(d);
                let key: Key = (
                    d.transition.incident.rule_name.clone(),
                    d.transition.incident.host_name.clone(),
                );
                let lanes: Vec<usize> = context
                    .lanes
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.notifier.as_ref().is_none_or(|n| n.wants(&d.transition)))
                    .map(|(i, _)| i)
                    .collect();
                progress.insert(d.seq, Progress { delivery: d.clone(), remaining: lanes.len(), failures: Vec::new() });
                for lane in lanes {
                    let lk = (lane, key.clone());
                    if let Some(queue) = queues.get_mut(&lk) {
                        queue.push_back(d.clone());
                    } else {
                        queues.insert(lk.clone(), VecDeque::new());
                        spawn_delivery(&mut running, &context, lk, d.clone());
                    }
                }
            }
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let Ok((lk, seq, failures)) = joined else { continue };
                lane_done(&shared, &done_tx, &mut progress, seq, failures);
                let next = queues.get_mut(&lk).and_then(VecDeque::pop_front);
                match next {
                    Some(d) => spawn_delivery(&mut running, &context, lk, d),
                    None => { queues.remove(&lk); }
                }
            }
            changed = shutdown_rx.changed() => {
                if changed.is_err() { break None; }
                if let Some(deadline) = *shutdown_rx.borrow() { break Some(deadline); }
            }
        }
    };
    // Shutting down: nothing new starts; in-flight deliveries get until the
    // deadline. An entry some lane did not finish stays in the outbox (the
    // lanes that did will see it again: at least once).
    submit_rx.close();
    let mut abandoned: Vec<u64> = Vec::new();
    while let Ok(d) = submit_rx.try_recv() {
        abandoned.push(d.seq);
    }
    let drain = async {
        while let Some(joined) = running.join_next().await {
            if let Ok((_, seq, failures)) = joined {
                lane_done(&shared, &done_tx, &mut progress, seq, failures);
            }
        }
    };
    match deadline {
        Some(deadline) => {
            let _ = tokio::time::timeout_at(deadline, drain).await;
        }
        None => drain.await,
    }
    running.abort_all();
    abandoned.extend(progress.keys().copied());
    let mut pending = shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for seq in &abandoned {
        pending.remove(seq);
    }
    abandoned
}

/// One lane is done with entry `seq`; the last one completes it.
fn lane_done(
    shared: &Shared,
    done_tx: &mpsc::UnboundedSender<Completion>,
    progress: &mut HashMap<u64, Progress>,
    seq: u64,
    failures: Vec<DeadLetterInfo>,
) {
    let Some(p) = progress.get_mut(&seq) else {
        return;
    };
    p.failures.extend(failures);
    p.remaining = p.remaining.saturating_sub(1);
    if p.remaining > 0 {
        return;
    }
    let Some(mut p) = progress.remove(&seq) else {
        return;
    };
    p.failures.sort_by(|a, b| a.hook.cmp(&b.hook));
    let d = &p.delivery;
    finish(
        shared,
        done_tx,
        Completion {
            seq,
            idempotency_key: d.idempotency_key.clone(),
            payload: d.transition.to_json_line(),
            failures: p.failures,
        },
    );
}

fn finish(shared: &Shared, done_tx: &mpsc::UnboundedSender<Completion>, completion: Completion) {
    shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&completion.seq);
    // The receiver may be gone at shutdown: the entry then stays in the
    // outbox and is delivered again (at least once).
    let _ = done_tx.send(completion);
}

fn spawn_delivery(
    running: &mut JoinSet<(LaneKey, u64, Vec<DeadLetterInfo>)>,
    context: &Arc<Context>,
    lk: LaneKey,
    d: Arc<Delivery>,
) {
    let context = context.clone();
    running.spawn(async move {
        let seq = d.seq;
        let failures = deliver_in_lane(context, lk.0, d).await;
        (lk, seq, failures)
    });
}

/// Delivers one entry to every hook of lane `lane` (the main lane: the
/// static hooks and the files in the directory now), each with its
/// retries; returns the hooks that gave up.
async fn deliver_in_lane(
    context: Arc<Context>,
    lane: usize,
    d: Arc<Delivery>,
) -> Vec<DeadLetterInfo> {
    let mut failures = Vec::new();
    let Some(l) = context.lanes.get(lane) else {
        return failures;
    };
    let mut hooks = l.hooks.clone();
    if l.files {
        match scan_with_retries(&context).await {
            Ok(files) => hooks.extend(files),
            Err(info) => failures.push(info),
        }
    }
    let mut calls: JoinSet<Option<DeadLetterInfo>> = JoinSet::new();
    for hook in hooks {
        calls.spawn(deliver_with_retries(context.clone(), hook, d.clone()));
    }
    while let Some(result) = calls.join_next().await {
        match result {
            Ok(Some(info)) => failures.push(info),
            Ok(None) => {}
            Err(e) => failures.push(DeadLetterInfo {
                hook: "dispatcher".into(),
                error: format!("hook task failed: {e}"),
                attempts: 1,
            }),
        }
    }
    failures
}

async fn scan_with_retries(context: &Context) -> Result<Vec<Arc<dyn Hook>>, DeadLetterInfo> {
    let mut attempt = 1;
    loop {
        match context.directory.scan() {
            Ok(hooks) => return Ok(hooks),
            Err(e) if attempt >= context.max_attempts => {
                tracing::error!(error = %e, attempts = attempt, "giving up on the hook directory for this delivery");
                return Err(DeadLetterInfo {
                    hook: format!("directory {}", context.directory.path().display()),
                    error: e.to_string(),
                    attempts: attempt,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "hook directory unreadable; retrying");
                tokio::time::sleep(backoff(context.retry_backoff, attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// The delay after failed attempt `attempt` (1-based).
fn backoff(first: Duration, attempt: u32) -> std::time::Duration {
    let cap = first.as_millis().max(MAX_RETRY_BACKOFF.as_millis());
    let factor = 1u64 << attempt.saturating_sub(1).min(32);
    std::time::Duration::from_millis(first.as_millis().saturating_mul(factor).min(cap))
}

async fn deliver_with_retries(
    context: Arc<Context>,
    hook: Arc<dyn Hook>,
    d: Arc<Delivery>,
) -> Option<DeadLetterInfo> {
    let name = hook.name().to_owned();
    let counters = context.stats.of(&name);
    let mut attempt: u32 = 1;
    loop {
        let result = attempt_once(&context, hook.as_ref(), &d).await;
        match result {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                if attempt > 1 {
                    tracing::info!(hook = %name, seq = d.seq, key = %d.idempotency_key, attempt, "hook delivered after retries");
                } else {
                    tracing::debug!(hook = %name, seq = d.seq, key = %d.idempotency_key, "hook delivered");
                }
                return None;
            }
            Err(e) => {
                if e.is_timeout() {
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                if attempt >= context.max_attempts {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(hook = %name, seq = d.seq, key = %d.idempotency_key, attempts = attempt, error = %e, "hook delivery failed; giving up (dead letter)");
                    return Some(DeadLetterInfo {
                        hook: name,
                        error: e.to_string(),
                        attempts: attempt,
                    });
                }
                // A receiver's Retry-After is a floor under the backoff.
                let delay = backoff(context.retry_backoff, attempt)
                    .max(e.retry_after().unwrap_or_default());
                tracing::warn!(hook = %name, seq = d.seq, key = %d.idempotency_key, attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "hook delivery failed; will retry");
                counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

async fn attempt_once(context: &Context, hook: &dyn Hook, d: &Delivery) -> Result<(), HookError> {
    let timeout = context.timeout.to_std();
    match hook.kind() {
        HookKind::Process => {
            let _permit = context
                .processes
                .acquire()
                .await
                .map_err(|_| closed(hook))?;
            tokio::time::timeout(timeout + PROCESS_SAFETY_MARGIN, hook.deliver(d))
                .await
                .unwrap_or_else(|_| Err(timed_out(hook, context.timeout, true)))
        }
        HookKind::Paced => hook.deliver(d).await,
        HookKind::Task => {
            let _permit = context.tasks.acquire().await.map_err(|_| closed(hook))?;
            tokio::time::timeout(timeout, hook.deliver(d))
                .await
                .unwrap_or_else(|_| Err(timed_out(hook, context.timeout, false)))
        }
    }
}

fn timed_out(hook: &dyn Hook, timeout: Duration, killed: bool) -> HookError {
    HookError::Timeout {
        hook: hook.name().to_owned(),
        timeout: timeout.to_string(),
        killed,
    }
}

fn closed(hook: &dyn Hook) -> HookError {
    HookError::Other {
        hook: hook.name().to_owned(),
        message: "the dispatcher is shutting down".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let first = Duration::from_millis(1000).unwrap();
        let got: Vec<u64> = (1..=9)
            .map(|a| backoff(first, a).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        let big = Duration::from_millis(120_000).unwrap();
        assert_eq!(backoff(big, 3).as_millis(), 120_000);
        assert_eq!(backoff(Duration::ZERO, 5).as_millis(), 0);
        assert_eq!(backoff(first, u32::MAX).as_millis(), 60_000);
    }
}
