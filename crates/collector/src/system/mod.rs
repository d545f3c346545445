//! System readings: what one tick says about its node.
//!
//! - sysinfo (feature `system` only): CPU (`cpu.usage`), memory
//!   (`mem.usage`, `mem.free`), swap (`swap.usage`), load (`load.1/5/15`,
//!   `/proc/loadavg`) and uptime. One `sysinfo::System` is kept; each tick
//!   refreshes only the CPU times and the RAM and swap figures.
//! - the watched processes straight from `/proc/<pid>/stat`
//!   ([`processes`]). CPU usage is sysinfo's difference between two refreshes: the
//!   average over the collection interval, all cores together.
//! - `/proc` where sysinfo has no answer ([`procfs`]): `self/mountinfo` +
//!   `statvfs` for `disk.usage`/`disk.free`/`disk.inodes.usage` per mount
//!   (sysinfo's disk list has neither `df`'s "used" nor inodes, and cannot
//!   tell bind mounts apart), `diskstats` for `io.read`/`io.write` per
//!   physical device (sysinfo lists mounted partitions only), `net/dev` for
//!   `net.rx`/`net.tx`/`net.errors.count` per interface (one read for every
//!   interface); rates from counter deltas over the real elapsed time
//!   ([`counters`]), which rules are in [`disks`].
//! - cgroups ([`cgroup`]): inside a container with a memory limit,
//!   `mem.usage` and `mem.free` are against the limit.
//!
//! Every path is read under a root directory (`/` in production), so the
//! `/proc` and `/sys` parts run against fixture trees in tests and
//! benchmarks.

pub mod cgroup;
pub mod counters;
pub mod disks;
pub mod processes;
pub mod procfs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use metrics_model::config::{MonitoringConfig, Selection, WatchedProcess};
use metrics_model::field::StandardField;
use metrics_model::key::{Instance, Key};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

use self::cgroup::MemoryLimit;
use self::counters::CounterTrack;
use self::processes::ProcessWatch;
use crate::error::CollectorError;
use crate::recorder::round_to;

/// What the system sampler reads beyond CPU and memory, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemOptions {
    /// Filesystems by mount point (on top of the default rule).
    pub filesystems: Selection,
    /// Network interfaces by name (on top of "not loopback").
    pub interfaces: Selection,
    /// Block devices by name (on top of "physical").
    pub block_devices: Selection,
    /// The watched processes.
    pub processes: Vec<WatchedProcess>,
    /// The directory `/proc`, `/sys` and mount points are read under: `/`,
    /// or a fixture tree.
    pub root: PathBuf,
}

impl Default for SystemOptions {
    fn default() -> Self {
        SystemOptions {
            filesystems: Selection::default(),
            interfaces: Selection::default(),
            block_devices: Selection::default(),
            processes: Vec::new(),
            root: PathBuf::from("/"),
        }
    }
}

impl SystemOptions {
    /// The options of a monitoring section, reading the real machine.
    pub fn from_monitoring(m: &MonitoringConfig) -> SystemOptions {
        SystemOptions {
            filesystems: m.filesystems.clone(),
            interfaces: m.interfaces.clone(),
            block_devices: m.block_devices.clone(),
            processes: m.processes.clone(),
            root: PathBuf::from("/"),
        }
    }
}

/// One reading of the system.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemReading {
    /// % of CPU used since the previous reading, all cores together (0–100),
    /// 2 decimals.
    pub cpu_usage: f64,
    /// % of memory used now (100 − available/total × 100, or against the
    /// cgroup limit), 2 decimals; `None` when the total is unknown.
    pub mem_usage: Option<f64>,
    /// Available memory now, KB (1024 bytes).
    pub mem_free_kb: f64,
    /// Seconds since the system booted; `None` when unknown.
    pub uptime_s: Option<f64>,
    /// Every other reading: swap, load, disks, devices, interfaces,
    /// processes.
    pub more: Vec<(Key, f64)>,
}

impl SystemReading {
    /// The reading as tick values.
    pub fn values(&self) -> impl Iterator<Item = (Key, f64)> + '_ {
        [
            (StandardField::CpuUsage, Some(self.cpu_usage)),
            (StandardField::MemUsage, self.mem_usage),
            (StandardField::MemFree, Some(self.mem_free_kb)),
            (StandardField::Uptime, self.uptime_s),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (Key::from(f), v)))
        .chain(self.more.iter().cloned())
    }
}

