//! The [`TickStore`] operations of [`RedisStore`]: append, range, read_new
//! and cursor_now with their cursor [`RedisCursor`], hosts (the registry)
//! and prune; the tick scripts run in pipelines (reloaded after
//! `NOSCRIPT`); stream entries decoded back into ticks.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::streams::XID;
use fred::types::{ClusterHash, CustomCommand};
use fred::util::redis_keyslot;
use metrics_model::chunk;
use metrics_model::memory::check_ticks;
use metrics_model::store::{
    AppendOutcome, HostInfo, NewTicks, PruneOutcome, SealOutcome, StoreError, TickStore,
};
use metrics_model::time::Millis;
use metrics_model::{HostName, Tick, Values};

use crate::codec;
use crate::store::RedisStore;

/// Ticks per host per append script call; bigger batches are split so one
/// script never blocks Redis for long.
const APPEND_CHUNK: usize = 1000;

/// Stream entries read per host per round trip by [`TickStore::read_new`].
const READ_PAGE: u64 = 10_000;
/// Streams per `XREAD` of the reader of new ticks, at most.
const XREAD_KEYS: usize = 1_024;

/// Windows a range read asks for by name (`HMGET`); a longer range reads
/// the whole chunks hash (`HGETALL`).
const CHUNK_HMGET_MAX: i64 = 128;

/// Whether a chunks-hash field is a window (not `h` or `g`).
fn is_window_field(field: &[u8]) -> bool {
    !field.is_empty() && field.iter().all(u8::is_ascii_digit)
}

/// A position in a stream: `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part (the tick's `ts` for in-order ticks).
    pub ms: u64,
    /// Sequence part (0 for in-order ticks, ≥ 1 for late ones).
    pub seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl StreamId {
    fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// A position in the arrival order of a [`RedisStore`]: the last stream
/// entry read per host. The default (empty) cursor is "the beginning".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisCursor {
    /// Last entry read per host; a host without an entry is read from its
    /// first tick.
    pub positions: BTreeMap<HostName, StreamId>,
}

impl RedisStore {
    /// Loads the tick scripts (at start-up, and again after `NOSCRIPT`).
    pub(crate) async fn load_scripts(&self) -> Result<(), Error> {
        let i = &self.inner;
        for s in [
            &i.append,
            &i.range_late,
            &i.prune,
            &i.forget,
            &i.seal_read,
            &i.seal_commit,
        ] {
            s.load(&i.client).await?;
        }
        Ok(())
    }

