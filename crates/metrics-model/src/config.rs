//! What every configuration file reader shares: the problem type (a JSON
//! path and a message, every problem reported at once), the unknown-key
//! check, the `pro`-root discovery (a `botpress.config.json` keeps the
//! sections under `pro`; a bare file has them at the top), and the
//! monitoring section, which the collector reads alone. Each other section
//! is parsed by the crate that owns it (rules: `rules-engine`; hooks:
//! `incidents`), and `alerter::config` is the front door that reads them
//! all.

use std::fmt;

use serde_json::{Map, Value};

use crate::Duration;
use crate::glob::Glob;
use crate::key::Instance;

/// One problem in a configuration or rule set, located by JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON path such as `pro.alerting.rules[2].timeframe`.
    pub path: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
    /// The (trimmed) name of the rule the problem is in, when known.
    pub rule: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(rule) = &self.rule {
            write!(f, " (rule {rule:?})")?;
        }
        Ok(())
    }
}

/// Why a configuration or rule set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not JSON.
    #[error("{source_name}:{line}:{column}: invalid JSON: {message}")]
    Syntax {
        /// The file (or other source) name.
        source_name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The JSON is well-formed but has problems; every one is listed.
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// Every problem, one per line, as an operator would read them.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Syntax { .. } => vec![self.to_string()],
            ConfigError::Invalid(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    /// A JSON syntax error of `source_name`, with its line and column.
    pub fn from_json(source_name: &str, e: &serde_json::Error) -> Self {
        let message = e.to_string();
        // serde_json appends " at line L column C"; we print them in front instead.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        ConfigError::Syntax {
            source_name: source_name.to_owned(),
            line: e.line(),
            column: e.column(),
            message,
        }
    }
}

/// Collects problems while walking a JSON document.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Adds a problem at `path` (in `rule`, when known).
    pub fn push(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        rule: Option<&str>,
    ) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            rule: rule.map(str::to_owned),
        });
    }

    /// `value` when there is no problem, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

/// The JSON type of `v` in words, for messages: `a string`, `an object`.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One problem per key of `obj` that is not in `valid`, sorted by key, each
/// at `path.key` (just `key` when `path` is empty), naming the valid keys.
pub fn unknown_keys(
    obj: &Map<String, Value>,
    path: &str,
    valid: &[&str],
    rule: Option<&str>,
) -> Vec<Problem> {
    let mut unknown: Vec<&String> = obj
        .keys()
        .filter(|k| !valid.contains(&k.as_str()))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|key| Problem {
            path: if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            },
            message: format!("unknown key; valid keys are {}", valid.join(", ")),
            rule: rule.map(str::to_owned),
        })
        .collect()
}

/// The object holding the sections: `pro` in a `botpress.config.json`, else
/// the top level; with the path prefix of its sections (`"pro."` or `""`).
/// A document that is not an object (or whose `pro` is not one) is a
/// problem.
pub fn root<'a>(
    value: &'a Value,
    p: &mut Problems,
) -> Option<(&'static str, &'a Map<String, Value>)> {
    let Value::Object(top) = value else {
        p.push(
            "$",
            format!("expected a configuration object, got {}", json_kind(value)),
            None,
        );
        return None;
    };
    match top.get("pro") {
        Some(Value::Object(pro)) => Some(("pro.", pro)),
        Some(other) => {
            p.push(
                "pro",
                format!("expected an object, got {}", json_kind(other)),
                None,
            );
            None
        }
        None => Some(("", top)),
    }
}

/// The section `key` of `root`, if present (`null` counts as absent); one
/// that is not an object is a problem.
pub fn section<'a>(
    root: &'a Map<String, Value>,
    prefix: &str,
    key: &str,
    p: &mut Problems,
) -> Option<&'a Map<String, Value>> {
    match root.get(key)? {
        Value::Object(m) => Some(m),
        Value::Null => None,
        other => {
            p.push(
                format!("{prefix}{key}"),
                format!("expected an object, got {}", json_kind(other)),
                None,
            );
            None
        }
    }
}

