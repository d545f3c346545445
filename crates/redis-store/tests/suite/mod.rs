//! The behavioural suite every `TickStore` must pass. Each case gets an
//! empty store. `behaviour.rs` runs it against the in-memory store and a
//! real `redis-server`; `cluster.rs` against a three-master Redis Cluster.

#![allow(dead_code)]

use std::collections::BTreeSet;

use metrics_model::store::{StoreError, TickStore};
use metrics_model::{HostName, Key, StandardField, Tick};

pub fn host(name: &str) -> HostName {
    name.parse().unwrap()
}

/// A tick with realistic values derived from `ts` (so a test can tell ticks
/// apart) plus `tag` in `errors.count`.
pub fn tick(h: &str, ts: i64, tag: f64) -> Tick {
    let n = (ts / 1000) as f64;
    Tick::new(
        host(h),
        ts,
        [
            (StandardField::CpuUsage.into(), (n % 10_000.0) / 100.0),
            (StandardField::MemFree.into(), 8_000_000.0 + n),
            (StandardField::RequestsLatencyAvg.into(), 12.345),
            (StandardField::ErrorsCount.into(), tag),
        ],
    )
}

fn tag(t: &Tick) -> f64 {
    t.get(&StandardField::ErrorsCount.into()).unwrap()
}

fn stamps(ticks: &[Tick]) -> Vec<i64> {
    ticks.iter().map(|t| t.ts).collect()
}

fn keyed(ticks: &[Tick]) -> BTreeSet<(String, i64)> {
    ticks.iter().map(|t| (t.host.to_string(), t.ts)).collect()
}

/// Every case, by name, for stores that run them one after another.
pub const CASES: &[&str] = &[
    "append_and_range",
    "values_round_trip",
    "duplicates_first_wins",
    "out_of_order",
    "read_new_follows_arrival",
    "cursor_now_skips_the_past",
    "hosts_with_last_seen",
    "prune_removes_old_ticks_and_hosts",
    "bad_ticks_are_refused",
    "large_batches",
    "sealed_chunks_read_back_and_keep_duplicates",
    "read_new_over_many_hosts",
];

/// Runs the case called `name`.
pub async fn run<S: TickStore>(name: &str, s: &S) {
    match name {
        "append_and_range" => append_and_range(s).await,
        "values_round_trip" => values_round_trip(s).await,
        "duplicates_first_wins" => duplicates_first_wins(s).await,
        "out_of_order" => out_of_order(s).await,
        "read_new_follows_arrival" => read_new_follows_arrival(s).await,
        "cursor_now_skips_the_past" => cursor_now_skips_the_past(s).await,
        "hosts_with_last_seen" => hosts_with_last_seen(s).await,
        "prune_removes_old_ticks_and_hosts" => prune_removes_old_ticks_and_hosts(s).await,
        "bad_ticks_are_refused" => bad_ticks_are_refused(s).await,
        "large_batches" => large_batches(s).await,
        "sealed_chunks_read_back_and_keep_duplicates" => {
            sealed_chunks_read_back_and_keep_duplicates(s).await;
        }
        "read_new_over_many_hosts" => read_new_over_many_hosts(s).await,
        other => panic!("no case {other}"),
    }
}

