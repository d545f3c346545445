//! Differential tests: the real engine's replay against an independent,
//! naive model of the alerting semantics, version 2 (`model_v2`), over
//! randomized scenarios (seeded, so every failure is reproducible).
//!
//! - `v1_scenarios_agree`: version-1 features only (no new rule keys, no
//!   instance keys); validates the model against the version-1 engine.
//! - `v2_scenarios_agree`: instances, `hosts`, `scope`, metadata,
//!   `staleAfter`.
//!
//! A failure prints the seed, a shrunk scenario (rules, tick lines in input
//! order, interval) and the first differing output line. Re-run one seed with
//! `DIFF_SEED=<seed> cargo test -p rules-engine --test differential_v2`.

mod model_v2;

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use metrics_model::{Duration, Tick};
use rules_engine::replay::{ReplayOptions, replay_with};
use rules_engine::{Engine, EngineOptions, RuleSet};
use serde_json::{Map, Value, json};

use model_v2::model_replay;

/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600_000;

// ---------------------------------------------------------------- random --

/// SplitMix64: small, seeded, good enough for test data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

// ------------------------------------------------------------- scenarios --

#[derive(Debug, Clone)]
struct Scenario {
    rules: Value,
    lines: Vec<String>,
    interval_ms: i64,
}

impl Scenario {
    /// Compact, bounded description for failure messages.
    fn describe(&self) -> String {
        const MAX_LINES: usize = 80;
        let mut s = format!(
            "interval: {} ms\nrules: {}\nticks ({} lines, input order):\n",
            self.interval_ms,
            self.rules,
            self.lines.len()
        );
        for l in self.lines.iter().take(MAX_LINES) {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        if self.lines.len() > MAX_LINES {
            let _ = writeln!(s, "  … {} more", self.lines.len() - MAX_LINES);
        }
        s
    }
}

/// Which features a generator may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

const NAMES: [&str; 9] = [
    "B",
    "a",
    "A",
    "b",
    "High CPU",
    "disk full",
    "Ä",
    "_x",
    "a b",
];
const HOSTS: [&str; 3] = ["web-1", "web-2", "db-1"];
const V1_KEYS: [&str; 2] = ["cpu.usage", "custom.q"];
const V2_KEYS: [&str; 6] = [
    "cpu.usage",
    "disk.usage[/]",
    "disk.usage[/var]",
    "custom.q",
    "custom.q[a]",
    "custom.q[b]",
];
const V1_FIELDS: [&str; 2] = ["cpu.usage", "custom.q"];
const V2_FIELDS: [&str; 5] = [
    "cpu.usage",
    "disk.usage",
    "disk.usage[/var]",
    "custom.q",
    "custom.q[a]",
];
const AGGS: [&str; 6] = ["avg", "sum", "min", "max", "last", "count"];
const PATTERNS: [&[&str]; 9] = [
    &["web-*"],
    &["!db-?"],
    &["web-?", "db-1"],
    &["*", "!web-2"],
    &["db-*"],
    &["web-1"],
    &["!web-*"],
    &["w?b-1?"],
    &["nothing-*"],
];

/// A duration of `ms` as `"<n>s"` or (sometimes) `"<n>ms"`.
fn duration(rng: &mut Rng, ms: i64) -> Value {
    if ms % 1000 == 0 && !rng.chance(0.2) {
        json!(format!("{}s", ms / 1000))
    } else {
        json!(format!("{ms}ms"))
    }
}

fn gen_rule(rng: &mut Rng, name: &str, version: Version) -> Value {
    let v2 = version == Version::V2;
    let field = if v2 {
        *rng.pick(&V2_FIELDS)
    } else {
        *rng.pick(&V1_FIELDS)
    };
    let cluster = v2 && rng.chance(0.3);
    let agg = loop {
        let a = *rng.pick(&AGGS);
        if !(cluster && a == "last") {
            break a;
        }
    };
    let value = match (agg, cluster) {
        ("sum", false) => rng.range(-10, 60),
        ("sum", true) => rng.range(-20, 150),
        ("count", false) => rng.range(0, 12),
        ("count", true) => rng.range(0, 30),
        _ => rng.range(-5, 15),
    };
    let name = if rng.chance(0.15) {
        format!(" {name}\t")
    } else {
        name.to_owned()
    };
    let mut r = Map::new();
    r.insert("name".into(), json!(name));
    r.insert("field".into(), json!(field));
    r.insert("aggregation".into(), json!(agg));
    let operand = if rng.chance(0.5) {
        "equalOrMoreThan"
    } else {
        "equalOrLessThan"
    };
    r.insert("operand".into(), json!(operand));
    r.insert("value".into(), json!(value));
    let timeframe = rng.range(2, 12) * 5000;
    r.insert("timeframe".into(), duration(rng, timeframe));
    match rng.below(10) {
        0 | 1 => {}
        2 => {
            r.insert("cooldown".into(), Value::Null);
        }
        _ => {
            let cooldown = rng.range(0, 8) * 5000;
            r.insert("cooldown".into(), duration(rng, cooldown));
        }
    }
    if v2 {
        add_v2_keys(rng, &mut r, cluster);
    }
    Value::Object(r)
}

fn add_v2_keys(rng: &mut Rng, r: &mut Map<String, Value>, cluster: bool) {
    if rng.chance(0.4) {
        r.insert("hosts".into(), json!(rng.pick(&PATTERNS)));
    }
    if cluster {
        r.insert("scope".into(), json!("cluster"));
    } else if rng.chance(0.15) {
        r.insert("scope".into(), json!("host"));
    }
    if rng.chance(0.3) {
        r.insert(
            "severity".into(),
            json!(rng.pick(&["warning", "critical", "p1_x-2"])),
        );
    }
    match rng.below(10) {
        0 => {
            r.insert("labels".into(), json!({}));
        }
        1 | 2 => {
            r.insert("labels".into(), json!({"team": "ops"}));
        }
        3 => {
            r.insert("labels".into(), json!({"team": "ops", "tier": "db"}));
        }
        _ => {}
    }
    if rng.chance(0.2) {
        let d = rng.pick(&["Clean /var/log or grow the volume", "ünï ✓", ""]);
        r.insert("description".into(), json!(d));
    }
    if rng.chance(0.35) {
        let stale = rng.range(4, 12) * 5000;
        r.insert("staleAfter".into(), duration(rng, stale));
    }
}

/// How one key evolves on one host: present only between two slots, at a
/// level that switches once, with noise.
#[derive(Debug)]
struct KeyPlan {
    from: i64,
    to: i64,
    present: f64,
    null: f64,
    levels: (i64, i64),
    switch: i64,
}

impl KeyPlan {
    fn new(rng: &mut Rng, slots: i64) -> KeyPlan {
        let (from, to) = if rng.chance(0.35) {
            let a = rng.range(0, slots);
            let b = rng.range(0, slots);
            (a.min(b), a.max(b))
        } else {
            (0, slots)
        };
        KeyPlan {
            from,
            to,
            present: if rng.chance(0.1) {
                0.0
            } else {
                0.5 + 0.5 * rng.unit()
            },
            null: 0.3 * rng.unit(),
            levels: (rng.range(-5, 15), rng.range(-5, 15)),
            switch: rng.range(0, slots),
        }
    }

