//! Offline evaluation of recorded ticks: the spec's "replay" semantics.
//!
//! Every instant `t` that is a multiple of the watcher interval with
//! smallest `ts ≤ t ≤` largest `ts` (or a later `until`) is evaluated, in
//! order, by the same [`Engine`] as the live alerter, with no retention.

use metrics_model::time::{Millis, ceil_to, floor_to};
use metrics_model::{Duration, Tick};

use crate::engine::{Engine, EngineOptions};
use std::collections::HashMap;

use crate::incident::{Event, Transition};
use crate::rule::RuleSet;
use crate::silence::{Muting, NotifyGate};

/// The most instants one replay evaluates by default (over three years of
/// 10 s instants); more is almost always a stray timestamp.
pub const DEFAULT_MAX_INSTANTS: u64 = 10_000_000;

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Instants are the multiples of this (> 0).
    pub watcher_interval: Duration,
    /// Evaluate up to this instant even past the last tick (to see silence).
    pub until: Option<Millis>,
    /// Refuse to evaluate more instants than this.
    pub max_instants: u64,
}

impl ReplayOptions {
    /// Options with this watcher interval and the defaults otherwise.
    pub fn new(watcher_interval: Duration) -> Self {
        ReplayOptions {
            watcher_interval,
            until: None,
            max_instants: DEFAULT_MAX_INSTANTS,
        }
    }
}

/// Why a replay was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The watcher interval is zero.
    #[error("the watcher interval must be greater than 0")]
    ZeroInterval,
    /// The ticks span too many instants.
    #[error(
        "the ticks span {instants} evaluation instants (from {from} to {to} ms every {interval}), more than the limit of {limit}; check for a stray timestamp"
    )]
    TooManyInstants {
        /// Instants that would be evaluated.
        instants: u64,
        /// First instant.
        from: Millis,
        /// Last instant.
        to: Millis,
        /// The interval.
        interval: Duration,
        /// The limit.
        limit: u64,
    },
}

/// Replays `ticks` (any order) against `rules`; returns every transition in
/// time order (ties: by rule name, then host name).
pub fn replay(
    rules: &RuleSet,
    ticks: impl IntoIterator<Item = Tick>,
    options: ReplayOptions,
) -> Result<Vec<Transition>, ReplayError> {
    replay_with(
        Engine::new(rules.clone(), EngineOptions::default()),
        ticks,
        options,
    )
}

/// [`replay`] with a prepared engine (for example one with deterministic ids).
pub fn replay_with(
    engine: Engine,
    ticks: impl IntoIterator<Item = Tick>,
    options: ReplayOptions,
) -> Result<Vec<Transition>, ReplayError> {
    let mut out = Vec::new();
    drive(engine, ticks, options, |_, transitions| {
        out.extend(transitions);
    })?;
    Ok(out)
}

/// One replay line with silences: the transition and the instant it is
/// notified (`notifyAt`), `None` when it never is within the replayed
/// instants.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifiedTransition {
    /// The transition (an open as it was made: `notified_at` unset).
    pub transition: Transition,
    /// When it is notified.
    pub notify_at: Option<Millis>,
}

impl NotifiedTransition {
    /// The replay line `{"event","at","incident","notifyAt"}`.
    pub fn to_json_line(&self) -> String {
        // The version-1 line with one more key, in the spec's key order.
        let mut line = self.transition.to_json_line();
        line.pop();
        line.push_str(",\"notifyAt\":");
        match self.notify_at {
            Some(t) => line.push_str(&t.to_string()),
            None => line.push_str("null"),
        }
        line.push('}');
        line
    }
}

/// [`replay_with`] under silences and maintenance windows: every transition
/// with the instant it is notified, by the same [`NotifyGate`] as live.
pub fn replay_notified(
    engine: Engine,
    ticks: impl IntoIterator<Item = Tick>,
    options: ReplayOptions,
    muting: &Muting,
) -> Result<Vec<NotifiedTransition>, ReplayError> {
    let mut out: Vec<NotifiedTransition> = Vec::new();
    // Where each open still waiting to be notified is in `out`.
    let mut opens: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut gate = NotifyGate::default();
    drive(engine, ticks, options, |t, transitions| {
        let step = gate.step(t, &transitions, muting);
        for tr in transitions {
            let notify_at = match tr.event {
                Event::Opened if gate.is_held(&tr.incident.id) => {
                    opens.insert(tr.incident.id, out.len());
                    None
                }
                Event::Opened => Some(t),
                Event::Resolved => {
                    let held = step
                        .suppressed
                        .iter()
                        .any(|s| s.incident.id == tr.incident.id);
                    opens.remove(&tr.incident.id);
                    (!held).then_some(t)
                }
            };
            out.push(NotifiedTransition {
                transition: tr,
                notify_at,
            });
        }
        for released in &step.released {
            if let Some(i) = opens.remove(&released.incident.id) {
                out[i].notify_at = Some(t);
            }
        }
    })?;
    Ok(out)
}

/// Ingests `ticks` and evaluates every instant, handing each instant's
/// transitions to `each`.
fn drive(
    mut engine: Engine,
    ticks: impl IntoIterator<Item = Tick>,
    options: ReplayOptions,
    mut each: impl FnMut(Millis, Vec<Transition>),
) -> Result<(), ReplayError> {
    let step = options.watcher_interval.as_millis_i64();
    if step <= 0 {
        return Err(ReplayError::ZeroInterval);
    }
    let (mut min, mut max) = (Millis::MAX, Millis::MIN);
    for tick in ticks {
        min = min.min(tick.ts);
        max = max.max(tick.ts);
        engine.ingest(tick);
    }
    if min > max {
        return Ok(());
    }
    let last = options.until.map_or(max, |u| u.max(max));
    let (from, to) = (ceil_to(min, step), floor_to(last, step));
    if from > to {
        return Ok(());
    }
    let instants = ((i128::from(to) - i128::from(from)) / i128::from(step) + 1) as u64;
    if instants > options.max_instants {
        return Err(ReplayError::TooManyInstants {
            instants,
            from,
            to,
            interval: options.watcher_interval,
            limit: options.max_instants,
        });
    }
    let mut t = from;
    while t <= to {
        // Instants increase strictly, so evaluation cannot be refused.
        each(t, engine.evaluate(t).unwrap_or_default());
        t += step;
    }
    Ok(())
}
