//! Rolling windows with incremental aggregates.
//!
//! A [`Window`] holds one host's values of one field for one timeframe. At
//! instant `t` it covers the ticks with `t − timeframe < ts ≤ t`. The engine
//! uses `HostWindows` instead (crate-private, below): all of one host's
//! windows, for every rule, over one shared ring of the host's samples, with
//! the same semantics and no allocation per window (costs: see there).
//!
//! Costs: an in-order insert (`ts` greater than every `ts` held) and the
//! eviction of a tick are O(1) amortised for every aggregation — `min` and
//! `max` keep a monotonic deque, `sum` and `avg` a Neumaier-compensated sum
//! that is re-based from the held values after a number of removals
//! proportional to the window's length, so long runs do not drift. An
//! out-of-order insert costs O(window). A second value at a `ts` already held
//! is ignored: the first one seen counts.

use std::collections::VecDeque;
use std::sync::Arc;

use metrics_model::time::Millis;
use metrics_model::{Field, Key, StandardField, Values};

use crate::rule::{Aggregation, Rule};

/// One rolling window. Instants passed to [`Window::value_at`] must not
/// decrease.
///
/// Part of the embedding API: a service that wants one rolling aggregate
/// (the spec's window semantics, O(1) amortised per in-order sample)
/// without rules and incidents uses it directly; the engine itself shares
/// one sample ring per host instead (`HostWindows`). The rules-engine
/// benchmark measures it.
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
    /// Whether several values may share a `ts` (a cluster's window: ticks
    /// of different hosts at the same instant are different ticks).
    multiset: bool,
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
            multiset: false,
        }
    }

    /// An empty window in which several values may share a `ts` (every
    /// value inserted counts): the window of a cluster-wide rule, over the
    /// ticks of many hosts.
    pub fn multiset(aggregation: Aggregation, timeframe_ms: i64) -> Window {
        Window {
            multiset: true,
            ..Window::new(aggregation, timeframe_ms)
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
            Some(&(last, _)) if ts > last || (self.multiset && ts == last) => {
                self.push_back(ts, value);
            }
            Some(&(last, _)) if ts == last => return false,
            Some(_) if self.multiset => {
                let pos = self.samples.partition_point(|&(t, _)| t <= ts);
                self.samples.insert(pos, (ts, value));
                self.add(value);
                if self.tracks_extremes() {
                    self.rebuild_mono();
                }
            }
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
            // The candidates are a subsequence of the samples: those at or
            // before the bound go with them (several, in a multiset).
            while self.mono.front().is_some_and(|&(mts, _)| mts <= ts) {
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
        neumaier_add(&mut self.sum, &mut self.compensation, x);
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

/// One series a host's windows evaluate: a rule (its index in the rule
/// set) over one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot {
    /// The rule's index in the rule set.
    pub(crate) rule: usize,
    /// The key the window reads.
    pub(crate) key: Key,
}

/// How a set of series (rule, key) reads the hosts' sample rings
/// ([`HostWindows`]): computed once per rule set for the hosts that carry no
/// instance (all of them share it), and once per distinct set of series for
/// the others (hosts with the same mounts share one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// The series, in the order of their states.
    pub(crate) slots: Vec<Slot>,
    /// The keys the series read, sorted: the first columns of every ring.
    fields: Vec<Key>,
    /// Per standard field (by declaration order), the column of its bare
    /// key in `fields` (`NONE`: no series reads it).
    standard: Vec<usize>,
    /// The distinct timeframes (ms), ascending.
    timeframes: Vec<i64>,
    /// Per timeframe, the series (indices) with that timeframe.
    by_timeframe: Vec<Vec<usize>>,
    /// Per series, in `slots` order.
    rules: Vec<RuleWindow>,
    /// The distinct (column, is max) pairs of `min`/`max` series.
    chains: Vec<(usize, bool)>,
    /// Ticks are held at least this long (ms): the longest timeframe of the
    /// whole rule set, so that duplicates are told apart and windows can be
    /// rebuilt whatever the host's series.
    span_floor: i64,
}

#[derive(Debug, Clone, Copy)]
struct RuleWindow {
    aggregation: Aggregation,
    /// Column of the series' key.
    col: usize,
    /// Index in `Layout::timeframes`.
    tf: usize,
    /// Index in `Layout::chains` (`min`/`max` only).
    chain: usize,
}

impl RuleWindow {
    /// Whether the series keeps a [`Running`] sum.
    fn runs(self) -> bool {
        matches!(
            self.aggregation,
            Aggregation::Sum | Aggregation::Avg | Aggregation::Count
        )
    }
}

impl Layout {
    /// One series per rule, over the rule's own key (the version-1 layout;
    /// tests).
    #[cfg(test)]
    pub(crate) fn for_rules(rules: &[Arc<Rule>]) -> Layout {
        let slots = rules
            .iter()
            .enumerate()
            .map(|(rule, r)| Slot {
                rule,
                key: r.field().clone(),
            })
            .collect();
        let floor = rules.iter().map(|r| timeframe_ms(r)).max().unwrap_or(0);
        Layout::new(rules, slots, floor)
    }

    /// The layout of these series of `rules`, holding ticks at least
    /// `span_floor` ms.
    pub(crate) fn new(rules: &[Arc<Rule>], slots: Vec<Slot>, span_floor: i64) -> Layout {
        let mut fields: Vec<Key> = slots.iter().map(|s| s.key.clone()).collect();
        fields.sort();
        fields.dedup();
        let mut timeframes: Vec<i64> = slots.iter().map(|s| timeframe_ms(&rules[s.rule])).collect();
        timeframes.sort_unstable();
        timeframes.dedup();
        let mut layout = Layout {
            by_timeframe: vec![Vec::new(); timeframes.len()],
            span_floor,
            ..Layout::default()
        };
        for (i, slot) in slots.iter().enumerate() {
            let rule = &rules[slot.rule];
            let col = fields.binary_search(&slot.key).unwrap_or_default();
            let tf = timeframes
                .binary_search(&timeframe_ms(rule))
                .unwrap_or_default();
            let aggregation = rule.aggregation();
            let chain = match aggregation {
                Aggregation::Min | Aggregation::Max => {
                    let key = (col, aggregation == Aggregation::Max);
                    layout
                        .chains
                        .iter()
                        .position(|c| *c == key)
                        .unwrap_or_else(|| {
                            layout.chains.push(key);
                            layout.chains.len() - 1
                        })
                }
                _ => 0,
            };
            layout.by_timeframe[tf].push(i);
            layout.rules.push(RuleWindow {
                aggregation,
                col,
                tf,
                chain,
            });
        }
        layout.standard = StandardField::ALL
            .iter()
            .map(|f| fields.binary_search(&Key::from(*f)).unwrap_or(NONE))
            .collect();
        layout.fields = fields;
        layout.timeframes = timeframes;
        layout.slots = slots;
        layout
    }

    /// The column of `key` in a ring whose extra columns are `extra`.
    fn column(&self, extra: &[Key], key: &Key) -> Option<usize> {
        let col = match (key.field(), key.instance()) {
            (Field::Standard(f), None) => self.standard.get(*f as usize).copied().unwrap_or(NONE),
            _ => self.fields.binary_search(key).unwrap_or(NONE),
        };
        if col != NONE {
            return Some(col);
        }
        extra.binary_search(key).ok().map(|j| self.fields.len() + j)
    }

    /// The column of series `slot`'s key.
    pub(crate) fn slot_column(&self, slot: usize) -> usize {
        self.rules[slot].col
    }

    /// How long ticks are held: older ones are in no window.
    fn span(&self) -> i64 {
        self.timeframes
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.span_floor)
    }
}

