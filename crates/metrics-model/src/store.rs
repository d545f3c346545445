//! The storage contract. The Redis store (`redis-store`) and the in-memory
//! store (standalone mode, tests) implement these traits, and one behavioural
//! test suite runs against both.
//!
//! Reads come in two shapes:
//! - by time: [`TickStore::range`], a host's ticks with `from ≤ ts ≤ to`
//!   (dashboard, rebuilding windows at start-up);
//! - by arrival: [`TickStore::read_new`], every tick appended since a cursor,
//!   whatever its `ts` — so the alerter reads only new ticks each evaluation,
//!   late ones included.

use std::fmt;
use std::future::Future;

use crate::host::HostName;
use crate::tick::Tick;
use crate::time::Millis;

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Ticks stored.
    pub written: usize,
    /// Ticks skipped because a tick with the same host and `ts` was stored
    /// already (the first one seen counts).
    pub duplicates: usize,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Ticks removed.
    pub ticks_removed: usize,
    /// Hosts forgotten because none of their ticks is left.
    pub hosts_removed: usize,
}

/// A host known to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host.
    pub host: HostName,
    /// The greatest `ts` stored for it.
    pub last_seen: Millis,
}

/// New ticks since a cursor, and the cursor to pass next time.
#[derive(Debug, Clone)]
pub struct NewTicks<C> {
    /// Ticks appended after the cursor, in arrival order per host.
    pub ticks: Vec<Tick>,
    /// Where the next read starts.
    pub cursor: C,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now; the operation may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The stored data or the store itself is not what this version expects
    /// (for example a newer key layout); retrying will not help.
    #[error("store incompatible: {0}")]
    Incompatible(String),
    /// The caller does not hold the lease with this token (the lease is
    /// another holder's, or has another token, or is gone): another alerter
    /// may be active, and nothing was written.
    #[error(
        "fenced: the alerter lease is not held by {holder:?} with token {token}, nothing was written"
    )]
    Fenced {
        /// The caller's holder identity.
        holder: String,
        /// The caller's fencing token.
        token: u64,
    },
    /// A commit that expected the store's last evaluated instant to be
    /// `expected` found `found`: the store lost commits this writer made
    /// (a failover to a replica that had not caught up). Nothing was
    /// written; the writer should write its state back
    /// ([`AlertStore::restore`]) and commit again.
    #[error(
        "the alert store is behind this alerter: its last evaluated instant is {found:?}, this alerter committed {expected}; nothing was written"
    )]
    Behind {
        /// What the writer last committed.
        expected: Millis,
        /// What the store holds.
        found: Option<Millis>,
    },
    /// A compare-and-set write found another version of the record than
    /// the one it expected (someone changed it meanwhile): nothing was
    /// written; read it again.
    #[error(
        "the {kind} {id} was changed meanwhile (it is at version {found}); nothing was written: read it again"
    )]
    Conflict {
        /// What kind of record.
        kind: &'static str,
        /// The record's id.
        id: String,
        /// The version the store holds (0: none).
        found: u64,
    },
    /// Any other failure of one operation.
    #[error("store error: {0}")]
    Other(String),
}

/// What kind of user-written record: silences and acknowledgements are
/// written by any alerter's API or the CLI (not fenced), by compare-and-set
/// on their version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A silence.
    Silence,
    /// An acknowledgement of an incident (its id is the incident's).
    Acknowledgement,
}

impl RecordKind {
    /// `silence` or `acknowledgement`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Silence => "silence",
            RecordKind::Acknowledgement => "acknowledgement",
        }
    }

    /// Both kinds.
    pub const ALL: [RecordKind; 2] = [RecordKind::Silence, RecordKind::Acknowledgement];
}

