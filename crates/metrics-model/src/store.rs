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
    /// Any other failure of one operation.
    #[error("store error: {0}")]
    Other(String),
}

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

    /// Removes ticks with `ts < before`, and hosts left with none.
    /// Safe to run from several processes at once.
    fn prune(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send;
}
