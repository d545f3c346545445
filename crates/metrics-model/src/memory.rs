//! [`MemoryStore`]: the in-memory [`TickStore`] of standalone mode and tests.
//!
//! It keeps the same promises as the Redis store: appends are idempotent per
//! (host, `ts`) (the first tick seen wins), accept ticks in any order, and
//! every stored tick gets a place in one arrival order that
//! [`TickStore::read_new`] follows (within one append call, a host's ticks
//! arrive in `ts` order). Timestamps before the Unix epoch are
//! refused, as the Redis store must refuse them (stream IDs are unsigned).
//!
//! All state sits behind one `std::sync::Mutex`; no lock is held across an
//! `.await` (the futures are ready at once). Clones share the state.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::host::HostName;
use crate::store::{AppendOutcome, HostInfo, NewTicks, PruneOutcome, StoreError, TickStore};
use crate::tick::Tick;
use crate::time::Millis;

/// A position in a [`MemoryStore`]'s arrival order: the number of ticks
/// appended before it (pruned ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryCursor(pub u64);

/// An in-memory tick store. Cloning is cheap: clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per host: ticks by `ts`, each with its arrival sequence number.
    hosts: HashMap<HostName, BTreeMap<Millis, (u64, Tick)>>,
    /// (sequence number, host, ts) in arrival order.
    arrivals: BTreeMap<u64, (HostName, Millis)>,
    /// The sequence number the next stored tick gets (starts at 1).
    next_seq: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of ticks stored, all hosts together.
    pub fn len(&self) -> usize {
        self.lock().arrivals.len()
    }

    /// Whether no tick is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in
        // a way later calls would trip on (every update is a few inserts), so
        // a poisoned lock is taken over.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Checks what every store refuses: timestamps before the Unix epoch.
///
/// # Errors
/// [`StoreError::Other`] naming the first bad tick.
pub fn check_ticks(ticks: &[Tick]) -> Result<(), StoreError> {
    match ticks.iter().find(|t| t.ts < 0) {
        Some(t) => Err(StoreError::Other(format!(
            "tick of host {}: ts {} is before 1970-01-01T00:00:00Z; stores keep ticks from the Unix epoch on",
            t.host, t.ts
        ))),
        None => Ok(()),
    }
}

impl Inner {
    fn append(&mut self, ticks: &[Tick]) -> Result<AppendOutcome, StoreError> {
        check_ticks(ticks)?;
        // Within one call, a host's ticks arrive in `ts` order (as in the
        // Redis store); the sort is stable, so the first of two duplicates
        // still wins.
        let mut sorted: Vec<&Tick> = ticks.iter().collect();
        sorted.sort_by_key(|t| t.ts);
        let mut out = AppendOutcome::default();
        for tick in sorted {
            let series = self.hosts.entry(tick.host.clone()).or_default();
            if series.contains_key(&tick.ts) {
                out.duplicates += 1;
                continue;
            }
            self.next_seq = self.next_seq.max(1);
            let seq = self.next_seq;
            self.next_seq += 1;
            series.insert(tick.ts, (seq, tick.clone()));
            self.arrivals.insert(seq, (tick.host.clone(), tick.ts));
            out.written += 1;
        }
        Ok(out)
    }

    fn range(&self, host: &HostName, from: Millis, to: Millis) -> Vec<Tick> {
        if from > to {
            return Vec::new();
        }
        self.hosts.get(host).map_or_else(Vec::new, |series| {
            series
                .range(from..=to)
                .map(|(_, (_, t))| t.clone())
                .collect()
        })
    }

    fn read_new(&self, cursor: MemoryCursor) -> NewTicks<MemoryCursor> {
        let mut ticks = Vec::new();
        let mut last = cursor.0;
        for (&seq, (host, ts)) in self.arrivals.range(cursor.0.saturating_add(1)..) {
            if let Some((_, t)) = self.hosts.get(host).and_then(|s| s.get(ts)) {
                ticks.push(t.clone());
            }
            last = seq;
        }
        NewTicks {
            ticks,
            cursor: MemoryCursor(last),
        }
    }

    fn cursor_now(&self) -> MemoryCursor {
        MemoryCursor(self.next_seq.saturating_sub(1))
    }

    fn hosts(&self) -> Vec<HostInfo> {
        let mut out: Vec<HostInfo> = self
            .hosts
            .iter()
            .filter_map(|(host, series)| {
                series.last_key_value().map(|(&ts, _)| HostInfo {
                    host: host.clone(),
                    last_seen: ts,
                })
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    fn prune(&mut self, before: Millis) -> PruneOutcome {
        let mut out = PruneOutcome::default();
        let arrivals = &mut self.arrivals;
        self.hosts.retain(|_, series| {
            let kept = series.split_off(&before);
            for (_, (seq, _)) in std::mem::replace(series, kept) {
                arrivals.remove(&seq);
                out.ticks_removed += 1;
            }
            if series.is_empty() {
                out.hosts_removed += 1;
                false
            } else {
                true
            }
        });
        out
    }
}

impl TickStore for MemoryStore {
    type Cursor = MemoryCursor;

    fn append(
        &self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        ready(self.lock().append(ticks))
    }

    fn range(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<Tick>, StoreError>> + Send {
        ready(Ok(self.lock().range(host, from, to)))
    }

    fn read_new(
        &self,
        cursor: &MemoryCursor,
    ) -> impl Future<Output = Result<NewTicks<MemoryCursor>, StoreError>> + Send {
        ready(Ok(self.lock().read_new(*cursor)))
    }

    fn cursor_now(&self) -> impl Future<Output = Result<MemoryCursor, StoreError>> + Send {
        ready(Ok(self.lock().cursor_now()))
    }

    fn hosts(&self) -> impl Future<Output = Result<Vec<HostInfo>, StoreError>> + Send {
        ready(Ok(self.lock().hosts()))
    }

    fn prune(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send {
        ready(Ok(self.lock().prune(before)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::StandardField;

    fn tick(host: &str, ts: Millis, cpu: f64) -> Tick {
        Tick::new(
            host.parse().unwrap(),
            ts,
            [(StandardField::CpuUsage.into(), cpu)],
        )
    }

    fn now<F: Future>(f: F) -> F::Output {
        // The futures of `MemoryStore` are ready at once.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("MemoryStore future was not ready"),
        }
    }

    #[test]
    fn first_seen_wins_and_arrival_order() {
        let s = MemoryStore::new();
        let out =
            now(s.append(&[tick("a", 20, 1.0), tick("a", 10, 2.0), tick("a", 20, 3.0)])).unwrap();
        assert_eq!((out.written, out.duplicates), (2, 1));
        let got = now(s.range(&"a".parse().unwrap(), 0, 100)).unwrap();
        assert_eq!(
            got.iter()
                .map(|t| (t.ts, t.get(&StandardField::CpuUsage.into())))
                .collect::<Vec<_>>(),
            vec![(10, Some(2.0)), (20, Some(1.0))]
        );
        let c = now(s.cursor_now()).unwrap();
        now(s.append(&[tick("b", 5, 0.5)])).unwrap();
        let new = now(s.read_new(&c)).unwrap();
        assert_eq!(new.ticks.len(), 1);
        assert_eq!(new.ticks[0].ts, 5);
        assert!(now(s.append(&[tick("b", -1, 0.5)])).is_err());
        let p = now(s.prune(11)).unwrap();
        assert_eq!((p.ticks_removed, p.hosts_removed), (2, 1));
        assert_eq!(s.len(), 1);
    }
}
