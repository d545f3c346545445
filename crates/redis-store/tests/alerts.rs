//! The alert-store suite (`alerts_suite`) against the in-memory store, a
//! real `redis-server` (one per test, free port, temporary directory) and a
//! three-master Redis Cluster; plus Redis-only behaviour: lease expiry,
//! key layout, atomicity against a corrupt key, outages.

mod alerts_suite;

use std::time::Duration;

use alerts_suite::{LONG_TTL, fenced, outbox_commit};
use metrics_model::RedisUrl;
use metrics_model::store::{AlertCommit, AlertStore, DeadLetter, RecordKind, StoreError};
use redis_store::alerts::AlertKeys;
use redis_store::{RedisOptions, RedisStore};
use test_support::{RedisCluster, RedisServer, RedisServerOptions, heavy_test_lock};

/// Guards against a hang: every store call here must answer long before.
const HANG: Duration = Duration::from_mins(1);

async fn connect_with(opts: RedisOptions) -> RedisStore {
    tokio::time::timeout(HANG, RedisStore::connect(opts))
        .await
        .expect("connect hung")
        .unwrap()
}

async fn connect(url: &str, scope: &str) -> RedisStore {
    connect_with(RedisOptions::new(RedisUrl::parse(url).unwrap(), scope)).await
}

/// Two connections to one Redis: two alerter processes.
async fn pair(url: &str, scope: &str) -> (RedisStore, RedisStore) {
    (connect(url, scope).await, connect(url, scope).await)
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let s = metrics_model::MemoryAlertStore::new();
                    super::alerts_suite::$case(&s, &s.clone()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = test_support::RedisServer::start();
                    let (s, other) = super::pair(&server.url(), "bp").await;
                    super::alerts_suite::$case(&s, &other).await;
                }
            )*
        }
    };
}

both!(
    lease_acquire_renew_release,
    lease_is_exclusive_under_races,
    stale_token_is_fenced,
    commit_round_trip,
    large_commit,
    outbox_order_and_ack,
    dead_letters_bounded_newest_first,
    resolved_history_range_limit_prune,
    a_commit_expecting_another_last_instant_is_refused,
    records_compare_and_set_and_prune,
);

#[test]
fn every_case_is_listed() {
    // `alerts_suite::CASES` drives the cluster run; keep it in step with `both!`.
    assert_eq!(alerts_suite::CASES.len(), 10);
    assert_eq!(
        redis_store::alerts::DEAD_LETTERS_MAX,
        metrics_model::memory_alerts::DEAD_LETTERS_MAX
    );
}

/// `alerts_suite::a_reissued_token_is_fenced_by_holder`: a failover to a
/// replica that lost A's acquisition hands A's token to B.
mod failover_to_a_lagging_replica {
    use metrics_model::MemoryAlertStore;
    use redis_store::alerts::AlertKeys;

    #[tokio::test]
    async fn memory() {
        // The in-memory store lives in one process and cannot lose an
        // `INCR` by itself. A failover is a second copy of the data taking
        // over: here a second store, the replica, that has everything the
        // primary had before A's acquisition (nothing) and not that
        // acquisition. Its counter hands A's token out again, as Redis's does
        // below after losing the `INCR`.
        let primary = MemoryAlertStore::new();
        let replica = MemoryAlertStore::new();
        super::alerts_suite::a_reissued_token_is_fenced_by_holder(&primary, &replica, async {})
            .await;
    }

    #[tokio::test]
    async fn redis() {
        let server = test_support::RedisServer::start();
        let (a, b) = super::pair(&server.url(), "bp").await;
        let k = AlertKeys::new("bp");
        // What the promoted replica lacks: the lease A set and the `INCR`
        // that gave A its token.
        let lose = async {
            assert_eq!(server.cli(&["del", &k.lease()]).trim(), "1");
            server.cli(&["decr", &k.token()]);
        };
        super::alerts_suite::a_reissued_token_is_fenced_by_holder(&a, &b, lose).await;
    }
}

/// A store that loses its data: the memory store's `lose_data`, and a
/// `FLUSHALL` of the Redis (what a restart without persistence leaves).
mod store_loss {
    #[tokio::test]
    async fn memory() {
        let s = metrics_model::MemoryAlertStore::new();
        let lose = async { s.lose_data() };
        super::alerts_suite::store_loss_epoch_and_restore(&s, &s.clone(), lose).await;
        let s = metrics_model::MemoryAlertStore::new();
        let lose = async { s.lose_data() };
        super::alerts_suite::a_new_epoch_past_its_grace_is_taken(&s, lose).await;
    }

    #[tokio::test]
    async fn redis() {
        let server = test_support::RedisServer::start();
        let (s, other) = super::pair(&server.url(), "bp").await;
        let lose = async {
            server.cli(&["flushall"]);
        };
        super::alerts_suite::store_loss_epoch_and_restore(&s, &other, lose).await;
        server.cli(&["flushall"]);
        let lose = async {
            server.cli(&["flushall"]);
        };
        super::alerts_suite::a_new_epoch_past_its_grace_is_taken(&s, lose).await;
    }
}

