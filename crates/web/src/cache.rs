//! The downsampling cache: what makes a 24 h or 7 d view of 50 nodes cheap.
//!
//! Per node, two tiers of the twelve version-1 standard fields and four
//! [`Derived`] columns (the tick's highest disk usage over its mounts, with
//! that mount; net receive, send and errors summed over its interfaces):
//! - **raw**: every tick of the last [`RAW_SPAN_MS`] (25 h) as columns
//!   (`ts: i64`, one `f32` column per field, NaN when absent, and a `u16`
//!   mount index), ≈ 74 bytes per tick, ≈ 0.7 MB per node at a 10 s
//!   interval;
//! - **rollup**: 5-minute buckets (sum, min, max, count per field) of the
//!   last [`ROLLUP_SPAN_MS`] (8 d), built on the first request that reaches
//!   further back than the raw tier (one range read of the store per node)
//!   and then kept up to date from the raw tier; ≈ 0.9 MB per node.
//!
//! Per node it also keeps the newest value of every instanced standard key
//! (`disk.*[m]`, `io.*[d]`, `net.*[i]`, `process.*[p]`) seen in the raw
//! tier, with its `ts` (at most [`MAX_LATEST`] instances per field): the
//! "latest values" of the disks, network and processes views.
//!
//! A request refreshes a node at most once per [`REFRESH_EVERY`] with one
//! range read from the node's newest cached tick minus [`OVERLAP_MS`] (late
//! ticks within that overlap are merged in; older late ticks reach the
//! dashboard only after a restart). Values are `f32` in the cache: about 7
//! significant digits, plenty for percentages and counts.
//!
//! Other keys (custom fields, the version-2 fields, keys with an instance)
//! are not cached as series: their ranges are read from the store on each
//! request (see [`downsample_ticks`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use metrics_model::store::{StoreError, TickStore};
use metrics_model::time::{Millis, floor_to};
use metrics_model::{Field, HostName, Instance, Key, StandardField, Tick};

/// How far back the raw tier reaches.
pub const RAW_SPAN_MS: i64 = 25 * 3_600_000;
/// The rollup tier's bucket width.
pub const ROLLUP_MS: i64 = 300_000;
/// How far back the rollup tier reaches.
pub const ROLLUP_SPAN_MS: i64 = 8 * 86_400_000;
/// A node is read from the store again at most this often.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Each refresh re-reads this much before the newest cached tick.
pub const OVERLAP_MS: i64 = 60_000;
/// Buckets per series at most.
pub const MAX_POINTS: i64 = 2_000;

const NF: usize = StandardField::V1.len();

/// Per-tick values derived from a tick's instanced keys, cached as columns
/// after the standard ones in both tiers, so that window peaks and sums
/// across instances cost no store read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    /// The tick's highest `disk.usage[m]` over its mounts (the mount is kept
    /// alongside: [`HostCache::disk_peak`]).
    DiskPeak,
    /// `net.rx[i]` summed over the tick's interfaces.
    NetRx,
    /// `net.tx[i]` summed over the tick's interfaces.
    NetTx,
    /// `net.errors.count[i]` summed over the tick's interfaces.
    NetErrors,
}

const ND: usize = 4;
/// Columns per tick: the version-1 standard fields, then [`Derived`].
const NC: usize = NF + ND;
const DISK_PEAK: usize = NF;

fn derived_index(d: Derived) -> usize {
    NF + d as usize
}

/// The most distinct mounts a node's cache numbers (for the mount of its
/// disk peak); a peak on a mount beyond them is kept without its mount.
pub const MAX_MOUNTS: usize = 4_096;
const NO_MOUNT: u16 = u16::MAX;
/// The most instances per field whose newest value a node's cache keeps
/// (mounts, interfaces, devices, processes); instances first seen once a
/// field has that many are ignored until older ones leave the raw tier.
pub const MAX_LATEST: usize = 256;

/// The cached field `key` is, if any: a bare version-1 standard field.
pub fn cached_field(key: &Key) -> Option<StandardField> {
    match (key.field(), key.instance()) {
        (Field::Standard(f), None) if (*f as usize) < NF => Some(*f),
        _ => None,
    }
}

