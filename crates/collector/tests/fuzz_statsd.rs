//! Fuzzing (property tests) of the collector's outside-input parsers: the
//! StatsD line and datagram parser (`statsd::parse_line`,
//! `StatsdSink::ingest`) and the HTTP JSON metrics body
//! (`json::parse` + `JsonMetrics::apply`). Parsed input is also applied to
//! a real `Recorder`, since a value that parses but cannot be applied is a
//! crash all the same.
//!
//! Case count: `BP_FUZZ_CASES` (default: proptest's default, 256, so CI stays
//! fast). `scripts/fuzz` runs these with 100,000 cases each in release mode
//! with overflow checks on; see docs/fuzzing.md.

use collector::recorder::MAX_COUNT;
use collector::statsd::{Metric, parse_line};
use collector::{CollectorError, Recorder, RecorderConfig, StatsdSink, json as body};
use metrics_model::StandardField;
use proptest::prelude::*;
use serde_json::{Value, json};

use test_support::fuzz::*;

// ------------------------------------------------------------------ StatsD

const STANDARD: [(&str, StandardField); 10] = [
    ("bp.events_in", StandardField::EventsInCount),
    ("bp.events_out", StandardField::EventsOutCount),
    ("bp.warnings", StandardField::WarningsCount),
    ("bp.errors", StandardField::ErrorsCount),
    ("bp.criticals", StandardField::CriticalsCount),
    ("eventsIn.count", StandardField::EventsInCount),
    ("eventsOut.count", StandardField::EventsOutCount),
    ("warnings.count", StandardField::WarningsCount),
    ("errors.count", StandardField::ErrorsCount),
    ("criticals.count", StandardField::CriticalsCount),
];

fn metric_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("bp.requests".to_owned()),
        4 => proptest::sample::select(STANDARD.to_vec()).prop_map(|(n, _)| n.to_owned()),
        4 => "[A-Za-z0-9_.\\-]{1,64}".prop_map(|n| format!("custom.{n}")),
        1 => "[a-z]{0,3}".prop_map(|n| format!("custom.{n}")),
        1 => "[A-Za-z0-9_.\\-]{65,70}".prop_map(|n| format!("custom.{n}")),
        1 => prop_oneof![
            Just("cpu.usage"), Just("requests.count"), Just("bp.foo"), Just(""),
            Just("custom."), Just("custom.a b"), Just("BP.REQUESTS"),
        ].prop_map(str::to_owned),
        1 => "\\PC{0,10}",
    ]
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..100_000).prop_map(|n| n.to_string()),
        3 => finite_f64().prop_map(|v| v.to_string()),
        1 => finite_f64().prop_map(|v| format!("{v:e}")),
        1 => (0u32..1000).prop_map(|n| format!("+{n}")),
        2 => prop_oneof![
            Just("1e300"), Just("1e308"), Just("1.7976931348623157e308"), Just("1e400"),
            Just("-1e400"), Just("NaN"), Just("inf"), Just("-inf"), Just("infinity"),
            Just(""), Just("-0"), Just("0x10"), Just("1_000"), Just(" 1"), Just("1e-320"),
            Just("18446744073709551616"), Just("."), Just("-"), Just("+"),
        ].prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

fn kind_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop_oneof![Just("c"), Just("ms"), Just("h"), Just("g"), Just("s"), Just("d")]
            .prop_map(str::to_owned),
        1 => prop_oneof![Just("set"), Just(""), Just("C"), Just("g ")]
            .prop_map(str::to_owned),
        1 => "\\PC{0,3}",
    ]
}

fn section() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            (1u32..=1000).prop_map(|n| f64::from(n) / 1000.0),
            Just(1.0),
            Just(1e-9),
        ].prop_map(|r| format!("@{r}")),
        1 => prop_oneof![
            Just("@0"), Just("@2"), Just("@-0.5"), Just("@NaN"), Just("@1e-320"),
            Just("@5e-324"), Just("@"), Just("@abc"), Just("@inf"), Just("@1.0000001"),
        ].prop_map(str::to_owned),
        2 => "#[a-z0-9:,_]{0,20}".prop_map(|t| t.clone()),
        1 => "c:[a-z0-9]{0,8}",
        1 => "e:[a-z0-9]{0,8}",
        1 => "card:[a-z]{0,8}",
        1 => "T[0-9]{0,10}",
        1 => "[a-z]{0,3}",
        1 => "\\PC{0,4}",
    ]
}

