//! Prints realistic ticks as JSON lines (the `bp-collector import` input):
//! by default 10 days of 10 s ticks of one node with 10 fields, i.e.
//! 86,400 ticks = 864,000 samples (CPU and memory random walks with 2
//! decimals, small integer counters, latencies with 3 decimals; the same
//! shape as `redis-store`'s bytes-per-sample example).
//!
//! `cargo run --release -p bp-collector --example gen_ticks -- [--ticks N] [--host NAME] [--shuffle SEED]`

use std::io::{BufWriter, Write};

use metrics_model::{HostName, StandardField, Tick};

const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const STEP: i64 = 10_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / f64::from(1u32 << 31)
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

fn ticks(host: &HostName, n: i64) -> Vec<Tick> {
    let mut rng = Rng(7);
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
                START + i * STEP,
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut n: i64 = 86_400;
    let mut host = "node-a".to_owned();
    let mut shuffle: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--ticks" => n = v.parse()?,
            "--host" => host = v,
            "--shuffle" => shuffle = Some(v.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let mut data = ticks(&host.parse()?, n);
    if let Some(seed) = shuffle {
        let mut rng = Rng(seed);
        for i in (1..data.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            data.swap(i, j);
        }
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    for t in &data {
        writeln!(out, "{}", t.to_json_line())?;
    }
    out.flush()?;
    Ok(())
}
