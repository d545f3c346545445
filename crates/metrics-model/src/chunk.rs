//! Sealed chunks (key layout 3): one host's ticks of one time window as one
//! compressed, columnar blob, shared by the stores (a Redis hash field per
//! window, a redb table entry per window).
//!
//! ```text
//! chunk   = version:u8(1)  n:varint  timestamps  keys:varint key*  column*
//! timestamps = first:varint  dod*:zigzag-varint     (n − 1 of them)
//!           delta(i) = ts(i) − ts(i−1), delta(0) = 0; dod(i) = delta(i) − delta(i−1)
//! key     = len:varint  text                        (`cpu.usage`, `disk.usage[/var]`)
//! column  = presence  codec:u8  len:varint  bytes   (one per key, in key order)
//! presence = 0: every tick has the key | 1: bitmap of n bits (LSB first)
//! codec   = 0: pco (f64, its default level)
//!         | 1: decimal: scale:u8  (zigzag-varint delta of m)*   value = m / 10^scale
//!         | 2: raw f64 little-endian
//! ```
//!
//! Timestamps come first and in the simplest form, so that a Lua script in
//! Redis can read them (the append script checks a late tick against a
//! sealed window's timestamps to tell a duplicate). Regular ticks make
//! every `dod` a zero, one byte per tick. Values are per key (columns):
//! the encoder compresses each column with pco and with the decimal
//! codec and keeps the smaller (see docs/storage.md for the comparison that
//! chose this). Decoding is exact (values bit for bit) and never panics: a
//! malformed blob gives a [`DecodeError`].

use std::collections::BTreeSet;

use crate::codec::{DecodeError, get_varint, put_varint};
use crate::key::Key;
use crate::tick::Values;
use crate::time::Millis;

/// The width of a chunk's window: ticks with `window ≤ ts < window +
/// CHUNK_MS` share a chunk, `window` a multiple of it (2 hours, as
/// Prometheus' head blocks).
pub const CHUNK_MS: Millis = 2 * 3600 * 1000;

/// How far behind `now` a window must end before it is sealed: every
/// reader by arrival (the alerter, at most `catchUpLimit` behind) has read
/// its ticks by then.
pub const SEAL_AFTER_MS: Millis = 3600 * 1000;

const VERSION: u8 = 1;
const CODEC_PCO: u8 = 0;
const CODEC_DECIMAL: u8 = 1;
const CODEC_RAW: u8 = 2;
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

/// The window of `ts` (`ts` ≥ 0).
pub fn window_of(ts: Millis) -> Millis {
    ts - ts.rem_euclid(CHUNK_MS)
}

/// The greatest seal boundary at `now`: windows ending at or before it may
/// be sealed.
pub fn seal_boundary(now: Millis) -> Millis {
    window_of((now - SEAL_AFTER_MS).max(0))
}

/// Which value codecs the encoder may use (the comparison in
/// `examples/chunk_codecs` forces one; the stores use [`Codecs::Best`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codecs {
    /// Each column in the smaller of pco and decimal.
    Best,
    /// pco only.
    Pco,
    /// The decimal codec only (raw where no scale is exact).
    Decimal,
}

/// Encodes ticks (ascending by `ts`, no `ts` twice) as one chunk.
pub fn encode(ticks: &[(Millis, &Values)]) -> Vec<u8> {
    encode_with(ticks, Codecs::Best)
}