/// A statistic of a bucket: the rules engine's aggregation (one enum for
/// both), of which the cache answers all but `last` (it keeps sums,
/// extremes and counts per bucket, not the last value).
pub use rules_engine::Aggregation as Stat;

/// The statistics a client can ask for, with their names in the API.
pub const STATS: [(Stat, &str); 5] = [
    (Stat::Avg, "avg"),
    (Stat::Min, "min"),
    (Stat::Max, "max"),
    (Stat::Sum, "sum"),
    (Stat::Count, "count"),
];

/// The statistic of that name, if the API offers it.
pub fn stat_from_name(name: &str) -> Option<Stat> {
    STATS.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
}

/// Sum, min, max and count of values.
#[derive(Debug, Clone, Copy)]
pub struct Acc {
    /// Sum.
    pub sum: f64,
    /// Smallest.
    pub min: f32,
    /// Largest.
    pub max: f32,
    /// How many.
    pub n: u32,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            sum: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            n: 0,
        }
    }
}

impl Acc {
    fn add(&mut self, v: f32) {
        self.sum += f64::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.n += 1;
    }

    fn merge(&mut self, o: &Acc) {
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.n += o.n;
    }

    /// The statistic; `None` for an empty bucket (except `count`, 0, and
    /// `sum`, which is also `None`: no tick, no total), and for `last`,
    /// which buckets do not keep.
    pub fn get(&self, stat: Stat) -> Option<f64> {
        if self.n == 0 {
            return (stat == Stat::Count).then_some(0.0);
        }
        Some(match stat {
            Stat::Avg => self.sum / f64::from(self.n),
            Stat::Min => f64::from(self.min),
            Stat::Max => f64::from(self.max),
            Stat::Sum => self.sum,
            Stat::Count => f64::from(self.n),
            Stat::Last => return None,
        })
    }
}

/// A time grid: buckets `[t0 + i·step, t0 + (i+1)·step)`, `i < n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Start of the first bucket (a multiple of `step` since the epoch).
    pub t0: Millis,
    /// Bucket width, ms.
    pub step: i64,
    /// Number of buckets.
    pub n: usize,
}

impl Grid {
    /// The grid covering `from..=to` with buckets of `step` aligned to the
    /// epoch.
    pub fn new(from: Millis, to: Millis, step: i64) -> Grid {
        let t0 = floor_to(from, step);
        let n = ((to - t0) / step + 1).max(0) as usize;
        Grid { t0, step, n }
    }

    fn index(&self, ts: Millis) -> Option<usize> {
        if ts < self.t0 {
            return None;
        }
        let i = ((ts - self.t0) / self.step) as usize;
        (i < self.n).then_some(i)
    }
}

/// The smallest step (a multiple of `unit`) that keeps `from..=to` within
/// [`MAX_POINTS`] buckets, and at least `wanted`.
pub fn clamp_step(from: Millis, to: Millis, wanted: i64, unit: i64) -> i64 {
    let span = (to - from).max(1);
    let min = (span + MAX_POINTS - 1) / MAX_POINTS;
    let step = wanted.max(min).max(unit);
    (step + unit - 1) / unit * unit
}

/// Downsamples ticks (any field, custom ones included) onto a grid.
pub fn downsample_ticks(ticks: &[Tick], field: &Key, grid: &Grid) -> Vec<Acc> {
    let mut out = vec![Acc::default(); grid.n];
    for t in ticks {
        if let (Some(i), Some(v)) = (grid.index(t.ts), t.get(field)) {
            out[i].add(v as f32);
        }
    }
    out
}

/// The cache of every node.
#[derive(Debug)]
pub struct SeriesCache {
    raw_span: i64,
    hosts: std::sync::Mutex<HashMap<HostName, Arc<tokio::sync::Mutex<HostCache>>>>,
    /// Long reads of the store at once ([`STORE_READS_IN_FLIGHT`]).
    reads: tokio::sync::Semaphore,
}

