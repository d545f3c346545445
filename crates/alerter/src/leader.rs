//! The live alerter: leadership, evaluation schedule, atomic commits.
//!
//! Every process runs [`run_alerter`]. Each pass it tries to take or renew
//! the lease ([`AlertStore::acquire_lease`]). The holder (the *leader*) keeps
//! a [`rules_engine::Engine`] in memory, rebuilt from the store when it
//! becomes leader; it reads only the ticks that arrived since its last read,
//! evaluates every due instant `t` (a multiple of `watcherInterval`, once
//! `t + evaluationDelay` has passed), and commits each instant's transitions
//! in one atomic step, fenced by its holder name and lease token. Others
//! stand by and poll the lease often enough to take over within two watcher
//! intervals.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use incidents::persist;
use metrics_model::store::{
    AlertStore, LeaseGrant, LeaseRequest, RecordKind, StoreError, TickStore,
};
use metrics_model::time::{Millis, floor_to, now_ms};
use rules_engine::silence::Acknowledgement;
use rules_engine::{Config, Engine, EngineOptions, Event, Muting, NotifyGate, Silence, Transition};
use std::collections::{HashMap, VecDeque};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::mirror::{ImageSize, Mirrored};
use crate::rebuild::{Rebuild, rebuild};
use crate::schedule::{first_instant, lease_ttl_ms, next_wake};
use crate::stats::AlerterStats;

/// A callback after each committed instant, with its transitions.
pub type OnEvaluated = Box<dyn Fn(Millis, &[Transition]) + Send + Sync>;

/// What the alerter needs besides its stores.
pub struct AlerterSetup {
    /// The identity written in the lease (host and process id).
    pub holder: String,
    /// The configuration; a new value (SIGHUP) replaces the rules.
    pub config: watch::Receiver<Arc<Config>>,
    /// Counters.
    pub stats: Arc<AlerterStats>,
    /// Told after each commit with transitions (wakes the delivery task).
    pub committed: Arc<Notify>,
    /// Called with each committed instant's transitions (for example to
    /// ping a watchdog); must not block.
    pub on_evaluated: OnEvaluated,
}

impl std::fmt::Debug for AlerterSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlerterSetup")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

struct Leader<C> {
    token: u64,
    /// The store epoch this state was read from or written to.
    epoch: String,
    engine: Engine,
    cursor: C,
    /// Evaluated instants whose commits failed, in order: committed first
    /// at the next pass (the engine has moved past them already). While the
    /// store refuses writes (`Unavailable`: a full disk, Redis down)
    /// evaluation goes on and its commits wait here, up to [`PENDING_MAX`].
    pending: VecDeque<Pending>,
    /// Whether the silences and acknowledgements were read once: later
    /// passes keep the last ones read while the store cannot be read.
    muting_read: bool,
    /// Opens held by silences and maintenance windows (also flagged in the
    /// incident states, so they survive restarts and takeovers).
    gate: NotifyGate,
    /// Silences and acknowledgements as read at the start of this pass.
    muting: Muting,
    /// Acknowledgements by incident id, with their record versions.
    acks: HashMap<uuid::Uuid, (Acknowledgement, u64)>,
}

struct Pending {
    at: Millis,
    commit: metrics_model::store::AlertCommit,
    transitions: Vec<Transition>,
    /// Held opens released at this instant (in the outbox without a
    /// transition: the delivery task must be woken).
    released: bool,
}

impl Pending {
    /// Nothing but the evaluated instant changes.
    fn is_empty(&self) -> bool {
        self.transitions.is_empty()
            && !self.released
            && self.commit.states.is_empty()
            && self.commit.outbox.is_empty()
            && self.commit.resolved.is_empty()
    }
}

/// Evaluated instants kept at most while their commits fail (instants
/// without changes share one entry). Past it evaluation pauses, and
/// catch-up (`catchUpLimit`) covers the rest once the store takes writes.
pub const PENDING_MAX: usize = 10_000;

/// What the lease grant means for the state in memory.
enum Standing {
    /// Evaluate with the state in memory.
    Keep,
    /// (Re)build the state from the store.
    Rebuild,
    /// The store lost its data and writing the state back failed: do not
    /// evaluate this pass.
    NotNow,
}

