//! Property tests of the incident state machine and of the whole engine
//! against a from-scratch evaluation of the spec.

use std::collections::{BTreeMap, HashMap};

use metrics_model::{Key, Tick};
use proptest::prelude::*;
use rules_engine::replay::{ReplayOptions, replay};
use rules_engine::{Aggregation, Event, Operand, Rule, RuleSet, RuleSpec, Transition};

const FIELDS: [&str; 2] = ["cpu.usage", "custom.q"];

fn rule_strategy() -> impl Strategy<Value = RuleSpec> {
    (
        0usize..6,
        0usize..2,
        any::<bool>(),
        -5i32..15,
        1u64..8,
        0u64..6,
    )
        .prop_map(|(agg, field, more, value, tf, cd)| RuleSpec {
            name: String::new(),
            field: FIELDS[field].parse().unwrap(),
            aggregation: Aggregation::ALL[agg].0,
            operand: if more {
                Operand::EqualOrMoreThan
            } else {
                Operand::EqualOrLessThan
            },
            value: f64::from(value),
            timeframe: metrics_model::Duration::from_secs(tf * 10).unwrap(),
            cooldown: metrics_model::Duration::from_secs(cd * 10).unwrap(),
            meta: rules_engine::rule::RuleMeta::default(),
        })
}

fn ticks_strategy() -> impl Strategy<Value = Vec<Tick>> {
    proptest::collection::vec(
        (
            0usize..3,
            0i64..40,
            proptest::option::of(-3i32..12),
            proptest::option::of(0i32..5),
        ),
        0..60,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .map(|(h, slot, cpu, q)| {
                let mut values = Vec::new();
                if let Some(v) = cpu {
                    values.push(("cpu.usage".parse::<Key>().unwrap(), f64::from(v)));
                }
                if let Some(v) = q {
                    values.push(("custom.q".parse::<Key>().unwrap(), f64::from(v)));
                }
                // Some ticks fall between instants (ts not a multiple of 10 s).
                let ts = slot * 5_000;
                Tick::new(["a", "b", "c"][h].parse().unwrap(), ts, values)
            })
            .collect()
    })
}

