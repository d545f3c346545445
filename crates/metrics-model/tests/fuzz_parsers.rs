//! Fuzzing (property tests) of the metrics-model parsers that take outside
//! input: durations, field names, host names, the JSON-lines tick parser
//! (`Tick::parse_line`, the input of `bp-alerter replay` and
//! `bp-collector import`), and the deployment environment (`REDIS_URL`,
//! `CLUSTER_ENABLED`, `BP_REDIS_SCOPE`).
//!
//! Case count: `BP_FUZZ_CASES` (default: proptest's default, 256, so CI stays
//! fast). `scripts/fuzz` runs these with 100,000 cases each in release mode
//! with overflow checks on; see docs/fuzzing.md.

use metrics_model::duration::MAX_MS;
use metrics_model::field::{CUSTOM_NAME_MAX, StandardField};
use metrics_model::host::HOST_NAME_MAX;
use metrics_model::{Deployment, Duration, Field, HostName, RedisUrl, Tick};
use proptest::prelude::*;
use serde_json::{Value, json};

use test_support::fuzz::*;

// ---------------------------------------------------------------- durations

const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A number as text: small, near the limits, huge, with leading zeros.
fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..1000).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (0u64..=MAX_MS).prop_map(|n| n.to_string()),
        1 => (0u32..5, 0u64..100).prop_map(|(z, n)| format!("{}{n}", "0".repeat(z as usize))),
        1 => "[0-9]{20,40}",
    ]
}

/// A well-formed duration: one or more units in order, each with a number.
/// Gives the text and the expected milliseconds (`None` when too large).
fn grammar_duration() -> impl Strategy<Value = (String, Option<u64>)> {
    proptest::collection::vec(proptest::option::of(digits()), 5)
        .prop_filter("at least one unit", |v| v.iter().any(Option::is_some))
        .prop_map(|parts| {
            let mut text = String::new();
            let mut total: Option<u128> = Some(0);
            for ((unit, ms), n) in UNITS.iter().zip(parts) {
                if let Some(n) = n {
                    text.push_str(&n);
                    text.push_str(unit);
                    total = match (total, n.parse::<u64>()) {
                        (Some(t), Ok(n)) => Some(t + u128::from(n) * ms),
                        _ => None,
                    };
                }
            }
            let expected = total
                .filter(|t| *t <= u128::from(MAX_MS))
                .map(|t| u64::try_from(t).unwrap());
            (text, expected)
        })
}

/// One edit of a text: insert, delete or replace a char at a position.
#[derive(Debug, Clone)]
enum Edit {
    Insert(At, String),
    Delete(At),
    Replace(At, String),
    Swap(At, At),
}

fn noise_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_owned()),
        Just(".".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("S".to_owned()),
        Just("µs".to_owned()),
        Just("ns".to_owned()),
        Just("w".to_owned()),
        Just("+".to_owned()),
        Just("\u{0}".to_owned()),
        Just("٣".to_owned()), // an Arabic-Indic digit: not ASCII
        Just("é".to_owned()),
        "[0-9dhms]",
        "\\PC",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (at(), noise_piece()).prop_map(|(i, s)| Edit::Insert(i, s)),
        at().prop_map(Edit::Delete),
        (at(), noise_piece()).prop_map(|(i, s)| Edit::Replace(i, s)),
        (at(), at()).prop_map(|(a, b)| Edit::Swap(a, b)),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<String> = text.chars().map(String::from).collect();
    for e in edits {
        match e {
            Edit::Insert(i, s) => {
                let at = i.index(chars.len() + 1);
                chars.insert(at, s.clone());
            }
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i.index(chars.len()));
            }
            Edit::Replace(i, s) if !chars.is_empty() => {
                let at = i.index(chars.len());
                chars[at].clone_from(s);
            }
            Edit::Swap(a, b) if !chars.is_empty() => {
                let (a, b) = (a.index(chars.len()), b.index(chars.len()));
                chars.swap(a, b);
            }
            _ => {}
        }
    }
    chars.concat()
}

