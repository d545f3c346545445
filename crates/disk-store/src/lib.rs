//! The embedded on-disk store of standalone mode: [`DiskStore`] implements
//! [`TickStore`] and [`AlertStore`] on one [redb](https://www.redb.org)
//! file, so a single-machine `bp-alerter` keeps its history, open
//! incidents, cooldowns and undelivered hook calls across restarts.
//!
//! Layout (docs/storage.md, "Standalone: the data directory"):
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `meta` | name → bytes | `layout` (this version writes 2: layout 1 plus keys with instances in tick values, see `metrics_model::codec`; a layout-1 file is marked 2 when opened, its data unchanged), `epoch`, `epoch_at`, `token`, `last_evaluated`, `outbox_seq`, `arrival_seq`, `dead_seq` |
//! | `ticks` | (host, ts) → values | each tick's values in [`metrics_model::codec`] form |
//! | `arrival` | seq → (host, ts, appended at) | arrival order, for [`TickStore::read_new`]; cut by `prune` to the last [`ARRIVAL_KEEP_MS`] of appends |
//! | `hosts` | host → greatest ts | the host registry |
//! | `states` | key → JSON | incident states |
//! | `outbox` | seq → JSON | transitions to deliver |
//! | `resolved` | (end, id) → JSON | resolved incidents |
//! | `dead` | seq → JSON | dead letters (the newest [`DEAD_LETTERS_MAX`]) |
//!
//! Every operation is one redb transaction; write transactions commit with
//! `Durability::Immediate` (fsync'd when the call returns), so an alert
//! commit is on disk before any hook sees its transitions, and a tick
//! append before the collector counts it written.
//!
//! **Invariant:** one process per data directory: [`DiskStore::open`] takes
//! an exclusive lock on `<dir>/lock` (released by the kernel when the
//! process dies) before it opens the database; the lease therefore lives in
//! memory, and the fencing token counter and the store epoch on disk.
//!
//! The arrival index keeps an entry for each tick appended in the last
//! [`ARRIVAL_KEEP_MS`] (cut by `prune`), so the file holds about one entry
//! per stored tick only in `ticks`: 5.0 bytes per sample with the standard
//! tick (docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use metrics_model::memory::check_ticks;
use metrics_model::store::{
    AlertCommit, AlertRestore, AlertSnapshot, AlertStore, AppendOutcome, DeadLetter, HostInfo,
    LeaseGrant, LeaseInfo, LeaseRequest, NewTicks, OutboxEntry, PruneOutcome, RECORDS_MAX, Record,
    RecordKind, SealOutcome, StoreError, TickStore,
};
use metrics_model::time::{Millis, now_ms};
use metrics_model::{HostName, Tick, Values};
use metrics_model::{chunk, codec};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

/// Dead letters kept at most (the newest), as the other stores.
pub const DEAD_LETTERS_MAX: usize = metrics_model::memory_alerts::DEAD_LETTERS_MAX;

/// The layout this version writes and reads. Layout 2 is layout 1 plus
/// keys with instances (tick values in the codec's layout 2, of which every
/// layout-1 value is one); a layout-1 file is marked 2 when opened (no
/// data changes), so that an older bp-alerter refuses it instead of
/// misreading ticks with instances.
///
/// Layout 3 adds the `chunks` table: sealed ticks, compressed
/// ([`metrics_model::chunk`]). Files of layouts 1 and 2 are marked 3 when
/// opened; their ticks are sealed by the janitor's next pass.
pub const LAYOUT_VERSION: u64 = 3;
/// The oldest layout this version reads (and upgrades in place).
pub const OLDEST_LAYOUT: u64 = 1;

fn readable_layout(v: &[u8]) -> bool {
    (OLDEST_LAYOUT..=LAYOUT_VERSION).any(|l| v == l.to_le_bytes())
}

/// How long (wall time since the append) [`TickStore::prune`] keeps a
/// tick's entry in the arrival index: readers by arrival (the alerter,
/// every pass) are seconds behind, and an entry per stored tick would
/// double the file. A reader more than this behind its cursor misses the
/// ticks whose entries were cut (they stay stored and range-readable).
pub const ARRIVAL_KEEP_MS: i64 = 3_600_000;

/// Ticks sealed per write transaction by [`TickStore::seal`].
const SEAL_BATCH: usize = 7_200;

/// A prune that cuts at least this many arrival entries compacts the file
/// afterwards, so an import's index does not stay as free pages.
const COMPACT_AFTER: usize = 20_000;

/// The database file's name in the data directory.
pub const FILE_NAME: &str = "monitoring.redb";

/// The lock file's name in the data directory.
pub const LOCK_NAME: &str = "lock";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TICKS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("ticks");
const ARRIVAL: TableDefinition<u64, (&str, i64, i64)> = TableDefinition::new("arrival");
/// Sealed chunks: (host, window start) → [`metrics_model::chunk`] blob.
const CHUNKS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("chunks");
const HOSTS: TableDefinition<&str, i64> = TableDefinition::new("hosts");
const STATES: TableDefinition<&str, &str> = TableDefinition::new("states");
const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("outbox");
const RESOLVED: TableDefinition<(i64, &str), &str> = TableDefinition::new("resolved");
const DEAD: TableDefinition<u64, &str> = TableDefinition::new("dead");
/// Silences and acknowledgements: (kind, id) → `<version> <keep-until> <json>`.
const RECORDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("records");

fn record_value(r: &Record) -> String {
    format!("{} {} {}", r.version, r.keep_until, r.json)
}

fn parse_record(id: &str, value: &str) -> Option<Record> {
    let mut parts = value.splitn(3, ' ');
    Some(Record {
        id: id.to_owned(),
        version: parts.next()?.parse().ok()?,
        keep_until: parts.next()?.parse().ok()?,
        json: parts.next()?.to_owned(),
    })
}

/// Why a data directory cannot be opened. Every message names the path and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum DiskStoreError {
    /// Another process holds the directory's lock.
    #[error(
        "data directory {dir} is in use by another bp-alerter (its lock file {lock} is held); stop that process, or give this one another --data-dir"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The directory or a file in it cannot be created or opened.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not a readable store: corrupted, or not a redb file.
    #[error(
        "{path} is not a readable bp-monitoring store ({detail}); it was not changed. Move it aside to start with an empty store (the data in it is then not used), or restore it from a backup"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// The file was written by another version of bp-monitoring.
    #[error(
        "{path} has store layout {found}, this bp-alerter reads layouts {OLDEST_LAYOUT} to {LAYOUT_VERSION}; run the bp-alerter version that wrote it (or a newer one), or move the file aside to start empty"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The layout found.
        found: String,
    },
}

