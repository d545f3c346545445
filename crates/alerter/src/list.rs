//! `bp-alerter incidents`: open and recent incidents (with their ids, held
//! opens and acknowledgements), outbox depth, dead letters and the active
//! alerter, read from the store.

use std::fmt::Write as _;

use incidents::persist;
use metrics_model::Duration;
use metrics_model::store::AlertStore;
use metrics_model::time::{Millis, format_rfc3339};
use rules_engine::Incident;
use serde_json::json;

use metrics_model::time::now_ms;

/// What to list.
#[derive(Debug, Clone, Copy)]
pub struct ListOptions {
    /// Resolved incidents that ended this long ago at most.
    pub since: Duration,
    /// At most this many resolved incidents and dead letters.
    pub limit: usize,
    /// JSON instead of tables.
    pub json: bool,
}

/// Prints the listing; returns the text.
#[allow(clippy::too_many_lines)] // one listing, section by section
pub async fn incidents<A: AlertStore>(store: &A, options: ListOptions) -> anyhow::Result<String> {
    let now = now_ms();
    let snapshot = store.load().await?;
    let view = incidents::view::view(&snapshot);
    let open = view.open;
    let from = now - options.since.as_millis_i64();
    let mut resolved: Vec<Incident> = Vec::new();
    let mut unreadable = view.unreadable;
    for json in store.resolved(from, Millis::MAX, options.limit).await? {
        match persist::decode_incident(&json) {
            Ok(i) => resolved.push(i),
            Err(_) => unreadable += 1,
        }
    }
    resolved.reverse(); // newest first
    let dead = store.dead_letters(options.limit).await?;
    let outbox = store.outbox_len().await?;
    let lease = store.lease().await?;
    let acks = rules_engine::Acknowledgement::by_incident(
        &store
            .records(metrics_model::store::RecordKind::Acknowledgement)
            .await?,
    );
    let held = &view.held;
    let note = |i: &Incident| {
        let mut parts = Vec::new();
        if held.contains(&i.id) {
            parts.push("held (muted, not notified yet)".to_owned());
        }
        if let Some(a) = acks.get(&i.id) {
            parts.push(format!("acknowledged by {}", sanitize(&a.by)));
        }
        parts.join(", ")
    };
    let with_extras = |i: &Incident| {
        let mut v = serde_json::to_value(i).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            if held.contains(&i.id) {
                o.insert("held".into(), json!(true));
            }
            if let Some(a) = acks.get(&i.id) {
                o.insert(
                    "acknowledged".into(),
                    json!({ "by": a.by, "at": format_rfc3339(a.at), "comment": a.comment }),
                );
            }
        }
        v
    };
    if options.json {
        let value = json!({
            "open": open.iter().map(with_extras).collect::<Vec<_>>(),
            "resolved": resolved.iter().map(with_extras).collect::<Vec<_>>(),
            "outboxDepth": outbox,
            "deadLetters": dead.iter().map(|d| json!({ "at": format_rfc3339(d.at), "hook": d.hook, "error": d.error, "transition": serde_json::from_str::<serde_json::Value>(&d.payload).unwrap_or(serde_json::Value::Null) })).collect::<Vec<_>>(),
            "activeAlerter": lease.as_ref().map(|l| json!({ "holder": l.holder, "token": l.token })),
            "lastEvaluated": view.last_evaluated.map(format_rfc3339),
            "unreadableRecords": unreadable,
        });
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "OPEN INCIDENTS ({})", open.len());
    table(&mut out, &open, now, &note);
    let _ = writeln!(
        out,
        "\nRESOLVED IN THE LAST {} ({})",
        options.since,
        resolved.len()
    );
    table(&mut out, &resolved, now, &note);
    let _ = writeln!(
        out,
        "\nactive alerter: {}",
        lease.map_or("none".to_owned(), |l| format!(
            "{} (token {})",
            l.holder, l.token
        ))
    );
    let _ = writeln!(
        out,
        "last evaluated: {}",
        view.last_evaluated
            .map_or("never".to_owned(), format_rfc3339)
    );
    let _ = writeln!(out, "outbox: {outbox} transition(s) waiting for delivery");
    let _ = writeln!(out, "dead letters: {}", dead.len());
    for d in &dead {
        let _ = writeln!(
            out,
            "  {}  hook {}: {}",
            format_rfc3339(d.at),
            d.hook,
            d.error
        );
    }
    if unreadable > 0 {
        let _ = writeln!(out, "unreadable records: {unreadable}");
    }
    Ok(out)
}

fn table(
    out: &mut String,
    incidents: &[Incident],
    now: Millis,
    note: &dyn Fn(&Incident) -> String,
) {
    if incidents.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let rule_w = incidents
        .iter()
        .map(|i| i.rule_name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let host_w = incidents
        .iter()
        .map(|i| i.host_name.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    // Version 2: instance and severity columns, only when some incident has
    // them (a version-1 listing is unchanged).
    let inst_w = incidents
        .iter()
        .filter_map(|i| i.instance.as_ref().map(|x| x.as_str().chars().count()))
        .max()
        .map(|w| w.max(8));
    let sev_w = incidents
        .iter()
        .filter_map(|i| i.severity.as_ref().map(|x| x.len()))
        .max()
        .map(|w| w.max(8));
    let extra = |instance: &str, severity: &str| {
        let mut s = String::new();
        if let Some(w) = inst_w {
            let _ = write!(s, "  {instance:<w$}");
        }
        if let Some(w) = sev_w {
            let _ = write!(s, "  {severity:<w$}");
        }
        s
    };
    let _ = writeln!(
        out,
        "  {:<36}  {:<rule_w$}  {:<host_w$}{}  {:<24}  {:<24}  {:>10}  {:>14}  NOTE",
        "ID",
        "RULE",
        "HOST",
        extra("INSTANCE", "SEVERITY"),
        "START",
        "END",
        "DURATION",
        "TRIGGER VALUE"
    );
    for i in incidents {
        let end = i.end_time.map_or("-".to_owned(), format_rfc3339);
        let took = i.end_time.unwrap_or(now) - i.start_time;
        let took = u64::try_from(took)
            .ok()
            .and_then(|ms| Duration::from_millis(ms / 1000 * 1000))
            .map_or("-".to_owned(), |d| d.to_string());
        let _ = writeln!(
            out,
            "  {:<36}  {:<rule_w$}  {:<host_w$}{}  {:<24}  {:<24}  {:>10}  {:>14}  {}",
            i.id,
            sanitize(&i.rule_name),
            i.host_name,
            extra(
                &i.instance
                    .as_ref()
                    .map_or("-".to_owned(), |x| sanitize(x.as_str())),
                i.severity.as_deref().unwrap_or("-")
            ),
            format_rfc3339(i.start_time),
            end,
            took,
            i.trigger_value,
            note(i)
        );
    }
}

/// Control characters in rule names would garble a terminal.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
