//! Fuzzing (property tests) of the HTTP API's query parameters: raw query
//! strings go through the same decoding as a request (axum's `Query`
//! extractor) and then through each endpoint's parser
//! (`web::params`): `nodes`, `series` (with its plan: tier,
//! step and grid), `overview`, `disks`, `incidents`.
//!
//! Properties: nothing panics or overflows; an accepted query keeps every
//! documented bound (times within 1970..9999, `from ≤ to`, at most 31 d,
//! at most 2,001 buckets, limit 1..=10,000); a refused one is a 400 naming
//! a parameter of the request (or the missing `fields`); well-formed values
//! mean what docs/api.md says.
//!
//! Case count: `BP_FUZZ_CASES` (default: proptest's default, 256, so CI stays
//! fast). `scripts/fuzz` runs these with 100,000 cases each in release mode
//! with overflow checks on; see docs/fuzzing.md.

use std::fmt::Write as _;

use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use metrics_model::duration::MAX_MS;
use metrics_model::time::format_rfc3339;
use test_support::fuzz::proptest::prelude::*;
use test_support::fuzz::proptest::{self, prop_oneof, proptest};
use test_support::fuzz::{canonical_duration, config, duration_text};
use web::api::ApiError;
use web::cache::{MAX_POINTS, Stat};
use web::params::{
    self, DEFAULT_RANGE_MS, DisksQuery, IncidentsQuery, MAX_RANGE_MS, MAX_TIME_MS, OverviewQuery,
    QueryMap, SeriesQuery,
};

/// Every parameter some endpoint knows.
const KNOWN: [&str; 8] = [
    "fields", "nodes", "from", "to", "range", "step", "stats", "limit",
];

/// Now: anywhere from 1970 to 9999 (the alerter's clock is not trusted
/// either), mostly around today.
fn now() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1_700_000_000_000i64..1_900_000_000_000,
        1 => 0..=MAX_TIME_MS,
        1 => Just(0i64),
        1 => Just(MAX_TIME_MS),
    ]
}

/// A time parameter: milliseconds (in and out of bounds, huge), RFC 3339
/// with offsets, and near misses.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0..=MAX_TIME_MS).prop_map(|t| t.to_string()),
        2 => (0..=MAX_TIME_MS).prop_map(format_rfc3339),
        1 => any::<i64>().prop_map(|t| t.to_string()),
        1 => (-100_000i64..100_000).prop_map(|t| t.to_string()),
        1 => (0..=MAX_TIME_MS, -1439i32..=1439).prop_map(|(t, off)| {
            let s = format_rfc3339(t);
            let sign = if off < 0 { '-' } else { '+' };
            format!("{}{sign}{:02}:{:02}", &s[..s.len() - 1], off.abs() / 60, off.abs() % 60)
        }),
        1 => Just("9223372036854775808".to_owned()),
        1 => Just("253402300800000".to_owned()),
        1 => "[0-9TZ:.+-]{0,30}",
        1 => ".{0,20}",
    ]
}

/// A duration parameter (`range`, `step`): valid spellings up to beyond
/// the largest duration, zero, `auto`, junk.
fn duration_param() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => duration_text(40 * 86_400_000).prop_map(|(t, _)| t),
        1 => (0..=MAX_MS * 2).prop_map(canonical_duration),
        1 => any::<u64>().prop_map(|n| format!("{n}ms")),
        1 => Just("0s".to_owned()),
        1 => Just("auto".to_owned()),
        1 => "[0-9dhms]{0,12}",
        1 => ".{0,12}",
    ]
}

fn list_of(item: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    proptest::collection::vec(item, 0..6).prop_map(|v| v.join(","))
}

fn field_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just("cpu.usage".to_owned()),
        1 => Just("requests.latency_avg".to_owned()),
        1 => Just(" mem.free ".to_owned()),
        1 => "[a-z._A-Z0-9-]{0,20}",
        1 => ".{0,8}",
    ]
    .boxed()
}

fn node_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9][a-z0-9.-]{0,20}",
        1 => ".{0,10}",
        1 => "[a-z]{250,260}",
    ]
    .boxed()
}

fn stat_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(vec!["avg", "min", "max", "sum", "count"]).prop_map(str::to_owned),
        1 => ".{0,6}",
    ]
    .boxed()
}

/// One `name=value` pair: mostly known names with values of their kind.
fn pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        2 => time_text().prop_map(|v| ("from".to_owned(), v)),
        2 => time_text().prop_map(|v| ("to".to_owned(), v)),
        2 => duration_param().prop_map(|v| ("range".to_owned(), v)),
        2 => duration_param().prop_map(|v| ("step".to_owned(), v)),
        2 => list_of(field_name()).prop_map(|v| ("fields".to_owned(), v)),
        1 => list_of(node_name()).prop_map(|v| ("nodes".to_owned(), v)),
        1 => list_of(stat_name()).prop_map(|v| ("stats".to_owned(), v)),
        1 => prop_oneof![Just("0".to_owned()), Just("10000".to_owned()), Just("10001".to_owned()),
                         any::<u64>().prop_map(|n| n.to_string()), ".{0,5}"]
                .prop_map(|v| ("limit".to_owned(), v)),
        1 => ("[a-zA-Z_]{0,8}", ".{0,8}"),
    ]
}