/// Runs until `shutdown` resolves; releases the lease on the way out.
///
/// The alert store is wrapped in a [`Mirrored`] (pass the same value to the
/// delivery loop and the janitor) so that the state can be written back if
/// the store loses its data: when the lease grant reports a store epoch
/// other than the one the state in memory came from, the leader writes its
/// copy back under the fresh lease before it evaluates again. A standby
/// that sees a new epoch waits two lease TTLs before it takes a free lease,
/// so a live leader does that first.
pub async fn run_alerter<T, A>(
    ticks: T,
    alerts: Mirrored<A>,
    mut setup: AlerterSetup,
    shutdown: impl Future<Output = ()>,
) where
    T: TickStore,
    A: AlertStore,
{
    tokio::pin!(shutdown);
    let mut leader: Option<Leader<T::Cursor>> = None;
    // The last epoch seen under a lease (ours or another alerter's).
    let mut known_epoch: Option<String> = None;
    let mut waiting_logged: Option<String> = None;
    let mut config = setup.config.borrow_and_update().clone();
    loop {
        let w = config.alerting.watcher_interval.as_millis_i64();
        let ttl = lease_ttl_ms(w);
        let now = now_ms();
        let mut retry_soon = false;
        let request = LeaseRequest {
            holder: &setup.holder,
            ttl_ms: ttl,
            // State in memory is written back rather than lost: take a free
            // lease at once. Without state, wait for a new epoch to age.
            known_epoch: if leader.is_some() {
                None
            } else {
                known_epoch.as_deref()
            },
            grace_ms: 2 * ttl,
        };
        match alerts.acquire(request).await {
            Ok(grant) => {
                if let Some(token) = grant.token {
                    known_epoch = Some(grant.epoch.clone());
                    retry_soon = lead(
                        &ticks,
                        &alerts,
                        &config,
                        &setup,
                        &mut leader,
                        &grant,
                        token,
                        now,
                    )
                    .await;
                } else {
                    if let Some(wait) = grant.waiting_ms {
                        if waiting_logged.as_ref() != Some(&grant.epoch) {
                            warn!(
                                epoch = %grant.epoch,
                                wait_ms = wait,
                                "the alert store has a new epoch (it lost its data?): waiting two lease TTLs before taking the lease, so that a live leader can write its state back"
                            );
                            waiting_logged = Some(grant.epoch.clone());
                        }
                    } else {
                        known_epoch = Some(grant.epoch.clone());
                    }
                    if leader.take().is_some() {
                        warn!("another alerter holds the lease now; standing by");
                    }
                }
            }
            Err(e) => {
                // The state in memory is kept: if the store comes back as it
                // was, the lease grant says whether it is still ours; if it
                // comes back empty, the state is written back.
                setup.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                retry_soon = true;
                warn!(error = %e, "cannot reach the store to take or renew the lease; retrying");
            }
        }
        setup
            .stats
            .leader
            .store(leader.is_some(), Ordering::Relaxed);
        let mut wake = next_wake(leader.as_ref().map(|l| &l.engine), &config, now_ms());
        if retry_soon {
            wake = wake.min(RETRY_MS);
        }
        tokio::select! {
            () = &mut shutdown => break,
            changed = setup.config.changed() => {
                if changed.is_err() { break; }
                config = setup.config.borrow_and_update().clone();
                if let Some(l) = leader.as_mut() {
                    l.engine.set_rules(config.alerting.rules.clone());
                }
                info!(rules = config.alerting.rules.len(), "configuration reloaded");
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(wake)) => {}
        }
    }
    if let Some(l) = leader {
        if let Err(e) = alerts.release_lease(&setup.holder, l.token).await {
            warn!(error = %e, "could not release the lease; it expires by itself");
        } else {
            info!("lease released");
        }
    }
    setup.stats.leader.store(false, Ordering::Relaxed);
}

