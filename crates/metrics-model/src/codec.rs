//! The compact binary form of a tick's values (layout 1), shared by the
//! stores: one Redis stream field per tick, one value per tick on disk.
//!
//! ```text
//! values   = presence:varint  standard-value*  [custom-section]
//! presence = bit i set: StandardField::ALL[i] present (i = 0..=11);
//!            bit 12 set: a custom section follows
//! custom-section = count:varint  (name-len:varint  name-bytes  number)*
//!                  (name without the "custom." prefix)
//! number   = varint( zigzag(m) << 3 | s )          when s in 0..=6: value = m / 10^s
//!          | varint(7)  f64-little-endian (8 bytes) otherwise
//! varint   = unsigned LEB128
//! ```
//!
//! `s` is the smallest number of decimals that gives back the exact `f64`
//! (`m as f64 / 10^s == value`), so `63.52` is stored as `6352` with `s = 2`
//! (3 bytes) and a counter `4` as one byte. Values that no decimal scale
//! reproduces (or too large, `|m| > 2^53`) are stored as raw `f64`. Decoding
//! never panics: a malformed blob gives a [`DecodeError`].

use std::sync::Arc;

use crate::field::{CUSTOM_PREFIX, Field, StandardField, is_valid_custom_name};
use crate::tick::Values;

