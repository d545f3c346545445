//! StatsD (and DogStatsD) lines → recorder updates.
//!
//! One datagram holds one or more lines separated by `\n`; each line is
//! `<name>:<value>|<type>[|@<rate>][|#<tags>]`. The mapping:
//!
//! | line | effect |
//! |---|---|
//! | `bp.requests:12\|ms` (or `\|h`, `\|d`) | one request of 12 ms |
//! | `bp.events_in:1\|c` | `eventsIn.count` + 1 |
//! | `bp.events_out:1\|c` | `eventsOut.count` + 1 |
//! | `bp.warnings:1\|c` | `warnings.count` + 1 |
//! | `bp.errors:1\|c` | `errors.count` + 1 |
//! | `bp.criticals:1\|c` | `criticals.count` + 1 |
//! | `custom.jobs:3\|c` | custom counter `custom.jobs` + 3 (`-3`: − 3, a `decr`) |
//! | `custom.queue_depth:17\|g` | custom gauge set to 17 (`+3` / `-3` adjust it) |
//! | `custom.users:alice\|s` | custom set: the tick reports the distinct values of the interval |
//! | `custom.queue[orders]:5\|g` | the instance `orders` of custom gauge `custom.queue` (any custom type takes an instance: 1–256 bytes, no control character, no `]`; it may hold `:`) |
//!
//! The standard field names (`eventsIn.count:1|c`, …) are accepted as aliases
//! of the `bp.*` names. A sample rate `|@0.3` makes a line stand for `1/rate`
//! of its kind *in this interval*: a counter adds `value / rate`, a timer
//! adds `1/rate` requests (3.33… for `@0.3`) of that latency each — counts
//! may be fractional, and nothing carries over into another line or tick.
//! Gauges and sets ignore the rate. DogStatsD distributions (`|d`) are
//! timers. DogStatsD sections `|#tags`, `|c:<container>`, `|e:<external>`,
//! `|card:<cardinality>` and `|T<timestamp>` are accepted and ignored.
//!
//! Refused, with the reason: a negative delta of a standard counter (they
//! only count up: use a `custom.*` counter for a value that goes down), an
//! increment above 2^53, DogStatsD events (`_e{…}`) and service checks
//! (`_sc|…`).

use metrics_model::field::{CUSTOM_PREFIX, StandardField, is_valid_custom_name};

use crate::error::CollectorError;
use crate::recorder::Recorder;

/// One parsed StatsD line.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric<'a> {
    /// `count` requests (1/rate), each of `latency_ms`.
    Requests {
        /// The latency of each request, ms.
        latency_ms: f64,
        /// How many requests the line stands for (1 / sample rate; may be
        /// fractional).
        count: f64,
    },
    /// `n` (already scaled by 1/rate) added to a standard counter.
    Standard {
        /// The counter.
        field: StandardField,
        /// How much to add (≥ 0).
        n: f64,
    },
    /// `n` (already scaled) added to a custom counter; negative for a
    /// decrement.
    CustomCounter {
        /// The whole field name, `custom.<name>`.
        name: &'a str,
        /// How much to add.
        n: f64,
    },
    /// A custom gauge set (or adjusted, for `+n` / `-n`).
    CustomGauge {
        /// The whole field name, `custom.<name>`.
        name: &'a str,
        /// The value, or the delta when `relative`.
        value: f64,
        /// Whether the value had an explicit sign (`+3`, `-3`).
        relative: bool,
    },
    /// A value added to a custom set (distinct values per interval).
    CustomSet {
        /// The whole field name, `custom.<name>`.
        name: &'a str,
        /// The value, as sent.
        value: &'a str,
    },
}

/// The metric types of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Timer,
    Gauge,
    Set,
}

fn kind_of(text: &str) -> Option<Kind> {
    match text {
        "c" => Some(Kind::Counter),
        // Timers, histograms and DogStatsD distributions.
        "ms" | "h" | "d" => Some(Kind::Timer),
        "g" => Some(Kind::Gauge),
        "s" => Some(Kind::Set),
        _ => None,
    }
}

/// The names accepted for standard counters.
const STANDARD_NAMES: &[(&str, StandardField)] = &[
    ("bp.events_in", StandardField::EventsInCount),
    ("bp.events_out", StandardField::EventsOutCount),
    ("bp.warnings", StandardField::WarningsCount),
    ("bp.errors", StandardField::ErrorsCount),
    ("bp.criticals", StandardField::CriticalsCount),
];

