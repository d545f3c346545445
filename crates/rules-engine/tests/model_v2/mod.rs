//! An independent, naive model of the alerting semantics, version 2
//! (`alerting-semantics.md`: Data, Rule, Evaluation, Incidents, Replay
//! interface; no silences), for differential tests of the real engine.
//!
//! Written from the spec only: it shares no code with the engine. It is slow
//! on purpose (at every instant it rescans every tick) so that each rule of
//! the spec is one obvious line. It understands only the valid inputs the
//! generators produce: rules as JSON with compact durations (`"15s"`,
//! `"1500ms"`), ticks as JSON lines with a numeric `ts`.
//!
//! Decisions where the spec leaves room (see the differential test's report):
//! - a key is carried by a tick only when its value is a number (`null` =
//!   absent); a later tick of the same host and `ts` is ignored entirely;
//! - instants: the multiples of the interval from ceil(min ts) to
//!   floor(max ts) over all ticks (duplicates and all-null ticks included);
//! - staleAfter: resolves at `t` an open incident whose window has no value
//!   when no tick of the subject carrying the key has `ts` in
//!   `(t - staleAfter, t]`; the cooldown starts as for any resolve.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value, json};

/// The standard fields that appear in ticks only as `F[i]`.
const INSTANCED_FIELDS: [&str; 11] = [
    "disk.usage",
    "disk.free",
    "disk.inodes.usage",
    "io.read",
    "io.write",
    "net.rx",
    "net.tx",
    "net.errors.count",
    "process.count",
    "process.cpu",
    "process.mem",
];

fn is_instanced(field: &str) -> bool {
    INSTANCED_FIELDS.contains(&field)
}

fn is_custom(field: &str) -> bool {
    field.starts_with("custom.")
}

/// `"F[i]"` → `("F", Some("i"))`, `"F"` → `("F", None)`. Field names hold no
/// `[`, instances no `]`, so the first `[` and a final `]` delimit `i`.
pub fn split_key(key: &str) -> (&str, Option<&str>) {
    match key.find('[') {
        Some(p) if key.ends_with(']') => (&key[..p], Some(&key[p + 1..key.len() - 1])),
        _ => (key, None),
    }
}

fn join_key(field: &str, instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!("{field}[{i}]"),
        None => field.to_owned(),
    }
}

