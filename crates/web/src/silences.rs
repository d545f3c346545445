//! Silences and acknowledgements over HTTP (see `docs/api.md`): the only
//! writes this server makes. Each is a record written straight into the
//! alert store by compare-and-set on its version (not fenced: any
//! alerter's API, active or standby, or the CLI may write); the active
//! alerter reads them at every evaluation instant.
//!
//! - `GET /api/v1/silences[?state=active,pending,expired]`, `GET
//!   /api/v1/silences/{id}` (read token);
//! - `POST /api/v1/silences` (create), `PUT /api/v1/silences/{id}` (extend,
//!   change matchers or comment; the body's `version`, when given, must be
//!   the stored one), `POST /api/v1/silences/{id}/expire`, `POST
//!   /api/v1/incidents/{id}/ack` (write token, see [`crate::write`]).
//!
//! Every bad body is a 400 naming the field; a record changed meanwhile is
//! a 409 with the version found.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_model::store::{AlertStore, RECORDS_MAX, Record, RecordKind, StoreError, TickStore};
use metrics_model::time::{Millis, now_ms};
use rules_engine::silence::{SilenceSpec, SilenceStatus, SpecDefaults};
use rules_engine::{Acknowledgement, Silence};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::api::ApiError;
use crate::params::QueryMap;
use crate::write::Writer;

/// A body larger than this is refused (413) before it is read whole.
pub const BODY_MAX: usize = 64 * 1024;

/// Longest acknowledgement author (bytes), as a silence's `createdBy`.
pub const ACK_BY_MAX: usize = rules_engine::silence::CREATED_BY_MAX;

fn read_error<T, A>(state: &AppState<T, A>, e: &StoreError) -> ApiError {
    state
        .store_errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ApiError::unavailable(e)
}

fn write_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::with_status(StatusCode::CONFLICT, e.to_string()),
        StoreError::Unavailable(_) => ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot write to the store: {e}"),
        ),
        other => ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write to the store: {other}"),
        ),
    }
}

/// The body as JSON (an empty body is `{}`).
fn body_json(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad("body", format!("not JSON: {e}")))
}