/// One pass as the lease holder: keep the state in memory, write it back
/// (the store lost its data), or (re)build it from the store; then evaluate
/// what is due. Returns whether to retry soon (a store error).
#[allow(clippy::too_many_arguments)]
async fn lead<T: TickStore, A: AlertStore>(
    ticks: &T,
    alerts: &Mirrored<A>,
    config: &Config,
    setup: &AlerterSetup,
    leader: &mut Option<Leader<T::Cursor>>,
    grant: &LeaseGrant,
    token: u64,
    now: Millis,
) -> bool {
    let mut retry_soon = false;
    let standing = match leader.as_mut() {
        Some(l) if l.epoch != grant.epoch => {
            match write_back(alerts, setup, l, token, &grant.epoch).await {
                Ok(()) => Standing::Keep,
                Err(e) => {
                    setup.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "the alert store lost its data, and writing this alerter's state back failed; retrying");
                    retry_soon = true;
                    Standing::NotNow
                }
            }
        }
        Some(l) if grant.renewed && l.token == token => Standing::Keep,
        _ => Standing::Rebuild,
    };
    if matches!(standing, Standing::Rebuild) {
        info!(holder = %setup.holder, token, "this alerter is now active (holds the lease)");
        let lease = Lease {
            holder: &setup.holder,
            token,
            ttl_ms: lease_ttl_ms(config.alerting.watcher_interval.as_millis_i64()),
        };
        *leader = build_leader(ticks, alerts, config, &lease, &grant.epoch, now)
            .await
            .map_err(|e| {
                setup.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                retry_soon = true;
                warn!(error = %e, "cannot load the alerter state; retrying");
            })
            .ok();
    }
    if !matches!(standing, Standing::NotNow)
        && let Some(l) = leader.as_mut()
        && let Err(e) = evaluate_due(ticks, alerts, config, l, setup, now_ms()).await
    {
        setup.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        retry_soon = true;
        if let StoreError::Behind { .. } = e {
            // The store lost commits of ours (same epoch: a failover to a
            // replica behind the old master): write the copy back; the
            // pending commit follows at the next pass.
            warn!(error = %e, "the alert store lost commits of this alerter");
            if let Err(e) = write_back(alerts, setup, l, token, &grant.epoch).await {
                warn!(error = %e, "writing this alerter's state back failed; retrying");
            }
        } else if matches!(e, StoreError::Fenced { .. }) {
            warn!(error = %e, "the lease was lost before a commit; the commit waits for the next lease grant");
        } else if matches!(e, StoreError::Unavailable(_)) && !l.pending.is_empty() {
            // Logged when commits start and stop waiting (evaluate_due).
            debug!(error = %e, queued = l.pending.len(), "commits wait for the store");
        } else {
            warn!(error = %e, "evaluation not committed; retrying it");
        }
    }
    retry_soon
}

/// How soon a pass that met a store error is retried, ms.
const RETRY_MS: u64 = 500;

/// Writes the state in memory back into a store that lost it (a new epoch
/// `epoch`, or the same one missing commits), under the lease `token`.
async fn write_back<C, A: AlertStore>(
    alerts: &Mirrored<A>,
    setup: &AlerterSetup,
    leader: &mut Leader<C>,
    token: u64,
    epoch: &str,
) -> Result<(), StoreError> {
    let image = alerts.restore_image(leader.token);
    alerts.restore(&setup.holder, token, &image).await?;
    let size = ImageSize::of(&image);
    let open = leader
        .engine
        .incident_states()
        .filter(|s| s.state.open.is_some())
        .count();
    warn!(
        old_epoch = %leader.epoch,
        new_epoch = %epoch,
        old_token = leader.token,
        token,
        open_incidents = open,
        states = size.states,
        outbox = size.outbox,
        resolved = size.resolved,
        dead_letters = size.dead_letters,
        last_evaluated = image.last_evaluated.unwrap_or_default(),
        "the alert store lost data (a new epoch, or commits missing): wrote this alerter's state back"
    );
    setup.stats.write_backs.fetch_add(1, Ordering::Relaxed);
    leader.token = token;
    epoch.clone_into(&mut leader.epoch);
    Ok(())
}

/// The lease a leader is being built under.
struct Lease<'a> {
    holder: &'a str,
    token: u64,
    ttl_ms: u64,
}

