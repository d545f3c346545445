//! Prints the email notifier's default HTML part for a sample incident
//! (open, or resolved with `resolved` as the argument), as it is sent:
//! `docs/img/email-*.png` are this page rendered by headless Chromium
//! (see docs/notifiers.md for the command).

use std::sync::Arc;

use rules_engine::{Event, Incident, Transition};
use serde_json::json;

fn main() {
    let resolved = std::env::args().nth(1).is_some_and(|a| a == "resolved");
    let notifiers = incidents::notifiers::parse_notifiers(
        Some(
            &json!([{ "name": "mail", "type": "email", "smtp": "smtp://mail.example:587",
                       "from": "bp-monitoring <alerts@example.com>", "to": ["ops@example.com"] }]),
        ),
        "alerting.notifiers",
        Some("https://monitoring.example.com"),
    )
    .expect("the sample notifier is valid");
    let mut inc = Incident {
        id: uuid::Uuid::from_u128(0x5a3b_1e00_0000_4000_8000_0000_0000_0042),
        rule_name: "Filesystem almost full".into(),
        host_name: "web-1".parse().expect("a valid host name"),
        instance: "/var".parse().ok(),
        severity: Some("critical".into()),
        labels: Some(Arc::new([("team".to_owned(), "ops".to_owned())].into())),
        description: Some("Clean /var/log or grow the volume.".into()),
        start_time: 1_764_763_200_000,
        end_time: None,
        trigger_value: 93.456,
    };
    let tr = if resolved {
        inc.end_time = Some(1_764_764_100_000);
        let mut t = Transition::new(Event::Resolved, 1_764_764_100_000, inc);
        t.acknowledged_by = Some("alice".into());
        t
    } else {
        Transition::new(Event::Opened, inc.start_time, inc)
    };
    let t = &notifiers[0].templates;
    println!(
        "<!doctype html><meta charset=\"utf-8\"><title>{}</title>{}",
        t.render("subject", &tr).expect("renders"),
        t.render("html", &tr).expect("renders")
    );
}
