//! The bp-monitoring alerter as a library: everything the active alerter
//! does, generic over the store traits ([`TickStore`], [`AlertStore`]), with
//! no command line and no HTTP (the `bp-alerter` binary wires it; the `web`
//! crate serves its read model).
//!
//! - [`leader`]: leadership — take or renew the lease each pass, fence
//!   every commit by it, stand by and poll when another alerter holds it —
//!   and the evaluation passes ([`leader::run_alerter`]);
//! - [`schedule`]: the lease's lifetime, the first instant after a restart
//!   (catch-up within `catchUpLimit`), the next wake-up;
//! - [`rebuild`]: the one way an engine is rebuilt from the stores (used by
//!   the leader and by the dashboard's rules view);
//! - [`mirror`]: the leader's copy of the alert store, written back when
//!   the store loses its data (a new store epoch);
//! - [`delivery`]: the outbox → dispatcher → ack / dead letter loop;
//! - [`janitor`]: retention of ticks and resolved incidents;
//! - [`config`]: the configuration front door (file text → monitoring,
//!   alerting and hooks, validated);
//! - [`list`]: `bp-alerter incidents`, the store's incidents as text;
//! - [`stats`]: the alerter's counters;
//! - [`transfer`]: `bp-alerter export` / `import` of the whole state.
//!
//! **Invariant:** an instant's transitions and the incident states they
//! lead to are committed in one atomic step fenced by the whole lease
//! (holder and token), and delivered from the outbox at least once, in
//! order per (rule, host); nothing here writes a store without that fence,
//! except the janitor's retention deletes.
//!
//! [`TickStore`]: metrics_model::store::TickStore
//! [`AlertStore`]: metrics_model::store::AlertStore
#![deny(missing_docs)]

pub mod config;
pub mod delivery;
pub mod janitor;
pub mod leader;
pub mod list;
pub mod mirror;
pub mod rebuild;
pub mod schedule;
pub mod stats;
pub mod transfer;

pub use config::{LoadedConfig, load_config, load_config_text};
pub use leader::{AlerterSetup, OnEvaluated, run_alerter};
pub use mirror::Mirrored;
pub use stats::AlerterStats;