/// A StatsD line from its pieces, and the pieces.
fn statsd_line() -> impl Strategy<Value = (String, [String; 3], Vec<String>)> {
    (
        metric_name(),
        value_text(),
        kind_text(),
        proptest::collection::vec(section(), 0..4),
        0usize..6,
    )
        .prop_map(|(name, value, kind, sections, shape)| {
            let line = match shape {
                // Occasionally a malformed shape.
                0 => format!("{name}{value}|{kind}"),
                1 => format!("{name}:{value}"),
                _ => {
                    let mut l = format!("{name}:{value}|{kind}");
                    for s in &sections {
                        l.push('|');
                        l.push_str(s);
                    }
                    l
                }
            };
            (line, [name, value, kind], sections)
        })
}

/// What `parse_line` must give for a well-shaped line, from the spec in
/// the module docs (an independent restatement, not the code).
fn expected(
    name: &str,
    value_text: &str,
    kind: &str,
    sections: &[String],
) -> Option<Metric<'static>> {
    if !matches!(kind, "c" | "ms" | "h" | "d" | "g" | "s") {
        return None;
    }
    let mut rate = 1.0;
    for s in sections {
        if let Some(r) = s.strip_prefix('@') {
            rate = r.parse::<f64>().ok().filter(|r| *r > 0.0 && *r <= 1.0)?;
        } else if !["#", "c:", "e:", "card:", "T"]
            .iter()
            .any(|p| s.starts_with(p))
        {
            return None;
        }
    }
    let custom_valid = name.strip_prefix("custom.").map(|short| {
        (1..=64).contains(&short.len())
            && short
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    });
    let leaked: &'static str = "custom.*";
    if kind == "s" {
        // Sets take any non-empty value, into custom fields only.
        return (custom_valid == Some(true) && !value_text.is_empty()).then_some(
            Metric::CustomSet {
                name: leaked,
                value: "*",
            },
        );
    }
    let value = value_text.parse::<f64>().ok().filter(|v| v.is_finite())?;
    if name == "bp.requests" {
        return (matches!(kind, "ms" | "h" | "d") && value >= 0.0).then_some(Metric::Requests {
            latency_ms: value,
            count: 1.0 / rate,
        });
    }
    if let Some((_, field)) = STANDARD.iter().find(|(n, _)| *n == name) {
        // Standard counters only count up.
        return (kind == "c" && value >= 0.0).then_some(Metric::Standard {
            field: *field,
            n: value / rate,
        });
    }
    if custom_valid != Some(true) {
        return None;
    }
    match kind {
        // Custom counters take decrements.
        "c" => Some(Metric::CustomCounter {
            name: leaked,
            n: value / rate,
        }),
        "g" => Some(Metric::CustomGauge {
            name: leaked,
            value,
            relative: value_text.starts_with(['+', '-']),
        }),
        _ => None,
    }
}

/// Compares a parse result with the expectation (custom names compared
/// separately: the expectation cannot borrow the line).
fn same(got: &Metric<'_>, want: &Metric<'_>, name: &str) -> bool {
    let eq = |x: f64, y: f64| x == y || (x.is_infinite() && y.is_infinite());
    match (got, want) {
        (
            Metric::Requests { latency_ms, count },
            Metric::Requests {
                latency_ms: want_latency,
                count: want_count,
            },
        ) => eq(*latency_ms, *want_latency) && eq(*count, *want_count),
        (
            Metric::Standard { field, n },
            Metric::Standard {
                field: f,
                n: want_n,
            },
        ) => field == f && eq(*n, *want_n),
        (Metric::CustomCounter { name: got_name, n }, Metric::CustomCounter { n: want_n, .. }) => {
            *got_name == name && eq(*n, *want_n)
        }
        (
            Metric::CustomGauge {
                name: got_name,
                value,
                relative,
            },
            Metric::CustomGauge {
                value: want_value,
                relative: want_relative,
                ..
            },
        ) => *got_name == name && eq(*value, *want_value) && relative == want_relative,
        (Metric::CustomSet { name: got_name, .. }, Metric::CustomSet { .. }) => *got_name == name,
        _ => false,
    }
}

