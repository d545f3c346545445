//! Deterministic, realistic synthetic ticks for benchmarks, demos and
//! imports (`bp-collector`'s `gen_ticks` example, `redis-store`'s
//! bytes-per-sample example): CPU and memory random walks with 2 decimals,
//! free memory in KB, small integer counters and latencies with 3 decimals —
//! 10 fields per tick, the shape of a real node's ticks.

use crate::field::StandardField;
use crate::host::HostName;
use crate::tick::Tick;
use crate::time::Millis;

/// A small deterministic generator (PCG-style LCG), good enough for
/// workloads; not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 31 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.next_u64() as f64 / f64::from(1u32 << 31)
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

/// `n` ticks of `host`, `step_ms` apart from `start`, the same for the same
/// `seed`.
pub fn node_ticks(host: &HostName, start: Millis, step_ms: i64, n: i64, seed: u64) -> Vec<Tick> {
    let mut rng = Rng(seed);
    let (mut cpu, mut mem, mut free) = (35.0f64, 45.0f64, 8_000_000.0f64);
    (0..n)
        .map(|i| {
            cpu = (cpu + (rng.unit() - 0.5) * 6.0).clamp(0.0, 100.0);
            mem = (mem + (rng.unit() - 0.5) * 0.4).clamp(0.0, 100.0);
            free = (free + (rng.unit() - 0.5) * 20_000.0).clamp(0.0, 16_000_000.0);
            let count = 1 + rng.below(40);
            let avg = round(5.0 + rng.unit() * 150.0, 3);
            let sum = round(avg * count as f64, 3);
            Tick::new(
                host.clone(),
                start + i * step_ms,
                [
                    (StandardField::CpuUsage.into(), round(cpu, 2)),
                    (StandardField::MemUsage.into(), round(mem, 2)),
                    (StandardField::MemFree.into(), free.round()),
                    (StandardField::RequestsCount.into(), count as f64),
                    (StandardField::RequestsLatencyAvg.into(), avg),
                    (StandardField::RequestsLatencySum.into(), sum),
                    (StandardField::EventsInCount.into(), rng.below(20) as f64),
                    (StandardField::EventsOutCount.into(), rng.below(20) as f64),
                    (StandardField::WarningsCount.into(), rng.below(3) as f64),
                    (StandardField::ErrorsCount.into(), rng.below(2) as f64),
                ],
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_realistic() {
        let h: HostName = "n".parse().unwrap();
        let a = node_ticks(&h, 0, 10_000, 100, 7);
        assert_eq!(a, node_ticks(&h, 0, 10_000, 100, 7));
        assert_ne!(a, node_ticks(&h, 0, 10_000, 100, 8));
        assert!(a.iter().all(|t| t.values().len() == 10));
        assert!(
            a.iter()
                .all(|t| (0.0..=100.0).contains(&t.get(&StandardField::CpuUsage.into()).unwrap()))
        );
        assert_eq!(a[99].ts, 990_000);
    }
}