/// Renews `lease` every third of its TTL, for as long as it is polled (the
/// state of a large cluster can take longer to rebuild than one TTL).
/// Returns why it stopped: the lease went to another holder or was lost
/// ([`StoreError::Fenced`]), or the store could not be reached for as long
/// as the lease lasts.
async fn keep_lease<A: AlertStore>(alerts: &Mirrored<A>, lease: &Lease<'_>) -> StoreError {
    let every = std::time::Duration::from_millis((lease.ttl_ms / 3).max(100));
    let ttl = std::time::Duration::from_millis(lease.ttl_ms);
    let mut renewed_at = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let request = LeaseRequest {
            holder: lease.holder,
            ttl_ms: lease.ttl_ms,
            known_epoch: None,
            grace_ms: 2 * lease.ttl_ms,
        };
        match alerts.acquire(request).await {
            Ok(g) if g.renewed && g.token == Some(lease.token) => {
                renewed_at = Instant::now();
                debug!("lease renewed while the state is rebuilt");
            }
            Ok(_) => {
                return StoreError::Fenced {
                    holder: lease.holder.to_owned(),
                    token: lease.token,
                };
            }
            Err(e) if renewed_at.elapsed() + every >= ttl => return e,
            Err(e) => {
                warn!(error = %e, "cannot renew the lease while the state is rebuilt; retrying");
            }
        }
    }
}

/// Becomes leader: the engine rebuilt from the stores (incident states,
/// last evaluated instant, and the ticks the next instants need).
async fn build_leader<T: TickStore, A: AlertStore>(
    ticks: &T,
    alerts: &Mirrored<A>,
    config: &Config,
    lease: &Lease<'_>,
    epoch: &str,
    now: Millis,
) -> Result<Leader<T::Cursor>, StoreError> {
    let token = lease.token;
    let w = config.alerting.watcher_interval.as_millis_i64();
    let delay = config.alerting.evaluation_delay.as_millis_i64();
    let snapshot = alerts
        .seed(now - config.monitoring.retention_period.as_millis_i64())
        .await?;
    let (restored, errors) = persist::decode(&snapshot);
    for e in errors {
        warn!(error = %e, "ignoring an unreadable incident state record");
    }
    // Take the cursor before reading history, so no tick falls between.
    let cursor = ticks.cursor_now().await?;
    let due = floor_to(now - delay, w);
    let first = first_instant(restored.last_evaluated, due, config);
    if let Some(last) = restored.last_evaluated
        && first > last + w
    {
        warn!(
            skipped_from = last + w,
            resumed_at = first,
            "the alerter was down longer than catchUpLimit; instants before it are not evaluated"
        );
    }
    let plan = Rebuild {
        rules: config.alerting.rules.clone(),
        options: EngineOptions {
            retention: Some(config.monitoring.retention_period),
        },
        resume_after: first - w,
        from: first - w - config.alerting.rules.max_timeframe().as_millis_i64(),
        to: Millis::MAX,
        seen_after: now - config.monitoring.retention_period.as_millis_i64(),
    };
    let started = Instant::now();
    // The lease is renewed while the ticks are read, so that a rebuild
    // longer than one TTL does not lose it (and start over, forever).
    let (mut engine, loaded) = tokio::select! {
        rebuilt = rebuild(ticks, &plan) => rebuilt?,
        lost = keep_lease(alerts, lease) => return Err(lost),
    };
    let gate = NotifyGate::with_held(persist::held_opens(&restored.states));
    persist::restore_into(&mut engine, restored.states);
    info!(
        ticks = loaded,
        resume_at = first,
        held_opens = gate.len(),
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "alerter state rebuilt from the store"
    );
    Ok(Leader {
        token,
        epoch: epoch.to_owned(),
        engine,
        cursor,
        pending: VecDeque::new(),
        muting_read: false,
        gate,
        muting: Muting::default(),
        acks: HashMap::new(),
    })
}