/// Checks what holds for every parse result, valid or not.
fn check_duration_result(text: &str) -> Result<Option<Duration>, TestCaseError> {
    match text.parse::<Duration>() {
        Ok(d) => {
            prop_assert!(d.as_millis() <= MAX_MS);
            prop_assert!(
                text.bytes()
                    .all(|b| b.is_ascii_digit() || b"dhms".contains(&b)),
                "{text:?} was accepted"
            );
            let shown = d.to_string();
            prop_assert_eq!(shown.parse::<Duration>().ok(), Some(d), "{}", shown);
            Ok(Some(d))
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!e.reason.is_empty());
            prop_assert_eq!(&e.text, text);
            let prefix = format!("{text:?} is not a duration (");
            prop_assert!(msg.starts_with(&prefix), "{}", msg);
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Well-formed durations parse to the sum of their parts (or are
    /// rejected as too large), and `Display` round-trips.
    #[test]
    fn duration_grammar_parses_to_its_value((text, expected) in grammar_duration()) {
        let got = check_duration_result(&text)?;
        prop_assert_eq!(got.map(Duration::as_millis), expected, "{}", text);
        if let Some(d) = got {
            // Canonical form is stable.
            let canon = d.to_string();
            prop_assert_eq!(canon.parse::<Duration>().unwrap().to_string(), canon);
        }
    }

    /// Any millisecond count round-trips through `Display` and serde.
    #[test]
    fn duration_display_round_trips(ms in prop_oneof![0..=MAX_MS, Just(MAX_MS), 0u64..100_000]) {
        let d = Duration::from_millis(ms).unwrap();
        prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Duration>(&json).unwrap(), d);
    }

    /// Well-formed durations with noise: no panic; errors quote the text.
    #[test]
    fn duration_with_noise_never_panics(
        (text, _) in grammar_duration(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        check_duration_result(&apply_edits(&text, &edits))?;
    }

    /// Arbitrary text, including control and non-ASCII characters.
    #[test]
    fn duration_arbitrary_text_never_panics(text in prop_oneof![
        "\\PC{0,40}",
        ".{0,40}",
        "[0-9dhms.\\- ]{0,30}",
    ]) {
        check_duration_result(&text)?;
    }
}

// ---------------------------------------------------------- fields, hosts

fn field_text() -> impl Strategy<Value = String> {
    let standard = proptest::sample::select(StandardField::ALL).prop_map(|f| f.as_str().to_owned());
    prop_oneof![
        2 => standard.clone(),
        3 => (0usize..=CUSTOM_NAME_MAX + 3, "[A-Za-z0-9_.\\-]")
            .prop_map(|(n, c)| format!("custom.{}", c.repeat(n))),
        3 => "custom\\.[A-Za-z0-9_.\\-]{0,70}",
        2 => "custom\\.\\PC{0,10}",
        2 => (standard, edit()).prop_map(|(s, e)| apply_edits(&s, &[e])),
        1 => "\\PC{0,30}",
    ]
}

fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9][A-Za-z0-9._\\-]{0,30}",
        1 => (HOST_NAME_MAX - 2..=HOST_NAME_MAX + 2).prop_map(|n| "h".repeat(n)),
        2 => "[._\\-A-Za-z0-9:{} ]{0,12}",
        1 => "\\PC{0,20}",
        1 => ("[a-z0-9]{1,10}", edit()).prop_map(|(s, e)| apply_edits(&s, &[e])),
    ]
}