fn timeframe_ms(rule: &Rule) -> i64 {
    rule.timeframe().as_millis_i64().max(1)
}

/// No sample.
const NONE: usize = usize::MAX;

/// A running Neumaier-compensated sum and count of one rule's window
/// (`sum`, `avg`, `count`).
#[derive(Debug, Clone, Copy, Default)]
struct Running {
    n: usize,
    removals: usize,
    sum: f64,
    compensation: f64,
}

impl Running {
    fn add(&mut self, x: f64) {
        neumaier_add(&mut self.sum, &mut self.compensation, x);
    }
}

/// Every window of one host, for every rule of a [`Layout`], over one
/// shared ring of samples.
///
/// The ring holds the host's ticks back to the longest timeframe, ascending
/// and unique by `ts`: one `ts` column and one value column per field
/// (`NaN`: the tick has no value for it), column-major in one buffer, so a
/// host's windows are a few contiguous cache lines and no window has an
/// allocation of its own. Columns come in the layout's field order, then the
/// other fields the held ticks carry (kept for rebuilding windows when the
/// rules change). Samples are numbered (sequence numbers); sample `s` is at
/// `s & (capacity − 1)`.
///
/// Per rule only what cannot be shared is kept: `sum`, `avg` and `count`
/// keep a running compensated sum (O(1) amortised per tick, re-based like
/// [`Window`]); `min` and `max` share one monotonic chain of candidates per
/// (field, min or max) across timeframes (O(1) amortised per tick, a binary
/// search to read); `last` reads the newest sample with the field. A window
/// of timeframe `tf` starts at the first sample with `ts > t − tf`, one
/// start per distinct timeframe. A tick older than the newest held (late)
/// is inserted in place and the host's aggregates are rebuilt from the ring
/// at the next [`HostWindows::refresh`] (O(window)).
#[derive(Debug, Clone, Default)]
pub(crate) struct HostWindows {
    /// Sequence number of the oldest sample held.
    head: usize,
    /// Samples held.
    len: usize,
    /// `ts` of each sample; its length is the capacity (0 or a power of two).
    ts: Vec<Millis>,
    /// Value columns, `capacity` values each.
    vals: Vec<f64>,
    /// Keys of the columns after the layout's, sorted.
    extra: Vec<Key>,
    /// Per column (the layout's, then `extra`): the greatest `ts` taken in
    /// with a value there (`Millis::MIN`: none). Not cut by the ring's span:
    /// `staleAfter` and the retention of instances read it.
    seen: Vec<Millis>,
    /// Per timeframe: the first sample in the window.
    lo: Vec<usize>,
    /// Per layout field: the newest sample with a value (`NONE`: none).
    last: Vec<usize>,
    /// Per chain, `capacity` sequence numbers, a ring each.
    chain_seqs: Vec<usize>,
    /// Per chain: (start in its ring, length). Sequence numbers ascend, and
    /// values strictly ascend (`min`) or descend (`max`).
    chains: Vec<(usize, usize)>,
    /// Per rule.
    running: Vec<Running>,
    /// Samples before this one are in the aggregates.
    synced: usize,
    /// A late tick went in: aggregates are rebuilt at the next refresh.
    dirty: bool,
    /// Columns were added since [`HostWindows::take_new_columns`] last
    /// looked (a key no column had: maybe a new instance).
    new_columns: bool,
}

