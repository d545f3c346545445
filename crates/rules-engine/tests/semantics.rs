//! The spec's semantics, table-driven, through the same `Engine` that the
//! live alerter and `bp-alerter replay` use.

use metrics_model::{HostName, Tick};
use rules_engine::{
    Engine, EngineOptions, Event, RuleSet, Transition, replay, replay::ReplayOptions,
};
use serde_json::json;

const S: i64 = 1000;
const M: i64 = 60 * S;

#[allow(clippy::needless_pass_by_value)] // Called with `json!` literals.
fn rules(v: serde_json::Value) -> RuleSet {
    RuleSet::from_json(&v, "rules").unwrap()
}

fn seed_rules() -> RuleSet {
    rules(json!([
        { "name": " High CPU Usage ", "field": "cpu.usage", "aggregation": "avg",
          "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m", "cooldown": "1m" },
        { "name": "High number of errors", "field": "errors.count", "aggregation": "sum",
          "operand": "equalOrMoreThan", "value": 10, "timeframe": "1m" },
        { "name": "No more incoming events", "field": "eventsIn.count", "aggregation": "sum",
          "operand": "equalOrLessThan", "value": 0, "timeframe": "10m" },
    ]))
}

fn tick(host: &str, ts: i64, values: &[(&str, f64)]) -> Tick {
    Tick::new(
        host.parse().unwrap(),
        ts,
        values.iter().map(|(f, v)| (f.parse().unwrap(), *v)),
    )
}

/// A host's ticks every 10 s from `from` (inclusive) to `to` (exclusive).
fn every_10s(host: &str, from: i64, to: i64, values: &[(&str, f64)]) -> Vec<Tick> {
    (from..to)
        .step_by(10_000)
        .map(|ts| tick(host, ts, values))
        .collect()
}

/// `(event, at, rule, host, triggerValue)` for compact expectations.
type Row = (Event, i64, &'static str, &'static str, f64);

fn rows(transitions: &[Transition]) -> Vec<(Event, i64, String, String, f64)> {
    transitions
        .iter()
        .map(|t| {
            (
                t.event,
                t.at,
                t.incident.rule_name.to_string(),
                t.incident.host_name.to_string(),
                t.incident.trigger_value,
            )
        })
        .collect()
}

