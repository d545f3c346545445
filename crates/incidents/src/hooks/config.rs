//! The `alerting.hooks` configuration object: validation with every problem
//! reported by JSON path, defaults, and unknown keys rejected.
//!
//! ```json
//! "hooks": {
//!   "directory": "data/global/hooks/on_incident_status_changed",
//!   "timeout": "10s", "maxAttempts": 5, "retryBackoff": "1s",
//!   "concurrency": 8, "node": "node",
//!   "webhooks": [{ "url": "https://example.org/hook", "headers": { "Authorization": "Bearer …" }, "name": "ops" }],
//!   "alertmanager": { "url": "http://127.0.0.1:9093", "resendInterval": "1m" },
//!   "watchdog": { "url": "https://hc-ping.example/uuid", "timeout": "5s" }
//! }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use http::{HeaderName, HeaderValue};
use metrics_model::Duration;
use rules_engine::Problem;
use serde_json::{Map, Value};
use url::Url;

/// The default hook directory, relative to the working directory.
pub const DEFAULT_DIRECTORY: &str = "data/global/hooks/on_incident_status_changed";
/// The default timeout of one hook call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000).unwrap();
/// The default number of attempts per hook and transition.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The default first retry delay (doubled at every retry).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(1_000).unwrap();
/// Retry delays never exceed this (or `retryBackoff` when it is larger).
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_millis(60_000).unwrap();
/// The default number of hook processes that may run at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The greatest accepted `concurrency`.
pub const MAX_CONCURRENCY: usize = 1024;
/// The greatest accepted `maxAttempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// The default Node.js executable.
pub const DEFAULT_NODE: &str = "node";
/// The default Alertmanager re-push interval (Prometheus' `resend-delay`).
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_millis(60_000).unwrap();
/// The default timeout of a watchdog ping.
pub const DEFAULT_WATCHDOG_TIMEOUT: Duration = Duration::from_millis(5_000).unwrap();

/// Keys of the `hooks` object.
pub const HOOKS_KEYS: [&str; 9] = [
    "directory",
    "timeout",
    "maxAttempts",
    "retryBackoff",
    "concurrency",
    "node",
    "webhooks",
    "alertmanager",
    "watchdog",
];
const WEBHOOK_KEYS: [&str; 3] = ["url", "headers", "name"];
const ALERTMANAGER_KEYS: [&str; 3] = ["url", "resendInterval", "headers"];
const WATCHDOG_KEYS: [&str; 2] = ["url", "timeout"];

/// The validated `alerting.hooks` object.
#[derive(Debug, Clone, PartialEq)]
pub struct HooksConfig {
    /// Directory of file hooks (`*.js` and executables); relative paths are
    /// relative to the working directory. A missing directory means no file
    /// hook.
    pub directory: PathBuf,
    /// Timeout of every hook call (> 0).
    pub timeout: Duration,
    /// Attempts per hook and transition before a dead letter (≥ 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled at every retry, capped at
    /// [`MAX_RETRY_BACKOFF`] (or this value when it is larger).
    pub retry_backoff: Duration,
    /// Hook processes (JS and executables) running at once, at most (≥ 1).
    pub concurrency: usize,
    /// The Node.js executable for `*.js` hooks (looked up in `PATH` when it
    /// has no `/`).
    pub node: PathBuf,
    /// Webhooks, in configuration order.
    pub webhooks: Vec<WebhookConfig>,
    /// The Alertmanager to push to, if any.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// The watchdog URL pinged after every successful evaluation, if any.
    pub watchdog: Option<WatchdogConfig>,
    /// `alerting.notifiers` (parsed beside the hooks object, see
    /// [`crate::notifiers::parse_notifiers`]).
    pub notifiers: Vec<crate::notifiers::NotifierConfig>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            directory: PathBuf::from(DEFAULT_DIRECTORY),
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            concurrency: DEFAULT_CONCURRENCY,
            node: PathBuf::from(DEFAULT_NODE),
            webhooks: Vec::new(),
            alertmanager: None,
            watchdog: None,
            notifiers: Vec::new(),
        }
    }
}

