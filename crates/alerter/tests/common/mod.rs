//! Helpers shared by the alerter's integration tests.

use std::time::Duration;

/// Polls `cond` every 50 ms for up to `secs` seconds.
pub async fn eventually<F: Future<Output = bool>>(secs: u64, mut cond: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
