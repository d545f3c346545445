//! Each notifier type's request, following the vendor's documented API, and
//! the [`NotifierHook`] that sends it as a hook of the dispatcher (outbox,
//! at least once, per-(rule, host) order, retries, dead letters,
//! `bp_hook_*` counters by notifier name).
//!
//! A `429`, or a `503` with `Retry-After`, is [`HookError::RateLimited`]:
//! the dispatcher waits at least the time the vendor asked before retrying.

use std::sync::Arc;

use metrics_model::Duration;
use reqwest::Client;
use rules_engine::{Event, Transition};
use serde_json::{Value, json};

use super::config::{Extra, NotifierConfig, NotifierKind, scrub};
use crate::hooks::{Delivery, Hook, HookError, HookFuture};

/// Slack attachment colours: red while firing, green once resolved.
const RED: &str = "#d00000";
const GREEN: &str = "#2eb886";

/// Requests one notifier has in flight at most.
pub const SENDS_PER_NOTIFIER: usize = 8;

/// Transitions one digest message lists at most (more make more digests).
pub const DIGEST_MAX: usize = 50;

/// One notifier as a hook.
#[derive(Debug, Clone)]
pub struct NotifierHook {
    config: Arc<NotifierConfig>,
    client: Client,
    timeout: Duration,
    pacing: Arc<Pacing>,
}

/// A notifier's pace: requests in flight, its rate limit's window, and the
/// transitions waiting for a digest.
#[derive(Debug)]
struct Pacing {
    /// Incidents whose open this notifier sent and whose resolve it has
    /// not handled, with the last reminder number sent (repeatInterval).
    open: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, (Transition, u64)>>,
    reminders_running: std::sync::atomic::AtomicBool,
    sends: tokio::sync::Semaphore,
    window: std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
    digest: std::sync::Mutex<DigestQueue>,
}

#[derive(Debug, Default)]
struct DigestQueue {
    waiting: Vec<Waiting>,
    flushing: bool,
}

