//! Tick assembly: system readings plus what the recorder counted, stamped
//! with an instant aligned to the collection interval.

use metrics_model::host::HostName;
use metrics_model::tick::Tick;
use metrics_model::time::{Millis, floor_to};

use crate::error::CollectorError;
use crate::recorder::Recorder;
use crate::system::{SystemOptions, SystemSampler};

/// The first instant after `now` that is a multiple of `interval_ms` (> 0)
/// since the epoch: when the next tick is due, and its `ts`.
pub fn next_tick_after(now: Millis, interval_ms: i64) -> Millis {
    floor_to(now, interval_ms) + interval_ms
}

/// Builds one host's ticks from a [`SystemSampler`] and a [`Recorder`].
#[derive(Debug)]
pub struct TickAssembler {
    host: HostName,
    sampler: SystemSampler,
    recorder: Recorder,
}

impl TickAssembler {
    /// An assembler for `host`, counting from `recorder`.
    pub fn new(host: HostName, recorder: Recorder) -> Result<Self, CollectorError> {
        Self::with_options(host, recorder, SystemOptions::default())
    }

    /// An assembler for `host`, counting from `recorder`, sampling the
    /// system with `options` (filesystems, interfaces, devices, watched
    /// processes).
    pub fn with_options(
        host: HostName,
        recorder: Recorder,
        options: SystemOptions,
    ) -> Result<Self, CollectorError> {
        Ok(TickAssembler {
            host,
            sampler: SystemSampler::with_options(options)?,
            recorder,
        })
    }

    /// The recorder the ticks take their counts from.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The host the ticks are of.
    pub fn host(&self) -> &HostName {
        &self.host
    }

    /// Ends the current interval: a tick stamped `ts` with the system
    /// readings now and everything counted since the previous tick.
    pub fn collect(&mut self, ts: Millis) -> Tick {
        let reading = self.sampler.sample();
        let counted = self.recorder.take_interval();
        Tick::new(self.host.clone(), ts, reading.values().chain(counted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        for (now, i, next) in [
            (0, 10, 10),
            (9, 10, 10),
            (10, 10, 20),
            (1_767_225_605_123, 10_000, 1_767_225_610_000),
            (-5, 10, 0),
        ] {
            assert_eq!(next_tick_after(now, i), next, "{now} {i}");
        }
    }

    #[test]
    fn a_tick_has_every_standard_field_but_latency_avg() {
        let r = Recorder::default();
        let mut a = TickAssembler::new("node-a".parse().unwrap(), r.clone()).unwrap();
        r.error();
        let t = a.collect(10_000);
        assert_eq!((t.host.as_str(), t.ts), ("node-a", 10_000));
        let names: Vec<&str> = t
            .values()
            .keys()
            .filter(|k| {
                metrics_model::StandardField::V1
                    .iter()
                    .any(|f| f.as_str() == k.field().as_str())
            })
            .map(|k| k.field().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "cpu.usage",
                "mem.usage",
                "mem.free",
                "uptime",
                "requests.count",
                "requests.latency_sum",
                "eventsIn.count",
                "eventsOut.count",
                "warnings.count",
                "errors.count",
                "criticals.count"
            ]
        );
        assert_eq!(t.get(&"errors.count".parse().unwrap()), Some(1.0));
        assert_eq!(
            a.collect(20_000).get(&"errors.count".parse().unwrap()),
            Some(0.0)
        );
    }
}
