//! `alerting.notifiers`: a list of receivers, each validated with every
//! problem named by its JSON path (see `docs/notifiers.md`).
//!
//! ```json
//! "notifiers": [
//!   { "name": "ops-slack", "type": "slack", "url": { "env": "SLACK_WEBHOOK_URL" },
//!     "match": { "severity": "critical", "host": ["web-*", "api-*"], "labels": { "team": "ops" } },
//!     "sendResolved": true,
//!     "template": { "title": "…", "text": "…" } }
//! ]
//! ```
//!
//! Secrets (`url`, `botToken`, `routingKey`, `apiKey`) are a string, or
//! `{"env": "NAME"}`, or `{"file": "path"}` (trailing newline dropped); they
//! are resolved when the configuration is loaded and never shown by
//! `Debug`, logs or errors.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use metrics_model::glob::Glob;
use rules_engine::Incident;
use rules_engine::error::json_kind as kind;
use serde_json::Value;
use url::Url;

use super::template::{TemplateSet, compile_templates};
use crate::hooks::config::{
    Headers, Problems, SecretUrl, check_keys, headers_key, present, string_key,
};
use rules_engine::Problem;

/// The receiver types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierKind {
    /// Slack incoming webhook, Block Kit message.
    Slack,
    /// Microsoft Teams incoming webhook / Workflows, Adaptive Card.
    Teams,
    /// Discord webhook, embed.
    Discord,
    /// Telegram Bot API `sendMessage`, HTML parse mode.
    Telegram,
    /// PagerDuty Events API v2.
    PagerDuty,
    /// Opsgenie Alert API.
    Opsgenie,
    /// Any URL, templated body.
    Webhook,
    /// Email over SMTP (`lettre`): a plain-text and an HTML part.
    Email,
}

impl NotifierKind {
    /// Every type, as written in the configuration.
    pub const ALL: [(&'static str, NotifierKind); 8] = [
        ("slack", NotifierKind::Slack),
        ("teams", NotifierKind::Teams),
        ("discord", NotifierKind::Discord),
        ("telegram", NotifierKind::Telegram),
        ("pagerduty", NotifierKind::PagerDuty),
        ("opsgenie", NotifierKind::Opsgenie),
        ("webhook", NotifierKind::Webhook),
        ("email", NotifierKind::Email),
    ];

    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        NotifierKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }

    /// The vendor's fixed endpoint, when it has one (`url` overrides it).
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            NotifierKind::Telegram => Some("https://api.telegram.org"),
            NotifierKind::PagerDuty => Some("https://events.pagerduty.com/v2/enqueue"),
            NotifierKind::Opsgenie => Some("https://api.opsgenie.com"),
            _ => None,
        }
    }

    /// The template keys it takes.
    pub fn template_keys(self) -> &'static [&'static str] {
        match self {
            NotifierKind::Webhook => &["body"],
            NotifierKind::Email => &["subject", "text", "html"],
            _ => &["title", "text"],
        }
    }

    /// The keys of its configuration object.
    fn keys(self) -> Vec<&'static str> {
        let mut keys = vec![
            "name",
            "type",
            "match",
            "sendResolved",
            "template",
            "rateLimit",
            "repeatInterval",
        ];
        if self != NotifierKind::Email {
            keys.push("url");
        }
        match self {
            NotifierKind::Email => keys.extend([
                "smtp", "starttls", "caFile", "username", "password", "from", "to", "cc",
            ]),
            NotifierKind::Telegram => keys.extend(["botToken", "chatId"]),
            NotifierKind::PagerDuty => keys.push("routingKey"),
            NotifierKind::Opsgenie => keys.push("apiKey"),
            NotifierKind::Webhook => keys.extend(["method", "headers", "contentType"]),
            _ => {}
        }
        keys
    }
}

