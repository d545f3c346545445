//! The only crate that speaks Redis (fred): [`RedisStore`], the Redis
//! implementation of [`metrics_model::store::TickStore`] and
//! [`metrics_model::store::AlertStore`].
//!
//! Modules, one job each:
//! - [`store`]: the [`RedisStore`] type and [`RedisStore::connect`], which
//!   ties the next three together; it re-exports the cursor [`RedisCursor`]
//!   (and [`StreamId`]) and [`store::MIN_REDIS_VERSION`].
//! - `connect.rs` (private): the fred client configuration from the URL
//!   (TLS, an optional CA file, the cluster and sentinel forms), the first
//!   connection, and the mapping of client errors, which scrubs the
//!   password.
//! - `checks.rs` (private): the start-up checks: the scope, Redis ≥ 6.2,
//!   the key layout (written on an empty Redis, an unknown one refused);
//!   warnings when Redis may evict keys or keeps nothing on disk.
//! - `ticks.rs` (private): the `TickStore` operations (append, range,
//!   read_new and cursor_now, hosts, prune) and the [`RedisCursor`] type.
//! - [`alerts`]: the `AlertStore` operations (the alerter's lease with a
//!   fencing token, incident states, outbox, resolved history, dead
//!   letters).
//! - [`options`]: [`RedisOptions`] (URL, scope, timeouts).
//! - [`keys`]: key names: the ticks' layout [`keys::Keys`] (version
//!   [`keys::LAYOUT_VERSION`]) and the alert store's [`keys::AlertKeys`].
//! - [`scripts`]: the Lua scripts of the atomic steps (ticks and alerts).
//! - [`codec`]: the compact binary form of a tick's values.
//! - [`error`]: [`RedisStoreError`] (connecting); operations fail with
//!   [`metrics_model::store::StoreError`].
//! - [`janitor`]: the tick retention janitor [`run_janitor`]. It prunes
//!   whichever `TickStore` it is given, so the in-memory store
//!   ([`metrics_model::MemoryStore`]) too when given one. Resolved incidents
//!   are pruned by the alerter through `AlertStore::prune_resolved`.
//!
//! Layout (docs/storage.md has the details): per host a stream whose entry
//! IDs are `<ts>-0` for in-order ticks (one field holding the values in
//! [`codec`] form) plus an index of late ticks; a registry of hosts with
//! their last `ts`; a layout version key. All keys of a host share the hash
//! tag `{<host>}`, so every script works on Redis Cluster.
//!
//! This crate does not decide the retention (the binaries pass it to
//! [`run_janitor`] from their configuration), does not buffer
//! during outages (the collector does; operations fail fast with
//! `StoreError::Unavailable`), and never logs a password.
#![deny(missing_docs)]

pub mod alerts;
mod checks;
pub use metrics_model::codec;
mod connect;
pub mod error;
pub mod janitor;
pub mod keys;
pub mod options;
pub mod scripts;
pub mod store;
mod ticks;

pub use error::RedisStoreError;
pub use janitor::{JanitorConfig, prune_once, run_janitor};
pub use options::RedisOptions;
pub use store::{RedisCursor, RedisStore, StreamId};