/// The first `i` in `0..len` for which `before(i)` is false (`before` is
/// true on a prefix).
fn first(len: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut a, mut b) = (0, len);
    while a < b {
        let m = a + (b - a) / 2;
        if before(m) {
            a = m + 1;
        } else {
            b = m;
        }
    }
    a
}

impl HostWindows {
    /// No tick yet.
    pub(crate) fn new(layout: &Layout) -> HostWindows {
        HostWindows {
            lo: vec![0; layout.timeframes.len()],
            last: vec![NONE; layout.fields.len()],
            chains: vec![(0, 0); layout.chains.len()],
            running: vec![Running::default(); layout.rules.len()],
            seen: vec![Millis::MIN; layout.fields.len()],
            ..HostWindows::default()
        }
    }

    /// The greatest `ts` taken in carrying column `col`'s key.
    pub(crate) fn seen(&self, col: usize) -> Millis {
        self.seen.get(col).copied().unwrap_or(Millis::MIN)
    }

    /// Whether a tick brought a key that had no column since the last call.
    pub(crate) fn take_new_columns(&mut self) -> bool {
        std::mem::take(&mut self.new_columns)
    }

    /// Calls `f(ts, key, value)` for every value held in the ring.
    pub(crate) fn for_each_value(&self, layout: &Layout, mut f: impl FnMut(Millis, &Key, f64)) {
        for (c, key) in layout.fields.iter().chain(&self.extra).enumerate() {
            for s in self.head..self.end() {
                let v = self.val(c, s);
                if !v.is_nan() {
                    f(self.ts_at(s), key, v);
                }
            }
        }
    }