fn small_recorder(max: usize) -> Recorder {
    Recorder::new(RecorderConfig {
        max_custom_fields: max,
    })
}

fn check_recorder(r: &Recorder) -> Result<(), TestCaseError> {
    for (field, v) in r.take_interval() {
        prop_assert!(v.is_finite(), "{} = {}", field, v);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Lines built from pieces parse exactly as the documented mapping
    /// says; what parses is applied to a real recorder without a panic.
    #[test]
    fn statsd_lines_parse_as_documented((line, [name, value, kind], sections) in statsd_line()) {
        let got = parse_line(&line);
        let well_shaped = line == {
            let mut l = format!("{name}:{value}|{kind}");
            for s in &sections {
                l.push('|');
                l.push_str(s);
            }
            l
        } && !name.contains(':')
            && !format!("{value}{kind}").contains('|')
            && sections.iter().all(|s| !s.contains('|'));
        if well_shaped {
            match (&got, expected(&name, &value, &kind, &sections)) {
                (Ok(g), Some(w)) => prop_assert!(same(g, &w, &name), "{:?}: got {:?}, want {:?}", line, g, w),
                (Err(_), None) => {}
                (g, w) => prop_assert!(false, "{:?}: got {:?}, want {:?}", line, g, w),
            }
        }
        match got {
            Ok(m) => {
                let r = small_recorder(4);
                let mut sink = StatsdSink::new(r.clone());
                // Twice: carries and existing slots take other paths.
                let _ = sink.apply(&m);
                let _ = sink.apply(&m);
                check_recorder(&r)?;
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    /// Datagrams of many lines (valid, corrupt, blank, CRLF, invalid
    /// UTF-8): every non-blank line is either applied or rejected with its
    /// line number; nothing panics.
    #[test]
    fn statsd_datagrams_account_for_every_line(
        lines in proptest::collection::vec(
            prop_oneof![
                6 => statsd_line().prop_map(|(l, _, _)| l.into_bytes()),
                1 => Just(Vec::new()),
                1 => Just(b"  \t".to_vec()),
                1 => proptest::collection::vec(any::<u8>(), 0..40),
                1 => (200usize..2000).prop_map(|n| format!("custom.{}:1|c", "é".repeat(n)).into_bytes()),
            ],
            0..12,
        ),
        crlf in any::<bool>(),
        max_custom in 0usize..4,
    ) {
        let sep: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let datagram = lines.join(sep);
        let r = small_recorder(max_custom);
        let mut sink = StatsdSink::new(r.clone());
        let report = sink.ingest(&datagram);
        let total = datagram.split(|b| *b == b'\n').count();
        let non_blank = datagram
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        prop_assert_eq!(report.accepted + report.rejected.len(), non_blank);
        let mut last = 0;
        for e in &report.rejected {
            match e {
                CollectorError::Statsd { line, text, reason } => {
                    prop_assert!((1..=total).contains(line) && *line > last, "{}", e);
                    last = *line;
                    prop_assert!(!reason.is_empty());
                    prop_assert!(text.len() <= 100 + '…'.len_utf8(), "{} bytes", text.len());
                }
                other => prop_assert!(false, "not a statsd error: {}", other),
            }
        }
        check_recorder(&r)?;
    }

    /// Arbitrary bytes.
    #[test]
    fn statsd_arbitrary_bytes_never_panic(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[a-z_.:|@#0-9+\\-\\n]{0,120}".prop_map(String::into_bytes),
    ]) {
        let r = small_recorder(2);
        let report = StatsdSink::new(r.clone()).ingest(&bytes);
        prop_assert!(report.accepted + report.rejected.len() <= bytes.len() + 1);
        check_recorder(&r)?;
    }
}

// ------------------------------------------------------- HTTP JSON bodies

fn custom_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.\\-]{1,64}".prop_map(|n| format!("custom.{n}"))
}

/// A valid body object.
fn valid_body() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(proptest::collection::vec(
            prop_oneof![
                0f64..10_000.0,
                finite_f64().prop_map(|v| v.abs().min(MAX_COUNT)),
            ],
            0..5,
        )),
        proptest::collection::vec(proptest::option::of(0..=1u64 << 53), 5),
        proptest::option::of(proptest::collection::btree_map(
            custom_name(),
            finite_f64().prop_map(|v| v.clamp(-MAX_COUNT, MAX_COUNT)),
            0..4,
        )),
        proptest::option::of(proptest::collection::btree_map(
            custom_name(),
            finite_f64(),
            0..4,
        )),
    )
        .prop_map(|(requests, counts, counters, gauges)| {
            let mut b = json!({});
            if let Some(r) = requests {
                b["requests"] = json!(r);
            }
            for (key, n) in ["eventsIn", "eventsOut", "warnings", "errors", "criticals"]
                .iter()
                .zip(counts)
            {
                if let Some(n) = n {
                    b[*key] = json!(n);
                }
            }
            if let Some(c) = counters {
                b["counters"] = json!(c);
            }
            if let Some(g) = gauges {
                b["gauges"] = json!(g);
            }
            b
        })
}

