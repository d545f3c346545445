//! The evaluator: hosts, their windows and incident states, evaluated at
//! instants the caller chooses. The live alerter, `bp-alerter replay` and
//! `bp-alerter test-rules` all drive this same type.
//!
//! Flow: [`Engine::ingest`] ticks in any order (they wait until an
//! evaluation reaches their `ts`), then [`Engine::evaluate`] at increasing
//! instants `t`. At `t`, every pending tick with `ts ≤ t` enters its host's
//! windows (duplicates by host and `ts` are ignored: the first one seen
//! counts), then every series of every rule is evaluated.
//!
//! **Series.** State is kept per (rule, subject, key): the subject is a host
//! (scope `host`) or the pseudo-host `*` (scope `cluster`); the key is the
//! rule's bare field, or one instance of it (`disk.usage[/var]`). A host's
//! series are its in-scope rules' keys: the bare key when the rule watches
//! it, and every instance key the host's ticks carried (within the
//! retention). Hosts with the same series share one [`Layout`] (all hosts
//! without instances share the rule set's base layout: the version-1 path
//! costs what it did); a host whose series change (a new mount, an expired
//! one, a reload) moves to another layout, its windows rebuilt from its ring.
//! A cluster rule keeps one multiset window per key over the ticks of every
//! in-scope host.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use metrics_model::time::Millis;
use metrics_model::{Duration, HostName, Key, Tick, Values};
use uuid::Uuid;

use crate::incident::{Incident, IncidentState, Transition};
use crate::rule::{Rule, RuleSet, Scope};
use crate::window::{HostWindows, Layout, Slot, Window};

/// How the engine forgets hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Live: a host with no tick newer than `t − retention` is forgotten at
    /// `t` and its open incidents resolved; likewise an instance key no tick
    /// carried since then stops being a series. `None` (replay): hosts and
    /// instances are never forgotten.
    pub retention: Option<Duration>,
}

/// Why an evaluation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Instants must increase.
    #[error("evaluation instant {t} is not after the last one ({last})")]
    NotIncreasing {
        /// The refused instant.
        t: Millis,
        /// The last instant evaluated.
        last: Millis,
    },
}

/// The current window value of one series, for dashboards and APIs.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValue<'a> {
    /// The rule.
    pub rule: &'a Arc<Rule>,
    /// The host (`*` for a cluster rule).
    pub host: &'a HostName,
    /// The series' key (the rule's field, or one instance of it).
    pub key: &'a Key,
    /// The window's value at the last evaluation (`None`: no value).
    pub value: Option<f64>,
    /// Whether the condition held.
    pub holds: bool,
    /// The open incident, if any.
    pub open: Option<&'a Incident>,
}

/// The state of one series as [`Engine::incident_states`] lists it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesState<'a> {
    /// The rule.
    pub rule: &'a Arc<Rule>,
    /// The host (`*` for a cluster rule).
    pub host: &'a HostName,
    /// The series' key.
    pub key: &'a Key,
    /// Its incident state.
    pub state: &'a IncidentState,
}

/// An open incident waiting to be resolved at the next evaluation (its rule
/// or series is gone).
type Retired = (Arc<Rule>, IncidentState);