/// A transition held for the next digest; told when the digest is sent.
#[derive(Debug)]
struct Waiting {
    delivery: Delivery,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl NotifierHook {
    /// The hook of `config`, each request bounded by `timeout`.
    pub fn new(config: NotifierConfig, client: Client, timeout: Duration) -> NotifierHook {
        NotifierHook {
            config: Arc::new(config),
            client,
            timeout,
            pacing: Arc::new(Pacing {
                open: std::sync::Mutex::new(std::collections::HashMap::new()),
                reminders_running: std::sync::atomic::AtomicBool::new(false),
                sends: tokio::sync::Semaphore::new(SENDS_PER_NOTIFIER),
                window: std::sync::Mutex::new(std::collections::VecDeque::new()),
                digest: std::sync::Mutex::new(DigestQueue::default()),
            }),
        }
    }

    /// The reminder number due for an incident that opened at `start`:
    /// one per whole `repeatInterval` since.
    fn reminder_due(
        &self,
        start: metrics_model::time::Millis,
        now: metrics_model::time::Millis,
    ) -> u64 {
        self.config.repeat_interval.map_or(0, |r| {
            u64::try_from((now - start).max(0) / r.as_millis_i64().max(1)).unwrap_or(0)
        })
    }

    /// Remembers (or forgets) an incident for reminders, after its open
    /// was sent (or its resolve handled).
    fn track(&self, tr: &Transition) {
        if self.config.repeat_interval.is_none() {
            return;
        }
        let mut open = self
            .pacing
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tr.event == Event::Resolved {
            open.remove(&tr.incident.id);
            return;
        }
        let n = self.reminder_due(tr.incident.start_time, metrics_model::time::now_ms());
        open.insert(tr.incident.id, (tr.clone(), n));
        drop(open);
        self.start_reminders();
    }

    /// Open incidents found in the store at start-up: reminded from the
    /// next whole `repeatInterval` on (no burst after a restart).
    pub fn seed_open(&self, incidents: &[rules_engine::Incident]) {
        for inc in incidents {
            let tr = Transition::new(Event::Opened, inc.start_time, inc.clone());
            if self.wants(&tr) {
                self.track(&tr);
            }
        }
    }

    fn start_reminders(&self) {
        let Some(every) = self.config.repeat_interval else {
            return;
        };
        if self
            .pacing
            .reminders_running
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let weak = Arc::downgrade(&self.pacing);
        let (config, client, timeout) = (self.config.clone(), self.client.clone(), self.timeout);
        let tick = every.to_std().div_f64(4.0).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(15),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                // The dispatcher dropped this notifier (shutdown, reload).
                let Some(pacing) = weak.upgrade() else { return };
                let me = NotifierHook {
                    config: config.clone(),
                    client: client.clone(),
                    timeout,
                    pacing,
                };
                me.remind_due().await;
            }
        });
    }

    /// Sends the reminders that are due (best effort: a failed one is tried
    /// again at the next tick; a rate limit without a free slot defers it).
    async fn remind_due(&self) {
        let now = metrics_model::time::now_ms();
        let due: Vec<(Transition, u64)> = self
            .pacing
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter_map(|(tr, last)| {
                let n = self.reminder_due(tr.incident.start_time, now);
                (n > *last).then(|| (tr.clone(), n))
            })
            .collect();
        for (tr, n) in due {
            if !self.try_take() {
                return;
            }
            match self.send_reminder(&tr, n).await {
                Ok(_) => {
                    if let Some(entry) = self
                        .pacing
                        .open
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_mut(&tr.incident.id)
                    {
                        entry.1 = n;
                    }
                }
                Err(e) => {
                    tracing::warn!(notifier = %self.config.name, id = %tr.incident.id, reminder = n, error = %e, "reminder not sent; tried again at the next tick");
                }
            }
        }
    }

    /// Reminder `n` of the open incident of `tr`, with idempotency key
    /// `<incident id>:reminder:<n>`.
    pub async fn send_reminder(&self, tr: &Transition, n: u64) -> Result<u16, HookError> {
        let key = format!("{}:reminder:{n}", tr.incident.id);
        let render = |k: &str| {
            self.config
                .templates
                .render_reminder(k, tr, Some(n))
                .map_err(|e| self.fail(&format!("template {k}: {e}")))
        };
        let request = match &self.config.extra {
            Extra::Email(settings) => {
                let d = Delivery {
                    seq: 0,
                    idempotency_key: key,
                    transition: tr.clone(),
                };
                return self
                    .send_email_as(settings, &d, Some(n))
                    .await
                    .map(|()| 250);
            }
            Extra::Webhook { .. } => self.webhook_request(render("body")?)?,
            _ => self.chat_request(
                &render("title")?,
                &render("text")?,
                false,
                metrics_model::time::now_ms(),
            )?,
        };
        self.execute(request.header("Idempotency-Key", key)).await
    }

    /// Takes a slot of the rate limit now, if one is free.
    fn try_take(&self) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let now = tokio::time::Instant::now();
        let per = limit.per.to_std();
        let mut w = self
            .pacing
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while w.front().is_some_and(|t| *t + per <= now) {
            w.pop_front();
        }
        if w.len() < limit.max as usize {
            w.push_back(now);
            true
        } else {
            false
        }
    }

    /// Waits for a slot of the rate limit.
    async fn take(&self) {
        loop {
            if self.try_take() {
                return;
            }
            let (Some(limit), Some(oldest)) = (
                self.config.rate_limit,
                self.pacing
                    .window
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .front()
                    .copied(),
            ) else {
                continue;
            };
            tokio::time::sleep_until(oldest + limit.per.to_std()).await;
        }
    }

    /// Joins the next digest and waits until it is sent.
    async fn join_digest(&self, d: &Delivery) -> Result<(), HookError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start_flusher = {
            let mut q = self
                .pacing
                .digest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.waiting.push(Waiting {
                delivery: d.clone(),
                done: tx,
            });
            !std::mem::replace(&mut q.flushing, true)
        };
        if start_flusher {
            let me = self.clone();
            tokio::spawn(async move { me.flush_digests().await });
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(self.fail(&message)),
            Err(_) => Err(self.fail("the digest was dropped before it was sent")),
        }
    }

    /// Sends digests (each taking one slot of the rate limit) while
    /// transitions wait for one.
    async fn flush_digests(&self) {
        loop {
            {
                let mut q = self
                    .pacing
                    .digest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if q.waiting.is_empty() {
                    q.flushing = false;
                    return;
                }
            }
            // Only this task takes waiting transitions out: there are still
            // some once the slot is ours.
            self.take().await;
            let batch: Vec<Waiting> = {
                let mut q = self
                    .pacing
                    .digest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = q.waiting.len().min(DIGEST_MAX);
                q.waiting.drain(..n).collect()
            };
            let result = self
                .send_digest(&batch)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::warn!(notifier = %self.config.name, transitions = batch.len(), error = %e, "digest not sent; its transitions are retried");
            }
            for w in batch {
                let _ = w.done.send(result.clone());
            }
        }
    }

    /// One message listing `batch` (chat: a line per transition; webhook: a
    /// JSON array of the bodies when they are JSON, else one per line).
    async fn send_digest(&self, batch: &[Waiting]) -> Result<u16, HookError> {
        let Some(first) = batch.first() else {
            return Ok(200);
        };
        let key = format!("digest:{}:{}", first.delivery.idempotency_key, batch.len());
        let request = if let Extra::Webhook { .. } = &self.config.extra {
            let bodies = batch
                .iter()
                .map(|w| self.render("body", &w.delivery.transition))
                .collect::<Result<Vec<_>, _>>()?;
            let parsed: Option<Vec<Value>> = bodies
                .iter()
                .map(|b| serde_json::from_str(b).ok())
                .collect();
            let body = match parsed {
                Some(values) => Value::Array(values).to_string(),
                None => bodies.join("\n"),
            };
            self.webhook_request(body)?
        } else {
            let lines = batch
                .iter()
                .map(|w| self.render("title", &w.delivery.transition))
                .collect::<Result<Vec<_>, _>>()?;
            let limit = self.config.rate_limit.map_or(String::new(), |l| {
                format!(" (rate limit: {} per {})", l.max, l.per)
            });
            let title = format!("{} notifications in one message{limit}", batch.len());
            let all_resolved = batch
                .iter()
                .all(|w| w.delivery.transition.event == Event::Resolved);
            self.chat_request(
                &title,
                &lines.join("\n"),
                all_resolved,
                metrics_model::time::now_ms(),
            )?
        };
        self.execute(request.header("Idempotency-Key", key)).await
    }

    /// Its configuration.
    pub fn config(&self) -> &NotifierConfig {
        &self.config
    }

    /// Whether `tr` goes to this notifier at all (route and `sendResolved`).
    pub fn wants(&self, tr: &Transition) -> bool {
        self.config.route.matches(&tr.incident)
            && (tr.event == Event::Opened || self.config.send_resolved)
    }

    fn fail(&self, message: &str) -> HookError {
        HookError::Other {
            hook: self.config.name.clone(),
            message: scrub(message, &self.config.secrets),
        }
    }

    fn render(&self, key: &str, tr: &Transition) -> Result<String, HookError> {
        self.config
            .templates
            .render(key, tr)
            .map_err(|e| self.fail(&format!("template {key}: {e}")))
    }

    /// The request for `d` (method, URL, headers, body).
    #[allow(clippy::too_many_lines)] // one arm per vendor, each as its doc says
    pub fn request(&self, d: &Delivery) -> Result<reqwest::RequestBuilder, HookError> {
        let tr = &d.transition;
        let c = &self.config;
        let resolved = tr.event == Event::Resolved;
        let url = c.url.0.clone();
        let post_json = |url: url::Url, body: Value| self.client.post(url).json(&body);
        Ok(match (&c.kind, &c.extra) {
            (
                NotifierKind::Slack
                | NotifierKind::Teams
                | NotifierKind::Discord
                | NotifierKind::Telegram,
                _,
            ) => {
                let title = self.render("title", tr)?;
                let text = self.render("text", tr)?;
                self.chat_request(&title, &text, resolved, tr.at)?
            }
            // https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
            // and .../resolve-events/: dedup_key = incident id.
            (NotifierKind::PagerDuty, Extra::PagerDuty { routing_key }) => {
                let body = if resolved {
                    json!({ "routing_key": routing_key.0, "event_action": "resolve",
                            "dedup_key": tr.incident.id.to_string() })
                } else {
                    let mut body = json!({
                        "routing_key": routing_key.0,
                        "event_action": "trigger",
                        "dedup_key": tr.incident.id.to_string(),
                        "payload": {
                            "summary": cut(&self.render("title", tr)?, 1024),
                            "source": tr.incident.host_name.as_str(),
                            "severity": pagerduty_severity(tr.incident.severity.as_deref()),
                            "timestamp": metrics_model::time::format_rfc3339(tr.incident.start_time),
                            "component": tr.incident.instance.as_ref().map(metrics_model::Instance::as_str),
                            "class": &*tr.incident.rule_name,
                            "custom_details": {
                                "text": self.render("text", tr)?,
                                "triggerValue": tr.incident.trigger_value,
                                "labels": tr.incident.labels.as_deref(),
                            }
                        },
                        "client": "bp-monitoring",
                    });
                    if let Some(link) = c.templates.incident_url(tr) {
                        body["client_url"] = json!(link);
                    }
                    body
                };
                post_json(url, body)
            }
            // https://docs.opsgenie.com/docs/alert-api (create; close by alias).
            (NotifierKind::Opsgenie, Extra::Opsgenie { api_key }) => {
                let mut u = url;
                let base = u.path().trim_end_matches('/').to_owned();
                let alias = tr.incident.id.to_string();
                let body = if resolved {
                    u.set_path(&format!("{base}/v2/alerts/{alias}/close"));
                    u.set_query(Some("identifierType=alias"));
                    json!({ "source": "bp-monitoring", "note": cut(&self.render("title", tr)?, 25_000) })
                } else {
                    u.set_path(&format!("{base}/v2/alerts"));
                    json!({
                        "message": cut(&self.render("title", tr)?, 130),
                        "alias": alias,
                        "description": cut(&self.render("text", tr)?, 15_000),
                        "priority": opsgenie_priority(tr.incident.severity.as_deref()),
                        "entity": tr.incident.host_name.as_str(),
                        "source": "bp-monitoring",
                        "details": tr.incident.labels.as_deref(),
                    })
                };
                self.client
                    .post(u)
                    .header("Authorization", format!("GenieKey {}", api_key.0))
                    .json(&body)
            }
            (NotifierKind::Webhook, Extra::Webhook { .. }) => {
                self.webhook_request(self.render("body", tr)?)?
            }
            (kind, _) => {
                return Err(self.fail(&format!("the {} notifier lacks its settings", kind.as_str())));
            }
        }
        .header("Idempotency-Key", &d.idempotency_key))
    }

    /// Sends `d` now, whatever the route says (`bp-alerter notify-test`);
    /// returns the receiver's status (an SMTP server's: 250).
    pub async fn send_now(&self, d: &Delivery) -> Result<u16, HookError> {
        if let Extra::Email(settings) = &self.config.extra {
            return self.send_email(settings, d).await.map(|()| 250);
        }
        self.send(d).await
    }

    /// A chat message (Slack, Teams, Discord, Telegram) of `title` and
    /// `text`, coloured as firing or resolved.
    fn chat_request(
        &self,
        title: &str,
        text: &str,
        resolved: bool,
        at: metrics_model::time::Millis,
    ) -> Result<reqwest::RequestBuilder, HookError> {
        let c = &self.config;
        let url = c.url.0.clone();
        let post_json = |url: url::Url, body: Value| self.client.post(url).json(&body);
        Ok(match (&c.kind, &c.extra) {
            // https://api.slack.com/messaging/webhooks, Block Kit in a
            // coloured attachment (https://api.slack.com/reference/messaging/attachments).
            (NotifierKind::Slack, _) => post_json(
                url,
                json!({
                    "text": title,
                    "attachments": [{
                        "color": if resolved { GREEN } else { RED },
                        "blocks": [
                            { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{title}*") } },
                            { "type": "section", "text": { "type": "mrkdwn", "text": cut(text, 3000) } }
                        ]
                    }]
                }),
            ),
            // https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
            // (Adaptive Card in a message, as Workflows webhooks take it).
            (NotifierKind::Teams, _) => post_json(
                url,
                json!({
                    "type": "message",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": null,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                { "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
                                  "color": if resolved { "Good" } else { "Attention" }, "wrap": true },
                                { "type": "TextBlock", "text": text, "wrap": true }
                            ]
                        }
                    }]
                }),
            ),
            // https://discord.com/developers/docs/resources/webhook#execute-webhook
            // (embed limits: title 256, description 4096; no mentions parsed).
            (NotifierKind::Discord, _) => post_json(
                url,
                json!({
                    "allowed_mentions": { "parse": [] },
                    "embeds": [{
                        "title": cut(title, 256),
                        "description": cut(text, 4096),
                        "color": if resolved { 0x2e_b8_86 } else { 0xd0_00_00 },
                        "timestamp": metrics_model::time::format_rfc3339(at),
                    }]
                }),
            ),
            // https://core.telegram.org/bots/api#sendmessage (HTML parse mode;
            // values escaped by the template formatter; 4096 characters).
            (NotifierKind::Telegram, Extra::Telegram { bot_token, chat_id }) => {
                let mut u = url;
                let base = u.path().trim_end_matches('/').to_owned();
                u.set_path(&format!("{base}/bot{}/sendMessage", bot_token.0));
                post_json(
                    u,
                    json!({
                        "chat_id": chat_id,
                        "text": cut(&format!("<b>{title}</b>\n{text}"), 4096),
                        "parse_mode": "HTML",
                        "disable_web_page_preview": true,
                    }),
                )
            }
            (kind, _) => {
                return Err(self.fail(&format!(
                    "the {} notifier sends no chat message",
                    kind.as_str()
                )));
            }
        })
    }

    /// The templated webhook's request with `body`.
    fn webhook_request(&self, body: String) -> Result<reqwest::RequestBuilder, HookError> {
        let Extra::Webhook {
            method,
            headers,
            content_type,
        } = &self.config.extra
        else {
            return Err(self.fail("not a webhook notifier"));
        };
        let mut r = self
            .client
            .request(method.clone(), self.config.url.0.clone())
            .header("Content-Type", content_type.as_str())
            .body(body);
        for (name, value) in &headers.0 {
            r = r.header(name.clone(), value.clone());
        }
        Ok(r)
    }

    async fn send(&self, d: &Delivery) -> Result<u16, HookError> {
        let request = self.request(d)?;
        self.execute(request).await
    }

    /// Sends a request (at most [`SENDS_PER_NOTIFIER`] at once), bounded by
    /// the timeout; 2xx is success, 429 (or 503 with `Retry-After`) is
    /// [`HookError::RateLimited`].
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<u16, HookError> {
        let _permit = self
            .pacing
            .sends
            .acquire()
            .await
            .map_err(|_| self.fail("closed"))?;
        crate::hooks::webhook::send_request(
            &self.config.name,
            &self.config.url,
            request,
            self.timeout,
        )
        .await
        .map_err(|e| self.scrubbed(e))
    }

    /// `e` with this notifier's secrets removed from its texts (a vendor may
    /// echo what it got).
    fn scrubbed(&self, e: HookError) -> HookError {
        let s = |t: String| scrub(&t, &self.config.secrets);
        match e {
            HookError::Status {
                hook,
                origin,
                status,
                body,
            } => HookError::Status {
                hook,
                origin,
                status,
                body: s(body),
            },
            HookError::RateLimited {
                hook,
                origin,
                status,
                retry_after_ms,
                body,
            } => HookError::RateLimited {
                hook,
                origin,
                status,
                retry_after_ms,
                body: s(body),
            },
            HookError::Http {
                hook,
                origin,
                message,
            } => HookError::Http {
                hook,
                origin,
                message: s(message),
            },
            HookError::Other { hook, message } => HookError::Other {
                hook,
                message: s(message),
            },
            other => other,
        }
    }
}

