//! Rate-limited logging: at most one message per period, telling how many
//! were suppressed since the last one.

use std::time::{Duration, Instant};

/// Allows one event per `period`.
#[derive(Debug)]
pub struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// A limiter allowing one event per `period`.
    pub fn new(period: Duration) -> Self {
        RateLimited {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last allowed one)` when this event may be
    /// logged, `None` when it must be suppressed.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_period() {
        let mut r = RateLimited::new(Duration::from_hours(1));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        r.last = Instant::now().checked_sub(Duration::from_hours(2));
        assert_eq!(r.allow(), Some(2));
    }
}
