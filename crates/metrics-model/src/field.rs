//! Metric fields: the standard fields (the twelve of the original system,
//! then those of rules version 2, some of them *instanced*: one series per
//! mount, device, interface or watched process) and application-defined
//! `custom.<name>` fields. [`crate::key`] adds instances (`disk.usage[/var]`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a field's number means per tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value at the tick's instant (or averaged over the interval).
    Gauge,
    /// A per-interval delta: how many during the last collection interval.
    Counter,
}

macro_rules! standard_fields {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $unit:literal, $kind:ident, $instanced:literal; )*) => {
        /// One of the standard fields. Names are exact and case-sensitive.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum StandardField {
            $( $(#[$doc])* $variant, )*
        }

        impl StandardField {
            /// Every standard field: the twelve of version 1 in the order of
            /// the specification, then those of version 2. Append-only: the
            /// stored form numbers fields by their place here
            /// ([`crate::codec`]), so a field is never moved or removed.
            pub const ALL: &'static [StandardField] = &[$(StandardField::$variant),*];

            /// The field's name as written in rules and ticks.
            pub const fn as_str(self) -> &'static str {
                match self { $(StandardField::$variant => $name,)* }
            }

            /// The unit of the field's values (`""` for plain counts).
            pub const fn unit(self) -> &'static str {
                match self { $(StandardField::$variant => $unit,)* }
            }

            /// Whether a tick holds a gauge or a per-interval counter.
            pub const fn kind(self) -> Kind {
                match self { $(StandardField::$variant => Kind::$kind,)* }
            }

            /// Whether the field appears in ticks only with an instance
            /// (`disk.usage[/var]`): one series per mount, block device,
            /// interface or watched process.
            pub const fn instanced(self) -> bool {
                match self { $(StandardField::$variant => $instanced,)* }
            }

            /// The standard field of that exact name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(StandardField::$variant),)* _ => None }
            }
        }
    };
}

standard_fields! {
    /// Average % of CPU used over the last interval (0–100, all cores together).
    CpuUsage = "cpu.usage", "%", Gauge, false;
    /// % of memory used at the tick (0–100; against the cgroup limit when one applies).
    MemUsage = "mem.usage", "%", Gauge, false;
    /// Free (available) memory at the tick, in KB (1 KB = 1024 bytes).
    MemFree = "mem.free", "KB", Gauge, false;
    /// Seconds since the monitored server started.
    Uptime = "uptime", "s", Gauge, false;
    /// HTTP requests completed during the interval.
    RequestsCount = "requests.count", "", Counter, false;
    /// Mean latency of those requests, ms (absent when there was none).
    RequestsLatencyAvg = "requests.latency_avg", "ms", Gauge, false;
    /// Sum of those latencies, ms.
    RequestsLatencySum = "requests.latency_sum", "ms", Counter, false;
    /// Incoming events (messages from users) during the interval.
    EventsInCount = "eventsIn.count", "", Counter, false;
    /// Outgoing events during the interval.
    EventsOutCount = "eventsOut.count", "", Counter, false;
    /// Warnings logged during the interval.
    WarningsCount = "warnings.count", "", Counter, false;
    /// Errors logged during the interval.
    ErrorsCount = "errors.count", "", Counter, false;
    /// Critical errors logged during the interval.
    CriticalsCount = "criticals.count", "", Counter, false;
    /// % of swap used at the tick (absent when there is no swap).
    SwapUsage = "swap.usage", "%", Gauge, false;
    /// System load average over 1 minute, as in `/proc/loadavg`.
    Load1 = "load.1", "", Gauge, false;
    /// System load average over 5 minutes.
    Load5 = "load.5", "", Gauge, false;
    /// System load average over 15 minutes.
    Load15 = "load.15", "", Gauge, false;
    /// Per mount point: % of the filesystem's space used, as `df` computes it.
    DiskUsage = "disk.usage", "%", Gauge, true;
    /// Per mount point: KB available to unprivileged users.
    DiskFree = "disk.free", "KB", Gauge, true;
    /// Per mount point: % of inodes used (absent without an inode limit).
    DiskInodesUsage = "disk.inodes.usage", "%", Gauge, true;
    /// Per block device: bytes per second read over the interval.
    IoRead = "io.read", "B/s", Gauge, true;
    /// Per block device: bytes per second written over the interval.
    IoWrite = "io.write", "B/s", Gauge, true;
    /// Per interface: bytes per second received over the interval.
    NetRx = "net.rx", "B/s", Gauge, true;
    /// Per interface: bytes per second sent over the interval.
    NetTx = "net.tx", "B/s", Gauge, true;
    /// Per interface: receive and transmit errors during the interval.
    NetErrorsCount = "net.errors.count", "", Counter, true;
    /// Per watched process: how many of that name run at the tick (0: none).
    ProcessCount = "process.count", "", Gauge, true;
    /// Per watched process: % of CPU they used over the interval.
    ProcessCpu = "process.cpu", "%", Gauge, true;
    /// Per watched process: their resident memory at the tick, in KB.
    ProcessMem = "process.mem", "KB", Gauge, true;
}

