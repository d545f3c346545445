//! Rolling windows with incremental aggregates.
//!
//! A [`Window`] holds one host's values of one field for one timeframe. At
//! instant `t` it covers the ticks with `t − timeframe < ts ≤ t`.
//!
//! Costs: an in-order insert (`ts` greater than every `ts` held) and the
//! eviction of a tick are O(1) amortised for every aggregation — `min` and
//! `max` keep a monotonic deque, `sum` and `avg` a Neumaier-compensated sum
//! that is re-based from the held values after a number of removals
//! proportional to the window's length, so long runs do not drift. An
//! out-of-order insert costs O(window). A second value at a `ts` already held
//! is ignored: the first one seen counts.

use std::collections::VecDeque;

use metrics_model::time::Millis;

use crate::rule::Aggregation;

/// One rolling window. Instants passed to [`Window::value_at`] must not
/// decrease.
#[derive(Debug, Clone)]
pub struct Window {
    aggregation: Aggregation,
    timeframe: i64,
    /// Held ticks, ascending and unique by `ts`.
    samples: VecDeque<(Millis, f64)>,
    /// For `min`/`max`: candidates, ascending by `ts`, monotonic by value.
    mono: VecDeque<(Millis, f64)>,
    sum: f64,
    compensation: f64,
    removals_since_rebase: usize,
    /// Ticks with `ts ≤ horizon` can never be in a window again.
    horizon: Millis,
}

/// Removals after which the sum is recomputed, at least (a multiple of the
/// window's length is used for long windows, keeping the cost amortised O(1)).
const REBASE_MIN: usize = 64;

impl Window {
    /// An empty window.
    pub fn new(aggregation: Aggregation, timeframe_ms: i64) -> Window {
        Window {
            aggregation,
            timeframe: timeframe_ms.max(1),
            samples: VecDeque::new(),
            mono: VecDeque::new(),
            sum: 0.0,
            compensation: 0.0,
            removals_since_rebase: 0,
            horizon: Millis::MIN,
        }
    }

    /// Number of ticks held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no tick is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds a tick's value. Returns `false` (and changes nothing) when a value
    /// at the same `ts` is held, or when `ts` is already out of every future
    /// window.
    pub fn insert(&mut self, ts: Millis, value: f64) -> bool {
        if ts <= self.horizon {
            return false;
        }
        match self.samples.back() {
            None => self.push_back(ts, value),
            Some(&(last, _)) if ts > last => self.push_back(ts, value),
            Some(&(last, _)) if ts == last => return false,
            Some(_) => {
                let Err(pos) = self.samples.binary_search_by(|(t, _)| t.cmp(&ts)) else {
                    return false;
                };
                self.samples.insert(pos, (ts, value));
                self.add(value);
                if self.tracks_extremes() {
                    self.rebuild_mono();
                }
            }
        }
        true
    }

    /// Drops the ticks that are out of the window at `t` (`ts ≤ t − timeframe`).
    pub fn advance(&mut self, t: Millis) {
        let bound = t.saturating_sub(self.timeframe);
        if bound > self.horizon {
            self.horizon = bound;
        }
        while let Some(&(ts, v)) = self.samples.front() {
            if ts > bound {
                break;
            }
            self.samples.pop_front();
            if self.mono.front().is_some_and(|&(mts, _)| mts == ts) {
                self.mono.pop_front();
            }
            self.add(-v);
            self.removals_since_rebase += 1;
        }
        if self.samples.is_empty() {
            self.sum = 0.0;
            self.compensation = 0.0;
            self.removals_since_rebase = 0;
        } else if self.removals_since_rebase >= REBASE_MIN.max(2 * self.samples.len()) {
            self.rebase();
        }
    }

    /// The window's value at `t` (see [`Aggregation`]); advances to `t` first.
    pub fn value_at(&mut self, t: Millis) -> Option<f64> {
        self.advance(t);
        self.value()
    }

    /// The value of the ticks held now (after the last [`Window::advance`]).
    pub fn value(&self) -> Option<f64> {
        let n = self.samples.len();
        match self.aggregation {
            Aggregation::Count => Some(n as f64),
            Aggregation::Sum => Some(if n == 0 {
                0.0
            } else {
                self.sum + self.compensation
            }),
            Aggregation::Avg => (n > 0).then(|| (self.sum + self.compensation) / n as f64),
            Aggregation::Min | Aggregation::Max => self.mono.front().map(|&(_, v)| v),
            Aggregation::Last => self.samples.back().map(|&(_, v)| v),
        }
    }

    fn tracks_extremes(&self) -> bool {
        matches!(self.aggregation, Aggregation::Min | Aggregation::Max)
    }

    /// Whether `candidate` makes `held` useless as a future extreme.
    fn dominates(&self, candidate: f64, held: f64) -> bool {
        match self.aggregation {
            Aggregation::Min => held >= candidate,
            _ => held <= candidate,
        }
    }

    fn push_back(&mut self, ts: Millis, value: f64) {
        self.samples.push_back((ts, value));
        self.add(value);
        if self.tracks_extremes() {
            self.push_mono(ts, value);
        }
    }

    /// Appends the newest value to the monotonic deque, dropping the values
    /// it makes useless as future extremes.
    fn push_mono(&mut self, ts: Millis, value: f64) {
        while self
            .mono
            .back()
            .is_some_and(|&(_, held)| self.dominates(value, held))
        {
            self.mono.pop_back();
        }
        self.mono.push_back((ts, value));
    }