/// The `Message-ID` of a transition: its idempotency key as an address
/// (`<incident id>.<event>@bp-monitoring>`), so a redelivery is the same
/// message and the resolve threads under the open.
pub fn message_id(incident: &uuid::Uuid, event: Event) -> String {
    format!("<{incident}.{}@bp-monitoring>", event.as_str())
}

impl NotifierHook {
    /// The email of `d` (both parts; threaded under the open).
    pub fn email(
        &self,
        settings: &super::config::EmailSettings,
        d: &Delivery,
        reminder: Option<u64>,
    ) -> Result<lettre::Message, HookError> {
        use lettre::message::{MultiPart, header::ContentType};
        let tr = &d.transition;
        let render = |k: &str| {
            self.config
                .templates
                .render_reminder(k, tr, reminder)
                .map_err(|e| self.fail(&format!("template {k}: {e}")))
        };
        let id = match reminder {
            Some(n) => format!("<{}.reminder.{n}@bp-monitoring>", tr.incident.id),
            None => message_id(&tr.incident.id, tr.event),
        };
        let mut b = lettre::Message::builder()
            .from(settings.from.clone())
            .subject(render("subject")?.replace(['\r', '\n'], " "))
            .message_id(Some(id))
            .date(std::time::SystemTime::now());
        for to in &settings.to {
            b = b.to(to.clone());
        }
        for cc in &settings.cc {
            b = b.cc(cc.clone());
        }
        if tr.event == Event::Resolved || reminder.is_some() {
            let open = message_id(&tr.incident.id, Event::Opened);
            b = b.in_reply_to(open.clone()).references(open);
        }
        let text = render("text")?;
        let html = render("html")?;
        b.multipart(
            MultiPart::alternative()
                .singlepart(
                    lettre::message::SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    lettre::message::SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| self.fail(&format!("cannot build the email: {e}")))
    }

    async fn send_email(
        &self,
        settings: &super::config::EmailSettings,
        d: &Delivery,
    ) -> Result<(), HookError> {
        self.send_email_as(settings, d, None).await
    }

    async fn send_email_as(
        &self,
        settings: &super::config::EmailSettings,
        d: &Delivery,
        reminder: Option<u64>,
    ) -> Result<(), HookError> {
        use lettre::AsyncTransport as _;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let message = self.email(settings, d, reminder)?;
        let tls = if settings.implicit_tls || settings.starttls != super::config::StartTls::Off {
            let mut params = TlsParameters::builder(settings.host.clone());
            if let Some(pem) = &settings.ca_pem {
                let cert =
                    Certificate::from_pem(pem).map_err(|e| self.fail(&format!("caFile: {e}")))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| self.fail(&format!("TLS settings: {e}")))?;
            if settings.implicit_tls {
                Tls::Wrapper(params)
            } else if settings.starttls == super::config::StartTls::Required {
                Tls::Required(params)
            } else {
                Tls::Opportunistic(params)
            }
        } else {
            Tls::None
        };
        let mut transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(
                settings.host.clone(),
            )
            .port(settings.port)
            .tls(tls)
            .timeout(Some(self.timeout.to_std()));
        if let Some((user, password)) = &settings.credentials {
            transport =
                transport.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    user.clone(),
                    password.0.clone(),
                ));
        }
        transport
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| {
                // lettre's message already holds its sources.
                let text = e.to_string();
                HookError::Http {
                    hook: self.config.name.clone(),
                    origin: self.config.url.origin(),
                    message: scrub(&text, &self.config.secrets),
                }
            })
    }
}