/// The embedded store. Clones share the database.
#[derive(Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced by a fresh open after an I/O error (redb refuses every
    /// operation after one until the database is reopened).
    db: RwLock<Option<Database>>,
    /// Opens the database file (again).
    opener: Box<Opener>,
    /// Set by an I/O error: the next operation reopens the database first.
    broken: AtomicBool,
    /// Operations that failed with an I/O error (disk full, read-only, …).
    io_failures: AtomicU64,
    /// When an I/O failure was last logged (at most one line a minute).
    last_warned: Mutex<Option<Instant>>,
    path: PathBuf,
    /// The lease `(holder, token)`: in memory, since the lock file admits
    /// one process.
    lease: Mutex<Option<(String, u64)>>,
    /// The store epoch and when it began (written once, when the file is
    /// created): renewing a held lease needs no disk.
    epoch: Mutex<(String, Millis)>,
    /// Ticks the file could not take, kept in memory; also the arrival
    /// sequence (held across every tick write and arrival read).
    spill: Mutex<Spill>,
    /// Whether ticks the file refuses are kept in memory (the running
    /// alerter) or the append fails (tools: an import must not report
    /// ticks stored that only memory holds).
    spill_enabled: AtomicBool,
    /// Held for the store's lifetime: the directory lock.
    _lock: File,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Ticks kept in memory at most while the file refuses writes (disk full,
/// read-only): an hour of one-second ticks. Past it appends fail
/// (`Unavailable`), and the caller buffers (the writer's outage buffer).
pub const SPILL_MAX: usize = 3_600;

/// Ticks the file could not take (a full or read-only disk), in memory with
/// the arrival seqs they were given: readers by arrival and by range see
/// them, so evaluation goes on; the next append that succeeds writes them
/// first, under the same seqs. Lost if the process dies before that.
#[derive(Debug, Default)]
struct Spill {
    /// `(arrival seq, tick)`, in arrival order.
    ticks: VecDeque<(u64, Tick)>,
    /// The keys in `ticks` (a tick with the same host and ts is a duplicate).
    keys: HashSet<(HostName, Millis)>,
    /// The greatest arrival seq in the file.
    persisted: u64,
    /// The greatest arrival seq given (≥ `persisted`).
    last: u64,
}

impl Spill {
    fn take(&mut self, ticks: &[Tick]) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        for t in ticks {
            if self.keys.insert((t.host.clone(), t.ts)) {
                self.last += 1;
                self.ticks.push_back((self.last, t.clone()));
                out.written += 1;
            } else {
                out.duplicates += 1;
            }
        }
        out
    }

    fn written(&mut self, seq: u64) {
        self.ticks.clear();
        self.keys.clear();
        self.persisted = seq;
        self.last = seq;
    }
}

/// How [`DiskStore::open_with`] opens the database file.
pub type Opener = dyn Fn(&Path) -> Result<Database, redb::DatabaseError> + Send + Sync;

/// Whether a redb error is the storage failing (an I/O error, or the state
/// redb keeps after one until it is reopened), as opposed to bad data.
pub trait IoLike {
    /// True for I/O failures.
    fn io_like(&self) -> bool;
}

impl IoLike for redb::StorageError {
    fn io_like(&self) -> bool {
        matches!(
            self,
            redb::StorageError::Io(_)
                | redb::StorageError::PreviousIo
                | redb::StorageError::DatabaseClosed
        )
    }
}

impl IoLike for redb::TransactionError {
    fn io_like(&self) -> bool {
        matches!(self, redb::TransactionError::Storage(s) if s.io_like())
    }
}

impl IoLike for redb::TableError {
    fn io_like(&self) -> bool {
        matches!(self, redb::TableError::Storage(s) if s.io_like())
    }
}

impl IoLike for redb::CommitError {
    fn io_like(&self) -> bool {
        matches!(self, redb::CommitError::Storage(s) if s.io_like())
    }
}

impl IoLike for redb::SetDurabilityError {
    fn io_like(&self) -> bool {
        false
    }
}

impl IoLike for String {
    fn io_like(&self) -> bool {
        false
    }
}

/// A position in the arrival order: the last arrival seq read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiskCursor(pub u64);

impl DiskStore {
    /// Opens (creating when missing, mode 0700) the data directory `dir`,
    /// takes its lock, and opens or creates the database file in it.
    ///
    /// # Errors
    /// [`DiskStoreError`]: the directory is locked by another process, a
    /// path cannot be created, the file is unreadable or of another layout.
    pub fn open(dir: &Path) -> Result<DiskStore, DiskStoreError> {
        Self::open_with(dir, Box::new(|path| Database::create(path)))
    }

    /// [`DiskStore::open`] with another way of opening the database file
    /// (fault-injection tests wrap the file in a backend that fails).
    ///
    /// # Errors
    /// As [`DiskStore::open`].
    pub fn open_with(dir: &Path, opener: Box<Opener>) -> Result<DiskStore, DiskStoreError> {
        let io = |path: &Path, action: &'static str| {
            let path = path.to_path_buf();
            move |source| DiskStoreError::Io {
                path,
                action,
                source,
            }
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir, "cannot create the data directory"))?;
            // The umask may have narrowed it further; never widen what an
            // operator set on an existing directory.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir, "cannot set the data directory's mode to 0700"))?;
        }
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "cannot open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DiskStoreError::Locked {
                    dir: dir.to_path_buf(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(&lock_path, "cannot lock the lock file")(e));
            }
        }
        let path = dir.join(FILE_NAME);
        // A file of another layout is refused before it is opened for
        // writing (opening a redb file for writing may update its header).
        // A file that needs recovery after a crash cannot be opened
        // read-only: it is checked after the writable open repaired it.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
            && let Ok(ro) = redb::ReadOnlyDatabase::open(&path)
            && let Some(found) = layout_of(&ro)
            && !readable_layout(&found)
        {
            return Err(DiskStoreError::Version {
                path,
                found: describe_layout(&found),
            });
        }
        let db = opener(&path).map_err(|e| DiskStoreError::Unreadable {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let store = DiskStore {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                opener,
                broken: AtomicBool::new(false),
                io_failures: AtomicU64::new(0),
                last_warned: Mutex::new(None),
                path,
                lease: Mutex::new(None),
                epoch: Mutex::new((String::new(), 0)),
                spill: Mutex::new(Spill::default()),
                spill_enabled: AtomicBool::new(false),
                _lock: lock,
            }),
        };
        store.init()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Checks the layout (writing it, the tables and the epoch into a new
    /// file).
    fn init(&self) -> Result<(), DiskStoreError> {
        let path = self.inner.path.clone();
        let unreadable = |e: &dyn std::fmt::Display| DiskStoreError::Unreadable {
            path: path.clone(),
            detail: e.to_string(),
        };
        let txn = self
            .db()
            .as_ref()
            .ok_or_else(|| unreadable(&"the database is closed"))?
            .begin_write()
            .map_err(|e| unreadable(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| unreadable(&e))?;
            let layout = meta
                .get("layout")
                .map_err(|e| unreadable(&e))?
                .map(|v| v.value().to_vec());
            match layout {
                None => {
                    meta.insert("layout", LAYOUT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| unreadable(&e))?;
                    let epoch = uuid::Uuid::new_v4().simple().to_string();
                    meta.insert("epoch", epoch.as_bytes())
                        .map_err(|e| unreadable(&e))?;
                    meta.insert("epoch_at", now_ms().to_le_bytes().as_slice())
                        .map_err(|e| unreadable(&e))?;
                }
                Some(v) if v.as_slice() == LAYOUT_VERSION.to_le_bytes() => {}
                Some(v) if readable_layout(&v) => {
                    meta.insert("layout", LAYOUT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| unreadable(&e))?;
                    tracing::info!(file = %path.display(), layout = LAYOUT_VERSION, "store layout {} marked {LAYOUT_VERSION} (keys with instances, sealed chunks); older bp-alerters refuse this file", describe_layout(&v));
                }
                Some(v) => {
                    return Err(DiskStoreError::Version {
                        path: path.clone(),
                        found: describe_layout(&v),
                    });
                }
            }
            let epoch = meta
                .get("epoch")
                .map_err(|e| unreadable(&e))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned())
                .unwrap_or_default();
            let at = meta_i64(&meta, "epoch_at")
                .map_err(|e| unreadable(&e))?
                .unwrap_or(0);
            *self.epoch_lock() = (epoch, at);
            let seq = meta_u64(&meta, "arrival_seq").map_err(|e| unreadable(&e))?;
            self.spill_lock().written(seq);
            // Create every table, so that readers never meet a missing one.
            txn.open_table(TICKS).map_err(|e| unreadable(&e))?;
            txn.open_table(CHUNKS).map_err(|e| unreadable(&e))?;
            txn.open_table(ARRIVAL).map_err(|e| unreadable(&e))?;
            txn.open_table(HOSTS).map_err(|e| unreadable(&e))?;
            txn.open_table(STATES).map_err(|e| unreadable(&e))?;
            txn.open_table(OUTBOX).map_err(|e| unreadable(&e))?;
            txn.open_table(RESOLVED).map_err(|e| unreadable(&e))?;
            txn.open_table(DEAD).map_err(|e| unreadable(&e))?;
        }
        txn.commit().map_err(|e| unreadable(&e))
    }

    fn epoch_lock(&self) -> MutexGuard<'_, (String, Millis)> {
        self.inner
            .epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spill_lock(&self) -> MutexGuard<'_, Spill> {
        self.inner
            .spill
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on, ticks the file refuses (an I/O error: disk full,
    /// read-only) are kept in memory, up to [`SPILL_MAX`], instead of the
    /// append failing: for the running alerter, whose evaluation reads
    /// them. Off by default, so that a tool's append never reports stored
    /// what only its memory holds.
    #[must_use]
    pub fn keeping_ticks_in_memory_when_full(self) -> DiskStore {
        self.inner.spill_enabled.store(true, Ordering::Relaxed);
        self
    }

    /// Ticks kept in memory because the file refused them (written first
    /// once it takes writes again).
    pub fn ticks_in_memory(&self) -> usize {
        self.spill_lock().ticks.len()
    }

    fn lease_lock(&self) -> MutexGuard<'_, Option<(String, u64)>> {
        self.inner
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on a blocking thread (redb is synchronous and fsyncs).
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DiskStore) -> Result<T, StoreError> + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> + Send {
        let store = self.clone();
        async move {
            match tokio::task::spawn_blocking(move || f(&store)).await {
                Ok(r) => r,
                Err(e) => Err(StoreError::Other(format!(
                    "the store's worker thread failed: {e}"
                ))),
            }
        }
    }

    /// Operations that failed with an I/O error since the store was opened.
    pub fn io_failures(&self) -> u64 {
        self.inner.io_failures.load(Ordering::Relaxed)
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Option<Database>> {
        self.inner
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After an I/O error, opens the database file again (redb requires it;
    /// what was committed before is there, the failed transaction is not).
    fn reopen_if_broken(&self) -> Result<(), StoreError> {
        if !self.inner.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut db = self
            .inner
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.inner.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        // The old handle holds the file's lock: close it first. Until the
        // file opens again every operation is `Unavailable`.
        *db = None;
        match (self.inner.opener)(&self.inner.path) {
            Ok(fresh) => {
                *db = Some(fresh);
                self.inner.broken.store(false, Ordering::Release);
                tracing::debug!(file = %self.inner.path.display(), "the store file is open again after an I/O error");
                Ok(())
            }
            Err(e) => Err(self.io_failed(format!(
                "{}: reopening after an I/O error: {e}",
                self.inner.path.display()
            ))),
        }
    }

    /// The error of a failed operation. I/O failures (a full disk, a
    /// read-only file system) are `Unavailable` — callers retry; the store
    /// reopens its file before the next operation — counted, and logged at
    /// most once a minute.
    #[allow(clippy::needless_pass_by_value)] // every caller hands over its error (`map_err`)
    fn err<E: std::fmt::Display + IoLike>(&self, what: &str, e: E) -> StoreError {
        let msg = format!("{}: {what}: {e}", self.inner.path.display());
        if !e.io_like() {
            return StoreError::Other(msg);
        }
        self.inner.broken.store(true, Ordering::Release);
        self.io_failed(msg)
    }

    /// Counts an I/O failure, logs it (at most once a minute) and returns it
    /// as `Unavailable`.
    fn io_failed(&self, msg: String) -> StoreError {
        let n = self.inner.io_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .inner
            .last_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_mins(1)) {
            *last = Some(Instant::now());
            tracing::warn!(
                error = %msg,
                failures = n,
                "cannot write the store file (disk full or read-only?): retrying; what is stored is kept (logged once a minute)"
            );
        }
        StoreError::Unavailable(msg)
    }

    fn closed(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "{}: the store file could not be opened again after an I/O error; retrying",
            self.inner.path.display()
        ))
    }

    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        self.reopen_if_broken()?;
        let mut txn = self
            .db()
            .as_ref()
            .ok_or_else(|| self.closed())?
            .begin_write()
            .map_err(|e| self.err("starting a write", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err("setting durability", e))?;
        Ok(txn)
    }

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.reopen_if_broken()?;
        self.db()
            .as_ref()
            .ok_or_else(|| self.closed())?
            .begin_read()
            .map_err(|e| self.err("starting a read", e))
    }
}

