//! Webhooks: `POST` of the transition as JSON.
//!
//! The body is [`Delivery::webhook_json`]:
//!
//! ```json
//! {"id":"…uuid…","ruleName":"High CPU","hostName":"node-a",
//!  "startTime":"2024-05-01T10:00:00.000Z","endTime":null,"triggerValue":75.0,
//!  "event":"opened","at":"2024-05-01T10:00:00.000Z",
//!  "idempotencyKey":"…uuid…:opened"}
//! ```
//!
//! with `Content-Type: application/json`, `Idempotency-Key: <key>` and the
//! configured headers. Any 2xx answer is a success; anything else
//! (redirects included: they are not followed, so headers are never sent
//! elsewhere) is a failure and is retried. Header values and the URL's path
//! and query are never logged; errors name only the URL's origin.

use std::error::Error as _;

use metrics_model::Duration;
use reqwest::Client;

use super::config::{Headers, SecretUrl, WebhookConfig};
use super::{Delivery, Hook, HookError, HookFuture};

/// The `User-Agent` of every request the alerter makes.
pub const USER_AGENT: &str = concat!("bp-alerter/", env!("CARGO_PKG_VERSION"));

/// The HTTP client shared by webhooks, Alertmanager and the watchdog: no
/// redirects, rustls with the system's root certificates.
pub fn http_client() -> Result<Client, HookError> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| HookError::Other {
            hook: "http client".into(),
            message: error_chain(&e),
        })
}

/// One webhook.
#[derive(Debug, Clone)]
pub struct WebhookHook {
    config: WebhookConfig,
    client: Client,
    timeout: Duration,
}

impl WebhookHook {
    /// The webhook of `config`, each request bounded by `timeout`.
    pub fn new(config: WebhookConfig, client: Client, timeout: Duration) -> WebhookHook {
        WebhookHook {
            config,
            client,
            timeout,
        }
    }
}

impl Hook for WebhookHook {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> HookFuture<'a> {
        Box::pin(async move {
            let request = self
                .client
                .post(self.config.url.0.clone())
                .header("Idempotency-Key", &delivery.idempotency_key)
                .json(&delivery.webhook_json());
            send(
                &self.config.name,
                &self.config.url,
                &self.config.headers,
                request,
                self.timeout,
            )
            .await
        })
    }
}

/// Sends a request with `headers` and `timeout`; 2xx is success.
pub(crate) async fn send(
    hook: &str,
    url: &SecretUrl,
    headers: &Headers,
    mut request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(), HookError> {
    for (name, value) in &headers.0 {
        request = request.header(name.clone(), value.clone());
    }
    send_request(hook, url, request, timeout).await.map(|_| ())
}

/// The longest `Retry-After` honoured (a receiver asking for more is
/// retried after this, then by the normal backoff).
pub const RETRY_AFTER_MAX: std::time::Duration = std::time::Duration::from_mins(5);

/// Sends a request bounded by `timeout`: the 2xx status, or the error — a
/// `429` (or a `503` with `Retry-After`) is [`HookError::RateLimited`], so
/// the dispatcher waits what the receiver asked; any other status is
/// [`HookError::Status`] with the start of the body.
pub(crate) async fn send_request(
    hook: &str,
    url: &SecretUrl,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<u16, HookError> {
    let response = request
        .timeout(timeout.to_std())
        .send()
        .await
        .map_err(|e| http_error(hook, url, &e, timeout))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(status);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| std::time::Duration::from_secs(s).min(RETRY_AFTER_MAX));
    let body = match response.text().await {
        Ok(text) => {
            let text = text.trim();
            let mut cut: String = text.chars().take(200).collect();
            if cut.len() < text.len() {
                cut.push('…');
            }
            cut
        }
        Err(_) => String::new(),
    };
    if status == 429 || (status == 503 && retry_after.is_some()) {
        return Err(HookError::RateLimited {
            hook: hook.to_owned(),
            origin: url.origin(),
            status,
            retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            body,
        });
    }
    Err(HookError::Status {
        hook: hook.to_owned(),
        origin: url.origin(),
        status,
        body,
    })
}

fn http_error(hook: &str, url: &SecretUrl, e: &reqwest::Error, timeout: Duration) -> HookError {
    if e.is_timeout() {
        return HookError::Timeout {
            hook: hook.to_owned(),
            timeout: timeout.to_string(),
            killed: false,
        };
    }
    HookError::Http {
        hook: hook.to_owned(),
        origin: url.origin(),
        message: error_chain(e),
    }
}

/// The error and its sources, without the URL (which may hold a token).
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut current: Option<&dyn std::error::Error> = e.source();
    let top = match e.url() {
        Some(_) => {
            // reqwest's Display appends "for url (…)"; keep only the kind.
            let text = e.to_string();
            text.split(" for url (")
                .next()
                .unwrap_or_default()
                .to_owned()
        }
        None => e.to_string(),
    };
    parts.push(top);
    while let Some(source) = current {
        let text = source.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = source.source();
    }
    parts.join(": ")
}
