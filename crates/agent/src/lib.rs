//! The node agent's runtime, as a library: what `bp-collector` runs on
//! every node, and standalone `bp-alerter` runs for its own machine.
//!
//! - [`config`]: [`AgentConfig`] (built from the monitoring configuration
//!   and the collector's flags — no command-line parsing here);
//! - [`run`] / [`run_with`]: a ticker task (one tick per interval, aligned
//!   to the interval), the StatsD and HTTP receivers, and the writer;
//! - [`writer`]: the bounded outage buffer, retries with backoff, and the
//!   sinks (a store, or stdout for the dry run);
//! - [`ingest`]: the StatsD (UDP) and HTTP (JSON) receivers, with the
//!   kernel's drop counter of the StatsD socket;
//! - [`ratelimit`]: rate-limited warnings;
//! - [`store`] and [`import`]: opening the store the deployment selects,
//!   and `bp-collector import` (JSON-lines ticks on stdin → store).
//!
//! Shutdown fans out through one `watch` channel: the receivers stop, the
//! ticker emits the current partial tick and closes the tick channel, and the
//! writer flushes its buffer (for at most `shutdown_timeout`).
//!
//! **Invariant:** one tick per interval per node, stamped with the aligned
//! instant, written at most once per `ts` (a duplicate is refused by the
//! store) and never lost while the outage buffer has room (the oldest are
//! dropped past it, counted).
#![deny(missing_docs)]
// "StatsD" is a protocol name in prose, not code to put in backticks.
#![allow(clippy::doc_markdown)]

pub mod config;
pub mod import;
pub mod ingest;
pub mod ratelimit;
pub mod signal;
pub mod store;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use collector::{Recorder, RecorderConfig, TickAssembler, next_tick_after};
use metrics_model::tick::Tick;
use metrics_model::time::{Millis, ceil_to, now_ms};
use tokio::sync::{mpsc, watch};

pub use config::AgentConfig;
pub use signal::shutdown_signal;

use crate::ingest::IngestStats;
use crate::ratelimit::RateLimited;
use crate::writer::{TickSink, WriterConfig, WriterStats};

/// How many missed ticks the ticker still emits (one after the other) when
/// it fell behind; further behind, it skips to the present.
const CATCH_UP_TICKS: i64 = 10;

/// Ticks per store write while catching up after an outage.
const WRITE_BATCH: usize = 500;

/// Runs the collector until `shutdown` completes, writing to the store the
/// configuration's deployment selects (Redis, or stdout for the dry run).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    for w in &config.deployment.warnings {
        tracing::warn!("{w}");
    }
    match store::open(&config.deployment).await? {
        store::Opened::Redis(sink) => run_with_sink(config, sink, shutdown).await,
        store::Opened::DryRun => {
            tracing::info!("REDIS_URL is not set: dry run, ticks are printed to stdout");
            run_with_sink(config, writer::StdoutSink, shutdown).await
        }
    }
}

/// A running collector's counters, shared with whoever reports them (its
/// own `/healthz`, or the standalone alerter's).
#[derive(Debug)]
pub struct Telemetry {
    /// This node's name.
    pub node: String,
    /// The receivers' counters.
    pub ingest: Arc<IngestStats>,
    /// The writer's counters.
    pub writer: Arc<WriterStats>,
    /// The node's recorder.
    pub recorder: Recorder,
    kernel_drops: std::sync::OnceLock<ingest::KernelDrops>,
}

impl Telemetry {
    /// Fresh counters for a collector of `config`.
    pub fn new(config: &AgentConfig) -> Arc<Telemetry> {
        Arc::new(Telemetry {
            node: config.node.to_string(),
            ingest: Arc::new(IngestStats::default()),
            writer: Arc::new(WriterStats::default()),
            recorder: Recorder::new(RecorderConfig {
                max_custom_fields: config.max_custom_fields,
            }),
            kernel_drops: std::sync::OnceLock::new(),
        })
    }

    /// The counters as `/healthz` shows them (the kernel's drop counter
    /// read now).
    pub fn health_json(&self) -> serde_json::Value {
        if let Some(d) = self.kernel_drops.get() {
            d.read(&self.ingest);
        }
        ingest::health_json(&self.node, &self.ingest, &self.writer, &self.recorder)
    }
}

/// Runs the collector with an explicit sink.
pub async fn run_with_sink<K: TickSink>(
    config: AgentConfig,
    sink: K,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let telemetry = Telemetry::new(&config);
    run_with(config, sink, telemetry, shutdown).await
}

