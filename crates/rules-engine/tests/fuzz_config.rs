//! Fuzzing (property tests) of the rules-engine parsers that take outside
//! input: the configuration file (`Config::from_json_text`), rule arrays
//! (`RuleSet::from_json`, `rules_from_json_text`), rule test files
//! (`rule_tests::TestFile::parse`) and the series notation
//! (`rule_tests::parse_notation`).
//!
//! Case count: `BP_FUZZ_CASES` (default: proptest's default, 256, so CI stays
//! fast). `scripts/fuzz` runs these with 100,000 cases each in release mode
//! with overflow checks on; see docs/fuzzing.md.

use metrics_model::StandardField;
use proptest::prelude::*;
use rules_engine::config::rules_from_json_text;
use rules_engine::rule_tests::{TestFile, parse_notation};
use rules_engine::{Aggregation, Config, ConfigError, Operand, RuleSet};
use serde_json::{Value, json};

use test_support::fuzz::*;

// ------------------------------------------------------------------ rules

/// A valid rule as JSON, with a unique name for index `i`.
fn valid_rule(i: usize) -> impl Strategy<Value = Value> {
    (
        "[ \\PC]{0,12}",
        prop_oneof![
            proptest::sample::select(StandardField::ALL).prop_map(|f| f.as_str().to_owned()),
            "[A-Za-z0-9_.\\-]{1,64}".prop_map(|n| format!("custom.{n}")),
        ],
        proptest::sample::select(Aggregation::ALL.to_vec()),
        proptest::sample::select(Operand::ALL.to_vec()),
        finite_f64(),
        duration_text(30 * 86_400_000),
        proptest::option::of(prop_oneof![
            Just(("0s".to_owned(), 0)),
            duration_text(86_400_000),
        ]),
        any::<bool>(),
    )
        .prop_map(
            move |(suffix, field, (_, agg), (_, op), value, (tf, _), cd, pad)| {
                let name = if pad {
                    format!("  r{i}-{suffix}\t")
                } else {
                    format!("r{i}-{suffix}")
                };
                let mut rule = json!({
                    "name": name, "field": field, "aggregation": agg, "operand": op,
                    "value": value, "timeframe": tf,
                });
                if let Some((cd, _)) = cd {
                    rule["cooldown"] = json!(cd);
                }
                rule
            },
        )
}

fn valid_rules() -> impl Strategy<Value = Vec<Value>> {
    (0usize..6).prop_flat_map(|n| (0..n).map(valid_rule).collect::<Vec<_>>())
}

/// One fault that makes a rule invalid.
#[derive(Debug, Clone, Copy)]
enum Fault {
    DropKey(usize),
    EmptyName,
    NameNotString,
    BadField,
    BadAggregation,
    BadOperand,
    ValueNotNumber,
    ZeroTimeframe,
    BadTimeframe,
    BadCooldown,
    UnknownKey,
    NotAnObject,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (0usize..6).prop_map(Fault::DropKey),
        Just(Fault::EmptyName),
        Just(Fault::NameNotString),
        Just(Fault::BadField),
        Just(Fault::BadAggregation),
        Just(Fault::BadOperand),
        Just(Fault::ValueNotNumber),
        Just(Fault::ZeroTimeframe),
        Just(Fault::BadTimeframe),
        Just(Fault::BadCooldown),
        Just(Fault::UnknownKey),
        Just(Fault::NotAnObject),
    ]
}

fn inject(rule: &mut Value, fault: Fault) {
    const REQUIRED: [&str; 6] = [
        "name",
        "field",
        "aggregation",
        "operand",
        "value",
        "timeframe",
    ];
    let obj = rule.as_object_mut().unwrap();
    match fault {
        Fault::DropKey(k) => {
            obj.remove(REQUIRED[k]);
        }
        Fault::EmptyName => {
            obj.insert("name".into(), json!(" \t "));
        }
        Fault::NameNotString => {
            obj.insert("name".into(), json!(12));
        }
        Fault::BadField => {
            obj.insert("field".into(), json!("cpu"));
        }
        Fault::BadAggregation => {
            obj.insert("aggregation".into(), json!("median"));
        }
        Fault::BadOperand => {
            obj.insert("operand".into(), json!(">="));
        }
        Fault::ValueNotNumber => {
            obj.insert("value".into(), json!("60"));
        }
        Fault::ZeroTimeframe => {
            obj.insert("timeframe".into(), json!("0ms"));
        }
        Fault::BadTimeframe => {
            obj.insert("timeframe".into(), json!("2 mn"));
        }
        Fault::BadCooldown => {
            obj.insert("cooldown".into(), json!(60));
        }
        Fault::UnknownKey => {
            obj.insert("timeFrame".into(), json!("1m"));
        }
        Fault::NotAnObject => *rule = json!(["not", "a", "rule"]),
    }
}

