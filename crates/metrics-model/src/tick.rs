//! One sample of one host at one instant, and its JSON-lines form.
//!
//! The JSON-lines form is the input of `bp-alerter replay` and
//! `bp-collector import`: one object per line,
//! `{"host":"node-a","ts":1767225600000,"values":{"cpu.usage":63.5,"disk.usage[/var]":91}}`, where
//! `ts` is integer milliseconds or an RFC 3339 string with any offset (cut
//! down to the millisecond), a `null` value means the key is absent, blank
//! lines are skipped and other keys are ignored. Keys are fields or fields
//! with an instance ([`crate::key`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::field::StandardField;
use crate::host::HostName;
use crate::key::Key;
use crate::time::{self, Millis};

/// A tick's values: finite numbers by key. An absent key has no entry.
pub type Values = BTreeMap<Key, f64>;

/// One sample of one host at one instant.
///
/// **Invariant:** every value is finite, and every key is one ticks may
/// carry ([`Key::is_tick_key`]: no bare instanced standard field);
/// constructors drop what breaks it, the parser rejects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// The host the sample is of.
    pub host: HostName,
    /// Milliseconds since the Unix epoch, UTC.
    pub ts: Millis,
    /// Finite values by key (private: every constructor keeps the
    /// invariant).
    values: Values,
}

/// Why one line of JSON-lines input is not a tick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TickLineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub message: String,
}

impl Tick {
    /// A tick; values that are not finite (and bare instanced standard
    /// fields) are dropped (treated as absent).
    pub fn new(host: HostName, ts: Millis, values: impl IntoIterator<Item = (Key, f64)>) -> Self {
        let values = values.into_iter().filter(keep).collect();
        Tick { host, ts, values }
    }

    /// A tick of these values; those that are not finite (and bare
    /// instanced standard fields) are dropped.
    pub fn from_values(host: HostName, ts: Millis, mut values: Values) -> Self {
        values.retain(|k, v| v.is_finite() && k.is_tick_key());
        Tick { host, ts, values }
    }

    /// The values, by field (all finite).
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The host, the instant and the values.
    pub fn into_parts(self) -> (HostName, Millis, Values) {
        (self.host, self.ts, self.values)
    }

    /// Adds (or replaces) values; those that are not finite (and bare
    /// instanced standard fields) are dropped.
    pub fn extend(&mut self, values: impl IntoIterator<Item = (Key, f64)>) {
        self.values.extend(values.into_iter().filter(keep));
    }

    /// The value of `key`, if the tick carries it.
    pub fn get(&self, key: &Key) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// The value of the bare standard field `field`, if the tick carries it.
    pub fn standard(&self, field: StandardField) -> Option<f64> {
        self.get(&Key::from(field))
    }

    /// Writes the tick as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one line of JSON-lines input. `line_no` (1-based) names the line
    /// in errors. A blank line gives `Ok(None)`.
    pub fn parse_line(text: &str, line_no: usize) -> Result<Option<Tick>, TickLineError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let err = |message: String| TickLineError {
            line: line_no,
            message,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(err("expected a JSON object with host, ts and values".into()));
        };
        let host = match obj.get("host") {
            None => return Err(err("missing \"host\"".into())),
            Some(Value::String(h)) => h
                .parse::<HostName>()
                .map_err(|e| err(format!("host: {e}")))?,
            Some(other) => return Err(err(format!("host: expected a string, got {other}"))),
        };
        let ts = match obj.get("ts") {
            None => return Err(err("missing \"ts\"".into())),
            Some(v) => parse_ts(v).map_err(|m| err(format!("ts: {m}")))?,
        };
        let values = match obj.get("values") {
            None => return Err(err("missing \"values\"".into())),
            Some(Value::Object(map)) => {
                let mut values = Values::new();
                for (name, v) in map {
                    let field = Key::parse_tick_key(name)
                        .map_err(|e| err(format!("values.{}: {e}", escape(name))))?;
                    match v {
                        Value::Null => {}
                        Value::Number(n) => match n.as_f64() {
                            Some(x) if x.is_finite() => {
                                values.insert(field, x);
                            }
                            _ => {
                                return Err(err(format!(
                                    "values.{name}: {n} is not a finite number"
                                )));
                            }
                        },
                        other => {
                            return Err(err(format!(
                                "values.{name}: expected a number or null, got {other}"
                            )));
                        }
                    }
                }
                values
            }
            Some(other) => return Err(err(format!("values: expected an object, got {other}"))),
        };
        Ok(Some(Tick { host, ts, values }))
    }
}