/// A secret from the configuration: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which transitions a notifier receives: every matcher a list of globs
/// (any matches); an absent matcher matches everything.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// On the rule name.
    pub rule: Option<Vec<Glob>>,
    /// On the host (`*` for a cluster incident).
    pub host: Option<Vec<Glob>>,
    /// On the instance ("" when none).
    pub instance: Option<Vec<Glob>>,
    /// On the severity ("" when none).
    pub severity: Option<Vec<Glob>>,
    /// On labels: each named label's value ("" when the incident lacks it).
    pub labels: BTreeMap<String, Vec<Glob>>,
}

impl Route {
    /// Whether `incident` goes to this notifier.
    pub fn matches(&self, incident: &Incident) -> bool {
        let any = |globs: &Option<Vec<Glob>>, v: &str| {
            globs
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g.matches(v)))
        };
        any(&self.rule, &incident.rule_name)
            && any(&self.host, incident.host_name.as_str())
            && any(
                &self.instance,
                incident.instance.as_ref().map_or("", |i| i.as_str()),
            )
            && any(&self.severity, incident.severity.as_deref().unwrap_or(""))
            && self.labels.iter().all(|(name, globs)| {
                let v = incident
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(name))
                    .map_or("", String::as_str);
                globs.iter().any(|g| g.matches(v))
            })
    }
}

/// What a type needs beyond the common keys.
#[derive(Debug, Clone)]
pub enum Extra {
    /// Nothing.
    None,
    /// Telegram: the bot token and the chat.
    Telegram {
        /// `botToken`.
        bot_token: Secret,
        /// `chatId` (a number or `@channel`).
        chat_id: String,
    },
    /// PagerDuty: the integration's routing key.
    PagerDuty {
        /// `routingKey`.
        routing_key: Secret,
    },
    /// Opsgenie: the API key.
    Opsgenie {
        /// `apiKey`.
        api_key: Secret,
    },
    /// Email: the SMTP server and the addresses.
    Email(Box<EmailSettings>),
    /// Webhook: method, headers and content type.
    Webhook {
        /// `POST` (default) or `PUT`.
        method: reqwest::Method,
        /// Extra headers.
        headers: Headers,
        /// `application/json` (default) or any other.
        content_type: String,
    },
}

/// How the email notifier reaches its server and whom it writes to.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtp://host:port` (STARTTLS as `starttls` says) or `smtps://host:port`
    /// (TLS from the first byte).
    pub implicit_tls: bool,
    /// The server's host name (also the name its certificate must have).
    pub host: String,
    /// Its port (default 587 for smtp://, 465 for smtps://).
    pub port: u16,
    /// For `smtp://`: `opportunistic`, `required` or `off`.
    pub starttls: StartTls,
    /// An extra trusted root certificate (PEM), e.g. a private CA.
    pub ca_pem: Option<Vec<u8>>,
    /// Login, if the server wants one.
    pub credentials: Option<(String, Secret)>,
    /// `From`.
    pub from: lettre::message::Mailbox,
    /// `To` (at least one).
    pub to: Vec<lettre::message::Mailbox>,
    /// `Cc`.
    pub cc: Vec<lettre::message::Mailbox>,
}

/// STARTTLS on an `smtp://` server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Upgrade when the server offers it.
    Opportunistic,
    /// Refuse to send unless the connection is upgraded.
    Required,
    /// Never (a local relay on loopback).
    Off,
}

/// `rateLimit: {"max": 30, "per": "1m"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages per period (1–10,000).
    pub max: u32,
    /// The period (> 0).
    pub per: metrics_model::Duration,
}

impl NotifierKind {
    /// Whether, beyond its rate limit, it combines transitions into digest
    /// messages (chat and webhook types) rather than queueing them
    /// (PagerDuty, Opsgenie, email: one alert, thread or dedup key per
    /// incident).
    pub fn digests(self) -> bool {
        !matches!(
            self,
            NotifierKind::PagerDuty | NotifierKind::Opsgenie | NotifierKind::Email
        )
    }
}

