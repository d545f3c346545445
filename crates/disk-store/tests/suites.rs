//! The behavioural suites every store passes (`crates/redis-store/tests/`),
//! run against [`DiskStore`], each case on a fresh data directory; then
//! what only an on-disk store promises: everything survives a reopen, one
//! process per directory, and a file it cannot read is refused, unchanged.

#[path = "../../redis-store/tests/alerts_suite/mod.rs"]
mod alerts_suite;
#[path = "../../redis-store/tests/suite/mod.rs"]
mod suite;

use std::os::unix::fs::PermissionsExt;

use disk_store::{DiskStore, DiskStoreError, FILE_NAME};
use metrics_model::store::{AlertCommit, AlertStore, DeadLetter, TickStore};

fn fresh() -> (tempfile::TempDir, DiskStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(&dir.path().join("data")).unwrap();
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tick_suite_passes() {
    for case in suite::CASES {
        let (_dir, s) = fresh();
        suite::run(case, &s).await;
    }
}

/// The property test of sealed chunks against the embedded store (a fresh
/// data directory per case).
#[test]
fn any_appends_and_seals_read_back_exactly_on_disk() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&suite::property::ops(), |ops| {
            let (_dir, store) = fresh();
            let result = rt.block_on(suite::property::check(&store, &ops));
            result.map_err(proptest::test_runner::TestCaseError::fail)
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_suite_passes() {
    for case in alerts_suite::CASES {
        let (_dir, s) = fresh();
        alerts_suite::run(case, &s, &s.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reopen_and_the_token_keeps_growing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tick = suite::tick("node-a", 10_000, 1.0);
    let (epoch, t1) = {
        let s = DiskStore::open(&data).unwrap();
        assert_eq!(
            s.append(std::slice::from_ref(&tick)).await.unwrap().written,
            1
        );
        let g = s
            .acquire(metrics_model::store::LeaseRequest {
                holder: "a",
                ttl_ms: 1000,
                known_epoch: None,
                grace_ms: 0,
            })
            .await
            .unwrap();
        let t1 = g.token.unwrap();
        let commit = AlertCommit {
            evaluated_at: 20_000,
            expect_last_evaluated: None,
            states: vec![("k".into(), Some("{\"open\":1}".into()))],
            outbox: vec!["o1".into(), "o2".into()],
            resolved: vec![(19_000, "r".into(), "{\"r\":1}".into())],
        };
        assert_eq!(s.commit("a", t1, &commit).await, Ok(2));
        s.ack(&[1]).await.unwrap();
        s.dead_letter(&DeadLetter {
            at: 1,
            hook: "h".into(),
            error: "e".into(),
            payload: "p".into(),
        })
        .await
        .unwrap();
        (g.epoch, t1)
        // dropped: the file is closed and the lock released, as at a kill
    };
    let s = DiskStore::open(&data).unwrap();
    assert_eq!(
        s.range(&tick.host, 0, i64::MAX).await.unwrap(),
        vec![tick.clone()]
    );
    assert_eq!(s.hosts().await.unwrap()[0].last_seen, 10_000);
    let snap = s.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(20_000));
    assert_eq!(
        snap.states,
        vec![("k".to_owned(), "{\"open\":1}".to_owned())]
    );
    let outbox = s.outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].seq, outbox[0].payload.as_str()), (2, "o2"));
    assert_eq!(s.resolved(0, i64::MAX, 10).await.unwrap(), ["{\"r\":1}"]);
    assert_eq!(s.dead_letters(10).await.unwrap().len(), 1);
    // The lease does not survive (one process per directory), the token
    // counter and the epoch do.
    assert_eq!(s.lease().await.unwrap(), None);
    let g = s
        .acquire(metrics_model::store::LeaseRequest {
            holder: "b",
            ttl_ms: 1000,
            known_epoch: Some(&epoch),
            grace_ms: 60_000,
        })
        .await
        .unwrap();
    assert_eq!(g.epoch, epoch);
    assert_eq!(g.token, Some(t1 + 1));
    // A duplicate after the reopen is still a duplicate.
    assert_eq!(s.append(&[tick]).await.unwrap().duplicates, 1);
    // The arrival order goes on after the reopen.
    let c = s.cursor_now().await.unwrap();
    s.append(&[suite::tick("node-a", 11_000, 2.0)])
        .await
        .unwrap();
    assert_eq!(s.read_new(&c).await.unwrap().ticks.len(), 1);
}

#[test]
fn a_second_process_on_the_directory_is_refused_and_the_mode_is_0700() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let _first = DiskStore::open(&data).unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    // A second open takes the lock through another file description: the
    // same conflict as a second process.
    let err = DiskStore::open(&data).unwrap_err();
    assert!(matches!(err, DiskStoreError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&data.display().to_string()) && msg.contains("--data-dir"),
        "{msg}"
    );
}

#[test]
fn an_unreadable_or_foreign_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let file = data.join(FILE_NAME);
    let garbage = vec![0x5au8; 8192];
    std::fs::write(&file, &garbage).unwrap();
    let same = |a: &[u8], b: &[u8]| a.len() == b.len() && a == b;
    let err = DiskStore::open(&data).unwrap_err();
    assert!(matches!(err, DiskStoreError::Unreadable { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&file.display().to_string()) && msg.contains("Move it aside"),
        "{msg}"
    );
    assert!(
        same(&std::fs::read(&file).unwrap(), &garbage),
        "the file was changed"
    );

    // A store of another layout version.
    std::fs::remove_file(&file).unwrap();
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(def).unwrap();
            t.insert("layout", 9u64.to_le_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&file).unwrap();
    let err = DiskStore::open(&data).unwrap_err();
    assert!(matches!(err, DiskStoreError::Version { .. }), "{err}");
    assert!(err.to_string().contains("layout 9"), "{err}");
    assert!(
        same(&std::fs::read(&file).unwrap(), &before),
        "the file was changed"
    );
}

/// Files of layouts 1 (before keys with instances) and 2 (before sealed
/// chunks) are read and marked 3; the janitor's seal then works on them.
#[tokio::test]
async fn older_layout_files_are_read_and_marked_3() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = data.join("monitoring.redb");
    let host: metrics_model::HostName = "n1".parse().unwrap();
    let v1 = metrics_model::Tick::new(host.clone(), 10_000, [("cpu.usage".parse().unwrap(), 5.0)]);
    {
        let store = DiskStore::open(&data).unwrap();
        store.append(std::slice::from_ref(&v1)).await.unwrap();
    }
    let layout_is = |v: u64| {
        use redb::ReadableDatabase as _;
        let db = redb::ReadOnlyDatabase::open(&file).unwrap();
        let txn = db.begin_read().unwrap();
        let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let t = txn.open_table(def).unwrap();
        t.get("layout").unwrap().unwrap().value() == v.to_le_bytes()
    };
    assert!(layout_is(3));
    for old in [1u64, 2] {
        {
            let db = redb::Database::open(&file).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
                let mut t = txn.open_table(def).unwrap();
                t.insert("layout", old.to_le_bytes().as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        assert!(layout_is(old));
        {
            let store = DiskStore::open(&data).unwrap();
            assert_eq!(
                store.range(&host, 0, i64::MAX).await.unwrap(),
                vec![v1.clone()]
            );
        }
        assert!(layout_is(3));
    }
    let store = DiskStore::open(&data).unwrap();
    let sealed = store.seal(metrics_model::chunk::CHUNK_MS).await.unwrap();
    assert_eq!(sealed.ticks_sealed, 1);
    assert_eq!(store.range(&host, 0, i64::MAX).await.unwrap(), vec![v1]);
}
