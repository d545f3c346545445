//! [`RedisStore`]: the Redis implementation of
//! [`TickStore`](metrics_model::store::TickStore) and
//! [`AlertStore`](metrics_model::store::AlertStore), and
//! [`RedisStore::connect`], which ties its parts together: connect
//! (`connect.rs`), check (`checks.rs`), load the tick scripts. The
//! operations are in `ticks.rs` and [`crate::alerts`].

use std::fmt;
use std::sync::Arc;

use fred::prelude::*;
use fred::types::scripts::Script;
use metrics_model::RedisUrl;
use metrics_model::store::StoreError;

use crate::checks::check_scope;
use crate::connect::{connect_client, connect_error, is_unavailable, scrub};
use crate::error::RedisStoreError;
use crate::keys::Keys;
use crate::options::RedisOptions;
use crate::scripts;

pub use crate::checks::MIN_REDIS_VERSION;
pub use crate::ticks::{RedisCursor, StreamId};

/// The Redis store of ticks and alert state. Cloning is cheap: clones
/// share one connection (multiplexed; fred pipelines concurrent commands).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

/// What the clones of one [`RedisStore`] share; the modules of this crate
/// read it directly.
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) url: RedisUrl,
    pub(crate) scope: String,
    pub(crate) append: Script,
    pub(crate) range_late: Script,
    pub(crate) prune: Script,
    pub(crate) forget: Script,
    pub(crate) seal_read: Script,
    pub(crate) seal_commit: Script,
    /// The layout the scope's layout key says (checked at connect, raised
    /// by the first tick that needs 2 and the first seal, 3).
    pub(crate) layout: std::sync::atomic::AtomicU32,
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
        check_scope(&opts.scope)?;
        let client = connect_client(&opts).await?;
        let store = RedisStore {
            inner: Arc::new(Inner {
                client,
                keys: Keys::new(&opts.scope),
                url: opts.url,
                scope: opts.scope,
                append: Script::from_lua(scripts::append()),
                range_late: Script::from_lua(scripts::RANGE_LATE),
                prune: Script::from_lua(scripts::prune()),
                forget: Script::from_lua(scripts::FORGET),
                seal_read: Script::from_lua(scripts::seal_read()),
                seal_commit: Script::from_lua(scripts::seal_commit()),
                layout: std::sync::atomic::AtomicU32::new(0),
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
}