/// Long node reads (a whole raw tier, a rollup's days) at once, over every
/// request. The first 7-day view of 200 nodes reads about 1 GB of ticks to
/// build the rollups; all nodes at once, their replies queued on the
/// store's one connection ahead of every other command, and the other
/// requests of the page (incidents, in the benchmark) timed out behind
/// them. The alerter shares that connection in the same process.
pub const STORE_READS_IN_FLIGHT: usize = 8;

/// One node's cached data. Lock it through [`SeriesCache::host`].
#[derive(Debug, Default)]
pub struct HostCache {
    ts: Vec<Millis>,
    cols: Vec<Vec<f32>>,
    /// The raw tier holds every stored tick with `ts ≥ raw_from`.
    raw_from: Millis,
    refreshed: Option<Instant>,
    last: Option<Tick>,
    rollup: Option<Rollup>,
    /// Per raw tick, the mount of its [`Derived::DiskPeak`] (an index into
    /// `mounts`, or `NO_MOUNT`).
    peak_mount: Vec<u16>,
    /// The mounts numbered so far (at most [`MAX_MOUNTS`]).
    mounts: Vec<Instance>,
    mount_ids: HashMap<Instance, u16>,
    /// The newest value (and its `ts`) of each instanced standard key seen
    /// in the raw tier.
    latest: BTreeMap<Key, (Millis, f64)>,
    /// Keys in `latest` per standard field.
    latest_counts: HashMap<StandardField, usize>,
}

/// The rollup tier, column by column: a view of one field over 7 days
/// reads that field's cells only (24 bytes each, about 55 KB per node),
/// not every field's (a 7-day refresh of 200 nodes, cell by cell, moved
/// gigabytes through the CPU cache and was the dashboard's whole cost).
#[derive(Debug)]
struct Rollup {
    /// Start of the first cell, a multiple of [`ROLLUP_MS`]; complete from
    /// here.
    first: Millis,
    /// Per column ([`NC`]), one accumulator per 5-minute cell.
    cols: Vec<std::collections::VecDeque<Acc>>,
    /// Per cell, the mount of its highest disk peak.
    mounts: std::collections::VecDeque<u16>,
}

impl Rollup {
    fn new(first: Millis) -> Rollup {
        Rollup {
            first,
            cols: vec![std::collections::VecDeque::new(); NC],
            mounts: std::collections::VecDeque::new(),
        }
    }

    fn add(&mut self, ts: Millis, values: impl Iterator<Item = (usize, f32)>, mount: u16) {
        if ts < self.first {
            return;
        }
        let i = ((ts - self.first) / ROLLUP_MS) as usize;
        while self.mounts.len() <= i {
            for col in &mut self.cols {
                col.push_back(Acc::default());
            }
            self.mounts.push_back(NO_MOUNT);
        }
        for (f, v) in values {
            let acc = &mut self.cols[f][i];
            if f == DISK_PEAK && v > acc.max {
                self.mounts[i] = mount;
            }
            acc.add(v);
        }
    }

    fn trim(&mut self, before: Millis) {
        while self.first + ROLLUP_MS <= before && !self.mounts.is_empty() {
            for col in &mut self.cols {
                col.pop_front();
            }
            self.mounts.pop_front();
            self.first += ROLLUP_MS;
        }
    }
}

fn field_index(f: StandardField) -> usize {
    (f as usize).min(NF - 1)
}

impl SeriesCache {
    /// A cache whose raw tier spans `raw_span` ms.
    pub fn new(raw_span: i64) -> SeriesCache {
        SeriesCache {
            raw_span,
            hosts: std::sync::Mutex::new(HashMap::new()),
            reads: tokio::sync::Semaphore::new(STORE_READS_IN_FLIGHT),
        }
    }

    /// The node's cache entry (created empty).
    pub fn host(&self, host: &HostName) -> Arc<tokio::sync::Mutex<HostCache>> {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts.entry(host.clone()).or_default().clone()
    }

    /// Forgets nodes that are no longer in the store.
    pub fn retain(&self, known: &[HostName]) {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts.retain(|h, _| known.contains(h));
    }