/// `/proc/self/mountinfo`, parsed again only when the mount table changed:
/// the file stays open and `poll(2)` reports `POLLPRI` once the mount
/// namespace changed since the last read (how libmount and systemd watch
/// it). A fixture tree (any root but `/`) is read every time.
#[derive(Debug, Default)]
struct MountTable {
    file: Option<std::fs::File>,
    mounts: Vec<procfs::Mount>,
}

impl MountTable {
    fn read(&mut self, root: &std::path::Path) -> &[procfs::Mount] {
        use std::io::{Read, Seek};
        let path = disks::under(root, "/proc/self/mountinfo");
        if root != std::path::Path::new("/") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            self.mounts = procfs::parse_mountinfo(&text);
            return &self.mounts;
        }
        let changed = match &self.file {
            None => true,
            Some(f) => {
                use std::os::fd::AsFd;
                let mut fds = [nix::poll::PollFd::new(
                    f.as_fd(),
                    nix::poll::PollFlags::POLLPRI,
                )];
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
                    Ok(0) => false,
                    Ok(_) => fds[0].revents().is_some_and(|r| {
                        r.intersects(nix::poll::PollFlags::POLLPRI | nix::poll::PollFlags::POLLERR)
                    }),
                    Err(_) => true,
                }
            }
        };
        if changed {
            if self.file.is_none() {
                self.file = std::fs::File::open(&path).ok();
            }
            let mut text = String::new();
            let ok = self
                .file
                .as_mut()
                .is_some_and(|f| f.rewind().is_ok() && f.read_to_string(&mut text).is_ok());
            if !ok {
                // read it plainly next time
                self.file = None;
                text = std::fs::read_to_string(&path).unwrap_or_default();
            }
            self.mounts = procfs::parse_mountinfo(&text);
        }
        &self.mounts
    }
}

/// Samples the system, reusing its state between readings.
pub struct SystemSampler {
    sys: System,
    root: PathBuf,
    filesystems: Selection,
    interfaces: Selection,
    block_devices: Selection,
    memory_limit: Option<MemoryLimit>,
    disks: CounterTrack<2>,
    nets: CounterTrack<3>,
    loopback: HashMap<String, bool>,
    /// Whether each block device name is taken by the default rule (its
    /// `/sys/block` entry looked at once).
    physical: HashMap<String, bool>,
    mountinfo: MountTable,
    network_statvfs: disks::BoundedStatvfs,
    watch: ProcessWatch,
    /// The keys of each field per name, made once (`None`: the name cannot
    /// be an instance, logged when first met); at most 4,096 names per
    /// field, then started afresh.
    keys: HashMap<StandardField, HashMap<String, Option<Key>>>,
    cpus: usize,
}

impl std::fmt::Debug for SystemSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSampler")
            .field("root", &self.root)
            .field("memory_limit", &self.memory_limit)
            .finish_non_exhaustive()
    }
}

impl SystemSampler {
    /// A sampler of the real machine with the default rules and no watched
    /// process; takes the first CPU reading now, so that the first
    /// [`SystemSampler::sample`] averages over the time since.
    pub fn new() -> Result<Self, CollectorError> {
        Self::with_options(SystemOptions::default())
    }

    /// A sampler with `options`. Logs once which memory figure it uses.
    pub fn with_options(options: SystemOptions) -> Result<Self, CollectorError> {
        let mut sys = System::new().map_err(|e| CollectorError::System(e.to_string()))?;
        sys.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let memory_limit = cgroup::find_limit(&options.root, sys.total_memory());
        if let Some(l) = &memory_limit {
            tracing::info!(
                limit_mib = l.limit_bytes / (1024 * 1024),
                cgroup = %l.dir.display(),
                version = ?l.version,
                "mem.usage and mem.free are against the cgroup memory limit"
            );
        } else {
            tracing::info!(
                "mem.usage and mem.free are against the machine's memory (no cgroup memory limit applies)"
            );
        }
        let cpus = sys.cpus().len().max(1);
        let mut sampler = SystemSampler {
            sys,
            root: options.root,
            filesystems: options.filesystems,
            interfaces: options.interfaces,
            block_devices: options.block_devices,
            memory_limit,
            disks: CounterTrack::default(),
            nets: CounterTrack::default(),
            loopback: HashMap::new(),
            physical: HashMap::new(),
            mountinfo: MountTable::default(),
            network_statvfs: disks::BoundedStatvfs::default(),
            watch: ProcessWatch::new(options.processes),
            keys: HashMap::new(),
            cpus,
        };
        // The counters' and processes' first readings, so the first tick has rates.
        let now = Instant::now();
        sampler.devices(now);
        sampler.networks(now);
        sampler.processes(now);
        Ok(sampler)
    }

