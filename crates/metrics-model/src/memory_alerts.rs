//! [`MemoryAlertStore`]: the in-memory [`AlertStore`] of standalone mode
//! and tests. State lives as long as the process.
//!
//! The lease has no clock here: it is held by the first holder until
//! released. Standalone mode has one alerter, so that is all it needs; HA
//! across processes needs the Redis store. The store's epoch is drawn when
//! it is created; [`MemoryAlertStore::lose_data`] plays a store that lost
//! everything (for the store-loss tests).

use std::collections::{BTreeMap, VecDeque};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{
    AlertCommit, AlertRestore, AlertSnapshot, AlertStore, DeadLetter, LeaseGrant, LeaseInfo,
    LeaseRequest, OutboxEntry, RECORDS_MAX, Record, RecordKind, StoreError,
};
use crate::time::{Millis, now_ms};

/// Dead letters kept at most; older ones are dropped.
pub const DEAD_LETTERS_MAX: usize = 1000;

/// An in-memory alert store. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryAlertStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The epoch and when it was drawn (ms); drawn on first use.
    epoch: Option<(String, Millis)>,
    lease: Option<(String, u64)>,
    last_token: u64,
    last_evaluated: Option<Millis>,
    states: BTreeMap<String, String>,
    outbox: BTreeMap<u64, String>,
    next_seq: u64,
    /// (end time, id) → json.
    resolved: BTreeMap<(Millis, String), String>,
    dead: VecDeque<DeadLetter>,
    records: BTreeMap<(RecordKind, String), Record>,
}

