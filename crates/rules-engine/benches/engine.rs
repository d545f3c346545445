//! Rules-engine benchmarks (criterion):
//! - `window/in_order/<agg>`: ticks through one 12-tick window;
//! - `evaluation/10k_hosts_x_20_rules`: one full evaluation of 10,000 hosts
//!   × 20 rules with 12-tick windows (10 s ticks, 2 m timeframes): each
//!   iteration takes in one new tick per host and evaluates every rule for
//!   every host. Target: ≤ 10 ms on one core (version-1 rules).
//! - `evaluation/10k_hosts_x_20_rules_5_fan_out_4_mounts`: the same hosts;
//!   15 of the rules as above, 5 on the bare instanced `disk.usage` /
//!   `disk.free`, each host carrying 4 mounts: 15 + 5 × 4 = 35 series per
//!   host. Target: ≤ 20 ms.
//! - `evaluation/10k_hosts_x_20_rules_plus_1_cluster`: the 20 rules plus one
//!   cluster-wide `sum` of `errors.count` over every host. Target: ≤ 2 ms
//!   more than `10k_hosts_x_20_rules`.
//!
//! Run: `cargo bench -p rules-engine --bench engine`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metrics_model::{Field, StandardField, Tick};
use rules_engine::window::Window;
use rules_engine::{Aggregation, Engine, EngineOptions, Operand, Rule, RuleSet, RuleSpec};

const HOSTS: usize = 10_000;
const STEP: i64 = 10_000;

fn window_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("window/in_order");
    g.throughput(Throughput::Elements(1));
    for (agg, name) in Aggregation::ALL {
        let mut w = Window::new(agg, 12 * STEP);
        let mut ts = 0i64;
        g.bench_function(name, |b| {
            b.iter(|| {
                ts += STEP;
                w.insert(ts, black_box((ts % 97) as f64 * 0.5));
                black_box(w.value_at(ts))
            });
        });
    }
    g.finish();
}

/// 20 rules over 10 fields and all six aggregations. Even rules fire when
/// the value is high (about 1 % of hosts), odd rules watch for a value no
/// host reaches, so about 1,000 incidents are open and few transitions
/// happen per evaluation: a realistic steady state.
fn twenty_rules() -> RuleSet {
    RuleSet::new((0..20).map(|i| {
        let aggregation = Aggregation::ALL[i % 6].0;
        let (operand, value) = match (i % 2, aggregation) {
            (0, Aggregation::Sum) => (Operand::EqualOrMoreThan, 50.0 * 12.0),
            (0, Aggregation::Count) => (Operand::EqualOrMoreThan, 13.0),
            (0, _) => (Operand::EqualOrMoreThan, 50.0),
            _ => (Operand::EqualOrLessThan, -1.0),
        };
        Rule::new(RuleSpec {
            name: format!("rule-{i:02}"),
            field: Field::Standard(FIELDS[i % FIELDS.len()]).into(),
            aggregation,
            operand,
            value,
            timeframe: "2m".parse().unwrap(),
            cooldown: "1m".parse().unwrap(),
            meta: rules_engine::rule::RuleMeta::default(),
        })
        .unwrap()
    }))
    .unwrap()
}

const FIELDS: [StandardField; 10] = [
    StandardField::CpuUsage,
    StandardField::MemUsage,
    StandardField::MemFree,
    StandardField::RequestsCount,
    StandardField::RequestsLatencyAvg,
    StandardField::EventsInCount,
    StandardField::EventsOutCount,
    StandardField::WarningsCount,
    StandardField::ErrorsCount,
    StandardField::CriticalsCount,
];

/// One tick of the 10 fields: each host has its own level (20–39, or 80 for
/// 1 % of hosts) with a little noise.
fn host_tick(host: &metrics_model::HostName, i: usize, ts: i64) -> Tick {
    let level = if i.is_multiple_of(100) {
        80.0
    } else {
        20.0 + (i % 20) as f64
    };
    let noise = ((i as i64 * 7919 + ts / STEP * 104_729) % 100) as f64 / 100.0;
    Tick::new(
        host.clone(),
        ts,
        FIELDS
            .iter()
            .enumerate()
            .map(|(k, f)| (Field::Standard(*f).into(), level + noise + k as f64)),
    )
}