    /// A permit for a long read (a node's whole raw tier, or its rollup
    /// tier's days): [`STORE_READS_IN_FLIGHT`] at once. Taken while the
    /// node's entry is locked; whoever holds a permit holds its own entry
    /// already and waits for no other, so there is no deadlock. The
    /// refreshes of a cached node (the last minute) take none.
    async fn heavy_read(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.reads
            .acquire()
            .await
            .map_err(|_| StoreError::Other("the series cache is closing".to_owned()))
    }

    /// Brings the node's raw tier up to date (at most once per
    /// [`REFRESH_EVERY`]); with `back_to` before the raw tier, also builds
    /// or extends the rollup tier back to it.
    pub async fn refresh<T: TickStore>(
        &self,
        store: &T,
        entry: &mut HostCache,
        host: &HostName,
        now: Millis,
        back_to: Millis,
    ) -> Result<(), StoreError> {
        let raw_start = now - self.raw_span;
        let stale = entry.refreshed.is_none_or(|r| r.elapsed() >= REFRESH_EVERY);
        if entry.refreshed.is_none() {
            let _permit = self.heavy_read().await?;
            entry.cols = vec![Vec::new(); NC];
            entry.raw_from = raw_start;
            let ticks = store.range(host, raw_start, Millis::MAX).await?;
            entry.merge(ticks);
            entry.refreshed = Some(Instant::now());
        } else if stale {
            let from = entry
                .ts
                .last()
                .map_or(entry.raw_from, |l| (l - OVERLAP_MS).max(entry.raw_from));
            let ticks = store.range(host, from, Millis::MAX).await?;
            entry.merge(ticks);
            entry.refreshed = Some(Instant::now());
        }
        entry.trim(raw_start - 600_000);
        if back_to < entry.raw_from {
            let wanted = floor_to(back_to.max(now - ROLLUP_SPAN_MS), ROLLUP_MS);
            let have = entry.rollup.as_ref().map_or(Millis::MAX, |r| r.first);
            if wanted < have {
                let _permit = self.heavy_read().await?;
                entry.extend_rollup(store, host, wanted, now).await?;
            }
        }
        if let Some(r) = entry.rollup.as_mut() {
            r.trim(now - ROLLUP_SPAN_MS);
        }
        Ok(())
    }
}

impl HostCache {
    /// The newest tick, all fields.
    pub fn last(&self) -> Option<&Tick> {
        self.last.as_ref()
    }

    /// Whether the raw tier covers ticks from `from` on.
    pub fn raw_covers(&self, from: Millis) -> bool {
        from >= self.raw_from
    }

    /// Downsamples a standard field onto a grid. The grid's step must be a
    /// multiple of [`ROLLUP_MS`] when the raw tier does not cover it.
    pub fn downsample(&self, field: StandardField, grid: &Grid) -> Vec<Acc> {
        let mut out = vec![Acc::default(); grid.n];
        let f = field_index(field);
        let end = grid.t0 + grid.step * grid.n as i64;
        if self.raw_covers(grid.t0) || self.rollup.is_none() {
            let Some(col) = self.cols.get(f) else {
                return out;
            };
            let lo = self.ts.partition_point(|t| *t < grid.t0);
            let hi = self.ts.partition_point(|t| *t < end);
            let mut i = 0usize;
            let mut bucket_end = grid.t0 + grid.step;
            for (ts, v) in self.ts[lo..hi].iter().zip(&col[lo..hi]) {
                if *ts >= bucket_end {
                    i = ((ts - grid.t0) / grid.step) as usize;
                    bucket_end = grid.t0 + (i as i64 + 1) * grid.step;
                }
                if !v.is_nan() {
                    out[i].add(*v);
                }
            }
            return out;
        }
        if let Some(r) = &self.rollup {
            for (k, acc) in r.cols[f].iter().enumerate() {
                let ts = r.first + k as i64 * ROLLUP_MS;
                if let Some(i) = grid.index(ts) {
                    out[i].merge(acc);
                }
            }
        }
        out
    }

    /// Aggregates a standard field over `from..=to` (one bucket).
    pub fn aggregate(&self, field: StandardField, from: Millis, to: Millis) -> Acc {
        self.aggregate_column(field_index(field), from, to)
    }

