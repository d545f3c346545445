//! The evaluation schedule: the lease's lifetime, the first instant to
//! evaluate after a (re)start (catch-up within `catchUpLimit`), and how long
//! to sleep before the next pass.

use metrics_model::time::{Millis, ceil_to, floor_to};
use rules_engine::{Config, Engine};

/// The lease lives 1.5 watcher intervals (at least 1 s): the leader renews it
/// every interval, and a standby polling every quarter interval takes over
/// within 2 intervals of the leader's death.
pub fn lease_ttl_ms(watcher_ms: i64) -> u64 {
    (watcher_ms.max(1) as u64 * 3 / 2).max(1000)
}

/// How long to sleep before the next pass, ms: until the next instant is
/// due (at most a third of the lease TTL, so the lease is renewed in time);
/// a standby polls every quarter interval, clamped to 50 ms – 5 s.
pub fn next_wake(engine: Option<&Engine>, config: &Config, now: Millis) -> u64 {
    let w = config.alerting.watcher_interval.as_millis_i64();
    let delay = config.alerting.evaluation_delay.as_millis_i64();
    let standby_poll = (w / 4).clamp(50, 5_000);
    let Some(engine) = engine else {
        return standby_poll as u64;
    };
    let next_instant = engine
        .last_evaluated()
        .map_or(floor_to(now - delay, w) + w, |t| t + w);
    let due_at = next_instant + delay;
    // Renew the lease at least every ttl/3 even if nothing is due.
    (due_at - now).clamp(1, lease_ttl_ms(w) as i64 / 3) as u64
}

/// The first instant to evaluate: the one after the last committed, or the
/// current one on a first start, never further back than `catchUpLimit`.
pub fn first_instant(last: Option<Millis>, due: Millis, config: &Config) -> Millis {
    let w = config.alerting.watcher_interval.as_millis_i64();
    let limit = config.alerting.catch_up_limit.as_millis_i64();
    match last {
        None => due,
        Some(last) => (last + w).max(ceil_to(due - limit, w)),
    }
}
