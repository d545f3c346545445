//! Hooks: what is called on every incident open and resolve.
//!
//! - [`config`]: the `alerting.hooks` object ([`HooksConfig`]).
//! - [`files`]: the hook directory — `*.js` files run with Node.js
//!   ([`files::JsHook`]) and other executable files run directly
//!   ([`files::ExecHook`]); re-scanned at every delivery.
//! - [`process`]: running one hook process (no shell, timeout that kills the
//!   process group, output to the log line by line, bounded).
//! - [`webhook`]: POST of the transition JSON ([`webhook::WebhookHook`]).
//! - [`alertmanager`]: push to Alertmanager's `/api/v2/alerts`, with the
//!   periodic re-push of open alerts ([`alertmanager::AlertmanagerHook`]).
//! - The [`Hook`] trait, for embedders who add their own.
//!
//! Delivery order, retries, the process limit and dead letters are the
//! dispatcher's ([`crate::delivery`]); a hook only makes one attempt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use rules_engine::Transition;
use serde_json::{Value, json};

pub mod alertmanager;
pub mod config;
pub mod files;
pub mod process;
pub mod runner;
pub mod webhook;

pub use config::{AlertmanagerConfig, HooksConfig, WatchdogConfig, WebhookConfig};

/// One transition to deliver, with its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The outbox sequence number of the transition.
    pub seq: u64,
    /// `<incident id>:opened` or `<incident id>:resolved`: the same for every
    /// redelivery of the same transition, so receivers can drop duplicates.
    pub idempotency_key: String,
    /// The transition.
    pub transition: Transition,
}

impl Delivery {
    /// A delivery of `transition`, outbox entry `seq`.
    pub fn new(seq: u64, transition: Transition) -> Delivery {
        Delivery {
            seq,
            idempotency_key: transition.idempotency_key(),
            transition,
        }
    }

    /// What executable hooks read on stdin: the transition line
    /// `{"event","at","incident":{…}}` plus `"idempotencyKey"`.
    pub fn stdin_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.transition).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("idempotencyKey".into(), json!(self.idempotency_key));
        }
        v
    }

    /// What webhooks receive: the incident's fields (`id`, `ruleName`,
    /// `hostName`, `startTime`, `endTime`, `triggerValue`) plus `event`,
    /// `at` (RFC 3339) and `idempotencyKey`; on a held open released later,
    /// `notifiedAt` (RFC 3339); on the resolve of an acknowledged incident,
    /// `acknowledgedBy` and `acknowledgedAt`.
    pub fn webhook_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.transition.incident).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("event".into(), json!(self.transition.event.as_str()));
            m.insert(
                "at".into(),
                json!(metrics_model::time::format_rfc3339(self.transition.at)),
            );
            m.insert("idempotencyKey".into(), json!(self.idempotency_key));
            // A held open released later says when it was notified.
            if let Some(t) = self.transition.notified_at {
                m.insert(
                    "notifiedAt".into(),
                    json!(metrics_model::time::format_rfc3339(t)),
                );
            }
            // A resolve of an acknowledged incident says who acknowledged
            // it (absent otherwise: version-1 payloads are unchanged).
            if let Some(by) = &self.transition.acknowledged_by {
                m.insert("acknowledgedBy".into(), json!(by));
            }
            if let Some(at) = &self.transition.acknowledged_at {
                m.insert("acknowledgedAt".into(), json!(at));
            }
        }
        v
    }
}

/// What kind of resource a hook uses, for the dispatcher's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// It runs a child process: counts against `concurrency` (at most K
    /// processes at once). Such a hook enforces the timeout itself (killing
    /// its process group).
    Process,
    /// Anything else (HTTP, in-process code): the dispatcher bounds the call
    /// with the timeout.
    Task,
    /// It paces itself (a rate limit: it may wait for a slot, or for the
    /// digest it joined to be sent) and bounds each request with the
    /// timeout itself: the dispatcher holds no slot and applies no timeout
    /// around the call (notifiers).
    Paced,
}

/// A future returned by [`Hook::deliver`].
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send + 'a>>;

/// Something called on every incident transition. Object-safe, so embedders
/// can pass `Arc<dyn Hook>` to the dispatcher.
///
/// One call is one attempt: the dispatcher retries failures with backoff,
/// applies the timeout (see [`HookKind`]) and keeps per-(rule, host) order.
/// Deliveries are at least once: use [`Delivery::idempotency_key`] to drop
/// duplicates.
pub trait Hook: Send + Sync + fmt::Debug {
    /// The name used in logs, counters and dead letters (low cardinality;
    /// never a secret).
    fn name(&self) -> &str;

    /// The resource it uses; [`HookKind::Task`] unless overridden.
    fn kind(&self) -> HookKind {
        HookKind::Task
    }

    /// Makes one delivery attempt.
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> HookFuture<'a>;
}

