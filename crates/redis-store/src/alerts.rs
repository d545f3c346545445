//! The Redis implementation of [`AlertStore`] for [`RedisStore`]: the
//! alerter's lease with a fencing token, incident states, the outbox of
//! transitions to deliver, resolved history and dead letters.
//!
//! Every key shares the hash tag `{<scope>:alerts}` ([`AlertKeys`]), so
//! each Lua script below touches one hash slot and works on Redis Cluster.
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
    AlertCommit, AlertSnapshot, AlertStore, DeadLetter, LeaseInfo, OutboxEntry, StoreError,
};
use metrics_model::time::Millis;

use crate::store::RedisStore;

/// Dead letters kept at most (the newest); older ones are dropped. The same
/// bound as the in-memory store's.
pub const DEAD_LETTERS_MAX: usize = metrics_model::memory_alerts::DEAD_LETTERS_MAX;

/// Resolved incidents removed per script call by
/// [`AlertStore::prune_resolved`], so that one call never blocks Redis long.
const PRUNE_CHUNK: usize = 1000;

/// The longest lease accepted (longer requests are cut to it): 100 days.
/// Redis refuses expiry times that overflow its clock.
const MAX_LEASE_TTL_MS: u64 = 100 * 24 * 3600 * 1000;

/// Key names of the alert store under one scope. All share the hash tag
/// `{<scope>:alerts}`.
///
/// | key | type | holds |
/// |---|---|---|
/// | `{<scope>:alerts}:lease` | string, with TTL | `<token>:<holder>` of the active alerter |
/// | `{<scope>:alerts}:token` | string (integer) | the last fencing token handed out; never expires, never reset |
/// | `{<scope>:alerts}:states` | hash | incident state key → JSON |
/// | `{<scope>:alerts}:meta` | hash | `last_evaluated` (ms), `outbox_seq` (last outbox seq) |
/// | `{<scope>:alerts}:outbox` | sorted set | outbox seq (member and score) |
/// | `{<scope>:alerts}:outbox:data` | hash | outbox seq → transition JSON |
/// | `{<scope>:alerts}:resolved` | sorted set | incident id scored by its end time (ms) |
/// | `{<scope>:alerts}:resolved:data` | hash | incident id → incident JSON |
/// | `{<scope>:alerts}:dead` | list | dead letters as JSON, newest first, at most [`DEAD_LETTERS_MAX`] |
#[derive(Debug, Clone)]
pub struct AlertKeys {
    tag: String,
}

impl AlertKeys {
    /// Keys under `scope`.
    pub fn new(scope: &str) -> AlertKeys {
        AlertKeys {
            tag: format!("{{{scope}:alerts}}"),
        }
    }

    /// The lease of the active alerter.
    pub fn lease(&self) -> String {
        format!("{}:lease", self.tag)
    }

    /// The fencing token counter.
    pub fn token(&self) -> String {
        format!("{}:token", self.tag)
    }

    /// Incident states.
    pub fn states(&self) -> String {
        format!("{}:states", self.tag)
    }

    /// `last_evaluated` and the outbox sequence counter.
    pub fn meta(&self) -> String {
        format!("{}:meta", self.tag)
    }

    /// The outbox order (seq scored by seq).
    pub fn outbox(&self) -> String {
        format!("{}:outbox", self.tag)
    }

    /// The outbox payloads by seq.
    pub fn outbox_data(&self) -> String {
        format!("{}:outbox:data", self.tag)
    }

    /// Resolved incident ids scored by end time.
    pub fn resolved(&self) -> String {
        format!("{}:resolved", self.tag)
    }

    /// Resolved incidents' JSON by id.
    pub fn resolved_data(&self) -> String {
        format!("{}:resolved:data", self.tag)
    }

    /// Dead letters.
    pub fn dead(&self) -> String {
        format!("{}:dead", self.tag)
    }

    /// Every key, for tests and operators.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.lease(),
            self.token(),
            self.states(),
            self.meta(),
            self.outbox(),
            self.outbox_data(),
            self.resolved(),
            self.resolved_data(),
            self.dead(),
        ]
    }
}

/// `KEYS`: lease, token counter. `ARGV`: holder, ttl ms. Returns the token
/// when `holder` holds the lease after the call, nil otherwise.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local tok, holder = string.match(cur, '^(%d+):(.*)$')
  if tok and holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tok
  end
  return false
