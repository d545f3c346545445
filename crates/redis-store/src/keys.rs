//! Key names of layout 1 (docs/storage.md describes them).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<scope>:layout` | string | the layout version, `1` |
//! | `<scope>:hosts` | sorted set | host → greatest stored `ts` (the node registry) |
//! | `<scope>:ticks:{<host>}` | stream | the host's ticks in arrival order |
//! | `<scope>:late:{<host>}` | sorted set | late ticks: stream entry ID scored by `ts` |
//!
//! Keys of one host share the hash tag `{<host>}`, so the scripts that
//! touch both work on Redis Cluster. Host names cannot contain `{`, `}` or
//! `:` (see [`metrics_model::HostName`]).

use metrics_model::HostName;

/// The layout this version writes and reads.
pub const LAYOUT_VERSION: u32 = 1;

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
}
