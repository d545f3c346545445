//! The compact binary form of a tick's values, shared by the stores: one
//! Redis stream field per tick, one value per tick on disk.
//!
//! Layout 2 is layout 1 plus a *keyed section*: every blob of layout 1 is a
//! blob of layout 2 with the same meaning, and a tick that carries only
//! version-1 keys (the twelve version-1 standard fields and bare custom
//! fields) is written exactly as layout 1 wrote it, so an alerter of
//! layout 1 still reads it during a rolling upgrade.
//!
//! ```text
//! values   = presence:varint  standard-value*  [custom-section]  [keyed-section]
//! presence = bit i set: StandardField::V1[i] present (i = 0..=11);
//!            bit 12 set: a custom section follows;
//!            bit 13 set: a keyed section follows (layout 2)
//! custom-section = count:varint  (name-len:varint  name-bytes  number)*
//!                  (bare custom keys; name without the "custom." prefix)
//! keyed-section  = strings:varint (len:varint bytes)*      the tick's string table
//!                  count:varint   (word:varint [name:varint] [instance:varint] number)*
//! word     = code << 1 | has-instance
//! code     = 0: a custom field, whose name (without "custom.") follows as a
//!               string-table index;
//!            n ≥ 1: StandardField::ALL[n − 1]
//! instance = a string-table index (when has-instance)
//! number   = varint( zigzag(m) << 3 | s )          when s in 0..=6: value = m / 10^s
//!          | varint(7)  f64-little-endian (8 bytes) otherwise
//! varint   = unsigned LEB128
//! ```
//!
//! The keyed section holds every other key: the version-2 standard fields
//! (bare or with an instance) and custom fields with an instance. Field
//! codes are the places in [`StandardField::ALL`], which only grows at its
//! end: a later field gets the next code and needs no migration; a reader
//! that meets a code it does not know refuses the blob ("written by a newer
//! bp-monitoring") instead of misreading it. Instances repeat across fields
//! (`disk.usage[/var]`, `disk.free[/var]`), so each is written once per tick
//! in the string table.
//!
//! `s` is the smallest number of decimals that gives back the exact `f64`
//! (`m as f64 / 10^s == value`), so `63.52` is stored as `6352` with `s = 2`
//! (3 bytes) and a counter `4` as one byte. Values that no decimal scale
//! reproduces (or too large, `|m| > 2^53`) are stored as raw `f64`. Decoding
//! never panics: a malformed blob gives a [`DecodeError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::field::{CUSTOM_PREFIX, Field, StandardField, is_valid_custom_name};
use crate::key::{Instance, Key};
use crate::tick::Values;