end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], string.format('%d', tok) .. ':' .. ARGV[1], 'PX', ARGV[2])
return tok
";

/// `KEYS`: lease. `ARGV`: token, holder. Deletes the lease if it is
/// exactly theirs.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] .. ':' .. ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// `KEYS`: lease. Returns nil or `{value, pttl}`.
const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
return {cur, redis.call('PTTL', KEYS[1])}
";

/// `KEYS`: states, meta. Returns `{last_evaluated or nil, {k1, v1, ...}}`.
const LOAD: &str = r"
return {redis.call('HGET', KEYS[2], 'last_evaluated'), redis.call('HGETALL', KEYS[1])}
";

/// `KEYS`: lease, states, meta, outbox, outbox data, resolved, resolved
/// data. `ARGV`: the caller's lease value `<token>:<holder>`,
/// `evaluated_at`, number of state ops, of outbox entries, of resolved
/// incidents; then the state ops in order (`s key json` or `d key`), the
/// outbox payloads, and `end id json` per resolved incident. Fails with
/// `BPFENCED` unless the lease is exactly the caller's (token *and* holder:
/// a failover that loses the counter's last `INCR` can hand one token to two
/// holders), with `BPCORRUPT` when a key has the wrong type; both before any
/// write.
const COMMIT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('BPFENCED the lease is not ' .. ARGV[1])
end
local expect = {'hash', 'hash', 'zset', 'hash', 'zset', 'hash'}
for k = 2, 7 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= expect[k - 1] then
    return redis.error_reply('BPCORRUPT key ' .. KEYS[k] .. ' is a ' .. t .. ', not a ' .. expect[k - 1])
  end
end
local seq0 = redis.call('HGET', KEYS[3], 'outbox_seq')
local seq = 0
if seq0 then
  seq = tonumber(seq0)
  if not seq then
    return redis.error_reply('BPCORRUPT key ' .. KEYS[3] .. ' field outbox_seq is not a number')
  end
end
local n_ops, n_out, n_res = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 6
for _ = 1, n_ops do
  if ARGV[i] == 's' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('HSET', KEYS[3], 'last_evaluated', ARGV[2])
for _ = 1, n_out do
  seq = seq + 1
  local s = string.format('%d', seq)
  redis.call('ZADD', KEYS[4], s, s)
  redis.call('HSET', KEYS[5], s, ARGV[i])
  i = i + 1
end
if n_out > 0 then
  redis.call('HSET', KEYS[3], 'outbox_seq', string.format('%d', seq))
