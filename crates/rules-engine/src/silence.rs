//! Silences, maintenance windows and acknowledgements: who is told, never
//! what is true (the spec's "Silences and maintenance windows").
//!
//! - [`Matchers`]: `rule`, `host`, `instance`, `severity` globs (with
//!   escapes); an incident without an instance or severity has the empty
//!   string there; a cluster incident's host is `*`.
//! - [`Silence`]: matchers and a time range `startsAt ≤ t < endsAt`, with
//!   who made it and why; parsed from JSON with every problem named by its
//!   field ([`SilenceSpec::from_json`]).
//! - [`MaintenanceWindow`]: a recurring silence in the configuration
//!   (weekdays, local `start`/`end`, an IANA time zone through `chrono-tz`),
//!   DST gaps and overlaps as the spec says.
//! - [`Muting`]: what mutes an incident at an instant.
//! - [`NotifyGate`]: the spec's notification rules over an engine's
//!   transitions — opens held while muted and released at the first unmuted
//!   instant, resolves notified exactly when their open was.
//! - [`Acknowledgement`]: who acknowledged an open incident, when and why.

use std::collections::BTreeMap;

use chrono::{
    Datelike, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike,
};
use chrono_tz::Tz;
use metrics_model::glob::Glob;
use metrics_model::time::{Millis, format_rfc3339, parse_rfc3339};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::{Problem, Problems, json_kind, unknown_keys};
use crate::incident::{Event, Incident, Transition};

/// The keys of a `matchers` object.
pub const MATCHER_KEYS: [&str; 4] = ["rule", "host", "instance", "severity"];
/// The longest `comment`, in bytes.
pub const COMMENT_MAX: usize = 1024;
/// The longest `createdBy` (and acknowledgement `by`), in bytes.
pub const CREATED_BY_MAX: usize = 256;
/// The longest matcher pattern, in bytes.
pub const PATTERN_MAX: usize = 1024;

/// Globs on an incident's rule name, host name, instance and severity; an
/// absent matcher matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matchers {
    /// On the rule name.
    pub rule: Option<Glob>,
    /// On the host name (`*` for a cluster incident).
    pub host: Option<Glob>,
    /// On the instance (the empty string when the incident has none).
    pub instance: Option<Glob>,
    /// On the severity (the empty string when the incident has none).
    pub severity: Option<Glob>,
}

impl Matchers {
    /// Whether every matcher matches `incident`.
    pub fn matches(&self, incident: &Incident) -> bool {
        let ok = |glob: &Option<Glob>, name: &str| glob.as_ref().is_none_or(|g| g.matches(name));
        ok(&self.rule, &incident.rule_name)
            && ok(&self.host, incident.host_name.as_str())
            && ok(
                &self.instance,
                incident
                    .instance
                    .as_ref()
                    .map_or("", metrics_model::Instance::as_str),
            )
            && ok(&self.severity, incident.severity.as_deref().unwrap_or(""))
    }

    /// Whether no matcher is set (everything matches).
    pub fn is_empty(&self) -> bool {
        self.rule.is_none()
            && self.host.is_none()
            && self.instance.is_none()
            && self.severity.is_none()
    }

    /// The matchers as JSON: an object with the set ones as written.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (key, glob) in self.entries() {
            if let Some(g) = glob {
                m.insert(key.to_owned(), Value::String(g.as_str().to_owned()));
            }
        }
        Value::Object(m)
    }

    fn entries(&self) -> [(&'static str, &Option<Glob>); 4] {
        [
            ("rule", &self.rule),
            ("host", &self.host),
            ("instance", &self.instance),
            ("severity", &self.severity),
        ]
    }

    /// Parses a `matchers` object at `path`, reporting problems into `p`.
    pub fn parse(value: &Value, path: &str, p: &mut Problems) -> Matchers {
        let Value::Object(obj) = value else {
            p.push(
                path,
                format!("expected an object, got {}", json_kind(value)),
                None,
            );
            return Matchers::default();
        };
        p.0.extend(unknown_keys(obj, path, &MATCHER_KEYS, None));
        let mut get = |key: &str| -> Option<Glob> {
            let v = obj.get(key)?;
            let at = format!("{path}.{key}");
            match v {
                Value::Null => None,
                Value::String(s) => {
                    if s.len() > PATTERN_MAX {
                        p.push(at, format!("longer than {PATTERN_MAX} bytes"), None);
                        None
                    } else if s.chars().any(char::is_control) {
                        p.push(at, "holds a control character", None);
                        None
                    } else {
                        Some(Glob::with_escapes(s))
                    }
                }
                other => {
                    p.push(
                        at,
                        format!("expected a glob string, got {}", json_kind(other)),
                        None,
                    );
                    None
                }
            }
        };
        Matchers {
            rule: get("rule"),
            host: get("host"),
            instance: get("instance"),
            severity: get("severity"),
        }
    }
}