    /// The JSON value of the key at `slot`, `None` = the key is left out.
    fn value(&self, rng: &mut Rng, slot: i64) -> Option<Value> {
        if (self.from..=self.to).contains(&slot) && rng.chance(self.present) {
            let level = if slot < self.switch {
                self.levels.0
            } else {
                self.levels.1
            };
            Some(json!((level + rng.range(-3, 3)).clamp(-5, 15)))
        } else if rng.chance(self.null) {
            Some(Value::Null)
        } else {
            None
        }
    }
}

fn tick_line(host: &str, ts: i64, values: &Map<String, Value>) -> String {
    json!({"host": host, "ts": ts, "values": values}).to_string()
}

fn gen_ticks(rng: &mut Rng, version: Version) -> Vec<String> {
    let keys: &[&str] = match version {
        Version::V1 => &V1_KEYS,
        Version::V2 => &V2_KEYS,
    };
    let mut hosts = HOSTS.to_vec();
    if rng.chance(0.3) {
        hosts.push("web-10");
    }
    let slots = rng.range(12, 60); // 5 s slots: 60 s to 300 s
    let mut lines = Vec::new();
    for host in hosts {
        if rng.chance(0.1) {
            continue;
        }
        let density = 0.3 + 0.7 * rng.unit();
        let (first, last) = (rng.range(0, slots / 2), rng.range(slots / 2, slots));
        let plans: Vec<KeyPlan> = keys.iter().map(|_| KeyPlan::new(rng, slots)).collect();
        for slot in first..=last {
            if !rng.chance(density) {
                continue;
            }
            let mut ts = BASE + slot * 5000;
            if rng.chance(0.03) {
                ts += rng.range(1, 4999);
            }
            let copies = if rng.chance(0.08) { 2 } else { 1 };
            for _ in 0..copies {
                let mut values = Map::new();
                if rng.chance(0.04) {
                    for k in keys {
                        values.insert((*k).to_owned(), Value::Null);
                    }
                } else {
                    for (k, plan) in keys.iter().zip(&plans) {
                        if let Some(v) = plan.value(rng, slot) {
                            values.insert((*k).to_owned(), v);
                        }
                    }
                }
                lines.push(tick_line(host, ts, &values));
            }
        }
    }
    rng.shuffle(&mut lines);
    lines
}

fn gen_scenario(rng: &mut Rng, version: Version) -> Scenario {
    let n = rng.range(1, 4) as usize;
    let mut names = NAMES.to_vec();
    rng.shuffle(&mut names);
    let rules = names[..n]
        .iter()
        .map(|name| gen_rule(rng, name, version))
        .collect();
    Scenario {
        rules: Value::Array(rules),
        lines: gen_ticks(rng, version),
        interval_ms: if rng.chance(0.2) { 5000 } else { 10_000 },
    }
}

// ------------------------------------------------------------ comparison --

/// The real engine's replay lines, or why it refused the scenario.
fn engine_replay(s: &Scenario) -> Result<Vec<(Value, KeyOrder)>, String> {
    let rules = RuleSet::from_json(&s.rules, "rules")
        .map_err(|e| format!("the engine rejected the rules: {e}"))?;
    let mut ticks: Vec<Tick> = Vec::new();
    for (i, l) in s.lines.iter().enumerate() {
        match Tick::parse_line(l, i + 1) {
            Ok(Some(t)) => ticks.push(t),
            Ok(None) => {}
            Err(e) => return Err(format!("the engine rejected a tick line: {e}")),
        }
    }
    let mut n = 0u128;
    let engine = Engine::new(rules, EngineOptions::default()).with_id_source(move || {
        n += 1;
        uuid::Uuid::from_u128(n)
    });
    let interval = Duration::from_millis(s.interval_ms as u64).expect("interval");
    let out = replay_with(engine, ticks, ReplayOptions::new(interval))
        .map_err(|e| format!("the engine's replay failed: {e}"))?;
    Ok(out
        .iter()
        .map(|t| {
            let line = t.to_json_line();
            let value = serde_json::from_str(&line).expect("engine line is JSON");
            let keys = serde_json::from_str(&line).expect("engine line is an object");
            (value, keys)
        })
        .collect())
}

/// The keys of a replay line in the order written: `event`, `at`,
/// `incident`, then the incident's as `incident.<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    if k == "incident" {
                        let inner: KeyOrder = m.next_value()?;
                        keys.push(k);
                        keys.extend(inner.0.into_iter().map(|x| format!("incident.{x}")));
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(k);
                    }
                }
                Ok(KeyOrder(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// The key order the brief fixes for a line with the keys of `line`.
fn expected_order(line: &Value) -> KeyOrder {
    const INCIDENT: [&str; 10] = [
        "id",
        "ruleName",
        "hostName",
        "instance",
        "severity",
        "labels",
        "description",
        "startTime",
        "endTime",
        "triggerValue",
    ];
    let mut keys: Vec<String> = ["event", "at", "incident"].map(str::to_owned).to_vec();
    let incident = &line["incident"];
    keys.extend(
        INCIDENT
            .iter()
            .filter(|k| incident.get(**k).is_some())
            .map(|k| format!("incident.{k}")),
    );
    KeyOrder(keys)
}

/// Replaces each distinct incident id by its order of first appearance.
fn normalise_ids(mut lines: Vec<Value>) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    for line in &mut lines {
        if let Some(id) = line.pointer_mut("/incident/id") {
            let n = seen.iter().position(|s| s == id).unwrap_or_else(|| {
                seen.push(id.clone());
                seen.len() - 1
            });
            *id = json!(n);
        }
    }
    lines
}

/// Equal, except `incident.triggerValue` within 1e-9 relative.
fn lines_agree(a: &Value, b: &Value) -> bool {
    let trigger = |v: &Value| v.pointer("/incident/triggerValue").and_then(Value::as_f64);
    let (ta, tb) = (trigger(a), trigger(b));
    let close = match (ta, tb) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        (None, None) => true,
        _ => false,
    };
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(Value::Object(o)) = v.get_mut("incident") {
            o.remove("triggerValue");
        }
        v
    };
    close && strip(a) == strip(b)
}