/// Whether a problem path is at `at` or inside it.
fn within(path: &str, at: &str) -> bool {
    path == at
        || path
            .strip_prefix(at)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// What every rejection must look like: problems, each with a path inside
/// `root` and a message.
fn check_invalid(e: &ConfigError, root: &str) -> Result<Vec<rules_engine::Problem>, TestCaseError> {
    match e {
        ConfigError::Invalid(problems) => {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(
                    within(&p.path, root) || root.is_empty(),
                    "{} outside {}",
                    p,
                    root
                );
                prop_assert!(!p.message.is_empty(), "{:?}", p);
                // A path is empty only for an unknown key spelled "" at the
                // top of a test file (the key itself is the path).
                prop_assert!(
                    !p.path.is_empty() || p.message.starts_with("unknown key"),
                    "{:?}",
                    p
                );
            }
            prop_assert_eq!(e.problems().len(), problems.len());
            Ok(problems.clone())
        }
        ConfigError::Syntax { line, message, .. } => {
            prop_assert!(*line >= 1, "{}", e);
            prop_assert!(!message.is_empty());
            Ok(Vec::new())
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Valid generated rule sets validate, keep every rule (names trimmed),
    /// and round-trip through `Rule::to_json`.
    #[test]
    fn valid_rule_sets_validate(rules in valid_rules()) {
        let set = RuleSet::from_json(&Value::Array(rules.clone()), "rules").unwrap();
        prop_assert_eq!(set.len(), rules.len());
        for r in &rules {
            let name = r["name"].as_str().unwrap().trim();
            let got = set.get(name).unwrap();
            prop_assert_eq!(got.field(), &r["field"].as_str().unwrap().parse::<metrics_model::Key>().unwrap());
            prop_assert_eq!(got.value(), r["value"].as_f64().unwrap());
            prop_assert_eq!(
                got.timeframe(),
                r["timeframe"].as_str().unwrap().parse::<metrics_model::Duration>().unwrap()
            );
        }
        let again: Vec<Value> = set.rules().iter().map(|r| r.to_json()).collect();
        prop_assert_eq!(RuleSet::from_json(&Value::Array(again.clone()), "rules").unwrap(), set.clone());
        // Through text as well (the float formatting round trip).
        let text = Value::Array(again).to_string();
        let (from_text, watcher) = rules_from_json_text(&text, "rules.json").unwrap();
        prop_assert_eq!(from_text, set);
        prop_assert!(watcher.is_none());
    }

    /// Faults injected into distinct rules are each reported at that rule.
    #[test]
    fn injected_rule_faults_are_each_reported(
        rules in valid_rules().prop_filter("some rules", |r| !r.is_empty()),
        faults in proptest::collection::vec(proptest::option::of(fault()), 6),
    ) {
        let mut rules = rules;
        let mut faulty = Vec::new();
        for (i, (rule, f)) in rules.iter_mut().zip(&faults).enumerate() {
            if let Some(f) = f {
                inject(rule, *f);
                faulty.push((i, *f));
            }
        }
        let got = RuleSet::from_json(&Value::Array(rules.clone()), "pro.alerting.rules");
        if faulty.is_empty() {
            prop_assert!(got.is_ok());
            return Ok(());
        }
        let e = got.unwrap_err();
        let problems = check_invalid(&e, "pro.alerting.rules")?;
        prop_assert!(problems.len() >= faulty.len(), "{} problems for {:?}", problems.len(), faulty);
        for (i, f) in &faulty {
            let at = format!("pro.alerting.rules[{i}]");
            prop_assert!(
                problems.iter().any(|p| within(&p.path, &at)),
                "fault {:?} at {} not reported: {}", f, at, e
            );
        }
    }

    /// Rule arrays with random structural mutations: no panic; every
    /// rejection lists problems by path.
    #[test]
    fn mutated_rules_never_panic(
        rules in valid_rules(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut doc = Value::Array(rules);
        mutate(&mut doc, &mutations);
        match RuleSet::from_json(&doc, "rules") {
            Ok(set) => {
                for r in set.rules() {
                    prop_assert!(r.value().is_finite() && !r.timeframe().is_zero());
                    prop_assert_eq!(r.name().trim(), r.name());
                }
            }
            Err(e) => { check_invalid(&e, "rules")?; }
        }
    }
}

// ----------------------------------------------------------------- config

/// A valid configuration and what it must parse to.
#[derive(Debug, Clone)]
struct Expected {
    monitoring_enabled: bool,
    collection_ms: Option<u64>,
    watcher_ms: Option<u64>,
    catch_up_ms: Option<u64>,
    rules: usize,
}

fn valid_config() -> impl Strategy<Value = (Value, Expected)> {
    (
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(duration_text(3_600_000)),
        proptest::option::of(duration_text(3_600_000)),
        proptest::option::of(duration_text(86_400_000)),
        valid_rules(),
        proptest::option::of(arb_json()),
        proptest::option::of(arb_json()),
    )
        .prop_map(
            |(pro, enabled, coll, watcher, catch_up, rules, hooks, other)| {
                let mut monitoring = json!({});
                if let Some(e) = enabled {
                    monitoring["enabled"] = json!(e);
                }
                if let Some((t, _)) = &coll {
                    monitoring["collectionInterval"] = json!(t);
                }
                let mut alerting = json!({ "rules": rules.clone() });
                if let Some((t, _)) = &watcher {
                    alerting["watcherInterval"] = json!(t);
                }
                if let Some((t, _)) = &catch_up {
                    alerting["catchUpLimit"] = json!(t);
                }
                if let Some(h) = hooks {
                    alerting["hooks"] = h;
                }
                let sections = json!({"monitoring": monitoring, "alerting": alerting});
                let mut doc = if pro {
                    json!({"pro": sections, "version": "12.0.0"})
                } else {
                    sections
                };
                if let Some(other) = other {
                    // Keys outside the two sections are ignored.
                    doc[if pro { "httpServer" } else { "other" }] = other;
                }
                let expected = Expected {
                    monitoring_enabled: enabled.unwrap_or(true),
                    collection_ms: coll.map(|(_, ms)| ms),
                    watcher_ms: watcher.map(|(_, ms)| ms),
                    catch_up_ms: catch_up.map(|(_, ms)| ms),
                    rules: rules.len(),
                };
                (doc, expected)
            },
        )
}

fn check_config_text(text: &str) -> Result<(), TestCaseError> {
    match Config::from_json_text(text, "bp.json") {
        Ok(c) => {
            prop_assert!(!c.monitoring.collection_interval.is_zero());
            prop_assert!(!c.alerting.watcher_interval.is_zero());
            let _ = c.warnings();
        }
        Err(e) => {
            check_invalid(&e, "")?;
            if let ConfigError::Syntax { source_name, .. } = &e {
                prop_assert_eq!(source_name, "bp.json");
                prop_assert!(e.to_string().starts_with("bp.json:"));
            }
        }
    }
    // The rules-file reader takes the same text.
    if let Err(e) = rules_from_json_text(text, "rules.json") {
        check_invalid(&e, "")?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Valid configurations parse to what they say.
    #[test]
    fn valid_configs_parse((doc, want) in valid_config()) {
        let c = Config::from_json_text(&doc.to_string(), "bp.json").unwrap();
        prop_assert_eq!(c.monitoring.enabled, want.monitoring_enabled);
        if let Some(ms) = want.collection_ms {
            prop_assert_eq!(c.monitoring.collection_interval.as_millis(), ms);
        }
        if let Some(ms) = want.watcher_ms {
            prop_assert_eq!(c.alerting.watcher_interval.as_millis(), ms);
        }
        if let Some(ms) = want.catch_up_ms {
            prop_assert_eq!(c.alerting.catch_up_limit.as_millis(), ms);
        }
        prop_assert_eq!(c.alerting.rules.len(), want.rules);
    }

    /// Valid configurations with structural mutations.
    #[test]
    fn mutated_configs_never_panic(
        (doc, _) in valid_config(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut doc = doc;
        mutate(&mut doc, &mutations);
        check_config_text(&doc.to_string())?;
        if let Err(e) = Config::from_json(&doc) {
            check_invalid(&e, "")?;
        }
    }

    /// Valid configurations with textual edits (out-of-range numbers,
    /// lone surrogates, stray tokens, truncation, many lines).
    #[test]
    fn config_text_edits_never_panic(
        (doc, _) in valid_config(),
        pretty in any::<bool>(),
        edits in proptest::collection::vec(text_edit(), 1..4),
        cut in proptest::option::of(at()),
    ) {
        let text = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
        let mut text = apply_text_edits(&text, &edits);
        if let Some(cut) = cut {
            truncate_at(&mut text, cut);
        }
        check_config_text(&text)?;
    }

    /// Arbitrary text and JSON.
    #[test]
    fn config_arbitrary_input_never_panics(
        text in prop_oneof![
            "\\PC{0,60}",
            arb_json().prop_map(|v| v.to_string()),
            arb_json().prop_map(|v| json!({"pro": {"alerting": v}}).to_string()),
            arb_json().prop_map(|v| json!({"monitoring": v, "alerting": {"rules": [v]}}).to_string()),
            (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        ],
    ) {
        check_config_text(&text)?;
    }
}

// -------------------------------------------------------- series notation

/// One notation item: a value or `_`, with an optional `x<count>`.
fn notation_item(min_count: usize) -> impl Strategy<Value = (String, Vec<Option<f64>>)> {
    (
        prop_oneof![
            3 => finite_f64().prop_map(Some),
            1 => Just(None),
        ],
        proptest::option::of(min_count..20),
    )
        .prop_map(|(v, count)| {
            let value = v.map_or_else(|| "_".to_owned(), |v| v.to_string());
            match count {
                Some(n) => (format!("{value}x{n}"), vec![v; n]),
                None => (value, vec![v]),
            }
        })
}

proptest! {
    #![proptest_config(config())]

    /// Well-formed notation gives exactly the slots it describes.
    #[test]
    fn notation_parses_to_its_slots(
        items in proptest::collection::vec(notation_item(0), 1..10),
        sep in prop_oneof![Just(" "), Just("  "), Just("\t"), Just("\n"), Just(" \u{3000}")],
    ) {
        let text = items.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(sep);
        let want: Vec<Option<f64>> = items.iter().flat_map(|(_, v)| v.clone()).collect();
        match parse_notation(&text) {
            Ok(got) => prop_assert_eq!(got, want),
            Err(e) => {
                // Only an all-empty series (every count 0) is refused.
                prop_assert!(want.is_empty(), "{:?}: {}", text, e);
                prop_assert!(e.contains("empty series"));
            }
        }
    }

    /// Counts anywhere in `usize`, noise, and arbitrary text: no panic, no
    /// unbounded allocation; errors name the item.
    #[test]
    fn notation_never_panics(
        items in proptest::collection::vec(
            prop_oneof![
                notation_item(0).prop_map(|(t, _)| t),
                any::<usize>().prop_map(|n| format!("1x{n}")),
                (0usize..1000).prop_map(|k| format!("1x{}", usize::MAX - k)),
                (999_990usize..1_000_010).prop_map(|n| format!("_x{n}")),
                Just("1e999".to_owned()),
                Just("NaN".to_owned()),
                Just("inf".to_owned()),
                Just("x".to_owned()),
                Just("1x".to_owned()),
                Just("1x-1".to_owned()),
                Just("1x2x3".to_owned()),
                "\\PC{1,6}",
            ],
            0..6,
        ),
    ) {
        let text = items.join(" ");
        match parse_notation(&text) {
            Ok(v) => {
                prop_assert!(!v.is_empty() && v.len() <= 1_000_000);
                prop_assert!(v.iter().flatten().all(|x| x.is_finite()));
            }
            Err(e) => prop_assert!(e.starts_with("item ") || e.starts_with("empty series"), "{}", e),
        }
    }
}

// -------------------------------------------------------------- test files

/// A valid rule test file (rules inline) with small, bounded series.
fn valid_test_file() -> impl Strategy<Value = Value> {
    let series = proptest::collection::btree_map(
        "[a-z][a-z0-9.\\-]{0,8}",
        proptest::collection::btree_map(
            prop_oneof![Just("cpu.usage".to_owned()), Just("custom.q".to_owned())],
            proptest::collection::vec(notation_item(1).prop_map(|(t, _)| t), 1..4)
                .prop_map(|v| v.join(" ")),
            1..3,
        ),
        0..3,
    );
    let expect = proptest::collection::vec(
        (
            prop_oneof![Just("opened"), Just("resolved")],
            duration_text(600_000),
            "r[0-9]",
            "[a-z]{1,4}",
            proptest::option::of(finite_f64()),
        )
            .prop_map(|(event, (at, _), rule, host, tv)| {
                let mut e = json!({"event": event, "at": at, "rule": rule, "host": host});
                if let Some(tv) = tv {
                    e["triggerValue"] = json!(tv);
                }
                e
            }),
        0..3,
    );
    let case = (
        proptest::option::of("\\PC{0,10}"),
        series,
        proptest::option::of(duration_text(600_000)),
        expect,
    )
        .prop_map(|(name, series, until, expect)| {
            let mut t = json!({"series": series, "expect": expect});
            if let Some(n) = name {
                t["name"] = json!(n);
            }
            if let Some((u, _)) = until {
                t["until"] = json!(u);
            }
            t
        });
    (
        valid_rules(),
        proptest::option::of(prop_oneof![Just("1s"), Just("10s"), Just("1m")]),
        proptest::option::of(prop_oneof![Just("1s"), Just("10s"), Just("30s")]),
        proptest::option::of(prop_oneof![
            Just(json!("2026-01-01T00:00:00Z")),
            Just(json!("2026-01-01T01:00:00.5+01:00")),
            (0i64..2_000_000_000_000).prop_map(|n| json!(n)),
        ]),
        proptest::collection::vec(case, 0..3),
    )
        .prop_map(|(rules, interval, watcher, start, tests)| {
            let mut f = json!({"rules": rules, "tests": tests});
            if let Some(i) = interval {
                f["interval"] = json!(i);
            }
            if let Some(w) = watcher {
                f["watcherInterval"] = json!(w);
            }
            if let Some(s) = start {
                f["start"] = s;
            }
            f
        })
}

fn no_rules_file(path: &str) -> Result<RuleSet, String> {
    if path == "ok.json" {
        Ok(RuleSet::default())
    } else {
        Err(format!("{path}: no such file"))
    }
}

fn check_test_file(text: &str) -> Result<Option<TestFile>, TestCaseError> {
    match TestFile::parse(text, "t.json", &no_rules_file) {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            check_invalid(&e, "")?;
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Valid test files parse, and running them (through the real engine)
    /// gives one outcome per test without a panic.
    #[test]
    fn valid_test_files_parse_and_run(doc in valid_test_file()) {
        let f = check_test_file(&doc.to_string())?;
        prop_assert!(f.is_some(), "{} was rejected", doc);
        let outcomes = f.unwrap().run();
        prop_assert_eq!(outcomes.len(), doc["tests"].as_array().unwrap().len());
    }

    /// Test files with structural mutations and text edits.
    #[test]
    fn mutated_test_files_never_panic(
        doc in valid_test_file(),
        rules_path in proptest::option::of(prop_oneof![Just("ok.json"), Just("missing.json")]),
        mutations in proptest::collection::vec(mutation(), 0..5),
        edits in proptest::collection::vec(text_edit(), 0..2),
    ) {
        let mut doc = doc;
        if let Some(p) = rules_path {
            doc["rules"] = json!(p);
        }
        mutate(&mut doc, &mutations);
        check_test_file(&apply_text_edits(&doc.to_string(), &edits))?;
    }

    /// Arbitrary text and JSON.
    #[test]
    fn test_file_arbitrary_input_never_panics(
        text in prop_oneof![
            "\\PC{0,60}",
            arb_json().prop_map(|v| v.to_string()),
            arb_json().prop_map(|v| json!({"rules": [], "tests": [v]}).to_string()),
            arb_json().prop_map(|v| json!({"rules": [], "tests": [{"series": {"a": v}, "expect": [v]}]}).to_string()),
        ],
    ) {
        check_test_file(&text)?;
    }
}

/// Found by `notation_never_panics`: a count near `usize::MAX` after other
/// items overflowed the slot bound check (a panic in debug builds, a
/// capacity-overflow panic in release builds).
#[test]
fn notation_count_near_usize_max_is_an_error() {
    for text in [
        "_x999990 1x18446744073709551615",
        "1 1x18446744073709551615",
    ] {
        let e = parse_notation(text).unwrap_err();
        assert!(e.contains("longer than 1,000,000 slots"), "{e}");
    }
}
