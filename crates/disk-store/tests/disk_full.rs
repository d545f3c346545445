//! A full (or read-only) disk under the store: every write fails with
//! `ENOSPC` from a backend wrapping redb's own file backend
//! (`disk_store::fault`). Alert writes
//! fail as `Unavailable` (callers retry) and are counted; ticks are kept in
//! memory (up to `SPILL_MAX`), where readers by arrival see them, so
//! evaluation goes on; a held lease is renewed without the disk; what was
//! stored is kept; when space returns the store reopens its file, writes
//! the ticks it kept under their arrival seqs (no reader sees one twice),
//! and an alert commit that failed succeeds when retried. (Range reads
//! wait: after an I/O error redb needs the file reopened, and this backend
//! refuses the write that opening makes.)

use std::sync::atomic::Ordering;

use disk_store::DiskStore;
use disk_store::fault::open_with_full_switch;
use metrics_model::store::{AlertCommit, AlertStore, StoreError, TickStore};
use metrics_model::{HostName, StandardField, Tick};

fn tick(ts: i64, errors: f64) -> Tick {
    let host: HostName = "box".parse().unwrap();
    Tick::new(host, ts, [(StandardField::ErrorsCount.into(), errors)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn writes_fail_as_unavailable_nothing_stored_is_lost_and_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, full) = open_with_full_switch(&data).unwrap();
    let store = store.keeping_ticks_in_memory_when_full();
    let host: HostName = "box".parse().unwrap();
    store
        .append(&[tick(1_000, 1.0), tick(2_000, 2.0)])
        .await
        .unwrap();
    let t = store.acquire_lease("a", 1000).await.unwrap().unwrap();
    let reader = store.cursor_now().await.unwrap();
    let c1 = AlertCommit {
        evaluated_at: 2_000,
        expect_last_evaluated: None,
        states: vec![("k".into(), Some("{\"open\":1}".into()))],
        outbox: vec!["o1".into()],
        resolved: vec![],
    };
    assert_eq!(store.commit("a", t, &c1).await, Ok(1));

    full.store(true, Ordering::SeqCst);
    // Ticks: kept in memory (a duplicate of a kept tick is one).
    let out = store.append(&[tick(3_000, 3.0)]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (1, 0));
    let out = store.append(&[tick(3_000, 9.0)]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (0, 1));
    assert_eq!(store.ticks_in_memory(), 1);
    assert_eq!(store.io_failures(), 2, "each refused write counted");
    // The reader by arrival (the leader) sees them without the disk.
    let fresh = store.read_new(&reader).await.unwrap();
    assert_eq!(
        fresh.ticks.iter().map(|t| t.ts).collect::<Vec<_>>(),
        [3_000]
    );
    let reader = fresh.cursor;
    assert_eq!(store.cursor_now().await.unwrap(), reader);
    // The held lease is renewed; a commit fails and names the file.
    let c2 = AlertCommit {
        evaluated_at: 3_000,
        expect_last_evaluated: Some(2_000),
        states: vec![("k".into(), None)],
        outbox: vec!["o2".into()],
        resolved: vec![(3_000, "r".into(), "{}".into())],
    };
    assert_eq!(store.acquire_lease("a", 1000).await, Ok(Some(t)));
    let err = store.commit("a", t, &c2).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("data"), "names the file: {err}");
    assert!(store.io_failures() >= 3);
    // Reads need the file reopened, which needs space: they wait too.
    assert!(matches!(
        store.range(&host, 0, i64::MAX).await,
        Err(StoreError::Unavailable(_))
    ));

    // Space returns: the next append writes the kept ticks first; the
    // retried commit succeeds and follows what was kept.
    full.store(false, Ordering::SeqCst);
    let out = store.append(&[tick(4_000, 4.0)]).await.unwrap();
    assert_eq!((out.written, out.duplicates), (1, 0));
    assert_eq!(store.ticks_in_memory(), 0);
    let fresh = store.read_new(&reader).await.unwrap();
    assert_eq!(
        fresh.ticks.iter().map(|t| t.ts).collect::<Vec<_>>(),
        [4_000],
        "a kept tick is not read twice once written"
    );
    assert_eq!(store.commit("a", t, &c2).await, Ok(2), "the retried commit");
    let ticks = store.range(&host, 0, i64::MAX).await.unwrap();
    assert_eq!(
        ticks
            .iter()
            .map(|t| (t.ts, t.values().len()))
            .collect::<Vec<_>>(),
        [(1_000, 1), (2_000, 1), (3_000, 1), (4_000, 1)]
    );
    assert_eq!(
        ticks[2].get(&StandardField::ErrorsCount.into()),
        Some(3.0),
        "the first tick seen wins"
    );
    let snap = store.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(3_000));
    assert!(snap.states.is_empty());
    assert_eq!(store.outbox(10).await.unwrap().len(), 2);
    // And it all survives a reopen.
    drop(store);
    let again = DiskStore::open(&data).unwrap();
    assert_eq!(again.range(&host, 0, i64::MAX).await.unwrap().len(), 4);
    // Arrival order survives too: a reader from the start sees each once.
    let all = again
        .read_new(&disk_store::DiskCursor::default())
        .await
        .unwrap();
    assert_eq!(
        all.ticks.iter().map(|t| t.ts).collect::<Vec<_>>(),
        [1_000, 2_000, 3_000, 4_000]
    );
    assert_eq!(again.outbox_len().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_bound_appends_fail_so_that_the_caller_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = open_with_full_switch(&dir.path().join("data")).unwrap();
    let store = store.keeping_ticks_in_memory_when_full();
    full.store(true, Ordering::SeqCst);
    let ticks: Vec<Tick> = (0..disk_store::SPILL_MAX as i64)
        .map(|i| tick(1_000 * (i + 1), 1.0))
        .collect();
    assert_eq!(store.append(&ticks).await.unwrap().written, ticks.len());
    let err = store.append(&[tick(i64::MAX / 2, 1.0)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("kept in memory"), "{err}");
    // The retention janitor cuts kept ticks like stored ones (the file's
    // part of the prune fails, and is retried by the next one).
    assert!(matches!(
        store.prune(1_000 * 101).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(store.ticks_in_memory(), disk_store::SPILL_MAX - 100);
    full.store(false, Ordering::SeqCst);
    store.append(&[]).await.unwrap();
    assert_eq!(store.ticks_in_memory(), 0);
    let host: HostName = "box".parse().unwrap();
    assert_eq!(
        store.range(&host, 0, i64::MAX).await.unwrap().len(),
        disk_store::SPILL_MAX - 100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_memory_keeping_an_append_on_a_full_disk_fails() {
    // Tools (import) open the store without it: their appends must not
    // report stored what only memory would hold.
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = open_with_full_switch(&dir.path().join("data")).unwrap();
    full.store(true, Ordering::SeqCst);
    let err = store.append(&[tick(1_000, 1.0)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_eq!(store.ticks_in_memory(), 0);
    full.store(false, Ordering::SeqCst);
    let host: HostName = "box".parse().unwrap();
    assert!(store.range(&host, 0, i64::MAX).await.unwrap().is_empty());
}
