//! The leader's copy of what the alert store holds, so that a store that
//! lost its data (Redis restarted without persistence, a failover to a
//! replica that had not caught up, the Cluster shard of the alert keys
//! restarted empty) can be written back instead of trusted empty.
//!
//! [`Mirrored`] wraps an [`AlertStore`]: every successful commit, ack, dead
//! letter and prune made through it is applied to the copy as well. A new
//! leader seeds the copy from the store ([`Mirrored::seed`]); when the
//! store's epoch changes under it, the leader writes
//! [`Mirrored::restore_image`] back with [`AlertStore::restore`] under its
//! fresh lease (see [`crate::leader`]).
//!
//! The copy holds: the last evaluated instant, every incident state (open
//! incidents and cooldowns), the undelivered outbox with its sequence
//! numbers, resolved incidents within retention (at most
//! [`RESOLVED_MAX`]; older ones are not kept) and the dead letters. The
//! lease and the token counter are not copied: the write-back runs under
//! the new lease and raises the counter to the old token.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use metrics_model::memory_alerts::DEAD_LETTERS_MAX;
use metrics_model::store::{
    AlertCommit, AlertRestore, AlertSnapshot, AlertStore, DeadLetter, LeaseGrant, LeaseInfo,
    LeaseRequest, OutboxEntry, Record, RecordKind, StoreError,
};
use metrics_model::time::Millis;

/// Resolved incidents kept in the copy at most (the newest).
pub const RESOLVED_MAX: usize = 10_000;
/// Outbox entries read when seeding the copy (an outbox deeper than this
/// means hooks have failed for a long time; the rest is not copied).
pub const OUTBOX_MAX: usize = 100_000;

/// An [`AlertStore`] that keeps a copy of what it holds. Clones share the
/// copy.
#[derive(Debug, Clone)]
pub struct Mirrored<A> {
    inner: A,
    copy: Arc<Mutex<Copy>>,
}

#[derive(Debug, Default)]
struct Copy {
    last_evaluated: Option<Millis>,
    states: BTreeMap<String, String>,
    outbox: BTreeMap<u64, String>,
    outbox_seq: u64,
    /// Acks of entries the copy has not seen yet (a delivery can only ack
    /// what a commit wrote, but the two run in different tasks).
    early_acks: BTreeSet<u64>,
    resolved: BTreeMap<(Millis, String), String>,
    dead: VecDeque<DeadLetter>,
    /// Silences and acknowledgements as last read.
    records: Vec<(RecordKind, Record)>,
}

/// How much a write-back holds, for the log line that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// Incident states (open incidents and cooldowns).
    pub states: usize,
    /// Undelivered outbox entries.
    pub outbox: usize,
    /// Resolved incidents.
    pub resolved: usize,
    /// Dead letters.
    pub dead_letters: usize,
}