/// One notifier.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Its name (unique; in logs, counters and dead letters).
    pub name: String,
    /// Its type.
    pub kind: NotifierKind,
    /// Where requests go (the vendor's endpoint or the `url` override).
    pub url: SecretUrl,
    /// Which transitions it gets.
    pub route: Route,
    /// Whether resolves are sent (default true). An open it did not send
    /// is never followed by a resolve: opens and resolves of one incident
    /// match the same route.
    pub send_resolved: bool,
    /// The compiled templates (the type's defaults where not given).
    pub templates: TemplateSet,
    /// Type-specific settings.
    pub extra: Extra,
    /// At most this many messages per period (`rateLimit`), if limited.
    pub rate_limit: Option<RateLimit>,
    /// A reminder every this long while an incident it told stays open
    /// (`repeatInterval`; off when absent).
    pub repeat_interval: Option<metrics_model::Duration>,
    /// Every secret of this notifier, to scrub from error texts.
    pub secrets: Vec<Secret>,
    /// A hash of the entry as written and of its secrets: two configurations
    /// are equal when these are (a SIGHUP reload compares them).
    pub fingerprint: u64,
}

/// Gives every notifier's templates the configured rules (the `rule`
/// variable), and makes a change of them a change of the notifiers.
pub fn attach_rules(notifiers: &mut [NotifierConfig], rules: &rules_engine::RuleSet) {
    let map: std::collections::BTreeMap<String, Value> = rules
        .rules()
        .iter()
        .map(|r| (r.name().to_owned(), r.to_json()))
        .collect();
    let hash = {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&map).unwrap_or_default().hash(&mut h);
        h.finish()
    };
    let map = std::sync::Arc::new(map);
    for n in notifiers {
        n.templates.set_rules(map.clone());
        n.fingerprint ^= hash;
    }
}

impl PartialEq for NotifierConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.fingerprint == other.fingerprint
    }
}

/// Longest notifier name.
pub const NAME_MAX: usize = 64;

/// Parses `alerting.notifiers` at `path`; `external_url` is
/// `alerting.externalUrl` (for the templates' `dashboardUrl`).
pub fn parse_notifiers(
    value: Option<&Value>,
    path: &str,
    external_url: Option<&str>,
) -> Result<Vec<NotifierConfig>, Vec<Problem>> {
    let mut p = Problems::default();
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        p.push(
            path,
            format!("expected an array of notifiers, got {}", kind(v)),
        );
        return Err(p.0);
    };
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(n) = notifier(item, &at, external_url, &mut p) {
            if !names.insert(n.name.clone()) {
                p.push(
                    format!("{at}.name"),
                    format!(
                        "{:?} is the name of an earlier notifier; names must be unique",
                        n.name
                    ),
                );
                continue;
            }
            out.push(n);
        }
    }
    if p.0.is_empty() { Ok(out) } else { Err(p.0) }
}

/// `alerting.externalUrl`, checked: an http(s) URL.
pub fn parse_external_url(value: Option<&Value>, path: &str) -> Result<Option<String>, Problem> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |message: String| Problem {
        path: path.to_owned(),
        message,
        rule: None,
    };
    let Value::String(s) = v else {
        return Err(bad(format!("expected a URL string, got {}", kind(v))));
    };
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(Some(s.trim_end_matches('/').to_owned()))
        }
        Ok(_) => Err(bad("only http:// and https:// URLs".into())),
        Err(e) => Err(bad(format!("not a valid URL: {e}"))),
    }
}

