//! rules
#![deny(missing_docs)]
