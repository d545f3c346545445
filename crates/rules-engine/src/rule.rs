//! Incident rules and their validation.
//!
//! A rule as JSON (the spec's form):
//! ```json
//! { "name": "High CPU Usage", "field": "cpu.usage", "aggregation": "avg",
//!   "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m", "cooldown": "1m" }
//! ```
//! Version 2 adds the optional `hosts` (host patterns), `scope` (`host` or
//! `cluster`), `severity`, `labels`, `description` and `staleAfter`, and
//! fields with an instance (`disk.usage[/var]`) or without one on an
//! instanced field (`disk.usage`: every mount).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use metrics_model::glob::Glob;
use metrics_model::{Duration, HostName, Key};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{ConfigError, Problems, unknown_keys};

/// How a window's ticks become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregation {
    /// Mean of the values; no value when the window is empty.
    Avg,
    /// Sum of the values; 0 when the window is empty.
    Sum,
    /// Smallest value; no value when the window is empty.
    Min,
    /// Largest value; no value when the window is empty.
    Max,
    /// Value of the tick with the greatest `ts`; no value when empty.
    Last,
    /// Number of ticks; 0 when the window is empty.
    Count,
}

/// How the window's value is compared with the rule's `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    /// Holds when `v ≥ value`.
    EqualOrMoreThan,
    /// Holds when `v ≤ value`.
    EqualOrLessThan,
}

impl Aggregation {
    /// Every aggregation with its name.
    pub const ALL: [(Aggregation, &'static str); 6] = [
        (Aggregation::Avg, "avg"),
        (Aggregation::Sum, "sum"),
        (Aggregation::Min, "min"),
        (Aggregation::Max, "max"),
        (Aggregation::Last, "last"),
        (Aggregation::Count, "count"),
    ];

    /// The name as written in rules.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("", |(_, n)| n)
    }
}

impl Operand {
    /// Every operand with its name.
    pub const ALL: [(Operand, &'static str); 2] = [
        (Operand::EqualOrMoreThan, "equalOrMoreThan"),
        (Operand::EqualOrLessThan, "equalOrLessThan"),
    ];

    /// The name as written in rules.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("", |(_, n)| n)
    }

    /// Whether `v` compares to `threshold` as this operand says.
    pub fn holds(self, v: f64, threshold: f64) -> bool {
        match self {
            Operand::EqualOrMoreThan => v >= threshold,
            Operand::EqualOrLessThan => v <= threshold,
        }
    }
}

/// Looks `s` up in a name table; the error lists the valid names.
fn lookup<T: Copy>(all: &[(T, &str)], s: &str, what: &str) -> Result<T, String> {
    all.iter()
        .find(|(_, n)| *n == s)
        .map(|(a, _)| *a)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|(_, n)| *n).collect();
            format!(
                "unknown {what} {s:?}; valid {what}s are {}",
                names.join(", ")
            )
        })
}

impl FromStr for Aggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        lookup(&Self::ALL, s, "aggregation")
    }
}

impl FromStr for Operand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        lookup(&Self::ALL, s, "operand")
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated incident rule.
///
/// **Invariant:** `name` is trimmed and not empty, `value` is finite,
/// `timeframe > 0`. Build one with [`Rule::new`] or parse a set with
/// [`RuleSet::from_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    name: Arc<str>,
    field: Key,
    aggregation: Aggregation,
    operand: Operand,
    value: f64,
    timeframe: Duration,
    cooldown: Duration,
    meta: RuleMeta,
}

/// Where a rule keeps its state: one per host, or one for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// One state per in-scope host (the default).
    #[default]
    Host,
    /// One state for all in-scope hosts together, under the pseudo-host `*`.
    Cluster,
}

impl Scope {
    /// `host` or `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Host => "host",
            Scope::Cluster => "cluster",
        }
    }
}

/// One pattern of a rule's `hosts`: a glob, excluding when written `!glob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Whether it excludes (`!web-3`).
    pub exclude: bool,
    /// The glob (without the `!`).
    pub glob: Glob,
}

impl HostPattern {
    /// Parses `web-*` or `!web-3`; fails when no host name can match it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let (exclude, glob) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if glob.is_empty() {
            return Err(format!("{text:?}: a pattern must not be empty"));
        }
        if let Some(c) = glob
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?')))
        {
            return Err(format!(
                "{text:?}: {c:?} is in no host name (host names are A-Z a-z 0-9 . _ -; patterns add * and ?, and a leading ! excludes)"
            ));
        }
        Ok(HostPattern {
            exclude,
            glob: Glob::new(glob),
        })
    }

    /// The pattern as written.
    pub fn to_text(&self) -> String {
        if self.exclude {
            format!("!{}", self.glob)
        } else {
            self.glob.to_string()
        }
    }
}

