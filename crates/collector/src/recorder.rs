//! The in-process recorder: a cheap-to-clone handle that applications (and
//! the collector's own StatsD/HTTP receivers) count into, drained once per
//! tick.
//!
//! Hot path: the standard counters live in a few cache-line-sized stripes of
//! atomics holding `f64`s; a thread picks a stripe once (round-robin) and
//! then only does relaxed compare-and-swap adds on it, so two threads
//! counting at once do not fight over one cache line.
//! [`Recorder::take_interval`] swaps every stripe back to zero and sums them
//! (per-interval delta semantics).
//!
//! Counts are `f64`: a sampled StatsD line (`@0.3`) stands for a fractional
//! number of events (3.33…), and latencies keep the precision a client sends
//! (no rounding to microseconds). A counter never decreases by adding: one
//! increment above [`MAX_COUNT`] (2^53, the largest integer an `f64` counts
//! exactly) is rejected and counted ([`RecorderStats::too_large`]), and a
//! per-interval sum that would pass it stays at it, counted
//! ([`RecorderStats::saturated`]).
//!
//! Custom fields (`custom.<name>`) are registered once under a lock and then
//! updated lock-free through [`CustomCounter`] / [`CustomGauge`] handles. The
//! convenience calls [`Recorder::add`] and [`Recorder::set`] look the handle up
//! under a read lock. At most [`RecorderConfig::max_custom_fields`] distinct
//! custom fields exist; updates of further names are dropped and counted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use metrics_model::field::StandardField;
use metrics_model::key::Key;

use crate::error::CollectorError;

/// How many stripes of standard counters a recorder has.
const STRIPES: usize = 8;

/// The default bound on distinct `custom.*` fields.
pub const DEFAULT_MAX_CUSTOM_FIELDS: usize = 100;

/// The largest increment accepted, and the largest per-interval sum of a
/// counter: 2^53, the largest integer an `f64` counts exactly. Latency sums
/// (ms) have the same bound.
pub const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// At most this many distinct values of one StatsD set are counted per
/// interval; further values are dropped and counted in
/// [`RecorderStats::set_values_dropped`].
pub const MAX_SET_VALUES: usize = 10_000;

/// Options of a [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderConfig {
    /// At most this many distinct `custom.*` fields; updates of further
    /// names are dropped and counted in [`RecorderStats::custom_dropped`].
    pub max_custom_fields: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            max_custom_fields: DEFAULT_MAX_CUSTOM_FIELDS,
        }
    }
}

/// Indices of the standard counters inside a stripe.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Requests = 0,
    LatencyMs = 1,
    EventsIn = 2,
    EventsOut = 3,
    Warnings = 4,
    Errors = 5,
    Criticals = 6,
}

const SLOTS: usize = 7;

/// One cache line of counters, each an `f64` as bits (0 bits = 0.0).
#[repr(align(64))]
#[derive(Default)]
struct Stripe([AtomicU64; SLOTS]);

/// A custom field's storage: an `f64` as bits, and for a set the distinct
/// values of the interval (hashed).
#[derive(Debug)]
struct CustomSlot {
    field: Key,
    kind: CustomKind,
    bits: AtomicU64,
    set: Mutex<HashSet<u64>>,
}

/// Whether a custom field is a counter (reset every tick), a gauge (keeps
/// its last value) or a set (distinct values per interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomKind {
    /// A per-interval delta, reported as 0 in ticks without updates.
    Counter,
    /// A value at the tick's instant: the last one set, kept across ticks.
    Gauge,
    /// The number of distinct values seen in the interval (StatsD `|s`),
    /// reported as 0 in ticks without updates.
    Set,
}

impl CustomKind {
    /// The kind's name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomKind::Counter => "counter",
            CustomKind::Gauge => "gauge",
            CustomKind::Set => "set",
        }
    }
}

