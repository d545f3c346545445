//! The access token: `Authorization: Bearer <token>` or basic auth with the
//! token as the password (any user name, so a browser's login prompt works).
//! The token is never logged; a refusal says only what is missing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Token;

/// Who may read: the read token, and every write token (a writer may read
/// what it writes).
#[derive(Debug)]
pub struct ReadAccess {
    /// The read token.
    pub token: Token,
    /// The write tokens.
    pub write: Arc<crate::write::WriteAccess>,
}

/// Lets the request through when it carries the read token or a write token.
pub async fn require_token(
    State(access): State<Arc<ReadAccess>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented);
    match given {
        Some(g) if access.token.matches(g.as_bytes()) || access.write.find(&g).is_some() => {
            next.run(request).await
        }
        Some(_) => refuse("the access token is wrong"),
        None => refuse(
            "an access token is required (Authorization: Bearer <token>, or basic auth with the token as password)",
        ),
    }
}

/// The token in an `Authorization` header value, bearer or basic.
pub(crate) fn presented(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest)?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

pub(crate) fn refuse(message: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"bp-monitoring\", charset=\"UTF-8\""),
    );
    response
}

/// Standard base64 (RFC 4648, with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8]),
            2 => out.push((acc >> 16) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, expected: Option<&str>) {
        assert_eq!(presented(header).as_deref(), expected, "{header}");
    }

    #[test]
    fn headers() {
        check("Bearer s3cret", Some("s3cret"));
        check("bearer  s3cret ", Some("s3cret"));
        // "user:s3cret"
        check("Basic dXNlcjpzM2NyZXQ=", Some("s3cret"));
        // ":pa:ss" (empty user, colon in the password)
        check("Basic OnBhOnNz", Some("pa:ss"));
        check("Basic !!!", None);
        check("Digest abc", None);
        check("Bearer", None);
    }

    #[test]
    fn token_compare() {
        let t = Token::new("abc").unwrap();
        assert!(t.matches(b"abc"));
        assert!(!t.matches(b"abd"));
        assert!(!t.matches(b"ab"));
        assert!(!t.matches(b"abcd"));
        assert!(Token::new("").is_none());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
