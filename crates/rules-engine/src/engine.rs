//! The evaluator: hosts, their windows and incident states, evaluated at
//! instants the caller chooses. The live alerter, `bp-alerter replay` and
//! `bp-alerter test-rules` all drive this same type.
//!
//! Flow: [`Engine::ingest`] ticks in any order (they wait until an
//! evaluation reaches their `ts`), then [`Engine::evaluate`] at increasing
//! instants `t`. At `t`, every pending tick with `ts ≤ t` enters its host's
//! windows (duplicates by host and `ts` are ignored: the first one seen
//! counts), then every rule is evaluated for every known host.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use metrics_model::time::Millis;
use metrics_model::{Duration, HostName, Tick, Values};
use uuid::Uuid;

use crate::incident::{Incident, IncidentState, Transition};
use crate::rule::{Rule, RuleSet};
use crate::window::{HostWindows, Layout};

/// How the engine forgets hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Live: a host with no tick newer than `t − retention` is forgotten at
    /// `t` and its open incidents resolved. `None` (replay): hosts are never
    /// forgotten.
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

/// The current window value of one (rule, host), for dashboards and APIs.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValue<'a> {
    /// The rule.
    pub rule: &'a Arc<Rule>,
    /// The host.
    pub host: &'a HostName,
    /// The window's value at the last evaluation (`None`: no value).
    pub value: Option<f64>,
    /// Whether the condition held.
    pub holds: bool,
    /// The open incident, if any.
    pub open: Option<&'a Incident>,
}

/// The rules engine. Not thread-safe by itself; the caller owns it.
pub struct Engine {
    rules: RuleSet,
    /// How the rules read the hosts' windows.
    layout: Layout,
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
    /// Open incidents of rules removed by [`Engine::set_rules`]; resolved at
    /// the next evaluation.
    retired: Vec<(Arc<Rule>, HostName, IncidentState)>,
    new_id: Box<dyn FnMut() -> Uuid + Send>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .field("hosts", &self.hosts.len())
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
    /// Every rule's window over one ring of the host's ticks (back to the
    /// longest timeframe: also for duplicate detection and for rebuilding
    /// windows when rules change).
    windows: HostWindows,
    /// Incident state per rule, in the order of `Engine::rules`. `None` is
    /// the default state (nothing open, no cooldown): most of them, kept
    /// small so an evaluation streams through less memory.
    states: Vec<Option<Box<IncidentState>>>,
}

static DEFAULT_STATE: IncidentState = IncidentState {
    open: None,
    cooldown_until: Millis::MIN,
};

fn state(state: Option<&IncidentState>) -> &IncidentState {
    state.unwrap_or(&DEFAULT_STATE)
}

impl HostState {
    fn new(name: HostName, last_ts: Millis, rules: &RuleSet, layout: &Layout) -> HostState {
        HostState {
            name,
            last_ts,
            windows: HostWindows::new(layout),
            states: vec![None; rules.len()],
        }
    }
}