/// A 400 from a parser's problems: the first one's field is the
/// `parameter`; the message lists them all.
fn problems_error(problems: &[rules_engine::Problem]) -> ApiError {
    let field =
        |p: &rules_engine::Problem| p.path.strip_prefix("body.").unwrap_or(&p.path).to_owned();
    let first = problems.first().map_or_else(|| "body".to_owned(), field);
    let all = problems
        .iter()
        .map(|p| format!("{}: {}", field(p), p.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::field(&first, all)
}

/// A stored silence as the API shows it: its JSON with `status` (at `now`)
/// and `version`.
fn shown(silence: &Silence, version: u64, now: Millis) -> Value {
    let mut v = silence.to_json();
    v["status"] = json!(silence.status(now).as_str());
    v["version"] = json!(version);
    v
}

/// Every readable stored silence with its version; unreadable ones counted.
async fn stored<A: AlertStore>(alerts: &A) -> Result<(Vec<(Silence, u64)>, usize), StoreError> {
    let records = alerts.records(RecordKind::Silence).await?;
    let mut out = Vec::with_capacity(records.len());
    let mut unreadable = 0;
    for r in records {
        match parse_record(&r) {
            Some(s) => out.push((s, r.version)),
            None => unreadable += 1,
        }
    }
    Ok((out, unreadable))
}

fn parse_record(r: &Record) -> Option<Silence> {
    Silence::from_record(r).ok()
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    text.parse::<Uuid>()
        .map_err(|_| ApiError::bad("id", format!("{text:?} is not a silence id (a UUID)")))
}

/// `GET /api/v1/silences`: active ones (soonest to end first), then pending
/// (soonest to start first), then expired (most recent first); `state`
/// filters by a comma-separated list of statuses.
pub async fn list<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    for name in q.keys() {
        if name != "state" {
            return Err(ApiError::bad(name, "unknown parameter; known: state"));
        }
    }
    let v = list_silences(&state.alerts, q.get("state").map(String::as_str), now_ms())
        .await
        .inspect_err(|e| {
            if e.status() == StatusCode::SERVICE_UNAVAILABLE {
                state
                    .store_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })?;
    Ok(Json(v).into_response())
}

/// The silences `state` (a comma-separated list of statuses; `None`: all)
/// asks for, in the order [`list`] gives: `{"now","silences",
/// "unreadableRecords"}`.
pub async fn list_silences<A: AlertStore>(
    alerts: &A,
    state: Option<&str>,
    now: Millis,
) -> Result<Value, ApiError> {
    let mut wanted = [true; 3];
    if let Some(list) = state {
        wanted = [false; 3];
        for item in list.split(',') {
            match item.trim() {
                "active" => wanted[0] = true,
                "pending" => wanted[1] = true,
                "expired" => wanted[2] = true,
                other => {
                    return Err(ApiError::bad(
                        "state",
                        format!(
                            "{other:?} is not a status; use active, pending or expired (comma-separated)"
                        ),
                    ));
                }
            }
        }
    }
    let (mut all, unreadable) = stored(alerts)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    let rank = |s: &Silence| match s.status(now) {
        SilenceStatus::Active => 0usize,
        SilenceStatus::Pending => 1,
        SilenceStatus::Expired => 2,
    };
    all.retain(|(s, _)| wanted[rank(s)]);
    all.sort_by_key(|(s, _)| {
        let r = rank(s);
        let t = match r {
            0 => s.ends_at,
            1 => s.starts_at,
            _ => -s.ends_at,
        };
        (r, t, s.id)
    });
    let silences: Vec<Value> = all.iter().map(|(s, v)| shown(s, *v, now)).collect();
    Ok(json!({ "now": now, "silences": silences, "unreadableRecords": unreadable }))
}

/// `GET /api/v1/silences/{id}`.
pub async fn get<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (all, _) = stored(&state.alerts)
        .await
        .map_err(|e| read_error(&state, &e))?;
    let (s, v) = all
        .into_iter()
        .find(|(s, _)| s.id == id)
        .ok_or_else(|| ApiError::with_status(StatusCode::NOT_FOUND, format!("no silence {id}")))?;
    Ok(Json(shown(&s, v, now_ms())).into_response())
}

/// `POST /api/v1/silences`: the body as the spec's silence (`startsAt`
/// defaults to now, `createdBy` to the write token's name); 201 with the
/// stored silence.
pub async fn create<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Extension(writer): Extension<Writer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value = body_json(&body)?;
    let (shown, id) = create_silence(&state.alerts, &value, writer.name, now_ms()).await?;
    let mut r = (StatusCode::CREATED, Json(shown)).into_response();
    if let Ok(loc) = format!("/api/v1/silences/{id}").parse() {
        r.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(r)
}

/// Creates the silence `value` describes (`startsAt` defaults to `now`,
/// `createdBy` to `created_by`); returns it as listed, and its id.
pub async fn create_silence<A: AlertStore>(
    alerts: &A,
    value: &Value,
    created_by: Option<String>,
    now: Millis,
) -> Result<(Value, Uuid), ApiError> {
    let defaults = SpecDefaults {
        starts_at: Some(now),
        created_by,
        allow_empty_range: false,
    };
    let spec = SilenceSpec::from_json(value, "body", &defaults).map_err(|p| problems_error(&p))?;
    if spec.ends_at <= now {
        return Err(ApiError::field(
            "endsAt",
            "endsAt: is in the past; a silence must end after now",
        ));
    }
    let (all, unreadable) = stored(alerts)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    if all.len() + unreadable >= RECORDS_MAX {
        return Err(ApiError::with_status(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "{RECORDS_MAX} silences are stored already; expired ones are pruned after the incident retention period"
            ),
        ));
    }
    let silence = spec.into_silence(Uuid::new_v4(), now);
    let version = alerts
        .put_record(
            RecordKind::Silence,
            &silence.id.to_string(),
            &silence.to_json().to_string(),
            silence.ends_at,
            0,
        )
        .await
        .map_err(write_error)?;
    tracing::info!(id = %silence.id, created_by = %silence.created_by.escape_debug(), "silence created");
    Ok((shown(&silence, version, now), silence.id))
}