const KNOWN: &str = "expected bp.requests, bp.events_in, bp.events_out, bp.warnings, bp.errors, \
     bp.criticals or custom.<name>";

fn standard_counter(name: &str) -> Option<StandardField> {
    STANDARD_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .or_else(|| match StandardField::from_name(name) {
            Some(
                f @ (StandardField::EventsInCount
                | StandardField::EventsOutCount
                | StandardField::WarningsCount
                | StandardField::ErrorsCount
                | StandardField::CriticalsCount),
            ) => Some(f),
            _ => None,
        })
}

/// The sample rate of a line's sections after its type (1 without
/// `|@<rate>`); DogStatsD sections are accepted and ignored.
fn sample_rate<'a>(sections: impl Iterator<Item = &'a str>) -> Result<f64, String> {
    let mut rate = 1.0;
    for s in sections {
        if let Some(r) = s.strip_prefix('@') {
            rate = match r.parse::<f64>() {
                Ok(r) if r > 0.0 && r <= 1.0 => r,
                _ => return Err(format!("sample rate {r:?} is not a number in (0, 1]")),
            };
        } else if s.starts_with('#')
            || s.starts_with("c:")
            || s.starts_with("e:")
            || s.starts_with("card:")
            || s.starts_with('T')
        {
            // DogStatsD tags, container id, external data, cardinality,
            // timestamp: accepted and ignored.
        } else {
            return Err(format!(
                "unexpected section {s:?}; expected |@<rate> or |#<tags>"
            ));
        }
    }
    Ok(rate)
}

/// Splits `<name>:<rest>`. A custom name may carry an instance,
/// `custom.queue[orders]`, whose text may hold `:`: the name then runs to
/// the first `]` after its `[`, and a `:` must follow it.
fn split_name(line: &str) -> Result<Option<(&str, &str)>, String> {
    let Some(colon) = line.find(':') else {
        return Ok(None);
    };
    let Some(open) = line[..colon].find('[') else {
        return Ok(Some((&line[..colon], &line[colon + 1..])));
    };
    let Some(close) = line[open..].find(']').map(|i| open + i) else {
        return Err(format!(
            "{:?}: an instance is written <name>[<instance>], with a closing ']'",
            shorten(line)
        ));
    };
    match line[close + 1..].strip_prefix(':') {
        Some(rest) => Ok(Some((&line[..=close], rest))),
        None => Err(format!(
            "{:?}: expected ':' right after the instance's ']' (an instance must not hold ']')",
            shorten(line)
        )),
    }
}

/// A custom field's line (its name already checked).
fn custom_metric<'a>(
    name: &'a str,
    kind: Kind,
    kind_text: &str,
    value: f64,
    value_text: &str,
    rate: f64,
) -> Result<Metric<'a>, String> {
    match kind {
        Kind::Counter => Ok(Metric::CustomCounter {
            name,
            n: value / rate,
        }),
        Kind::Gauge => Ok(Metric::CustomGauge {
            name,
            value,
            relative: value_text.starts_with(['+', '-']),
        }),
        Kind::Timer | Kind::Set => Err(format!(
            "custom fields take type c (counter), g (gauge) or s (set), not {kind_text:?}"
        )),
    }
}

