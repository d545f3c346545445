//! The duration grammar of every configuration value: one or more
//! `<digits><unit>` with units `d`, `h`, `m`, `s`, `ms`, each at most once and
//! in that order, no spaces, no decimals (`500ms`, `10s`, `2m`, `1h`, `1d`,
//! `1h30m`, `1m30s`).
//!
//! Configuration files also accept every form of the npm `ms` library, which
//! the original parsed them with ([`Duration::parse_config`]): `"10 seconds"`,
//! `"1.5h"`, `"2 weeks"`, a bare `"10000"` (milliseconds). Flags and API
//! parameters keep the strict grammar (`FromStr`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time with millisecond resolution.
///
/// Parsed from and written as the compact grammar above; `Display` writes the
/// canonical form (`90s` is written `1m30s`, zero is written `0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

/// Why a text is not a [`Duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration ({reason}); write e.g. 500ms, 10s, 2m, 1h30m, 1d")]
pub struct DurationError {
    /// The rejected text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The largest accepted duration: about 292 million years, so that a duration
/// added to any millisecond timestamp of this era still fits in an `i64`.
pub const MAX_MS: u64 = i64::MAX as u64 / 2;

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration(0);

    /// A duration of `ms` milliseconds; `None` above [`MAX_MS`].
    pub const fn from_millis(ms: u64) -> Option<Self> {
        if ms > MAX_MS {
            None
        } else {
            Some(Duration(ms))
        }
    }

    /// A duration of `s` seconds; `None` above [`MAX_MS`].
    pub const fn from_secs(s: u64) -> Option<Self> {
        match s.checked_mul(1000) {
            Some(ms) => Self::from_millis(ms),
            None => None,
        }
    }

    /// Milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Milliseconds as a signed number, for arithmetic with timestamps
    /// (always exact: see [`MAX_MS`]).
    pub const fn as_millis_i64(self) -> i64 {
        self.0 as i64
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The same span as a `std::time::Duration`.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut next_unit = 0; // index into UNITS of the smallest unit still allowed
        let mut total: u64 = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(err(match bytes[i] {
                    b'-' => "negative durations are not allowed",
                    b'.' => "decimals are not allowed",
                    b' ' | b'\t' => "spaces are not allowed",
                    _ => "expected a number",
                }));
            }
            let digits = &text[start..i];
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &text[unit_start..i];
            if unit.is_empty() {
                return Err(err(if i < bytes.len() && bytes[i] == b'.' {
                    "decimals are not allowed"
                } else {
                    "a number needs a unit (d, h, m, s or ms)"
                }));
            }
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(err("unknown unit; units are d, h, m, s, ms"));
            };
            if pos < next_unit {
                return Err(err(
                    "units must appear at most once, in the order d, h, m, s, ms",
                ));
            }
            next_unit = pos + 1;
            let n: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
            total = n
                .checked_mul(UNITS[pos].1)
                .and_then(|ms| total.checked_add(ms))
                .filter(|ms| *ms <= MAX_MS)
                .ok_or_else(|| err("the duration is too large"))?;
        }
        Ok(Duration(total))
    }
}

/// The one adapter for durations given on a command line or in an API
/// parameter: the strict grammar only, and greater than zero. The error is
/// the text the user sees after the flag's or parameter's name.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let d: Duration = text.parse().map_err(|e: DurationError| e.to_string())?;
    if d.is_zero() {
        Err("must be greater than 0".to_owned())
    } else {
        Ok(d)
    }
}

/// The units of the npm `ms` library (v2), lower-cased, and their length in
/// milliseconds (a year is 365.25 days, as `ms` says).
const MS_LIBRARY_UNITS: [(&[&str], f64); 7] = [
    (&["years", "year", "yrs", "yr", "y"], 31_557_600_000.0),
    (&["weeks", "week", "w"], 604_800_000.0),
    (&["days", "day", "d"], 86_400_000.0),
    (&["hours", "hour", "hrs", "hr", "h"], 3_600_000.0),
    (&["minutes", "minute", "mins", "min", "m"], 60_000.0),
    (&["seconds", "second", "secs", "sec", "s"], 1_000.0),
    (&["milliseconds", "millisecond", "msecs", "msec", "ms"], 1.0),
];

impl Duration {
    /// Parses a duration written in a configuration file: the strict grammar
    /// (`FromStr`), or any form the npm `ms` library accepts, which the
    /// original parsed configuration files with — a decimal number, optional
    /// spaces and an optional unit in any case (`"10 seconds"`, `"1.5h"`,
    /// `"2 weeks"`, `"1y"`; no unit means milliseconds: `"10000"`) — rounded
    /// to the nearest millisecond, halves away from zero. Negative durations
    /// are rejected.
    pub fn parse_config(text: &str) -> Result<Duration, DurationError> {
        if let Ok(d) = text.parse::<Duration>() {
            return Ok(d);
        }
        let err = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let Some(ms) = ms_library(text) else {
            return Err(err(
                "neither the compact form, such as 1h30m, nor a form of the ms library, such as \
                 \"10 seconds\" or \"1.5h\"",
            ));
        };
        if ms < 0.0 {
            return Err(err("negative durations are not allowed"));
        }
        let rounded = ms.round();
        if rounded.is_nan() || rounded > MAX_MS as f64 {
            return Err(err("the duration is too large"));
        }
        Ok(Duration(rounded as u64))
    }
}

