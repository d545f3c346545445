//! The behavioural suite every `AlertStore` must pass. Each case gets an
//! empty store `s` and a second handle `other` on the same data (a clone of
//! the in-memory store; a second connection to the same Redis), standing for
//! a second alerter process. `alerts.rs` runs it against the in-memory
//! store, a real `redis-server` and a three-master Redis Cluster.

#![allow(dead_code)]

use metrics_model::memory_alerts::DEAD_LETTERS_MAX;
use metrics_model::store::{
    AlertCommit, AlertRestore, AlertSnapshot, AlertStore, DeadLetter, LeaseRequest, OutboxEntry,
    Record, RecordKind, StoreError,
};

/// Every case, by name, for stores that run them one after another.
pub const CASES: &[&str] = &[
    "lease_acquire_renew_release",
    "lease_is_exclusive_under_races",
    "stale_token_is_fenced",
    "commit_round_trip",
    "large_commit",
    "outbox_order_and_ack",
    "dead_letters_bounded_newest_first",
    "resolved_history_range_limit_prune",
    "a_commit_expecting_another_last_instant_is_refused",
    "records_compare_and_set_and_prune",
];

/// Runs the case called `name`.
pub async fn run<S: AlertStore>(name: &str, s: &S, other: &S) {
    match name {
        "lease_acquire_renew_release" => lease_acquire_renew_release(s, other).await,
        "lease_is_exclusive_under_races" => lease_is_exclusive_under_races(s, other).await,
        "stale_token_is_fenced" => stale_token_is_fenced(s, other).await,
        "commit_round_trip" => commit_round_trip(s, other).await,
        "large_commit" => large_commit(s, other).await,
        "outbox_order_and_ack" => outbox_order_and_ack(s, other).await,
        "dead_letters_bounded_newest_first" => dead_letters_bounded_newest_first(s, other).await,
        "resolved_history_range_limit_prune" => {
            resolved_history_range_limit_prune(s, other).await;
        }
        "a_commit_expecting_another_last_instant_is_refused" => {
            a_commit_expecting_another_last_instant_is_refused(s, other).await;
        }
        "records_compare_and_set_and_prune" => records_compare_and_set_and_prune(s, other).await,
        other => panic!("no case {other}"),
    }
}

/// A lease TTL long enough never to expire during a test.
pub const LONG_TTL: u64 = 60_000;

/// A commit with only `evaluated_at` and `outbox` set.
pub fn outbox_commit(at: i64, payloads: &[&str]) -> AlertCommit {
    AlertCommit {
        evaluated_at: at,
        expect_last_evaluated: None,
        outbox: payloads.iter().map(|p| (*p).to_owned()).collect(),
        ..AlertCommit::default()
    }
}

/// The error of a commit fenced for `holder` with `token`.
pub fn fenced<T>(holder: &str, token: u64) -> Result<T, StoreError> {
    Err(StoreError::Fenced {
        holder: holder.to_owned(),
        token,
    })
}

fn set(key: &str, json: &str) -> (String, Option<String>) {
    (key.to_owned(), Some(json.to_owned()))
}

fn del(key: &str) -> (String, Option<String>) {
    (key.to_owned(), None)
}