impl Hook for NotifierHook {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> crate::hooks::HookKind {
        crate::hooks::HookKind::Paced
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> HookFuture<'a> {
        Box::pin(async move {
            if !self.wants(&delivery.transition) {
                return Ok(());
            }
            if delivery.transition.event == Event::Resolved {
                // No reminder once the resolve is on its way.
                self.track(&delivery.transition);
            }
            let result = match self.config.rate_limit {
                None => self.send_now(delivery).await.map(|_| ()),
                // PagerDuty, Opsgenie, email: queued, each in its turn.
                Some(_) if !self.config.kind.digests() => {
                    self.take().await;
                    self.send_now(delivery).await.map(|_| ())
                }
                // Chat and webhooks: beyond the limit, one digest per slot.
                Some(_) => {
                    if self.try_take() {
                        self.send_now(delivery).await.map(|_| ())
                    } else {
                        self.join_digest(delivery).await
                    }
                }
            };
            if result.is_ok() && delivery.transition.event == Event::Opened {
                self.track(&delivery.transition);
            }
            result
        })
    }
}

/// PagerDuty's severities: critical, error, warning, info (the rule's
/// severity when it is one of them; `error` otherwise).
pub fn pagerduty_severity(severity: Option<&str>) -> &'static str {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "fatal" | "page") => "critical",
        Some("warning" | "warn") => "warning",
        Some("info" | "informational" | "notice") => "info",
        _ => "error",
    }
}

/// Opsgenie's priorities P1 (highest) … P5.
pub fn opsgenie_priority(severity: Option<&str>) -> &'static str {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "fatal" | "page") => "P1",
        Some("error" | "high") => "P2",
        Some("info" | "informational" | "notice") => "P5",
        // warning, and anything else
        _ => "P3",
    }
}

/// `text` cut to at most `max` characters (an ellipsis marks the cut).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
