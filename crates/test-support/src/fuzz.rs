//! Property-test ("fuzzing") helpers shared by the `fuzz_*` test files of
//! the workspace: the case count from `BP_FUZZ_CASES`, arbitrary JSON,
//! mutations of valid JSON documents (keys dropped or renamed, values of the
//! wrong type, extreme numbers), text edits of serialized documents
//! (truncation, stray bytes) and duration spellings. See docs/fuzzing.md.
// The enum variants and helpers are documented where their meaning is not plain.
#![allow(missing_docs)]

use std::fmt::Write as _;

/// proptest itself, for test targets of crates that do not depend on it.
pub use proptest;

use proptest::prelude::*;
use serde_json::{Value, json};

/// `ms` in the canonical duration spelling (`1h30m`, `0s`), as
/// `metrics_model::Duration`'s `Display` writes it.
pub fn canonical_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        let n = rest / size;
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
            rest -= n * size;
        }
    }
    out
}

/// A position in a collection of any length (taken modulo the length).
#[derive(Debug, Clone, Copy)]
pub struct At(pub usize);

impl At {
    pub fn index(self, len: usize) -> usize {
        self.0 % len
    }
}

pub fn at() -> impl Strategy<Value = At> {
    any::<usize>().prop_map(At)
}

/// The proptest configuration: `BP_FUZZ_CASES` cases when set.
pub fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if let Some(n) = std::env::var("BP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        c.cases = n;
        // Filters reject a few percent of generated values: let the
        // rejection budgets grow with the case count.
        c.max_global_rejects = c.max_global_rejects.max(n / 4);
        c.max_local_rejects = c.max_local_rejects.max(n);
    }
    c
}

pub fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -1e6f64..1e6,
        2 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
        1 => prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(1e15 + 0.3),
        ],
        1 => any::<i64>().prop_map(|i| i as f64),
    ]
}

/// Arbitrary JSON of bounded depth: the wrong-type values mutations use.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        finite_f64().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just(""),
            Just(" "),
            Just("1h"),
            Just("-1s"),
            Just("0s"),
            Just("2x"),
            Just("99999999999999999999d"),
            Just("custom.x"),
            Just("cpu.usage"),
            Just("2026-01-01T00:00:00Z"),
            Just("http://127.0.0.1:1/"),
            Just("\u{0}"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        (1usize..4).prop_map(|k| Value::String("x".repeat(k * 10_000))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z.]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A change to a JSON document at one node.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Remove the node from its parent.
    Drop,
    /// Rename the node's key (when its parent is an object).
    Rename(String),
    /// Replace the node by another value (often of the wrong type).
    Replace(Value),
    /// Wrap the node in `n` arrays.
    Nest(usize),
}

pub fn mutation() -> impl Strategy<Value = (At, Mutation)> {
    let m = prop_oneof![
        2 => Just(Mutation::Drop),
        1 => "[a-zA-Z]{0,10}|\\PC{0,4}".prop_map(Mutation::Rename),
        4 => arb_json().prop_map(Mutation::Replace),
        1 => (1usize..200).prop_map(Mutation::Nest),
    ];
    (at(), m)
}

/// Every path (object keys and array indices) in `v`, root first.
pub fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Value::String(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(json!(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

pub fn node_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |node, seg| match (node, seg) {
        (Value::Object(m), Value::String(k)) => m.get_mut(k),
        (Value::Array(a), Value::Number(i)) => a.get_mut(usize::try_from(i.as_u64()?).ok()?),
        _ => None,
    })
}

/// Applies `mutations` to `doc`.
pub fn mutate(doc: &mut Value, mutations: &[(At, Mutation)]) {
    for (at, m) in mutations {
        let mut all = Vec::new();
        paths(doc, &mut Vec::new(), &mut all);
        let path = &all[at.index(all.len())];
        match m {
            Mutation::Replace(v) => {
                if let Some(node) = node_mut(doc, path) {
                    *node = v.clone();
                }
            }
            Mutation::Nest(n) => {
                if let Some(node) = node_mut(doc, path) {
                    let mut v = node.take();
                    for _ in 0..*n {
                        v = Value::Array(vec![v]);
                    }
                    *node = v;
                }
            }
            Mutation::Drop | Mutation::Rename(_) => {
                let Some((last, parent_path)) = path.split_last() else {
                    continue;
                };
                match (node_mut(doc, parent_path), last) {
                    (Some(Value::Object(o)), Value::String(k)) => {
                        if let Some(v) = o.remove(k)
                            && let Mutation::Rename(new) = m
                        {
                            o.insert(new.clone(), v);
                        }
                    }
                    (Some(Value::Array(a)), Value::Number(i)) if matches!(m, Mutation::Drop) => {
                        let i = usize::try_from(i.as_u64().unwrap_or(0)).unwrap_or(0);
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Edits of the JSON text that a `Value` cannot express: numbers out of
/// range, lone surrogates, truncation, stray tokens.
pub fn text_edit() -> impl Strategy<Value = (At, String)> {
    let token = prop_oneof![
        Just("1e999"),
        Just("-1e999"),
        Just("1e-999"),
        Just("NaN"),
        Just("Infinity"),
        Just("18446744073709551616"),
        Just("-9223372036854775809"),
        Just("-0"),
        Just("0.0000000000000000000000001"),
        Just("\"\\ud800\""),
        Just("\"\\u0000\""),
        Just("{"),
        Just("]"),
        Just(","),
        Just(":"),
        Just("\""),
        Just("null"),
        Just("\n"),
    ]
    .prop_map(str::to_owned);
    (at(), prop_oneof![4 => token, 1 => "\\PC{1,3}"])
}

/// Applies text edits; each replaces the number (if any) at its position.
pub fn apply_text_edits(text: &str, edits: &[(At, String)]) -> String {
    let mut out = text.to_owned();
    for (at, token) in edits {
        let bounds: Vec<usize> = (0..=out.len())
            .filter(|i| out.is_char_boundary(*i))
            .collect();
        let i = bounds[at.index(bounds.len())];
        let end = out[i..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
            .map_or(out.len(), |n| i + n);
        out.replace_range(i..end, token);
    }
    out
}

/// Cuts `text` at a char boundary.
pub fn truncate_at(text: &mut String, at: At) {
    let bounds: Vec<usize> = (0..=text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    text.truncate(bounds[at.index(bounds.len())]);
}

/// A well-formed, non-zero duration in a random (often non-canonical)
/// spelling, with its milliseconds, at most `max_ms`.
pub fn duration_text(max_ms: u64) -> impl Strategy<Value = (String, u64)> {
    (1..=max_ms, 0usize..3).prop_map(|(ms, style)| {
        let text = match style {
            0 => canonical_duration(ms),
            1 => format!("{ms}ms"),
            _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
            _ => format!("{}s{}ms", ms / 1000, ms % 1000),
        };
        (text, ms)
    })
}