fn keep((key, v): &(Key, f64)) -> bool {
    v.is_finite() && key.is_tick_key()
}

/// `name` with control characters escaped, for an error message.
fn escape(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string()
    } else {
        name.to_owned()
    }
}

fn parse_ts(v: &Value) -> Result<Millis, String> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
                _ => Err(format!("{n} is not a whole number of milliseconds")),
            }
        }
        Value::String(s) => time::parse_rfc3339(s).ok_or_else(|| {
            format!("{s:?} is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)")
        }),
        other => Err(format!(
            "expected milliseconds or an RFC 3339 string, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn check(line: &str, expected: Result<Option<(&str, i64, usize)>, &str>) {
        let got = Tick::parse_line(line, 7);
        match (got, expected) {
            (Ok(None), Ok(None)) => {}
            (Ok(Some(t)), Ok(Some((h, ts, n)))) => {
                assert_eq!(
                    (t.host.as_str(), t.ts, t.values.len()),
                    (h, ts, n),
                    "{line}"
                );
            }
            (Err(e), Err(part)) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("line 7: ") && msg.contains(part),
                    "{line}: {msg}"
                );
            }
            (got, expected) => panic!("{line}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn lines() {
        check("", Ok(None));
        check("   ", Ok(None));
        check(
            r#"{"host":"a","ts":1767225600000,"values":{"cpu.usage":63.5}}"#,
            Ok(Some(("a", 1_767_225_600_000, 1))),
        );
        check(
            r#"{"host":"a","ts":"2026-01-01T01:00:00.0009+01:00","values":{},"x":1}"#,
            Ok(Some(("a", 1_767_225_600_000, 0))),
        );
        check(
            r#"{"host":"a","ts":1e3,"values":{"errors.count":null,"custom.q":-2}}"#,
            Ok(Some(("a", 1000, 1))),
        );
        check("{", Err("not JSON"));
        check("[]", Err("expected a JSON object"));
        check(r#"{"ts":1,"values":{}}"#, Err("missing \"host\""));
        check(r#"{"host":"a","values":{}}"#, Err("missing \"ts\""));
        check(r#"{"host":"a","ts":1}"#, Err("missing \"values\""));
        check(
            r#"{"host":"a","ts":"yesterday","values":{}}"#,
            Err("ts: \"yesterday\""),
        );
        check(r#"{"host":"a","ts":1.5,"values":{}}"#, Err("whole number"));
        check(
            r#"{"host":"a","ts":1,"values":{"cpu":1}}"#,
            Err("values.cpu: unknown field"),
        );
        check(
            r#"{"host":"a","ts":1,"values":{"cpu.usage":"1"}}"#,
            Err("expected a number or null"),
        );
        check(
            r#"{"host":"a","ts":1,"values":{"disk.usage[/var]":91,"disk.usage[/]":null,"custom.q[a b]":1}}"#,
            Ok(Some(("a", 1, 2))),
        );
        check(
            r#"{"host":"a","ts":1,"values":{"disk.usage":91}}"#,
            Err("values.disk.usage: disk.usage is carried only with an instance"),
        );
        check(
            r#"{"host":"a","ts":1,"values":{"cpu.usage[x]":1}}"#,
            Err("values.cpu.usage[x]: cpu.usage takes no instance"),
        );
        check(
            r#"{"host":"a","ts":1,"values":{"disk.usage[a\nb]":1}}"#,
            Err("control character"),
        );
        check(
            r#"{"host":"a b","ts":1,"values":{}}"#,
            Err("invalid host name"),
        );
    }

    #[test]
    fn round_trip() {
        let t = Tick::new(
            "n1".parse().unwrap(),
            5,
            [
                (crate::StandardField::CpuUsage.into(), 1.25),
                ("custom.x".parse().unwrap(), f64::NAN),
                ("disk.usage".parse().unwrap(), 3.0),
                ("disk.usage[/]".parse().unwrap(), 4.0),
            ],
        );
        assert_eq!(t.values.len(), 2);
        let back = Tick::parse_line(&t.to_json_line(), 1).unwrap().unwrap();
        assert_eq!(back, t);
    }
}
