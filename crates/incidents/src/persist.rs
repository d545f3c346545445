//! Incident state in the store.
//!
//! Each (rule name, host) with a non-default state is one record: key
//! `["<rule name>","<host>"]` (a JSON array, so no separator can collide),
//! value the [`IncidentState`] as JSON (`{"open": incident or null,
//! "cooldownUntil": ms}`). Outbox entries are [`Transition`]s as JSON (the
//! replay line format, which carries everything a hook needs); resolved
//! incidents go to the history as [`Incident`] JSON.

use metrics_model::HostName;
use metrics_model::store::{AlertCommit, AlertSnapshot};
use metrics_model::time::Millis;
use rules_engine::{Event, Incident, IncidentState, Transition};

/// A state record that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored incident state {key}: {message}")]
pub struct DecodeError {
    /// The record's key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The store key of a (rule, host) state.
pub fn state_key(rule: &str, host: &HostName) -> String {
    serde_json::to_string(&(rule, host.as_str())).unwrap_or_default()
}

/// The (rule, host) of a store key.
pub fn parse_state_key(key: &str) -> Option<(String, HostName)> {
    let (rule, host): (String, String) = serde_json::from_str(key).ok()?;
    Some((rule, host.parse().ok()?))
}

/// The decoded snapshot: last instant evaluated and every stored state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// The last instant evaluated.
    pub last_evaluated: Option<Millis>,
    /// States by (rule name, host).
    pub states: Vec<(String, HostName, IncidentState)>,
}

/// Decodes a snapshot. Records that cannot be read are returned as errors
/// beside the rest, so one bad record does not stop the alerter.
pub fn decode(snapshot: &AlertSnapshot) -> (Restored, Vec<DecodeError>) {
    let mut restored = Restored {
        last_evaluated: snapshot.last_evaluated,
        states: Vec::new(),
    };
    let mut errors = Vec::new();
    for (key, json) in &snapshot.states {
        let Some((rule, host)) = parse_state_key(key) else {
            errors.push(DecodeError {
                key: key.clone(),
                message: "the key is not [rule, host]".into(),
            });
            continue;
        };
        match serde_json::from_str::<IncidentState>(json) {
            Ok(state) => restored.states.push((rule, host, state)),
            Err(e) => errors.push(DecodeError {
                key: key.clone(),
                message: e.to_string(),
            }),
        }
    }
    (restored, errors)
}

/// The atomic commit of one evaluation: for every transition, the new state
/// of its (rule, host) (`current(rule, host)`: `None` when the engine no
/// longer holds one, so the record is removed), the transition into the
/// outbox, and resolved incidents into the history.
pub fn commit_for(
    evaluated_at: Millis,
    transitions: &[Transition],
    current: impl Fn(&str, &HostName) -> Option<IncidentState>,
) -> AlertCommit {
    let mut commit = AlertCommit {
        evaluated_at,
        ..AlertCommit::default()
    };
    for t in transitions {
        let inc = &t.incident;
        let state = current(&inc.rule_name, &inc.host_name)
            .filter(|s| s.open.is_some() || s.cooldown_until > evaluated_at);
        commit.states.push((
            state_key(&inc.rule_name, &inc.host_name),
            state.map(|s| to_json(&s)),
        ));
        commit.outbox.push(t.to_json_line());
        if t.event == Event::Resolved {
            commit.resolved.push((
                inc.end_time.unwrap_or(t.at),
                inc.id.to_string(),
                to_json(inc),
            ));
        }
    }
    commit
}

/// Reads an outbox entry back.
pub fn decode_transition(payload: &str) -> Result<Transition, String> {
    serde_json::from_str(payload).map_err(|e| format!("outbox entry is not a transition: {e}"))
}

/// Reads a history entry back.
pub fn decode_incident(json: &str) -> Result<Incident, String> {
    serde_json::from_str(json).map_err(|e| format!("history entry is not an incident: {e}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let host: HostName = "node-a".parse().unwrap();
        for rule in ["High CPU", "a\",\"b", "x]y", "ü"] {
            let key = state_key(rule, &host);
            assert_eq!(parse_state_key(&key), Some((rule.to_owned(), host.clone())));
        }
        assert_eq!(parse_state_key("nope"), None);
    }
}
