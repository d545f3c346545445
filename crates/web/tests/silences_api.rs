//! The silences API through the real router over in-memory stores: create,
//! list, read, change, expire; every bad body a 400 naming its field; the
//! write token and the CSRF checks on every write route; compare-and-set
//! conflicts as 409s. (Acknowledging a real open incident, and the CLI, are
//! exercised through the binary in `bins/bp-alerter/tests/silences_cli.rs`.)

use std::sync::Arc;

use alerter::AlerterStats;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use metrics_model::time::{format_rfc3339, now_ms};
use metrics_model::{MemoryAlertStore, MemoryStore};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use web::write::{WriteAccess, parse_write_tokens};
use web::{AppState, Token, router_with_writes};

const HOST: &str = "127.0.0.1:8081";

fn app(read: Option<&str>, write: &str) -> axum::Router {
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(rules_engine::Config::default()));
    let state = Arc::new(AppState::new(
        MemoryStore::new(),
        MemoryAlertStore::new(),
        Arc::new(AlerterStats::default()),
        rx,
    ));
    let access = WriteAccess {
        tokens: if write.is_empty() {
            Vec::new()
        } else {
            parse_write_tokens(write).unwrap()
        },
        allowed_hosts: Vec::new(),
    };
    router_with_writes(state, read.and_then(Token::new), access)
}

struct Req<'a> {
    method: &'a str,
    uri: String,
    body: String,
    headers: Vec<(&'a str, String)>,
}

impl<'a> Req<'a> {
    fn write(method: &'a str, uri: impl Into<String>, body: &Value, token: &str) -> Req<'a> {
        Req {
            method,
            uri: uri.into(),
            body: body.to_string(),
            headers: vec![
                ("host", HOST.into()),
                ("content-type", "application/json".into()),
                ("authorization", format!("Bearer {token}")),
            ],
        }
    }

    fn get(uri: impl Into<String>, token: Option<&str>) -> Req<'a> {
        let mut headers = vec![("host", HOST.to_owned())];
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        Req {
            method: "GET",
            uri: uri.into(),
            body: String::new(),
            headers,
        }
    }

