//! Rule unit tests, in the spirit of `promtool test rules`: rules, input
//! series per host in a compact notation, and the transitions expected.
//! `bp-alerter test-rules FILE…` runs them; embedders can too. The format
//! is documented in `docs/test-rules.md`.
//!
//! Series notation: whitespace-separated items, one tick slot each interval
//! from `start`: `70` (one tick of 70), `70x6` (six ticks of 70), `_` (no
//! value in that slot), `_x3` (three slots without a value). A host's slot
//! with no value in any key has no tick at all. Series are named by key, so
//! a host's series may be instances: `"disk.usage[/var]": "50x6 95x12"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use metrics_model::time::{self, Millis};
use metrics_model::{Duration, HostName, Key, Tick, Values};
use serde_json::{Map, Value};

use crate::error::{ConfigError, Problems};
use crate::incident::{Event, Transition};
use crate::replay::{ReplayOptions, replay};
use crate::rule::{RuleSet, duration_key, kind};

/// A parsed test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    rules: RuleSet,
    interval: Duration,
    watcher_interval: Duration,
    start: Millis,
    tests: Vec<TestCase>,
}

#[derive(Debug, Clone)]
struct TestCase {
    name: String,
    ticks: Vec<Tick>,
    until: Option<Millis>,
    expect: Vec<Expected>,
}

#[derive(Debug, Clone)]
struct Expected {
    event: Event,
    at: Millis,
    rule: String,
    host: String,
    /// The incident's instance (`None`: it has none).
    instance: Option<String>,
    trigger_value: Option<f64>,
}

/// The outcome of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// Whether the transitions were the expected ones.
    pub passed: bool,
    /// On failure, a readable diff: `-` expected, `+` got, ` ` both.
    pub diff: String,
}

const FILE_KEYS: [&str; 5] = ["rules", "interval", "watcherInterval", "start", "tests"];
const TEST_KEYS: [&str; 4] = ["name", "series", "until", "expect"];
const EXPECT_KEYS: [&str; 6] = ["event", "at", "rule", "host", "instance", "triggerValue"];

impl TestFile {
    /// Parses a test file. `load_rules` reads a rules file named by a string
    /// `"rules"` value (the caller resolves it relative to the test file).
    pub fn parse(
        text: &str,
        source_name: &str,
        load_rules: &dyn Fn(&str) -> Result<RuleSet, String>,
    ) -> Result<TestFile, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::from_json(source_name, &e))?;
        let mut p = Problems::default();
        let Value::Object(obj) = &value else {
            p.push(
                "$",
                format!("expected a test file object, got {}", kind(&value)),
                None,
            );
            return Err(ConfigError::Invalid(p.0));
        };
        check_keys(obj, "", &FILE_KEYS, &mut p);
        let rules = match obj.get("rules") {
            Some(Value::String(path)) => load_rules(path).unwrap_or_else(|e| {
                p.push("rules", e, None);
                RuleSet::default()
            }),
            Some(v @ Value::Array(_)) => RuleSet::from_json(v, "rules").unwrap_or_else(|e| {
                if let ConfigError::Invalid(list) = e {
                    p.0.extend(list);
                }
                RuleSet::default()
            }),
            Some(other) => {
                p.push(
                    "rules",
                    format!(
                        "expected an array of rules or a file path, got {}",
                        kind(other)
                    ),
                    None,
                );
                RuleSet::default()
            }
            None => {
                p.push("$", "missing key: rules", None);
                RuleSet::default()
            }
        };
        let interval = positive(obj, "", "interval", &mut p).unwrap_or_else(d10s);
        let watcher_interval = positive(obj, "", "watcherInterval", &mut p).unwrap_or(interval);
        let start = match obj.get("start") {
            None => 0,
            Some(Value::String(s)) => time::parse_rfc3339(s).unwrap_or_else(|| {
                p.push("start", format!("{s:?} is not an RFC 3339 time"), None);
                0
            }),
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
            Some(other) => {
                p.push(
                    "start",
                    format!(
                        "expected an RFC 3339 time or milliseconds, got {}",
                        kind(other)
                    ),
                    None,
                );
                0
            }
        };
        let mut tests = Vec::new();
        match obj.get("tests") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) =
                        parse_case(item, &format!("tests[{i}]"), start, interval, &mut p)
                    {
                        tests.push(t);
                    }
                }
            }
            Some(other) => p.push(
                "tests",
                format!("expected an array, got {}", kind(other)),
                None,
            ),
            None => p.push("$", "missing key: tests", None),
        }
        p.into_result(TestFile {
            rules,
            interval,
            watcher_interval,
            start,
            tests,
        })
    }

    /// Runs every test case.
    pub fn run(&self) -> Vec<TestOutcome> {
        self.tests.iter().map(|t| self.run_case(t)).collect()
    }

    fn run_case(&self, case: &TestCase) -> TestOutcome {
        let mut options = ReplayOptions::new(self.watcher_interval);
        options.until = case.until;
        let got = match replay(&self.rules, case.ticks.iter().cloned(), options) {
            Ok(got) => got,
            Err(e) => {
                return TestOutcome {
                    name: case.name.clone(),
                    passed: false,
                    diff: format!("  replay failed: {e}\n"),
                };
            }
        };
        let mut diff = String::new();
        let mut passed = got.len() == case.expect.len();
        for i in 0..got.len().max(case.expect.len()) {
            match (case.expect.get(i), got.get(i)) {
                (Some(e), Some(g)) if e.matches(g) => {
                    let _ = writeln!(diff, "  {}", self.show(g, e.trigger_value.is_some()));
                }
                (e, g) => {
                    passed = false;
                    if let Some(e) = e {
                        let _ = writeln!(diff, "- {}", self.show_expected(e));
                    }
                    if let Some(g) = g {
                        let _ = writeln!(diff, "+ {}", self.show(g, true));
                    }
                }
            }
        }
        if got.is_empty() && case.expect.is_empty() {
            diff.push_str("  (no incident)\n");
        }
        TestOutcome {
            name: case.name.clone(),
            passed,
            diff,
        }
    }

    fn offset(&self, at: Millis) -> String {
        match u64::try_from(at - self.start)
            .ok()
            .and_then(Duration::from_millis)
        {
            Some(d) => d.to_string(),
            None => format!("{}ms", at - self.start),
        }
    }

    fn show(&self, t: &Transition, with_value: bool) -> String {
        let mut s = format!(
            "{:<8} at {:<8} rule {:?} host {}",
            t.event.as_str(),
            self.offset(t.at),
            &*t.incident.rule_name,
            t.incident.host_name
        );
        if let Some(i) = &t.incident.instance {
            let _ = write!(s, " instance {:?}", i.as_str());
        }
        if with_value {
            let _ = write!(s, " triggerValue {}", t.incident.trigger_value);
        }
        s
    }

    fn show_expected(&self, e: &Expected) -> String {
        let mut s = format!(
            "{:<8} at {:<8} rule {:?} host {}",
            e.event.as_str(),
            self.offset(e.at),
            e.rule,
            e.host
        );
        if let Some(i) = &e.instance {
            let _ = write!(s, " instance {i:?}");
        }
        if let Some(v) = e.trigger_value {
            let _ = write!(s, " triggerValue {v}");
        }
        s
    }

    /// The tick interval of the series.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl Expected {
    fn matches(&self, g: &Transition) -> bool {
        self.event == g.event
            && self.at == g.at
            && self.rule == *g.incident.rule_name
            && self.host == g.incident.host_name.as_str()
            && self.instance.as_deref()
                == g.incident
                    .instance
                    .as_ref()
                    .map(metrics_model::Instance::as_str)
            && self.trigger_value.is_none_or(|v| {
                let got = g.incident.trigger_value;
                (v - got).abs() <= 1e-9 * v.abs().max(got.abs()).max(1.0)
            })
    }
}