/// [`encode`] with a choice of codecs.
pub fn encode_with(ticks: &[(Millis, &Values)], codecs: Codecs) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(VERSION);
    put_varint(&mut out, ticks.len() as u64);
    let mut prev_ts = 0;
    let mut prev_delta = 0;
    for (i, (ts, _)) in ticks.iter().enumerate() {
        if i == 0 {
            put_varint(&mut out, *ts as u64);
        } else {
            let delta = ts - prev_ts;
            put_varint(&mut out, zigzag(delta - prev_delta));
            prev_delta = delta;
        }
        prev_ts = *ts;
    }
    let keys: BTreeSet<&Key> = ticks.iter().flat_map(|(_, v)| v.keys()).collect();
    put_varint(&mut out, keys.len() as u64);
    for key in &keys {
        let text = key.to_string();
        put_varint(&mut out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
    let mut column = Vec::with_capacity(ticks.len());
    let mut bitmap = vec![0u8; ticks.len().div_ceil(8)];
    for key in &keys {
        column.clear();
        bitmap.fill(0);
        for (i, (_, values)) in ticks.iter().enumerate() {
            if let Some(&v) = values.get(*key) {
                column.push(v);
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        if column.len() == ticks.len() {
            out.push(0);
        } else {
            out.push(1);
            out.extend_from_slice(&bitmap);
        }
        let (codec, bytes) = encode_column(&column, codecs);
        out.push(codec);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(&bytes);
    }
    out
}

fn encode_column(column: &[f64], codecs: Codecs) -> (u8, Vec<u8>) {
    let decimal = || {
        decimal_encode(column)
            .map_or_else(|| (CODEC_RAW, raw_encode(column)), |b| (CODEC_DECIMAL, b))
    };
    let pco = || {
        pco::standalone::simple_compress(column, &pco::ChunkConfig::default())
            .ok()
            .map(|b| (CODEC_PCO, b))
    };
    match codecs {
        Codecs::Decimal => decimal(),
        Codecs::Pco => pco().unwrap_or_else(|| (CODEC_RAW, raw_encode(column))),
        Codecs::Best => {
            let d = decimal();
            match pco() {
                Some(p) if p.1.len() < d.1.len() => p,
                _ => d,
            }
        }
    }
}

/// The smallest scale at which every value is exactly `m / 10^scale`
/// (bit for bit: `-0.0` has none), then the deltas of `m`.
fn decimal_encode(column: &[f64]) -> Option<Vec<u8>> {
    let scale = (0..POW10.len()).find(|&s| {
        column.iter().all(|&v| {
            let m = (v * POW10[s]).round();
            m.abs() <= MAX_EXACT && ((m as i64) as f64 / POW10[s]).to_bits() == v.to_bits()
        })
    })?;
    let mut out = Vec::with_capacity(column.len() + 1);
    out.push(scale as u8);
    let mut prev = 0i64;
    for &v in column {
        let m = (v * POW10[scale]).round() as i64;
        put_varint(&mut out, zigzag(m - prev));
        prev = m;
    }
    Some(out)
}

fn raw_encode(column: &[f64]) -> Vec<u8> {
    column.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The timestamps of a chunk, without decoding its values.
pub fn timestamps(bytes: &[u8]) -> Result<Vec<Millis>, DecodeError> {
    let mut input = bytes;
    read_timestamps(&mut input)
}

/// How many ticks a chunk holds (its header only).
pub fn tick_count(bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut input = bytes;
    read_header(&mut input)
}

fn read_header(input: &mut &[u8]) -> Result<usize, DecodeError> {
    let Some((&version, rest)) = input.split_first() else {
        return Err(DecodeError("empty chunk"));
    };
    *input = rest;
    if version != VERSION {
        return Err(DecodeError(
            "unknown chunk version (written by a newer bp-monitoring?)",
        ));
    }
    let n = get_varint(input)?;
    // Every tick takes at least one byte of timestamps.
    if n > input.len() as u64 {
        return Err(DecodeError("chunk tick count larger than the chunk"));
    }
    Ok(n as usize)
}

fn read_timestamps(input: &mut &[u8]) -> Result<Vec<Millis>, DecodeError> {
    let n = read_header(input)?;
    let mut out = Vec::with_capacity(n);
    let mut delta: i64 = 0;
    for i in 0..n {
        if i == 0 {
            let first = get_varint(input)?;
            out.push(Millis::try_from(first).map_err(|_| DecodeError("chunk ts out of range"))?);
        } else {
            let dod = unzigzag(get_varint(input)?);
            delta = delta
                .checked_add(dod)
                .ok_or(DecodeError("chunk ts out of range"))?;
            let ts = out[i - 1]
                .checked_add(delta)
                .ok_or(DecodeError("chunk ts out of range"))?;
            if delta <= 0 {
                return Err(DecodeError("chunk timestamps not ascending"));
            }
            out.push(ts);
        }
    }
    Ok(out)
}

/// Decodes a chunk into its ticks, ascending by `ts`.
pub fn decode(bytes: &[u8]) -> Result<Vec<(Millis, Values)>, DecodeError> {
    let mut input = bytes;
    let ts = read_timestamps(&mut input)?;
    let n = ts.len();
    let nkeys = get_varint(&mut input)?;
    if nkeys > input.len() as u64 {
        return Err(DecodeError("chunk key count larger than the chunk"));
    }
    let mut keys = Vec::with_capacity(nkeys as usize);
    for _ in 0..nkeys {
        let len = get_varint(&mut input)?;
        let text = take(&mut input, len)?;
        let text = std::str::from_utf8(text).map_err(|_| DecodeError("chunk key not UTF-8"))?;
        keys.push(Key::parse_tick_key(text).map_err(|_| DecodeError("chunk key not a tick key"))?);
    }
    let mut rows: Vec<Vec<(Key, f64)>> = (0..n).map(|_| Vec::with_capacity(keys.len())).collect();
    for key in keys {
        let (&presence, rest) = input
            .split_first()
            .ok_or(DecodeError("chunk column cut short"))?;
        input = rest;
        let bitmap = match presence {
            0 => None,
            1 => Some(take(&mut input, n.div_ceil(8) as u64)?),
            _ => return Err(DecodeError("unknown chunk presence kind")),
        };
        let count = bitmap.map_or(n, |b| b.iter().map(|x| x.count_ones() as usize).sum());
        let (&codec, rest) = input
            .split_first()
            .ok_or(DecodeError("chunk column cut short"))?;
        input = rest;
        let len = get_varint(&mut input)?;
        let bytes = take(&mut input, len)?;
        let values = decode_column(codec, bytes, count)?;
        match bitmap {
            None => {
                for (row, v) in rows.iter_mut().zip(values) {
                    row.push((key.clone(), v));
                }
            }
            Some(bitmap) => {
                let present = (0..n).filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0);
                for (i, v) in present.zip(values) {
                    rows[i].push((key.clone(), v));
                }
            }
        }
    }
    if !input.is_empty() {
        return Err(DecodeError("trailing bytes after the chunk"));
    }
    // Keys were written in key order, so each row is sorted: the map is
    // built in bulk.
    Ok(ts
        .into_iter()
        .zip(rows)
        .map(|(t, row)| (t, row.into_iter().collect()))
        .collect())
}

/// Decodes several chunks, on up to as many threads as the machine has
/// cores (at most 4) when there are enough of them to share: a node-day is
/// 12 chunks, most of whose decoding is building the ticks' value maps.
pub fn decode_many(blobs: &[&[u8]]) -> Vec<Result<Vec<(Millis, Values)>, DecodeError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(4)
        .min(blobs.len() / 2);
    if threads <= 1 {
        return blobs.iter().map(|b| decode(b)).collect();
    }
    let per = blobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = blobs
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(|b| decode(b)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(DecodeError("chunk decoder thread failed"))])
            })
            .collect()
    })
}