end
for _ = 1, n_res do
  redis.call('ZADD', KEYS[6], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[7], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
return n_out
";

/// `KEYS`: outbox, outbox data. `ARGV`: last rank (limit - 1). Returns
/// `{seq1, payload1, ...}`, oldest first.
const OUTBOX: &str = r"
local seqs = redis.call('ZRANGE', KEYS[1], 0, ARGV[1])
local out = {}
for _, s in ipairs(seqs) do
  local p = redis.call('HGET', KEYS[2], s)
  if p then
    out[#out + 1] = s
    out[#out + 1] = p
  end
end
return out
";

/// `KEYS`: outbox, outbox data. `ARGV`: seqs. Returns how many were there.
const ACK: &str = r"
local n = 0
for _, s in ipairs(ARGV) do
  n = n + redis.call('ZREM', KEYS[1], s)
  redis.call('HDEL', KEYS[2], s)
end
return n
";

/// `KEYS`: dead list. `ARGV`: at (integer), hook, error, payload, last
/// index kept (max - 1).
const DEAD_LETTER: &str = r#"
local j = '{"at":' .. ARGV[1] .. ',"hook":' .. cjson.encode(ARGV[2])
  .. ',"error":' .. cjson.encode(ARGV[3]) .. ',"payload":' .. cjson.encode(ARGV[4]) .. '}'
redis.call('LPUSH', KEYS[1], j)
redis.call('LTRIM', KEYS[1], 0, ARGV[5])
return 1
"#;

/// `KEYS`: dead list. `ARGV`: last index (limit - 1). Returns `{skipped,
/// at1, hook1, error1, payload1, ...}`, newest first; `skipped` counts
/// entries that are not dead letters.
const DEAD_LETTERS: &str = r"
local raw = redis.call('LRANGE', KEYS[1], 0, ARGV[1])
local out = {0}
for _, r in ipairs(raw) do
  local ok, d = pcall(cjson.decode, r)
  if ok and type(d) == 'table' and type(d.at) == 'number' and type(d.hook) == 'string'
    and type(d.error) == 'string' and type(d.payload) == 'string' then
    out[#out + 1] = string.format('%.0f', d.at)
    out[#out + 1] = d.hook
    out[#out + 1] = d.error
    out[#out + 1] = d.payload
  else
    out[1] = out[1] + 1
  end
end
return out
";

/// `KEYS`: resolved, resolved data. `ARGV`: from, to, limit. Returns the
/// JSON of incidents that ended within `from..=to`, oldest first.
const RESOLVED: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local j = redis.call('HGET', KEYS[2], id)
  if j then out[#out + 1] = j end
end
return out
";

/// `KEYS`: resolved, resolved data. `ARGV`: before, chunk. Removes up to
/// `chunk` incidents that ended before `before`; returns how many.
const PRUNE_RESOLVED: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return #ids
";

struct Scripts {
    acquire: Script,
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
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::from_lua(ACQUIRE),
    release: Script::from_lua(RELEASE),
    lease: Script::from_lua(LEASE),
    load: Script::from_lua(LOAD),
    commit: Script::from_lua(COMMIT),
    outbox: Script::from_lua(OUTBOX),
    ack: Script::from_lua(ACK),
    dead_letter: Script::from_lua(DEAD_LETTER),
    dead_letters: Script::from_lua(DEAD_LETTERS),
    resolved: Script::from_lua(RESOLVED),
    prune_resolved: Script::from_lua(PRUNE_RESOLVED),
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
    ) -> Result<(), StoreError> {
        let k = self.alert_keys();
        let mut args: Vec<Value> = Vec::with_capacity(
            5 + commit.states.len() * 3 + commit.outbox.len() + commit.resolved.len() * 3,
        );
        // The lease value as `acquire` writes it.
        args.push(format!("{token}:{holder}").into());
        args.push(commit.evaluated_at.into());
        args.push(count(commit.states.len()));
        args.push(count(commit.outbox.len()));
        args.push(count(commit.resolved.len()));
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
            Ok(_) => Ok(()),
            Err(e) if e.details().contains("BPFENCED") => Err(StoreError::Fenced {
                holder: holder.to_owned(),
                token,
            }),
            Err(e) => Err(self.err("committing alert state", &e)),
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

    async fn acquire(&self, holder: &str, ttl_ms: u64) -> Result<Option<u64>, StoreError> {
        let k = self.alert_keys();
        let ttl = ttl_ms.clamp(1, MAX_LEASE_TTL_MS);
        let v = self
            .run(
                "acquiring the alerter lease",
                &SCRIPTS.acquire,
                vec![k.lease(), k.token()],
                vec![holder.into(), ttl.to_string().into()],
            )
            .await?;
        match v {
            Value::Null => Ok(None),
            other => to_i64(&other)
                .and_then(|t| u64::try_from(t).ok())
                .map(Some)
                .ok_or_else(|| self.unexpected("acquire", &other)),
        }
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
    async fn acquire_lease(&self, holder: &str, ttl_ms: u64) -> Result<Option<u64>, StoreError> {
        self.acquire(holder, ttl_ms).await
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
    ) -> Result<(), StoreError> {
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
    fn every_key_shares_one_hash_tag() {
        let k = AlertKeys::new("bp");
        for key in k.all() {
            assert!(key.starts_with("{bp:alerts}:"), "{key}");
            assert_eq!(
                fred::util::redis_keyslot(key.as_bytes()),
                fred::util::redis_keyslot(b"bp:alerts"),
                "{key}"
            );
        }
    }

    #[test]
    fn argument_helpers() {
        assert_eq!(last_index(1), Value::Integer(0));
        assert_eq!(last_index(usize::MAX), Value::Integer(i64::MAX));
        assert_eq!(count(3), Value::Integer(3));
        assert_eq!(to_i64(&Value::from("42")), Some(42));
        assert_eq!(to_i64(&Value::from("x")), None);
    }
}
