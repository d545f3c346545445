//! The behavioural suite against the in-memory store and against a real
//! `redis-server` (one per test, on a free port in a temporary directory).

mod suite;

use metrics_model::{MemoryStore, RedisUrl};
use redis_store::{RedisOptions, RedisStore};
use test_support::RedisServer;

async fn redis_store(server: &RedisServer) -> RedisStore {
    let url = RedisUrl::parse(&server.url()).unwrap();
    RedisStore::connect(RedisOptions::new(url, "bp"))
        .await
        .unwrap()
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::suite::$case(&metrics_model::MemoryStore::new()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = test_support::RedisServer::start();
                    let store = super::redis_store(&server).await;
                    super::suite::$case(&store).await;
                }
            )*
        }
    };
}

both!(
    append_and_range,
    values_round_trip,
    duplicates_first_wins,
    out_of_order,
    read_new_follows_arrival,
    cursor_now_skips_the_past,
    hosts_with_last_seen,
    prune_removes_old_ticks_and_hosts,
    bad_ticks_are_refused,
    large_batches,
    sealed_chunks_read_back_and_keep_duplicates,
    read_new_over_many_hosts,
);

/// The property test of sealed chunks against a real `redis-server` (one
/// server, a fresh scope per case).
#[test]
fn any_appends_and_seals_read_back_exactly_in_redis() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let url = RedisUrl::parse(&server.url()).unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&suite::property::ops(), |ops| {
            let scope = format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let result = rt.block_on(async {
                let store = RedisStore::connect(RedisOptions::new(url.clone(), &scope))
                    .await
                    .unwrap();
                suite::property::check(&store, &ops).await
            });
            result.map_err(proptest::test_runner::TestCaseError::fail)
        })
        .unwrap();
}

#[test]
fn every_case_is_listed() {
    // `suite::CASES` drives the cluster run; keep it in step with `both!`.
    assert_eq!(suite::CASES.len(), 12);
    let _ = MemoryStore::new();
}