/// Reads silence `id` for a change: 404 when absent.
async fn current<A: AlertStore>(alerts: &A, id: Uuid) -> Result<(Silence, u64), ApiError> {
    let (all, _) = stored(alerts)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    all.into_iter()
        .find(|(s, _)| s.id == id)
        .ok_or_else(|| ApiError::with_status(StatusCode::NOT_FOUND, format!("no silence {id}")))
}

/// 409 unless the body's `version` (when it names one) is the stored one.
fn check_version(id: Uuid, expected: Option<u64>, version: u64) -> Result<(), ApiError> {
    match expected {
        Some(e) if e != version => Err(ApiError::with_status(
            StatusCode::CONFLICT,
            format!("silence {id} is at version {version}, not {e}: read it again"),
        )),
        _ => Ok(()),
    }
}

/// The `version` a body asks to change, if it names one.
fn expected_version(value: &Value) -> Result<Option<u64>, ApiError> {
    match value.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::field(
                "version",
                format!("version: expected a whole number, got {v}"),
            )
        }),
    }
}

async fn write_silence<A: AlertStore>(
    alerts: &A,
    silence: &Silence,
    expected: u64,
    now: Millis,
) -> Result<Value, ApiError> {
    let version = alerts
        .put_record(
            RecordKind::Silence,
            &silence.id.to_string(),
            &silence.to_json().to_string(),
            silence.ends_at,
            expected,
        )
        .await
        .map_err(write_error)?;
    Ok(shown(silence, version, now))
}

/// `PUT /api/v1/silences/{id}`: new matchers, times or comment for a
/// silence that has not expired (keys the body leaves out keep theirs). An expired silence is not changed (409): create a new one.
pub async fn update<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Path(id): Path<String>,
    Extension(_writer): Extension<Writer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let value = body_json(&body)?;
    let expected = expected_version(&value)?;
    if let Some(given) = value.get("id").and_then(Value::as_str)
        && given.parse::<Uuid>().ok() != Some(id)
    {
        return Err(ApiError::field(
            "id",
            "id: differs from the silence in the path",
        ));
    }
    let (old, version) = current(&state.alerts, id).await?;
    let now = now_ms();
    check_version(id, expected, version)?;
    if old.status(now) == SilenceStatus::Expired {
        return Err(ApiError::with_status(
            StatusCode::CONFLICT,
            format!("silence {id} has expired; create a new one"),
        ));
    }
    // Keys the body leaves out keep their values (`{"endsAt": …}` extends).
    let mut merged = old.to_json();
    if let (Some(m), Value::Object(body)) = (merged.as_object_mut(), &value) {
        for (k, v) in body {
            m.insert(k.clone(), v.clone());
        }
    } else {
        return Err(ApiError::bad("body", "expected a JSON object"));
    }
    let defaults = SpecDefaults {
        starts_at: Some(old.starts_at),
        created_by: Some(old.created_by.clone()),
        allow_empty_range: false,
    };
    let spec =
        SilenceSpec::from_json(&merged, "body", &defaults).map_err(|p| problems_error(&p))?;
    if spec.ends_at <= now {
        return Err(ApiError::field(
            "endsAt",
            "endsAt: is in the past; expire the silence instead",
        ));
    }
    let silence = Silence {
        updated_at: now,
        created_at: old.created_at,
        ..spec.into_silence(id, now)
    };
    tracing::info!(id = %id, "silence changed");
    Ok(Json(write_silence(&state.alerts, &silence, version, now).await?).into_response())
}

/// `POST /api/v1/silences/{id}/expire`: it ends now (a pending one gets
/// `startsAt = endsAt = now`); an expired one is answered unchanged.
pub async fn expire<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Path(id): Path<String>,
    Extension(_writer): Extension<Writer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let value = body_json(&body)?;
    Ok(Json(expire_silence(&state.alerts, id, &value, now_ms()).await?).into_response())
}

/// Expires silence `id` as [`expire`] says; returns it as listed.
pub async fn expire_silence<A: AlertStore>(
    alerts: &A,
    id: Uuid,
    value: &Value,
    now: Millis,
) -> Result<Value, ApiError> {
    if let Value::Object(obj) = value
        && let Some(k) = obj.keys().find(|k| *k != "version")
    {
        return Err(ApiError::field(
            k,
            format!("{k}: unknown key; known: version"),
        ));
    }
    let expected = expected_version(value)?;
    let (old, version) = current(alerts, id).await?;
    check_version(id, expected, version)?;
    let silence = match old.status(now) {
        SilenceStatus::Expired => return Ok(shown(&old, version, now)),
        SilenceStatus::Pending => Silence {
            starts_at: now,
            ends_at: now,
            updated_at: now,
            ..old
        },
        SilenceStatus::Active => Silence {
            ends_at: now,
            updated_at: now,
            ..old
        },
    };
    tracing::info!(id = %id, "silence expired");
    write_silence(alerts, &silence, version, now).await
}

