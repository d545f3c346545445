//! `bp-collector import`: ticks as JSON lines on stdin → the store.
//!
//! Lines are parsed with `Tick::parse_line` (the replay format). A bad line
//! is reported on stderr with its line number and **skipped**: the rest of
//! the input is still imported, and the exit status is 1 when any line was
//! rejected. The ticks go to the store in batches; a batch that fails because
//! the store is unreachable is retried with backoff for up to a minute before
//! the import gives up. Appends are idempotent per (host, ts), so importing
//! the same input twice stores nothing the second time (every tick counts as
//! a duplicate), and the input may be in any order.

use std::time::{Duration, Instant};

use metrics_model::store::{AppendOutcome, StoreError, TickStore};
use metrics_model::tick::Tick;
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// At most this many bad lines are reported one by one (then only counted).
const MAX_REPORTED: usize = 100;
/// How long a batch is retried while the store is unavailable.
const RETRY_FOR: Duration = Duration::from_mins(1);

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Ticks stored.
    pub written: usize,
    /// Ticks the store already had (same host and ts).
    pub duplicates: usize,
    /// Lines rejected as malformed.
    pub rejected: usize,
    /// Input lines read (blank ones included).
    pub lines: usize,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// Reads ticks from `input` and appends them to `store` in batches of
/// `batch`. Bad lines are written to `errors` (one line each, at most 100).
pub async fn import<S: TickStore, R: AsyncBufRead + Unpin>(
    store: &S,
    input: R,
    batch: usize,
    errors: &mut impl std::io::Write,
) -> Result<ImportReport, StoreError> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let mut lines = input.lines();
    let mut pending: Vec<Tick> = Vec::with_capacity(batch);
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                report.lines += 1;
                report.rejected += 1;
                let _ = writeln!(errors, "line {}: cannot read: {e}", report.lines);
                break;
            }
        };
        report.lines += 1;
        match Tick::parse_line(&line, report.lines) {
            Ok(Some(t)) if t.ts < 0 => {
                let message = format!("line {}: ts {} is before 1970-01-01", report.lines, t.ts);
                reject(&mut report, errors, &message);
            }
            Ok(Some(t)) => {
                pending.push(t);
                if pending.len() >= batch {
                    add(&mut report, append_retrying(store, &pending).await?);
                    pending.clear();
                }
            }
            Ok(None) => {}
            Err(e) => reject(&mut report, errors, &e.to_string()),
        }
    }
    if !pending.is_empty() {
        add(&mut report, append_retrying(store, &pending).await?);
    }
    if report.rejected > MAX_REPORTED {
        let _ = writeln!(
            errors,
            "... {} more rejected line(s) not shown",
            report.rejected - MAX_REPORTED
        );
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn reject(report: &mut ImportReport, errors: &mut impl std::io::Write, message: &str) {
    report.rejected += 1;
    if report.rejected <= MAX_REPORTED {
        let _ = writeln!(errors, "{message}");
    }
}

fn add(report: &mut ImportReport, o: AppendOutcome) {
    report.written += o.written;
    report.duplicates += o.duplicates;
}

async fn append_retrying<S: TickStore>(
    store: &S,
    ticks: &[Tick],
) -> Result<AppendOutcome, StoreError> {
    let give_up = Instant::now() + RETRY_FOR;
    let mut wait = Duration::from_millis(100);
    loop {
        match store.append(ticks).await {
            Err(StoreError::Unavailable(e)) if Instant::now() < give_up => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "store unavailable; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_model::memory::MemoryStore;

    async fn run(store: &MemoryStore, input: &str, batch: usize) -> (ImportReport, String) {
        let mut errors = Vec::new();
        let r = import(store, input.as_bytes(), batch, &mut errors)
            .await
            .unwrap();
        (r, String::from_utf8(errors).unwrap())
    }

    #[tokio::test]
    async fn skips_bad_lines_and_counts_duplicates() {
        let store = MemoryStore::new();
        let input = "\
{\"host\":\"a\",\"ts\":2000,\"values\":{\"cpu.usage\":1.5}}
{\"host\":\"a\",\"ts\":1000,\"values\":{}}

not json
{\"host\":\"a\",\"ts\":1000,\"values\":{\"cpu.usage\":9}}
{\"host\":\"b\",\"ts\":-5,\"values\":{}}
{\"host\":\"b\",\"ts\":1000,\"values\":{\"cpu\":1}}
";
        let (r, errors) = run(&store, input, 2).await;
        assert_eq!((r.written, r.duplicates, r.rejected, r.lines), (2, 1, 3, 7));
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(lines.len(), 3, "{errors}");
        assert!(lines[0].starts_with("line 4: not JSON"), "{errors}");
        assert!(lines[1].starts_with("line 6: ts -5"), "{errors}");
        assert!(lines[2].starts_with("line 7: values.cpu"), "{errors}");
        // the first tick seen for (a, 1000) is kept
        let got = store.range(&"a".parse().unwrap(), 0, 5000).await.unwrap();
        assert_eq!(got[0].values().len(), 0);
        let (again, _) = run(&store, input, 1000).await;
        assert_eq!((again.written, again.duplicates), (0, 3));
    }
}