/// The lease expires unless renewed; the next holder then gets a larger
/// token and the old holder is fenced.
async fn lease_expiry(s: &RedisStore, other: &RedisStore) {
    let t1 = s.acquire_lease("old", 200).await.unwrap().unwrap();
    let info = s.lease().await.unwrap().unwrap();
    assert!(info.expires_in_ms <= 200, "{info:?}");
    assert_eq!(other.acquire_lease("new", LONG_TTL).await.unwrap(), None);
    s.commit("old", t1, &outbox_commit(1_000, &["before expiry"]))
        .await
        .unwrap();

    // Poll until the lease has expired and the other holder takes it.
    let deadline = tokio::time::Instant::now() + HANG;
    let t2 = loop {
        if let Some(t) = other.acquire_lease("new", LONG_TTL).await.unwrap() {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a 200 ms lease did not expire within {HANG:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(t2 > t1, "{t2} after {t1}");
    let info = other.lease().await.unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.token), ("new", t2));
    assert!(info.expires_in_ms > 1_000, "{info:?}");

    // The paused old leader comes back: it cannot renew nor write.
    assert_eq!(s.acquire_lease("old", 200).await.unwrap(), None);
    let late = AlertCommit {
        evaluated_at: 2_000,
        expect_last_evaluated: None,
        states: vec![("cpu|a".into(), Some("{}".into()))],
        outbox: vec!["after expiry".into()],
        resolved: vec![(1_500, "i".into(), "{}".into())],
    };
    assert_eq!(s.commit("old", t1, &late).await, fenced("old", t1));
    let snap = other.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(1_000));
    assert!(snap.states.is_empty());
    let out = other.outbox(10).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, "before expiry");
    assert!(other.resolved(0, i64::MAX, 10).await.unwrap().is_empty());
    other.commit("new", t2, &late).await.unwrap();
}

#[tokio::test]
async fn a_lease_expires_and_the_next_holder_gets_a_larger_token() {
    let server = RedisServer::start();
    let (s, other) = pair(&server.url(), "bp").await;
    lease_expiry(&s, &other).await;
}

#[tokio::test]
async fn renewing_extends_the_lease_and_the_token_counter_never_expires() {
    let server = RedisServer::start();
    let s = connect(&server.url(), "bp").await;
    let k = AlertKeys::new("bp");
    let t = s.acquire_lease("a", 200).await.unwrap().unwrap();
    assert_eq!(s.acquire_lease("a", LONG_TTL).await.unwrap(), Some(t));
    let info = s.lease().await.unwrap().unwrap();
    assert!(info.expires_in_ms > 1_000, "renewed: {info:?}");
    let ttl: i64 = server.cli(&["pttl", &k.lease()]).trim().parse().unwrap();
    assert!(ttl > 1_000, "lease pttl {ttl}");
    assert_eq!(server.cli(&["ttl", &k.token()]).trim(), "-1");
    // A zero TTL is taken as the shortest lease, not as an error.
    s.release_lease("a", t).await.unwrap();
    assert!(s.acquire_lease("b", 0).await.unwrap().is_some());
}

#[tokio::test]
async fn keys_sit_under_one_hash_tag_of_the_scope() {
    let server = RedisServer::start();
    let s = connect(&server.url(), "team-1").await;
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    let commit = AlertCommit {
        evaluated_at: 5,
        expect_last_evaluated: None,
        states: vec![("cpu|a".into(), Some("{}".into()))],
        outbox: vec!["p".into()],
        resolved: vec![(4, "i".into(), "{}".into())],
    };
    s.commit("a", t, &commit).await.unwrap();
    s.dead_letter(&DeadLetter {
        at: 1,
        hook: "h".into(),
        error: "e".into(),
        payload: "p".into(),
    })
    .await
    .unwrap();
    for kind in RecordKind::ALL {
        s.put_record(kind, "r", "{}", 1, 0).await.unwrap();
    }
    let mut keys: Vec<String> = server
        .cli(&["--raw", "keys", "*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    let mut expected = s.alert_keys().all();
    expected.push("team-1:layout".into());
    expected.sort();
    assert_eq!(keys, expected);
    for key in s.alert_keys().all() {
        assert!(key.starts_with("{team-1:alerts}:"), "{key}");
    }
    // The JSON of a dead letter is readable by operators.
    let raw = server.cli(&["--raw", "lrange", &s.alert_keys().dead(), "0", "0"]);
    assert_eq!(
        raw.trim(),
        r#"{"at":1,"hook":"h","error":"e","payload":"p"}"#
    );
}

#[tokio::test]
async fn a_key_of_the_wrong_type_fails_the_commit_without_writing() {
    let server = RedisServer::start();
    let s = connect(&server.url(), "bp").await;
    let k = AlertKeys::new("bp");
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    s.commit("a", t, &outbox_commit(1, &["first"]))
        .await
        .unwrap();
    server.cli(&["set", &k.resolved(), "not a sorted set"]);
    let commit = AlertCommit {
        evaluated_at: 2,
        expect_last_evaluated: None,
        states: vec![("cpu|a".into(), Some("{}".into()))],
        outbox: vec!["second".into()],
        resolved: vec![(1, "i".into(), "{}".into())],
    };
    let err = s.commit("a", t, &commit).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Other(m) if m.contains(&k.resolved())),
        "{err:?}"
    );
    let snap = s.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(1));
    assert!(snap.states.is_empty());
    assert_eq!(s.outbox_len().await.unwrap(), 1);

    server.cli(&["del", &k.resolved()]);
    s.commit("a", t, &commit).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 2);
}

