//! The Redis implementation of [`AlertStore`] for [`RedisStore`]: the
//! alerter's lease with a fencing token, incident states, the outbox of
//! transitions to deliver, resolved history and dead letters.
//!
//! Every key shares the hash tag `{<scope>:alerts}` ([`AlertKeys`], in
//! [`crate::keys`]), so each Lua script (in [`crate::scripts`]) touches one
//! hash slot and works on Redis Cluster.
//! docs/storage-alerts.md describes the layout and what each step relies on.
//!
//! **Invariant:** [`AlertStore::commit`] is one Lua script that checks the
//! whole lease (`<token>:<holder>`, not only the token) first and validates
//! every key's type before its first write, so a commit is applied whole or
//! not at all, and never by a fenced leader: neither a stale one nor one
//! whose token a failover handed out again to another holder.

use std::sync::LazyLock;

use fred::prelude::*;
use fred::types::scripts::Script;
use metrics_model::store::{
    AlertCommit, AlertRestore, AlertSnapshot, AlertStore, DeadLetter, LeaseGrant, LeaseInfo,
    LeaseRequest, OutboxEntry, RECORDS_MAX, Record, RecordKind, StoreError,
};
use metrics_model::time::Millis;

use crate::scripts::alerts as lua;
use crate::store::RedisStore;

pub use crate::keys::AlertKeys;

/// Dead letters kept at most (the newest); older ones are dropped. The same
/// bound as the in-memory store's.
pub const DEAD_LETTERS_MAX: usize = metrics_model::memory_alerts::DEAD_LETTERS_MAX;

/// Resolved incidents removed per script call by
/// [`AlertStore::prune_resolved`], so that one call never blocks Redis long.
const PRUNE_CHUNK: usize = 1000;

/// The longest lease accepted (longer requests are cut to it): 100 days.
/// Redis refuses expiry times that overflow its clock.
const MAX_LEASE_TTL_MS: u64 = 100 * 24 * 3600 * 1000;

/// The alert store's scripts with their SHA1s (each call loads its script
/// into Redis when Redis does not know it: first use, or after a restart).
struct Scripts {
    acquire: Script,
    restore: Script,
    release: Script,
    lease: Script,
    load: Script,
    commit: Script,
    outbox: Script,
    ack: Script,
    dead_letter: Script,
    dead_letters: Script,
    resolved: Script,
    prune_resolved: Script,
    put_record: Script,
    prune_records: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::from_lua(lua::ACQUIRE),
    restore: Script::from_lua(lua::RESTORE),
    release: Script::from_lua(lua::RELEASE),
    lease: Script::from_lua(lua::LEASE),
    load: Script::from_lua(lua::LOAD),
    commit: Script::from_lua(lua::COMMIT),
    outbox: Script::from_lua(lua::OUTBOX),
    ack: Script::from_lua(lua::ACK),
    dead_letter: Script::from_lua(lua::DEAD_LETTER),
    dead_letters: Script::from_lua(lua::DEAD_LETTERS),
    resolved: Script::from_lua(lua::RESOLVED),
    prune_resolved: Script::from_lua(lua::PRUNE_RESOLVED),
    put_record: Script::from_lua(lua::PUT_RECORD),
    prune_records: Script::from_lua(lua::PRUNE_RECORDS),
});

impl RedisStore {
    /// The alert store's key names.
    pub fn alert_keys(&self) -> AlertKeys {
        AlertKeys::new(self.scope())
    }