/// The rules engine. Not thread-safe by itself; the caller owns it.
pub struct Engine {
    rules: RuleSet,
    /// Layouts by their series; hosts with the same series share one.
    layouts: HashMap<Vec<Slot>, Arc<Layout>>,
    /// Per rule: whether it is host-scoped and may have instance series.
    instance_rules: Vec<usize>,
    options: EngineOptions,
    /// Known hosts, in no particular order (evaluation streams through them);
    /// `index` finds one by name.
    hosts: Vec<HostState>,
    index: HashMap<HostName, usize>,
    pending: VecDeque<(Millis, u64, Tick)>,
    pending_sorted: bool,
    /// Ticks due at the evaluation under way: (host index, ts, values),
    /// by host index then (ts, arrival), so that each host's memory is
    /// touched once and in order.
    due: Vec<(usize, Millis, Values)>,
    seq: u64,
    last_t: Option<Millis>,
    /// Open incidents whose rule or series is gone; resolved at the next
    /// evaluation.
    retired: Vec<Retired>,
    /// One per cluster-scope rule.
    clusters: Vec<ClusterRule>,
    /// The pseudo-host `*`.
    star: HostName,
    new_id: Box<dyn FnMut() -> Uuid + Send>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .field("hosts", &self.hosts.len())
            .field("layouts", &self.layouts.len())
            .field("pending", &self.pending.len())
            .field("last_t", &self.last_t)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct HostState {
    name: HostName,
    /// Greatest `ts` taken in.
    last_ts: Millis,
    /// The host's series and how its windows read them.
    layout: Arc<Layout>,
    /// Every series' window over one ring of the host's ticks (back to the
    /// longest timeframe: also for duplicate detection and for rebuilding
    /// windows when rules change).
    windows: HostWindows,
    /// Incident state per series, in the order of `layout.slots`. `None` is
    /// the default state (nothing open, no cooldown): most of them, kept
    /// small so an evaluation streams through less memory.
    states: Vec<Option<Box<IncidentState>>>,
    /// The cluster rules (indices in `Engine::clusters`) the host is in
    /// scope of.
    clusters: Vec<usize>,
}

/// A cluster-scope rule: one series per key over every in-scope host.
#[derive(Debug, Clone)]
struct ClusterRule {
    /// The rule's index in the rule set.
    rule: usize,
    series: BTreeMap<Key, ClusterSeries>,
    /// Values taken in at the evaluation under way: (key, ts, value).
    incoming: Vec<(Key, Millis, f64)>,
    /// Whether an in-scope host is known at the evaluation under way.
    active: bool,
}

#[derive(Debug, Clone)]
struct ClusterSeries {
    window: Window,
    /// The greatest `ts` of an in-scope tick carrying the key.
    seen: Millis,
    state: IncidentState,
}

impl ClusterSeries {
    fn new(rule: &Rule) -> ClusterSeries {
        ClusterSeries {
            window: Window::multiset(rule.aggregation(), rule.timeframe().as_millis_i64()),
            seen: Millis::MIN,
            state: IncidentState::default(),
        }
    }
}

impl ClusterRule {
    fn new(rule_index: usize, rule: &Rule) -> ClusterRule {
        let mut series = BTreeMap::new();
        if rule.watches_bare() {
            series.insert(rule.field().clone(), ClusterSeries::new(rule));
        }
        ClusterRule {
            rule: rule_index,
            series,
            incoming: Vec::new(),
            active: false,
        }
    }
}

impl HostState {
    /// Moves to `layout`: states kept by series, windows rebuilt from the
    /// ring as of `t`. Returns the states of the series the new layout does
    /// not have.
    fn adopt(
        &mut self,
        layout: Arc<Layout>,
        t: Option<Millis>,
    ) -> BTreeMap<Slot, Box<IncidentState>> {
        let mut old: BTreeMap<Slot, Box<IncidentState>> = self
            .layout
            .slots
            .iter()
            .cloned()
            .zip(self.states.drain(..))
            .filter_map(|(slot, s)| Some((slot, s?)))
            .collect();
        self.states = layout.slots.iter().map(|slot| old.remove(slot)).collect();
        self.windows.relayout(&self.layout, &layout, t);
        self.layout = layout;
        old
    }
}

static DEFAULT_STATE: IncidentState = IncidentState {
    open: None,
    cooldown_until: Millis::MIN,
    held: false,
};

fn state(state: Option<&IncidentState>) -> &IncidentState {
    state.unwrap_or(&DEFAULT_STATE)
}

/// The series of `host` for `rules`: per host-scoped rule that has it in
/// scope, the bare key when the rule watches it, and every key of `keys`
/// (instance keys the host carried, not forgotten) the rule watches.
fn slots_for(
    rules: &RuleSet,
    instance_rules: &[usize],
    host: &HostName,
    keys: &[Key],
) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(rules.len());
    for (i, rule) in rules.rules().iter().enumerate() {
        if rule.scope() != Scope::Host || !rule.in_scope(host) {
            continue;
        }
        if rule.watches_bare() {
            slots.push(Slot {
                rule: i,
                key: rule.field().clone(),
            });
        }
        if instance_rules.binary_search(&i).is_ok() {
            let mut found: Vec<Key> = keys
                .iter()
                .filter(|k| k.instance().is_some() && rule.watches(k))
                .cloned()
                .collect();
            found.sort();
            found.dedup();
            slots.extend(found.into_iter().map(|key| Slot { rule: i, key }));
        }
    }
    slots
}