/// The version-2 keys of a rule; all optional.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleMeta {
    /// Host patterns (`None`: every host is in scope).
    pub hosts: Option<Vec<HostPattern>>,
    /// One state per host, or one for the cluster.
    pub scope: Scope,
    /// `warning`, `critical`, … (1–32 of `a–z 0–9 _ -`).
    pub severity: Option<Arc<str>>,
    /// Labels for receivers (at most 32; `None` when there is none).
    pub labels: Option<Arc<BTreeMap<String, String>>>,
    /// For people (at most 1,024 bytes).
    pub description: Option<Arc<str>>,
    /// An open incident of a series with no tick carrying its key for this
    /// long, and an empty window, resolves.
    pub stale_after: Option<Duration>,
}

/// The parts of a rule, for building one in Rust.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// The name; surrounding white space is trimmed.
    pub name: String,
    /// The key the window reads: a field (every instance of an instanced
    /// field), or a field with one instance.
    pub field: Key,
    /// How the window becomes a value.
    pub aggregation: Aggregation,
    /// How the value compares with `value`.
    pub operand: Operand,
    /// The threshold; must be finite.
    pub value: f64,
    /// The window's length; must be > 0.
    pub timeframe: Duration,
    /// How long after a resolve no new incident opens (0 = none).
    pub cooldown: Duration,
    /// The version-2 keys (`RuleMeta::default()`: none).
    pub meta: RuleMeta,
}

impl Rule {
    /// Validates a rule. Every problem is returned, with paths relative to the
    /// rule (`name`, `value`, `timeframe`).
    pub fn new(spec: RuleSpec) -> Result<Rule, ConfigError> {
        let mut p = Problems::default();
        let name = spec.name.trim();
        let rule = (!name.is_empty()).then_some(name);
        if name.is_empty() {
            p.push("name", "must not be empty", None);
        }
        if !spec.value.is_finite() {
            p.push(
                "value",
                format!("{} is not a finite number", spec.value),
                rule,
            );
        }
        if spec.timeframe.is_zero() {
            p.push("timeframe", "must be greater than 0", rule);
        }
        if spec.meta.scope == Scope::Cluster && spec.aggregation == Aggregation::Last {
            p.push(
                "scope",
                "\"last\" cannot be used with scope \"cluster\" (there is no single last value across hosts)",
                rule,
            );
        }
        if spec.meta.stale_after.is_some_and(Duration::is_zero) {
            p.push("staleAfter", "must be greater than 0", rule);
        }
        if spec.meta.hosts.as_ref().is_some_and(Vec::is_empty) {
            p.push(
                "hosts",
                "must not be empty (leave it out for every host)",
                rule,
            );
        }
        p.into_result(())?;
        Ok(Rule {
            name: Arc::from(name),
            field: spec.field,
            aggregation: spec.aggregation,
            operand: spec.operand,
            value: spec.value,
            timeframe: spec.timeframe,
            cooldown: spec.cooldown,
            meta: spec.meta,
        })
    }

    /// The trimmed name; incident state belongs to it.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The name, shared.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
    /// The key as written: a bare field (every instance of an instanced
    /// field) or a field with one instance.
    pub fn field(&self) -> &Key {
        &self.field
    }
    /// Whether the rule watches more than one series per subject: a bare
    /// field that takes instances (every `F[i]`, and bare `F` for custom
    /// fields).
    pub fn fans_out(&self) -> bool {
        self.field.instance().is_none() && self.field.field().takes_instances()
    }
    /// Whether the rule watches the tick key `key` (as one of its series).
    pub fn watches(&self, key: &Key) -> bool {
        self.field.watches(key)
    }
    /// Whether the rule's bare key is one of its series (evaluated for every
    /// subject, even with no tick carrying it, so `count`/`sum` notice
    /// silence).
    pub fn watches_bare(&self) -> bool {
        self.field.is_tick_key() && self.field.instance().is_none()
    }
    /// Whether `host` is in the rule's scope (its `hosts` patterns).
    pub fn in_scope(&self, host: &HostName) -> bool {
        let Some(patterns) = &self.meta.hosts else {
            return true;
        };
        let mut included = None;
        for p in patterns {
            if p.glob.matches(host.as_str()) {
                if p.exclude {
                    return false;
                }
                included = Some(true);
            } else if !p.exclude && included.is_none() {
                included = Some(false);
            }
        }
        included.unwrap_or(true)
    }
    /// The version-2 keys.
    pub fn meta(&self) -> &RuleMeta {
        &self.meta
    }
    /// One state per host, or one for the cluster.
    pub fn scope(&self) -> Scope {
        self.meta.scope
    }
    /// `staleAfter`, if set.
    pub fn stale_after(&self) -> Option<Duration> {
        self.meta.stale_after
    }
    /// The aggregation.
    pub fn aggregation(&self) -> Aggregation {
        self.aggregation
    }
    /// The operand.
    pub fn operand(&self) -> Operand {
        self.operand
    }
    /// The threshold.
    pub fn value(&self) -> f64 {
        self.value
    }
    /// The window's length.
    pub fn timeframe(&self) -> Duration {
        self.timeframe
    }
    /// The cooldown after a resolve.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Whether the window (field, timeframe, aggregation) differs from `other`'s,
    /// so that a window built for one cannot serve the other.
    pub fn same_window(&self, other: &Rule) -> bool {
        self.field == other.field
            && self.timeframe == other.timeframe
            && self.aggregation == other.aggregation
    }

