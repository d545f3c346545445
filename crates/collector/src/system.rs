//! System readings (sysinfo): CPU, memory, uptime.
//!
//! The sampler keeps one `sysinfo::System` and refreshes only the CPU times
//! and the RAM figures each tick (one read of `/proc/stat` and one of
//! `/proc/meminfo` on Linux); processes, disks and networks are never
//! loaded. CPU usage is computed by sysinfo from the difference between two
//! refreshes, so each reading is the average over the time since the
//! previous one — the collection interval — across all cores.

use metrics_model::field::StandardField;
use metrics_model::key::Key;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

use crate::error::CollectorError;
use crate::recorder::round_to;

/// One reading of the system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemReading {
    /// % of CPU used since the previous reading, all cores together (0–100),
    /// 2 decimals.
    pub cpu_usage: f64,
    /// % of memory used now (100 − available/total × 100), 2 decimals;
    /// `None` when the total is unknown.
    pub mem_usage: Option<f64>,
    /// Available memory now, KB (1024 bytes).
    pub mem_free_kb: f64,
    /// Seconds since the system booted; `None` when unknown.
    pub uptime_s: Option<f64>,
}

impl SystemReading {
    /// The reading as tick values.
    pub fn values(&self) -> impl Iterator<Item = (Key, f64)> {
        [
            (StandardField::CpuUsage, Some(self.cpu_usage)),
            (StandardField::MemUsage, self.mem_usage),
            (StandardField::MemFree, Some(self.mem_free_kb)),
            (StandardField::Uptime, self.uptime_s),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (Key::from(f), v)))
    }
}

/// Samples the system, reusing its state between readings.
pub struct SystemSampler {
    sys: System,
}

impl std::fmt::Debug for SystemSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSampler").finish_non_exhaustive()
    }
}

impl SystemSampler {
    /// A sampler; takes the first CPU reading now, so that the first
    /// [`SystemSampler::sample`] averages over the time since.
    pub fn new() -> Result<Self, CollectorError> {
        let mut sys = System::new().map_err(|e| CollectorError::System(e.to_string()))?;
        sys.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        Ok(SystemSampler { sys })
    }

    /// Reads the system now.
    pub fn sample(&mut self) -> SystemReading {
        self.sys
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let cpu = f64::from(self.sys.global_cpu_usage()).clamp(0.0, 100.0);
        let total = self.sys.total_memory();
        let available = self.sys.available_memory();
        let mem_usage = (total > 0).then(|| {
            round_to(100.0 - available as f64 / total as f64 * 100.0, 2).clamp(0.0, 100.0)
        });
        SystemReading {
            cpu_usage: round_to(cpu, 2),
            mem_usage,
            mem_free_kb: round_to(available as f64 / 1024.0, 2),
            uptime_s: System::uptime().ok().map(|s| s as f64),
        }
    }
}

/// The system's host name, if it has one.
pub fn host_name() -> Option<String> {
    System::host_name().ok().filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_in_range() {
        let mut s = SystemSampler::new().unwrap();
        // burn a little CPU so the interval is not empty
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let r = s.sample();
        assert!((0.0..=100.0).contains(&r.cpu_usage), "{r:?}");
        let m = r.mem_usage.unwrap();
        assert!(m > 0.0 && m < 100.0, "{r:?}");
        assert!(r.mem_free_kb > 0.0, "{r:?}");
        assert!(r.uptime_s.unwrap() > 0.0, "{r:?}");
        assert_eq!(round_to(r.cpu_usage, 2), r.cpu_usage);
        let fields: Vec<String> = r.values().map(|(f, _)| f.to_string()).collect();
        assert_eq!(fields, ["cpu.usage", "mem.usage", "mem.free", "uptime"]);
    }
}
