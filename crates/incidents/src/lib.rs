//! Incidents after the rules engine has made them: their persistence through
//! the [`metrics_model::store::AlertStore`] trait (Redis or in-memory), the
//! outbox of transitions, and hook delivery.
//!
//! - [`persist`]: incident state ↔ the store's opaque records; one
//!   evaluation's transitions → one atomic [`metrics_model::store::AlertCommit`].
//! - [`hooks`]: the `alerting.hooks` configuration and the hooks (`*.js`
//!   and executable files, webhooks, Alertmanager, the [`hooks::Hook`] trait).
//! - [`delivery`]: the dispatcher delivering outbox entries to every hook,
//!   in order per (rule, host), with retries, a process limit and dead letters.
//! - [`watchdog`]: the URL pinged after every successful evaluation.
//!
//! The incident record itself ([`Incident`]: `id`, `ruleName`, `hostName`,
//! `startTime`, `endTime`, `triggerValue`) is the rules engine's, re-exported.
//!
//! Not here: rule evaluation (`rules-engine`), Redis commands (`redis-store`),
//! scheduling and leadership (`bp-alerter`).
#![deny(missing_docs)]

pub mod delivery;
pub mod hooks;
pub mod notifiers;
pub mod persist;
pub mod view;
pub mod watchdog;

pub use rules_engine::{Event, Incident, IncidentState, Transition};