/// What one scenario gave.
#[derive(Debug)]
enum Outcome {
    /// Same lines (this many).
    Agree(usize),
    /// The engine refused the scenario, or one side panicked.
    Refused(String),
    /// The first difference.
    Differ(String),
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn compare(s: &Scenario) -> Outcome {
    let (engine, orders): (Vec<Value>, Vec<KeyOrder>) =
        match catch_unwind(AssertUnwindSafe(|| engine_replay(s))) {
            Ok(Ok(lines)) => {
                let (values, orders) = lines.into_iter().unzip();
                (normalise_ids(values), orders)
            }
            Ok(Err(e)) => return Outcome::Refused(e),
            Err(p) => return Outcome::Refused(format!("the engine panicked: {}", panic_text(&*p))),
        };
    let model = match catch_unwind(|| model_replay(&s.rules, &s.lines, s.interval_ms)) {
        Ok(lines) => normalise_ids(lines),
        Err(p) => return Outcome::Refused(format!("the MODEL panicked: {}", panic_text(&*p))),
    };
    let at = |v: &[Value], i: usize| {
        v.get(i)
            .map_or_else(|| "<no line>".to_owned(), Value::to_string)
    };
    for i in 0..model.len().max(engine.len()) {
        let same = matches!((model.get(i), engine.get(i)), (Some(a), Some(b)) if lines_agree(a, b));
        if !same {
            return Outcome::Differ(format!(
                "first difference at output line {i} (model has {} lines, engine {}):\n  model:  {}\n  engine: {}",
                model.len(),
                engine.len(),
                at(&model, i),
                at(&engine, i)
            ));
        }
        let expected = expected_order(&model[i]);
        if orders[i] != expected {
            return Outcome::Differ(format!(
                "key order differs at output line {i}: {}\n  engine:   {:?}\n  expected: {:?}",
                at(&engine, i),
                orders[i].0,
                expected.0
            ));
        }
    }
    Outcome::Agree(model.len())
}

fn disagrees(s: &Scenario) -> bool {
    matches!(compare(s), Outcome::Differ(_))
}

/// Greedy shrinking of a disagreeing scenario (rules, then chunks of tick
/// lines, then optional rule keys), within a time budget.
fn shrink(mut s: Scenario) -> Scenario {
    let start = Instant::now();
    let in_budget = || start.elapsed().as_secs() < 20;
    let mut i = 0;
    while i < s.rules.as_array().map_or(0, Vec::len)
        && s.rules.as_array().unwrap().len() > 1
        && in_budget()
    {
        let mut t = s.clone();
        t.rules.as_array_mut().unwrap().remove(i);
        if disagrees(&t) { s = t } else { i += 1 }
    }
    let mut chunk = s.lines.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < s.lines.len() && in_budget() {
            let mut t = s.clone();
            t.lines.drain(i..(i + chunk).min(t.lines.len()));
            if disagrees(&t) { s = t } else { i += chunk }
        }
        if chunk == 1 || !in_budget() {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    let optional = [
        "hosts",
        "severity",
        "labels",
        "description",
        "staleAfter",
        "cooldown",
        "scope",
    ];
    for r in 0..s.rules.as_array().unwrap().len() {
        for key in optional {
            let mut t = s.clone();
            if t.rules[r].as_object_mut().unwrap().remove(key).is_some() && disagrees(&t) {
                s = t;
            }
        }
    }
    s
}

/// Runs `cases` scenarios (or only `DIFF_SEED`); panics on the first
/// disagreement or refusal, with a shrunk scenario.
fn run(version: Version, cases: u64, first_seed: u64) {
    let started = Instant::now();
    let seeds: Vec<u64> = match std::env::var("DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("DIFF_SEED: a number")],
        Err(_) => (0..cases).map(|i| first_seed.wrapping_add(i)).collect(),
    };
    let (mut lines, mut nonempty, count) = (0usize, 0usize, seeds.len());
    for seed in seeds {
        let s = gen_scenario(&mut Rng(seed), version);
        match compare(&s) {
            Outcome::Agree(n) => {
                lines += n;
                nonempty += usize::from(n > 0);
            }
            Outcome::Refused(why) => panic!(
                "{version:?} scenario seed {seed}: {why}\n(not implemented yet in the engine?)\n{}",
                s.describe()
            ),
            Outcome::Differ(_) => {
                let small = shrink(s);
                let diff = match compare(&small) {
                    Outcome::Differ(d) => d,
                    other => format!("shrinking lost the difference: {other:?}"),
                };
                panic!(
                    "{version:?} scenario seed {seed}: the engine and the model disagree\n{diff}\nshrunk scenario:\n{}",
                    small.describe()
                );
            }
        }
    }
    println!(
        "{version:?}: {count} scenarios, {nonempty} with transitions, {lines} lines, {:.1?}",
        started.elapsed()
    );
    assert!(
        count < 100 || nonempty * 2 > count,
        "too few scenarios with transitions: {nonempty}"
    );
}

#[test]
fn v1_scenarios_agree() {
    run(Version::V1, 1000, 0x5EED_0001_0000_0000);
}

#[test]
fn v2_scenarios_agree() {
    run(Version::V2, 3000, 0x5EED_0002_0000_0000);
}

// ------------------------------------------------------------- silences --
//
// The spec's silence rules, modelled on their own: the model's transitions
// (above) plus an independent glob with escapes and the notification rules
// read straight from the spec, against the engine's `replay_notified`.

const SILENCE_NAMES: [&str; 6] = ["CPU *", "a?b", "back\\slash", "High CPU", "a", "Ä"];

/// A pattern element: `*`, `?`, or a literal character.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Star,
    One,
    Lit(char),
}

/// The spec: `\*`, `\?`, `\\` are literal; a backslash before anything
/// else, or at the end, is itself literal.
fn model_tokens(pattern: &str) -> Vec<Tok> {
    let cs: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '\\' if i + 1 < cs.len() && matches!(cs[i + 1], '*' | '?' | '\\') => {
                out.push(Tok::Lit(cs[i + 1]));
                i += 2;
                continue;
            }
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::One),
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    out
}