fn valid_document() -> impl Strategy<Value = Value> {
    prop_oneof![
        valid_body(),
        proptest::collection::vec(valid_body(), 0..4).prop_map(Value::Array),
    ]
}

fn check_body(bytes: &[u8], max_custom: usize) -> Result<bool, TestCaseError> {
    match body::parse(bytes) {
        Ok(m) => {
            let r = small_recorder(max_custom);
            let out = m.apply(&r);
            let _ = out.dropped;
            check_recorder(&r)?;
            Ok(true)
        }
        Err(e) => {
            prop_assert!(matches!(e, CollectorError::Json(_)), "{:?}", e);
            prop_assert!(!e.to_string().is_empty());
            Ok(false)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Valid bodies parse and apply.
    #[test]
    fn json_valid_bodies_parse_and_apply(doc in valid_document(), max_custom in 0usize..6) {
        prop_assert!(check_body(doc.to_string().as_bytes(), max_custom)?, "{} was rejected", doc);
    }

    /// One fault in one body of an array: rejected, and the error names
    /// the body (`[i]`) and, except for serde's type errors, the key.
    #[test]
    fn json_single_fault_is_named(
        bodies in proptest::collection::vec(valid_body(), 2..4),
        which in at(),
        fault in prop_oneof![
            Just(("eventz", json!(1), true)),
            Just(("errors", json!(-1), false)),
            Just(("errors", json!(1.5), false)),
            Just(("warnings", json!("1"), false)),
            Just(("requests", json!([-1.0]), true)),
            Just(("requests", json!({"a": 1}), false)),
            Just(("counters", json!({"jobs": 1}), true)),
            Just(("warnings", json!(u64::MAX), true)),
            Just(("requests", json!([1e300]), true)),
            Just(("counters", json!({"custom.j": -1e20}), true)),
            Just(("gauges", json!({"cpu.usage": 1}), true)),
            Just(("gauges", json!({"custom.a b": 1}), true)),
        ],
    ) {
        let (key, value, names_key) = fault;
        let mut bodies = bodies;
        let i = which.index(bodies.len());
        bodies[i][key] = value.clone();
        let doc = Value::Array(bodies);
        let e = body::parse(doc.to_string().as_bytes()).unwrap_err().to_string();
        let prefix = format!("[{i}]");
        prop_assert!(e.starts_with(&prefix), "{} for {}: {} in {}", e, key, value, prefix);
        // serde's "invalid type" / "invalid value" messages do not say
        // which key (see docs/fuzzing.md, findings).
        if names_key {
            prop_assert!(e.contains(key), "{} for {}: {}", e, key, value);
        }
    }

    /// Valid bodies with structural mutations and text edits.
    #[test]
    fn json_mutated_bodies_never_panic(
        doc in valid_document(),
        mutations in proptest::collection::vec(mutation(), 0..5),
        edits in proptest::collection::vec(text_edit(), 0..3),
        cut in proptest::option::of(at()),
    ) {
        let mut doc = doc;
        mutate(&mut doc, &mutations);
        let mut text = apply_text_edits(&doc.to_string(), &edits);
        if let Some(cut) = cut {
            truncate_at(&mut text, cut);
        }
        check_body(text.as_bytes(), 3)?;
    }

    /// Arbitrary bytes and JSON.
    #[test]
    fn json_arbitrary_input_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..100),
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        arb_json().prop_map(|v| json!({"requests": v}).to_string().into_bytes()),
        arb_json().prop_map(|v| json!([{"counters": v}, {"gauges": v}]).to_string().into_bytes()),
    ]) {
        check_body(&bytes, 3)?;
    }
}

