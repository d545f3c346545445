//! The only crate that speaks Redis (fred): the Redis implementation of the
//! store traits of `metrics-model`. Not built yet: see the "Collector and
//! Redis store" issue.
#![deny(missing_docs)]