fn check(rules: &RuleSet, ticks: Vec<Tick>, until: Option<i64>, expected: &[Row]) {
    let mut options = ReplayOptions::new("10s".parse().unwrap());
    options.until = until;
    let got = rows(&replay(rules, ticks, options).unwrap());
    let want: Vec<_> = expected
        .iter()
        .map(|(e, at, r, h, v)| (*e, *at, (*r).to_owned(), (*h).to_owned(), *v))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn two_minutes_of_10s_ticks_is_12_ticks() {
    // The seed: "timeframe 2 minutes, data every 10 seconds → 12 ticks".
    let set = rules(
        json!([{ "name": "n", "field": "cpu.usage", "aggregation": "count",
                             "operand": "equalOrMoreThan", "value": 12, "timeframe": "2m" }]),
    );
    let mut engine = Engine::new(set, EngineOptions::default());
    for t in every_10s("a", 0, 10 * M, &[("cpu.usage", 1.0)]) {
        engine.ingest(t);
    }
    for t in (0..10 * M).step_by(10_000) {
        engine.evaluate(t).unwrap();
        let counts: Vec<f64> = engine.window_values().map(|w| w.value.unwrap()).collect();
        let expected = ((t / 10_000) + 1).min(12) as f64;
        assert_eq!(counts, vec![expected], "at {t}");
    }
}

#[test]
fn high_cpu_opens_resolves_and_respects_cooldown() {
    let set = seed_rules();
    // 2 min at 30 %, 2 min at 90 %, 2 min at 30 %, then 90 % again.
    let mut ticks = every_10s(
        "a",
        0,
        2 * M,
        &[("cpu.usage", 30.0), ("eventsIn.count", 1.0)],
    );
    ticks.extend(every_10s(
        "a",
        2 * M,
        4 * M,
        &[("cpu.usage", 90.0), ("eventsIn.count", 1.0)],
    ));
    ticks.extend(every_10s(
        "a",
        4 * M,
        6 * M,
        &[("cpu.usage", 30.0), ("eventsIn.count", 1.0)],
    ));
    ticks.extend(every_10s(
        "a",
        6 * M,
        8 * M,
        &[("cpu.usage", 90.0), ("eventsIn.count", 1.0)],
    ));
    // avg over 12 ticks ≥ 60: k ticks of 90 and 12-k of 30 → 30 + 5k ≥ 60 ⇔ k ≥ 6.
    // First 90 tick at 2:00, 6th at 2:50 → opens at 2:50 with avg exactly 60.
    // At 4:00 the window is 11×90 + 1×30 (avg 85); the 6th 30-tick is at 4:50:
    // 6×90+6×30 = 60 still holds; at 5:00 5×90+7×30 = 55 → resolve at 5:00.
    // Cooldown 1 m: 6:50 reaches 60 again (≥ 6:00), opens at 6:50.
    check(
        &set,
        ticks,
        None,
        &[
            (Event::Opened, 2 * M + 50 * S, "High CPU Usage", "a", 60.0),
            (Event::Resolved, 5 * M, "High CPU Usage", "a", 60.0),
            (Event::Opened, 6 * M + 50 * S, "High CPU Usage", "a", 60.0),
        ],
    );
}

#[test]
fn cooldown_delays_a_reopen() {
    let set = rules(
        json!([{ "name": "r", "field": "custom.x", "aggregation": "last",
        "operand": "equalOrMoreThan", "value": 1, "timeframe": "10s", "cooldown": "1m" }]),
    );
    // 1 at 0 s, 0 at 10 s (resolve, cooldown until 70 s), 1 from 20 s on.
    let mut ticks = vec![
        tick("h", 0, &[("custom.x", 1.0)]),
        tick("h", 10 * S, &[("custom.x", 0.0)]),
    ];
    ticks.extend(every_10s("h", 20 * S, 2 * M, &[("custom.x", 1.0)]));
    check(
        &set,
        ticks,
        None,
        &[
            (Event::Opened, 0, "r", "h", 1.0),
            (Event::Resolved, 10 * S, "r", "h", 1.0),
            (Event::Opened, 70 * S, "r", "h", 1.0),
        ],
    );
}

#[test]
fn errors_sum_over_one_minute() {
    let set = seed_rules();
    // 2 errors per tick on b: sum over 6 ticks reaches 10 at the 5th tick (40 s).
    let mut ticks = every_10s(
        "b",
        0,
        2 * M,
        &[("errors.count", 2.0), ("eventsIn.count", 3.0)],
    );
    ticks.extend(every_10s(
        "b",
        2 * M,
        4 * M,
        &[("errors.count", 0.0), ("eventsIn.count", 3.0)],
    ));
    // From 2:00 the zeros push twos out: 2:00 window (1:10..2:00] = 5 twos + 0 → 10 holds;
    // 2:10 → 4 twos = 8 → resolve.
    check(
        &set,
        ticks,
        None,
        &[
            (Event::Opened, 40 * S, "High number of errors", "b", 10.0),
            (
                Event::Resolved,
                2 * M + 10 * S,
                "High number of errors",
                "b",
                10.0,
            ),
        ],
    );
}

#[test]
fn no_more_incoming_events_notices_silence() {
    let set = seed_rules();
    // Events for 5 minutes, then the host goes silent (no tick at all).
    let ticks = every_10s("c", 0, 5 * M, &[("eventsIn.count", 4.0)]);
    // Last tick at 4:50; the sum is 0 once (t − 10 m) ≥ 4:50, i.e. at 14:50.
    check(
        &set,
        ticks,
        Some(20 * M),
        &[(
            Event::Opened,
            14 * M + 50 * S,
            "No more incoming events",
            "c",
            0.0,
        )],
    );
}

#[test]
fn no_value_keeps_state() {
    // avg has no value on an empty window: an open incident stays open.
    let set = rules(
        json!([{ "name": "r", "field": "cpu.usage", "aggregation": "avg",
        "operand": "equalOrMoreThan", "value": 50, "timeframe": "30s" }]),
    );
    let mut ticks = every_10s("h", 0, 30 * S, &[("cpu.usage", 80.0)]);
    // Silence from 30 s to 3 min (other fields only), then low values.
    ticks.extend(every_10s("h", 30 * S, 3 * M, &[("mem.usage", 1.0)]));
    ticks.push(tick("h", 3 * M, &[("cpu.usage", 10.0)]));
    check(
        &set,
        ticks,
        None,
        &[
            (Event::Opened, 0, "r", "h", 80.0),
            (Event::Resolved, 3 * M, "r", "h", 80.0),
        ],
    );
}

#[test]
fn ties_are_ordered_by_rule_then_host() {
    let set = rules(json!([
        { "name": "zeta", "field": "cpu.usage", "aggregation": "max", "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" },
        { "name": "alpha", "field": "cpu.usage", "aggregation": "min", "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" },
    ]));
    let ticks = vec![
        tick("b", 0, &[("cpu.usage", 5.0)]),
        tick("a", 0, &[("cpu.usage", 5.0)]),
    ];
    check(
        &set,
        ticks,
        None,
        &[
            (Event::Opened, 0, "alpha", "a", 5.0),
            (Event::Opened, 0, "alpha", "b", 5.0),
            (Event::Opened, 0, "zeta", "a", 5.0),
            (Event::Opened, 0, "zeta", "b", 5.0),
        ],
    );
}

#[test]
fn duplicates_keep_the_first_tick_seen() {
    let set = rules(
        json!([{ "name": "r", "field": "custom.y", "aggregation": "count",
        "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" }]),
    );
    // The first tick at ts 0 lacks custom.y; a duplicate with it is ignored.
    let ticks = vec![
        tick("h", 0, &[("cpu.usage", 1.0)]),
        tick("h", 0, &[("custom.y", 1.0)]),
    ];
    check(&set, ticks.clone(), None, &[]);
    let reversed: Vec<Tick> = ticks.into_iter().rev().collect();
    check(&set, reversed, None, &[(Event::Opened, 0, "r", "h", 1.0)]);
}

#[test]
fn late_ticks_do_not_change_past_evaluations() {
    let set = rules(
        json!([{ "name": "r", "field": "cpu.usage", "aggregation": "max",
        "operand": "equalOrMoreThan", "value": 90, "timeframe": "1m" }]),
    );
    let mut engine = Engine::new(set, EngineOptions::default());
    engine.ingest(tick("h", 0, &[("cpu.usage", 10.0)]));
    assert!(engine.evaluate(10 * S).unwrap().is_empty());
    assert!(engine.evaluate(20 * S).unwrap().is_empty());
    // A tick stamped 5 s arrives after the 10 s and 20 s evaluations.
    engine.ingest(tick("h", 5 * S, &[("cpu.usage", 95.0)]));
    let t = engine.evaluate(30 * S).unwrap();
    assert_eq!(
        rows(&t),
        vec![(Event::Opened, 30 * S, "r".to_owned(), "h".to_owned(), 95.0)]
    );
    // ... and leaves the window by time like any other.
    engine.ingest(tick("h", 60 * S, &[("cpu.usage", 10.0)]));
    let t = engine.evaluate(70 * S).unwrap();
    assert_eq!(rows(&t)[0].0, Event::Resolved);
}

#[test]
fn retention_forgets_hosts_and_resolves_their_incidents() {
    let set = rules(
        json!([{ "name": "r", "field": "cpu.usage", "aggregation": "last",
        "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" }]),
    );
    let mut engine = Engine::new(
        set,
        EngineOptions {
            retention: Some("5m".parse().unwrap()),
        },
    );
    engine.ingest(tick("h", 0, &[("cpu.usage", 2.0)]));
    assert_eq!(rows(&engine.evaluate(0).unwrap()).len(), 1);
    // last has no value from 1 m on: the incident stays open...
    assert!(engine.evaluate(4 * M).unwrap().is_empty());
    // ...until the host leaves the retention period (last tick ≤ t − 5 m).
    let t = engine.evaluate(5 * M).unwrap();
    assert_eq!(
        rows(&t),
        vec![(Event::Resolved, 5 * M, "r".to_owned(), "h".to_owned(), 2.0)]
    );
    assert_eq!(engine.hosts().count(), 0);
}

#[test]
fn removed_rules_resolve_and_edited_rules_keep_state() {
    let two = rules(json!([
        { "name": "keep", "field": "cpu.usage", "aggregation": "max", "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" },
        { "name": "drop", "field": "cpu.usage", "aggregation": "max", "operand": "equalOrMoreThan", "value": 1, "timeframe": "1m" },
    ]));
    let mut engine = Engine::new(two, EngineOptions::default());
    for ts in (0..2 * M).step_by(10_000) {
        engine.ingest(tick("h", ts, &[("cpu.usage", 5.0)]));
    }
    assert_eq!(engine.evaluate(0).unwrap().len(), 2);
    // Edit "keep" (new threshold and timeframe) and remove "drop".
    engine.set_rules(rules(json!([
        { "name": " keep ", "field": "cpu.usage", "aggregation": "avg", "operand": "equalOrMoreThan", "value": 4, "timeframe": "30s" },
    ])));
    let t = engine.evaluate(10 * S).unwrap();
    // "keep" still holds (avg 5 ≥ 4): no second open; "drop" resolves.
    assert_eq!(
        rows(&t),
        vec![(
            Event::Resolved,
            10 * S,
            "drop".to_owned(),
            "h".to_owned(),
            5.0
        )]
    );
    let states: Vec<_> = engine
        .incident_states()
        .filter(|s| s.state.open.is_some())
        .collect();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].rule.name(), "keep");
    let values: Vec<_> = engine.window_values().map(|w| w.value).collect();
    assert_eq!(values, vec![Some(5.0)]);
}

