//! Redis-only behaviour: authentication, layout versions, outages,
//! concurrent janitors, key names, start-up warnings. Every test starts its
//! own `redis-server`.

mod suite;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_model::store::{StoreError, TickStore};
use metrics_model::{RedisUrl, Tick};
use redis_store::{RedisOptions, RedisStore, RedisStoreError};
use suite::{host, tick};
use test_support::{RedisServer, RedisServerOptions, free_port};

/// Guards against a hang: every store call here must answer long before.
const HANG: Duration = Duration::from_mins(1);

fn opts(url: &str, scope: &str) -> RedisOptions {
    RedisOptions::new(RedisUrl::parse(url).unwrap(), scope)
}

async fn connect(url: &str, scope: &str) -> Result<RedisStore, RedisStoreError> {
    tokio::time::timeout(HANG, RedisStore::connect(opts(url, scope)))
        .await
        .expect("connect hung")
}

#[tokio::test]
async fn acl_user_connects_and_the_password_never_shows() {
    let server = RedisServer::start_with(RedisServerOptions {
        acl_user: Some(("bp-writer".into(), "s3cr3t-Pw".into())),
        ..RedisServerOptions::default()
    });
    let store = connect(&server.url_with_auth("bp-writer", "s3cr3t-Pw"), "bp")
        .await
        .unwrap();
    store.append(&[tick("a", 1_000, 0.0)]).await.unwrap();
    assert_eq!(store.range(&host("a"), 0, 10_000).await.unwrap().len(), 1);
    let shown = format!("{store:?} {}", store.url());
    assert!(
        !shown.contains("s3cr3t-Pw") && shown.contains("***"),
        "{shown}"
    );

    let wrong = connect(&server.url_with_auth("bp-writer", "wr0ng-Pw"), "bp")
        .await
        .unwrap_err();
    let text = format!("{wrong} {wrong:?}");
    assert!(!text.contains("wr0ng-Pw"), "{text}");
    assert!(text.contains("bp-writer:***@127.0.0.1"), "{text}");
    assert!(matches!(wrong, RedisStoreError::Redis(_)), "{wrong:?}");

    let anonymous = connect(&server.url(), "bp").await.unwrap_err();
    assert!(
        !format!("{anonymous:?}").contains("s3cr3t"),
        "{anonymous:?}"
    );
}