    /// Aggregates a derived column over `from..=to` (one bucket).
    pub fn aggregate_derived(&self, derived: Derived, from: Millis, to: Millis) -> Acc {
        self.aggregate_column(derived_index(derived), from, to)
    }

    /// The highest disk usage over `from..=to` of any mount, and that mount
    /// (`None` when beyond [`MAX_MOUNTS`]); the first such tick's on a tie.
    /// Beyond the raw tier, at 5-minute resolution like [`HostCache::aggregate`].
    pub fn disk_peak(&self, from: Millis, to: Millis) -> Option<(f32, Option<&Instance>)> {
        let mut best: Option<(f32, u16)> = None;
        let mut offer = |v: f32, m: u16| {
            if !v.is_nan() && best.is_none_or(|(b, _)| v > b) {
                best = Some((v, m));
            }
        };
        if self.raw_covers(from) || self.rollup.is_none() {
            if let Some(col) = self.cols.get(DISK_PEAK) {
                let lo = self.ts.partition_point(|t| *t < from);
                let hi = self.ts.partition_point(|t| *t <= to);
                for (v, m) in col[lo..hi].iter().zip(&self.peak_mount[lo..hi]) {
                    offer(*v, *m);
                }
            }
        } else if let Some(r) = &self.rollup {
            for (k, (acc, mount)) in r.cols[DISK_PEAK].iter().zip(&r.mounts).enumerate() {
                let ts = r.first + k as i64 * ROLLUP_MS;
                if ts + ROLLUP_MS > from && ts <= to && acc.n > 0 {
                    offer(acc.max, *mount);
                }
            }
        }
        best.map(|(v, m)| (v, self.mounts.get(usize::from(m))))
    }