/// Runs the collector with an explicit sink, counting into `telemetry`
/// (made by [`Telemetry::new`] for this `config`).
pub async fn run_with<K: TickSink>(
    config: AgentConfig,
    sink: K,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let recorder = telemetry.recorder.clone();
    let assembler =
        TickAssembler::with_options(config.node.clone(), recorder.clone(), config.system.clone())
            .context("cannot sample the system")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ingest_stats = telemetry.ingest.clone();
    let writer_stats = telemetry.writer.clone();
    let mut tasks = tokio::task::JoinSet::new();

    if let Some(addr) = config.statsd {
        spawn_statsd(addr, &config, &telemetry, &mut tasks, stop_rx.clone())?;
    }
    if let Some(addr) = config.http {
        let listener = ingest::bind_http(addr)
            .await
            .with_context(|| format!("cannot listen for http on tcp {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, token = config.http_token.is_some(), "http listening");
        let fut = ingest::http(
            listener,
            recorder.clone(),
            telemetry.kernel_drops.get().cloned(),
            config.http_token.clone(),
            config.node.to_string(),
            ingest_stats.clone(),
            writer_stats.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(error = %e, "http server failed");
            }
        });
    }

    let (tick_tx, tick_rx) = mpsc::unbounded_channel();
    let interval_ms = config.interval.as_millis_i64();
    let ticker = tokio::spawn(tick_loop(assembler, interval_ms, tick_tx, stop_rx));
    let writer = tokio::spawn(writer::write_loop(
        sink,
        tick_rx,
        WriterConfig {
            capacity: config.buffer_ticks,
            batch: WRITE_BATCH,
            write_timeout: std::time::Duration::from_secs(5).max(
                config
                    .interval
                    .to_std()
                    .min(std::time::Duration::from_secs(30)),
            ),
            shutdown_timeout: config.shutdown_timeout,
        },
        writer_stats,
    ));
    tracing::info!(
        node = %config.node,
        interval = %config.interval,
        buffer_ticks = config.buffer_ticks,
        "collector started"
    );

    let mut writer = writer;
    let writer_result = tokio::select! {
        () = shutdown => None,
        r = &mut writer => Some(r),
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = ticker.await;
    let report = match writer_result {
        Some(r) => r,
        None => writer.await,
    }
    .context("writer task failed")?
    .context("the store refused the ticks")?;
    if report.unwritten > 0 {
        anyhow::bail!(
            "{} tick(s) were not written: the store stayed unreachable for --shutdown-timeout",
            report.unwritten
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Binds the StatsD socket (reporting the receive buffer granted) and
/// spawns its receiver.
fn spawn_statsd(
    addr: std::net::SocketAddr,
    config: &AgentConfig,
    telemetry: &Telemetry,
    tasks: &mut tokio::task::JoinSet<()>,
    stop_rx: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (socket, granted) = ingest::bind_statsd(addr, config.statsd_buffer, &telemetry.ingest)
        .with_context(|| format!("cannot listen for statsd on udp {addr}"))?;
    if let Some(d) = ingest::KernelDrops::of(&socket) {
        let _ = telemetry.kernel_drops.set(d);
    }
    let local = socket.local_addr()?;
    tracing::info!(
        addr = %local,
        receive_buffer_requested = config.statsd_buffer,
        receive_buffer_granted = granted,
        "statsd listening"
    );
    if granted < config.statsd_buffer {
        tracing::warn!(
            requested = config.statsd_buffer,
            granted,
            "the kernel granted a smaller statsd receive buffer than asked (net.core.rmem_max \
             caps it; raise it with sysctl for bursts of datagrams)"
        );
    }
    tasks.spawn(ingest::statsd(
        socket,
        telemetry.recorder.clone(),
        telemetry.ingest.clone(),
        stop_rx,
    ));
    Ok(())
}

/// One tick per interval, stamped with the aligned instant; on shutdown one
/// last (partial) tick for the interval in progress.
async fn tick_loop(
    mut assembler: TickAssembler,
    interval_ms: i64,
    ticks: mpsc::UnboundedSender<Tick>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<Millis> = None;
    let mut custom_warning = RateLimited::new(std::time::Duration::from_mins(1));
    let mut custom_dropped = 0;
    loop {
        let now = now_ms();
        // Normally the next aligned instant. When the process fell behind
        // (CPU starvation), catch up tick by tick so that no ts is skipped,
        // unless it is far behind (a suspended machine).
        let due = match last {
            Some(l) if now - (l + interval_ms) < CATCH_UP_TICKS * interval_ms => l + interval_ms,
            _ => next_tick_after(now, interval_ms),
        };
        let wait = std::time::Duration::from_millis((due - now).max(0) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => break,
        }
        // The wall clock may lag the monotonic timer by a little: never stamp
        // a tick before its instant has come.
        while now_ms() < due {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let tick = assembler.collect(due);
        last = Some(due);
        if ticks.send(tick).is_err() {
            return;
        }
        let dropped = assembler.recorder().stats().custom_dropped;
        if dropped > custom_dropped {
            if let Some(suppressed) = custom_warning.allow() {
                tracing::warn!(
                    dropped_total = dropped,
                    suppressed,
                    "custom fields over the --max-custom-fields bound were dropped"
                );
            }
            custom_dropped = dropped;
        }
    }
    // The partial tick of the interval in progress: everything counted
    // since the last tick.
    let ts = last.map_or_else(|| ceil_to(now_ms(), interval_ms), |l| l + interval_ms);
    let _ = ticks.send(assembler.collect(ts));
}