/// The `layout` entry of a file opened read-only, if it has one.
fn layout_of(db: &redb::ReadOnlyDatabase) -> Option<Vec<u8>> {
    let txn = db.begin_read().ok()?;
    let meta = txn.open_table(META).ok()?;
    let v = meta.get("layout").ok()??;
    Some(v.value().to_vec())
}

fn describe_layout(v: &[u8]) -> String {
    u64_of(v).map_or_else(|| format!("{v:?}"), |n| n.to_string())
}

fn u64_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

fn i64_of(v: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(v.try_into().ok()?))
}

/// A `meta` entry as a `u64` (0 when absent).
fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, redb::StorageError> {
    Ok(meta.get(key)?.and_then(|v| u64_of(v.value())).unwrap_or(0))
}

fn meta_i64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<i64>, redb::StorageError> {
    Ok(meta.get(key)?.and_then(|v| i64_of(v.value())))
}

/// Fault injection for tests and drills: a store on a file that refuses
/// every write (`ENOSPC`, as a full disk does) while a switch is on.
pub mod fault {
    use std::io;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::StorageBackend;
    use redb::backends::FileBackend;

    use super::{DiskStore, DiskStoreError};

    /// redb's file backend, failing writes, syncs and growth while `full`.
    #[derive(Debug)]
    struct Full {
        inner: FileBackend,
        full: Arc<AtomicBool>,
    }

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(28) // ENOSPC
    }

    impl StorageBackend for Full {
        fn len(&self) -> Result<u64, io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), io::Error> {
            if self.full.load(Ordering::SeqCst) && len > self.inner.len()? {
                return Err(enospc());
            }
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), io::Error> {
            if self.full.load(Ordering::SeqCst) {
                return Err(enospc());
            }
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
            if self.full.load(Ordering::SeqCst) {
                return Err(enospc());
            }
            self.inner.write(offset, data)
        }
        fn close(&self) -> Result<(), io::Error> {
            self.inner.close()
        }
    }

    /// [`DiskStore::open`] of `dir` on a file whose writes fail with
    /// `ENOSPC` while the returned switch is on (off at first), reopens
    /// included.
    ///
    /// # Errors
    /// As [`DiskStore::open`].
    pub fn open_with_full_switch(
        dir: &Path,
    ) -> Result<(DiskStore, Arc<AtomicBool>), DiskStoreError> {
        let full = Arc::new(AtomicBool::new(false));
        let flag = full.clone();
        let store = DiskStore::open_with(
            dir,
            Box::new(move |path| {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(redb::StorageError::from)?;
                redb::Database::builder().create_with_backend(Full {
                    inner: FileBackend::new(file)?,
                    full: flag.clone(),
                })
            }),
        )?;
        Ok((store, full))
    }
}

// ----- ticks ---------------------------------------------------------------

impl DiskStore {
    /// Appends `ticks` after the ticks kept in memory (if any). When the
    /// file refuses the write (an I/O error: disk full, read-only), the
    /// ticks are kept in memory instead, up to [`SPILL_MAX`].
    fn append_sync(&self, ticks: &[Tick]) -> Result<AppendOutcome, StoreError> {
        check_ticks(ticks)?;
        let mut spill = self.spill_lock();
        match self.append_txn(&spill, ticks) {
            Ok((out, seq)) => {
                let kept = spill.ticks.len();
                spill.written(seq);
                if kept > 0 {
                    tracing::info!(
                        file = %self.inner.path.display(),
                        ticks = kept,
                        "the ticks kept in memory while the store file refused writes are written"
                    );
                }
                Ok(out)
            }
            Err(StoreError::Unavailable(msg))
                if self.inner.spill_enabled.load(Ordering::Relaxed) =>
            {
                if spill.ticks.len() + ticks.len() > SPILL_MAX {
                    return Err(StoreError::Unavailable(format!(
                        "{msg} ({} ticks kept in memory already)",
                        spill.ticks.len()
                    )));
                }
                Ok(spill.take(ticks))
            }
            Err(e) => Err(e),
        }
    }