fn decode_column(codec: u8, bytes: &[u8], count: usize) -> Result<Vec<f64>, DecodeError> {
    let values = match codec {
        CODEC_PCO => pco::standalone::simple_decompress::<f64>(bytes)
            .map_err(|_| DecodeError("chunk column: malformed pco data"))?,
        CODEC_DECIMAL => {
            let (&scale, mut rest) = bytes
                .split_first()
                .ok_or(DecodeError("chunk column cut short"))?;
            let p = *POW10
                .get(scale as usize)
                .ok_or(DecodeError("chunk column: bad decimal scale"))?;
            let mut out = Vec::with_capacity(count.min(bytes.len()));
            let mut m: i64 = 0;
            while !rest.is_empty() {
                m = m
                    .checked_add(unzigzag(get_varint(&mut rest)?))
                    .ok_or(DecodeError("chunk column: value out of range"))?;
                out.push(m as f64 / p);
            }
            out
        }
        CODEC_RAW => {
            if !bytes.len().is_multiple_of(8) {
                return Err(DecodeError("chunk column: raw values cut short"));
            }
            bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect()
        }
        _ => return Err(DecodeError("unknown chunk column codec")),
    };
    if values.len() != count {
        return Err(DecodeError(
            "chunk column: value count differs from its presence",
        ));
    }
    Ok(values)
}

fn take<'a>(input: &mut &'a [u8], len: u64) -> Result<&'a [u8], DecodeError> {
    if len > input.len() as u64 {
        return Err(DecodeError("chunk cut short"));
    }
    let (head, rest) = input.split_at(len as usize);
    *input = rest;
    Ok(head)
}