/// HTTP headers from the configuration. Their values often hold secrets:
/// `Debug` shows only the names.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Headers(pub Vec<(HeaderName, HeaderValue)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, _)| (k.as_str(), "<redacted>")))
            .finish()
    }
}

/// A URL whose `Debug` shows only its origin (scheme, host, port): paths
/// and queries of webhook URLs often hold tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(pub Url);

impl SecretUrl {
    /// `scheme://host[:port]`, safe to log.
    pub fn origin(&self) -> String {
        let origin = self.0.origin();
        if origin.is_tuple() {
            return origin.ascii_serialization();
        }
        // Non-web schemes (smtp://, smtps://) have an opaque origin.
        match (self.0.host_str(), self.0.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", self.0.scheme()),
            (Some(h), None) => format!("{}://{h}", self.0.scheme()),
            _ => format!("{}:", self.0.scheme()),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/<redacted>", self.origin())
    }
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The hook's name in logs, counters and dead letters: `name` when
    /// given, else `webhook:<host>` (`#2`, `#3`… appended to repeats).
    pub name: String,
    /// Where the transition is sent with `POST` (http or https).
    pub url: SecretUrl,
    /// Extra request headers.
    pub headers: Headers,
}

/// The Alertmanager push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL; alerts go to `<url>/api/v2/alerts`.
    pub url: SecretUrl,
    /// Every open alert is re-pushed this often (> 0).
    pub resend_interval: Duration,
    /// Extra request headers (e.g. `Authorization` for a proxy in front).
    pub headers: Headers,
}

/// The watchdog ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// The URL fetched with `GET` after every successful evaluation.
    pub url: SecretUrl,
    /// Timeout of one ping (> 0).
    pub timeout: Duration,
}

impl HooksConfig {
    /// Validates an `alerting.hooks` object found at `path` (for example
    /// `pro.alerting.hooks`). Every problem is reported, each with its JSON
    /// path; unknown keys are problems.
    pub fn from_json(value: &Value, path: &str) -> Result<HooksConfig, Vec<Problem>> {
        let mut p = Problems::default();
        let mut config = HooksConfig::default();
        let Value::Object(obj) = value else {
            p.push(path, format!("expected an object, got {}", kind(value)));
            return Err(p.0);
        };
        check_keys(obj, path, &HOOKS_KEYS, &mut p);
        if let Some(dir) = string_key(obj, path, "directory", &mut p) {
            config.directory = PathBuf::from(dir);
        }
        if let Some(d) = positive_duration(obj, path, "timeout", &mut p) {
            config.timeout = d;
        }
        if let Some(n) = integer_key(
            obj,
            path,
            "maxAttempts",
            1,
            u64::from(MAX_ATTEMPTS_LIMIT),
            &mut p,
        ) {
            config.max_attempts = u32::try_from(n).unwrap_or(DEFAULT_MAX_ATTEMPTS);
        }
        if let Some(d) = duration_key(obj, path, "retryBackoff", &mut p) {
            config.retry_backoff = d;
        }
        if let Some(n) = integer_key(obj, path, "concurrency", 1, MAX_CONCURRENCY as u64, &mut p) {
            config.concurrency = usize::try_from(n).unwrap_or(DEFAULT_CONCURRENCY);
        }
        if let Some(node) = string_key(obj, path, "node", &mut p) {
            config.node = PathBuf::from(node);
        }
        config.webhooks = webhooks(obj, path, &mut p);
        config.alertmanager = present(obj, "alertmanager")
            .and_then(|v| alertmanager(v, &format!("{path}.alertmanager"), &mut p));
        config.watchdog =
            present(obj, "watchdog").and_then(|v| watchdog(v, &format!("{path}.watchdog"), &mut p));
        if p.0.is_empty() { Ok(config) } else { Err(p.0) }
    }