struct Inner {
    stripes: [Stripe; STRIPES],
    custom: RwLock<HashMap<Box<str>, Arc<CustomSlot>>>,
    custom_dropped: AtomicU64,
    too_large: AtomicU64,
    saturated: AtomicU64,
    set_values_dropped: AtomicU64,
    config: RecorderConfig,
}

/// A cheap-to-clone handle counting the application metrics of one node.
///
/// Every clone counts into the same interval. See the [module docs](self).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters about the recorder itself (since it was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Distinct custom fields registered.
    pub custom_fields: usize,
    /// Updates dropped because the custom-field bound was reached.
    pub custom_dropped: u64,
    /// Increments rejected for being above [`MAX_COUNT`] (or not finite).
    pub too_large: u64,
    /// Increments that would have taken a per-interval sum past
    /// [`MAX_COUNT`]; the sum stayed at it.
    pub saturated: u64,
    /// Set values dropped because a set already had [`MAX_SET_VALUES`]
    /// distinct values in the interval.
    pub set_values_dropped: u64,
}

/// A custom counter handle: lock-free `add`.
#[derive(Debug, Clone)]
pub struct CustomCounter(Arc<CustomSlot>);

/// A custom gauge handle: lock-free `set`.
#[derive(Debug, Clone)]
pub struct CustomGauge(Arc<CustomSlot>);

impl CustomCounter {
    /// Adds `n` (finite, |n| ≤ [`MAX_COUNT`]; a negative `n` is a
    /// decrement). Anything else is ignored.
    pub fn add(&self, n: f64) {
        if n.is_finite() && n.abs() <= MAX_COUNT {
            add_f64(&self.0.bits, n);
        }
    }
}

impl CustomGauge {
    /// Sets the gauge (a non-finite value is ignored).
    pub fn set(&self, value: f64) {
        if value.is_finite() {
            self.0.bits.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    /// Adds `delta` (may be negative) to the gauge; an unset gauge counts
    /// from 0. A non-finite delta is ignored.
    pub fn add(&self, delta: f64) {
        if delta.is_finite() {
            gauge_add(&self.0.bits, delta);
        }
    }
}

fn gauge_add(bits: &AtomicU64, delta: f64) {
    let _ = bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        let cur = f64::from_bits(b);
        let base = if cur.is_nan() { 0.0 } else { cur };
        Some((base + delta).to_bits())
    });
}

/// Adds `n` to the `f64` in `bits`, keeping the sum within ±[`MAX_COUNT`];
/// returns whether it had to be held there (saturated).
#[inline]
fn add_f64(bits: &AtomicU64, n: f64) -> bool {
    let mut saturated = false;
    let _ = bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        let sum = f64::from_bits(b) + n;
        saturated = sum.abs() > MAX_COUNT;
        Some(sum.clamp(-MAX_COUNT, MAX_COUNT).to_bits())
    });
    saturated
}

/// `x` as JSON writes it (`1e300`, not three hundred digits), for messages.
pub(crate) fn show(x: f64) -> String {
    serde_json::Number::from_f64(x)
        .map_or_else(|| x.to_string(), |n| n.to_string().replace("e+", "e"))
}

/// Why an increment is refused, if it is: not finite, negative, or above
/// [`MAX_COUNT`].
fn check_increment(n: f64, what: &str) -> Result<(), String> {
    if !n.is_finite() {
        Err(format!("{what} {n} is not a finite number"))
    } else if n < 0.0 {
        Err(format!("{what} {} is negative", show(n)))
    } else if n > MAX_COUNT {
        Err(format!(
            "{what} {} is above the largest accepted increment, 2^53 = 9007199254740992 \
             (one such number would make the sum inexact); dropped",
            show(n)
        ))
    } else {
        Ok(())
    }
}

/// The stripe the current thread counts into.
fn stripe_index() -> usize {
    use std::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    MINE.with(|m| {
        let i = m.get();
        if i == usize::MAX {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            m.set(i);
            i
        } else {
            i
        }
    })
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(RecorderConfig::default())
    }
}