#[tokio::test]
async fn a_down_redis_is_unavailable_without_the_password_and_recovers() {
    let password = "s3cr3t-Pw";
    let mut server = RedisServer::start_with(RedisServerOptions {
        requirepass: Some(password.into()),
        appendonly: true,
        ..RedisServerOptions::default()
    });
    let url = RedisUrl::parse(&server.url_with_auth("", password)).unwrap();
    let mut opts = RedisOptions::new(url, "bp");
    opts.command_timeout = Duration::from_secs(1);
    let s = connect_with(opts).await;
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    s.commit("a", t, &outbox_commit(1, &["p1"])).await.unwrap();
    server.stop();

    let letter = DeadLetter {
        at: 1,
        hook: "h".into(),
        error: "e".into(),
        payload: "p".into(),
    };
    let results: Vec<(&str, Result<(), StoreError>)> = vec![
        ("acquire", s.acquire_lease("a", LONG_TTL).await.map(drop)),
        ("release", s.release_lease("a", t).await),
        ("lease", s.lease().await.map(drop)),
        ("load", s.load().await.map(drop)),
        (
            "commit",
            s.commit("a", t, &outbox_commit(2, &["p2"])).await.map(drop),
        ),
        ("outbox", s.outbox(10).await.map(drop)),
        ("ack", s.ack(&[1]).await),
        ("outbox_len", s.outbox_len().await.map(drop)),
        ("dead_letter", s.dead_letter(&letter).await),
        ("dead_letters", s.dead_letters(10).await.map(drop)),
        ("resolved", s.resolved(0, 10, 10).await.map(drop)),
        ("prune_resolved", s.prune_resolved(10).await.map(drop)),
    ];
    for (what, r) in results {
        match r {
            Err(StoreError::Unavailable(m)) => {
                assert!(!m.contains(password), "{what}: password in {m:?}");
            }
            other => panic!("{what} while redis is down: {other:?}"),
        }
    }

    // Back up (the restarted server has lost its scripts: reloaded).
    server.restart();
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        match s.commit("a", t, &outbox_commit(3, &["p3"])).await {
            Ok(_) => break,
            Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("commit after restart: {e}"),
        }
    }
    let payloads: Vec<String> = s
        .outbox(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(payloads, ["p1", "p3"]);
    assert_eq!(s.load().await.unwrap().last_evaluated, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_a_three_master_cluster() {
    let _lock = heavy_test_lock();
    let cluster = RedisCluster::start();
    let url = cluster.url();

    // Every case on its own scope (an empty store each), two connections.
    for (i, case) in alerts_suite::CASES.iter().enumerate() {
        let (s, other) = pair(&url, &format!("case{i}")).await;
        alerts_suite::run(case, &s, &other).await;
    }
    let (s, other) = pair(&url, "expiry").await;
    lease_expiry(&s, &other).await;
    let (a_side, b_side) = pair(&url, "failover").await;
    let keys = AlertKeys::new("failover");
    let lose = async {
        assert_eq!(cluster.cli(&["del", &keys.lease()]).trim(), "1");
        cluster.cli(&["decr", &keys.token()]);
    };
    alerts_suite::a_reissued_token_is_fenced_by_holder(&a_side, &b_side, lose).await;

    // Every alert key of a scope in one slot, on one node.
    let s = connect(&url, "layout").await;
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    let commit = AlertCommit {
        evaluated_at: 5,
        expect_last_evaluated: None,
        states: vec![("cpu|a".into(), Some("{}".into()))],
        outbox: vec!["p".into()],
        resolved: vec![(4, "i".into(), "{}".into())],
    };
    s.commit("a", t, &commit).await.unwrap();
    s.dead_letter(&DeadLetter {
        at: 1,
        hook: "h".into(),
        error: "e".into(),
        payload: "p".into(),
    })
    .await
    .unwrap();
    for kind in RecordKind::ALL {
        s.put_record(kind, "r", "{}", 1, 0).await.unwrap();
    }
    let keys = s.alert_keys().all();
    let slots: Vec<String> = keys
        .iter()
        .map(|k| cluster.cli(&["cluster", "keyslot", k]).trim().to_owned())
        .collect();
    assert!(slots.iter().all(|s| *s == slots[0]), "{slots:?}");
    let mut holders = Vec::new();
    for node in 0..3 {
        let mut found: Vec<String> = cluster
            .node_cli(node, &["--raw", "keys", "{layout:alerts}:*"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        found.sort();
        if !found.is_empty() {
            holders.push((node, found));
        }
    }
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(holders.len(), 1, "alert keys on several nodes: {holders:?}");
    assert_eq!(holders[0].1, expected);
}