fn custom_name_ok(name: &str) -> bool {
    (1..=CUSTOM_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

proptest! {
    #![proptest_config(config())]

    /// A field parses exactly when it is a standard name or a well-spelled
    /// custom name, round-trips through `Display` and serde, and errors
    /// quote the text.
    #[test]
    fn field_names(text in field_text()) {
        let expected = StandardField::from_name(&text).is_some()
            || text.strip_prefix("custom.").is_some_and(custom_name_ok);
        match text.parse::<Field>() {
            Ok(f) => {
                prop_assert!(expected, "{text:?} was accepted");
                prop_assert_eq!(f.to_string(), text.clone());
                let json = serde_json::to_string(&f).unwrap();
                prop_assert_eq!(serde_json::from_str::<Field>(&json).unwrap(), f);
            }
            Err(e) => {
                prop_assert!(!expected, "{text:?} was rejected: {e}");
                prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
            }
        }
    }

    /// A host name parses exactly when it follows the documented rule.
    #[test]
    fn host_names(text in host_text()) {
        let expected = (1..=HOST_NAME_MAX).contains(&text.len())
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        match text.parse::<HostName>() {
            Ok(h) => {
                prop_assert!(expected, "{text:?} was accepted");
                prop_assert_eq!(h.as_str(), text.as_str());
                let json = serde_json::to_string(&h).unwrap();
                prop_assert_eq!(serde_json::from_str::<HostName>(&json).unwrap(), h);
            }
            Err(e) => {
                prop_assert!(!expected, "{text:?} was rejected");
                prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
            }
        }
    }
}

// ------------------------------------------------------- JSON-lines ticks

fn valid_field() -> impl Strategy<Value = metrics_model::Key> {
    // Instances: any text without control characters or ']' (1-256 bytes).
    let instance = "[^\\]\\p{Cc}]{1,20}";
    prop_oneof![
        proptest::sample::select(StandardField::ALL).prop_flat_map(move |f| {
            if f.instanced() {
                instance
                    .prop_map(move |i| format!("{}[{i}]", f.as_str()).parse().unwrap())
                    .boxed()
            } else {
                Just(metrics_model::Key::from(f)).boxed()
            }
        }),
        "[A-Za-z0-9_.\\-]{1,64}".prop_map(|n| format!("custom.{n}").parse().unwrap()),
        ("[A-Za-z0-9_.\\-]{1,64}", instance)
            .prop_map(|(n, i)| format!("custom.{n}[{i}]").parse().unwrap()),
    ]
}

fn valid_tick() -> impl Strategy<Value = Tick> {
    (
        "[A-Za-z0-9][A-Za-z0-9._\\-]{0,20}",
        prop_oneof![any::<i64>(), 1_600_000_000_000i64..1_900_000_000_000],
        proptest::collection::btree_map(valid_field(), finite_f64(), 0..8),
    )
        .prop_map(|(host, ts, values)| Tick::from_values(host.parse().unwrap(), ts, values))
}

/// What must hold for any line: no panic, and errors name the line.
fn check_tick_line(text: &str, line_no: usize) -> Result<Option<Tick>, TestCaseError> {
    match Tick::parse_line(text, line_no) {
        Ok(Some(t)) => {
            prop_assert!(t.values().values().all(|v| v.is_finite()));
            // What parses re-serialises to an equal tick.
            let again = Tick::parse_line(&t.to_json_line(), 1).unwrap();
            prop_assert_eq!(again.as_ref(), Some(&t));
            Ok(Some(t))
        }
        Ok(None) => {
            prop_assert!(text.trim().is_empty());
            Ok(None)
        }
        Err(e) => {
            prop_assert_eq!(e.line, line_no);
            prop_assert!(!e.message.is_empty());
            let prefix = format!("line {line_no}: ");
            prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            Ok(None)
        }
    }
}

fn rfc3339_text() -> impl Strategy<Value = String> {
    (
        0u32..10_000,
        0u32..14,
        0u32..33,
        0u32..25,
        0u32..61,
        0u32..62,
        proptest::option::of("[0-9]{1,12}"),
        prop_oneof![
            Just("Z".to_owned()),
            Just("z".to_owned()),
            (any::<bool>(), 0u32..30, 0u32..61)
                .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
            Just(String::new()),
        ],
        prop_oneof![Just('T'), Just('t'), Just(' ')],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off, sep)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

proptest! {
    #![proptest_config(config())]

    /// Every valid tick survives `to_json_line` → `parse_line` unchanged.
    #[test]
    fn tick_json_line_round_trips(t in valid_tick(), line_no in any::<usize>()) {
        let line = t.to_json_line();
        prop_assert_eq!(Tick::parse_line(&line, line_no).unwrap(), Some(t));
    }

    /// One fault in one of the three keys: the error names that key.
    #[test]
    fn tick_single_fault_is_named(
        t in valid_tick(),
        key in proptest::sample::select(vec!["host", "ts", "values"]),
        fault in prop_oneof![
            Just(None),
            Just(Some(json!([]))),
            Just(Some(json!(true))),
            Just(Some(json!({"a": 1}))),
        ],
        line_no in 1usize..1_000_000,
    ) {
        let mut doc = serde_json::to_value(&t).unwrap();
        let obj = doc.as_object_mut().unwrap();
        match &fault {
            None => { obj.remove(key); }
            Some(v) => { obj.insert(key.to_owned(), v.clone()); }
        }
        let e = Tick::parse_line(&doc.to_string(), line_no).unwrap_err();
        prop_assert_eq!(e.line, line_no);
        prop_assert!(e.message.contains(key), "{} for fault {:?} in {}", e, fault, key);
    }

    /// Valid ticks with structural mutations (keys dropped or renamed,
    /// values of the wrong type, deep nesting, long and unicode strings).
    #[test]
    fn tick_mutated_never_panics(
        t in valid_tick(),
        mutations in proptest::collection::vec(mutation(), 1..5),
        line_no in any::<usize>(),
    ) {
        let mut doc = serde_json::to_value(&t).unwrap();
        mutate(&mut doc, &mutations);
        check_tick_line(&doc.to_string(), line_no)?;
    }

    /// Valid ticks with textual edits (1e999, lone surrogates, stray
    /// tokens, truncation).
    #[test]
    fn tick_text_edits_never_panic(
        t in valid_tick(),
        edits in proptest::collection::vec(text_edit(), 1..4),
        cut in proptest::option::of(at()),
    ) {
        let mut line = apply_text_edits(&t.to_json_line(), &edits);
        if let Some(cut) = cut {
            truncate_at(&mut line, cut);
        }
        check_tick_line(&line, 3)?;
    }

    /// Timestamps: integers, floats, RFC 3339 strings of every shape.
    #[test]
    fn tick_timestamps_never_panic(
        ts in prop_oneof![
            rfc3339_text().prop_map(Value::String),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,30}".prop_map(Value::String),
        ],
    ) {
        let line = json!({"host": "a", "ts": ts, "values": {"cpu.usage": 1}}).to_string();
        if let Some(t) = check_tick_line(&line, 9)?
            && let Some(n) = ts.as_i64()
        {
            prop_assert_eq!(t.ts, n);
        }
    }

    /// Arbitrary text and arbitrary JSON.
    #[test]
    fn tick_arbitrary_input_never_panics(
        text in prop_oneof![
            "\\PC{0,80}",
            ".{0,40}",
            arb_json().prop_map(|v| v.to_string()),
            arb_json().prop_map(|v| json!({"host": "a", "ts": 1, "values": v}).to_string()),
            proptest::collection::vec(any::<u8>(), 0..80)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
    ) {
        check_tick_line(&text, 1)?;
    }
}

// ------------------------------------------------------------- deployment

/// The password is built so that it cannot occur anywhere else in the URL
/// (hosts are lowercased by the URL parser; user names are lowercase).
fn redis_url_parts() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            proptest::sample::select(metrics_model::deployment::REDIS_SCHEMES.to_vec())
                .prop_map(str::to_owned),
            Just("http".to_owned()),
            Just("REDIS".to_owned()),
            "[a-z+.\\-]{0,8}",
        ],
        prop_oneof![Just(String::new()), "[a-z]{1,8}"],
        "PW[A-Z0-9]{6,12}|PW[A-Z0-9%@:/#?\\[\\] ]{1,12}",
        prop_oneof![
            "[a-z0-9.\\-]{0,20}",
            Just("[::1]".to_owned()),
            Just("127.0.0.1".to_owned()),
            Just("[::1".to_owned()),
            Just("999.1.1.1".to_owned()),
            "\\PC{0,6}",
        ],
        proptest::option::of(prop_oneof![
            (0u32..70_000).prop_map(|p| p.to_string()),
            "[a-z0-9]{0,6}",
        ]),
        proptest::option::of("[0-9a-z/?#]{0,6}"),
        any::<bool>(),
    )
        .prop_map(|(scheme, user, pass, host, port, db, with_pass)| {
            let cred = if with_pass {
                format!("{user}:{pass}@")
            } else if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let db = db.map(|d| format!("/{d}")).unwrap_or_default();
            (format!("{scheme}://{cred}{host}{port}{db}"), pass)
        })
}

