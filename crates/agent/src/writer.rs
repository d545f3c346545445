//! The writer: ticks → store, through a bounded outage buffer.
//!
//! Every tick goes into a FIFO buffer first; the writer appends the oldest
//! ticks in batches. When an append fails (or takes longer than the write
//! timeout), the ticks stay in the buffer and the writer retries with
//! exponential backoff (100 ms doubling up to 5 s, ±20 % jitter) while new
//! ticks keep queueing behind them, so they are written in order once the
//! store is back. Appends are idempotent per (host, ts), so a batch that was
//! in fact stored before a timeout is not stored twice. Past the bound the
//! oldest tick is dropped, counted, and logged.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_model::store::{AppendOutcome, StoreError, TickStore};
use metrics_model::tick::Tick;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::ratelimit::RateLimited;

/// Where ticks go.
pub trait TickSink: Send + 'static {
    /// Writes `ticks` (in order); idempotent per (host, ts).
    fn write(
        &mut self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;
}

/// A [`TickStore`] as a sink.
#[derive(Debug)]
pub struct StoreSink<S>(pub S);

impl<S: TickStore + 'static> TickSink for StoreSink<S> {
    fn write(
        &mut self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        self.0.append(ticks)
    }
}

/// The dry run: ticks printed to stdout as JSON lines.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl TickSink for StdoutSink {
    fn write(
        &mut self,
        ticks: &[Tick],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        let mut out = std::io::stdout().lock();
        let mut result = Ok(());
        for t in ticks {
            result = writeln!(out, "{}", t.to_json_line());
            if result.is_err() {
                break;
            }
        }
        let result = result
            .and_then(|()| out.flush())
            .map(|()| AppendOutcome {
                written: ticks.len(),
                duplicates: 0,
            })
            .map_err(|e| StoreError::Other(format!("stdout: {e}")));
        std::future::ready(result)
    }
}

/// Counters shared with the rest of the process (the health endpoint).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Ticks stored.
    pub written: AtomicU64,
    /// Ticks the store already had.
    pub duplicates: AtomicU64,
    /// Ticks dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Ticks waiting in the buffer.
    pub buffered: AtomicU64,
    /// Failed store writes.
    pub failures: AtomicU64,
}

/// Options of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// The buffer's bound, in ticks.
    pub capacity: usize,
    /// Ticks per store write.
    pub batch: usize,
    /// A store write taking longer than this counts as failed.
    pub write_timeout: Duration,
    /// After the tick channel closes, how long to keep trying to flush.
    pub shutdown_timeout: Duration,
}

/// A bounded FIFO of ticks that drops the oldest past its bound.
#[derive(Debug)]
pub struct Buffer {
    queue: VecDeque<Tick>,
    capacity: usize,
}