/// What `ms(text)` returns for a string, in milliseconds (not rounded), or
/// `None` where it returns `undefined`: the library's
/// `^(-?(?:\d+)?\.?\d+) *(<unit>)?$` (case-insensitive), at most 100
/// characters.
fn ms_library(text: &str) -> Option<f64> {
    if text.is_empty() || text.len() > 100 {
        return None;
    }
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes[0] == b'-');
    let number_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let number = &text[number_start..i];
    // `(?:\d+)?\.?\d+`: digits with at most one point, ending in a digit.
    if number.is_empty()
        || number.matches('.').count() > 1
        || !number.ends_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let value = if number_start == 1 { -value } else { value };
    let unit = text[i..].trim_start_matches(' ').to_ascii_lowercase();
    if unit.is_empty() {
        return Some(value);
    }
    MS_LIBRARY_UNITS
        .iter()
        .find(|(names, _)| names.contains(&unit.as_str()))
        .map(|(_, ms)| value * ms)
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (unit, ms) in UNITS {
            let n = rest / ms;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * ms;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<u64>) {
        let got = text.parse::<Duration>().ok().map(Duration::as_millis);
        assert_eq!(got, expected, "parsing {text:?}");
    }

    #[test]
    fn grammar() {
        check("500ms", Some(500));
        check("10s", Some(10_000));
        check("2m", Some(120_000));
        check("1h", Some(3_600_000));
        check("1d", Some(86_400_000));
        check("1h30m", Some(5_400_000));
        check("1m30s", Some(90_000));
        check("1d2h3m4s5ms", Some(93_784_005));
        check("0s", Some(0));
        check("0ms", Some(0));
        check("90s", Some(90_000));
        check("2x", None);
        check("-1s", None);
        check("", None);
        check("1.5s", None);
        check("10", None);
        check("s", None);
        check("1s1s", None);
        check("1s1m", None);
        check("1 s", None);
        check(" 1s", None);
        check("1S", None);
        check("99999999999999999999s", None);
        check("9999999999999999d", None);
        check("106751991167d", None);
    }

    fn config(text: &str) -> Option<u64> {
        Duration::parse_config(text).ok().map(Duration::as_millis)
    }

    #[test]
    fn ms_library_forms_in_configuration_files() {
        // Every form the original's `ms` library accepts, as `ms` reads it.
        for (text, ms) in [
            ("10s", 10_000),
            ("1h30m", 5_400_000),
            ("10000", 10_000),
            ("10 seconds", 10_000),
            ("10   SECONDS", 10_000),
            ("1.5h", 5_400_000),
            ("1.5 Hours", 5_400_000),
            ("2 weeks", 1_209_600_000),
            ("1w", 604_800_000),
            ("1y", 31_557_600_000),
            ("2 yrs", 63_115_200_000),
            (".5s", 500),
            ("2.5ms", 3),
            ("1.5", 2),
            ("0.4", 0),
            ("0.5", 1),
            ("1 min", 60_000),
            ("3 mins", 180_000),
            ("1 msec", 1),
            ("2 milliseconds", 2),
            ("1 day", 86_400_000),
            ("5 hrs", 18_000_000),
            ("30 secs", 30_000),
            ("0", 0),
        ] {
            assert_eq!(config(text), Some(ms), "{text:?}");
        }
        for text in [
            "-1s",
            "-1",
            "-.5h",
            "5.",
            "1..5s",
            "1e3",
            "s",
            "",
            " 1s",
            "1s ",
            "1\t s",
            "1 fortnight",
            "1h 30m",
            "1.5.5h",
            "+1s",
        ] {
            assert_eq!(config(text), None, "{text:?}");
        }
        let long = format!("{}1", "0".repeat(100));
        assert_eq!(
            config(&long),
            None,
            "over 100 characters: ms gives undefined"
        );
        let e = Duration::parse_config("-10 seconds")
            .unwrap_err()
            .to_string();
        assert!(e.contains("negative"), "{e}");
        let e = Duration::parse_config("9999999999 years")
            .unwrap_err()
            .to_string();
        assert!(e.contains("too large"), "{e}");
        // The strict grammar used by flags and API parameters is unchanged.
        assert!("10 seconds".parse::<Duration>().is_err());
        assert!("10000".parse::<Duration>().is_err());
    }

    #[test]
    fn errors_name_the_text() {
        let e = "2x".parse::<Duration>().unwrap_err();
        assert!(e.to_string().starts_with("\"2x\" is not a duration"), "{e}");
        let e = "-1s".parse::<Duration>().unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
    }

    #[test]
    fn display_is_canonical() {
        for (ms, text) in [
            (0, "0s"),
            (90_000, "1m30s"),
            (500, "500ms"),
            (86_400_000, "1d"),
        ] {
            assert_eq!(Duration::from_millis(ms).unwrap().to_string(), text);
        }
    }

    #[test]
    fn serde_both_ways() {
        let d: Duration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.as_millis(), 5_400_000);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        assert!(serde_json::from_str::<Duration>("\"2x\"").is_err());
        assert!(serde_json::from_str::<Duration>("10").is_err());
    }

    proptest::proptest! {
        #[test]
        fn display_round_trips(ms in 0..MAX_MS) {
            let d = Duration::from_millis(ms).unwrap();
            proptest::prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn never_panics(text in "\\PC{0,24}") {
            let _ = text.parse::<Duration>();
            let _ = Duration::parse_config(&text);
        }

        #[test]
        fn config_forms_agree_with_the_strict_grammar(ms in 0..MAX_MS) {
            let d = Duration::from_millis(ms).unwrap();
            proptest::prop_assert_eq!(Duration::parse_config(&d.to_string()).unwrap(), d);
        }
    }
}