/// The string at `key`, or a problem when it is not one.
pub fn string_key<'a>(
    obj: &'a Map<String, Value>,
    at: &str,
    key: &str,
    rule: Option<&str>,
    p: &mut Problems,
) -> Option<&'a str> {
    match obj.get(key)? {
        Value::String(s) => Some(s),
        other => {
            p.push(
                format!("{at}.{key}"),
                format!("expected a string, got {}", json_kind(other)),
                rule,
            );
            None
        }
    }
}

/// A duration written in a configuration file at `key` (the compact grammar
/// or any `ms` form: [`Duration::parse_config`]); a problem when it is not.
pub fn duration_key(
    obj: &Map<String, Value>,
    at: &str,
    key: &str,
    rule: Option<&str>,
    p: &mut Problems,
) -> Option<Duration> {
    let s = string_key(obj, at, key, rule, p)?;
    Duration::parse_config(s)
        .map_err(|e| p.push(format!("{at}.{key}"), e.to_string(), rule))
        .ok()
}

/// The monitoring (collection) section.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringConfig {
    /// Whether collection runs.
    pub enabled: bool,
    /// How often a collector writes a tick (> 0).
    pub collection_interval: Duration,
    /// How long ticks are kept (> 0).
    pub retention_period: Duration,
    /// How often ticks older than the retention are removed (> 0).
    pub janitor_interval: Duration,
    /// Which mounted filesystems give `disk.*[<mount>]` (by mount point).
    pub filesystems: Selection,
    /// Which network interfaces give `net.*[<iface>]` (by name).
    pub interfaces: Selection,
    /// Which block devices give `io.*[<device>]` (by name).
    pub block_devices: Selection,
    /// The watched processes (`process.*[<name>]`), in configuration order.
    pub processes: Vec<WatchedProcess>,
}

/// Include and exclude globs (with `\` escapes, as silences use) over the
/// names of one kind of instance (mount points, interfaces, block devices):
/// `exclude` always wins; `include` adds names the collector's default rule
/// leaves out (a `tmpfs`, the loopback interface); with neither, the default
/// rule alone decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Names sampled even when the default rule leaves them out.
    pub include: Vec<Glob>,
    /// Names never sampled.
    pub exclude: Vec<Glob>,
}

impl Selection {
    /// Whether `name` is sampled, given whether the default rule takes it.
    pub fn admits(&self, name: &str, by_default: bool) -> bool {
        if self.exclude.iter().any(|g| g.matches(name)) {
            return false;
        }
        by_default || self.include.iter().any(|g| g.matches(name))
    }
}

/// What a watched process is recognised by: one glob over one of its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessMatch {
    /// The command name (`/proc/<pid>/comm`, at most 15 bytes on Linux).
    Comm(Glob),
    /// The executable's full path (`/proc/<pid>/exe`).
    Exe(Glob),
    /// The command line, arguments joined by one space.
    Cmdline(Glob),
}

/// One entry of `monitoring.processes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedProcess {
    /// The instance of its `process.*` keys.
    pub name: Instance,
    /// How its processes are recognised.
    pub matcher: ProcessMatch,
}

/// At most this many watched processes.
pub const MAX_WATCHED_PROCESSES: usize = 64;
/// At most this many globs in one include or exclude list.
pub const MAX_SELECTION_GLOBS: usize = 256;

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            enabled: true,
            collection_interval: d("10s"),
            retention_period: d("10d"),
            janitor_interval: d("15m"),
            filesystems: Selection::default(),
            interfaces: Selection::default(),
            block_devices: Selection::default(),
            processes: Vec::new(),
        }
    }
}

/// Keys of the monitoring section.
pub const MONITORING_KEYS: [&str; 8] = [
    "enabled",
    "collectionInterval",
    "retentionPeriod",
    "janitorInterval",
    "filesystems",
    "interfaces",
    "blockDevices",
    "processes",
];
/// A section's problems: errors when it is enabled; when it says
/// `"enabled": false`, warnings (`ignored`), except a bad `enabled` itself.
pub fn disabled_problems(
    enabled: bool,
    section: Problems,
    errors: &mut Problems,
    ignored: &mut Vec<String>,
) {
    if enabled {
        errors.0.extend(section.0);
    } else {
        ignored.extend(section.0.iter().map(ToString::to_string));
    }
}