fn d10s() -> Duration {
    Duration::from_secs(10).unwrap_or_default()
}

fn check_keys(obj: &Map<String, Value>, path: &str, valid: &[&str], p: &mut Problems) {
    p.0.extend(crate::error::unknown_keys(obj, path, valid, None));
}

fn positive(obj: &Map<String, Value>, path: &str, key: &str, p: &mut Problems) -> Option<Duration> {
    obj.get(key)?;
    let at = if path.is_empty() {
        "$".to_owned()
    } else {
        path.to_owned()
    };
    let d = duration_key(obj, &at, key, None, p)?;
    if d.is_zero() {
        p.push(key, "must be greater than 0", None);
        return None;
    }
    Some(d)
}

fn parse_case(
    item: &Value,
    at: &str,
    start: Millis,
    interval: Duration,
    p: &mut Problems,
) -> Option<TestCase> {
    let Value::Object(obj) = item else {
        p.push(
            at,
            format!("expected a test object, got {}", kind(item)),
            None,
        );
        return None;
    };
    check_keys(obj, at, &TEST_KEYS, p);
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => at.to_owned(),
    };
    let before = p.0.len();
    let ticks = match obj.get("series") {
        Some(Value::Object(hosts)) => {
            parse_series(hosts, &format!("{at}.series"), start, interval, p)
        }
        Some(other) => {
            p.push(
                format!("{at}.series"),
                format!("expected an object of hosts, got {}", kind(other)),
                None,
            );
            Vec::new()
        }
        None => {
            p.push(at, "missing key: series", None);
            Vec::new()
        }
    };
    let until = match obj.get("until") {
        None => None,
        Some(_) => {
            duration_key(obj, at, "until", None, p).map(|d| start.saturating_add(d.as_millis_i64()))
        }
    };
    let expect = match obj.get("expect") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, e)| parse_expected(e, &format!("{at}.expect[{i}]"), start, p))
            .collect(),
        Some(other) => {
            p.push(
                format!("{at}.expect"),
                format!(
                    "expected an array (empty: no incident), got {}",
                    kind(other)
                ),
                None,
            );
            Vec::new()
        }
        None => {
            p.push(at, "missing key: expect (use [] for \"no incident\")", None);
            Vec::new()
        }
    };
    (p.0.len() == before).then_some(TestCase {
        name,
        ticks,
        until,
        expect,
    })
}

