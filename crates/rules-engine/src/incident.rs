//! Incidents and the per-series state machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics_model::time::{self, Millis};
use metrics_model::{HostName, Instance, Key};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rule::Rule;

/// An incident, as the hooks, the API and the replay output show it:
/// `{"id","ruleName","hostName","startTime","endTime","triggerValue"}` with
/// times in RFC 3339 UTC with milliseconds, and `instance`, `severity`,
/// `labels`, `description` (after `hostName`) only when they apply, so a
/// version-1 rule gives exactly the version-1 object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// A random UUID v4.
    pub id: Uuid,
    /// The (trimmed) name of the rule.
    pub rule_name: Arc<str>,
    /// The host (`*` for a cluster-wide rule).
    pub host_name: HostName,
    /// The instance of the series (`/var` of `disk.usage[/var]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
    /// The rule's severity, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Arc<str>>,
    /// The rule's labels, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Arc<BTreeMap<String, String>>>,
    /// The rule's description, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Arc<str>>,
    /// The instant it opened, ms since the epoch.
    #[serde(with = "rfc3339")]
    pub start_time: Millis,
    /// The instant it resolved; `None` while open.
    #[serde(with = "rfc3339_opt")]
    pub end_time: Option<Millis>,
    /// The window's value when it opened.
    pub trigger_value: f64,
}

impl Incident {
    /// Whether it is still open.
    pub fn is_open(&self) -> bool {
        self.end_time.is_none()
    }
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// It opened.
    Opened,
    /// It resolved.
    Resolved,
}

impl Event {
    /// `opened` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Resolved => "resolved",
        }
    }
}

/// One open or resolve: the unit delivered to hooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Opened or resolved.
    pub event: Event,
    /// The evaluation instant, ms since the epoch.
    pub at: Millis,
    /// The incident (resolved: with `endTime` set).
    pub incident: Incident,
    /// For an open held by a silence or maintenance window: the instant it
    /// was released and notified (`notifiedAt`); absent otherwise.
    #[serde(
        rename = "notifiedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub notified_at: Option<Millis>,
    /// Who acknowledged the incident (resolve payloads only; absent when
    /// nobody did).
    #[serde(
        rename = "acknowledgedBy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged, RFC 3339 (with `acknowledgedBy`).
    #[serde(
        rename = "acknowledgedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub acknowledged_at: Option<String>,
}

impl Transition {
    /// A transition as the engine makes it (not held, not acknowledged).
    pub fn new(event: Event, at: Millis, incident: Incident) -> Transition {
        Transition {
            event,
            at,
            incident,
            notified_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }

    /// The idempotency key of its delivery: `<incident id>:opened` or
    /// `<incident id>:resolved`.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.incident.id, self.event.as_str())
    }

    /// The replay output line: `{"event":…,"at":…,"incident":{…}}`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The state of one series (rule, subject, key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentState {
    /// The open incident, if any.
    pub open: Option<Incident>,
    /// No incident opens before this instant (ms).
    pub cooldown_until: Millis,
    /// The open incident's open transition has not been notified yet (a
    /// silence or maintenance window holds it): leader state, persisted
    /// with the rest so that a restart or takeover releases it once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl Default for IncidentState {
    fn default() -> Self {
        IncidentState {
            open: None,
            cooldown_until: Millis::MIN,
            held: false,
        }
    }
}

impl IncidentState {
    /// One evaluation at `t` with the window's value `value` (`None`: the
    /// window has no value). Returns the transition it makes, if any:
    /// - no open incident, the condition holds and `t ≥ cooldown_until`: open;
    /// - open incident, the window has a value and the condition does not
    ///   hold: resolve, and `cooldown_until = t + cooldown`;
    /// - otherwise nothing changes.
    pub fn step(
        &mut self,
        rule: &Rule,
        host: &HostName,
        key: &Key,
        t: Millis,
        value: Option<f64>,
        new_id: &mut dyn FnMut() -> Uuid,
    ) -> Option<Transition> {
        let holds = value.map(|v| rule.operand().holds(v, rule.value()));
        match (&self.open, holds) {
            (None, Some(true)) if t >= self.cooldown_until => {
                let meta = rule.meta();
                let incident = Incident {
                    id: new_id(),
                    rule_name: rule.name_arc().clone(),
                    host_name: host.clone(),
                    instance: key.instance().cloned(),
                    severity: meta.severity.clone(),
                    labels: meta.labels.clone(),
                    description: meta.description.clone(),
                    start_time: t,
                    end_time: None,
                    trigger_value: value.unwrap_or_default(),
                };
                self.open = Some(incident.clone());
                Some(Transition::new(Event::Opened, t, incident))
            }
            (Some(_), Some(false)) => self.resolve(t, rule.cooldown().as_millis_i64()),
            _ => None,
        }
    }

    /// Resolves the open incident at `t` (if any), keeping its trigger value;
    /// starts a cooldown of `cooldown_ms`.
    pub fn resolve(&mut self, t: Millis, cooldown_ms: i64) -> Option<Transition> {
        let mut incident = self.open.take()?;
        self.held = false;
        incident.end_time = Some(t);
        self.cooldown_until = t.saturating_add(cooldown_ms);
        Some(Transition::new(Event::Resolved, t, incident))
    }
}

mod rfc3339 {
    use super::{Millis, time};
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` passes `&T`.
    pub fn serialize<S: Serializer>(ts: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time::format_rfc3339(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let text = String::deserialize(d)?;
        time::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

mod rfc3339_opt {
    use super::{Millis, time};
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`.
    pub fn serialize<S: Serializer>(ts: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&time::format_rfc3339(*ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => time::parse_rfc3339(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time"))
            }),
        }
    }
}