/// Why a stored blob is not a tick's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed tick values: {0}")]
pub struct DecodeError(pub &'static str);

const CUSTOM_BIT: u64 = 1 << 12;
const KEYED_BIT: u64 = 1 << 13;
const RAW_SCALE: u64 = 7;
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
/// The most strings one keyed section may declare (a decoder bound).
const STRINGS_MAX: u64 = 1 << 16;

/// Where a key goes in the blob.
enum Slot {
    /// A version-1 standard field: presence bit `i`.
    V1(usize),
    /// A bare custom field: the custom section.
    Custom,
    /// Everything else: the keyed section.
    Keyed,
}

fn slot(key: &Key) -> Slot {
    match (key.field(), key.instance()) {
        (Field::Standard(f), None) if (*f as usize) < StandardField::V1.len() => {
            Slot::V1(*f as usize)
        }
        (Field::Custom(_), None) => Slot::Custom,
        _ => Slot::Keyed,
    }
}

/// Appends the encoded `values` to `out`.
pub fn encode(values: &Values, out: &mut Vec<u8>) {
    let mut presence = 0u64;
    let mut customs = 0u64;
    let mut keyed = 0u64;
    for key in values.keys() {
        match slot(key) {
            Slot::V1(i) => presence |= 1 << i,
            Slot::Custom => customs += 1,
            Slot::Keyed => keyed += 1,
        }
    }
    if customs > 0 {
        presence |= CUSTOM_BIT;
    }
    if keyed > 0 {
        presence |= KEYED_BIT;
    }
    put_varint(out, presence);
    // `Values` is ordered standard fields first, in specification order.
    for (key, &v) in values {
        if let Slot::V1(_) = slot(key) {
            put_number(out, v);
        }
    }
    if customs > 0 {
        put_varint(out, customs);
        for (key, &v) in values {
            if let Slot::Custom = slot(key) {
                let short = &key.field().as_str()[CUSTOM_PREFIX.len()..];
                put_varint(out, short.len() as u64);
                out.extend_from_slice(short.as_bytes());
                put_number(out, v);
            }
        }
    }
    if keyed > 0 {
        let mut strings: BTreeMap<&str, u64> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut entries: Vec<(u64, Option<u64>, Option<u64>, f64)> = Vec::new();
        for (key, &v) in values {
            if !matches!(slot(key), Slot::Keyed) {
                continue;
            }
            let (code, name) = match key.field() {
                Field::Custom(name) => (
                    0u64,
                    Some(intern(
                        &mut strings,
                        &mut order,
                        &name[CUSTOM_PREFIX.len()..],
                    )),
                ),
                Field::Standard(f) => (*f as u64 + 1, None),
            };
            let instance = key
                .instance()
                .map(|i| intern(&mut strings, &mut order, i.as_str()));
            entries.push((code, name, instance, v));
        }
        put_varint(out, order.len() as u64);
        for s in &order {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        put_varint(out, entries.len() as u64);
        for (code, name, instance, v) in entries {
            put_varint(out, code << 1 | u64::from(instance.is_some()));
            if let Some(n) = name {
                put_varint(out, n);
            }
            if let Some(i) = instance {
                put_varint(out, i);
            }
            put_number(out, v);
        }
    }
}

/// The index of `s` in the string table, added at its end if new.
fn intern<'a>(strings: &mut BTreeMap<&'a str, u64>, order: &mut Vec<&'a str>, s: &'a str) -> u64 {
    *strings.entry(s).or_insert_with(|| {
        order.push(s);
        order.len() as u64 - 1
    })
}

/// Whether the blob uses layout 2's keyed section (a layout-1 reader
/// refuses it).
pub fn uses_keyed_section(bytes: &[u8]) -> bool {
    get_varint(&mut &bytes[..]).is_ok_and(|p| p & KEYED_BIT != 0)
}

/// Decodes a blob written by [`encode`] (layout 1 or 2).
pub fn decode(mut bytes: &[u8]) -> Result<Values, DecodeError> {
    let input = &mut bytes;
    let presence = get_varint(input)?;
    if presence >> 14 != 0 {
        return Err(DecodeError(
            "unknown sections in the presence bits (written by a newer bp-monitoring?)",
        ));
    }
    let mut values = Values::new();
    for (i, f) in StandardField::V1.iter().enumerate() {
        if presence & (1 << i) != 0 {
            values.insert(Key::from(*f), get_number(input)?);
        }
    }
    if presence & CUSTOM_BIT != 0 {
        let count = get_varint(input)?;
        for _ in 0..count {
            let name = get_str(input)?;
            if !is_valid_custom_name(name) {
                return Err(DecodeError("invalid custom field name"));
            }
            let field = Field::Custom(Arc::from(format!("{CUSTOM_PREFIX}{name}")));
            values.insert(Key::bare(field), get_number(input)?);
        }
    }
    if presence & KEYED_BIT != 0 {
        decode_keyed(input, &mut values)?;
    }
    if !input.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(values)
}

fn decode_keyed(input: &mut &[u8], values: &mut Values) -> Result<(), DecodeError> {
    let n = get_varint(input)?;
    if n > STRINGS_MAX || n > input.len() as u64 {
        return Err(DecodeError("string table too long"));
    }
    let mut strings = Vec::with_capacity(n as usize);
    for _ in 0..n {
        strings.push(get_str(input)?);
    }
    let string = |input: &mut &[u8]| -> Result<&str, DecodeError> {
        let i = get_varint(input)?;
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i).copied())
            .ok_or(DecodeError("string index out of the table"))
    };
    let count = get_varint(input)?;
    for _ in 0..count {
        let word = get_varint(input)?;
        let (code, has_instance) = (word >> 1, word & 1 == 1);
        let field = if code == 0 {
            let name = string(input)?;
            if !is_valid_custom_name(name) {
                return Err(DecodeError("invalid custom field name"));
            }
            Field::Custom(Arc::from(format!("{CUSTOM_PREFIX}{name}")))
        } else {
            let f = usize::try_from(code - 1)
                .ok()
                .and_then(|i| StandardField::ALL.get(i))
                .ok_or(DecodeError(
                    "unknown field code (written by a newer bp-monitoring?)",
                ))?;
            Field::Standard(*f)
        };
        let key = if has_instance {
            let instance: Instance = string(input)?
                .parse()
                .map_err(|_| DecodeError("invalid instance"))?;
            Key::with_instance(field, instance)
                .map_err(|_| DecodeError("an instance on a field that takes none"))?
        } else {
            let key = Key::bare(field);
            if !key.is_tick_key() {
                return Err(DecodeError("an instanced field without an instance"));
            }
            key
        };
        values.insert(key, get_number(input)?);
    }
    Ok(())
}

fn get_str<'a>(input: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    let len = usize::try_from(get_varint(input)?).map_err(|_| DecodeError("name too long"))?;
    if len > input.len() {
        return Err(DecodeError("name cut short"));
    }
    let (name, rest) = input.split_at(len);
    *input = rest;
    std::str::from_utf8(name).map_err(|_| DecodeError("name not UTF-8"))
}

