//! System sampling and the in-process metrics recorder of bp-monitoring:
//! everything that turns readings into [`Tick`](metrics_model::Tick)s.
//!
//! - [`recorder`]: [`Recorder`], the cheap-to-clone, lock-free handle that
//!   applications count requests, events, log lines and custom fields into,
//!   with per-interval delta semantics.
//! - [`system`]: [`SystemSampler`], CPU / memory / swap / load / uptime
//!   through sysinfo, disks, devices, interfaces and watched processes from
//!   `/proc`, cgroup memory limits,
//!   reusing its state between ticks.
//! - [`tick`]: [`TickAssembler`] (readings + counts → one tick) and the
//!   interval alignment ([`next_tick_after`]).
//! - [`statsd`]: the StatsD / DogStatsD line format and its mapping onto a
//!   recorder ([`StatsdSink`]).
//! - [`json`]: the JSON body format of the collector's HTTP endpoint.
//! - [`logging`]: the log field formatter both binaries use (control
//!   characters escaped, colours only on a terminal).
//! - [`layers`]: a `tracing` layer counting WARN/ERROR events and a `tower`
//!   layer counting HTTP requests (and setting `X-Response-Time`).
//!
//! This crate does not know about Redis or any store, opens no socket and
//! schedules nothing: the `bp-collector` binary does the IO and the timing.
#![deny(missing_docs)]
// "StatsD" and "DogStatsD" are protocol names in prose, not code to put in backticks.
#![allow(clippy::doc_markdown)]

pub mod error;
pub mod json;
pub mod layers;
pub mod logging;
pub mod recorder;
pub mod statsd;
pub mod system;
pub mod tick;

pub use error::CollectorError;
pub use layers::{RequestMetricsLayer, TracingLayer};
pub use recorder::{CustomCounter, CustomGauge, Recorder, RecorderConfig, RecorderStats};
pub use statsd::StatsdSink;
pub use system::SystemSampler;
pub use tick::{TickAssembler, next_tick_after};
