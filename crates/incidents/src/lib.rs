//! Incident records, their persistence through the store traits, the outbox
//! and hook delivery. Not built yet: see the "Alerter, incidents and hooks" issue.
#![deny(missing_docs)]
