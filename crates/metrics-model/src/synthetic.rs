//! Deterministic, realistic synthetic ticks for benchmarks, demos and
//! imports (`bp-collector`'s `gen_ticks` example, `redis-store`'s
//! bytes-per-sample example): CPU and memory random walks with 2 decimals,
//! free memory in KB, small integer counters and latencies with 3 decimals —
//! 10 fields per tick, the shape of a real node's ticks ([`node_ticks`]); and
//! the larger tick of a node with the version-2 breadth ([`node_ticks_wide`]:
//! 29 values, with swap, load, two mounts, two interfaces and one watched
//! process).

use crate::field::StandardField;
use crate::host::HostName;
use crate::key::{Instance, Key};
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

/// The mounts, interfaces and watched process of [`node_ticks_wide`].
pub const WIDE_MOUNTS: [&str; 2] = ["/", "/var"];
/// See [`WIDE_MOUNTS`].
pub const WIDE_INTERFACES: [&str; 2] = ["eth0", "eth1"];
/// See [`WIDE_MOUNTS`].
pub const WIDE_PROCESS: &str = "redis-server";
/// Values per tick of [`node_ticks_wide`].
pub const WIDE_FIELDS: usize = 10 + 1 + 3 + 3 * WIDE_MOUNTS.len() + 3 * WIDE_INTERFACES.len() + 3;

fn key(field: StandardField, instance: &str) -> Key {
    let instance: Instance = instance.parse().expect("a valid instance");
    Key::with_instance(field.into(), instance).expect("an instanced field")
}

