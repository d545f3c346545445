//! Notifier templates (`minijinja`): compiled and checked when the
//! configuration is loaded — a syntax error, or a variable outside the
//! documented list, is a problem naming the notifier, the template and the
//! line — and rendered against sample incidents (version 1 and 2, open and
//! resolved) so that no template fails at 3 a.m.
//!
//! Every documented variable is always defined (`none` when it does not
//! apply), so a template written for version-2 incidents renders version-1
//! ones. See [`VARIABLES`].

use std::sync::Arc;

use metrics_model::time::{Millis, format_rfc3339};
use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use rules_engine::{Event, Incident, Transition};
use serde_json::{Value, json};

use super::config::NotifierKind;
use crate::hooks::config::Problems;

/// The variables a template may use (and the fields of `incident`).
pub const VARIABLES: [&str; 12] = [
    "incident",
    "rule",
    "reminder",
    "event",
    "status",
    "at",
    "notifiedAt",
    "acknowledgedBy",
    "acknowledgedAt",
    "durationMs",
    "dashboardUrl",
    "incidentUrl",
];

/// The fields of `incident`.
pub const INCIDENT_FIELDS: [&str; 10] = [
    "id",
    "ruleName",
    "hostName",
    "instance",
    "severity",
    "labels",
    "description",
    "startTime",
    "endTime",
    "triggerValue",
];

/// The fields of `rule` (the incident's rule as configured; each `none`
/// when the rule does not set it, or is no longer configured): the keys a
/// rule object may have.
pub use rules_engine::rule::RULE_KEYS as RULE_FIELDS;

/// The compiled templates of one notifier.
#[derive(Clone)]
pub struct TemplateSet {
    env: Arc<Environment<'static>>,
    external_url: Option<String>,
    rules: Arc<std::collections::BTreeMap<String, Value>>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").finish_non_exhaustive()
    }
}

/// The default templates of a type.
fn defaults(kind: NotifierKind) -> &'static [(&'static str, &'static str)] {
    const TITLE: &str = "{% if reminder %}[STILL FIRING, reminder {{ reminder }}]\
        {% elif event == 'resolved' %}[RESOLVED]{% else %}[FIRING]{% endif %} \
        {{ incident.ruleName }} on {{ incident.hostName }}{% if incident.instance %} \
        ({{ incident.instance }}){% endif %}";
    const TEXT: &str = "{% if incident.severity %}Severity: {{ incident.severity }}\n{% endif %}\
        Value when it opened: {{ incident.triggerValue | value }}\n\
        Started: {{ incident.startTime }}{% if incident.endTime %}\nResolved: {{ incident.endTime }} \
        (after {{ durationMs | duration }}){% endif %}\
        {% if incident.description %}\n{{ incident.description }}{% endif %}\
        {% if acknowledgedBy %}\nAcknowledged by {{ acknowledgedBy }}{% endif %}\
        {% if incidentUrl %}\n{{ incidentUrl }}{% endif %}";
    const BODY: &str = "{\"event\": {{ event | tojson }}, \"status\": {{ status | tojson }}, \
        \"incident\": {{ incident | tojson }}, \"acknowledgedBy\": {{ acknowledgedBy | tojson }}, \
        \"dashboardUrl\": {{ dashboardUrl | tojson }}}";
    const HTML: &str = "<div style=\"font-family:sans-serif\">\
        <h2 style=\"color:{% if event == 'resolved' %}#2eb886{% else %}#d00000{% endif %}\">\
        {% if event == 'resolved' %}Resolved{% else %}Firing{% endif %}: {{ incident.ruleName }}</h2>\
        <table cellpadding=\"4\">\
        <tr><th align=\"left\">Host</th><td>{{ incident.hostName }}</td></tr>\
        {% if incident.instance %}<tr><th align=\"left\">Instance</th><td>{{ incident.instance }}</td></tr>{% endif %}\
        {% if incident.severity %}<tr><th align=\"left\">Severity</th><td>{{ incident.severity }}</td></tr>{% endif %}\
        <tr><th align=\"left\">Value when it opened</th><td>{{ incident.triggerValue | value }}</td></tr>\
        <tr><th align=\"left\">Started</th><td>{{ incident.startTime }}</td></tr>\
        {% if incident.endTime %}<tr><th align=\"left\">Resolved</th><td>{{ incident.endTime }} (after {{ durationMs | duration }})</td></tr>{% endif %}\
        {% if acknowledgedBy %}<tr><th align=\"left\">Acknowledged by</th><td>{{ acknowledgedBy }}</td></tr>{% endif %}\
        </table>\
        {% if incident.description %}<p>{{ incident.description }}</p>{% endif %}\
        {% if incidentUrl %}<p><a href=\"{{ incidentUrl }}\">Open the dashboard</a></p>{% endif %}\
        </div>";
    match kind {
        NotifierKind::Webhook => &[("body", BODY)],
        NotifierKind::Email => &[("subject", TITLE), ("text", TEXT), ("html", HTML)],
        _ => &[("title", TITLE), ("text", TEXT)],
    }
}

