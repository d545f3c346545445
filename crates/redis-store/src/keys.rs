//! Key names: [`Keys`] for the ticks (layout [`LAYOUT_VERSION`],
//! docs/storage.md describes it) and [`AlertKeys`] for the alert store
//! (docs/storage-alerts.md).
//!
//! Tick keys:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<scope>:layout` | string | the layout version, `1`, `2` or `3` |
//! | `<scope>:hosts` | sorted set | host → greatest stored `ts` (the node registry) |
//! | `<scope>:ticks:{<host>}` | stream | the host's ticks in arrival order |
//! | `<scope>:late:{<host>}` | sorted set | late ticks: stream entry ID scored by `ts` |
//! | `<scope>:chunks:{<host>}` | hash | sealed chunks: window start (ms) → chunk; `h` the sealed horizon, `g` the generation (layout 3) |
//!
//! Keys of one host share the hash tag `{<host>}`, so the scripts that
//! touch both work on Redis Cluster. Host names cannot contain `{`, `}` or
//! `:` (see [`metrics_model::HostName`]). The alert keys all share the hash
//! tag `{<scope>:alerts}` (see [`AlertKeys`]).

use metrics_model::HostName;

/// The layout this version writes (and the newest it reads): layout 2 is
/// layout 1 plus keys with instances and the version-2 fields (the
/// keyed section of [`metrics_model::codec`]); every layout-1 entry is a
/// layout-2 entry. Layout 3 is layout 2 plus sealed chunks
/// ([`metrics_model::chunk`]) in a hash per host. An empty scope is marked
/// `1` until the first tick that needs layout 2 is written, and `3` by the
/// first seal, so that older readers keep working while nothing needs more
/// (docs/storage.md, "Upgrading").
pub const LAYOUT_VERSION: u32 = 3;
/// The oldest layout this version reads.
pub const OLDEST_LAYOUT: u32 = 1;

/// Key names under one scope.
#[derive(Debug, Clone)]
pub struct Keys {
    scope: String,
}

impl Keys {
    /// Keys under `scope`.
    pub fn new(scope: &str) -> Keys {
        Keys {
            scope: scope.to_owned(),
        }
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The layout version key.
    pub fn layout(&self) -> String {
        format!("{}:layout", self.scope)
    }

    /// The node registry.
    pub fn hosts(&self) -> String {
        format!("{}:hosts", self.scope)
    }

    /// `host`'s tick stream.
    pub fn ticks(&self, host: &HostName) -> String {
        format!("{}:ticks:{{{host}}}", self.scope)
    }

    /// `host`'s late-tick index.
    pub fn late(&self, host: &HostName) -> String {
        format!("{}:late:{{{host}}}", self.scope)
    }

    /// `host`'s sealed chunks (layout 3).
    pub fn chunks(&self, host: &HostName) -> String {
        format!("{}:chunks:{{{host}}}", self.scope)
    }
}

/// Key names of the alert store under one scope. All share the hash tag
/// `{<scope>:alerts}`.
///
/// | key | type | holds |
/// |---|---|---|
/// | `{<scope>:alerts}:lease` | string, with TTL | `<token>:<holder>` of the active alerter |
/// | `{<scope>:alerts}:token` | string (integer) | the last fencing token handed out; never expires, never reset |
/// | `{<scope>:alerts}:states` | hash | incident state key → JSON |
/// | `{<scope>:alerts}:meta` | hash | `last_evaluated` (ms), `outbox_seq` (last outbox seq) |
/// | `{<scope>:alerts}:outbox` | sorted set | outbox seq (member and score) |
/// | `{<scope>:alerts}:outbox:data` | hash | outbox seq → transition JSON |
/// | `{<scope>:alerts}:resolved` | sorted set | incident id scored by its end time (ms) |
/// | `{<scope>:alerts}:resolved:data` | hash | incident id → incident JSON |
/// | `{<scope>:alerts}:dead` | list | dead letters as JSON, newest first, at most [`DEAD_LETTERS_MAX`](crate::alerts::DEAD_LETTERS_MAX) |
#[derive(Debug, Clone)]
pub struct AlertKeys {
    tag: String,
}

impl AlertKeys {
    /// Keys under `scope`.
    pub fn new(scope: &str) -> AlertKeys {
        AlertKeys {
            tag: format!("{{{scope}:alerts}}"),
        }
    }

    /// The lease of the active alerter.
    pub fn lease(&self) -> String {
        format!("{}:lease", self.tag)
    }

    /// The fencing token counter.
    pub fn token(&self) -> String {
        format!("{}:token", self.tag)
    }

    /// Incident states.
    pub fn states(&self) -> String {
        format!("{}:states", self.tag)
    }

    /// `last_evaluated` and the outbox sequence counter.
    pub fn meta(&self) -> String {
        format!("{}:meta", self.tag)
    }

    /// The outbox order (seq scored by seq).
    pub fn outbox(&self) -> String {
        format!("{}:outbox", self.tag)
    }

    /// The outbox payloads by seq.
    pub fn outbox_data(&self) -> String {
        format!("{}:outbox:data", self.tag)
    }

    /// Resolved incident ids scored by end time.
    pub fn resolved(&self) -> String {
        format!("{}:resolved", self.tag)
    }

    /// Resolved incidents' JSON by id.
    pub fn resolved_data(&self) -> String {
        format!("{}:resolved:data", self.tag)
    }

    /// Dead letters.
    pub fn dead(&self) -> String {
        format!("{}:dead", self.tag)
    }

    /// Silences or acknowledgements by id (`<version> <keep-until> <json>`).
    pub fn records(&self, kind: metrics_model::store::RecordKind) -> String {
        match kind {
            metrics_model::store::RecordKind::Silence => format!("{}:silences", self.tag),
            metrics_model::store::RecordKind::Acknowledgement => format!("{}:acks", self.tag),
        }
    }

    /// Every key, for tests and operators.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.lease(),
            self.token(),
            self.states(),
            self.meta(),
            self.outbox(),
            self.outbox_data(),
            self.resolved(),
            self.resolved_data(),
            self.dead(),
            self.records(metrics_model::store::RecordKind::Silence),
            self.records(metrics_model::store::RecordKind::Acknowledgement),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_one_hash_tag() {
        let k = AlertKeys::new("bp");
        for key in k.all() {
            assert!(key.starts_with("{bp:alerts}:"), "{key}");
            assert_eq!(
                fred::util::redis_keyslot(key.as_bytes()),
                fred::util::redis_keyslot(b"bp:alerts"),
                "{key}"
            );
        }
    }
}