fn parse_series(
    hosts: &Map<String, Value>,
    at: &str,
    start: Millis,
    interval: Duration,
    p: &mut Problems,
) -> Vec<Tick> {
    let mut ticks = Vec::new();
    for (host_text, fields) in hosts {
        let path = format!("{at}.{host_text}");
        let host: HostName = match host_text.parse() {
            Ok(h) => h,
            Err(e) => {
                p.push(&path, e.to_string(), None);
                continue;
            }
        };
        let Value::Object(fields) = fields else {
            p.push(
                &path,
                format!("expected an object of fields, got {}", kind(fields)),
                None,
            );
            continue;
        };
        let mut slots: BTreeMap<usize, Values> = BTreeMap::new();
        for (field_text, notation) in fields {
            let fpath = format!("{path}.{field_text}");
            let field = match Key::parse_tick_key(field_text) {
                Ok(f) => f,
                Err(e) => {
                    p.push(&fpath, e.to_string(), None);
                    continue;
                }
            };
            let Value::String(notation) = notation else {
                p.push(
                    &fpath,
                    format!(
                        "expected a series string such as \"10x12 70x6 _ 5\", got {}",
                        kind(notation)
                    ),
                    None,
                );
                continue;
            };
            match parse_notation(notation) {
                Ok(values) => {
                    for (slot, v) in values.into_iter().enumerate() {
                        if let Some(v) = v {
                            slots.entry(slot).or_default().insert(field.clone(), v);
                        }
                    }
                }
                Err(e) => p.push(&fpath, e, None),
            }
        }
        for (slot, values) in slots {
            let ts = start.saturating_add((slot as i64).saturating_mul(interval.as_millis_i64()));
            ticks.push(Tick::from_values(host.clone(), ts, values));
        }
    }
    ticks
}

/// The most slots one series may describe.
const MAX_SLOTS: usize = 1_000_000;

/// Parses the compact notation into one optional value per slot.
pub fn parse_notation(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for (i, item) in text.split_whitespace().enumerate() {
        let bad = |why: &str| {
            format!(
                "item {} {item:?}: {why}; write e.g. \"10x12 70x6 _ 5\"",
                i + 1
            )
        };
        let (value, count) = match item.split_once('x') {
            Some((v, n)) => (
                v,
                n.parse::<usize>()
                    .map_err(|_| bad("the count after x must be a whole number"))?,
            ),
            None => (item, 1),
        };
        let value = if value == "_" {
            None
        } else {
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => return Err(bad("not a finite number or _")),
            }
        };
        // `out.len() <= MAX_SLOTS` here, so this cannot overflow (a sum could).
        if count > MAX_SLOTS - out.len() {
            return Err(bad("the series is longer than 1,000,000 slots"));
        }
        out.extend(std::iter::repeat_n(value, count));
    }
    if out.is_empty() {
        return Err("empty series; write e.g. \"10x12 70x6 _ 5\"".to_owned());
    }
    Ok(out)
}

fn parse_expected(item: &Value, at: &str, start: Millis, p: &mut Problems) -> Option<Expected> {
    let Value::Object(obj) = item else {
        p.push(at, format!("expected an object, got {}", kind(item)), None);
        return None;
    };
    check_keys(obj, at, &EXPECT_KEYS, p);
    let before = p.0.len();
    let text = |key: &str, p: &mut Problems| match obj.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            p.push(
                format!("{at}.{key}"),
                format!("expected a string, got {}", kind(other)),
                None,
            );
            None
        }
        None => {
            p.push(at, format!("missing key: {key}"), None);
            None
        }
    };
    let event = text("event", p).and_then(|e| match e.as_str() {
        "opened" => Some(Event::Opened),
        "resolved" => Some(Event::Resolved),
        _ => {
            p.push(
                format!("{at}.event"),
                format!("{e:?} is not opened or resolved"),
                None,
            );
            None
        }
    });
    let offset = if obj.contains_key("at") {
        duration_key(obj, at, "at", None, p)
    } else {
        text("at", p).and(None)
    };
    let rule = text("rule", p);
    let host = text("host", p);
    let instance = match obj.get("instance") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            p.push(
                format!("{at}.instance"),
                format!("expected a string, got {}", kind(other)),
                None,
            );
            None
        }
    };
    let trigger_value = match obj.get("triggerValue") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => {
            p.push(
                format!("{at}.triggerValue"),
                format!("expected a number, got {}", kind(other)),
                None,
            );
            None
        }
    };
    if p.0.len() != before {
        return None;
    }
    Some(Expected {
        event: event?,
        at: start.saturating_add(offset?.as_millis_i64()),
        rule: rule?.trim().to_owned(),
        host: host?,
        instance,
        trigger_value,
    })
}