/// The spec, evaluated from scratch at every instant (no incremental state
/// but the incident state machine itself).
fn naive(rules: &RuleSet, ticks: &[Tick], step: i64) -> Vec<(Event, i64, String, String, f64)> {
    // First tick seen per (host, ts) counts.
    let mut first: BTreeMap<(String, i64), &Tick> = BTreeMap::new();
    for t in ticks {
        first.entry((t.host.to_string(), t.ts)).or_insert(t);
    }
    let Some(min) = ticks.iter().map(|t| t.ts).min() else {
        return Vec::new();
    };
    let max = ticks.iter().map(|t| t.ts).max().unwrap();
    let start = min.div_euclid(step) * step + if min.rem_euclid(step) == 0 { 0 } else { step };
    let hosts: Vec<String> = first
        .keys()
        .map(|(h, _)| h.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // (rule, host) → (open: Option<(startValue)>, cooldown_until)
    let mut state: HashMap<(String, String), (Option<f64>, i64)> = HashMap::new();
    let mut out = Vec::new();
    let mut t = start;
    while t <= max {
        for rule in rules.rules() {
            for host in &hosts {
                if !first.keys().any(|(h, ts)| h == host && *ts <= t) {
                    continue;
                }
                let tf = rule.timeframe().as_millis_i64();
                let window: Vec<(i64, f64)> = first
                    .iter()
                    .filter(|((h, ts), _)| h == host && t - tf < *ts && *ts <= t)
                    .filter_map(|((_, ts), tick)| tick.get(rule.field()).map(|v| (*ts, v)))
                    .collect();
                let vals: Vec<f64> = window.iter().map(|w| w.1).collect();
                let value = match rule.aggregation() {
                    Aggregation::Count => Some(vals.len() as f64),
                    Aggregation::Sum => Some(vals.iter().sum()),
                    Aggregation::Avg => {
                        (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
                    }
                    Aggregation::Min => vals.iter().copied().reduce(f64::min),
                    Aggregation::Max => vals.iter().copied().reduce(f64::max),
                    Aggregation::Last => window.last().map(|w| w.1),
                };
                let st = state
                    .entry((rule.name().to_owned(), host.clone()))
                    .or_insert((None, i64::MIN));
                let holds = value.map(|v| rule.operand().holds(v, rule.value()));
                match (st.0, holds) {
                    (None, Some(true)) if t >= st.1 => {
                        st.0 = value;
                        out.push((
                            Event::Opened,
                            t,
                            rule.name().to_owned(),
                            host.clone(),
                            value.unwrap(),
                        ));
                    }
                    (Some(tv), Some(false)) => {
                        st.0 = None;
                        st.1 = t + rule.cooldown().as_millis_i64();
                        out.push((Event::Resolved, t, rule.name().to_owned(), host.clone(), tv));
                    }
                    _ => {}
                }
            }
        }
        t += step;
    }
    out
}

fn rows(ts: &[Transition]) -> Vec<(Event, i64, String, String, f64)> {
    ts.iter()
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

fn build(specs: Vec<RuleSpec>) -> RuleSet {
    RuleSet::new(specs.into_iter().enumerate().map(|(i, mut s)| {
        s.name = format!("rule{i}");
        Rule::new(s).unwrap()
    }))
    .unwrap()
}

/// The invariants of the spec's "Incidents" section, on any transition list.
fn check_invariants(transitions: &[Transition], rules: &RuleSet) -> Result<(), TestCaseError> {
    let mut open: HashMap<(String, String), &Transition> = HashMap::new();
    let mut cooldown_until: HashMap<(String, String), i64> = HashMap::new();
    let mut last_at = i64::MIN;
    for t in transitions {
        prop_assert!(t.at >= last_at, "transitions out of time order");
        last_at = t.at;
        let key = (
            t.incident.rule_name.to_string(),
            t.incident.host_name.to_string(),
        );
        match t.event {
            Event::Opened => {
                prop_assert!(!open.contains_key(&key), "two open incidents for {key:?}");
                prop_assert!(
                    t.at >= *cooldown_until.get(&key).unwrap_or(&i64::MIN),
                    "opened inside a cooldown"
                );
                prop_assert_eq!(t.incident.start_time, t.at);
                prop_assert!(t.incident.end_time.is_none());
                open.insert(key, t);
            }
            Event::Resolved => {
                let Some(opened) = open.remove(&key) else {
                    return Err(TestCaseError::fail(format!(
                        "resolve without open for {key:?}"
                    )));
                };
                prop_assert_eq!(opened.incident.id, t.incident.id);
                prop_assert_eq!(t.incident.end_time, Some(t.at));
                prop_assert_eq!(opened.incident.trigger_value, t.incident.trigger_value);
                let cd = rules.get(&key.0).unwrap().cooldown().as_millis_i64();
                cooldown_until.insert(key, t.at + cd);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_equals_the_spec_evaluated_from_scratch(
        specs in proptest::collection::vec(rule_strategy(), 1..4),
        ticks in ticks_strategy(),
    ) {
        let rules = build(specs);
        let got = replay(&rules, ticks.clone(), ReplayOptions::new("10s".parse().unwrap())).unwrap();
        check_invariants(&got, &rules)?;
        let want = naive(&rules, &ticks, 10_000);
        // Values are small integers: sums are exact, so equality is exact.
        prop_assert_eq!(rows(&got), want);
    }

    #[test]
    fn invariants_hold_with_any_arrival_order(
        specs in proptest::collection::vec(rule_strategy(), 1..4),
        ticks in ticks_strategy(),
        seed in any::<u64>(),
    ) {
        let rules = build(specs);
        // Duplicates by (host, ts) resolve to the first seen; shuffling the
        // de-duplicated ticks must not change the outcome.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<Tick> = ticks.iter().filter(|t| seen.insert((t.host.clone(), t.ts))).cloned().collect();
        let mut shuffled = firsts.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = replay(&rules, firsts, ReplayOptions::new("10s".parse().unwrap())).unwrap();
        let b = replay(&rules, shuffled, ReplayOptions::new("10s".parse().unwrap())).unwrap();
        check_invariants(&b, &rules)?;
        prop_assert_eq!(rows(&a), rows(&b));
    }
}
