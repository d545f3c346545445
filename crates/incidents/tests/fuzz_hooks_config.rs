//! Fuzzing (property tests) of the `alerting.hooks` configuration parser
//! (`incidents::hooks::HooksConfig::from_json`): no panic on any input,
//! every problem located inside the hooks object, secrets (webhook URL
//! paths and header values) never echoed, valid objects accepted.
//!
//! Case count: `BP_FUZZ_CASES` (default: proptest's default, 256, so CI stays
//! fast). `scripts/fuzz` runs these with 100,000 cases each in release mode
//! with overflow checks on; see docs/fuzzing.md.

use incidents::hooks::config::{HooksConfig, MAX_ATTEMPTS_LIMIT, MAX_CONCURRENCY};
use proptest::prelude::*;
use rules_engine::Problem;
use serde_json::{Value, json};

use test_support::fuzz::*;

// ------------------------------------------------------------------ hooks

const ROOT: &str = "pro.alerting.hooks";
/// Put in URL paths, queries, user info and header values, never anywhere
/// else: no problem message may contain it.
const SECRET: &str = "SECRETtok";

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        // Labels start with "h": a generated "xn--…" label is an invalid
        // IDNA name, which the URL parser rightly refuses.
        "h[a-z0-9\\-]{0,10}(\\.[a-z]{2,5}){0,2}",
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
    ]
}

/// A valid http(s) URL holding the secret somewhere other than the host.
fn secret_url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("http"), Just("https"), Just("HTTPS")],
        host(),
        proptest::option::of(1u16..),
        0usize..3,
    )
        .prop_map(|(scheme, host, port, place)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            match place {
                0 => format!("{scheme}://{host}{port}/hook/{SECRET}"),
                1 => format!("{scheme}://{host}{port}/hook?token={SECRET}"),
                _ => format!("{scheme}://user:{SECRET}@{host}{port}/"),
            }
        })
}

fn headers() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        "[A-Za-z][A-Za-z0-9\\-]{0,15}",
        "[ -~]{0,10}".prop_map(|v| format!("Bearer {SECRET}{v}")),
        0..3,
    )
    .prop_map(|m| json!(m))
}

fn valid_hooks() -> impl Strategy<Value = Value> {
    let webhooks = proptest::collection::vec(
        (secret_url(), proptest::option::of(headers()), any::<bool>()),
        0..4,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (url, headers, named))| {
                let mut w = json!({ "url": url });
                if let Some(h) = headers {
                    w["headers"] = h;
                }
                if named {
                    w["name"] = json!(format!(" hook {i} "));
                }
                w
            })
            .collect::<Vec<_>>()
    });
    (
        proptest::option::of("[a-zA-Z0-9/._\\- ]{0,20}[a-z]"),
        proptest::option::of(duration_text(600_000)),
        proptest::option::of(1..=MAX_ATTEMPTS_LIMIT),
        proptest::option::of(prop_oneof![
            Just(("0s".to_owned(), 0)),
            duration_text(600_000)
        ]),
        proptest::option::of(1..=MAX_CONCURRENCY),
        proptest::option::of("[a-z/]{0,10}node"),
        webhooks,
        proptest::option::of((
            secret_url(),
            proptest::option::of(duration_text(600_000)),
            proptest::option::of(headers()),
        )),
        proptest::option::of((secret_url(), proptest::option::of(duration_text(60_000)))),
    )
        .prop_map(
            |(dir, timeout, attempts, backoff, conc, node, webhooks, am, wd)| {
                let mut h = json!({});
                if let Some(d) = dir {
                    h["directory"] = json!(d);
                }
                if let Some((t, _)) = timeout {
                    h["timeout"] = json!(t);
                }
                if let Some(n) = attempts {
                    h["maxAttempts"] = json!(n);
                }
                if let Some((b, _)) = backoff {
                    h["retryBackoff"] = json!(b);
                }
                if let Some(c) = conc {
                    h["concurrency"] = json!(c);
                }
                if let Some(n) = node {
                    h["node"] = json!(n);
                }
                h["webhooks"] = json!(webhooks);
                if let Some((url, resend, headers)) = am {
                    let mut a = json!({ "url": url });
                    if let Some((r, _)) = resend {
                        a["resendInterval"] = json!(r);
                    }
                    if let Some(hd) = headers {
                        a["headers"] = hd;
                    }
                    h["alertmanager"] = a;
                }
                if let Some((url, t)) = wd {
                    let mut w = json!({ "url": url });
                    if let Some((t, _)) = t {
                        w["timeout"] = json!(t);
                    }
                    h["watchdog"] = w;
                }
                h
            },
        )
}