impl Engine {
    /// An engine with these rules; incident ids are random UUID v4.
    pub fn new(rules: RuleSet, options: EngineOptions) -> Engine {
        Engine {
            layout: Layout::new(rules.rules()),
            rules,
            options,
            hosts: Vec::new(),
            index: HashMap::new(),
            pending: VecDeque::new(),
            pending_sorted: true,
            due: Vec::new(),
            seq: 0,
            last_t: None,
            retired: Vec::new(),
            new_id: Box::new(Uuid::new_v4),
        }
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

    /// Evaluates every rule for every known host at `t`, which must be after
    /// the last evaluated instant. Transitions come sorted by rule name, then
    /// host name (byte order).
    pub fn evaluate(&mut self, t: Millis) -> Result<Vec<Transition>, EngineError> {
        if let Some(last) = self.last_t.filter(|last| t <= *last) {
            return Err(EngineError::NotIncreasing { t, last });
        }
        self.route_due(t);
        let mut out = Vec::new();
        for (rule, _, mut state) in self.retired.drain(..) {
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
        let rules = self.rules.rules();
        let layout = &self.layout;
        let new_id = &mut self.new_id;
        let mut due = self.due.drain(..).peekable();
        let mut forgotten = Vec::new();
        for (i, hs) in self.hosts.iter_mut().enumerate() {
            // Duplicates of a held (host, ts) are ignored: the first one
            // seen counts.
            while let Some((_, ts, values)) = due.next_if(|d| d.0 == i) {
                hs.last_ts = hs.last_ts.max(ts);
                if ts > horizon {
                    hs.windows.insert(layout, ts, &values);
                }
            }
            if forget_before.is_some_and(|bound| hs.last_ts <= bound) {
                for (state, rule) in hs.states.iter_mut().zip(rules) {
                    if let Some(state) = state.as_deref_mut() {
                        out.extend(state.resolve(t, rule.cooldown().as_millis_i64()));
                    }
                }
                forgotten.push(i);
                continue;
            }
            hs.windows.refresh(layout, t);
            for (r, (state, rule)) in hs.states.iter_mut().zip(rules).enumerate() {
                let value = hs.windows.value(layout, r);
                // Only a holding condition or an open incident can transition.
                let holds = value.is_some_and(|v| rule.operand().holds(v, rule.value()));
                if holds || state.as_ref().is_some_and(|s| s.open.is_some()) {
                    let state = state.get_or_insert_with(Box::default);
                    out.extend(state.step(rule, &hs.name, t, value, new_id));
                }
            }
        }
        drop(due);
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
        out.sort_by(|a, b| {
            (&*a.incident.rule_name, &a.incident.host_name)
                .cmp(&(&*b.incident.rule_name, &b.incident.host_name))
        });
        self.last_t = Some(t);
        Ok(out)
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
        self.hosts.push(HostState::new(
            host.clone(),
            last_ts,
            &self.rules,
            &self.layout,
        ));
        self.index.insert(host.clone(), i);
        i
    }

    /// Replaces the rules. State belongs to the trimmed rule name: a rule
    /// kept (even edited) keeps its incidents and cooldowns; windows are
    /// rebuilt from the ticks the engine still holds (those within the
    /// previous longest timeframe). Open incidents of removed rules are
    /// resolved at the next evaluation, with their trigger value unchanged.
    pub fn set_rules(&mut self, rules: RuleSet) {
        let old = std::mem::take(&mut self.rules);
        let layout = Layout::new(rules.rules());
        for hs in &mut self.hosts {
            let mut old_states: BTreeMap<&str, (&Arc<Rule>, Option<Box<IncidentState>>)> = old
                .rules()
                .iter()
                .map(|r| r.name())
                .zip(old.rules().iter().zip(hs.states.drain(..)))
                .collect();
            for rule in rules.rules() {
                hs.states
                    .push(old_states.remove(rule.name()).and_then(|(_, state)| state));
            }
            for (_, (old_rule, state)) in old_states {
                if let Some(state) = state.filter(|s| s.open.is_some()) {
                    self.retired
                        .push((old_rule.clone(), hs.name.clone(), *state));
                }
            }
            hs.windows.relayout(&self.layout, &layout, self.last_t);
        }
        self.rules = rules;
        self.layout = layout;
    }

    /// Continues after `t` (the last instant a previous engine evaluated, as
    /// recorded with the state): the next evaluation must be later, and
    /// ticks at or before `t − longest timeframe` are no longer taken in.
    pub fn resume_after(&mut self, t: Millis) {
        self.last_t = Some(self.last_t.map_or(t, |last| last.max(t)));
    }

    /// Restores the state of (rule, host) saved by a previous engine. A state
    /// of a rule that no longer exists is resolved at the next evaluation if
    /// it has an open incident (as a rule removed by a reload); a host with no
    /// tick yet is known from now on (and forgotten by retention unless ticks
    /// arrive).
    pub fn restore_state(&mut self, rule: &str, host: &HostName, state: IncidentState) {
        let Some(index) = self.rules.rules().iter().position(|r| r.name() == rule) else {
            if let (Some(_), Ok(rule)) = (&state.open, retired_rule(rule, &state)) {
                self.retired.push((rule, host.clone(), state));
            }
            return;
        };
        let i = self.host_index(host, Millis::MIN);
        self.hosts[i].states[index] = Some(Box::new(state));
    }

    /// The state of (rule, host), if the engine holds that pair.
    pub fn state_of(&self, rule: &str, host: &HostName) -> Option<&IncidentState> {
        let index = self.rules.rules().iter().position(|r| r.name() == rule)?;
        self.index
            .get(host)
            .map(|&i| state(self.hosts[i].states[index].as_deref()))
    }

    /// The current value of every (rule, host), as of the last evaluation,
    /// by host name then rule name.
    pub fn window_values(&self) -> impl Iterator<Item = WindowValue<'_>> {
        self.by_name().into_iter().flat_map(move |hs| {
            hs.states
                .iter()
                .zip(self.rules.rules())
                .enumerate()
                .map(move |(r, (s, rule))| {
                    let value = hs.windows.value(&self.layout, r);
                    WindowValue {
                        rule,
                        host: &hs.name,
                        value,
                        holds: value.is_some_and(|v| rule.operand().holds(v, rule.value())),
                        open: state(s.as_deref()).open.as_ref(),
                    }
                })
        })
    }

    /// Every (rule name, host) with its incident state, for persistence, by
    /// host name then rule name.
    pub fn incident_states(&self) -> impl Iterator<Item = (&Arc<Rule>, &HostName, &IncidentState)> {
        self.by_name().into_iter().flat_map(move |hs| {
            hs.states
                .iter()
                .zip(self.rules.rules())
                .map(move |(s, r)| (r, &hs.name, state(s.as_deref())))
        })
    }
}

/// A stand-in rule for resolving the state of a rule that is gone: only
/// its name and a zero cooldown matter.
fn retired_rule(name: &str, state: &IncidentState) -> Result<Arc<Rule>, crate::ConfigError> {
    let value = state.open.as_ref().map_or(0.0, |i| i.trigger_value);
    Rule::new(crate::RuleSpec {
        name: name.to_owned(),
        field: metrics_model::Field::Standard(metrics_model::StandardField::CpuUsage),
        aggregation: crate::Aggregation::Last,
        operand: crate::Operand::EqualOrMoreThan,
        value,
        timeframe: Duration::from_millis(1).unwrap_or_default(),
        cooldown: Duration::ZERO,
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
                    .state_of("n", &host)
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