#[allow(clippy::too_many_lines, clippy::single_match_else)] // one check per key, in order
fn notifier(
    item: &Value,
    at: &str,
    external_url: Option<&str>,
    p: &mut Problems,
) -> Option<NotifierConfig> {
    let Value::Object(obj) = item else {
        p.push(
            at,
            format!(
                "expected a notifier object with a name and a type, got {}",
                kind(item)
            ),
        );
        return None;
    };
    let before = p.0.len();
    let kind_name = string_key(obj, at, "type", p);
    let Some(kind_name) = kind_name else {
        if !obj.contains_key("type") {
            p.push(
                format!("{at}.type"),
                format!("missing; one of {}", type_list()),
            );
        }
        return None;
    };
    let Some(kind) = NotifierKind::ALL
        .iter()
        .find(|(n, _)| *n == kind_name)
        .map(|(_, k)| *k)
    else {
        p.push(
            format!("{at}.type"),
            format!("unknown type {kind_name:?}; one of {}", type_list()),
        );
        return None;
    };
    check_keys(obj, at, &kind.keys(), p);
    let name = match string_key(obj, at, "name", p) {
        Some(n) if n.len() > NAME_MAX || n.chars().any(char::is_control) => {
            p.push(
                format!("{at}.name"),
                format!("at most {NAME_MAX} bytes, no control characters"),
            );
            None
        }
        Some(n) => Some(n),
        None => {
            if !obj.contains_key("name") {
                p.push(
                    format!("{at}.name"),
                    "missing; every notifier has a unique name",
                );
            }
            None
        }
    };
    let mut secrets = Vec::new();
    let url = match present(obj, "url") {
        _ if kind == NotifierKind::Email => present(obj, "smtp")
            .and_then(|v| match v {
                Value::String(s) => Url::parse(s).ok().map(SecretUrl),
                _ => None,
            })
            .or_else(|| Url::parse("smtp://invalid").ok().map(SecretUrl)),
        Some(v) => secret(v, &format!("{at}.url"), p).and_then(|s| {
            let u = crate::hooks::config::http_url(&s.0, &format!("{at}.url"), p);
            // A webhook URL's path and query are its token: a receiver
            // echoing the request path must not leak them either.
            if let Some(u) = &u {
                if u.0.path().len() > 1 {
                    secrets.push(Secret(u.0.path().to_owned()));
                }
                if let Some(q) = u.0.query() {
                    secrets.push(Secret(q.to_owned()));
                }
            }
            secrets.push(s);
            u
        }),
        None => match kind.default_url() {
            Some(d) => Url::parse(d).ok().map(SecretUrl),
            None => {
                p.push(
                    format!("{at}.url"),
                    format!(
                        "missing; a {} notifier needs its webhook URL",
                        kind.as_str()
                    ),
                );
                None
            }
        },
    };
    let mut required = |key: &str| -> Option<Secret> {
        match present(obj, key) {
            Some(v) => {
                let s = secret(v, &format!("{at}.{key}"), p)?;
                secrets.push(s.clone());
                Some(s)
            }
            None => {
                p.push(
                    format!("{at}.{key}"),
                    format!("missing; a {} notifier needs it", kind.as_str()),
                );
                None
            }
        }
    };
    let extra = match kind {
        NotifierKind::Telegram => {
            let bot_token = required("botToken");
            let chat_id = match present(obj, "chatId") {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(Value::Number(n)) if n.is_i64() => Some(n.to_string()),
                Some(other) => {
                    p.push(
                        format!("{at}.chatId"),
                        format!(
                            "expected a chat id (a number or \"@channel\"), got {}",
                            rules_engine::error::json_kind(other)
                        ),
                    );
                    None
                }
                None => {
                    p.push(format!("{at}.chatId"), "missing; the chat to send to");
                    None
                }
            };
            match (bot_token, chat_id) {
                (Some(bot_token), Some(chat_id)) => Extra::Telegram { bot_token, chat_id },
                _ => Extra::None,
            }
        }
        NotifierKind::PagerDuty => required("routingKey")
            .map_or(Extra::None, |routing_key| Extra::PagerDuty { routing_key }),
        NotifierKind::Opsgenie => {
            required("apiKey").map_or(Extra::None, |api_key| Extra::Opsgenie { api_key })
        }
        NotifierKind::Email => {
            email(obj, at, p, &mut secrets).map_or(Extra::None, |e| Extra::Email(Box::new(e)))
        }
        NotifierKind::Webhook => {
            let method = match string_key(obj, at, "method", p).as_deref() {
                None | Some("POST") => reqwest::Method::POST,
                Some("PUT") => reqwest::Method::PUT,
                Some(other) => {
                    p.push(format!("{at}.method"), format!("{other:?}: POST or PUT"));
                    reqwest::Method::POST
                }
            };
            let content_type = string_key(obj, at, "contentType", p)
                .unwrap_or_else(|| "application/json".to_owned());
            Extra::Webhook {
                method,
                headers: headers_key(obj, at, p),
                content_type,
            }
        }
        _ => Extra::None,
    };
    let route =
        present(obj, "match").map_or_else(Route::default, |v| route(v, &format!("{at}.match"), p));
    let send_resolved = match present(obj, "sendResolved") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            p.push(
                format!("{at}.sendResolved"),
                format!(
                    "expected true or false, got {}",
                    rules_engine::error::json_kind(other)
                ),
            );
            true
        }
    };
    let rate_limit =
        present(obj, "rateLimit").and_then(|v| rate_limit(v, &format!("{at}.rateLimit"), p));
    let repeat_interval = crate::hooks::config::positive_duration(obj, at, "repeatInterval", p);
    if repeat_interval.is_some() && matches!(kind, NotifierKind::PagerDuty | NotifierKind::Opsgenie)
    {
        p.push(
            format!("{at}.repeatInterval"),
            format!(
                "a {} incident stays open and escalates by itself: no reminders",
                kind.as_str()
            ),
        );
    }
    let templates = compile_templates(
        kind,
        present(obj, "template"),
        &format!("{at}.template"),
        name.as_deref().unwrap_or("?"),
        external_url,
        p,
    );
    if p.0.len() > before {
        return None;
    }
    let fingerprint = {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        item.to_string().hash(&mut h);
        for s in &secrets {
            s.0.hash(&mut h);
        }
        h.finish()
    };
    Some(NotifierConfig {
        fingerprint,
        name: name?,
        kind,
        url: url?,
        route,
        send_resolved,
        templates: templates?,
        extra,
        rate_limit,
        repeat_interval,
        secrets,
    })
}