/// Merges ticks into a chunk's ticks: where both have a `ts`, the chunk's
/// (stored first) wins. Returns the merged ticks ascending by `ts` and how
/// many of `added` were duplicates.
pub fn merge(
    sealed: Vec<(Millis, Values)>,
    added: Vec<(Millis, Values)>,
) -> (Vec<(Millis, Values)>, usize) {
    let mut all: std::collections::BTreeMap<Millis, Values> = sealed.into_iter().collect();
    let mut dups = 0;
    for (ts, v) in added {
        if let std::collections::btree_map::Entry::Vacant(e) = all.entry(ts) {
            e.insert(v);
        } else {
            dups += 1;
        }
    }
    (all.into_iter().collect(), dups)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::field::StandardField;

    fn key(text: &str) -> Key {
        Key::parse_tick_key(text).unwrap()
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-100_000i64..100_000).prop_map(|m| m as f64 / 100.0),
            (0u64..1000).prop_map(|v| v as f64),
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            Just(-0.0),
        ]
    }

    fn ticks() -> impl Strategy<Value = Vec<(Millis, Values)>> {
        let keys = [
            "cpu.usage",
            "mem.usage",
            "disk.usage[/var]",
            "custom.queue[orders]",
            "custom.x",
        ];
        proptest::collection::btree_map(
            0i64..(CHUNK_MS * 3),
            proptest::collection::btree_map(0..keys.len(), value(), 0..keys.len()),
            0..200,
        )
        .prop_map(move |m| {
            m.into_iter()
                .map(|(ts, vs)| (ts, vs.into_iter().map(|(k, v)| (key(keys[k]), v)).collect()))
                .collect()
        })
    }

    fn bits(ticks: &[(Millis, Values)]) -> Vec<(Millis, Vec<(String, u64)>)> {
        ticks
            .iter()
            .map(|(t, v)| {
                (
                    *t,
                    v.iter()
                        .map(|(k, x)| (k.to_string(), x.to_bits()))
                        .collect(),
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn round_trips_bit_for_bit_with_every_codec(ticks in ticks()) {
            let refs: Vec<(Millis, &Values)> = ticks.iter().map(|(t, v)| (*t, v)).collect();
            for codecs in [Codecs::Best, Codecs::Pco, Codecs::Decimal] {
                let blob = encode_with(&refs, codecs);
                let back = decode(&blob).unwrap();
                prop_assert_eq!(bits(&back), bits(&ticks));
                prop_assert_eq!(timestamps(&blob).unwrap(), ticks.iter().map(|t| t.0).collect::<Vec<_>>());
                prop_assert_eq!(tick_count(&blob).unwrap(), ticks.len());
            }
        }

        #[test]
        fn malformed_chunks_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let _ = timestamps(&bytes);
        }

        #[test]
        fn cut_chunks_are_errors(ticks in ticks(), cut in 0usize..1000) {
            let refs: Vec<(Millis, &Values)> = ticks.iter().map(|(t, v)| (*t, v)).collect();
            let blob = encode(&refs);
            let cut = cut % blob.len();
            prop_assert!(decode(&blob[..cut]).is_err());
        }
    }

    #[test]
    fn regular_ticks_cost_one_byte_of_time_each_and_little_per_value() {
        let ticks: Vec<(Millis, Values)> = (0..720)
            .map(|i| {
                let v: Values = [
                    (StandardField::CpuUsage.into(), f64::from(i % 97) / 4.0),
                    (key("custom.x"), 3.0),
                ]
                .into_iter()
                .collect();
                (1_000_000 + i64::from(i) * 10_000, v)
            })
            .collect();
        let refs: Vec<(Millis, &Values)> = ticks.iter().map(|(t, v)| (*t, v)).collect();
        let blob = encode(&refs);
        // 720 timestamps of one byte (the first a few more), two columns.
        assert!(blob.len() < 720 + 720 + 200, "{} bytes", blob.len());
        assert_eq!(decode(&blob).unwrap(), ticks);
    }

    #[test]
    fn merge_keeps_the_sealed_tick() {
        let a: Values = [(StandardField::CpuUsage.into(), 1.0)]
            .into_iter()
            .collect();
        let b: Values = [(StandardField::CpuUsage.into(), 2.0)]
            .into_iter()
            .collect();
        let (m, dups) = merge(vec![(5, a.clone())], vec![(5, b.clone()), (6, b.clone())]);
        assert_eq!(m, vec![(5, a), (6, b)]);
        assert_eq!(dups, 1);
    }

    #[test]
    fn windows() {
        assert_eq!(window_of(0), 0);
        assert_eq!(window_of(CHUNK_MS - 1), 0);
        assert_eq!(window_of(CHUNK_MS), CHUNK_MS);
        assert_eq!(seal_boundary(SEAL_AFTER_MS + CHUNK_MS + 5), CHUNK_MS);
    }
}