impl StandardField {
    /// The twelve fields of version 1 (the original system), the first of
    /// [`StandardField::ALL`].
    pub const V1: &'static [StandardField] = StandardField::ALL.split_at(12).0;
}

/// The prefix of application-defined fields.
pub const CUSTOM_PREFIX: &str = "custom.";
/// The longest `<name>` after [`CUSTOM_PREFIX`].
pub const CUSTOM_NAME_MAX: usize = 64;

/// A metric field: standard, or `custom.<name>` where `<name>` is 1–64 of
/// `A–Z a–z 0–9 _ - .`.
///
/// Cloning is cheap (custom names are reference-counted). Fields order
/// standard fields first (in specification order), then custom ones by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// A standard field.
    Standard(StandardField),
    /// An application-defined field; holds the whole name, `custom.` included.
    Custom(Arc<str>),
}

/// Why a text is not a [`Field`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Not a standard name and not `custom.*`.
    #[error("unknown field {0:?}; valid fields are {list} and custom.<name>", list = standard_list())]
    Unknown(String),
    /// `custom.` followed by an empty, too long or badly spelled name.
    #[error(
        "invalid custom field {0:?}: the name after \"custom.\" must be 1-64 of A-Z a-z 0-9 _ - ."
    )]
    BadCustom(String),
}

fn standard_list() -> String {
    StandardField::ALL
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Field {
    /// The field's name as written in rules and ticks.
    pub fn as_str(&self) -> &str {
        match self {
            Field::Standard(f) => f.as_str(),
            Field::Custom(name) => name,
        }
    }

    /// Whether this is a `custom.*` field.
    pub fn is_custom(&self) -> bool {
        matches!(self, Field::Custom(_))
    }

    /// Whether ticks may carry it with an instance (`F[i]`): instanced
    /// standard fields and every custom field.
    pub fn takes_instances(&self) -> bool {
        match self {
            Field::Standard(f) => f.instanced(),
            Field::Custom(_) => true,
        }
    }

    /// Whether ticks may carry it bare (`F`): every field but the instanced
    /// standard ones.
    pub fn appears_bare(&self) -> bool {
        match self {
            Field::Standard(f) => !f.instanced(),
            Field::Custom(_) => true,
        }
    }
}

impl From<StandardField> for Field {
    fn from(f: StandardField) -> Self {
        Field::Standard(f)
    }
}

/// Whether `name` (the part after `custom.`) is a valid custom name.
pub fn is_valid_custom_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CUSTOM_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl FromStr for Field {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(f) = StandardField::from_name(s) {
            return Ok(Field::Standard(f));
        }
        match s.strip_prefix(CUSTOM_PREFIX) {
            Some(name) if is_valid_custom_name(name) => Ok(Field::Custom(Arc::from(s))),
            Some(_) => Err(FieldError::BadCustom(s.to_owned())),
            None => Err(FieldError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(name.parse::<Field>().is_ok(), ok, "{name:?}");
    }

    #[test]
    fn names() {
        for f in StandardField::ALL {
            check(f.as_str(), true);
            assert_eq!(f.as_str().parse::<Field>().unwrap(), Field::Standard(*f));
        }
        assert_eq!(StandardField::V1.len(), 12);
        assert_eq!(StandardField::ALL.len(), 27);
        check("custom.queue_depth", true);
        check("custom.a.b-c_D9", true);
        check(&format!("custom.{}", "a".repeat(64)), true);
        check(&format!("custom.{}", "a".repeat(65)), false);
        check("custom.", false);
        check("custom.a b", false);
        check("custom.<x>", false);
        check("CPU.usage", false);
        check("cpu", false);
        check("", false);
    }

    #[test]
    fn unknown_lists_valid_fields() {
        let e = "cpu.usag".parse::<Field>().unwrap_err().to_string();
        assert!(
            e.contains("\"cpu.usag\"") && e.contains("cpu.usage") && e.contains("custom.<name>"),
            "{e}"
        );
    }

    /// The stored form numbers standard fields by their place in `ALL`:
    /// this list may only grow at its end.
    #[test]
    fn the_field_table_is_append_only() {
        let names: Vec<&str> = StandardField::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu.usage",
                "mem.usage",
                "mem.free",
                "uptime",
                "requests.count",
                "requests.latency_avg",
                "requests.latency_sum",
                "eventsIn.count",
                "eventsOut.count",
                "warnings.count",
                "errors.count",
                "criticals.count",
                "swap.usage",
                "load.1",
                "load.5",
                "load.15",
                "disk.usage",
                "disk.free",
                "disk.inodes.usage",
                "io.read",
                "io.write",
                "net.rx",
                "net.tx",
                "net.errors.count",
                "process.count",
                "process.cpu",
                "process.mem",
            ]
        );
        let instanced: Vec<&str> = StandardField::ALL
            .iter()
            .filter(|f| f.instanced())
            .map(|f| f.as_str())
            .collect();
        assert_eq!(instanced.len(), 11);
        assert!(!instanced.contains(&"swap.usage") && instanced.contains(&"process.mem"));
    }

    #[test]
    fn units() {
        assert_eq!(StandardField::MemFree.unit(), "KB");
        assert_eq!(StandardField::ErrorsCount.kind(), Kind::Counter);
    }
}