    /// The rule as the spec's JSON object (version-2 keys only when set).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "name": &*self.name,
            "field": self.field.to_string(),
            "aggregation": self.aggregation.as_str(),
            "operand": self.operand.as_str(),
            "value": self.value,
            "timeframe": self.timeframe.to_string(),
            "cooldown": self.cooldown.to_string(),
        });
        let m = &self.meta;
        if let Some(obj) = v.as_object_mut() {
            if let Some(hosts) = &m.hosts {
                let hosts: Vec<String> = hosts.iter().map(HostPattern::to_text).collect();
                obj.insert("hosts".into(), hosts.into());
            }
            if m.scope != Scope::Host {
                obj.insert("scope".into(), m.scope.as_str().into());
            }
            if let Some(s) = &m.severity {
                obj.insert("severity".into(), (**s).into());
            }
            if let Some(l) = &m.labels {
                obj.insert("labels".into(), serde_json::json!(&**l));
            }
            if let Some(d) = &m.description {
                obj.insert("description".into(), (**d).into());
            }
            if let Some(s) = m.stale_after {
                obj.insert("staleAfter".into(), s.to_string().into());
            }
        }
        v
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// A validated set of rules with unique names, sorted by name (byte order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
}

/// The keys a rule object may have.
pub const RULE_KEYS: [&str; 13] = [
    "name",
    "field",
    "aggregation",
    "operand",
    "value",
    "timeframe",
    "cooldown",
    "hosts",
    "scope",
    "severity",
    "labels",
    "description",
    "staleAfter",
];
const REQUIRED_KEYS: [&str; 6] = [
    "name",
    "field",
    "aggregation",
    "operand",
    "value",
    "timeframe",
];

impl RuleSet {
    /// A set from rules; fails when two names are equal.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Result<RuleSet, ConfigError> {
        let mut rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        let mut p = Problems::default();
        let mut seen = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            if let Some(first) = seen.insert(r.name(), i) {
                p.push(
                    format!("[{i}].name"),
                    format!("duplicate rule name (also [{first}])"),
                    Some(r.name()),
                );
            }
        }
        p.into_result(())?;
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(RuleSet { rules })
    }

    /// Parses and validates a JSON array of rules found at `path` (used to
    /// name problems, e.g. `pro.alerting.rules`). Every problem is reported.
    pub fn from_json(value: &Value, path: &str) -> Result<RuleSet, ConfigError> {
        let mut p = Problems::default();
        let set = parse_rules(value, path, &mut p);
        p.into_result(())?;
        Ok(set)
    }

    /// The rules, sorted by name.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// The rule of that (trimmed) name.
    pub fn get(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules
            .binary_search_by(|r| (*r.name).cmp(name))
            .ok()
            .map(|i| &self.rules[i])
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The longest timeframe (zero when there is no rule).
    pub fn max_timeframe(&self) -> Duration {
        self.rules
            .iter()
            .map(|r| r.timeframe)
            .max()
            .unwrap_or_default()
    }
}