/// Whether a problem path is at `at` or inside it.
fn within(path: &str, at: &str) -> bool {
    path == at
        || path
            .strip_prefix(at)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// What every result must satisfy.
fn check_hooks(v: &Value) -> Result<Result<HooksConfig, Vec<Problem>>, TestCaseError> {
    let got = HooksConfig::from_json(v, ROOT);
    match &got {
        Ok(c) => {
            prop_assert!(c.max_attempts >= 1 && c.max_attempts <= MAX_ATTEMPTS_LIMIT);
            prop_assert!(c.concurrency >= 1 && c.concurrency <= MAX_CONCURRENCY);
            prop_assert!(!c.timeout.is_zero());
            let mut names: Vec<&str> = c.webhooks.iter().map(|w| w.name.as_str()).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            prop_assert_eq!(names.len(), n, "webhook names repeat");
            let debug = format!("{c:?}");
            prop_assert!(!debug.contains(SECRET), "Debug shows a secret: {}", debug);
        }
        Err(problems) => {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(within(&p.path, ROOT), "{} outside {}", p, ROOT);
                prop_assert!(!p.message.is_empty());
                let shown = p.to_string();
                prop_assert!(
                    !shown.contains(SECRET),
                    "a problem shows a secret: {}",
                    shown
                );
            }
        }
    }
    Ok(got)
}

/// One fault, with the path where it must be reported.
#[derive(Debug, Clone, Copy)]
enum Fault {
    ZeroTimeout,
    AttemptsOutOfRange,
    ConcurrencyNotInteger,
    BackoffNotString,
    EmptyDirectory,
    UnknownKey,
    WebhookBadScheme,
    WebhookNoUrl,
    WebhookBadHeaderName,
    WebhookBadHeaderValue,
    WebhookReservedName,
    AlertmanagerBadResend,
    WatchdogNotObject,
}

fn fault() -> impl Strategy<Value = Fault> {
    proptest::sample::select(vec![
        Fault::ZeroTimeout,
        Fault::AttemptsOutOfRange,
        Fault::ConcurrencyNotInteger,
        Fault::BackoffNotString,
        Fault::EmptyDirectory,
        Fault::UnknownKey,
        Fault::WebhookBadScheme,
        Fault::WebhookNoUrl,
        Fault::WebhookBadHeaderName,
        Fault::WebhookBadHeaderValue,
        Fault::WebhookReservedName,
        Fault::AlertmanagerBadResend,
        Fault::WatchdogNotObject,
    ])
}