impl MemoryAlertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything — lease, token counter, states, outbox, history,
    /// dead letters — and draws a new epoch at the next use: what a Redis
    /// restarted without persistence looks like to an alerter.
    pub fn lose_data(&self) {
        *self.lock() = Inner::default();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in
        // a way that matters more than losing the process; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AlertStore for MemoryAlertStore {
    fn acquire(
        &self,
        request: LeaseRequest<'_>,
    ) -> impl Future<Output = Result<LeaseGrant, StoreError>> + Send {
        let mut g = self.lock();
        let now = now_ms();
        let (epoch, epoch_at) = g
            .epoch
            .get_or_insert_with(|| (uuid::Uuid::new_v4().simple().to_string(), now))
            .clone();
        let mut grant = LeaseGrant {
            token: None,
            renewed: false,
            epoch: epoch.clone(),
            waiting_ms: None,
        };
        match &g.lease {
            Some((h, token)) if h == request.holder => {
                grant.token = Some(*token);
                grant.renewed = true;
            }
            Some(_) => {}
            None => {
                let age = u64::try_from(now.saturating_sub(epoch_at)).unwrap_or(0);
                if request.known_epoch.is_some_and(|k| k != epoch) && age < request.grace_ms {
                    grant.waiting_ms = Some(request.grace_ms - age);
                } else {
                    g.last_token += 1;
                    let token = g.last_token;
                    g.lease = Some((request.holder.to_owned(), token));
                    grant.token = Some(token);
                }
            }
        }
        ready(Ok(grant))
    }

    fn restore(
        &self,
        holder: &str,
        token: u64,
        restore: &AlertRestore,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut g = self.lock();
        if g.lease
            .as_ref()
            .is_none_or(|(h, t)| h != holder || *t != token)
        {
            return ready(Err(StoreError::Fenced {
                holder: holder.to_owned(),
                token,
            }));
        }
        g.last_token = g.last_token.max(restore.token_floor);
        if restore.last_evaluated.is_some() {
            g.last_evaluated = restore.last_evaluated;
        }
        g.states = restore.states.iter().cloned().collect();
        for e in &restore.outbox {
            g.outbox.insert(e.seq, e.payload.clone());
        }
        let top = restore.outbox.iter().map(|e| e.seq).max().unwrap_or(0);
        g.next_seq = g.next_seq.max(restore.outbox_seq).max(top);
        for (kind, r) in &restore.records {
            g.records
                .entry((*kind, r.id.clone()))
                .or_insert_with(|| r.clone());
        }
        for (end, id, json) in &restore.resolved {
            g.resolved.insert((*end, id.clone()), json.clone());
        }
        if g.dead.is_empty() {
            g.dead = restore
                .dead_letters
                .iter()
                .take(DEAD_LETTERS_MAX)
                .cloned()
                .collect();
        }
        ready(Ok(()))
    }

    fn release_lease(
        &self,
        holder: &str,
        token: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut g = self.lock();
        if g.lease
            .as_ref()
            .is_some_and(|(h, t)| h == holder && *t == token)
        {
            g.lease = None;
        }
        ready(Ok(()))
    }

    fn lease(&self) -> impl Future<Output = Result<Option<LeaseInfo>, StoreError>> + Send {
        let g = self.lock();
        ready(Ok(g.lease.as_ref().map(|(holder, token)| LeaseInfo {
            holder: holder.clone(),
            token: *token,
            expires_in_ms: u64::MAX,
        })))
    }

    fn load(&self) -> impl Future<Output = Result<AlertSnapshot, StoreError>> + Send {
        let g = self.lock();
        ready(Ok(AlertSnapshot {
            last_evaluated: g.last_evaluated,
            states: g
                .states
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }))
    }

    fn commit(
        &self,
        holder: &str,
        token: u64,
        commit: &AlertCommit,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let mut g = self.lock();
        if g.lease
            .as_ref()
            .is_none_or(|(h, t)| h != holder || *t != token)
        {
            return ready(Err(StoreError::Fenced {
                holder: holder.to_owned(),
                token,
            }));
        }
        if let Some(expected) = commit.expect_last_evaluated
            && g.last_evaluated != Some(expected)
        {
            return ready(Err(StoreError::Behind {
                expected,
                found: g.last_evaluated,
            }));
        }
        g.last_evaluated = Some(commit.evaluated_at);
        for (key, value) in &commit.states {
            match value {
                Some(v) => g.states.insert(key.clone(), v.clone()),
                None => g.states.remove(key),
            };
        }
        for payload in &commit.outbox {
            g.next_seq += 1;
            let seq = g.next_seq;
            g.outbox.insert(seq, payload.clone());
        }
        for (end, id, json) in &commit.resolved {
            g.resolved.insert((*end, id.clone()), json.clone());
        }
        ready(Ok(g.next_seq))
    }

    fn outbox(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send {
        let g = self.lock();
        ready(Ok(g
            .outbox
            .iter()
            .take(limit)
            .map(|(seq, p)| OutboxEntry {
                seq: *seq,
                payload: p.clone(),
            })
            .collect()))
    }

    fn ack(&self, seqs: &[u64]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut g = self.lock();
        for s in seqs {
            g.outbox.remove(s);
        }
        ready(Ok(()))
    }

    fn outbox_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(Ok(self.lock().outbox.len() as u64))
    }

    fn dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut g = self.lock();
        g.dead.push_front(letter.clone());
        g.dead.truncate(DEAD_LETTERS_MAX);
        ready(Ok(()))
    }

    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send {
        ready(Ok(self.lock().dead.iter().take(limit).cloned().collect()))
    }

    fn resolved(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        let g = self.lock();
        let out = if from > to {
            Vec::new()
        } else {
            g.resolved
                .range((from, String::new())..)
                .take_while(|((end, _), _)| *end <= to)
                .take(limit)
                .map(|(_, json)| json.clone())
                .collect()
        };
        ready(Ok(out))
    }

    fn prune_resolved(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        let mut g = self.lock();
        let keep = g.resolved.split_off(&(before, String::new()));
        let removed = std::mem::replace(&mut g.resolved, keep).len();
        ready(Ok(removed))
    }

    fn records(
        &self,
        kind: RecordKind,
    ) -> impl Future<Output = Result<Vec<Record>, StoreError>> + Send {
        let g = self.lock();
        ready(Ok(g
            .records
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect()))
    }

    fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        json: &str,
        keep_until: Millis,
        expected: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let mut g = self.lock();
        let key = (kind, id.to_owned());
        let found = g.records.get(&key).map_or(0, |r| r.version);
        if found != expected {
            return ready(Err(StoreError::Conflict {
                kind: kind.as_str(),
                id: id.to_owned(),
                found,
            }));
        }
        if found == 0 && g.records.keys().filter(|(k, _)| *k == kind).count() >= RECORDS_MAX {
            return ready(Err(StoreError::Other(format!(
                "more than {RECORDS_MAX} {}s are stored; expire or wait for old ones to be pruned",
                kind.as_str()
            ))));
        }
        let version = expected + 1;
        g.records.insert(
            key,
            Record {
                id: id.to_owned(),
                version,
                keep_until,
                json: json.to_owned(),
            },
        );
        ready(Ok(version))
    }

    fn prune_records(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        let mut g = self.lock();
        let n = g.records.len();
        g.records.retain(|_, r| r.keep_until >= before);
        ready(Ok(n - g.records.len()))
    }
}