proptest! {
    #![proptest_config(config())]

    /// `REDIS_URL`: no panic; the password never shows in errors, `Display`
    /// or `Debug`; what parses keeps the full text for the client.
    #[test]
    fn redis_url_never_leaks_the_password(
        (url, pass) in redis_url_parts(),
        edits in proptest::collection::vec(edit(), 0..2),
    ) {
        let url = apply_edits(&url, &edits);
        match RedisUrl::parse(&url) {
            Ok(u) => {
                prop_assert_eq!(u.expose(), url.as_str());
                // An edit may have made the password part of the user name
                // (which is shown): check the password the URL really has.
                let real = url::Url::parse(&url).ok().and_then(|p| p.password().map(str::to_owned));
                if let Some(real) = real.filter(|r| r.starts_with("PW")) {
                    for shown in [u.to_string(), format!("{u:?}"), u.redacted().to_owned()] {
                        prop_assert!(!shown.contains(&real), "{} shows {}", shown, real);
                    }
                }
                if edits.is_empty() && url.contains(&format!(":{pass}@")) {
                    prop_assert!(!u.to_string().contains(&pass), "{} shows {}", u, pass);
                }
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                prop_assert!(!e.contains(&pass), "{e} shows {pass}");
            }
        }
    }

    /// The three variables with arbitrary values: no panic; errors name the
    /// variable; the password never shows.
    #[test]
    fn deployment_env_values_never_panic(
        url in proptest::option::of(prop_oneof![
            redis_url_parts().prop_map(|(u, _)| u),
            "\\PC{0,20}",
        ]),
        enabled in proptest::option::of(prop_oneof![
            proptest::sample::select(vec!["true", "FALSE", "1", "0", "yes", "off", " on ", ""])
                .prop_map(str::to_owned),
            "\\PC{0,8}",
        ]),
        scope in proptest::option::of(prop_oneof![
            "[A-Za-z0-9_.\\-]{0,70}",
            "\\PC{0,10}",
        ]),
    ) {
        match Deployment::from_env_values(url.as_deref(), enabled.as_deref(), scope.as_deref()) {
            Ok(d) => {
                prop_assert_eq!(d.redis_url.is_some(), d.mode == metrics_model::Mode::Cluster);
                prop_assert!(metrics_model::deployment::is_valid_scope(&d.scope));
            }
            Err(e) => {
                prop_assert!(
                    ["REDIS_URL", "CLUSTER_ENABLED", "BP_REDIS_SCOPE"].contains(&e.var)
                );
                prop_assert!(!e.message.is_empty());
                if let Some(u) = &url
                    && let Some(pass) = u.split_once(':').and_then(|(_, r)| r.split_once(':'))
                        .and_then(|(_, r)| r.split_once('@')).map(|(p, _)| p)
                    && pass.starts_with("PW")
                {
                    prop_assert!(!e.to_string().contains(pass), "{e}");
                }
            }
        }
    }
}

