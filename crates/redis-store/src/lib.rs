//! The only crate that speaks Redis (fred): [`RedisStore`], the Redis
//! implementation of [`metrics_model::store::TickStore`].
//!
//! - [`store`]: [`RedisStore`] (connect, checks at start-up, the trait
//!   implementation) and its cursor [`RedisCursor`].
//! - [`options`]: [`RedisOptions`] (URL, scope, timeouts).
//! - [`keys`]: key names of the layout (version [`keys::LAYOUT_VERSION`]).
//! - [`codec`]: the compact binary form of a tick's values.
//! - [`scripts`]: the Lua scripts of the atomic steps.
//! - [`error`]: [`RedisStoreError`] (connecting); operations fail with
//!   [`metrics_model::store::StoreError`].
//! - [`janitor`]: the retention janitor loop, for any `TickStore`.
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
pub mod codec;
pub mod error;
pub mod janitor;
pub mod keys;
pub mod options;
pub mod scripts;
pub mod store;

pub use error::RedisStoreError;
pub use janitor::{JanitorConfig, run_janitor};
pub use options::RedisOptions;
pub use store::{RedisCursor, RedisStore, StreamId};
