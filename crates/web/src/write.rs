//! Who may write, and from where: the write tokens (`BP_API_WRITE_TOKEN`,
//! distinct from the read token) and the checks that keep a browser on
//! another site from writing through a user's session (CSRF) or through a
//! DNS name pointed at the loopback address (rebinding).
//!
//! Every write (`POST`/`PUT` under `/api/v1/silences` and
//! `/api/v1/incidents/{id}/ack`) needs, in this order:
//! 1. a write token configured (otherwise 403: writes are disabled), even on
//!    loopback;
//! 2. a `Host` that is an IP address, `localhost`, or one of the
//!    `--allowed-host` names (403 otherwise);
//! 3. no `Origin` other than the server's own (`http(s)://<Host>`), and no
//!    `Sec-Fetch-Site: cross-site` or `same-site` (403);
//! 4. `Content-Type: application/json` (415): a cross-site form cannot send
//!    it without a CORS preflight, which this server never answers;
//! 5. one of the write tokens, as a bearer token or the basic-auth password
//!    (401).
//!
//! A named token (`name:secret`) gives the writer's name, the default of a
//! silence's `createdBy` and of an acknowledgement's `by`. Tokens are never
//! logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Token;

/// A write token, with the writer's name when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteToken {
    /// `alice` in `alice:s3cret`.
    pub name: Option<String>,
    /// The secret.
    pub token: Token,
}

/// Parses `BP_API_WRITE_TOKEN`: comma-separated entries, each `secret` or
/// `name:secret` (a name is 1–64 of `A-Z a-z 0-9 . _ @ -`; a secret
/// containing `:` must then be named). Errors never repeat a secret.
pub fn parse_write_tokens(text: &str) -> Result<Vec<WriteToken>, String> {
    let mut out: Vec<WriteToken> = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        let what = format!("--write-token / BP_API_WRITE_TOKEN entry {}", i + 1);
        if entry.is_empty() {
            return Err(format!("{what} is empty"));
        }
        let (name, secret) = match entry.split_once(':') {
            Some((name, secret)) => {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
                if !ok {
                    return Err(format!(
                        "{what}: the name before ':' must be 1-64 of A-Z a-z 0-9 . _ @ -"
                    ));
                }
                (Some(name.to_owned()), secret)
            }
            None => (None, entry),
        };
        let Some(token) = Token::new(secret) else {
            return Err(format!("{what}: the secret is empty"));
        };
        if out.iter().any(|t| t.token == token) {
            return Err(format!("{what}: the same secret is given twice"));
        }
        out.push(WriteToken { name, token });
    }
    Ok(out)
}

/// What the write routes check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteAccess {
    /// The write tokens; none: writes are disabled.
    pub tokens: Vec<WriteToken>,
    /// Host names (besides IP addresses and `localhost`) a write may be
    /// addressed to.
    pub allowed_hosts: Vec<String>,
}

/// The writer, put in the request's extensions by [`require_write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// The name of the token used, if it is named.
    pub name: Option<String>,
}

impl WriteAccess {
    /// The token `given` is, if any.
    pub fn find(&self, given: &str) -> Option<&WriteToken> {
        self.tokens
            .iter()
            .find(|t| t.token.matches(given.as_bytes()))
    }