    /// The newest value of each `field[i]` (an instanced standard field)
    /// whose newest tick lies in `from..=to`, by instance.
    pub fn latest_in(
        &self,
        field: StandardField,
        from: Millis,
        to: Millis,
    ) -> impl Iterator<Item = (&Instance, f64)> + '_ {
        let bare = Key::from(field);
        self.latest
            .range(bare..)
            .take_while(move |(k, _)| *k.field() == Field::Standard(field))
            .filter(move |(_, (ts, _))| *ts >= from && *ts <= to)
            .filter_map(|(k, (_, v))| k.instance().map(|i| (i, *v)))
    }

    fn aggregate_column(&self, f: usize, from: Millis, to: Millis) -> Acc {
        let mut acc = Acc::default();
        if self.raw_covers(from) || self.rollup.is_none() {
            if let Some(col) = self.cols.get(f) {
                let lo = self.ts.partition_point(|t| *t < from);
                let hi = self.ts.partition_point(|t| *t <= to);
                for v in &col[lo..hi] {
                    if !v.is_nan() {
                        acc.add(*v);
                    }
                }
            }
        } else if let Some(r) = &self.rollup {
            for (k, cell) in r.cols[f].iter().enumerate() {
                let ts = r.first + k as i64 * ROLLUP_MS;
                if ts + ROLLUP_MS > from && ts <= to {
                    acc.merge(cell);
                }
            }
        }
        acc
    }

    /// Merges ticks (any order, duplicates by `ts` ignored) into the raw tier
    /// and, for ticks new to it, the rollup tier.
    fn merge(&mut self, mut ticks: Vec<Tick>) {
        ticks.sort_by_key(|t| t.ts);
        for tick in ticks {
            if tick.ts < self.raw_from {
                continue;
            }
            let pos = self.ts.partition_point(|t| *t < tick.ts);
            if self.ts.get(pos) == Some(&tick.ts) {
                continue;
            }
            let (values, mount) = self.row(&tick);
            self.ts.insert(pos, tick.ts);
            for (f, col) in self.cols.iter_mut().enumerate() {
                col.insert(pos, values[f]);
            }
            self.peak_mount.insert(pos, mount);
            if let Some(r) = self.rollup.as_mut() {
                r.add(tick.ts, present(&values), mount);
            }
            self.note_latest(&tick);
            if self.last.as_ref().is_none_or(|l| l.ts < tick.ts) {
                self.last = Some(tick);
            }
        }
    }

    fn trim(&mut self, before: Millis) {
        let cut = self.ts.partition_point(|t| *t < before);
        // Trim in batches: shifting the columns is O(n).
        if cut > 0 && (cut >= 360 || cut * 10 >= self.ts.len()) {
            self.ts.drain(..cut);
            for col in &mut self.cols {
                col.drain(..cut);
            }
            self.peak_mount.drain(..cut);
        }
        if cut > 0 || self.raw_from < before {
            self.raw_from = self.raw_from.max(before);
        }
        let raw_from = self.raw_from;
        let counts = &mut self.latest_counts;
        self.latest.retain(|k, (ts, _)| {
            let keep = *ts >= raw_from;
            if let (false, Field::Standard(f)) = (keep, k.field()) {
                counts.entry(*f).and_modify(|n| *n -= 1);
            }
            keep
        });
    }

    /// The tick's cached columns, and the mount of its disk peak.
    fn row(&mut self, tick: &Tick) -> ([f32; NC], u16) {
        let mut values = [f32::NAN; NC];
        let mut peak: Option<(f64, &Instance)> = None;
        let mut sums = [None::<f64>; 3];
        for (key, v) in tick.values() {
            if let Some(s) = cached_field(key) {
                values[field_index(s)] = *v as f32;
                continue;
            }
            let (Field::Standard(f), Some(i)) = (key.field(), key.instance()) else {
                continue;
            };
            let sum = match f {
                StandardField::DiskUsage => {
                    if peak.is_none_or(|(p, _)| *v > p) {
                        peak = Some((*v, i));
                    }
                    continue;
                }
                StandardField::NetRx => &mut sums[0],
                StandardField::NetTx => &mut sums[1],
                StandardField::NetErrorsCount => &mut sums[2],
                _ => continue,
            };
            *sum = Some(sum.unwrap_or(0.0) + *v);
        }
        for (d, sum) in [Derived::NetRx, Derived::NetTx, Derived::NetErrors]
            .into_iter()
            .zip(sums)
        {
            if let Some(s) = sum {
                values[derived_index(d)] = s as f32;
            }
        }
        let mut mount = NO_MOUNT;
        if let Some((p, i)) = peak {
            values[DISK_PEAK] = p as f32;
            mount = self.mount_id(i);
        }
        (values, mount)
    }

    fn mount_id(&mut self, mount: &Instance) -> u16 {
        if let Some(id) = self.mount_ids.get(mount) {
            return *id;
        }
        if self.mounts.len() >= MAX_MOUNTS {
            return NO_MOUNT;
        }
        let id = self.mounts.len() as u16;
        self.mounts.push(mount.clone());
        self.mount_ids.insert(mount.clone(), id);
        id
    }

    /// Keeps the tick's instanced standard values where they are the
    /// newest of their key.
    fn note_latest(&mut self, tick: &Tick) {
        for (key, v) in tick.values() {
            let (Field::Standard(f), Some(_)) = (key.field(), key.instance()) else {
                continue;
            };
            if let Some(e) = self.latest.get_mut(key) {
                if e.0 < tick.ts {
                    *e = (tick.ts, *v);
                }
                continue;
            }
            let n = self.latest_counts.entry(*f).or_insert(0);
            if *n < MAX_LATEST {
                *n += 1;
                self.latest.insert(key.clone(), (tick.ts, *v));
            }
        }
    }

    /// Builds the rollup tier back to `wanted` (aligned): the store for the
    /// part before the raw tier, the raw tier for the rest.
    async fn extend_rollup<T: TickStore>(
        &mut self,
        store: &T,
        host: &HostName,
        wanted: Millis,
        now: Millis,
    ) -> Result<(), StoreError> {
        // Rebuild from scratch: simpler than prepending, and rare (once per
        // node, when a view first reaches past the raw tier).
        let mut rollup = Rollup::new(wanted);
        let raw_from = self.raw_from;
        let day = 86_400_000;
        let mut from = wanted;
        while from < raw_from {
            let to = (from + day).min(raw_from) - 1;
            for tick in store.range(host, from, to).await? {
                let (values, mount) = self.row(&tick);
                rollup.add(tick.ts, present(&values), mount);
            }
            from = to + 1;
        }
        for (k, ts) in self.ts.iter().enumerate() {
            rollup.add(
                *ts,
                self.cols
                    .iter()
                    .enumerate()
                    .map(|(f, c)| (f, c[k]))
                    .filter(|(_, v)| !v.is_nan()),
                self.peak_mount[k],
            );
        }
        let _ = now;
        self.rollup = Some(rollup);
        Ok(())
    }
}