fn put_number(out: &mut Vec<u8>, v: f64) {
    for (scale, &p) in POW10.iter().enumerate() {
        let m = (v * p).round();
        // `-0.0` has no exact decimal form (`0` reads back as `+0.0`): raw.
        if m.abs() <= MAX_EXACT && m / p == v && (m != 0.0 || v.is_sign_positive()) {
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

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
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
            .map(|(n, v)| (n.parse::<Key>().unwrap(), *v))
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
    fn keyed_section() {
        // presence (2 bytes: bit 13); strings "/" "/var" (1 + 2 + 5); 3
        // entries (1): disk.usage[/] 5 (word 1 + index 1 + 1), disk.usage[/var]
        // 91 (1 + 1 + 2), disk.free[/var] 12 (1 + 1 + 2) = 2 + 8 + 1 + 3 + 4 + 4.
        check(
            &[
                ("disk.usage[/var]", 91.0),
                ("disk.free[/var]", 12.0),
                ("disk.usage[/]", 5.0),
            ],
            22,
        );
        // presence 2, cpu.usage 1, no strings 1, one entry 1, load.1 (1 + 1).
        check(&[("load.1", 0.5), ("cpu.usage", 1.0)], 7);
        check(
            &[
                ("custom.q", 1.0),
                ("custom.q[orders]", 2.0),
                ("custom.q[<script>]", 3.0),
                ("process.count[node]", 0.0),
                ("swap.usage", 1.5),
                ("errors.count", 2.0),
            ],
            // presence 2, errors 1, custom section 4, strings "node" "q"
            // "<script>" "orders" 24, count 1, swap 3, process 3, customs 4 + 4.
            46,
        );
        // A blob with only version-1 keys is a layout-1 blob.
        let v1 = values(&[("cpu.usage", 63.52), ("custom.q", 17.0)]);
        let mut out = Vec::new();
        encode(&v1, &mut out);
        assert!(!uses_keyed_section(&out));
        let v2 = values(&[("cpu.usage", 63.52), ("net.rx[eth0]", 17.0)]);
        out.clear();
        encode(&v2, &mut out);
        assert!(uses_keyed_section(&out));
    }

    #[test]
    fn malformed_keyed_sections_are_errors() {
        for bad in [
            // keyed bit, no string table
            &[0x80, 0x40][..],
            // one string "a", one entry with code 99 (unknown)
            &[0x80, 0x40, 0x01, 0x01, b'a', 0x01, 99 << 1, 0x00],
            // entry cpu.usage (code 1) with an instance
            &[0x80, 0x40, 0x01, 0x01, b'a', 0x01, 0x03, 0x00, 0x00],
            // entry disk.usage (code 17) without an instance
            &[0x80, 0x40, 0x00, 0x01, 17 << 1, 0x00],
            // string index out of the table
            &[0x80, 0x40, 0x01, 0x01, b'a', 0x01, 17 << 1 | 1, 0x05, 0x00],
            // an instance holding ']'
            &[0x80, 0x40, 0x01, 0x01, b']', 0x01, 17 << 1 | 1, 0x00, 0x00],
            // a presence bit beyond the keyed section
            &[0x80, 0x80, 0x01],
            // a string table longer than the blob
            &[0x80, 0x40, 0x7f],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_blobs_are_errors() {
        for bad in [
            &[][..],
            &[0x80],
            &[0x01],
            &[0x01, 0x07, 0],
            &[0x00, 0x00],
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
            for (i, f) in StandardField::V1.iter().enumerate() {
                let x = match std_vals[i] {
                    Some(x) => x,
                    None => decimals[i].0 as f64 / 10f64.powi(decimals[i].1 as i32),
                };
                if x.is_finite() {
                    v.insert(Key::from(*f), x);
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
        fn round_trip_with_instances(
            entries in proptest::collection::btree_map(
                (0usize..27, "[a-z/]{1,5}", any::<bool>()),
                -100_000i64..100_000,
                0..12,
            ),
        ) {
            let mut v = Values::new();
            for ((f, inst, custom), x) in entries {
                let field = if custom {
                    Field::Custom(Arc::from("custom.q"))
                } else {
                    Field::Standard(StandardField::ALL[f])
                };
                let key = if field.takes_instances() && (!field.appears_bare() || f % 2 == 0) {
                    Key::with_instance(field, inst.parse().unwrap()).unwrap()
                } else {
                    Key::bare(field)
                };
                v.insert(key, x as f64 / 100.0);
            }
            let mut out = Vec::new();
            encode(&v, &mut out);
            prop_assert_eq!(decode(&out).unwrap(), v);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