impl Engine {
    /// An engine with these rules; incident ids are random UUID v4.
    pub fn new(rules: RuleSet, options: EngineOptions) -> Engine {
        let mut engine = Engine {
            layouts: HashMap::new(),
            instance_rules: Vec::new(),
            rules: RuleSet::default(),
            options,
            hosts: Vec::new(),
            index: HashMap::new(),
            pending: VecDeque::new(),
            pending_sorted: true,
            due: Vec::new(),
            seq: 0,
            last_t: None,
            retired: Vec::new(),
            clusters: Vec::new(),
            star: HostName::cluster(),
            new_id: Box::new(Uuid::new_v4),
        };
        engine.install(rules);
        engine
    }

    /// Takes `rules` as the rule set (no host known yet, or hosts adapted
    /// by the caller).
    fn install(&mut self, rules: RuleSet) {
        self.instance_rules = rules
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scope() == Scope::Host && r.field().field().takes_instances())
            .map(|(i, _)| i)
            .collect();
        self.clusters = rules
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scope() == Scope::Cluster)
            .map(|(i, r)| ClusterRule::new(i, r))
            .collect();
        self.layouts.clear();
        self.rules = rules;
    }

    /// The shared layout of these series.
    fn layout(&mut self, slots: Vec<Slot>) -> Arc<Layout> {
        if let Some(l) = self.layouts.get(&slots) {
            return l.clone();
        }
        let floor = self.rules.max_timeframe().as_millis_i64().max(1);
        let layout = Arc::new(Layout::new(self.rules.rules(), slots.clone(), floor));
        self.layouts.insert(slots, layout.clone());
        layout
    }

    /// Replaces the source of incident ids (tests use deterministic ones).
    #[must_use]
    pub fn with_id_source(mut self, new_id: impl FnMut() -> Uuid + Send + 'static) -> Engine {
        self.new_id = Box::new(new_id);
        self
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The last instant evaluated.
    pub fn last_evaluated(&self) -> Option<Millis> {
        self.last_t
    }

    /// Known hosts (by name) with the greatest `ts` taken in for each.
    pub fn hosts(&self) -> impl Iterator<Item = (&HostName, Millis)> {
        self.by_name().into_iter().map(|hs| (&hs.name, hs.last_ts))
    }

    /// The hosts sorted by name.
    fn by_name(&self) -> Vec<&HostState> {
        let mut hosts: Vec<&HostState> = self.hosts.iter().collect();
        hosts.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        hosts
    }

    /// Ticks ingested but not yet reached by an evaluation.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues a tick; it enters the windows at the first evaluation with
    /// `t ≥ ts`. A tick with `ts` at or before the last evaluated instant is
    /// taken in at the next evaluation and does not change evaluations
    /// already made.
    pub fn ingest(&mut self, tick: Tick) {
        if self.pending.back().is_some_and(|(ts, _, _)| *ts > tick.ts) {
            self.pending_sorted = false;
        }
        self.seq += 1;
        self.pending.push_back((tick.ts, self.seq, tick));
    }

    /// Evaluates every series of every rule at `t`, which must be after the
    /// last evaluated instant. Transitions come sorted by rule name, then
    /// host name, then instance (none first), in byte order.
    #[allow(clippy::too_many_lines)] // One pass over the hosts, then the cluster rules.
    pub fn evaluate(&mut self, t: Millis) -> Result<Vec<Transition>, EngineError> {
        if let Some(last) = self.last_t.filter(|last| t <= *last) {
            return Err(EngineError::NotIncreasing { t, last });
        }
        self.route_due(t);
        let mut out = Vec::new();
        for (rule, mut state) in self.retired.drain(..) {
            out.extend(state.resolve(t, rule.cooldown().as_millis_i64()));
        }
        let span = self.rules.max_timeframe().as_millis_i64();
        // Ticks at or before the horizon can be in no future window.
        let horizon = self
            .last_t
            .map_or(Millis::MIN, |last| last.saturating_sub(span));
        let forget_before = self
            .options
            .retention
            .map(|r| t.saturating_sub(r.as_millis_i64()));
        for c in &mut self.clusters {
            c.active = false;
        }
        let mut due = std::mem::take(&mut self.due);
        let mut due_iter = due.drain(..).peekable();
        let mut forgotten = Vec::new();
        let mut moves: Vec<usize> = Vec::new();
        for i in 0..self.hosts.len() {
            let hs = &mut self.hosts[i];
            // Duplicates of a held (host, ts) are ignored: the first one
            // seen counts.
            while let Some((_, ts, values)) = due_iter.next_if(|d| d.0 == i) {
                hs.last_ts = hs.last_ts.max(ts);
                if ts > horizon && hs.windows.insert(&hs.layout, ts, &values) {
                    for &c in &hs.clusters {
                        let cr = &mut self.clusters[c];
                        let rule = &self.rules.rules()[cr.rule];
                        cr.incoming.extend(
                            values
                                .iter()
                                .filter(|(k, _)| rule.watches(k))
                                .map(|(k, v)| (k.clone(), ts, *v)),
                        );
                    }
                }
            }
            if forget_before.is_some_and(|bound| hs.last_ts <= bound) {
                for (slot, state) in hs.layout.slots.iter().zip(&mut hs.states) {
                    if let Some(state) = state.as_deref_mut() {
                        let rule = &self.rules.rules()[slot.rule];
                        out.extend(state.resolve(t, rule.cooldown().as_millis_i64()));
                    }
                }
                forgotten.push(i);
                continue;
            }
            for &c in &hs.clusters {
                self.clusters[c].active = true;
            }
            let new_columns = hs.windows.take_new_columns();
            if (new_columns && !self.instance_rules.is_empty())
                || has_expired_instance(hs, forget_before)
            {
                moves.push(i);
            }
        }
        drop(due_iter);
        self.due = due;
        for i in moves {
            out.extend(self.move_host(i, t, forget_before));
        }
        let rules = self.rules.rules();
        let new_id = &mut self.new_id;
        for hs in &mut self.hosts {
            if forget_before.is_some_and(|bound| hs.last_ts <= bound) {
                continue;
            }
            let layout = &*hs.layout;
            hs.windows.refresh(layout, t);
            for (r, (state, slot)) in hs.states.iter_mut().zip(&layout.slots).enumerate() {
                let rule = &rules[slot.rule];
                let value = hs.windows.value(layout, r);
                // Only a holding condition or an open incident can transition.
                let holds = value.is_some_and(|v| rule.operand().holds(v, rule.value()));
                let open = state.as_ref().is_some_and(|s| s.open.is_some());
                if holds || open {
                    let state = state.get_or_insert_with(Box::default);
                    if value.is_none() && is_stale(rule, hs.windows.seen(layout.slot_column(r)), t)
                    {
                        out.extend(state.resolve(t, rule.cooldown().as_millis_i64()));
                    } else {
                        out.extend(state.step(rule, &hs.name, &slot.key, t, value, new_id));
                    }
                }
            }
        }
        // Last first, so that the host moved into a freed place stays.
        for i in forgotten.into_iter().rev() {
            let gone = self.hosts.swap_remove(i);
            self.index.remove(&gone.name);
            if let Some(moved) = self.hosts.get(i)
                && let Some(at) = self.index.get_mut(&moved.name)
            {
                *at = i;
            }
        }
        self.evaluate_clusters(t, forget_before, &mut out);
        out.sort_by(|a, b| {
            (
                &*a.incident.rule_name,
                &a.incident.host_name,
                &a.incident.instance,
            )
                .cmp(&(
                    &*b.incident.rule_name,
                    &b.incident.host_name,
                    &b.incident.instance,
                ))
        });
        self.last_t = Some(t);
        Ok(out)
    }

    /// Takes the cluster rules' incoming values in and evaluates their
    /// series at `t`.
    fn evaluate_clusters(
        &mut self,
        t: Millis,
        forget_before: Option<Millis>,
        out: &mut Vec<Transition>,
    ) {
        let rules = self.rules.rules();
        let new_id = &mut self.new_id;
        for cr in &mut self.clusters {
            let rule = &rules[cr.rule];
            cr.incoming.sort_by_key(|(_, ts, _)| *ts);
            for (key, ts, v) in cr.incoming.drain(..) {
                let series = cr
                    .series
                    .entry(key)
                    .or_insert_with(|| ClusterSeries::new(rule));
                series.seen = series.seen.max(ts);
                series.window.insert(ts, v);
            }
            if !cr.active {
                // No in-scope host is known (any more): nothing to evaluate;
                // live, what was open resolves as a forgotten host's would.
                if forget_before.is_some() {
                    for series in cr.series.values_mut() {
                        out.extend(series.state.resolve(t, rule.cooldown().as_millis_i64()));
                    }
                }
                continue;
            }
            let mut expired = Vec::new();
            for (key, series) in &mut cr.series {
                if key.instance().is_some() && forget_before.is_some_and(|b| series.seen <= b) {
                    out.extend(series.state.resolve(t, rule.cooldown().as_millis_i64()));
                    expired.push(key.clone());
                    continue;
                }
                let value = series.window.value_at(t);
                if value.is_none() && series.state.open.is_some() && is_stale(rule, series.seen, t)
                {
                    out.extend(series.state.resolve(t, rule.cooldown().as_millis_i64()));
                } else {
                    out.extend(series.state.step(rule, &self.star, key, t, value, new_id));
                }
            }
            for key in expired {
                cr.series.remove(&key);
            }
        }
    }

    /// Gives host `i` the series it has now (new instance keys, expired
    /// ones): a shared layout, its windows rebuilt from its ring, states
    /// kept by series; a series gone resolves its open incident at `t`.
    fn move_host(&mut self, i: usize, t: Millis, forget_before: Option<Millis>) -> Vec<Transition> {
        let hs = &self.hosts[i];
        let keys: Vec<Key> = hs
            .windows
            .all_keys(&hs.layout)
            .filter(|(k, seen)| k.instance().is_some() && forget_before.is_none_or(|b| *seen > b))
            .map(|(k, _)| k.clone())
            .collect();
        let slots = slots_for(&self.rules, &self.instance_rules, &hs.name, &keys);
        if slots == hs.layout.slots {
            return Vec::new();
        }
        let layout = self.layout(slots);
        let mut out = Vec::new();
        for (slot, mut state) in self.hosts[i].adopt(layout, Some(t)) {
            let rule = &self.rules.rules()[slot.rule];
            out.extend(state.resolve(t, rule.cooldown().as_millis_i64()));
        }
        if self.layouts.len() > 64 && self.layouts.len() > self.hosts.len() / 4 {
            self.layouts.retain(|_, l| Arc::strong_count(l) > 1);
        }
        out
    }

    /// Moves pending ticks with `ts ≤ t` to `due`.
    fn route_due(&mut self, t: Millis) {
        if !self.pending_sorted {
            self.pending
                .make_contiguous()
                .sort_unstable_by_key(|(ts, seq, _)| (*ts, *seq));
            self.pending_sorted = true;
        }
        while self.pending.front().is_some_and(|(ts, _, _)| *ts <= t) {
            let Some((_, _, tick)) = self.pending.pop_front() else {
                break;
            };
            let (host, ts, values) = tick.into_parts();
            let i = self.host_index(&host, ts);
            self.due.push((i, ts, values));
        }
        // Stable: each host's ticks stay in (ts, arrival) order.
        self.due.sort_by_key(|d| d.0);
    }

    /// The index of `host`, known from now on (with `last_ts` if new).
    fn host_index(&mut self, host: &HostName, last_ts: Millis) -> usize {
        if let Some(&i) = self.index.get(host) {
            return i;
        }
        let i = self.hosts.len();
        let slots = slots_for(&self.rules, &self.instance_rules, host, &[]);
        let layout = self.layout(slots);
        let clusters = self.clusters_of(host);
        self.hosts.push(HostState {
            name: host.clone(),
            last_ts,
            windows: HostWindows::new(&layout),
            states: vec![None; layout.slots.len()],
            layout,
            clusters,
        });
        self.index.insert(host.clone(), i);
        i
    }

    /// The cluster rules `host` is in scope of.
    fn clusters_of(&self, host: &HostName) -> Vec<usize> {
        self.clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| self.rules.rules()[c.rule].in_scope(host))
            .map(|(i, _)| i)
            .collect()
    }

    /// Replaces the rules. State belongs to the trimmed rule name and the
    /// series: a rule kept (even edited) keeps the incidents and cooldowns
    /// of the series it still has; windows are rebuilt from the ticks the
    /// engine still holds (those within the previous longest timeframe).
    /// Open incidents that no longer belong (the rule removed or renamed, a
    /// host out of its `hosts`, its `scope` or `field` changed) are resolved
    /// at the next evaluation, with their trigger value unchanged.
    pub fn set_rules(&mut self, rules: RuleSet) {
        let old = std::mem::take(&mut self.rules);
        let old_clusters = std::mem::take(&mut self.clusters);
        self.install(rules);
        let t = self.last_t;
        for i in 0..self.hosts.len() {
            let hs = &self.hosts[i];
            let keys: Vec<Key> = hs
                .windows
                .all_keys(&hs.layout)
                .filter(|(k, _)| k.instance().is_some())
                .map(|(k, _)| k.clone())
                .collect();
            let slots = slots_for(&self.rules, &self.instance_rules, &hs.name, &keys);
            let layout = self.layout(slots);
            let clusters = self.clusters_of(&self.hosts[i].name);
            let hs = &mut self.hosts[i];
            let mut by_series: BTreeMap<(&str, &Key), Box<IncidentState>> = BTreeMap::new();
            for (slot, state) in hs.layout.slots.iter().zip(hs.states.drain(..)) {
                if let Some(state) = state {
                    by_series.insert((old.rules()[slot.rule].name(), &slot.key), state);
                }
            }
            hs.states = layout
                .slots
                .iter()
                .map(|slot| by_series.remove(&(self.rules.rules()[slot.rule].name(), &slot.key)))
                .collect();
            for ((name, _), state) in by_series {
                if state.open.is_some()
                    && let Some(rule) = old.get(name)
                {
                    self.retired.push((rule.clone(), *state));
                }
            }
            hs.windows.relayout(&hs.layout, &layout, t);
            hs.layout = layout;
            hs.clusters = clusters;
        }
        // Cluster rules: states kept by (name, key) when the rule is still
        // cluster-wide and watches the key; windows rebuilt from the rings.
        let mut old_series: BTreeMap<(Arc<str>, Key), ClusterSeries> = BTreeMap::new();
        for cr in old_clusters {
            let name = old.rules()[cr.rule].name_arc().clone();
            for (key, series) in cr.series {
                old_series.insert((name.clone(), key), series);
            }
        }
        for cr in &mut self.clusters {
            let rule = &self.rules.rules()[cr.rule];
            let names: Vec<Key> = old_series
                .keys()
                .filter(|(n, k)| **n == *rule.name() && rule.watches(k))
                .map(|(_, k)| k.clone())
                .collect();
            for key in names {
                if let Some(old) = old_series.remove(&(rule.name_arc().clone(), key.clone())) {
                    let mut series = ClusterSeries::new(rule);
                    series.state = old.state;
                    series.seen = old.seen;
                    cr.series.insert(key, series);
                }
            }
        }
        for ((name, _), series) in old_series {
            if series.state.open.is_some()
                && let Some(rule) = old.get(&name)
            {
                self.retired.push((rule.clone(), series.state));
            }
        }
        self.rebuild_cluster_windows();
    }

    /// Refills every cluster window from the hosts' rings, as of the last
    /// evaluated instant.
    fn rebuild_cluster_windows(&mut self) {
        let Some(t) = self.last_t else {
            return;
        };
        for c in 0..self.clusters.len() {
            let rule = self.rules.rules()[self.clusters[c].rule].clone();
            let tf = rule.timeframe().as_millis_i64();
            let mut incoming = Vec::new();
            for hs in &self.hosts {
                if !hs.clusters.contains(&c) {
                    continue;
                }
                hs.windows.for_each_value(&hs.layout, |ts, key, v| {
                    if ts > t - tf && ts <= t && rule.watches(key) {
                        incoming.push((key.clone(), ts, v));
                    }
                });
            }
            incoming.sort_by_key(|(_, ts, _)| *ts);
            let cr = &mut self.clusters[c];
            for series in cr.series.values_mut() {
                series.window = Window::multiset(rule.aggregation(), tf);
            }
            for (key, ts, v) in incoming {
                let series = cr
                    .series
                    .entry(key)
                    .or_insert_with(|| ClusterSeries::new(&rule));
                series.seen = series.seen.max(ts);
                series.window.insert(ts, v);
            }
        }
    }

    /// Continues after `t` (the last instant a previous engine evaluated, as
    /// recorded with the state): the next evaluation must be later, and
    /// ticks at or before `t − longest timeframe` are no longer taken in.
    pub fn resume_after(&mut self, t: Millis) {
        self.last_t = Some(self.last_t.map_or(t, |last| last.max(t)));
    }

    /// Restores the state of a series (rule, host or `*`, key) saved by a
    /// previous engine. A state the rules no longer have a series for (the
    /// rule gone, the host out of its scope, another scope or field) is
    /// resolved at the next evaluation if it has an open incident (as by a
    /// reload); a host with no tick yet is known from now on (and forgotten
    /// by retention unless ticks arrive). An instance series the host has
    /// no tick of yet is restored when its first tick arrives… unless it
    /// never does: then it stays held (live: until retention forgets the
    /// host).
    pub fn restore_state(&mut self, rule: &str, host: &HostName, key: &Key, state: IncidentState) {
        let found = self
            .rules
            .rules()
            .iter()
            .position(|r| r.name() == rule)
            .filter(|&i| {
                let r = &self.rules.rules()[i];
                let scope = if host.is_cluster() {
                    Scope::Cluster
                } else {
                    Scope::Host
                };
                r.scope() == scope && r.watches(key) && (host.is_cluster() || r.in_scope(host))
            });
        let Some(index) = found else {
            if let (Some(_), Ok(rule)) = (&state.open, retired_rule(rule, &state)) {
                self.retired.push((rule, state));
            }
            return;
        };
        if host.is_cluster() {
            if let Some(cr) = self.clusters.iter_mut().find(|c| c.rule == index) {
                let rule = &self.rules.rules()[index];
                cr.series
                    .entry(key.clone())
                    .or_insert_with(|| ClusterSeries::new(rule))
                    .state = state;
            }
            return;
        }
        let i = self.host_index(host, Millis::MIN);
        let slot = Slot {
            rule: index,
            key: key.clone(),
        };
        if !self.hosts[i].layout.slots.contains(&slot) {
            // An instance series: give the host that series now.
            let hs = &self.hosts[i];
            let mut slots = hs.layout.slots.clone();
            slots.push(slot.clone());
            slots.sort();
            let layout = self.layout(slots);
            let last_t = self.last_t;
            // A superset of the host's series: nothing is left over.
            let _ = self.hosts[i].adopt(layout, last_t);
        }
        let hs = &mut self.hosts[i];
        if let Some(at) = hs.layout.slots.iter().position(|s| *s == slot) {
            hs.states[at] = Some(Box::new(state));
        }
    }

    /// The key of rule `rule`'s series with `instance` (the rule's field with
    /// that instance, or its bare key), if the rule exists and may have it.
    pub fn series_key(
        &self,
        rule: &str,
        instance: Option<&metrics_model::Instance>,
    ) -> Option<Key> {
        let field = self.rules.get(rule)?.field();
        match instance {
            None => Some(field.clone()),
            Some(i) => Key::with_instance(field.field().clone(), i.clone()).ok(),
        }
    }

    /// The state of a series, if the engine holds it.
    pub fn state_of(&self, rule: &str, host: &HostName, key: &Key) -> Option<&IncidentState> {
        let index = self.rules.rules().iter().position(|r| r.name() == rule)?;
        if host.is_cluster() {
            let cr = self.clusters.iter().find(|c| c.rule == index)?;
            return cr.series.get(key).map(|s| &s.state);
        }
        let hs = &self.hosts[*self.index.get(host)?];
        let at = hs
            .layout
            .slots
            .iter()
            .position(|s| s.rule == index && s.key == *key)?;
        Some(state(hs.states[at].as_deref()))
    }

    /// Marks the open incident of a series as held (its open not notified
    /// yet) or not. Returns whether the series has an open incident.
    pub fn set_held(&mut self, rule: &str, host: &HostName, key: &Key, held: bool) -> bool {
        let Some(index) = self.rules.rules().iter().position(|r| r.name() == rule) else {
            return false;
        };
        let state = if host.is_cluster() {
            self.clusters
                .iter_mut()
                .find(|c| c.rule == index)
                .and_then(|cr| cr.series.get_mut(key))
                .map(|s| &mut s.state)
        } else {
            let Some(&i) = self.index.get(host) else {
                return false;
            };
            let hs = &mut self.hosts[i];
            hs.layout
                .slots
                .iter()
                .position(|s| s.rule == index && s.key == *key)
                .and_then(|at| hs.states[at].as_deref_mut())
        };
        match state {
            Some(s) if s.open.is_some() => {
                s.held = held;
                true
            }
            _ => false,
        }
    }

    /// The current value of every series, as of the last evaluation, by host
    /// name (cluster rules' `*` first) then rule name, then key.
    pub fn window_values(&self) -> impl Iterator<Item = WindowValue<'_>> {
        let clusters = self.clusters.iter().flat_map(move |cr| {
            let rule = &self.rules.rules()[cr.rule];
            cr.series.iter().map(move |(key, series)| {
                let value = series.window.value();
                WindowValue {
                    rule,
                    host: &self.star,
                    key,
                    value,
                    holds: value.is_some_and(|v| rule.operand().holds(v, rule.value())),
                    open: series.state.open.as_ref(),
                }
            })
        });
        let hosts = self.by_name().into_iter().flat_map(move |hs| {
            hs.states
                .iter()
                .zip(&hs.layout.slots)
                .enumerate()
                .map(move |(r, (s, slot))| {
                    let rule = &self.rules.rules()[slot.rule];
                    let value = hs.windows.value(&hs.layout, r);
                    WindowValue {
                        rule,
                        host: &hs.name,
                        key: &slot.key,
                        value,
                        holds: value.is_some_and(|v| rule.operand().holds(v, rule.value())),
                        open: state(s.as_deref()).open.as_ref(),
                    }
                })
        });
        clusters.chain(hosts)
    }

    /// Every series with its incident state, for persistence: cluster
    /// series first, then by host name, rule name and key.
    pub fn incident_states(&self) -> impl Iterator<Item = SeriesState<'_>> {
        let clusters = self.clusters.iter().flat_map(move |cr| {
            let rule = &self.rules.rules()[cr.rule];
            cr.series.iter().map(move |(key, series)| SeriesState {
                rule,
                host: &self.star,
                key,
                state: &series.state,
            })
        });
        let hosts = self.by_name().into_iter().flat_map(move |hs| {
            hs.states
                .iter()
                .zip(&hs.layout.slots)
                .map(move |(s, slot)| SeriesState {
                    rule: &self.rules.rules()[slot.rule],
                    host: &hs.name,
                    key: &slot.key,
                    state: state(s.as_deref()),
                })
        });
        clusters.chain(hosts)
    }
}

