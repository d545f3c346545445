//! `bp-alerter silence add|list|expire` and `bp-alerter ack`: silences and
//! acknowledgements from the command line (see `docs/silences.md`).
//!
//! In cluster mode (`REDIS_URL` set) they are written straight into Redis,
//! by compare-and-set as the API writes them (no alerter needs to be
//! reachable); otherwise they go to the running standalone alerter's API
//! (`--api`, default `http://` + its `--listen` address) with the write
//! token (`BP_API_WRITE_TOKEN`; the first entry when it lists several) and,
//! for reads, the read token (`BP_API_TOKEN`) when set.

use metrics_model::Deployment;
use metrics_model::time::{Millis, format_rfc3339, now_ms};
use serde_json::{Value, json};
use web::api::ApiError;

use crate::EXIT_BAD_INPUT;

/// Where the CLI writes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Cluster mode: this Redis and key scope.
    Redis {
        /// `REDIS_URL`.
        url: metrics_model::RedisUrl,
        /// `BP_REDIS_SCOPE`.
        scope: String,
    },
    /// Standalone: a running alerter's API.
    Api {
        /// Its base URL (`http://127.0.0.1:8081`).
        base: String,
        /// The write token's secret.
        write: Option<String>,
        /// The read token.
        read: Option<String>,
    },
}

/// What to do.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create a silence from this body.
    Add(Value),
    /// List silences (`state` filter; JSON or a table).
    List {
        /// `active,pending,expired` or a part.
        state: Option<String>,
        /// Print JSON.
        json: bool,
    },
    /// Expire silence `id`.
    Expire(String),
    /// Acknowledge open incident `id` with this body.
    Ack(String, Value),
}

/// The target from the environment and the flags.
pub fn target(
    api: Option<&str>,
    listen: &str,
    tls: bool,
    write_token: Option<&str>,
    read_token: Option<&str>,
) -> Result<Target, String> {
    let deployment = Deployment::from_env().map_err(|e| e.to_string())?;
    if let Some(url) = deployment.redis_url {
        return Ok(Target::Redis {
            url,
            scope: deployment.scope,
        });
    }
    #[allow(clippy::single_match_else)] // the default is the long arm
    let base = match api {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => {
            if listen == "off" {
                return Err(
                    "REDIS_URL is not set and --listen is off: give the standalone alerter's API with --api URL"
                        .into(),
                );
            }
            let addr: std::net::SocketAddr = listen
                .parse()
                .map_err(|e| format!("--listen {listen:?}: {e} (or give --api URL)"))?;
            let ip = if addr.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                addr.ip()
            };
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
        }
    };
    let write = match write_token {
        None => None,
        Some(text) => Some(
            web::write::parse_write_tokens(text)?
                .into_iter()
                .next()
                .map(|t| t.token.secret().to_owned())
                .ok_or("--write-token / BP_API_WRITE_TOKEN is empty")?,
        ),
    };
    Ok(Target::Api {
        base,
        write,
        read: read_token.map(str::to_owned),
    })
}

/// Builds a silence body from the `add` flags: matchers given, `startsAt`
/// (`start`, default now), `endsAt` (`until`, or `start + for`).
pub fn silence_body(
    matchers: &[(&str, Option<&str>)],
    start: Option<&str>,
    for_: Option<metrics_model::Duration>,
    until: Option<&str>,
    comment: Option<&str>,
    created_by: Option<&str>,
) -> Result<Value, String> {
    let time = |flag: &str, text: &str| -> Result<Millis, String> {
        rules_engine::silence::parse_time(&json!(text))
            .or_else(|| text.parse::<Millis>().ok())
            .ok_or(format!(
                "{flag} {text:?}: expected an RFC 3339 time (2026-12-03T10:00:00Z) or milliseconds since the epoch"
            ))
    };
    let starts = match start {
        Some(s) => time("--start", s)?,
        None => now_ms(),
    };
    let ends = match (for_, until) {
        (Some(d), None) => starts.saturating_add(d.as_millis_i64()),
        (None, Some(u)) => time("--until", u)?,
        (None, None) => return Err("give how long: --for DURATION (2h) or --until TIME".into()),
        (Some(_), Some(_)) => return Err("give --for or --until, not both".into()),
    };
    let mut m = serde_json::Map::new();
    for (k, v) in matchers {
        if let Some(v) = v {
            m.insert((*k).to_owned(), json!(v));
        }
    }
    let mut body = json!({
        "matchers": Value::Object(m),
        "startsAt": format_rfc3339(starts),
        "endsAt": format_rfc3339(ends),
    });
    if let Some(c) = comment {
        body["comment"] = json!(c);
    }
    if let Some(c) = created_by {
        body["createdBy"] = json!(c);
    }
    Ok(body)
}

/// The CLI's user, as a default author against Redis: `$USER`, else
/// `$LOGNAME`.
fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Runs `op` against `target`; prints the result; returns the exit code
/// (2 for a refused input or usage, 1 when the store or API cannot be
/// reached or refuses for another reason).
pub fn run(target: &Target, op: &Op) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bp-alerter: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match target {
            Target::Redis { url, scope } => on_redis(url, scope, op).await,
            Target::Api { base, write, read } => {
                on_api(base, write.as_deref(), read.as_deref(), op).await
            }
        }
    });
    match result {
        Ok(v) => {
            print_result(op, &v);
            0
        }
        Err(Failure { message, bad_input }) => {
            eprintln!("bp-alerter: {message}");
            if bad_input { EXIT_BAD_INPUT } else { 1 }
        }
    }
}