pub(crate) fn parse_rules(value: &Value, path: &str, p: &mut Problems) -> RuleSet {
    let Value::Array(items) = value else {
        p.push(
            path,
            format!("expected an array of rules, got {}", kind(value)),
            None,
        );
        return RuleSet::default();
    };
    let mut rules = Vec::new();
    let mut first_by_name: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(rule) = parse_rule(item, &at, p) {
            if let Some(first) = first_by_name.get(rule.name()) {
                p.push(
                    format!("{at}.name"),
                    format!("duplicate rule name after trimming (also {path}[{first}])"),
                    Some(rule.name()),
                );
            } else {
                first_by_name.insert(rule.name().to_owned(), i);
                rules.push(Arc::new(rule));
            }
        } else if let Some(Value::String(name)) = item.get("name") {
            // Still check duplicates of invalid rules, so every problem shows at once.
            let name = name.trim();
            if !name.is_empty() {
                if let Some(first) = first_by_name.get(name) {
                    p.push(
                        format!("{at}.name"),
                        format!("duplicate rule name after trimming (also {path}[{first}])"),
                        Some(name),
                    );
                } else {
                    first_by_name.insert(name.to_owned(), i);
                }
            }
        }
    }
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    RuleSet { rules }
}

pub(crate) use crate::error::json_kind as kind;

fn parse_rule(item: &Value, at: &str, p: &mut Problems) -> Option<Rule> {
    let Value::Object(obj) = item else {
        p.push(
            at,
            format!("expected a rule object, got {}", kind(item)),
            None,
        );
        return None;
    };
    let before = p.0.len();
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::String(_)) => {
            p.push(format!("{at}.name"), "must not be empty", None);
            None
        }
        Some(other) => {
            p.push(
                format!("{at}.name"),
                format!("expected a string, got {}", kind(other)),
                None,
            );
            None
        }
        None => None,
    };
    let rule = name.as_deref();
    p.0.extend(unknown_keys(obj, at, &RULE_KEYS, rule));
    let missing: Vec<&str> = REQUIRED_KEYS
        .iter()
        .copied()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        p.push(at, format!("missing keys: {}", missing.join(", ")), rule);
    }
    let field = string_key(obj, at, "field", rule, p).and_then(|s| match s.parse::<Key>() {
        Ok(f) => Some(f),
        Err(e) => {
            p.push(format!("{at}.field"), e.to_string(), rule);
            None
        }
    });
    let aggregation = parsed_key::<Aggregation>(obj, at, "aggregation", rule, p);
    let operand = parsed_key::<Operand>(obj, at, "operand", rule, p);
    let value = match obj.get("value") {
        None => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Some(v),
            _ => {
                p.push(
                    format!("{at}.value"),
                    format!("{n} is not a finite number"),
                    rule,
                );
                None
            }
        },
        Some(other) => {
            p.push(
                format!("{at}.value"),
                format!("expected a finite number, got {}", kind(other)),
                rule,
            );
            None
        }
    };
    let timeframe = duration_key(obj, at, "timeframe", rule, p);
    if timeframe.is_some_and(Duration::is_zero) {
        p.push(format!("{at}.timeframe"), "must be greater than 0", rule);
    }
    let cooldown = match obj.get("cooldown") {
        None | Some(Value::Null) => Some(Duration::ZERO),
        Some(_) => duration_key(obj, at, "cooldown", rule, p),
    };
    let meta = parse_meta(obj, at, rule, aggregation, p);
    if p.0.len() != before {
        return None;
    }
    let spec = RuleSpec {
        name: name?,
        field: field?,
        aggregation: aggregation?,
        operand: operand?,
        value: value?,
        timeframe: timeframe?,
        cooldown: cooldown?,
        meta,
    };
    Rule::new(spec).ok()
}

/// Label names the product sets itself.
const RESERVED_LABELS: [&str; 4] = ["alertname", "host", "instance", "severity"];
/// The most labels a rule may have.
pub const LABELS_MAX: usize = 32;
/// The longest label value, in bytes.
pub const LABEL_VALUE_MAX: usize = 256;
/// The longest description, in bytes.
pub const DESCRIPTION_MAX: usize = 1024;

