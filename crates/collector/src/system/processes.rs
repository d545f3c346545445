//! Watched processes (`monitoring.processes`): per entry, how many of its
//! processes run, their CPU share over the interval and their resident
//! memory — `process.count[<name>]`, `process.cpu[<name>]`,
//! `process.mem[<name>]` — in every tick, `process.count` 0 when none runs.
//!
//! One sysinfo process table is refreshed per tick (one `/proc/<pid>/stat`
//! and `statm` read per process, threads not listed; the executable path
//! and command line are read once per process, and only when an entry
//! matches on them). Zombies do not count as running; the collector never
//! counts itself. CPU is the processes' user + system time added during
//! the interval over the interval's length × the number of CPUs (so 0–100
//! like `cpu.usage`); a process seen for the first time counts all of its
//! CPU time, since it started within the interval.

use std::collections::HashMap;
use std::time::Instant;

use metrics_model::config::{ProcessMatch, WatchedProcess};
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

/// One watched entry's figures this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessFigures {
    /// Matching processes running now.
    pub count: u64,
    /// % of CPU over the interval (all cores together), `None` on the first
    /// reading.
    pub cpu: Option<f64>,
    /// Resident memory now, KB.
    pub mem_kb: f64,
}

/// The watcher's state between ticks.
#[derive(Debug)]
pub struct ProcessWatch {
    entries: Vec<WatchedProcess>,
    refresh: ProcessRefreshKind,
    /// Accumulated CPU ms per (pid, start time) at the previous reading.
    previous: HashMap<(Pid, u64), u64>,
    at: Option<Instant>,
    me: Pid,
}

impl ProcessWatch {
    /// A watcher for `entries` (none: it does nothing).
    pub fn new(entries: Vec<WatchedProcess>) -> ProcessWatch {
        let mut refresh = ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .without_tasks();
        if entries
            .iter()
            .any(|e| matches!(e.matcher, ProcessMatch::Exe(_)))
        {
            refresh = refresh.with_exe(UpdateKind::OnlyIfNotSet);
        }
        if entries
            .iter()
            .any(|e| matches!(e.matcher, ProcessMatch::Cmdline(_)))
        {
            refresh = refresh.with_cmd(UpdateKind::OnlyIfNotSet);
        }
        ProcessWatch {
            entries,
            refresh,
            previous: HashMap::new(),
            at: None,
            me: Pid::from_u32(std::process::id()),
        }
    }

    /// The watched entries.
    pub fn entries(&self) -> &[WatchedProcess] {
        &self.entries
    }

    /// Refreshes `sys`'s process table and returns each entry's figures, in
    /// configuration order; `cpus` is the number of CPUs.
    pub fn read(&mut self, sys: &mut System, now: Instant, cpus: usize) -> Vec<ProcessFigures> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        sys.refresh_processes_specifics(ProcessesToUpdate::All, true, self.refresh);
        let elapsed_ms = self
            .at
            .map(|at| now.saturating_duration_since(at).as_secs_f64() * 1000.0)
            .filter(|ms| *ms > 0.0);
        let mut figures: Vec<(u64, u64, u64)> = vec![(0, 0, 0); self.entries.len()];
        let mut next = HashMap::with_capacity(self.previous.len());
        for (pid, p) in sys.processes() {
            if *pid == self.me || p.thread_kind().is_some() {
                continue;
            }
            if matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead) {
                continue;
            }
            let mut cmdline = None;
            let mut matched = false;
            for (e, f) in self.entries.iter().zip(figures.iter_mut()) {
                let hit = match &e.matcher {
                    ProcessMatch::Comm(g) => g.matches(&p.name().to_string_lossy()),
                    ProcessMatch::Exe(g) => {
                        p.exe().is_some_and(|x| g.matches(&x.to_string_lossy()))
                    }
                    ProcessMatch::Cmdline(g) => {
                        let c = cmdline.get_or_insert_with(|| {
                            p.cmd()
                                .iter()
                                .map(|a| a.to_string_lossy())
                                .collect::<Vec<_>>()
                                .join(" ")
                        });
                        g.matches(c)
                    }
                };
                if !hit {
                    continue;
                }
                matched = true;
                let cpu_ms = p.accumulated_cpu_time();
                let since = match self.previous.get(&(*pid, p.start_time())) {
                    Some(old) => cpu_ms.saturating_sub(*old),
                    None => cpu_ms,
                };
                f.0 += 1;
                f.1 += since;
                f.2 += p.memory();
            }
            if matched {
                next.insert((*pid, p.start_time()), p.accumulated_cpu_time());
            }
        }
        self.previous = next;
        self.at = Some(now);
        let cpus = cpus.max(1) as f64;
        figures
            .into_iter()
            .map(|(count, cpu_ms, mem)| ProcessFigures {
                count,
                cpu: elapsed_ms.map(|ms| {
                    crate::recorder::round_to(
                        (cpu_ms as f64 / (ms * cpus) * 100.0).clamp(0.0, 100.0),
                        2,
                    )
                }),
                mem_kb: crate::recorder::round_to(mem as f64 / 1024.0, 2),
            })
            .collect()
    }
}
