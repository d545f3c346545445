//! Notifiers: Slack, Microsoft Teams, Discord, Telegram, PagerDuty,
//! Opsgenie and templated webhooks, each a hook of the dispatcher (see
//! `docs/notifiers.md`).
//!
//! - [`config`]: `alerting.notifiers` validated (every problem by JSON
//!   path), routing (`match`), secrets from the environment or a file;
//! - [`template`]: `minijinja` templates, checked at load time against the
//!   documented variables and sample incidents;
//! - [`vendor`]: each vendor's documented request, and [`NotifierHook`].

pub mod config;
pub mod template;
pub mod vendor;

pub use config::{
    NotifierConfig, NotifierKind, Route, attach_rules, parse_external_url, parse_notifiers,
};
pub use vendor::NotifierHook;