impl Recorder {
    /// A recorder with nothing counted yet.
    pub fn new(config: RecorderConfig) -> Self {
        Recorder {
            inner: Arc::new(Inner {
                stripes: Default::default(),
                custom: RwLock::new(HashMap::new()),
                custom_dropped: AtomicU64::new(0),
                too_large: AtomicU64::new(0),
                saturated: AtomicU64::new(0),
                set_values_dropped: AtomicU64::new(0),
                config,
            }),
        }
    }

    #[inline]
    fn bump(&self, slot: Slot, n: f64) {
        if add_f64(&self.inner.stripes[stripe_index()].0[slot as usize], n) {
            self.inner.saturated.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn refuse(&self, name: &str, reason: String) -> CollectorError {
        self.inner.too_large.fetch_add(1, Ordering::Relaxed);
        CollectorError::BadValue {
            name: name.to_owned(),
            reason,
        }
    }

    /// One HTTP request completed after `latency` (kept to the nanosecond).
    #[inline]
    pub fn request(&self, latency: Duration) {
        let ms = latency.as_nanos() as f64 / 1e6;
        if ms > MAX_COUNT {
            self.inner.too_large.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.bump(Slot::Requests, 1.0);
        self.bump(Slot::LatencyMs, ms);
    }

    /// `count` requests whose latencies add up to `total_latency`.
    pub fn requests(&self, count: u64, total_latency: Duration) {
        let _ = self.requests_ms(count as f64, total_latency.as_nanos() as f64 / 1e6);
    }

    /// `count` requests (possibly fractional: a sampled StatsD timer stands
    /// for 1/rate requests) whose latencies add up to `latency_sum_ms`
    /// milliseconds. Both must be finite, ≥ 0 and ≤ [`MAX_COUNT`]; otherwise
    /// nothing is counted, the refusal is counted in
    /// [`RecorderStats::too_large`], and the error says why.
    pub fn requests_ms(&self, count: f64, latency_sum_ms: f64) -> Result<(), CollectorError> {
        check_increment(count, "request count")
            .and_then(|()| check_increment(latency_sum_ms, "latency (ms)"))
            .map_err(|reason| self.refuse("bp.requests", reason))?;
        self.bump(Slot::Requests, count);
        self.bump(Slot::LatencyMs, latency_sum_ms);
        Ok(())
    }

    /// One incoming event (a message from a user).
    #[inline]
    pub fn event_in(&self) {
        self.bump(Slot::EventsIn, 1.0);
    }

    /// One outgoing event.
    #[inline]
    pub fn event_out(&self) {
        self.bump(Slot::EventsOut, 1.0);
    }

    /// One warning logged.
    #[inline]
    pub fn warning(&self) {
        self.bump(Slot::Warnings, 1.0);
    }

    /// One error logged.
    #[inline]
    pub fn error(&self) {
        self.bump(Slot::Errors, 1.0);
    }

    /// One critical error logged.
    #[inline]
    pub fn critical(&self) {
        self.bump(Slot::Criticals, 1.0);
    }

    /// Adds `n` (finite, ≥ 0, ≤ [`MAX_COUNT`]; fractional for sampled
    /// StatsD counters) to a standard counter (`requests.count` is not one
    /// of them: use [`Recorder::requests_ms`]). Other fields, and refused
    /// increments, give an error (refusals are counted in
    /// [`RecorderStats::too_large`]).
    pub fn add_standard(&self, field: StandardField, n: f64) -> Result<(), CollectorError> {
        let slot = match field {
            StandardField::EventsInCount => Slot::EventsIn,
            StandardField::EventsOutCount => Slot::EventsOut,
            StandardField::WarningsCount => Slot::Warnings,
            StandardField::ErrorsCount => Slot::Errors,
            StandardField::CriticalsCount => Slot::Criticals,
            other => {
                return Err(CollectorError::NotACounter(other.as_str().to_owned()));
            }
        };
        check_increment(n, "increment").map_err(|reason| self.refuse(field.as_str(), reason))?;
        self.bump(slot, n);
        Ok(())
    }

    /// The handle of custom counter `name` (the whole field name,
    /// `custom.<name>`), registering it if needed.
    pub fn counter(&self, name: &str) -> Result<CustomCounter, CollectorError> {
        self.slot(name, CustomKind::Counter).map(CustomCounter)
    }

    /// The handle of custom gauge `name` (`custom.<name>`), registering it if
    /// needed.
    pub fn gauge(&self, name: &str) -> Result<CustomGauge, CollectorError> {
        self.slot(name, CustomKind::Gauge).map(CustomGauge)
    }

    /// Adds `n` to custom counter `name`: finite, |n| ≤ [`MAX_COUNT`]; a
    /// negative `n` is a decrement (StatsD `decr`). The per-interval sum
    /// stays within ±[`MAX_COUNT`] (counted in [`RecorderStats::saturated`]).
    pub fn add(&self, name: &str, n: f64) -> Result<(), CollectorError> {
        check_increment(n.abs(), "increment").map_err(|reason| self.refuse(name, reason))?;
        let saturated = self.with_slot(name, CustomKind::Counter, |s| add_f64(&s.bits, n))?;
        if saturated {
            self.inner.saturated.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Adds `value` to the distinct values of custom set `name` in this
    /// interval (StatsD `|s`); the tick reports how many distinct values
    /// the set had. At most [`MAX_SET_VALUES`] distinct values are kept per
    /// set and interval; further ones are dropped and counted.
    pub fn set_insert(&self, name: &str, value: &str) -> Result<(), CollectorError> {
        use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
        // Fixed keys: the same value hashes the same in every interval.
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(value);
        let dropped = self.with_slot(name, CustomKind::Set, |s| {
            let mut set = s.set.lock().unwrap_or_else(PoisonError::into_inner);
            if set.len() >= MAX_SET_VALUES && !set.contains(&h) {
                true
            } else {
                set.insert(h);
                false
            }
        })?;
        if dropped {
            self.inner
                .set_values_dropped
                .fetch_add(1, Ordering::Relaxed);
            return Err(CollectorError::BadValue {
                name: name.to_owned(),
                reason: format!(
                    "the set already has the maximum of {MAX_SET_VALUES} distinct values in this \
                     interval; value dropped"
                ),
            });
        }
        Ok(())
    }

    /// Sets custom gauge `name` to `value` (finite).
    pub fn set(&self, name: &str, value: f64) -> Result<(), CollectorError> {
        if !value.is_finite() {
            return Err(CollectorError::BadValue {
                name: name.to_owned(),
                reason: format!("{value} is not a finite number"),
            });
        }
        self.with_slot(name, CustomKind::Gauge, |s| {
            s.bits.store(value.to_bits(), Ordering::Relaxed);
        })
    }

    /// Adds `delta` (finite, may be negative) to custom gauge `name`.
    pub fn adjust(&self, name: &str, delta: f64) -> Result<(), CollectorError> {
        if !delta.is_finite() {
            return Err(CollectorError::BadValue {
                name: name.to_owned(),
                reason: format!("{delta} is not a finite number"),
            });
        }
        self.with_slot(name, CustomKind::Gauge, |s| gauge_add(&s.bits, delta))
    }

    fn slot(&self, name: &str, kind: CustomKind) -> Result<Arc<CustomSlot>, CollectorError> {
        self.with_slot(name, kind, Arc::clone)
    }

    /// Runs `f` on the slot of `name`, registering it if needed. The fast
    /// path (a known name) is one read lock and a hash lookup, no allocation.
    fn with_slot<T>(
        &self,
        name: &str,
        kind: CustomKind,
        f: impl FnOnce(&Arc<CustomSlot>) -> T,
    ) -> Result<T, CollectorError> {
        {
            let map = self
                .inner
                .custom
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = map.get(name) {
                return check_kind(name, slot, kind).map(|()| f(slot));
            }
        }
        let field = Key::parse_tick_key(name).map_err(|e| CollectorError::BadName {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        if !field.field().is_custom() {
            return Err(CollectorError::BadName {
                name: name.to_owned(),
                reason: "only custom.<name> fields (and their instances, custom.<name>[<instance>]) can be registered".to_owned(),
            });
        }
        let mut map = self
            .inner
            .custom
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = map.get(name) {
            return check_kind(name, slot, kind).map(|()| f(slot));
        }
        if map.len() >= self.inner.config.max_custom_fields {
            self.inner.custom_dropped.fetch_add(1, Ordering::Relaxed);
            return Err(CollectorError::TooManyCustomFields {
                name: name.to_owned(),
                max: self.inner.config.max_custom_fields,
            });
        }
        let initial = match kind {
            CustomKind::Counter | CustomKind::Set => 0.0,
            CustomKind::Gauge => f64::NAN,
        };
        let slot = Arc::new(CustomSlot {
            field,
            kind,
            bits: AtomicU64::new(f64::to_bits(initial)),
            set: Mutex::new(HashSet::new()),
        });
        let out = f(&slot);
        map.insert(name.into(), slot);
        Ok(out)
    }

    /// Counters about the recorder itself.
    pub fn stats(&self) -> RecorderStats {
        RecorderStats {
            custom_fields: self
                .inner
                .custom
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            custom_dropped: self.inner.custom_dropped.load(Ordering::Relaxed),
            too_large: self.inner.too_large.load(Ordering::Relaxed),
            saturated: self.inner.saturated.load(Ordering::Relaxed),
            set_values_dropped: self.inner.set_values_dropped.load(Ordering::Relaxed),
        }
    }

    /// Ends the current interval: returns what was counted since the last
    /// call and resets the counters (gauges keep their value).
    ///
    /// A `request` racing with this call may have its count in one interval
    /// and its latency in the next; nothing is lost. Counts may be
    /// fractional (sampled StatsD lines).
    pub fn take_interval(&self) -> Vec<(Key, f64)> {
        let mut sums = [0.0f64; SLOTS];
        for stripe in &self.inner.stripes {
            for (sum, cell) in sums.iter_mut().zip(&stripe.0) {
                *sum += f64::from_bits(cell.swap(0, Ordering::Relaxed));
            }
        }
        for sum in &mut sums {
            // Eight stripes each within the bound may add up past it.
            if *sum > MAX_COUNT {
                *sum = MAX_COUNT;
                self.inner.saturated.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = sums[Slot::Requests as usize];
        let latency_ms = sums[Slot::LatencyMs as usize];
        let mut out = Vec::with_capacity(SLOTS + 4);
        out.push((StandardField::RequestsCount.into(), count));
        out.push((StandardField::RequestsLatencySum.into(), latency_ms));
        if count > 0.0 && latency_ms > 0.0 {
            out.push((
                StandardField::RequestsLatencyAvg.into(),
                round_to(latency_ms / count, 3),
            ));
        }
        for (field, slot) in [
            (StandardField::EventsInCount, Slot::EventsIn),
            (StandardField::EventsOutCount, Slot::EventsOut),
            (StandardField::WarningsCount, Slot::Warnings),
            (StandardField::ErrorsCount, Slot::Errors),
            (StandardField::CriticalsCount, Slot::Criticals),
        ] {
            out.push((field.into(), sums[slot as usize]));
        }
        let map = self
            .inner
            .custom
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in map.values() {
            let value = match slot.kind {
                CustomKind::Counter => f64::from_bits(slot.bits.swap(0, Ordering::Relaxed)),
                CustomKind::Gauge => f64::from_bits(slot.bits.load(Ordering::Relaxed)),
                CustomKind::Set => {
                    let mut set = slot.set.lock().unwrap_or_else(PoisonError::into_inner);
                    let n = set.len() as f64;
                    set.clear();
                    n
                }
            };
            if value.is_finite() {
                out.push((slot.field.clone(), value));
            }
        }
        out
    }
}

fn check_kind(name: &str, slot: &CustomSlot, kind: CustomKind) -> Result<(), CollectorError> {
    if slot.kind == kind {
        Ok(())
    } else {
        Err(CollectorError::KindMismatch {
            name: name.to_owned(),
            registered: slot.kind,
        })
    }
}

/// Rounds `x` to `decimals` decimal places (half away from zero).
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(r: &Recorder) -> std::collections::BTreeMap<String, f64> {
        r.take_interval()
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect()
    }

    #[test]
    fn deltas_reset_each_interval() {
        let r = Recorder::default();
        let r2 = r.clone();
        r.request(Duration::from_millis(12));
        r2.request(Duration::from_micros(3_500));
        r.event_in();
        r.event_out();
        r2.event_out();
        r.warning();
        r.error();
        r.critical();
        let v = values(&r);
        assert_eq!(v["requests.count"], 2.0);
        assert_eq!(v["requests.latency_sum"], 15.5);
        assert_eq!(v["requests.latency_avg"], 7.75);
        assert_eq!(v["eventsIn.count"], 1.0);
        assert_eq!(v["eventsOut.count"], 2.0);
        assert_eq!(
            (v["warnings.count"], v["errors.count"], v["criticals.count"]),
            (1.0, 1.0, 1.0)
        );
        let v = values(&r);
        assert_eq!(v["requests.count"], 0.0);
        assert_eq!(v["requests.latency_sum"], 0.0);
        assert!(!v.contains_key("requests.latency_avg"));
        assert_eq!(v["errors.count"], 0.0);
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let r = Recorder::default();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        r.request(Duration::from_millis(1));
                        r.error();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let v = values(&r);
        assert_eq!(v["requests.count"], 40_000.0);
        assert_eq!(v["requests.latency_sum"], 40_000.0);
        assert_eq!(v["errors.count"], 40_000.0);
    }

    #[test]
    fn custom_counters_and_gauges() {
        let r = Recorder::default();
        r.add("custom.jobs", 3.0).unwrap();
        r.counter("custom.jobs").unwrap().add(2.0);
        r.set("custom.queue_depth", 17.0).unwrap();
        r.adjust("custom.temp", -2.5).unwrap();
        let v = values(&r);
        assert_eq!(v["custom.jobs"], 5.0);
        assert_eq!(v["custom.queue_depth"], 17.0);
        assert_eq!(v["custom.temp"], -2.5);
        let v = values(&r);
        assert_eq!(v["custom.jobs"], 0.0, "counters reset");
        assert_eq!(v["custom.queue_depth"], 17.0, "gauges keep their value");
        // an unset gauge is absent
        r.gauge("custom.never").unwrap();
        assert!(!values(&r).contains_key("custom.never"));
    }

    #[test]
    fn custom_errors_name_the_field() {
        let r = Recorder::default();
        let e = r.add("custom.a b", 1.0).unwrap_err().to_string();
        assert!(e.contains("\"custom.a b\""), "{e}");
        let e = r.add("cpu.usage", 1.0).unwrap_err().to_string();
        assert!(e.contains("cpu.usage") && e.contains("custom"), "{e}");
        let e = r.add("custom.x", f64::INFINITY).unwrap_err().to_string();
        assert!(e.contains("custom.x"), "{e}");
        r.set("custom.g", 1.0).unwrap();
        let e = r.add("custom.g", 1.0).unwrap_err().to_string();
        assert!(e.contains("custom.g") && e.contains("gauge"), "{e}");
        let e = r.set("custom.g", f64::NAN).unwrap_err().to_string();
        assert!(e.contains("custom.g"), "{e}");
    }

    #[test]
    fn custom_fields_are_bounded() {
        let r = Recorder::new(RecorderConfig {
            max_custom_fields: 3,
        });
        for i in 0..5 {
            let res = r.add(&format!("custom.f{i}"), 1.0);
            assert_eq!(res.is_ok(), i < 3, "{i}");
        }
        // known names still work
        r.add("custom.f0", 1.0).unwrap();
        assert_eq!(
            r.stats(),
            RecorderStats {
                custom_fields: 3,
                custom_dropped: 2,
                ..RecorderStats::default()
            }
        );
        let v = values(&r);
        assert_eq!(v.keys().filter(|k| k.starts_with("custom.")).count(), 3);
        assert_eq!(v["custom.f0"], 2.0);
    }

    #[test]
    fn add_standard() {
        let r = Recorder::default();
        r.add_standard(StandardField::EventsInCount, 4.0).unwrap();
        assert!(r.add_standard(StandardField::CpuUsage, 1.0).is_err());
        assert_eq!(values(&r)["eventsIn.count"], 4.0);
    }

    #[test]
    fn counters_never_wrap() {
        let r = Recorder::default();
        // One increment above 2^53 is refused, counted, and changes nothing.
        let e = r
            .add_standard(StandardField::WarningsCount, u64::MAX as f64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("warnings.count") && e.contains("2^53"), "{e}");
        r.add_standard(StandardField::WarningsCount, 2.0).unwrap();
        assert_eq!(values(&r)["warnings.count"], 2.0);
        assert_eq!(r.stats().too_large, 1);
        // Sums stay at 2^53 instead of wrapping.
        r.add_standard(StandardField::ErrorsCount, MAX_COUNT)
            .unwrap();
        r.add_standard(StandardField::ErrorsCount, MAX_COUNT)
            .unwrap();
        r.add_standard(StandardField::ErrorsCount, 5.0).unwrap();
        assert_eq!(values(&r)["errors.count"], MAX_COUNT);
        assert!(r.stats().saturated >= 2, "{:?}", r.stats());
        // Latencies: a huge one is refused, not wrapped into the next.
        assert!(r.requests_ms(1.0, 1e300).is_err());
        r.requests_ms(1.0, 5.0).unwrap();
        let v = values(&r);
        assert_eq!((v["requests.count"], v["requests.latency_sum"]), (1.0, 5.0));
        // Custom counters take decrements, within the same bound.
        r.add("custom.jobs", 3.0).unwrap();
        r.add("custom.jobs", -5.0).unwrap();
        assert!(r.add("custom.jobs", -1e20).is_err());
        assert_eq!(values(&r)["custom.jobs"], -2.0);
    }

    #[test]
    fn latency_keeps_its_precision() {
        let r = Recorder::default();
        r.requests_ms(1.0, 218.599_52).unwrap();
        r.request(Duration::from_nanos(1_500));
        let v = values(&r);
        assert!(
            (v["requests.latency_sum"] - 218.601_02).abs() < 1e-9,
            "{}",
            v["requests.latency_sum"]
        );
    }

    #[test]
    fn fractional_counts() {
        let r = Recorder::default();
        r.requests_ms(1.0 / 0.3, 12.0 / 0.3).unwrap();
        let v = values(&r);
        assert!((v["requests.count"] - 10.0 / 3.0).abs() < 1e-12);
        assert!((v["requests.latency_sum"] - 40.0).abs() < 1e-9);
        assert_eq!(v["requests.latency_avg"], 12.0);
    }

    #[test]
    fn sets_count_distinct_values_per_interval() {
        let r = Recorder::default();
        for u in ["alice", "bob", "alice"] {
            r.set_insert("custom.users", u).unwrap();
        }
        assert_eq!(values(&r)["custom.users"], 2.0);
        assert_eq!(values(&r)["custom.users"], 0.0, "reset every interval");
        let e = r.add("custom.users", 1.0).unwrap_err().to_string();
        assert!(e.contains("already registered as a set"), "{e}");
        for i in 0..MAX_SET_VALUES + 3 {
            let _ = r.set_insert("custom.users", &i.to_string());
        }
        assert_eq!(values(&r)["custom.users"], MAX_SET_VALUES as f64);
        assert_eq!(r.stats().set_values_dropped, 3);
    }
}