/// Parses one line (without its newline). The error says why the line is
/// refused.
pub fn parse_line(line: &str) -> Result<Metric<'_>, String> {
    if line.starts_with("_e{") {
        return Err("a DogStatsD event (_e{…}): events are not supported, only metrics".to_owned());
    }
    if line.starts_with("_sc|") {
        return Err(
            "a DogStatsD service check (_sc|…): service checks are not supported, only metrics"
                .to_owned(),
        );
    }
    let Some((name, rest)) = split_name(line)? else {
        return Err("expected <name>:<value>|<type>".to_owned());
    };
    let mut sections = rest.split('|');
    let value_text = sections.next().unwrap_or("");
    let Some(kind_text) = sections.next() else {
        return Err("missing |<type> (c, ms, h, d, g or s)".to_owned());
    };
    let Some(kind) = kind_of(kind_text) else {
        return Err(format!(
            "unknown type {kind_text:?}; expected c (counter), ms, h or d (timer), g (gauge) or \
             s (set)"
        ));
    };
    let rate = sample_rate(sections)?;
    if let Some(short) = name.strip_prefix(CUSTOM_PREFIX) {
        let bare = short.split_once('[').map_or(short, |(n, _)| n);
        if !is_valid_custom_name(bare) {
            return Err(format!(
                "{name:?} is not a valid custom field: the name after \"custom.\" must be 1-64 \
                 of A-Z a-z 0-9 _ - ."
            ));
        }
        if bare.len() != short.len() {
            metrics_model::Key::parse_tick_key(name).map_err(|e| e.to_string())?;
        }
    }
    let is_custom = name.starts_with(CUSTOM_PREFIX);
    if kind == Kind::Set {
        if !is_custom {
            return Err(
                if name == "bp.requests" || standard_counter(name).is_some() {
                    format!(
                        "{name} does not take type s (a set); sets go into custom.<name> fields"
                    )
                } else {
                    format!("unknown metric name {name:?}; {KNOWN}")
                },
            );
        }
        if value_text.is_empty() {
            return Err("a set value is empty".to_owned());
        }
        return Ok(Metric::CustomSet {
            name,
            value: value_text,
        });
    }
    let value: f64 = value_text
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("value {value_text:?} is not a finite number"))?;
    if name == "bp.requests" {
        if kind != Kind::Timer {
            return Err(format!(
                "bp.requests takes type ms, h or d (a latency in ms), not {kind_text:?}"
            ));
        }
        if value < 0.0 {
            return Err(format!("latency {value_text} is negative"));
        }
        return Ok(Metric::Requests {
            latency_ms: value,
            count: 1.0 / rate,
        });
    }
    if let Some(field) = standard_counter(name) {
        if kind != Kind::Counter {
            return Err(format!(
                "{name} takes type c (a counter), not {kind_text:?}"
            ));
        }
        if value < 0.0 {
            return Err(format!(
                "a negative delta ({value_text}) of {name} is dropped: the standard counters only \
                 count up (use a custom.<name> counter for a value that goes down)"
            ));
        }
        return Ok(Metric::Standard {
            field,
            n: value / rate,
        });
    }
    if is_custom {
        return custom_metric(name, kind, kind_text, value, value_text, rate);
    }
    Err(format!("unknown metric name {name:?}; {KNOWN}"))
}

/// What one datagram did.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// Lines applied.
    pub accepted: usize,
    /// Lines dropped, with why (line numbers are 1-based inside the datagram).
    pub rejected: Vec<CollectorError>,
}

/// Applies StatsD lines to a [`Recorder`]. Each line counts in the
/// interval it arrives in, whole: nothing carries into another line or tick.
#[derive(Debug, Clone)]
pub struct StatsdSink {
    recorder: Recorder,
}

