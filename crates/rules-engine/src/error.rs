//! Configuration and rule problems: the problem type, the error and the
//! unknown-key check live once, in `metrics_model::config` (below this
//! crate, so that the collector can read its section without the rules
//! engine); they are re-exported here for the rules engine's users.

pub(crate) use metrics_model::config::Problems;
pub use metrics_model::config::{ConfigError, Problem, json_kind, unknown_keys};
