//! A leader whose state takes longer to rebuild than one lease TTL (a
//! large cluster: 100,000 hosts' recent ticks) keeps its lease meanwhile:
//! it rebuilds once and then evaluates. Before the lease was renewed during
//! the rebuild, it expired under it; the alerter took a fresh lease and
//! rebuilt again, forever, and never evaluated. The lease lives in a real
//! `redis-server` (the stores whose lease expires by time); the ticks in
//! a store whose range reads are slow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use alerter::{AlerterSetup, AlerterStats, Mirrored, run_alerter};
use metrics_model::memory::{MemoryCursor, MemoryStore};
use metrics_model::store::{
    AppendOutcome, HostInfo, NewTicks, PruneOutcome, StoreError, TickStore,
};
use metrics_model::time::{Millis, floor_to, now_ms};
use metrics_model::{HostName, Key, RedisUrl, Tick};
use redis_store::{RedisOptions, RedisStore};
use rules_engine::Config;
use tokio::sync::{Notify, watch};

mod common;
use common::{CONFIG, eventually};

/// Every `range` read takes [`SlowRanges::delay`].
#[derive(Clone)]
struct SlowRanges {
    inner: MemoryStore,
    delay: Duration,
    ranges: Arc<AtomicUsize>,
}

impl TickStore for SlowRanges {
    type Cursor = MemoryCursor;

    async fn append(&self, ticks: &[Tick]) -> Result<AppendOutcome, StoreError> {
        self.inner.append(ticks).await
    }

    async fn range(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<Tick>, StoreError> {
        self.ranges.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.inner.range(host, from, to).await
    }

    async fn read_new(&self, cursor: &MemoryCursor) -> Result<NewTicks<MemoryCursor>, StoreError> {
        self.inner.read_new(cursor).await
    }

    async fn cursor_now(&self) -> Result<MemoryCursor, StoreError> {
        self.inner.cursor_now().await
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        self.inner.hosts().await
    }

    async fn prune(&self, before: Millis) -> Result<PruneOutcome, StoreError> {
        self.inner.prune(before).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_longer_than_the_lease_ttl_keeps_the_lease_and_then_evaluates() {
    let config = Arc::new(Config::from_json_text(CONFIG, "test").expect("valid config"));
    // The lease lasts 1 s at a 200 ms watcher interval (its minimum); a
    // rebuild takes 3 s.
    let ticks = SlowRanges {
        inner: MemoryStore::new(),
        delay: Duration::from_secs(3),
        ranges: Arc::default(),
    };
    let host: HostName = "node-a".parse().unwrap();
    let field: Key = "cpu.usage".parse().unwrap();
    let now = floor_to(now_ms(), 200);
    let history: Vec<Tick> = (0..10)
        .map(|k| Tick::new(host.clone(), now - k * 200, [(field.clone(), 10.0)]))
        .collect();
    ticks.append(&history).await.unwrap();

    let (_config_tx, config_rx) = watch::channel(config);
    let committed = Arc::new(AtomicU64::new(0));
    let seen = committed.clone();
    let setup = AlerterSetup {
        holder: "test:1:00000000".into(),
        config: config_rx,
        stats: Arc::new(AlerterStats::default()),
        committed: Arc::new(Notify::new()),
        on_evaluated: Box::new(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
        }),
    };
    let redis = test_support::RedisServer::start();
    let url = RedisUrl::parse(&redis.url()).unwrap();
    let alerts = RedisStore::connect(RedisOptions::new(url, "slow-rebuild"))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let alerter = tokio::spawn(run_alerter(
        ticks.clone(),
        Mirrored::new(alerts),
        setup,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let evaluated = eventually(30, || async { committed.load(Ordering::SeqCst) >= 2 }).await;
    let ranges = ticks.ranges.load(Ordering::SeqCst);
    let _ = stop_tx.send(());
    alerter.await.unwrap();
    assert!(
        evaluated,
        "no evaluation committed within 30 s ({ranges} rebuilds started): the lease was lost during the rebuild"
    );
    assert_eq!(ranges, 1, "the state was rebuilt {ranges} times, not once");
}