    /// Whether `host` (a `Host` header value, port included) is one this
    /// server answers writes for.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.is_empty() {
            return false;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The name part of a `Host` value (`[::1]:8081` → `[::1]`, `a:1` → `a`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn forbid(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Checks a write request as the module says; on success the handler
/// finds a [`Writer`] in the request's extensions.
pub async fn require_write(
    State(access): State<Arc<WriteAccess>>,
    mut request: Request,
    next: Next,
) -> Response {
    match check(&access, request.headers(), request.uri()) {
        Ok(writer) => {
            request.extensions_mut().insert(writer);
            next.run(request).await
        }
        Err(response) => response,
    }
}

#[allow(clippy::result_large_err)] // the refusal is the response, built once
fn check(
    access: &WriteAccess,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<Writer, Response> {
    if access.tokens.is_empty() {
        return Err(forbid(
            StatusCode::FORBIDDEN,
            "writes are disabled: start the alerter with a write token (--write-token or \
             BP_API_WRITE_TOKEN) to create silences and acknowledgements",
        ));
    }
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host =
        text(header::HOST).or_else(|| uri.authority().map(axum::http::uri::Authority::as_str));
    let Some(host) = host else {
        return Err(forbid(StatusCode::FORBIDDEN, "a write needs a Host header"));
    };
    if !access.host_allowed(host) {
        return Err(forbid(
            StatusCode::FORBIDDEN,
            format!(
                "writes addressed to host {:?} are refused (IP addresses and localhost are \
                 accepted; add a name with --allowed-host or BP_API_ALLOWED_HOSTS)",
                host_name(host)
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(forbid(
                StatusCode::FORBIDDEN,
                "writes from another origin are refused (the Origin header is not this server)",
            ));
        }
    }
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Err(forbid(
            StatusCode::FORBIDDEN,
            format!("writes from another site are refused (Sec-Fetch-Site: {site})"),
        ));
    }
    let json = text(header::CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(forbid(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a write needs Content-Type: application/json",
        ));
    }
    let given = text(header::AUTHORIZATION).and_then(crate::auth::presented);
    match given.as_deref().map(|g| access.find(g)) {
        Some(Some(t)) => Ok(Writer {
            name: t.name.clone(),
        }),
        Some(None) => Err(crate::auth::refuse("the write token is wrong")),
        None => Err(crate::auth::refuse(
            "a write token is required (Authorization: Bearer <write token>)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> WriteAccess {
        WriteAccess {
            tokens: parse_write_tokens("alice:s3cret, anon").unwrap(),
            allowed_hosts: vec!["bp.example".into()],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn status(pairs: &[(&str, &str)]) -> Result<Writer, StatusCode> {
        check(
            &access(),
            &headers(pairs),
            &"/api/v1/silences".parse().unwrap(),
        )
        .map_err(|r| r.status())
    }

    const GOOD: [(&str, &str); 3] = [
        ("host", "127.0.0.1:8081"),
        ("content-type", "application/json"),
        ("authorization", "Bearer s3cret"),
    ];

    fn with(replace: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = GOOD
            .iter()
            .filter(|(k, _)| *k != replace.0)
            .copied()
            .collect();
        v.push(replace);
        v
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        GOOD.iter().filter(|(k, _)| *k != name).copied().collect()
    }

    #[test]
    fn tokens_parse() {
        let t = parse_write_tokens("alice:a,b").unwrap();
        assert_eq!(t[0].name.as_deref(), Some("alice"));
        assert_eq!(t[1].name, None);
        for bad in [
            "",
            "a,,b",
            "bad name:SECRETX",
            ":SECRETX",
            "a:",
            "SECRETX,SECRETX",
        ] {
            let e = parse_write_tokens(bad).unwrap_err();
            assert!(e.contains("BP_API_WRITE_TOKEN"), "{bad}: {e}");
            assert!(!e.contains("SECRETX"), "a secret is never repeated: {e}");
        }
    }

    #[test]
    fn the_checks() {
        assert_eq!(
            status(&GOOD).unwrap().name.as_deref(),
            Some("alice"),
            "named token"
        );
        assert_eq!(
            status(&with(("authorization", "Bearer anon")))
                .unwrap()
                .name,
            None
        );
        // basic auth with the token as password ("u:s3cret")
        assert!(status(&with(("authorization", "Basic dTpzM2NyZXQ="))).is_ok());
        for host in [
            "localhost:8081",
            "[::1]:8081",
            "bp.example",
            "BP.example:443",
            "10.0.0.7",
        ] {
            assert!(status(&with(("host", host))).is_ok(), "{host}");
        }
        for host in ["evil.example", "127.0.0.1.evil.example:8081", ":8081"] {
            assert_eq!(
                status(&with(("host", host))).unwrap_err(),
                StatusCode::FORBIDDEN,
                "{host}"
            );
        }
        assert_eq!(status(&without("host")).unwrap_err(), StatusCode::FORBIDDEN);
        let mut own = GOOD.to_vec();
        own.push(("origin", "http://127.0.0.1:8081"));
        assert!(status(&own).is_ok());
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
            let mut v = GOOD.to_vec();
            v.push(("origin", origin));
            assert_eq!(status(&v).unwrap_err(), StatusCode::FORBIDDEN, "{origin}");
        }
        for site in ["cross-site", "same-site"] {
            let mut v = GOOD.to_vec();
            v.push(("sec-fetch-site", site));
            assert_eq!(status(&v).unwrap_err(), StatusCode::FORBIDDEN, "{site}");
        }
        let mut v = GOOD.to_vec();
        v.push(("sec-fetch-site", "same-origin"));
        assert!(status(&v).is_ok());
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert_eq!(
                status(&with(("content-type", ct))).unwrap_err(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{ct}"
            );
        }
        assert!(status(&with(("content-type", "application/json; charset=utf-8"))).is_ok());
        assert_eq!(
            status(&without("content-type")).unwrap_err(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            status(&without("authorization")).unwrap_err(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&with(("authorization", "Bearer readtoken"))).unwrap_err(),
            StatusCode::UNAUTHORIZED
        );
        let none = WriteAccess::default();
        assert_eq!(
            check(&none, &headers(&GOOD), &"/".parse().unwrap())
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
    }
}