/// Found by `statsd_lines_parse_as_documented` and
/// `json_valid_bodies_parse_and_apply`: a finite but huge latency parsed,
/// then panicked in `Duration::from_secs_f64` when applied. Such latencies
/// (above 2^53 ms) and counts (1/5e-324 is infinite) are now refused with
/// the reason, and counted.
#[test]
fn huge_latencies_are_refused_without_panic() {
    let r = small_recorder(1);
    let mut sink = StatsdSink::new(r.clone());
    let report = sink.ingest(
        b"bp.requests:1e300|ms\nbp.requests:1.7976931348623157e308|ms|@0.5\nbp.requests:1|ms|@5e-324",
    );
    assert_eq!(report.accepted, 0, "{:?}", report.rejected);
    let reasons: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
    assert!(reasons[0].contains("2^53"), "{reasons:?}");
    assert!(reasons[2].contains("not a finite number"), "{reasons:?}");
    assert_eq!(r.stats().too_large, 3);
    let e = body::parse(br#"{"requests":[1e300, 1.7976931348623157e308]}"#).unwrap_err();
    assert!(e.to_string().contains("requests[0]"), "{e}");
    assert!(r.take_interval().iter().all(|(_, v)| v.is_finite()));
}

proptest! {
    #![proptest_config(config())]

    /// A counter never decreases by adding: over any sequence of increments
    /// (StatsD lines and HTTP bodies, tiny to astronomically large), the
    /// interval's count is the sum of the accepted ones (each ≤ 2^53),
    /// held at 2^53, and never below the largest accepted one.
    #[test]
    fn counters_never_decrease_by_adding(
        values in proptest::collection::vec(
            prop_oneof![
                3 => (0u64..1000).prop_map(|n| n as f64),
                1 => (0u64..=u64::MAX).prop_map(|n| n as f64),
                1 => prop_oneof![Just(1e20), Just(MAX_COUNT), Just(MAX_COUNT - 1.0), Just(1e300)],
            ],
            1..20,
        ),
        http in proptest::collection::vec(any::<bool>(), 20),
    ) {
        let r = small_recorder(1);
        let mut sink = StatsdSink::new(r.clone());
        let mut expected = 0.0f64;
        let mut largest = 0.0f64;
        for (v, by_http) in values.iter().zip(http) {
            let accepted = if by_http && *v <= u64::MAX as f64 {
                let b = format!("{{\"errors\":{}}}", *v as u64);
                body::parse(b.as_bytes()).map(|m| { m.apply(&r); }).is_ok()
            } else {
                sink.ingest(format!("bp.errors:{v}|c").as_bytes()).accepted == 1
            };
            prop_assert_eq!(accepted, *v <= MAX_COUNT, "{}", v);
            if accepted {
                expected = (expected + v).min(MAX_COUNT);
                largest = largest.max(*v);
            }
        }
        let got = r.take_interval().into_iter().find(|(f, _)| f.to_string() == "errors.count").unwrap().1;
        prop_assert!(got >= largest, "{} < {}", got, largest);
        prop_assert!((got - expected).abs() <= expected * 1e-12, "{} vs {}", got, expected);
    }
}