fn resolved(end: i64, id: &str) -> (i64, String, String) {
    (
        end,
        id.to_owned(),
        format!(r#"{{"id":"{id}","endTime":{end}}}"#),
    )
}

async fn payloads<S: AlertStore>(s: &S) -> Vec<String> {
    s.outbox(usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

pub async fn lease_acquire_renew_release<S: AlertStore>(s: &S, other: &S) {
    assert_eq!(s.lease().await.unwrap(), None);
    let t1 = s.acquire_lease("alerter-a", LONG_TTL).await.unwrap();
    let t1 = t1.expect("a free lease is acquired");
    // Renewing keeps the token.
    assert_eq!(
        s.acquire_lease("alerter-a", LONG_TTL).await.unwrap(),
        Some(t1)
    );
    // Exclusive: the second holder gets nothing while the first holds it.
    assert_eq!(
        other.acquire_lease("alerter-b", LONG_TTL).await.unwrap(),
        None
    );
    let info = other.lease().await.unwrap().expect("a lease is held");
    assert_eq!((info.holder.as_str(), info.token), ("alerter-a", t1));
    assert!(info.expires_in_ms > 0);

    // Releasing with the wrong holder or token does nothing.
    other.release_lease("alerter-b", t1).await.unwrap();
    s.release_lease("alerter-a", t1 + 1).await.unwrap();
    assert_eq!(s.lease().await.unwrap().map(|l| l.token), Some(t1));

    s.release_lease("alerter-a", t1).await.unwrap();
    assert_eq!(s.lease().await.unwrap(), None);
    let t2 = other
        .acquire_lease("alerter-b", LONG_TTL)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert!(t2 > t1, "tokens grow: {t1} then {t2}");
    assert_eq!(s.acquire_lease("alerter-a", LONG_TTL).await.unwrap(), None);
    // A holder name with separators round-trips.
    other.release_lease("alerter-b", t2).await.unwrap();
    let t3 = s
        .acquire_lease("host:a:1234 {x}", LONG_TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(t3 > t2);
    let info = s.lease().await.unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.token), ("host:a:1234 {x}", t3));
    // ... and fences commits by the whole name.
    let empty = outbox_commit(1, &[]);
    assert_eq!(s.commit("host:a", t3, &empty).await, fenced("host:a", t3));
    s.commit("host:a:1234 {x}", t3, &empty).await.unwrap();
}

pub async fn lease_is_exclusive_under_races<S: AlertStore>(s: &S, other: &S) {
    let mut last = 0;
    for round in 0..20 {
        let (a, b) = tokio::join!(
            s.acquire_lease("alerter-a", LONG_TTL),
            other.acquire_lease("alerter-b", LONG_TTL)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let (winner, token) = match (a, b) {
            (Some(t), None) => ("alerter-a", t),
            (None, Some(t)) => ("alerter-b", t),
            both => panic!("round {round}: exactly one holder expected, got {both:?}"),
        };
        assert!(token > last, "round {round}: token {token} after {last}");
        last = token;
        s.release_lease(winner, token).await.unwrap();
    }
}

pub async fn stale_token_is_fenced<S: AlertStore>(s: &S, other: &S) {
    // No lease at all: fenced.
    let err = s.commit("old", 1, &outbox_commit(1_000, &["x"])).await;
    assert_eq!(err, fenced("old", 1));

    let t1 = s.acquire_lease("old", LONG_TTL).await.unwrap().unwrap();
    let first = AlertCommit {
        evaluated_at: 10_000,
        expect_last_evaluated: None,
        states: vec![set("cpu|a", r#"{"open":true}"#)],
        outbox: vec!["opened".into()],
        resolved: vec![resolved(9_000, "i-1")],
    };
    s.commit("old", t1, &first).await.unwrap();
    s.release_lease("old", t1).await.unwrap();
    let t2 = other.acquire_lease("new", LONG_TTL).await.unwrap().unwrap();
    assert!(t2 > t1);

    let before = other.load().await.unwrap();
    let outbox_before = other.outbox(100).await.unwrap();
    let stale = AlertCommit {
        evaluated_at: 20_000,
        expect_last_evaluated: None,
        states: vec![del("cpu|a"), set("mem|b", r#"{"open":true}"#)],
        outbox: vec!["resolved".into(), "opened".into()],
        resolved: vec![resolved(19_000, "i-2")],
    };
    assert_eq!(s.commit("old", t1, &stale).await, fenced("old", t1));
    // A token from the future is fenced too.
    assert_eq!(s.commit("new", t2 + 1, &stale).await, fenced("new", t2 + 1));
    // Nothing changed: states, last_evaluated, outbox, history.
    assert_eq!(other.load().await.unwrap(), before);
    assert_eq!(before.last_evaluated, Some(10_000));
    assert_eq!(other.outbox(100).await.unwrap(), outbox_before);
    assert_eq!(other.outbox_len().await.unwrap(), 1);
    assert_eq!(
        other.resolved(0, i64::MAX, 100).await.unwrap(),
        vec![resolved(9_000, "i-1").2]
    );
    // The current holder commits.
    other.commit("new", t2, &stale).await.unwrap();
    assert_eq!(other.load().await.unwrap().last_evaluated, Some(20_000));
    assert_eq!(other.outbox_len().await.unwrap(), 3);
}

/// Failover to a lagging replica (docs/storage-alerts.md): the promoted
/// replica never saw A's last acquisition, neither the lease nor the token
/// counter's `INCR`, so B is handed A's token again. A still believes it
/// leads (until its next renewal) and commits: the lease's holder, not only
/// its token, must fence it, and nothing may be written. B commits.
///
/// A acquires on `a_side`; `lose_acquisition` then leaves `b_side`, the
/// store everyone reaches after the failover, as if that acquisition had
/// never happened, and loses nothing else. Not in [`CASES`]: it needs the
/// extra argument, so `alerts.rs` runs it on each store explicitly.
pub async fn a_reissued_token_is_fenced_by_holder<S: AlertStore>(
    a_side: &S,
    b_side: &S,
    lose_acquisition: impl Future<Output = ()>,
) {
    let t = a_side
        .acquire_lease("alerter-a", LONG_TTL)
        .await
        .unwrap()
        .expect("a free lease is acquired");
    lose_acquisition.await;
    assert_eq!(b_side.lease().await.unwrap(), None, "the lease was lost");
    let tb = b_side
        .acquire_lease("alerter-b", LONG_TTL)
        .await
        .unwrap()
        .expect("a lost lease is free");
    assert_eq!(tb, t, "the lost INCR hands A's token out again");
    let info = b_side.lease().await.unwrap().expect("B holds the lease");
    assert_eq!((info.holder.as_str(), info.token), ("alerter-b", t));

    // A commits with the same token: fenced by the holder, nothing written.
    let from_a = AlertCommit {
        evaluated_at: 10_000,
        expect_last_evaluated: None,
        states: vec![set("cpu|a", r#"{"open":true}"#)],
        outbox: vec!["opened by a".into()],
        resolved: vec![resolved(9_000, "i-a")],
    };
    assert_eq!(
        b_side.commit("alerter-a", t, &from_a).await,
        fenced("alerter-a", t)
    );
    assert_eq!(b_side.load().await.unwrap(), AlertSnapshot::default());
    assert_eq!(b_side.outbox_len().await.unwrap(), 0);
    assert!(b_side.resolved(0, i64::MAX, 10).await.unwrap().is_empty());
    // A can neither renew nor release B's lease.
    assert_eq!(
        b_side.acquire_lease("alerter-a", LONG_TTL).await.unwrap(),
        None
    );
    b_side.release_lease("alerter-a", t).await.unwrap();
    assert_eq!(
        b_side.lease().await.unwrap().map(|l| l.holder),
        Some("alerter-b".into())
    );

    // B, the holder, commits; A stays fenced.
    b_side
        .commit("alerter-b", t, &outbox_commit(20_000, &["opened by b"]))
        .await
        .unwrap();
    assert_eq!(
        b_side.commit("alerter-a", t, &from_a).await,
        fenced("alerter-a", t)
    );
    let snap = b_side.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(20_000));
    assert!(snap.states.is_empty());
    assert_eq!(payloads(b_side).await, ["opened by b"]);
    assert!(b_side.resolved(0, i64::MAX, 10).await.unwrap().is_empty());
}

pub async fn commit_round_trip<S: AlertStore>(s: &S, other: &S) {
    let empty = s.load().await.unwrap();
    assert_eq!(empty.last_evaluated, None);
    assert!(empty.states.is_empty());

    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    let odd = "ü \"quoted\" \\ back\nslash {} : | ∑ 🚀";
    s.commit(
        "a",
        t,
        &AlertCommit {
            evaluated_at: 60_000,
            expect_last_evaluated: None,
            states: vec![
                set("cpu|web-1", r#"{"s":1}"#),
                set("cpu|web-2", r#"{"s":2}"#),
                set("odd key: {x}", odd),
                set("gone", "x"),
                // Operations apply in order: set then remove.
                del("gone"),
                // Removing an absent key is fine.
                del("never"),
            ],
            outbox: vec![],
            resolved: vec![],
        },
    )
    .await
    .unwrap();
    let snap = other.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(60_000));
    let mut states = snap.states.clone();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("cpu|web-1".to_owned(), r#"{"s":1}"#.to_owned()),
            ("cpu|web-2".to_owned(), r#"{"s":2}"#.to_owned()),
            ("odd key: {x}".to_owned(), odd.to_owned()),
        ]
    );

    // Remove then set again, update, remove.
    s.commit(
        "a",
        t,
        &AlertCommit {
            evaluated_at: 70_000,
            expect_last_evaluated: None,
            states: vec![
                del("cpu|web-1"),
                set("cpu|web-1", r#"{"s":3}"#),
                set("cpu|web-2", r#"{"s":4}"#),
                del("odd key: {x}"),
            ],
            ..AlertCommit::default()
        },
    )
    .await
    .unwrap();
    let mut states = other.load().await.unwrap().states;
    states.sort();
    assert_eq!(
        states,
        vec![
            ("cpu|web-1".to_owned(), r#"{"s":3}"#.to_owned()),
            ("cpu|web-2".to_owned(), r#"{"s":4}"#.to_owned()),
        ]
    );
    // An empty commit still records the instant evaluated.
    s.commit("a", t, &outbox_commit(80_000, &[])).await.unwrap();
    assert_eq!(other.load().await.unwrap().last_evaluated, Some(80_000));
    assert_eq!(other.outbox_len().await.unwrap(), 0);
}

pub async fn large_commit<S: AlertStore>(s: &S, other: &S) {
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    let n = 5_000;
    let json = |i: usize| {
        format!(
            r#"{{"id":"{i:08}","ruleName":"cpu","hostName":"node-{i}","startTime":1767225720000,"triggerValue":93.5}}"#
        )
    };
    let commit = AlertCommit {
        evaluated_at: 1_767_225_720_000,
        expect_last_evaluated: None,
        states: (0..n)
            .map(|i| (format!("cpu|node-{i}"), Some(json(i))))
            .collect(),
        outbox: (0..n).map(json).collect(),
        resolved: (0..2_000)
            .map(|i| (1_767_225_000_000 + i as i64, format!("{i:08}"), json(i)))
            .collect(),
    };
    s.commit("a", t, &commit).await.unwrap();
    let snap = other.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(1_767_225_720_000));
    assert_eq!(snap.states.len(), n);
    assert_eq!(other.outbox_len().await.unwrap(), n as u64);
    let all = other.outbox(usize::MAX).await.unwrap();
    assert_eq!(all.len(), n);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        all.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        commit.outbox
    );
    let hist = other.resolved(0, i64::MAX, usize::MAX).await.unwrap();
    assert_eq!(hist.len(), 2_000);
    assert_eq!(hist[1_999], json(1_999));
    // Acknowledge everything in one call.
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    other.ack(&seqs).await.unwrap();
    assert_eq!(other.outbox_len().await.unwrap(), 0);
}

pub async fn outbox_order_and_ack<S: AlertStore>(s: &S, other: &S) {
    assert!(s.outbox(10).await.unwrap().is_empty());
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    s.commit("a", t, &outbox_commit(1, &["p1", "p2", "p3"]))
        .await
        .unwrap();
    s.commit("a", t, &outbox_commit(2, &["p4"])).await.unwrap();
    s.commit("a", t, &outbox_commit(3, &["p5", "p6"]))
        .await
        .unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 6);
    let all = other.outbox(100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>(),
        ["p1", "p2", "p3", "p4", "p5", "p6"]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    assert!(other.outbox(0).await.unwrap().is_empty());
    let first_two = other.outbox(2).await.unwrap();
    assert_eq!(first_two, all[..2].to_vec());

    // Acknowledge an arbitrary subset, plus an unknown seq, twice.
    let unknown = all[5].seq + 1_000;
    let subset = [all[1].seq, all[4].seq, unknown];
    other.ack(&subset).await.unwrap();
    other.ack(&subset).await.unwrap();
    other.ack(&[]).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 4);
    assert_eq!(payloads(s).await, ["p1", "p3", "p4", "p6"]);
    let rest = s.outbox(2).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [all[0].seq, all[2].seq]
    );

    // Seqs keep growing after the outbox empties.
    let left: Vec<u64> = s.outbox(100).await.unwrap().iter().map(|e| e.seq).collect();
    s.ack(&left).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    s.commit("a", t, &outbox_commit(4, &["p7"])).await.unwrap();
    let next = s.outbox(10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].seq > all[5].seq, "{next:?} after {all:?}");
    assert_eq!(next[0].payload, "p7");
}

pub async fn dead_letters_bounded_newest_first<S: AlertStore>(s: &S, other: &S) {
    assert!(s.dead_letters(10).await.unwrap().is_empty());
    let letter = |i: usize| DeadLetter {
        at: 1_767_225_720_000 + i as i64,
        hook: format!("hook-{i}.js"),
        error: format!("exit status 1: \"quoted\" \\ ü\nline {i}"),
        payload: format!(r#"{{"id":"{i}","note":"a \"b\" / c"}}"#),
    };
    let total = DEAD_LETTERS_MAX + 5;
    for i in 0..total {
        s.dead_letter(&letter(i)).await.unwrap();
    }
    let all = other.dead_letters(usize::MAX).await.unwrap();
    assert_eq!(all.len(), DEAD_LETTERS_MAX, "bounded");
    assert_eq!(all[0], letter(total - 1), "newest first");
    assert_eq!(
        all[DEAD_LETTERS_MAX - 1],
        letter(5),
        "the oldest were dropped"
    );
    assert!(all.windows(2).all(|w| w[0].at > w[1].at));
    assert_eq!(other.dead_letters(3).await.unwrap(), all[..3].to_vec());
    assert!(other.dead_letters(0).await.unwrap().is_empty());
    // A negative time (before the epoch) round-trips too.
    let early = DeadLetter {
        at: -5,
        ..letter(0)
    };
    s.dead_letter(&early).await.unwrap();
    assert_eq!(other.dead_letters(1).await.unwrap(), vec![early]);
}

pub async fn resolved_history_range_limit_prune<S: AlertStore>(s: &S, other: &S) {
    assert!(s.resolved(0, i64::MAX, 10).await.unwrap().is_empty());
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    // Two commits, out of order within each, one tie on end time.
    let c1 = AlertCommit {
        evaluated_at: 1,
        expect_last_evaluated: None,
        resolved: vec![resolved(3_000, "c"), resolved(1_000, "a")],
        ..AlertCommit::default()
    };
    let c2 = AlertCommit {
        evaluated_at: 2,
        expect_last_evaluated: None,
        resolved: vec![
            resolved(5_000, "e"),
            resolved(2_000, "b"),
            resolved(3_000, "c2"),
            resolved(4_000, "d"),
        ],
        ..AlertCommit::default()
    };
    s.commit("a", t, &c1).await.unwrap();
    s.commit("a", t, &c2).await.unwrap();
    let ids = |v: Vec<String>| -> Vec<String> {
        v.iter()
            .map(|j| j.split('"').nth(3).unwrap().to_owned())
            .collect()
    };
    let history = |from, to, limit| other.resolved(from, to, limit);
    assert_eq!(
        ids(history(0, i64::MAX, 100).await.unwrap()),
        ["a", "b", "c", "c2", "d", "e"]
    );
    // Inclusive bounds.
    assert_eq!(
        ids(history(2_000, 4_000, 100).await.unwrap()),
        ["b", "c", "c2", "d"]
    );
    assert_eq!(ids(history(2_001, 3_999, 100).await.unwrap()), ["c", "c2"]);
    assert_eq!(ids(history(2_000, 4_000, 2).await.unwrap()), ["b", "c"]);
    assert!(history(4_000, 2_000, 100).await.unwrap().is_empty());
    assert!(history(0, i64::MAX, 0).await.unwrap().is_empty());
    assert_eq!(history(i64::MIN, i64::MAX, 100).await.unwrap().len(), 6);
    assert_eq!(
        history(1_000, 1_000, 10).await.unwrap(),
        vec![resolved(1_000, "a").2]
    );

    // Prune: ended strictly before `before`; twice is a no-op.
    assert_eq!(s.prune_resolved(1_000).await.unwrap(), 0);
    assert_eq!(s.prune_resolved(3_000).await.unwrap(), 2);
    assert_eq!(s.prune_resolved(3_000).await.unwrap(), 0);
    assert_eq!(
        ids(history(0, i64::MAX, 100).await.unwrap()),
        ["c", "c2", "d", "e"]
    );

    // Two janitors at once remove each incident once.
    let many = AlertCommit {
        evaluated_at: 3,
        expect_last_evaluated: None,
        resolved: (0..2_500)
            .map(|i| resolved(10_000 + i, &format!("m{i:05}")))
            .collect(),
        ..AlertCommit::default()
    };
    s.commit("a", t, &many).await.unwrap();
    let (mine, theirs) = tokio::join!(s.prune_resolved(11_000), other.prune_resolved(11_000));
    assert_eq!(mine.unwrap() + theirs.unwrap(), 4 + 1_000);
    assert_eq!(history(0, i64::MAX, usize::MAX).await.unwrap().len(), 1_500);
    assert_eq!(s.prune_resolved(i64::MAX).await.unwrap(), 1_500);
    assert!(history(i64::MIN, i64::MAX, 10).await.unwrap().is_empty());
}

/// A request for `holder` with [`LONG_TTL`].
fn request<'a>(holder: &'a str, known: Option<&'a str>, grace_ms: u64) -> LeaseRequest<'a> {
    LeaseRequest {
        holder,
        ttl_ms: LONG_TTL,
        known_epoch: known,
        grace_ms,
    }
}

/// The store's epoch: stable while the data lives, new once `lose` wiped
/// the store; a standby that knew the old epoch waits out the grace
/// period, a holder of state takes the lease at once and writes it back
/// with `restore` (outbox sequence numbers kept, token counter raised).
#[allow(clippy::too_many_lines)] // one drill, step by step
pub async fn store_loss_epoch_and_restore<S: AlertStore>(
    s: &S,
    other: &S,
    lose: impl Future<Output = ()>,
) {
    let first = s.acquire(request("a", None, 0)).await.unwrap();
    let t1 = first.token.expect("a free lease is taken");
    assert!(!first.renewed);
    assert_eq!(first.waiting_ms, None);
    let renewed = s.acquire(request("a", None, 0)).await.unwrap();
    assert_eq!((renewed.token, renewed.renewed), (Some(t1), true));
    assert_eq!(renewed.epoch, first.epoch, "the epoch is stable");
    let seen = other
        .acquire(request("b", Some(&first.epoch), 60_000))
        .await
        .unwrap();
    assert_eq!((seen.token, seen.waiting_ms), (None, None), "held by a");
    assert_eq!(seen.epoch, first.epoch);

    let commit = AlertCommit {
        evaluated_at: 7_000,
        expect_last_evaluated: None,
        states: vec![("k1".into(), Some("{\"s\":1}".into()))],
        outbox: vec!["o1".into(), "o2".into(), "o3".into()],
        resolved: vec![(6_000, "r1".into(), "{\"r\":1}".into())],
    };
    assert_eq!(s.commit("a", t1, &commit).await, Ok(3));
    s.ack(&[1]).await.unwrap();
    let letter = DeadLetter {
        at: 5,
        hook: "h".into(),
        error: "e \"quoted\"".into(),
        payload: "{\"x\":\"ü\"}".into(),
    };
    s.dead_letter(&letter).await.unwrap();

    lose.await;
    assert_eq!(s.load().await.unwrap(), AlertSnapshot::default(), "wiped");
    // A standby that knew the old epoch does not take the free lease yet.
    let wait = other
        .acquire(request("b", Some(&first.epoch), 60_000))
        .await
        .unwrap();
    assert_eq!(wait.token, None);
    assert_ne!(wait.epoch, first.epoch, "a new epoch after the loss");
    assert!(
        wait.waiting_ms.is_some_and(|w| w > 0 && w <= 60_000),
        "{wait:?}"
    );
    // The alerter with state takes it at once (no known epoch).
    let again = s.acquire(request("a", None, 0)).await.unwrap();
    let t2 = again.token.expect("taken at once");
    assert!(!again.renewed);
    assert_eq!(again.epoch, wait.epoch);

    let image = AlertRestore {
        last_evaluated: Some(7_000),
        states: vec![("k1".into(), "{\"s\":1}".into())],
        outbox: vec![
            OutboxEntry {
                seq: 2,
                payload: "o2".into(),
            },
            OutboxEntry {
                seq: 3,
                payload: "o3".into(),
            },
        ],
        outbox_seq: 3,
        resolved: vec![(6_000, "r1".into(), "{\"r\":1}".into())],
        dead_letters: vec![letter.clone()],
        records: vec![
            (
                RecordKind::Silence,
                Record {
                    id: "s-lost".into(),
                    version: 3,
                    keep_until: 9_000,
                    json: "{\"lost\":1}".into(),
                },
            ),
            (
                RecordKind::Silence,
                Record {
                    id: "s-new".into(),
                    version: 5,
                    keep_until: 9_000,
                    json: "{\"old\":1}".into(),
                },
            ),
        ],
        token_floor: 41,
    };
    assert_eq!(
        other.restore("b", t2, &image).await,
        fenced("b", t2),
        "restore is fenced"
    );
    assert_eq!(s.load().await.unwrap(), AlertSnapshot::default());
    // A silence written after the loss, before the write-back, wins.
    assert_eq!(
        other
            .put_record(RecordKind::Silence, "s-new", "{\"new\":1}", 9_000, 0)
            .await,
        Ok(1)
    );
    s.restore("a", t2, &image).await.unwrap();
    let silences = other.records(RecordKind::Silence).await.unwrap();
    assert_eq!(
        silences
            .iter()
            .map(|r| (r.id.as_str(), r.json.as_str()))
            .collect::<Vec<_>>(),
        [("s-lost", "{\"lost\":1}"), ("s-new", "{\"new\":1}")]
    );
    assert_eq!(silences[0].version, 3, "the version is kept");
    let back = other.load().await.unwrap();
    assert_eq!(back.last_evaluated, Some(7_000));
    assert_eq!(back.states, image.states);
    assert_eq!(other.outbox(10).await.unwrap(), image.outbox);
    assert_eq!(
        other.resolved(0, 10_000, 10).await.unwrap(),
        ["{\"r\":1}".to_owned()]
    );
    assert_eq!(other.dead_letters(10).await.unwrap(), vec![letter.clone()]);
    // A second write-back replaces the states and does not repeat the dead
    // letters.
    let mut fewer = image.clone();
    fewer.states.clear();
    s.restore("a", t2, &fewer).await.unwrap();
    assert!(other.load().await.unwrap().states.is_empty());
    assert_eq!(other.dead_letters(10).await.unwrap().len(), 1);
    // Numbering goes on after the restored entries.
    assert_eq!(
        s.commit("a", t2, &outbox_commit(8_000, &["o4"])).await,
        Ok(4)
    );
    // The token counter went past the old token.
    s.release_lease("a", t2).await.unwrap();
    let next = other
        .acquire(request("b", Some(&again.epoch), 60_000))
        .await
        .unwrap();
    assert_eq!(next.token, Some(42), "counter raised to the floor, then +1");
    // The epoch is unchanged by all of it.
    assert_eq!(next.epoch, again.epoch);
}

/// The grace period runs from the new epoch's creation: with a zero grace a
/// standby takes a free lease under a new epoch at once.
pub async fn a_new_epoch_past_its_grace_is_taken<S: AlertStore>(
    s: &S,
    lose: impl Future<Output = ()>,
) {
    let first = s.acquire(request("a", None, 0)).await.unwrap();
    let t1 = first.token.unwrap();
    s.release_lease("a", t1).await.unwrap();
    lose.await;
    let g = s
        .acquire(request("b", Some(&first.epoch), 0))
        .await
        .unwrap();
    assert!(g.token.is_some(), "{g:?}");
    assert_ne!(g.epoch, first.epoch);
}

/// A commit that expects the store's last evaluated instant to be its
/// writer's previous commit is refused with `Behind` when the store holds
/// another (it lost commits), and writes nothing.
pub async fn a_commit_expecting_another_last_instant_is_refused<S: AlertStore>(s: &S, other: &S) {
    let t = s.acquire_lease("a", LONG_TTL).await.unwrap().unwrap();
    // No instant stored yet: an expectation fails, none passes.
    let mut c = outbox_commit(1_000, &["p1"]);
    c.expect_last_evaluated = Some(500);
    assert_eq!(
        s.commit("a", t, &c).await,
        Err(StoreError::Behind {
            expected: 500,
            found: None
        })
    );
    assert_eq!(other.outbox_len().await.unwrap(), 0, "nothing written");
    c.expect_last_evaluated = None;
    assert_eq!(s.commit("a", t, &c).await, Ok(1));
    let mut next = outbox_commit(2_000, &["p2"]);
    next.states = vec![("k".into(), Some("{}".into()))];
    next.expect_last_evaluated = Some(1_000);
    assert_eq!(s.commit("a", t, &next).await, Ok(2));
    // The store is behind: it holds 2000, the writer expects 3000.
    let mut behind = outbox_commit(4_000, &["p4"]);
    behind.states = vec![("k".into(), None)];
    behind.expect_last_evaluated = Some(3_000);
    assert_eq!(
        s.commit("a", t, &behind).await,
        Err(StoreError::Behind {
            expected: 3_000,
            found: Some(2_000)
        })
    );
    let snap = other.load().await.unwrap();
    assert_eq!(snap.last_evaluated, Some(2_000));
    assert_eq!(snap.states.len(), 1, "nothing written");
    assert_eq!(other.outbox_len().await.unwrap(), 2);
    // A fenced writer is told so first.
    assert_eq!(s.commit("x", t, &behind).await, fenced("x", t));
}

/// Silences and acknowledgements: compare-and-set by version from any
/// handle, kinds apart, prune by keep-until.
pub async fn records_compare_and_set_and_prune<S: AlertStore>(s: &S, other: &S) {
    let k = RecordKind::Silence;
    assert_eq!(s.records(k).await.unwrap(), vec![]);
    assert_eq!(s.put_record(k, "b", "{\"b\":1}", 5_000, 0).await, Ok(1));
    // A second create of the same id conflicts.
    assert_eq!(
        other.put_record(k, "b", "{\"b\":2}", 5_000, 0).await,
        Err(StoreError::Conflict {
            kind: "silence",
            id: "b".into(),
            found: 1
        })
    );
    assert_eq!(other.put_record(k, "b", "{\"b\":2}", 6_000, 1).await, Ok(2));
    // The first writer, still at version 1, is refused.
    assert!(matches!(
        s.put_record(k, "b", "{\"b\":3}", 6_000, 1).await,
        Err(StoreError::Conflict { found: 2, .. })
    ));
    assert_eq!(
        s.put_record(k, "a", "{\"a\": \"x y\"}", 1_000, 0).await,
        Ok(1)
    );
    assert_eq!(
        s.put_record(RecordKind::Acknowledgement, "a", "{\"ack\":1}", 2_000, 0)
            .await,
        Ok(1)
    );
    let all = other.records(k).await.unwrap();
    assert_eq!(
        all,
        vec![
            Record {
                id: "a".into(),
                version: 1,
                keep_until: 1_000,
                json: "{\"a\": \"x y\"}".into()
            },
            Record {
                id: "b".into(),
                version: 2,
                keep_until: 6_000,
                json: "{\"b\":2}".into()
            },
        ]
    );
    assert_eq!(
        other
            .records(RecordKind::Acknowledgement)
            .await
            .unwrap()
            .len(),
        1
    );
    // Keep-until 1000 and 2000 are before 3000; 6000 is not.
    assert_eq!(s.prune_records(3_000).await, Ok(2));
    assert_eq!(
        other
            .records(k)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(
        other
            .records(RecordKind::Acknowledgement)
            .await
            .unwrap()
            .is_empty()
    );
}