    /// The configuration of an `alerting` section: its `hooks` object when
    /// present (validated at `path`), else the defaults.
    pub fn from_optional(value: Option<&Value>, path: &str) -> Result<HooksConfig, Vec<Problem>> {
        match value {
            None | Some(Value::Null) => Ok(HooksConfig::default()),
            Some(v) => HooksConfig::from_json(v, path),
        }
    }
}

#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            rule: None,
        });
    }
}

use rules_engine::error::json_kind as kind;

pub(crate) fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn check_keys(obj: &Map<String, Value>, path: &str, valid: &[&str], p: &mut Problems) {
    p.0.extend(rules_engine::error::unknown_keys(obj, path, valid, None));
}

pub(crate) fn string_key(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    p: &mut Problems,
) -> Option<String> {
    match present(obj, key)? {
        Value::String(s) if s.trim().is_empty() => {
            p.push(format!("{path}.{key}"), "must not be empty");
            None
        }
        Value::String(s) => Some(s.clone()),
        other => {
            p.push(
                format!("{path}.{key}"),
                format!("expected a string, got {}", kind(other)),
            );
            None
        }
    }
}

pub(crate) fn duration_key(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    p: &mut Problems,
) -> Option<Duration> {
    match present(obj, key)? {
        Value::String(s) => match Duration::parse_config(s) {
            Ok(d) => Some(d),
            Err(e) => {
                p.push(format!("{path}.{key}"), e.to_string());
                None
            }
        },
        other => {
            p.push(
                format!("{path}.{key}"),
                format!(
                    "expected a duration string such as \"10s\", got {}",
                    kind(other)
                ),
            );
            None
        }
    }
}

pub(crate) fn positive_duration(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    p: &mut Problems,
) -> Option<Duration> {
    let d = duration_key(obj, path, key, p)?;
    if d.is_zero() {
        p.push(format!("{path}.{key}"), "must be greater than 0");
        return None;
    }
    Some(d)
}

pub(crate) fn integer_key(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    min: u64,
    max: u64,
    p: &mut Problems,
) -> Option<u64> {
    let v = present(obj, key)?;
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            p.push(
                format!("{path}.{key}"),
                format!("expected an integer from {min} to {max}, got {v}"),
            );
            None
        }
    }
}

fn url_key(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Option<SecretUrl> {
    let at = format!("{path}.url");
    let Some(v) = present(obj, "url") else {
        p.push(at, "missing; give an http:// or https:// URL");
        return None;
    };
    let Value::String(text) = v else {
        p.push(at, format!("expected a URL string, got {}", kind(v)));
        return None;
    };
    http_url(text, &at, p)
}

/// An http(s) URL with a host at `at` (the URL itself is never echoed: it
/// may hold a token).
pub(crate) fn http_url(text: &str, at: &str, p: &mut Problems) -> Option<SecretUrl> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(SecretUrl(url))
        }
        Ok(url) => {
            p.push(
                at,
                format!(
                    "the URL scheme is {:?}; only http and https are supported",
                    url.scheme()
                ),
            );
            None
        }
        Err(e) => {
            p.push(at, format!("not a valid URL: {e}"));
            None
        }
    }
}

pub(crate) fn headers_key(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Headers {
    let mut headers = Headers::default();
    let Some(v) = present(obj, "headers") else {
        return headers;
    };
    let Value::Object(map) = v else {
        p.push(
            format!("{path}.headers"),
            format!(
                "expected an object of header names to strings, got {}",
                kind(v)
            ),
        );
        return headers;
    };
    for (name, value) in map {
        let at = format!("{path}.headers.{name}");
        let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
            p.push(at, "not a valid HTTP header name");
            continue;
        };
        let Value::String(text) = value else {
            p.push(at, format!("expected a string, got {}", kind(value)));
            continue;
        };
        // The value is never echoed: it may be a secret.
        match HeaderValue::from_str(text) {
            Ok(mut hv) => {
                hv.set_sensitive(true);
                headers.0.push((header_name, hv));
            }
            Err(_) => p.push(
                at,
                "the value is not a valid HTTP header value (control characters or non-ASCII)",
            ),
        }
    }
    headers
}