    /// Every column's key with the greatest `ts` that carried it.
    pub(crate) fn all_keys<'a>(
        &'a self,
        layout: &'a Layout,
    ) -> impl Iterator<Item = (&'a Key, Millis)> {
        layout
            .fields
            .iter()
            .chain(&self.extra)
            .enumerate()
            .map(move |(c, key)| (key, self.seen(c)))
    }

    fn cap(&self) -> usize {
        self.ts.len()
    }

    fn mask(&self) -> usize {
        self.cap().wrapping_sub(1)
    }

    fn end(&self) -> usize {
        self.head + self.len
    }

    fn ts_at(&self, s: usize) -> Millis {
        self.ts[s & self.mask()]
    }

    fn val(&self, col: usize, s: usize) -> f64 {
        self.vals[col * self.cap() + (s & self.mask())]
    }

    /// Takes in a tick. Returns `false` (and changes nothing) when a tick at
    /// `ts` is held: the first one seen counts.
    pub(crate) fn insert(&mut self, layout: &Layout, ts: Millis, values: &Values) -> bool {
        let end = self.end();
        let at = if self.len == 0 || self.ts_at(end - 1) < ts {
            end
        } else {
            let i = first(self.len, |i| self.ts_at(self.head + i) < ts);
            if i < self.len && self.ts_at(self.head + i) == ts {
                return false;
            }
            self.dirty = true;
            self.head + i
        };
        if self.len == self.cap() {
            self.grow(layout);
        }
        let (cap, mask) = (self.cap(), self.mask());
        let ncols = layout.fields.len() + self.extra.len();
        for s in (at..end).rev() {
            let (from, to) = (s & mask, (s + 1) & mask);
            self.ts[to] = self.ts[from];
            for c in 0..ncols {
                self.vals[c * cap + to] = self.vals[c * cap + from];
            }
        }
        let p = at & mask;
        self.ts[p] = ts;
        for c in 0..ncols {
            self.vals[c * cap + p] = f64::NAN;
        }
        self.len += 1;
        if !self.write(layout, p, values) {
            self.add_columns(layout, values);
            self.write(layout, p, values);
        }
        true
    }

    /// Writes `values` at position `p`; `false` if a key has no column.
    fn write(&mut self, layout: &Layout, p: usize, values: &Values) -> bool {
        let cap = self.cap();
        let ts = self.ts[p];
        let mut all = true;
        for (key, &v) in values {
            match layout.column(&self.extra, key) {
                Some(c) => {
                    self.vals[c * cap + p] = v;
                    if self.seen[c] < ts {
                        self.seen[c] = ts;
                    }
                }
                None => all = false,
            }
        }
        all
    }

    /// Doubles the capacity (at least 8).
    fn grow(&mut self, layout: &Layout) {
        let (old_cap, old_mask) = (self.cap(), self.mask());
        let cap = (old_cap * 2).max(8);
        let ncols = layout.fields.len() + self.extra.len();
        let mut ts = vec![0; cap];
        let mut vals = vec![f64::NAN; ncols * cap];
        for s in self.head..self.end() {
            let (o, n) = (s & old_mask, s & (cap - 1));
            ts[n] = self.ts[o];
            for c in 0..ncols {
                vals[c * cap + n] = self.vals[c * old_cap + o];
            }
        }
        let mut chain_seqs = vec![0; self.chains.len() * cap];
        for (c, (start, len)) in self.chains.iter_mut().enumerate() {
            for j in 0..*len {
                chain_seqs[c * cap + j] = self.chain_seqs[c * old_cap + ((*start + j) & old_mask)];
            }
            *start = 0;
        }
        self.ts = ts;
        self.vals = vals;
        self.chain_seqs = chain_seqs;
    }

    /// Adds columns for the keys of `values` that have none, dropping the
    /// extra columns with no value held (unless `keep` says to keep the
    /// key: its `seen` still matters).
    fn add_columns(&mut self, layout: &Layout, values: &Values) {
        let k = layout.fields.len();
        let mut extra: Vec<Key> = (0..self.extra.len())
            .filter(|&j| (self.head..self.end()).any(|s| !self.val(k + j, s).is_nan()))
            .map(|j| self.extra[j].clone())
            .collect();
        extra.extend(
            values
                .keys()
                .filter(|f| layout.fields.binary_search(f).is_err())
                .cloned(),
        );
        extra.sort();
        extra.dedup();
        let old: Vec<Key> = layout.fields.iter().chain(&self.extra).cloned().collect();
        self.reorder(&old, &layout.fields, extra);
        self.new_columns = true;
    }

    /// Puts the columns in the order of `fields` then `extra`, where `old`
    /// names the current columns in order (a key with no old column gets an
    /// empty one, never seen).
    fn reorder(&mut self, old: &[Key], fields: &[Key], extra: Vec<Key>) {
        let cap = self.cap();
        let n = fields.len() + extra.len();
        let mut vals = vec![f64::NAN; n * cap];
        let mut seen = vec![Millis::MIN; n];
        for (j, f) in fields.iter().chain(&extra).enumerate() {
            if let Some(o) = old.iter().position(|g| g == f) {
                vals[j * cap..(j + 1) * cap].copy_from_slice(&self.vals[o * cap..(o + 1) * cap]);
                seen[j] = self.seen.get(o).copied().unwrap_or(Millis::MIN);
            }
        }
        self.vals = vals;
        self.seen = seen;
        self.extra = extra;
    }

    /// Adapts to new rules: columns in the new layout's order (the other
    /// fields with a value held kept as extra columns) and every aggregate
    /// rebuilt from the ring as of `t` (the last evaluated instant; `None`:
    /// every tick held).
    pub(crate) fn relayout(&mut self, old: &Layout, new: &Layout, t: Option<Millis>) {
        let cols: Vec<Key> = old.fields.iter().chain(&self.extra).cloned().collect();
        let mut extra: Vec<Key> = cols
            .iter()
            .enumerate()
            .filter(|(j, f)| {
                new.fields.binary_search(f).is_err()
                    && (self.head..self.end()).any(|s| !self.val(*j, s).is_nan())
            })
            .map(|(_, f)| f.clone())
            .collect();
        extra.sort();
        self.reorder(&cols, &new.fields, extra);
        let cap = self.cap();
        self.lo = vec![self.head; new.timeframes.len()];
        self.last = vec![NONE; new.fields.len()];
        self.chains = vec![(0, 0); new.chains.len()];
        self.chain_seqs = vec![0; new.chains.len() * cap];
        self.running = vec![Running::default(); new.rules.len()];
        self.rebuild(new, t);
    }

    /// Appends sample `s` to chain `c` if it has a value, dropping the
    /// candidates it makes useless.
    fn chain_push(&mut self, layout: &Layout, c: usize, s: usize) {
        let (col, max) = layout.chains[c];
        let v = self.val(col, s);
        if v.is_nan() {
            return;
        }
        let (base, mask) = (c * self.cap(), self.mask());
        let (start, mut len) = self.chains[c];
        while len > 0 {
            let held = self.val(col, self.chain_seqs[base + ((start + len - 1) & mask)]);
            if (max && held <= v) || (!max && held >= v) {
                len -= 1;
            } else {
                break;
            }
        }
        self.chain_seqs[base + ((start + len) & mask)] = s;
        self.chains[c] = (start, len + 1);
    }

    /// The first sample of chain `c` at or after `lo`: the extreme of the
    /// window starting at `lo`.
    fn chain_from(&self, c: usize, lo: usize) -> Option<usize> {
        let (base, mask) = (c * self.cap(), self.mask());
        let (start, len) = self.chains[c];
        let at = |j: usize| self.chain_seqs[base + ((start + j) & mask)];
        let j = first(len, |j| at(j) < lo);
        (j < len).then(|| at(j))
    }

    /// Brings every window to instant `t` (ticks with `ts ≤ t` taken in):
    /// windows start after `t − timeframe`; ticks older than the longest
    /// timeframe are dropped.
    pub(crate) fn refresh(&mut self, layout: &Layout, t: Millis) {
        if self.dirty {
            self.rebuild(layout, Some(t));
        } else {
            let end = self.end();
            for s in self.synced..end {
                for col in 0..self.last.len() {
                    if !self.val(col, s).is_nan() {
                        self.last[col] = s;
                    }
                }
                for c in 0..layout.chains.len() {
                    self.chain_push(layout, c, s);
                }
            }
            for (i, &tf) in layout.timeframes.iter().enumerate() {
                let bound = t.saturating_sub(tf);
                let old = self.lo[i];
                let mut lo = old;
                while lo < end && self.ts_at(lo) <= bound {
                    lo += 1;
                }
                for &r in &layout.by_timeframe[i] {
                    let rw = layout.rules[r];
                    if !rw.runs() {
                        continue;
                    }
                    let sums = rw.aggregation != Aggregation::Count;
                    let mut run = self.running[r];
                    for s in self.synced..end {
                        let v = self.val(rw.col, s);
                        if !v.is_nan() {
                            run.n += 1;
                            if sums {
                                run.add(v);
                            }
                        }
                    }
                    for s in old..lo {
                        let v = self.val(rw.col, s);
                        if !v.is_nan() {
                            run.n -= 1;
                            run.removals += 1;
                            if sums {
                                run.add(-v);
                            }
                        }
                    }
                    if run.n == 0 {
                        run = Running::default();
                    } else if run.removals >= REBASE_MIN.max(2 * run.n) {
                        run = self.sum_from(rw, lo);
                    }
                    self.running[r] = run;
                }
                self.lo[i] = lo;
            }
            self.synced = end;
        }
        let bound = t.saturating_sub(layout.span());
        while self.len > 0 && self.ts_at(self.head) <= bound {
            self.head += 1;
            self.len -= 1;
        }
        let mask = self.mask();
        for (c, (start, len)) in self.chains.iter_mut().enumerate() {
            while *len > 0 && self.chain_seqs[c * self.ts.len() + *start] < self.head {
                *start = (*start + 1) & mask;
                *len -= 1;
            }
        }
    }

    /// The running sum of rule window `rw` computed afresh from `lo`.
    fn sum_from(&self, rw: RuleWindow, lo: usize) -> Running {
        let mut run = Running::default();
        for s in lo..self.end() {
            let v = self.val(rw.col, s);
            if !v.is_nan() {
                run.n += 1;
                if rw.aggregation != Aggregation::Count {
                    run.add(v);
                }
            }
        }
        run
    }

    /// Recomputes every aggregate from the ring, windows as of `t` (`None`:
    /// every tick held).
    fn rebuild(&mut self, layout: &Layout, t: Option<Millis>) {
        let (head, end) = (self.head, self.end());
        for (i, &tf) in layout.timeframes.iter().enumerate() {
            self.lo[i] = match t {
                Some(t) => {
                    let bound = t.saturating_sub(tf);
                    head + first(self.len, |j| self.ts_at(head + j) <= bound)
                }
                None => head,
            };
        }
        for col in 0..self.last.len() {
            self.last[col] = (head..end)
                .rev()
                .find(|&s| !self.val(col, s).is_nan())
                .unwrap_or(NONE);
        }
        for chain in &mut self.chains {
            *chain = (0, 0);
        }
        for s in head..end {
            for c in 0..layout.chains.len() {
                self.chain_push(layout, c, s);
            }
        }
        for (r, rw) in layout.rules.iter().enumerate() {
            self.running[r] = if rw.runs() {
                self.sum_from(*rw, self.lo[rw.tf])
            } else {
                Running::default()
            };
        }
        self.synced = end;
        self.dirty = false;
    }

    /// The value of rule `r`'s window as of the last refresh (see
    /// [`Aggregation`]).
    pub(crate) fn value(&self, layout: &Layout, r: usize) -> Option<f64> {
        let rw = layout.rules[r];
        let lo = self.lo[rw.tf];
        let run = &self.running[r];
        match rw.aggregation {
            Aggregation::Count => Some(run.n as f64),
            Aggregation::Sum => Some(if run.n == 0 {
                0.0
            } else {
                run.sum + run.compensation
            }),
            Aggregation::Avg => (run.n > 0).then(|| (run.sum + run.compensation) / run.n as f64),
            Aggregation::Min | Aggregation::Max => {
                self.chain_from(rw.chain, lo).map(|s| self.val(rw.col, s))
            }
            Aggregation::Last => {
                let s = self.last[rw.col];
                (s != NONE && s >= lo).then(|| self.val(rw.col, s))
            }
        }
    }
}

