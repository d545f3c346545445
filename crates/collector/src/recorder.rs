//! The in-process recorder: a cheap-to-clone handle that applications (and
//! the collector's own StatsD/HTTP receivers) count into, drained once per
//! tick.
//!
//! Hot path: the standard counters live in a few cache-line-sized stripes of
//! atomics; a thread picks a stripe once (round-robin) and then only does
//! relaxed `fetch_add`s on it, so two threads counting at once do not fight
//! over one cache line. [`Recorder::take_interval`] swaps every stripe back to
//! zero and sums them (per-interval delta semantics).
//!
//! Custom fields (`custom.<name>`) are registered once under a lock and then
//! updated lock-free through [`CustomCounter`] / [`CustomGauge`] handles. The
//! convenience calls [`Recorder::add`] and [`Recorder::set`] look the handle up
//! under a read lock. At most [`RecorderConfig::max_custom_fields`] distinct
//! custom fields exist; updates of further names are dropped and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use metrics_model::field::{Field, StandardField};

use crate::error::CollectorError;

/// How many stripes of standard counters a recorder has.
const STRIPES: usize = 8;

/// The default bound on distinct `custom.*` fields.
pub const DEFAULT_MAX_CUSTOM_FIELDS: usize = 100;

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
    LatencyMicros = 1,
    EventsIn = 2,
    EventsOut = 3,
    Warnings = 4,
    Errors = 5,
    Criticals = 6,
}

const SLOTS: usize = 7;

/// One cache line of counters.
#[repr(align(64))]
#[derive(Default)]
struct Stripe([AtomicU64; SLOTS]);

/// A custom field's storage: an `f64` as bits.
#[derive(Debug)]
struct CustomSlot {
    field: Field,
    kind: CustomKind,
    bits: AtomicU64,
}

/// Whether a custom field is a counter (reset every tick) or a gauge (keeps
/// its last value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomKind {
    /// A per-interval delta, reported as 0 in ticks without updates.
    Counter,
    /// A value at the tick's instant: the last one set, kept across ticks.
    Gauge,
}

struct Inner {
    stripes: [Stripe; STRIPES],
    custom: RwLock<HashMap<Box<str>, Arc<CustomSlot>>>,
    custom_dropped: AtomicU64,
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

/// Counters about the recorder itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Distinct custom fields registered.
    pub custom_fields: usize,
    /// Updates dropped because the custom-field bound was reached (since
    /// the recorder was created).
    pub custom_dropped: u64,
}

/// A custom counter handle: lock-free `add`.
#[derive(Debug, Clone)]
pub struct CustomCounter(Arc<CustomSlot>);

/// A custom gauge handle: lock-free `set`.
#[derive(Debug, Clone)]
pub struct CustomGauge(Arc<CustomSlot>);

