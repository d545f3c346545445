//! The alerter on the standalone on-disk store while its disk is full
//! (every write of the file fails with `ENOSPC`: `disk_store::fault`):
//! ticks are kept in memory and evaluation goes on from them; the commits of the instants evaluated meanwhile wait in order (nothing
//! reaches the outbox, so no hook runs before its commit is stored); when
//! space returns every waiting commit is stored in order, the ticks kept in
//! memory are written, and nothing stored before is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerter::{AlerterSetup, AlerterStats, Mirrored, run_alerter};
use disk_store::fault::open_with_full_switch;
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::{floor_to, now_ms};
use metrics_model::{HostName, Key, Tick};
use rules_engine::{Config, Event};
use tokio::sync::{Notify, watch};

mod common;
use common::{CONFIG, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn evaluation_goes_on_from_memory_and_every_commit_lands_in_order_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = open_with_full_switch(&dir.path().join("data")).unwrap();
    let store = store.keeping_ticks_in_memory_when_full();
    let config = Arc::new(Config::from_json_text(CONFIG, "test").expect("valid config"));
    let cpu = Arc::new(AtomicU64::new(10f64.to_bits()));
    let host: HostName = "node-a".parse().unwrap();
    // A collector: one tick every 200 ms with the current CPU value. It
    // records the timestamp of every tick the store accepted (a slot is
    // skipped when the loop runs late on a loaded machine, so the stored
    // ticks are checked against this list, not against the clock).
    let appended: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop_feeding = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (store, cpu, host) = (store.clone(), cpu.clone(), host.clone());
        let (appended, stop) = (appended.clone(), stop_feeding.clone());
        tokio::spawn(async move {
            let field: Key = "cpu.usage".parse().unwrap();
            while !stop.load(Ordering::SeqCst) {
                let v = f64::from_bits(cpu.load(Ordering::Relaxed));
                let ts = floor_to(now_ms(), 200);
                let tick = Tick::new(host.clone(), ts, [(field.clone(), v)]);
                store
                    .append(&[tick])
                    .await
                    .expect("kept, on disk or in memory");
                {
                    let mut appended = appended.lock().unwrap();
                    if appended.last() != Some(&ts) {
                        appended.push(ts);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let (_config_tx, config_rx) = watch::channel(config);
    let stats = Arc::new(AlerterStats::default());
    let evaluated = Arc::new(AtomicU64::new(0));
    let seen = evaluated.clone();
    let setup = AlerterSetup {
        holder: "test:1:00000000".into(),
        config: config_rx,
        stats: stats.clone(),
        committed: Arc::new(Notify::new()),
        on_evaluated: Box::new(move |t, _| seen.store(u64::try_from(t).unwrap(), Ordering::SeqCst)),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let alerter = tokio::spawn(run_alerter(
        store.clone(),
        Mirrored::new(store.clone()),
        setup,
        async move {
            let _ = stop_rx.await;
        },
    ));
    assert!(
        eventually(20, || async { evaluated.load(Ordering::SeqCst) > 0 }).await,
        "nothing evaluated"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before_full = store.range(&host, 0, i64::MAX).await.unwrap().len();
    assert!(before_full >= 3, "{before_full} ticks stored");

    // The disk fills; the CPU goes up, then down again, while it is full.
    full.store(true, Ordering::SeqCst);
    let full_from = now_ms();
    cpu.store(90f64.to_bits(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cpu.store(10f64.to_bits(), Ordering::Relaxed);
    // Evaluation goes on: more commits wait than the one that failed first
    // (the open and the resolve each need their own).
    assert!(
        eventually(20, || async {
            stats.commits_waiting.load(Ordering::Relaxed) >= 2
        })
        .await,
        "evaluation did not go on: {} commits waiting",
        stats.commits_waiting.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        store.ticks_in_memory() >= 15,
        "{} ticks in memory",
        store.ticks_in_memory()
    );
    assert!(store.io_failures() > 0);
    // Nothing was committed meanwhile (so nothing reached the outbox, and
    // no hook could run): the callback runs after each stored commit only.
    let waiting = stats.commits_waiting.load(Ordering::Relaxed);
    let committed_while_full = evaluated.load(Ordering::SeqCst);
    assert!(
        i64::try_from(committed_while_full).unwrap() < full_from,
        "an instant after the disk filled was reported committed"
    );

    // Space returns.
    let full_until = now_ms();
    full.store(false, Ordering::SeqCst);
    assert!(
        eventually(20, || async {
            stats.commits_waiting.load(Ordering::Relaxed) == 0 && store.ticks_in_memory() == 0
        })
        .await,
        "still {} commits waiting, {} ticks in memory",
        stats.commits_waiting.load(Ordering::Relaxed),
        store.ticks_in_memory()
    );
    let _ = stop_tx.send(());
    alerter.await.unwrap();
    stop_feeding.store(true, Ordering::SeqCst);
    feeder.await.unwrap();
    assert!(waiting >= 2);

    // The open and the resolve, in order, one incident, evaluated from the
    // ticks kept in memory.
    let outbox = store.outbox(100).await.unwrap();
    let events: Vec<(Event, String, i64)> = outbox
        .iter()
        .map(|e| {
            let t = incidents::persist::decode_transition(&e.payload).unwrap();
            (t.event, t.incident.id.to_string(), t.at)
        })
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!((events[0].0, events[1].0), (Event::Opened, Event::Resolved));
    assert_eq!(events[0].1, events[1].1, "one incident");
    assert!(
        events
            .iter()
            .all(|(_, _, at)| (full_from..=full_until).contains(at)),
        "both evaluated while the disk was full: {events:?} in {full_from}..={full_until}"
    );
    let resolved = store.resolved(0, i64::MAX, 10).await.unwrap();
    assert_eq!(resolved.len(), 1);
    // Every tick is on disk: before, during (kept in memory, then written)
    // and after; none lost, none twice.
    let ticks = store.range(&host, 0, i64::MAX).await.unwrap();
    assert!(ticks.len() > before_full + 15, "{} ticks", ticks.len());
    let ts: Vec<i64> = ticks.iter().map(|t| t.ts).collect();
    let appended = appended.lock().unwrap().clone();
    assert_eq!(ts, appended, "stored ticks differ from the ticks appended");
    let snapshot = store.load().await.unwrap();
    assert!(snapshot.last_evaluated.unwrap() >= full_until - 1_000);
}