/// Why a stored blob is not a tick's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed tick values: {0}")]
pub struct DecodeError(pub &'static str);

const CUSTOM_BIT: u64 = 1 << 12;
const RAW_SCALE: u64 = 7;
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// Appends the encoded `values` to `out`.
pub fn encode(values: &Values, out: &mut Vec<u8>) {
    let mut presence = 0u64;
    let mut customs = 0u64;
    for field in values.keys() {
        match field {
            Field::Standard(f) => presence |= 1 << standard_index(*f),
            Field::Custom(_) => customs += 1,
        }
    }
    if customs > 0 {
        presence |= CUSTOM_BIT;
    }
    put_varint(out, presence);
    // `Values` is ordered standard fields first, in specification order.
    for (field, &v) in values {
        if let Field::Standard(_) = field {
            put_number(out, v);
        }
    }
    if customs > 0 {
        put_varint(out, customs);
        for (field, &v) in values {
            if let Field::Custom(name) = field {
                let short = &name[CUSTOM_PREFIX.len()..];
                put_varint(out, short.len() as u64);
                out.extend_from_slice(short.as_bytes());
                put_number(out, v);
            }
        }
    }
}

/// Decodes a blob written by [`encode`].
pub fn decode(mut bytes: &[u8]) -> Result<Values, DecodeError> {
    let input = &mut bytes;
    let presence = get_varint(input)?;
    if presence >> 13 != 0 {
        return Err(DecodeError("unknown fields in the presence bits"));
    }
    let mut values = Values::new();
    for (i, f) in StandardField::ALL.iter().enumerate() {
        if presence & (1 << i) != 0 {
            values.insert(Field::Standard(*f), get_number(input)?);
        }
    }
    if presence & CUSTOM_BIT != 0 {
        let count = get_varint(input)?;
        for _ in 0..count {
            let len = usize::try_from(get_varint(input)?)
                .map_err(|_| DecodeError("custom field name too long"))?;
            if len > input.len() {
                return Err(DecodeError("custom field name cut short"));
            }
            let (name, rest) = input.split_at(len);
            *input = rest;
            let name = std::str::from_utf8(name)
                .map_err(|_| DecodeError("custom field name not UTF-8"))?;
            if !is_valid_custom_name(name) {
                return Err(DecodeError("invalid custom field name"));
            }
            let field = Field::Custom(Arc::from(format!("{CUSTOM_PREFIX}{name}")));
            values.insert(field, get_number(input)?);
        }
    }
    if !input.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(values)
}

fn standard_index(f: StandardField) -> usize {
    StandardField::ALL
        .iter()
        .position(|&x| x == f)
        .unwrap_or_default()
}

fn put_number(out: &mut Vec<u8>, v: f64) {
    for (scale, &p) in POW10.iter().enumerate() {
        let m = (v * p).round();
        if m.abs() <= MAX_EXACT && m / p == v {
            let m = m as i64;
            let zigzag = ((m << 1) ^ (m >> 63)) as u64;
            put_varint(out, (zigzag << 3) | scale as u64);
            return;
        }
    }
    put_varint(out, RAW_SCALE);
    out.extend_from_slice(&v.to_le_bytes());
}

fn get_number(input: &mut &[u8]) -> Result<f64, DecodeError> {
    let word = get_varint(input)?;
    let scale = word & 7;
    if scale == RAW_SCALE {
        if input.len() < 8 {
            return Err(DecodeError("raw number cut short"));
        }
        let (raw, rest) = input.split_at(8);
        *input = rest;
        let mut b = [0u8; 8];
        b.copy_from_slice(raw);
        let v = f64::from_le_bytes(b);
        return if v.is_finite() {
            Ok(v)
        } else {
            Err(DecodeError("number not finite"))
        };
    }
    let zigzag = word >> 3;
    let m = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
    Ok(m as f64 / POW10[scale as usize])
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = input.split_first() else {
            return Err(DecodeError("varint cut short"));
        };
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint too long"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn values(pairs: &[(&str, f64)]) -> Values {
        pairs
            .iter()
            .map(|(n, v)| (n.parse::<Field>().unwrap(), *v))
            .collect()
    }

    fn check(pairs: &[(&str, f64)], expected_len: usize) {
        let v = values(pairs);
        let mut out = Vec::new();
        encode(&v, &mut out);
        assert_eq!(out.len(), expected_len, "{pairs:?}: {out:?}");
        assert_eq!(decode(&out).unwrap(), v, "{pairs:?}");
    }

    #[test]
    fn sizes() {
        check(&[], 1);
        check(&[("errors.count", 3.0)], 3);
        check(&[("cpu.usage", 63.52)], 4);
        check(&[("cpu.usage", -0.5)], 2);
        check(&[("requests.latency_avg", 12.345)], 4);
        check(&[("mem.free", 8_123_456.0)], 5);
        check(&[("cpu.usage", 0.1 + 0.2)], 10);
        check(&[("custom.q", 17.0)], 7);
        check(
            &[("uptime", 1e300), ("custom.a.b", -1e-9), ("custom.z", 2.0)],
            28,
        );
    }

    #[test]
    fn malformed_blobs_are_errors() {
        for bad in [
            &[][..],
            &[0x80],
            &[0x01],
            &[0x01, 0x07, 0],
            &[0x00, 0x00],
            &[0x80, 0x40],
            &[0x80, 0x20, 0x01, 0x05, b'a'],
            &[0x80, 0x20, 0x01, 0x01, b'{', 0x00],
            &[
                0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(
            std_vals in proptest::collection::vec(proptest::option::of(any::<f64>()), 12),
            decimals in proptest::collection::vec((-10_000_000i64..10_000_000, 0u32..7), 12),
            customs in proptest::collection::btree_map("[a-z0-9_.-]{1,64}", any::<f64>(), 0..4),
        ) {
            let mut v = Values::new();
            for (i, f) in StandardField::ALL.iter().enumerate() {
                let x = match std_vals[i] {
                    Some(x) => x,
                    None => decimals[i].0 as f64 / 10f64.powi(decimals[i].1 as i32),
                };
                if x.is_finite() {
                    v.insert(Field::Standard(*f), x);
                }
            }
            for (name, x) in customs {
                if x.is_finite() {
                    v.insert(format!("custom.{name}").parse().unwrap(), x);
                }
            }
            let mut out = Vec::new();
            encode(&v, &mut out);
            let back = decode(&out).unwrap();
            prop_assert_eq!(back.len(), v.len());
            for (f, x) in &v {
                prop_assert_eq!(back[f].to_bits() == x.to_bits() || (*x == 0.0 && back[f] == 0.0), true);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
