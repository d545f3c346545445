//! Offline evaluation of recorded ticks: the spec's "replay" semantics.
//!
//! Every instant `t` that is a multiple of the watcher interval with
//! smallest `ts ≤ t ≤` largest `ts` (or a later `until`) is evaluated, in
//! order, by the same [`Engine`] as the live alerter, with no retention.

use metrics_model::time::{Millis, ceil_to, floor_to};
use metrics_model::{Duration, Tick};

use crate::engine::{Engine, EngineOptions};
use crate::incident::Transition;
use crate::rule::RuleSet;

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
    mut engine: Engine,
    ticks: impl IntoIterator<Item = Tick>,
    options: ReplayOptions,
) -> Result<Vec<Transition>, ReplayError> {
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
        return Ok(Vec::new());
    }
    let last = options.until.map_or(max, |u| u.max(max));
    let (from, to) = (ceil_to(min, step), floor_to(last, step));
    if from > to {
        return Ok(Vec::new());
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
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        // Instants increase strictly, so evaluation cannot be refused.
        out.extend(engine.evaluate(t).unwrap_or_default());
        t += step;
    }
    Ok(out)
}
