//! Incident state in the store.
//!
//! Each series (rule name, host or `*`, instance) with a non-default state
//! is one record. **Alert-state layout 2**: the key is the JSON array
//! `["<rule name>","<host>"]` for a series without an instance (exactly the
//! key of layout 1, so version-1 rules keep their records through an
//! upgrade) and `["<rule name>","<host>","<instance>"]` for one with an
//! instance; a JSON array, so no separator can collide. The value is the
//! [`IncidentState`] as JSON (`{"open": incident or null, "cooldownUntil":
//! ms}`) plus `"field"`, the series' field (layout 2: a record without it is
//! read as of the rule's current field), so that a reload or restart that
//! changed a rule's `field` resolves what no longer belongs. Outbox entries
//! are [`Transition`]s as JSON (the replay line format, which carries
//! everything a hook needs); resolved incidents go to the history as
//! [`Incident`] JSON.

use metrics_model::store::{AlertCommit, AlertSnapshot};
use metrics_model::time::Millis;
use metrics_model::{Field, HostName, Instance, Key};
use rules_engine::{Engine, Event, Incident, IncidentState, Transition};
use serde::{Deserialize, Serialize};

/// A state record that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored incident state {key}: {message}")]
pub struct DecodeError {
    /// The record's key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The store key of a series' state.
pub fn state_key(rule: &str, host: &HostName, instance: Option<&Instance>) -> String {
    match instance {
        None => serde_json::to_string(&(rule, host.as_str())),
        Some(i) => serde_json::to_string(&(rule, host.as_str(), i.as_str())),
    }
    .unwrap_or_default()
}

/// The (rule, host or `*`, instance) of a store key.
pub fn parse_state_key(key: &str) -> Option<(String, HostName, Option<Instance>)> {
    let parts: Vec<String> = serde_json::from_str(key).ok()?;
    let (rule, host, instance) = match parts.as_slice() {
        [rule, host] => (rule, host, None),
        [rule, host, instance] => (rule, host, Some(instance.parse().ok()?)),
        _ => return None,
    };
    Some((rule.clone(), HostName::parse_subject(host).ok()?, instance))
}

/// One stored state as decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    /// The rule's (trimmed) name.
    pub rule: String,
    /// The host, or `*` for a cluster rule.
    pub host: HostName,
    /// The series' instance, if any.
    pub instance: Option<Instance>,
    /// The series' field, when the record says (layout 2).
    pub field: Option<Field>,
    /// The state.
    pub state: IncidentState,
}

impl StoredState {
    /// The series' key: its field (the record's, else `rule_field`'s, the
    /// rule's current one) with its instance. `None` when the instance does
    /// not fit the field.
    pub fn key(&self, rule_field: Option<&Key>) -> Option<Key> {
        let field = self
            .field
            .clone()
            .or_else(|| rule_field.map(|k| k.field().clone()))?;
        match &self.instance {
            None => Some(Key::bare(field)),
            Some(i) => Key::with_instance(field, i.clone()).ok(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    state: IncidentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<Field>,
}

/// The decoded snapshot: last instant evaluated and every stored state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// The last instant evaluated.
    pub last_evaluated: Option<Millis>,
    /// Every stored state.
    pub states: Vec<StoredState>,
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
        let Some((rule, host, instance)) = parse_state_key(key) else {
            errors.push(DecodeError {
                key: key.clone(),
                message: "the key is not [rule, host] or [rule, host, instance]".into(),
            });
            continue;
        };
        match serde_json::from_str::<Record>(json) {
            Ok(record) => restored.states.push(StoredState {
                rule,
                host,
                instance,
                field: record.field,
                state: record.state,
            }),
            Err(e) => errors.push(DecodeError {
                key: key.clone(),
                message: e.to_string(),
            }),
        }
    }
    (restored, errors)
}

/// Restores every decoded state into `engine` (by the series' key: the
/// record's field, else the rule's current one).
pub fn restore_into(engine: &mut Engine, states: Vec<StoredState>) {
    for stored in states {
        let rule_field = engine.rules().get(&stored.rule).map(|r| r.field().clone());
        // A layout-1 record (no field) of a rule that is gone: any key
        // will do, the engine resolves it by name.
        let key = stored
            .key(rule_field.as_ref())
            .unwrap_or_else(|| Key::from(metrics_model::StandardField::CpuUsage));
        engine.restore_state(&stored.rule, &stored.host, &key, stored.state);
    }
}

/// The atomic commit of one evaluation: for every transition, the new state
/// of its series (removed when the engine no longer holds one, or holds the
/// default state), the transition into the outbox, and resolved incidents
/// into the history.
pub fn commit_for(
    evaluated_at: Millis,
    transitions: &[Transition],
    engine: &Engine,
) -> AlertCommit {
    commit_with(evaluated_at, transitions, transitions, &[], engine)
}

/// [`commit_for`] under silences: the states of every transition's series
/// and of every `released` open's (its held flag cleared), the outbox gets
/// `notify` (what the [`rules_engine::NotifyGate`] lets through, in order),
/// the history every resolve.
pub fn commit_with(
    evaluated_at: Millis,
    transitions: &[Transition],
    notify: &[Transition],
    released: &[Transition],
    engine: &Engine,
) -> AlertCommit {
    let mut commit = AlertCommit {
        evaluated_at,
        ..AlertCommit::default()
    };
    for t in transitions.iter().chain(released) {
        let inc = &t.incident;
        let current = engine
            .series_key(&inc.rule_name, inc.instance.as_ref())
            .and_then(|key| {
                let state = engine
                    .state_of(&inc.rule_name, &inc.host_name, &key)?
                    .clone();
                Some((state, key))
            });
        let record = current
            .filter(|(s, _)| s.open.is_some() || s.cooldown_until > evaluated_at)
            .map(|(state, key)| {
                to_json(&Record {
                    state,
                    field: Some(key.field().clone()),
                })
            });
        commit.states.push((
            state_key(&inc.rule_name, &inc.host_name, inc.instance.as_ref()),
            record,
        ));
        if t.event == Event::Resolved {
            commit.resolved.push((
                inc.end_time.unwrap_or(t.at),
                inc.id.to_string(),
                to_json(inc),
            ));
        }
    }
    commit.outbox = notify.iter().map(Transition::to_json_line).collect();
    commit
}

/// The held opens among decoded states (open incidents whose open was not
/// notified yet), as the open transitions to rebuild a
/// [`rules_engine::NotifyGate`] with.
pub fn held_opens(states: &[StoredState]) -> Vec<Transition> {
    states
        .iter()
        .filter(|s| s.state.held)
        .filter_map(|s| {
            let inc = s.state.open.clone()?;
            Some(Transition::new(Event::Opened, inc.start_time, inc))
        })
        .collect()
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
            let key = state_key(rule, &host, None);
            assert_eq!(
                parse_state_key(&key),
                Some((rule.to_owned(), host.clone(), None))
            );
            let inst: Instance = "/data (x)*?".parse().unwrap();
            let key = state_key(rule, &HostName::cluster(), Some(&inst));
            assert_eq!(
                parse_state_key(&key),
                Some((rule.to_owned(), HostName::cluster(), Some(inst)))
            );
        }
        // Layout 1's keys are layout 2's keys of series without an instance.
        assert_eq!(state_key("r", &host, None), r#"["r","node-a"]"#);
        assert_eq!(parse_state_key("nope"), None);
        assert_eq!(parse_state_key(r#"["r","node-a","a]b"]"#), None);
        assert_eq!(parse_state_key(r#"["r","*x"]"#), None);
    }
}
