//! The behavioural suite against a real three-master Redis Cluster, plus
//! hosts spread over every shard. Holds the machine-wide heavy-test lock.

mod suite;

use metrics_model::RedisUrl;
use metrics_model::store::TickStore;
use redis_store::{RedisOptions, RedisStore};
use test_support::{RedisCluster, heavy_test_lock};

async fn connect(url: &str, scope: &str) -> RedisStore {
    RedisStore::connect(RedisOptions::new(RedisUrl::parse(url).unwrap(), scope))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_a_three_master_cluster() {
    let _lock = heavy_test_lock();
    let cluster = RedisCluster::start();
    let url = cluster.url();

    // Every case on its own scope (an empty store each).
    for (i, case) in suite::CASES.iter().enumerate() {
        let store = connect(&url, &format!("case{i}")).await;
        suite::run(case, &store).await;
    }

    // Hosts spread over the three shards; one read_new sees all of them.
    let store = connect(&url, "spread").await;
    let hosts: Vec<String> = (0..24).map(|i| format!("node-{i}")).collect();
    let mut ticks = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for j in 0..20 {
            ticks.push(suite::tick(h, 1_000_000 + j * 10_000, i as f64));
        }
    }
    // Late ticks on every host too (the Lua path on every shard).
    let late: Vec<_> = hosts.iter().map(|h| suite::tick(h, 5_000, 0.5)).collect();
    let out = store.append(&ticks).await.unwrap();
    assert_eq!(out.written, 480);
    assert_eq!(store.append(&late).await.unwrap().written, 24);
    let mut shards_with_ticks = 0;
    for node in 0..3 {
        let keys = cluster.node_cli(node, &["--raw", "keys", "spread:ticks:*"]);
        if keys.lines().count() > 0 {
            shards_with_ticks += 1;
        }
    }
    assert_eq!(shards_with_ticks, 3, "24 hosts should land on every shard");
    let all = store
        .read_new(&redis_store::RedisCursor::default())
        .await
        .unwrap();
    assert_eq!(all.ticks.len(), 504);
    assert_eq!(store.hosts().await.unwrap().len(), 24);
    // The registry's shard loses it: every host comes back from the streams
    // that survived on the three shards, with its last `ts`.
    let before = store.hosts().await.unwrap();
    assert_eq!(cluster.cli(&["del", "spread:hosts"]).trim(), "1");
    assert!(store.hosts().await.unwrap().is_empty());
    assert_eq!(store.rediscover_hosts().await.unwrap(), 24);
    assert_eq!(store.hosts().await.unwrap(), before);
    assert_eq!(
        store.rediscover_hosts().await.unwrap(),
        0,
        "nothing left to find"
    );
    for h in &hosts {
        let got = store.range(&h.parse().unwrap(), 0, i64::MAX).await.unwrap();
        assert_eq!(got.len(), 21, "{h}");
        assert_eq!(got[0].ts, 5_000);
    }
    // Two janitors at once, on every shard.
    let other = connect(&url, "spread").await;
    let (a, b) = tokio::join!(store.prune(1_100_000), other.prune(1_100_000));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.ticks_removed + b.ticks_removed, 24 * (1 + 10));
    let out = store.prune(i64::MAX).await.unwrap();
    assert_eq!((out.ticks_removed, out.hosts_removed), (24 * 10, 24));
    assert!(store.hosts().await.unwrap().is_empty());
}