/// A silence: while active, the incidents its matchers match are not told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Its identity (a UUID, assigned when it is created).
    pub id: Uuid,
    /// Which incidents it mutes.
    pub matchers: Matchers,
    /// Active from this instant (ms)…
    pub starts_at: Millis,
    /// …until just before this one (ms); always > `starts_at`.
    pub ends_at: Millis,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// When it was created (ms).
    pub created_at: Millis,
    /// When it was last changed (ms).
    pub updated_at: Millis,
}

/// Where a silence stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceStatus {
    /// It starts later.
    Pending,
    /// It mutes now.
    Active,
    /// It has ended.
    Expired,
}

impl SilenceStatus {
    /// `pending`, `active` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceStatus::Pending => "pending",
            SilenceStatus::Active => "active",
            SilenceStatus::Expired => "expired",
        }
    }
}

impl Silence {
    /// Whether it is active at `t`: `startsAt ≤ t < endsAt`.
    pub fn is_active(&self, t: Millis) -> bool {
        self.starts_at <= t && t < self.ends_at
    }

    /// Whether it mutes `incident` at `t`.
    pub fn mutes(&self, incident: &Incident, t: Millis) -> bool {
        self.is_active(t) && self.matchers.matches(incident)
    }

    /// Pending, active or expired at `t`.
    pub fn status(&self, t: Millis) -> SilenceStatus {
        if t < self.starts_at {
            SilenceStatus::Pending
        } else if t < self.ends_at {
            SilenceStatus::Active
        } else {
            SilenceStatus::Expired
        }
    }

    /// The stored and API form: `{"id","matchers","startsAt","endsAt",
    /// "comment","createdBy","createdAt","updatedAt"}`, times RFC 3339.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "matchers": self.matchers.to_json(),
            "startsAt": format_rfc3339(self.starts_at),
            "endsAt": format_rfc3339(self.ends_at),
            "comment": self.comment,
            "createdBy": self.created_by,
            "createdAt": format_rfc3339(self.created_at),
            "updatedAt": format_rfc3339(self.updated_at),
        })
    }

    /// A silence record of the store (its JSON as [`Silence::to_json`]
    /// wrote it).
    pub fn from_record(record: &metrics_model::store::Record) -> Result<Silence, String> {
        let v: Value = serde_json::from_str(&record.json).map_err(|e| e.to_string())?;
        Silence::from_stored(&v)
    }

    /// Reads a stored silence back (as [`Silence::to_json`] wrote it).
    pub fn from_stored(value: &Value) -> Result<Silence, String> {
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok())
            .ok_or("no id")?;
        let stored = SpecDefaults {
            allow_empty_range: true,
            ..SpecDefaults::default()
        };
        let spec = SilenceSpec::from_json(value, "silence", &stored).map_err(|p| {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let time = |key: &str| {
            value
                .get(key)
                .and_then(parse_time)
                .ok_or(format!("no {key}"))
        };
        Ok(Silence {
            id,
            matchers: spec.matchers,
            starts_at: spec.starts_at,
            ends_at: spec.ends_at,
            comment: spec.comment,
            created_by: spec.created_by,
            created_at: time("createdAt")?,
            updated_at: time("updatedAt")?,
        })
    }
}

/// A silence as written by a user (API body, CLI, replay file), before it
/// gets an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceSpec {
    /// Which incidents.
    pub matchers: Matchers,
    /// From (ms).
    pub starts_at: Millis,
    /// Until (ms).
    pub ends_at: Millis,
    /// Why (≤ 1,024 bytes).
    pub comment: String,
    /// Who.
    pub created_by: String,
}

/// What [`SilenceSpec::from_json`] uses for absent keys.
#[derive(Debug, Clone, Default)]
pub struct SpecDefaults {
    /// `startsAt` when absent (the API: now); `None`: required.
    pub starts_at: Option<Millis>,
    /// `createdBy` when absent (a named write token); `None`: required.
    pub created_by: Option<String>,
    /// Accept `endsAt == startsAt` (an expired silence as stored: expiring
    /// a pending silence sets both to the instant it was expired).
    pub allow_empty_range: bool,
}