fn present(values: &[f32; NC]) -> impl Iterator<Item = (usize, f32)> + '_ {
    values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_model::MemoryStore;

    fn tick(host: &str, ts: Millis, cpu: f64) -> Tick {
        Tick::new(
            host.parse().unwrap(),
            ts,
            [(Key::from(StandardField::CpuUsage), cpu)],
        )
    }

    #[test]
    fn steps() {
        // 15 minutes at 10 s: 91 buckets, fine.
        assert_eq!(clamp_step(0, 900_000, 10_000, 10_000), 10_000);
        // 7 days asked at 10 s: clamped so that at most 2,000 buckets remain.
        let s = clamp_step(0, 7 * 86_400_000, 10_000, ROLLUP_MS);
        assert_eq!(s, 600_000);
        assert!(Grid::new(0, 7 * 86_400_000, s).n as i64 <= MAX_POINTS + 1);
    }

    #[tokio::test]
    async fn raw_and_rollup_tiers_agree() {
        let store = MemoryStore::new();
        let now: Millis = 1_767_225_600_000;
        let host: HostName = "node-a".parse().unwrap();
        // Two days at 10 s with cpu = minute of the day.
        let ticks: Vec<Tick> = (0..(2 * 8640))
            .map(|i| {
                let ts = now - 2 * 86_400_000 + i * 10_000;
                tick("node-a", ts, ((ts / 60_000) % 1440) as f64)
            })
            .collect();
        store.append(&ticks).await.unwrap();
        let cache = SeriesCache::new(3_600_000);
        let entry = cache.host(&host);
        let mut e = entry.lock().await;
        cache
            .refresh(&store, &mut e, &host, now, now - 3_600_000)
            .await
            .unwrap();
        assert!(e.rollup.is_none());
        let grid = Grid::new(now - 3_600_000, now, 300_000);
        let raw = e.downsample(StandardField::CpuUsage, &grid);
        cache
            .refresh(&store, &mut e, &host, now, now - 86_400_000)
            .await
            .unwrap();
        assert!(e.rollup.is_some());
        assert!(!e.raw_covers(now - 86_400_000));
        let wide = Grid::new(now - 86_400_000, now, 300_000);
        let rolled = e.downsample(StandardField::CpuUsage, &wide);
        // The last hour's buckets are the same from both tiers.
        let offset = ((grid.t0 - wide.t0) / 300_000) as usize;
        for (i, a) in raw.iter().enumerate() {
            let b = &rolled[offset + i];
            assert_eq!(
                (a.n, a.get(Stat::Avg)),
                (b.n, b.get(Stat::Avg)),
                "bucket {i}"
            );
        }
        assert_eq!(rolled[0].n, 30);
        assert_eq!(
            rolled[0].get(Stat::Max),
            Some(((wide.t0 / 60_000) % 1440 + 4) as f64)
        );
        // A late tick within the overlap is merged into both tiers.
        store
            .append(&[tick("node-a", now - 5_000, 1000.0)])
            .await
            .unwrap();
        e.refreshed = Instant::now().checked_sub(REFRESH_EVERY);
        cache
            .refresh(&store, &mut e, &host, now, now - 86_400_000)
            .await
            .unwrap();
        assert_eq!(
            e.aggregate(StandardField::CpuUsage, now - 9_000, now)
                .get(Stat::Max),
            Some(1000.0)
        );
        let rolled = e.downsample(StandardField::CpuUsage, &wide);
        assert_eq!(rolled.iter().map(|a| a.n).sum::<u32>(), 8640 + 1);
    }

    fn breadth_tick(ts: Millis, values: &[(&str, f64)]) -> Tick {
        Tick::new(
            "node-a".parse().unwrap(),
            ts,
            values.iter().map(|(k, v)| (k.parse().unwrap(), *v)),
        )
    }

    #[tokio::test]
    async fn disk_peaks_network_sums_and_latest_values_in_both_tiers() {
        let store = MemoryStore::new();
        let now: Millis = 1_767_225_600_000;
        let host: HostName = "node-a".parse().unwrap();
        // Two days at 1 min: /var at 50 %, except 97 % two hours ago and 99 %
        // 30 hours ago (beyond the raw tier of 25 h); / at 60 %.
        let ticks: Vec<Tick> = (0..(2 * 1440))
            .map(|i| {
                let ts = now - 2 * 86_400_000 + i * 60_000;
                let var = match now - ts {
                    7_200_000 => 97.0,
                    108_000_000 => 99.0,
                    _ => 50.0,
                };
                breadth_tick(
                    ts,
                    &[
                        ("disk.usage[/var]", var),
                        ("disk.usage[/]", 60.0),
                        ("net.rx[eth0]", 100.0),
                        ("net.rx[eth1]", 20.0),
                        ("net.tx[eth0]", 5.0),
                        ("net.errors.count[eth1]", f64::from(i % 2 == 0)),
                        ("process.count[botpress]", 2.0),
                    ],
                )
            })
            .collect();
        store.append(&ticks).await.unwrap();
        let cache = SeriesCache::new(RAW_SPAN_MS);
        let entry = cache.host(&host);
        let mut e = entry.lock().await;
        cache
            .refresh(&store, &mut e, &host, now, now - 3 * 3_600_000)
            .await
            .unwrap();
        let mount =
            |p: Option<(f32, Option<&Instance>)>| p.map(|(v, m)| (v, m.unwrap().to_string()));
        // The raw tier: exact windows.
        assert_eq!(
            mount(e.disk_peak(now - 3 * 3_600_000, now)),
            Some((97.0, "/var".to_owned()))
        );
        assert_eq!(
            mount(e.disk_peak(now - 3_600_000, now)),
            Some((60.0, "/".to_owned()))
        );
        let rx = e.aggregate_derived(Derived::NetRx, now - 3_600_000, now);
        assert_eq!((rx.get(Stat::Max), rx.n), (Some(120.0), 60));
        let errors = e.aggregate_derived(Derived::NetErrors, now - 3_600_000 + 1, now);
        // Ticks 1..=59 minutes ago; those an even number of minutes ago.
        assert_eq!(errors.get(Stat::Sum), Some(29.0));
        assert_eq!(
            e.aggregate_derived(Derived::NetTx, now - 60_000, now)
                .get(Stat::Max),
            Some(5.0)
        );
        // The rollup tier reaches the older peak.
        cache
            .refresh(&store, &mut e, &host, now, now - 2 * 86_400_000)
            .await
            .unwrap();
        assert!(!e.raw_covers(now - 2 * 86_400_000));
        assert_eq!(
            mount(e.disk_peak(now - 2 * 86_400_000, now)),
            Some((99.0, "/var".to_owned()))
        );
        // Newest values per instance, only when they lie in the window.
        let latest: Vec<(String, f64)> = e
            .latest_in(StandardField::DiskUsage, now - 60_000, now)
            .map(|(i, v)| (i.to_string(), v))
            .collect();
        assert_eq!(latest, [("/".to_owned(), 60.0), ("/var".to_owned(), 50.0)]);
        assert_eq!(
            e.latest_in(StandardField::DiskUsage, now - 3_600_000, now - 120_000)
                .count(),
            0,
            "the newest values are after the window"
        );
        assert_eq!(
            e.latest_in(StandardField::ProcessCount, 0, now)
                .map(|(i, v)| (i.to_string(), v))
                .collect::<Vec<_>>(),
            [("botpress".to_owned(), 2.0)]
        );
        assert_eq!(e.latest_in(StandardField::DiskFree, 0, now).count(), 0);
    }
}