/// The email notifier's settings.
#[allow(clippy::too_many_lines, clippy::single_match_else)] // one check per key, in order
fn email(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    p: &mut Problems,
    secrets: &mut Vec<Secret>,
) -> Option<EmailSettings> {
    let before = p.0.len();
    let smtp = string_key(obj, at, "smtp", p);
    if smtp.is_none() && !obj.contains_key("smtp") {
        p.push(
            format!("{at}.smtp"),
            "missing; the server as smtp://host:port (STARTTLS) or smtps://host:port (TLS)",
        );
    }
    let server = smtp.and_then(|s| match Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some() => {
            let implicit = u.scheme() == "smtps";
            let port = u.port().unwrap_or(if implicit { 465 } else { 587 });
            Some((
                implicit,
                u.host_str()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_owned(),
                port,
            ))
        }
        Ok(_) => {
            p.push(
                format!("{at}.smtp"),
                "expected smtp://host:port or smtps://host:port",
            );
            None
        }
        Err(e) => {
            p.push(format!("{at}.smtp"), format!("not a valid URL: {e}"));
            None
        }
    });
    let username = string_key(obj, at, "username", p);
    let password = present(obj, "password").and_then(|v| secret(v, &format!("{at}.password"), p));
    let credentials = match (username, password) {
        (Some(u), Some(pw)) => {
            secrets.push(pw.clone());
            Some((u, pw))
        }
        (None, None) => None,
        (Some(_), None) => {
            p.push(format!("{at}.password"), "missing; username is set");
            None
        }
        (None, Some(_)) => {
            p.push(format!("{at}.username"), "missing; password is set");
            None
        }
    };
    let starttls = match string_key(obj, at, "starttls", p).as_deref() {
        None | Some("required") => StartTls::Required,
        Some("opportunistic") => StartTls::Opportunistic,
        Some("off") => StartTls::Off,
        Some(other) => {
            p.push(
                format!("{at}.starttls"),
                format!("{other:?}: opportunistic, required or off"),
            );
            StartTls::Required
        }
    };
    if starttls != StartTls::Required && credentials.is_some() {
        p.push(
            format!("{at}.starttls"),
            "a password is never sent over an unencrypted connection: with username/password use \"required\" (the default) or smtps://",
        );
    }
    let ca_pem = string_key(obj, at, "caFile", p).and_then(|f| match std::fs::read(&f) {
        Ok(b) => Some(b),
        Err(e) => {
            p.push(format!("{at}.caFile"), format!("cannot read {f}: {e}"));
            None
        }
    });
    let mailbox = |v: &Value, path: &str, p: &mut Problems| -> Option<lettre::message::Mailbox> {
        match v {
            Value::String(s) => match s.parse::<lettre::message::Mailbox>() {
                Ok(m) => Some(m),
                Err(e) => {
                    p.push(path, format!("{s:?} is not an email address: {e}"));
                    None
                }
            },
            other => {
                p.push(
                    path,
                    format!("expected an email address, got {}", kind(other)),
                );
                None
            }
        }
    };
    let from = match present(obj, "from") {
        Some(v) => mailbox(v, &format!("{at}.from"), p),
        None => {
            p.push(format!("{at}.from"), "missing; the sender address");
            None
        }
    };
    let list = |key: &str, required: bool, p: &mut Problems| -> Vec<lettre::message::Mailbox> {
        match present(obj, key) {
            None if required => {
                p.push(format!("{at}.{key}"), "missing; a list of addresses");
                Vec::new()
            }
            None => Vec::new(),
            Some(Value::Array(items)) if required && items.is_empty() => {
                p.push(format!("{at}.{key}"), "give at least one address");
                Vec::new()
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| mailbox(v, &format!("{at}.{key}[{i}]"), p))
                .collect(),
            Some(other) => {
                p.push(
                    format!("{at}.{key}"),
                    format!("expected a list of addresses, got {}", kind(other)),
                );
                Vec::new()
            }
        }
    };
    let to = list("to", true, p);
    let cc = list("cc", false, p);
    if p.0.len() > before {
        return None;
    }
    let (implicit_tls, host, port) = server?;
    Some(EmailSettings {
        implicit_tls,
        host,
        port,
        starttls,
        ca_pem,
        credentials,
        from: from?,
        to,
        cc,
    })
}