/// A silence or acknowledgement as stored: opaque JSON (owned by the rules
/// engine) with its version and how long it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// Grows by one at every write; the first write makes version 1.
    pub version: u64,
    /// The janitor removes it once this instant is older than the
    /// retention period (a silence: its end; an acknowledgement: its
    /// incident's end, `Millis::MAX` while the incident is open).
    pub keep_until: Millis,
    /// The record (opaque JSON).
    pub json: String,
}

/// The most records of one kind a store keeps; writes of new ones beyond
/// are refused (expired ones are pruned after the retention period).
pub const RECORDS_MAX: usize = 10_000;

/// Storage of ticks.
///
/// **Invariant:** appends are idempotent per (host, `ts`): the first tick
/// stored for a pair is kept, later ones are counted as duplicates. Appends
/// accept ticks in any order.
pub trait TickStore: Send + Sync {
    /// A position in the arrival order of ticks. `Default` is "the
    /// beginning": reading from it returns every stored tick.
    type Cursor: Clone + Default + fmt::Debug + Send + Sync;

    /// Stores ticks, skipping duplicates.
    fn append(
        &self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// `host`'s ticks with `from ≤ ts ≤ to`, ascending by `ts`.
    fn range(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<Tick>, StoreError>> + Send;

    /// Every tick appended after `cursor` (of every host), and the next cursor.
    fn read_new(
        &self,
        cursor: &Self::Cursor,
    ) -> impl Future<Output = Result<NewTicks<Self::Cursor>, StoreError>> + Send;

    /// A cursor at the current end of the arrival order: reading from it
    /// returns only ticks appended afterwards. Take it *before* a range read
    /// that rebuilds state, so that nothing falls between the two (a tick may
    /// then be seen twice; consumers ignore duplicates by (host, `ts`)).
    fn cursor_now(&self) -> impl Future<Output = Result<Self::Cursor, StoreError>> + Send;

    /// Every host with at least one stored tick, with its last `ts`.
    fn hosts(&self) -> impl Future<Output = Result<Vec<HostInfo>, StoreError>> + Send;

    /// Finds hosts whose ticks are stored but which [`TickStore::hosts`]
    /// does not list (a store whose host index lives apart from the ticks
    /// and lost its data, e.g. one Redis Cluster shard restarted empty),
    /// lists them again, and returns how many. Stores with no separate index
    /// have nothing to find.
    fn rediscover_hosts(&self) -> impl Future<Output = Result<usize, StoreError>> + Send {
        std::future::ready(Ok(0))
    }

    /// Removes ticks with `ts < before`, and hosts left with none.
    /// Safe to run from several processes at once.
    fn prune(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send;

    /// Moves ticks older than `before` (rounded down to a chunk window,
    /// [`crate::chunk`]) into compressed, sealed chunks. Reads are
    /// unchanged by it: `range` returns sealed ticks, a later duplicate of
    /// a sealed tick is a duplicate. `read_new` may no longer return a
    /// sealed tick that a reader had not read yet, so stores seal only what
    /// every reader has long read ([`crate::chunk::seal_boundary`]). Safe
    /// to run from several processes at once. Stores without chunks (the
    /// in-memory store) have nothing to do.
    fn seal(&self, before: Millis) -> impl Future<Output = Result<SealOutcome, StoreError>> + Send {
        let _ = before;
        std::future::ready(Ok(SealOutcome::default()))
    }
}

/// What a [`TickStore::seal`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealOutcome {
    /// Ticks moved into chunks.
    pub ticks_sealed: usize,
    /// Hosts whose chunks were written.
    pub hosts_sealed: usize,
    /// Hosts skipped because their ticks changed while being sealed (the
    /// next pass seals them).
    pub hosts_skipped: usize,
}

/// The active alerter's lease: who holds it and its fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The holder's identity (host name and process id, for example).
    pub holder: String,
    /// The fencing token: it grows by one at every acquisition (unless a
    /// failover loses the last increment: then it is handed out again, and
    /// only the holder tells the two acquisitions apart).
    pub token: u64,
    /// Milliseconds until the lease expires unless renewed.
    pub expires_in_ms: u64,
}

/// What [`AlertStore::acquire`] found: the store's epoch, and the lease if
/// the caller holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The fencing token when the caller holds the lease after the call.
    pub token: Option<u64>,
    /// Whether the caller already held the lease (a renewal) rather than
    /// acquiring it afresh.
    pub renewed: bool,
    /// The store's identity: a random value written when the alert store is
    /// first used, and again only when it has lost its data (a restart
    /// without persistence, a failover to a replica without it). An alerter
    /// that sees it change knows the store it wrote to is gone.
    pub epoch: String,
    /// Set when the lease was free but not taken because the epoch is newer
    /// than the caller's and younger than the grace period: milliseconds
    /// until it may be taken.
    pub waiting_ms: Option<u64>,
}