/// Milliseconds of a compact duration: one or more `<digits><unit>`, units
/// `d`, `h`, `m`, `s`, `ms`.
pub fn parse_duration_ms(text: &str) -> i64 {
    let mut rest = text;
    let mut total = 0i64;
    assert!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        assert!(digits > 0, "bad duration {text:?}");
        let n: i64 = rest[..digits].parse().expect("digits");
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.as_bytes().first() {
                Some(b'd') => (86_400_000, 1),
                Some(b'h') => (3_600_000, 1),
                Some(b'm') => (60_000, 1),
                Some(b's') => (1_000, 1),
                _ => panic!("bad duration {text:?}"),
            }
        };
        total += n * unit;
        rest = &rest[len..];
    }
    total
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-01-01T00:02:00.000Z`
/// (proleptic Gregorian calendar, days-from-civil inverted by hand).
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Whole-string glob: `*` any run (also none), `?` one Unicode scalar value,
/// anything else itself.
pub fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).any(|k| glob(&pattern[1..], &text[k..])),
        Some('?') => !text.is_empty() && glob(&pattern[1..], &text[1..]),
        Some(c) => text.first() == Some(c) && glob(&pattern[1..], &text[1..]),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Avg,
    Sum,
    Min,
    Max,
    Last,
    Count,
}

#[derive(Debug, Clone)]
struct ModelRule {
    name: String,
    /// The rule field without its instance.
    field: String,
    /// `Some(i)` for a rule field `F[i]`.
    instance: Option<String>,
    agg: Agg,
    /// `equalOrMoreThan` (else `equalOrLessThan`).
    at_least: bool,
    value: f64,
    timeframe: i64,
    cooldown: i64,
    hosts: Option<Vec<String>>,
    cluster: bool,
    severity: Option<String>,
    labels: Option<Map<String, Value>>,
    description: Option<String>,
    stale_after: Option<i64>,
}

impl ModelRule {
    fn parse(v: &Value) -> ModelRule {
        let o = v.as_object().expect("a rule is an object");
        let text = |k: &str| o[k].as_str().unwrap_or_else(|| panic!("{k}: a string"));
        let (field, instance) = split_key(text("field"));
        let agg = match text("aggregation") {
            "avg" => Agg::Avg,
            "sum" => Agg::Sum,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "last" => Agg::Last,
            "count" => Agg::Count,
            other => panic!("aggregation {other:?}"),
        };
        let at_least = match text("operand") {
            "equalOrMoreThan" => true,
            "equalOrLessThan" => false,
            other => panic!("operand {other:?}"),
        };
        let opt_str = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        ModelRule {
            name: text("name").trim().to_owned(),
            field: field.to_owned(),
            instance: instance.map(str::to_owned),
            agg,
            at_least,
            value: o["value"].as_f64().expect("numeric value"),
            timeframe: parse_duration_ms(text("timeframe")),
            cooldown: opt_str("cooldown").map_or(0, |d| parse_duration_ms(&d)),
            hosts: o.get("hosts").map(|h| {
                h.as_array()
                    .expect("hosts: an array")
                    .iter()
                    .map(|p| p.as_str().expect("a pattern").to_owned())
                    .collect()
            }),
            cluster: opt_str("scope").as_deref() == Some("cluster"),
            severity: opt_str("severity"),
            labels: o
                .get("labels")
                .and_then(Value::as_object)
                .filter(|m| !m.is_empty())
                .cloned(),
            description: opt_str("description"),
            stale_after: opt_str("staleAfter").map(|d| parse_duration_ms(&d)),
        }
    }

    /// Rule section, `hosts`: no excluding pattern matches and, when there is
    /// an including one, one of them matches.
    fn in_scope(&self, host: &str) -> bool {
        let Some(patterns) = &self.hosts else {
            return true;
        };
        let host: Vec<char> = host.chars().collect();
        let matches = |p: &str| glob(&p.chars().collect::<Vec<_>>(), &host);
        let excluded = patterns
            .iter()
            .filter_map(|p| p.strip_prefix('!'))
            .any(matches);
        let including: Vec<&String> = patterns.iter().filter(|p| !p.starts_with('!')).collect();
        !excluded && (including.is_empty() || including.iter().any(|p| matches(p)))
    }

    /// Whether the rule watches the bare key `F` (a field that is not
    /// instanced, written without an instance).
    fn watches_bare(&self) -> bool {
        self.instance.is_none() && !is_instanced(&self.field)
    }

    /// Whether the rule watches the key `field[instance]`.
    fn watches_instance(&self, field: &str, instance: &str) -> bool {
        field == self.field
            && match &self.instance {
                Some(i) => i == instance,
                None => is_instanced(field) || is_custom(field),
            }
    }

    fn holds(&self, v: f64) -> bool {
        if self.at_least {
            v >= self.value
        } else {
            v <= self.value
        }
    }

    /// The window's value (Evaluation section), `None` = no value.
    fn aggregate(&self, window: &[(i64, f64)]) -> Option<f64> {
        let values = window.iter().map(|&(_, v)| v);
        match self.agg {
            Agg::Count => Some(window.len() as f64),
            Agg::Sum => Some(values.fold(0.0, |a, b| a + b)),
            _ if window.is_empty() => None,
            Agg::Avg => Some(values.fold(0.0, |a, b| a + b) / window.len() as f64),
            Agg::Min => values.reduce(f64::min),
            Agg::Max => values.reduce(f64::max),
            Agg::Last => window.iter().max_by_key(|&&(ts, _)| ts).map(|&(_, v)| v),
        }
    }

    fn incident(
        &self,
        subject: &str,
        series: Option<&str>,
        open: &Open,
        end: Option<i64>,
    ) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(open.id));
        o.insert("ruleName".into(), json!(self.name));
        o.insert("hostName".into(), json!(subject));
        if let Some(i) = series {
            o.insert("instance".into(), json!(i));
        }
        if let Some(s) = &self.severity {
            o.insert("severity".into(), json!(s));
        }
        if let Some(l) = &self.labels {
            o.insert("labels".into(), Value::Object(l.clone()));
        }
        if let Some(d) = &self.description {
            o.insert("description".into(), json!(d));
        }
        o.insert("startTime".into(), json!(format_rfc3339(open.start)));
        o.insert(
            "endTime".into(),
            end.map_or(Value::Null, |e| json!(format_rfc3339(e))),
        );
        o.insert("triggerValue".into(), json!(open.trigger));
        Value::Object(o)
    }
}

#[derive(Debug, Clone)]
struct ModelTick {
    host: String,
    ts: i64,
    /// Only the keys whose value is a number.
    values: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
struct Open {
    id: String,
    start: i64,
    trigger: f64,
}

#[derive(Debug, Clone, Default)]
struct SeriesState {
    open: Option<Open>,
    /// `None` = −infinity.
    cooldown_until: Option<i64>,
}

/// Parses tick lines: the ticks that count (first per host and `ts`, input
/// order) and the smallest and largest `ts` over every line.
fn parse_ticks(lines: &[String]) -> (Vec<ModelTick>, Option<(i64, i64)>) {
    let mut seen = HashSet::new();
    let mut ticks = Vec::new();
    let mut range: Option<(i64, i64)> = None;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("a JSON tick line");
        let host = v["host"].as_str().expect("host").to_owned();
        let ts = v["ts"].as_i64().expect("numeric ts");
        range = Some(range.map_or((ts, ts), |(lo, hi)| (lo.min(ts), hi.max(ts))));
        if !seen.insert((host.clone(), ts)) {
            continue;
        }
        let values = v["values"]
            .as_object()
            .expect("values")
            .iter()
            .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
            .collect();
        ticks.push(ModelTick { host, ts, values });
    }
    (ticks, range)
}

/// One transition before sorting: (rule, subject, instance) and its line.
type Row = (String, String, Option<String>, Value);

/// The incident state of every (rule, subject, instance) seen so far.
#[derive(Debug, Default)]
struct Memory {
    states: BTreeMap<(String, String, Option<String>), SeriesState>,
    next_id: u64,
}

/// The subjects of `rule` at `t`, each with the ticks it reads (all of them,
/// not only those ≤ t): scope `host`, every in-scope host with a tick ≤ t;
/// scope `cluster`, `*` reading every such host, when there is one.
fn subjects<'a>(
    rule: &ModelRule,
    ticks: &'a [ModelTick],
    t: i64,
) -> Vec<(String, Vec<&'a ModelTick>)> {
    let hosts: BTreeSet<&str> = ticks
        .iter()
        .filter(|k| k.ts <= t && rule.in_scope(&k.host))
        .map(|k| k.host.as_str())
        .collect();
    let reading = |pred: &dyn Fn(&str) -> bool| -> Vec<&'a ModelTick> {
        ticks.iter().filter(|k| pred(&k.host)).collect()
    };
    if rule.cluster {
        if hosts.is_empty() {
            return Vec::new();
        }
        vec![("*".to_owned(), reading(&|h| hosts.contains(h)))]
    } else {
        hosts
            .iter()
            .map(|&h| (h.to_owned(), reading(&|x| x == h)))
            .collect()
    }
}

/// The series (by instance) of `rule` for a subject reading `ticks` at `t`:
/// the bare key always (when watched), each watched `F[i]` once it appeared.
fn series(rule: &ModelRule, ticks: &[&ModelTick], t: i64) -> BTreeSet<Option<String>> {
    let mut series = BTreeSet::new();
    if rule.watches_bare() {
        series.insert(None);
    }
    for tick in ticks.iter().filter(|k| k.ts <= t) {
        for key in tick.values.keys() {
            if let (f, Some(i)) = split_key(key)
                && rule.watches_instance(f, i)
            {
                series.insert(Some(i.to_owned()));
            }
        }
    }
    series
}

/// Evaluates one series at `t` (Incidents section).
fn step(
    memory: &mut Memory,
    rule: &ModelRule,
    subject: &str,
    ticks: &[&ModelTick],
    instance: Option<String>,
    t: i64,
) -> Option<Row> {
    let key = join_key(&rule.field, instance.as_deref());
    let window: Vec<(i64, f64)> = ticks
        .iter()
        .filter(|k| t - rule.timeframe < k.ts && k.ts <= t)
        .filter_map(|k| k.values.get(&key).map(|&v| (k.ts, v)))
        .collect();
    let value = rule.aggregate(&window);
    let vanished = rule.stale_after.is_some_and(|sa| {
        !ticks
            .iter()
            .any(|k| t - sa < k.ts && k.ts <= t && k.values.contains_key(&key))
    });
    let state = memory
        .states
        .entry((rule.name.clone(), subject.to_owned(), instance.clone()))
        .or_default();
    let opening = state.open.is_none()
        && value.is_some_and(|v| rule.holds(v))
        && state.cooldown_until.is_none_or(|c| t >= c);
    let resolving = state.open.is_some()
        && match value {
            Some(v) => !rule.holds(v),
            None => vanished,
        };
    let line = if opening {
        memory.next_id += 1;
        let open = Open {
            id: format!("model-{}", memory.next_id),
            start: t,
            trigger: value.expect("opening needs a value"),
        };
        let incident = rule.incident(subject, instance.as_deref(), &open, None);
        state.open = Some(open);
        json!({"event": "opened", "at": t, "incident": incident})
    } else if resolving {
        let open = state.open.take().expect("resolving needs an open incident");
        state.cooldown_until = Some(t + rule.cooldown);
        let incident = rule.incident(subject, instance.as_deref(), &open, Some(t));
        json!({"event": "resolved", "at": t, "incident": incident})
    } else {
        return None;
    };
    Some((rule.name.clone(), subject.to_owned(), instance, line))
}

/// Every transition at `t`, in the replay order.
fn evaluate(rules: &[ModelRule], ticks: &[ModelTick], memory: &mut Memory, t: i64) -> Vec<Value> {
    let mut rows: Vec<Row> = Vec::new();
    for rule in rules {
        for (subject, read) in subjects(rule, ticks, t) {
            for instance in series(rule, &read, t) {
                rows.extend(step(memory, rule, &subject, &read, instance, t));
            }
        }
    }
    // Replay interface: ties by rule name, host name, instance (none first),
    // all by bytes (`String`'s and `Option`'s orders).
    rows.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    rows.into_iter().map(|r| r.3).collect()
}

/// The replay output lines for `rules` (a JSON array) over `tick_lines`
/// (JSON lines, any order), evaluated every `interval_ms`.
pub fn model_replay(rules: &Value, tick_lines: &[String], interval_ms: i64) -> Vec<Value> {
    assert!(interval_ms > 0);
    let rules: Vec<ModelRule> = rules
        .as_array()
        .expect("rules: an array")
        .iter()
        .map(ModelRule::parse)
        .collect();
    let (ticks, range) = parse_ticks(tick_lines);
    let Some((min, max)) = range else {
        return Vec::new();
    };
    let mut memory = Memory::default();
    let mut out = Vec::new();
    let mut t = min.div_euclid(interval_ms) * interval_ms;
    if t < min {
        t += interval_ms;
    }
    while t <= max {
        out.extend(evaluate(&rules, &ticks, &mut memory, t));
        t += interval_ms;
    }
    out
}
