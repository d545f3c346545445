//! Fuzzing (a property test) of what a `GET /api/v1/series` costs: any
//! query — repeated and distinct fields by the thousand, every node or
//! some, ranges up to 31 d, any step and statistics — gets a response no
//! larger than the documented bound (`params::series_response_bound` for
//! its shape, and `params::MAX_SERIES_RESPONSE_BYTES` for any query), and
//! answering it allocates no more than a small multiple of that bound.
//! Requests go through the real router (axum, as served) over in-memory
//! stores holding two nodes' ticks; the allocator is instrumented, so this
//! file holds one test only (nothing else allocates meanwhile).
//!
//! Case count: `BP_FUZZ_CASES` (default 256); `scripts/fuzz` runs more.

use std::alloc::System;
use std::fmt::Write as _;
use std::sync::Arc;

use alerter::AlerterStats;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use metrics_model::store::TickStore as _;
use metrics_model::time::floor_to;
use metrics_model::time::now_ms;
use metrics_model::{MemoryAlertStore, MemoryStore, StandardField, Tick};
use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use test_support::fuzz::config;
use test_support::fuzz::proptest::prelude::*;
use test_support::fuzz::proptest::{self, prop_oneof, proptest};
use tower::ServiceExt as _;
use web::params::{MAX_SERIES, MAX_SERIES_RESPONSE_BYTES, MAX_VALUES, series_response_bound};
use web::{AppState, router};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocation while answering may be this many times the response bound
/// (the buckets, the serialised body growing by doubling, the body read
/// back) ...
const ALLOCATION_FACTOR: usize = 6;
/// ... plus this many times the request's length (the decoded query, the
/// field list) ...
const REQUEST_FACTOR: usize = 64;
/// ... plus a fixed allowance for the ticks read from the store (custom
/// fields and ranges beyond the cache are read one node at a time; the
/// fixture holds an hour of ticks per node).
const FIXED_ALLOWANCE: usize = 8 << 20;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ticks = MemoryStore::new();
    let end = floor_to(now_ms(), 10_000);
    let mut all = Vec::new();
    for host in ["node-a", "node-b"] {
        for i in 0..360 {
            all.push(Tick::new(
                host.parse().unwrap(),
                end - i * 10_000,
                [
                    (
                        metrics_model::Key::from(StandardField::CpuUsage),
                        12.5 + i as f64,
                    ),
                    (metrics_model::Key::from(StandardField::MemUsage), 40.0),
                    ("custom.queue".parse().unwrap(), 3.0),
                ],
            ));
        }
    }
    runtime.block_on(ticks.append(&all)).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(rules_engine::Config::default()));
    let state = Arc::new(AppState::new(
        ticks,
        MemoryAlertStore::new(),
        Arc::new(AlerterStats::default()),
        rx,
    ));
    let app = router(state, None);
    Fixture { runtime, app }
}

fn fields() -> impl Strategy<Value = String> {
    prop_oneof![
        // One name repeated (the 117 MB response of the outside test; as many
        // as a URI of at most 64 KiB holds).
        (
            1usize..4500,
            prop_oneof![Just("cpu.usage"), Just("custom.queue")]
        )
            .prop_map(|(n, f)| vec![f; n].join(",")),
        // Many distinct custom names.
        (1usize..3000).prop_map(|n| (0..n)
            .map(|i| format!("custom.f{i}"))
            .collect::<Vec<_>>()
            .join(",")),
        proptest::collection::vec(
            proptest::sample::select(vec![
                "cpu.usage",
                "mem.usage",
                "custom.queue",
                "errors.count"
            ]),
            1..6
        )
        .prop_map(|v| v.join(",")),
    ]
}

fn query() -> impl Strategy<Value = String> {
    (
        fields(),
        proptest::option::of(prop_oneof![
            Just("node-a"),
            Just("node-a,node-b"),
            Just("node-b,node-a,node-a")
        ]),
        prop_oneof![
            Just("15m"),
            Just("1h"),
            Just("1d"),
            Just("8d"),
            Just("31d"),
            Just("10s")
        ],
        proptest::option::of(prop_oneof![
            Just("1s"),
            Just("10s"),
            Just("auto"),
            Just("1m"),
            Just("1h")
        ]),
        proptest::option::of(
            proptest::collection::vec(
                proptest::sample::select(vec!["avg", "min", "max", "sum", "count"]),
                1..12,
            )
            .prop_map(|v| v.join(",")),
        ),
    )
        .prop_map(|(fields, nodes, range, step, stats)| {
            let mut q = format!("/api/v1/series?fields={fields}&range={range}");
            if let Some(n) = nodes {
                let _ = write!(q, "&nodes={n}");
            }
            if let Some(s) = step {
                let _ = write!(q, "&step={s}");
            }
            if let Some(s) = stats {
                let _ = write!(q, "&stats={s}");
            }
            q
        })
}

#[test]
fn series_responses_and_allocation_stay_under_the_documented_bound() {
    let f = fixture();
    // The documented bound holds for every shape within the limits.
    const { assert!(series_response_bound(MAX_SERIES, 2_001, MAX_VALUES) <= MAX_SERIES_RESPONSE_BYTES) };
    const { assert!(MAX_SERIES_RESPONSE_BYTES < 32 << 20) };
    proptest!(config(), |(uri in query())| {
        let region = Region::new(GLOBAL);
        let (status, body) = f.runtime.block_on(async {
            let response = f
                .app
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let retry = response.headers().get("retry-after").is_some();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            prop_assert!(status != StatusCode::SERVICE_UNAVAILABLE || retry, "503 without Retry-After");
            Ok((status, body))
        })?;
        let allocated = region.change().bytes_allocated;
        prop_assert!(body.len() <= MAX_SERIES_RESPONSE_BYTES, "{} bytes", body.len());
        let v: Value = serde_json::from_slice(&body).unwrap();
        match status {
            StatusCode::OK => {
                let series = v["series"].as_array().unwrap();
                let buckets = v["t"].as_array().unwrap().len();
                let values: usize = series
                    .iter()
                    .map(|s| s.as_object().unwrap().values().filter_map(Value::as_array).map(Vec::len).sum::<usize>())
                    .sum();
                prop_assert!(series.len() <= MAX_SERIES && values <= MAX_VALUES);
                let bound = series_response_bound(series.len(), buckets, values);
                prop_assert!(body.len() <= bound, "{} > {} for {}", body.len(), bound, uri);
                prop_assert!(
                    allocated <= ALLOCATION_FACTOR * bound + REQUEST_FACTOR * uri.len() + FIXED_ALLOWANCE,
                    "{} bytes allocated for a response of {} (bound {}): {}",
                    allocated, body.len(), bound, &uri[..uri.len().min(200)]
                );
                // Repeated names are merged: each (node, field) once.
                let mut seen = std::collections::HashSet::new();
                for s in series {
                    prop_assert!(seen.insert((s["node"].to_string(), s["field"].to_string())));
                }
            }
            StatusCode::BAD_REQUEST => {
                prop_assert_eq!(&v["parameter"], "fields", "{}", v);
                prop_assert!(v["error"].as_str().unwrap().contains("the limit is"), "{}", v);
                prop_assert!(
                    allocated <= REQUEST_FACTOR * uri.len() + FIXED_ALLOWANCE,
                    "{} bytes allocated to refuse", allocated
                );
            }
            other => prop_assert!(false, "{}: {}", other, v),
        }
    });
}