/// The larger tick: [`node_ticks`]' 10 values (the same for the same seed)
/// and 19 more, as the collector writes them (its rounding):
/// - `swap.usage`: % with 2 decimals, a slow random walk;
/// - `load.1/5/15`: 2 decimals as in `/proc/loadavg`, the 5 and 15 minute
///   figures smoothing the 1 minute one;
/// - per mount (`/`, `/var`): `disk.free` in KB (multiples of 4 KB, moving
///   by a few MB per tick), `disk.usage` % with 2 decimals computed from it,
///   `disk.inodes.usage` % with 2 decimals, nearly constant;
/// - per interface (`eth0`, `eth1`): `net.rx`/`net.tx` in B/s with 2
///   decimals (a byte count over an interval a few ms off `step_ms`, around
///   a slowly moving level), `net.errors.count` mostly 0;
/// - one watched process (`redis-server`): `process.count` 1,
///   `process.cpu` % with 2 decimals, `process.mem` in KB (multiples of 4).
pub fn node_ticks_wide(
    host: &HostName,
    start: Millis,
    step_ms: i64,
    n: i64,
    seed: u64,
) -> Vec<Tick> {
    let base = node_ticks(host, start, step_ms, n, seed);
    let mut rng = Rng(seed ^ 0x5eed_fb4e_ad7a);
    let secs = step_ms as f64 / 1000.0;
    let mut swap = 3.0f64;
    let mut load = [0.8f64, 0.8, 0.8];
    let totals = [52_428_800.0f64, 209_715_200.0];
    let mut free = [20_000_000.0f64, 150_000_000.0];
    let mut inodes = [12.5f64, 3.2];
    let mut level = [[5_000.0f64, 2_000.0], [300.0, 120.0]];
    let mut pcpu = 0.4f64;
    let mut pmem = 12_000.0f64;
    let mut runnable = 0.8f64;
    // the kernel's load averages: exponential decay over 1, 5 and 15 minutes
    let alpha = [60.0f64, 300.0, 900.0].map(|period| 1.0 - (-secs / period).exp());
    let disk_keys: Vec<[Key; 3]> = WIDE_MOUNTS
        .iter()
        .map(|m| {
            [
                key(StandardField::DiskUsage, m),
                key(StandardField::DiskFree, m),
                key(StandardField::DiskInodesUsage, m),
            ]
        })
        .collect();
    let net_keys: Vec<[Key; 3]> = WIDE_INTERFACES
        .iter()
        .map(|i| {
            [
                key(StandardField::NetRx, i),
                key(StandardField::NetTx, i),
                key(StandardField::NetErrorsCount, i),
            ]
        })
        .collect();
    let proc_keys = [
        key(StandardField::ProcessCount, WIDE_PROCESS),
        key(StandardField::ProcessCpu, WIDE_PROCESS),
        key(StandardField::ProcessMem, WIDE_PROCESS),
    ];
    base.into_iter()
        .map(|t| {
            let mut more: Vec<(Key, f64)> = Vec::with_capacity(WIDE_FIELDS - 10);
            swap = (swap + (rng.unit() - 0.5) * 0.02).clamp(0.0, 100.0);
            more.push((StandardField::SwapUsage.into(), round(swap, 2)));
            runnable = (runnable + (rng.unit() - 0.5) * 0.2).clamp(0.0, 4.0);
            let instant = (runnable + (rng.unit() - 0.5) * 1.0).max(0.0);
            for (l, a) in load.iter_mut().zip(alpha) {
                *l += (instant - *l) * a;
            }
            for (f, l) in [
                StandardField::Load1,
                StandardField::Load5,
                StandardField::Load15,
            ]
            .into_iter()
            .zip(load)
            {
                more.push((f.into(), round(l, 2)));
            }
            for (i, keys) in disk_keys.iter().enumerate() {
                // a few MB written or freed per tick, in 4 KB blocks
                let blocks = rng.below(1_001) as f64 - 500.0;
                free[i] = (free[i] + blocks * 4.0).clamp(0.0, totals[i]);
                inodes[i] = (inodes[i] + (rng.unit() - 0.5) * 0.002).clamp(0.0, 100.0);
                let usage = (totals[i] - free[i]) / totals[i] * 100.0;
                more.push((keys[0].clone(), round(usage, 2)));
                more.push((keys[1].clone(), free[i]));
                more.push((keys[2].clone(), round(inodes[i], 2)));
            }
            for (i, keys) in net_keys.iter().enumerate() {
                // the interval as the collector measures it: a few ms off
                let elapsed = secs + (rng.unit() - 0.5) * 0.01;
                for (j, k) in keys[..2].iter().enumerate() {
                    level[i][j] = (level[i][j] * (1.0 + (rng.unit() - 0.5) * 0.1)).clamp(10.0, 1e8);
                    let bytes = (level[i][j] * secs * (0.5 + rng.unit())).round();
                    more.push((k.clone(), round(bytes / elapsed, 2)));
                }
                let errors = if rng.below(1_000) == 0 { 1.0 } else { 0.0 };
                more.push((keys[2].clone(), errors));
            }
            pcpu = (pcpu + (rng.unit() - 0.5) * 0.1).clamp(0.0, 100.0);
            pmem = (pmem + (rng.below(5) as f64 - 2.0) * 4.0).max(4.0);
            more.push((proc_keys[0].clone(), 1.0));
            more.push((proc_keys[1].clone(), round(pcpu, 2)));
            more.push((proc_keys[2].clone(), pmem));
            let values = t.values().iter().map(|(k, v)| (k.clone(), *v));
            Tick::new(t.host.clone(), t.ts, values.chain(more).collect::<Vec<_>>())
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

    #[test]
    fn wide_ticks_extend_the_seed_ticks() {
        let h: HostName = "n".parse().unwrap();
        let narrow = node_ticks(&h, 0, 10_000, 500, 7);
        let wide = node_ticks_wide(&h, 0, 10_000, 500, 7);
        assert_eq!(wide, node_ticks_wide(&h, 0, 10_000, 500, 7));
        for (n, w) in narrow.iter().zip(&wide) {
            assert_eq!(w.values().len(), WIDE_FIELDS, "{w:?}");
            assert_eq!(w.ts, n.ts);
            for (k, v) in n.values() {
                assert_eq!(w.values().get(k), Some(v));
            }
            for (k, v) in w.values() {
                assert!(k.is_tick_key() && v.is_finite() && *v >= 0.0, "{k} = {v}");
                let s = k.to_string();
                if s.starts_with("disk.usage") || s.starts_with("swap") || s.starts_with("load") {
                    assert!((0.0..=100.0).contains(v) && (v * 100.0).round() / 100.0 == *v);
                }
                if s.starts_with("disk.free") || s.starts_with("process.mem") {
                    assert_eq!(v % 4.0, 0.0, "{s} {v}");
                }
            }
        }
        let get = |t: &Tick, k: &str| t.get(&Key::parse_tick_key(k).unwrap()).unwrap();
        assert_eq!(get(&wide[0], "process.count[redis-server]"), 1.0);
        let errors: f64 = wide.iter().map(|t| get(t, "net.errors.count[eth0]")).sum();
        assert!(errors <= 5.0, "{errors}");
        let l1: Vec<f64> = wide.iter().map(|t| get(t, "load.1")).collect();
        let l15: Vec<f64> = wide.iter().map(|t| get(t, "load.15")).collect();
        let spread = |xs: &[f64]| {
            xs.iter().copied().fold(f64::MIN, f64::max)
                - xs.iter().copied().fold(f64::MAX, f64::min)
        };
        assert!(
            spread(&l15[100..]) < spread(&l1[100..]),
            "load.15 smoother than load.1"
        );
    }
}
