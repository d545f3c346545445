//! The alerter's counters (for `/metrics`, `/healthz` and tests).

use std::sync::atomic::{AtomicBool, AtomicU64};

/// Counters the alerter exposes (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct AlerterStats {
    /// Whether this process holds the lease.
    pub leader: AtomicBool,
    /// Instants evaluated and committed.
    pub evaluations: AtomicU64,
    /// Transitions committed.
    pub transitions: AtomicU64,
    /// Duration of the last evaluation (read + evaluate + commit), µs.
    pub last_evaluation_us: AtomicU64,
    /// Sum of evaluation durations, µs (with `evaluations`, the mean).
    pub evaluation_us_total: AtomicU64,
    /// Store operations that failed.
    pub store_errors: AtomicU64,
    /// Ticks stamped more than max(5 watcher intervals, 1 min) in the future when read.
    pub future_ticks: AtomicU64,
    /// Ticks that arrived after the instant covering them was evaluated.
    pub late_ticks: AtomicU64,
    /// The last instant committed, ms (0 before the first).
    pub last_evaluated: AtomicU64,
    /// Dead letters written for hooks a configuration reload removed while
    /// they had deliveries pending.
    pub hook_removed_dead_letters: AtomicU64,
    /// Write-backs of the state in memory into an alert store that lost its
    /// data (a new store epoch).
    pub write_backs: AtomicU64,
    /// Operations of an on-disk store that failed with an I/O error (disk
    /// full, read-only file system), copied from the store (standalone).
    pub store_io_failures: AtomicU64,
    /// Ticks an on-disk store keeps in memory because its file refuses
    /// writes (standalone), copied from the store.
    pub store_ticks_in_memory: AtomicU64,
    /// Evaluated instants whose commits wait for the store (leader only).
    pub commits_waiting: AtomicU64,
    /// Outbox entries seen waiting at the last read.
    pub outbox_depth: AtomicU64,
    /// Silences active at the last evaluated instant.
    pub silences_active: AtomicU64,
    /// Opens held by a silence or maintenance window now (leader only).
    pub notifications_held: AtomicU64,
    /// Transitions never notified: an open held until its incident
    /// resolved, and that resolve (two per such incident).
    pub notifications_suppressed: AtomicU64,
    /// Hook delivery counters, refreshed by the delivery loop.
    pub hooks: std::sync::Mutex<Option<incidents::delivery::DispatcherStats>>,
}