/// Adds `x` to a compensated (Neumaier) sum: `sum + compensation` is the
/// total, with the rounding error of each addition kept in `compensation`.
fn neumaier_add(sum: &mut f64, compensation: &mut f64, x: f64) {
    let t = *sum + x;
    if sum.abs() >= x.abs() {
        *compensation += (*sum - t) + x;
    } else {
        *compensation += (x - t) + *sum;
    }
    *sum = t;
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

    const FIELDS: [&str; 3] = ["cpu.usage", "custom.a", "custom.b"];

    fn rules_of(specs: &[(Aggregation, usize, i64)]) -> Vec<Arc<Rule>> {
        specs
            .iter()
            .enumerate()
            .map(|(i, &(aggregation, field, tf))| {
                Arc::new(
                    Rule::new(crate::RuleSpec {
                        name: format!("r{i}"),
                        field: FIELDS[field].parse().unwrap(),
                        aggregation,
                        operand: crate::Operand::EqualOrMoreThan,
                        value: 0.0,
                        timeframe: metrics_model::Duration::from_millis(tf as u64).unwrap(),
                        cooldown: metrics_model::Duration::ZERO,
                        meta: crate::rule::RuleMeta::default(),
                    })
                    .unwrap(),
                )
            })
            .collect()
    }

    /// Every rule's value from `hw` equals the spec's, from scratch.
    fn check_host(
        hw: &HostWindows,
        layout: &Layout,
        rules: &[Arc<Rule>],
        seen: &std::collections::BTreeMap<Millis, Values>,
        t: Millis,
    ) -> Result<(), TestCaseError> {
        for (r, rule) in rules.iter().enumerate() {
            let tf = rule.timeframe().as_millis_i64();
            let ticks: Vec<(Millis, f64)> = seen
                .iter()
                .filter_map(|(&ts, values)| values.get(rule.field()).map(|&v| (ts, v)))
                .collect();
            let scale: f64 = ticks
                .iter()
                .filter(|&&(ts, _)| t - tf < ts && ts <= t)
                .map(|s| s.1.abs())
                .sum();
            let got = hw.value(layout, r);
            let want = naive(rule.aggregation(), &ticks, t, tf);
            prop_assert!(
                close(got, want, scale),
                "{} {:?} tf {tf} at {t}: got {got:?}, want {want:?}",
                rule.field().to_string(),
                rule.aggregation()
            );
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum HostOp {
        /// A tick at `ts = now - back` with some of the three fields.
        Insert {
            back: i64,
            gap: i64,
            values: [Option<f64>; 3],
        },
        /// Evaluate at a later instant.
        Check { forward: i64 },
        /// New rules.
        Rules(Vec<(Aggregation, usize, i64)>),
    }

    fn rule_specs() -> impl Strategy<Value = Vec<(Aggregation, usize, i64)>> {
        proptest::collection::vec((agg(), 0usize..3, 1i64..40), 1..7)
    }

    fn host_op() -> impl Strategy<Value = HostOp> {
        let value = proptest::option::weighted(0.8, -1.0e6..1.0e6f64);
        prop_oneof![
            8 => (prop_oneof![3 => Just(0i64), 1 => 0i64..50], 1i64..4, [value.clone(), value.clone(), value])
                .prop_map(|(back, gap, values)| HostOp::Insert { back, gap, values }),
            3 => (0i64..30).prop_map(|forward| HostOp::Check { forward }),
            1 => rule_specs().prop_map(HostOp::Rules),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// One host's shared windows equal the spec evaluated from scratch,
        /// with late ticks, duplicates, absent fields and rule changes, used
        /// as the engine uses them (ticks at or before the horizon dropped).
        #[test]
        fn host_windows_match_the_spec(
            specs in rule_specs(),
            ops in proptest::collection::vec(host_op(), 1..300),
        ) {
            let mut rules = rules_of(&specs);
            let mut layout = Layout::for_rules(&rules);
            let mut hw = HostWindows::new(&layout);
            let mut seen: std::collections::BTreeMap<Millis, Values> = std::collections::BTreeMap::new();
            let mut last_t: Option<Millis> = None;
            let mut now: Millis = 0;
            let mut next_ts: Millis = 1;
            let mut batch: Vec<(Millis, Values)> = Vec::new();
            let mut held_after = Millis::MIN;
            for op in ops {
                match op {
                    HostOp::Insert { back, gap, values } => {
                        let ts = if back == 0 { next_ts } else { now - back };
                        next_ts = next_ts.max(ts + gap);
                        now = now.max(ts);
                        let values: Values = FIELDS
                            .iter()
                            .zip(values)
                            .filter_map(|(f, v)| Some((f.parse().unwrap(), v?)))
                            .collect();
                        batch.push((ts, values));
                    }
                    HostOp::Check { forward } => {
                        let t = last_t.map_or(now, |last| last.max(now) + 1) + forward;
                        now = t;
                        // As the engine: ticks due are taken in, then windows refreshed.
                        let span = layout.span();
                        for (ts, values) in batch.drain(..) {
                            if last_t.is_some_and(|last| ts <= last.saturating_sub(span)) {
                                continue;
                            }
                            let fresh = !seen.contains_key(&ts);
                            prop_assert_eq!(hw.insert(&layout, ts, &values), fresh);
                            seen.entry(ts).or_insert(values);
                        }
                        hw.refresh(&layout, t);
                        last_t = Some(t);
                        held_after = t.saturating_sub(span);
                        check_host(&hw, &layout, &rules, &seen, t)?;
                    }
                    HostOp::Rules(specs) => {
                        let new_rules = rules_of(&specs);
                        let new_layout = Layout::for_rules(&new_rules);
                        hw.relayout(&layout, &new_layout, last_t);
                        // Ticks older than the longest timeframe at the last
                        // evaluation are gone.
                        if let Some(t) = last_t {
                            seen.retain(|&ts, _| ts > held_after);
                            check_host(&hw, &new_layout, &new_rules, &seen, t)?;
                        }
                        rules = new_rules;
                        layout = new_layout;
                    }
                }
            }
        }
    }

    #[test]
    fn host_windows_keep_other_fields_for_new_rules() {
        let cpu = rules_of(&[(Aggregation::Sum, 0, 100)]);
        let both = rules_of(&[(Aggregation::Sum, 0, 100), (Aggregation::Max, 2, 100)]);
        let (l1, l2) = (Layout::for_rules(&cpu), Layout::for_rules(&both));
        let mut hw = HostWindows::new(&l1);
        for ts in 1..=20 {
            let values: Values = [
                (FIELDS[0].parse().unwrap(), 1.0),
                (FIELDS[2].parse().unwrap(), ts as f64),
            ]
            .into_iter()
            .collect();
            assert!(hw.insert(&l1, ts, &values));
        }
        hw.refresh(&l1, 20);
        assert_eq!(hw.extra.len(), 1);
        hw.relayout(&l1, &l2, Some(20));
        assert!(hw.extra.is_empty());
        assert_eq!(hw.value(&l2, 0), Some(20.0));
        assert_eq!(hw.value(&l2, 1), Some(20.0));
    }
}
