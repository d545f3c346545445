//! Timestamps: milliseconds since the Unix epoch (UTC), as `i64`.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Formats `ts` as RFC 3339 UTC with milliseconds (`2026-01-01T00:02:00.000Z`).
///
/// Timestamps outside chrono's range (about ±262,000 years) are clamped to it.
pub fn format_rfc3339(ts: Millis) -> String {
    let dt = DateTime::<Utc>::from_timestamp_millis(ts).unwrap_or(if ts < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp with any offset, cut down to the millisecond.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|dt| dt.timestamp_millis())
}

/// Milliseconds since the epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// The greatest multiple of `step` (> 0) that is ≤ `ts`.
pub fn floor_to(ts: Millis, step: i64) -> Millis {
    ts - ts.rem_euclid(step)
}

/// The smallest multiple of `step` (> 0) that is ≥ `ts`.
pub fn ceil_to(ts: Millis, step: i64) -> Millis {
    let r = ts.rem_euclid(step);
    if r == 0 { ts } else { ts - r + step }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(
            format_rfc3339(1_767_225_720_000),
            "2026-01-01T00:02:00.000Z"
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T01:02:00.123456+01:00"),
            Some(1_767_225_720_123)
        );
        assert_eq!(parse_rfc3339("2026-01-01"), None);
    }

    #[test]
    fn rounding() {
        assert_eq!(floor_to(25, 10), 20);
        assert_eq!(floor_to(-5, 10), -10);
        assert_eq!(ceil_to(21, 10), 30);
        assert_eq!(ceil_to(20, 10), 20);
        assert_eq!(ceil_to(-15, 10), -10);
    }
}