fn model_glob(p: &[Tok], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some(Tok::Star) => (0..=t.len()).any(|k| model_glob(&p[1..], &t[k..])),
        Some(Tok::One) => !t.is_empty() && model_glob(&p[1..], &t[1..]),
        Some(Tok::Lit(c)) => t.first() == Some(c) && model_glob(&p[1..], &t[1..]),
    }
}

fn model_mutes(silences: &[Value], incident: &Value, t: i64) -> bool {
    let field = |k: &str| {
        incident
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let names = [
        ("rule", field("ruleName")),
        ("host", field("hostName")),
        ("instance", field("instance")),
        ("severity", field("severity")),
    ];
    silences.iter().any(|s| {
        let (from, to) = (
            s["startsAt"].as_i64().unwrap(),
            s["endsAt"].as_i64().unwrap(),
        );
        from <= t
            && t < to
            && names.iter().all(|(k, name)| match s["matchers"].get(*k) {
                None => true,
                Some(p) => model_glob(
                    &model_tokens(p.as_str().unwrap()),
                    &name.chars().collect::<Vec<_>>(),
                ),
            })
    })
}

/// `notifyAt` for every model line: an open at the first instant `t ≥ at`
/// (up to `last`) before its resolve at which nothing mutes it; a resolve
/// at its `at` exactly when its open was notified.
fn model_notify(lines: &mut [Value], silences: &[Value], step: i64, last: i64) {
    let mut notified = std::collections::HashMap::<String, bool>::new();
    let resolves: std::collections::HashMap<String, i64> = lines
        .iter()
        .filter(|l| l["event"] == "resolved")
        .map(|l| (l["incident"]["id"].to_string(), l["at"].as_i64().unwrap()))
        .collect();
    for line in lines.iter_mut() {
        let id = line["incident"]["id"].to_string();
        let at = line["at"].as_i64().unwrap();
        let notify = if line["event"] == "opened" {
            let end = resolves.get(&id).copied().unwrap_or(i64::MAX);
            let mut t = at;
            let mut found = None;
            while t <= last && t < end {
                if !model_mutes(silences, &line["incident"], t) {
                    found = Some(t);
                    break;
                }
                t += step;
            }
            notified.insert(id, found.is_some());
            found
        } else {
            notified.get(&id).copied().unwrap_or(false).then_some(at)
        };
        line["notifyAt"] = json!(notify);
    }
}

fn escape(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if matches!(c, '*' | '?' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn gen_matcher(rng: &mut Rng, key: &str, names: &[String]) -> Option<Value> {
    if rng.chance(0.5) {
        return None;
    }
    let name = || names.first().cloned().unwrap_or_default();
    let pick_name = |rng: &mut Rng| -> String {
        if names.is_empty() {
            String::new()
        } else {
            names[rng.below(names.len())].clone()
        }
    };
    let _ = name;
    let p = match (key, rng.below(7)) {
        (_, 0) => "*".to_owned(),
        (_, 1) => String::new(),
        (_, 2) => escape(&pick_name(rng)),
        (_, 3) => pick_name(rng),
        (_, 4) => {
            let n = pick_name(rng);
            let cut: String = n.chars().take(rng.below(n.chars().count() + 1)).collect();
            format!("{cut}*")
        }
        ("host", _) => rng
            .pick(&["\\*", "web-*", "db-?", "web-1", "nothing"])
            .to_string(),
        ("instance", _) => rng.pick(&["/*", "/", "/var", "?", "a", "\\"]).to_string(),
        ("severity", _) => rng
            .pick(&["critical", "p1\\_x-2", "p1_x-?", "*al", "warning"])
            .to_string(),
        _ => rng
            .pick(&[
                "A*",
                "a\\?b",
                "back\\\\slash",
                "back\\slash",
                "CPU \\*",
                "?",
            ])
            .to_string(),
    };
    Some(json!(p))
}

#[derive(Debug, Clone)]
struct SilenceScenario {
    base: Scenario,
    silences: Value,
}

fn gen_silence_scenario(rng: &mut Rng) -> SilenceScenario {
    let mut base = gen_scenario(rng, Version::V2);
    let mut names: Vec<String> = base
        .rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().trim().to_owned())
        .collect();
    for (i, r) in base.rules.as_array_mut().unwrap().iter_mut().enumerate() {
        if rng.chance(0.5) {
            let n = rng.pick(&SILENCE_NAMES).to_string();
            if !names.contains(&n) {
                r["name"] = json!(n);
                names[i] = n;
            }
        }
    }
    let ts: Vec<i64> = base
        .lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["ts"].as_i64())
        .collect();
    let (lo, hi) = (
        ts.iter().min().copied().unwrap_or(BASE),
        ts.iter().max().copied().unwrap_or(BASE),
    );
    let hosts: Vec<String> = HOSTS
        .iter()
        .map(|h| (*h).to_owned())
        .chain(["*".to_owned()])
        .collect();
    let instances: Vec<String> = ["/", "/var", "a", "b"].map(str::to_owned).to_vec();
    let severities: Vec<String> = ["warning", "critical", "p1_x-2"]
        .map(str::to_owned)
        .to_vec();
    let n = rng.below(5);
    let silences: Vec<Value> = (0..n)
        .map(|_| {
            let mut start = rng.range(lo - 30_000, hi + 10_000);
            let mut end = start + rng.range(1, 200_000);
            // Boundaries exactly on evaluation instants, often.
            let step = base.interval_ms;
            if rng.chance(0.4) {
                start = start.div_euclid(step) * step;
            }
            if rng.chance(0.4) {
                end = (end.div_euclid(step) * step).max(start + step);
            }
            let mut m = Map::new();
            for (k, pool) in [("rule", &names), ("host", &hosts), ("instance", &instances), ("severity", &severities)] {
                if let Some(p) = gen_matcher(rng, k, pool) {
                    m.insert(k.to_owned(), p);
                }
            }
            json!({"matchers": m, "startsAt": start, "endsAt": end, "createdBy": "model", "comment": "drill"})
        })
        .collect();
    SilenceScenario {
        base,
        silences: Value::Array(silences),
    }
}

fn compare_silences(s: &SilenceScenario) -> Result<Vec<Value>, String> {
    let rules = RuleSet::from_json(&s.base.rules, "rules").map_err(|e| format!("rules: {e}"))?;
    let ticks: Vec<Tick> = s
        .base
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Tick::parse_line(l, i + 1).ok().flatten())
        .collect();
    let mut n = 0u128;
    let engine = Engine::new(rules, EngineOptions::default()).with_id_source(move || {
        n += 1;
        uuid::Uuid::from_u128(n)
    });
    let silences = rules_engine::silence::silences_from_json(&s.silences)
        .map_err(|e| format!("silences refused: {e:?}"))?;
    let muting = rules_engine::Muting {
        silences,
        windows: Vec::new(),
    };
    let interval = Duration::from_millis(s.base.interval_ms as u64).expect("interval");
    let engine_lines: Vec<Value> =
        rules_engine::replay_notified(engine, ticks, ReplayOptions::new(interval), &muting)
            .map_err(|e| format!("replay: {e}"))?
            .iter()
            .map(|l| serde_json::from_str(&l.to_json_line()).unwrap())
            .collect();
    let mut model = model_replay(&s.base.rules, &s.base.lines, s.base.interval_ms);
    let max_ts = s
        .base
        .lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["ts"].as_i64())
        .max()
        .unwrap_or(0);
    let last = max_ts.div_euclid(s.base.interval_ms) * s.base.interval_ms;
    model_notify(
        &mut model,
        s.silences.as_array().unwrap(),
        s.base.interval_ms,
        last,
    );
    let (model, engine_lines) = (normalise_ids(model), normalise_ids(engine_lines));
    for i in 0..model.len().max(engine_lines.len()) {
        let (a, b) = (model.get(i), engine_lines.get(i));
        let same = matches!((a, b), (Some(a), Some(b)) if lines_agree(a, b));
        if !same {
            return Err(format!(
                "line {i}:\n  model:  {}\n  engine: {}",
                a.map_or("<none>".into(), Value::to_string),
                b.map_or("<none>".into(), Value::to_string)
            ));
        }
    }
    Ok(model)
}