fn rate_limit(v: &Value, at: &str, p: &mut Problems) -> Option<RateLimit> {
    let Value::Object(obj) = v else {
        p.push(
            at,
            format!("expected {{\"max\": N, \"per\": \"1m\"}}, got {}", kind(v)),
        );
        return None;
    };
    check_keys(obj, at, &["max", "per"], p);
    let max = match obj.get("max").and_then(Value::as_u64) {
        Some(n) if (1..=10_000).contains(&n) => u32::try_from(n).ok(),
        _ => {
            p.push(
                format!("{at}.max"),
                "expected a whole number from 1 to 10000",
            );
            None
        }
    };
    if !obj.contains_key("per") {
        p.push(format!("{at}.per"), "missing; a duration such as \"1m\"");
    }
    let per = crate::hooks::config::positive_duration(obj, at, "per", p);
    Some(RateLimit {
        max: max?,
        per: per?,
    })
}

fn type_list() -> String {
    NotifierKind::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A secret: a string, `{"env": NAME}` or `{"file": PATH}`.
#[allow(clippy::single_match_else)] // each arm names its problem
fn secret(v: &Value, at: &str, p: &mut Problems) -> Option<Secret> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.len() == 1 && o.contains_key("env") => {
            let Some(name) = o.get("env").and_then(Value::as_str) else {
                p.push(
                    format!("{at}.env"),
                    "expected the name of an environment variable",
                );
                return None;
            };
            crate::hooks::process::register_secret_env(name);
            match std::env::var(name) {
                Ok(s) => s,
                Err(_) => {
                    p.push(
                        format!("{at}.env"),
                        format!("the environment variable {name} is not set (or not UTF-8)"),
                    );
                    return None;
                }
            }
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("file") => {
            let Some(path) = o.get("file").and_then(Value::as_str) else {
                p.push(format!("{at}.file"), "expected a file path");
                return None;
            };
            match std::fs::read_to_string(path) {
                Ok(s) => s.trim_end_matches(['\n', '\r']).to_owned(),
                Err(e) => {
                    p.push(format!("{at}.file"), format!("cannot read {path}: {e}"));
                    return None;
                }
            }
        }
        other => {
            p.push(
                at,
                format!(
                    "expected a string, {{\"env\": NAME}} or {{\"file\": PATH}}, got {}",
                    kind(other)
                ),
            );
            return None;
        }
    };
    if text.trim().is_empty() {
        p.push(at, "is empty");
        return None;
    }
    Some(Secret(text))
}