impl StatsdSink {
    /// A sink counting into `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        StatsdSink { recorder }
    }

    /// Parses and applies one datagram. Bad lines are skipped and reported;
    /// good ones are applied whatever their neighbours.
    pub fn ingest(&mut self, datagram: &[u8]) -> IngestReport {
        let mut report = IngestReport::default();
        for (i, raw) in datagram.split(|b| *b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |reason: String| CollectorError::Statsd {
                line: i + 1,
                text: shorten(&String::from_utf8_lossy(raw)),
                reason,
            };
            let result = std::str::from_utf8(raw)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|line| parse_line(line.trim()))
                .map_err(&bad)
                .and_then(|m| self.apply(&m));
            match result {
                Ok(()) => report.accepted += 1,
                Err(e @ CollectorError::Statsd { .. }) => report.rejected.push(e),
                Err(e) => report.rejected.push(bad(e.to_string())),
            }
        }
        report
    }

    /// Applies one parsed line.
    pub fn apply(&mut self, m: &Metric<'_>) -> Result<(), CollectorError> {
        match *m {
            Metric::Requests { latency_ms, count } => {
                self.recorder.requests_ms(count, latency_ms * count)
            }
            Metric::Standard { field, n } => self.recorder.add_standard(field, n),
            Metric::CustomCounter { name, n } => self.recorder.add(name, n),
            Metric::CustomGauge {
                name,
                value,
                relative: true,
            } => self.recorder.adjust(name, value),
            Metric::CustomGauge { name, value, .. } => self.recorder.set(name, value),
            Metric::CustomSet { name, value } => self.recorder.set_insert(name, value),
        }
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= 100 {
        return s.to_owned();
    }
    let mut end = 100;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<Metric<'_>, &str>) {
        match (parse_line(line), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{line}"),
            (Err(got), Err(part)) => assert!(got.contains(part), "{line}: {got}"),
            (got, want) => panic!("{line}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // One table of lines.
    fn lines() {
        use Metric::*;
        check(
            "bp.requests:12|ms",
            Ok(Requests {
                latency_ms: 12.0,
                count: 1.0,
            }),
        );
        check(
            "bp.requests:12.5|ms|@0.1",
            Ok(Requests {
                latency_ms: 12.5,
                count: 10.0,
            }),
        );
        check(
            "bp.events_in:1|c",
            Ok(Standard {
                field: StandardField::EventsInCount,
                n: 1.0,
            }),
        );
        check(
            "bp.errors:2|c|@0.5|#env:prod,svc:x",
            Ok(Standard {
                field: StandardField::ErrorsCount,
                n: 4.0,
            }),
        );
        check(
            "errors.count:1|c",
            Ok(Standard {
                field: StandardField::ErrorsCount,
                n: 1.0,
            }),
        );
        check(
            "custom.queue[orders]:5|g",
            Ok(CustomGauge {
                name: "custom.queue[orders]",
                value: 5.0,
                relative: false,
            }),
        );
        check(
            "custom.jobs[C:/x y]:2|c",
            Ok(CustomCounter {
                name: "custom.jobs[C:/x y]",
                n: 2.0,
            }),
        );
        check(
            "custom.queue_depth:17|g",
            Ok(CustomGauge {
                name: "custom.queue_depth",
                value: 17.0,
                relative: false,
            }),
        );
        check(
            "custom.queue_depth:-3|g|@0.5",
            Ok(CustomGauge {
                name: "custom.queue_depth",
                value: -3.0,
                relative: true,
            }),
        );
        check(
            "custom.jobs:3|c|#a:b",
            Ok(CustomCounter {
                name: "custom.jobs",
                n: 3.0,
            }),
        );
        check("bp.requests", Err("expected <name>:<value>|<type>"));
        check("bp.requests:12", Err("missing |<type>"));
        check(
            "bp.errors:alice|s",
            Err("bp.errors does not take type s (a set)"),
        );
        check("custom.u:|s", Err("a set value is empty"));
        check("bp.errors:1|x", Err("unknown type \"x\""));
        check("_e{5,4}:title|text|#a:b", Err("DogStatsD event"));
        check("_sc|my.check|0|#a:b", Err("DogStatsD service check"));
        check("bp.requests:abc|ms", Err("value \"abc\" is not a finite"));
        check("bp.requests:NaN|ms", Err("not a finite"));
        check("bp.requests:inf|ms", Err("not a finite"));
        check("bp.requests:-1|ms", Err("negative"));
        check("bp.requests:1|c", Err("bp.requests takes type ms"));
        check("bp.errors:1|g", Err("bp.errors takes type c"));
        check("bp.errors:-1|c", Err("standard counters only count up"));
        check("bp.errors:1|c|@0", Err("sample rate \"0\""));
        check("bp.errors:1|c|@2", Err("sample rate"));
        check("bp.errors:1|c|x", Err("unexpected section \"x\""));
        check("cpu.usage:1|g", Err("unknown metric name \"cpu.usage\""));
        check("bp.foo:1|c", Err("unknown metric name"));
        check("custom.a b:1|c", Err("not a valid custom field"));
        check("custom.q[a]b]:1|c", Err("must not hold ']'"));
        check("custom.q[a:1|c", Err("with a closing ']'"));
        check("custom.q[]:1|g", Err("must not be empty"));
        check("custom.q[a\u{1}]:1|g", Err("control character"));
        check("cpu.usage[x]:1|g", Err("cpu.usage"));
        check("custom.:1|c", Err("not a valid custom field"));
        check("custom.x:1|ms", Err("custom fields take type c"));
    }

    #[test]
    fn sets_distributions_and_decrements() {
        use Metric::*;
        check(
            "bp.requests:50|d|#env:prod",
            Ok(Requests {
                latency_ms: 50.0,
                count: 1.0,
            }),
        );
        check(
            "custom.users:alice|s",
            Ok(CustomSet {
                name: "custom.users",
                value: "alice",
            }),
        );
        check(
            "custom.jobs:-2|c",
            Ok(CustomCounter {
                name: "custom.jobs",
                n: -2.0,
            }),
        );
    }

    fn counted(r: &Recorder) -> std::collections::BTreeMap<String, f64> {
        r.take_interval()
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect()
    }

    #[test]
    fn datagram_with_good_and_bad_lines() {
        let r = Recorder::default();
        let mut sink = StatsdSink::new(r.clone());
        let report = sink.ingest(
            b"bp.requests:12|ms\nbp.requests:8|ms\r\n\nbogus\nbp.errors:1|c\ncustom.q:17|g\n\xff\xfe:1|c\n",
        );
        assert_eq!(report.accepted, 4);
        let errs: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("statsd line 4 \"bogus\": "), "{errs:?}");
        assert!(errs[1].starts_with("statsd line 7 ") && errs[1].contains("not UTF-8"));
        let v = counted(&r);
        assert_eq!(v["requests.count"], 2.0);
        assert_eq!(v["requests.latency_sum"], 20.0);
        assert_eq!(v["requests.latency_avg"], 10.0);
        assert_eq!(v["errors.count"], 1.0);
        assert_eq!(v["custom.q"], 17.0);
    }

    #[test]
    fn sampled_lines_count_in_their_own_interval() {
        let r = Recorder::default();
        let mut sink = StatsdSink::new(r.clone());
        // The issue's case: a sampled 12 ms timer, then a 60 s one.
        sink.ingest(b"bp.requests:12|ms|@0.3");
        sink.ingest(b"bp.requests:60000|ms");
        let v = counted(&r);
        assert!(
            (v["requests.count"] - (1.0 / 0.3 + 1.0)).abs() < 1e-9,
            "{v:?}"
        );
        assert!((v["requests.latency_sum"] - 60_040.0).abs() < 1e-6, "{v:?}");
        // The next interval holds one 12 ms request, nothing carried.
        sink.ingest(b"bp.requests:12|ms");
        let v = counted(&r);
        assert_eq!(
            (
                v["requests.count"],
                v["requests.latency_sum"],
                v["requests.latency_avg"]
            ),
            (1.0, 12.0, 12.0)
        );
        sink.ingest(b"bp.events_out:1|c|@0.3");
        assert!((counted(&r)["eventsOut.count"] - 1.0 / 0.3).abs() < 1e-12);
        sink.ingest(b"bp.requests:5|ms|@0.25");
        let v = counted(&r);
        assert_eq!(
            (v["requests.count"], v["requests.latency_sum"]),
            (4.0, 20.0)
        );
    }

    #[test]
    fn huge_increments_are_refused_not_wrapped() {
        let r = Recorder::default();
        let mut sink = StatsdSink::new(r.clone());
        let report = sink.ingest(b"bp.errors:1e20|c\nbp.errors:1e20|c\nbp.errors:5|c");
        assert_eq!(report.accepted, 1);
        assert_eq!(report.rejected.len(), 2);
        let e = report.rejected[0].to_string();
        assert!(e.contains("2^53"), "{e}");
        assert_eq!(counted(&r)["errors.count"], 5.0);
        assert_eq!(r.stats().too_large, 2);
    }

    #[test]
    fn bound_on_custom_fields_is_reported_per_line() {
        let r = Recorder::new(crate::RecorderConfig {
            max_custom_fields: 1,
        });
        let mut sink = StatsdSink::new(r.clone());
        let report = sink.ingest(b"custom.a:1|c\ncustom.b:1|c");
        assert_eq!(report.accepted, 1);
        let e = report.rejected[0].to_string();
        assert!(e.contains("line 2") && e.contains("maximum of 1"), "{e}");
        assert_eq!(r.stats().custom_dropped, 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut sink = StatsdSink::new(Recorder::default());
            let _ = sink.ingest(&bytes);
        }

        #[test]
        fn never_panics_on_text(text in "[a-z_.:|@#0-9+\\-\n]{0,80}") {
            let mut sink = StatsdSink::new(Recorder::default());
            let _ = sink.ingest(text.as_bytes());
        }
    }
}