    fn rebuild_mono(&mut self) {
        self.mono.clear();
        for i in 0..self.samples.len() {
            let (ts, value) = self.samples[i];
            self.push_mono(ts, value);
        }
    }

    /// Neumaier's compensated addition.
    fn add(&mut self, x: f64) {
        if !matches!(self.aggregation, Aggregation::Sum | Aggregation::Avg) {
            return;
        }
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn rebase(&mut self) {
        self.sum = 0.0;
        self.compensation = 0.0;
        self.removals_since_rebase = 0;
        for i in 0..self.samples.len() {
            let v = self.samples[i].1;
            self.add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The spec's definition, computed from scratch.
    fn naive(agg: Aggregation, ticks: &[(Millis, f64)], t: Millis, tf: i64) -> Option<f64> {
        let vals: Vec<(Millis, f64)> = ticks
            .iter()
            .copied()
            .filter(|&(ts, _)| t - tf < ts && ts <= t)
            .collect();
        let n = vals.len();
        match agg {
            Aggregation::Count => Some(n as f64),
            Aggregation::Sum => Some(vals.iter().map(|v| v.1).sum()),
            Aggregation::Avg => (n > 0).then(|| vals.iter().map(|v| v.1).sum::<f64>() / n as f64),
            Aggregation::Min => vals.iter().map(|v| v.1).reduce(f64::min),
            Aggregation::Max => vals.iter().map(|v| v.1).reduce(f64::max),
            Aggregation::Last => vals.iter().max_by_key(|v| v.0).map(|v| v.1),
        }
    }

    fn close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                (a - b).abs() <= 1e-9 * scale.max(a.abs()).max(b.abs()).max(1e-300)
            }
            _ => false,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert at `ts = now - back` (back may be 0: in order).
        Insert { back: i64, value: f64 },
        /// Move the instant forward and compare.
        Check { forward: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (prop_oneof![3 => Just(0i64), 1 => 0i64..50], -1.0e6..1.0e6f64)
                .prop_map(|(back, value)| Op::Insert { back, value }),
            1 => (0i64..30).prop_map(|forward| Op::Check { forward }),
        ]
    }

    fn agg() -> impl Strategy<Value = Aggregation> {
        proptest::sample::select(Aggregation::ALL.iter().map(|(a, _)| *a).collect::<Vec<_>>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Incremental aggregates equal a naive recomputation, within 1e-9
        /// relative, on random streams with late ticks and duplicates.
        #[test]
        fn matches_naive(agg in agg(), tf in 1i64..40, ops in proptest::collection::vec(op(), 1..400)) {
            let mut w = Window::new(agg, tf);
            let mut seen: Vec<(Millis, f64)> = Vec::new();
            let mut now: Millis = 0;
            let mut next_ts: Millis = 1;
            for op in ops {
                match op {
                    Op::Insert { back, value } => {
                        // In-order ticks take the next ts; late ones go back in time.
                        let ts = if back == 0 { next_ts } else { now - back };
                        next_ts = next_ts.max(ts + 1);
                        if ts > now { now = ts; }
                        let fresh = !seen.iter().any(|s| s.0 == ts);
                        let inside = ts > now - tf;
                        let accepted = w.insert(ts, value);
                        // Only the first value of a ts counts; ticks already out
                        // of every future window may be dropped.
                        if fresh && accepted { seen.push((ts, value)); }
                        prop_assert!(!accepted || fresh);
                        prop_assert!(accepted || !fresh || !inside || ts <= w.horizon);
                    }
                    Op::Check { forward } => {
                        now += forward;
                        let scale: f64 = seen.iter().filter(|&&(ts, _)| now - tf < ts && ts <= now).map(|s| s.1.abs()).sum();
                        let got = w.value_at(now);
                        let want = naive(agg, &seen, now, tf);
                        prop_assert!(close(got, want, scale), "{agg:?} at {now}: got {got:?}, want {want:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn long_runs_do_not_drift() {
        // A million ticks of values with very different magnitudes.
        let mut w = Window::new(Aggregation::Sum, 12);
        for i in 0..1_000_000i64 {
            let v = if i % 3 == 0 { 1.0e12 } else { 0.1 };
            w.insert(i, v);
            w.advance(i);
        }
        let last12: f64 = (1_000_000 - 12..1_000_000)
            .map(|i| if i % 3 == 0 { 1.0e12 } else { 0.1 })
            .sum();
        let got = w.value().unwrap();
        assert!((got - last12).abs() <= 1e-9 * last12, "{got} vs {last12}");
    }

    #[test]
    fn empty_windows() {
        for (agg, _) in Aggregation::ALL {
            let mut w = Window::new(agg, 10);
            let expected = matches!(agg, Aggregation::Sum | Aggregation::Count).then_some(0.0);
            assert_eq!(w.value_at(100), expected, "{agg:?}");
        }
    }

    #[test]
    fn duplicates_keep_the_first() {
        let mut w = Window::new(Aggregation::Last, 100);
        assert!(w.insert(10, 1.0));
        assert!(!w.insert(10, 2.0));
        assert!(w.insert(5, 3.0));
        assert!(!w.insert(5, 4.0));
        assert_eq!(w.value_at(20), Some(1.0));
        assert_eq!(w.len(), 2);
    }
}