/// Percent-encodes every byte outside the unreserved set (as browsers and
/// `URLSearchParams` do for these characters), or, for `raw`, only what a
/// URI cannot hold at all, so the decoder sees `+`, `%`, `;` and friends.
fn encode(text: &str, raw: bool) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        let uri_safe = b.is_ascii_graphic() && !b"#&=".contains(&b);
        if plain || (raw && uri_safe) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `query` as a request would: `None` when the URI or the query
/// cannot be decoded (axum answers 400 before any handler runs).
fn decode(query: &str) -> Option<QueryMap> {
    let uri: Uri = format!("/api/v1/series?{query}").parse().ok()?;
    Query::<QueryMap>::try_from_uri(&uri).ok().map(|q| q.0)
}

/// Checks a refusal: a 400 naming a parameter the request has (or the
/// required `fields`), its message starting with that name.
fn check_refusal(e: &ApiError, q: &QueryMap) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{}", e.message());
    let p = e.parameter().expect("a 400 names the parameter");
    prop_assert!(
        q.contains_key(p) || p == "fields",
        "{p:?} is not a parameter of {q:?}"
    );
    prop_assert!(
        e.message().starts_with(&format!("{p}: ")),
        "{}",
        e.message()
    );
    Ok(())
}

fn check_window(from: i64, to: i64, now: i64, q: &QueryMap) -> Result<(), TestCaseError> {
    prop_assert!(0 <= from && from <= to, "from {from} to {to}");
    prop_assert!(to <= MAX_TIME_MS.max(now));
    prop_assert!(to - from <= MAX_RANGE_MS);
    if !q.contains_key("to") {
        prop_assert_eq!(to, now);
    }
    Ok(())
}