fn webhooks(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Vec<WebhookConfig> {
    let Some(v) = present(obj, "webhooks") else {
        return Vec::new();
    };
    let Value::Array(items) = v else {
        p.push(
            format!("{path}.webhooks"),
            format!("expected an array of webhooks, got {}", kind(v)),
        );
        return Vec::new();
    };
    let mut out: Vec<WebhookConfig> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut pending_defaults: Vec<(usize, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}.webhooks[{i}]");
        let Value::Object(o) = item else {
            p.push(
                &at,
                format!("expected an object with a url, got {}", kind(item)),
            );
            continue;
        };
        check_keys(o, &at, &WEBHOOK_KEYS, p);
        let name = string_key(o, &at, "name", p).map(|n| n.trim().to_owned());
        let url = url_key(o, &at, p);
        let headers = headers_key(o, &at, p);
        if let Some(n) = &name {
            if is_reserved(n) {
                p.push(
                    format!("{at}.name"),
                    format!("{n:?} is reserved; choose another name"),
                );
            } else if !names.insert(n.clone()) {
                p.push(
                    format!("{at}.name"),
                    format!("another webhook is named {n:?}; names must be distinct"),
                );
            }
        }
        let Some(url) = url else { continue };
        if name.is_none() {
            pending_defaults.push((out.len(), format!("webhook:{}", host_of(&url))));
        }
        out.push(WebhookConfig {
            name: name.unwrap_or_default(),
            url,
            headers,
        });
    }
    for (index, base) in pending_defaults {
        let mut candidate = base.clone();
        let mut n = 2;
        while names.contains(&candidate) {
            candidate = format!("{base}#{n}");
            n += 1;
        }
        names.insert(candidate.clone());
        out[index].name = candidate;
    }
    out
}

fn is_reserved(name: &str) -> bool {
    name == crate::hooks::alertmanager::NAME || name.starts_with("directory ")
}