/// Why a hook call failed. Messages name the hook and what failed; they
/// never hold header values or full webhook URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The process could not be started.
    #[error("hook {hook}: cannot start {program}: {message}")]
    Spawn {
        /// The hook.
        hook: String,
        /// The program that was run (the hook file, or Node.js).
        program: String,
        /// The OS error.
        message: String,
    },
    /// The process ran longer than the timeout and was killed.
    #[error("hook {hook}: timed out after {timeout}{}", killed_suffix(*.killed))]
    Timeout {
        /// The hook.
        hook: String,
        /// The timeout, e.g. `10s`.
        timeout: String,
        /// Whether a process group was killed.
        killed: bool,
    },
    /// The process exited unsuccessfully.
    #[error("hook {hook}: {status}{}", last_stderr_suffix(.last_stderr.as_ref()))]
    Exit {
        /// The hook.
        hook: String,
        /// How it ended, e.g. `exit status 3` or `killed by signal 9`.
        status: String,
        /// The last non-empty line it wrote on stderr.
        last_stderr: Option<String>,
    },
    /// An HTTP request failed before a response (connection, TLS, timeout).
    #[error("hook {hook}: request to {origin} failed: {message}")]
    Http {
        /// The hook.
        hook: String,
        /// `scheme://host:port` of the target (never the path or query).
        origin: String,
        /// What failed.
        message: String,
    },
    /// An HTTP request got a non-2xx response.
    #[error("hook {hook}: {origin} answered HTTP {status}{}", body_suffix(.body))]
    Status {
        /// The hook.
        hook: String,
        /// `scheme://host:port` of the target.
        origin: String,
        /// The status code.
        status: u16,
        /// The start of the response body, if any.
        body: String,
    },
    /// The receiver asks to slow down: HTTP 429, or 503 with `Retry-After`.
    #[error("hook {hook}: {origin} answered HTTP {status} (rate limited{}){}", retry_suffix(*.retry_after_ms), body_suffix(.body))]
    RateLimited {
        /// The hook.
        hook: String,
        /// `scheme://host:port` of the target.
        origin: String,
        /// The status code.
        status: u16,
        /// What `Retry-After` asked (ms), if it said.
        retry_after_ms: Option<u64>,
        /// The start of the response body, if any.
        body: String,
    },
    /// The hook directory could not be read.
    #[error("hook directory {directory}: cannot read it: {message}")]
    Directory {
        /// The directory.
        directory: String,
        /// The OS error.
        message: String,
    },
    /// Any other failure (for embedders' hooks).
    #[error("hook {hook}: {message}")]
    Other {
        /// The hook.
        hook: String,
        /// What failed.
        message: String,
    },
}

impl HookError {
    /// Whether this is a timeout (counted separately).
    pub fn is_timeout(&self) -> bool {
        matches!(self, HookError::Timeout { .. })
    }

    /// The least wait before the next attempt the receiver asked for.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            HookError::RateLimited {
                retry_after_ms: Some(ms),
                ..
            } => Some(std::time::Duration::from_millis(*ms)),
            _ => None,
        }
    }
}

fn retry_suffix(ms: Option<u64>) -> String {
    ms.map(|ms| format!("; Retry-After {} s", ms / 1000))
        .unwrap_or_default()
}

fn last_stderr_suffix(line: Option<&String>) -> String {
    line.map(|l| format!("; last stderr line: {l}"))
        .unwrap_or_default()
}

fn killed_suffix(killed: bool) -> &'static str {
    if killed {
        "; its process group was killed"
    } else {
        ""
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules_engine::{Event, Incident};

    fn incident() -> Incident {
        Incident {
            id: uuid::Uuid::from_u128(7),
            rule_name: "High CPU".into(),
            host_name: "node-a".parse().unwrap(),
            instance: None,
            severity: None,
            labels: None,
            description: None,
            start_time: 1_000,
            end_time: None,
            trigger_value: 90.0,
        }
    }

    #[test]
    fn webhook_payload_extras_only_when_they_apply() {
        let plain = Delivery::new(1, Transition::new(Event::Opened, 1_000, incident()));
        let v = plain.webhook_json();
        for k in ["notifiedAt", "acknowledgedBy", "acknowledgedAt"] {
            assert!(v.get(k).is_none(), "{k} in a version-1 payload: {v}");
        }
        let mut released = Transition::new(Event::Opened, 1_000, incident());
        released.notified_at = Some(61_000);
        let v = Delivery::new(2, released).webhook_json();
        assert_eq!(v["notifiedAt"], "1970-01-01T00:01:01.000Z");
        assert_eq!(v["startTime"], "1970-01-01T00:00:01.000Z", "unchanged");
        let mut inc = incident();
        inc.end_time = Some(90_000);
        let mut resolve = Transition::new(Event::Resolved, 90_000, inc);
        resolve.acknowledged_by = Some("ops".into());
        resolve.acknowledged_at = Some("1970-01-01T00:00:30.000Z".into());
        let d = Delivery::new(3, resolve);
        let v = d.webhook_json();
        assert_eq!(v["acknowledgedBy"], "ops");
        assert_eq!(v["acknowledgedAt"], "1970-01-01T00:00:30.000Z");
        assert_eq!(d.stdin_json()["acknowledgedBy"], "ops");
    }
}