pub async fn append_and_range<S: TickStore>(s: &S) {
    let mut batch = Vec::new();
    for i in 1..=30 {
        batch.push(tick("a", i * 10_000, 0.0));
        batch.push(tick("b", i * 10_000 + 1, 0.0));
    }
    let out = s.append(&batch).await.unwrap();
    assert_eq!((out.written, out.duplicates), (60, 0));
    let got = s.range(&host("a"), 50_000, 100_000).await.unwrap();
    assert_eq!(
        stamps(&got),
        vec![50_000, 60_000, 70_000, 80_000, 90_000, 100_000]
    );
    assert!(got.iter().all(|t| t.host == host("a")));
    assert_eq!(got[0], tick("a", 50_000, 0.0));
    assert_eq!(s.range(&host("a"), 0, i64::MAX).await.unwrap().len(), 30);
    assert_eq!(s.range(&host("b"), 10_001, 10_001).await.unwrap().len(), 1);
    assert!(
        s.range(&host("a"), 100_000, 50_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.range(&host("a"), -100, -1).await.unwrap().is_empty());
    assert!(
        s.range(&host("nobody"), 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn values_round_trip<S: TickStore>(s: &S) {
    let fields: Vec<(Key, f64)> = vec![
        (StandardField::CpuUsage.into(), 63.52),
        (StandardField::MemUsage.into(), 0.1 + 0.2),
        (StandardField::MemFree.into(), 8_123_456.0),
        (StandardField::Uptime.into(), 1e300),
        (StandardField::RequestsCount.into(), 0.0),
        (StandardField::RequestsLatencyAvg.into(), -12.345),
        (StandardField::RequestsLatencySum.into(), 5e-324),
        (StandardField::EventsInCount.into(), 17.0),
        ("custom.queue_depth".parse().unwrap(), 42.5),
        (format!("custom.{}", "x".repeat(64)).parse().unwrap(), -1.0),
        // Version 2: keys with instances, and the new bare fields.
        ("disk.usage[/var]".parse().unwrap(), 91.25),
        ("disk.usage[/]".parse().unwrap(), 40.0),
        ("disk.free[/var]".parse().unwrap(), 1_234_567.0),
        ("net.rx[eth0]".parse().unwrap(), 1e6),
        ("process.count[node]".parse().unwrap(), 0.0),
        ("load.1".parse().unwrap(), 0.75),
        ("swap.usage".parse().unwrap(), 3.5),
        ("custom.queue[orders]".parse().unwrap(), 5.0),
        ("custom.queue[<script>/data (x)*?]".parse().unwrap(), 6.0),
        (
            format!("disk.usage[{}]", "é".repeat(128)).parse().unwrap(),
            1.0,
        ),
    ];
    let t = Tick::new(host("v"), 1_767_225_600_000, fields);
    let empty = Tick::new(host("v"), 1_767_225_610_000, []);
    s.append(&[t.clone(), empty.clone()]).await.unwrap();
    let got = s.range(&host("v"), 0, i64::MAX).await.unwrap();
    assert_eq!(got, vec![t, empty]);
}

pub async fn duplicates_first_wins<S: TickStore>(s: &S) {
    let out = s
        .append(&[
            tick("a", 10_000, 1.0),
            tick("a", 20_000, 1.0),
            tick("a", 10_000, 2.0),
        ])
        .await
        .unwrap();
    assert_eq!((out.written, out.duplicates), (2, 1));
    let out = s
        .append(&[tick("a", 20_000, 3.0), tick("a", 30_000, 3.0)])
        .await
        .unwrap();
    assert_eq!((out.written, out.duplicates), (1, 1));
    // A duplicate of a tick that arrived late is still a duplicate.
    s.append(&[tick("a", 5_000, 4.0)]).await.unwrap();
    let out = s.append(&[tick("a", 5_000, 5.0)]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (0, 1));
    let got = s.range(&host("a"), 0, 100_000).await.unwrap();
    assert_eq!(stamps(&got), vec![5_000, 10_000, 20_000, 30_000]);
    assert_eq!(
        got.iter().map(tag).collect::<Vec<_>>(),
        vec![4.0, 1.0, 1.0, 3.0]
    );
    // The same (host, ts) on another host is another tick.
    let out = s.append(&[tick("b", 10_000, 6.0)]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (1, 0));
}

pub async fn out_of_order<S: TickStore>(s: &S) {
    // A deterministic shuffle of 0..200, appended in batches of 7.
    let mut order: Vec<i64> = (0..200).collect();
    let mut x: u64 = 42;
    for i in (1..order.len()).rev() {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        order.swap(i, (x >> 33) as usize % (i + 1));
    }
    let ticks: Vec<Tick> = order
        .iter()
        .map(|&i| tick("a", i * 1000, i as f64))
        .collect();
    let mut written = 0;
    for batch in ticks.chunks(7) {
        written += s.append(batch).await.unwrap().written;
    }
    assert_eq!(written, 200);
    let got = s.range(&host("a"), 0, i64::MAX).await.unwrap();
    assert_eq!(stamps(&got), (0..200).map(|i| i * 1000).collect::<Vec<_>>());
    assert!(got.iter().all(|t| tag(t) == (t.ts / 1000) as f64));
    assert_eq!(got[17], tick("a", 17_000, 17.0));
    // The late ones are in range reads by time like the others.
    let mid = s.range(&host("a"), 50_000, 59_000).await.unwrap();
    assert_eq!(stamps(&mid), (50..60).map(|i| i * 1000).collect::<Vec<_>>());
    // Replaying everything, shuffled again, stores nothing more.
    let mut again = ticks.clone();
    again.reverse();
    let out = s.append(&again).await.unwrap();
    assert_eq!((out.written, out.duplicates), (0, 200));
    assert_eq!(s.range(&host("a"), 0, i64::MAX).await.unwrap(), got);
}

pub async fn read_new_follows_arrival<S: TickStore>(s: &S) {
    let first = s.read_new(&S::Cursor::default()).await.unwrap();
    assert!(first.ticks.is_empty());
    s.append(&[
        tick("a", 100_000, 0.0),
        tick("a", 110_000, 0.0),
        tick("b", 100_000, 0.0),
    ])
    .await
    .unwrap();
    let r1 = s.read_new(&first.cursor).await.unwrap();
    assert_eq!(
        keyed(&r1.ticks),
        keyed(&[
            tick("a", 100_000, 0.0),
            tick("a", 110_000, 0.0),
            tick("b", 100_000, 0.0)
        ])
    );
    let again = s.read_new(&r1.cursor).await.unwrap();
    assert!(again.ticks.is_empty(), "{:?}", again.ticks);
    // A late tick (older than what was read) and a new one, and a new host.
    s.append(&[tick("a", 50_000, 1.0)]).await.unwrap();
    s.append(&[tick("a", 120_000, 2.0), tick("c", 1_000, 3.0)])
        .await
        .unwrap();
    s.append(&[tick("a", 110_000, 9.0)]).await.unwrap(); // a duplicate: not new
    let r2 = s.read_new(&r1.cursor).await.unwrap();
    let a: Vec<(i64, f64)> = r2
        .ticks
        .iter()
        .filter(|t| t.host == host("a"))
        .map(|t| (t.ts, tag(t)))
        .collect();
    assert_eq!(
        a,
        vec![(50_000, 1.0), (120_000, 2.0)],
        "arrival order per host"
    );
    assert_eq!(keyed(&r2.ticks).len(), 3);
    assert!(r2.ticks.contains(&tick("c", 1_000, 3.0)));
    // Reading from the old cursor again gives the same ticks.
    let r2b = s.read_new(&r1.cursor).await.unwrap();
    assert_eq!(keyed(&r2b.ticks), keyed(&r2.ticks));
    assert!(s.read_new(&r2.cursor).await.unwrap().ticks.is_empty());
    // From the beginning: everything once.
    let all = s.read_new(&S::Cursor::default()).await.unwrap();
    assert_eq!(all.ticks.len(), 6);
    assert_eq!(keyed(&all.ticks).len(), 6);
}

pub async fn cursor_now_skips_the_past<S: TickStore>(s: &S) {
    let empty_now = s.cursor_now().await.unwrap();
    s.append(&[tick("a", 10_000, 0.0), tick("b", 10_000, 0.0)])
        .await
        .unwrap();
    assert_eq!(s.read_new(&empty_now).await.unwrap().ticks.len(), 2);
    let now = s.cursor_now().await.unwrap();
    assert!(s.read_new(&now).await.unwrap().ticks.is_empty());
    s.append(&[
        tick("a", 5_000, 1.0),
        tick("b", 20_000, 2.0),
        tick("d", 1, 3.0),
    ])
    .await
    .unwrap();
    let r = s.read_new(&now).await.unwrap();
    assert_eq!(
        keyed(&r.ticks),
        keyed(&[
            tick("a", 5_000, 1.0),
            tick("b", 20_000, 2.0),
            tick("d", 1, 3.0)
        ])
    );
}

pub async fn hosts_with_last_seen<S: TickStore>(s: &S) {
    assert!(s.hosts().await.unwrap().is_empty());
    s.append(&[
        tick("web-2", 30_000, 0.0),
        tick("web-1", 10_000, 0.0),
        tick("web-1", 20_000, 0.0),
    ])
    .await
    .unwrap();
    s.append(&[tick("web-2", 5_000, 0.0)]).await.unwrap(); // late: last_seen stays
    let hosts = s.hosts().await.unwrap();
    let got: Vec<(String, i64)> = hosts
        .iter()
        .map(|h| (h.host.to_string(), h.last_seen))
        .collect();
    assert_eq!(
        got,
        vec![("web-1".to_owned(), 20_000), ("web-2".to_owned(), 30_000)]
    );
}

pub async fn prune_removes_old_ticks_and_hosts<S: TickStore>(s: &S) {
    s.append(&[tick("old", 1_000, 0.0), tick("old", 2_000, 0.0)])
        .await
        .unwrap();
    let mut keep = Vec::new();
    for i in 1..=10 {
        keep.push(tick("live", i * 10_000, 0.0));
    }
    s.append(&keep).await.unwrap();
    // Late ticks: one below the cut (removed), one above (kept).
    s.append(&[tick("live", 5_000, 1.0), tick("live", 55_000, 1.0)])
        .await
        .unwrap();
    let out = s.prune(45_000).await.unwrap();
    assert_eq!((out.ticks_removed, out.hosts_removed), (2 + 4 + 1, 1));
    let left = s.range(&host("live"), 0, i64::MAX).await.unwrap();
    assert_eq!(
        stamps(&left),
        vec![50_000, 55_000, 60_000, 70_000, 80_000, 90_000, 100_000]
    );
    assert!(s.range(&host("old"), 0, i64::MAX).await.unwrap().is_empty());
    let hosts = s.hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        (hosts[0].host.as_str(), hosts[0].last_seen),
        ("live", 100_000)
    );
    let all = s.read_new(&S::Cursor::default()).await.unwrap();
    assert_eq!(keyed(&all.ticks), keyed(&left));
    let out = s.prune(45_000).await.unwrap();
    assert_eq!((out.ticks_removed, out.hosts_removed), (0, 0));
    // A host can come back after being forgotten.
    s.append(&[tick("old", 200_000, 0.0)]).await.unwrap();
    assert_eq!(s.hosts().await.unwrap().len(), 2);
    let r = s.read_new(&all.cursor).await.unwrap();
    assert_eq!(keyed(&r.ticks), keyed(&[tick("old", 200_000, 0.0)]));
    // Everything goes.
    let out = s.prune(i64::MAX).await.unwrap();
    assert_eq!((out.ticks_removed, out.hosts_removed), (8, 2));
    assert!(s.hosts().await.unwrap().is_empty());
    assert!(
        s.read_new(&S::Cursor::default())
            .await
            .unwrap()
            .ticks
            .is_empty()
    );
}

pub async fn bad_ticks_are_refused<S: TickStore>(s: &S) {
    let err = s
        .append(&[tick("a", 1_000, 0.0), tick("a", -1, 0.0)])
        .await
        .unwrap_err();
    match err {
        StoreError::Other(m) => assert!(m.contains("host a") && m.contains("-1"), "{m}"),
        other => panic!("expected Other, got {other:?}"),
    }
    assert!(
        s.range(&host("a"), 0, i64::MAX).await.unwrap().is_empty(),
        "nothing written"
    );
    assert_eq!(s.append(&[]).await.unwrap().written, 0);
    // ts 0 is fine.
    assert_eq!(s.append(&[tick("a", 0, 0.0)]).await.unwrap().written, 1);
    assert_eq!(s.append(&[tick("a", 0, 1.0)]).await.unwrap().duplicates, 1);
    assert_eq!(stamps(&s.range(&host("a"), 0, 0).await.unwrap()), vec![0]);
}

pub async fn large_batches<S: TickStore>(s: &S) {
    let ticks: Vec<Tick> = (0..25_000).map(|i| tick("big", i * 10_000, 0.0)).collect();
    let out = s.append(&ticks).await.unwrap();
    assert_eq!(out.written, 25_000);
    let all = s.read_new(&S::Cursor::default()).await.unwrap();
    assert_eq!(all.ticks.len(), 25_000);
    assert_eq!(all.ticks[24_999].ts, 249_990_000);
    assert!(s.read_new(&all.cursor).await.unwrap().ticks.is_empty());
    let day = s.range(&host("big"), 0, 86_400_000 - 1).await.unwrap();
    assert_eq!(day.len(), 8_640);
}

/// `read_new` over more hosts than one read command takes (the Redis store
/// reads up to 1,024 streams per `XREAD`, grouped by hash slot on a
/// cluster): every tick once, then only what arrived after the cursor,
/// a new host included.
pub async fn read_new_over_many_hosts<S: TickStore>(s: &S) {
    let names: Vec<String> = (0..2_600).map(|i| format!("many-{i:04}")).collect();
    let ticks: Vec<Tick> = names
        .iter()
        .enumerate()
        .flat_map(|(i, h)| [tick(h, 1_000_000, i as f64), tick(h, 1_010_000, i as f64)])
        .collect();
    assert_eq!(s.append(&ticks).await.unwrap().written, 5_200);
    let all = s.read_new(&S::Cursor::default()).await.unwrap();
    assert_eq!(all.ticks.len(), 5_200);
    assert_eq!(keyed(&all.ticks), keyed(&ticks));
    for t in &all.ticks {
        let i: usize = t.host.as_str()[5..].parse().unwrap();
        assert_eq!(tag(t), i as f64, "{} carries another host's values", t.host);
    }
    // Every third host sends one more tick; a new host arrives.
    let mut more: Vec<Tick> = names
        .iter()
        .step_by(3)
        .map(|h| tick(h, 1_020_000, 7.0))
        .collect();
    more.push(tick("many-new", 1_020_000, 8.0));
    s.append(&more).await.unwrap();
    let next = s.read_new(&all.cursor).await.unwrap();
    assert_eq!(keyed(&next.ticks), keyed(&more));
    assert_eq!(next.ticks.len(), more.len());
    assert!(s.read_new(&next.cursor).await.unwrap().ticks.is_empty());
}

/// Sealing (stores with chunks; a no-op elsewhere, where every step below
/// holds as well): ticks over three windows, in order and late, sealed
/// twice; reads across chunk edges; duplicates of sealed ticks; a late tick
/// past a sealed chunk; prune through a chunk.
pub async fn sealed_chunks_read_back_and_keep_duplicates<S: TickStore>(s: &S) {
    use metrics_model::chunk::CHUNK_MS;
    let w = CHUNK_MS;
    // Every 60 s over three windows; every 7th held back, sent late.
    let all: Vec<Tick> = (0..(3 * w / 60_000))
        .map(|i| tick("a", 30_000 + i * 60_000, i as f64))
        .collect();
    let (late, first): (Vec<Tick>, Vec<Tick>) = all
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 7 == 3)
        .into_parts();
    assert_eq!(s.append(&first).await.unwrap().written, first.len());
    let cursor = s.cursor_now().await.unwrap();
    let sealed = s.seal(2 * w + 12_345).await.unwrap();
    assert!(sealed.hosts_skipped == 0, "{sealed:?}");
    assert_eq!(s.range(&host("a"), 0, i64::MAX).await.unwrap(), first);
    // Late ticks, into the sealed windows and the open one.
    let out = s.append(&late).await.unwrap();
    assert_eq!((out.written, out.duplicates), (late.len(), 0));
    let new = s.read_new(&cursor).await.unwrap();
    assert_eq!(
        keyed(&new.ticks),
        keyed(&late),
        "read_new sees the late ticks"
    );
    assert_eq!(s.range(&host("a"), 0, i64::MAX).await.unwrap(), all);
    // Duplicates of sealed ticks, and of late ones: the first stays.
    let again: Vec<Tick> = [5usize, 3, 200, 10]
        .iter()
        .map(|&i| tick("a", all[i].ts, -1.0))
        .collect();
    let out = s.append(&again).await.unwrap();
    assert_eq!((out.written, out.duplicates), (0, 4));
    // Seal again: the late ticks join their chunks; nothing changes.
    s.seal(3 * w).await.unwrap();
    assert_eq!(s.range(&host("a"), 0, i64::MAX).await.unwrap(), all);
    let out = s.append(&again).await.unwrap();
    assert_eq!(
        (out.written, out.duplicates),
        (0, 4),
        "duplicates after the second seal"
    );
    // Reads across a chunk edge.
    let (from, to) = (w - 150_000, w + 150_000);
    let want: Vec<Tick> = all
        .iter()
        .filter(|t| (from..=to).contains(&t.ts))
        .cloned()
        .collect();
    assert!(want.len() >= 4);
    assert_eq!(s.range(&host("a"), from, to).await.unwrap(), want);
    assert_eq!(
        stamps(&s.range(&host("a"), all[9].ts, all[9].ts).await.unwrap()),
        vec![all[9].ts]
    );
    // A tick past the sealed chunks, new: written, read back.
    let fresh = tick("a", 45_000, 77.0);
    assert_eq!(
        s.append(std::slice::from_ref(&fresh))
            .await
            .unwrap()
            .written,
        1
    );
    assert_eq!(
        s.range(&host("a"), 40_000, 50_000).await.unwrap(),
        vec![fresh.clone()]
    );
    // Prune through the middle of the second window.
    let cut = w + w / 2 + 1;
    let out = s.prune(cut).await.unwrap();
    let kept: Vec<Tick> = all.iter().filter(|t| t.ts >= cut).cloned().collect();
    assert_eq!(out.ticks_removed, all.len() + 1 - kept.len());
    assert_eq!(s.range(&host("a"), 0, i64::MAX).await.unwrap(), kept);
    // Prune everything: the host is gone.
    let out = s.prune(4 * w).await.unwrap();
    assert_eq!((out.ticks_removed, out.hosts_removed), (kept.len(), 1));
    assert!(s.hosts().await.unwrap().is_empty());
    assert!(s.range(&host("a"), 0, i64::MAX).await.unwrap().is_empty());
}

trait IntoParts<T> {
    fn into_parts(self) -> (Vec<T>, Vec<T>);
}

impl<T> IntoParts<T> for (Vec<(usize, T)>, Vec<(usize, T)>) {
    fn into_parts(self) -> (Vec<T>, Vec<T>) {
        (
            self.0.into_iter().map(|(_, t)| t).collect(),
            self.1.into_iter().map(|(_, t)| t).collect(),
        )
    }
}

/// The property test of sealed chunks (issue 18): any sequence of appends
/// (in order, shuffled, duplicated, late past a sealed chunk) and seals
/// reads back exactly — values bit for bit, the first tick seen for a
/// (host, `ts`) kept — and every append counts exactly its duplicates.
pub mod property {
    use std::collections::BTreeMap;

    use metrics_model::chunk::CHUNK_MS;
    use metrics_model::store::TickStore;
    use metrics_model::{Key, Tick, Values};
    use proptest::prelude::*;

    /// A tick to append: host index, `ts`, (key index, value) pairs.
    pub type PlannedTick = (usize, i64, Vec<(usize, f64)>);

    /// One step.
    #[derive(Debug, Clone)]
    pub enum Op {
        /// Append these ticks (host index, `ts`, values) in one call.
        Append(Vec<PlannedTick>),
        /// Seal before this many windows.
        Seal(i64),
    }

    const HOSTS: [&str; 2] = ["p-a", "p-b"];
    const KEYS: [&str; 6] = [
        "cpu.usage",
        "mem.free",
        "errors.count",
        "disk.usage[/var]",
        "custom.queue[orders]",
        "custom.depth",
    ];

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-10_000i64..10_000).prop_map(|m| m as f64 / 100.0),
            (0u32..50).prop_map(f64::from),
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            Just(-0.0),
        ]
    }

    fn ts() -> impl Strategy<Value = i64> {
        prop_oneof![
            // Regular ticks (duplicates likely), and any millisecond.
            (0i64..(4 * CHUNK_MS / 600_000)).prop_map(|i| i * 600_000),
            0i64..(4 * CHUNK_MS),
        ]
    }

    /// Sequences of appends and seals.
    pub fn ops() -> impl Strategy<Value = Vec<Op>> {
        let tick = (
            0..HOSTS.len(),
            ts(),
            proptest::collection::vec((0..KEYS.len(), value()), 0..KEYS.len()),
        );
        let op = prop_oneof![
            3 => proptest::collection::vec(tick, 1..25).prop_map(Op::Append),
            1 => (1i64..=4).prop_map(Op::Seal),
        ];
        proptest::collection::vec(op, 1..12)
    }

    fn make(h: usize, ts: i64, values: &[(usize, f64)]) -> Tick {
        let vals: Values = values
            .iter()
            .map(|(k, v)| (Key::parse_tick_key(KEYS[*k]).unwrap(), *v))
            .collect();
        Tick::from_values(HOSTS[h].parse().unwrap(), ts, vals)
    }

    fn bits(t: &Tick) -> (String, i64, Vec<(String, u64)>) {
        (
            t.host.to_string(),
            t.ts,
            t.values()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_bits()))
                .collect(),
        )
    }

    /// Runs `ops` on an empty store `s` and checks it against the model.
    pub async fn check<S: TickStore>(s: &S, ops: &[Op]) -> Result<(), String> {
        let mut model: BTreeMap<(usize, i64), Tick> = BTreeMap::new();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Append(list) => {
                    let ticks: Vec<Tick> = list.iter().map(|(h, ts, v)| make(*h, *ts, v)).collect();
                    let mut fresh = 0;
                    // Within one call the first of two equal (host, ts) wins.
                    for (t, (h, ts, _)) in ticks.iter().zip(list) {
                        if let std::collections::btree_map::Entry::Vacant(e) =
                            model.entry((*h, *ts))
                        {
                            e.insert(t.clone());
                            fresh += 1;
                        }
                    }
                    let out = s
                        .append(&ticks)
                        .await
                        .map_err(|e| format!("step {step}: {e}"))?;
                    if (out.written, out.duplicates) != (fresh, ticks.len() - fresh) {
                        return Err(format!(
                            "step {step}: append counted {out:?}, want {fresh} written of {}",
                            ticks.len()
                        ));
                    }
                }
                Op::Seal(windows) => {
                    s.seal(windows * CHUNK_MS)
                        .await
                        .map_err(|e| format!("step {step}: {e}"))?;
                }
            }
            for (h, name) in HOSTS.iter().enumerate() {
                let got = s
                    .range(&name.parse().unwrap(), 0, i64::MAX)
                    .await
                    .map_err(|e| format!("step {step}: {e}"))?;
                let want: Vec<_> = model
                    .range((h, i64::MIN)..=(h, i64::MAX))
                    .map(|(_, t)| bits(t))
                    .collect();
                let got: Vec<_> = got.iter().map(bits).collect();
                if got != want {
                    return Err(format!(
                        "step {step}, host {name}: read back\n{got:?}\nwant\n{want:?}"
                    ));
                }
            }
        }
        // A window's worth read alone, across a chunk edge.
        let (from, to) = (CHUNK_MS - 900_000, CHUNK_MS + 900_000);
        let got: Vec<_> = s
            .range(&HOSTS[0].parse().unwrap(), from, to)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(bits)
            .collect();
        let want: Vec<_> = model
            .range((0, from)..=(0, to))
            .map(|(_, t)| bits(t))
            .collect();
        if got != want {
            return Err(format!("partial range: {got:?} want {want:?}"));
        }
        Ok(())
    }
}