#[test]
fn silence_scenarios_agree() {
    let seeds: Vec<u64> = match std::env::var("DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("DIFF_SEED: a number")],
        Err(_) => (0..3000).map(|i| 0x5EED_0003_0000_0000 + i).collect(),
    };
    let (mut held, mut suppressed, mut lines) = (0usize, 0usize, 0usize);
    for seed in seeds {
        let s = gen_silence_scenario(&mut Rng(seed));
        let model = match compare_silences(&s) {
            Ok(model) => model,
            Err(e) => panic!(
                "silence scenario seed {seed}: {e}\nsilences: {}\n{}",
                s.silences,
                s.base.describe()
            ),
        };
        lines += model.len();
        // Count what the scenarios exercised (the model's view).
        for l in &model {
            if l["event"] == "opened" && l["notifyAt"] != l["at"] {
                held += 1;
            }
            if l["event"] == "resolved" && l["notifyAt"].is_null() {
                suppressed += 1;
            }
        }
    }
    println!("silences: {lines} lines, {held} opens held, {suppressed} resolves not notified");
    assert!(
        held > 100 && suppressed > 30,
        "too few muted cases: {held} held, {suppressed} suppressed"
    );
}

// ------------------------------------------- the model against the spec --

mod model_checks {
    use super::BASE;
    use super::model_v2::{format_rfc3339, glob, model_replay, parse_duration_ms, split_key};
    use serde_json::{Value, json};