/// Injects `f` into `h`; returns the path where it must be reported.
fn inject(h: &mut Value, f: Fault) -> String {
    let mut add_webhook = |w: Value, suffix: &str| {
        let list = h["webhooks"].as_array_mut().unwrap();
        list.push(w);
        format!("{ROOT}.webhooks[{}]{suffix}", list.len() - 1)
    };
    match f {
        Fault::WebhookBadScheme => add_webhook(json!({"url": format!("ftp://x/{SECRET}")}), ".url"),
        Fault::WebhookNoUrl => add_webhook(json!({"name": "no url"}), ".url"),
        Fault::WebhookBadHeaderName => add_webhook(
            json!({"url": "http://x/", "headers": {"bad name": SECRET}}),
            ".headers.bad name",
        ),
        Fault::WebhookBadHeaderValue => add_webhook(
            json!({"url": "http://x/", "headers": {"X-Key": format!("{SECRET}\u{1}")}}),
            ".headers.X-Key",
        ),
        Fault::WebhookReservedName => {
            add_webhook(json!({"url": "http://x/", "name": "directory x"}), ".name")
        }
        Fault::ZeroTimeout => {
            h["timeout"] = json!("0ms");
            format!("{ROOT}.timeout")
        }
        Fault::AttemptsOutOfRange => {
            h["maxAttempts"] = json!(MAX_ATTEMPTS_LIMIT + 1);
            format!("{ROOT}.maxAttempts")
        }
        Fault::ConcurrencyNotInteger => {
            h["concurrency"] = json!(2.5);
            format!("{ROOT}.concurrency")
        }
        Fault::BackoffNotString => {
            h["retryBackoff"] = json!(1000);
            format!("{ROOT}.retryBackoff")
        }
        Fault::EmptyDirectory => {
            h["directory"] = json!("  ");
            format!("{ROOT}.directory")
        }
        Fault::UnknownKey => {
            h["timeOut"] = json!("1s");
            format!("{ROOT}.timeOut")
        }
        Fault::AlertmanagerBadResend => {
            h["alertmanager"] =
                json!({"url": "http://127.0.0.1:9093", "resendInterval": "1 fortnight"});
            format!("{ROOT}.alertmanager.resendInterval")
        }
        Fault::WatchdogNotObject => {
            h["watchdog"] = json!([format!("http://x/{SECRET}")]);
            format!("{ROOT}.watchdog")
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Valid hooks objects are accepted as written.
    #[test]
    fn valid_hooks_are_accepted(h in valid_hooks()) {
        let c = check_hooks(&h)?;
        prop_assert!(c.is_ok(), "{} rejected: {:?}", h, c);
        let c = c.unwrap();
        prop_assert_eq!(c.webhooks.len(), h["webhooks"].as_array().unwrap().len());
        prop_assert_eq!(c.alertmanager.is_some(), h.get("alertmanager").is_some());
        prop_assert_eq!(c.watchdog.is_some(), h.get("watchdog").is_some());
        if let Some(n) = h.get("maxAttempts") {
            prop_assert_eq!(u64::from(c.max_attempts), n.as_u64().unwrap());
        }
        if let Some(t) = h.get("timeout") {
            prop_assert_eq!(c.timeout.to_string().parse::<metrics_model::Duration>().unwrap(),
                t.as_str().unwrap().parse::<metrics_model::Duration>().unwrap());
        }
    }

    /// Injected faults are each reported at their path, and no secret shows.
    #[test]
    fn injected_faults_are_each_reported(
        h in valid_hooks(),
        faults in proptest::collection::vec(fault(), 1..5),
    ) {
        let mut h = h;
        let mut want: Vec<String> = faults.iter().map(|f| inject(&mut h, *f)).collect();
        want.sort();
        want.dedup();
        let problems = check_hooks(&h)?.unwrap_err();
        prop_assert!(problems.len() >= want.len());
        for at in &want {
            prop_assert!(
                problems.iter().any(|p| p.path == *at),
                "no problem at {}: {:?}", at, problems
            );
        }
    }

    /// Valid objects with structural mutations: no panic, no secret shown,
    /// problems inside the object.
    #[test]
    fn mutated_hooks_never_panic(
        h in valid_hooks(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut h = h;
        mutate(&mut h, &mutations);
        let _ = check_hooks(&h)?;
        let _ = HooksConfig::from_optional(Some(&h), ROOT);
    }

    /// Text edits (out-of-range numbers, lone surrogates) on the object's
    /// JSON, parsed the way the alerter reads its configuration file.
    #[test]
    fn hooks_text_edits_never_panic(
        h in valid_hooks(),
        edits in proptest::collection::vec(text_edit(), 1..4),
    ) {
        let text = apply_text_edits(&h.to_string(), &edits);
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let _ = check_hooks(&v)?;
        }
    }

    /// Arbitrary JSON, also under each key.
    #[test]
    fn hooks_arbitrary_json_never_panics(
        v in arb_json(),
        key in proptest::sample::select(vec![
            "directory", "timeout", "maxAttempts", "retryBackoff", "concurrency", "node",
            "webhooks", "alertmanager", "watchdog",
        ]),
        url in prop_oneof![
            "\\PC{0,20}",
            Just("http://".to_owned()),
            Just("http:///x".to_owned()),
            Just("https://[::1".to_owned()),
            Just("http://a:99999/".to_owned()),
            Just("unix:/run/x".to_owned()),
            Just("data:text/plain,x".to_owned()),
            Just("http://%zz/".to_owned()),
        ],
    ) {
        let _ = check_hooks(&v)?;
        let mut under_key = serde_json::Map::new();
        under_key.insert(key.to_owned(), v.clone());
        let _ = check_hooks(&Value::Object(under_key))?;
        let _ = check_hooks(&json!({"webhooks": [{"url": url, "headers": v}], "watchdog": {"url": url}}))?;
    }
}
