//! [`RedisStore`]: the Redis implementation of [`TickStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, InfoKind};
use fred::util::redis_keyslot;
use metrics_model::memory::check_ticks;
use metrics_model::store::{
    AppendOutcome, HostInfo, NewTicks, PruneOutcome, StoreError, TickStore,
};
use metrics_model::time::Millis;
use metrics_model::{HostName, RedisUrl, Tick};

use crate::codec;
use crate::error::RedisStoreError;
use crate::keys::{Keys, LAYOUT_VERSION};
use crate::options::RedisOptions;
use crate::scripts;

/// The oldest Redis this store runs on (`XTRIM MINID`, `ZADD GT`, exclusive
/// `XRANGE` bounds).
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Ticks per host per append script call; bigger batches are split so one
/// script never blocks Redis for long.
const APPEND_CHUNK: usize = 1000;

/// Stream entries read per host per round trip by [`TickStore::read_new`].
const READ_PAGE: u64 = 10_000;

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

/// The Redis tick store. Cloning is cheap: clones share one connection
/// (multiplexed; fred pipelines concurrent commands).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keys: Keys,
    url: RedisUrl,
    scope: String,
    append: Script,
    range_late: Script,
    prune: Script,
    forget: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.url)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stop the connection task (it would otherwise keep reconnecting).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            rt.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

impl RedisStore {
    /// Connects, checks the Redis version (≥ 6.2) and the key layout
    /// (writes it on an empty Redis, refuses an unknown one), loads the
    /// scripts, and warns (`tracing::warn!`) when Redis may evict keys or
    /// keeps nothing on disk.
    pub async fn connect(opts: RedisOptions) -> Result<RedisStore, RedisStoreError> {
        if !metrics_model::deployment::is_valid_scope(&opts.scope) {
            return Err(RedisStoreError::Config(format!(
                "BP_REDIS_SCOPE: {:?} is not a valid scope: use 1-64 of A-Z a-z 0-9 _ - .",
                opts.scope
            )));
        }
        let url = opts.url.clone();
        let mut config = Config::from_url(url.expose()).map_err(|e| {
            RedisStoreError::Config(format!("REDIS_URL {url}: {}", scrub(e.details(), &url)))
        })?;
        if let Some(ca) = &opts.tls_ca_file {
            if config.tls.is_none() {
                return Err(RedisStoreError::Config(format!(
                    "REDIS_URL {url}: a TLS CA file ({}) is set but the URL is not rediss://",
                    ca.display()
                )));
            }
            config.tls = Some(tls_with_ca(ca)?);
        }
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = opts.connect_timeout;
                c.internal_command_timeout = opts.command_timeout;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = opts.command_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
            .build()
            .map_err(|e| {
                RedisStoreError::Config(format!("REDIS_URL {url}: {}", scrub(e.details(), &url)))
            })?;
        let connected = tokio::time::timeout(opts.connect_timeout, client.init()).await;
        let failure = match connected {
            Ok(Ok(_task)) => None,
            Ok(Err(e)) => Some(connect_error(&e, &url)),
            Err(_) => Some(RedisStoreError::Unavailable(format!(
                "redis {url}: no connection within {:?}",
                opts.connect_timeout
            ))),
        };
        if let Some(err) = failure {
            let _ = tokio::time::timeout(opts.command_timeout, client.quit()).await;
            return Err(err);
        }
        let store = RedisStore {
            inner: Arc::new(Inner {
                client,
                keys: Keys::new(&opts.scope),
                url,
                scope: opts.scope,
                append: Script::from_lua(scripts::APPEND),
                range_late: Script::from_lua(scripts::RANGE_LATE),
                prune: Script::from_lua(scripts::PRUNE),
                forget: Script::from_lua(scripts::FORGET),
            }),
        };
        store.check_server().await?;
        store.check_layout().await?;
        store
            .load_scripts()
            .await
            .map_err(|e| connect_error(&e, &store.inner.url))?;
        Ok(store)
    }

    /// The key prefix.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// The URL (its `Display` hides the password).
    pub fn url(&self) -> &RedisUrl {
        &self.inner.url
    }

    /// The shared client (for the alert store in [`crate::alerts`]).
    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Closes the connection (clones too). Later operations fail.
    pub async fn close(&self) {
        let _ = self.inner.client.quit().await;
    }

    async fn check_server(&self) -> Result<(), RedisStoreError> {
        let url = &self.inner.url;
        let client = &self.inner.client;
        let info: String = client
            .info(Some(InfoKind::Server))
            .await
            .map_err(|e| connect_error(&e, url))?;
        let version = info_field(&info, "redis_version")
            .unwrap_or("unknown")
            .to_owned();
        let parsed = parse_version(&version);
        if parsed.is_none_or(|v| v < MIN_REDIS_VERSION) {
            return Err(RedisStoreError::Incompatible(format!(
                "redis {url} is version {version}; bp-monitoring needs Redis {}.{} or newer (XTRIM MINID, ZADD GT)",
                MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
            )));
        }
        let memory: String = client
            .info(Some(InfoKind::Memory))
            .await
            .map_err(|e| connect_error(&e, url))?;
        if let Some(policy) = info_field(&memory, "maxmemory_policy")
            && policy != "noeviction"
        {
            tracing::warn!(
                redis = %url,
                maxmemory_policy = policy,
                "redis may evict keys when full (maxmemory-policy is not noeviction): ticks and incidents could disappear; set maxmemory-policy noeviction"
            );
        }
        self.check_persistence().await;
        Ok(())
    }

