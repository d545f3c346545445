//! The evaluator: hosts, their windows and incident states, evaluated at
//! instants the caller chooses. The live alerter, `bp-alerter replay` and
//! `bp-alerter test-rules` all drive this same type.
//!
//! Flow: [`Engine::ingest`] ticks in any order (they wait until an
//! evaluation reaches their `ts`), then [`Engine::evaluate`] at increasing
//! instants `t`. At `t`, every pending tick with `ts ≤ t` enters its host's
//! windows (duplicates by host and `ts` are ignored: the first one seen
//! counts), then every rule is evaluated for every known host.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use metrics_model::time::Millis;
use metrics_model::{Duration, HostName, Tick, Values};
use uuid::Uuid;

use crate::incident::{Incident, IncidentState, Transition};
use crate::rule::{Rule, RuleSet};
use crate::window::Window;

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
    options: EngineOptions,
    hosts: BTreeMap<HostName, HostState>,
    pending: VecDeque<(Millis, u64, Tick)>,
    pending_sorted: bool,
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
    /// Greatest `ts` taken in.
    last_ts: Millis,
    /// Ticks taken in, ascending by `ts`, back to the longest timeframe:
    /// for duplicate detection and for rebuilding windows when rules change.
    history: VecDeque<(Millis, Values)>,
    /// One slot per rule, in the order of `Engine::rules`.
    slots: Vec<Slot>,
    /// Ticks due at the evaluation under way, in (ts, arrival) order; taken
    /// in host by host so that each host's memory is touched once.
    inbox: Vec<Tick>,
}

#[derive(Debug, Clone)]
struct Slot {
    window: Window,
    /// `None` is the default state (nothing open, no cooldown): most slots,
    /// kept small so an evaluation streams through less memory.
    state: Option<Box<IncidentState>>,
}

static DEFAULT_STATE: IncidentState = IncidentState {
    open: None,
    cooldown_until: Millis::MIN,
};

impl Slot {
    fn state(&self) -> &IncidentState {
        self.state.as_deref().unwrap_or(&DEFAULT_STATE)
    }

    fn state_mut(&mut self) -> &mut IncidentState {
        self.state.get_or_insert_with(Box::default)
    }
}