    fn header(mut self, name: &'a str, value: &str) -> Req<'a> {
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    fn raw_body(mut self, body: impl Into<String>) -> Req<'a> {
        self.body = body.into();
        self
    }
}

async fn send(app: &axum::Router, r: Req<'_>) -> (StatusCode, Value) {
    let mut b = Request::builder().method(r.method).uri(&r.uri);
    for (k, v) in &r.headers {
        b = b.header(*k, v);
    }
    let response = app
        .clone()
        .oneshot(b.body(Body::from(r.body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn in_hours(h: i64) -> String {
    format_rfc3339(now_ms() + h * 3_600_000)
}

/// A 400 naming `field`.
async fn refused(app: &axum::Router, body: Value, field: &str) {
    let (status, v) = send(app, Req::write("POST", "/api/v1/silences", &body, "w1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    assert_eq!(v["parameter"], json!(field), "{body}: {v}");
    assert!(
        v["error"].as_str().unwrap().contains(field),
        "the message names {field}: {v}"
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, step by step
async fn create_list_change_and_expire() {
    let app = app(None, "ops:w1");
    let body = json!({ "matchers": { "rule": "High CPU*", "host": "web-*" }, "endsAt": in_hours(2), "comment": "reboot" });
    let (status, created) = send(&app, Req::write("POST", "/api/v1/silences", &body, "w1")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["createdBy"], "ops", "the token's name");
    assert_eq!(created["status"], "active");
    assert_eq!(created["version"], 1);
    let id = created["id"].as_str().unwrap().to_owned();
    // A pending one, by another author.
    let pending = json!({ "matchers": {}, "startsAt": in_hours(1), "endsAt": in_hours(3), "createdBy": "eve" });
    let (status, p) = send(&app, Req::write("POST", "/api/v1/silences", &pending, "w1")).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["createdBy"], "eve");
    assert_eq!(p["status"], "pending");

    let (status, list) = send(&app, Req::get("/api/v1/silences", None)).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [id.as_str(), p["id"].as_str().unwrap()],
        "active first"
    );
    let (_, only) = send(&app, Req::get("/api/v1/silences?state=pending", None)).await;
    assert_eq!(only["silences"].as_array().unwrap().len(), 1);
    assert_eq!(only["silences"][0]["status"], "pending");
    for (q, param) in [("state=bogus", "state"), ("limit=3", "limit")] {
        let (status, v) = send(&app, Req::get(format!("/api/v1/silences?{q}"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["parameter"], param);
    }
    let (status, one) = send(&app, Req::get(format!("/api/v1/silences/{id}"), None)).await;
    assert_eq!((status, &one["id"]), (StatusCode::OK, &json!(id)));
    let (status, v) = send(&app, Req::get("/api/v1/silences/not-a-uuid", None)).await;
    assert_eq!(
        (status, &v["parameter"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
    let (status, _) = send(
        &app,
        Req::get(format!("/api/v1/silences/{}", uuid::Uuid::new_v4()), None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Extend: keys left out keep their values.
    let uri = format!("/api/v1/silences/{id}");
    let (status, v) = send(
        &app,
        Req::write(
            "PUT",
            &uri,
            &json!({ "endsAt": in_hours(5), "version": 1 }),
            "w1",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 2);
    assert_eq!(v["comment"], "reboot");
    assert_eq!(
        v["matchers"],
        json!({ "rule": "High CPU*", "host": "web-*" })
    );
    assert_eq!(v["createdBy"], "ops");
    assert_eq!(v["createdAt"], created["createdAt"]);
    // A stale version is a conflict, and changes nothing.
    let (status, v) = send(
        &app,
        Req::write("PUT", &uri, &json!({ "comment": "x", "version": 1 }), "w1"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (_, one) = send(&app, Req::get(&uri, None)).await;
    assert_eq!(one["comment"], "reboot");
    let (status, v) = send(
        &app,
        Req::write("PUT", &uri, &json!({ "matchers": { "rule": 3 } }), "w1"),
    )
    .await;
    assert_eq!(
        (status, &v["parameter"]),
        (StatusCode::BAD_REQUEST, &json!("matchers.rule")),
        "{v}"
    );
    let (status, v) = send(
        &app,
        Req::write(
            "PUT",
            &uri,
            &json!({ "id": uuid::Uuid::new_v4().to_string() }),
            "w1",
        ),
    )
    .await;
    assert_eq!(
        (status, &v["parameter"]),
        (StatusCode::BAD_REQUEST, &json!("id")),
        "{v}"
    );

    // Expire: an active one ends now; again is a no-op; then it cannot change.
    let (status, v) = send(
        &app,
        Req::write("POST", format!("{uri}/expire"), &json!({}), "w1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "expired");
    assert_eq!(v["version"], 3);
    let (_, again) = send(
        &app,
        Req::write("POST", format!("{uri}/expire"), &json!({}), "w1"),
    )
    .await;
    assert_eq!(again["version"], 3, "unchanged");
    let (status, _) = send(
        &app,
        Req::write("PUT", &uri, &json!({ "endsAt": in_hours(9) }), "w1"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an expired silence is not changed"
    );
    // A pending one expires with startsAt = endsAt, and reads back.
    let puri = format!("/api/v1/silences/{}/expire", p["id"].as_str().unwrap());
    let (status, v) = send(&app, Req::write("POST", &puri, &json!({}), "w1")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "expired");
    assert_eq!(v["startsAt"], v["endsAt"]);
    let (_, list) = send(&app, Req::get("/api/v1/silences?state=expired", None)).await;
    assert_eq!(list["silences"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["unreadableRecords"], 0);
    let (status, v) = send(
        &app,
        Req::write("POST", &puri, &json!({ "force": true }), "w1"),
    )
    .await;
    assert_eq!(
        (status, &v["parameter"]),
        (StatusCode::BAD_REQUEST, &json!("force"))
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, step by step
async fn bad_bodies_are_400s_naming_the_field() {
    let app = app(None, "w1");
    let ends = in_hours(1);
    refused(&app, json!({ "endsAt": ends }), "matchers").await;
    refused(&app, json!({ "matchers": {}, "endsAt": ends }), "createdBy").await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": ends, "createdBy": "" }),
        "createdBy",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": ends, "createdBy": "a".repeat(257) }),
        "createdBy",
    )
    .await;
    refused(&app, json!({ "matchers": {}, "createdBy": "a" }), "endsAt").await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": "tomorrow", "createdBy": "a" }),
        "endsAt",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": in_hours(-1), "createdBy": "a" }),
        "endsAt",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": {}, "startsAt": in_hours(3), "endsAt": in_hours(2), "createdBy": "a" }),
        "endsAt",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": ends, "createdBy": "a", "comment": "c".repeat(1025) }),
        "comment",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": ends, "createdBy": "a", "comment": 7 }),
        "comment",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": { "hots": "x" }, "endsAt": ends, "createdBy": "a" }),
        "matchers.hots",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": { "host": "a\u{7}b" }, "endsAt": ends, "createdBy": "a" }),
        "matchers.host",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": [], "endsAt": ends, "createdBy": "a" }),
        "matchers",
    )
    .await;
    refused(
        &app,
        json!({ "matchers": {}, "endsAt": ends, "createdBy": "a", "until": 1 }),
        "until",
    )
    .await;
    refused(&app, json!([1, 2]), "body").await;
    // The comment limit is inclusive.
    let (status, v) = send(
        &app,
        Req::write("POST", "/api/v1/silences", &json!({ "matchers": {}, "endsAt": ends, "createdBy": "a", "comment": "c".repeat(1024) }), "w1"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // Nothing refused was stored: only the one accepted above.
    let (_, list) = send(&app, Req::get("/api/v1/silences", None)).await;
    assert_eq!(list["silences"].as_array().unwrap().len(), 1, "{list}");
    for raw in ["{", "not json", "{\"matchers\": {}} trailing"] {
        let (status, v) = send(
            &app,
            Req::write("POST", "/api/v1/silences", &json!({}), "w1").raw_body(raw),
        )
        .await;
        assert_eq!(
            (status, &v["parameter"]),
            (StatusCode::BAD_REQUEST, &json!("body")),
            "{raw}: {v}"
        );
    }
    let huge = format!("{{\"comment\": \"{}\"}}", "x".repeat(70 * 1024));
    let (status, _) = send(
        &app,
        Req::write("POST", "/api/v1/silences", &json!({}), "w1").raw_body(huge),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Acknowledgements: only an open incident; unknown keys and bad values named.
    let ack = format!("/api/v1/incidents/{}/ack", uuid::Uuid::new_v4());
    let (status, v) = send(&app, Req::write("POST", &ack, &json!({ "by": "me" }), "w1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    for (body, field) in [
        (json!({ "by": "me", "note": "x" }), "note"),
        (json!({ "by": 3 }), "by"),
        (json!({}), "by"),
        (
            json!({ "by": "me", "comment": "c".repeat(1025) }),
            "comment",
        ),
    ] {
        let (status, v) = send(&app, Req::write("POST", &ack, &body, "w1")).await;
        assert_eq!(
            (status, &v["parameter"]),
            (StatusCode::BAD_REQUEST, &json!(field)),
            "{body}: {v}"
        );
    }
    let (status, v) = send(
        &app,
        Req::write("POST", "/api/v1/incidents/nope/ack", &json!({}), "w1"),
    )
    .await;
    assert_eq!(
        (status, &v["parameter"]),
        (StatusCode::BAD_REQUEST, &json!("id")),
        "{v}"
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, step by step
async fn every_write_route_needs_the_write_token_and_passes_the_csrf_checks() {
    let app = app(Some("r1"), "ops:w1");
    let id = uuid::Uuid::new_v4();
    let body = json!({ "matchers": {}, "endsAt": in_hours(1) });
    let routes = [
        ("POST", "/api/v1/silences".to_owned()),
        ("PUT", format!("/api/v1/silences/{id}")),
        ("POST", format!("/api/v1/silences/{id}/expire")),
        ("POST", format!("/api/v1/incidents/{id}/ack")),
    ];
    for (method, uri) in &routes {
        let w = || Req::write(method, uri.clone(), &body, "w1");
        let cases = [
            (
                w().header("authorization", "Bearer r1"),
                StatusCode::UNAUTHORIZED,
                "the read token",
            ),
            (
                w().header("authorization", "Bearer nope"),
                StatusCode::UNAUTHORIZED,
                "a wrong token",
            ),
            (
                w().header("content-type", "text/plain"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a form's type",
            ),
            (
                w().header("origin", "http://evil.example"),
                StatusCode::FORBIDDEN,
                "a foreign origin",
            ),
            (
                w().header("sec-fetch-site", "cross-site"),
                StatusCode::FORBIDDEN,
                "cross-site",
            ),
            (
                w().header("host", "rebound.example:8081"),
                StatusCode::FORBIDDEN,
                "a foreign Host",
            ),
        ];
        for (req, want, what) in cases {
            let (status, v) = send(&app, req).await;
            assert_eq!(status, want, "{method} {uri} with {what}: {v}");
            assert!(v["error"].is_string(), "{v}");
        }
        let (status, v) = send(&app, w().header("origin", &format!("http://{HOST}"))).await;
        assert!(
            ![
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            ]
            .contains(&status),
            "{method} {uri} from its own origin with the write token passes the checks: {status} {v}"
        );
    }
    // Reads: the read token or a write token; nothing else.
    assert_eq!(
        send(&app, Req::get("/api/v1/silences", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, Req::get("/api/v1/silences", Some("r1"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Req::get("/api/v1/silences", Some("w1"))).await.0,
        StatusCode::OK
    );
    // Without a write token configured, writes are disabled, even on loopback.
    let closed = self::app(None, "");
    let (status, v) = send(&closed, Req::write("POST", "/api/v1/silences", &body, "w1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        v["error"].as_str().unwrap().contains("BP_API_WRITE_TOKEN"),
        "{v}"
    );
    // The read and write tokens must differ.
    let config = web::HttpConfig {
        token: Token::new("same"),
        write: WriteAccess {
            tokens: parse_write_tokens("ops:same").unwrap(),
            allowed_hosts: Vec::new(),
        },
        ..web::HttpConfig::default()
    };
    assert!(config.check().unwrap_err().contains("differ"));
}