/// `POST /api/v1/incidents/{id}/ack`: body `{"by"?, "comment"?}` (`by`
/// defaults to the write token's name); the incident must be open. A
/// second acknowledgement replaces the first.
pub async fn ack<T: TickStore + Clone + 'static, A: AlertStore + Clone + 'static>(
    State(state): State<Arc<AppState<T, A>>>,
    Path(id): Path<String>,
    Extension(writer): Extension<Writer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::bad("id", format!("{id:?} is not an incident id (a UUID)")))?;
    let value = body_json(&body)?;
    let v = ack_incident(&state.alerts, id, &value, writer.name, now_ms()).await?;
    Ok(Json(v).into_response())
}

/// Acknowledges open incident `id` as [`ack`] says (`by` defaults to
/// `writer`); returns the acknowledgement with its `version`.
pub async fn ack_incident<A: AlertStore>(
    alerts: &A,
    id: Uuid,
    value: &Value,
    writer: Option<String>,
    now: Millis,
) -> Result<Value, ApiError> {
    let Value::Object(obj) = value else {
        return Err(ApiError::bad(
            "body",
            "expected a JSON object {\"by\", \"comment\"}",
        ));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["by", "comment"].contains(&k.as_str()))
    {
        return Err(ApiError::field(
            k,
            format!("{k}: unknown key; known: by, comment"),
        ));
    }
    let text = |key: &str, max: usize| -> Result<Option<String>, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > max => Err(ApiError::field(
                key,
                format!("{key}: {} bytes, more than the limit of {max}", s.len()),
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::field(
                key,
                format!("{key}: expected a string, got {other}"),
            )),
        }
    };
    let by = match text("by", ACK_BY_MAX)?.or(writer) {
        Some(b) if !b.trim().is_empty() => b,
        Some(_) => return Err(ApiError::field("by", "by: must not be empty")),
        None => {
            return Err(ApiError::field(
                "by",
                "by: required (the write token has no name)",
            ));
        }
    };
    let comment = text("comment", rules_engine::silence::COMMENT_MAX)?.unwrap_or_default();
    let snapshot = alerts.load().await.map_err(|e| ApiError::unavailable(&e))?;
    let view = incidents::view::view(&snapshot);
    if !view.open.iter().any(|i| i.id == id) {
        return Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            format!("no open incident {id} (only an open incident can be acknowledged)"),
        ));
    }
    let records = alerts
        .records(RecordKind::Acknowledgement)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    let key = id.to_string();
    let version = records
        .iter()
        .find(|r| r.id == key)
        .map_or(0, |r| r.version);
    let ack = Acknowledgement {
        incident_id: id,
        by,
        at: now,
        comment,
    };
    let new_version = alerts
        .put_record(
            RecordKind::Acknowledgement,
            &key,
            &ack.to_json().to_string(),
            Millis::MAX,
            version,
        )
        .await
        .map_err(write_error)?;
    tracing::info!(id = %id, by = %ack.by.escape_debug(), "incident acknowledged");
    let mut v = ack.to_json();
    v["version"] = json!(new_version);
    Ok(v)
}

/// The acknowledgements by incident id (unreadable ones skipped).
pub async fn acknowledgements<A: AlertStore>(
    alerts: &A,
) -> Result<std::collections::HashMap<Uuid, Acknowledgement>, StoreError> {
    Ok(Acknowledgement::by_incident(
        &alerts.records(RecordKind::Acknowledgement).await?,
    ))
}

/// Every readable silence (for the incidents view's "silenced by").
pub async fn silences<A: AlertStore>(alerts: &A) -> Result<Vec<Silence>, StoreError> {
    Ok(stored(alerts)
        .await?
        .0
        .into_iter()
        .map(|(s, _)| s)
        .collect())
}