fn valid_label_name(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn valid_severity(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

/// The version-2 keys; problems pushed with the rule named.
#[allow(clippy::too_many_lines)] // One key after the other, each short.
fn parse_meta(
    obj: &Map<String, Value>,
    at: &str,
    rule: Option<&str>,
    aggregation: Option<Aggregation>,
    p: &mut Problems,
) -> RuleMeta {
    let mut meta = RuleMeta::default();
    match obj.get("hosts") {
        None => {}
        Some(Value::Array(items)) if items.is_empty() => p.push(
            format!("{at}.hosts"),
            "must not be empty (leave it out for every host)",
            rule,
        ),
        Some(Value::Array(items)) => {
            let mut patterns = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => match HostPattern::parse(s) {
                        Ok(pat) => patterns.push(pat),
                        Err(e) => p.push(format!("{at}.hosts[{i}]"), e, rule),
                    },
                    other => p.push(
                        format!("{at}.hosts[{i}]"),
                        format!("expected a host pattern (a string), got {}", kind(other)),
                        rule,
                    ),
                }
            }
            meta.hosts = Some(patterns);
        }
        Some(other) => p.push(
            format!("{at}.hosts"),
            format!("expected an array of host patterns, got {}", kind(other)),
            rule,
        ),
    }
    match obj.get("scope") {
        None => {}
        Some(Value::String(s)) if s == "host" => {}
        Some(Value::String(s)) if s == "cluster" => {
            meta.scope = Scope::Cluster;
            if aggregation == Some(Aggregation::Last) {
                p.push(
                    format!("{at}.scope"),
                    "\"last\" cannot be used with scope \"cluster\" (there is no single last value across hosts)",
                    rule,
                );
            }
        }
        Some(other) => p.push(
            format!("{at}.scope"),
            format!("expected \"host\" or \"cluster\", got {other}"),
            rule,
        ),
    }
    match obj.get("severity") {
        None => {}
        Some(Value::String(s)) if valid_severity(s) => meta.severity = Some(Arc::from(s.as_str())),
        Some(other) => p.push(
            format!("{at}.severity"),
            format!("expected 1-32 of a-z 0-9 _ - (e.g. \"warning\", \"critical\"), got {other}"),
            rule,
        ),
    }
    match obj.get("labels") {
        None => {}
        Some(Value::Object(map)) => {
            let before = p.0.len();
            if map.len() > LABELS_MAX {
                p.push(
                    format!("{at}.labels"),
                    format!("{} labels, at most {LABELS_MAX}", map.len()),
                    rule,
                );
            }
            let mut labels = BTreeMap::new();
            for (k, v) in map {
                let path = format!("{at}.labels.{}", k.escape_debug());
                if !valid_label_name(k) {
                    p.push(
                        &path,
                        format!("label name {k:?}: use [A-Za-z_][A-Za-z0-9_]{{0,63}}"),
                        rule,
                    );
                } else if k.starts_with("__") {
                    p.push(&path, "label names starting with \"__\" are reserved", rule);
                } else if RESERVED_LABELS.contains(&k.as_str()) {
                    p.push(
                        &path,
                        format!("{k:?} is set by bp-monitoring itself (alertname, host, instance and severity are reserved)"),
                        rule,
                    );
                }
                match v {
                    Value::String(s) if s.len() <= LABEL_VALUE_MAX => {
                        labels.insert(k.clone(), s.clone());
                    }
                    Value::String(s) => p.push(
                        &path,
                        format!("{} bytes, at most {LABEL_VALUE_MAX}", s.len()),
                        rule,
                    ),
                    other => p.push(
                        &path,
                        format!("expected a string, got {}", kind(other)),
                        rule,
                    ),
                }
            }
            if p.0.len() == before && !labels.is_empty() {
                meta.labels = Some(Arc::new(labels));
            }
        }
        Some(other) => p.push(
            format!("{at}.labels"),
            format!("expected an object of strings, got {}", kind(other)),
            rule,
        ),
    }
    match obj.get("description") {
        None => {}
        Some(Value::String(s)) if s.len() <= DESCRIPTION_MAX => {
            meta.description = Some(Arc::from(s.as_str()));
        }
        Some(Value::String(s)) => p.push(
            format!("{at}.description"),
            format!("{} bytes, at most {DESCRIPTION_MAX}", s.len()),
            rule,
        ),
        Some(other) => p.push(
            format!("{at}.description"),
            format!("expected a string, got {}", kind(other)),
            rule,
        ),
    }
    if obj.contains_key("staleAfter") {
        let d = duration_key(obj, at, "staleAfter", rule, p);
        if d.is_some_and(Duration::is_zero) {
            p.push(format!("{at}.staleAfter"), "must be greater than 0", rule);
        }
        meta.stale_after = d.filter(|d| !d.is_zero());
    }
    meta
}

fn parsed_key<T: FromStr<Err = String>>(
    obj: &Map<String, Value>,
    at: &str,
    key: &str,
    rule: Option<&str>,
    p: &mut Problems,
) -> Option<T> {
    let s = string_key(obj, at, key, rule, p)?;
    s.parse()
        .map_err(|e| p.push(format!("{at}.{key}"), e, rule))
        .ok()
}

pub(crate) use metrics_model::config::{duration_key, string_key};