    /// Runs `calls` (script, keys, args) in one pipeline; reloads the
    /// scripts and retries the calls that met `NOSCRIPT` (after a Redis
    /// restart or failover).
    async fn eval_many(
        &self,
        calls: &[(&Script, Vec<String>, Vec<Value>)],
    ) -> Vec<Result<Value, Error>> {
        let mut results = self.eval_pipeline(calls.iter()).await;
        let missing: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(e) if e.details().starts_with("NOSCRIPT")))
            .map(|(i, _)| i)
            .collect();
        if missing.is_empty() {
            return results;
        }
        if let Err(e) = self.load_scripts().await {
            for i in missing {
                results[i] = Err(e.clone());
            }
            return results;
        }
        let retried = self.eval_pipeline(missing.iter().map(|&i| &calls[i])).await;
        for (i, r) in missing.into_iter().zip(retried) {
            results[i] = r;
        }
        results
    }

    async fn eval_pipeline<'a>(
        &self,
        calls: impl Iterator<Item = &'a (&'a Script, Vec<String>, Vec<Value>)>,
    ) -> Vec<Result<Value, Error>> {
        let pipeline = self.inner.client.pipeline();
        let mut n = 0;
        for (script, keys, args) in calls {
            n += 1;
            if let Err(e) = queue_evalsha(&pipeline, script, keys, args).await {
                return vec![Err(e); n];
            }
        }
        replies(&pipeline, n).await
    }

    async fn registry(&self) -> Result<Vec<HostInfo>, StoreError> {
        let raw: Vec<Value> = self
            .inner
            .client
            .custom(
                CustomCommand::new("ZRANGE", ClusterHash::FirstKey, false),
                self.registry_args(),
            )
            .await
            .map_err(|e| self.err("reading the host registry", &e))?;
        Ok(self.parse_registry(&raw))
    }

    /// `ZRANGE <hosts> 0 -1 WITHSCORES`'s arguments.
    fn registry_args(&self) -> Vec<Value> {
        vec![
            self.inner.keys.hosts().into(),
            "0".into(),
            "-1".into(),
            "WITHSCORES".into(),
        ]
    }

    /// The registry's `(member, score)` pairs as hosts, sorted by name.
    fn parse_registry(&self, raw: &[Value]) -> Vec<HostInfo> {
        let mut out = Vec::with_capacity(raw.len() / 2);
        for pair in raw.chunks_exact(2) {
            let name = pair[0].as_str().unwrap_or_default();
            let Ok(host) = name.parse::<HostName>() else {
                tracing::warn!(key = %self.inner.keys.hosts(), member = %name, "ignoring an invalid host name in the registry");
                continue;
            };
            let last_seen = pair[1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or_default() as Millis;
            out.push(HostInfo { host, last_seen });
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    /// Every host with a tick stream, found by `SCAN` (on every master of a
    /// Cluster), whatever the registry says.
    async fn scan_streams(&self) -> Result<Vec<HostName>, StoreError> {
        use fred::types::scan::ScanType;
        use futures_util::TryStreamExt;
        let prefix = format!("{}:ticks:{{", self.inner.keys.scope());
        let pattern = format!("{prefix}*}}");
        let client = &self.inner.client;
        let keys: Vec<Key> = if client.is_clustered() {
            client
                .scan_cluster_buffered(pattern, Some(1000), Some(ScanType::Stream))
                .try_collect()
                .await
        } else {
            client
                .scan_buffered(pattern, Some(1000), Some(ScanType::Stream))
                .try_collect()
                .await
        }
        .map_err(|e| self.err("scanning for tick streams", &e))?;
        let mut hosts: Vec<HostName> = keys
            .iter()
            .filter_map(|k| {
                let name = k
                    .as_str()?
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix('}')?;
                name.parse().ok()
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// [`TickStore::rediscover_hosts`]: hosts with a stream but no registry
    /// entry get one, scored by their stream's last entry.
    async fn rediscover(&self) -> Result<usize, StoreError> {
        let listed: std::collections::HashSet<HostName> =
            self.registry().await?.into_iter().map(|h| h.host).collect();
        let missing: Vec<HostName> = self
            .scan_streams()
            .await?
            .into_iter()
            .filter(|h| !listed.contains(h))
            .collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let pipeline = self.inner.client.pipeline();
        for h in &missing {
            pipeline
                .xrevrange::<(), _, _, _>(self.inner.keys.ticks(h), "+", "-", Some(1))
                .await
                .map_err(|e| self.err("reading the newest ticks", &e))?;
        }
        let results = replies(&pipeline, missing.len()).await;
        let mut args: Vec<Value> = vec![self.inner.keys.hosts().into(), "GT".into()];
        let mut found = 0;
        for (h, r) in missing.iter().zip(results) {
            let entries = r
                .map_err(|e| self.err("reading the newest ticks", &e))?
                .into_array();
            if let Some(entry) = entries.first() {
                let e =
                    parse_entry(entry).map_err(|m| self.corrupt(&self.inner.keys.ticks(h), &m))?;
                // An in-order entry's ID is its `ts`; a late one's is after
                // the greatest `ts`: either way the ID's ms is the host's
                // greatest `ts`.
                args.push(Value::Integer(i64::try_from(e.id.ms).unwrap_or(i64::MAX)));
                args.push(h.as_str().into());
                found += 1;
            }
        }
        if found > 0 {
            let _: Value = self
                .inner
                .client
                .custom(
                    CustomCommand::new("ZADD", ClusterHash::FirstKey, false),
                    args,
                )
                .await
                .map_err(|e| self.err("updating the host registry", &e))?;
            tracing::warn!(
                hosts = found,
                key = %self.inner.keys.hosts(),
                "re-registered hosts whose tick streams survived but whose registry entries were gone (the registry lost its data?)"
            );
        }
        Ok(found)
    }

    async fn append_ticks(&self, ticks: &[Tick]) -> Result<AppendOutcome, StoreError> {
        check_ticks(ticks)?;
        let mut by_host: BTreeMap<&HostName, Vec<&Tick>> = BTreeMap::new();
        for t in ticks {
            by_host.entry(&t.host).or_default().push(t);
        }
        let keys = &self.inner.keys;
        let mut calls = Vec::new();
        let mut newest: Vec<(Millis, &HostName)> = Vec::new();
        let mut buf = Vec::new();
        let mut keyed = false;
        for (host, mut list) in by_host {
            list.sort_by_key(|t| t.ts);
            newest.push((list.last().map_or(0, |t| t.ts), host));
            for chunk in list.chunks(APPEND_CHUNK) {
                let mut args = Vec::with_capacity(chunk.len() * 2);
                for t in chunk {
                    buf.clear();
                    codec::encode(t.values(), &mut buf);
                    keyed |= codec::uses_keyed_section(&buf);
                    args.push(Value::Integer(t.ts));
                    args.push(Value::Bytes(buf.clone().into()));
                }
                calls.push((
                    &self.inner.append,
                    vec![keys.ticks(host), keys.late(host), keys.chunks(host)],
                    args,
                ));
            }
        }
        if keyed {
            self.ensure_layout(2).await?;
        }
        let mut out = AppendOutcome::default();
        for r in self.eval_many(&calls).await {
            let v = r.map_err(|e| self.err("appending ticks", &e))?;
            let (w, d) = pair_of_ints(&v).ok_or_else(|| {
                StoreError::Other(format!(
                    "redis {}: unexpected reply to append: {v:?}",
                    self.inner.url
                ))
            })?;
            out.written += w as usize;
            out.duplicates += d as usize;
        }
        // Even when every tick was a duplicate: a retried batch must still
        // register its hosts if an earlier try stopped before this step.
        if !newest.is_empty() {
            let mut args: Vec<Value> = vec![keys.hosts().into(), "GT".into()];
            for (ts, host) in newest {
                args.push(Value::Integer(ts));
                args.push(host.as_str().into());
            }
            let _: Value = self
                .inner
                .client
                .custom(
                    CustomCommand::new("ZADD", ClusterHash::FirstKey, false),
                    args,
                )
                .await
                .map_err(|e| self.err("updating the host registry", &e))?;
        }
        Ok(out)
    }

    async fn range_ticks(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<Tick>, StoreError> {
        if to < 0 || from > to {
            return Ok(Vec::new());
        }
        let from = from.max(0);
        let keys = &self.inner.keys;
        let stream = keys.ticks(host);
        let pipeline = self.inner.client.pipeline();
        let queued = pipeline
            .xrange::<(), _, _, _>(stream.clone(), format!("{from}-0"), to.to_string(), None)
            .await;
        let queued = match queued {
            Ok(()) => {
                queue_evalsha(
                    &pipeline,
                    &self.inner.range_late,
                    &[stream.clone(), keys.late(host)],
                    &[Value::Integer(from), Value::Integer(to)],
                )
                .await
            }
            Err(e) => Err(e),
        };
        let queued = match queued {
            Ok(()) => self.queue_chunk_read(&pipeline, host, from, to).await,
            Err(e) => Err(e),
        };
        queued.map_err(|e| self.err("reading ticks", &e))?;
        let mut results = replies(&pipeline, 3).await.into_iter();
        let entries = results
            .next()
            .unwrap_or_else(|| Ok(Value::Null))
            .map_err(|e| self.err("reading ticks", &e))?;
        let late = match results.next().unwrap_or_else(|| Ok(Value::Null)) {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let calls = [(
                    &self.inner.range_late,
                    vec![stream.clone(), keys.late(host)],
                    vec![Value::Integer(from), Value::Integer(to)],
                )];
                self.eval_many(&calls)
                    .await
                    .pop()
                    .unwrap_or_else(|| Ok(Value::Null))
            }
            other => other,
        }
        .map_err(|e| self.err("reading late ticks", &e))?;
        let chunks = results
            .next()
            .unwrap_or_else(|| Ok(Value::Null))
            .map_err(|e| self.err("reading sealed chunks", &e))?;
        let mut ticks = self.chunk_ticks(host, chunks, from, to)?;
        let sealed: std::collections::HashSet<Millis> = ticks.iter().map(|t| t.ts).collect();
        for entry in entries.into_array() {
            let e = parse_entry(&entry).map_err(|m| self.corrupt(&stream, &m))?;
            if e.late_ts.is_none() && !sealed.contains(&(e.id.ms as Millis)) {
                ticks.push(e.into_tick(host).map_err(|m| self.corrupt(&stream, &m))?);
            }
        }
        let late = late.into_array();
        for pair in late.chunks_exact(2) {
            let ts =
                value_i64(&pair[0]).ok_or_else(|| self.corrupt(&stream, "late tick without ts"))?;
            if sealed.contains(&ts) {
                // The sealed tick was stored first: it wins.
                continue;
            }
            let values = codec::decode(pair[1].as_bytes().unwrap_or_default())
                .map_err(|e| self.corrupt(&stream, &e.to_string()))?;
            ticks.push(Tick::from_values(host.clone(), ts, values));
        }
        ticks.sort_by_key(|t| t.ts);
        Ok(ticks)
    }

    fn corrupt(&self, key: &str, what: &str) -> StoreError {
        StoreError::Other(format!("redis {}: key {key}: {what}", self.inner.url))
    }

    /// Queues the read of `host`'s chunks whose windows meet `from..=to`:
    /// `HMGET` of those windows, or `HGETALL` when they are many (the reply
    /// is then field/value pairs).
    async fn queue_chunk_read(
        &self,
        pipeline: &fred::clients::Pipeline<Client>,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> Result<(), Error> {
        let key = self.inner.keys.chunks(host);
        let first = chunk::window_of(from);
        let last = chunk::window_of(to);
        if (last - first) / chunk::CHUNK_MS + 1 > CHUNK_HMGET_MAX {
            return pipeline
                .custom::<(), _>(
                    CustomCommand::new("HGETALL", ClusterHash::FirstKey, false),
                    vec![Value::from(key)],
                )
                .await;
        }
        let mut args: Vec<Value> = vec![key.into()];
        let mut w = first;
        while w <= last {
            args.push(Value::Integer(w));
            w += chunk::CHUNK_MS;
        }
        pipeline
            .custom::<(), _>(
                CustomCommand::new("HMGET", ClusterHash::FirstKey, false),
                args,
            )
            .await
    }

    /// The ticks of the chunks read by [`Self::queue_chunk_read`], within
    /// `from..=to`, ascending by `ts`.
    fn chunk_ticks(
        &self,
        host: &HostName,
        reply: Value,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<Tick>, StoreError> {
        let whole =
            (chunk::window_of(to) - chunk::window_of(from)) / chunk::CHUNK_MS + 1 > CHUNK_HMGET_MAX;
        let blobs: Vec<Value> = match reply {
            Value::Map(m) => m
                .inner()
                .into_iter()
                .filter(|(k, _)| is_window_field(k.as_bytes()))
                .map(|(_, v)| v)
                .collect(),
            other if whole => other
                .into_array()
                .chunks_exact(2)
                .filter(|p| is_window_field(p[0].as_bytes().unwrap_or_default()))
                .map(|p| p[1].clone())
                .collect(),
            other => other.into_array(),
        };
        let mut out = Vec::new();
        let bytes: Vec<&[u8]> = blobs.iter().filter_map(Value::as_bytes).collect();
        for ticks in chunk::decode_many(&bytes) {
            let ticks =
                ticks.map_err(|e| self.corrupt(&self.inner.keys.chunks(host), &e.to_string()))?;
            for (ts, values) in ticks {
                if (from..=to).contains(&ts) {
                    out.push(Tick::from_values(host.clone(), ts, values));
                }
            }
        }
        out.sort_by_key(|t| t.ts);
        Ok(out)
    }

    /// Steady state costs one round trip per shard: the registry and the
    /// streams of every host already in the cursor are read in one pipeline;
    /// only new hosts (and hosts with more than a page of new ticks) need
    /// another.
    async fn read_new_ticks(
        &self,
        cursor: &RedisCursor,
    ) -> Result<NewTicks<RedisCursor>, StoreError> {
        let mut page = Page::default();
        let known: Vec<(HostName, Option<StreamId>)> = cursor
            .positions
            .iter()
            .map(|(h, p)| (h.clone(), Some(*p)))
            .collect();
        let pipeline = self.inner.client.pipeline();
        pipeline
            .custom::<(), _>(
                CustomCommand::new("ZRANGE", ClusterHash::FirstKey, false),
                self.registry_args(),
            )
            .await
            .map_err(|e| self.err("reading the host registry", &e))?;
        let (groups, keys) = self.queue_reads(&pipeline, &known).await?;
        let mut results = replies(&pipeline, groups.len() + 1).await.into_iter();
        let raw = results
            .next()
            .unwrap_or_else(|| Err(Error::new(ErrorKind::Unknown, "no registry reply")))
            .map_err(|e| self.err("reading the host registry", &e))?
            .into_array();
        let results = split_reads(&groups, keys, results.collect());
        let registry = self.parse_registry(&raw);
        let listed: std::collections::HashSet<&HostName> =
            registry.iter().map(|h| &h.host).collect();
        for ((host, pos), r) in known.into_iter().zip(results) {
            // A host gone from the registry was pruned: forget its position.
            if listed.contains(&host) {
                self.take_page(host, pos, r, &mut page)?;
            }
        }
        let mut pending: Vec<(HostName, Option<StreamId>)> = registry
            .into_iter()
            .filter(|h| !cursor.positions.contains_key(&h.host))
            .map(|h| (h.host, None))
            .collect();
        pending.append(&mut page.more);
        while !pending.is_empty() {
            let pipeline = self.inner.client.pipeline();
            let (groups, keys) = self.queue_reads(&pipeline, &pending).await?;
            let results = replies(&pipeline, groups.len()).await;
            let results = split_reads(&groups, keys, results);
            for ((host, pos), r) in std::mem::take(&mut pending).into_iter().zip(results) {
                self.take_page(host, pos, r, &mut page)?;
            }
            pending = std::mem::take(&mut page.more);
        }
        Ok(NewTicks {
            ticks: page.ticks,
            cursor: RedisCursor {
                positions: page.positions,
            },
        })
    }

    /// Queues one page of each host's entries after its position: one
    /// `XREAD` per group of streams that share a hash slot (a cluster runs
    /// a command over several keys only within one slot; on one server, up
    /// to [`XREAD_KEYS`] streams per command). 100,000 hosts are about
    /// 16,000 commands on a cluster instead of 100,000 `XRANGE`s, which
    /// is what the client spent its time on. Returns the indices into
    /// `hosts` of each command, in the order queued, and each host's stream
    /// key.
    async fn queue_reads(
        &self,
        pipeline: &fred::clients::Pipeline<Client>,
        hosts: &[(HostName, Option<StreamId>)],
    ) -> Result<(Vec<Vec<usize>>, Vec<String>), StoreError> {
        let keys: Vec<String> = hosts
            .iter()
            .map(|(h, _)| self.inner.keys.ticks(h))
            .collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        if self.inner.client.is_clustered() {
            let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
            for (i, key) in keys.iter().enumerate() {
                by_slot
                    .entry(redis_keyslot(key.as_bytes()))
                    .or_default()
                    .push(i);
            }
            for list in by_slot.into_values() {
                groups.extend(list.chunks(XREAD_KEYS).map(<[usize]>::to_vec));
            }
        } else {
            let all: Vec<usize> = (0..hosts.len()).collect();
            groups.extend(all.chunks(XREAD_KEYS).map(<[usize]>::to_vec));
        }
        for group in &groups {
            let streams: Vec<Key> = group.iter().map(|&i| Key::from(keys[i].as_str())).collect();
            let ids: Vec<XID> = group
                .iter()
                .map(|&i| {
                    XID::Manual(
                        hosts[i]
                            .1
                            .map_or_else(|| "0-0".to_owned(), |p| p.to_string())
                            .into(),
                    )
                })
                .collect();
            pipeline
                .xread::<(), _, _>(Some(READ_PAGE), None, streams, ids)
                .await
                .map_err(|e| self.err("reading new ticks", &e))?;
        }
        Ok((groups, keys))
    }

    /// Takes one `XRANGE` reply of `host` (read after `pos`) into `page`.
    fn take_page(
        &self,
        host: HostName,
        pos: Option<StreamId>,
        reply: Result<Value, Error>,
        page: &mut Page,
    ) -> Result<(), StoreError> {
        let entries = reply
            .map_err(|e| self.err("reading new ticks", &e))?
            .into_array();
        let full = entries.len() as u64 >= READ_PAGE;
        let mut last = pos;
        for entry in &entries {
            let stream = || self.inner.keys.ticks(&host);
            let e = parse_entry(entry).map_err(|m| self.corrupt(&stream(), &m))?;
            last = Some(e.id);
            page.ticks.push(
                e.into_tick(&host)
                    .map_err(|m| self.corrupt(&stream(), &m))?,
            );
        }
        if let Some(p) = last {
            page.positions.insert(host.clone(), p);
        }
        if full {
            page.more.push((host, last));
        }
        Ok(())
    }

    async fn cursor_at_end(&self) -> Result<RedisCursor, StoreError> {
        let hosts = self.registry().await?;
        let pipeline = self.inner.client.pipeline();
        for h in &hosts {
            pipeline
                .xrevrange::<(), _, _, _>(self.inner.keys.ticks(&h.host), "+", "-", Some(1))
                .await
                .map_err(|e| self.err("reading the newest ticks", &e))?;
        }
        let results = replies(&pipeline, hosts.len()).await;
        let mut positions = BTreeMap::new();
        for (h, r) in hosts.into_iter().zip(results) {
            let entries = r
                .map_err(|e| self.err("reading the newest ticks", &e))?
                .into_array();
            if let Some(entry) = entries.first() {
                let e = parse_entry(entry)
                    .map_err(|m| self.corrupt(&self.inner.keys.ticks(&h.host), &m))?;
                positions.insert(h.host, e.id);
            }
        }
        Ok(RedisCursor { positions })
    }

    async fn prune_before(&self, before: Millis) -> Result<PruneOutcome, StoreError> {
        let mut out = PruneOutcome::default();
        if before <= 0 {
            return Ok(out);
        }
        let hosts = self.registry().await?;
        if hosts.is_empty() {
            return Ok(out);
        }
        let keys = &self.inner.keys;
        let host_keys = |h: &HostName| vec![keys.ticks(h), keys.late(h), keys.chunks(h)];
        let calls: Vec<_> = hosts
            .iter()
            .map(|h| {
                (
                    &self.inner.prune,
                    host_keys(&h.host),
                    vec![Value::Integer(before)],
                )
            })
            .collect();
        let mut gone = Vec::new();
        for (h, r) in hosts.iter().zip(self.eval_many(&calls).await) {
            let v = r.map_err(|e| self.err("pruning ticks", &e))?;
            let parts = v.into_array();
            let (Some(removed), Some(empty), Some(generation)) = (
                parts.first().and_then(value_i64),
                parts.get(1).and_then(value_i64),
                parts.get(2).and_then(Value::as_string),
            ) else {
                return Err(StoreError::Other(format!(
                    "redis {}: unexpected reply to prune: {parts:?}",
                    self.inner.url
                )));
            };
            out.ticks_removed += removed as usize;
            let straddling: Vec<Millis> = parts[3..].iter().filter_map(value_i64).collect();
            let mut now_empty = false;
            if !straddling.is_empty() {
                let (cut, left) = self
                    .cut_chunks(&h.host, &straddling, &generation, before)
                    .await?;
                out.ticks_removed += cut;
                now_empty = left == 0;
            }
            if empty == 1 {
                gone.push(h.host.as_str().into());
            } else if now_empty {
                // The rewritten chunks were the host's last ticks: one more
                // pass of the script removes its keys.
                let calls = [(
                    &self.inner.prune,
                    host_keys(&h.host),
                    vec![Value::Integer(before)],
                )];
                let again = self.eval_many(&calls).await.pop();
                if let Some(Ok(v)) = again
                    && v.into_array().get(1).and_then(value_i64) == Some(1)
                {
                    gone.push(h.host.as_str().into());
                }
            }
        }
        if !gone.is_empty() {
            let mut args: Vec<Value> = vec![Value::Integer(before)];
            args.extend(gone);
            let calls = [(&self.inner.forget, vec![keys.hosts()], args)];
            let v = self
                .eval_many(&calls)
                .await
                .pop()
                .unwrap_or_else(|| Ok(Value::Null))
                .map_err(|e| self.err("forgetting hosts", &e))?;
            out.hosts_removed = value_i64(&v).unwrap_or_default() as usize;
        }
        Ok(out)
    }

    /// Rewrites `host`'s chunks of `windows` without their ticks before
    /// `before` (chunks that straddle the retention cut), if the chunks did
    /// not change since `generation`. Returns the ticks removed and how many
    /// ticks those chunks still hold (0 when a changed hash made it skip:
    /// the next pass retries).
    async fn cut_chunks(
        &self,
        host: &HostName,
        windows: &[Millis],
        generation: &str,
        before: Millis,
    ) -> Result<(usize, usize), StoreError> {
        let keys = &self.inner.keys;
        let mut args: Vec<Value> = vec![keys.chunks(host).into()];
        args.extend(windows.iter().map(|w| Value::Integer(*w)));
        let blobs: Vec<Value> = self
            .inner
            .client
            .custom::<Value, _>(
                CustomCommand::new("HMGET", ClusterHash::FirstKey, false),
                args,
            )
            .await
            .map_err(|e| self.err("reading sealed chunks", &e))?
            .into_array();
        let mut commit: Vec<Value> = vec![
            "".into(),
            generation.into(),
            "".into(),
            "".into(),
            Value::Integer(0),
        ];
        let (mut cut, mut left) = (0, 0);
        for (w, blob) in windows.iter().zip(blobs) {
            let Some(bytes) = blob.as_bytes() else {
                continue;
            };
            let ticks = chunk::decode(bytes)
                .map_err(|e| self.corrupt(&keys.chunks(host), &e.to_string()))?;
            let n = ticks.len();
            let kept: Vec<(Millis, Values)> =
                ticks.into_iter().filter(|(ts, _)| *ts >= before).collect();
            cut += n - kept.len();
            left += kept.len();
            commit.push(Value::Integer(*w));
            commit.push(if kept.is_empty() {
                Value::Bytes(Vec::new().into())
            } else {
                let refs: Vec<(Millis, &Values)> = kept.iter().map(|(t, v)| (*t, v)).collect();
                Value::Bytes(chunk::encode(&refs).into())
            });
        }
        let calls = [(
            &self.inner.seal_commit,
            vec![keys.ticks(host), keys.late(host), keys.chunks(host)],
            commit,
        )];
        let v = self
            .eval_many(&calls)
            .await
            .pop()
            .unwrap_or_else(|| Ok(Value::Null))
            .map_err(|e| self.err("pruning sealed chunks", &e))?;
        if value_i64(&v) == Some(1) {
            Ok((cut, left))
        } else {
            Ok((0, 1))
        }
    }

    /// Seals every host's stream entries with an ID below `before` (a
    /// window boundary) into chunks, [`SEAL_HOSTS_PER_ROUND`] hosts per
    /// round trip (one read, one commit) and at most [`SEAL_READ_MAX`]
    /// entries per host and round (a host with more, the first pass after an
    /// upgrade, comes back in a later round), so that no reply grows with
    /// the data.
    async fn seal_streams(&self, before: Millis) -> Result<SealOutcome, StoreError> {
        let mut out = SealOutcome::default();
        let before = chunk::window_of(before.max(0));
        if before <= 0 {
            return Ok(out);
        }
        let mut hosts = self.registry().await?;
        while !hosts.is_empty() {
            let mut again = Vec::new();
            for group in hosts.chunks(SEAL_HOSTS_PER_ROUND) {
                self.seal_group(group, before, &mut out, &mut again).await?;
            }
            hosts = again;
        }
        Ok(out)
    }

    /// One round of [`Self::seal_streams`] over `group`; hosts with more to
    /// seal go to `again`.
    async fn seal_group(
        &self,
        group: &[HostInfo],
        before: Millis,
        out: &mut SealOutcome,
        again: &mut Vec<HostInfo>,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        {
            let calls: Vec<_> = group
                .iter()
                .map(|h| {
                    (
                        &self.inner.seal_read,
                        vec![
                            keys.ticks(&h.host),
                            keys.late(&h.host),
                            keys.chunks(&h.host),
                        ],
                        vec![Value::Integer(before), Value::Integer(SEAL_READ_MAX as i64)],
                    )
                })
                .collect();
            let mut commits = Vec::new();
            let mut more = Vec::new();
            for (h, r) in group.iter().zip(self.eval_many(&calls).await) {
                let v = r.map_err(|e| self.err("reading ticks to seal", &e))?;
                if let Some((args, sealed)) = self.seal_plan(&h.host, v, before)? {
                    more.push((sealed, (sealed >= SEAL_READ_MAX).then(|| h.clone())));
                    commits.push((
                        &self.inner.seal_commit,
                        vec![
                            keys.ticks(&h.host),
                            keys.late(&h.host),
                            keys.chunks(&h.host),
                        ],
                        args,
                    ));
                }
            }
            if commits.is_empty() {
                return Ok(());
            }
            self.ensure_layout(3).await?;
            for (r, (sealed, more)) in self.eval_many(&commits).await.into_iter().zip(more) {
                let v = r.map_err(|e| self.err("sealing ticks", &e))?;
                if value_i64(&v) == Some(1) {
                    out.ticks_sealed += sealed;
                    out.hosts_sealed += 1;
                    again.extend(more);
                } else {
                    out.hosts_skipped += 1;
                }
            }
        }
        Ok(())
    }

    /// From one seal read of `host`: the commit's arguments and how many
    /// ticks it seals, or `None` when nothing is below `before`.
    fn seal_plan(
        &self,
        host: &HostName,
        reply: Value,
        before: Millis,
    ) -> Result<Option<(Vec<Value>, usize)>, StoreError> {
        let stream = self.inner.keys.ticks(host);
        let mut parts = reply.into_array().into_iter();
        let (Some(last), Some(generation), Some(entries)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(self.corrupt(&stream, "unexpected reply to the seal read"));
        };
        let entries = entries.into_array();
        if entries.is_empty() {
            return Ok(None);
        }
        let mut existing: BTreeMap<Millis, Vec<(Millis, Values)>> = BTreeMap::new();
        let rest: Vec<Value> = parts.collect();
        for pair in rest.chunks_exact(2) {
            let w = value_i64(&pair[0]).ok_or_else(|| self.corrupt(&stream, "bad chunk window"))?;
            let ticks = chunk::decode(pair[1].as_bytes().unwrap_or_default())
                .map_err(|e| self.corrupt(&self.inner.keys.chunks(host), &e.to_string()))?;
            existing.insert(w, ticks);
        }
        let mut added: BTreeMap<Millis, Vec<(Millis, Values)>> = BTreeMap::new();
        let mut late_ids: Vec<Value> = Vec::new();
        let sealed = entries.len();
        let mut last_read = StreamId::default();
        for entry in &entries {
            let e = parse_entry(entry).map_err(|m| self.corrupt(&stream, &m))?;
            last_read = e.id;
            if e.late_ts.is_some() {
                late_ids.push(e.id.to_string().into());
            }
            let t = e.into_tick(host).map_err(|m| self.corrupt(&stream, &m))?;
            added
                .entry(chunk::window_of(t.ts))
                .or_default()
                .push((t.ts, t.into_parts().2));
        }
        // Trim what was read: all below `before`, or up to the last entry
        // read when the read stopped at its count.
        let trim = if sealed >= SEAL_READ_MAX {
            format!("{}-{}", last_read.ms, last_read.seq + 1)
        } else {
            format!("{before}-0")
        };
        let mut args: Vec<Value> = vec![
            last.as_string().unwrap_or_default().into(),
            generation.as_string().unwrap_or_default().into(),
            trim.into(),
            Value::Integer(before),
            Value::Integer(late_ids.len() as i64),
        ];
        args.append(&mut late_ids);
        for (w, mut ticks) in added {
            // In arrival order the first of two equal `ts` wins; the sort is
            // stable.
            ticks.sort_by_key(|(ts, _)| *ts);
            ticks.dedup_by_key(|(ts, _)| *ts);
            let (merged, _) = chunk::merge(existing.remove(&w).unwrap_or_default(), ticks);
            let refs: Vec<(Millis, &Values)> = merged.iter().map(|(t, v)| (*t, v)).collect();
            args.push(Value::Integer(w));
            args.push(Value::Bytes(chunk::encode(&refs).into()));
        }
        Ok(Some((args, sealed)))
    }
}

/// Hosts sealed per round trip by [`TickStore::seal`].
const SEAL_HOSTS_PER_ROUND: usize = 16;

/// Stream entries read per host and round by [`TickStore::seal`].
const SEAL_READ_MAX: usize = 10_000;

impl TickStore for RedisStore {
    type Cursor = RedisCursor;

    fn append(
        &self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        self.append_ticks(ticks)
    }

    fn range(
        &self,
        host: &HostName,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<Tick>, StoreError>> + Send {
        self.range_ticks(host, from, to)
    }

    fn read_new(
        &self,
        cursor: &RedisCursor,
    ) -> impl Future<Output = Result<NewTicks<RedisCursor>, StoreError>> + Send {
        self.read_new_ticks(cursor)
    }

    fn cursor_now(&self) -> impl Future<Output = Result<RedisCursor, StoreError>> + Send {
        self.cursor_at_end()
    }

    fn hosts(&self) -> impl Future<Output = Result<Vec<HostInfo>, StoreError>> + Send {
        self.registry()
    }

    fn rediscover_hosts(&self) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.rediscover()
    }

    fn prune(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send {
        self.prune_before(before)
    }

    fn seal(&self, before: Millis) -> impl Future<Output = Result<SealOutcome, StoreError>> + Send {
        self.seal_streams(before)
    }
}

/// What a `read_new` has gathered so far.
#[derive(Default)]
struct Page {
    ticks: Vec<Tick>,
    positions: BTreeMap<HostName, StreamId>,
    /// Hosts with a full page: read again from their last position.
    more: Vec<(HostName, Option<StreamId>)>,
}

/// Splits the replies of [`RedisStore::queue_reads`] into one reply per
/// host (its entries, as an `XRANGE` would return them), in the order of
/// `keys` (the hosts' stream keys).
fn split_reads(
    groups: &[Vec<usize>],
    keys: Vec<String>,
    results: Vec<Result<Value, Error>>,
) -> Vec<Result<Value, Error>> {
    let mut out: Vec<Result<Value, Error>> = (0..keys.len())
        .map(|_| Ok(Value::Array(Vec::new())))
        .collect();
    // Found by key: a search of the group per reply stream was quadratic
    // (1,024 streams per group on one server).
    let index: std::collections::HashMap<String, usize> =
        keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
    for (group, result) in groups.iter().zip(results) {
        let fail = |out: &mut Vec<Result<Value, Error>>, e: Error| {
            for &i in group {
                out[i] = Err(e.clone());
            }
        };
        let streams: Vec<(Option<String>, Value)> = match result {
            Ok(Value::Null) => continue,
            Ok(Value::Map(map)) => map
                .inner()
                .into_iter()
                .map(|(k, v)| (k.as_str().map(str::to_owned), v))
                .collect(),
            Ok(Value::Array(pairs)) => pairs
                .into_iter()
                .map(|pair| {
                    let mut pair = pair.into_array().into_iter();
                    let key = pair.next().and_then(Value::into_string);
                    (key, pair.next().unwrap_or(Value::Null))
                })
                .collect(),
            Ok(other) => {
                let what = format!("unexpected XREAD reply {:?}", other.kind());
                fail(&mut out, Error::new(ErrorKind::Protocol, what));
                continue;
            }
            Err(e) => {
                fail(&mut out, e);
                continue;
            }
        };
        for (key, entries) in streams {
            // Groups hold increasing indices (`queue_reads`).
            match key
                .and_then(|k| index.get(&k).copied())
                .filter(|i| group.binary_search(i).is_ok())
            {
                Some(i) => out[i] = Ok(entries),
                None => fail(
                    &mut out,
                    Error::new(
                        ErrorKind::Protocol,
                        "XREAD returned a stream that was not asked for",
                    ),
                ),
            }
        }
    }
    out
}

/// Sends `pipeline` and returns exactly `n` replies (missing ones are
/// errors, so no caller can skip a host silently).
async fn replies(
    pipeline: &fred::clients::Pipeline<Client>,
    n: usize,
) -> Vec<Result<Value, Error>> {
    let mut results = pipeline.try_all::<Value>().await;
    results.resize_with(n, || {
        Err(Error::new(
            ErrorKind::Unknown,
            "no reply to a pipelined command",
        ))
    });
    results
}

/// Queues `EVALSHA` in `pipeline`, routed by the first key's hash slot
/// (fred's pipelines have no typed `evalsha`).
async fn queue_evalsha(
    pipeline: &fred::clients::Pipeline<Client>,
    script: &Script,
    keys: &[String],
    args: &[Value],
) -> Result<(), Error> {
    let slot = keys.first().map_or(ClusterHash::Random, |k| {
        ClusterHash::Custom(redis_keyslot(k.as_bytes()))
    });
    let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
    all.push(script.sha1().clone().into());
    all.push(Value::Integer(keys.len() as i64));
    all.extend(keys.iter().map(|k| Value::from(k.as_str())));
    all.extend(args.iter().cloned());
    pipeline
        .custom::<(), Value>(CustomCommand::new("EVALSHA", slot, false), all)
        .await
}

/// One decoded stream entry.
struct Entry<'a> {
    id: StreamId,
    late_ts: Option<Millis>,
    values: &'a [u8],
}

impl Entry<'_> {
    fn into_tick(self, host: &HostName) -> Result<Tick, String> {
        let ts = match self.late_ts {
            Some(ts) => ts,
            None => Millis::try_from(self.id.ms)
                .map_err(|_| format!("entry {}: ts out of range", self.id))?,
        };
        let values = codec::decode(self.values).map_err(|e| format!("entry {}: {e}", self.id))?;
        Ok(Tick::from_values(host.clone(), ts, values))
    }
}

fn parse_entry(v: &Value) -> Result<Entry<'_>, String> {
    let Value::Array(parts) = v else {
        return Err(format!("unexpected stream entry {v:?}"));
    };
    let [id, fields] = parts.as_slice() else {
        return Err(format!("unexpected stream entry {v:?}"));
    };
    let id_text = id.as_str().unwrap_or_default();
    let id = StreamId::parse(&id_text).ok_or_else(|| format!("bad stream id {id_text:?}"))?;
    let Value::Array(fields) = fields else {
        return Err(format!("entry {id}: unexpected fields {fields:?}"));
    };
    let mut late_ts = None;
    let mut values = None;
    for pair in fields.chunks_exact(2) {
        match pair[0].as_bytes() {
            Some(b"v") => values = pair[1].as_bytes(),
            Some(b"t") => late_ts = value_i64(&pair[1]),
            _ => {}
        }
    }
    let values = values.ok_or_else(|| format!("entry {id}: no field v"))?;
    if id.seq > 0 && late_ts.is_none() {
        return Err(format!("entry {id}: a late entry without field t"));
    }
    Ok(Entry {
        id,
        late_ts,
        values,
    })
}

fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        other => other.as_str().and_then(|s| s.parse().ok()),
    }
}

fn pair_of_ints(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::Array(a) if a.len() == 2 => Some((value_i64(&a[0])?, value_i64(&a[1])?)),
        _ => None,
    }
}