    /// The cgroup memory limit the memory figures are against, if any.
    pub fn memory_limit(&self) -> Option<&MemoryLimit> {
        self.memory_limit.as_ref()
    }

    /// Reads the system now.
    pub fn sample(&mut self) -> SystemReading {
        let now = Instant::now();
        self.sys
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let cpu = f64::from(self.sys.global_cpu_usage()).clamp(0.0, 100.0);
        let total = self.sys.total_memory();
        let available = self.sys.available_memory();
        let (mem_usage, mem_free_kb) = match self
            .memory_limit
            .as_ref()
            .and_then(|l| l.used_bytes().map(|u| (l.limit_bytes, u)))
        {
            Some((limit, used)) => {
                let free = limit.saturating_sub(used).min(available);
                (
                    Some(round_to(used as f64 / limit as f64 * 100.0, 2).clamp(0.0, 100.0)),
                    round_to(free as f64 / 1024.0, 2),
                )
            }
            None => (
                (total > 0).then(|| {
                    round_to(100.0 - available as f64 / total as f64 * 100.0, 2).clamp(0.0, 100.0)
                }),
                round_to(available as f64 / 1024.0, 2),
            ),
        };
        let mut more = Vec::new();
        let swap_total = self.sys.total_swap();
        if swap_total > 0 {
            let used = self.sys.used_swap();
            more.push((
                Key::from(StandardField::SwapUsage),
                round_to(used as f64 / swap_total as f64 * 100.0, 2).clamp(0.0, 100.0),
            ));
        }
        if let Ok(l) = System::load_average() {
            for (f, v) in [
                (StandardField::Load1, l.one),
                (StandardField::Load5, l.five),
                (StandardField::Load15, l.fifteen),
            ] {
                if v.is_finite() {
                    more.push((Key::from(f), round_to(v, 2)));
                }
            }
        }
        more.extend(self.filesystems());
        more.extend(self.devices(now));
        more.extend(self.networks(now));
        more.extend(self.processes(now));
        SystemReading {
            cpu_usage: round_to(cpu, 2),
            mem_usage,
            mem_free_kb,
            uptime_s: System::uptime().ok().map(|s| s as f64),
            more,
        }
    }

    /// `field[name]`, or `None` (logged once per name) when `name` cannot
    /// be an instance.
    fn key(&mut self, field: StandardField, name: &str) -> Option<Key> {
        let by_name = self.keys.entry(field).or_default();
        if let Some(k) = by_name.get(name) {
            return k.clone();
        }
        if by_name.len() >= 4096 {
            by_name.clear();
        }
        let key = match name.parse::<Instance>() {
            Ok(i) => Key::with_instance(field.into(), i).ok(),
            Err(why) => {
                tracing::warn!(
                    name = %name.escape_debug(),
                    field = field.as_str(),
                    "not reported: {why}"
                );
                None
            }
        };
        by_name.insert(name.to_owned(), key.clone());
        key
    }

    fn filesystems(&mut self) -> Vec<(Key, f64)> {
        let mounts = self.mountinfo.read(&self.root);
        let selected: Vec<(String, PathBuf, bool)> =
            disks::select_mounts(mounts, &self.filesystems, &self.root)
                .into_iter()
                .map(|m| {
                    (
                        m.mount_point.clone(),
                        disks::under(&self.root, &m.mount_point),
                        m.fs_type != "zfs" && disks::NETWORK_OR_POOL.contains(&m.fs_type.as_str()),
                    )
                })
                .collect();
        let mut out = Vec::with_capacity(selected.len() * 3);
        for (mount_point, path, network) in selected {
            let usage = if network {
                self.network_statvfs
                    .read(&path, disks::STATVFS_TIMEOUT, disks::fs_usage)
            } else {
                disks::fs_usage(&path)
            };
            let Some(u) = usage else {
                continue;
            };
            let (Some(usage), Some(free), inodes) = (
                self.key(StandardField::DiskUsage, &mount_point),
                self.key(StandardField::DiskFree, &mount_point),
                self.key(StandardField::DiskInodesUsage, &mount_point),
            ) else {
                continue;
            };
            out.push((usage, u.usage));
            out.push((free, u.free_kb));
            if let (Some(k), Some(v)) = (inodes, u.inodes_usage) {
                out.push((k, v));
            }
        }
        out
    }