/// The keys a silence may have as written by a user (`id`, `createdAt`,
/// `updatedAt`, `status` and `version` are the store's, accepted and
/// ignored so that a listed silence can be sent back).
pub const SILENCE_KEYS: [&str; 10] = [
    "matchers",
    "startsAt",
    "endsAt",
    "comment",
    "createdBy",
    "id",
    "createdAt",
    "updatedAt",
    "status",
    "version",
];

/// A time written as milliseconds since the epoch or RFC 3339.
pub fn parse_time(value: &Value) -> Option<Millis> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => parse_rfc3339(s),
        _ => None,
    }
}

impl SilenceSpec {
    /// Parses a silence at `path`; every problem is named by its field.
    #[allow(clippy::too_many_lines)] // one check per field, in order
    pub fn from_json(
        value: &Value,
        path: &str,
        defaults: &SpecDefaults,
    ) -> Result<SilenceSpec, Vec<Problem>> {
        let mut p = Problems::default();
        let Value::Object(obj) = value else {
            p.push(
                path,
                format!("expected a silence object, got {}", json_kind(value)),
                None,
            );
            return Err(p.0);
        };
        p.0.extend(unknown_keys(obj, path, &SILENCE_KEYS, None));
        let matchers = match obj.get("matchers") {
            None | Some(Value::Null) => {
                p.push(
                    format!("{path}.matchers"),
                    "required (an object of rule, host, instance, severity globs; {} mutes everything)",
                    None,
                );
                Matchers::default()
            }
            Some(v) => Matchers::parse(v, &format!("{path}.matchers"), &mut p),
        };
        let mut time = |key: &str, default: Option<Millis>| -> Option<Millis> {
            match obj.get(key) {
                None | Some(Value::Null) => {
                    if default.is_none() {
                        p.push(
                            format!("{path}.{key}"),
                            "required (milliseconds since the epoch or an RFC 3339 time)",
                            None,
                        );
                    }
                    default
                }
                Some(v) => {
                    let t = parse_time(v);
                    if t.is_none() {
                        p.push(
                            format!("{path}.{key}"),
                            format!(
                                "expected milliseconds since the epoch or an RFC 3339 time, got {v}"
                            ),
                            None,
                        );
                    }
                    t
                }
            }
        };
        let starts_at = time("startsAt", defaults.starts_at);
        let ends_at = time("endsAt", None);
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && (e < s || (e == s && !defaults.allow_empty_range))
        {
            p.push(
                format!("{path}.endsAt"),
                format!(
                    "must be after startsAt ({} ≤ {})",
                    format_rfc3339(e),
                    format_rfc3339(s)
                ),
                None,
            );
        }
        let mut text = |key: &str, max: usize, default: Option<&str>| -> String {
            match obj.get(key) {
                None | Some(Value::Null) => {
                    if let Some(d) = default {
                        return d.to_owned();
                    }
                    p.push(format!("{path}.{key}"), "required", None);
                    String::new()
                }
                Some(Value::String(s)) if s.len() > max => {
                    p.push(
                        format!("{path}.{key}"),
                        format!("{} bytes, more than the limit of {max}", s.len()),
                        None,
                    );
                    String::new()
                }
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    p.push(
                        format!("{path}.{key}"),
                        format!("expected a string, got {}", json_kind(other)),
                        None,
                    );
                    String::new()
                }
            }
        };
        let comment = text("comment", COMMENT_MAX, Some(""));
        let created_by = text("createdBy", CREATED_BY_MAX, defaults.created_by.as_deref());
        if obj.contains_key("createdBy") && created_by.trim().is_empty() && p.0.is_empty() {
            p.push(format!("{path}.createdBy"), "must not be empty", None);
        }
        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(SilenceSpec {
            matchers,
            starts_at: starts_at.unwrap_or_default(),
            ends_at: ends_at.unwrap_or_default(),
            comment,
            created_by,
        })
    }

    /// The silence with an id and creation time.
    pub fn into_silence(self, id: Uuid, now: Millis) -> Silence {
        Silence {
            id,
            matchers: self.matchers,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            comment: self.comment,
            created_by: self.created_by,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Parses a replay silences file: a JSON array of silences (ids are
/// assigned in order). Problems name the silence by its index.
pub fn silences_from_json(value: &Value) -> Result<Vec<Silence>, Vec<Problem>> {
    let Value::Array(items) = value else {
        return Err(vec![Problem {
            path: "$".into(),
            message: format!(
                "expected a JSON array of silences, got {}",
                json_kind(value)
            ),
            rule: None,
        }]);
    };
    let defaults = SpecDefaults {
        starts_at: None,
        created_by: Some(String::new()),
        allow_empty_range: false,
    };
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match SilenceSpec::from_json(item, &format!("silences[{i}]"), &defaults) {
            Ok(spec) => {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| Uuid::from_u128(i as u128 + 1));
                out.push(spec.into_silence(id, 0));
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A day of the week, Monday first.
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The keys of a maintenance window.
pub const MAINTENANCE_KEYS: [&str; 6] =
    ["name", "matchers", "weekdays", "start", "end", "timeZone"];

/// A recurring silence from the configuration (`alerting.maintenance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Its name (unique in the configuration).
    pub name: String,
    /// Which incidents.
    pub matchers: Matchers,
    /// The weekdays it opens on, Monday first.
    pub weekdays: [bool; 7],
    /// Local opening time.
    pub start: NaiveTime,
    /// Local closing time (on the next day when ≤ `start`).
    pub end: NaiveTime,
    /// The IANA time zone.
    pub time_zone: Tz,
}

impl MaintenanceWindow {
    /// The window that opens on local date `date` (whatever its weekday):
    /// `[open, close)` in ms.
    fn on(&self, date: NaiveDate) -> (Millis, Millis) {
        let open = first_instant_at_or_after(self.time_zone, date, self.start);
        let end_date = if self.end <= self.start {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        let close = first_instant_at_or_after(self.time_zone, end_date, self.end);
        (open, close)
    }

    /// Whether it is open at `t`.
    pub fn is_open(&self, t: Millis) -> bool {
        self.open_range_at(t).is_some()
    }

    /// The `[open, close)` range that holds `t`, if the window is open then.
    pub fn open_range_at(&self, t: Millis) -> Option<(Millis, Millis)> {
        let local = self
            .time_zone
            .timestamp_millis_opt(t)
            .single()?
            .date_naive();
        // A window opens on its date and closes that day or the next: the
        // one holding t opened on t's local date or the day before.
        for date in [local.pred_opt()?, local] {
            if !self.weekdays[date.weekday().num_days_from_monday() as usize] {
                continue;
            }
            let (open, close) = self.on(date);
            if open <= t && t < close {
                return Some((open, close));
            }
        }
        None
    }

    /// The next `[open, close)` range that ends after `t` (the current one
    /// when open), within the next 8 days.
    pub fn next_range(&self, t: Millis) -> Option<(Millis, Millis)> {
        let local = self
            .time_zone
            .timestamp_millis_opt(t)
            .single()?
            .date_naive();
        let mut date = local.pred_opt()?;
        for _ in 0..9 {
            if self.weekdays[date.weekday().num_days_from_monday() as usize] {
                let (open, close) = self.on(date);
                if close > t && open < close {
                    return Some((open, close));
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// Whether it mutes `incident` at `t`.
    pub fn mutes(&self, incident: &Incident, t: Millis) -> bool {
        self.matchers.matches(incident) && self.is_open(t)
    }

    /// As written in a configuration.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "matchers": self.matchers.to_json(),
            "weekdays": WEEKDAYS.iter().zip(self.weekdays).filter(|(_, on)| *on).map(|(d, _)| *d).collect::<Vec<_>>(),
            "start": self.start.format("%H:%M").to_string(),
            "end": self.end.format("%H:%M").to_string(),
            "timeZone": self.time_zone.name(),
        })
    }
}

/// The first instant whose local wall-clock time on `date` in `tz` is ≥
/// `time`: the instant of that local time when it exists (its first
/// occurrence in an overlap), else the first instant after the gap.
fn first_instant_at_or_after(tz: Tz, date: NaiveDate, time: NaiveTime) -> Millis {
    let mut local = date.and_time(time);
    // Gaps are whole minutes (at most a few hours) in every zone's rules.
    for _ in 0..(48 * 60) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(dt) => return dt.timestamp_millis(),
            LocalResult::Ambiguous(first, _) => return first.timestamp_millis(),
            LocalResult::None => {
                // Step to the next whole minute.
                let next = local + ChronoDuration::minutes(1);
                local = next.with_second(0).unwrap_or(next);
            }
        }
    }
    // Unreachable with real zone data; treat the local time as UTC.
    date.and_time(time).and_utc().timestamp_millis()
}

/// Parses `alerting.maintenance` (a list) at `path`.
#[allow(clippy::too_many_lines)] // one check per key, in order
pub fn parse_maintenance(value: &Value, path: &str, p: &mut Problems) -> Vec<MaintenanceWindow> {
    let Value::Array(items) = value else {
        p.push(
            path,
            format!(
                "expected a list of maintenance windows, got {}",
                json_kind(value)
            ),
            None,
        );
        return Vec::new();
    };
    let mut out: Vec<MaintenanceWindow> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::Object(obj) = item else {
            p.push(
                &at,
                format!(
                    "expected a maintenance window object, got {}",
                    json_kind(item)
                ),
                None,
            );
            continue;
        };
        let before = p.0.len();
        p.0.extend(unknown_keys(obj, &at, &MAINTENANCE_KEYS, None));
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(Value::String(_)) => {
                p.push(format!("{at}.name"), "must not be empty", None);
                String::new()
            }
            None | Some(Value::Null) => {
                p.push(format!("{at}.name"), "required", None);
                String::new()
            }
            Some(other) => {
                p.push(
                    format!("{at}.name"),
                    format!("expected a string, got {}", json_kind(other)),
                    None,
                );
                String::new()
            }
        };
        if !name.is_empty() && out.iter().any(|w| w.name == name) {
            p.push(
                format!("{at}.name"),
                format!("another maintenance window is named {name:?}"),
                None,
            );
        }
        let matchers = match obj.get("matchers") {
            None | Some(Value::Null) => Matchers::default(),
            Some(v) => Matchers::parse(v, &format!("{at}.matchers"), p),
        };
        let weekdays = match obj.get("weekdays") {
            None | Some(Value::Null) => [true; 7],
            Some(Value::Array(days)) => {
                let mut set = [false; 7];
                for (j, d) in days.iter().enumerate() {
                    match d
                        .as_str()
                        .and_then(|s| WEEKDAYS.iter().position(|w| w.eq_ignore_ascii_case(s)))
                    {
                        Some(k) => set[k] = true,
                        None => p.push(
                            format!("{at}.weekdays[{j}]"),
                            format!("expected one of {}, got {d}", WEEKDAYS.join(", ")),
                            None,
                        ),
                    }
                }
                if days.is_empty() {
                    p.push(
                        format!("{at}.weekdays"),
                        "is empty: the window would never open (leave it out for every day)",
                        None,
                    );
                }
                set
            }
            Some(other) => {
                p.push(
                    format!("{at}.weekdays"),
                    format!("expected a list of weekdays, got {}", json_kind(other)),
                    None,
                );
                [true; 7]
            }
        };
        let mut hhmm = |key: &str| -> NaiveTime {
            let parsed = match obj.get(key) {
                Some(Value::String(s)) => parse_hhmm(s),
                _ => None,
            };
            parsed.unwrap_or_else(|| {
                let got = obj
                    .get(key)
                    .map_or_else(|| "nothing".to_owned(), ToString::to_string);
                p.push(
                    format!("{at}.{key}"),
                    format!("expected a local time \"HH:MM\" (00:00 to 23:59), got {got}"),
                    None,
                );
                NaiveTime::MIN
            })
        };
        let start = hhmm("start");
        let end = hhmm("end");
        let time_zone = match obj.get("timeZone") {
            None | Some(Value::Null) => Tz::UTC,
            Some(Value::String(s)) => s.parse::<Tz>().unwrap_or_else(|_| {
                p.push(
                    format!("{at}.timeZone"),
                    format!("unknown time zone {s:?}; expected an IANA name such as \"Europe/Paris\" or \"UTC\""),
                    None,
                );
                Tz::UTC
            }),
            Some(other) => {
                p.push(format!("{at}.timeZone"), format!("expected an IANA time zone name, got {}", json_kind(other)), None);
                Tz::UTC
            }
        };
        if p.0.len() == before {
            out.push(MaintenanceWindow {
                name,
                matchers,
                weekdays,
                start,
                end,
                time_zone,
            });
        }
    }
    out
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

/// What mutes incidents: the current silences and the configured
/// maintenance windows.
#[derive(Debug, Clone, Default)]
pub struct Muting {
    /// Silences (any status; only active ones mute).
    pub silences: Vec<Silence>,
    /// Maintenance windows.
    pub windows: Vec<MaintenanceWindow>,
}

impl Muting {
    /// Whether anything mutes `incident` at `t`.
    pub fn mutes(&self, incident: &Incident, t: Millis) -> bool {
        self.silences.iter().any(|s| s.mutes(incident, t))
            || self.windows.iter().any(|w| w.mutes(incident, t))
    }

    /// Whether nothing can ever mute.
    pub fn is_empty(&self) -> bool {
        self.silences.is_empty() && self.windows.is_empty()
    }

    /// Silences active at `t`.
    pub fn active_silences(&self, t: Millis) -> usize {
        self.silences.iter().filter(|s| s.is_active(t)).count()
    }
}

/// The spec's notification rules over an engine's transitions.
///
/// An open is notified at the first evaluation instant (its own or later)
/// at which the incident is still open and nothing mutes it; while it waits
/// it is *held*. A resolve is notified exactly when its open was. The gate
/// remembers the held opens (by incident id, in the order they opened);
/// the caller persists the fact with the incident's state
/// ([`crate::IncidentState::held`]) and rebuilds the gate from it.
#[derive(Debug, Clone, Default)]
pub struct NotifyGate {
    held: BTreeMap<Uuid, Transition>,
    order: Vec<Uuid>,
}

/// What one instant changed in the gate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateStep {
    /// Transitions to notify now, in order: this instant's (in the engine's
    /// order), then released opens (in the order they opened). A released
    /// open carries `notified_at`.
    pub notify: Vec<Transition>,
    /// Opens of this instant that are now held.
    pub held: Vec<Transition>,
    /// Held opens released this instant (also in `notify`).
    pub released: Vec<Transition>,
    /// Resolves not notified because their open never was.
    pub suppressed: Vec<Transition>,
}

impl NotifyGate {
    /// A gate holding these opens (restored from stored states).
    pub fn with_held(opens: impl IntoIterator<Item = Transition>) -> NotifyGate {
        let mut gate = NotifyGate::default();
        let mut opens: Vec<Transition> = opens.into_iter().collect();
        opens.sort_by(|a, b| a.at.cmp(&b.at).then(a.incident.id.cmp(&b.incident.id)));
        for o in opens {
            gate.order.push(o.incident.id);
            gate.held.insert(o.incident.id, o);
        }
        gate
    }

    /// The held opens, in the order they opened.
    pub fn held(&self) -> impl Iterator<Item = &Transition> {
        self.order.iter().filter_map(|id| self.held.get(id))
    }

    /// Whether the open of incident `id` is held.
    pub fn is_held(&self, id: &Uuid) -> bool {
        self.held.contains_key(id)
    }

    /// Number of held opens.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no open is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Applies the rules at instant `t` to the transitions the engine made
    /// at `t`.
    pub fn step(&mut self, t: Millis, transitions: &[Transition], muting: &Muting) -> GateStep {
        let mut out = GateStep::default();
        for tr in transitions {
            match tr.event {
                Event::Opened => {
                    if muting.mutes(&tr.incident, t) {
                        self.order.push(tr.incident.id);
                        self.held.insert(tr.incident.id, tr.clone());
                        out.held.push(tr.clone());
                    } else {
                        out.notify.push(tr.clone());
                    }
                }
                Event::Resolved => {
                    if self.held.remove(&tr.incident.id).is_some() {
                        self.order.retain(|id| *id != tr.incident.id);
                        out.suppressed.push(tr.clone());
                    } else {
                        out.notify.push(tr.clone());
                    }
                }
            }
        }
        if !self.held.is_empty() {
            let mut keep = Vec::with_capacity(self.order.len());
            for id in std::mem::take(&mut self.order) {
                let Some(open) = self.held.get(&id) else {
                    continue;
                };
                if open.at < t
                    && !muting.mutes(&open.incident, t)
                    && let Some(mut released) = self.held.remove(&id)
                {
                    released.notified_at = Some(t);
                    out.released.push(released.clone());
                    out.notify.push(released);
                } else {
                    keep.push(id);
                }
            }
            self.order = keep;
        }
        out
    }
}

/// An acknowledgement of an open incident: who, when, why. It changes
/// nothing but what is shown (and the resolve payload's
/// `acknowledgedBy`/`acknowledgedAt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The incident.
    pub incident_id: Uuid,
    /// Who.
    pub by: String,
    /// When (ms).
    pub at: Millis,
    /// Why (≤ 1,024 bytes).
    pub comment: String,
}

impl Acknowledgement {
    /// `{"incidentId","by","at","comment"}`, `at` in RFC 3339.
    pub fn to_json(&self) -> Value {
        json!({
            "incidentId": self.incident_id.to_string(),
            "by": self.by,
            "at": format_rfc3339(self.at),
            "comment": self.comment,
        })
    }

    /// An acknowledgement record of the store, if readable.
    pub fn from_record(record: &metrics_model::store::Record) -> Option<Acknowledgement> {
        Acknowledgement::from_json(&serde_json::from_str(&record.json).ok()?)
    }

    /// The readable acknowledgement records, by incident id.
    pub fn by_incident(
        records: &[metrics_model::store::Record],
    ) -> std::collections::HashMap<Uuid, Acknowledgement> {
        records
            .iter()
            .filter_map(Acknowledgement::from_record)
            .map(|a| (a.incident_id, a))
            .collect()
    }

    /// Reads one back.
    pub fn from_json(value: &Value) -> Option<Acknowledgement> {
        Some(Acknowledgement {
            incident_id: value.get("incidentId")?.as_str()?.parse().ok()?,
            by: value.get("by")?.as_str()?.to_owned(),
            at: parse_time(value.get("at")?)?,
            comment: value
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn window(start: &str, end: &str, tz: &str, weekdays: Option<Value>) -> MaintenanceWindow {
        let mut v = json!({"name": "w", "start": start, "end": end, "timeZone": tz});
        if let Some(w) = weekdays {
            v["weekdays"] = w;
        }
        let mut p = Problems::default();
        let mut ws = parse_maintenance(&Value::Array(vec![v]), "maintenance", &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        ws.remove(0)
    }

    fn utc(text: &str) -> Millis {
        parse_rfc3339(text).unwrap()
    }

    /// The instant a window opens on a date, by scanning every minute of
    /// the day (independent of the implementation's stepping).
    fn scan_open(tz: Tz, date: NaiveDate, time: NaiveTime) -> Millis {
        let start = utc(&format!("{date}T00:00:00Z")) - 86_400_000;
        let mut t = start;
        loop {
            let local = Utc
                .timestamp_millis_opt(t)
                .unwrap()
                .with_timezone(&tz)
                .naive_local();
            if local.date() == date && local.time() >= time {
                return t;
            }
            t += 60_000;
        }
    }

    #[test]
    fn european_spring_gap_and_autumn_overlap() {
        // Europe/Paris: 2026-03-29 02:00 → 03:00 (gap), 2026-10-25 03:00 → 02:00 (overlap).
        let w = window("02:30", "04:00", "Europe/Paris", None);
        let tz: Tz = "Europe/Paris".parse().unwrap();
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let (open, close) = w.on(spring);
        // 02:30 does not exist: the first instant after the gap is 03:00 CEST = 01:00Z.
        assert_eq!(open, utc("2026-03-29T01:00:00Z"));
        assert_eq!(open, scan_open(tz, spring, w.start));
        assert_eq!(close, utc("2026-03-29T02:00:00Z"));
        assert!(!w.is_open(utc("2026-03-29T00:59:59.999Z")));
        assert!(w.is_open(utc("2026-03-29T01:00:00Z")));
        assert!(!w.is_open(utc("2026-03-29T02:00:00Z")));
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        let (open, close) = w.on(autumn);
        // 02:30 happens twice: the first (CEST, +02:00) = 00:30Z.
        assert_eq!(open, utc("2026-10-25T00:30:00Z"));
        assert_eq!(open, scan_open(tz, autumn, w.start));
        // 04:00 CET = 03:00Z: the window lasts 2.5 h that day.
        assert_eq!(close, utc("2026-10-25T03:00:00Z"));
        assert!(
            w.is_open(utc("2026-10-25T01:30:00Z")),
            "second 02:30 is inside"
        );
    }

    #[test]
    fn american_gap_and_overlap_with_an_overnight_window() {
        // America/New_York: 2026-03-08 02:00 → 03:00, 2026-11-01 02:00 → 01:00.
        let w = window("01:30", "02:15", "America/New_York", Some(json!(["sun"])));
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        // Opens 01:30 EST = 06:30Z; 02:15 does not exist: closes at 03:00 EDT = 07:00Z.
        assert_eq!(
            w.on(spring),
            (utc("2026-03-08T06:30:00Z"), utc("2026-03-08T07:00:00Z"))
        );
        let autumn = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        // 01:30 twice: first (EDT) = 05:30Z; 02:15 EST = 07:15Z.
        assert_eq!(
            w.on(autumn),
            (utc("2026-11-01T05:30:00Z"), utc("2026-11-01T07:15:00Z"))
        );
        assert!(w.is_open(utc("2026-11-01T06:45:00Z")), "the second 01:45");
        // Sunday only: the Monday after is closed at 01:45 local.
        assert!(!w.is_open(utc("2026-11-02T06:45:00Z")));
        // Overnight: 22:00 → 06:00 on Saturdays closes Sunday 06:00.
        let n = window("22:00", "06:00", "America/New_York", Some(json!(["sat"])));
        assert!(n.is_open(utc("2026-11-01T10:59:00Z")), "Sunday 05:59 EST");
        assert!(!n.is_open(utc("2026-11-01T11:00:00Z")), "Sunday 06:00 EST");
        assert!(n.is_open(utc("2026-11-01T02:00:00Z")), "Saturday 22:00 EDT");
        assert!(!n.is_open(utc("2026-11-01T01:59:00Z")));
    }

    #[test]
    fn bad_windows_are_named() {
        let mut p = Problems::default();
        let v = json!([
            {"name": "a", "start": "25:00", "end": "1:00", "timeZone": "Mars/Olympus", "weekdays": ["mon", "funday"], "matchers": {"rack": "x"}},
            {"start": "01:00", "end": "02:00"},
            {"name": "a", "start": "01:00", "end": "02:00", "weekdays": []}
        ]);
        let ws = parse_maintenance(&v, "alerting.maintenance", &mut p);
        assert!(ws.is_empty());
        let text: Vec<String> = p.0.iter().map(ToString::to_string).collect();
        for want in [
            "alerting.maintenance[0].start",
            "alerting.maintenance[0].end",
            "alerting.maintenance[0].timeZone",
            "alerting.maintenance[0].weekdays[1]",
            "alerting.maintenance[0].matchers.rack",
            "alerting.maintenance[1].name",
            "alerting.maintenance[2].weekdays",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "{want} not in {text:?}"
            );
        }
    }

    #[test]
    fn bad_silences_are_named() {
        let d = SpecDefaults::default();
        let cases = [
            (
                json!({"matchers": {}, "startsAt": 2000, "endsAt": 1000, "createdBy": "a"}),
                "s.endsAt",
            ),
            (
                json!({"matchers": {}, "startsAt": 1000, "endsAt": 1000, "createdBy": "a"}),
                "s.endsAt",
            ),
            (
                json!({"matchers": {"rack": "x"}, "startsAt": 1, "endsAt": 2, "createdBy": "a"}),
                "s.matchers.rack",
            ),
            (
                json!({"matchers": {"host": 3}, "startsAt": 1, "endsAt": 2, "createdBy": "a"}),
                "s.matchers.host",
            ),
            (
                json!({"matchers": {"host": "a\u{7}"}, "startsAt": 1, "endsAt": 2, "createdBy": "a"}),
                "s.matchers.host",
            ),
            (
                json!({"matchers": {}, "startsAt": "yesterday", "endsAt": 2, "createdBy": "a"}),
                "s.startsAt",
            ),
            (
                json!({"matchers": {}, "startsAt": 1, "endsAt": 2, "createdBy": "a", "comment": "x".repeat(1025)}),
                "s.comment",
            ),
            (
                json!({"matchers": {}, "startsAt": 1, "endsAt": 2}),
                "s.createdBy",
            ),
            (
                json!({"startsAt": 1, "endsAt": 2, "createdBy": "a"}),
                "s.matchers",
            ),
        ];
        for (v, want) in cases {
            let e = SilenceSpec::from_json(&v, "s", &d).unwrap_err();
            assert!(e.iter().any(|p| p.path == want), "{want}: {e:?}");
        }
        let ok = json!({"matchers": {"rule": "High CPU*"}, "startsAt": "2026-01-01T00:00:00+01:00", "endsAt": 1_767_226_000_000_i64, "createdBy": "ops", "comment": "x".repeat(1024)});
        let s = SilenceSpec::from_json(&ok, "s", &d).unwrap();
        assert_eq!(s.starts_at, utc("2025-12-31T23:00:00Z"));
        let silence = s.into_silence(Uuid::from_u128(7), 5);
        assert_eq!(Silence::from_stored(&silence.to_json()).unwrap(), silence);
    }
}
