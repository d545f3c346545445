//! [`MemoryAlertStore`]: the in-memory [`AlertStore`] of standalone mode
//! and tests. State lives as long as the process.
//!
//! The lease has no clock here (this crate reads none): it is held by the
//! first holder until released. Standalone mode has one alerter, so that is
//! all it needs; HA across processes needs the Redis store.

use std::collections::{BTreeMap, VecDeque};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{
    AlertCommit, AlertSnapshot, AlertStore, DeadLetter, LeaseInfo, OutboxEntry, StoreError,
};
use crate::time::Millis;

/// Dead letters kept at most; older ones are dropped.
pub const DEAD_LETTERS_MAX: usize = 1000;

/// An in-memory alert store. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryAlertStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    lease: Option<(String, u64)>,
    last_token: u64,
    last_evaluated: Option<Millis>,
    states: BTreeMap<String, String>,
    outbox: BTreeMap<u64, String>,
    next_seq: u64,
    /// (end time, id) → json.
    resolved: BTreeMap<(Millis, String), String>,
    dead: VecDeque<DeadLetter>,
}

impl MemoryAlertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
    fn acquire_lease(
        &self,
        holder: &str,
        _ttl_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        let mut g = self.lock();
        let out = match &g.lease {
            Some((h, token)) if h == holder => Some(*token),
            Some(_) => None,
            None => {
                g.last_token += 1;
                let token = g.last_token;
                g.lease = Some((holder.to_owned(), token));
                Some(token)
            }
        };
        ready(Ok(out))
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
        ready(Ok(()))
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
}
