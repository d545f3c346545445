//! Per-interval deltas of the kernel's running counters (disk bytes,
//! interface bytes and errors), with the real elapsed time between two
//! readings for rates.
//!
//! - A name seen for the first time (collector start, a hot-plugged device,
//!   a new interface) gives no value until its next reading.
//! - A counter that went down is either a 32-bit wrap — the old value was in
//!   the top quarter of the 32-bit range and the new one in the bottom
//!   quarter, which is what a wrapping 32-bit driver counter does in one
//!   interval — counted across the wrap, or a reset (the device was
//!   replaced or re-created under the same name): no value this time, the
//!   next reading counts from the new base. Never a negative number or a
//!   spike of 2⁶⁴.
//! - A name no longer present is forgotten.

use std::collections::HashMap;
use std::time::Instant;

/// The increase from `old` to `new`, or `None` for a reset (see the module
/// documentation).
pub fn counter_delta(old: u64, new: u64) -> Option<u64> {
    const TOP_QUARTER: u64 = 3 << 30;
    const BOTTOM_QUARTER: u64 = 1 << 30;
    if new >= old {
        Some(new - old)
    } else if old >= TOP_QUARTER && u32::try_from(old).is_ok() && new < BOTTOM_QUARTER {
        Some(new + (1 << 32) - old)
    } else {
        None
    }
}

/// The previous reading of `N` counters per name.
#[derive(Debug)]
pub struct CounterTrack<const N: usize> {
    previous: HashMap<String, [u64; N]>,
    at: Option<Instant>,
}

impl<const N: usize> Default for CounterTrack<N> {
    fn default() -> Self {
        CounterTrack {
            previous: HashMap::new(),
            at: None,
        }
    }
}

/// One name's deltas since the previous reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Deltas<const N: usize> {
    /// The name.
    pub name: String,
    /// Each counter's increase; `None` where it was reset.
    pub deltas: [Option<u64>; N],
}

impl<const N: usize> CounterTrack<N> {
    /// Records the reading `current` taken at `now`; returns the seconds
    /// since the previous reading (`None` on the first, or when no time
    /// passed) and the deltas of every name that was also in the previous
    /// reading.
    pub fn update(
        &mut self,
        now: Instant,
        current: impl IntoIterator<Item = (String, [u64; N])>,
    ) -> (Option<f64>, Vec<Deltas<N>>) {
        let elapsed = self
            .at
            .map(|at| now.saturating_duration_since(at).as_secs_f64())
            .filter(|s| *s > 0.0);
        let mut next = HashMap::with_capacity(self.previous.len());
        let mut out = Vec::new();
        for (name, values) in current {
            if let Some(old) = self.previous.get(&name) {
                let mut deltas = [None; N];
                for (d, (o, n)) in deltas.iter_mut().zip(old.iter().zip(values.iter())) {
                    *d = counter_delta(*o, *n);
                }
                out.push(Deltas {
                    name: name.clone(),
                    deltas,
                });
            }
            next.insert(name, values);
        }
        self.previous = next;
        self.at = Some(now);
        (elapsed, out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deltas_wraps_and_resets() {
        assert_eq!(counter_delta(10, 15), Some(5));
        assert_eq!(counter_delta(7, 7), Some(0));
        // a 32-bit counter wrapping
        assert_eq!(counter_delta(u64::from(u32::MAX) - 9, 5), Some(15));
        // a re-created device: down, and not near the 32-bit top
        assert_eq!(counter_delta(1_000_000, 10), None);
        assert_eq!(counter_delta(u64::MAX, 3), None);
        // down, but the new value is not near the bottom: a reset
        assert_eq!(counter_delta(u64::from(u32::MAX), 2 << 30), None);
    }

    #[test]
    fn track_gives_values_from_the_second_reading_on() {
        let t0 = Instant::now();
        let mut t = CounterTrack::<2>::default();
        let (e, d) = t.update(t0, [("a".to_owned(), [100, 5])]);
        assert_eq!((e, d.len()), (None, 0));
        let (e, d) = t.update(
            t0 + Duration::from_secs(2),
            [("a".to_owned(), [300, 4]), ("b".to_owned(), [1, 1])],
        );
        assert_eq!(e, Some(2.0));
        assert_eq!(
            d,
            [Deltas {
                name: "a".into(),
                deltas: [Some(200), None]
            }]
        );
        // "a" unplugged, "b" stays, "a" plugged back: new base, no value
        let (_, d) = t.update(t0 + Duration::from_secs(4), [("b".to_owned(), [2, 1])]);
        assert_eq!(d.len(), 1);
        let (_, d) = t.update(
            t0 + Duration::from_secs(6),
            [("a".to_owned(), [7, 7]), ("b".to_owned(), [3, 1])],
        );
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["b"]);
    }
}