impl Engine {
    /// An engine with these rules; incident ids are random UUID v4.
    pub fn new(rules: RuleSet, options: EngineOptions) -> Engine {
        Engine {
            rules,
            options,
            hosts: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_sorted: true,
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

    /// Known hosts with the greatest `ts` taken in for each.
    pub fn hosts(&self) -> impl Iterator<Item = (&HostName, Millis)> {
        self.hosts.iter().map(|(h, s)| (h, s.last_ts))
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
        let new_id = &mut self.new_id;
        self.hosts.retain(|host, hs| {
            hs.take_in(rules, horizon);
            if forget_before.is_some_and(|bound| hs.last_ts <= bound) {
                for (slot, rule) in hs.slots.iter_mut().zip(rules) {
                    if let Some(state) = slot.state.as_deref_mut() {
                        out.extend(state.resolve(t, rule.cooldown().as_millis_i64()));
                    }
                }
                return false;
            }
            let bound = t.saturating_sub(span);
            while hs.history.front().is_some_and(|(ts, _)| *ts <= bound) {
                hs.history.pop_front();
            }
            for (slot, rule) in hs.slots.iter_mut().zip(rules) {
                let value = slot.window.value_at(t);
                // Only a holding condition or an open incident can transition.
                let holds = value.is_some_and(|v| rule.operand().holds(v, rule.value()));
                if holds || slot.state().open.is_some() {
                    out.extend(slot.state_mut().step(rule, host, t, value, new_id));
                }
            }
            true
        });
        out.sort_by(|a, b| {
            (&*a.incident.rule_name, &a.incident.host_name)
                .cmp(&(&*b.incident.rule_name, &b.incident.host_name))
        });
        self.last_t = Some(t);
        Ok(out)
    }

    /// Moves pending ticks with `ts ≤ t` to their hosts' inboxes.
    fn route_due(&mut self, t: Millis) {
        if !self.pending_sorted {
            self.pending
                .make_contiguous()
                .sort_unstable_by_key(|(ts, seq, _)| (*ts, *seq));
            self.pending_sorted = true;
        }
        let n_rules = self.rules.len();
        while self.pending.front().is_some_and(|(ts, _, _)| *ts <= t) {
            let Some((_, _, tick)) = self.pending.pop_front() else {
                break;
            };
            let rules = self.rules.rules();
            if let Some(hs) = self.hosts.get_mut(&tick.host) {
                hs.inbox.push(tick);
                continue;
            }
            let mut hs = HostState {
                last_ts: tick.ts,
                history: VecDeque::new(),
                slots: Vec::with_capacity(n_rules),
                inbox: Vec::new(),
            };
            hs.slots.extend(rules.iter().map(|r| Slot::new(r)));
            let host = tick.host.clone();
            hs.inbox.push(tick);
            self.hosts.insert(host, hs);
        }
    }

    /// Replaces the rules. State belongs to the trimmed rule name: a rule
    /// kept (even edited) keeps its incidents and cooldowns; windows whose
    /// field, timeframe or aggregation changed are rebuilt from the ticks
    /// the engine still holds (those within the previous longest
    /// timeframe). Open incidents of removed rules are resolved at the next
    /// evaluation, with their trigger value unchanged.
    pub fn set_rules(&mut self, rules: RuleSet) {
        let old = std::mem::take(&mut self.rules);
        let last_t = self.last_t;
        for (host, hs) in &mut self.hosts {
            let mut old_slots: BTreeMap<&str, (&Arc<Rule>, Slot)> = old
                .rules()
                .iter()
                .map(|r| r.name())
                .zip(old.rules().iter().zip(hs.slots.drain(..)))
                .collect();
            for rule in rules.rules() {
                let slot = match old_slots.remove(rule.name()) {
                    Some((old_rule, slot)) if old_rule.same_window(rule) => slot,
                    Some((_, slot)) => Slot {
                        window: rebuild(rule, &hs.history, last_t),
                        state: slot.state,
                    },
                    None => Slot {
                        window: rebuild(rule, &hs.history, last_t),
                        state: None,
                    },
                };
                hs.slots.push(slot);
            }
            for (_, (old_rule, slot)) in old_slots {
                if let Some(state) = slot.state.filter(|s| s.open.is_some()) {
                    self.retired.push((old_rule.clone(), host.clone(), *state));
                }
            }
        }
        self.rules = rules;
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
        let rules = self.rules.rules();
        let hs = self.hosts.entry(host.clone()).or_insert_with(|| HostState {
            last_ts: Millis::MIN,
            history: VecDeque::new(),
            slots: rules.iter().map(|r| Slot::new(r)).collect(),
            inbox: Vec::new(),
        });
        hs.slots[index].state = Some(Box::new(state));
    }

    /// The state of (rule, host), if the engine holds that pair.
    pub fn state_of(&self, rule: &str, host: &HostName) -> Option<&IncidentState> {
        let index = self.rules.rules().iter().position(|r| r.name() == rule)?;
        self.hosts.get(host).map(|hs| hs.slots[index].state())
    }

    /// The current value of every (rule, host), as of the last evaluation.
    pub fn window_values(&self) -> impl Iterator<Item = WindowValue<'_>> {
        self.hosts.iter().flat_map(move |(host, hs)| {
            hs.slots
                .iter()
                .zip(self.rules.rules())
                .map(move |(slot, rule)| {
                    let value = slot.window.value();
                    WindowValue {
                        rule,
                        host,
                        value,
                        holds: value.is_some_and(|v| rule.operand().holds(v, rule.value())),
                        open: slot.state().open.as_ref(),
                    }
                })
        })
    }

    /// Every (rule name, host) with its incident state, for persistence.
    pub fn incident_states(&self) -> impl Iterator<Item = (&Arc<Rule>, &HostName, &IncidentState)> {
        self.hosts.iter().flat_map(move |(host, hs)| {
            hs.slots
                .iter()
                .zip(self.rules.rules())
                .map(move |(s, r)| (r, host, s.state()))
        })
    }
}

impl Slot {
    fn new(rule: &Rule) -> Slot {
        Slot {
            window: Window::new(rule.aggregation(), rule.timeframe().as_millis_i64()),
            state: None,
        }
    }
}

impl HostState {
    /// Takes the inbox's ticks into history and windows. Duplicates of a
    /// held (host, ts) are ignored: the first one seen counts.
    fn take_in(&mut self, rules: &[Arc<Rule>], horizon: Millis) {
        // Keep the inbox's allocation from one evaluation to the next.
        let mut inbox = std::mem::take(&mut self.inbox);
        for tick in inbox.drain(..) {
            self.last_ts = self.last_ts.max(tick.ts);
            if tick.ts <= horizon {
                continue;
            }
            let pos = if self.history.back().is_none_or(|(ts, _)| *ts < tick.ts) {
                self.history.len()
            } else {
                match self.history.binary_search_by_key(&tick.ts, |(ts, _)| *ts) {
                    Ok(_) => continue,
                    Err(pos) => pos,
                }
            };
            for (slot, rule) in self.slots.iter_mut().zip(rules) {
                if let Some(v) = tick.values.get(rule.field()) {
                    slot.window.insert(tick.ts, *v);
                }
            }
            self.history.insert(pos, (tick.ts, tick.values));
        }
        self.inbox = inbox;
    }
}

fn rebuild(rule: &Rule, history: &VecDeque<(Millis, Values)>, last_t: Option<Millis>) -> Window {
    let mut w = Window::new(rule.aggregation(), rule.timeframe().as_millis_i64());
    for (ts, values) in history {
        if let Some(v) = values.get(rule.field()) {
            w.insert(*ts, *v);
        }
    }
    if let Some(t) = last_t {
        w.advance(t);
    }
    w
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