/// Adds an unknown-key problem per key of `obj` not in `valid`.
pub fn check_keys(obj: &Map<String, Value>, path: &str, valid: &[&str], p: &mut Problems) {
    p.0.extend(unknown_keys(obj, path, valid, None));
}

/// The section's `enabled` (default `true`).
pub fn enabled(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> bool {
    match obj.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            p.push(
                format!("{path}.enabled"),
                format!("expected true or false, got {}", json_kind(other)),
                None,
            );
            true
        }
    }
}

/// A positive duration at `key`, or `default` when absent.
pub fn interval(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    default: Duration,
    p: &mut Problems,
) -> Duration {
    if obj.get(key).is_none_or(Value::is_null) {
        return default;
    }
    match duration_key(obj, path, key, None, p) {
        Some(d) if d.is_zero() => {
            p.push(format!("{path}.{key}"), "must be greater than 0", None);
            default
        }
        Some(d) => d,
        None => default,
    }
}

/// Parses the monitoring section `obj` found at `path`.
pub fn monitoring(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> MonitoringConfig {
    check_keys(obj, path, &MONITORING_KEYS, p);
    let def = MonitoringConfig::default();
    MonitoringConfig {
        enabled: enabled(obj, path, p),
        collection_interval: interval(obj, path, "collectionInterval", def.collection_interval, p),
        retention_period: interval(obj, path, "retentionPeriod", def.retention_period, p),
        janitor_interval: interval(obj, path, "janitorInterval", def.janitor_interval, p),
        filesystems: selection(obj, path, "filesystems", p),
        interfaces: selection(obj, path, "interfaces", p),
        block_devices: selection(obj, path, "blockDevices", p),
        processes: processes(obj, path, p),
    }
}

/// `{ "include": [globs], "exclude": [globs] }` at `key` (absent: both empty).
fn selection(obj: &Map<String, Value>, path: &str, key: &str, p: &mut Problems) -> Selection {
    let at = format!("{path}.{key}");
    let mut out = Selection::default();
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            check_keys(m, &at, &["include", "exclude"], p);
            out.include = globs(m, &at, "include", p);
            out.exclude = globs(m, &at, "exclude", p);
        }
        Some(other) => p.push(
            at,
            format!(
                "expected an object with include and/or exclude, got {}",
                json_kind(other)
            ),
            None,
        ),
    }
    out
}