impl CustomCounter {
    /// Adds `n` (finite, ≥ 0; anything else is ignored).
    pub fn add(&self, n: f64) {
        if n.is_finite() && n >= 0.0 {
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

fn add_f64(bits: &AtomicU64, n: f64) {
    let _ = bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        Some((f64::from_bits(b) + n).to_bits())
    });
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
                config,
            }),
        }
    }

    #[inline]
    fn bump(&self, slot: Slot, n: u64) {
        self.inner.stripes[stripe_index()].0[slot as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// One HTTP request completed after `latency`.
    #[inline]
    pub fn request(&self, latency: Duration) {
        let stripe = &self.inner.stripes[stripe_index()].0;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stripe[Slot::Requests as usize].fetch_add(1, Ordering::Relaxed);
        stripe[Slot::LatencyMicros as usize].fetch_add(micros, Ordering::Relaxed);
    }

    /// `count` requests whose latencies add up to `total_latency`.
    pub fn requests(&self, count: u64, total_latency: Duration) {
        let stripe = &self.inner.stripes[stripe_index()].0;
        let micros = u64::try_from(total_latency.as_micros()).unwrap_or(u64::MAX);
        stripe[Slot::Requests as usize].fetch_add(count, Ordering::Relaxed);
        stripe[Slot::LatencyMicros as usize].fetch_add(micros, Ordering::Relaxed);
    }

    /// One incoming event (a message from a user).
    #[inline]
    pub fn event_in(&self) {
        self.bump(Slot::EventsIn, 1);
    }

    /// One outgoing event.
    #[inline]
    pub fn event_out(&self) {
        self.bump(Slot::EventsOut, 1);
    }

    /// One warning logged.
    #[inline]
    pub fn warning(&self) {
        self.bump(Slot::Warnings, 1);
    }

    /// One error logged.
    #[inline]
    pub fn error(&self) {
        self.bump(Slot::Errors, 1);
    }

    /// One critical error logged.
    #[inline]
    pub fn critical(&self) {
        self.bump(Slot::Criticals, 1);
    }

    /// Adds `n` to a standard counter (`requests.count` is not one of them:
    /// use [`Recorder::requests`]). Other fields give an error.
    pub fn add_standard(&self, field: StandardField, n: u64) -> Result<(), CollectorError> {
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

    /// Adds `n` (finite, ≥ 0) to custom counter `name`.
    pub fn add(&self, name: &str, n: f64) -> Result<(), CollectorError> {
        if !(n.is_finite() && n >= 0.0) {
            return Err(CollectorError::BadValue {
                name: name.to_owned(),
                reason: format!("{n} is not a finite number ≥ 0 (counters only go up)"),
            });
        }
        self.with_slot(name, CustomKind::Counter, |s| add_f64(&s.bits, n))
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
        let field: Field = name
            .parse()
            .map_err(
                |e: metrics_model::field::FieldError| CollectorError::BadName {
                    name: name.to_owned(),
                    reason: e.to_string(),
                },
            )?;
        if !field.is_custom() {
            return Err(CollectorError::BadName {
                name: name.to_owned(),
                reason: "only custom.<name> fields can be registered".to_owned(),
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
            CustomKind::Counter => 0.0,
            CustomKind::Gauge => f64::NAN,
        };
        let slot = Arc::new(CustomSlot {
            field,
            kind,
            bits: AtomicU64::new(f64::to_bits(initial)),
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
        }
    }

    /// Ends the current interval: returns what was counted since the last
    /// call and resets the counters (gauges keep their value).
    ///
    /// A `request` racing with this call may have its count in one interval
    /// and its latency in the next; nothing is lost.
    pub fn take_interval(&self) -> Vec<(Field, f64)> {
        let mut sums = [0u64; SLOTS];
        for stripe in &self.inner.stripes {
            for (sum, cell) in sums.iter_mut().zip(&stripe.0) {
                *sum = sum.wrapping_add(cell.swap(0, Ordering::Relaxed));
            }
        }
        let count = sums[Slot::Requests as usize];
        let latency_ms = sums[Slot::LatencyMicros as usize] as f64 / 1000.0;
        let mut out = Vec::with_capacity(SLOTS + 4);
        out.push((StandardField::RequestsCount.into(), count as f64));
        out.push((StandardField::RequestsLatencySum.into(), latency_ms));
        if count > 0 && latency_ms > 0.0 {
            out.push((
                StandardField::RequestsLatencyAvg.into(),
                round_to(latency_ms / count as f64, 3),
            ));
        }
        for (field, slot) in [
            (StandardField::EventsInCount, Slot::EventsIn),
            (StandardField::EventsOutCount, Slot::EventsOut),
            (StandardField::WarningsCount, Slot::Warnings),
            (StandardField::ErrorsCount, Slot::Errors),
            (StandardField::CriticalsCount, Slot::Criticals),
        ] {
            out.push((field.into(), sums[slot as usize] as f64));
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
        let e = r.add("custom.x", -1.0).unwrap_err().to_string();
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
                custom_dropped: 2
            }
        );
        let v = values(&r);
        assert_eq!(v.keys().filter(|k| k.starts_with("custom.")).count(), 3);
        assert_eq!(v["custom.f0"], 2.0);
    }

    #[test]
    fn add_standard() {
        let r = Recorder::default();
        r.add_standard(StandardField::EventsInCount, 4).unwrap();
        assert!(r.add_standard(StandardField::CpuUsage, 1).is_err());
        assert_eq!(values(&r)["eventsIn.count"], 4.0);
    }
}