fn host_of(url: &SecretUrl) -> String {
    let host = url.0.host_str().unwrap_or("?");
    match url.0.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn alertmanager(v: &Value, path: &str, p: &mut Problems) -> Option<AlertmanagerConfig> {
    let Value::Object(o) = v else {
        p.push(
            path,
            format!("expected an object with a url, got {}", kind(v)),
        );
        return None;
    };
    check_keys(o, path, &ALERTMANAGER_KEYS, p);
    let url = url_key(o, path, p);
    let resend_interval =
        positive_duration(o, path, "resendInterval", p).unwrap_or(DEFAULT_RESEND_INTERVAL);
    let headers = headers_key(o, path, p);
    Some(AlertmanagerConfig {
        url: url?,
        resend_interval,
        headers,
    })
}

fn watchdog(v: &Value, path: &str, p: &mut Problems) -> Option<WatchdogConfig> {
    let Value::Object(o) = v else {
        p.push(
            path,
            format!("expected an object with a url, got {}", kind(v)),
        );
        return None;
    };
    check_keys(o, path, &WATCHDOG_KEYS, p);
    let url = url_key(o, path, p);
    let timeout = positive_duration(o, path, "timeout", p).unwrap_or(DEFAULT_WATCHDOG_TIMEOUT);
    Some(WatchdogConfig { url: url?, timeout })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(v: &Value) -> Vec<String> {
        match HooksConfig::from_json(v, "pro.alerting.hooks") {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn empty_object_gives_defaults() {
        let c = HooksConfig::from_json(&json!({}), "hooks").unwrap();
        assert_eq!(c, HooksConfig::default());
        assert_eq!(c.timeout.as_millis(), 10_000);
        assert_eq!(c.directory, PathBuf::from(DEFAULT_DIRECTORY));
        assert_eq!(
            HooksConfig::from_optional(None, "hooks").unwrap(),
            HooksConfig::default()
        );
    }

    #[test]
    fn full_object() {
        let c = HooksConfig::from_json(
            &json!({
                "directory": "/etc/bp/hooks", "timeout": "2s", "maxAttempts": 3,
                "retryBackoff": "100ms", "concurrency": 2, "node": "/usr/bin/node",
                "webhooks": [
                    {"url": "https://example.org/a/secret", "headers": {"Authorization": "Bearer x"}},
                    {"url": "https://example.org/b"},
                    {"url": "http://127.0.0.1:9000/", "name": "local"}
                ],
                "alertmanager": {"url": "http://127.0.0.1:9093"},
                "watchdog": {"url": "https://hc.example/ping/abc", "timeout": "1s"}
            }),
            "hooks",
        )
        .unwrap();
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.concurrency, 2);
        let names: Vec<&str> = c.webhooks.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            ["webhook:example.org", "webhook:example.org#2", "local"]
        );
        assert_eq!(
            c.alertmanager.as_ref().unwrap().resend_interval.as_millis(),
            60_000
        );
        assert_eq!(c.watchdog.as_ref().unwrap().timeout.as_millis(), 1_000);
        let debug = format!("{c:?}");
        assert!(!debug.contains("Bearer"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("abc"), "{debug}");
    }

    #[test]
    fn every_problem_by_path() {
        let got = problems(&json!({
            "timeout": "0s", "maxAttempts": 0, "retryBackoff": 5, "concurrency": 5000,
            "directory": "", "bogus": true,
            "webhooks": [
                {"url": "ftp://example.org/x", "headers": {"X-Key": 1, "bad name": "v"}, "extra": 1},
                "nope",
                {"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}
            ],
            "alertmanager": {"resendInterval": "1x"},
            "watchdog": []
        }));
        let expected = [
            "pro.alerting.hooks.bogus: unknown key; valid keys are directory, timeout, maxAttempts, retryBackoff, concurrency, node, webhooks, alertmanager, watchdog",
            "pro.alerting.hooks.directory: must not be empty",
            "pro.alerting.hooks.timeout: must be greater than 0",
            "pro.alerting.hooks.maxAttempts: expected an integer from 1 to 100, got 0",
            "pro.alerting.hooks.retryBackoff: expected a duration string such as \"10s\", got a number",
            "pro.alerting.hooks.concurrency: expected an integer from 1 to 1024, got 5000",
            "pro.alerting.hooks.webhooks[0].extra: unknown key; valid keys are url, headers, name",
            "pro.alerting.hooks.webhooks[0].url: the URL scheme is \"ftp\"; only http and https are supported",
            "pro.alerting.hooks.webhooks[0].headers.X-Key: expected a string, got a number",
            "pro.alerting.hooks.webhooks[0].headers.bad name: not a valid HTTP header name",
            "pro.alerting.hooks.webhooks[1]: expected an object with a url, got a string",
            "pro.alerting.hooks.webhooks[3].name: another webhook is named \"a\"; names must be distinct",
            "pro.alerting.hooks.alertmanager.url: missing; give an http:// or https:// URL",
            "pro.alerting.hooks.alertmanager.resendInterval: \"1x\" is not a duration (neither the compact form, such as 1h30m, nor a form of the ms library, such as \"10 seconds\" or \"1.5h\"); write e.g. 500ms, 10s, 2m, 1h30m, 1d",
            "pro.alerting.hooks.watchdog: expected an object with a url, got an array",
        ];
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut exp_sorted: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        exp_sorted.sort();
        assert_eq!(got_sorted, exp_sorted, "got:\n{}", got.join("\n"));
    }

    #[test]
    fn not_an_object() {
        assert_eq!(
            problems(&json!([1])),
            ["pro.alerting.hooks: expected an object, got an array"]
        );
    }

    #[test]
    fn header_values_never_in_problems() {
        let got =
            problems(&json!({"webhooks": [{"url": "http://x", "headers": {"A": "sec\u{1}ret"}}]}));
        assert_eq!(got.len(), 1);
        assert!(!got[0].contains("sec"), "{got:?}");
    }
}