/// One pass of the leader: commit what waits, read the ticks that arrived,
/// then evaluate and commit every due instant (catching up within a time
/// budget). While the store refuses commits (`Unavailable`), evaluation
/// goes on from memory and the commits queue in order; the pass returns
/// the store's error so that the next one comes soon.
async fn evaluate_due<T: TickStore, A: AlertStore>(
    ticks: &T,
    alerts: &Mirrored<A>,
    config: &Config,
    leader: &mut Leader<T::Cursor>,
    setup: &AlerterSetup,
    now: Millis,
) -> Result<(), StoreError> {
    let w = config.alerting.watcher_interval.as_millis_i64();
    let delay = config.alerting.evaluation_delay.as_millis_i64();
    // A long catch-up (or queue) yields every third of the lease TTL so the
    // lease is renewed in time; the next pass continues where this stopped.
    let budget = std::time::Duration::from_millis(lease_ttl_ms(w) / 3);
    let started = Instant::now();
    let mut refused = match flush_pending(alerts, leader, setup, started, budget).await {
        Ok(()) => None,
        Err(e @ StoreError::Unavailable(_)) => Some(e),
        Err(e) => return Err(e),
    };
    if !leader.pending.is_empty() && refused.is_none() {
        return Ok(()); // out of budget: the next pass goes on
    }
    let due = floor_to(now - delay, w);
    let last = leader.engine.last_evaluated();
    let mut next = first_instant(last, due, config);
    if next > due || leader.pending.len() >= PENDING_MAX {
        return refused.map_or(Ok(()), Err);
    }
    ingest_new_ticks(ticks, leader, &setup.stats, w, now).await?;
    match read_muting(alerts, config, leader).await {
        Ok(()) => leader.muting_read = true,
        Err(e @ StoreError::Unavailable(_)) if leader.muting_read => {
            debug!(error = %e, "cannot read the silences now; the ones read before apply");
        }
        Err(e) => return Err(e),
    }
    if last.is_some_and(|l| next > l + w) {
        leader.engine.resume_after(next - w);
    }
    let mut evaluated = 0u32;
    while next <= due
        && (evaluated == 0 || started.elapsed() < budget)
        && leader.pending.len() < PENDING_MAX
    {
        evaluated += 1;
        let instant_started = Instant::now();
        let mut p = evaluate_instant(leader, setup, next);
        next += w;
        if !leader.pending.is_empty() {
            queue(leader, p);
            continue;
        }
        // The store must still hold the previous commit (a failover to a
        // replica that had not caught up would have lost it).
        p.commit.expect_last_evaluated = alerts.last_evaluated();
        match alerts.commit(&setup.holder, leader.token, &p.commit).await {
            Ok(_) => {
                let took = if p.at == due {
                    started.elapsed()
                } else {
                    instant_started.elapsed()
                };
                finish_commit(alerts, leader, setup, &p, took).await;
            }
            Err(e @ StoreError::Unavailable(_)) => {
                warn!(
                    error = %e,
                    at = p.at,
                    "the store refuses commits: evaluation goes on from memory, and its commits wait in order (hooks run once they are stored)"
                );
                queue(leader, p);
                refused = Some(e);
            }
            Err(e) => {
                queue(leader, p);
                return Err(e);
            }
        }
    }
    setup
        .stats
        .commits_waiting
        .store(leader.pending.len() as u64, Ordering::Relaxed);
    refused.map_or(Ok(()), Err)
}

/// Queues an evaluated instant whose commit waits; consecutive instants
/// without changes share one entry (the later instant).
fn queue<C>(leader: &mut Leader<C>, p: Pending) {
    if p.is_empty()
        && let Some(last) = leader.pending.back_mut()
        && last.is_empty()
    {
        last.at = p.at;
        last.commit.evaluated_at = p.commit.evaluated_at;
        return;
    }
    leader.pending.push_back(p);
}

/// Commits the queued instants in order, within `budget` of `started`;
/// stops at the first failure.
async fn flush_pending<C, A: AlertStore>(
    alerts: &Mirrored<A>,
    leader: &mut Leader<C>,
    setup: &AlerterSetup,
    started: Instant,
    budget: std::time::Duration,
) -> Result<(), StoreError> {
    let waited = leader.pending.len();
    let mut stored = 0usize;
    while let Some(mut p) = leader.pending.pop_front() {
        if stored > 0 && started.elapsed() >= budget {
            leader.pending.push_front(p);
            break;
        }
        let commit_started = Instant::now();
        p.commit.expect_last_evaluated = alerts.last_evaluated();
        if let Err(e) = alerts.commit(&setup.holder, leader.token, &p.commit).await {
            leader.pending.push_front(p);
            setup
                .stats
                .commits_waiting
                .store(leader.pending.len() as u64, Ordering::Relaxed);
            return Err(e);
        }
        stored += 1;
        finish_commit(alerts, leader, setup, &p, commit_started.elapsed()).await;
    }
    setup
        .stats
        .commits_waiting
        .store(leader.pending.len() as u64, Ordering::Relaxed);
    if waited > 0 && leader.pending.is_empty() {
        info!(
            commits = waited,
            "the store takes commits again: the evaluations that waited are stored"
        );
    }
    Ok(())
}