    const S: i64 = 1000;

    fn line(host: &str, ts: i64, values: &Value) -> String {
        json!({"host": host, "ts": ts, "values": values}).to_string()
    }

    /// `(event, at - BASE in s, host, instance, triggerValue)`.
    fn rows(out: &[Value]) -> Vec<(String, i64, String, Option<String>, f64)> {
        out.iter()
            .map(|l| {
                let i = &l["incident"];
                (
                    l["event"].as_str().unwrap().to_owned(),
                    (l["at"].as_i64().unwrap() - BASE) / S,
                    i["hostName"].as_str().unwrap().to_owned(),
                    i.get("instance").map(|x| x.as_str().unwrap().to_owned()),
                    i["triggerValue"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    fn row(
        e: &str,
        at: i64,
        host: &str,
        inst: Option<&str>,
        v: f64,
    ) -> (String, i64, String, Option<String>, f64) {
        (
            e.to_owned(),
            at,
            host.to_owned(),
            inst.map(str::to_owned),
            v,
        )
    }

    #[test]
    fn helpers() {
        assert_eq!(
            format_rfc3339(1_767_225_720_000),
            "2026-01-01T00:02:00.000Z"
        );
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        for ms in [
            1_i64,
            86_399_999,
            1_000_000_000_000,
            4_102_444_800_000,
            1_709_164_800_000,
        ] {
            assert_eq!(
                format_rfc3339(ms),
                metrics_model::time::format_rfc3339(ms),
                "{ms}"
            );
        }
        assert_eq!(parse_duration_ms("1m30s"), 90_000);
        assert_eq!(parse_duration_ms("1500ms"), 1500);
        assert_eq!(parse_duration_ms("1h"), 3_600_000);
        assert_eq!(split_key("disk.usage[/var]"), ("disk.usage", Some("/var")));
        assert_eq!(split_key("custom.q"), ("custom.q", None));
        let g = |p: &str, s: &str| {
            glob(
                &p.chars().collect::<Vec<_>>(),
                &s.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("web-*", "web-") && g("web-*", "web-10") && !g("web-*", "db-1"));
        assert!(g("web-?", "web-1") && !g("web-?", "web-10") && g("w?b-ä", "wéb-ä"));
    }

    #[test]
    fn v1_rule_gives_the_v1_object_and_cooldown_holds() {
        let rules = json!([{ "name": " High CPU Usage ", "field": "cpu.usage", "aggregation": "avg",
            "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m", "cooldown": "1m" }]);
        // 75 for 2 min, 10 for 40 s, 75 again: opens at 0, resolves when the
        // average falls under 60, then waits for the cooldown.
        let lines: Vec<String> = (0..=40)
            .map(|i| {
                let v = if (12..16).contains(&i) { 10 } else { 75 };
                line("node-a", BASE + i * 10 * S, &json!({"cpu.usage": v}))
            })
            .collect();
        let out = model_replay(&rules, &lines, 10 * S);
        assert_eq!(
            out[0],
            json!({"event": "opened", "at": BASE, "incident": {"id": "model-1",
                "ruleName": "High CPU Usage", "hostName": "node-a",
                "startTime": "2026-01-01T00:00:00.000Z", "endTime": null, "triggerValue": 75.0}})
        );
        // 120 s: 11 × 75 + 10 = 69.6; 130 s: 10 × 75 + 2 × 10 = 64.2;
        // 140 s: 9 × 75 + 3 × 10 = 58.75 → resolves, cooldown until 200 s.
        assert_eq!(rows(&out)[1], row("resolved", 140, "node-a", None, 75.0));
        assert_eq!(
            out[1]["incident"]["endTime"],
            json!("2026-01-01T00:02:20.000Z")
        );
        // The tens leave the window from 240 s: 250 s holds 10 × 75 and 2 × 10,
        // 64.2 ≥ 60, and 250 s is past the cooldown (200 s).
        assert_eq!(
            rows(&out)[2],
            row("opened", 250, "node-a", None, (10.0 * 75.0 + 20.0) / 12.0)
        );
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn cluster_sum_over_three_hosts() {
        let rules = json!([{ "name": "errors", "field": "custom.q", "aggregation": "sum",
            "operand": "equalOrMoreThan", "value": 9, "timeframe": "30s", "scope": "cluster" }]);
        let mut lines = Vec::new();
        for h in ["web-1", "web-2", "db-1"] {
            for i in 0..6 {
                lines.push(line(h, BASE + i * 10 * S, &json!({"custom.q": 1})));
            }
        }
        // 3 hosts × 1 at 0 s, 10 s, 20 s: 9 at 20 s, and 9 until the end.
        let out = model_replay(&rules, &lines, 10 * S);
        assert_eq!(rows(&out), vec![row("opened", 20, "*", None, 9.0)]);
        // Two hosts report the same ts: different ticks, both counted.
        let only_two: Vec<String> = lines
            .iter()
            .filter(|l| !l.contains("db-1"))
            .cloned()
            .collect();
        assert!(model_replay(&rules, &only_two, 10 * S).is_empty());
    }

    #[test]
    fn per_mount_rule_opens_for_var_only() {
        let rules = json!([
            { "name": "Disk almost full", "field": "disk.usage", "aggregation": "avg",
              "operand": "equalOrMoreThan", "value": 90, "timeframe": "20s",
              "severity": "critical", "labels": {"team": "ops"},
              "description": "Clean /var/log or grow the volume" },
            { "name": "var", "field": "disk.usage[/var]", "aggregation": "max",
              "operand": "equalOrMoreThan", "value": 90, "timeframe": "20s", "labels": {} }]);
        let lines: Vec<String> = (0..3)
            .map(|i| {
                line(
                    "node-a",
                    BASE + i * 10 * S,
                    &json!({"disk.usage[/]": 50, "disk.usage[/var]": 95}),
                )
            })
            .collect();
        let out = model_replay(&rules, &lines, 10 * S);
        assert_eq!(
            rows(&out),
            vec![
                row("opened", 0, "node-a", Some("/var"), 95.0),
                row("opened", 0, "node-a", Some("/var"), 95.0)
            ]
        );
        assert_eq!(
            out[0]["incident"],
            json!({"id": "model-1", "ruleName": "Disk almost full", "hostName": "node-a",
                "instance": "/var", "severity": "critical", "labels": {"team": "ops"},
                "description": "Clean /var/log or grow the volume",
                "startTime": "2026-01-01T00:00:00.000Z", "endTime": null, "triggerValue": 95.0})
        );
        assert_eq!(out[1]["incident"]["ruleName"], json!("var"));
        assert!(
            out[1]["incident"].get("labels").is_none(),
            "empty labels are left out"
        );
    }

    #[test]
    fn host_patterns_scope_rules() {
        let rule = |hosts: Value| {
            json!([{ "name": "cpu", "field": "cpu.usage", "aggregation": "last",
                "operand": "equalOrMoreThan", "value": 50, "timeframe": "10s", "hosts": hosts }])
        };
        let lines: Vec<String> = ["web-1", "web-10", "db-1"]
            .iter()
            .map(|h| line(h, BASE, &json!({"cpu.usage": 80})))
            .collect();
        let hosts = |hosts: Value| -> Vec<String> {
            rows(&model_replay(&rule(hosts), &lines, 10 * S))
                .into_iter()
                .map(|r| r.2)
                .collect()
        };
        assert_eq!(hosts(json!(["!db-?"])), ["web-1", "web-10"]);
        assert_eq!(hosts(json!(["web-?", "db-1"])), ["db-1", "web-1"]);
        assert_eq!(hosts(json!(["*", "!web-1*"])), ["db-1"]);
        assert_eq!(hosts(json!(["web-*", "!web-1?"])), ["web-1"]);
    }

    #[test]
    fn stale_after_resolves_a_vanished_mount() {
        let rules = |stale: Option<&str>| {
            let mut r = json!({ "name": "disk", "field": "disk.usage", "aggregation": "avg",
                "operand": "equalOrMoreThan", "value": 90, "timeframe": "20s", "cooldown": "1m" });
            if let Some(s) = stale {
                r["staleAfter"] = json!(s);
            }
            json!([r])
        };
        // /var reported at 0..=30 s, then only cpu.usage until 100 s.
        let lines: Vec<String> = (0..=10)
            .map(|i| {
                let v = if i <= 3 {
                    json!({"disk.usage[/var]": 95, "cpu.usage": 1})
                } else {
                    json!({"cpu.usage": 1})
                };
                line("node-a", BASE + i * 10 * S, &v)
            })
            .collect();
        let without = model_replay(&rules(None), &lines, 10 * S);
        assert_eq!(
            rows(&without),
            vec![row("opened", 0, "node-a", Some("/var"), 95.0)]
        );
        // Window empty from 50 s; no tick with the key in (t - 40 s, t] from 70 s.
        let with = model_replay(&rules(Some("40s")), &lines, 10 * S);
        assert_eq!(
            rows(&with),
            vec![
                row("opened", 0, "node-a", Some("/var"), 95.0),
                row("resolved", 70, "node-a", Some("/var"), 95.0)
            ]
        );
        assert_eq!(with[1]["incident"]["id"], with[0]["incident"]["id"]);
        assert_eq!(
            with[1]["incident"]["startTime"],
            json!("2026-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn duplicates_bare_series_and_order() {
        // The first tick of (host, ts) counts even when all null; the bare
        // series of a count rule is evaluated from the host's first tick.
        let rules = json!([
            { "name": "a", "field": "custom.q", "aggregation": "count",
              "operand": "equalOrLessThan", "value": 0, "timeframe": "10s" },
            { "name": "B", "field": "custom.q", "aggregation": "max",
              "operand": "equalOrMoreThan", "value": 5, "timeframe": "10s" }]);
        let lines = vec![
            line("h-2", BASE, &json!({"custom.q": null})),
            line("h-2", BASE, &json!({"custom.q": 9})),
            line("h-1", BASE, &json!({"custom.q[x]": 9, "custom.q": 7})),
        ];
        let out = model_replay(&rules, &lines, 10 * S);
        let names: Vec<(&str, &str, Option<&str>)> = out
            .iter()
            .map(|l| {
                let i = &l["incident"];
                (
                    i["ruleName"].as_str().unwrap(),
                    i["hostName"].as_str().unwrap(),
                    i.get("instance").and_then(Value::as_str),
                )
            })
            .collect();
        // "B" < "a" by bytes; for "a": h-1's custom.q[x] (count 1) holds
        // nothing, h-2 (count 0) opens; for "B": h-1 bare 7 and [x] 9.
        assert_eq!(
            names,
            [
                ("B", "h-1", None),
                ("B", "h-1", Some("x")),
                ("a", "h-2", None)
            ]
        );
    }
}