impl<A: AlertStore> Mirrored<A> {
    /// Wraps `inner` with an empty copy.
    pub fn new(inner: A) -> Self {
        Mirrored {
            inner,
            copy: Arc::new(Mutex::new(Copy::default())),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, Copy> {
        self.copy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the copy with what the store holds now (a new leader calls
    /// it before evaluating): the snapshot, the outbox, resolved incidents
    /// that ended at or after `resolved_from`, the dead letters. Returns the
    /// snapshot.
    pub async fn seed(&self, resolved_from: Millis) -> Result<AlertSnapshot, StoreError> {
        let snapshot = self.inner.load().await?;
        let outbox = self.inner.outbox(OUTBOX_MAX).await?;
        let resolved = self
            .inner
            .resolved(resolved_from, Millis::MAX, RESOLVED_MAX)
            .await?;
        let dead = self.inner.dead_letters(DEAD_LETTERS_MAX).await?;
        let mut c = self.lock();
        *c = Copy::default();
        c.last_evaluated = snapshot.last_evaluated;
        c.states = snapshot.states.iter().cloned().collect();
        c.outbox_seq = outbox.iter().map(|e| e.seq).max().unwrap_or(0);
        c.outbox = outbox.into_iter().map(|e| (e.seq, e.payload)).collect();
        for json in resolved {
            if let Some(key) = resolved_key(&json) {
                c.resolved.insert(key, json);
            }
        }
        c.dead = dead.into();
        Ok(snapshot)
    }

    /// The last instant committed through this wrapper (or read by
    /// [`Mirrored::seed`]): what the store must still hold for the next
    /// commit to follow it ([`AlertCommit::expect_last_evaluated`]).
    pub fn last_evaluated(&self) -> Option<Millis> {
        self.lock().last_evaluated
    }

    /// What a write-back restores: the whole copy, with `token_floor`.
    pub fn restore_image(&self, token_floor: u64) -> AlertRestore {
        let c = self.lock();
        AlertRestore {
            last_evaluated: c.last_evaluated,
            states: c
                .states
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            outbox: c
                .outbox
                .iter()
                .map(|(seq, p)| OutboxEntry {
                    seq: *seq,
                    payload: p.clone(),
                })
                .collect(),
            outbox_seq: c.outbox_seq,
            resolved: c
                .resolved
                .iter()
                .map(|((end, id), json)| (*end, id.clone(), json.clone()))
                .collect(),
            dead_letters: c.dead.iter().cloned().collect(),
            records: c.records.clone(),
            token_floor,
        }
    }
}

impl ImageSize {
    /// The size of `image`.
    pub fn of(image: &AlertRestore) -> ImageSize {
        ImageSize {
            states: image.states.len(),
            outbox: image.outbox.len(),
            resolved: image.resolved.len(),
            dead_letters: image.dead_letters.len(),
        }
    }
}

/// `(end time, id)` of a resolved incident's JSON, as the commit wrote it.
fn resolved_key(json: &str) -> Option<(Millis, String)> {
    let inc = incidents::persist::decode_incident(json).ok()?;
    Some((inc.end_time?, inc.id.to_string()))
}

impl<A: AlertStore> AlertStore for Mirrored<A> {
    async fn acquire(&self, request: LeaseRequest<'_>) -> Result<LeaseGrant, StoreError> {
        self.inner.acquire(request).await
    }

    async fn restore(
        &self,
        holder: &str,
        token: u64,
        restore: &AlertRestore,
    ) -> Result<(), StoreError> {
        self.inner.restore(holder, token, restore).await
    }

    async fn release_lease(&self, holder: &str, token: u64) -> Result<(), StoreError> {
        self.inner.release_lease(holder, token).await
    }

    async fn lease(&self) -> Result<Option<LeaseInfo>, StoreError> {
        self.inner.lease().await
    }

    async fn load(&self) -> Result<AlertSnapshot, StoreError> {
        self.inner.load().await
    }

    async fn commit(
        &self,
        holder: &str,
        token: u64,
        commit: &AlertCommit,
    ) -> Result<u64, StoreError> {
        let seq = self.inner.commit(holder, token, commit).await?;
        let mut c = self.lock();
        c.last_evaluated = Some(commit.evaluated_at);
        for (key, value) in &commit.states {
            match value {
                Some(v) => c.states.insert(key.clone(), v.clone()),
                None => c.states.remove(key),
            };
        }
        let n = commit.outbox.len() as u64;
        for (i, payload) in commit.outbox.iter().enumerate() {
            let s = (seq + 1 + i as u64).saturating_sub(n);
            if !c.early_acks.remove(&s) {
                c.outbox.insert(s, payload.clone());
            }
        }
        c.outbox_seq = c.outbox_seq.max(seq);
        for (end, id, json) in &commit.resolved {
            c.resolved.insert((*end, id.clone()), json.clone());
        }
        while c.resolved.len() > RESOLVED_MAX {
            c.resolved.pop_first();
        }
        Ok(seq)
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.outbox(limit).await
    }

    async fn ack(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.inner.ack(seqs).await?;
        let mut c = self.lock();
        for s in seqs {
            if c.outbox.remove(s).is_none() && *s > c.outbox_seq {
                c.early_acks.insert(*s);
            }
        }
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.outbox_len().await
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.inner.dead_letter(letter).await?;
        let mut c = self.lock();
        c.dead.push_front(letter.clone());
        c.dead.truncate(DEAD_LETTERS_MAX);
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters(limit).await
    }

    async fn resolved(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.resolved(from, to, limit).await
    }

    async fn prune_resolved(&self, before: Millis) -> Result<usize, StoreError> {
        let n = self.inner.prune_resolved(before).await?;
        let mut c = self.lock();
        let keep = c.resolved.split_off(&(before, String::new()));
        c.resolved = keep;
        Ok(n)
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>, StoreError> {
        let records = self.inner.records(kind).await?;
        // Every read refreshes the copy (the leader reads at every
        // evaluation), so a store that loses them gets them back.
        let mut c = self.lock();
        c.records.retain(|(k, _)| *k != kind);
        c.records.extend(records.iter().map(|r| (kind, r.clone())));
        Ok(records)
    }

    async fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        json: &str,
        keep_until: Millis,
        expected: u64,
    ) -> Result<u64, StoreError> {
        self.inner
            .put_record(kind, id, json, keep_until, expected)
            .await
    }

    async fn prune_records(&self, before: Millis) -> Result<usize, StoreError> {
        let n = self.inner.prune_records(before).await?;
        self.lock().records.retain(|(_, r)| r.keep_until >= before);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_model::MemoryAlertStore;

    fn commit(t: Millis, outbox: &[&str]) -> AlertCommit {
        AlertCommit {
            evaluated_at: t,
            expect_last_evaluated: None,
            states: vec![("k".into(), Some(format!("{{\"t\":{t}}}")))],
            outbox: outbox.iter().map(|s| (*s).to_owned()).collect(),
            resolved: vec![],
        }
    }

    #[tokio::test]
    async fn the_copy_follows_commits_and_acks_and_writes_back_whole() {
        let store = Mirrored::new(MemoryAlertStore::new());
        let t = store.acquire_lease("a", 1000).await.unwrap().unwrap();
        store.seed(0).await.unwrap();
        assert_eq!(
            store.commit("a", t, &commit(10, &["p1", "p2"])).await,
            Ok(2)
        );
        assert_eq!(store.commit("a", t, &commit(20, &["p3"])).await, Ok(3));
        store.ack(&[1, 3]).await.unwrap();
        let letter = DeadLetter {
            at: 5,
            hook: "h".into(),
            error: "e".into(),
            payload: "p0".into(),
        };
        store.dead_letter(&letter).await.unwrap();
        let image = store.restore_image(t);
        assert_eq!(image.last_evaluated, Some(20));
        assert_eq!(image.states, vec![("k".into(), "{\"t\":20}".into())]);
        assert_eq!(
            image.outbox,
            vec![OutboxEntry {
                seq: 2,
                payload: "p2".into()
            }]
        );
        assert_eq!(image.outbox_seq, 3);
        assert_eq!(image.dead_letters, vec![letter.clone()]);

        // The store loses everything; the image goes back under a new lease.
        store.inner().lose_data();
        let t2 = store.acquire_lease("a", 1000).await.unwrap().unwrap();
        store.restore("a", t2, &image).await.unwrap();
        let back = store.inner().load().await.unwrap();
        assert_eq!(back.last_evaluated, Some(20));
        assert_eq!(back.states, image.states);
        assert_eq!(store.inner().outbox(10).await.unwrap(), image.outbox);
        assert_eq!(store.inner().dead_letters(10).await.unwrap(), vec![letter]);
        // The next commit numbers after the restored entries.
        assert_eq!(store.commit("a", t2, &commit(30, &["p4"])).await, Ok(4));
        // The token counter went past the old token.
        store.release_lease("a", t2).await.unwrap();
        let t3 = store.acquire_lease("b", 1000).await.unwrap().unwrap();
        assert!(t3 > t, "token {t3} after a write-back with floor {t}");
    }

    #[tokio::test]
    async fn seeding_copies_what_the_store_holds() {
        let raw = MemoryAlertStore::new();
        let t = raw.acquire_lease("a", 1000).await.unwrap().unwrap();
        let mut c = commit(10, &["p1"]);
        let id = "6f1c2a34-0000-4000-8000-000000000001";
        c.resolved = vec![(
            9,
            id.into(),
            format!(
                r#"{{"id":"{id}","ruleName":"r","hostName":"h","startTime":"1970-01-01T00:00:00.001Z","endTime":"1970-01-01T00:00:00.009Z","triggerValue":1.0}}"#
            ),
        )];
        raw.commit("a", t, &c).await.unwrap();
        let store = Mirrored::new(raw);
        store.seed(0).await.unwrap();
        let image = store.restore_image(t);
        assert_eq!(image.outbox.len(), 1);
        assert_eq!(image.resolved.len(), 1);
        assert_eq!(image.resolved[0].1, id);
        // Pruned history leaves the copy too.
        store.prune_resolved(10).await.unwrap();
        assert!(store.restore_image(t).resolved.is_empty());
    }
}
