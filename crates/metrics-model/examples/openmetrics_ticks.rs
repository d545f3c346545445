//! Writes 10 days of 10 s ticks of one node — the larger tick of
//! `bytes_per_sample` (`synthetic::node_ticks_wide`, same seed, same
//! values) — as an OpenMetrics text file, for `promtool tsdb
//! create-blocks-from openmetrics` (`scripts/bench-prometheus` measures
//! Prometheus' bytes per sample on the same ticks). A key `f[i]` becomes the
//! metric `bp_f` (dots as underscores) with the label `instance="i"`; every
//! series carries `host`.
//!
//! `cargo run --release -p metrics-model --example openmetrics_ticks -- FILE`

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

use metrics_model::synthetic::node_ticks_wide;
use metrics_model::{HostName, Key};

const TICKS: i64 = 86_400;
const STEP: i64 = 10_000;
const START: i64 = 1_767_225_600_000;

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: openmetrics_ticks FILE");
        std::process::exit(2);
    };
    let host: HostName = "node-a".parse().expect("host name");
    let ticks = node_ticks_wide(&host, START, STEP, TICKS, 7);
    // Families in name order; the series of a family one after another.
    let mut families: BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>> = BTreeMap::new();
    let mut samples = 0usize;
    for t in &ticks {
        for (key, v) in t.values() {
            let (name, labels) = metric(key, &host);
            families
                .entry(name)
                .or_default()
                .entry(labels)
                .or_default()
                .push((t.ts, *v));
            samples += 1;
        }
    }
    let mut out = BufWriter::new(std::fs::File::create(&path)?);
    for (name, series) in &families {
        writeln!(out, "# TYPE {name} gauge")?;
        for (labels, points) in series {
            for (ts, v) in points {
                writeln!(out, "{name}{{{labels}}} {v} {}.{:03}", ts / 1000, ts % 1000)?;
            }
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()?;
    println!(
        "wrote {samples} samples of {} series ({} families) to {path}",
        families.values().map(BTreeMap::len).sum::<usize>(),
        families.len()
    );
    Ok(())
}

fn metric(key: &Key, host: &HostName) -> (String, String) {
    let name = format!("bp_{}", key.field().as_str().replace(['.', '-'], "_"));
    let labels = match key.instance() {
        Some(i) => format!(
            "host=\"{host}\",instance=\"{}\"",
            i.as_str().replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => format!("host=\"{host}\""),
    };
    (name, labels)
}
