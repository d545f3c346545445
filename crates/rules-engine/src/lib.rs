//! The bp-monitoring rules engine: incident rules, their validation, rolling
//! windows with incremental aggregates, and the per-(rule, host) incident
//! state machine with cooldown — exactly the normative alerting semantics
//! (`docs/alerting-semantics.md` in the repository).
//!
//! Pure: no async runtime, no Redis, no clock, no file or network IO. The
//! caller passes ticks in and chooses the evaluation instants, so the live
//! alerter, `bp-alerter replay` and `bp-alerter test-rules` share this code,
//! and other Rust services can embed it.
//!
//! ```
//! use rules_engine::{Engine, EngineOptions, RuleSet};
//! use metrics_model::Tick;
//!
//! let rules = RuleSet::from_json(&serde_json::json!([{
//!     "name": "High CPU Usage", "field": "cpu.usage", "aggregation": "avg",
//!     "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m", "cooldown": "1m"
//! }]), "rules").unwrap();
//! let mut engine = Engine::new(rules, EngineOptions::default());
//! for i in 0..12 {
//!     engine.ingest(Tick::parse_line(&format!(
//!         r#"{{"host":"node-a","ts":{},"values":{{"cpu.usage":75}}}}"#, i * 10_000), 1).unwrap().unwrap());
//! }
//! let transitions = engine.evaluate(110_000).unwrap();
//! assert_eq!(transitions.len(), 1);
//! assert_eq!(transitions[0].incident.trigger_value, 75.0);
//! ```
//!
//! Modules:
//! - [`rule`]: [`Rule`], [`RuleSet`], aggregations, operands, validation
//!   that reports every problem at once by JSON path;
//! - [`config`]: the configuration file (`pro.monitoring`, `pro.alerting`);
//! - [`window`]: rolling windows, O(1) amortised per in-order tick;
//! - [`incident`]: [`Incident`], [`Transition`], [`IncidentState`];
//! - [`engine`]: [`Engine`], hosts × rules evaluated at given instants;
//! - [`replay`]: offline evaluation of recorded ticks;
//! - [`rule_tests`]: rule unit tests (`bp-alerter test-rules`).
//!
//! Not here: storage, persistence of incident state, hooks, scheduling (the
//! `incidents` crate and `bp-alerter` do those).
#![deny(missing_docs)]

pub mod config;
pub mod engine;
pub mod error;
pub mod incident;
pub mod replay;
pub mod rule;
pub mod rule_tests;
pub mod silence;
pub mod window;

pub use config::{AlertingConfig, Config, MonitoringConfig};
pub use engine::{Engine, EngineError, EngineOptions, SeriesState, WindowValue};
pub use error::{ConfigError, Problem};
pub use incident::{Event, Incident, IncidentState, Transition};
pub use replay::{NotifiedTransition, ReplayOptions, replay, replay_notified};
pub use rule::{Aggregation, HostPattern, Operand, Rule, RuleMeta, RuleSet, RuleSpec, Scope};
pub use silence::{Acknowledgement, MaintenanceWindow, Matchers, Muting, NotifyGate, Silence};