/// The 15 first rules of [`twenty_rules`] and 5 rules over every mount.
fn fan_out_rules() -> RuleSet {
    let mut rules: Vec<Rule> = twenty_rules()
        .rules()
        .iter()
        .take(15)
        .map(|r| (**r).clone())
        .collect();
    for i in 0..5 {
        let (field, aggregation, operand, value) = match i {
            0 => (
                "disk.usage",
                Aggregation::Max,
                Operand::EqualOrMoreThan,
                90.0,
            ),
            1 => (
                "disk.usage",
                Aggregation::Avg,
                Operand::EqualOrMoreThan,
                80.0,
            ),
            2 => (
                "disk.free",
                Aggregation::Min,
                Operand::EqualOrLessThan,
                1_000_000.0,
            ),
            3 => (
                "disk.usage",
                Aggregation::Last,
                Operand::EqualOrMoreThan,
                95.0,
            ),
            _ => (
                "disk.free",
                Aggregation::Avg,
                Operand::EqualOrLessThan,
                500_000.0,
            ),
        };
        rules.push(
            Rule::new(RuleSpec {
                name: format!("disk-{i}"),
                field: field.parse().unwrap(),
                aggregation,
                operand,
                value,
                timeframe: "2m".parse().unwrap(),
                cooldown: "1m".parse().unwrap(),
                meta: rules_engine::RuleMeta::default(),
            })
            .unwrap(),
        );
    }
    RuleSet::new(rules).unwrap()
}

/// [`twenty_rules`] and one cluster-wide sum of errors.
fn cluster_rules() -> RuleSet {
    let mut rules: Vec<Rule> = twenty_rules()
        .rules()
        .iter()
        .map(|r| (**r).clone())
        .collect();
    rules.push(
        Rule::new(RuleSpec {
            name: "cluster-errors".into(),
            field: "errors.count".parse().unwrap(),
            aggregation: Aggregation::Sum,
            operand: Operand::EqualOrMoreThan,
            value: 1e12,
            timeframe: "2m".parse().unwrap(),
            cooldown: "1m".parse().unwrap(),
            meta: rules_engine::RuleMeta {
                scope: rules_engine::Scope::Cluster,
                ..rules_engine::RuleMeta::default()
            },
        })
        .unwrap(),
    );
    RuleSet::new(rules).unwrap()
}

const MOUNTS: [&str; 4] = ["/", "/var", "/data", "/home"];

/// [`host_tick`] with `disk.usage` and `disk.free` of 4 mounts.
fn host_tick_with_mounts(host: &metrics_model::HostName, i: usize, ts: i64) -> Tick {
    let mut tick = host_tick(host, i, ts);
    let level = if i.is_multiple_of(100) { 93.0 } else { 40.0 };
    tick.extend(MOUNTS.iter().enumerate().flat_map(|(m, mount)| {
        [
            (
                format!("disk.usage[{mount}]").parse().unwrap(),
                level + m as f64,
            ),
            (
                format!("disk.free[{mount}]").parse().unwrap(),
                5_000_000.0 - m as f64,
            ),
        ]
    }));
    tick
}

fn evaluation_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("evaluation");
    g.sample_size(20);
    evaluate(&mut g, "10k_hosts_x_20_rules", twenty_rules(), host_tick);
    evaluate(
        &mut g,
        "10k_hosts_x_20_rules_5_fan_out_4_mounts",
        fan_out_rules(),
        host_tick_with_mounts,
    );
    evaluate(
        &mut g,
        "10k_hosts_x_20_rules_plus_1_cluster",
        cluster_rules(),
        host_tick,
    );
    g.finish();
}

/// One full evaluation of [`HOSTS`] hosts with `rules`, windows full.
fn evaluate(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rules: RuleSet,
    tick: fn(&metrics_model::HostName, usize, i64) -> Tick,
) {
    let hosts: Vec<metrics_model::HostName> = (0..HOSTS)
        .map(|i| format!("node-{i:05}").parse().unwrap())
        .collect();
    let host_tick = tick;
    let n_rules = rules.len();
    let mut engine = Engine::new(rules, EngineOptions::default());
    // Fill every window (12 ticks of 10 s in 2 m).
    let mut t = 0;
    for _ in 0..12 {
        t += STEP;
        for (i, h) in hosts.iter().enumerate() {
            engine.ingest(host_tick(h, i, t));
        }
        engine.evaluate(t).unwrap();
    }
    let mut transitions = 0;
    g.throughput(Throughput::Elements((HOSTS * n_rules) as u64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                t += STEP;
                let ticks: Vec<Tick> = hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| host_tick(h, i, t))
                    .collect();
                let start = Instant::now();
                for tick in ticks {
                    engine.ingest(tick);
                }
                let out = engine.evaluate(t).unwrap();
                total += start.elapsed();
                transitions += out.len();
            }
            total
        });
    });
    println!("evaluation/{name}: {transitions} transitions in all measured evaluations");
}

criterion_group!(benches, window_bench, evaluation_bench);
criterion_main!(benches);