/// Whether an instance series of `hs` has had no tick since `forget_before`.
fn has_expired_instance(hs: &HostState, forget_before: Option<Millis>) -> bool {
    let Some(bound) = forget_before else {
        return false;
    };
    hs.layout.slots.iter().enumerate().any(|(r, slot)| {
        slot.key.instance().is_some() && hs.windows.seen(hs.layout.slot_column(r)) <= bound
    })
}

/// Whether `rule`'s `staleAfter` has passed since `seen` (the last tick
/// carrying the series' key) at `t`.
fn is_stale(rule: &Rule, seen: Millis, t: Millis) -> bool {
    rule.stale_after()
        .is_some_and(|d| seen <= t.saturating_sub(d.as_millis_i64()))
}

/// A stand-in rule for resolving the state of a rule that is gone: only
/// its name and a zero cooldown matter.
fn retired_rule(name: &str, state: &IncidentState) -> Result<Arc<Rule>, crate::ConfigError> {
    let value = state.open.as_ref().map_or(0.0, |i| i.trigger_value);
    Rule::new(crate::RuleSpec {
        name: name.to_owned(),
        field: Key::from(metrics_model::StandardField::CpuUsage),
        aggregation: crate::Aggregation::Max,
        operand: crate::Operand::EqualOrMoreThan,
        value,
        timeframe: Duration::from_millis(1).unwrap_or_default(),
        cooldown: Duration::ZERO,
        meta: crate::rule::RuleMeta::default(),
    })
    .map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(host: &str, ts: Millis, v: f64) -> Tick {
        Tick::new(
            host.parse().unwrap(),
            ts,
            [("cpu.usage".parse().unwrap(), v)],
        )
    }

    #[test]
    fn forgetting_several_hosts_keeps_the_index_right() {
        let rules = RuleSet::from_json(
            &serde_json::json!([{ "name": "n", "field": "cpu.usage", "aggregation": "count",
                "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" }]),
            "rules",
        )
        .unwrap();
        let options = EngineOptions {
            retention: Some("30s".parse().unwrap()),
        };
        let mut engine = Engine::new(rules, options);
        let names = ["a", "b", "c", "d", "e", "f"];
        for name in names {
            engine.ingest(tick(name, 1_000, 1.0));
        }
        engine.evaluate(1_000).unwrap();
        // Only b, d and f keep reporting: a, c and e are forgotten at 40 s.
        for ts in [20_000, 40_000] {
            for name in ["f", "d", "b"] {
                engine.ingest(tick(name, ts, 1.0));
            }
            engine.evaluate(ts).unwrap();
        }
        let hosts: Vec<String> = engine.hosts().map(|(h, _)| h.to_string()).collect();
        assert_eq!(hosts, ["b", "d", "f"]);
        for name in ["b", "d", "f"] {
            let host: HostName = name.parse().unwrap();
            assert!(
                engine
                    .state_of("n", &host, &"cpu.usage".parse().unwrap())
                    .is_some_and(|s| s.open.is_some())
            );
            let i = engine.index[&host];
            assert_eq!(engine.hosts[i].name, host);
        }
        // Ticks still reach the right hosts.
        engine.ingest(tick("d", 50_000, 1.0));
        engine.evaluate(50_000).unwrap();
        let last: Vec<(String, Millis)> =
            engine.hosts().map(|(h, ts)| (h.to_string(), ts)).collect();
        assert_eq!(
            last,
            [
                ("b".into(), 40_000),
                ("d".into(), 50_000),
                ("f".into(), 40_000)
            ]
        );
    }
}