impl Buffer {
    /// An empty buffer of at most `capacity` (≥ 1) ticks.
    pub fn new(capacity: usize) -> Self {
        Buffer {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `tick`; returns the tick dropped to make room, if any.
    pub fn push(&mut self, tick: Tick) -> Option<Tick> {
        let dropped = if self.queue.len() >= self.capacity {
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.push_back(tick);
        dropped
    }

    /// The oldest `n` ticks (at most), as one slice.
    pub fn front(&mut self, n: usize) -> &[Tick] {
        let n = n.min(self.queue.len());
        &self.queue.make_contiguous()[..n]
    }

    /// Removes the oldest `n` ticks.
    pub fn pop(&mut self, n: usize) {
        self.queue.drain(..n.min(self.queue.len()));
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            // Give the memory of a long outage back.
            self.queue.shrink_to(16);
        }
    }

    /// How many ticks wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no tick waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Exponential backoff with jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    seed: u64,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Backoff {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos().into())
            | 1;
        Backoff {
            next: BACKOFF_MIN,
            seed,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn step(&mut self) -> Duration {
        // xorshift64 for ±20 % jitter
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.8 + (self.seed % 1000) as f64 / 2500.0;
        let d = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
}

/// What the writer did, returned when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Ticks left unwritten at shutdown (the store stayed unreachable).
    pub unwritten: usize,
}

/// Runs until `ticks` closes, then flushes for at most the shutdown timeout.
/// Ends early with an error only when the store says retrying cannot help.
pub async fn write_loop<K: TickSink>(
    mut sink: K,
    mut ticks: mpsc::UnboundedReceiver<Tick>,
    config: WriterConfig,
    stats: Arc<WriterStats>,
) -> Result<WriterReport, StoreError> {
    let mut w = Writer {
        buffer: Buffer::new(config.capacity),
        backoff: Backoff::new(),
        failing: false,
        drop_warning: RateLimited::new(Duration::from_secs(10)),
        failure_warning: RateLimited::new(Duration::from_secs(10)),
        stats,
        config,
    };
    let mut retry_at: Option<Instant> = None;
    loop {
        if w.buffer.is_empty() {
            match ticks.recv().await {
                Some(t) => w.push(t),
                None => break,
            }
        } else if let Some(at) = retry_at {
            tokio::select! {
                t = ticks.recv() => match t {
                    Some(t) => w.push(t),
                    None => break,
                },
                () = sleep_until(at) => retry_at = None,
            }
            continue;
        }
        while let Ok(t) = ticks.try_recv() {
            w.push(t);
        }
        if !w.write_batch(&mut sink).await? {
            retry_at = Some(Instant::now() + w.backoff.step());
        }
    }
    // Shutdown: the channel is closed and drained; flush what is left.
    let deadline = Instant::now() + config.shutdown_timeout;
    while !w.buffer.is_empty() && Instant::now() < deadline {
        if !w.write_batch(&mut sink).await? {
            sleep_until((Instant::now() + w.backoff.step()).min(deadline)).await;
        }
    }
    let unwritten = w.buffer.len();
    if unwritten > 0 {
        tracing::error!(
            unwritten,
            "shutting down with ticks the store did not take; they are lost"
        );
    }
    Ok(WriterReport { unwritten })
}

struct Writer {
    buffer: Buffer,
    backoff: Backoff,
    failing: bool,
    drop_warning: RateLimited,
    failure_warning: RateLimited,
    stats: Arc<WriterStats>,
    config: WriterConfig,
}

impl Writer {
    fn push(&mut self, tick: Tick) {
        if let Some(old) = self.buffer.push(tick) {
            let total = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(suppressed) = self.drop_warning.allow() {
                tracing::warn!(
                    dropped_ts = old.ts,
                    dropped_total = total,
                    suppressed,
                    capacity = self.buffer.capacity,
                    "outage buffer full; dropped the oldest tick"
                );
            }
        }
        self.stats
            .buffered
            .store(self.buffer.len() as u64, Ordering::Relaxed);
    }

    /// One append of the oldest ticks. `Ok(false)`: failed, retry later.
    async fn write_batch<K: TickSink>(&mut self, sink: &mut K) -> Result<bool, StoreError> {
        let batch = self.buffer.front(self.config.batch);
        let n = batch.len();
        let result = match timeout(self.config.write_timeout, sink.write(batch)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.config.write_timeout
            ))),
        };
        match result {
            Ok(outcome) => {
                self.buffer.pop(n);
                self.stats
                    .written
                    .fetch_add(outcome.written as u64, Ordering::Relaxed);
                self.stats
                    .duplicates
                    .fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
                self.stats
                    .buffered
                    .store(self.buffer.len() as u64, Ordering::Relaxed);
                if self.failing && self.buffer.is_empty() {
                    tracing::info!("store reachable again; buffered ticks written");
                    self.failing = false;
                }
                self.backoff.reset();
                Ok(true)
            }
            Err(e @ StoreError::Incompatible(_)) => {
                tracing::error!(error = %e, "the store cannot take ticks from this version");
                Err(e)
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    tracing::warn!(error = %e, buffered = self.buffer.len(), "store write failed; buffering");
                    self.failing = true;
                } else if let Some(suppressed) = self.failure_warning.allow() {
                    tracing::warn!(error = %e, buffered = self.buffer.len(), suppressed, "store still failing; buffering");
                }
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_model::memory::MemoryStore;

    fn tick(ts: i64) -> Tick {
        Tick::new("n".parse().unwrap(), ts, [])
    }

    #[test]
    fn buffer_drops_the_oldest() {
        let mut b = Buffer::new(3);
        for ts in 1..=3 {
            assert!(b.push(tick(ts)).is_none());
        }
        assert_eq!(b.push(tick(4)).map(|t| t.ts), Some(1));
        assert_eq!(b.push(tick(5)).map(|t| t.ts), Some(2));
        let front: Vec<i64> = b.front(2).iter().map(|t| t.ts).collect();
        assert_eq!(front, [3, 4]);
        b.pop(2);
        assert_eq!(b.front(10).iter().map(|t| t.ts).collect::<Vec<_>>(), [5]);
        b.pop(10);
        assert!(b.is_empty());
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = Backoff::new();
        let steps: Vec<Duration> = (0..12).map(|_| b.step()).collect();
        assert!(steps[0] >= Duration::from_millis(80) && steps[0] <= Duration::from_millis(120));
        assert!(steps[11] >= Duration::from_secs(4) && steps[11] <= Duration::from_secs(6));
        b.reset();
        assert!(b.step() <= Duration::from_millis(120));
    }

    /// A sink that fails while `down` is set, then behaves as the store.
    struct Flaky {
        store: MemoryStore,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    impl TickSink for Flaky {
        async fn write(&mut self, ticks: &[Tick]) -> Result<AppendOutcome, StoreError> {
            if self.down.load(Ordering::Relaxed) {
                Err(StoreError::Unavailable("down".into()))
            } else {
                self.store.append(ticks).await
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn buffers_through_an_outage_and_writes_in_order() {
        let store = MemoryStore::new();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let config = WriterConfig {
            capacity: 5,
            batch: 2,
            write_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
        };
        let task = tokio::spawn(write_loop(
            Flaky {
                store: store.clone(),
                down: down.clone(),
            },
            rx,
            config,
            stats.clone(),
        ));
        for ts in 1..=7 {
            tx.send(tick(ts * 1000)).unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.buffered.load(Ordering::Relaxed), 5);
        down.store(false, Ordering::Relaxed);
        drop(tx);
        let report = task.await.unwrap().unwrap();
        assert_eq!(report.unwritten, 0);
        let got = store.range(&"n".parse().unwrap(), 0, 10_000).await.unwrap();
        let ts: Vec<i64> = got.iter().map(|t| t.ts).collect();
        assert_eq!(ts, [3000, 4000, 5000, 6000, 7000]);
        assert_eq!(stats.written.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_shutdown_timeout() {
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, rx) = mpsc::unbounded_channel();
        let config = WriterConfig {
            capacity: 10,
            batch: 10,
            write_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(3),
        };
        let task = tokio::spawn(write_loop(
            Flaky {
                store: MemoryStore::new(),
                down,
            },
            rx,
            config,
            Arc::new(WriterStats::default()),
        ));
        tx.send(tick(1)).unwrap();
        tx.send(tick(2)).unwrap();
        drop(tx);
        assert_eq!(task.await.unwrap().unwrap().unwritten, 2);
    }
}