/// A list of non-empty glob strings at `key`.
fn globs(obj: &Map<String, Value>, at: &str, key: &str, p: &mut Problems) -> Vec<Glob> {
    let at = format!("{at}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() > MAX_SELECTION_GLOBS => {
            p.push(
                at,
                format!(
                    "at most {MAX_SELECTION_GLOBS} patterns, got {}",
                    items.len()
                ),
                None,
            );
            Vec::new()
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Value::String(s) if !s.is_empty() && !s.chars().any(char::is_control) => {
                    Some(Glob::with_escapes(s))
                }
                Value::String(_) => {
                    p.push(
                        format!("{at}[{i}]"),
                        "a pattern must be non-empty and hold no control character",
                        None,
                    );
                    None
                }
                other => {
                    p.push(
                        format!("{at}[{i}]"),
                        format!("expected a string, got {}", json_kind(other)),
                        None,
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            p.push(
                at,
                format!("expected a list of patterns, got {}", json_kind(other)),
                None,
            );
            Vec::new()
        }
    }
}

/// `processes`: `[{ "name": "<instance>", "match": { "comm"|"exe"|"cmdline": "<glob>" } }]`.
fn processes(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Vec<WatchedProcess> {
    let at = format!("{path}.processes");
    let items = match obj.get("processes") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            p.push(
                at,
                format!(
                    "expected a list of watched processes, got {}",
                    json_kind(other)
                ),
                None,
            );
            return Vec::new();
        }
    };
    if items.len() > MAX_WATCHED_PROCESSES {
        p.push(
            at,
            format!(
                "at most {MAX_WATCHED_PROCESSES} watched processes, got {}",
                items.len()
            ),
            None,
        );
        return Vec::new();
    }
    let mut out: Vec<WatchedProcess> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let Value::Object(m) = item else {
            p.push(
                at,
                format!(
                    "expected {{\"name\": …, \"match\": {{\"comm\"|\"exe\"|\"cmdline\": …}}}}, got {}",
                    json_kind(item)
                ),
                None,
            );
            continue;
        };
        check_keys(m, &at, &["name", "match"], p);
        let name = match m.get("name") {
            None | Some(Value::Null) => {
                p.push(format!("{at}.name"), "required", None);
                None
            }
            Some(Value::String(s)) => match s.parse::<Instance>() {
                Ok(n) if out.iter().any(|w| w.name == n) => {
                    p.push(
                        format!("{at}.name"),
                        format!("{s:?} is already the name of another watched process"),
                        None,
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(e) => {
                    p.push(format!("{at}.name"), e, None);
                    None
                }
            },
            Some(other) => {
                p.push(
                    format!("{at}.name"),
                    format!("expected a string, got {}", json_kind(other)),
                    None,
                );
                None
            }
        };
        let matcher = process_match(m.get("match"), &format!("{at}.match"), p);
        if let (Some(name), Some(matcher)) = (name, matcher) {
            out.push(WatchedProcess { name, matcher });
        }
    }
    out
}

fn process_match(v: Option<&Value>, at: &str, p: &mut Problems) -> Option<ProcessMatch> {
    const HOW: &str = "expected an object with exactly one of comm, exe, cmdline";
    let m = match v {
        None | Some(Value::Null) => {
            p.push(at, format!("required: {HOW}"), None);
            return None;
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            p.push(at, format!("{HOW}, got {}", json_kind(other)), None);
            return None;
        }
    };
    check_keys(m, at, &["comm", "exe", "cmdline"], p);
    let given: Vec<(&String, &Value)> = m
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "comm" | "exe" | "cmdline"))
        .collect();
    let [(key, value)] = given.as_slice() else {
        if given.is_empty() && m.is_empty() {
            p.push(at, HOW, None);
        } else if given.len() > 1 {
            p.push(at, format!("{HOW}, got {}", given.len()), None);
        }
        return None;
    };
    let glob = match value {
        Value::String(s) if !s.is_empty() && !s.chars().any(char::is_control) => {
            Glob::with_escapes(s)
        }
        Value::String(_) => {
            p.push(
                format!("{at}.{key}"),
                "a pattern must be non-empty and hold no control character",
                None,
            );
            return None;
        }
        other => {
            p.push(
                format!("{at}.{key}"),
                format!("expected a string, got {}", json_kind(other)),
                None,
            );
            return None;
        }
    };
    Some(match key.as_str() {
        "comm" => ProcessMatch::Comm(glob),
        "exe" => ProcessMatch::Exe(glob),
        _ => ProcessMatch::Cmdline(glob),
    })
}

impl MonitoringConfig {
    /// Parses only the monitoring section of a configuration file's text
    /// (what a collector uses); the rest of the file is not looked at, so a
    /// bad rule cannot stop a node's collector. Also returns the problems of
    /// a disabled section (warnings).
    pub fn from_json_text(
        text: &str,
        source_name: &str,
    ) -> Result<(MonitoringConfig, Vec<String>), ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::from_json(source_name, &e))?;
        let mut p = Problems::default();
        let mut ignored = Vec::new();
        let mut config = MonitoringConfig::default();
        if let Some((prefix, root)) = root(&value, &mut p)
            && let Some(s) = section(root, prefix, "monitoring", &mut p)
        {
            let mut sp = Problems::default();
            config = monitoring(s, &format!("{prefix}monitoring"), &mut sp);
            disabled_problems(config.enabled, sp, &mut p, &mut ignored);
        }
        p.into_result((config, ignored))
    }
}

/// A constant default.
fn d(text: &str) -> Duration {
    text.parse().unwrap_or_default()
}