#[test]
fn partial_windows_are_evaluated_as_they_are() {
    let set = rules(
        json!([{ "name": "r", "field": "cpu.usage", "aggregation": "avg",
        "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m" }]),
    );
    // A new host's first tick alone decides the average.
    check(
        &set,
        vec![tick("new", 0, &[("cpu.usage", 70.0)])],
        None,
        &[(Event::Opened, 0, "r", "new", 70.0)],
    );
}

#[test]
fn evaluation_instants_must_increase() {
    let mut engine = Engine::new(seed_rules(), EngineOptions::default());
    engine.evaluate(10).unwrap();
    assert!(engine.evaluate(10).is_err());
    assert!(engine.evaluate(5).is_err());
}

#[test]
fn incident_json_is_the_spec_form() {
    let set = seed_rules();
    let ticks = every_10s(
        "node-a",
        1_767_225_600_000,
        1_767_225_600_000 + 2 * M,
        &[("cpu.usage", 65.5), ("eventsIn.count", 1.0)],
    );
    let out = replay(&set, ticks, ReplayOptions::new("10s".parse().unwrap())).unwrap();
    let line: serde_json::Value = serde_json::from_str(&out[0].to_json_line()).unwrap();
    assert_eq!(line["event"], "opened");
    assert_eq!(line["at"], 1_767_225_600_000i64);
    let inc = &line["incident"];
    assert_eq!(inc["ruleName"], "High CPU Usage");
    assert_eq!(inc["hostName"], "node-a");
    assert_eq!(inc["startTime"], "2026-01-01T00:00:00.000Z");
    assert_eq!(inc["endTime"], serde_json::Value::Null);
    assert_eq!(inc["triggerValue"], 65.5);
    assert_eq!(
        uuid::Uuid::parse_str(inc["id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        4
    );
    let host: HostName = "node-a".parse().unwrap();
    assert_eq!(out[0].incident.host_name, host);
}
