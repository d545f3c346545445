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
);

#[test]
fn every_case_is_listed() {
    // `suite::CASES` drives the cluster run; keep it in step with `both!`.
    assert_eq!(suite::CASES.len(), 10);
    let _ = MemoryStore::new();
}
