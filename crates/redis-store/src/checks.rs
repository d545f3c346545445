//! The checks of [`RedisStore::connect`], which refuse with a message that
//! says what to change: a valid scope, Redis ≥ [`MIN_REDIS_VERSION`], and
//! the key layout (written on an empty Redis, an unknown one refused). They
//! also warn (`tracing::warn!`) when Redis may evict keys or keeps nothing
//! on disk.

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, InfoKind};

use crate::connect::connect_error;
use crate::error::RedisStoreError;
use crate::keys::{LAYOUT_VERSION, OLDEST_LAYOUT};
use crate::store::RedisStore;

/// The oldest Redis this store runs on (`XTRIM MINID`, `ZADD GT`, exclusive
/// `XRANGE` bounds).
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Refuses a scope that is not 1-64 of `A-Z a-z 0-9 _ - .` (before
/// connecting).
pub(crate) fn check_scope(scope: &str) -> Result<(), RedisStoreError> {
    if !metrics_model::deployment::is_valid_scope(scope) {
        return Err(RedisStoreError::Config(format!(
            "BP_REDIS_SCOPE: {scope:?} is not a valid scope: use 1-64 of A-Z a-z 0-9 _ - ."
        )));
    }
    Ok(())
}

impl RedisStore {
    /// Refuses a Redis older than [`MIN_REDIS_VERSION`]; warns about an
    /// eviction policy other than `noeviction` and about no persistence.
    pub(crate) async fn check_server(&self) -> Result<(), RedisStoreError> {
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

    /// Writes layout `1` on an empty Redis (moved to `2` by the first tick
    /// that needs it and to `3` by the first seal,
    /// [`RedisStore::ensure_layout`]); accepts `1` to `3`; refuses any other
    /// layout.
    pub(crate) async fn check_layout(&self) -> Result<(), RedisStoreError> {
        let url = &self.inner.url;
        let key = self.inner.keys.layout();
        let client = &self.inner.client;
        let set: Option<String> = client
            .set(
                &key,
                OLDEST_LAYOUT.to_string(),
                None,
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| connect_error(&e, url))?;
        if set.is_some() {
            self.inner
                .layout
                .store(OLDEST_LAYOUT, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let found: Option<String> = client.get(&key).await.map_err(|e| connect_error(&e, url))?;
        match found.as_deref().map(str::parse::<u32>) {
            Some(Ok(v)) if (OLDEST_LAYOUT..=LAYOUT_VERSION).contains(&v) => {
                self.inner
                    .layout
                    .store(v, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Some(_) => Err(RedisStoreError::Incompatible(format!(
                "redis {url}: key {key} says key layout {:?}, but this bp-monitoring reads layouts {OLDEST_LAYOUT} to {LAYOUT_VERSION} only; upgrade bp-monitoring or use another BP_REDIS_SCOPE",
                found.unwrap_or_default()
            ))),
            None => Err(RedisStoreError::Redis(format!(
                "redis {url}: key {key} vanished while being checked; try again"
            ))),
        }
    }

    /// Raises the scope's layout to `want` (2: before the first tick that
    /// needs the keyed section; 3: before the first sealed chunk), so that
    /// an older bp-monitoring refuses the scope with a clear message at
    /// start instead of misreading it. A higher layout already there is
    /// kept. Once per store and level.
    pub(crate) async fn ensure_layout(
        &self,
        want: u32,
    ) -> Result<(), metrics_model::store::StoreError> {
        use std::sync::atomic::Ordering;
        if self.inner.layout.load(Ordering::Relaxed) >= want {
            return Ok(());
        }
        let key = self.inner.keys.layout();
        let client = &self.inner.client;
        let old: Option<String> = client
            .set(&key, want.to_string(), None, None, true)
            .await
            .map_err(|e| self.err(&format!("marking the key layout {want}"), &e))?;
        let old_level = old.as_deref().map(str::parse::<u32>);
        match old_level {
            None => {}
            // Another process raised it further meanwhile: keep that.
            Some(Ok(v)) if (OLDEST_LAYOUT..=LAYOUT_VERSION).contains(&v) && v > want => {
                let _: Result<(), _> = client.set(&key, v.to_string(), None, None, false).await;
                self.inner.layout.store(v, Ordering::Relaxed);
                return Ok(());
            }
            Some(Ok(v)) if (OLDEST_LAYOUT..=LAYOUT_VERSION).contains(&v) => {}
            Some(_) => {
                let other = old.unwrap_or_default();
                // Put back what another version wrote: not ours to change.
                let _: Result<(), _> = client.set(&key, other.as_str(), None, None, false).await;
                return Err(metrics_model::store::StoreError::Other(format!(
                    "redis {}: key {key} says key layout {other:?}, which this bp-monitoring does not write",
                    self.inner.url
                )));
            }
        }
        if old.as_deref() != Some(want.to_string().as_str()) {
            if want == 2 {
                tracing::info!(
                    key = %key,
                    "key layout is now 2 (ticks with instances or version-2 fields); bp-monitoring before rules version 2 refuses this scope: upgrade alerters first"
                );
            } else {
                tracing::info!(
                    key = %key,
                    layout = want,
                    "key layout is now {want} (sealed compressed chunks); older bp-monitoring refuses this scope: upgrade alerters first"
                );
            }
        }
        self.inner.layout.store(want, Ordering::Relaxed);
        Ok(())
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
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis"), None);
    }
}