    fn devices(&mut self, now: Instant) -> Vec<(Key, f64)> {
        let text = std::fs::read_to_string(disks::under(&self.root, "/proc/diskstats"))
            .unwrap_or_default();
        let devices = procfs::parse_diskstats(&text);
        if devices.len() != self.physical.len()
            || devices.iter().any(|d| !self.physical.contains_key(&d.name))
        {
            // the device set changed (start, hot-plug): look at /sys/block again
            let sys_block = disks::under(&self.root, "/sys/block").is_dir();
            self.physical = devices
                .iter()
                .take(4096)
                .map(|d| {
                    let p = disks::physical_device(&self.root, &d.name, sys_block);
                    (d.name.clone(), p)
                })
                .collect();
        }
        let counters: Vec<(String, [u64; 2])> = devices
            .into_iter()
            .filter(|d| {
                let by_default = self.physical.get(&d.name).copied().unwrap_or(false);
                self.block_devices.admits(&d.name, by_default)
            })
            .map(|d| (d.name, [d.read_bytes, d.written_bytes]))
            .collect();
        let (elapsed, deltas) = self.disks.update(now, counters);
        let Some(secs) = elapsed else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for d in deltas {
            for (field, delta) in [
                (StandardField::IoRead, d.deltas[0]),
                (StandardField::IoWrite, d.deltas[1]),
            ] {
                if let (Some(delta), Some(k)) = (delta, self.key(field, &d.name)) {
                    out.push((k, round_to(delta as f64 / secs, 2)));
                }
            }
        }
        out
    }

    fn is_loopback(&mut self, name: &str) -> bool {
        if let Some(b) = self.loopback.get(name) {
            return *b;
        }
        // ARPHRD_LOOPBACK
        let b = name == "lo"
            || std::fs::read_to_string(
                disks::under(&self.root, "/sys/class/net")
                    .join(name)
                    .join("type"),
            )
            .is_ok_and(|t| t.trim() == "772");
        if self.loopback.len() < 4096 {
            self.loopback.insert(name.to_owned(), b);
        }
        b
    }

    fn networks(&mut self, now: Instant) -> Vec<(Key, f64)> {
        let text =
            std::fs::read_to_string(disks::under(&self.root, "/proc/net/dev")).unwrap_or_default();
        let mut counters = Vec::new();
        for n in procfs::parse_net_dev(&text) {
            let by_default = !self.is_loopback(&n.name);
            if self.interfaces.admits(&n.name, by_default) {
                counters.push((n.name, [n.rx_bytes, n.tx_bytes, n.errors]));
            }
        }
        let (elapsed, deltas) = self.nets.update(now, counters);
        let Some(secs) = elapsed else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for d in deltas {
            for (field, delta, rate) in [
                (StandardField::NetRx, d.deltas[0], true),
                (StandardField::NetTx, d.deltas[1], true),
                (StandardField::NetErrorsCount, d.deltas[2], false),
            ] {
                if let (Some(delta), Some(k)) = (delta, self.key(field, &d.name)) {
                    let v = if rate {
                        round_to(delta as f64 / secs, 2)
                    } else {
                        delta as f64
                    };
                    out.push((k, v));
                }
            }
        }
        out
    }

    fn processes(&mut self, now: Instant) -> Vec<(Key, f64)> {
        let figures = self.watch.read(now, self.cpus);
        let mut out = Vec::with_capacity(figures.len() * 3);
        for (e, f) in self.watch.entries().iter().zip(figures) {
            let key = |field: StandardField| Key::with_instance(field.into(), e.name.clone()).ok();
            if let Some(k) = key(StandardField::ProcessCount) {
                out.push((k, f.count as f64));
            }
            if let (Some(k), Some(v)) = (key(StandardField::ProcessCpu), f.cpu) {
                out.push((k, v));
            }
            if let Some(k) = key(StandardField::ProcessMem) {
                out.push((k, f.mem_kb));
            }
        }
        out
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
        assert_eq!(
            fields[..4],
            ["cpu.usage", "mem.usage", "mem.free", "uptime"]
        );
        // every Linux machine has a load average and a real root filesystem
        for k in [
            "load.1",
            "load.5",
            "load.15",
            "disk.usage[/]",
            "disk.free[/]",
        ] {
            assert!(fields.iter().any(|f| f == k), "{k} missing from {fields:?}");
        }
        // no pseudo filesystem, no loopback interface, no loop device
        for f in &fields {
            assert!(
                !f.contains("[/proc") && !f.contains("[/sys") && !f.contains("[/dev/shm]"),
                "{f}"
            );
            assert!(f != "net.rx[lo]" && !f.starts_with("io.read[loop"), "{f}");
        }
        for (k, v) in r.values() {
            assert!(v.is_finite() && v >= 0.0, "{k} = {v}");
        }
    }
}
