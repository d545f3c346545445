//! Helpers shared by the alerter's integration tests.

use std::time::Duration;

/// One rule over 200 ms ticks and instants: CPU at or above 80 on average
/// over 1 s.
pub const CONFIG: &str = r#"{
  "monitoring": { "collectionInterval": "200ms" },
  "alerting": {
    "watcherInterval": "200ms",
    "evaluationDelay": "100ms",
    "rules": [
      { "name": "High CPU", "field": "cpu.usage", "aggregation": "avg",
        "operand": "equalOrMoreThan", "value": 80, "timeframe": "1s" }
    ]
  }
}"#;

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