/// `value`: a number with at most two decimals, shortest form.
fn value_filter(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let r = (v * 100.0).round() / 100.0;
    let s = format!("{r:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `duration`: milliseconds as `1h 2m 3s`.
fn duration_filter(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "0s".into();
    }
    let mut s = (ms / 1000.0).round() as u64;
    let d = s / 86_400;
    s %= 86_400;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

/// Escapes what a type's markup would read as markup in a variable's value.
fn escape(kind: NotifierKind, text: &str) -> String {
    match kind {
        // Slack mrkdwn: &, <, > (https://api.slack.com/reference/surfaces/formatting#escaping).
        // Telegram HTML parse mode: the same three
        // (https://core.telegram.org/bots/api#html-style).
        NotifierKind::Slack | NotifierKind::Telegram => text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
        _ => text.to_owned(),
    }
}

fn environment(kind: NotifierKind) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    env.add_filter("value", value_filter);
    env.add_filter("duration", duration_filter);
    // The email's HTML part: every value HTML-escaped.
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_formatter(move |out, state, value| {
        if let Some(s) = value.as_str()
            && !value.is_safe()
            && matches!(kind, NotifierKind::Slack | NotifierKind::Telegram)
        {
            out.write_str(&escape(kind, s))
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// Compiles a notifier's templates at `path` (its `template` object, or
/// the defaults), checks their variables and renders them against sample
/// incidents; every problem names `notifier`, the template and the line.
pub(crate) fn compile_templates(
    kind: NotifierKind,
    value: Option<&Value>,
    path: &str,
    notifier: &str,
    external_url: Option<&str>,
    p: &mut Problems,
) -> Option<TemplateSet> {
    let mut env = environment(kind);
    let given = match value {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            p.push(
                path,
                format!(
                    "expected an object of {}, got {}",
                    kind.template_keys().join(", "),
                    rules_engine::error::json_kind(other)
                ),
            );
            return None;
        }
    };
    let before = p.0.len();
    p.0.extend(rules_engine::error::unknown_keys(
        &given,
        path,
        kind.template_keys(),
        None,
    ));
    for (key, default) in defaults(kind) {
        let source = match given.get(*key) {
            None | Some(Value::Null) => (*default).to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                p.push(
                    format!("{path}.{key}"),
                    format!(
                        "expected a template string, got {}",
                        rules_engine::error::json_kind(other)
                    ),
                );
                continue;
            }
        };
        let at = format!("{path}.{key}");
        if let Err(e) = env.add_template_owned((*key).to_owned(), source.clone()) {
            p.push(at, format!("notifier {notifier:?}: {}", describe(&e)));
            continue;
        }
        let Ok(t) = env.get_template(key) else {
            continue;
        };
        for var in t.undeclared_variables(true) {
            if !documented(&var) {
                let line = source
                    .lines()
                    .position(|l| l.contains(var.rsplit('.').next().unwrap_or(&var)))
                    .map_or(String::new(), |n| format!("line {}: ", n + 1));
                p.push(
                    at.clone(),
                    format!(
                        "notifier {notifier:?}: {line}{var:?} is not a template variable; the variables are {}, incident.{{{}}} and rule.{{{}}}",
                        VARIABLES.join(", "),
                        INCIDENT_FIELDS.join(", "),
                        RULE_FIELDS.join(", ")
                    ),
                );
            }
        }
    }
    if p.0.len() > before {
        return None;
    }
    let set = TemplateSet {
        env: Arc::new(env),
        external_url: external_url.map(str::to_owned),
        rules: Arc::default(),
    };
    for sample in samples() {
        for (key, _) in defaults(kind) {
            if let Err(e) = set.render(key, &sample) {
                p.push(
                    format!("{path}.{key}"),
                    format!(
                        "notifier {notifier:?}: rendering a sample {} incident: {e}",
                        sample.event.as_str()
                    ),
                );
                return None;
            }
        }
    }
    Some(set)
}

/// Whether a (dotted) variable path is documented.
fn documented(var: &str) -> bool {
    let mut parts = var.split('.');
    let Some(top) = parts.next() else {
        return false;
    };
    if !VARIABLES.contains(&top) {
        return false;
    }
    match (top, parts.next()) {
        ("incident", Some(field)) => INCIDENT_FIELDS.contains(&field),
        ("rule", Some(field)) => RULE_FIELDS.contains(&field),
        (_, _) => true,
    }
}

fn describe(e: &minijinja::Error) -> String {
    let line = e.line().map_or(String::new(), |l| format!("line {l}: "));
    let detail = e.detail().map_or(String::new(), |d| format!(": {d}"));
    format!("{line}{}{detail}", e.kind())
}

/// What `bp-alerter notify-test` sends: an open and its resolve of a test
/// incident on `host`, stamped now.
pub fn test_transitions(host: &str) -> Vec<Transition> {
    let now = metrics_model::time::now_ms();
    let inc = Incident {
        id: uuid::Uuid::new_v4(),
        rule_name: "bp-monitoring test notification".into(),
        host_name: host
            .parse()
            .unwrap_or_else(|_| "bp-alerter".parse().expect("a valid host name")),
        instance: None,
        severity: Some("info".into()),
        labels: None,
        description: Some("Sent by bp-alerter notify-test: no action needed.".into()),
        start_time: now,
        end_time: None,
        trigger_value: 42.0,
    };
    let mut resolved = inc.clone();
    resolved.end_time = Some(now + 1000);
    vec![
        Transition::new(Event::Opened, now, inc),
        Transition::new(Event::Resolved, now + 1000, resolved),
    ]
}

/// Sample transitions the templates are checked against: a version-1 open
/// and resolve, and a version-2 resolve with every optional field.
fn samples() -> Vec<Transition> {
    let v1 = Incident {
        id: uuid::Uuid::from_u128(0x5a3b_1e00_0000_4000_8000_0000_0000_0001),
        rule_name: "High CPU".into(),
        host_name: "node-a".parse().expect("a valid host name"),
        instance: None,
        severity: None,
        labels: None,
        description: None,
        start_time: 1_700_000_000_000,
        end_time: None,
        trigger_value: 91.5,
    };
    let mut v2 = v1.clone();
    v2.instance = "/var".parse().ok();
    v2.severity = Some("critical".into());
    v2.labels = Some(Arc::new([("team".to_owned(), "ops".to_owned())].into()));
    v2.description = Some("Clean /var/log".into());
    v2.end_time = Some(1_700_000_600_000);
    let mut v1_resolved = v1.clone();
    v1_resolved.end_time = Some(1_700_000_300_000);
    let mut acked = Transition::new(Event::Resolved, 1_700_000_600_000, v2);
    acked.acknowledged_by = Some("ops".into());
    acked.acknowledged_at = Some(format_rfc3339(1_700_000_100_000));
    let mut released = Transition::new(Event::Opened, v1.start_time, v1);
    released.notified_at = Some(1_700_000_060_000);
    vec![
        released,
        Transition::new(Event::Resolved, 1_700_000_300_000, v1_resolved),
        acked,
    ]
}

impl TemplateSet {
    /// Renders template `key` for `tr`.
    pub fn render(&self, key: &str, tr: &Transition) -> Result<String, String> {
        self.render_reminder(key, tr, None)
    }

    /// Renders template `key` for `tr`, as reminder `n` when given.
    pub fn render_reminder(
        &self,
        key: &str,
        tr: &Transition,
        reminder: Option<u64>,
    ) -> Result<String, String> {
        let t = self.env.get_template(key).map_err(|e| describe(&e))?;
        let mut ctx = context(tr, self.external_url.as_deref());
        ctx["reminder"] = json!(reminder);
        let mut rule = serde_json::Map::new();
        let configured = self.rules.get(&*tr.incident.rule_name);
        for f in RULE_FIELDS {
            rule.insert(
                f.to_owned(),
                configured
                    .and_then(|r| r.get(f))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        ctx["rule"] = Value::Object(rule);
        t.render(JValue::from_serialize(ctx))
            .map(|s| s.trim().to_owned())
            .map_err(|e| describe(&e))
    }

    /// The rules `rule` is looked up in (by name), as configured.
    pub fn set_rules(&mut self, rules: Arc<std::collections::BTreeMap<String, Value>>) {
        self.rules = rules;
    }

    /// The incident's link on the dashboard (`externalUrl`), if configured.
    pub fn incident_url(&self, tr: &Transition) -> Option<String> {
        self.external_url
            .as_ref()
            .map(|u| format!("{u}/#incident={}", tr.incident.id))
    }
}

/// The template context of `tr`: every documented variable, `none` where
/// it does not apply.
pub fn context(tr: &Transition, external_url: Option<&str>) -> Value {
    let inc = &tr.incident;
    let end_or_at: Millis = inc.end_time.unwrap_or(tr.notified_at.unwrap_or(tr.at));
    json!({
        "incident": {
            "id": inc.id.to_string(),
            "ruleName": &*inc.rule_name,
            "hostName": inc.host_name.as_str(),
            "instance": inc.instance.as_ref().map(metrics_model::Instance::as_str),
            "severity": inc.severity.as_deref(),
            "labels": inc.labels.as_deref(),
            "description": inc.description.as_deref(),
            "startTime": format_rfc3339(inc.start_time),
            "endTime": inc.end_time.map(format_rfc3339),
            "triggerValue": inc.trigger_value,
        },
        "event": tr.event.as_str(),
        "status": if tr.event == Event::Resolved { "resolved" } else { "firing" },
        "at": format_rfc3339(tr.at),
        "notifiedAt": tr.notified_at.map(format_rfc3339),
        "acknowledgedBy": tr.acknowledged_by,
        "acknowledgedAt": tr.acknowledged_at,
        "durationMs": end_or_at - inc.start_time,
        "dashboardUrl": external_url,
        "incidentUrl": external_url.map(|u| format!("{u}/#incident={}", inc.id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::needless_pass_by_value)] // the tests pass json!() literals
    fn compile(kind: NotifierKind, template: Value) -> Result<TemplateSet, Vec<String>> {
        let mut p = Problems::default();
        let t = compile_templates(
            kind,
            Some(&template),
            "notifiers[0].template",
            "n",
            Some("https://bp.example"),
            &mut p,
        );
        if p.0.is_empty() {
            Ok(t.unwrap())
        } else {
            Err(p.0.iter().map(ToString::to_string).collect())
        }
    }

    #[test]
    fn defaults_render_version_1_and_2() {
        for (kind, key) in [
            (NotifierKind::Slack, "title"),
            (NotifierKind::Webhook, "body"),
        ] {
            let t = compile(kind, json!({})).unwrap();
            for s in samples() {
                let out = t.render(key, &s).unwrap();
                assert!(out.contains("High CPU"), "{out}");
            }
        }
        let t = compile(NotifierKind::Webhook, json!({})).unwrap();
        let body: Value = serde_json::from_str(&t.render("body", &samples()[2]).unwrap()).unwrap();
        assert_eq!(body["incident"]["labels"]["team"], "ops");
        assert_eq!(body["acknowledgedBy"], "ops");
    }

    #[test]
    fn syntax_errors_and_unknown_variables_name_the_notifier_and_line() {
        let e = compile(
            NotifierKind::Slack,
            json!({ "title": "ok", "text": "line one\n{% if %}" }),
        )
        .unwrap_err();
        assert!(
            e[0].contains("notifiers[0].template.text") && e[0].contains("line 2"),
            "{e:?}"
        );
        assert!(e[0].contains("notifier \"n\""), "{e:?}");
        let e = compile(
            NotifierKind::Slack,
            json!({ "title": "{{ incident.ruleName }}\n{{ incident.hots }}" }),
        )
        .unwrap_err();
        assert!(
            e[0].contains("incident.hots") && e[0].contains("line 2"),
            "{e:?}"
        );
        let e = compile(NotifierKind::Slack, json!({ "text": "{{ secrets }}" })).unwrap_err();
        assert!(e[0].contains("\"secrets\""), "{e:?}");
        let e = compile(NotifierKind::Slack, json!({ "body": "x" })).unwrap_err();
        assert!(e[0].contains("template.body"), "{e:?}");
        // A filter that fails on a sample is found at load time too.
        let e = compile(
            NotifierKind::Slack,
            json!({ "text": "{{ incident.labels.team | upper }}" }),
        )
        .unwrap_err();
        assert!(e[0].contains("rendering a sample"), "{e:?}");
        // Optional keys are none, so guarded use renders for version 1.
        compile(
            NotifierKind::Slack,
            json!({ "text": "{% if incident.labels %}{{ incident.labels.team }}{% endif %}{{ incident.instance or '-' }}" }),
        )
        .unwrap();
    }

    #[test]
    fn rule_and_reminder_variables() {
        let mut t = compile(
            NotifierKind::Webhook,
            json!({ "body": "{{ rule.field }}|{{ rule.severity or '-' }}|{{ reminder or 0 }}" }),
        )
        .unwrap();
        let s = samples().remove(0);
        assert_eq!(
            t.render("body", &s).unwrap(),
            "None|-|0",
            "no rules attached: none"
        );
        t.set_rules(Arc::new(
            [(
                "High CPU".to_owned(),
                json!({ "name": "High CPU", "field": "cpu.usage" }),
            )]
            .into(),
        ));
        assert_eq!(t.render("body", &s).unwrap(), "cpu.usage|-|0");
        assert_eq!(
            t.render_reminder("body", &s, Some(3)).unwrap(),
            "cpu.usage|-|3"
        );
        assert!(
            compile(
                NotifierKind::Slack,
                json!({ "title": "{{ rule.threshold }}" })
            )
            .is_err()
        );
    }

    #[test]
    fn values_are_escaped_for_the_markup() {
        let t = compile(
            NotifierKind::Slack,
            json!({ "title": "<b>{{ incident.ruleName }}</b>" }),
        )
        .unwrap();
        let mut s = samples().remove(0);
        s.incident.rule_name = "a<b>&c".into();
        assert_eq!(t.render("title", &s).unwrap(), "<b>a&lt;b&gt;&amp;c</b>");
        let t = compile(
            NotifierKind::Discord,
            json!({ "title": "{{ incident.ruleName }}" }),
        )
        .unwrap();
        assert_eq!(t.render("title", &s).unwrap(), "a<b>&c");
        assert_eq!(value_filter(91.456), "91.46");
        assert_eq!(value_filter(3.0), "3");
        assert_eq!(duration_filter(3_723_000.0), "1h 2m 3s");
        assert_eq!(duration_filter(0.0), "0s");
    }
}