fn check_all(q: &QueryMap, now: i64) -> Result<(), TestCaseError> {
    let unknown = |known: &[&str]| {
        let mut names: Vec<&String> = q.keys().filter(|k| !known.contains(&k.as_str())).collect();
        names.sort();
        names.first().map(|s| (*s).clone())
    };

    match params::nodes_query(q) {
        Ok(()) => prop_assert!(q.is_empty()),
        Err(e) => {
            check_refusal(&e, q)?;
            prop_assert_eq!(e.parameter().map(str::to_owned), unknown(&[]));
        }
    }

    match SeriesQuery::parse(q, now) {
        Ok(s) => {
            prop_assert!(
                unknown(&["fields", "nodes", "from", "to", "range", "step", "stats"]).is_none()
            );
            check_window(s.from, s.to, now, q)?;
            prop_assert!(!s.fields.is_empty());
            prop_assert!(!s.stats.is_empty());
            prop_assert!(s.wanted_step >= 1);
            let plan = s.plan(now);
            let g = plan.grid;
            prop_assert!(g.step >= 1000, "step {}", g.step);
            prop_assert!(g.step >= s.wanted_step);
            prop_assert!(g.n >= 1 && g.n as i64 <= MAX_POINTS + 1, "{} buckets", g.n);
            prop_assert!(g.t0 <= s.from && s.from < g.t0 + g.step);
            prop_assert!(s.to < g.t0 + g.n as i64 * g.step);
            prop_assert!(!plan.raw || plan.cached);
        }
        Err(e) => check_refusal(&e, q)?,
    }

    match OverviewQuery::parse(q, now) {
        Ok(o) => {
            prop_assert!(unknown(&["nodes", "from", "to", "range"]).is_none());
            check_window(o.from, o.to, now, q)?;
            prop_assert!(o.from >= now - 8 * 86_400_000);
        }
        Err(e) => check_refusal(&e, q)?,
    }

    match DisksQuery::parse(q, now) {
        Ok(d) => {
            prop_assert!(unknown(&["nodes", "from", "to", "range", "limit"]).is_none());
            check_window(d.from, d.to, now, q)?;
            prop_assert!(d.from >= now - 8 * 86_400_000);
            prop_assert!((1..=1_000).contains(&d.limit));
        }
        Err(e) => check_refusal(&e, q)?,
    }

    match IncidentsQuery::parse(q, now) {
        Ok(i) => {
            prop_assert!(unknown(&["from", "to", "range", "limit"]).is_none());
            check_window(i.from, i.to, now, q)?;
            prop_assert!((1..=10_000).contains(&i.limit));
        }
        Err(e) => check_refusal(&e, q)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Any query string, encoded or raw: decoded as a request is, then
    /// parsed by every endpoint, within bounds or refused with a 400.
    #[test]
    fn any_query_string(
        pairs in proptest::collection::vec(pair(), 0..8),
        raw in any::<bool>(),
        now in now(),
    ) {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k, raw), encode(v, raw)))
            .collect::<Vec<_>>()
            .join("&");
        if let Some(q) = decode(&query) {
            check_all(&q, now)?;
        }
    }

    /// Arbitrary bytes as a query string.
    #[test]
    fn arbitrary_text(query in ".{0,80}", now in now()) {
        if let Some(q) = decode(&query) {
            check_all(&q, now)?;
        }
    }

    /// Well-formed `from`/`to` (milliseconds or RFC 3339) or `to`/`range`
    /// give exactly that window; an absent `to` is now.
    #[test]
    fn well_formed_windows(
        to in 0..=MAX_TIME_MS,
        len in 0..=MAX_RANGE_MS,
        style in 0u8..4,
        limit in 1usize..=10_000,
    ) {
        let from = (to - len).max(0);
        let mut q = QueryMap::new();
        match style {
            0 => {
                q.insert("from".into(), from.to_string());
                q.insert("to".into(), to.to_string());
            }
            1 => {
                q.insert("from".into(), format_rfc3339(from));
                q.insert("to".into(), format_rfc3339(to));
            }
            2 if to - from > 0 => {
                q.insert("to".into(), to.to_string());
                q.insert("range".into(), canonical_duration((to - from) as u64));
            }
            _ => {
                q.insert("from".into(), from.to_string());
            }
        }
        let expected_to = if q.contains_key("to") { to } else { MAX_TIME_MS };
        let expected = if expected_to - from <= MAX_RANGE_MS { Some((from, expected_to)) } else { None };
        let mut inc = q.clone();
        inc.insert("limit".into(), limit.to_string());
        match (IncidentsQuery::parse(&inc, MAX_TIME_MS), expected) {
            (Ok(i), Some((f, t))) => {
                prop_assert_eq!((i.from, i.to, i.limit), (f, t, limit));
            }
            (Err(e), None) => prop_assert_eq!(e.parameter(), Some("from")),
            (got, want) => prop_assert!(false, "{q:?}: got {got:?}, want {want:?}"),
        }
        q.insert("fields".into(), "cpu.usage,mem.usage".into());
        if let (Ok(s), Some((f, t))) = (SeriesQuery::parse(&q, MAX_TIME_MS), expected) {
            prop_assert_eq!((s.from, s.to), (f, t));
            prop_assert_eq!(s.stats, vec![Stat::Avg, Stat::Min, Stat::Max]);
            prop_assert_eq!(s.fields.len(), 2);
        } else {
            prop_assert!(expected.is_none(), "{q:?} refused");
        }
    }

    /// An unknown parameter is always refused by name, whatever else the
    /// query holds.
    #[test]
    fn unknown_parameters_are_named(
        name in "[a-z_]{1,10}",
        pairs in proptest::collection::vec(pair(), 0..4),
        now in now(),
    ) {
        prop_assume!(!KNOWN.contains(&name.as_str()));
        let mut q: QueryMap = pairs.into_iter().collect();
        q.insert(name.clone(), "1".into());
        for e in [
            SeriesQuery::parse(&q, now).err(),
            OverviewQuery::parse(&q, now).err(),
            DisksQuery::parse(&q, now).err(),
            IncidentsQuery::parse(&q, now).err(),
        ] {
            let e = e.expect("refused");
            let p = e.parameter().unwrap().to_owned();
            // The first unknown name in sorted order is named.
            prop_assert!(p <= name, "{p} named instead of {name}");
            prop_assert!(e.message().contains("unknown parameter"));
        }
    }
}

/// The defaults, as docs/api.md gives them.
#[test]
fn defaults() {
    let now = 1_800_000_000_000;
    let mut q = QueryMap::new();
    q.insert("fields".into(), "cpu.usage".into());
    let s = SeriesQuery::parse(&q, now).unwrap();
    assert_eq!((s.from, s.to), (now - DEFAULT_RANGE_MS, now));
    assert_eq!(s.wanted_step, 10_000);
    assert_eq!(s.nodes, None);
    let plan = s.plan(now);
    assert!(plan.raw && plan.cached);
    assert_eq!(plan.grid.step, 10_000);
    let disks = DisksQuery::parse(&QueryMap::new(), now).unwrap();
    assert_eq!(
        (disks.from, disks.to, disks.limit, disks.nodes),
        (now - DEFAULT_RANGE_MS, now, 50, None)
    );
    let i = IncidentsQuery::parse(&QueryMap::new(), now).unwrap();
    assert_eq!((i.from, i.to, i.limit), (now - 86_400_000, now, 500));
    let e = SeriesQuery::parse(&QueryMap::new(), now).unwrap_err();
    assert_eq!(e.parameter(), Some("fields"));
    q.insert("nodes".into(), "b, a,b,,a".into());
    let s = SeriesQuery::parse(&q, now).unwrap();
    let nodes: Vec<String> = s.nodes.unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(nodes, ["b", "a"]);
}
