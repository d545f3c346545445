//! Validated host (node) names.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest host name accepted (a DNS name's limit).
pub const HOST_NAME_MAX: usize = 253;

/// A host name: 1–253 of `A–Z a–z 0–9 . _ -`, starting with a letter or digit.
///
/// The restricted alphabet keeps host names safe in Redis keys (no `{`, `}`
/// or `:`), in HTML and in shell environments. Cloning is cheap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(Arc<str>);

/// Why a text is not a [`HostName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host name {0:?}: use 1-253 of A-Z a-z 0-9 . _ -, starting with a letter or digit")]
pub struct HostNameError(pub String);

/// The pseudo-host of cluster-wide rules' incidents.
pub const CLUSTER: &str = "*";

impl HostName {
    /// The pseudo-host `*`: the subject of a cluster-wide rule. No tick can
    /// name it (host names start with a letter or digit); only incidents
    /// and state records carry it.
    pub fn cluster() -> HostName {
        HostName(Arc::from(CLUSTER))
    }

    /// Whether this is the pseudo-host `*`.
    pub fn is_cluster(&self) -> bool {
        &*self.0 == CLUSTER
    }

    /// A host name, or the pseudo-host `*` (for reading incidents and
    /// state records back).
    pub fn parse_subject(s: &str) -> Result<HostName, HostNameError> {
        if s == CLUSTER {
            Ok(HostName::cluster())
        } else {
            s.parse()
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HostName {
    type Err = HostNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= HOST_NAME_MAX
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(HostName(Arc::from(s)))
        } else {
            Err(HostNameError(s.to_owned()))
        }
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for HostName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HostName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        HostName::parse_subject(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in ["node-a", "a", "web01.example.com", "N_1", "9lives"] {
            assert!(ok.parse::<HostName>().is_ok(), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in [
            "", "-a", ".a", "a b", "<script>", "a{b}", "a:b", "é", "a\"b", &long,
        ] {
            assert!(bad.parse::<HostName>().is_err(), "{bad}");
        }
    }
}