    async fn check_persistence(&self) {
        let url = &self.inner.url;
        let config_get = |name: &'static str| {
            let client = self.inner.client.clone();
            async move {
                let v: Result<Vec<String>, Error> = client
                    .custom(
                        CustomCommand::new("CONFIG", ClusterHash::Random, false),
                        vec!["GET", name],
                    )
                    .await;
                v.ok().and_then(|v| v.get(1).cloned())
            }
        };
        let (save, aof) = (config_get("save").await, config_get("appendonly").await);
        if let (Some(save), Some(aof)) = (save, aof) {
            if save.trim().is_empty() && aof == "no" {
                tracing::warn!(
                    redis = %url,
                    "redis keeps nothing on disk (no RDB save points, appendonly no): a restart of redis loses every tick and incident; enable appendonly yes"
                );
            }
        } else {
            tracing::debug!(
                redis = %url,
                "CONFIG GET is not allowed; cannot check redis persistence settings"
            );
        }
    }

    async fn check_layout(&self) -> Result<(), RedisStoreError> {
        let url = &self.inner.url;
        let key = self.inner.keys.layout();
        let client = &self.inner.client;
        let set: Option<String> = client
            .set(
                &key,
                LAYOUT_VERSION.to_string(),
                None,
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| connect_error(&e, url))?;
        if set.is_some() {
            return Ok(());
        }
        let found: Option<String> = client.get(&key).await.map_err(|e| connect_error(&e, url))?;
        match found.as_deref() {
            Some(v) if v == LAYOUT_VERSION.to_string() => Ok(()),
            Some(v) => Err(RedisStoreError::Incompatible(format!(
                "redis {url}: key {key} says key layout {v:?}, but this bp-monitoring reads and writes layout {LAYOUT_VERSION} only; upgrade bp-monitoring or use another BP_REDIS_SCOPE"
            ))),
            None => Err(RedisStoreError::Redis(format!(
                "redis {url}: key {key} vanished while being checked; try again"
            ))),
        }
    }

    async fn load_scripts(&self) -> Result<(), Error> {
        let i = &self.inner;
        for s in [&i.append, &i.range_late, &i.prune, &i.forget] {
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

    /// Maps a client error to a [`StoreError`] (`Unavailable` for connection
    /// loss and timeouts), naming `what` failed; never shows the password.
    pub(crate) fn err(&self, what: &str, e: &Error) -> StoreError {
        let msg = format!(
            "redis {}: {what}: {}",
            self.inner.url,
            scrub(&e.to_string(), &self.inner.url)
        );
        if is_unavailable(e) {
            StoreError::Unavailable(msg)
        } else {
            StoreError::Other(msg)
        }
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
        for (host, mut list) in by_host {
            list.sort_by_key(|t| t.ts);
            newest.push((list.last().map_or(0, |t| t.ts), host));
            for chunk in list.chunks(APPEND_CHUNK) {
                let mut args = Vec::with_capacity(chunk.len() * 2);
                for t in chunk {
                    buf.clear();
                    codec::encode(&t.values, &mut buf);
                    args.push(Value::Integer(t.ts));
                    args.push(Value::Bytes(buf.clone().into()));
                }
                calls.push((
                    &self.inner.append,
                    vec![keys.ticks(host), keys.late(host)],
                    args,
                ));
            }
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
        queued.map_err(|e| self.err("reading ticks", &e))?;
        let mut results = replies(&pipeline, 2).await.into_iter();
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
        let mut ticks = Vec::new();
        for entry in entries.into_array() {
            let e = parse_entry(&entry).map_err(|m| self.corrupt(&stream, &m))?;
            if e.late_ts.is_none() {
                ticks.push(e.into_tick(host).map_err(|m| self.corrupt(&stream, &m))?);
            }
        }
        let late = late.into_array();
        for pair in late.chunks_exact(2) {
            let ts =
                value_i64(&pair[0]).ok_or_else(|| self.corrupt(&stream, "late tick without ts"))?;
            let values = codec::decode(pair[1].as_bytes().unwrap_or_default())
                .map_err(|e| self.corrupt(&stream, &e.to_string()))?;
            ticks.push(Tick {
                host: host.clone(),
                ts,
                values,
            });
        }
        ticks.sort_by_key(|t| t.ts);
        Ok(ticks)
    }

    fn corrupt(&self, key: &str, what: &str) -> StoreError {
        StoreError::Other(format!("redis {}: key {key}: {what}", self.inner.url))
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
        self.queue_xranges(&pipeline, &known).await?;
        let mut results = replies(&pipeline, known.len() + 1).await.into_iter();
        let raw = results
            .next()
            .unwrap_or_else(|| Err(Error::new(ErrorKind::Unknown, "no registry reply")))
            .map_err(|e| self.err("reading the host registry", &e))?
            .into_array();
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
            self.queue_xranges(&pipeline, &pending).await?;
            let results = replies(&pipeline, pending.len()).await;
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

    /// Queues one page of `XRANGE` after each host's position.
    async fn queue_xranges(
        &self,
        pipeline: &fred::clients::Pipeline<Client>,
        hosts: &[(HostName, Option<StreamId>)],
    ) -> Result<(), StoreError> {
        for (host, pos) in hosts {
            let start = pos.map_or_else(|| "-".to_owned(), |p| format!("({p}"));
            pipeline
                .xrange::<(), _, _, _>(self.inner.keys.ticks(host), start, "+", Some(READ_PAGE))
                .await
                .map_err(|e| self.err("reading new ticks", &e))?;
        }
        Ok(())
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
        let calls: Vec<_> = hosts
            .iter()
            .map(|h| {
                (
                    &self.inner.prune,
                    vec![keys.ticks(&h.host), keys.late(&h.host)],
                    vec![Value::Integer(before)],
                )
            })
            .collect();
        let mut gone = Vec::new();
        for (h, r) in hosts.iter().zip(self.eval_many(&calls).await) {
            let v = r.map_err(|e| self.err("pruning ticks", &e))?;
            let (removed, empty) = pair_of_ints(&v).ok_or_else(|| {
                StoreError::Other(format!(
                    "redis {}: unexpected reply to prune: {v:?}",
                    self.inner.url
                ))
            })?;
            out.ticks_removed += removed as usize;
            if empty == 1 {
                gone.push(h.host.as_str().into());
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
}

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

    fn prune(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send {
        self.prune_before(before)
    }
}

/// A rustls client configuration trusting the CA certificates of the PEM
/// file `ca` (instead of the system's roots, like `redis-cli --cacert`).
fn tls_with_ca(ca: &std::path::Path) -> Result<fred::types::config::TlsConfig, RedisStoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let bad =
        |what: String| RedisStoreError::Config(format!("TLS CA file {}: {what}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate in the file".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(fred::types::config::TlsConnector::from(config).into())
}

/// Sends `pipeline` and returns exactly `n` replies (missing ones are
/// errors, so no caller can skip a host silently).
/// What a `read_new` has gathered so far.
#[derive(Default)]
struct Page {
    ticks: Vec<Tick>,
    positions: BTreeMap<HostName, StreamId>,
    /// Hosts with a full page: read again from their last position.
    more: Vec<(HostName, Option<StreamId>)>,
}

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
        Ok(Tick {
            host: host.clone(),
            ts,
            values,
        })
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

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn is_unavailable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Backpressure
            | ErrorKind::Cluster
    ) || e.details().starts_with("LOADING")
        || e.details().starts_with("CLUSTERDOWN")
        || e.details().starts_with("TRYAGAIN")
        || e.details().starts_with("MASTERDOWN")
}

fn connect_error(e: &Error, url: &RedisUrl) -> RedisStoreError {
    let text = e.to_string();
    let msg = format!("redis {url}: {}", scrub(&text, url));
    if matches!(e.kind(), ErrorKind::Tls) || text.contains("InvalidCertificate") {
        return RedisStoreError::Config(format!(
            "{msg} (TLS: the server's certificate is not trusted for this host; check the host name, or give the CA file)"
        ));
    }
    match e.kind() {
        ErrorKind::Auth => {
            RedisStoreError::Redis(format!("{msg} (check the user and password in REDIS_URL)"))
        }
        _ if is_unavailable(e) => RedisStoreError::Unavailable(msg),
        ErrorKind::Config | ErrorKind::Url => RedisStoreError::Config(msg),
        _ => RedisStoreError::Redis(msg),
    }
}

/// Removes the URL's credentials from `text` (defence in depth: client
/// errors should not contain them, but a message must never leak one).
fn scrub(text: &str, url: &RedisUrl) -> String {
    url.scrub(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("7.0.15"), Some((7, 0)));
        assert_eq!(parse_version("6.2"), Some((6, 2)));
        assert_eq!(parse_version("x"), None);
        assert!(parse_version("6.0.9").unwrap() < MIN_REDIS_VERSION);
        assert!(parse_version("10.0.0").unwrap() > MIN_REDIS_VERSION);
    }

    #[test]
    fn scrubbing() {
        let u = RedisUrl::parse("redis://bob:p%40ss@h:1/0").unwrap();
        assert_eq!(
            scrub("failed for redis://bob:p%40ss@h:1/0 p%40ss", &u),
            "failed for redis://bob:***@h:1/0 ***"
        );
        let u = RedisUrl::parse("redis://h:1").unwrap();
        assert_eq!(scrub("x", &u), "x");
        let u = RedisUrl::parse("redis://u@h:1?password=s3cret").unwrap();
        assert_eq!(
            scrub("failed for redis://u@h:1?password=s3cret (s3cret)", &u),
            "failed for redis://u@h:1?password=*** (***)"
        );
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis"), None);
    }
}
