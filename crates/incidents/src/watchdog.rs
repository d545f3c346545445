//! The watchdog: an optional URL fetched with `GET` after every successful
//! evaluation (a dead man's switch such as healthchecks.io or an
//! Alertmanager-fronted "Watchdog" receiver), so an outside monitor notices
//! when the alerter stops evaluating.
//!
//! [`Watchdog::ping`] returns at once: the request runs in its own task,
//! bounded by the watchdog's timeout, and a ping is skipped while the
//! previous one is still in flight, so pings never pile up and never delay
//! evaluation. Failures are logged rate-limited: the first one, then at most
//! one line per minute (with the count of failures since the last line),
//! and one line when pings succeed again. The URL is never logged (it
//! usually holds the check's secret id), only its origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use reqwest::Client;

use crate::hooks::HookError;
use crate::hooks::config::{Headers, WatchdogConfig};
use crate::hooks::webhook::{http_client, send};

/// Failures are logged at most once per this long.
pub const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_mins(1);

/// The watchdog (cloning is cheap and shares counters).
#[derive(Debug, Clone)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: WatchdogConfig,
    client: Client,
    in_flight: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    log: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    failing: bool,
    last_logged: Option<Instant>,
    unlogged: u64,
}

/// Counters of the watchdog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchdogStats {
    /// Pings that got a 2xx answer (`bp_watchdog_pings_total{outcome="ok"}`).
    pub ok: u64,
    /// Pings that failed (`bp_watchdog_pings_total{outcome="failed"}`).
    pub failed: u64,
    /// Pings skipped because the previous one was still in flight.
    pub skipped: u64,
}

impl Watchdog {
    /// The watchdog of `config`.
    pub fn new(config: WatchdogConfig) -> Result<Watchdog, HookError> {
        Ok(Watchdog {
            inner: Arc::new(Inner {
                config,
                client: http_client()?,
                in_flight: AtomicBool::new(false),
                ok: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                log: Mutex::new(LogState::default()),
            }),
        })
    }

    /// Pings in the background (call it from a tokio runtime after every
    /// successful evaluation). Never waits.
    pub fn ping(&self) {
        if self.inner.in_flight.swap(true, Ordering::AcqRel) {
            self.inner.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let request = inner.client.get(inner.config.url.0.clone());
            let result = send(
                "watchdog",
                &inner.config.url,
                &Headers::default(),
                request,
                inner.config.timeout,
            )
            .await;
            inner.in_flight.store(false, Ordering::Release);
            inner.record(result);
        });
    }

    /// The counters.
    pub fn stats(&self) -> WatchdogStats {
        WatchdogStats {
            ok: self.inner.ok.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            skipped: self.inner.skipped.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn record(&self, result: Result<(), HookError>) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if log.failing {
                    tracing::info!(origin = %self.config.url.origin(), "watchdog ping succeeds again");
                }
                *log = LogState::default();
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                log.failing = true;
                let due = log.last_logged.is_none_or(|t| t.elapsed() >= LOG_INTERVAL);
                if due {
                    tracing::warn!(error = %e, failures_not_logged = log.unlogged, "watchdog ping failed");
                    log.last_logged = Some(Instant::now());
                    log.unlogged = 0;
                } else {
                    log.unlogged += 1;
                }
            }
        }
    }
}
