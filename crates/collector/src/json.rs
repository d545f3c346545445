//! JSON metric bodies (what the collector's HTTP endpoint accepts).
//!
//! A body is one object, or an array of objects, each with any of:
//!
//! ```json
//! { "requests": [12.5, 3],
//!   "eventsIn": 1, "eventsOut": 2, "warnings": 0, "errors": 1, "criticals": 0,
//!   "counters": { "custom.jobs": 3 },
//!   "gauges": { "custom.queue_depth": 17, "custom.queue[orders]": 5 } }
//! ```
//!
//! A custom name may carry an instance, `custom.queue[orders]` (1–256 bytes,
//! no control character, no `]`): one series per instance.
//!
//! `requests` lists latencies in ms, one per completed request (kept as
//! sent, to the precision of an `f64`); the five counts are whole numbers
//! from 0 to 2^53; `counters` adds to custom counters (a negative number is
//! a decrement; |n| ≤ 2^53) and `gauges` sets custom gauges. A number
//! above 2^53 (the largest an `f64` counts exactly) refuses the body: a
//! counter never wraps around. Any other key is rejected (it is
//! almost always a typo). A body is checked completely before anything is
//! applied: a bad body changes nothing.

use std::collections::BTreeMap;

use metrics_model::field::StandardField;
use serde::Deserialize;

use crate::error::CollectorError;
use crate::recorder::{MAX_COUNT, Recorder, show};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Body {
    #[serde(default)]
    requests: Vec<f64>,
    #[serde(default)]
    events_in: u64,
    #[serde(default)]
    events_out: u64,
    #[serde(default)]
    warnings: u64,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    criticals: u64,
    #[serde(default)]
    counters: BTreeMap<String, f64>,
    #[serde(default)]
    gauges: BTreeMap<String, f64>,
}

/// A checked body, ready to apply.
#[derive(Debug)]
pub struct JsonMetrics(Vec<Body>);

/// What applying a body did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JsonOutcome {
    /// Custom updates dropped because of the bound on custom fields.
    pub dropped: usize,
}

/// Parses and checks a body. The error names the offending key.
pub fn parse(body: &[u8]) -> Result<JsonMetrics, CollectorError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| CollectorError::Json(format!("body is not JSON: {e}")))?;
    if !(value.is_object() || value.is_array()) {
        return Err(CollectorError::Json(
            "body must be a JSON object (or an array of objects)".to_owned(),
        ));
    }
    let bodies = match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value::<Body>(v)
                    .map_err(|e| CollectorError::Json(format!("[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        v => vec![
            serde_json::from_value::<Body>(v).map_err(|e| CollectorError::Json(e.to_string()))?,
        ],
    };
    for (i, b) in bodies.iter().enumerate() {
        let at = |key: &str| {
            if bodies.len() > 1 {
                format!("[{i}].{key}")
            } else {
                key.to_owned()
            }
        };
        for (j, l) in b.requests.iter().enumerate() {
            if *l < 0.0 {
                return Err(CollectorError::Json(format!(
                    "{}: latency {l} is negative",
                    at(&format!("requests[{j}]"))
                )));
            }
            if *l > MAX_COUNT {
                return Err(CollectorError::Json(format!(
                    "{}: latency {} ms is above the largest accepted, 2^53 = 9007199254740992",
                    at(&format!("requests[{j}]")),
                    show(*l)
                )));
            }
        }
        for (key, n) in [
            ("eventsIn", b.events_in),
            ("eventsOut", b.events_out),
            ("warnings", b.warnings),
            ("errors", b.errors),
            ("criticals", b.criticals),
        ] {
            if n as f64 > MAX_COUNT {
                return Err(CollectorError::Json(format!(
                    "{}: {n} is above the largest accepted increment, 2^53 = 9007199254740992",
                    at(key)
                )));
            }
        }
        for (map, what) in [(&b.counters, "counters"), (&b.gauges, "gauges")] {
            for (name, v) in map {
                let key = at(&format!("{what}.{name}"));
                match metrics_model::Key::parse_tick_key(name) {
                    Ok(f) if f.field().is_custom() => {}
                    Ok(_) => {
                        return Err(CollectorError::Json(format!(
                            "{key}: only custom.<name> fields (or custom.<name>[<instance>]) go in {what}"
                        )));
                    }
                    Err(e) => return Err(CollectorError::Json(format!("{key}: {e}"))),
                }
                if what == "counters" && v.abs() > MAX_COUNT {
                    return Err(CollectorError::Json(format!(
                        "{key}: {} is above the largest accepted increment, 2^53 = \
                         9007199254740992",
                        show(*v)
                    )));
                }
            }
        }
    }
    Ok(JsonMetrics(bodies))
}

