//! The codec comparison behind sealed chunks (docs/storage.md, "Choosing
//! the chunk codec"): 10 days of 10 s ticks of one node — the larger tick
//! (29 values: the standard tick plus swap, load, 2 mounts, 2 interfaces,
//! 1 watched process) and the 10-value seed tick — cut into 2-hour chunks
//! and encoded with each value codec: pco alone, the decimal-delta codec
//! alone, and the smaller of the two per column (what the stores use).
//! The anchor is the per-tick codec of layouts 1 and 2 (one blob per tick,
//! as the stream and the redb `ticks` table hold them). Figures: payload
//! bytes per sample (no store overhead), encode time for the 10 days, and
//! the decode time of one node-day (12 chunks, into ticks), best of 5.
//!
//! `cargo run --release -p metrics-model --example chunk_codecs`

use std::collections::BTreeMap;
use std::time::Instant;

use metrics_model::chunk::{self, Codecs};
use metrics_model::synthetic::{node_ticks, node_ticks_wide};
use metrics_model::time::Millis;
use metrics_model::{HostName, Tick, Values, codec};

const TICKS: i64 = 86_400;
const STEP: i64 = 10_000;
const START: i64 = 1_767_225_600_000;

fn windows(ticks: &[Tick]) -> BTreeMap<Millis, Vec<(Millis, &Values)>> {
    let mut out: BTreeMap<Millis, Vec<(Millis, &Values)>> = BTreeMap::new();
    for t in ticks {
        out.entry(chunk::window_of(t.ts))
            .or_default()
            .push((t.ts, t.values()));
    }
    out
}

fn best_of<F: FnMut()>(n: usize, mut f: F) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn measure(label: &str, ticks: &[Tick]) {
    let samples: usize = ticks.iter().map(|t| t.values().len()).sum();
    let by_window = windows(ticks);
    println!(
        "\n{label}: {} ticks, {samples} samples, {} chunks of 2 h",
        ticks.len(),
        by_window.len()
    );
    println!("| codec | bytes/sample | encode 10 days, ms | decode one node-day (12 chunks), ms |");
    println!("|---|---|---|---|");
    // The anchor: one blob per tick.
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let blobs: Vec<Vec<u8>> = ticks
        .iter()
        .map(|t| {
            buf.clear();
            codec::encode(t.values(), &mut buf);
            buf.clone()
        })
        .collect();
    let enc = t0.elapsed().as_secs_f64() * 1e3;
    let bytes: usize = blobs.iter().map(Vec::len).sum();
    let day = &blobs[..8_640];
    let dec = best_of(5, || {
        let n: usize = day.iter().map(|b| codec::decode(b).unwrap().len()).sum();
        assert!(n > 0);
    });
    println!(
        "| per-tick codec (layouts 1–2, anchor) | {:.3} | {enc:.0} | {dec:.1} |",
        bytes as f64 / samples as f64
    );
    for (name, codecs) in [
        ("pco 1.x, every column", Codecs::Pco),
        ("decimal delta varint, every column", Codecs::Decimal),
        ("smaller of the two per column (chosen)", Codecs::Best),
    ] {
        let t0 = Instant::now();
        let chunks: Vec<Vec<u8>> = by_window
            .values()
            .map(|ticks| chunk::encode_with(ticks, codecs))
            .collect();
        let enc = t0.elapsed().as_secs_f64() * 1e3;
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let day = &chunks[..12];
        let dec = best_of(5, || {
            let n: usize = day.iter().map(|c| chunk::decode(c).unwrap().len()).sum();
            assert_eq!(n, 8_640);
        });
        // Every codec gives the ticks back exactly.
        let back: Vec<(Millis, Values)> = chunks
            .iter()
            .flat_map(|c| chunk::decode(c).unwrap())
            .collect();
        assert!(
            back.len() == ticks.len()
                && back
                    .iter()
                    .zip(ticks)
                    .all(|((ts, v), t)| *ts == t.ts && v == t.values()),
            "{name}: not the same ticks"
        );
        println!(
            "| {name} | {:.3} | {enc:.0} | {dec:.1} |",
            bytes as f64 / samples as f64
        );
    }
}

fn main() {
    let host: HostName = "node-a".parse().unwrap();
    measure(
        "larger tick (29 values)",
        &node_ticks_wide(&host, START, STEP, TICKS, 7),
    );
    measure(
        "seed tick (10 values)",
        &node_ticks(&host, START, STEP, TICKS, 7),
    );
}
