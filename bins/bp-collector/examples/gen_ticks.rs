//! Prints realistic ticks as JSON lines (the `bp-collector import` input):
//! by default 10 days of 10 s ticks of one node with 10 fields, i.e.
//! 86,400 ticks = 864,000 samples (CPU and memory random walks with 2
//! decimals, small integer counters, latencies with 3 decimals; the same
//! shape as `redis-store`'s bytes-per-sample example).
//!
//! `cargo run --release -p bp-collector --example gen_ticks -- [--ticks N] [--host NAME] [--shuffle SEED] [--start MS | --end-now]`
//!
//! `--start MS` stamps the first tick at `MS` (ms since the epoch; default
//! 2026-01-01T00:00:00Z); `--end-now` makes the last tick the current 10 s
//! slot (recent data, inside a retention period).

use std::io::{BufWriter, Write};

use metrics_model::synthetic::{Rng, node_ticks};

const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const STEP: i64 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut n: i64 = 86_400;
    let mut host = "node-a".to_owned();
    let mut shuffle: Option<u64> = None;
    let mut start = START;
    let mut end_now = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--end-now" {
            end_now = true;
            continue;
        }
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--start" => start = v.parse()?,
            "--ticks" => n = v.parse()?,
            "--host" => host = v,
            "--shuffle" => shuffle = Some(v.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if end_now {
        start = metrics_model::time::now_ms() / STEP * STEP - (n - 1) * STEP;
    }
    let mut data = node_ticks(&host.parse()?, start, STEP, n, 7);
    if let Some(seed) = shuffle {
        Rng(seed).shuffle(&mut data);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    for t in &data {
        writeln!(out, "{}", t.to_json_line())?;
    }
    out.flush()?;
    Ok(())
}