    /// Runs `script` (loading it first if Redis does not know it, e.g.
    /// after a restart), mapping failures to [`StoreError`].
    async fn run(
        &self,
        what: &str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, StoreError> {
        script
            .evalsha_with_reload::<Value, _, _>(self.client(), keys, args)
            .await
            .map_err(|e| self.err(what, &e))
    }

    fn unexpected(&self, what: &str, v: &Value) -> StoreError {
        StoreError::Other(format!(
            "redis {}: unexpected reply to {what}: {v:?}",
            self.url()
        ))
    }

    async fn commit_alerts(
        &self,
        holder: &str,
        token: u64,
        commit: &AlertCommit,
    ) -> Result<u64, StoreError> {
        let k = self.alert_keys();
        let mut args: Vec<Value> = Vec::with_capacity(
            6 + commit.states.len() * 3 + commit.outbox.len() + commit.resolved.len() * 3,
        );
        // The lease value as `acquire` writes it.
        args.push(format!("{token}:{holder}").into());
        args.push(commit.evaluated_at.into());
        args.push(count(commit.states.len()));
        args.push(count(commit.outbox.len()));
        args.push(count(commit.resolved.len()));
        args.push(
            commit
                .expect_last_evaluated
                .map_or_else(String::new, |t| t.to_string())
                .into(),
        );
        for (key, value) in &commit.states {
            if let Some(json) = value {
                args.push("s".into());
                args.push(key.as_str().into());
                args.push(json.as_str().into());
            } else {
                args.push("d".into());
                args.push(key.as_str().into());
            }
        }
        args.extend(commit.outbox.iter().map(|p| Value::from(p.as_str())));
        for (end, id, json) in &commit.resolved {
            args.push((*end).into());
            args.push(id.as_str().into());
            args.push(json.as_str().into());
        }
        let keys = vec![
            k.lease(),
            k.states(),
            k.meta(),
            k.outbox(),
            k.outbox_data(),
            k.resolved(),
            k.resolved_data(),
        ];
        let result = SCRIPTS
            .commit
            .evalsha_with_reload::<Value, _, _>(self.client(), keys, args)
            .await;
        match result {
            Ok(v) => to_i64(&v)
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| self.unexpected("commit", &v)),
            Err(e) if e.details().contains("BPFENCED") => Err(StoreError::Fenced {
                holder: holder.to_owned(),
                token,
            }),
            Err(e) if e.details().contains("BPBEHIND") => Err(StoreError::Behind {
                expected: commit.expect_last_evaluated.unwrap_or_default(),
                found: e
                    .details()
                    .rsplit("BPBEHIND")
                    .next()
                    .and_then(|f| f.trim().parse().ok()),
            }),
            Err(e) => Err(self.err("committing alert state", &e)),
        }
    }