/// What follows a stored commit: the log lines, counters and callback
/// (`after_commit`), the delivery task's wake-up for released opens, and
/// the acknowledgements of resolved incidents marked for pruning.
async fn finish_commit<C, A: AlertStore>(
    alerts: &Mirrored<A>,
    leader: &mut Leader<C>,
    setup: &AlerterSetup,
    p: &Pending,
    took: std::time::Duration,
) {
    after_commit(setup, p.at, &p.transitions, took);
    if p.released {
        // Released opens are in the outbox without a transition this instant.
        setup.committed.notify_one();
    }
    keep_acks_for_retention(alerts, leader, &p.transitions).await;
}

/// Reads the ticks that arrived since the last read into the engine,
/// counting (and warning about) ticks from the future and late ticks.
async fn ingest_new_ticks<T: TickStore>(
    ticks: &T,
    leader: &mut Leader<T::Cursor>,
    stats: &AlerterStats,
    w: Millis,
    now: Millis,
) -> Result<(), StoreError> {
    let fresh = ticks.read_new(&leader.cursor).await?;
    let evaluated_before = leader.engine.last_evaluated().unwrap_or(Millis::MIN);
    // Clock skew shows as ticks from the future or ticks arriving long after
    // their stamp; count them, and warn once per pass.
    let skew_bound = (5 * w).max(60_000);
    let (mut future, mut late, mut very_late) = (0u64, 0u64, 0u64);
    for tick in fresh.ticks {
        if tick.ts > now + skew_bound {
            future += 1;
        } else if tick.ts <= evaluated_before {
            late += 1;
            if tick.ts < now - skew_bound {
                very_late += 1;
            }
        }
        leader.engine.ingest(tick);
    }
    stats.future_ticks.fetch_add(future, Ordering::Relaxed);
    stats.late_ticks.fetch_add(late, Ordering::Relaxed);
    if future > 0 {
        warn!(
            ticks = future,
            "ticks stamped in the future (more than {skew_bound} ms ahead): is a node's clock wrong?"
        );
    }
    if very_late > 0 {
        warn!(
            ticks = very_late,
            "ticks arrived more than {skew_bound} ms after their stamp (clock skew, or a collector catching up after an outage); they are stored but do not change evaluations already made"
        );
    } else if late > 0 {
        debug!(
            ticks = late,
            "late ticks: stored, they do not change evaluations already made"
        );
    }
    leader.cursor = fresh.cursor;
    Ok(())
}

/// Reads the silences and acknowledgements (written by any alerter's API or
/// the CLI) for this pass's instants; records that cannot be read are
/// logged and skipped.
async fn read_muting<C, A: AlertStore>(
    alerts: &Mirrored<A>,
    config: &Config,
    leader: &mut Leader<C>,
) -> Result<(), StoreError> {
    let silences = alerts.records(RecordKind::Silence).await?;
    let acks = alerts.records(RecordKind::Acknowledgement).await?;
    leader.muting = Muting {
        silences: silences
            .iter()
            .filter_map(|r| {
                Silence::from_record(r)
                    .map_err(|e| warn!(id = %r.id, error = %e, "ignoring an unreadable silence"))
                    .ok()
            })
            .collect(),
        windows: config.alerting.maintenance.clone(),
    };
    leader.acks = acks
        .iter()
        .filter_map(|r| {
            let a = Acknowledgement::from_record(r)?;
            Some((a.incident_id, (a, r.version)))
        })
        .collect();
    Ok(())
}