struct Failure {
    message: String,
    bad_input: bool,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure {
            bad_input: e.status().is_client_error(),
            message: e.message().to_owned(),
        }
    }
}

fn other(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        bad_input: false,
    }
}

fn uuid(id: &str, what: &str) -> Result<uuid::Uuid, Failure> {
    id.parse().map_err(|_| Failure {
        message: format!("{id:?} is not {what} id (a UUID)"),
        bad_input: true,
    })
}

async fn on_redis(url: &metrics_model::RedisUrl, scope: &str, op: &Op) -> Result<Value, Failure> {
    let store = redis_store::RedisStore::connect(redis_store::RedisOptions::new(
        url.clone(),
        scope.to_owned(),
    ))
    .await
    .map_err(|e| other(format!("cannot connect to Redis: {e:#}")))?;
    let now = now_ms();
    match op {
        Op::Add(body) => {
            let (v, _) = web::silences::create_silence(&store, body, login_name(), now).await?;
            Ok(v)
        }
        Op::List { state, .. } => {
            Ok(web::silences::list_silences(&store, state.as_deref(), now).await?)
        }
        Op::Expire(id) => {
            let id = uuid(id, "a silence")?;
            Ok(web::silences::expire_silence(&store, id, &json!({}), now).await?)
        }
        Op::Ack(id, body) => {
            let id = uuid(id, "an incident")?;
            Ok(web::silences::ack_incident(&store, id, body, login_name(), now).await?)
        }
    }
}

async fn on_api(
    base: &str,
    write: Option<&str>,
    read: Option<&str>,
    op: &Op,
) -> Result<Value, Failure> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| other(format!("cannot build an HTTP client: {e}")))?;
    let need_write = || {
        write.ok_or(Failure {
            message: "writing through the API needs the write token: set BP_API_WRITE_TOKEN (or --write-token), as the alerter has it".into(),
            bad_input: true,
        })
    };
    let request = match op {
        Op::Add(body) => client
            .post(format!("{base}/api/v1/silences"))
            .bearer_auth(need_write()?)
            .json(body),
        Op::Expire(id) => {
            let id = uuid(id, "a silence")?;
            client
                .post(format!("{base}/api/v1/silences/{id}/expire"))
                .bearer_auth(need_write()?)
                .json(&json!({}))
        }
        Op::Ack(id, body) => {
            let id = uuid(id, "an incident")?;
            client
                .post(format!("{base}/api/v1/incidents/{id}/ack"))
                .bearer_auth(need_write()?)
                .json(body)
        }
        Op::List { state, .. } => {
            let mut r = client.get(format!("{base}/api/v1/silences"));
            if let Some(s) = state {
                r = r.query(&[("state", s)]);
            }
            match read.or(write) {
                Some(t) => r.bearer_auth(t),
                None => r,
            }
        }
    };
    let response = request.send().await.map_err(|e| {
        other(format!(
            "cannot reach the standalone alerter's API at {base}: {e} (is bp-alerter running? \
             in cluster mode set REDIS_URL; elsewhere give --api URL)"
        ))
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| other(format!("{base}: cannot read the answer: {e}")))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| format!("HTTP {status}"), str::to_owned);
        return Err(Failure {
            message: format!("{base} answered {}: {message}", status.as_u16()),
            bad_input: status.is_client_error(),
        });
    }
    Ok(value)
}

fn print_result(op: &Op, v: &Value) {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match op {
        Op::Add(_) => println!("{}", s(v, "id")),
        Op::Expire(_) => println!(
            "{} {} (ends {})",
            s(v, "id"),
            s(v, "status"),
            s(v, "endsAt")
        ),
        Op::Ack(..) => println!(
            "acknowledged {} by {} at {}",
            s(v, "incidentId"),
            s(v, "by"),
            s(v, "at")
        ),
        Op::List { json: true, .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(v.get("silences").unwrap_or(&Value::Null))
                    .unwrap_or_default()
            );
        }
        Op::List { json: false, .. } => {
            let empty = Vec::new();
            let list = v
                .get("silences")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            if list.is_empty() {
                println!("no silences");
                return;
            }
            println!(
                "{:<36}  {:<7}  {:<24}  {:<24}  {:<12}  MATCHERS / COMMENT",
                "ID", "STATUS", "STARTS", "ENDS", "CREATED BY"
            );
            for item in list {
                let matchers = item
                    .get("matchers")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| {
                                format!("{k}={}", v.as_str().unwrap_or("").escape_debug())
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let matchers = if matchers.is_empty() {
                    "(everything)".to_owned()
                } else {
                    matchers
                };
                println!(
                    "{:<36}  {:<7}  {:<24}  {:<24}  {:<12}  {matchers} / {}",
                    s(item, "id"),
                    s(item, "status"),
                    s(item, "startsAt"),
                    s(item, "endsAt"),
                    s(item, "createdBy").escape_debug().to_string(),
                    s(item, "comment").escape_debug(),
                );
            }
        }
    }
}
