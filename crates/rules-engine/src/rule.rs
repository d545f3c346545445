//! Incident rules and their validation.
//!
//! A rule as JSON (the spec's form):
//! ```json
//! { "name": "High CPU Usage", "field": "cpu.usage", "aggregation": "avg",
//!   "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m", "cooldown": "1m" }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use metrics_model::{Duration, Field};
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
    field: Field,
    aggregation: Aggregation,
    operand: Operand,
    value: f64,
    timeframe: Duration,
    cooldown: Duration,
}

/// The parts of a rule, for building one in Rust.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// The name; surrounding white space is trimmed.
    pub name: String,
    /// The field the window reads.
    pub field: Field,
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
        p.into_result(())?;
        Ok(Rule {
            name: Arc::from(name),
            field: spec.field,
            aggregation: spec.aggregation,
            operand: spec.operand,
            value: spec.value,
            timeframe: spec.timeframe,
            cooldown: spec.cooldown,
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
    /// The field.
    pub fn field(&self) -> &Field {
        &self.field
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

    /// The rule as the spec's JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": &*self.name,
            "field": self.field.as_str(),
            "aggregation": self.aggregation.as_str(),
            "operand": self.operand.as_str(),
            "value": self.value,
            "timeframe": self.timeframe.to_string(),
            "cooldown": self.cooldown.to_string(),
        })
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
pub const RULE_KEYS: [&str; 7] = [
    "name",
    "field",
    "aggregation",
    "operand",
    "value",
    "timeframe",
    "cooldown",
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
    let field = string_key(obj, at, "field", rule, p).and_then(|s| match s.parse::<Field>() {
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
    };
    Rule::new(spec).ok()
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