/// A glob, or a list of globs.
fn globs(v: &Value, at: &str, p: &mut Problems) -> Option<Vec<Glob>> {
    let one = |s: &Value, at: &str, p: &mut Problems| -> Option<Glob> {
        match s {
            Value::String(g)
                if g.len() <= rules_engine::silence::PATTERN_MAX
                    && !g.chars().any(char::is_control) =>
            {
                Some(Glob::with_escapes(g))
            }
            Value::String(_) => {
                p.push(
                    at,
                    "a pattern is at most 1,024 bytes, without control characters",
                );
                None
            }
            other => {
                p.push(at, format!("expected a glob string, got {}", kind(other)));
                None
            }
        }
    };
    match v {
        Value::Array(items) if items.is_empty() => {
            p.push(
                at,
                "an empty list matches nothing; leave the key out to match everything",
            );
            None
        }
        Value::Array(items) => {
            let out: Vec<Glob> = items
                .iter()
                .enumerate()
                .filter_map(|(i, s)| one(s, &format!("{at}[{i}]"), p))
                .collect();
            (out.len() == items.len()).then_some(out)
        }
        other => one(other, at, p).map(|g| vec![g]),
    }
}

fn route(v: &Value, at: &str, p: &mut Problems) -> Route {
    let Value::Object(obj) = v else {
        p.push(
            at,
            format!(
                "expected an object of rule, host, instance, severity, labels, got {}",
                kind(v)
            ),
        );
        return Route::default();
    };
    check_keys(
        obj,
        at,
        &["rule", "host", "instance", "severity", "labels"],
        p,
    );
    let get = |key: &str, p: &mut Problems| {
        present(obj, key).and_then(|v| globs(v, &format!("{at}.{key}"), p))
    };
    let mut r = Route {
        rule: get("rule", p),
        host: get("host", p),
        instance: get("instance", p),
        severity: get("severity", p),
        labels: BTreeMap::new(),
    };
    if let Some(l) = present(obj, "labels") {
        match l {
            Value::Object(m) => {
                for (k, v) in m {
                    if let Some(g) = globs(v, &format!("{at}.labels.{}", k.escape_debug()), p) {
                        r.labels.insert(k.clone(), g);
                    }
                }
            }
            other => p.push(
                format!("{at}.labels"),
                format!(
                    "expected an object of label names to globs, got {}",
                    kind(other)
                ),
            ),
        }
    }
    r
}

/// Removes every secret of `secrets` from `text` (vendor error bodies).
pub fn scrub(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_owned();
    let mut sorted: Vec<&Secret> = secrets.iter().collect();
    // The whole URL before its path.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    for s in sorted {
        if s.0.len() >= 4 {
            out = out.replace(&s.0, "<redacted>");
        }
    }
    out
}