    async fn restore_alerts(
        &self,
        holder: &str,
        token: u64,
        r: &AlertRestore,
    ) -> Result<(), StoreError> {
        let k = self.alert_keys();
        let mut args: Vec<Value> = Vec::with_capacity(
            8 + r.states.len() * 2
                + r.outbox.len() * 2
                + r.resolved.len() * 3
                + r.dead_letters.len() * 4,
        );
        args.push(format!("{token}:{holder}").into());
        args.push(
            r.last_evaluated
                .map_or_else(String::new, |t| t.to_string())
                .into(),
        );
        args.push(r.outbox_seq.to_string().into());
        args.push(r.token_floor.to_string().into());
        args.push(count(r.states.len()));
        args.push(count(r.outbox.len()));
        args.push(count(r.resolved.len()));
        let dead = &r.dead_letters[..r.dead_letters.len().min(DEAD_LETTERS_MAX)];
        args.push(count(dead.len()));
        for (key, json) in &r.states {
            args.push(key.as_str().into());
            args.push(json.as_str().into());
        }
        for e in &r.outbox {
            args.push(e.seq.to_string().into());
            args.push(e.payload.as_str().into());
        }
        for (end, id, json) in &r.resolved {
            args.push((*end).into());
            args.push(id.as_str().into());
            args.push(json.as_str().into());
        }
        for d in dead {
            args.push(d.at.to_string().into());
            args.push(d.hook.as_str().into());
            args.push(d.error.as_str().into());
            args.push(d.payload.as_str().into());
        }
        let keys = vec![
            k.lease(),
            k.token(),
            k.states(),
            k.meta(),
            k.outbox(),
            k.outbox_data(),
            k.resolved(),
            k.resolved_data(),
            k.dead(),
        ];
        let result = SCRIPTS
            .restore
            .evalsha_with_reload::<Value, _, _>(self.client(), keys, args)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if e.details().contains("BPFENCED") => {
                return Err(StoreError::Fenced {
                    holder: holder.to_owned(),
                    token,
                });
            }
            Err(e) => return Err(self.err("writing the alert state back", &e)),
        }
        // Silences and acknowledgements: only where the store has none of
        // that id (one written since the loss wins).
        for (kind, rec) in &r.records {
            let value = format!("{} {} {}", rec.version.max(1), rec.keep_until, rec.json);
            let _: i64 = self
                .client()
                .hsetnx(k.records(*kind), rec.id.as_str(), value)
                .await
                .map_err(|e| self.err("writing a silence or acknowledgement back", &e))?;
        }
        Ok(())
    }

    async fn read_records(&self, kind: RecordKind) -> Result<Vec<Record>, StoreError> {
        let key = self.alert_keys().records(kind);
        let all: std::collections::HashMap<String, String> = self
            .client()
            .hgetall(&key)
            .await
            .map_err(|e| self.err("reading silences or acknowledgements", &e))?;
        let mut out: Vec<Record> = all
            .into_iter()
            .filter_map(|(id, value)| {
                let mut parts = value.splitn(3, ' ');
                let version = parts.next()?.parse().ok()?;
                let keep_until = parts.next()?.parse().ok()?;
                let json = parts.next()?.to_owned();
                Some(Record {
                    id,
                    version,
                    keep_until,
                    json,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn write_record(
        &self,
        kind: RecordKind,
        id: &str,
        json: &str,
        keep_until: Millis,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let v = self
            .run(
                "writing a silence or acknowledgement",
                &SCRIPTS.put_record,
                vec![self.alert_keys().records(kind)],
                vec![
                    id.into(),
                    expected.to_string().into(),
                    keep_until.to_string().into(),
                    json.into(),
                    count(RECORDS_MAX),
                ],
            )
            .await?;
        let pair = v.clone().into_array();
        match (pair.first().and_then(to_i64), pair.get(1).and_then(to_i64)) {
            (Some(1), Some(n)) => Ok(u64::try_from(n).unwrap_or(0)),
            (Some(0), Some(found)) => Err(StoreError::Conflict {
                kind: kind.as_str(),
                id: id.to_owned(),
                found: u64::try_from(found).unwrap_or(0),
            }),
            (Some(-1), _) => Err(StoreError::Other(format!(
                "more than {RECORDS_MAX} {}s are stored; expire or wait for old ones to be pruned",
                kind.as_str()
            ))),
            _ => Err(self.unexpected("writing a record", &v)),
        }
    }

    async fn load_alerts(&self) -> Result<AlertSnapshot, StoreError> {
        let k = self.alert_keys();
        let v = self
            .run(
                "loading alert state",
                &SCRIPTS.load,
                vec![k.states(), k.meta()],
                vec![],
            )
            .await?;
        let Value::Array(parts) = v else {
            return Err(self.unexpected("load", &v));
        };
        let [last, states] = parts.as_slice() else {
            return Err(self.unexpected("load", &Value::Array(parts)));
        };
        let last_evaluated = match last {
            Value::Null => None,
            other => Some(to_i64(other).ok_or_else(|| {
                StoreError::Other(format!(
                    "redis {}: key {} field last_evaluated is not a number: {other:?}",
                    self.url(),
                    k.meta()
                ))
            })?),
        };
        let mut out = Vec::new();
        if let Value::Array(flat) = states {
            for pair in flat.chunks_exact(2) {
                match (to_string(&pair[0]), to_string(&pair[1])) {
                    (Some(key), Some(json)) => out.push((key, json)),
                    _ => {
                        tracing::warn!(key = %k.states(), "ignoring a non-UTF-8 incident state");
                    }
                }
            }
        }
        out.sort();
        Ok(AlertSnapshot {
            last_evaluated,
            states: out,
        })
    }

    async fn read_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = self.alert_keys();
        let v = self
            .run(
                "reading the outbox",
                &SCRIPTS.outbox,
                vec![k.outbox(), k.outbox_data()],
                vec![last_index(limit)],
            )
            .await?;
        let flat = v.into_array();
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let seq = to_i64(&pair[0]).and_then(|s| u64::try_from(s).ok());
            if let (Some(seq), Some(payload)) = (seq, to_string(&pair[1])) {
                out.push(OutboxEntry { seq, payload });
            } else {
                tracing::warn!(key = %k.outbox(), "ignoring an unreadable outbox entry");
            }
        }
        Ok(out)
    }

    async fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let k = self.alert_keys();
        let args = seqs.iter().map(|s| Value::from(s.to_string())).collect();
        self.run(
            "acknowledging outbox entries",
            &SCRIPTS.ack,
            vec![k.outbox(), k.outbox_data()],
            args,
        )
        .await?;
        Ok(())
    }

    async fn outbox_size(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .zcard(self.alert_keys().outbox())
            .await
            .map_err(|e| self.err("counting the outbox", &e))?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn push_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let args = vec![
            Value::from(letter.at.to_string()),
            letter.hook.as_str().into(),
            letter.error.as_str().into(),
            letter.payload.as_str().into(),
            last_index(DEAD_LETTERS_MAX),
        ];
        self.run(
            "keeping a dead letter",
            &SCRIPTS.dead_letter,
            vec![self.alert_keys().dead()],
            args,
        )
        .await?;
        Ok(())
    }

    async fn read_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.alert_keys().dead();
        let v = self
            .run(
                "reading dead letters",
                &SCRIPTS.dead_letters,
                vec![key.clone()],
                vec![last_index(limit)],
            )
            .await?;
        let flat = v.into_array();
        let Some((skipped, rest)) = flat.split_first() else {
            return Ok(Vec::new());
        };
        let mut skipped = to_i64(skipped).unwrap_or_default();
        let mut out = Vec::with_capacity(rest.len() / 4);
        for l in rest.chunks_exact(4) {
            let at = to_i64(&l[0]);
            match (at, to_string(&l[1]), to_string(&l[2]), to_string(&l[3])) {
                (Some(at), Some(hook), Some(error), Some(payload)) => out.push(DeadLetter {
                    at,
                    hook,
                    error,
                    payload,
                }),
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(key = %key, skipped, "ignoring unreadable dead letters");
        }
        Ok(out)
    }

    async fn read_resolved(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 || from > to {
            return Ok(Vec::new());
        }
        let k = self.alert_keys();
        let v = self
            .run(
                "reading resolved incidents",
                &SCRIPTS.resolved,
                vec![k.resolved(), k.resolved_data()],
                vec![from.into(), to.into(), count(limit)],
            )
            .await?;
        Ok(v.into_array().iter().filter_map(to_string).collect())
    }

    async fn prune_resolved_before(&self, before: Millis) -> Result<usize, StoreError> {
        let k = self.alert_keys();
        let mut removed = 0;
        loop {
            let v = self
                .run(
                    "pruning resolved incidents",
                    &SCRIPTS.prune_resolved,
                    vec![k.resolved(), k.resolved_data()],
                    vec![before.into(), count(PRUNE_CHUNK)],
                )
                .await?;
            let n = to_i64(&v)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| self.unexpected("prune", &v))?;
            removed += n;
            if n < PRUNE_CHUNK {
                return Ok(removed);
            }
        }
    }

    async fn acquire_with(&self, r: LeaseRequest<'_>) -> Result<LeaseGrant, StoreError> {
        let k = self.alert_keys();
        let ttl = r.ttl_ms.clamp(1, MAX_LEASE_TTL_MS);
        let fresh_epoch = uuid::Uuid::new_v4().simple().to_string();
        let v = self
            .run(
                "acquiring the alerter lease",
                &SCRIPTS.acquire,
                vec![k.lease(), k.token(), k.meta()],
                vec![
                    r.holder.into(),
                    ttl.to_string().into(),
                    fresh_epoch.into(),
                    r.known_epoch.unwrap_or("").into(),
                    r.grace_ms.min(MAX_LEASE_TTL_MS).to_string().into(),
                ],
            )
            .await?;
        let parsed = match &v {
            Value::Array(parts) if parts.len() == 4 => {
                match (
                    to_i64(&parts[0]),
                    to_i64(&parts[1]),
                    to_string(&parts[2]),
                    to_i64(&parts[3]),
                ) {
                    (Some(token), Some(renewed), Some(epoch), Some(wait)) => Some(LeaseGrant {
                        token: u64::try_from(token).ok().filter(|t| *t > 0),
                        renewed: renewed == 1,
                        epoch,
                        waiting_ms: u64::try_from(wait).ok(),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        parsed.ok_or_else(|| self.unexpected("acquire", &v))
    }

    async fn release(&self, holder: &str, token: u64) -> Result<(), StoreError> {
        self.run(
            "releasing the alerter lease",
            &SCRIPTS.release,
            vec![self.alert_keys().lease()],
            vec![token.to_string().into(), holder.into()],
        )
        .await?;
        Ok(())
    }

    async fn read_lease(&self) -> Result<Option<LeaseInfo>, StoreError> {
        let k = self.alert_keys();
        let v = self
            .run(
                "reading the alerter lease",
                &SCRIPTS.lease,
                vec![k.lease()],
                vec![],
            )
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        let parsed = match &v {
            Value::Array(parts) if parts.len() == 2 => {
                to_string(&parts[0])
                    .zip(to_i64(&parts[1]))
                    .and_then(|(value, pttl)| {
                        let (token, holder) = value.split_once(':')?;
                        Some(LeaseInfo {
                            holder: holder.to_owned(),
                            token: token.parse().ok()?,
                            // -1: no expiry (not written by this store).
                            expires_in_ms: u64::try_from(pttl).unwrap_or(u64::MAX),
                        })
                    })
            }
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| {
            StoreError::Other(format!(
                "redis {}: key {} does not hold a lease: {v:?}",
                self.url(),
                k.lease()
            ))
        })
    }
}

impl AlertStore for RedisStore {
    async fn acquire(&self, request: LeaseRequest<'_>) -> Result<LeaseGrant, StoreError> {
        self.acquire_with(request).await
    }

    async fn restore(
        &self,
        holder: &str,
        token: u64,
        restore: &AlertRestore,
    ) -> Result<(), StoreError> {
        self.restore_alerts(holder, token, restore).await
    }

    async fn release_lease(&self, holder: &str, token: u64) -> Result<(), StoreError> {
        self.release(holder, token).await
    }

    async fn lease(&self) -> Result<Option<LeaseInfo>, StoreError> {
        self.read_lease().await
    }

    async fn load(&self) -> Result<AlertSnapshot, StoreError> {
        self.load_alerts().await
    }

    async fn commit(
        &self,
        holder: &str,
        token: u64,
        commit: &AlertCommit,
    ) -> Result<u64, StoreError> {
        self.commit_alerts(holder, token, commit).await
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read_outbox(limit).await
    }

    async fn ack(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.ack_outbox(seqs).await
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.outbox_size().await
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.push_dead_letter(letter).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.read_dead_letters(limit).await
    }

    async fn resolved(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read_resolved(from, to, limit).await
    }

    async fn prune_resolved(&self, before: Millis) -> Result<usize, StoreError> {
        self.prune_resolved_before(before).await
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>, StoreError> {
        self.read_records(kind).await
    }

    async fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        json: &str,
        keep_until: Millis,
        expected: u64,
    ) -> Result<u64, StoreError> {
        self.write_record(kind, id, json, keep_until, expected)
            .await
    }

    async fn prune_records(&self, before: Millis) -> Result<usize, StoreError> {
        let k = self.alert_keys();
        let v = self
            .run(
                "pruning silences and acknowledgements",
                &SCRIPTS.prune_records,
                RecordKind::ALL
                    .iter()
                    .map(|kind| k.records(*kind))
                    .collect(),
                vec![before.to_string().into()],
            )
            .await?;
        Ok(to_i64(&v)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0))
    }
}

/// `n` as a Redis integer argument (saturating; counts never get near).
fn count(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `limit - 1` (limit ≥ 1) as a Redis index argument.
fn last_index(limit: usize) -> Value {
    Value::Integer(i64::try_from(limit - 1).unwrap_or(i64::MAX))
}

fn to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        other => other.as_str().and_then(|s| s.parse().ok()),
    }
}

fn to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_helpers() {
        assert_eq!(last_index(1), Value::Integer(0));
        assert_eq!(last_index(usize::MAX), Value::Integer(i64::MAX));
        assert_eq!(count(3), Value::Integer(3));
        assert_eq!(to_i64(&Value::from("42")), Some(42));
        assert_eq!(to_i64(&Value::from("x")), None);
    }
}
