//! Names, units and types that every bp-monitoring crate shares.
//!
//! - [`field`]: the standard fields (`cpu.usage`, `errors.count`, …) with their
//!   units, and application-defined `custom.<name>` fields.
//! - [`key`]: keys, a field with an optional instance (`disk.usage[/var]`).
//! - [`host`]: validated host (node) names.
//! - [`glob`]: `*`/`?` globs for host patterns and silence matchers.
//! - [`duration`]: the `1h30m` duration grammar used by every configuration.
//! - [`tick`]: one sample of one host at one instant, and the JSON-lines
//!   format used by `bp-alerter replay` and `bp-collector import`.
//! - [`time`]: milliseconds-since-epoch helpers (RFC 3339 in and out).
//! - [`store`]: the traits the Redis store and the in-memory stores implement
//!   ([`store::TickStore`] for ticks, [`store::AlertStore`] for the alerter's
//!   lease, incident states, outbox and history); [`memory`] and
//!   [`memory_alerts`] are the in-memory implementations.
//! - [`synthetic`]: deterministic realistic ticks for benchmarks and demos.
//! - [`deployment`]: how the environment (`REDIS_URL`, `CLUSTER_ENABLED`,
//!   `BP_REDIS_SCOPE`) selects standalone or cluster mode; the redacting
//!   [`deployment::RedisUrl`].
//!
//! This crate does no IO: it reads no file, socket, clock or environment
//! variable. Callers pass those values in.
#![deny(missing_docs)]

pub mod chunk;
pub mod codec;
pub mod config;
pub mod deployment;
pub mod duration;
pub mod field;
pub mod glob;
pub mod host;
pub mod key;
pub mod memory;
pub mod memory_alerts;
pub mod store;
pub mod synthetic;
pub mod tick;
pub mod time;
pub mod token;

pub use deployment::{Deployment, Mode, RedisUrl};
pub use duration::Duration;
pub use field::{Field, StandardField};
pub use host::HostName;
pub use key::{Instance, Key, KeyError};
pub use memory::MemoryStore;
pub use memory_alerts::MemoryAlertStore;
pub use tick::{Tick, TickLineError, Values};