/// How to take the lease, for [`AlertStore::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest<'a> {
    /// The caller's identity.
    pub holder: &'a str,
    /// The lease's lifetime.
    pub ttl_ms: u64,
    /// The epoch the caller last saw, if it has state of its own to lose
    /// nothing of: `None` takes a free lease whatever the epoch (an alerter
    /// holding in-memory state, or one that never saw this store).
    /// `Some(e)`: a free lease is taken at once when the store's epoch is
    /// `e`; when it is another (the store lost its data), only once that
    /// epoch is `grace_ms` old, so that a live leader can write its state
    /// back first.
    pub known_epoch: Option<&'a str>,
    /// See `known_epoch`.
    pub grace_ms: u64,
}

/// An alerter's in-memory copy of the alert store, written back under a
/// fresh fence after the store lost its data ([`AlertStore::restore`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertRestore {
    /// The last instant evaluated.
    pub last_evaluated: Option<Millis>,
    /// Every incident state (key → JSON); replaces what the store holds.
    pub states: Vec<(String, String)>,
    /// The undelivered outbox, with its sequence numbers kept (a delivery
    /// in flight acks by them).
    pub outbox: Vec<OutboxEntry>,
    /// The outbox sequence counter: the next entry gets a greater number.
    pub outbox_seq: u64,
    /// Resolved incidents: `(end time, incident id, json)`.
    pub resolved: Vec<(Millis, String, String)>,
    /// Dead letters, newest first.
    pub dead_letters: Vec<DeadLetter>,
    /// Silences and acknowledgements last read; written back only where
    /// the store has no record of that id (a newer write wins).
    pub records: Vec<(RecordKind, Record)>,
    /// The token counter is raised to at least this (the fencing token the
    /// writer held before the loss), so tokens keep growing.
    pub token_floor: u64,
}

/// Everything an alerter needs to continue where the last one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertSnapshot {
    /// The last instant evaluated (committed).
    pub last_evaluated: Option<Millis>,
    /// Incident state per key (opaque JSON, owned by the `incidents` crate).
    pub states: Vec<(String, String)>,
}

/// One evaluation's changes, committed atomically with the fencing check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCommit {
    /// The instant evaluated.
    pub evaluated_at: Millis,
    /// When set, the commit is refused with [`StoreError::Behind`] (nothing
    /// written) unless the store's last evaluated instant is exactly this:
    /// the writer's previous commit. `None`: no check.
    pub expect_last_evaluated: Option<Millis>,
    /// State changes: `(key, Some(json))` sets, `(key, None)` removes.
    pub states: Vec<(String, Option<String>)>,
    /// Transitions to deliver (opaque JSON), appended to the outbox in order.
    pub outbox: Vec<String>,
    /// Resolved incidents for the history: `(end time, incident id, json)`.
    pub resolved: Vec<(Millis, String, String)>,
}

/// A transition waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox; grows with every entry.
    pub seq: u64,
    /// The transition (opaque JSON).
    pub payload: String,
}

