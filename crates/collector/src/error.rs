//! The collector crate's error type.

use crate::recorder::CustomKind;

/// Everything that can go wrong in the collector crate.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// A custom field name is not `custom.<name>` or badly spelled.
    #[error("{name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is not acceptable for the field.
    #[error("{name}: {reason}")]
    BadValue {
        /// The field.
        name: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The bound on distinct custom fields was reached; the update was
    /// dropped (and counted).
    #[error("{name}: dropped, this node already has the maximum of {max} distinct custom fields")]
    TooManyCustomFields {
        /// The field that was dropped.
        name: String,
        /// The bound.
        max: usize,
    },
    /// A custom field is used both as a counter and as a gauge.
    #[error("{name}: already registered as a {kind}", kind = registered.as_str())]
    KindMismatch {
        /// The field.
        name: String,
        /// The kind it was registered with first.
        registered: CustomKind,
    },
    /// A standard field that is not a plain counter was given to
    /// `Recorder::add_standard`.
    #[error("{0}: not a standard counter that can be added to")]
    NotACounter(String),
    /// One line of a StatsD datagram is malformed.
    #[error("statsd line {line} {text:?}: {reason}")]
    Statsd {
        /// 1-based line number inside the datagram.
        line: usize,
        /// The line (cut to 100 bytes).
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A JSON metrics body is malformed.
    #[error("{0}")]
    Json(String),
    /// The operating system could not be sampled.
    #[error("system sampling failed: {0}")]
    System(String),
}
