//! Configuration and rule problems.

use std::fmt;

use serde_json::{Map, Value};

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

    pub(crate) fn from_json(source_name: &str, e: &serde_json::Error) -> Self {
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
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
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
