//! System sampling (sysinfo) and the in-process metrics recorder that turns
//! readings into ticks. Not built yet: see the "Collector and Redis store" issue.
#![deny(missing_docs)]