impl JsonMetrics {
    /// Applies the checked body to `recorder`.
    pub fn apply(&self, recorder: &Recorder) -> JsonOutcome {
        let mut out = JsonOutcome::default();
        for b in &self.0 {
            for l in &b.requests {
                // Cannot fail: checked by `parse`.
                let _ = recorder.requests_ms(1.0, *l);
            }
            for (field, n) in [
                (StandardField::EventsInCount, b.events_in),
                (StandardField::EventsOutCount, b.events_out),
                (StandardField::WarningsCount, b.warnings),
                (StandardField::ErrorsCount, b.errors),
                (StandardField::CriticalsCount, b.criticals),
            ] {
                if n > 0 {
                    // Cannot fail: these are counters, checked by `parse`.
                    let _ = recorder.add_standard(field, n as f64);
                }
            }
            for (name, v) in &b.counters {
                if recorder.add(name, *v).is_err() {
                    out.dropped += 1;
                }
            }
            for (name, v) in &b.gauges {
                if recorder.set(name, *v).is_err() {
                    out.dropped += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expected: Result<usize, &str>) {
        match (parse(body.as_bytes()), expected) {
            (Ok(m), Ok(n)) => assert_eq!(m.0.len(), n, "{body}"),
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{body}: {e}"),
            (got, want) => panic!("{body}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn bodies() {
        check("{}", Ok(1));
        check(r#"{"requests":[12.5,3],"eventsIn":1,"errors":2}"#, Ok(1));
        check(r#"[{"eventsIn":1},{"gauges":{"custom.q":-1}}]"#, Ok(2));
        check("", Err("not JSON"));
        check("12", Err("must be a JSON object"));
        check(r#"{"eventz":1}"#, Err("unknown field `eventz`"));
        check(r#"{"errors":-1}"#, Err("invalid value"));
        check(r#"{"errors":1.5}"#, Err("invalid type"));
        check(
            r#"{"requests":[-1]}"#,
            Err("requests[0]: latency -1 is negative"),
        );
        check(
            r#"{"counters":{"jobs":1}}"#,
            Err("counters.jobs: unknown field"),
        );
        check(
            r#"{"counters":{"cpu.usage":1}}"#,
            Err("counters.cpu.usage: only custom"),
        );
        check(r#"{"counters":{"custom.j":-1}}"#, Ok(1));
        check(
            r#"{"warnings":18446744073709551615}"#,
            Err("warnings: 18446744073709551615 is above the largest accepted increment"),
        );
        check(
            r#"{"requests":[1e300]}"#,
            Err("requests[0]: latency 1e300 ms is above"),
        );
        check(
            r#"{"counters":{"custom.j":-1e20}}"#,
            Err("counters.custom.j: -1e20 is above"),
        );
        check(
            r#"[{},{"gauges":{"custom.a b":1}}]"#,
            Err("[1].gauges.custom.a b"),
        );
        check(r#"[{},{"x":1}]"#, Err("[1]: unknown field `x`"));
    }

    #[test]
    fn applies() {
        let r = Recorder::new(crate::RecorderConfig {
            max_custom_fields: 2,
        });
        let m = parse(
            br#"{"requests":[12.5,3.5],"eventsIn":1,"eventsOut":2,"warnings":3,"errors":4,
                "criticals":5,"counters":{"custom.a":2},"gauges":{"custom.b":7,"custom.c":1}}"#,
        )
        .unwrap();
        assert_eq!(m.apply(&r), JsonOutcome { dropped: 1 });
        let v: BTreeMap<String, f64> = r
            .take_interval()
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect();
        assert_eq!(v["requests.count"], 2.0);
        assert_eq!(v["requests.latency_sum"], 16.0);
        assert_eq!(v["eventsOut.count"], 2.0);
        assert_eq!(v["criticals.count"], 5.0);
        assert_eq!(v["custom.a"], 2.0);
        assert_eq!(v["custom.b"], 7.0);
        assert!(!v.contains_key("custom.c"));
    }
}