/// Unit check of the mutation helpers themselves (they must reach every
/// node, or the properties above test less than they claim).
#[test]
fn mutation_helpers_reach_every_node() {
    let doc = json!({"a": [1, {"b": 2}], "c": null});
    let mut all = Vec::new();
    paths(&doc, &mut Vec::new(), &mut all);
    assert_eq!(all.len(), 6);
    let mut d = doc.clone();
    mutate(&mut d, &[(At(0), Mutation::Replace(json!(7)))]);
    assert_eq!(d, json!(7));
    let mut d = doc.clone();
    let drop_b = all.iter().position(|p| p.len() == 3).unwrap();
    mutate(&mut d, &[(At(drop_b), Mutation::Drop)]);
    assert_eq!(d, json!({"a": [1, {}], "c": null}));
    assert_eq!(
        apply_text_edits("{\"v\":12}", &[(At(0), "1e999".into())]),
        "1e999{\"v\":12}"
    );
    assert_eq!(apply_edits("1h", &[Edit::Delete(At(0))]), "h");
}

/// Found by `tick_json_line_round_trips`: without serde_json's
/// `float_roundtrip` feature this value came back one ULP off, so a
/// `bp-collector import` of an export changed the data.
#[test]
fn tick_float_values_round_trip_exactly() {
    for v in [4.044_021_012_180_283e-193, 5e-324, f64::MAX, 0.1 + 0.2] {
        let t = Tick::new(
            "a".parse().unwrap(),
            0,
            [(StandardField::CpuUsage.into(), v)],
        );
        let back = Tick::parse_line(&t.to_json_line(), 1).unwrap().unwrap();
        assert_eq!(back.get(&StandardField::CpuUsage.into()), Some(v), "{v:e}");
    }
}