/// A delivery that failed for good, kept for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// When it was given up, ms since the epoch.
    pub at: Millis,
    /// The hook's name.
    pub hook: String,
    /// The last error.
    pub error: String,
    /// The transition (opaque JSON).
    pub payload: String,
}

/// Storage of the alerter's state: the lease, incident states, the outbox
/// of transitions to deliver, resolved history and dead letters.
///
/// **Invariant:** [`AlertStore::commit`] applies all of a commit or none of
/// it, and only while the lease is exactly the caller's: its holder *and*
/// its token (a paused old leader cannot write after losing the lease, even
/// if a failover handed its token to the new holder).
pub trait AlertStore: Send + Sync {
    /// Acquires the lease for `holder` if it is free or expired, or renews it
    /// if `holder` holds it. Returns the fencing token when `holder` holds the
    /// lease after the call, `None` when someone else does. (`acquire` with
    /// no known epoch.)
    fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        let request = LeaseRequest {
            holder,
            ttl_ms,
            known_epoch: None,
            grace_ms: 0,
        };
        async move { Ok(self.acquire(request).await?.token) }
    }

    /// Takes or renews the lease as [`LeaseRequest`] says, and reports the
    /// store's epoch (creating it when the store has none: first use, or
    /// after it lost its data).
    fn acquire(
        &self,
        request: LeaseRequest<'_>,
    ) -> impl Future<Output = Result<LeaseGrant, StoreError>> + Send;

    /// Writes an alerter's in-memory state back into a store that lost its
    /// data, if `holder` holds the lease with `token` (fenced as
    /// [`AlertStore::commit`]); all or nothing.
    fn restore(
        &self,
        holder: &str,
        token: u64,
        restore: &AlertRestore,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the lease up if `holder` still holds it with `token`.
    fn release_lease(
        &self,
        holder: &str,
        token: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The current lease, if any.
    fn lease(&self) -> impl Future<Output = Result<Option<LeaseInfo>, StoreError>> + Send;

    /// The last instant evaluated and every incident state.
    fn load(&self) -> impl Future<Output = Result<AlertSnapshot, StoreError>> + Send;

    /// Applies one evaluation's changes atomically, if `holder` holds the
    /// lease with `token`; otherwise fails with [`StoreError::Fenced`] and
    /// changes nothing.
    ///
    /// Both are checked: the token alone does not identify an acquisition,
    /// since a failover to a lagging replica can lose the token counter's
    /// last increment and hand the same token to the next holder.
    ///
    /// Returns the outbox sequence counter after the commit: the commit's
    /// `n` outbox entries got the numbers `seq - n + 1 ..= seq`.
    fn commit(
        &self,
        holder: &str,
        token: u64,
        commit: &AlertCommit,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` outbox entries, oldest first.
    fn outbox(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;

    /// Removes delivered entries from the outbox.
    fn ack(&self, seqs: &[u64]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Number of entries waiting in the outbox.
    fn outbox_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Keeps a failed delivery (bounded: the oldest are dropped past a limit
    /// the implementation documents).
    fn dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest dead letters, newest first.
    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    /// Resolved incidents (JSON) whose end time is within `from..=to`,
    /// oldest first, at most `limit`.
    fn resolved(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Removes resolved incidents that ended before `before`; returns how many.
    fn prune_resolved(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Every record of `kind`, by id.
    fn records(
        &self,
        kind: RecordKind,
    ) -> impl Future<Output = Result<Vec<Record>, StoreError>> + Send;

    /// Writes record `id` of `kind` if the store holds version `expected`
    /// of it (0: no such record); returns the new version (`expected + 1`).
    /// Otherwise fails with [`StoreError::Conflict`] and writes nothing. A
    /// new record beyond [`RECORDS_MAX`] is refused. Not fenced: any
    /// alerter's API or the CLI may write.
    fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        json: &str,
        keep_until: Millis,
        expected: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes records (of both kinds) whose `keep_until` is before
    /// `before`; returns how many.
    fn prune_records(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}