#[tokio::test]
async fn a_newer_layout_is_refused() {
    let server = RedisServer::start();
    assert_eq!(server.cli(&["set", "bp:layout", "4"]).trim(), "OK");
    let err = connect(&server.url(), "bp").await.unwrap_err();
    match &err {
        RedisStoreError::Incompatible(m) => {
            assert!(
                m.contains("bp:layout") && m.contains("\"4\"") && m.contains("layouts 1 to 3"),
                "{m}"
            );
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    let as_store_error: StoreError = err.into();
    assert!(matches!(as_store_error, StoreError::Incompatible(_)));
    // Another scope is another layout; an empty scope gets version 1.
    connect(&server.url(), "other").await.unwrap();
    assert_eq!(server.cli(&["get", "other:layout"]).trim(), "1");
    connect(&server.url(), "other").await.unwrap();
    let err = connect(&server.url(), "a{b}").await.unwrap_err();
    assert!(matches!(err, RedisStoreError::Config(_)), "{err:?}");
}

/// Layout 1 (before keys with instances) is read as it is; the scope moves
/// to layout 2 only when a tick that needs it is written, so layout-1
/// readers keep working until then and refuse the scope after.
#[tokio::test]
async fn layout_1_is_read_and_moves_to_2_only_when_a_tick_needs_it() {
    let server = RedisServer::start();
    assert_eq!(server.cli(&["set", "bp:layout", "1"]).trim(), "OK");
    let store = connect(&server.url(), "bp").await.unwrap();
    let host: metrics_model::HostName = "n1".parse().unwrap();
    let v1 = Tick::new(
        host.clone(),
        10_000,
        [
            ("cpu.usage".parse().unwrap(), 5.0),
            ("custom.q".parse().unwrap(), 1.0),
        ],
    );
    store.append(std::slice::from_ref(&v1)).await.unwrap();
    assert_eq!(server.cli(&["get", "bp:layout"]).trim(), "1");
    // The entry is byte for byte what layout 1 wrote.
    let mut blob = Vec::new();
    metrics_model::codec::encode(v1.values(), &mut blob);
    assert!(!metrics_model::codec::uses_keyed_section(&blob));
    let v2 = Tick::new(
        host.clone(),
        20_000,
        [
            ("disk.usage[/var]".parse().unwrap(), 91.0),
            ("load.1".parse().unwrap(), 0.5),
        ],
    );
    store.append(std::slice::from_ref(&v2)).await.unwrap();
    assert_eq!(server.cli(&["get", "bp:layout"]).trim(), "2");
    assert_eq!(store.range(&host, 0, i64::MAX).await.unwrap(), vec![v1, v2]);
    // A second store on the scope reads layout 2.
    let again = connect(&server.url(), "bp").await.unwrap();
    assert_eq!(again.range(&host, 0, i64::MAX).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_down_redis_fails_fast_and_the_store_recovers() {
    let mut server = RedisServer::start_with(RedisServerOptions {
        appendonly: true,
        ..RedisServerOptions::default()
    });
    let mut options = opts(&server.url(), "bp");
    options.command_timeout = Duration::from_secs(1);
    let store = RedisStore::connect(options).await.unwrap();
    store.append(&[tick("a", 10_000, 0.0)]).await.unwrap();
    let cursor = store.cursor_now().await.unwrap();
    server.stop();

    let append = tokio::time::timeout(HANG, store.append(&[tick("a", 20_000, 0.0)]))
        .await
        .expect("append hung while redis was down");
    assert!(
        matches!(append, Err(StoreError::Unavailable(_))),
        "{append:?}"
    );
    let read = tokio::time::timeout(HANG, store.read_new(&cursor))
        .await
        .expect("read_new hung");
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    let range = tokio::time::timeout(HANG, store.range(&host("a"), 0, 100_000))
        .await
        .expect("range hung");
    assert!(
        matches!(range, Err(StoreError::Unavailable(_))),
        "{range:?}"
    );

    // Back up (scripts are gone from the restarted server: reloaded).
    server.restart();
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        match store.append(&[tick("a", 20_000, 0.0)]).await {
            Ok(out) => {
                assert_eq!(out.written, 1);
                break;
            }
            Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("append after restart: {e}"),
        }
    }
    let all = store.range(&host("a"), 0, 100_000).await.unwrap();
    assert_eq!(all.len(), 2);
    let new = store.read_new(&cursor).await.unwrap();
    assert_eq!(new.ticks, vec![tick("a", 20_000, 0.0)]);
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let port = free_port();
    let err = connect(&format!("redis://:pw-xyz@127.0.0.1:{port}"), "bp")
        .await
        .unwrap_err();
    assert!(matches!(err, RedisStoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("pw-xyz"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitors_in_two_processes_remove_each_tick_once() {
    let server = RedisServer::start();
    let a = connect(&server.url(), "bp").await.unwrap();
    let b = connect(&server.url(), "bp").await.unwrap();
    for round in 0..3i64 {
        let base = round * 10_000_000;
        // 12 hosts: the even ones stop reporting before the cut.
        let mut ticks = Vec::new();
        for h in 0..12 {
            let last = if h % 2 == 0 { 400 } else { 1000 };
            for i in 0..last {
                ticks.push(tick(&format!("n{h}"), base + i * 1000, 0.0));
            }
        }
        a.append(&ticks).await.unwrap();
        // A late tick below the cut on an odd host.
        a.append(&[tick("n1", base + 100_500, 1.0)]).await.unwrap();
        let before = base + 500_000;
        // Expected: even hosts lose 400, odd hosts 500 (+1 late on n1).
        let expected_ticks = 6 * 400 + 6 * 500 + 1;
        let newer: Vec<Tick> = (0..50)
            .map(|i| tick("n3", base + 2_000_000 + i * 1000, 0.0))
            .collect();
        let (ra, rb, w) = tokio::join!(a.prune(before), b.prune(before), b.append(&newer));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(w.unwrap().written, 50);
        assert_eq!(
            ra.ticks_removed + rb.ticks_removed,
            expected_ticks,
            "round {round}: {ra:?} {rb:?}"
        );
        assert_eq!(
            ra.hosts_removed + rb.hosts_removed,
            6,
            "round {round}: {ra:?} {rb:?}"
        );
        let hosts = a.hosts().await.unwrap();
        assert_eq!(hosts.len(), 6, "{hosts:?}");
        for h in &hosts {
            let left = a.range(&h.host, 0, i64::MAX).await.unwrap();
            assert!(left.iter().all(|t| t.ts >= before));
            assert_eq!(left.len(), if h.host == host("n3") { 550 } else { 500 });
        }
        // Next round starts clean.
        let out = a.prune(i64::MAX).await.unwrap();
        assert_eq!(out.hosts_removed, 6);
    }
    assert_eq!(
        server.cli(&["dbsize"]).trim(),
        "1",
        "only bp:layout is left"
    );
}

#[tokio::test]
async fn keys_sit_under_the_scope_with_a_host_hash_tag() {
    let server = RedisServer::start();
    let store = connect(&server.url(), "prod.eu-1").await.unwrap();
    store
        .append(&[tick("web-1", 20_000, 0.0), tick("web-1", 10_000, 0.0)])
        .await
        .unwrap();
    store.append(&[tick("web-1", 5_000, 0.0)]).await.unwrap();
    let mut keys: Vec<String> = server
        .cli(&["--raw", "keys", "*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "prod.eu-1:hosts",
            "prod.eu-1:late:{web-1}",
            "prod.eu-1:layout",
            "prod.eu-1:ticks:{web-1}"
        ]
    );
    assert_eq!(
        server.cli(&["type", "prod.eu-1:ticks:{web-1}"]).trim(),
        "stream"
    );
    assert_eq!(server.cli(&["xlen", "prod.eu-1:ticks:{web-1}"]).trim(), "3");
    assert_eq!(server.cli(&["zcard", "prod.eu-1:late:{web-1}"]).trim(), "1");
    // In-order ticks have the ID <ts>-0; the late one the next free ID.
    let ids = server.cli(&["--raw", "xrange", "prod.eu-1:ticks:{web-1}", "-", "+"]);
    assert!(
        ids.contains("10000-0") && ids.contains("20000-0") && ids.contains("20000-1"),
        "{ids}"
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn connect_logged(url: &str) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    connect(url, "bp").await.unwrap();
    captured.text()
}

#[tokio::test]
async fn warns_when_redis_may_evict_or_keeps_nothing_on_disk() {
    let server = RedisServer::start_with(RedisServerOptions {
        requirepass: Some("hunter2-pw".into()),
        extra_args: vec![("maxmemory-policy".into(), "allkeys-lru".into())],
        ..RedisServerOptions::default()
    });
    let log = connect_logged(&server.url_with_auth("", "hunter2-pw")).await;
    assert!(
        log.contains("maxmemory-policy is not noeviction") && log.contains("allkeys-lru"),
        "{log}"
    );
    assert!(log.contains("keeps nothing on disk"), "{log}");
    assert!(!log.contains("hunter2-pw"), "{log}");

    let safe = RedisServer::start_with(RedisServerOptions {
        appendonly: true,
        ..RedisServerOptions::default()
    });
    let log = connect_logged(&safe.url()).await;
    assert!(!log.contains("WARN"), "{log}");
}

#[tokio::test]
async fn rediss_connects_with_tls_and_a_private_ca() {
    let server = RedisServer::start_with(RedisServerOptions {
        tls: true,
        requirepass: Some("tls-Pw-9".into()),
        ..RedisServerOptions::default()
    });
    let port = server.tls_port().unwrap();
    let url = format!("rediss://:tls-Pw-9@127.0.0.1:{port}");
    let mut options = opts(&url, "bp");
    options.tls_ca_file = Some(server.ca_file());
    let store = tokio::time::timeout(HANG, RedisStore::connect(options))
        .await
        .expect("connect hung")
        .unwrap();
    store.append(&[tick("tls", 1_000, 0.0)]).await.unwrap();
    assert_eq!(store.range(&host("tls"), 0, 1_000).await.unwrap().len(), 1);

    // Without the CA the server's certificate is not trusted.
    let err = connect(&url, "bp").await.unwrap_err();
    assert!(!format!("{err:?}").contains("tls-Pw-9"), "{err:?}");
    match err {
        RedisStoreError::Config(m) => assert!(m.contains("certificate is not trusted"), "{m}"),
        other => panic!("expected Config, got {other:?}"),
    }
    // A CA file needs a rediss:// URL.
    let mut plain = opts(&server.url(), "bp");
    plain.tls_ca_file = Some(server.ca_file());
    let err = RedisStore::connect(plain).await.unwrap_err();
    assert!(matches!(err, RedisStoreError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn the_sentinel_url_form_finds_the_master() {
    let master = RedisServer::start();
    let sentinel = test_support::RedisSentinel::start(&master);
    let store = connect(&sentinel.url(), "bp").await.unwrap();
    store.append(&[tick("s", 1_000, 0.0)]).await.unwrap();
    assert_eq!(master.cli(&["xlen", "bp:ticks:{s}"]).trim(), "1");
}

/// Hosts whose registry entries are gone (the registry lost its data) are
/// found again from their tick streams, late ticks included, and the
/// janitor prunes them.
#[tokio::test]
async fn a_lost_registry_is_refilled_from_the_tick_streams() {
    use metrics_model::store::TickStore;
    let server = RedisServer::start();
    let store = connect(&server.url(), "bp").await.unwrap();
    let host = |h: &str| -> metrics_model::HostName { h.parse().unwrap() };
    let tick = |h: &str, ts: i64| {
        metrics_model::Tick::new(host(h), ts, [("cpu.usage".parse().unwrap(), 1.0)])
    };
    let ticks = [
        tick("a", 1_000),
        tick("a", 3_000),
        tick("b", 2_000),
        tick("a", 500),
    ];
    store.append(&ticks).await.unwrap();
    let before = store.hosts().await.unwrap();
    assert_eq!(before.len(), 2);
    assert_eq!(server.cli(&["del", "bp:hosts"]).trim(), "1");
    assert!(store.hosts().await.unwrap().is_empty());
    // A key that only looks like a stream of the scope is not a host.
    server.cli(&["set", "bp:ticks:{c}", "x"]);
    server.cli(&["xadd", "other:ticks:{d}", "1-0", "v", "x"]);
    assert_eq!(store.rediscover_hosts().await.unwrap(), 2);
    assert_eq!(
        store.hosts().await.unwrap(),
        before,
        "last ts of a is 3000, not the late 500"
    );
    let out = redis_store::prune_once(
        &store,
        metrics_model::Duration::from_millis(1).unwrap(),
        10_000,
    )
    .await
    .unwrap();
    assert_eq!((out.ticks_removed, out.hosts_removed), (4, 2));
}

/// The first seal of a long stream (the first janitor pass after an
/// upgrade) goes in rounds of bounded reads (10,000 entries per host and
/// round); the result is the same as one read.
#[tokio::test]
async fn a_long_stream_is_sealed_in_bounded_rounds() {
    use metrics_model::chunk::CHUNK_MS;
    let server = RedisServer::start();
    let store = connect(&server.url(), "bp").await.unwrap();
    // 25,000 one-second ticks: a little under 7 hours, 4 windows.
    let ticks: Vec<Tick> = (0..25_000)
        .map(|i| tick("long", 1_000 + i * 1_000, i as f64))
        .collect();
    for batch in ticks.chunks(1000) {
        store.append(batch).await.unwrap();
    }
    let out = store.seal(4 * CHUNK_MS).await.unwrap();
    assert_eq!(
        (out.ticks_sealed, out.hosts_skipped),
        (25_000, 0),
        "{out:?}"
    );
    assert!(out.hosts_sealed >= 3, "three rounds at least: {out:?}");
    assert_eq!(server.cli(&["xlen", "bp:ticks:{long}"]).trim(), "0");
    assert_eq!(
        server.cli(&["hlen", "bp:chunks:{long}"]).trim(),
        "6",
        "4 windows, h and g"
    );
    assert_eq!(
        store.range(&host("long"), 0, i64::MAX).await.unwrap(),
        ticks
    );
    let out = store.append(&ticks[..1000]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (0, 1000));
}
