//! Keys: a field, or a field with one instance (`disk.usage[/var]`,
//! `custom.queue[orders]`).
//!
//! An **instance** is 1–256 bytes of UTF-8 with no control character and no
//! `]` (a mount point, an interface, a process name); instances compare by
//! bytes. `F[i]` is a valid key only when `F` takes instances (an instanced
//! standard field, or any `custom.*` field). In ticks an instanced standard
//! field appears only as `F[i]` ([`Key::parse_tick_key`]); in rules a bare
//! instanced field means "every instance" (parsed by [`Key::from_str`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::field::{Field, FieldError, StandardField};

/// The longest instance, in bytes.
pub const INSTANCE_MAX: usize = 256;

/// A validated instance. Cloning is cheap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance(Arc<str>);

impl Instance {
    /// The instance's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks `text` as an instance: why it is not one, if it is not.
    pub fn check(text: &str) -> Result<(), &'static str> {
        if text.is_empty() {
            Err("an instance must not be empty")
        } else if text.len() > INSTANCE_MAX {
            Err("an instance is at most 256 bytes")
        } else if text.chars().any(char::is_control) {
            Err("an instance must not hold a control character")
        } else if text.contains(']') {
            Err("an instance must not hold ']'")
        } else {
            Ok(())
        }
    }
}

impl FromStr for Instance {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Instance::check(s)?;
        Ok(Instance(Arc::from(s)))
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Instance {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Instance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Instance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: &str| serde::de::Error::custom(format!("instance {s:?}: {e}")))
    }
}

/// A key: a field, with or without one instance.
///
/// Keys order by field (standard fields first, in specification order, then
/// custom ones by name), then instance, the bare key first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    field: Field,
    instance: Option<Instance>,
}

/// Why a text is not a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The field part is not a field.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// `F[…` without the closing `]` at the end, or text after it.
    #[error("{0:?}: an instance is written F[instance], with ']' last")]
    Brackets(String),
    /// The instance is empty, too long, or holds a control character or `]`.
    #[error("{key:?}: {reason}")]
    BadInstance {
        /// The whole key as written (control characters escaped by `{:?}`).
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `F[i]` where `F` takes no instance.
    #[error("{0} takes no instance (only disk.*, io.*, net.*, process.* and custom.* fields do)")]
    NoInstances(String),
    /// A bare instanced standard field in a tick.
    #[error("{0} is carried only with an instance in ticks, e.g. {0}[/var]")]
    NeedsInstance(String),
}

impl Key {
    /// The bare key of `field`.
    pub fn bare(field: Field) -> Key {
        Key {
            field,
            instance: None,
        }
    }

    /// `field[instance]`; fails when `field` takes no instance.
    pub fn with_instance(field: Field, instance: Instance) -> Result<Key, KeyError> {
        if !field.takes_instances() {
            return Err(KeyError::NoInstances(field.to_string()));
        }
        Ok(Key {
            field,
            instance: Some(instance),
        })
    }

    /// The field.
    pub fn field(&self) -> &Field {
        &self.field
    }

    /// The instance, if any.
    pub fn instance(&self) -> Option<&Instance> {
        self.instance.as_ref()
    }

    /// Whether a tick may carry this key: not a bare instanced standard
    /// field.
    pub fn is_tick_key(&self) -> bool {
        self.instance.is_some() || self.field.appears_bare()
    }

    /// Whether this rule key (a bare field: every one of its keys; `F[i]`:
    /// that one) watches the tick key `key`.
    pub fn watches(&self, key: &Key) -> bool {
        self.field == key.field && (self.instance.is_none() || self.instance == key.instance)
    }

    /// Parses a key as ticks carry it: `F` for a field that appears bare,
    /// `F[i]` for one that takes instances.
    pub fn parse_tick_key(text: &str) -> Result<Key, KeyError> {
        let key: Key = text.parse()?;
        if key.is_tick_key() {
            Ok(key)
        } else {
            Err(KeyError::NeedsInstance(key.field.to_string()))
        }
    }
}

impl From<Field> for Key {
    fn from(field: Field) -> Key {
        Key::bare(field)
    }
}

impl From<StandardField> for Key {
    fn from(field: StandardField) -> Key {
        Key::bare(Field::Standard(field))
    }
}

impl FromStr for Key {
    type Err = KeyError;

    /// `F` (any field, bare instanced ones included) or `F[i]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(open) = s.find('[') else {
            return Ok(Key::bare(s.parse()?));
        };
        let field: Field = s[..open].parse()?;
        let Some(inner) = s[open + 1..].strip_suffix(']') else {
            return Err(KeyError::Brackets(s.to_owned()));
        };
        let instance = inner.parse().map_err(|reason| KeyError::BadInstance {
            key: s.to_owned(),
            reason,
        })?;
        Key::with_instance(field, instance)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.instance {
            None => f.write_str(self.field.as_str()),
            Some(i) => write!(f, "{}[{}]", self.field, i),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.instance {
            None => s.serialize_str(self.field.as_str()),
            Some(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    /// Deserializes a tick key ([`Key::parse_tick_key`]).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Key::parse_tick_key(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "cpu.usage",
            "disk.usage[/var]",
            "disk.usage[/data (x)*?]",
            "custom.q",
            "custom.queue[orders]",
            "process.count[node]",
            "net.rx[eth0]",
            "disk.usage[[]",
            "disk.usage[é ü]",
        ] {
            let key = Key::parse_tick_key(ok).unwrap();
            assert_eq!(key.to_string(), ok);
        }
        let long = format!("disk.usage[{}]", "a".repeat(256));
        assert!(Key::parse_tick_key(&long).is_ok());
        let too_long = format!("disk.usage[{}]", "a".repeat(257));
        for (bad, part) in [
            ("cpu.usage[x]", "takes no instance"),
            ("disk.usage", "only with an instance"),
            ("disk.usage[]", "must not be empty"),
            ("disk.usage[a\nb]", "control character"),
            ("disk.usage[a\u{7f}]", "control character"),
            ("disk.usage[a]b]", "must not hold ']'"),
            ("disk.usage[a", "with ']' last"),
            ("disk.usage[a]x", "with ']' last"),
            ("disk.usag[a]", "unknown field"),
            ("custom.[a]", "invalid custom field"),
            (too_long.as_str(), "at most 256 bytes"),
        ] {
            let e = Key::parse_tick_key(bad).unwrap_err().to_string();
            assert!(e.contains(part), "{bad:?}: {e}");
        }
        // A rule may name a bare instanced field: every instance.
        let every: Key = "disk.usage".parse().unwrap();
        assert!(every.watches(&"disk.usage[/var]".parse().unwrap()));
        assert!(!every.watches(&"disk.free[/var]".parse().unwrap()));
        let one: Key = "custom.q[a]".parse().unwrap();
        assert!(one.watches(&"custom.q[a]".parse().unwrap()));
        assert!(!one.watches(&"custom.q".parse().unwrap()));
        let bare: Key = "custom.q".parse().unwrap();
        assert!(bare.watches(&"custom.q[b]".parse().unwrap()) && bare.watches(&bare));
    }

    #[test]
    fn order_keeps_bare_keys_first_and_instances_by_bytes() {
        let mut keys: Vec<Key> = [
            "custom.q[b]",
            "disk.usage[/var]",
            "cpu.usage",
            "custom.q",
            "disk.usage[/]",
        ]
        .iter()
        .map(|k| k.parse().unwrap())
        .collect();
        keys.sort();
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "cpu.usage",
                "disk.usage[/]",
                "disk.usage[/var]",
                "custom.q",
                "custom.q[b]"
            ]
        );
    }
}