/// Evaluates instant `t`: its transitions and the commit that stores them
/// with the incident states in one atomic step (fenced by the lease; the
/// caller sets `expect_last_evaluated` when it commits). Silences and
/// maintenance windows decide which transitions go to the outbox (held
/// opens flagged in their states, released ones with `notifiedAt`), and a
/// resolve carries its acknowledgement.
fn evaluate_instant<C>(leader: &mut Leader<C>, setup: &AlerterSetup, t: Millis) -> Pending {
    let transitions = leader.engine.evaluate(t).unwrap_or_default();
    let mut step = leader.gate.step(t, &transitions, &leader.muting);
    for (tr, held) in step
        .held
        .iter()
        .map(|tr| (tr, true))
        .chain(step.released.iter().map(|tr| (tr, false)))
    {
        let inc = &tr.incident;
        if let Some(key) = leader
            .engine
            .series_key(&inc.rule_name, inc.instance.as_ref())
        {
            leader
                .engine
                .set_held(&inc.rule_name, &inc.host_name, &key, held);
        }
    }
    for tr in &mut step.notify {
        if tr.event == Event::Resolved
            && let Some((a, _)) = leader.acks.get(&tr.incident.id)
        {
            tr.acknowledged_by = Some(a.by.clone());
            tr.acknowledged_at = Some(metrics_model::time::format_rfc3339(a.at));
        }
    }
    let stats = &setup.stats;
    stats
        .silences_active
        .store(leader.muting.active_silences(t) as u64, Ordering::Relaxed);
    stats
        .notifications_held
        .store(leader.gate.len() as u64, Ordering::Relaxed);
    stats
        .notifications_suppressed
        .fetch_add(2 * step.suppressed.len() as u64, Ordering::Relaxed);
    for tr in &step.held {
        info!(rule = %tr.incident.rule_name, host = %tr.incident.host_name, id = %tr.incident.id, "open held: a silence or maintenance window mutes it");
    }
    for tr in &step.released {
        info!(rule = %tr.incident.rule_name, host = %tr.incident.host_name, id = %tr.incident.id, "held open released: nothing mutes it any more");
    }
    let commit = persist::commit_with(
        t,
        &transitions,
        &step.notify,
        &step.released,
        &leader.engine,
    );
    Pending {
        at: t,
        commit,
        transitions,
        released: !step.released.is_empty(),
    }
}

/// An acknowledgement is kept while its incident is open; once the incident
/// resolves it is kept for the incident retention period after the end,
/// like the resolved incident itself (the janitor prunes it then). Not
/// fenced, like every record write: a failure only keeps it longer.
async fn keep_acks_for_retention<C, A: AlertStore>(
    alerts: &Mirrored<A>,
    leader: &mut Leader<C>,
    transitions: &[Transition],
) {
    for tr in transitions {
        if tr.event != Event::Resolved {
            continue;
        }
        let Some((a, version)) = leader.acks.remove(&tr.incident.id) else {
            continue;
        };
        let end = tr.incident.end_time.unwrap_or(tr.at);
        let id = a.incident_id.to_string();
        let json = a.to_json().to_string();
        if let Err(e) = alerts
            .put_record(RecordKind::Acknowledgement, &id, &json, end, version)
            .await
        {
            warn!(id = %id, error = %e, "cannot mark the acknowledgement of a resolved incident for pruning; it stays stored past the retention period");
        }
    }
}

/// What follows a commit: the test-only failpoint, the log lines, the
/// counters, the callback and the delivery task's wake-up.
fn after_commit(
    setup: &AlerterSetup,
    t: Millis,
    transitions: &[Transition],
    took: std::time::Duration,
) {
    if !transitions.is_empty() && failpoint_after_commit() {
        // Test-only: die inside the commit → acknowledgement window.
        eprintln!("BP_FAILPOINT=after-commit: aborting right after a commit");
        std::process::abort();
    }
    for tr in transitions {
        info!(
            event = tr.event.as_str(),
            rule = %tr.incident.rule_name,
            host = %tr.incident.host_name,
            instance = tr.incident.instance.as_ref().map(metrics_model::Instance::as_str),
            severity = tr.incident.severity.as_deref(),
            trigger_value = tr.incident.trigger_value,
            id = %tr.incident.id,
            "incident {}", tr.event.as_str()
        );
    }
    record(&setup.stats, t, transitions.len(), took);
    (setup.on_evaluated)(t, transitions);
    if !transitions.is_empty() {
        setup.committed.notify_one();
    }
}

/// Whether the test-only failpoint `BP_FAILPOINT=after-commit` is set: the
/// process then aborts right after committing transitions, before any hook
/// is called (the fault drill of the commit → acknowledgement window).
fn failpoint_after_commit() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var("BP_FAILPOINT").is_ok_and(|v| v == "after-commit"))
}

/// Counts one committed instant.
fn record(stats: &AlerterStats, t: Millis, transitions: usize, took: std::time::Duration) {
    stats.evaluations.fetch_add(1, Ordering::Relaxed);
    stats
        .transitions
        .fetch_add(transitions as u64, Ordering::Relaxed);
    stats
        .last_evaluation_us
        .store(took.as_micros() as u64, Ordering::Relaxed);
    stats
        .evaluation_us_total
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    stats
        .last_evaluated
        .store(u64::try_from(t).unwrap_or(0), Ordering::Relaxed);
}
