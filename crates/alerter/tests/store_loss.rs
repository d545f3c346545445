//! The alerter over an alert store that loses its data while an incident is
//! open (a Redis restarted without persistence, here the in-memory store's
//! `lose_data`): the leader writes its state back under a fresh lease, the
//! incident keeps its id and is resolved once; nothing is opened twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alerter::{AlerterSetup, AlerterStats, Mirrored, run_alerter};
use metrics_model::store::{AlertStore, TickStore};
use metrics_model::time::{floor_to, now_ms};
use metrics_model::{HostName, Key, MemoryAlertStore, MemoryStore, Tick};
use rules_engine::{Config, Event};
use tokio::sync::{Notify, watch};

mod common;
use common::{CONFIG, eventually};

/// The open incident's id in the store, if any.
async fn open_id(alerts: &MemoryAlertStore) -> Option<String> {
    let snapshot = alerts.load().await.ok()?;
    let (restored, _) = incidents::persist::decode(&snapshot);
    restored
        .states
        .into_iter()
        .find_map(|s| s.state.open.map(|i| i.id.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_writes_its_state_back_and_the_incident_keeps_its_id() {
    let config = Arc::new(Config::from_json_text(CONFIG, "test").expect("valid config"));
    let ticks = MemoryStore::new();
    let raw = MemoryAlertStore::new();
    let cpu = Arc::new(AtomicU64::new(90f64.to_bits()));

    // A collector: one tick every 200 ms with the current CPU value.
    let feeder = {
        let (ticks, cpu) = (ticks.clone(), cpu.clone());
        tokio::spawn(async move {
            let host: HostName = "node-a".parse().unwrap();
            let field: Key = "cpu.usage".parse().unwrap();
            loop {
                let v = f64::from_bits(cpu.load(Ordering::Relaxed));
                let tick = Tick::new(host.clone(), floor_to(now_ms(), 200), [(field.clone(), v)]);
                let _ = ticks.append(&[tick]).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let (_config_tx, config_rx) = watch::channel(config);
    let stats = Arc::new(AlerterStats::default());
    let setup = AlerterSetup {
        holder: "test:1:00000000".into(),
        config: config_rx,
        stats: stats.clone(),
        committed: Arc::new(Notify::new()),
        on_evaluated: Box::new(|_, _| {}),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let alerter = tokio::spawn(run_alerter(
        ticks.clone(),
        Mirrored::new(raw.clone()),
        setup,
        async move {
            let _ = stop_rx.await;
        },
    ));

    assert!(
        eventually(20, || async { open_id(&raw).await.is_some() }).await,
        "no incident opened"
    );
    let id = open_id(&raw).await.unwrap();

    // The store loses everything: lease, token counter, states, outbox.
    raw.lose_data();
    assert!(
        eventually(5, || async { open_id(&raw).await.as_deref() == Some(&id) }).await,
        "the open incident was not written back within 5 s (store: {:?})",
        raw.load().await
    );
    assert_eq!(stats.write_backs.load(Ordering::Relaxed), 1);

    cpu.store(10f64.to_bits(), Ordering::Relaxed);
    assert!(
        eventually(20, || async {
            raw.resolved(0, i64::MAX, 10)
                .await
                .is_ok_and(|r| !r.is_empty())
        })
        .await,
        "the incident was not resolved"
    );
    let _ = stop_tx.send(());
    alerter.await.unwrap();
    feeder.abort();

    // Nothing was delivered (no delivery loop here): the outbox holds every
    // transition since the start — the open, written back, and its resolve.
    let outbox = raw.outbox(100).await.unwrap();
    let transitions: Vec<_> = outbox
        .iter()
        .map(|e| incidents::persist::decode_transition(&e.payload).unwrap())
        .collect();
    let events: Vec<(Event, String)> = transitions
        .iter()
        .map(|t| (t.event, t.incident.id.to_string()))
        .collect();
    assert_eq!(
        events,
        [(Event::Opened, id.clone()), (Event::Resolved, id.clone())],
        "one open and one resolve, same id"
    );
    let seqs: Vec<u64> = outbox.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "outbox order: {seqs:?}"
    );
    let resolved = raw.resolved(0, i64::MAX, 10).await.unwrap();
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0].contains(&id));
    assert!(open_id(&raw).await.is_none());
}