    /// One write transaction: the ticks kept in memory (under their seqs),
    /// then `ticks`. Returns what was written of `ticks` and the greatest
    /// arrival seq.
    fn append_txn(
        &self,
        spill: &Spill,
        ticks: &[Tick],
    ) -> Result<(AppendOutcome, u64), StoreError> {
        let e = |e: redb::StorageError| self.err("appending ticks", e);
        let txn = self.write()?;
        let mut out = AppendOutcome::default();
        let seq;
        {
            let mut table = txn
                .open_table(TICKS)
                .map_err(|x| self.err("appending ticks", x))?;
            let mut arrival = txn
                .open_table(ARRIVAL)
                .map_err(|x| self.err("appending ticks", x))?;
            let mut hosts = txn
                .open_table(HOSTS)
                .map_err(|x| self.err("appending ticks", x))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|x| self.err("appending ticks", x))?;
            let chunks = txn
                .open_table(CHUNKS)
                .map_err(|x| self.err("appending ticks", x))?;
            let mut last = meta_u64(&meta, "arrival_seq").map_err(e)?.max(spill.last);
            let mut buf = Vec::new();
            let now = now_ms();
            // The timestamps of the sealed chunks met, by (host, window).
            let mut sealed: HashMap<(String, Millis), HashSet<Millis>> = HashMap::new();
            let kept = spill.ticks.iter().map(|(s, t)| (Some(*s), t));
            for (kept_seq, t) in kept.chain(ticks.iter().map(|t| (None, t))) {
                let key = (t.host.as_str(), t.ts);
                let newest = hosts.get(t.host.as_str()).map_err(e)?.map(|v| v.value());
                // Only a tick not newer than the host's newest can be in a
                // sealed chunk.
                let in_chunk = newest.is_some_and(|n| t.ts <= n) && {
                    let w = chunk::window_of(t.ts);
                    let set = match sealed.entry((t.host.as_str().to_owned(), w)) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let stamps = match chunks.get((t.host.as_str(), w)).map_err(e)? {
                                Some(blob) => chunk::timestamps(blob.value()).map_err(|x| {
                                    self.err(
                                        "appending ticks",
                                        format!("sealed chunk of {} at {w}: {x}", t.host),
                                    )
                                })?,
                                None => Vec::new(),
                            };
                            v.insert(stamps.into_iter().collect())
                        }
                    };
                    set.contains(&t.ts)
                };
                if in_chunk || table.get(key).map_err(e)?.is_some() {
                    if kept_seq.is_none() {
                        out.duplicates += 1;
                    }
                    continue;
                }
                buf.clear();
                codec::encode(t.values(), &mut buf);
                table.insert(key, buf.as_slice()).map_err(e)?;
                let s = kept_seq.unwrap_or_else(|| {
                    last += 1;
                    last
                });
                arrival.insert(s, (t.host.as_str(), t.ts, now)).map_err(e)?;
                if newest.is_none_or(|l| l < t.ts) {
                    hosts.insert(t.host.as_str(), t.ts).map_err(e)?;
                }
                if kept_seq.is_none() {
                    out.written += 1;
                }
            }
            seq = last;
            meta.insert("arrival_seq", seq.to_le_bytes().as_slice())
                .map_err(e)?;
        }
        txn.commit().map_err(|x| self.err("appending ticks", x))?;
        Ok((out, seq))
    }

    fn decode(&self, host: &str, ts: i64, bytes: &[u8]) -> Result<Tick, StoreError> {
        let host: HostName = host
            .parse()
            .map_err(|e| self.err("reading ticks", format!("stored host {host:?}: {e}")))?;
        let values = codec::decode(bytes)
            .map_err(|e| self.err("reading ticks", format!("tick {host} at {ts}: {e}")))?;
        Ok(Tick::from_values(host, ts, values))
    }

    fn range_sync(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<Tick>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        // The ticks kept in memory, copied before the file is read: one that
        // an append writes meanwhile is then in the copy or in the file
        // (both: the file's wins), never in neither. Not holding the lock
        // through the read keeps appends from waiting on a slow file.
        let kept: Vec<Tick> = self
            .spill_lock()
            .ticks
            .iter()
            .filter(|(_, t)| &t.host == host && (from..=to).contains(&t.ts))
            .map(|(_, t)| t.clone())
            .collect();
        let e = |e: redb::StorageError| self.err("reading ticks", e);
        let txn = self.read()?;
        let table = txn
            .open_table(TICKS)
            .map_err(|x| self.err("reading ticks", x))?;
        let chunks = txn
            .open_table(CHUNKS)
            .map_err(|x| self.err("reading ticks", x))?;
        let mut out = Vec::new();
        let first = chunk::window_of(from.max(0));
        let mut blobs = Vec::new();
        for item in chunks
            .range((host.as_str(), first)..=(host.as_str(), to))
            .map_err(e)?
        {
            let (k, v) = item.map_err(e)?;
            blobs.push((k.value().1, v));
        }
        let bytes: Vec<&[u8]> = blobs.iter().map(|(_, v)| v.value()).collect();
        for ((w, _), ticks) in blobs.iter().zip(chunk::decode_many(&bytes)) {
            let ticks = ticks.map_err(|x| {
                self.err(
                    "reading ticks",
                    format!("sealed chunk of {host} at {w}: {x}"),
                )
            })?;
            out.extend(
                ticks
                    .into_iter()
                    .filter(|(ts, _)| (from..=to).contains(ts))
                    .map(|(ts, values)| Tick::from_values(host.clone(), ts, values)),
            );
        }
        let sealed = out.len();
        for item in table
            .range((host.as_str(), from)..=(host.as_str(), to))
            .map_err(e)?
        {
            let (k, v) = item.map_err(e)?;
            let (h, ts) = k.value();
            out.push(self.decode(h, ts, v.value())?);
        }
        if sealed > 0 {
            out.sort_by_key(|t| t.ts);
        }
        // A kept tick is not in the file unless an append wrote it since the
        // copy (the file wins when they are written).
        if !kept.is_empty() {
            let stored: HashSet<Millis> = out.iter().map(|t| t.ts).collect();
            out.extend(kept.into_iter().filter(|t| !stored.contains(&t.ts)));
            out.sort_by_key(|t| t.ts);
        }
        Ok(out)
    }

    /// The ticks that arrived after `cursor`: from the file (only when it
    /// holds some: a reader that is up to date needs no disk), then the
    /// ticks kept in memory.
    fn read_new_sync(&self, cursor: DiskCursor) -> Result<NewTicks<DiskCursor>, StoreError> {
        let spill = self.spill_lock();
        let mut out = Vec::new();
        let mut last = cursor.0;
        if cursor.0 < spill.persisted {
            let e = |e: redb::StorageError| self.err("reading new ticks", e);
            let txn = self.read()?;
            let arrival = txn
                .open_table(ARRIVAL)
                .map_err(|x| self.err("reading new ticks", x))?;
            let table = txn
                .open_table(TICKS)
                .map_err(|x| self.err("reading new ticks", x))?;
            let chunks = txn
                .open_table(CHUNKS)
                .map_err(|x| self.err("reading new ticks", x))?;
            let mut sealed: HashMap<(String, Millis), Vec<(Millis, Values)>> = HashMap::new();
            for item in arrival.range(cursor.0.saturating_add(1)..).map_err(e)? {
                let (seq, key) = item.map_err(e)?;
                last = seq.value();
                let (h, ts, _) = key.value();
                if let Some(v) = table.get((h, ts)).map_err(e)? {
                    out.push(self.decode(h, ts, v.value())?);
                    continue;
                }
                // Sealed since its arrival: read it from its chunk. A tick
                // pruned since has no values left: skip it.
                let w = chunk::window_of(ts);
                let ticks = match sealed.entry((h.to_owned(), w)) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        let decoded = match chunks.get((h, w)).map_err(e)? {
                            Some(blob) => chunk::decode(blob.value()).map_err(|x| {
                                self.err(
                                    "reading new ticks",
                                    format!("sealed chunk of {h} at {w}: {x}"),
                                )
                            })?,
                            None => Vec::new(),
                        };
                        slot.insert(decoded)
                    }
                };
                if let Ok(i) = ticks.binary_search_by_key(&ts, |(t, _)| *t) {
                    let host: HostName = h.parse().map_err(|x| {
                        self.err("reading new ticks", format!("stored host {h:?}: {x}"))
                    })?;
                    out.push(Tick::from_values(host, ts, ticks[i].1.clone()));
                }
            }
        }
        for (seq, t) in &spill.ticks {
            if *seq > last {
                out.push(t.clone());
            }
        }
        Ok(NewTicks {
            ticks: out,
            cursor: DiskCursor(spill.last.max(last)),
        })
    }

    #[allow(clippy::unnecessary_wraps)] // the trait's shape
    fn cursor_now_sync(&self) -> Result<DiskCursor, StoreError> {
        Ok(DiskCursor(self.spill_lock().last))
    }

    fn hosts_sync(&self) -> Result<Vec<HostInfo>, StoreError> {
        // Copied before the file read, as in `range_sync`.
        let kept: Vec<(HostName, Millis)> = self
            .spill_lock()
            .ticks
            .iter()
            .map(|(_, t)| (t.host.clone(), t.ts))
            .collect();
        let e = |e: redb::StorageError| self.err("reading hosts", e);
        let txn = self.read()?;
        let hosts = txn
            .open_table(HOSTS)
            .map_err(|x| self.err("reading hosts", x))?;
        let mut out = Vec::new();
        for item in hosts.iter().map_err(e)? {
            let (h, ts) = item.map_err(e)?;
            match h.value().parse::<HostName>() {
                Ok(host) => out.push(HostInfo {
                    host,
                    last_seen: ts.value(),
                }),
                Err(err) => {
                    tracing::warn!(file = %self.inner.path.display(), host = h.value(), error = %err, "ignoring an invalid host name in the registry");
                }
            }
        }
        for (host, ts) in kept {
            match out.iter_mut().find(|h| h.host == host) {
                Some(h) => h.last_seen = h.last_seen.max(ts),
                None => out.push(HostInfo {
                    host,
                    last_seen: ts,
                }),
            }
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(out)
    }

    fn prune_sync(&self, before: Millis) -> Result<PruneOutcome, StoreError> {
        let mut out = PruneOutcome::default();
        {
            let mut spill = self.spill_lock();
            let Spill { ticks, keys, .. } = &mut *spill;
            ticks.retain(|(_, t)| {
                let keep = t.ts >= before;
                if !keep {
                    keys.remove(&(t.host.clone(), t.ts));
                    out.ticks_removed += 1;
                }
                keep
            });
        }
        let cut_entries;
        let e = |e: redb::StorageError| self.err("pruning ticks", e);
        let txn = self.write()?;
        {
            let mut table = txn
                .open_table(TICKS)
                .map_err(|x| self.err("pruning ticks", x))?;
            let mut hosts = txn
                .open_table(HOSTS)
                .map_err(|x| self.err("pruning ticks", x))?;
            let mut arrival = txn
                .open_table(ARRIVAL)
                .map_err(|x| self.err("pruning ticks", x))?;
            let mut chunks = txn
                .open_table(CHUNKS)
                .map_err(|x| self.err("pruning ticks", x))?;
            let names: Vec<String> = hosts
                .iter()
                .map_err(e)?
                .map(|i| i.map(|(k, _)| k.value().to_owned()))
                .collect::<Result<_, _>>()
                .map_err(e)?;
            for h in &names {
                let old: Vec<i64> = table
                    .range((h.as_str(), i64::MIN)..(h.as_str(), before))
                    .map_err(e)?
                    .map(|i| i.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()
                    .map_err(e)?;
                for ts in &old {
                    table.remove((h.as_str(), *ts)).map_err(e)?;
                }
                out.ticks_removed += old.len();
                out.ticks_removed += self.prune_chunks(&mut chunks, h, before)?;
                let left = table
                    .range((h.as_str(), i64::MIN)..=(h.as_str(), i64::MAX))
                    .map_err(e)?
                    .next()
                    .is_some()
                    || chunks
                        .range((h.as_str(), i64::MIN)..=(h.as_str(), i64::MAX))
                        .map_err(e)?
                        .next()
                        .is_some();
                if !left {
                    hosts.remove(h.as_str()).map_err(e)?;
                    out.hosts_removed += 1;
                }
            }
            let cut = now_ms().saturating_sub(ARRIVAL_KEEP_MS);
            let before_len = arrival.len().map_err(e)?;
            arrival
                .retain(|_, (_, ts, at)| ts >= before && at >= cut)
                .map_err(e)?;
            cut_entries =
                usize::try_from(before_len.saturating_sub(arrival.len().map_err(e)?)).unwrap_or(0);
        }
        txn.commit().map_err(|x| self.err("pruning ticks", x))?;
        if out.ticks_removed + cut_entries >= COMPACT_AFTER {
            self.compact();
        }
        Ok(out)
    }

    /// Prunes `host`'s sealed chunks: whole windows before `before` go; the
    /// one that straddles it is written again without its older ticks.
    /// Returns the ticks removed.
    fn prune_chunks(
        &self,
        chunks: &mut redb::Table<(&str, i64), &[u8]>,
        h: &str,
        before: Millis,
    ) -> Result<usize, StoreError> {
        let e = |e: redb::StorageError| self.err("pruning ticks", e);
        let mut removed = 0;
        let old_chunks: Vec<(i64, Vec<u8>)> = chunks
            .range((h, i64::MIN)..(h, before))
            .map_err(e)?
            .map(|i| i.map(|(k, v)| (k.value().1, v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(e)?;
        for (w, blob) in old_chunks {
            let bad = |x: metrics_model::codec::DecodeError| {
                self.err("pruning ticks", format!("sealed chunk of {h} at {w}: {x}"))
            };
            if w + chunk::CHUNK_MS <= before {
                removed += chunk::tick_count(&blob).map_err(bad)?;
                chunks.remove((h, w)).map_err(e)?;
                continue;
            }
            let ticks = chunk::decode(&blob).map_err(bad)?;
            let n = ticks.len();
            let kept: Vec<(Millis, &Values)> = ticks
                .iter()
                .filter(|(ts, _)| *ts >= before)
                .map(|(ts, v)| (*ts, v))
                .collect();
            removed += n - kept.len();
            if kept.is_empty() {
                chunks.remove((h, w)).map_err(e)?;
            } else if kept.len() < n {
                chunks
                    .insert((h, w), chunk::encode(&kept).as_slice())
                    .map_err(e)?;
            }
        }
        Ok(removed)
    }

    /// Seals every host's ticks with `ts < before` (a window boundary) into
    /// chunks, merged with the chunk already sealed for their window (its
    /// ticks win: they were stored first). One write transaction per host
    /// and [`SEAL_BATCH`] ticks, so memory stays bounded on the first pass
    /// over a long history.
    fn seal_sync(&self, before: Millis) -> Result<SealOutcome, StoreError> {
        let mut out = SealOutcome::default();
        let before = chunk::window_of(before.max(0));
        if before <= 0 {
            return Ok(out);
        }
        let names: Vec<String> = {
            let e = |e: redb::StorageError| self.err("sealing ticks", e);
            let txn = self.read()?;
            let hosts = txn
                .open_table(HOSTS)
                .map_err(|x| self.err("sealing ticks", x))?;
            hosts
                .iter()
                .map_err(e)?
                .map(|i| i.map(|(k, _)| k.value().to_owned()))
                .collect::<Result<_, _>>()
                .map_err(e)?
        };
        for h in &names {
            let mut any = false;
            loop {
                let n = self.seal_batch(h, before)?;
                out.ticks_sealed += n;
                any |= n > 0;
                if n < SEAL_BATCH {
                    break;
                }
            }
            if any {
                out.hosts_sealed += 1;
            }
        }
        if out.ticks_sealed >= COMPACT_AFTER {
            self.compact();
        }
        Ok(out)
    }

    /// Seals up to [`SEAL_BATCH`] of `h`'s oldest ticks below `before`, in
    /// one write transaction. Returns how many.
    fn seal_batch(&self, h: &str, before: Millis) -> Result<usize, StoreError> {
        let e = |e: redb::StorageError| self.err("sealing ticks", e);
        let txn = self.write()?;
        let mut sealed = 0;
        {
            let mut table = txn
                .open_table(TICKS)
                .map_err(|x| self.err("sealing ticks", x))?;
            let mut chunks = txn
                .open_table(CHUNKS)
                .map_err(|x| self.err("sealing ticks", x))?;
            let mut by_window: BTreeMap<Millis, Vec<(Millis, Values)>> = BTreeMap::new();
            for item in table
                .range((h, i64::MIN)..(h, before))
                .map_err(e)?
                .take(SEAL_BATCH)
            {
                let (k, v) = item.map_err(e)?;
                let ts = k.value().1;
                let values = codec::decode(v.value())
                    .map_err(|x| self.err("sealing ticks", format!("tick {h} at {ts}: {x}")))?;
                by_window
                    .entry(chunk::window_of(ts))
                    .or_default()
                    .push((ts, values));
            }
            for (w, ticks) in by_window {
                for (ts, _) in &ticks {
                    table.remove((h, *ts)).map_err(e)?;
                }
                sealed += ticks.len();
                let old = match chunks.get((h, w)).map_err(e)? {
                    Some(blob) => chunk::decode(blob.value()).map_err(|x| {
                        self.err("sealing ticks", format!("sealed chunk of {h} at {w}: {x}"))
                    })?,
                    None => Vec::new(),
                };
                let (merged, _) = chunk::merge(old, ticks);
                let refs: Vec<(Millis, &Values)> = merged.iter().map(|(t, v)| (*t, v)).collect();
                chunks
                    .insert((h, w), chunk::encode(&refs).as_slice())
                    .map_err(e)?;
            }
        }
        if sealed == 0 {
            txn.abort().map_err(|x| self.err("sealing ticks", x))?;
            return Ok(0);
        }
        txn.commit().map_err(|x| self.err("sealing ticks", x))?;
        Ok(sealed)
    }

    /// Drops every entry of the arrival index (readers by arrival then see
    /// only ticks appended afterwards) and compacts the file: after an
    /// import into a directory no alerter runs on, whose index entries no
    /// reader will ever use. Returns how many entries were dropped.
    ///
    /// # Errors
    /// A store failure.
    pub async fn drop_arrival_index(&self) -> Result<u64, StoreError> {
        self.blocking(|s| {
            let e = |e: redb::StorageError| s.err("dropping the arrival index", e);
            let txn = s.write()?;
            let n;
            {
                let mut arrival = txn
                    .open_table(ARRIVAL)
                    .map_err(|x| s.err("dropping the arrival index", x))?;
                n = arrival.len().map_err(e)?;
                arrival.retain(|_, _| false).map_err(e)?;
            }
            txn.commit()
                .map_err(|x| s.err("dropping the arrival index", x))?;
            s.compact();
            Ok(n)
        })
        .await
    }

    /// Gives the space of removed entries back to the file system (redb
    /// otherwise keeps it as free pages). Failures are logged: the store
    /// works on uncompacted.
    fn compact(&self) {
        let mut db = self
            .inner
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(db) = db.as_mut() {
            match db.compact() {
                Ok(_) => {
                    tracing::debug!(file = %self.inner.path.display(), "store file compacted");
                }
                Err(e) => {
                    tracing::warn!(file = %self.inner.path.display(), error = %e, "cannot compact the store file");
                }
            }
        }
    }
}

impl TickStore for DiskStore {
    type Cursor = DiskCursor;

    fn append(
        &self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        let ticks = ticks.to_vec();
        self.blocking(move |s| s.append_sync(&ticks))
    }

    fn range(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<Tick>, StoreError>> + Send {
        let host = host.clone();
        self.blocking(move |s| s.range_sync(&host, from, to))
    }

    fn read_new(
        &self,
        cursor: &DiskCursor,
    ) -> impl Future<Output = Result<NewTicks<DiskCursor>, StoreError>> + Send {
        let cursor = *cursor;
        self.blocking(move |s| s.read_new_sync(cursor))
    }

    fn cursor_now(&self) -> impl Future<Output = Result<DiskCursor, StoreError>> + Send {
        self.blocking(DiskStore::cursor_now_sync)
    }

    fn hosts(&self) -> impl Future<Output = Result<Vec<HostInfo>, StoreError>> + Send {
        self.blocking(DiskStore::hosts_sync)
    }

    fn prune(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send {
        self.blocking(move |s| s.prune_sync(before))
    }

    fn seal(&self, before: Millis) -> impl Future<Output = Result<SealOutcome, StoreError>> + Send {
        self.blocking(move |s| s.seal_sync(before))
    }
}

// ----- alerts --------------------------------------------------------------

/// A dead letter as stored (the JSON the Redis store writes too).
fn letter_json(d: &DeadLetter) -> String {
    serde_json::json!({ "at": d.at, "hook": d.hook, "error": d.error, "payload": d.payload })
        .to_string()
}

fn letter_of(json: &str) -> Option<DeadLetter> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(DeadLetter {
        at: v.get("at")?.as_i64()?,
        hook: v.get("hook")?.as_str()?.to_owned(),
        error: v.get("error")?.as_str()?.to_owned(),
        payload: v.get("payload")?.as_str()?.to_owned(),
    })
}

impl DiskStore {
    /// The lease lock, if `holder` holds the lease with `token`; held by the
    /// caller across its transaction, so no other acquisition comes between
    /// the check and the write.
    fn held_lease(
        &self,
        holder: &str,
        token: u64,
    ) -> Result<MutexGuard<'_, Option<(String, u64)>>, StoreError> {
        let lease = self.lease_lock();
        if lease
            .as_ref()
            .is_some_and(|(h, t)| h == holder && *t == token)
        {
            Ok(lease)
        } else {
            Err(StoreError::Fenced {
                holder: holder.to_owned(),
                token,
            })
        }
    }

    fn acquire_sync(
        &self,
        holder: &str,
        known: Option<&str>,
        grace_ms: u64,
    ) -> Result<LeaseGrant, StoreError> {
        let e = |e: redb::StorageError| self.err("taking the lease", e);
        let (epoch, epoch_at) = self.epoch_lock().clone();
        let mut grant = LeaseGrant {
            token: None,
            renewed: false,
            epoch: epoch.clone(),
            waiting_ms: None,
        };
        let mut lease = self.lease_lock();
        match lease.as_ref() {
            Some((h, t)) if h == holder => {
                grant.token = Some(*t);
                grant.renewed = true;
            }
            Some(_) => {}
            None => {
                let age = u64::try_from(now_ms().saturating_sub(epoch_at)).unwrap_or(0);
                if known.is_some_and(|k| k != epoch) && age < grace_ms {
                    grant.waiting_ms = Some(grace_ms - age);
                } else {
                    let txn = self.write()?;
                    let token;
                    {
                        let mut meta = txn
                            .open_table(META)
                            .map_err(|x| self.err("taking the lease", x))?;
                        token = meta_u64(&meta, "token").map_err(e)? + 1;
                        meta.insert("token", token.to_le_bytes().as_slice())
                            .map_err(e)?;
                    }
                    txn.commit().map_err(|x| self.err("taking the lease", x))?;
                    *lease = Some((holder.to_owned(), token));
                    grant.token = Some(token);
                }
            }
        }
        Ok(grant)
    }

    fn load_sync(&self) -> Result<AlertSnapshot, StoreError> {
        let e = |e: redb::StorageError| self.err("loading alert state", e);
        let txn = self.read()?;
        let meta = txn
            .open_table(META)
            .map_err(|x| self.err("loading alert state", x))?;
        let states = txn
            .open_table(STATES)
            .map_err(|x| self.err("loading alert state", x))?;
        let mut out = Vec::new();
        for item in states.iter().map_err(e)? {
            let (k, v) = item.map_err(e)?;
            out.push((k.value().to_owned(), v.value().to_owned()));
        }
        Ok(AlertSnapshot {
            last_evaluated: meta_i64(&meta, "last_evaluated").map_err(e)?,
            states: out,
        })
    }

    fn commit_sync(&self, holder: &str, token: u64, c: &AlertCommit) -> Result<u64, StoreError> {
        let e = |e: redb::StorageError| self.err("committing alert state", e);
        let open = |x: redb::TableError| self.err("committing alert state", x);
        let lease = self.held_lease(holder, token)?;
        let txn = self.write()?;
        let seq;
        {
            let mut meta = txn.open_table(META).map_err(open)?;
            if let Some(expected) = c.expect_last_evaluated {
                let found = meta_i64(&meta, "last_evaluated").map_err(e)?;
                if found != Some(expected) {
                    return Err(StoreError::Behind { expected, found });
                }
            }
            let mut states = txn.open_table(STATES).map_err(open)?;
            for (key, value) in &c.states {
                match value {
                    Some(v) => states.insert(key.as_str(), v.as_str()).map_err(e)?,
                    None => states.remove(key.as_str()).map_err(e)?,
                };
            }
            let mut outbox = txn.open_table(OUTBOX).map_err(open)?;
            let mut s = meta_u64(&meta, "outbox_seq").map_err(e)?;
            for p in &c.outbox {
                s += 1;
                outbox.insert(s, p.as_str()).map_err(e)?;
            }
            seq = s;
            meta.insert("outbox_seq", seq.to_le_bytes().as_slice())
                .map_err(e)?;
            meta.insert("last_evaluated", c.evaluated_at.to_le_bytes().as_slice())
                .map_err(e)?;
            let mut resolved = txn.open_table(RESOLVED).map_err(open)?;
            for (end, id, json) in &c.resolved {
                resolved
                    .insert((*end, id.as_str()), json.as_str())
                    .map_err(e)?;
            }
        }
        txn.commit()
            .map_err(|x| self.err("committing alert state", x))?;
        drop(lease);
        Ok(seq)
    }

    fn restore_sync(&self, holder: &str, token: u64, r: &AlertRestore) -> Result<(), StoreError> {
        let e = |e: redb::StorageError| self.err("writing the alert state back", e);
        let open = |x: redb::TableError| self.err("writing the alert state back", x);
        let lease = self.held_lease(holder, token)?;
        let txn = self.write()?;
        {
            let mut meta = txn.open_table(META).map_err(open)?;
            let counter = meta_u64(&meta, "token").map_err(e)?;
            if r.token_floor > counter {
                meta.insert("token", r.token_floor.to_le_bytes().as_slice())
                    .map_err(e)?;
            }
            if let Some(t) = r.last_evaluated {
                meta.insert("last_evaluated", t.to_le_bytes().as_slice())
                    .map_err(e)?;
            }
            let mut states = txn.open_table(STATES).map_err(open)?;
            states.retain(|_, _| false).map_err(e)?;
            for (k, v) in &r.states {
                states.insert(k.as_str(), v.as_str()).map_err(e)?;
            }
            let mut outbox = txn.open_table(OUTBOX).map_err(open)?;
            let mut seq = meta_u64(&meta, "outbox_seq").map_err(e)?.max(r.outbox_seq);
            for entry in &r.outbox {
                outbox
                    .insert(entry.seq, entry.payload.as_str())
                    .map_err(e)?;
                seq = seq.max(entry.seq);
            }
            meta.insert("outbox_seq", seq.to_le_bytes().as_slice())
                .map_err(e)?;
            let mut resolved = txn.open_table(RESOLVED).map_err(open)?;
            for (end, id, json) in &r.resolved {
                resolved
                    .insert((*end, id.as_str()), json.as_str())
                    .map_err(e)?;
            }
            let mut records = txn.open_table(RECORDS).map_err(open)?;
            for (kind, rec) in &r.records {
                let key = (kind.as_str(), rec.id.as_str());
                if records.get(key).map_err(e)?.is_none() {
                    records.insert(key, record_value(rec).as_str()).map_err(e)?;
                }
            }
            drop(records);
            let mut dead = txn.open_table(DEAD).map_err(open)?;
            if dead.is_empty().map_err(e)? {
                let letters = &r.dead_letters[..r.dead_letters.len().min(DEAD_LETTERS_MAX)];
                // Newest first in the image: the oldest gets the lowest seq.
                let mut s = meta_u64(&meta, "dead_seq").map_err(e)?;
                for d in letters.iter().rev() {
                    s += 1;
                    dead.insert(s, letter_json(d).as_str()).map_err(e)?;
                }
                meta.insert("dead_seq", s.to_le_bytes().as_slice())
                    .map_err(e)?;
            }
        }
        txn.commit()
            .map_err(|x| self.err("writing the alert state back", x))?;
        drop(lease);
        Ok(())
    }

    fn outbox_sync(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let e = |e: redb::StorageError| self.err("reading the outbox", e);
        let txn = self.read()?;
        let outbox = txn
            .open_table(OUTBOX)
            .map_err(|x| self.err("reading the outbox", x))?;
        let mut out = Vec::new();
        for item in outbox.iter().map_err(e)?.take(limit) {
            let (k, v) = item.map_err(e)?;
            out.push(OutboxEntry {
                seq: k.value(),
                payload: v.value().to_owned(),
            });
        }
        Ok(out)
    }

    fn ack_sync(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let e = |e: redb::StorageError| self.err("acknowledging outbox entries", e);
        let txn = self.write()?;
        {
            let mut outbox = txn
                .open_table(OUTBOX)
                .map_err(|x| self.err("acknowledging outbox entries", x))?;
            for s in seqs {
                outbox.remove(*s).map_err(e)?;
            }
        }
        txn.commit()
            .map_err(|x| self.err("acknowledging outbox entries", x))
    }

    fn outbox_len_sync(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let outbox = txn
            .open_table(OUTBOX)
            .map_err(|x| self.err("counting the outbox", x))?;
        outbox.len().map_err(|x| self.err("counting the outbox", x))
    }

    fn dead_letter_sync(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let e = |e: redb::StorageError| self.err("keeping a dead letter", e);
        let open = |x: redb::TableError| self.err("keeping a dead letter", x);
        let txn = self.write()?;
        {
            let mut meta = txn.open_table(META).map_err(open)?;
            let mut dead = txn.open_table(DEAD).map_err(open)?;
            let s = meta_u64(&meta, "dead_seq").map_err(e)? + 1;
            dead.insert(s, letter_json(letter).as_str()).map_err(e)?;
            meta.insert("dead_seq", s.to_le_bytes().as_slice())
                .map_err(e)?;
            let keep_from = s.saturating_sub(DEAD_LETTERS_MAX as u64 - 1);
            dead.retain(|k, _| k >= keep_from).map_err(e)?;
        }
        txn.commit()
            .map_err(|x| self.err("keeping a dead letter", x))
    }

    fn dead_letters_sync(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let e = |e: redb::StorageError| self.err("reading dead letters", e);
        let txn = self.read()?;
        let dead = txn
            .open_table(DEAD)
            .map_err(|x| self.err("reading dead letters", x))?;
        let mut out = Vec::new();
        for item in dead.iter().map_err(e)?.rev().take(limit) {
            let (_, v) = item.map_err(e)?;
            match letter_of(v.value()) {
                Some(d) => out.push(d),
                None => {
                    tracing::warn!(file = %self.inner.path.display(), "ignoring an unreadable dead letter");
                }
            }
        }
        Ok(out)
    }

    fn resolved_sync(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let e = |e: redb::StorageError| self.err("reading resolved incidents", e);
        let txn = self.read()?;
        let resolved = txn
            .open_table(RESOLVED)
            .map_err(|x| self.err("reading resolved incidents", x))?;
        let mut out = Vec::new();
        for item in resolved.range((from, "")..).map_err(e)? {
            let (k, v) = item.map_err(e)?;
            if k.value().0 > to || out.len() >= limit {
                break;
            }
            out.push(v.value().to_owned());
        }
        Ok(out)
    }

    fn prune_resolved_sync(&self, before: Millis) -> Result<usize, StoreError> {
        let e = |e: redb::StorageError| self.err("pruning resolved incidents", e);
        let txn = self.write()?;
        let n;
        {
            let mut resolved = txn
                .open_table(RESOLVED)
                .map_err(|x| self.err("pruning resolved incidents", x))?;
            let old: Vec<(i64, String)> = resolved
                .range(..(before, ""))
                .map_err(e)?
                .map(|i| {
                    i.map(|(k, _)| {
                        let (end, id) = k.value();
                        (end, id.to_owned())
                    })
                })
                .collect::<Result<_, _>>()
                .map_err(e)?;
            for (end, id) in &old {
                resolved.remove((*end, id.as_str())).map_err(e)?;
            }
            n = old.len();
        }
        txn.commit()
            .map_err(|x| self.err("pruning resolved incidents", x))?;
        Ok(n)
    }
}

impl DiskStore {
    fn records_sync(&self, kind: RecordKind) -> Result<Vec<Record>, StoreError> {
        let what = "reading silences or acknowledgements";
        let e = |x: redb::StorageError| self.err(what, x);
        let txn = self.read()?;
        let table = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(x) => return Err(self.err(what, x)),
        };
        let k = kind.as_str();
        let mut out = Vec::new();
        for item in table.range((k, "")..).map_err(e)? {
            let (key, value) = item.map_err(e)?;
            let (kk, id) = key.value();
            if kk != k {
                break;
            }
            if let Some(r) = parse_record(id, value.value()) {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn put_record_sync(
        &self,
        kind: RecordKind,
        record: &Record,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let what = "writing a silence or acknowledgement";
        let e = |x: redb::StorageError| self.err(what, x);
        let txn = self.write()?;
        {
            let mut table = txn.open_table(RECORDS).map_err(|x| self.err(what, x))?;
            let k = kind.as_str();
            let found = table
                .get((k, record.id.as_str()))
                .map_err(e)?
                .and_then(|v| parse_record(&record.id, v.value()))
                .map_or(0, |r| r.version);
            if found != expected {
                return Err(StoreError::Conflict {
                    kind: kind.as_str(),
                    id: record.id.clone(),
                    found,
                });
            }
            if found == 0 {
                let n = table
                    .range((k, "")..)
                    .map_err(e)?
                    .take_while(|i| i.as_ref().is_ok_and(|(key, _)| key.value().0 == k))
                    .count();
                if n >= RECORDS_MAX {
                    return Err(StoreError::Other(format!(
                        "more than {RECORDS_MAX} {}s are stored; expire or wait for old ones to be pruned",
                        kind.as_str()
                    )));
                }
            }
            let mut stored = record.clone();
            stored.version = expected + 1;
            table
                .insert((k, record.id.as_str()), record_value(&stored).as_str())
                .map_err(e)?;
        }
        txn.commit().map_err(|x| self.err(what, x))?;
        Ok(expected + 1)
    }

    fn prune_records_sync(&self, before: Millis) -> Result<usize, StoreError> {
        let what = "pruning silences and acknowledgements";
        let e = |x: redb::StorageError| self.err(what, x);
        let txn = self.write()?;
        let n;
        {
            let mut table = txn.open_table(RECORDS).map_err(|x| self.err(what, x))?;
            let old: Vec<(String, String)> = table
                .iter()
                .map_err(e)?
                .filter_map(|i| {
                    let (key, value) = i.ok()?;
                    let (k, id) = key.value();
                    let r = parse_record(id, value.value())?;
                    (r.keep_until < before).then(|| (k.to_owned(), id.to_owned()))
                })
                .collect();
            for (k, id) in &old {
                table.remove((k.as_str(), id.as_str())).map_err(e)?;
            }
            n = old.len();
        }
        txn.commit().map_err(|x| self.err(what, x))?;
        Ok(n)
    }
}

impl AlertStore for DiskStore {
    fn acquire(
        &self,
        request: LeaseRequest<'_>,
    ) -> impl Future<Output = Result<LeaseGrant, StoreError>> + Send {
        let holder = request.holder.to_owned();
        let known = request.known_epoch.map(str::to_owned);
        let grace = request.grace_ms;
        self.blocking(move |s| s.acquire_sync(&holder, known.as_deref(), grace))
    }

    fn restore(
        &self,
        holder: &str,
        token: u64,
        restore: &AlertRestore,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let holder = holder.to_owned();
        let restore = restore.clone();
        self.blocking(move |s| s.restore_sync(&holder, token, &restore))
    }

    fn release_lease(
        &self,
        holder: &str,
        token: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        if let Ok(mut lease) = self.held_lease(holder, token) {
            *lease = None;
        }
        std::future::ready(Ok(()))
    }

    fn lease(&self) -> impl Future<Output = Result<Option<LeaseInfo>, StoreError>> + Send {
        let lease = self.lease_lock().clone();
        std::future::ready(Ok(lease.map(|(holder, token)| LeaseInfo {
            holder,
            token,
            expires_in_ms: u64::MAX,
        })))
    }

    fn load(&self) -> impl Future<Output = Result<AlertSnapshot, StoreError>> + Send {
        self.blocking(DiskStore::load_sync)
    }

    fn commit(
        &self,
        holder: &str,
        token: u64,
        commit: &AlertCommit,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let holder = holder.to_owned();
        let commit = commit.clone();
        self.blocking(move |s| s.commit_sync(&holder, token, &commit))
    }

    fn outbox(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send {
        self.blocking(move |s| s.outbox_sync(limit))
    }

    fn ack(&self, seqs: &[u64]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let seqs = seqs.to_vec();
        self.blocking(move |s| s.ack_sync(&seqs))
    }

    fn outbox_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.blocking(DiskStore::outbox_len_sync)
    }

    fn dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let letter = letter.clone();
        self.blocking(move |s| s.dead_letter_sync(&letter))
    }

    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send {
        self.blocking(move |s| s.dead_letters_sync(limit))
    }

    fn resolved(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        self.blocking(move |s| s.resolved_sync(from, to, limit))
    }

    fn prune_resolved(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.blocking(move |s| s.prune_resolved_sync(before))
    }

    fn records(
        &self,
        kind: RecordKind,
    ) -> impl Future<Output = Result<Vec<Record>, StoreError>> + Send {
        self.blocking(move |s| s.records_sync(kind))
    }

    fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        json: &str,
        keep_until: Millis,
        expected: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let record = Record {
            id: id.to_owned(),
            version: 0,
            keep_until,
            json: json.to_owned(),
        };
        self.blocking(move |s| s.put_record_sync(kind, &record, expected))
    }

    fn prune_records(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.blocking(move |s| s.prune_records_sync(before))
    }
}
